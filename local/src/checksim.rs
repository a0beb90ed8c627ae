//! Replays the check schedule against simulated journeys without any I/O: how many provider
//! calls a parcel costs and how late each status change is seen. The figures of the schedule,
//! measured on the same journeys the demo uses.

use crate::sandbox::journey::{truth_status_after_return, Journey};
use chrono::{DateTime, Duration, Utc};
use parcelwatch::domain::{plan_next_check, Priority, Status};

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

#[derive(Debug, Default, Clone, PartialEq)]
pub struct CheckStats {
    pub calls: u64,
    /// Calls by the status the parcel was in when checked.
    pub calls_by_status: Vec<(Status, u64)>,
    /// Seconds between a status change and the check that saw it.
    pub latencies_s: Vec<i64>,
    /// Status changes never seen (another change came first).
    pub missed: u64,
}

/// Check `j` from `start` on, every time the schedule says (picked up at the scheduler's next
/// `tick`), until a terminal status is seen or `until`.
pub fn replay(
    j: &Journey,
    priority: Priority,
    start: DateTime<Utc>,
    tick: Duration,
    until: DateTime<Utc>,
) -> CheckStats {
    let mut stats = CheckStats::default();
    let mut by: std::collections::BTreeMap<Status, u64> = Default::default();
    let mut seen = Status::Pending;
    let mut since = start;
    let mut checks = Vec::new();
    let mut t = start;
    while t <= until {
        stats.calls += 1;
        *by.entry(seen).or_default() += 1;
        checks.push(t);
        let now = status_at(j, t);
        if now != seen {
            seen = now;
            since = t;
        }
        let Some(next) = plan_next_check(seen, priority, since, t) else {
            break;
        };
        let ticks = ((next - start).num_seconds() + tick.num_seconds() - 1) / tick.num_seconds();
        t = start + Duration::seconds(ticks * tick.num_seconds());
    }
    for (at, st) in j.truth_statuses(until) {
        match checks.iter().find(|c| **c >= at) {
            Some(c) if status_at(j, *c) == st => stats.latencies_s.push((*c - at).num_seconds()),
            _ => stats.missed += 1,
        }
    }
    stats.calls_by_status = by.into_iter().collect();
    stats
}

/// Schedule figures over `n` demo journeys of one seed.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleSummary {
    pub parcels: usize,
    pub calls_per_parcel: f64,
    pub calls_by_status: Vec<(Status, f64)>,
    pub latency_p50_s: i64,
    pub latency_p95_s: i64,
    pub missed: u64,
}

pub fn summarize(n: usize, seed: u64, priority: Priority, tick: Duration) -> ScheduleSummary {
    let start = chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 11, 24, 0, 0, 0)
        .single()
        .unwrap_or_else(Utc::now);
    let mut total = 0;
    let mut by: std::collections::BTreeMap<Status, u64> = Default::default();
    let mut lat = Vec::new();
    let mut missed = 0;
    for i in 0..n {
        let c = crate::pipeline::DEMO_CARRIERS[i % crate::pipeline::DEMO_CARRIERS.len()];
        let num = crate::sandbox::journey::waybill_number(c, i as u64, seed);
        let shipped = start + Duration::seconds(8 * 3600 * i as i64 / n.max(1) as i64);
        let j = crate::sandbox::journey::plan(seed, c, &num, shipped);
        let s = replay(&j, priority, start, tick, start + Duration::days(12));
        total += s.calls;
        for (st, k) in s.calls_by_status {
            *by.entry(st).or_default() += k;
        }
        lat.extend(s.latencies_s);
        missed += s.missed;
    }
    lat.sort_unstable();
    let pct = |p: usize| {
        lat.get(lat.len().saturating_sub(1) * p / 100)
            .copied()
            .unwrap_or(0)
    };
    ScheduleSummary {
        parcels: n,
        calls_per_parcel: total as f64 / n.max(1) as f64,
        calls_by_status: by
            .into_iter()
            .map(|(s, k)| (s, k as f64 / n.max(1) as f64))
            .collect(),
        latency_p50_s: pct(50),
        latency_p95_s: pct(95),
        missed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_sees_every_stage_of_every_journey_at_bounded_cost() {
        let s = summarize(300, 7, Priority::Normal, Duration::minutes(10));
        eprintln!("{s:#?}");
        assert_eq!(s.missed, 0, "a buyer-facing stage went unseen");
        // Fixed 10-minute polling over the same journeys would cost several hundred calls.
        assert!(s.calls_per_parcel < 80.0, "{}", s.calls_per_parcel);
        assert!(
            s.latency_p95_s <= 2 * 3600 + 600,
            "p95 {}s",
            s.latency_p95_s
        );
    }

    #[test]
    fn high_priority_parcels_are_seen_sooner() {
        let normal = summarize(100, 3, Priority::Normal, Duration::minutes(2));
        let high = summarize(100, 3, Priority::High, Duration::minutes(2));
        assert!(
            high.latency_p50_s < normal.latency_p50_s,
            "{high:?} vs {normal:?}"
        );
        assert!(high.calls_per_parcel > normal.calls_per_parcel);
    }
}
