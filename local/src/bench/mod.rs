//! `make bench`: the figures the product is judged on, measured on this machine, printed as one
//! table and written to `bench/results.md` and `bench/results.json` at the repository root.
//!
//! 1. **CPU per check** ([`cpu`]): the criterion run of `shared/benches/check.rs` (parse,
//!    normalize, diff, write decision for a 20-line answer), read back from criterion's files.
//! 2. **The deployed check** ([`deployed`]): the release `tracker` process behind a Runtime API
//!    with the template's configuration (limiter on), fed SQS batches from the tracking queue:
//!    process CPU per check from `/proc`, AWS requests, WRU and stream records per check by
//!    operation and by kind of check, and the cost per 1M checks, all from one run.
//! 2. **Cold start** ([`crate::coldstart`]): each release binary started as Lambda starts it,
//!    against a Runtime API served here, until its first answer is posted.
//! 3. **Pipeline throughput** ([`throughput`]): N parcels through scheduler → tracker → notifier
//!    on the local stack, every AWS request counted on the wire.
//! 4. **AWS cost per 1M checks** ([`crate::cost`]): those requests, priced.
//! 5. **Provider calls and detection latency** ([`schedule`]): fixed 5-minute poll, the adaptive
//!    schedule, push, on the simulator's journeys.
//! 6. **Order sync throughput**: N orders on each of the sandbox's platforms (fw199 enhanced
//!    list, TOP increment); one scheduled order-sync run pulls, stores and registers them all.
//!    Then the same run again (everything already known: the idempotent re-run).
//! 7. **Push to notification latency**: for K subscribed shipments, one signed Kdniao push each,
//!    sent over HTTP to the api's `/push/kdniao`; the clock stops when the notifier has published
//!    the buyer's SMS to SNS (read back from moto). Stream polling is driven by the runner right
//!    after the push is acknowledged, so the figure is our processing time; in AWS the stream
//!    poller adds its own delay (typically well under a second).
//!
//! Every figure that touches AWS includes moto, which is single-threaded Python and the
//! bottleneck locally; timings are of a shared 2-core machine unless `results.md` says otherwise.

pub mod cpu;
pub mod deployed;
pub mod schedule;
pub mod table;
pub mod throughput;

use crate::pipeline::{BoxError, Pipeline, PipelineOptions};
use chrono::Duration;
use parcelwatch::domain::order::Platform;
use parcelwatch::domain::PhoneNumber;
use parcelwatch::providers::kdniao::{format_accept_time, KdniaoResponse, KdniaoTrace};
use parcelwatch::providers::kdniao_push::{build_push_form, PUSH_REQUEST_TYPE_MONITOR};
use std::path::PathBuf;
use std::time::Instant;
use table::Figure;

#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchArgs {
    /// Orders per platform.
    pub orders: usize,
    /// Pushes timed.
    pub pushes: usize,
    /// Parcels of the throughput run.
    pub parcels: usize,
    /// Simulated hours of the throughput run.
    pub hours: i64,
    /// Starts of each function binary.
    pub coldstart_runs: usize,
    /// Journeys of the schedule figures.
    pub journeys: usize,
    /// Where the release function binaries are (`target/release`).
    pub bin_dir: PathBuf,
    /// Where criterion wrote (`target/criterion`).
    pub criterion_dir: PathBuf,
    /// Where results.md and results.json go (`bench/`).
    pub out_dir: PathBuf,
    /// Parcels of the deployed-check run, and how many times each is checked again.
    pub deployed_parcels: usize,
    pub deployed_rechecks: usize,
    /// Sections to run (all when empty): cpu, deployed, coldstart, throughput, schedule, orders,
    /// push.
    pub only: Vec<String>,
}

impl Default for BenchArgs {
    fn default() -> Self {
        let root = crate::moto::workspace_root().unwrap_or_else(|_| PathBuf::from("."));
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        BenchArgs {
            orders: 500,
            pushes: 40,
            parcels: 300,
            hours: 24,
            coldstart_runs: 5,
            journeys: 300,
            deployed_parcels: 200,
            deployed_rechecks: 2,
            bin_dir: target.join("release"),
            criterion_dir: cpu::criterion_dir(),
            out_dir: root.join("bench"),
            only: Vec::new(),
        }
    }
}

impl BenchArgs {
    fn wants(&self, section: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == section)
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The conditions the figures were taken under, for the top of results.md.
fn conditions(args: &BenchArgs, wall_s: f64) -> String {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into());
    format!(
        "Run {} UTC on {cores} cores (1-min load average at the end: {load}; other work may share the machine, so timings are upper bounds), {wall_s:.0} s in all. Settings: {} parcels for {} simulated hours, {} cold starts per function, {} journeys, {} orders per platform, {} pushes.",
        chrono::Utc::now().format("%Y-%m-%d %H:%M"),
        args.parcels,
        args.hours,
        args.coldstart_runs,
        args.journeys,
        args.orders,
        args.pushes
    )
}

/// Run the selected sections, print the table, write the files.
pub async fn run(args: BenchArgs) -> Result<Vec<Figure>, BoxError> {
    let t0 = Instant::now();
    let mut figures = Vec::new();
    let mut json = serde_json::json!({ "args": &args });
    if args.wants("cpu") {
        figures.extend(cpu::section(&args.criterion_dir));
    }
    if args.wants("deployed") {
        eprintln!(
            "bench: the deployed check ({} parcels, first check and {} re-checks, release tracker process)…",
            args.deployed_parcels, args.deployed_rechecks
        );
        let d = deployed::run(&args.bin_dir, args.deployed_parcels, args.deployed_rechecks).await?;
        figures.extend(deployed::figures(&d));
        json["deployed"] = serde_json::to_value(&d)?;
    }
    if args.wants("coldstart") {
        eprintln!("bench: cold starts ({} per function)…", args.coldstart_runs);
        let runs = crate::coldstart::measure(&args.bin_dir, args.coldstart_runs).await?;
        figures.extend(coldstart_figures(&runs));
        json["coldstart"] = serde_json::to_value(&runs)?;
    }
    if args.wants("throughput") {
        eprintln!(
            "bench: pipeline throughput ({} parcels, {} simulated hours)…",
            args.parcels, args.hours
        );
        let r = throughput::run(args.parcels, args.hours, 47).await?;
        figures.extend(throughput::figures(&r));
        figures.extend(throughput::cost_figures(&r));
        json["throughput"] = serde_json::to_value(&r)?;
        json["prices"] = serde_json::to_value(crate::cost::PRICES)?;
    }
    let mut push_ms = None;
    let mut later = Vec::new();
    if args.wants("orders") {
        eprintln!("bench: order sync ({} orders per platform)…", args.orders);
        later.extend(order_sync_throughput(args.orders).await?);
    }
    if args.wants("push") {
        eprintln!("bench: push latency ({} pushes)…", args.pushes);
        let (figs, p50_p95) = push_latency(args.pushes).await?;
        later.extend(figs);
        push_ms = Some(p50_p95);
    }
    if args.wants("schedule") {
        figures.extend(schedule::schedule_section(args.journeys, 7, push_ms));
    }
    figures.extend(later);
    let wall = t0.elapsed().as_secs_f64();
    let cond = conditions(&args, wall);
    json["conditions"] = serde_json::Value::String(cond.clone());
    json["figures"] = serde_json::to_value(&figures)?;
    println!("{}", table::plain(&figures));
    table::write(&args.out_dir, &cond, &figures, &json)?;
    println!(
        "\n{cond}\nwritten: {} and results.json",
        args.out_dir.join("results.md").display()
    );
    Ok(figures)
}

fn coldstart_figures(runs: &[crate::coldstart::ColdStart]) -> Vec<Figure> {
    const S: &str = "Cold start (release binaries)";
    runs.iter()
        .map(|c| {
            let failed: Vec<&str> = c
                .runs
                .iter()
                .filter(|r| !r.outcome.starts_with("ok"))
                .map(|r| r.outcome.as_str())
                .collect();
            Figure::text(
                S,
                format!("{} (sample event events/…)", c.function).replace(
                    "events/…",
                    crate::coldstart::FUNCTIONS
                        .iter()
                        .find(|(f, _)| *f == c.function)
                        .map_or("", |(_, e)| *e),
                ),
                match (c.median_ms(), c.max_ms()) {
                    (Some(med), Some(max)) => format!("{med:.0} / {max:.0}"),
                    _ => "n/a".into(),
                },
                "ms median / max",
                format!(
                    "process start → answer posted to the Runtime API, {} of {} runs answered (init to first /next: median {:.0} ms), {:.1} MB binary, against moto + sandbox{}",
                    c.answered(),
                    c.runs.len(),
                    c.median_init_ms().unwrap_or(f64::NAN),
                    c.binary_bytes as f64 / 1e6,
                    if failed.is_empty() { String::new() } else { format!("; failed: {}", failed[0]) }
                ),
            )
        })
        .collect()
}

async fn order_sync_throughput(n: usize) -> Result<Vec<Figure>, BoxError> {
    const S: &str = "Order sync (local stack)";
    let mut out = Vec::new();
    let mut p = Pipeline::start(PipelineOptions {
        seed: 41,
        shops: vec!["fw199:bench-fw".into(), "top:bench-top".into()],
        ..PipelineOptions::default()
    })
    .await?;
    let now = p.now();
    // The sandbox creates orders a minute apart and ships them two hours after creation: start
    // early enough that every order is shipped (and so modified) before now.
    let created = now - Duration::minutes(n as i64) - Duration::hours(3);
    let fw = p
        .sandbox
        .generate_orders("bench-fw", Platform::Fw199, n, created);
    let top = p
        .sandbox
        .generate_orders("bench-top", Platform::Top, n, created);
    let waybills: usize = fw
        .iter()
        .chain(&top)
        .flat_map(|o| o.orders.iter().filter_map(|s| s.shipment_id().ok()))
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let Some(deps) = p.order_sync.as_ref() else {
        return Err("order-sync not configured".into());
    };
    for run in [
        "first run (all new)",
        "next run (the 5-minute overlap again)",
    ] {
        let t0 = Instant::now();
        let report = order_sync::handle(deps, p.order_schedule.event_at(now)).await?;
        let secs = t0.elapsed().as_secs_f64();
        let orders: u64 = report.shops.iter().map(|s| s.orders).sum();
        let pages: u64 = report.shops.iter().map(|s| s.pages).sum();
        let registered: u64 = report.shops.iter().map(|s| s.shipments_registered).sum();
        let errors: Vec<_> = report
            .shops
            .iter()
            .filter_map(|s| s.error.clone())
            .collect();
        let (value, unit) = if orders == 0 {
            (secs * 1000.0, "ms")
        } else {
            (orders as f64 / secs, "orders/s")
        };
        out.push(Figure::num(
            S,
            format!("order-sync {run}"),
            value,
            0,
            unit,
            format!(
                "{orders} orders ({} fw199 + {} TOP), {pages} pages, {registered} of {waybills} waybills registered in {secs:.2} s; one scheduled run, bound by moto{}",
                fw.len(),
                top.len(),
                if errors.is_empty() { String::new() } else { format!("; errors: {errors:?}") }
            ),
        ));
    }
    p.drain_stream().await?;
    Ok(out)
}

/// The figures, and (p50, p95) of push → SMS in ms.
async fn push_latency(k: usize) -> Result<(Vec<Figure>, (f64, f64)), BoxError> {
    const S: &str = "Push to notification (local stack)";
    let mut p = Pipeline::start(PipelineOptions {
        seed: 43,
        push_mode: true,
        ..PipelineOptions::default()
    })
    .await?;
    // Waybills the sandbox's carrier does not know: it subscribes them but never pushes by
    // itself, so only the pushes timed here move them.
    let mut items = Vec::new();
    let mut parcels = Vec::new();
    for i in 0..k {
        let number = format!("YT9{:012}", 100_000 + i);
        let phone = PhoneNumber::parse(&format!("+8613{:09}", 700_000_000 + i))?;
        items
            .push(serde_json::json!({"carrier": "YTO", "number": number, "phone": phone.expose()}));
        parcels.push((number, phone));
    }
    let resp = p
        .http
        .post(format!("{}/shipments", p.front.base_url()))
        .header("x-api-key", &p.api_key)
        .json(&serde_json::json!({ "shipments": items }))
        .send()
        .await?;
    if !resp.status().is_success() {
        return Err(format!("registration answered {}", resp.status()).into());
    }
    // One tick: the tracker subscribes each shipment (8008) instead of polling it.
    p.tick().await?;
    let subscribed = p.sandbox.subscriptions().len();
    let eb = p.sandbox.ebusiness_id().to_string();
    let key = p.sandbox.app_key().to_string();
    let url = format!("{}/push/kdniao", p.front.base_url());
    let mut acks = Vec::with_capacity(k);
    let mut totals = Vec::with_capacity(k);
    let mut told = 0;
    for (number, phone) in &parcels {
        let now = p.now();
        let item = KdniaoResponse {
            ebusiness_id: Some(eb.clone()),
            shipper_code: Some("YTO".into()),
            logistic_code: Some(number.clone()),
            success: true,
            state: Some("2".into()),
            state_ex: Some("2".into()),
            traces: vec![KdniaoTrace {
                accept_time: format_accept_time(now - Duration::minutes(5)),
                accept_station: "【杭州市】快件已到达 杭州转运中心".into(),
                action: Some("2".into()),
                ..Default::default()
            }],
            ..Default::default()
        };
        let body = build_push_form(&eb, &key, PUSH_REQUEST_TYPE_MONITOR, now, &[item]);
        let before = p
            .sent_sms()
            .await?
            .iter()
            .filter(|m| m.phone_number == phone.expose())
            .count();
        let t0 = Instant::now();
        let r = p
            .http
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await?;
        let status = r.status();
        let _ack = r.text().await?;
        let acked = t0.elapsed();
        if !status.is_success() {
            return Err(format!("push answered {status}").into());
        }
        p.drain_stream().await?;
        let total = t0.elapsed();
        let after = p
            .sent_sms()
            .await?
            .iter()
            .filter(|m| m.phone_number == phone.expose())
            .count();
        if after == before + 1 {
            told += 1;
        }
        acks.push(acked.as_secs_f64() * 1000.0);
        totals.push(total.as_secs_f64() * 1000.0);
    }
    acks.sort_by(f64::total_cmp);
    totals.sort_by(f64::total_cmp);
    let (p50, p95) = (percentile(&totals, 0.5), percentile(&totals, 0.95));
    let figures = vec![
        Figure::text(
            S,
            "Kdniao push → acknowledged",
            format!("{:.0} / {:.0}", percentile(&acks, 0.5), percentile(&acks, 0.95)),
            "ms p50 / p95",
            format!("verify, fold, conditional write to DynamoDB; {k} signed pushes over HTTP to the api"),
        ),
        Figure::text(
            S,
            "Kdniao push → SMS published",
            format!("{p50:.0} / {p95:.0} / {:.0}", totals.last().copied().unwrap_or(0.0)),
            "ms p50 / p95 / max",
            format!("ack + stream read + notifier + ledger + SNS, read back from moto; {told} of {k} buyers told exactly once; {subscribed} subscriptions; the runner reads the stream right after the ack (AWS's poller adds its own delay)"),
        ),
    ];
    Ok((figures, (p50, p95)))
}
