//! Circuit breakers, one per provider, held per container (each Lambda container learns on its
//! own; the shared token bucket is what holds across containers).
//!
//! Closed: calls pass; `failure_threshold` consecutive failures open it. Open: calls are refused
//! until the cooldown is over. Half-open: one probe is let through; its success closes the
//! breaker, its failure re-opens it with the cooldown doubled (up to `max_cooldown`). A provider
//! that states how long to wait (throttling, spent quota) opens its breaker for that long at once.
//!
//! Time is given by the caller (`now`), so the breaker follows the tracker's clock.

use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// When a breaker opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open a closed breaker.
    pub failure_threshold: u32,
    /// How long a breaker stays open the first time.
    pub cooldown: Duration,
    /// The longest cooldown: doubling stops here. (A provider's stated wait is honoured up to
    /// [`MAX_STATED_WAIT`] instead.)
    pub max_cooldown: Duration,
}

/// The longest a provider's own stated wait (throttling ban, spent quota) keeps it open.
pub const MAX_STATED_WAIT: Duration = Duration::from_secs(12 * 3600);

impl Default for BreakerConfig {
    /// 5 failures in a row; open 30 s, doubling up to 10 min.
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            cooldown: Duration::from_secs(30),
            max_cooldown: Duration::from_secs(600),
        }
    }
}

/// One breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed {
        failures: u32,
    },
    Open {
        until: DateTime<Utc>,
        /// The cooldown that opened it (the next one doubles it).
        cooldown: Duration,
    },
    HalfOpen {
        /// A probe is out; everyone else waits for its outcome.
        probing: bool,
        cooldown: Duration,
    },
}

/// Whether a call may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Closed: go ahead.
    Allowed,
    /// Half-open: go ahead as the one probe; report its outcome (or [`Breakers::release`]).
    Probe,
    /// Open (until then, when known) or another probe is out.
    Refused { until: Option<DateTime<Utc>> },
}

/// What a reported failure did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tripped {
    /// Still closed (below the threshold).
    No,
    /// The breaker opened (or re-opened) until then.
    Opened {
        until: DateTime<Utc>,
        cooldown: Duration,
    },
}

/// The breakers of every provider of a process, created closed on first use.
#[derive(Debug, Default)]
pub struct Breakers {
    cfg: BreakerConfig,
    states: Mutex<HashMap<String, BreakerState>>,
}

fn add(now: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::hours(12))
}

impl Breakers {
    pub fn new(cfg: BreakerConfig) -> Self {
        Breakers {
            cfg,
            states: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> BreakerConfig {
        self.cfg
    }

    fn with<R>(&self, name: &str, f: impl FnOnce(&mut BreakerState) -> R) -> R {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        let state = states
            .entry(name.to_string())
            .or_insert(BreakerState::Closed { failures: 0 });
        f(state)
    }

    /// The provider's breaker state now (closed when never used).
    pub fn state(&self, name: &str) -> BreakerState {
        self.with(name, |s| *s)
    }

    /// May `name` be called at `now`? An open breaker whose cooldown is over turns half-open and
    /// admits this caller as its probe.
    pub fn admit(&self, name: &str, now: DateTime<Utc>) -> Admission {
        self.with(name, |s| match *s {
            BreakerState::Closed { .. } => Admission::Allowed,
            BreakerState::Open { until, cooldown } if until <= now => {
                *s = BreakerState::HalfOpen {
                    probing: true,
                    cooldown,
                };
                Admission::Probe
            }
            BreakerState::Open { until, .. } => Admission::Refused { until: Some(until) },
            BreakerState::HalfOpen {
                probing: false,
                cooldown,
            } => {
                *s = BreakerState::HalfOpen {
                    probing: true,
                    cooldown,
                };
                Admission::Probe
            }
            BreakerState::HalfOpen { probing: true, .. } => Admission::Refused { until: None },
        })
    }

    /// The probe admitted by [`Breakers::admit`] was not made after all (e.g. no rate-limit
    /// token): let the next caller probe.
    pub fn release(&self, name: &str) {
        self.with(name, |s| {
            if let BreakerState::HalfOpen { cooldown, .. } = *s {
                *s = BreakerState::HalfOpen {
                    probing: false,
                    cooldown,
                };
            }
        })
    }

    /// The provider answered (a permanent rejection of one query counts: the provider is up).
    pub fn success(&self, name: &str) {
        self.with(name, |s| *s = BreakerState::Closed { failures: 0 })
    }

    /// The provider failed. With `stated_wait` (throttling, spent quota) the breaker opens at once
    /// for that long (up to [`MAX_STATED_WAIT`]); otherwise it opens at the threshold, or re-opens with a doubled
    /// cooldown when the failure was a half-open probe's.
    pub fn failure(
        &self,
        name: &str,
        now: DateTime<Utc>,
        stated_wait: Option<Duration>,
    ) -> Tripped {
        let cfg = self.cfg;
        self.with(name, |s| {
            let next = match (*s, stated_wait) {
                (_, Some(wait)) => {
                    let wait = wait.min(MAX_STATED_WAIT);
                    let cooldown = match *s {
                        BreakerState::Open { cooldown, .. }
                        | BreakerState::HalfOpen { cooldown, .. } => cooldown,
                        BreakerState::Closed { .. } => cfg.cooldown,
                    };
                    Some((add(now, wait), cooldown))
                }
                (BreakerState::Closed { failures }, None) => {
                    let failures = failures + 1;
                    if failures >= cfg.failure_threshold.max(1) {
                        Some((add(now, cfg.cooldown), cfg.cooldown))
                    } else {
                        *s = BreakerState::Closed { failures };
                        None
                    }
                }
                (BreakerState::HalfOpen { cooldown, .. }, None) => {
                    let doubled = cooldown.saturating_mul(2).min(cfg.max_cooldown);
                    Some((add(now, doubled), doubled))
                }
                // A call admitted before the breaker opened failed too: it stays open as it is.
                (BreakerState::Open { .. }, None) => None,
            };
            match next {
                Some((until, cooldown)) => {
                    // Never shorten a longer stated ban.
                    let until = match *s {
                        BreakerState::Open { until: prev, .. } => until.max(prev),
                        _ => until,
                    };
                    *s = BreakerState::Open { until, cooldown };
                    Tripped::Opened { until, cooldown }
                }
                None => Tripped::No,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 8, 0, 0).unwrap()
    }
    fn at(secs: i64) -> DateTime<Utc> {
        t0() + chrono::Duration::seconds(secs)
    }
    fn breakers() -> Breakers {
        Breakers::new(BreakerConfig {
            failure_threshold: 3,
            cooldown: Duration::from_secs(10),
            max_cooldown: Duration::from_secs(30),
        })
    }

    #[test]
    fn it_opens_after_k_consecutive_failures_only() {
        let b = breakers();
        assert_eq!(b.failure("kdniao", at(0), None), Tripped::No);
        assert_eq!(b.failure("kdniao", at(0), None), Tripped::No);
        b.success("kdniao"); // a success in between resets the run
        assert_eq!(b.failure("kdniao", at(1), None), Tripped::No);
        assert_eq!(b.failure("kdniao", at(1), None), Tripped::No);
        assert_eq!(b.admit("kdniao", at(1)), Admission::Allowed);
        assert_eq!(
            b.failure("kdniao", at(1), None),
            Tripped::Opened {
                until: at(11),
                cooldown: Duration::from_secs(10)
            }
        );
        assert_eq!(
            b.admit("kdniao", at(5)),
            Admission::Refused {
                until: Some(at(11))
            }
        );
        assert_eq!(
            b.admit("kuaidi100", at(5)),
            Admission::Allowed,
            "per provider"
        );
    }

    #[test]
    fn half_open_lets_one_probe_through_and_its_success_closes() {
        let b = breakers();
        for _ in 0..3 {
            b.failure("taobao", at(0), None);
        }
        assert_eq!(b.admit("taobao", at(10)), Admission::Probe);
        assert_eq!(
            b.admit("taobao", at(10)),
            Admission::Refused { until: None },
            "one probe at a time"
        );
        b.success("taobao");
        assert_eq!(b.state("taobao"), BreakerState::Closed { failures: 0 });
        assert_eq!(b.admit("taobao", at(10)), Admission::Allowed);
    }

    #[test]
    fn a_failed_probe_doubles_the_cooldown_up_to_the_cap() {
        let b = breakers();
        for _ in 0..3 {
            b.failure("taobao", at(0), None);
        }
        let mut now = 10;
        let mut cooldowns = vec![];
        for _ in 0..4 {
            assert_eq!(b.admit("taobao", at(now)), Admission::Probe);
            match b.failure("taobao", at(now), None) {
                Tripped::Opened { until, cooldown } => {
                    cooldowns.push(cooldown.as_secs());
                    now = (until - t0()).num_seconds();
                }
                Tripped::No => panic!("a failed probe re-opens"),
            }
        }
        assert_eq!(cooldowns, [20, 30, 30, 30]);
    }

    #[test]
    fn a_released_probe_lets_the_next_caller_probe() {
        let b = breakers();
        for _ in 0..3 {
            b.failure("kdniao", at(0), None);
        }
        assert_eq!(b.admit("kdniao", at(20)), Admission::Probe);
        b.release("kdniao");
        assert_eq!(b.admit("kdniao", at(20)), Admission::Probe);
    }

    #[test]
    fn a_stated_wait_opens_at_once_and_is_capped() {
        let b = breakers();
        assert_eq!(
            b.failure("kdniao", at(0), Some(Duration::from_secs(20))),
            Tripped::Opened {
                until: at(20),
                cooldown: Duration::from_secs(10)
            }
        );
        // A shorter failure afterwards does not shorten the ban.
        assert_eq!(
            b.failure("kdniao", at(1), Some(Duration::from_secs(5))),
            Tripped::Opened {
                until: at(20),
                cooldown: Duration::from_secs(10)
            }
        );
        let c = breakers();
        assert_eq!(
            c.failure("kdniao", at(0), Some(Duration::from_secs(3 * 86400))),
            Tripped::Opened {
                until: at(12 * 3600),
                cooldown: Duration::from_secs(10)
            },
            "capped at MAX_STATED_WAIT"
        );
    }
}
