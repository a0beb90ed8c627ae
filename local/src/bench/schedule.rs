//! Provider calls per delivered parcel and detection latency, on the simulator's journeys (the
//! demo's carriers and seed), for three ways of checking: a fixed 5-minute poll, the adaptive
//! schedule (on its default cadences, and with cadences learned from other journeys), and push
//! with the safety net: [`checksim::compare`] for both priority tiers, every strategy folded
//! through the real `apply_check` (see `local/src/checksim.rs`); then the same over more seeds,
//! so that no figure rests on one draw of journeys.

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
    for f in [&c.adaptive, &c.learned] {
        out.push(Figure::num(
            S,
            format!("{tier} tier: fixed 5-min calls / {} calls", name(f)),
            ratio(c, f),
            1,
            "×",
            "how many times fewer provider calls the adaptive schedule makes on the same journeys",
        ));
    }
}

/// How many times fewer calls than the fixed poll `f` makes.
fn ratio(c: &Comparison, f: &Figures) -> f64 {
    c.fixed.calls_per_delivered / f.calls_per_delivered.max(f64::MIN_POSITIVE)
}

/// The seeds of the spread rows: the headline seed and four more.
pub const SEEDS: [u64; 5] = [7, 11, 21, 42, 99];

/// The adaptive schedule's saving and near-delivery p95 over every seed of [`SEEDS`]: the
/// lowest and highest of each.
fn spread(n: usize, priority: Priority, out: &mut Vec<Figure>) {
    let tier = priority.as_str();
    let runs: Vec<Comparison> = SEEDS
        .iter()
        .map(|seed| checksim::compare(n, *seed, priority))
        .collect();
    let seeds = SEEDS.map(|s| s.to_string()).join(", ");
    for pick in [
        |c: &Comparison| c.adaptive.clone(),
        |c: &Comparison| c.learned.clone(),
    ] {
        let ratios: Vec<f64> = runs.iter().map(|c| ratio(c, &pick(c))).collect();
        let near: Vec<i64> = runs.iter().map(|c| pick(c).near_p95_s).collect();
        let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = ratios.iter().copied().fold(0.0, f64::max);
        let name = pick(&runs[0]).strategy.to_string();
        out.push(Figure::text(
            S,
            format!("{tier} tier, {name}: fixed / adaptive calls over {} seeds", SEEDS.len()),
            format!("{lo:.1} – {hi:.1}"),
            "×",
            format!(
                "{n} journeys per seed (seeds {seeds}); lowest – highest; near-delivery p95 at most {:.1} min",
                minutes(near.iter().copied().max().unwrap_or(0))
            ),
        ));
    }
}

/// `n` journeys of `seed`, both tiers; `push_ms`: our measured push → SMS latency (p50, p95).
pub fn schedule_section(n: usize, seed: u64, push_ms: Option<(f64, f64)>) -> Vec<Figure> {
    let mut out = Vec::new();
    for priority in [Priority::Normal, Priority::High] {
        rows(&checksim::compare(n, seed, priority), &mut out);
    }
    for priority in [Priority::Normal, Priority::High] {
        spread(n, priority, &mut out);
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
        for strategy in ["adaptive", "adaptive+hist"] {
            let ratio = figs
                .iter()
                .find(|f| f.figure == format!("normal tier: fixed 5-min calls / {strategy} calls"))
                .and_then(|f| f.number)
                .unwrap();
            assert!(ratio >= 10.0, "{strategy}: {ratio}");
        }
        // The spread rows: one per tier and strategy, lowest ≤ highest.
        let spread: Vec<_> = figs.iter().filter(|f| f.figure.contains("seeds")).collect();
        assert_eq!(spread.len(), 4, "{spread:?}");
        for f in spread {
            let (lo, hi) = f.value.split_once(" – ").unwrap();
            assert!(
                lo.parse::<f64>().unwrap() <= hi.parse::<f64>().unwrap(),
                "{f:?}"
            );
        }
    }
}
