//! Guarantees around every outside call: per-provider rate limits that hold across containers
//! ([`bucket`]), circuit breakers per provider ([`breaker`]), retries with back-off and full
//! jitter bounded in count and in time ([`retry`]), and the AWS SDK's own retry settings
//! ([`sdk_retry_config`]).

pub mod breaker;
pub mod bucket;
pub mod retry;

pub use breaker::{Admission, BreakerConfig, Breakers, Tripped};
pub use bucket::{
    Acquire, BucketStats, DynamoBucket, Limiter, MemoryBucket, RateLimitError, RateLimiter,
    RateLimits,
};
pub use retry::{retry, retry_with, Jitter, RetryPolicy};

use std::time::Duration;

/// Attempts per AWS SDK call, the first included.
pub const SDK_MAX_ATTEMPTS: u32 = 4;
/// The cap of the SDK's first back-off (it then doubles, with full jitter).
pub const SDK_INITIAL_BACKOFF: Duration = Duration::from_millis(50);
/// The longest single SDK back-off.
pub const SDK_MAX_BACKOFF: Duration = Duration::from_secs(2);

/// The AWS SDK retry settings of every function, stated rather than left to the defaults:
/// standard mode (exponential back-off with full jitter and a client-side retry quota that stops
/// retry storms), [`SDK_MAX_ATTEMPTS`] attempts, back-offs from [`SDK_INITIAL_BACKOFF`] up to
/// [`SDK_MAX_BACKOFF`]. Worst case a call waits under 2 × 2 s + 0.1 s between its attempts, well
/// inside a function's timeout. Apply it once when the `SdkConfig` is loaded:
/// [`load_sdk_config`] does.
pub fn sdk_retry_config() -> aws_config::retry::RetryConfig {
    aws_config::retry::RetryConfig::standard()
        .with_max_attempts(SDK_MAX_ATTEMPTS)
        .with_initial_backoff(SDK_INITIAL_BACKOFF)
        .with_max_backoff(SDK_MAX_BACKOFF)
}

/// The functions' `SdkConfig`: the usual environment (`AWS_*`) with [`sdk_retry_config`].
pub async fn load_sdk_config() -> aws_config::SdkConfig {
    aws_config::from_env()
        .retry_config(sdk_retry_config())
        .load()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_config::retry::RetryMode;

    #[test]
    fn the_sdk_retries_in_standard_mode_with_bounded_attempts_and_back_off() {
        let c = sdk_retry_config();
        assert_eq!(c.mode(), RetryMode::Standard);
        assert_eq!(c.max_attempts(), 4);
        assert_eq!(c.initial_backoff(), Duration::from_millis(50));
        assert_eq!(c.max_backoff(), Duration::from_secs(2));
    }
}
