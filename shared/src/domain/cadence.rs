//! How often a carrier usually writes a trace line at each stage of a parcel's journey: the
//! rhythm the check schedule ([`super::schedule::plan`]) follows so that a parcel is looked at
//! about twice per line the carrier writes, not every few minutes while nothing can happen.
//!
//! The table below holds **defaults**, not measurements: round figures for the four carrier
//! families of the Chinese express market, in line with the stage lengths the sandbox's journey
//! simulator draws (picked up 2–6 h before the first transit scan, a transit scan every 2–8 h,
//! 2–10 h from the destination city to the courier, 1.5–5 h out for delivery, return legs over
//! days). Figures learned from the carrier's own delivered parcels replace them through
//! [`Cadence::from_history`]: the median quiet gap (the typical gap) and, with more samples, its
//! 2nd percentile (the quiet start: how soon after a line the next one practically never comes).
//! The tracker learns them from the stream-driven stage aggregates the analytics function keeps.

use super::stall::StageHistory;
use super::status::Status;
use chrono::Duration;
use std::collections::BTreeMap;

/// The typical gap is learned from this many quiet gaps of a carrier at a stage (as the stall
/// thresholds are: `stall::MIN_SAMPLES`).
pub const TYPICAL_GAP_MIN_SAMPLES: u64 = 30;
/// The quiet start is a low quantile of the quiet gaps...
pub const QUIET_START_QUANTILE: f64 = 0.02;
/// ...and needs this many samples: with fewer, the 2nd percentile is one or two odd parcels.
pub const QUIET_START_MIN_SAMPLES: u64 = 100;

/// A carrier's cadence at one stage. `Cadence::DEFAULT`: nothing learned, the default table
/// applies and the schedule assumes the next line can come at any moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cadence {
    /// The usual time between two trace lines at this stage (the median gap observed).
    pub typical_gap: Option<Duration>,
    /// The time after a line during which the carrier practically never writes the next one at
    /// this stage (the 2nd percentile of the gaps): a courier who has just scanned a parcel out
    /// for delivery does not ring the bell a minute later. The schedule does not spend the tier
    /// interval on that window ([`super::schedule::adaptive_interval`]).
    pub quiet_start: Option<Duration>,
}

impl Cadence {
    /// No learned figure: the default table applies.
    pub const DEFAULT: Cadence = Cadence {
        typical_gap: None,
        quiet_start: None,
    };

    /// A learned typical gap alone.
    pub fn learned(typical_gap: Duration) -> Cadence {
        Cadence {
            typical_gap: Some(typical_gap),
            quiet_start: None,
        }
    }

    pub fn with_quiet_start(self, quiet_start: Duration) -> Cadence {
        Cadence {
            quiet_start: Some(quiet_start),
            ..self
        }
    }

    /// What `history` holds for `carrier` at `stage`: the median quiet gap once
    /// [`TYPICAL_GAP_MIN_SAMPLES`] gaps stand behind it, the [`QUIET_START_QUANTILE`] once
    /// [`QUIET_START_MIN_SAMPLES`] do; each figure `None` (the defaults) below that, or when not
    /// positive.
    pub fn from_history(history: &dyn StageHistory, carrier: &str, stage: Status) -> Cadence {
        let learned = |q: f64, min: u64| {
            history
                .quiet_gap_quantile(carrier, stage, q)
                .filter(|(d, n)| *n >= min && *d > Duration::zero())
                .map(|(d, _)| d)
        };
        Cadence {
            typical_gap: learned(0.5, TYPICAL_GAP_MIN_SAMPLES),
            quiet_start: learned(QUIET_START_QUANTILE, QUIET_START_MIN_SAMPLES),
        }
    }

    pub fn is_default(&self) -> bool {
        *self == Cadence::DEFAULT
    }
}

/// Learned cadences by carrier code and stage. Empty by default: every lookup falls back on the
/// default table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LearnedCadence(BTreeMap<(String, Status), Cadence>);

fn key(carrier: &str, stage: Status) -> (String, Status) {
    (carrier.trim().to_ascii_uppercase(), stage)
}

impl LearnedCadence {
    /// Record the typical gap of `carrier` at `stage` (carrier codes compare case-insensitively).
    pub fn set(&mut self, carrier: &str, stage: Status, typical_gap: Duration) {
        self.set_cadence(carrier, stage, Cadence::learned(typical_gap));
    }

    /// Record the whole cadence of `carrier` at `stage`.
    pub fn set_cadence(&mut self, carrier: &str, stage: Status, cadence: Cadence) {
        self.0.insert(key(carrier, stage), cadence);
    }

    pub fn get(&self, carrier: &str, stage: Status) -> Cadence {
        self.0
            .get(&key(carrier, stage))
            .copied()
            .unwrap_or(Cadence::DEFAULT)
    }

    /// Fill in what `history` has learned for `carrier` ([`Cadence::from_history`]) at every
    /// stage this table does not already set: explicit figures win over learned ones. The
    /// history is asked under the canonical (upper-case) code, as the aggregates store it.
    pub fn learn_from(&mut self, history: &dyn StageHistory, carrier: &str) {
        for stage in Status::ALL.into_iter().filter(|s| !s.is_terminal()) {
            let k = key(carrier, stage);
            if self.0.contains_key(&k) {
                continue;
            }
            let c = Cadence::from_history(history, &k.0, stage);
            if !c.is_default() {
                self.0.insert(k, c);
            }
        }
    }
}

/// Carrier families that move parcels at different speeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// Directly operated networks (SF, JD): scanned at every step, faster trunk lines.
    Direct,
    /// The franchised Tongda networks (YTO, ZTO, STO, YD, J&T) and every carrier not listed.
    Tongda,
    /// China Post's networks (EMS, China Post parcels): slower trunk legs.
    Postal,
    /// Freight-first networks (Deppon): fewer, longer legs.
    Freight,
}

/// The family of a carrier code (parcelwatch's code = Kdniao ShipperCode). Unknown codes are
/// Tongda-like, the bulk of the market.
pub fn family(carrier: &str) -> Family {
    match carrier.trim().to_ascii_uppercase().as_str() {
        "SF" | "JD" => Family::Direct,
        "EMS" | "YZPY" => Family::Postal,
        "DBL" => Family::Freight,
        _ => Family::Tongda,
    }
}

/// The default typical gap between trace lines of `carrier` at `stage`. `None` for terminal
/// statuses (nothing follows them).
pub fn default_typical_gap(carrier: &str, stage: Status) -> Option<Duration> {
    use Family::*;
    let f = family(carrier);
    let minutes = match stage {
        s if s.is_terminal() => return None,
        // Labels are printed hours before the courier calls; the pickup scan usually comes the
        // same half-day.
        Status::Pending | Status::InfoReceived => 60,
        // From the pickup scan to the outlet's departure scan.
        Status::PickedUp => 120,
        Status::InTransit => match f {
            Direct => 180,
            Tongda => 240,
            Postal | Freight => 360,
        },
        // From arrival in the destination city to the courier's round (often the next morning).
        Status::ArrivedAtDestinationCity => 120,
        // A courier's round: the signature comes within hours of the 派件 scan.
        Status::OutForDelivery => 60,
        // Buyers collect from a locker or station within the day.
        Status::AvailableForPickup => 120,
        // A failed attempt is retried on a later round, usually the next day.
        Status::DeliveryFailed => 240,
        Status::Exception => 120,
        // Return legs are transit legs without urgency.
        Status::Returning => match f {
            Direct | Tongda => 480,
            Postal | Freight => 720,
        },
        // Unreachable (terminal statuses returned above); a safe middle value if it ever is not.
        _ => 120,
    };
    Some(Duration::minutes(minutes))
}

/// The typical gap of `carrier` at `stage`: the learned figure when there is a usable one (a
/// positive gap), otherwise the default table. `None` for terminal statuses.
pub fn typical_gap(carrier: &str, stage: Status, learned: Cadence) -> Option<Duration> {
    let default = default_typical_gap(carrier, stage)?;
    Some(
        learned
            .typical_gap
            .filter(|g| *g > Duration::zero())
            .unwrap_or(default),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_by_carrier_code() {
        let table = [
            ("SF", Family::Direct),
            ("jd", Family::Direct),
            ("YTO", Family::Tongda),
            ("ZTO", Family::Tongda),
            ("STO", Family::Tongda),
            ("YD", Family::Tongda),
            ("JTSD", Family::Tongda),
            ("EMS", Family::Postal),
            ("YZPY", Family::Postal),
            ("DBL", Family::Freight),
            ("UNKNOWN", Family::Tongda),
            ("", Family::Tongda),
        ];
        for (code, fam) in table {
            assert_eq!(family(code), fam, "{code}");
        }
    }

    /// Minutes by stage for one carrier of each family (`None` = terminal).
    #[test]
    fn default_gaps_by_carrier_and_stage() {
        use Status::*;
        let table: [(Status, [Option<i64>; 4]); 13] = [
            // (stage, [SF, YTO, EMS, DBL])
            (Pending, [Some(60); 4]),
            (InfoReceived, [Some(60); 4]),
            (PickedUp, [Some(120); 4]),
            (InTransit, [Some(180), Some(240), Some(360), Some(360)]),
            (ArrivedAtDestinationCity, [Some(120); 4]),
            (OutForDelivery, [Some(60); 4]),
            (AvailableForPickup, [Some(120); 4]),
            (Delivered, [None; 4]),
            (DeliveryFailed, [Some(240); 4]),
            (Exception, [Some(120); 4]),
            (Returning, [Some(480), Some(480), Some(720), Some(720)]),
            (Returned, [None; 4]),
            (Expired, [None; 4]),
        ];
        assert_eq!(
            table.iter().map(|r| r.0).collect::<Vec<_>>(),
            Status::ALL.to_vec()
        );
        for (stage, gaps) in table {
            for (carrier, want) in ["SF", "YTO", "EMS", "DBL"].into_iter().zip(gaps) {
                assert_eq!(
                    default_typical_gap(carrier, stage).map(|d| d.num_minutes()),
                    want,
                    "{carrier} {stage}"
                );
            }
        }
    }

    #[test]
    fn a_learned_gap_overrides_the_default_unless_unusable() {
        let h = Duration::hours;
        assert_eq!(
            typical_gap("YTO", Status::InTransit, Cadence::DEFAULT),
            Some(h(4))
        );
        assert_eq!(
            typical_gap("YTO", Status::InTransit, Cadence::learned(h(7))),
            Some(h(7))
        );
        // A zero or negative figure (an empty history) is ignored.
        for bad in [Duration::zero(), -h(1)] {
            assert_eq!(
                typical_gap("YTO", Status::InTransit, Cadence::learned(bad)),
                Some(h(4))
            );
        }
        // Nothing follows a terminal status, learned or not.
        assert_eq!(
            typical_gap("YTO", Status::Delivered, Cadence::learned(h(1))),
            None
        );
    }

    #[test]
    fn learned_cadence_is_looked_up_by_carrier_and_stage() {
        let mut l = LearnedCadence::default();
        l.set("zto", Status::InTransit, Duration::hours(5));
        assert_eq!(
            l.get("ZTO", Status::InTransit),
            Cadence::learned(Duration::hours(5))
        );
        assert_eq!(l.get("ZTO", Status::PickedUp), Cadence::DEFAULT);
        assert_eq!(l.get("YTO", Status::InTransit), Cadence::DEFAULT);
    }

    /// `n` quiet gaps of `carrier` at `stage`, spread evenly from `lo` to `hi` minutes.
    fn history(
        carrier: &str,
        stage: Status,
        n: i64,
        lo: i64,
        hi: i64,
    ) -> super::super::stall::LearnedHistory {
        let mut h = super::super::stall::LearnedHistory::new();
        let t0 = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
        for i in 0..n {
            let gap = Duration::minutes(lo + (hi - lo) * i / (n - 1).max(1));
            h.learn(
                carrier,
                None,
                None,
                &[(t0, stage), (t0 + gap, Status::Delivered)],
            );
        }
        h
    }

    #[test]
    fn the_history_teaches_the_typical_gap_and_the_quiet_start_once_it_has_enough_samples() {
        let m = Duration::minutes;
        // 29 gaps: too few for anything.
        let thin = history("ZTO", Status::OutForDelivery, 29, 90, 300);
        assert_eq!(
            Cadence::from_history(&thin, "ZTO", Status::OutForDelivery),
            Cadence::DEFAULT
        );
        // 30 to 99: the median only.
        let some = history("ZTO", Status::OutForDelivery, 31, 90, 300);
        assert_eq!(
            Cadence::from_history(&some, "ZTO", Status::OutForDelivery),
            Cadence::learned(m(195))
        );
        // 100 and more: the quiet start too (nearest rank: the 3rd of 101 gaps 90, 92, 94, … 300 min).
        let many = history("ZTO", Status::OutForDelivery, 101, 90, 300);
        let c = Cadence::from_history(&many, "ZTO", Status::OutForDelivery);
        assert_eq!(c, Cadence::learned(m(195)).with_quiet_start(m(94)));
        // Another carrier or stage learns nothing from it.
        assert_eq!(
            Cadence::from_history(&many, "YTO", Status::OutForDelivery),
            Cadence::DEFAULT
        );
        assert_eq!(
            Cadence::from_history(&many, "ZTO", Status::InTransit),
            Cadence::DEFAULT
        );
    }

    #[test]
    fn explicit_figures_win_over_learned_ones() {
        let h = history("ZTO", Status::OutForDelivery, 101, 90, 300);
        let mut l = LearnedCadence::default();
        l.set("ZTO", Status::InTransit, Duration::hours(5));
        l.set("zto", Status::OutForDelivery, Duration::hours(1));
        l.learn_from(&h, "ZTO");
        assert_eq!(
            l.get("ZTO", Status::OutForDelivery),
            Cadence::learned(Duration::hours(1))
        );
        assert_eq!(
            l.get("ZTO", Status::InTransit),
            Cadence::learned(Duration::hours(5))
        );
        let mut fresh = LearnedCadence::default();
        fresh.learn_from(&h, "zto");
        assert!(fresh
            .get("ZTO", Status::OutForDelivery)
            .quiet_start
            .is_some());
        assert_eq!(fresh.get("ZTO", Status::PickedUp), Cadence::DEFAULT);
    }
}
