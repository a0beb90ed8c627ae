//! Replays check strategies against simulated journeys without any I/O: how many provider calls
//! a parcel costs and how late each status change is seen. The figures of the schedule, measured
//! on the journeys the demo uses (`sandbox::journey::plan`, the demo carriers, every journey kind
//! at the simulator's weights).
//!
//! Four strategies, each run through the domain's own `decide` (so the adaptive
//! figures are those of the code the tracker runs, expiry included):
//! - **fixed**: a check every 5 minutes, the seed's poll;
//! - **adaptive**: the check schedule (`schedule::plan`) on its default cadence table, picked up
//!   by the scheduler's next tick: a deployment without history;
//! - **adaptive+hist**: the same with the cadences learned ([`learn`], `Cadence::from_history`)
//!   from other journeys' lines, as the tracker learns them from the analytics aggregates;
//! - **push**: one subscribe call, then the provider's pushes plus the safety-net polls. The
//!   sandbox sends a push on the first delivery round at or after a change
//!   (`sandbox::push` compares what is visible with what the callback last acknowledged, and the
//!   local pipeline delivers every tick), so a push lands on the first tick at or after the step.
//!
//! The provider answers as Kdniao does (the demo's provider: no re-query floor). Time is
//! quantised to the scheduler tick (1 minute, the `rate(1 minute)` schedule of DESIGN.md).

use crate::sandbox::journey::{
    plan as plan_journey, truth_status, truth_status_after_return, waybill_number, Journey,
    JourneyKind,
};
use chrono::{DateTime, Duration, TimeZone, Utc};
use parcelwatch::domain::stall::LearnedHistory;
use parcelwatch::domain::{
    decide, CheckContext, Observation, Priority, Recipient, Shipment, ShipmentId, StageHistory,
    Status, SubStatus, TraceEvent, TraceSnapshot, SAFETY_NET,
};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// The scheduler's period: a due check is picked up on the next tick.
pub const TICK: Duration = Duration::minutes(1);
/// The seed's fixed poll.
pub const FIXED_INTERVAL: Duration = Duration::minutes(5);
/// The learned strategy's history holds this many journeys per journey measured (seed + 1): at
/// 300 measured, 1,200 delivered-or-not parcels, a few hundred per carrier, what a merchant's
/// first weeks give.
pub const TRAINING_PER_MEASURED: usize = 4;
/// How long a parcel is followed at most: past every journey's end and every expiry.
pub const HORIZON: Duration = Duration::days(60);

/// The carrier's status at `t` as the provider would report it.
pub fn status_at(j: &Journey, t: DateTime<Utc>) -> Status {
    let mut returning = false;
    let mut st = Status::Pending;
    for s in j.steps.iter().take_while(|s| s.at <= t) {
        st = truth_status_after_return(s.state_ex, returning);
        returning |= s.state_ex == "404";
    }
    st
}

/// How the parcels are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// A check every `interval`, whatever happens (until terminal or expired).
    Fixed { interval: Duration },
    /// The adaptive schedule on its default cadence table (nothing learned yet: a new deployment).
    Adaptive,
    /// The adaptive schedule with the cadences learned from other, delivered journeys
    /// (`Cadence::from_history`): a deployment with history.
    Learned,
    /// Subscribed: pushes, plus the safety-net polls.
    Push,
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Strategy::Fixed { interval } => write!(f, "fixed {} min", interval.num_minutes()),
            Strategy::Adaptive => f.write_str("adaptive"),
            Strategy::Learned => f.write_str("adaptive+hist"),
            Strategy::Push => f.write_str("push"),
        }
    }
}

/// The provider's answer after the first `k` steps of a journey, as Kdniao gives it: the status
/// of the last step (a sign after a return leg is Returned), its StateEx as the sub-status, the
/// lines so far. `k == 0`: Kdniao's "no trace yet" (Pending, StateEx 0, no lines).
fn answers(j: &Journey) -> Vec<TraceSnapshot> {
    let mut out = Vec::with_capacity(j.steps.len() + 1);
    out.push(TraceSnapshot {
        status: Status::Pending,
        sub_status: Some(SubStatus::new("kdniao", "0")),
        events: Vec::new(),
    });
    let mut events = Vec::new();
    let mut returning = false;
    for s in &j.steps {
        let status = truth_status_after_return(s.state_ex, returning);
        returning |= s.state_ex == "404";
        if s.emits_line {
            events.push(TraceEvent {
                time: s.at,
                description: s.station.clone(),
                location: Some(s.location.clone()),
                status: Some(truth_status(&s.action)),
                raw_code: Some(s.action.clone()),
                claimed_time: None,
            });
        }
        out.push(TraceSnapshot {
            status,
            sub_status: Some(SubStatus::new("kdniao", s.state_ex)),
            events: events.clone(),
        });
    }
    out
}

/// `t` rounded up to the next scheduler tick (every `tick` from `start`).
fn on_tick(t: DateTime<Utc>, start: DateTime<Utc>, tick: Duration) -> DateTime<Utc> {
    let s = tick.num_seconds().max(1);
    let ticks = ((t - start).num_seconds() + s - 1).div_euclid(s);
    start + Duration::seconds(ticks.max(0) * s)
}

/// One parcel followed with one strategy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Followed {
    /// Provider calls: queries and subscribe calls.
    pub calls: u64,
    /// Calls by the status the parcel was held in when the call was made.
    pub calls_by_status: BTreeMap<Status, u64>,
    /// Every moment the stored status was (re)computed — a poll or a push — with the result.
    pub seen: Vec<(DateTime<Utc>, Status)>,
}

/// Follow journey `j` of waybill `id`, registered at `start`, with `strategy` under `ctx` (the
/// tracker's whole decision: schedule, stall and late deadlines, expiry);
/// checks and pushes happen on the scheduler's ticks (every `tick` from `start`).
pub fn follow(
    j: &Journey,
    id: &ShipmentId,
    strategy: Strategy,
    priority: Priority,
    start: DateTime<Utc>,
    tick: Duration,
    ctx: &CheckContext,
) -> Followed {
    let answers = answers(j);
    let answer_at = |t: DateTime<Utc>| &answers[j.steps.partition_point(|s| s.at <= t)];
    let mut s = Shipment::register(
        id.clone(),
        priority,
        "kdniao",
        Recipient::default(),
        None,
        start,
    );
    let mut f = Followed::default();
    let end = start + HORIZON;
    let call = |f: &mut Followed, status: Status| {
        f.calls += 1;
        *f.calls_by_status.entry(status).or_default() += 1;
    };
    // Pushes: the first tick at or after each step, once per tick.
    let mut pushes: Vec<DateTime<Utc>> = Vec::new();
    if strategy == Strategy::Push {
        call(&mut f, s.status);
        s.subscribed_at = Some(start);
        s.next_check_at = Some(start + SAFETY_NET);
        pushes = j
            .steps
            .iter()
            .map(|st| on_tick(st.at, start, tick))
            .collect();
        pushes.dedup();
    }
    let mut pushes = pushes.into_iter().peekable();
    let mut t = start;
    loop {
        let poll = s.next_check_at.map(|n| on_tick(n.max(t), start, tick));
        let push = pushes.peek().copied();
        // The scheduler and trackers run before the pushes in a tick.
        let (at, is_push) = match (poll, push) {
            (None, _) => break,
            (Some(p), Some(q)) if q < p => (q, true),
            (Some(p), _) => (p, false),
        };
        if at > end {
            break;
        }
        if is_push {
            pushes.next();
        } else {
            call(&mut f, s.status);
        }
        t = at;
        let answer = answer_at(at);
        let seen = if is_push {
            Observation::push(answer)
        } else {
            Observation::poll(answer, "kdniao")
        };
        s = decide(&s, seen, ctx, at).updated;
        if let (Strategy::Fixed { interval }, Some(_)) = (strategy, s.next_check_at) {
            s.next_check_at = Some(at + interval);
        }
        f.seen.push((at, s.status));
    }
    f
}

/// How the status changes of one journey were seen.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Detection {
    /// Seconds from each change to the first check that saw it.
    pub latencies_s: Vec<i64>,
    /// The same for the changes out of OutForDelivery (delivered, in a locker, failed, refused):
    /// the ones the tier interval governs.
    pub near_latencies_s: Vec<i64>,
    /// Changes never seen (another change came first, or tracking had stopped), by status.
    pub missed: BTreeMap<Status, u64>,
}

/// Compare what `f` saw with the journey's truth.
pub fn detect(j: &Journey, f: &Followed) -> Detection {
    let mut d = Detection::default();
    let until = f.seen.last().map_or(DateTime::<Utc>::MIN_UTC, |(t, _)| *t);
    let truth = j.truth_statuses(until.max(j.ends_at().unwrap_or(until)));
    let mut prev = Status::Pending;
    for (at, st) in truth {
        let i = f.seen.partition_point(|(t, _)| *t < at);
        match f.seen.get(i) {
            Some((c, seen)) if *seen == st => {
                let lat = (*c - at).num_seconds();
                d.latencies_s.push(lat);
                if prev == Status::OutForDelivery {
                    d.near_latencies_s.push(lat);
                }
            }
            _ => *d.missed.entry(st).or_default() += 1,
        }
        prev = st;
    }
    d
}

/// One strategy's figures over a set of journeys.
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    pub strategy: Strategy,
    pub parcels: usize,
    /// Journeys that end Delivered (signed by the buyer, at the door or from a locker).
    pub delivered: usize,
    pub calls: u64,
    /// All calls (returned and expired parcels included) per delivered parcel.
    pub calls_per_delivered: f64,
    pub calls_by_status: Vec<(Status, u64)>,
    pub changes: usize,
    pub latency_p50_s: i64,
    pub latency_p95_s: i64,
    pub near_changes: usize,
    pub near_p50_s: i64,
    pub near_p95_s: i64,
    pub missed: u64,
    pub missed_by_status: Vec<(Status, u64)>,
}

impl Figures {
    /// Missed changes into `status`.
    pub fn missed_of(&self, status: Status) -> u64 {
        self.missed_by_status
            .iter()
            .find(|(s, _)| *s == status)
            .map_or(0, |(_, n)| *n)
    }

    /// The column titles of [`Figures`]' `Display` row.
    pub const HEADER: &'static str =
        "strategy        calls/delivered  latency p50   p95   near-delivery p50   p95   missed";
}

/// Nearest-rank percentile of sorted `v` (0 when empty).
fn percentile(v: &[i64], p: usize) -> i64 {
    if v.is_empty() {
        return 0;
    }
    let rank = (v.len() * p).div_ceil(100).max(1);
    v[rank - 1]
}

fn human(s: i64) -> String {
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    }
}

impl fmt::Display for Figures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<15} {:>15.1}  {:>11} {:>6}   {:>17} {:>6}   {:>6}",
            self.strategy.to_string(),
            self.calls_per_delivered,
            human(self.latency_p50_s),
            human(self.latency_p95_s),
            human(self.near_p50_s),
            human(self.near_p95_s),
            self.missed
        )
    }
}

/// The three strategies on the same journeys.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub priority: Priority,
    pub seed: u64,
    pub parcels: usize,
    pub tick: Duration,
    /// Journeys by kind.
    pub kinds: Vec<(JourneyKind, usize)>,
    pub fixed: Figures,
    pub adaptive: Figures,
    /// The adaptive schedule with the cadences learned from [`Comparison::trained_on`] other
    /// journeys (seed + 1).
    pub learned: Figures,
    pub trained_on: usize,
    pub push: Figures,
}

impl Comparison {
    pub fn rows(&self) -> [&Figures; 4] {
        [&self.fixed, &self.adaptive, &self.learned, &self.push]
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kinds: Vec<String> = self
            .kinds
            .iter()
            .map(|(k, n)| format!("{k:?} {n}"))
            .collect();
        writeln!(
            f,
            "check strategies, {} tier: {} journeys (seed {}; {}), scheduler tick {} s, {} delivered; history from {} others",
            self.priority.as_str(),
            self.parcels,
            self.seed,
            kinds.join(", "),
            self.tick.num_seconds(),
            self.adaptive.delivered,
            self.trained_on,
        )?;
        writeln!(f, "{}", Figures::HEADER)?;
        for r in self.rows() {
            writeln!(f, "{r}")?;
        }
        Ok(())
    }
}

/// The demo's journeys: `n` waybills of the demo carriers in turn, registered together at the
/// start, shipped over the following 8 hours (as `summarize` has always drawn them).
pub fn journeys(n: usize, seed: u64) -> (DateTime<Utc>, Vec<(ShipmentId, Journey)>) {
    let start = Utc
        .with_ymd_and_hms(2026, 11, 24, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    let carriers = crate::pipeline::DEMO_CARRIERS;
    let out = (0..n)
        .filter_map(|i| {
            let c = carriers[i % carriers.len()];
            let num = waybill_number(c, i as u64, seed);
            let shipped = start + Duration::seconds(8 * 3600 * i as i64 / n.max(1) as i64);
            let id = ShipmentId::parse(c, &num).ok()?;
            Some((id, plan_journey(seed, c, &num, shipped)))
        })
        .collect();
    (start, out)
}

/// What the carriers' delivered parcels teach: every journey's trace lines (time, and the status
/// the parcel was in after each), as the analytics function records them from the stream.
pub fn learn(journeys: &[(ShipmentId, Journey)]) -> LearnedHistory {
    let mut h = LearnedHistory::new();
    for (id, j) in journeys {
        let mut returning = false;
        let mut lines = Vec::new();
        for s in &j.steps {
            let status = truth_status_after_return(s.state_ex, returning);
            returning |= s.state_ex == "404";
            if s.emits_line {
                lines.push((s.at, status));
            }
        }
        h.learn(id.carrier.as_str(), None, None, &lines);
    }
    h
}

/// One strategy over prepared journeys. `history` is what [`Strategy::Learned`] learns from
/// (the other strategies ignore it).
pub fn measure(
    start: DateTime<Utc>,
    journeys: &[(ShipmentId, Journey)],
    strategy: Strategy,
    priority: Priority,
    tick: Duration,
    history: &Arc<dyn StageHistory + Send + Sync>,
) -> Figures {
    let mut calls = 0;
    let mut by: BTreeMap<Status, u64> = BTreeMap::new();
    let mut lat = Vec::new();
    let mut near = Vec::new();
    let mut missed: BTreeMap<Status, u64> = BTreeMap::new();
    let mut delivered = 0;
    let ctx = if strategy == Strategy::Learned {
        CheckContext::new(history.clone())
    } else {
        CheckContext::standalone()
    };
    for (id, j) in journeys {
        let f = follow(j, id, strategy, priority, start, tick, &ctx);
        let d = detect(j, &f);
        calls += f.calls;
        for (s, n) in &f.calls_by_status {
            *by.entry(*s).or_default() += n;
        }
        lat.extend(d.latencies_s);
        near.extend(d.near_latencies_s);
        for (s, n) in d.missed {
            *missed.entry(s).or_default() += n;
        }
        if status_at(j, DateTime::<Utc>::MAX_UTC) == Status::Delivered {
            delivered += 1;
        }
    }
    lat.sort_unstable();
    near.sort_unstable();
    Figures {
        strategy,
        parcels: journeys.len(),
        delivered,
        calls,
        calls_per_delivered: calls as f64 / delivered.max(1) as f64,
        calls_by_status: by.into_iter().collect(),
        changes: lat.len() + missed.values().sum::<u64>() as usize,
        latency_p50_s: percentile(&lat, 50),
        latency_p95_s: percentile(&lat, 95),
        near_changes: near.len(),
        near_p50_s: percentile(&near, 50),
        near_p95_s: percentile(&near, 95),
        missed: missed.values().sum(),
        missed_by_status: missed.into_iter().collect(),
    }
}

/// Fixed 5-minute polling, the adaptive schedule (default cadences, then cadences learned from
/// `n` other journeys of seed `seed + 1`) and push, on the same `n` demo journeys of `seed`, for
/// parcels of tier `priority`.
pub fn compare(n: usize, seed: u64, priority: Priority) -> Comparison {
    let (start, js) = journeys(n, seed);
    let (_, training) = journeys(TRAINING_PER_MEASURED * n, seed.wrapping_add(1));
    let history: Arc<dyn StageHistory + Send + Sync> = Arc::new(learn(&training));
    let mut kinds: Vec<(JourneyKind, usize)> = JourneyKind::ALL
        .iter()
        .map(|k| (*k, js.iter().filter(|(_, j)| j.kind == *k).count()))
        .collect();
    kinds.retain(|(_, n)| *n > 0);
    Comparison {
        priority,
        seed,
        parcels: js.len(),
        tick: TICK,
        kinds,
        fixed: measure(
            start,
            &js,
            Strategy::Fixed {
                interval: FIXED_INTERVAL,
            },
            priority,
            TICK,
            &history,
        ),
        adaptive: measure(start, &js, Strategy::Adaptive, priority, TICK, &history),
        learned: measure(start, &js, Strategy::Learned, priority, TICK, &history),
        trained_on: training.len(),
        push: measure(start, &js, Strategy::Push, priority, TICK, &history),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both() -> (Comparison, Comparison) {
        (
            compare(300, 7, Priority::Normal),
            compare(300, 7, Priority::High),
        )
    }

    #[test]
    fn adaptive_is_ten_times_cheaper_than_fixed_and_as_fresh_as_the_tier_near_delivery() {
        let (normal, high) = both();
        eprintln!("{normal}\n{high}");
        for c in [&normal, &high] {
            // Every kind of journey the simulator weighs is in the sample.
            assert_eq!(c.kinds.len(), JourneyKind::ALL.len(), "{:?}", c.kinds);
            assert!(c.adaptive.delivered > 200, "{}", c.adaptive.delivered);
            assert!(c.adaptive.near_changes > 250, "{}", c.adaptive.near_changes);
            assert_eq!(c.trained_on, TRAINING_PER_MEASURED * c.parcels);
            for a in [&c.adaptive, &c.learned] {
                // Near delivery the adaptive schedule keeps to the tier interval.
                let tier = c.priority.tier_interval().num_seconds();
                assert!(
                    a.near_p95_s <= tier,
                    "{:?} {}: near-delivery p95 {}s > tier {tier}s",
                    c.priority,
                    a.strategy,
                    a.near_p95_s
                );
                // No buyer-facing stage is missed more often than by polling every 5 minutes.
                for s in Status::ALL.into_iter().filter(|s| s.is_buyer_facing()) {
                    assert!(
                        a.missed_of(s) <= c.fixed.missed_of(s),
                        "{:?} {} {s}: missed {} vs fixed {}",
                        c.priority,
                        a.strategy,
                        a.missed_of(s),
                        c.fixed.missed_of(s)
                    );
                }
            }
            // What the history teaches (the quiet start of a round above all) saves calls, and
            // most of them out for delivery.
            let ofd = |f: &Figures| {
                f.calls_by_status
                    .iter()
                    .find(|(s, _)| *s == Status::OutForDelivery)
                    .map_or(0, |(_, n)| *n)
            };
            assert!(
                c.learned.calls_per_delivered < c.adaptive.calls_per_delivered,
                "{c}"
            );
            assert!(ofd(&c.learned) < ofd(&c.adaptive), "{c}");
            // Push sees everything within a tick, at a handful of calls.
            assert_eq!(c.push.missed, 0);
            assert!(c.push.latency_p95_s <= TICK.num_seconds());
            assert!(c.push.calls_per_delivered < 10.0, "{}", c.push);
        }
        // At least ten times fewer calls than the seed's 5-minute poll (normal tier), with or
        // without history.
        for a in [&normal.adaptive, &normal.learned] {
            assert!(
                a.calls_per_delivered * 10.0 <= normal.fixed.calls_per_delivered,
                "{a} vs {}",
                normal.fixed
            );
        }
        // High-tier parcels are seen sooner, at a higher cost.
        assert!(high.adaptive.latency_p50_s < normal.adaptive.latency_p50_s);
        assert!(high.adaptive.near_p95_s < normal.adaptive.near_p95_s);
        assert!(high.adaptive.calls_per_delivered > normal.adaptive.calls_per_delivered);
        // Fixed polling does not depend on the tier.
        assert_eq!(high.fixed, normal.fixed);
    }

    /// Other draws of journeys: the normal tier's saving holds on each, and the high tier's
    /// (its 2-minute checks through the round bound it: 1.5–5 h out for delivery is 45–150
    /// calls on their own) stays within the range the README reports.
    #[test]
    fn the_saving_holds_on_other_seeds() {
        for seed in [11, 42] {
            let normal = compare(300, seed, Priority::Normal);
            let high = compare(300, seed, Priority::High);
            for a in [&normal.adaptive, &normal.learned] {
                assert!(
                    a.calls_per_delivered * 10.0 <= normal.fixed.calls_per_delivered,
                    "seed {seed}: {normal}"
                );
                assert!(a.near_p95_s <= 600, "seed {seed}: {normal}");
            }
            assert!(
                high.learned.calls_per_delivered * 8.0 <= high.fixed.calls_per_delivered,
                "seed {seed}: {high}"
            );
            assert!(high.learned.near_p95_s <= 120, "seed {seed}: {high}");
            assert!(high.adaptive.near_p95_s <= 120, "seed {seed}: {high}");
        }
    }

    /// The local pipeline ticks every 10 minutes (`PipelineOptions::default`): the stage caps
    /// still step over no stage there, for either tier, on other journeys.
    #[test]
    fn no_stage_is_stepped_over_at_the_pipelines_ten_minute_tick() {
        let (start, js) = journeys(300, 11);
        let (_, training) = journeys(300, 12);
        let history: Arc<dyn StageHistory + Send + Sync> = Arc::new(learn(&training));
        for (priority, strategy) in [
            (Priority::Normal, Strategy::Adaptive),
            (Priority::High, Strategy::Adaptive),
            (Priority::Normal, Strategy::Learned),
            (Priority::High, Strategy::Learned),
        ] {
            let a = measure(
                start,
                &js,
                strategy,
                priority,
                Duration::minutes(10),
                &history,
            );
            assert_eq!(
                a.missed, 0,
                "{priority:?} {strategy}: {:?}",
                a.missed_by_status
            );
            assert!(a.changes > 1500, "{}", a.changes);
        }
    }

    #[test]
    fn a_push_lands_on_the_tick_after_the_step_and_a_poll_on_its_due_tick() {
        let start = Utc.with_ymd_and_hms(2026, 11, 24, 0, 0, 0).unwrap();
        assert_eq!(on_tick(start, start, TICK), start);
        assert_eq!(
            on_tick(start + Duration::seconds(1), start, TICK),
            start + TICK
        );
        assert_eq!(on_tick(start + TICK, start, TICK), start + TICK);
        assert_eq!(on_tick(start - TICK, start, TICK), start);
        let ten = Duration::minutes(10);
        assert_eq!(
            on_tick(start + Duration::minutes(11), start, ten),
            start + ten * 2
        );
    }

    #[test]
    fn detection_measures_latency_and_counts_what_was_stepped_over() {
        let (start, js) = journeys(40, 11);
        let (id, j) = js
            .iter()
            .find(|(_, j)| j.kind == JourneyKind::Delivered)
            .expect("a delivered journey");
        let fixed = follow(
            j,
            id,
            Strategy::Fixed {
                interval: FIXED_INTERVAL,
            },
            Priority::Normal,
            start,
            TICK,
            &CheckContext::standalone(),
        );
        let d = detect(j, &fixed);
        assert!(d.missed.is_empty(), "{:?}", d.missed);
        assert_eq!(
            d.latencies_s.len(),
            j.truth_statuses(DateTime::<Utc>::MAX_UTC).len()
        );
        assert!(d.latencies_s.iter().all(|l| (0..300).contains(l)), "{d:?}");
        assert_eq!(d.near_latencies_s.len(), 1);
        // Polling it once a day steps over most of its stages.
        let daily = follow(
            j,
            id,
            Strategy::Fixed {
                interval: Duration::days(1),
            },
            Priority::Normal,
            start,
            TICK,
            &CheckContext::standalone(),
        );
        let d = detect(j, &daily);
        assert!(d.missed.values().sum::<u64>() >= 2, "{d:?}");
        // The last status seen is the journey's end, and tracking stopped there.
        assert_eq!(fixed.seen.last().map(|s| s.1), Some(Status::Delivered));
        assert_eq!(daily.seen.last().map(|s| s.1), Some(Status::Delivered));
    }

    #[test]
    fn a_parcel_that_never_resumes_expires_a_month_after_its_last_line() {
        let (start, js) = journeys(600, 7);
        let dead: Vec<_> = js
            .iter()
            .filter(|(_, j)| {
                j.kind == JourneyKind::Stalled && j.steps.last().map(|s| s.state_ex) == Some("403")
            })
            .collect();
        assert!(
            !dead.is_empty(),
            "no stall without resumption in the sample"
        );
        for (id, j) in dead {
            let f = follow(
                j,
                id,
                Strategy::Adaptive,
                Priority::Normal,
                start,
                TICK,
                &CheckContext::standalone(),
            );
            let last_line = j.steps.iter().rev().find(|s| s.emits_line).map(|s| s.at);
            let (at, st) = *f.seen.last().expect("checked");
            assert_eq!(st, Status::Expired);
            let expires = last_line.expect("a line") + Duration::days(30);
            assert!(at >= expires && at <= expires + TICK, "{at} vs {expires}");
            // Backed off while stalled: far fewer calls than a check per hour for a month.
            assert!(f.calls < 200, "{}", f.calls);
        }
    }
}
