//! Stalls and delays: seeing a stuck parcel before the buyer does.
//!
//! A parcel is **stalled** when no trace line has come for longer than its carrier normally
//! stays quiet at its stage, and **late** when it has been on the road longer than most of its
//! carrier's parcels on the route. Both are decided here, purely, from the shipment, a few facts
//! of its trace, and a [`StageHistory`] (what the carrier's delivered parcels looked like).
//!
//! The verdict is written as a sub-status in our own vocabulary (`parcelwatch:stalled;…`,
//! `parcelwatch:late;…`): a sub-status change is a [`Transition`], so it reaches the notifier
//! through the table's stream and the ledger sends its merchant alert once. The decision after a
//! check ([`super::check::decide`]) asks [`assess`] and the deadlines here; it also keeps the
//! flag from flapping and pulls the next check forward to the moment the parcel would become
//! stalled, so that a stall is seen when it happens, not at the next planned check.

use super::shipment::{Shipment, Transition};
use super::status::{Status, SubStatus};
use super::trace::{EventKey, TraceEvent, TraceSnapshot};
use chrono::{DateTime, Duration, Utc};
use std::collections::HashMap;

/// The sub-status vocabulary of our own verdicts (providers' codes use theirs: `kdniao`, ...).
pub const FLAG_PROVIDER: &str = "parcelwatch";

/// What the carrier's past parcels tell about how long it stays quiet and how long it takes.
/// Implemented by the stream-driven aggregates (h-analytics' `HistorySnapshot`, loaded from the
/// table), by [`LearnedHistory`] (in memory) and by [`NoHistory`].
pub trait StageHistory {
    /// q-quantile (0..=1) of the quiet gap (time between two consecutive trace lines) seen at `stage` for `carrier`, and how many samples stand behind it. None: no data.
    fn quiet_gap_quantile(
        &self,
        carrier: &str,
        stage: Status,
        q: f64,
    ) -> Option<(chrono::Duration, u64)>;
    /// q-quantile of pickup-to-delivery time for the carrier on a route (province names, None = any), with the sample count.
    fn delivery_time_quantile(
        &self,
        carrier: &str,
        origin: Option<&str>,
        destination: Option<&str>,
        q: f64,
    ) -> Option<(chrono::Duration, u64)>;
}

/// The stream-driven aggregates (`store::analytics`) answer for the history.
impl StageHistory for super::stats::HistorySnapshot {
    fn quiet_gap_quantile(&self, carrier: &str, stage: Status, q: f64) -> Option<(Duration, u64)> {
        super::stats::HistorySnapshot::quiet_gap_quantile(self, carrier, stage, q)
    }
    fn delivery_time_quantile(
        &self,
        carrier: &str,
        origin: Option<&str>,
        destination: Option<&str>,
        q: f64,
    ) -> Option<(Duration, u64)> {
        super::stats::HistorySnapshot::delivery_time_quantile(self, carrier, origin, destination, q)
    }
}

/// No history at all: every threshold is the stage's fixed fallback, and nobody is called late.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHistory;

impl StageHistory for NoHistory {
    fn quiet_gap_quantile(&self, _: &str, _: Status, _: f64) -> Option<(Duration, u64)> {
        None
    }
    fn delivery_time_quantile(
        &self,
        _: &str,
        _: Option<&str>,
        _: Option<&str>,
        _: f64,
    ) -> Option<(Duration, u64)> {
        None
    }
}

/// Route key of [`LearnedHistory`]: carrier, origin and destination province.
type RouteKey = (String, Option<String>, Option<String>);

/// A history learned in memory from delivered parcels' trace lines. The tests use it; a function
/// without the table's aggregates can use it as a fallback learned from what it has seen.
#[derive(Debug, Clone, Default)]
pub struct LearnedHistory {
    /// Quiet gaps in seconds per (carrier, stage), kept sorted.
    gaps: HashMap<(String, Status), Vec<i64>>,
    /// Pickup-to-delivery times in seconds per route, kept sorted; each parcel is counted under
    /// its exact route and under "any route" (`None`, `None`).
    deliveries: HashMap<RouteKey, Vec<i64>>,
}

fn insert_sorted(v: &mut Vec<i64>, x: i64) {
    let at = v.partition_point(|y| *y <= x);
    v.insert(at, x);
}

/// Nearest-rank quantile of a sorted sample.
fn quantile(sorted: &[i64], q: f64) -> Option<(Duration, u64)> {
    if sorted.is_empty() || !(0.0..=1.0).contains(&q) {
        return None;
    }
    let n = sorted.len();
    let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
    Some((Duration::seconds(sorted[rank - 1]), n as u64))
}

impl LearnedHistory {
    pub fn new() -> Self {
        Self::default()
    }

    /// Learn from one parcel's trajectory: each line's time and the status the parcel was in
    /// after it, in any order. Every gap between consecutive lines is a quiet gap of the stage
    /// the parcel was in while it waited (the earlier line's); a parcel that reached `Delivered`
    /// adds its pickup-to-delivery time (first line to first delivered line).
    pub fn learn(
        &mut self,
        carrier: &str,
        origin: Option<&str>,
        destination: Option<&str>,
        lines: &[(DateTime<Utc>, Status)],
    ) {
        let mut lines = lines.to_vec();
        lines.sort_by_key(|(t, _)| *t);
        for pair in lines.windows(2) {
            let ((a, stage), (b, _)) = (pair[0], pair[1]);
            insert_sorted(
                self.gaps.entry((carrier.to_string(), stage)).or_default(),
                (b - a).num_seconds(),
            );
        }
        let start = lines.first().map(|(t, _)| *t);
        let delivered = lines
            .iter()
            .find(|(_, s)| *s == Status::Delivered)
            .map(|(t, _)| *t);
        if let (Some(start), Some(end)) = (start, delivered) {
            let secs = (end - start).num_seconds();
            let exact = (
                carrier.to_string(),
                origin.map(str::to_string),
                destination.map(str::to_string),
            );
            let any = (carrier.to_string(), None, None);
            if exact != any {
                insert_sorted(self.deliveries.entry(exact).or_default(), secs);
            }
            insert_sorted(self.deliveries.entry(any).or_default(), secs);
        }
    }
}

impl StageHistory for LearnedHistory {
    fn quiet_gap_quantile(&self, carrier: &str, stage: Status, q: f64) -> Option<(Duration, u64)> {
        quantile(self.gaps.get(&(carrier.to_string(), stage))?, q)
    }
    fn delivery_time_quantile(
        &self,
        carrier: &str,
        origin: Option<&str>,
        destination: Option<&str>,
        q: f64,
    ) -> Option<(Duration, u64)> {
        let key = (
            carrier.to_string(),
            origin.map(str::to_string),
            destination.map(str::to_string),
        );
        quantile(self.deliveries.get(&key)?, q)
    }
}

// ---------------------------------------------------------------------------------------------
// Thresholds.

/// A learned threshold needs at least this many samples behind its quantile; below that the
/// stage's fallback holds. 30 gaps put the 95th percentile between the 2nd-highest sample and
/// the highest, enough not to be one odd parcel.
pub const MIN_SAMPLES: u64 = 30;
/// The quiet gap most of a carrier's parcels stay under at a stage...
pub const GAP_QUANTILE: f64 = 0.95;
/// ...and how far beyond it a parcel must be before it is called stalled.
pub const GAP_MARGIN: f64 = 1.5;
/// No learned threshold is shorter than this: a carrier whose parcels are scanned every hour
/// still leaves them unscanned for a night.
pub const THRESHOLD_FLOOR: Duration = Duration::hours(6);
/// Late: beyond this quantile of the route's pickup-to-delivery time...
pub const LATE_QUANTILE: f64 = 0.9;
/// ...times this margin (at the 90th percentile itself one parcel in ten would be "late").
pub const LATE_MARGIN: f64 = 1.25;

/// Quiet time after which a parcel at `stage` is stalled while the carrier's history is thin.
/// `None`: the stage is not watched for stalls.
///
/// - InfoReceived 48 h: labels are printed in batches and a courier collects once or twice a
///   day; a label two days old with no pickup is a parcel nobody came for.
/// - PickedUp 24 h: a collected parcel leaves its outlet for the first sorting hub that evening
///   or the next morning.
/// - InTransit 20 h: between hubs a parcel is scanned every few hours (the simulator: every
///   2–8 h); an overnight trunk leg leaves 10–12 h without a line, 20 h is past any ordinary leg.
/// - ArrivedAtDestinationCity 36 h: a parcel that reaches the city depot after the morning round
///   waits for the next day's round (the simulator: up to ~28 h).
/// - OutForDelivery 24 h: a courier's round ends the same day; still "out for delivery" a day
///   later means neither delivered nor brought back with a scan.
///
/// Not watched: Pending (no answer yet: nothing to measure), AvailableForPickup (waiting for the
/// buyer, not the carrier; Kdniao's 412 covers it), Exception and DeliveryFailed (the carrier has
/// already said what is wrong), Returning (the merchant was told when it turned back), terminal.
pub fn fallback_threshold(stage: Status) -> Option<Duration> {
    Some(match stage {
        Status::InfoReceived => Duration::hours(48),
        Status::PickedUp => Duration::hours(24),
        Status::InTransit => Duration::hours(20),
        Status::ArrivedAtDestinationCity => Duration::hours(36),
        Status::OutForDelivery => Duration::hours(24),
        _ => return None,
    })
}

/// Where a threshold comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// The stage's fixed fallback (history too thin).
    Fallback,
    /// Learned: the quantile of the carrier's history, over `samples` samples.
    Learned { samples: u64 },
}

impl Basis {
    /// `fallback` or `n120` (the sample count), as written in the flag.
    pub fn code(&self) -> String {
        match self {
            Basis::Fallback => "fallback".into(),
            Basis::Learned { samples } => format!("n{samples}"),
        }
    }
    fn parse(s: &str) -> Option<Basis> {
        match s {
            "fallback" => Some(Basis::Fallback),
            _ => s
                .strip_prefix('n')?
                .parse()
                .ok()
                .map(|samples| Basis::Learned { samples }),
        }
    }
}

/// How long a parcel may stay quiet, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Threshold {
    pub after: Duration,
    pub basis: Basis,
}

fn scale(d: Duration, factor: f64) -> Duration {
    Duration::seconds((d.num_seconds() as f64 * factor).round() as i64)
}

/// The stall threshold of `carrier` at `stage`: learned (the [`GAP_QUANTILE`] quiet gap ×
/// [`GAP_MARGIN`], at least [`THRESHOLD_FLOOR`]) once [`MIN_SAMPLES`] gaps stand behind it,
/// otherwise the stage's [`fallback_threshold`]. Read from `history` every time: as history
/// grows the threshold follows.
pub fn stall_threshold(
    carrier: &str,
    stage: Status,
    history: &dyn StageHistory,
) -> Option<Threshold> {
    let fallback = fallback_threshold(stage)?;
    Some(
        match history.quiet_gap_quantile(carrier, stage, GAP_QUANTILE) {
            Some((gap, samples)) if samples >= MIN_SAMPLES => Threshold {
                after: scale(gap, GAP_MARGIN).max(THRESHOLD_FLOOR),
                basis: Basis::Learned { samples },
            },
            _ => Threshold {
                after: fallback,
                basis: Basis::Fallback,
            },
        },
    )
}

/// When a parcel on the road is late: beyond `after` (= `p90` × [`LATE_MARGIN`]) since pickup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LateThreshold {
    pub p90: Duration,
    pub after: Duration,
    pub basis: Basis,
}

/// The lateness threshold on a route: the route's own history when [`MIN_SAMPLES`] deliveries
/// stand behind it, else the carrier's on any route, else none (nobody is called late on a
/// guess: transit times differ by days between routes).
pub fn late_threshold(
    carrier: &str,
    origin: Option<&str>,
    destination: Option<&str>,
    history: &dyn StageHistory,
) -> Option<LateThreshold> {
    let enough = |r: Option<(Duration, u64)>| r.filter(|(_, n)| *n >= MIN_SAMPLES);
    let route = (origin.is_some() || destination.is_some())
        .then(|| history.delivery_time_quantile(carrier, origin, destination, LATE_QUANTILE))
        .flatten();
    let (p90, samples) = enough(route)
        .or_else(|| enough(history.delivery_time_quantile(carrier, None, None, LATE_QUANTILE)))?;
    Some(LateThreshold {
        p90,
        after: scale(p90, LATE_MARGIN),
        basis: Basis::Learned { samples },
    })
}

/// Stages at which a parcel is on the road and can be late.
fn on_the_road(stage: Status) -> bool {
    matches!(
        stage,
        Status::PickedUp
            | Status::InTransit
            | Status::ArrivedAtDestinationCity
            | Status::OutForDelivery
    )
}

// ---------------------------------------------------------------------------------------------
// Assessment.

/// What the shipment alone does not hold: when the journey started and its route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Facts<'a> {
    /// The first carrier line (pickup), if known.
    pub picked_up_at: Option<DateTime<Utc>>,
    /// Origin and destination province, when known (None = any route).
    pub origin: Option<&'a str>,
    pub destination: Option<&'a str>,
}

impl Facts<'_> {
    /// Pickup from an answer's identified lines (as [`Facts::from_snapshot`]), leaving out
    /// future-dated ones: a wrong clock does not start the journey.
    pub fn from_lines(lines: &[(EventKey, TraceEvent)]) -> Facts<'static> {
        Facts::picked_up_from(
            lines
                .iter()
                .map(|(_, e)| e)
                .filter(|e| !e.is_future_dated()),
        )
    }

    /// Pickup from a provider's answer: the first line at or past PickedUp, else the first line.
    pub fn from_snapshot(snapshot: &TraceSnapshot) -> Facts<'static> {
        Facts::picked_up_from(snapshot.events.iter())
    }

    fn picked_up_from<'e>(lines: impl Iterator<Item = &'e TraceEvent> + Clone) -> Facts<'static> {
        let first_picked = lines
            .clone()
            .filter(|e| {
                e.status
                    .is_some_and(|s| s.progress() >= Status::PickedUp.progress())
            })
            .map(|e| e.time)
            .min();
        Facts {
            picked_up_at: first_picked.or_else(|| lines.map(|e| e.time).min()),
            origin: None,
            destination: None,
        }
    }
}

/// Something is wrong with the parcel's progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finding {
    /// No trace line at `stage` for `quiet_for`, beyond the `threshold`.
    Stalled {
        stage: Status,
        quiet_for: Duration,
        threshold: Duration,
        basis: Basis,
    },
    /// On the road for `elapsed` since pickup, beyond `threshold` (= `p90` × margin).
    Late {
        elapsed: Duration,
        p90: Duration,
        threshold: Duration,
        basis: Basis,
    },
}

/// The kind of a flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagKind {
    Stalled,
    Late,
}

impl FlagKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FlagKind::Stalled => "stalled",
            FlagKind::Late => "late",
        }
    }
}

impl Finding {
    pub fn kind(&self) -> FlagKind {
        match self {
            Finding::Stalled { .. } => FlagKind::Stalled,
            Finding::Late { .. } => FlagKind::Late,
        }
    }

    /// The sub-status that records this finding on the shipment:
    /// `parcelwatch:stalled;after=1200m;fallback` or `parcelwatch:late;after=4500m;p90=3600m;n120`.
    /// The threshold and its basis travel with the flag, so that the notifier (which has no
    /// history) can say why; the stage and the quiet time follow from the shipment itself.
    pub fn sub_status(&self) -> SubStatus {
        let code = match self {
            Finding::Stalled {
                threshold, basis, ..
            } => format!(
                "stalled;after={}m;{}",
                threshold.num_minutes(),
                basis.code()
            ),
            Finding::Late {
                p90,
                threshold,
                basis,
                ..
            } => format!(
                "late;after={}m;p90={}m;{}",
                threshold.num_minutes(),
                p90.num_minutes(),
                basis.code()
            ),
        };
        SubStatus::new(FLAG_PROVIDER, code)
    }
}

/// A flag read back from a sub-status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flag {
    pub kind: FlagKind,
    pub threshold: Option<Duration>,
    pub p90: Option<Duration>,
    pub basis: Option<Basis>,
}

impl Flag {
    /// `Some` for our own stall/late sub-statuses, `None` for a provider's code.
    pub fn parse(sub: &SubStatus) -> Option<Flag> {
        if sub.provider != FLAG_PROVIDER {
            return None;
        }
        let mut parts = sub.code.split(';');
        let kind = match parts.next()? {
            "stalled" => FlagKind::Stalled,
            "late" => FlagKind::Late,
            _ => return None,
        };
        let minutes = |v: &str| {
            v.strip_suffix('m')?
                .parse::<i64>()
                .ok()
                .map(Duration::minutes)
        };
        let mut flag = Flag {
            kind,
            threshold: None,
            p90: None,
            basis: None,
        };
        for part in parts {
            match part.split_once('=') {
                Some(("after", v)) => flag.threshold = minutes(v),
                Some(("p90", v)) => flag.p90 = minutes(v),
                Some(_) => {}
                None => flag.basis = Basis::parse(part),
            }
        }
        Some(flag)
    }

    pub fn of(sub: Option<&SubStatus>) -> Option<Flag> {
        sub.and_then(Flag::parse)
    }
}

/// Since when the parcel has been quiet: its newest line, or (no line yet) its registration.
pub fn quiet_since(s: &Shipment) -> DateTime<Utc> {
    s.last_event.as_ref().map_or(s.created_at, |(k, _)| k.time)
}

/// Is the parcel stalled or late at `now`? Stalled wins (it says more: nothing is moving).
pub fn assess(
    s: &Shipment,
    facts: &Facts,
    history: &dyn StageHistory,
    now: DateTime<Utc>,
) -> Option<Finding> {
    if s.status.is_terminal() {
        return None;
    }
    let carrier = s.id.carrier.as_str();
    if let Some(th) = stall_threshold(carrier, s.status, history) {
        let quiet_for = now - quiet_since(s);
        if quiet_for >= th.after {
            return Some(Finding::Stalled {
                stage: s.status,
                quiet_for,
                threshold: th.after,
                basis: th.basis,
            });
        }
    }
    if on_the_road(s.status) {
        let (start, late) = journey_clock(s, facts, history)?;
        let elapsed = now - start;
        if elapsed >= late.after {
            return Some(Finding::Late {
                elapsed,
                p90: late.p90,
                threshold: late.after,
                basis: late.basis,
            });
        }
    }
    None
}

/// When the parcel's journey started and the lateness threshold of its route: the pickup from
/// the facts (the provider's answer) or the shipment; the route from the facts or, where they
/// are silent, the shipment's own (the order's receiver province, the scans' origin).
fn journey_clock(
    s: &Shipment,
    facts: &Facts,
    history: &dyn StageHistory,
) -> Option<(DateTime<Utc>, LateThreshold)> {
    // The earliest pickup known, whichever answer told it: an answer that leaves out the
    // journey's first lines (a provider's window, a replayed cache) does not restart the clock.
    let start = match (facts.picked_up_at, s.picked_up_at) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b)?,
    };
    let origin = facts.origin.or(s.origin.as_deref());
    let destination = facts.destination.or(s.destination.as_deref());
    let late = late_threshold(s.id.carrier.as_str(), origin, destination, history)?;
    Some((start, late))
}

/// When the parcel on the road would become late if it is not delivered first: its pickup plus
/// the route's lateness threshold. `None` off the road, or without a pickup or a history.
pub fn late_deadline(
    s: &Shipment,
    facts: &Facts,
    history: &dyn StageHistory,
) -> Option<DateTime<Utc>> {
    if s.status.is_terminal() || !on_the_road(s.status) {
        return None;
    }
    journey_clock(s, facts, history).map(|(start, late)| start + late.after)
}

/// When the parcel would become stalled if no line comes: its quiet start plus the stage's
/// threshold. `None` when the stage is not watched or tracking has stopped.
pub fn stall_deadline(s: &Shipment, history: &dyn StageHistory) -> Option<DateTime<Utc>> {
    if s.status.is_terminal() {
        return None;
    }
    let th = stall_threshold(s.id.carrier.as_str(), s.status, history)?;
    Some(quiet_since(s) + th.after)
}

/// The merchant alert a transition raises, if any: entering `stalled` from anything but
/// `stalled`, or entering `late` from no flag at all (a stalled parcel that moves again late
/// was already reported).
pub fn alert_for(t: &Transition) -> Option<Flag> {
    let to = Flag::of(t.to_sub.as_ref())?;
    let from = Flag::of(t.from_sub.as_ref());
    match (to.kind, from.map(|f| f.kind)) {
        (FlagKind::Stalled, Some(FlagKind::Stalled)) => None,
        (FlagKind::Stalled, _) => Some(to),
        (FlagKind::Late, None) => Some(to),
        (FlagKind::Late, Some(_)) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::check::{decide, CheckContext, Decision, Observation};
    use crate::domain::{Priority, Recipient, ShipmentId, TraceEvent};

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn t0() -> DateTime<Utc> {
        t("2026-11-20T00:00:00Z")
    }

    fn line(at: DateTime<Utc>, status: Status) -> TraceEvent {
        TraceEvent {
            time: at,
            description: format!("{status} scan"),
            location: None,
            status: Some(status),
            raw_code: None,
            claimed_time: None,
        }
    }

    fn answer(status: Status, code: &str, lines: &[(DateTime<Utc>, Status)]) -> TraceSnapshot {
        TraceSnapshot {
            status,
            sub_status: Some(SubStatus::new("kdniao", code)),
            events: lines.iter().map(|(at, s)| line(*at, *s)).collect(),
        }
    }

    fn registered() -> Shipment {
        Shipment::register(
            ShipmentId::parse("ZTO", "731234567890123").unwrap(),
            Priority::Normal,
            "kdniao",
            Recipient::default(),
            Some("TB-1".into()),
            t0(),
        )
    }

    /// One check the way the write path decides it.
    fn check<H: StageHistory + Clone + Send + Sync + 'static>(
        s: &Shipment,
        snap: &TraceSnapshot,
        history: &H,
        now: DateTime<Utc>,
    ) -> Decision {
        let ctx = CheckContext::new(std::sync::Arc::new(history.clone()));
        decide(s, Observation::poll(snap, "kdniao"), &ctx, now)
    }

    /// A parcel in transit whose newest line is at `last`.
    fn in_transit(last: DateTime<Utc>) -> Vec<(DateTime<Utc>, Status)> {
        vec![
            (t0() + Duration::hours(1), Status::PickedUp),
            (t0() + Duration::hours(4), Status::InTransit),
            (last, Status::InTransit),
        ]
    }

    /// `n` delivered ZTO parcels whose transit gaps are 2..=8 h, delivered after 50..=60 h.
    fn history_of(n: usize) -> LearnedHistory {
        let mut h = LearnedHistory::new();
        for i in 0..n {
            let gap = Duration::hours(2 + (i % 7) as i64);
            let start = t0();
            let mut lines = vec![(start, Status::PickedUp)];
            let mut at = start + Duration::hours(3);
            for _ in 0..4 {
                lines.push((at, Status::InTransit));
                at += gap;
            }
            lines.push((at, Status::ArrivedAtDestinationCity));
            let delivered = start + Duration::hours(50 + (i % 11) as i64);
            lines.push((delivered, Status::Delivered));
            h.learn("ZTO", Some("浙江"), Some("四川"), &lines);
        }
        h
    }

    #[test]
    fn fallback_thresholds_hold_while_history_is_thin() {
        let th = stall_threshold("ZTO", Status::InTransit, &NoHistory).unwrap();
        assert_eq!(th.after, Duration::hours(20));
        assert_eq!(th.basis, Basis::Fallback);
        // 29 parcels × 4 transit gaps = 116 gaps: learned.
        let some = history_of(29);
        assert!(matches!(
            stall_threshold("ZTO", Status::InTransit, &some)
                .unwrap()
                .basis,
            Basis::Learned { samples: 116 }
        ));
        // PickedUp has one gap per parcel: 29 < 30, still the fallback.
        let th = stall_threshold("ZTO", Status::PickedUp, &some).unwrap();
        assert_eq!((th.after, th.basis), (Duration::hours(24), Basis::Fallback));
        // Another carrier has no history at all.
        assert_eq!(
            stall_threshold("SF", Status::InTransit, &some)
                .unwrap()
                .basis,
            Basis::Fallback
        );
        // Unwatched stages have none.
        for s in [
            Status::Pending,
            Status::AvailableForPickup,
            Status::Exception,
            Status::DeliveryFailed,
            Status::Returning,
            Status::Delivered,
        ] {
            assert_eq!(stall_threshold("ZTO", s, &some), None, "{s}");
        }
    }

    #[test]
    fn learned_thresholds_follow_the_history_as_it_grows() {
        let mut h = history_of(30);
        // PickedUp gaps are all 3 h: 3 h × 1.5 = 4.5 h, floored at 6 h.
        let th = stall_threshold("ZTO", Status::PickedUp, &h).unwrap();
        assert_eq!(th.after, THRESHOLD_FLOOR);
        assert_eq!(th.basis, Basis::Learned { samples: 30 });
        // In transit: p95 of gaps 2..=8 h is 8 h → 12 h.
        let before = stall_threshold("ZTO", Status::InTransit, &h).unwrap();
        assert_eq!(before.after, Duration::hours(12));
        // The carrier starts leaving parcels quiet for 16 h (a new overnight trunk line): once
        // enough of them are seen the threshold moves out with them.
        for _ in 0..40 {
            let s = t0();
            h.learn(
                "ZTO",
                None,
                None,
                &[
                    (s, Status::InTransit),
                    (s + Duration::hours(16), Status::InTransit),
                ],
            );
        }
        let after = stall_threshold("ZTO", Status::InTransit, &h).unwrap();
        assert_eq!(after.after, Duration::hours(24));
        assert_eq!(after.basis, Basis::Learned { samples: 160 });
    }

    #[test]
    fn quantiles_are_nearest_rank() {
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.95), Some((Duration::seconds(95), 100)));
        assert_eq!(quantile(&v, 0.0), Some((Duration::seconds(1), 100)));
        assert_eq!(quantile(&v, 1.0), Some((Duration::seconds(100), 100)));
        assert_eq!(quantile(&v, 1.5), None);
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn a_quiet_parcel_is_stalled_past_its_threshold_and_not_before() {
        let last = t0() + Duration::hours(10);
        let snap = answer(Status::InTransit, "2", &in_transit(last));
        let fresh = check(&registered(), &snap, &NoHistory, last + Duration::hours(1));
        assert_eq!(
            fresh.updated.sub_status,
            Some(SubStatus::new("kdniao", "2"))
        );
        // The next check is the planned one (2 h) or the stall deadline, whichever comes first.
        let deadline = last + Duration::hours(20);
        assert_eq!(stall_deadline(&fresh.updated, &NoHistory), Some(deadline));
        assert!(fresh.updated.next_check_at.unwrap() <= deadline);

        let just_before = check(
            &fresh.updated,
            &snap,
            &NoHistory,
            deadline - Duration::minutes(1),
        );
        assert_eq!(just_before.transition, None);
        // Planned in 2 h, pulled forward to the deadline.
        assert_eq!(just_before.updated.next_check_at, Some(deadline));

        let at = check(&just_before.updated, &snap, &NoHistory, deadline);
        let tr = at.transition.clone().expect("stalled is a transition");
        assert_eq!(
            tr.key(),
            "InTransit>InTransit(parcelwatch:stalled;after=1200m;fallback)"
        );
        let flag = alert_for(&tr).expect("an alert");
        assert_eq!(flag.kind, FlagKind::Stalled);
        assert_eq!(flag.threshold, Some(Duration::hours(20)));
        assert_eq!(flag.basis, Some(Basis::Fallback));
        // The flag is not a new stage: the stage clock goes on; the check that raised it says when.
        assert_eq!(
            at.updated.status_changed_at,
            just_before.updated.status_changed_at
        );
        assert_eq!(at.updated.checked_at, Some(deadline));
        assert_eq!(
            assess(&at.updated, &Facts::default(), &NoHistory, deadline),
            Some(Finding::Stalled {
                stage: Status::InTransit,
                quiet_for: Duration::hours(20),
                threshold: Duration::hours(20),
                basis: Basis::Fallback
            })
        );
    }

    #[test]
    fn the_old_provider_code_does_not_clear_a_stall_and_a_new_line_does() {
        let last = t0() + Duration::hours(10);
        let snap = answer(Status::InTransit, "2", &in_transit(last));
        let first = check(&registered(), &snap, &NoHistory, last);
        let stalled = check(
            &first.updated,
            &snap,
            &NoHistory,
            last + Duration::hours(21),
        );
        assert!(alert_for(stalled.transition.as_ref().unwrap()).is_some());
        let flagged = stalled.updated.sub_status.clone();

        // The same old answer, hour after hour: no transition, the flag stays as written.
        let mut s = stalled.updated.clone();
        for h in 22..30 {
            let again = check(&s, &snap, &NoHistory, last + Duration::hours(h));
            assert_eq!(again.transition, None, "hour {h}");
            assert_eq!(again.updated.sub_status, flagged);
            assert_eq!(
                again.updated.status_changed_at,
                stalled.updated.status_changed_at
            );
            s = again.updated;
        }
        // A stale answer (missing our newest line) does not clear it either.
        let stale = answer(Status::InTransit, "2", &in_transit(last)[..2]);
        let out = check(&s, &stale, &NoHistory, last + Duration::hours(31));
        assert_eq!(out.transition, None);
        assert_eq!(out.updated.sub_status, flagged);

        // A new line clears it: back to the provider's code, a transition that is no alert.
        let mut moving = in_transit(last);
        moving.push((last + Duration::hours(31), Status::InTransit));
        let moved = check(
            &s,
            &answer(Status::InTransit, "2", &moving),
            &NoHistory,
            last + Duration::hours(32),
        );
        let tr = moved.transition.expect("cleared");
        assert_eq!(tr.to_sub, Some(SubStatus::new("kdniao", "2")));
        assert_eq!(alert_for(&tr), None);
        assert_eq!(
            moved.updated.sub_status,
            Some(SubStatus::new("kdniao", "2"))
        );
        // And the deadline is armed again from the new line.
        assert_eq!(
            stall_deadline(&moved.updated, &NoHistory),
            Some(last + Duration::hours(51))
        );
    }

    #[test]
    fn a_threshold_that_grows_does_not_clear_a_held_stall_without_news() {
        let last = t0() + Duration::hours(10);
        let snap = answer(Status::InTransit, "2", &in_transit(last));
        let first = check(&registered(), &snap, &NoHistory, last);
        let stalled = check(
            &first.updated,
            &snap,
            &NoHistory,
            last + Duration::hours(21),
        );
        let flagged = stalled.updated.sub_status.clone();
        assert!(Flag::of(flagged.as_ref()).is_some());
        // Meanwhile the history learned that this carrier stays quiet up to 20 h in transit
        // (threshold 30 h): at 22 h the parcel would not be called stalled today...
        let mut h = LearnedHistory::new();
        for _ in 0..30 {
            h.learn(
                "ZTO",
                None,
                None,
                &[
                    (t0(), Status::InTransit),
                    (t0() + Duration::hours(20), Status::InTransit),
                ],
            );
        }
        assert_eq!(
            stall_threshold("ZTO", Status::InTransit, &h).unwrap().after,
            Duration::hours(30)
        );
        // ...but nothing new happened to it: the flag stays, no transition, no second alert later.
        let out = check(&stalled.updated, &snap, &h, last + Duration::hours(22));
        assert_eq!(out.transition, None);
        assert_eq!(out.updated.sub_status, flagged);
        let later = check(&out.updated, &snap, &h, last + Duration::hours(31));
        assert_eq!(later.transition, None);
        assert_eq!(later.updated.sub_status, flagged);
    }

    #[test]
    fn a_carrier_verdict_replaces_the_flag() {
        let last = t0() + Duration::hours(10);
        let snap = answer(Status::InTransit, "2", &in_transit(last));
        let first = check(&registered(), &snap, &NoHistory, last);
        let stalled = check(
            &first.updated,
            &snap,
            &NoHistory,
            last + Duration::hours(21),
        );
        // Kdniao's 403 "no update in time", no new scan: the carrier's verdict is news.
        let verdict = answer(Status::Exception, "403", &in_transit(last));
        let out = check(
            &stalled.updated,
            &verdict,
            &NoHistory,
            last + Duration::hours(26),
        );
        let tr = out.transition.expect("verdict");
        assert_eq!(tr.to, Status::Exception);
        assert_eq!(tr.to_sub, Some(SubStatus::new("kdniao", "403")));
        assert_eq!(alert_for(&tr), None);
    }

    #[test]
    fn a_late_parcel_is_flagged_once_and_a_stall_clearing_late_is_not_a_second_alert() {
        let h = history_of(40);
        let late = late_threshold("ZTO", Some("浙江"), Some("四川"), &h).unwrap();
        // Delivery times 50..=60 h: p90 = 59 h, × 1.25.
        assert_eq!(late.p90, Duration::hours(59));
        assert_eq!(late.after, Duration::minutes(59 * 75));
        assert_eq!(late.basis, Basis::Learned { samples: 40 });
        // Unknown route: the carrier's any-route history.
        assert_eq!(
            late_threshold("ZTO", Some("西藏"), None, &h).unwrap().p90,
            late.p90
        );
        assert_eq!(late_threshold("SF", None, None, &h), None);
        assert_eq!(late_threshold("ZTO", None, None, &history_of(10)), None);

        // A parcel scanned every 4 h (never stalled: learned threshold 12 h) but on the road
        // for longer than 73.75 h.
        let lines: Vec<(DateTime<Utc>, Status)> = (0..20)
            .map(|i| (t0() + Duration::hours(4 * i), Status::InTransit))
            .collect();
        let snap = answer(Status::InTransit, "2", &lines);
        let now = t0() + Duration::hours(76);
        let out = check(&registered(), &snap, &h, now);
        let tr = out.transition.unwrap();
        assert_eq!(
            tr.to_sub,
            Some(SubStatus::new(
                "parcelwatch",
                "late;after=4425m;p90=3540m;n40"
            ))
        );
        // From Pending the flag rides on the status change; it is still the first flag.
        assert_eq!(alert_for(&tr).map(|f| f.kind), Some(FlagKind::Late));
        // New lines keep it as written: no churn.
        let mut more = lines.clone();
        more.push((now, Status::InTransit));
        let again = check(
            &out.updated,
            &answer(Status::InTransit, "2", &more),
            &h,
            now,
        );
        assert_eq!(again.transition, None);

        // Before it is late, the check after the last is pulled forward to the late deadline
        // (pickup at the first line + 73.75 h) when the schedule would look later.
        let early = t0() + Duration::hours(73);
        let before = check(&registered(), &snap, &h, early);
        assert_eq!(
            before.transition.and_then(|t| t.to_sub),
            Some(SubStatus::new("kdniao", "2"))
        );
        assert_eq!(
            Flag::of(before.updated.sub_status.as_ref()).map(|f| f.kind),
            None
        );
        assert_eq!(
            before.updated.next_check_at,
            Some(t0() + Duration::minutes(59 * 75))
        );
        // The route comes from the shipment when the answer names none: a route with its own,
        // faster history (30 parcels of 20 h) makes the same parcel late sooner.
        let mut fast = history_of(40);
        for _ in 0..30 {
            fast.learn(
                "ZTO",
                Some("浙江"),
                Some("上海"),
                &[
                    (t0(), Status::PickedUp),
                    (t0() + Duration::hours(20), Status::Delivered),
                ],
            );
        }
        let mut to_shanghai = registered();
        to_shanghai.destination = Some("上海".into());
        to_shanghai.origin = Some("浙江".into());
        let sooner = check(&to_shanghai, &snap, &fast, t0() + Duration::hours(26));
        assert_eq!(
            Flag::of(sooner.updated.sub_status.as_ref()).map(|f| f.kind),
            Some(FlagKind::Late)
        );
        let unknown_route = check(&registered(), &snap, &fast, t0() + Duration::hours(26));
        assert_eq!(Flag::of(unknown_route.updated.sub_status.as_ref()), None);

        // Stalled → new line → late: no second alert.
        let t = Transition {
            from: Status::InTransit,
            to: Status::InTransit,
            from_sub: Some(SubStatus::new("parcelwatch", "stalled;after=720m;n160")),
            to_sub: tr.to_sub.clone(),
        };
        assert_eq!(alert_for(&t), None);
        // Late → stalled is news.
        let t = Transition {
            from_sub: tr.to_sub.clone(),
            to_sub: Some(SubStatus::new("parcelwatch", "stalled;after=720m;n160")),
            ..t
        };
        assert_eq!(alert_for(&t).map(|f| f.kind), Some(FlagKind::Stalled));
    }

    #[test]
    fn flags_parse_back_and_provider_codes_are_not_flags() {
        let f = Finding::Stalled {
            stage: Status::InTransit,
            quiet_for: Duration::hours(21),
            threshold: Duration::minutes(690),
            basis: Basis::Learned { samples: 120 },
        };
        let sub = f.sub_status();
        assert_eq!(sub.to_string(), "parcelwatch:stalled;after=690m;n120");
        // Through the table's string form and back.
        let parsed: SubStatus = sub.to_string().parse().unwrap();
        assert_eq!(
            Flag::parse(&parsed),
            Some(Flag {
                kind: FlagKind::Stalled,
                threshold: Some(Duration::minutes(690)),
                p90: None,
                basis: Some(Basis::Learned { samples: 120 }),
            })
        );
        assert_eq!(Flag::parse(&SubStatus::new("kdniao", "stalled")), None);
        assert_eq!(Flag::parse(&SubStatus::new("parcelwatch", "other")), None);
        // A bare flag (no figures) is still a flag.
        assert_eq!(
            Flag::parse(&SubStatus::new("parcelwatch", "late")).map(|f| f.kind),
            Some(FlagKind::Late)
        );
    }

    #[test]
    fn terminal_and_unwatched_parcels_are_left_alone() {
        let last = t0() + Duration::hours(10);
        let mut lines = in_transit(last);
        lines.push((last + Duration::hours(1), Status::Delivered));
        let done = check(
            &registered(),
            &answer(Status::Delivered, "3", &lines),
            &NoHistory,
            last + Duration::days(10),
        );
        assert_eq!(done.updated.sub_status, Some(SubStatus::new("kdniao", "3")));
        assert_eq!(done.updated.next_check_at, None);
        // In a locker for three days: the buyer's move, not a stall.
        let mut locker = in_transit(last);
        locker.push((last + Duration::hours(1), Status::AvailableForPickup));
        let out = check(
            &registered(),
            &answer(Status::AvailableForPickup, "211", &locker),
            &NoHistory,
            last + Duration::days(3),
        );
        assert_eq!(
            out.updated.sub_status,
            Some(SubStatus::new("kdniao", "211"))
        );
        assert_eq!(stall_deadline(&out.updated, &NoHistory), None);
    }

    #[test]
    fn pickup_comes_from_the_first_carrier_line() {
        let snap = TraceSnapshot {
            status: Status::InTransit,
            sub_status: None,
            events: vec![
                line(t0() + Duration::hours(5), Status::InTransit),
                line(t0(), Status::InfoReceived),
                line(t0() + Duration::hours(2), Status::PickedUp),
            ],
        };
        assert_eq!(
            Facts::from_snapshot(&snap).picked_up_at,
            Some(t0() + Duration::hours(2))
        );
        let unclassified = TraceSnapshot {
            events: snap
                .events
                .iter()
                .map(|e| TraceEvent {
                    status: None,
                    ..e.clone()
                })
                .collect(),
            ..snap
        };
        assert_eq!(Facts::from_snapshot(&unclassified).picked_up_at, Some(t0()));
    }
}
