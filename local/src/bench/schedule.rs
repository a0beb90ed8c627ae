//! Provider calls per delivered parcel and detection latency, on the simulator's journeys (the
//! demo's carriers and seed), for three ways of checking: a fixed 5-minute poll, the adaptive
//! schedule, and push with the safety net: [`checksim::compare`] for both priority tiers, every
//! strategy folded through the real `apply_check` (see `local/src/checksim.rs`).

use super::table::Figure;
use crate::checksim::{self, Comparison, Figures};
use parcelwatch::domain::Priority;

const S: &str = "Provider calls and detection latency";

fn minutes(s: i64) -> f64 {
    s as f64 / 60.0
}

fn rows(c: &Comparison, out: &mut Vec<Figure>) {
    let tier = c.priority.as_str();
    let tier_min = c.priority.tier_interval().num_minutes();
    let how = format!(
        "{} simulated journeys (seed {}, every journey kind), {} end Delivered; {}-s scheduler tick; calls over all parcels / delivered parcels",
        c.parcels,
        c.seed,
        c.adaptive.delivered,
        c.tick.num_seconds()
    );
    let name = |f: &Figures| f.strategy.to_string();
    for f in c.rows() {
        out.push(Figure::num(
            S,
            format!("{tier} tier, {}: calls per delivered parcel", name(f)),
            f.calls_per_delivered,
            1,
            "calls",
            how.clone(),
        ));
        out.push(Figure::text(
            S,
            format!(
                "{tier} tier, {}: detection latency p50 / p95 (near delivery p95)",
                name(f)
            ),
            format!(
                "{:.1} / {:.1} ({:.1})",
                minutes(f.latency_p50_s),
                minutes(f.latency_p95_s),
                minutes(f.near_p95_s)
            ),
            "min",
            format!(
                "status change → the check (or push) that sees it; near delivery = changes out of OutForDelivery (tier interval {tier_min} min); {} changes missed",
                f.missed
            ),
        ));
    }
    out.push(Figure::num(
        S,
        format!("{tier} tier: fixed 5-min calls / adaptive calls"),
        c.fixed.calls_per_delivered / c.adaptive.calls_per_delivered.max(f64::MIN_POSITIVE),
        1,
        "×",
        "how many times fewer provider calls the adaptive schedule makes on the same journeys",
    ));
}

/// `n` journeys of `seed`, both tiers; `push_ms`: our measured push → SMS latency (p50, p95).
pub fn schedule_section(n: usize, seed: u64, push_ms: Option<(f64, f64)>) -> Vec<Figure> {
    let mut out = Vec::new();
    for priority in [Priority::Normal, Priority::High] {
        rows(&checksim::compare(n, seed, priority), &mut out);
    }
    if let Some((p50, p95)) = push_ms {
        out.push(Figure::text(
            S,
            "push: our side of the latency p50 / p95",
            format!("{p50:.0} / {p95:.0}"),
            "ms",
            "push → SMS published (the push section); the push rows above use the sandbox's push delay",
        ));
    }
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
        let fixed = calls("normal tier, fixed");
        let adaptive = calls("normal tier, adaptive");
        let push = calls("normal tier, push");
        assert!(
            push < adaptive && adaptive < fixed,
            "{push} {adaptive} {fixed}"
        );
        // A three-to-four-day journey polled every 5 minutes is several hundred calls.
        assert!(fixed > 300.0, "{fixed}");
        let ratio = figs
            .iter()
            .find(|f| f.figure == "normal tier: fixed 5-min calls / adaptive calls")
            .and_then(|f| f.number)
            .unwrap();
        assert!(ratio >= 10.0, "{ratio}");
    }
}
