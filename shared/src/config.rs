//! Typed configuration, read once at cold start. Handlers never read the environment.

use std::fmt;
use std::time::Duration;

/// A secret value (AppKey, Secret). Debug/Display never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}
impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}
impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is required")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// Source of settings; the process environment in Lambda, a map in tests.
pub trait Env {
    fn get(&self, key: &str) -> Option<String>;
}

pub struct ProcessEnv;
impl Env for ProcessEnv {
    fn get(&self, key: &str) -> Option<String> {
        std::env::var(key).ok().filter(|v| !v.is_empty())
    }
}
impl Env for std::collections::HashMap<String, String> {
    fn get(&self, key: &str) -> Option<String> {
        std::collections::HashMap::get(self, key).cloned()
    }
}

pub(crate) fn required(env: &dyn Env, key: &'static str) -> Result<String, ConfigError> {
    env.get(key).ok_or(ConfigError::Missing(key))
}

pub(crate) fn parsed<T: std::str::FromStr>(
    env: &dyn Env,
    key: &'static str,
    default: T,
) -> Result<T, ConfigError>
where
    T::Err: fmt::Display,
{
    match env.get(key) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|e: T::Err| ConfigError::Invalid {
            name: key,
            reason: e.to_string(),
        }),
    }
}

/// Kdniao API settings. `KDNIAO_ENDPOINT` points at the real API or at the local sandbox.
#[derive(Debug, Clone)]
pub struct KdniaoConfig {
    pub endpoint: String,
    pub ebusiness_id: String,
    pub app_key: Secret,
    /// `8001` (monitor query, with StateEx) or `1002` (instant query).
    pub request_type: String,
    pub timeout: Duration,
}

impl KdniaoConfig {
    pub const DEFAULT_ENDPOINT: &'static str =
        "https://api.kdniao.com/Ebusiness/EbusinessOrderHandle.aspx";

    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let request_type = env
            .get("KDNIAO_REQUEST_TYPE")
            .unwrap_or_else(|| "8001".into());
        if request_type != "8001" && request_type != "1002" {
            return Err(ConfigError::Invalid {
                name: "KDNIAO_REQUEST_TYPE",
                reason: format!("`{request_type}` is neither 8001 nor 1002"),
            });
        }
        Ok(KdniaoConfig {
            endpoint: env
                .get("KDNIAO_ENDPOINT")
                .unwrap_or_else(|| Self::DEFAULT_ENDPOINT.into()),
            ebusiness_id: required(env, "KDNIAO_EBUSINESS_ID")?,
            app_key: Secret::new(required(env, "KDNIAO_APP_KEY")?),
            request_type,
            timeout: Duration::from_millis(parsed(env, "PROVIDER_TIMEOUT_MS", 5000u64)?),
        })
    }
}

/// Settings shared by the functions. Each function reads what it needs.
#[derive(Debug, Clone)]
pub struct Config {
    pub table_name: String,
    /// Number of due-index shards (`DUE#0..N-1`).
    pub due_shards: u32,
}

impl Config {
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let due_shards = parsed(env, "DUE_SHARDS", 16u32)?;
        if due_shards == 0 || due_shards > 256 {
            return Err(ConfigError::Invalid {
                name: "DUE_SHARDS",
                reason: "must be 1..=256".into(),
            });
        }
        Ok(Config {
            table_name: required(env, "TABLE_NAME")?,
            due_shards,
        })
    }
}

#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    pub queue_url: String,
    /// At most this many shipments enqueued per run (keeps one run inside its timeout and the
    /// queue as deep as the trackers can drain).
    pub max_enqueue: usize,
    /// A check not done within this time of being enqueued is enqueued again (the stuck sweep,
    /// once per this period per due shard). `SCHEDULER_LEASE_SECONDS`.
    pub lease: Duration,
}

impl SchedulerConfig {
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        Ok(SchedulerConfig {
            queue_url: required(env, "TRACKING_QUEUE_URL")?,
            max_enqueue: parsed(env, "SCHEDULER_MAX_ENQUEUE", 5000usize)?,
            lease: Duration::from_secs(parsed(env, "SCHEDULER_LEASE_SECONDS", 900u64)?),
        })
    }
}

#[derive(Debug, Clone)]
pub struct TrackerConfig {
    pub kdniao: KdniaoConfig,
    /// Where a message that can never succeed goes, with its reason (the tracking queue's DLQ).
    pub dead_letter_queue_url: String,
    /// Provider calls in flight at once per invocation.
    pub concurrency: usize,
    /// Push mode (`PUSH_CALLBACK_BASE_URL` set): Kdniao shipments are subscribed (8008) on
    /// their first check and polled only as a safety net afterwards.
    pub kdniao_push: Option<crate::providers::kdniao_push::KdniaoPushConfig>,
    /// Kuaidi100 real-time queries, when `KUAIDI100_KEY` is set.
    pub kuaidi100: Option<crate::providers::kuaidi100::Kuaidi100QueryConfig>,
    /// Taobao TOP trace search, when `TOP_APP_KEY` is set.
    pub taobao: Option<crate::providers::taobao::TaobaoConfig>,
    /// Which providers serve which shipments, in order (`PROVIDER_ROUTES`).
    pub routes: crate::providers::failover::ProviderRoutes,
    /// Calls per second and burst per provider (`PROVIDER_RATE_LIMITS`, default
    /// [`crate::resilience::RateLimits::default`]; `none` for no limits).
    pub rate_limits: crate::resilience::RateLimits,
    /// The DynamoDB table of the token buckets shared by every container (`RATE_LIMIT_TABLE`);
    /// without it each container keeps the limits on its own.
    pub rate_limit_table: Option<String>,
    /// How long one check may wait for a token when every provider is short of one
    /// (`RATE_LIMIT_MAX_WAIT_MS`, default 1000); past it the check is retried later.
    pub rate_limit_max_wait: Duration,
    /// With `RATE_LIMIT_TABLE`: one conditional write takes at most this much refill time of
    /// tokens for the container, which keeps them at most this long (`RATE_LIMIT_SLICE_MS`,
    /// default 1000, at most 10000; 0 takes one token per write).
    pub rate_limit_slice: Duration,
    /// The providers' circuit breakers (`BREAKER_FAILURES` default 5, `BREAKER_COOLDOWN_SECS`
    /// default 30, `BREAKER_MAX_COOLDOWN_SECS` default 600).
    pub breaker: crate::resilience::BreakerConfig,
}

impl TrackerConfig {
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        Ok(TrackerConfig {
            kdniao: KdniaoConfig::from_env(env)?,
            dead_letter_queue_url: required(env, "TRACKING_DLQ_URL")?,
            concurrency: parsed(env, "TRACKER_CONCURRENCY", 8usize)?.max(1),
            kdniao_push: match env.get("PUSH_CALLBACK_BASE_URL") {
                Some(_) => Some(crate::providers::kdniao_push::KdniaoPushConfig::from_env(
                    env,
                )?),
                None => None,
            },
            kuaidi100: match env.get("KUAIDI100_KEY") {
                Some(_) => Some(crate::providers::kuaidi100::Kuaidi100QueryConfig::from_env(
                    env,
                )?),
                None => None,
            },
            taobao: match env.get("TOP_APP_KEY") {
                Some(_) => Some(crate::providers::taobao::TaobaoConfig::from_env(env)?),
                None => None,
            },
            routes: match env.get("PROVIDER_ROUTES") {
                Some(spec) => {
                    crate::providers::failover::ProviderRoutes::parse(&spec).map_err(|reason| {
                        ConfigError::Invalid {
                            name: "PROVIDER_ROUTES",
                            reason,
                        }
                    })?
                }
                None => crate::providers::failover::ProviderRoutes::default(),
            },
            rate_limits: match env.get("PROVIDER_RATE_LIMITS") {
                Some(spec) => crate::resilience::RateLimits::parse(&spec).map_err(|reason| {
                    ConfigError::Invalid {
                        name: "PROVIDER_RATE_LIMITS",
                        reason,
                    }
                })?,
                None => crate::resilience::RateLimits::default(),
            },
            rate_limit_table: env.get("RATE_LIMIT_TABLE"),
            rate_limit_max_wait: Duration::from_millis(parsed(
                env,
                "RATE_LIMIT_MAX_WAIT_MS",
                1000u64,
            )?),
            rate_limit_slice: {
                let slice = Duration::from_millis(parsed(
                    env,
                    "RATE_LIMIT_SLICE_MS",
                    crate::resilience::bucket::DEFAULT_SLICE.as_millis() as u64,
                )?);
                if slice > crate::resilience::bucket::MAX_SLICE {
                    return Err(ConfigError::Invalid {
                        name: "RATE_LIMIT_SLICE_MS",
                        reason: format!(
                            "{} ms is longer than {} ms: each ms of slice is as much again of \
                             burst",
                            slice.as_millis(),
                            crate::resilience::bucket::MAX_SLICE.as_millis()
                        ),
                    });
                }
                slice
            },
            breaker: {
                let cooldown = Duration::from_secs(parsed(env, "BREAKER_COOLDOWN_SECS", 30u64)?);
                crate::resilience::BreakerConfig {
                    failure_threshold: parsed(env, "BREAKER_FAILURES", 5u32)?.max(1),
                    cooldown,
                    max_cooldown: Duration::from_secs(parsed(
                        env,
                        "BREAKER_MAX_COOLDOWN_SECS",
                        600u64,
                    )?)
                    .max(cooldown),
                }
            },
        })
    }
}

#[derive(Debug, Clone)]
pub struct NotifierConfig {
    /// Merchant topic for every transition (optional).
    pub merchant_topic_arn: Option<String>,
    pub sms_sender_id: Option<String>,
    pub max_attempts: u32,
    pub base_backoff: Duration,
    /// Also send the buyer an apology SMS when a parcel is flagged stalled or late
    /// (`STALL_BUYER_APOLOGY=true`; off by default: the merchant decides what the buyer hears).
    pub stall_apology: bool,
}

impl NotifierConfig {
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        Ok(NotifierConfig {
            merchant_topic_arn: env.get("MERCHANT_TOPIC_ARN"),
            sms_sender_id: env.get("SMS_SENDER_ID"),
            max_attempts: parsed(env, "NOTIFY_MAX_ATTEMPTS", 3u32)?.max(1),
            base_backoff: Duration::from_millis(parsed(env, "NOTIFY_BACKOFF_MS", 200u64)?),
            stall_apology: parsed(env, "STALL_BUYER_APOLOGY", false)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn tracker_env(extra: &[(&str, &str)]) -> HashMap<String, String> {
        [
            ("KDNIAO_EBUSINESS_ID", "1234"),
            ("KDNIAO_APP_KEY", "k"),
            ("TRACKING_DLQ_URL", "http://dlq"),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn resilience_settings_default_and_parse() {
        let d = TrackerConfig::from_env(&tracker_env(&[])).unwrap();
        assert_eq!(d.rate_limits, crate::resilience::RateLimits::default());
        assert_eq!(d.rate_limit_table, None);
        assert_eq!(d.rate_limit_max_wait, Duration::from_secs(1));
        assert_eq!(d.rate_limit_slice, Duration::from_secs(1));
        assert_eq!(d.breaker, crate::resilience::BreakerConfig::default());

        let c = TrackerConfig::from_env(&tracker_env(&[
            ("PROVIDER_RATE_LIMITS", "kdniao=2/s:4"),
            ("RATE_LIMIT_TABLE", "rate"),
            ("RATE_LIMIT_MAX_WAIT_MS", "250"),
            ("RATE_LIMIT_SLICE_MS", "400"),
            ("BREAKER_FAILURES", "3"),
            ("BREAKER_COOLDOWN_SECS", "900"),
            ("BREAKER_MAX_COOLDOWN_SECS", "60"),
        ]))
        .unwrap();
        assert_eq!(c.rate_limits.get("kdniao").map(|l| l.burst), Some(4));
        assert_eq!(c.rate_limits.get("taobao"), None);
        assert_eq!(c.rate_limit_table.as_deref(), Some("rate"));
        assert_eq!(c.rate_limit_max_wait, Duration::from_millis(250));
        assert_eq!(c.rate_limit_slice, Duration::from_millis(400));
        assert_eq!(c.breaker.failure_threshold, 3);
        assert_eq!(
            c.breaker.max_cooldown,
            Duration::from_secs(900),
            "never below the first cooldown"
        );

        match TrackerConfig::from_env(&tracker_env(&[("PROVIDER_RATE_LIMITS", "kdniao=fast")])) {
            Err(ConfigError::Invalid { name, .. }) => assert_eq!(name, "PROVIDER_RATE_LIMITS"),
            other => panic!("{other:?}"),
        }
        match TrackerConfig::from_env(&tracker_env(&[("RATE_LIMIT_SLICE_MS", "60000")])) {
            Err(ConfigError::Invalid { name, .. }) => assert_eq!(name, "RATE_LIMIT_SLICE_MS"),
            other => panic!("{other:?}"),
        }
    }
}
