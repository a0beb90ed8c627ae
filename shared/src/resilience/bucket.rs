//! Per-provider rate limits as token buckets. The bucket that matters lives in DynamoDB, so that
//! it holds across every tracker container at once: one item per provider (`pk = RATE#{provider}`)
//! with the tokens left (`tokens`), when they were counted (`ts`, ms since the epoch) and a
//! version (`v`). A taker refills the item by `rate × elapsed` up to the burst, takes tokens and
//! writes it back on condition that the version is still the one it saw (optimistic
//! concurrency). An empty bucket answers how long until the next token ([`Acquire::Wait`]).
//!
//! **Slices.** A container does not write the item once per provider call: that cost more than
//! the call it guarded (one conditional write per call, and the calls a container has in flight
//! all racing for the same item's condition, then retrying). Instead one write takes a *slice*
//! of tokens, as many as the container's callers are waiting for or as many as it asked for in
//! the last slice window, whichever is more, never more than one slice's refill
//! (`rate × RATE_LIMIT_SLICE_MS`) nor the burst, and only what the bucket holds. The container
//! keeps them in a pool of its own per provider and hands them to its calls without DynamoDB.
//! Within a container one refill per provider is in flight at a time (the pool is behind an
//! async mutex and the refill is made holding it): concurrent callers wait for that refill and
//! share its tokens, its wait or its error, so a conditional write can only lose to *another*
//! container. Tokens unused one slice time after they were taken are dropped, never written
//! back: a frozen or idle container does not hoard them, and whatever any container hands out
//! was taken from the shared bucket, so the global count holds (at most `rate × time + burst`
//! tokens over any run). What slices cost is spread: in any window of `T` the calls made are at
//! most `rate × (T + slice) + burst`, since a token may be spent up to one slice after it left
//! the bucket. And a container that stops calling wastes what is left of its last slice: the
//! take is sized on demand that is there (waiting callers) or has lasted a whole slice, not on a
//! lone wave of calls, to keep that small.
//!
//! A container that finds the bucket empty remembers until when, and answers its callers from
//! memory until then: no DynamoDB call is spent on learning that there is still no token.
//!
//! The table is a small one of its own (no stream), so that the limiter's writes do not reach the
//! notifier. Without a table, an in-memory bucket limits each container on its own.

use crate::aws_error;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often a write lost to another container is retried (on the item the failed write
/// returned) before the taker is told to wait one token's time. Within a container there is no
/// race: its refills are one at a time.
const MAX_RACES: u32 = 8;
/// Bucket items of providers no longer used expire a day after their last write.
const ITEM_TTL_SECS: i64 = 86_400;
/// The default slice (`RATE_LIMIT_SLICE_MS`): one write takes at most a second's refill, and a
/// container keeps unused tokens for at most a second.
pub const DEFAULT_SLICE: Duration = Duration::from_secs(1);
/// The longest slice accepted: every millisecond of slice is as much again of burst a provider
/// may see, so it stays short.
pub const MAX_SLICE: Duration = Duration::from_secs(10);

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
        self.take_up_to(prev, now_ms, 1).map(|(state, _)| state)
    }

    /// Refill `prev` (a full bucket when there is none) to `now_ms` and take as many whole
    /// tokens as it holds, up to `want` (at least 1 is asked for): the new state and the tokens
    /// taken, or, when not one whole token is there, how long until one is. Taking fewer than
    /// asked rather than nothing keeps a short bucket useful to the calls that are waiting.
    pub fn take_up_to(
        &self,
        prev: Option<BucketState>,
        now_ms: i64,
        want: u32,
    ) -> Result<(BucketState, u32), Duration> {
        let (tokens, ts_ms) = self.refill(prev, now_ms);
        let taken = tokens.floor().min(f64::from(want.max(1)));
        if taken >= 1.0 {
            Ok((
                BucketState {
                    tokens: tokens - taken,
                    ts_ms,
                },
                taken as u32,
            ))
        } else {
            Err(self.time_for(1.0 - tokens))
        }
    }

    /// How long until the bucket, refilled from `prev` (full when there is none), holds `n`
    /// whole tokens (`n` at least 1 and at most the burst, so it always will); zero when it
    /// does at `now_ms`.
    pub fn due(&self, prev: Option<BucketState>, now_ms: i64, n: u32) -> Duration {
        let (tokens, _) = self.refill(prev, now_ms);
        let n = f64::from(n.clamp(1, self.burst.max(1)));
        if tokens >= n {
            Duration::ZERO
        } else {
            self.time_for(n - tokens)
        }
    }

    /// `prev` refilled to `now_ms`: its tokens and when they were counted.
    fn refill(&self, prev: Option<BucketState>, now_ms: i64) -> (f64, i64) {
        let burst = f64::from(self.burst.max(1));
        match prev {
            None => (burst, now_ms),
            Some(p) => {
                // A clock behind the stored time refills nothing (and never moves `ts` back).
                let elapsed = (now_ms - p.ts_ms).max(0) as f64 / 1000.0;
                (
                    (p.tokens + elapsed * self.per_second).min(burst),
                    p.ts_ms.max(now_ms),
                )
            }
        }
    }

    /// The most tokens one container takes with one write: one `slice` of refill (at least 1),
    /// never more than the burst. Taking more than a slice's refill would take tokens other
    /// containers need sooner than this one can spend them.
    pub fn slice_tokens(&self, slice: Duration) -> u32 {
        let refill = (self.per_second * slice.as_secs_f64()).floor();
        (refill.min(f64::from(u32::MAX)) as u32).clamp(1, self.burst.max(1))
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
    /// No token now; ask again after this long. The caller decides whether to wait (within
    /// `RATE_LIMIT_MAX_WAIT_MS`) or to put the work off by this much (the tracker moves the
    /// check out to then). It is the time until the next token: from the in-memory bucket
    /// exactly; from a shared bucket as this container last saw the item, and until then this
    /// container answers `Wait` from memory, without a DynamoDB call. Other containers only
    /// ever take tokens, so a token is never there sooner than the figure says (a view that
    /// missed their takes gives a shorter figure, which the next write corrects). One
    /// exception: right after its write lost to another container, a container waits until the
    /// tokens of its whole take (at most half the burst) are due, so that containers competing
    /// for an empty bucket do not each spend a write per token.
    Wait(Duration),
}

#[derive(Debug, Clone, thiserror::Error)]
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
/// container then keeps the rate on its own). Taking a token costs no I/O, so there is nothing
/// to slice.
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

/// Why a conditional write of a bucket item did not happen.
#[derive(Debug)]
enum WriteError {
    /// Another container wrote first; the item as it is now, when the store returned it.
    Lost(Option<Stored>),
    Other(RateLimitError),
}

/// Where the shared bucket items live: DynamoDB in production, a map in the unit tests.
trait BucketItems: Send + Sync {
    /// The item of `provider` (strongly consistent), `None` when there is none.
    fn read(
        &self,
        provider: &str,
    ) -> impl Future<Output = Result<Option<Stored>, RateLimitError>> + Send;

    /// Write `next` if the item is still at `prev`'s version (absent when `prev` is `None`);
    /// what was written, as a reader will see it.
    fn write(
        &self,
        provider: &str,
        next: BucketState,
        prev: Option<Stored>,
    ) -> impl Future<Output = Result<Stored, WriteError>> + Send;
}

/// What a shared bucket did in this process, counted for tests and diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BucketStats {
    /// Conditional writes sent (one per slice taken, plus one per race lost).
    pub writes: u64,
    /// Writes lost to another container.
    pub lost: u64,
    /// Items read (only when no item is known, or a lost write returned none).
    pub reads: u64,
    /// Tokens taken from the shared bucket.
    pub taken: u64,
    /// Tokens handed to calls.
    pub granted: u64,
    /// Tokens dropped unused, one slice time after they were taken.
    pub dropped: u64,
    /// `Wait` answers, with or without a DynamoDB call.
    pub waits: u64,
    /// Acquires that lost [`MAX_RACES`] writes in a row to other containers.
    pub contended: u64,
}

#[derive(Debug, Default)]
struct Counters {
    writes: AtomicU64,
    lost: AtomicU64,
    reads: AtomicU64,
    taken: AtomicU64,
    granted: AtomicU64,
    dropped: AtomicU64,
    waits: AtomicU64,
    contended: AtomicU64,
}

impl Counters {
    fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    fn snapshot(&self) -> BucketStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        BucketStats {
            writes: get(&self.writes),
            lost: get(&self.lost),
            reads: get(&self.reads),
            taken: get(&self.taken),
            granted: get(&self.granted),
            dropped: get(&self.dropped),
            waits: get(&self.waits),
            contended: get(&self.contended),
        }
    }
}

/// Acquires counted per slice-long window. The count of the last whole window sizes the next
/// take: demand that filled one window usually goes on into the next, while a lone wave of calls
/// (one SQS batch) leaves the next window empty and takes only what is waiting, so that it does
/// not take tokens it would drop.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Demand {
    start_ms: i64,
    this: u32,
    last: u32,
}

impl Demand {
    fn note(&mut self, now_ms: i64, window_ms: i64) {
        if window_ms <= 0 {
            return;
        }
        let elapsed = now_ms - self.start_ms;
        if !(0..2 * window_ms).contains(&elapsed) {
            // Idle for a whole window or more (or the clock went back): no recent demand.
            *self = Demand {
                start_ms: now_ms,
                this: 0,
                last: 0,
            };
        } else if elapsed >= window_ms {
            self.last = self.this;
            self.this = 0;
            self.start_ms += window_ms;
        }
        self.this = self.this.saturating_add(1);
    }

    /// Acquires in the last whole window.
    fn last_window(&self) -> u32 {
        self.last
    }
}

/// What one container holds of one provider's shared bucket.
#[derive(Debug, Default)]
struct Pool {
    /// Whole tokens taken from the shared bucket and not yet handed out.
    tokens: u32,
    /// When they were taken (ms since the epoch).
    taken_ms: i64,
    /// The shared bucket holds no whole token before this (ms), as far as this container knows:
    /// until then an empty pool answers `Wait` without asking DynamoDB.
    empty_until_ms: i64,
    /// The item as last read, written or returned by a lost write (`Some(None)`: there is none).
    /// The next refill is computed on it and written without a read first: one call when no
    /// other container wrote since, two when one did (the lost write returns the item).
    known: Option<Option<Stored>>,
    demand: Demand,
    /// The error of the last refill, shared with the callers that waited for it.
    last_error: Option<RateLimitError>,
}

/// One provider's pool and the callers at it.
#[derive(Debug, Default)]
struct ProviderPool {
    /// Callers inside `acquire` for this provider (the one refilling and those queued behind
    /// it): how many tokens a refill is for, at least.
    pending: AtomicU32,
    /// Refills finished; a caller that sees it move while queued knows a refill ran for it.
    refills: AtomicU64,
    /// Single flight: a refill is made holding this lock, so the callers that come meanwhile
    /// wait for it rather than race it.
    pool: tokio::sync::Mutex<Pool>,
}

/// Counts a caller in `pending` for as long as it is inside `acquire`, even if its future is
/// dropped halfway.
struct PendingGuard<'a>(&'a AtomicU32);

impl<'a> PendingGuard<'a> {
    fn enter(c: &'a AtomicU32) -> Self {
        c.fetch_add(1, Ordering::SeqCst);
        PendingGuard(c)
    }
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn duration_ms(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// Shared buckets taken from in slices (see the module documentation), over any item store.
#[derive(Debug)]
struct Sliced<I> {
    items: I,
    limits: RateLimits,
    slice: Duration,
    pools: Mutex<HashMap<String, Arc<ProviderPool>>>,
    stats: Counters,
}

impl<I: BucketItems> Sliced<I> {
    fn new(items: I, limits: RateLimits) -> Self {
        Sliced {
            items,
            limits,
            slice: DEFAULT_SLICE,
            pools: Mutex::new(HashMap::new()),
            stats: Counters::default(),
        }
    }

    fn pool_of(&self, provider: &str) -> Arc<ProviderPool> {
        self.pools
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(provider.to_string())
            .or_default()
            .clone()
    }

    async fn acquire(&self, provider: &str, now: DateTime<Utc>) -> Result<Acquire, RateLimitError> {
        let Some(limit) = self.limits.get(provider) else {
            return Ok(Acquire::Granted);
        };
        let shared = self.pool_of(provider);
        let _pending = PendingGuard::enter(&shared.pending);
        let refills_seen = shared.refills.load(Ordering::SeqCst);
        let mut pool = shared.pool.lock().await;
        let now_ms = now.timestamp_millis();
        let slice_ms = millis(self.slice);
        pool.demand.note(now_ms, slice_ms);

        if pool.tokens > 0 {
            if now_ms - pool.taken_ms < slice_ms {
                pool.tokens -= 1;
                Counters::add(&self.stats.granted, 1);
                return Ok(Acquire::Granted);
            }
            tracing::debug!(
                provider,
                dropped = pool.tokens,
                "rate-limit tokens unused for a slice; dropped"
            );
            Counters::add(&self.stats.dropped, u64::from(pool.tokens));
            pool.tokens = 0;
        }
        // A refill ran while this caller queued for it and failed: the same answer, not another
        // attempt (with the table down, each attempt is the SDK's retries over seconds).
        if shared.refills.load(Ordering::SeqCst) != refills_seen {
            if let Some(e) = &pool.last_error {
                return Err(e.clone());
            }
        }
        if now_ms < pool.empty_until_ms {
            Counters::add(&self.stats.waits, 1);
            return Ok(Acquire::Wait(duration_ms(pool.empty_until_ms - now_ms)));
        }

        let cap = limit.slice_tokens(self.slice);
        if shared.pending.load(Ordering::SeqCst) < cap {
            // Callers that arrived at the same instant (the tracker's concurrent checks) get
            // one turn to count themselves in, so that one write serves them all.
            tokio::task::yield_now().await;
        }
        let want = shared
            .pending
            .load(Ordering::SeqCst)
            .max(pool.demand.last_window())
            .clamp(1, cap);
        let answer = self.refill(&mut pool, provider, limit, now_ms, want).await;
        pool.last_error = answer.as_ref().err().cloned();
        shared.refills.fetch_add(1, Ordering::SeqCst);
        answer
    }

    /// Take up to `want` tokens from the shared bucket with one conditional write (more only
    /// when another container wrote first), hand one to this caller and keep the rest in
    /// `pool`.
    async fn refill(
        &self,
        pool: &mut Pool,
        provider: &str,
        limit: RateLimit,
        now_ms: i64,
        want: u32,
    ) -> Result<Acquire, RateLimitError> {
        // How many tokens an empty bucket must hold before this container asks it again. One,
        // the next token, while this container has the bucket to itself: the shortest wait, so
        // its callers wait in process rather than put their checks off. When its write just
        // lost to another container, its whole take (at most half the burst, so that callers
        // sleeping the wait plus as much again of jitter find the bucket still refilling):
        // containers competing for an empty bucket would otherwise each try (and mostly lose)
        // a write once per token; this way they try once per take.
        let again = |race: u32| {
            if race == 0 {
                1
            } else {
                want.min((limit.burst / 2).max(1))
            }
        };
        for race in 0..MAX_RACES {
            let current = match pool.known {
                Some(known) => known,
                None => {
                    Counters::add(&self.stats.reads, 1);
                    let read = self.items.read(provider).await?;
                    pool.known = Some(read);
                    read
                }
            };
            match limit.take_up_to(current.map(|s| s.state), now_ms, want) {
                // Not one whole token: answered from memory until `again` tokens are due.
                Err(_) => {
                    let wait = limit.due(current.map(|s| s.state), now_ms, again(race));
                    pool.empty_until_ms = now_ms.saturating_add(millis(wait));
                    Counters::add(&self.stats.waits, 1);
                    return Ok(Acquire::Wait(wait));
                }
                Ok((next, got)) => {
                    Counters::add(&self.stats.writes, 1);
                    match self.items.write(provider, next, current).await {
                        Ok(stored) => {
                            pool.known = Some(Some(stored));
                            pool.tokens = got - 1;
                            pool.taken_ms = now_ms;
                            // What the bucket was left with: under a whole token, the callers
                            // this slice does not cover are answered from memory until `again`
                            // tokens are due.
                            pool.empty_until_ms = if stored.state.tokens < 1.0 {
                                now_ms.saturating_add(millis(limit.due(
                                    Some(stored.state),
                                    now_ms,
                                    again(race),
                                )))
                            } else {
                                0
                            };
                            Counters::add(&self.stats.taken, u64::from(got));
                            Counters::add(&self.stats.granted, 1);
                            return Ok(Acquire::Granted);
                        }
                        Err(WriteError::Lost(now_is)) => {
                            Counters::add(&self.stats.lost, 1);
                            tracing::debug!(
                                provider,
                                race,
                                "rate-limit bucket written by another container; retrying"
                            );
                            // The item the failed write returned, else read it.
                            pool.known = now_is.map(Some);
                        }
                        Err(WriteError::Other(e)) => {
                            pool.known = None;
                            return Err(e);
                        }
                    }
                }
            }
        }
        // Heavily contended: others are taking the tokens; come back after one token's time.
        Counters::add(&self.stats.contended, 1);
        Counters::add(&self.stats.waits, 1);
        crate::metrics::count("RateLimitContended", &[("Provider", provider)]);
        Ok(Acquire::Wait(limit.time_for(1.0)))
    }
}

/// The bucket items in a DynamoDB table.
#[derive(Debug)]
struct DynamoItems {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoItems {
    fn pk(provider: &str) -> String {
        format!("RATE#{provider}")
    }

    fn parse(
        provider: &str,
        item: &HashMap<String, AttributeValue>,
    ) -> Result<Stored, RateLimitError> {
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
        Ok(Stored {
            state: BucketState {
                tokens: num("tokens")?.parse().map_err(|_| bad("tokens"))?,
                ts_ms: num("ts")?.parse().map_err(|_| bad("ts"))?,
            },
            version: num("v")?.parse().map_err(|_| bad("v"))?,
        })
    }
}

impl BucketItems for DynamoItems {
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
        out.item.map(|i| Self::parse(provider, &i)).transpose()
    }

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
            )
            // A lost race answers with the winner's item: the retry needs no read.
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
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
                let now_is = match se.err() {
                    aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(c) => {
                        c.item().and_then(|i| Self::parse(provider, i).ok())
                    }
                    _ => None,
                };
                Err(WriteError::Lost(now_is))
            }
            Err(e) => Err(WriteError::Other(RateLimitError::Store(
                aws_error::read(&e).message,
            ))),
        }
    }
}

/// The buckets in a DynamoDB table shared by every container (`RATE_LIMIT_TABLE`), taken from
/// in slices: about one conditional write per slice of tokens rather than one per call (see the
/// module documentation).
#[derive(Debug)]
pub struct DynamoBucket(Sliced<DynamoItems>);

impl DynamoBucket {
    /// Slices of [`DEFAULT_SLICE`].
    pub fn new(
        client: aws_sdk_dynamodb::Client,
        table: impl Into<String>,
        limits: RateLimits,
    ) -> Self {
        DynamoBucket(Sliced::new(
            DynamoItems {
                client,
                table: table.into(),
            },
            limits,
        ))
    }

    /// Slices of this much refill time (`RATE_LIMIT_SLICE_MS`), at most [`MAX_SLICE`]: one
    /// write takes at most `rate × slice` tokens and tokens unused after `slice` are dropped.
    /// Zero takes one token per write (still one write at a time per container).
    pub fn with_slice(mut self, slice: Duration) -> Self {
        self.0.slice = slice.min(MAX_SLICE);
        self
    }

    /// What this bucket handle did so far.
    pub fn stats(&self) -> BucketStats {
        self.0.stats.snapshot()
    }
}

impl RateLimiter for DynamoBucket {
    async fn acquire(&self, provider: &str, now: DateTime<Utc>) -> Result<Acquire, RateLimitError> {
        self.0.acquire(provider, now).await
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

    #[test]
    fn a_take_gets_what_the_bucket_holds_up_to_the_ask() {
        let limit = RateLimit {
            per_second: 10.0,
            burst: 5,
        };
        // No item yet: a full bucket.
        let (s, got) = limit.take_up_to(None, 0, 3).unwrap();
        assert_eq!((s.tokens, got), (2.0, 3));
        // Only whole tokens leave; the fraction stays.
        let (s, got) = limit
            .take_up_to(
                Some(BucketState {
                    tokens: 2.7,
                    ts_ms: 0,
                }),
                0,
                8,
            )
            .unwrap();
        assert_eq!(got, 2);
        assert!((s.tokens - 0.7).abs() < 1e-9, "{}", s.tokens);
        // 0.4 + 150 ms × 10/s = 1.9: one whole token; the refill never passes the burst.
        let (s, got) = limit
            .take_up_to(
                Some(BucketState {
                    tokens: 0.4,
                    ts_ms: 1_000,
                }),
                1_150,
                4,
            )
            .unwrap();
        assert_eq!((got, s.ts_ms), (1, 1_150));
        assert!((s.tokens - 0.9).abs() < 1e-9, "{}", s.tokens);
        let (s, got) = limit
            .take_up_to(
                Some(BucketState {
                    tokens: 1.0,
                    ts_ms: 0,
                }),
                60_000,
                100,
            )
            .unwrap();
        assert_eq!((s.tokens, got), (0.0, 5), "capped at the burst");
        // Under one token: nothing taken, the time until there is one.
        assert_eq!(
            limit.take_up_to(
                Some(BucketState {
                    tokens: 0.4,
                    ts_ms: 0
                }),
                0,
                5
            ),
            Err(Duration::from_millis(60))
        );
        // Asking for zero asks for one.
        assert_eq!(limit.take_up_to(None, 0, 0).unwrap().1, 1);
    }

    #[test]
    fn a_slice_is_one_slice_time_of_refill_within_the_burst() {
        let l = |per_second, burst| RateLimit { per_second, burst };
        let s = Duration::from_secs(1);
        assert_eq!(l(10.0, 20).slice_tokens(s), 10);
        assert_eq!(l(10.0, 5).slice_tokens(s), 5, "never more than the burst");
        assert_eq!(l(0.5, 1).slice_tokens(s), 1, "never less than one");
        assert_eq!(l(20.0, 40).slice_tokens(Duration::from_millis(250)), 5);
        assert_eq!(l(10.0, 20).slice_tokens(Duration::ZERO), 1);
    }

    #[test]
    fn demand_is_the_count_of_the_last_whole_window() {
        let mut d = Demand::default();
        for ms in [5_000, 5_100, 5_200] {
            d.note(ms, 1000);
        }
        assert_eq!(d.last_window(), 0, "a first window has no past");
        d.note(6_050, 1000);
        assert_eq!(d.last_window(), 3);
        d.note(6_900, 1000);
        assert_eq!(d.last_window(), 3, "same window");
        d.note(7_000, 1000);
        assert_eq!(d.last_window(), 2, "6 000–7 000 saw two");
        d.note(9_500, 1000);
        assert_eq!(d.last_window(), 0, "a whole idle window in between forgets");
        d.note(9_400, 1000);
        assert_eq!(d.last_window(), 0, "a clock going back forgets");
    }

    #[tokio::test]
    async fn the_memory_bucket_answers_through_the_limiter_with_the_wait() {
        let l = Limiter::Memory(MemoryBucket::new(
            RateLimits::parse("kdniao=2/s:1").unwrap(),
        ));
        assert_eq!(l.acquire("kdniao", t(0)).await.unwrap(), Acquire::Granted);
        assert_eq!(
            l.acquire("kdniao", t(100)).await.unwrap(),
            Acquire::Wait(Duration::from_millis(400))
        );
        assert_eq!(l.acquire("kdniao", t(500)).await.unwrap(), Acquire::Granted);
        assert_eq!(
            l.acquire("taobao", t(0)).await.unwrap(),
            Acquire::Granted,
            "not limited"
        );
    }

    /// A bucket table in memory shared by the "containers" of a test: versioned conditional
    /// writes like DynamoDB's, a lost write answering with the current item, every call
    /// counted, and a switch that makes every call fail.
    #[derive(Debug, Default)]
    struct Table {
        items: Mutex<HashMap<String, Stored>>,
        reads: AtomicU64,
        writes: AtomicU64,
        failing: std::sync::atomic::AtomicBool,
    }

    impl Table {
        fn calls(&self) -> (u64, u64) {
            (
                self.reads.load(Ordering::SeqCst),
                self.writes.load(Ordering::SeqCst),
            )
        }
    }

    impl BucketItems for Arc<Table> {
        async fn read(&self, provider: &str) -> Result<Option<Stored>, RateLimitError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            // A round trip: other tasks run meanwhile.
            tokio::task::yield_now().await;
            if self.failing.load(Ordering::SeqCst) {
                return Err(RateLimitError::Store("down".into()));
            }
            Ok(self.items.lock().unwrap().get(provider).copied())
        }

        async fn write(
            &self,
            provider: &str,
            next: BucketState,
            prev: Option<Stored>,
        ) -> Result<Stored, WriteError> {
            self.writes.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
            if self.failing.load(Ordering::SeqCst) {
                return Err(WriteError::Other(RateLimitError::Store("down".into())));
            }
            let mut items = self.items.lock().unwrap();
            let current = items.get(provider).copied();
            if current.map(|c| c.version) != prev.map(|p| p.version) {
                return Err(WriteError::Lost(current));
            }
            let stored = Stored {
                state: next,
                version: prev.map_or(1, |p| p.version + 1),
            };
            items.insert(provider.to_string(), stored);
            Ok(stored)
        }
    }

    fn container(table: &Arc<Table>, spec: &str) -> Sliced<Arc<Table>> {
        Sliced::new(table.clone(), RateLimits::parse(spec).unwrap())
    }

    async fn acquire_all(b: &Sliced<Arc<Table>>, n: usize, at: i64) -> Vec<Acquire> {
        futures::future::join_all((0..n).map(|_| b.acquire("kdniao", t(at))))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect()
    }

    #[tokio::test]
    async fn concurrent_callers_in_a_container_share_one_write() {
        let table = Arc::new(Table::default());
        let b = container(&table, "kdniao=10/s:20");
        let answers = acquire_all(&b, 8, 0).await;
        assert!(
            answers.iter().all(|a| *a == Acquire::Granted),
            "{answers:?}"
        );
        assert_eq!(table.calls(), (1, 1), "the item read once, one write");
        // 20 at once with slices of 10 (one second of 10/s): two writes.
        let table = Arc::new(Table::default());
        let b = container(&table, "kdniao=10/s:20");
        let answers = acquire_all(&b, 20, 0).await;
        assert_eq!(
            answers.iter().filter(|a| **a == Acquire::Granted).count(),
            20
        );
        assert_eq!(table.calls(), (1, 2));
        let s = b.stats.snapshot();
        assert_eq!((s.taken, s.granted, s.lost, s.contended), (20, 20, 0, 0));
    }

    #[tokio::test]
    async fn a_sustained_pace_takes_a_window_of_tokens_and_drops_what_goes_stale() {
        let table = Arc::new(Table::default());
        let b = container(&table, "kdniao=10/s:20");
        // One call every 200 ms: the first window knows no past, each call takes one token.
        for ms in (0..1000).step_by(200) {
            assert_eq!(acquire_all(&b, 1, ms).await, [Acquire::Granted]);
        }
        assert_eq!(table.calls().1, 5);
        // The pace went on: the next take is the last window's five, in one write.
        assert_eq!(acquire_all(&b, 1, 1000).await, [Acquire::Granted]);
        assert_eq!(acquire_all(&b, 1, 1200).await, [Acquire::Granted]);
        assert_eq!(
            table.calls().1,
            6,
            "the second call of the window used the slice"
        );
        // Three tokens are left; one more call, then the calls stop and the last two go stale
        // one slice after the take.
        assert_eq!(acquire_all(&b, 1, 1999).await, [Acquire::Granted]);
        assert_eq!(table.calls().1, 6);
        assert_eq!(acquire_all(&b, 1, 2000).await, [Acquire::Granted]);
        assert_eq!(table.calls().1, 7, "a stale slice is not used");
        let s = b.stats.snapshot();
        assert_eq!(s.dropped, 2, "{s:?}");
        assert_eq!(
            s.granted + s.dropped + u64::from(b_tokens(&b).await),
            s.taken
        );
    }

    async fn b_tokens(b: &Sliced<Arc<Table>>) -> u32 {
        b.pool_of("kdniao").pool.lock().await.tokens
    }

    #[tokio::test]
    async fn an_empty_bucket_answers_wait_from_memory_until_the_next_token() {
        let table = Arc::new(Table::default());
        let b = container(&table, "kdniao=2/s:2");
        assert_eq!(acquire_all(&b, 2, 0).await, [Acquire::Granted; 2]);
        assert_eq!(table.calls(), (1, 1));
        // The write left the bucket empty; the next token is due 500 ms after it.
        assert_eq!(
            acquire_all(&b, 3, 100).await,
            [Acquire::Wait(Duration::from_millis(400)); 3]
        );
        assert_eq!(table.calls(), (1, 1), "no DynamoDB call for a known wait");
        assert_eq!(acquire_all(&b, 1, 500).await, [Acquire::Granted]);
        assert_eq!(
            acquire_all(&b, 1, 600).await,
            [Acquire::Wait(Duration::from_millis(400))]
        );
        assert_eq!(table.calls(), (1, 2));
        // Two callers, one token there: it goes to one, the other is told when the next is due.
        assert_eq!(
            acquire_all(&b, 2, 1000).await,
            [Acquire::Granted, Acquire::Wait(Duration::from_millis(500))]
        );
        assert_eq!(table.calls(), (1, 3));
        let s = b.stats.snapshot();
        assert_eq!((s.waits, s.granted, s.taken, s.lost), (5, 4, 4, 0));
    }

    #[tokio::test]
    async fn a_container_that_loses_a_write_waits_for_its_whole_take() {
        let table = Arc::new(Table::default());
        let a = container(&table, "kdniao=10/s:20");
        let b = container(&table, "kdniao=10/s:20");
        assert_eq!(acquire_all(&a, 20, 0).await, [Acquire::Granted; 20]);
        assert_eq!(
            acquire_all(&b, 1, 0).await,
            [Acquire::Wait(Duration::from_millis(100))],
            "b read the empty bucket: the next token"
        );
        // 100 ms later one token is there. a takes it; its other callers wait for the next.
        let answers = acquire_all(&a, 5, 100).await;
        assert_eq!(answers[0], Acquire::Granted);
        assert_eq!(answers[1..], [Acquire::Wait(Duration::from_millis(100)); 4]);
        // b, on its view from before a's take, writes and loses: its four callers are told to
        // come back when four tokens are due, not one.
        let answers = acquire_all(&b, 4, 100).await;
        assert_eq!(answers, [Acquire::Wait(Duration::from_millis(400)); 4]);
        let s = b.stats.snapshot();
        assert_eq!((s.writes, s.lost, s.waits), (1, 1, 5));
    }

    #[tokio::test]
    async fn a_write_lost_to_another_container_is_retried_on_the_item_it_returned() {
        let table = Arc::new(Table::default());
        let a = container(&table, "kdniao=10/s:20");
        let b = container(&table, "kdniao=10/s:20");
        assert_eq!(acquire_all(&a, 1, 0).await, [Acquire::Granted]);
        assert_eq!(acquire_all(&b, 1, 0).await, [Acquire::Granted]);
        // a's view is one version old: its write loses, and the retry needs no read.
        assert_eq!(acquire_all(&a, 1, 10).await, [Acquire::Granted]);
        let s = a.stats.snapshot();
        assert_eq!((s.reads, s.writes, s.lost, s.contended), (1, 3, 1, 0));
        assert_eq!(table.calls(), (2, 4));
        let left = table.items.lock().unwrap()["kdniao"];
        assert_eq!(left.version, 3);
        assert!((left.state.tokens - 17.1).abs() < 1e-9, "{left:?}");
    }

    #[tokio::test]
    async fn a_failed_refill_answers_every_caller_that_waited_for_it() {
        let table = Arc::new(Table::default());
        table.failing.store(true, Ordering::SeqCst);
        let b = container(&table, "kdniao=10/s:20");
        let answers = futures::future::join_all((0..6).map(|_| b.acquire("kdniao", t(0)))).await;
        assert!(answers
            .iter()
            .all(|a| matches!(a, Err(RateLimitError::Store(_)))));
        assert_eq!(
            table.calls(),
            (1, 0),
            "one attempt (its read) for the six callers"
        );
        // A caller that comes later tries again, and succeeds once the table is back.
        table.failing.store(false, Ordering::SeqCst);
        assert_eq!(acquire_all(&b, 1, 10).await, [Acquire::Granted]);
        assert_eq!(table.calls(), (2, 1));
    }

    #[tokio::test]
    async fn containers_together_never_take_more_than_rate_times_time_plus_burst() {
        let table = Arc::new(Table::default());
        let spec = "kdniao=10/s:20";
        let containers: Vec<_> = (0..3).map(|_| container(&table, spec)).collect();
        let (mut granted, mut waits) = (0u64, 0u64);
        // 10 s of simulated time; every 50 ms each container has 2 calls: 120/s asked of 10/s.
        for ms in (0..10_000).step_by(50) {
            for c in &containers {
                for a in acquire_all(c, 2, ms).await {
                    match a {
                        Acquire::Granted => granted += 1,
                        Acquire::Wait(w) => {
                            waits += 1;
                            assert!(w <= Duration::from_secs(1), "at most a slice: {w:?}");
                        }
                    }
                }
            }
        }
        let ceiling = 10 * 10 + 20;
        assert!(granted <= ceiling, "{granted} > {ceiling}");
        assert!(granted >= 100, "{granted}: the rate is used, not wasted");
        assert!(waits > granted);
        let stats: Vec<_> = containers.iter().map(|c| c.stats.snapshot()).collect();
        let taken: u64 = stats.iter().map(|s| s.taken).sum();
        assert!(taken <= ceiling, "{taken} tokens left the shared bucket");
        assert!(
            stats.iter().all(|s| s.granted > 0 && s.contended == 0),
            "{stats:?}"
        );
        let (reads, writes) = table.calls();
        println!("{granted} granted, {waits} waits, {reads} reads, {writes} writes: {stats:?}");
        assert!(
            writes + reads < granted,
            "{writes} writes and {reads} reads for {granted} tokens"
        );
    }
}
