//! Time sources. The sandbox decides what a carrier "has scanned so far" by asking a [`Clock`],
//! so tests can move time by hand ([`SimClock`]) and the standalone sandbox can run days of
//! journeys in minutes ([`AcceleratedClock`]).

use chrono::{DateTime, Duration, Utc};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A source of "now".
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to. Clones share the same time, so a test can keep one
/// handle and give another (as `Arc<dyn Clock>`) to the sandbox.
#[derive(Debug, Clone)]
pub struct SimClock {
    now: Arc<Mutex<DateTime<Utc>>>,
}

impl SimClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        SimClock {
            now: Arc::new(Mutex::new(start)),
        }
    }

    /// Move time forward (or backward, for a negative duration) and return the new time.
    pub fn advance(&self, by: Duration) -> DateTime<Utc> {
        let mut now = self.lock();
        // Saturate instead of panicking at the edge of chrono's range.
        *now = now.checked_add_signed(by).unwrap_or(*now);
        *now
    }

    pub fn set(&self, t: DateTime<Utc>) {
        *self.lock() = t;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DateTime<Utc>> {
        // A panic while holding this lock cannot leave a DateTime half-written: keep going.
        self.now
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Clock for SimClock {
    fn now(&self) -> DateTime<Utc> {
        *self.lock()
    }
}

/// Simulated time that runs `speed` times faster than the wall clock, starting at `start_sim`
/// when the wall clock (monotonic) read `start_wall`.
#[derive(Debug, Clone, Copy)]
pub struct AcceleratedClock {
    pub start_wall: Instant,
    pub start_sim: DateTime<Utc>,
    pub speed: f64,
}

impl AcceleratedClock {
    /// Starts now. A non-finite or negative speed is treated as 1 (real time).
    pub fn new(start_sim: DateTime<Utc>, speed: f64) -> Self {
        let speed = if speed.is_finite() && speed >= 0.0 {
            speed
        } else {
            1.0
        };
        AcceleratedClock {
            start_wall: Instant::now(),
            start_sim,
            speed,
        }
    }
}

impl Clock for AcceleratedClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed_ms = self.start_wall.elapsed().as_secs_f64() * 1000.0 * self.speed;
        // Clamp so that a huge speed saturates rather than overflowing chrono.
        let ms = elapsed_ms.clamp(0.0, i64::MAX as f64 / 2.0) as i64;
        let by = Duration::try_milliseconds(ms).unwrap_or(Duration::MAX);
        self.start_sim
            .checked_add_signed(by)
            .unwrap_or(self.start_sim)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 2, 0, 0)
            .single()
            .expect("valid test time")
    }

    #[test]
    fn sim_clock_clones_share_time() {
        let a = SimClock::new(t0());
        let b = a.clone();
        let dynb: Arc<dyn Clock> = Arc::new(b);
        assert_eq!(dynb.now(), t0());
        let moved = a.advance(Duration::hours(3));
        assert_eq!(moved, t0() + Duration::hours(3));
        assert_eq!(dynb.now(), t0() + Duration::hours(3));
        a.set(t0() - Duration::days(1));
        assert_eq!(dynb.now(), t0() - Duration::days(1));
    }

    #[test]
    fn sim_clock_saturates_instead_of_panicking() {
        let c = SimClock::new(t0());
        let after = c.advance(Duration::MAX);
        assert_eq!(after, t0());
    }

    #[test]
    fn accelerated_clock_runs_faster_than_the_wall() {
        let c = AcceleratedClock::new(t0(), 3600.0);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let elapsed = c.now() - t0();
        // 20 ms of wall time at 3600x is at least 72 s of simulated time.
        assert!(elapsed >= Duration::seconds(72), "elapsed {elapsed}");
        assert!(elapsed < Duration::hours(2), "elapsed {elapsed}");
    }

    #[test]
    fn accelerated_clock_rejects_nonsense_speed() {
        assert_eq!(AcceleratedClock::new(t0(), f64::NAN).speed, 1.0);
        assert_eq!(AcceleratedClock::new(t0(), -5.0).speed, 1.0);
    }

    #[test]
    fn system_clock_is_close_to_utc_now() {
        let d = (SystemClock.now() - Utc::now()).num_seconds().abs();
        assert!(d <= 1);
    }
}
