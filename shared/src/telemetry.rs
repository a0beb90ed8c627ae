//! JSON logs with structured fields. Phone numbers are masked by their own types
//! (`PhoneNumber`'s Display/Debug); secrets by `Secret`.

use tracing_subscriber::{fmt, EnvFilter};

/// Install the JSON subscriber once per process. `RUST_LOG` sets the filter (default `info`).
/// The Lambda platform adds the timestamp and request id; we keep the current span's fields.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // A second init (tests, the local runner) is not an error worth failing for.
    let _ = fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .without_time()
        .try_init();
}
