//! parcelwatch: everything that is not a Lambda entry point.
pub mod aws_error;
pub mod config;
pub mod crypto;
pub mod domain;
pub(crate) mod http;
pub mod metrics;
pub mod notify;
pub mod orders;
pub mod providers;
pub mod queue;
pub mod resilience;
pub mod store;
pub mod telemetry;
pub mod tracking;
