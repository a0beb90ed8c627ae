//! `make report`: the delivery analytics as a table, per carrier and route (count, median and
//! 90th-percentile delivery time, exception rate) and per stage (time in stage, quiet gaps).
//!
//! By default it runs N simulated parcels through a fresh local stack (moto, the carrier
//! sandbox, every function including analytics on the stream) and reports what the analytics
//! function aggregated. With `--stack` it reads the aggregates of an existing table instead
//! (`TABLE_NAME` and the `AWS_*` variables, e.g. `.local/stack.env` of `make stack`, or a
//! deployed stack's table).

use chrono::Duration;
use parcelwatch::domain::stats::{Histogram, HistorySnapshot, RouteStats};
use parcelwatch::store::analytics::{AnalyticsStore, DynamoAnalytics};
use parcelwatch_local::pipeline::{BoxError, Pipeline, PipelineOptions};
use std::fmt::Write;

const USAGE: &str =
    "usage: report [--shipments N] [--days D] [--seed S] [--routes R] | report --stack";

#[derive(Debug, Clone, PartialEq, Eq)]
struct Args {
    shipments: usize,
    days: i64,
    seed: u64,
    /// Routes listed per carrier (busiest first).
    routes: usize,
    stack: bool,
}

fn parse(args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        shipments: 200,
        days: 8,
        seed: 7,
        routes: 5,
        stack: false,
    };
    let mut it = args;
    while let Some(flag) = it.next() {
        if flag == "--stack" {
            a.stack = true;
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |e: std::num::ParseIntError| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--shipments" => a.shipments = value.parse().map_err(bad)?,
            "--days" => a.days = value.parse().map_err(bad)?,
            "--seed" => a.seed = value.parse().map_err(bad)?,
            "--routes" => a.routes = value.parse().map_err(bad)?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if a.shipments == 0 || a.days <= 0 {
        return Err("--shipments and --days must be positive".into());
    }
    Ok(a)
}

fn hours(h: &Histogram, q: f64) -> String {
    h.quantile(q).map_or("-".into(), |d: Duration| {
        format!("{:.1}", d.num_seconds() as f64 / 3600.0)
    })
}

fn rate(r: &RouteStats) -> String {
    r.exception_rate()
        .map_or("-".into(), |x| format!("{:.1}%", x * 100.0))
}

/// `s` padded to `width` terminal columns (CJK characters take two).
fn pad(s: &str, width: usize) -> String {
    let cols: usize = s
        .chars()
        .map(|c| if (c as u32) >= 0x2E80 { 2 } else { 1 })
        .sum();
    format!("{s}{}", " ".repeat(width.saturating_sub(cols)))
}

fn route_line(out: &mut String, carrier: &str, route: &str, r: &RouteStats) {
    let _ = writeln!(
        out,
        "{carrier:<7} {} {:>9} {:>9} {:>10} {:>8} {:>8} {:>8}",
        pad(route, 16),
        r.finished,
        r.delivered,
        r.exceptions,
        rate(r),
        hours(&r.delivery, 0.5),
        hours(&r.delivery, 0.9),
    );
}

/// The report's text: routes per carrier, then stages.
fn render(h: &HistorySnapshot, routes_per_carrier: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<7} {:<16} {:>9} {:>9} {:>10} {:>8} {:>8} {:>8}",
        "carrier",
        "origin→dest",
        "finished",
        "delivered",
        "exceptions",
        "exc.rate",
        "p50 h",
        "p90 h"
    );
    let mut all = RouteStats::default();
    for carrier in h.carriers() {
        let total = h.route(&carrier, None, None);
        all.merge(&total);
        route_line(&mut out, &carrier, "(all)", &total);
        let mut rows: Vec<_> = h
            .routes
            .iter()
            .filter(|(k, _)| k.carrier == carrier)
            .collect();
        rows.sort_by(|a, b| b.1.finished.cmp(&a.1.finished).then(a.0.cmp(b.0)));
        for (k, r) in rows.into_iter().take(routes_per_carrier) {
            route_line(&mut out, "", &format!("{}→{}", k.origin, k.destination), r);
        }
    }
    route_line(&mut out, "all", "", &all);
    let _ = writeln!(
        out,
        "\n{:<7} {:<25} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "carrier", "stage", "stays", "p50 h", "gaps", "gap p50", "gap p90"
    );
    for ((carrier, stage), st) in &h.stages {
        let _ = writeln!(
            out,
            "{:<7} {:<25} {:>8} {:>8} {:>8} {:>8} {:>8}",
            carrier,
            stage.as_str(),
            st.time_in_stage.total(),
            hours(&st.time_in_stage, 0.5),
            st.quiet_gap.total(),
            hours(&st.quiet_gap, 0.5),
            hours(&st.quiet_gap, 0.9),
        );
    }
    out
}

async fn run(a: Args) -> Result<String, BoxError> {
    if a.stack {
        let table = std::env::var("TABLE_NAME")
            .map_err(|_| "TABLE_NAME is not set (source .local/stack.env, or export it)")?;
        let sdk = aws_config::load_from_env().await;
        let store = DynamoAnalytics::new(aws_sdk_dynamodb::Client::new(&sdk), &table);
        let h = store.load_history().await?;
        return Ok(format!(
            "Delivery analytics of table {table}\n\n{}",
            render(&h, a.routes)
        ));
    }
    eprintln!("starting the local stack (moto + template.yaml resources + carrier sandbox)…");
    let mut p = Pipeline::start(PipelineOptions {
        seed: a.seed,
        env: vec![
            ("SCHEDULER_MAX_ENQUEUE".to_string(), "400".to_string()),
            ("DUE_SHARDS".to_string(), "1".to_string()),
        ],
        ..PipelineOptions::default()
    })
    .await?;
    p.register_demo_parcels(a.shipments, Duration::hours(8))
        .await?;
    eprintln!(
        "{} parcels registered; simulating up to {} days…",
        a.shipments, a.days
    );
    let wall = std::time::Instant::now();
    p.run_until_settled(a.days).await?;
    let store = DynamoAnalytics::new(p.dynamo.clone(), &p.stack.table_name);
    let h = store.load_history().await?;
    Ok(format!(
        "Delivery analytics: {} simulated parcels, seed {}, {:.1} simulated days, {:.0} s wall \
         (analytics {:.1} s)\n\n{}",
        a.shipments,
        a.seed,
        (p.now() - p.opts.start).num_minutes() as f64 / 1440.0,
        wall.elapsed().as_secs_f64(),
        p.totals.analytics_time.as_secs_f64(),
        render(&h, a.routes)
    ))
}

#[tokio::main]
async fn main() {
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    match run(args).await {
        Ok(text) => print!("{text}"),
        Err(e) => {
            eprintln!("report failed: {e}");
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parcelwatch::domain::stats::RouteKey;

    #[test]
    fn flags_parse_and_bad_ones_are_refused() {
        let a = parse(
            ["--shipments", "50", "--stack"]
                .iter()
                .map(|s| s.to_string()),
        )
        .unwrap();
        assert_eq!((a.shipments, a.days, a.stack), (50, 8, true));
        assert!(parse(["--days", "0"].iter().map(|s| s.to_string())).is_err());
        assert!(parse(["--shipments"].iter().map(|s| s.to_string())).is_err());
        assert!(parse(["--nope", "1"].iter().map(|s| s.to_string())).is_err());
    }

    #[test]
    fn the_table_has_a_line_per_carrier_route_and_total() {
        let mut h = HistorySnapshot::default();
        let mut r = RouteStats {
            finished: 4,
            delivered: 3,
            exceptions: 1,
            ..Default::default()
        };
        for _ in 0..3 {
            r.delivery.record(Duration::hours(50));
        }
        h.routes.insert(
            RouteKey {
                carrier: "ZTO".into(),
                origin: "浙江".into(),
                destination: "四川".into(),
            },
            r,
        );
        let text = render(&h, 5);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[1].starts_with("ZTO") && lines[1].contains("(all)"),
            "{text}"
        );
        assert!(
            lines[2].contains("浙江→四川") && lines[2].contains("25.0%"),
            "{text}"
        );
        assert!(lines[3].starts_with("all"), "{text}");
        // Columns line up although the provinces are two terminal columns per character.
        assert_eq!(pad("浙江→四川", 16).chars().count(), 5 + 7);
        assert_eq!(pad("(all)", 16).len(), 16);
    }
}
