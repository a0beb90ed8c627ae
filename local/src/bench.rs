//! `make bench`: the figures of the order and push paths on the local stack, measured end to end
//! through the real functions, the real AWS SDK against moto and real HTTP against the sandbox.
//!
//! 1. **Order sync throughput**: N orders on each of the sandbox's platforms (fw199 enhanced
//!    list, TOP increment); one scheduled order-sync run pulls, stores and registers them all.
//!    Then the same run again (everything already known: the idempotent re-run).
//! 2. **Push to notification latency**: for K subscribed shipments, one signed Kdniao push each,
//!    sent over HTTP to the api's `/push/kdniao`; the clock stops when the notifier has published
//!    the buyer's SMS to SNS (read back from moto). Stream polling is driven by the runner right
//!    after the push is acknowledged, so the figure is our processing time; in AWS the stream
//!    poller adds its own delay (typically well under a second).
//!
//! Every figure includes moto, which is single-threaded Python and the bottleneck locally.

use crate::pipeline::{BoxError, Pipeline, PipelineOptions};
use chrono::Duration;
use parcelwatch::domain::order::Platform;
use parcelwatch::domain::PhoneNumber;
use parcelwatch::providers::kdniao::{format_accept_time, KdniaoResponse, KdniaoTrace};
use parcelwatch::providers::kdniao_push::{build_push_form, PUSH_REQUEST_TYPE_MONITOR};
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct BenchArgs {
    /// Orders per platform.
    pub orders: usize,
    /// Pushes timed.
    pub pushes: usize,
}

impl Default for BenchArgs {
    fn default() -> Self {
        BenchArgs {
            orders: 500,
            pushes: 40,
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub async fn run(args: BenchArgs) -> Result<(), BoxError> {
    order_sync_throughput(args.orders).await?;
    push_latency(args.pushes).await?;
    Ok(())
}

async fn order_sync_throughput(n: usize) -> Result<(), BoxError> {
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
        println!(
            "order-sync {run}: {orders} orders ({} fw199 + {} TOP), {pages} pages, {registered} of {waybills} waybills registered in {secs:.2} s -> {:.0} orders/s{}",
            fw.len(),
            top.len(),
            orders as f64 / secs,
            if errors.is_empty() { String::new() } else { format!("; errors: {errors:?}") }
        );
    }
    p.drain_stream().await?;
    Ok(())
}

async fn push_latency(k: usize) -> Result<(), BoxError> {
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
    println!(
        "push -> ack (verify, fold, conditional write to DynamoDB): p50 {:.0} ms, p95 {:.0} ms over {k} pushes",
        percentile(&acks, 0.5),
        percentile(&acks, 0.95)
    );
    println!(
        "push -> SMS published (ack + stream + notifier + SNS): p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms; {told} of {k} buyers told exactly once; {subscribed} subscriptions",
        percentile(&totals, 0.5),
        percentile(&totals, 0.95),
        totals.last().copied().unwrap_or(0.0)
    );
    Ok(())
}
