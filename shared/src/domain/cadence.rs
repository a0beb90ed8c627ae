//! How often a carrier usually writes a trace line at each stage of a parcel's journey: the
//! rhythm the check schedule ([`super::schedule::plan`]) follows so that a parcel is looked at
//! about twice per line the carrier writes, not every few minutes while nothing can happen.
//!
//! The table below holds **defaults**, not measurements: round figures for the four carrier
//! families of the Chinese express market, in line with the stage lengths the sandbox's journey
//! simulator draws (picked up 2–6 h before the first transit scan, a transit scan every 2–8 h,
//! 2–10 h from the destination city to the courier, 1.5–5 h out for delivery, return legs over
//! days). A figure learned from the parcels' own histories (the typical gap between lines of one
//! carrier at one stage) replaces a default through [`Cadence`] / [`LearnedCadence`]; nothing is
//! learned yet, the input exists so the learned figures can be fed in without touching the
//! schedule.

use super::status::Status;
use chrono::Duration;
use std::collections::BTreeMap;

/// A learned cadence for one carrier at one stage. `typical_gap: None` (the default): use the
/// default table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cadence {
    /// The usual time between two trace lines at this stage (e.g. the median gap observed).
    pub typical_gap: Option<Duration>,
}

impl Cadence {
    /// No learned figure: the default table applies.
    pub const DEFAULT: Cadence = Cadence { typical_gap: None };

    pub fn learned(typical_gap: Duration) -> Cadence {
        Cadence {
            typical_gap: Some(typical_gap),
        }
    }
}

/// Learned cadences by carrier code and stage. Empty by default: every lookup falls back on the
/// default table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LearnedCadence(BTreeMap<(String, Status), Duration>);

impl LearnedCadence {
    /// Record the typical gap of `carrier` at `stage` (carrier codes compare case-insensitively).
    pub fn set(&mut self, carrier: &str, stage: Status, typical_gap: Duration) {
        self.0
            .insert((carrier.trim().to_ascii_uppercase(), stage), typical_gap);
    }

    pub fn get(&self, carrier: &str, stage: Status) -> Cadence {
        Cadence {
            typical_gap: self
                .0
                .get(&(carrier.trim().to_ascii_uppercase(), stage))
                .copied(),
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
}
