//! Per-provider rate limits as token buckets. The bucket that matters lives in DynamoDB, so that
//! it holds across every tracker container at once: one item per provider (`pk = RATE#{provider}`)
//! with the tokens left (`tokens`), when they were counted (`ts`, ms since the epoch) and a
//! version (`v`). A taker reads the item, refills it by `rate × elapsed` up to the burst, takes
//! one token and writes it back on condition that the version is still the one it read
//! (optimistic concurrency); a lost race is retried a bounded number of times. An empty bucket
//! answers how long until the next token.
//!
//! The table is a small one of its own (no stream), so that the limiter's writes do not reach the
//! notifier. Without a table, an in-memory bucket limits each container on its own.

use crate::aws_error;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

/// How often a lost race for the bucket item is retried (re-read, recompute, write) before the
/// taker is told to wait one token's time.
const MAX_RACES: u32 = 8;
/// Bucket items of providers no longer used expire a day after their last write.
const ITEM_TTL_SECS: i64 = 86_400;

/// One provider's limit: a steady rate and a burst (the bucket's size).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Tokens added per second.
    pub per_second: f64,
    /// The most tokens the bucket holds (at least 1).
    pub burst: u32,
}

/// A bucket's content at a moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketState {
    pub tokens: f64,
    /// When `tokens` was counted, ms since the epoch.
    pub ts_ms: i64,
}

impl RateLimit {
    /// Refill `prev` (a full bucket when there is none) to `now_ms` and take one token: the new
    /// state, or how long until a token is there.
    pub fn take(&self, prev: Option<BucketState>, now_ms: i64) -> Result<BucketState, Duration> {
        let burst = f64::from(self.burst.max(1));
        let (tokens, ts_ms) = match prev {
            None => (burst, now_ms),
            Some(p) => {
                // A clock behind the stored time refills nothing (and never moves `ts` back).
                let elapsed = (now_ms - p.ts_ms).max(0) as f64 / 1000.0;
                (
                    (p.tokens + elapsed * self.per_second).min(burst),
                    p.ts_ms.max(now_ms),
                )
            }
        };
        if tokens >= 1.0 {
            Ok(BucketState {
                tokens: tokens - 1.0,
                ts_ms,
            })
        } else {
            Err(self.time_for(1.0 - tokens))
        }
    }

    /// How long the bucket takes to gain `tokens` (rounded up to the millisecond).
    fn time_for(&self, tokens: f64) -> Duration {
        if self.per_second <= 0.0 {
            return Duration::from_secs(3600);
        }
        Duration::from_millis((tokens / self.per_second * 1000.0).ceil().max(1.0) as u64)
    }
}

/// Limits by provider name (`kdniao`, `kuaidi100`, `taobao`); a provider not listed is not limited.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimits(pub HashMap<String, RateLimit>);

impl Default for RateLimits {
    /// `kdniao=10/s:20,kuaidi100=5/s:10,taobao=20/s:40`: conservative guesses. The provider
    /// documents reviewed state daily quotas (Kdniao ≤ 30,000 queries a day) and per-waybill rules
    /// (Kuaidi100: one query per waybill per 30 min) but no per-second figure; set the contracted
    /// figures with `PROVIDER_RATE_LIMITS`.
    fn default() -> Self {
        RateLimits(
            [
                ("kdniao", 10.0, 20),
                ("kuaidi100", 5.0, 10),
                ("taobao", 20.0, 40),
            ]
            .into_iter()
            .map(|(p, per_second, burst)| (p.to_string(), RateLimit { per_second, burst }))
            .collect(),
        )
    }
}

impl RateLimits {
    /// `kdniao=10/s:20,kuaidi100=300/min:10,taobao=20/s`: `provider=<rate>/<s|min|h>[:burst]`,
    /// comma-separated; the burst defaults to one second's worth (at least 1). `none` (or an empty
    /// spec) limits nothing.
    pub fn parse(spec: &str) -> Result<RateLimits, String> {
        let mut out = HashMap::new();
        let spec = spec.trim();
        if spec.eq_ignore_ascii_case("none") {
            return Ok(RateLimits(out));
        }
        for rule in spec.split(',').map(str::trim).filter(|r| !r.is_empty()) {
            let (name, limit) = rule
                .split_once('=')
                .ok_or_else(|| format!("`{rule}` is not `<provider>=<rate>/<unit>[:burst]`"))?;
            let name = name.trim().to_ascii_lowercase();
            if !crate::providers::failover::PROVIDERS.contains(&name.as_str()) {
                return Err(format!(
                    "unknown provider `{name}` in `{rule}` (known: {})",
                    crate::providers::failover::PROVIDERS.join(", ")
                ));
            }
            let (rate, burst) = match limit.split_once(':') {
                Some((r, b)) => (r, Some(b)),
                None => (limit, None),
            };
            let (count, unit) = rate
                .split_once('/')
                .ok_or_else(|| format!("`{rule}`: rate must be `<n>/<s|min|h>`"))?;
            let count: f64 = count
                .trim()
                .parse()
                .map_err(|_| format!("`{rule}`: `{count}` is not a number"))?;
            let per = match unit.trim() {
                "s" | "sec" => 1.0,
                "m" | "min" => 60.0,
                "h" => 3600.0,
                other => return Err(format!("`{rule}`: unit `{other}` is not s, min or h")),
            };
            if !(count.is_finite() && count > 0.0) {
                return Err(format!("`{rule}`: the rate must be positive"));
            }
            let per_second = count / per;
            let burst = match burst {
                Some(b) => b
                    .trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|b| *b >= 1)
                    .ok_or_else(|| format!("`{rule}`: burst `{b}` is not a whole number ≥ 1"))?,
                None => (per_second.ceil() as u32).max(1),
            };
            out.insert(name, RateLimit { per_second, burst });
        }
        Ok(RateLimits(out))
    }

    pub fn get(&self, provider: &str) -> Option<RateLimit> {
        self.0.get(provider).copied()
    }
}

/// The answer of a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquire {
    /// A token was taken: call the provider.
    Granted,
    /// Empty: the next token is there after this long.
    Wait(Duration),
}

#[derive(Debug, thiserror::Error)]
pub enum RateLimitError {
    /// The bucket table could not be read or written.
    #[error("rate-limit table: {0}")]
    Store(String),
}

/// Takes a token for one provider call.
pub trait RateLimiter: Send + Sync {
    fn acquire(
        &self,
        provider: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Acquire, RateLimitError>> + Send;
}

/// Buckets in this process only: unit tests, and the fallback when no table is configured (each
/// container then keeps the rate on its own).
#[derive(Debug, Default)]
pub struct MemoryBucket {
    limits: RateLimits,
    buckets: Mutex<HashMap<String, BucketState>>,
}

impl MemoryBucket {
    pub fn new(limits: RateLimits) -> Self {
        MemoryBucket {
            limits,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn take(&self, provider: &str, now: DateTime<Utc>) -> Acquire {
        let Some(limit) = self.limits.get(provider) else {
            return Acquire::Granted;
        };
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let prev = buckets.get(provider).copied();
        match limit.take(prev, now.timestamp_millis()) {
            Ok(next) => {
                buckets.insert(provider.to_string(), next);
                Acquire::Granted
            }
            Err(wait) => Acquire::Wait(wait),
        }
    }
}

impl RateLimiter for MemoryBucket {
    fn acquire(
        &self,
        provider: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Acquire, RateLimitError>> + Send {
        std::future::ready(Ok(self.take(provider, now)))
    }
}

/// A bucket item as read, with its version.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Stored {
    state: BucketState,
    version: u64,
}

/// The buckets in a DynamoDB table shared by every container (`RATE_LIMIT_TABLE`).
#[derive(Debug)]
pub struct DynamoBucket {
    client: aws_sdk_dynamodb::Client,
    table: String,
    limits: RateLimits,
    /// The last item this container read or wrote per provider: the first write is tried on it
    /// without a read (one call per token while uncontended); a lost race re-reads.
    known: Mutex<HashMap<String, Stored>>,
}

enum WriteError {
    Lost,
    Other(RateLimitError),
}

impl DynamoBucket {
    pub fn new(
        client: aws_sdk_dynamodb::Client,
        table: impl Into<String>,
        limits: RateLimits,
    ) -> Self {
        DynamoBucket {
            client,
            table: table.into(),
            limits,
            known: Mutex::new(HashMap::new()),
        }
    }

    fn pk(provider: &str) -> String {
        format!("RATE#{provider}")
    }

    fn remembered(&self, provider: &str) -> Option<Stored> {
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(provider)
            .copied()
    }

    fn remember(&self, provider: &str, s: Stored) {
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(provider.to_string(), s);
    }

    async fn read(&self, provider: &str) -> Result<Option<Stored>, RateLimitError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(Self::pk(provider)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| RateLimitError::Store(aws_error::read(&e).message))?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let num = |k: &str| -> Result<&str, RateLimitError> {
            match item.get(k) {
                Some(AttributeValue::N(n)) => Ok(n.as_str()),
                _ => Err(RateLimitError::Store(format!(
                    "{}: attribute `{k}` is missing or not a number",
                    Self::pk(provider)
                ))),
            }
        };
        let bad = |k: &str| RateLimitError::Store(format!("{}: bad `{k}`", Self::pk(provider)));
        Ok(Some(Stored {
            state: BucketState {
                tokens: num("tokens")?.parse().map_err(|_| bad("tokens"))?,
                ts_ms: num("ts")?.parse().map_err(|_| bad("ts"))?,
            },
            version: num("v")?.parse().map_err(|_| bad("v"))?,
        }))
    }

    /// Write `next` if the item is still at `prev`'s version (absent when `prev` is `None`).
    async fn write(
        &self,
        provider: &str,
        next: BucketState,
        prev: Option<Stored>,
    ) -> Result<Stored, WriteError> {
        let version = prev.map_or(1, |p| p.version + 1);
        // Stored to the micro-token, rounded down: rounding never creates a token.
        let tokens = format!("{:.6}", (next.tokens * 1e6).floor() / 1e6);
        let req = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(Self::pk(provider)))
            .item("tokens", AttributeValue::N(tokens.clone()))
            .item("ts", AttributeValue::N(next.ts_ms.to_string()))
            .item("v", AttributeValue::N(version.to_string()))
            .item(
                "expires_at",
                AttributeValue::N((next.ts_ms / 1000 + ITEM_TTL_SECS).to_string()),
            );
        let req = match prev {
            None => req.condition_expression("attribute_not_exists(pk)"),
            Some(p) => req
                .condition_expression("#v = :prev")
                .expression_attribute_names("#v", "v")
                .expression_attribute_values(":prev", AttributeValue::N(p.version.to_string())),
        };
        match req.send().await {
            Ok(_) => Ok(Stored {
                // What was written, as a reader will parse it.
                state: BucketState {
                    tokens: tokens.parse().unwrap_or(next.tokens),
                    ts_ms: next.ts_ms,
                },
                version,
            }),
            Err(SdkError::ServiceError(se)) if se.err().is_conditional_check_failed_exception() => {
                Err(WriteError::Lost)
            }
            Err(e) => Err(WriteError::Other(RateLimitError::Store(
                aws_error::read(&e).message,
            ))),
        }
    }
}

impl RateLimiter for DynamoBucket {
    async fn acquire(&self, provider: &str, now: DateTime<Utc>) -> Result<Acquire, RateLimitError> {
        let Some(limit) = self.limits.get(provider) else {
            return Ok(Acquire::Granted);
        };
        let now_ms = now.timestamp_millis();
        // `Some(x)`: the item as last seen (x = None: absent); `None`: read it first.
        let mut seen: Option<Option<Stored>> = self.remembered(provider).map(Some);
        for race in 0..MAX_RACES {
            let current = match seen {
                Some(s) => s,
                None => self.read(provider).await?,
            };
            match limit.take(current.map(|s| s.state), now_ms) {
                // Others only ever take tokens, so a wait computed from an older view is never
                // shorter than the true one. The view is kept: after the wait this container
                // tries its write at once, on equal terms with the others.
                Err(wait) => {
                    if let Some(stored) = current {
                        self.remember(provider, stored);
                    }
                    return Ok(Acquire::Wait(wait));
                }
                Ok(next) => match self.write(provider, next, current).await {
                    Ok(stored) => {
                        self.remember(provider, stored);
                        return Ok(Acquire::Granted);
                    }
                    Err(WriteError::Lost) => {
                        tracing::debug!(provider, race, "rate-limit bucket race lost; re-reading");
                        seen = None;
                    }
                    Err(WriteError::Other(e)) => return Err(e),
                },
            }
        }
        // Heavily contended: others are taking the tokens; come back after one token's time.
        crate::metrics::count("RateLimitContended", &[("Provider", provider)]);
        Ok(Acquire::Wait(limit.time_for(1.0)))
    }
}

/// The limiter a process runs with, chosen at start-up.
#[derive(Debug, Default)]
pub enum Limiter {
    /// No limits.
    #[default]
    Unlimited,
    /// Per container.
    Memory(MemoryBucket),
    /// Shared by every container.
    Dynamo(DynamoBucket),
}

impl RateLimiter for Limiter {
    async fn acquire(&self, provider: &str, now: DateTime<Utc>) -> Result<Acquire, RateLimitError> {
        match self {
            Limiter::Unlimited => Ok(Acquire::Granted),
            Limiter::Memory(m) => m.acquire(provider, now).await,
            Limiter::Dynamo(d) => d.acquire(provider, now).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(ms: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 8, 0, 0).unwrap() + chrono::Duration::milliseconds(ms)
    }

    #[test]
    fn limits_parse_with_units_and_default_bursts() {
        let l = RateLimits::parse("kdniao=10/s:20, kuaidi100=300/min, taobao=0.5/s").unwrap();
        assert_eq!(
            l.get("kdniao"),
            Some(RateLimit {
                per_second: 10.0,
                burst: 20
            })
        );
        assert_eq!(
            l.get("kuaidi100"),
            Some(RateLimit {
                per_second: 5.0,
                burst: 5
            })
        );
        assert_eq!(
            l.get("taobao"),
            Some(RateLimit {
                per_second: 0.5,
                burst: 1
            })
        );
        assert!(RateLimits::parse("none").unwrap().0.is_empty());
        assert_eq!(
            RateLimits::default().get("kdniao").map(|l| l.burst),
            Some(20)
        );
    }

    #[test]
    fn bad_limits_are_refused_with_the_reason() {
        for (spec, needle) in [
            ("aftership=1/s", "unknown provider"),
            ("kdniao=10", "rate must be"),
            ("kdniao=ten/s", "not a number"),
            ("kdniao=10/d", "unit `d`"),
            ("kdniao=0/s", "positive"),
            ("kdniao=10/s:0", "burst"),
            ("kdniao", "is not `<provider>="),
        ] {
            let e = RateLimits::parse(spec).unwrap_err();
            assert!(e.contains(needle), "{spec}: {e}");
        }
    }

    #[test]
    fn a_bucket_gives_its_burst_then_the_rate() {
        let b = MemoryBucket::new(RateLimits::parse("kdniao=10/s:5").unwrap());
        let granted = (0..8)
            .filter(|_| b.take("kdniao", t(0)) == Acquire::Granted)
            .count();
        assert_eq!(granted, 5, "the burst at once");
        assert_eq!(
            b.take("kdniao", t(0)),
            Acquire::Wait(Duration::from_millis(100))
        );
        assert_eq!(
            b.take("kdniao", t(50)),
            Acquire::Wait(Duration::from_millis(50))
        );
        assert_eq!(b.take("kdniao", t(100)), Acquire::Granted);
        // One simulated second later: 10 more, not 11.
        let granted = (0..20)
            .filter(|_| b.take("kdniao", t(1100)) == Acquire::Granted)
            .count();
        assert_eq!(granted, 5, "refill is capped at the burst");
        assert_eq!(b.take("kuaidi100", t(0)), Acquire::Granted, "unlimited");
    }

    #[test]
    fn over_a_long_run_grants_are_rate_times_time_plus_burst() {
        let limit = RateLimit {
            per_second: 7.0,
            burst: 3,
        };
        let mut state = None;
        let mut granted = 0;
        // Asked every 10 ms for 10 s.
        for ms in (0..10_000).step_by(10) {
            if let Ok(next) = limit.take(state, ms) {
                state = Some(next);
                granted += 1;
            }
        }
        assert!((70..=73).contains(&granted), "{granted}");
    }

    #[test]
    fn a_clock_behind_the_bucket_refills_nothing_and_keeps_its_time() {
        let limit = RateLimit {
            per_second: 1.0,
            burst: 2,
        };
        let s = limit
            .take(
                Some(BucketState {
                    tokens: 1.5,
                    ts_ms: 10_000,
                }),
                9_000,
            )
            .unwrap();
        assert_eq!(
            s,
            BucketState {
                tokens: 0.5,
                ts_ms: 10_000
            }
        );
    }
}
