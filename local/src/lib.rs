//! The embedded local stack: moto (real AWS APIs on loopback), the carrier sandbox, and the
//! in-process runner that feeds the functions with AWS's event-source semantics.

pub mod bench;
pub mod checksim;
pub mod clock;
pub mod coldstart;
pub mod cost;
pub mod demo;
pub mod faults;
pub mod moto;
pub mod pipeline;
pub mod provision;
pub mod redrive;
pub mod report;
pub mod runner;
pub mod runtime_api;
pub mod sandbox;
pub mod soak;
pub mod stack;
