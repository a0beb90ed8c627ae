//! The demo driver behind `make demo`.

use crate::pipeline::{BoxError, Pipeline, PipelineOptions};
use crate::report::DemoReport;
use chrono::Duration;
use parcelwatch::domain::Status;
use std::io::Write;
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct DemoArgs {
    pub shipments: usize,
    pub days: i64,
    pub seed: u64,
    pub tick_minutes: i64,
    /// `PROVIDER_ROUTES` for the tracker (e.g. `default=kuaidi100`); `None`: Kdniao alone.
    pub routes: Option<String>,
    /// Push mode: shipments subscribed with Kdniao, updated by its pushes.
    pub push: bool,
    /// Kdniao's daily quota runs out this many simulated hours in (a provider failing mid-run).
    pub kdniao_fails_after_hours: Option<i64>,
}

impl DemoArgs {
    pub fn parse(args: impl Iterator<Item = String>) -> Result<DemoArgs, String> {
        let mut a = DemoArgs {
            shipments: 200,
            days: 6,
            seed: 7,
            tick_minutes: 10,
            routes: None,
            push: false,
            kdniao_fails_after_hours: None,
        };
        let mut it = args;
        while let Some(flag) = it.next() {
            if flag == "--push" {
                a.push = true;
                continue;
            }
            let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
            let bad = |e: std::num::ParseIntError| format!("{flag} {value}: {e}");
            match flag.as_str() {
                "--shipments" => a.shipments = value.parse().map_err(bad)?,
                "--days" => a.days = value.parse().map_err(bad)?,
                "--seed" => a.seed = value.parse().map_err(bad)?,
                "--tick-minutes" => a.tick_minutes = value.parse().map_err(bad)?,
                "--routes" => {
                    parcelwatch::providers::failover::ProviderRoutes::parse(&value)
                        .map_err(|e| format!("--routes: {e}"))?;
                    a.routes = Some(value).filter(|v| !v.is_empty());
                }
                "--kdniao-fails-after-hours" => {
                    a.kdniao_fails_after_hours = Some(value.parse().map_err(bad)?)
                }
                other => return Err(format!("unknown flag {other}")),
            }
        }
        if a.shipments == 0 || a.days <= 0 || a.tick_minutes <= 0 {
            return Err("--shipments, --days and --tick-minutes must be positive".into());
        }
        Ok(a)
    }
}

pub async fn run(args: DemoArgs) -> Result<(), BoxError> {
    // The functions' JSON logs, when asked for (`RUST_LOG=info make demo`); quiet otherwise.
    if std::env::var_os("RUST_LOG").is_some() {
        parcelwatch::telemetry::init();
    }
    let wall = Instant::now();
    eprintln!("starting the local stack (moto + template.yaml resources + carrier sandbox)…");
    // moto answers a due-index Query by scanning the whole table, so locally each shard
    // costs a table scan per tick: one shard keeps the demo about moto's speed, not ours.
    // (The integration test runs two shards; AWS runs DUE_SHARDS=16 from template.yaml.)
    let mut env = vec![
        ("SCHEDULER_MAX_ENQUEUE".to_string(), "400".to_string()),
        ("DUE_SHARDS".to_string(), "1".to_string()),
    ];
    if let Some(routes) = &args.routes {
        env.push(("PROVIDER_ROUTES".into(), routes.clone()));
    }
    let mut p = Pipeline::start(PipelineOptions {
        seed: args.seed,
        tick: Duration::minutes(args.tick_minutes),
        env,
        push_mode: args.push,
        ..PipelineOptions::default()
    })
    .await?;
    eprintln!(
        "providers: {} | push mode: {}{}",
        args.routes.as_deref().unwrap_or("kdniao (default)"),
        if args.push { "on" } else { "off" },
        args.kdniao_fails_after_hours
            .map(|h| format!(" | Kdniao's quota runs out after {h} h"))
            .unwrap_or_default()
    );
    eprintln!(
        "moto at {} | table {} | sandbox at {}",
        p.stack.endpoint,
        p.stack.table_name,
        p.sandbox.base_url()
    );
    let parcels = p
        .register_demo_parcels(args.shipments, Duration::hours(8))
        .await?;
    eprintln!(
        "registered {} parcels (shipped over the first 8 simulated hours); simulating up to {} days, one tick = {} min",
        parcels.len(),
        args.days,
        args.tick_minutes
    );
    let end = p.now() + Duration::days(args.days);
    let fail_at = args
        .kdniao_fails_after_hours
        .map(|h| p.now() + Duration::hours(h));
    let mut last_print = p.now();
    while p.now() < end {
        if fail_at.is_some_and(|t| p.now() >= t) && p.sandbox.stats().quota_refused == 0 {
            p.sandbox.set_kdniao_quota_exhausted(true);
            eprintln!(
                "\n[{}] Kdniao's daily quota is spent",
                p.now().format("%m-%d %H:%M")
            );
        }
        p.tick().await?;
        if p.now() - last_print >= Duration::hours(6) {
            last_print = p.now();
            let open = p
                .shipments()
                .await?
                .iter()
                .filter(|s| !s.status.is_terminal())
                .count();
            eprint!(
                "\r[{}] checks {:>7} | stream records {:>7} | still moving {:>5} | {:>5.0}s ",
                p.now().format("%m-%d %H:%M"),
                p.totals.messages,
                p.totals.stream_records,
                open,
                wall.elapsed().as_secs_f64()
            );
            let _ = std::io::stderr().flush();
            if open == 0 {
                break;
            }
        }
    }
    eprintln!();
    let report = DemoReport::collect(&p, &parcels).await?;
    println!();
    println!(
        "parcelwatch demo — {} parcels, seed {}, simulated {} → {}",
        args.shipments,
        args.seed,
        p.opts.start.format("%Y-%m-%d %H:%M"),
        p.now().format("%Y-%m-%d %H:%M")
    );
    println!("{}", report.table());
    println!(
        "wall time {:.1}s | scheduler ticks {} | tracker invocations {} | notifier invocations {}",
        wall.elapsed().as_secs_f64(),
        p.totals.ticks,
        p.totals.tracker_batches,
        p.totals.stream_batches
    );
    println!(
        "time in scheduler {:.1}s | trackers {:.1}s | notifier {:.1}s",
        p.totals.scheduler_time.as_secs_f64(),
        p.totals.tracker_time.as_secs_f64(),
        p.totals.notifier_time.as_secs_f64()
    );
    if report
        .by_status
        .get(&Status::Delivered)
        .copied()
        .unwrap_or(0)
        == 0
        || report.sms_total == 0
    {
        return Err("no parcel was delivered or no SMS was sent: the pipeline is broken".into());
    }
    Ok(())
}
