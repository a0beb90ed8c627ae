//! Retries with exponential back-off and "full jitter" (each wait drawn uniformly from
//! `0..=min(max_delay, base·2ⁿ)`, as in the AWS Architecture Blog's "Exponential Backoff And
//! Jitter"), bounded twice: by a number of attempts and by a total time. A retry whose wait would
//! end past the time budget is not made; the last error is returned instead.
//!
//! The clock and the random source are injectable ([`Clock`], [`Jitter::seeded`]) so that tests
//! can check both bounds without sleeping.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// How often and for how long to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least one is always made).
    pub max_attempts: u32,
    /// The cap of the first wait; each later cap doubles.
    pub base: Duration,
    /// No single wait is longer than this.
    pub max_delay: Duration,
    /// From the first attempt's start, no retry starts later than this.
    pub max_total: Duration,
}

impl RetryPolicy {
    /// The upper bound of the wait after failed attempt `n` (1-based): `min(max_delay, base·2ⁿ⁻¹)`.
    pub fn delay_cap(&self, n: u32) -> Duration {
        let shift = n.saturating_sub(1).min(31);
        self.base
            .checked_mul(1u32 << shift)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }
}

/// A small, fast pseudo-random source (SplitMix64) for jitter. Not for anything secret.
#[derive(Debug, Clone)]
pub struct Jitter(u64);

impl Jitter {
    /// A reproducible sequence (tests).
    pub fn seeded(seed: u64) -> Self {
        Jitter(seed)
    }

    /// A sequence seeded from the clock and a process-wide counter, so that concurrent callers
    /// (and containers started in the same nanosecond) draw different waits.
    pub fn from_entropy() -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let n = COUNTER.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
        Jitter(nanos ^ n ^ u64::from(std::process::id()).rotate_left(32))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A wait drawn uniformly from `0..=cap` (microsecond resolution): full jitter.
    pub fn full(&mut self, cap: Duration) -> Duration {
        let micros = cap.as_micros().min(u128::from(u64::MAX - 1)) as u64;
        Duration::from_micros(self.next_u64() % (micros + 1))
    }
}

/// Time as the retry loop sees it: how much has passed, and a way to wait.
pub trait Clock: Send + Sync {
    /// Time since an arbitrary fixed origin.
    fn elapsed(&self) -> Duration;
    /// Wait this long.
    fn sleep(&self, d: Duration) -> impl Future<Output = ()> + Send;
}

/// The real clock: tokio's (so a paused tokio test clock also applies).
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    origin: tokio::time::Instant,
}

impl Default for TokioClock {
    fn default() -> Self {
        TokioClock {
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn elapsed(&self) -> Duration {
        self.origin.elapsed()
    }
    fn sleep(&self, d: Duration) -> impl Future<Output = ()> + Send {
        tokio::time::sleep(d)
    }
}

/// A clock that only moves when told (or when slept on): tests, without real waiting.
#[derive(Debug, Default)]
pub struct ManualClock {
    now: Mutex<Duration>,
    sleeps: Mutex<Vec<Duration>>,
}

impl ManualClock {
    /// Move time forward (e.g. to stand for a slow attempt).
    pub fn advance(&self, d: Duration) {
        *self.now.lock().unwrap_or_else(|p| p.into_inner()) += d;
    }
    /// Every wait slept so far, in order.
    pub fn sleeps(&self) -> Vec<Duration> {
        self.sleeps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Clock for ManualClock {
    fn elapsed(&self) -> Duration {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn sleep(&self, d: Duration) -> impl Future<Output = ()> + Send {
        self.advance(d);
        self.sleeps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(d);
        std::future::ready(())
    }
}

/// Run `op` until it succeeds, fails with an error `is_retryable` refuses, has been made
/// `max_attempts` times, or the next wait would end past `max_total`; the last error is
/// returned. Real time, jitter from entropy.
pub async fn retry<T, E, F, Fut>(
    policy: &RetryPolicy,
    is_retryable: impl Fn(&E) -> bool,
    op: F,
) -> Result<T, E>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    retry_with(
        policy,
        &TokioClock::default(),
        &mut Jitter::from_entropy(),
        is_retryable,
        op,
    )
    .await
}

/// [`retry`] with its clock and random source given.
pub async fn retry_with<T, E, F, Fut, C>(
    policy: &RetryPolicy,
    clock: &C,
    jitter: &mut Jitter,
    is_retryable: impl Fn(&E) -> bool,
    mut op: F,
) -> Result<T, E>
where
    E: std::fmt::Display,
    C: Clock,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let start = clock.elapsed();
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        let err = match op().await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        if !is_retryable(&err) {
            return Err(err);
        }
        if attempt >= policy.max_attempts.max(1) {
            tracing::debug!(attempt, error = %err, "retries exhausted (attempts)");
            return Err(err);
        }
        let wait = jitter.full(policy.delay_cap(attempt));
        let spent = clock.elapsed().saturating_sub(start);
        if spent + wait > policy.max_total {
            tracing::debug!(
                attempt,
                spent_ms = spent.as_millis() as u64,
                wait_ms = wait.as_millis() as u64,
                error = %err,
                "retries exhausted (time budget)"
            );
            return Err(err);
        }
        tracing::debug!(attempt, wait_ms = wait.as_millis() as u64, error = %err, "retrying");
        clock.sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[derive(Debug, PartialEq)]
    enum E {
        Busy,
        Denied,
    }
    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{self:?}")
        }
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            base: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            max_total: Duration::from_secs(60),
        }
    }

    #[test]
    fn the_cap_doubles_up_to_the_maximum() {
        let p = policy();
        let caps: Vec<u128> = (1..=6).map(|n| p.delay_cap(n).as_millis()).collect();
        assert_eq!(caps, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(p.delay_cap(200), Duration::from_secs(1), "no overflow");
    }

    #[test]
    fn full_jitter_spans_zero_to_the_cap() {
        let mut j = Jitter::seeded(7);
        let cap = Duration::from_millis(100);
        let draws: Vec<Duration> = (0..2000).map(|_| j.full(cap)).collect();
        assert!(draws.iter().all(|d| *d <= cap));
        let low = draws.iter().filter(|d| **d < cap / 10).count();
        let high = draws.iter().filter(|d| **d > cap * 9 / 10).count();
        // Uniform: about 10% in each tail (equal jitter would put none in the low one).
        assert!((100..=300).contains(&low), "low tail {low}");
        assert!((100..=300).contains(&high), "high tail {high}");
        assert_eq!(j.full(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn seeded_jitter_is_reproducible() {
        let (mut a, mut b) = (Jitter::seeded(42), Jitter::seeded(42));
        let cap = Duration::from_secs(1);
        assert_eq!(
            (0..5).map(|_| a.full(cap)).collect::<Vec<_>>(),
            (0..5).map(|_| b.full(cap)).collect::<Vec<_>>()
        );
    }

    #[tokio::test]
    async fn attempts_are_bounded_in_count() {
        let clock = ManualClock::default();
        let calls = AtomicU32::new(0);
        let out: Result<(), E> = retry_with(
            &policy(),
            &clock,
            &mut Jitter::seeded(1),
            |e| *e == E::Busy,
            || {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err(E::Busy) }
            },
        )
        .await;
        assert_eq!(out, Err(E::Busy));
        assert_eq!(calls.load(Ordering::SeqCst), 5);
        let sleeps = clock.sleeps();
        assert_eq!(
            sleeps.len(),
            4,
            "a wait between attempts, none after the last"
        );
        for (i, s) in sleeps.iter().enumerate() {
            assert!(*s <= policy().delay_cap(i as u32 + 1), "wait {i}: {s:?}");
        }
    }

    #[tokio::test]
    async fn attempts_are_bounded_in_total_time_even_when_each_is_slow() {
        let clock = ManualClock::default();
        let calls = AtomicU32::new(0);
        let p = RetryPolicy {
            max_attempts: 100,
            max_total: Duration::from_secs(5),
            ..policy()
        };
        let out: Result<(), E> = retry_with(
            &p,
            &clock,
            &mut Jitter::seeded(3),
            |_| true,
            || {
                calls.fetch_add(1, Ordering::SeqCst);
                // Each attempt takes 700 ms.
                clock.advance(Duration::from_millis(700));
                async { Err(E::Busy) }
            },
        )
        .await;
        assert!(out.is_err());
        let n = calls.load(Ordering::SeqCst);
        // Every retry started within the budget: (n-1) attempts plus the waits fit in 5 s.
        let started_last = clock.elapsed() - Duration::from_millis(700);
        assert!(started_last <= p.max_total, "last start {started_last:?}");
        assert!(
            (4..=8).contains(&n),
            "{n} attempts in a 5 s budget of 0.7 s calls"
        );
    }

    #[tokio::test]
    async fn a_non_retryable_error_stops_at_once() {
        let clock = ManualClock::default();
        let calls = AtomicU32::new(0);
        let out: Result<(), E> = retry_with(
            &policy(),
            &clock,
            &mut Jitter::seeded(1),
            |e| *e == E::Busy,
            || {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err(E::Denied) }
            },
        )
        .await;
        assert_eq!(out, Err(E::Denied));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(clock.sleeps().is_empty());
    }

    #[tokio::test]
    async fn a_success_after_failures_is_returned() {
        let clock = ManualClock::default();
        let calls = AtomicU32::new(0);
        let out: Result<u32, E> = retry_with(
            &policy(),
            &clock,
            &mut Jitter::seeded(9),
            |_| true,
            || {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    if n < 3 {
                        Err(E::Busy)
                    } else {
                        Ok(n)
                    }
                }
            },
        )
        .await;
        assert_eq!(out, Ok(3));
        assert_eq!(clock.sleeps().len(), 2);
    }

    #[tokio::test]
    async fn the_real_clock_waits_at_most_the_budget() {
        let p = RetryPolicy {
            max_attempts: 50,
            base: Duration::from_millis(10),
            max_delay: Duration::from_millis(20),
            max_total: Duration::from_millis(100),
        };
        let started = std::time::Instant::now();
        let out: Result<(), E> = retry(&p, |_| true, || async { Err(E::Busy) }).await;
        assert!(out.is_err());
        let took = started.elapsed();
        assert!(took < Duration::from_millis(400), "took {took:?}");
    }
}
