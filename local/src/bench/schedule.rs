//! Provider calls per delivered parcel and detection latency, on the simulator's journeys (the
//! demo's carriers and seed), for three ways of checking: a fixed 5-minute poll, the adaptive
//! schedule, and push with the safety net.
//!
//! Everything here is one function, [`schedule_section`], so that `checksim::compare` (being
//! written on another branch: the three strategies side by side, near-delivery p95 included) can
//! replace its body when it lands. Until then the adaptive row comes from
//! [`checksim::summarize`] and the fixed and push rows from the small replays below, on exactly
//! the journeys `summarize` plans.

use super::table::Figure;
use crate::checksim::{self, status_at};
use crate::pipeline::DEMO_CARRIERS;
use crate::sandbox::journey::{plan, waybill_number, Journey};
use chrono::{DateTime, Duration, TimeZone, Utc};
use parcelwatch::domain::schedule::SAFETY_NET;
use parcelwatch::domain::{Priority, Status};

/// The journeys `checksim::summarize(n, seed, ..)` replays: the demo's carriers in turn, shipped
/// over the first 8 hours, followed for 12 days.
fn journeys(n: usize, seed: u64) -> (DateTime<Utc>, Vec<Journey>) {
    let start = Utc
        .with_ymd_and_hms(2026, 11, 24, 0, 0, 0)
        .single()
        .unwrap_or_else(Utc::now);
    let js = (0..n)
        .map(|i| {
            let c = DEMO_CARRIERS[i % DEMO_CARRIERS.len()];
            let num = waybill_number(c, i as u64, seed);
            let shipped = start + Duration::seconds(8 * 3600 * i as i64 / n.max(1) as i64);
            plan(seed, c, &num, shipped)
        })
        .collect();
    (start, js)
}

fn pct(sorted: &[i64], p: usize) -> i64 {
    sorted
        .get(sorted.len().saturating_sub(1) * p / 100)
        .copied()
        .unwrap_or(0)
}

/// Calls and latencies (s) of polling every `every` from `start` until a terminal status is
/// seen (or 12 days).
fn fixed_poll(j: &Journey, start: DateTime<Utc>, every: Duration) -> (u64, Vec<i64>) {
    let until = start + Duration::days(12);
    let mut calls = 0;
    let mut checks = Vec::new();
    let mut t = start;
    while t <= until {
        calls += 1;
        checks.push(t);
        if status_at(j, t).is_terminal() {
            break;
        }
        t += every;
    }
    let lat = j
        .truth_statuses(until)
        .into_iter()
        .filter_map(|(at, _)| {
            checks
                .iter()
                .find(|c| **c >= at)
                .map(|c| (*c - at).num_seconds())
        })
        .collect();
    (calls, lat)
}

/// Push with the safety net: one subscription call, then a poll only when [`SAFETY_NET`] passes
/// without news (every status change is pushed and moves the net), until terminal.
fn push_calls(j: &Journey, start: DateTime<Utc>) -> u64 {
    let until = start + Duration::days(12);
    let changes = j.truth_statuses(until);
    let mut calls = 1;
    let mut last = start;
    for (at, st) in &changes {
        calls += ((*at - last).num_seconds() / SAFETY_NET.num_seconds()).max(0) as u64;
        last = *at;
        if st.is_terminal() {
            return calls;
        }
    }
    calls + ((until - last).num_seconds() / SAFETY_NET.num_seconds()).max(0) as u64
}

/// `n` journeys of `seed`; `push_ms`: our measured push → SMS latency (p50, p95), if measured.
pub fn schedule_section(n: usize, seed: u64, push_ms: Option<(f64, f64)>) -> Vec<Figure> {
    const S: &str = "Provider calls and detection latency";
    let (start, js) = journeys(n, seed);
    let until = start + Duration::days(12);
    let delivered = js
        .iter()
        .filter(|j| j.truth_statuses(until).last().map(|(_, s)| *s) == Some(Status::Delivered))
        .count()
        .max(1);
    let how = format!(
        "{n} simulated journeys (seed {seed}, the demo's carriers), {delivered} end Delivered; calls over all parcels / delivered parcels"
    );
    let mut out = Vec::new();

    // Fixed 5-minute polling (the seed's design).
    let mut calls = 0;
    let mut lat = Vec::new();
    for j in &js {
        let (c, l) = fixed_poll(j, start, Duration::minutes(5));
        calls += c;
        lat.extend(l);
    }
    lat.sort_unstable();
    out.push(Figure::num(
        S,
        "fixed 5-min poll: calls per delivered parcel",
        calls as f64 / delivered as f64,
        1,
        "calls",
        how.clone(),
    ));
    out.push(Figure::text(
        S,
        "fixed 5-min poll: detection latency p50 / p95",
        format!(
            "{:.1} / {:.1}",
            pct(&lat, 50) as f64 / 60.0,
            pct(&lat, 95) as f64 / 60.0
        ),
        "min",
        "status change → the poll that sees it",
    ));

    // The adaptive schedule, as the scheduler runs it (every minute).
    let a = checksim::summarize(n, seed, Priority::Normal, Duration::minutes(1));
    out.push(Figure::num(
        S,
        "adaptive schedule: calls per delivered parcel",
        a.calls_per_parcel * n as f64 / delivered as f64,
        1,
        "calls",
        format!("checksim::summarize (plan_next_check, normal priority, 1-min scheduler ticks); {how}; {} stage changes unseen", a.missed),
    ));
    out.push(Figure::text(
        S,
        "adaptive schedule: detection latency p50 / p95",
        format!(
            "{:.1} / {:.1}",
            a.latency_p50_s as f64 / 60.0,
            a.latency_p95_s as f64 / 60.0
        ),
        "min",
        "status change → the check that sees it",
    ));

    // Push with the safety net.
    let pushed: u64 = js.iter().map(|j| push_calls(j, start)).sum();
    out.push(Figure::num(
        S,
        "push: calls per delivered parcel",
        pushed as f64 / delivered as f64,
        1,
        "calls",
        format!(
            "1 subscription + a safety-net poll per {} h without news, until terminal; {how}",
            SAFETY_NET.num_hours()
        ),
    ));
    out.push(Figure::text(
        S,
        "push: detection latency p50 / p95",
        match push_ms {
            Some((p50, p95)) => format!("{p50:.0} / {p95:.0}"),
            None => "n/a".into(),
        },
        "ms + the provider's push delay",
        "our side only: push → SMS published (the push section below); the provider's own delay from scan to push is not simulated",
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_costs_least_and_fixed_polling_most() {
        let figs = schedule_section(60, 7, Some((60.0, 90.0)));
        let calls = |prefix: &str| {
            figs.iter()
                .find(|f| f.figure.starts_with(prefix) && f.unit == "calls")
                .and_then(|f| f.number)
                .unwrap()
        };
        let (fixed, adaptive, push) = (calls("fixed"), calls("adaptive"), calls("push"));
        assert!(
            push < adaptive && adaptive < fixed,
            "{push} {adaptive} {fixed}"
        );
        // A three-to-four-day journey polled every 5 minutes is several hundred calls.
        assert!(fixed > 300.0, "{fixed}");
        let fixed_lat = figs
            .iter()
            .find(|f| f.figure == "fixed 5-min poll: detection latency p50 / p95")
            .unwrap();
        let p95: f64 = fixed_lat
            .value
            .split(" / ")
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            p95 <= 5.0,
            "a 5-minute poll sees every change within 5 minutes: {p95}"
        );
    }
}
