//! Pipeline throughput on the local stack, and the AWS requests it made (for the cost per 1M
//! checks): N parcels registered, then scheduler → tracker → notifier ticks on the simulated
//! clock, with every AWS request of the functions and of the event-source runner going through a
//! metering proxy in front of moto ([`crate::cost::Meter`]).

use super::table::Figure;
use crate::cost::{self, CostEstimate, FunctionUse, Meter, OpStats};
use crate::faults::{AwsFaultPlan, AwsFaultProxy};
use crate::pipeline::{BoxError, Pipeline, PipelineOptions};
use crate::stack::{sdk_config_for, LocalStack};
use chrono::Duration;
use std::collections::BTreeMap;
use std::time::Instant;

/// What the run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Throughput {
    pub parcels: usize,
    pub simulated_hours: i64,
    pub ticks: u64,
    /// Tracker messages handled (one provider query each, or a deferral).
    pub checks: u64,
    pub check_failures: u64,
    pub stream_records: u64,
    /// SNS publishes answered by the local SNS (SMS, push, merchant topic).
    pub notifications: u64,
    pub scheduler_s: f64,
    pub tracker_s: f64,
    pub notifier_s: f64,
    pub wall_s: f64,
    pub tracker_invocations: u64,
    pub notifier_invocations: u64,
    pub ops: BTreeMap<String, OpStats>,
    pub cost: CostEstimate,
    /// The scheduler's memory size in the template.
    pub scheduler_memory_mb: u64,
}

pub async fn run(parcels: usize, hours: i64, seed: u64) -> Result<Throughput, BoxError> {
    let stack = LocalStack::start_shared().await?;
    let meter = Meter::new();
    let proxy =
        AwsFaultProxy::start_tapped(&stack.endpoint, AwsFaultPlan::default(), Some(meter.tap()))
            .await?;
    // Everything after provisioning goes through the meter: the functions' clients and the
    // runner's (the SQS poller and stream reader stand for Lambda's event-source mappings).
    let mut metered = stack.clone();
    metered.endpoint = proxy.endpoint();
    metered.sdk_config = sdk_config_for(&proxy.endpoint());
    let opts = PipelineOptions {
        seed,
        ..PipelineOptions::default()
    };
    let tick = opts.tick;
    let mut p = Pipeline::on_stack(metered, opts).await?;
    p.register_demo_parcels(parcels, Duration::hours(2)).await?;
    meter.reset();
    let before = p.totals;
    let ticks = (Duration::hours(hours).num_seconds() / tick.num_seconds()).max(1) as u64;
    let t0 = Instant::now();
    for _ in 0..ticks {
        p.tick().await?;
    }
    let wall_s = t0.elapsed().as_secs_f64();
    let ops = meter.snapshot();
    let t = p.totals;
    let checks = t.messages - before.messages;
    let scheduler_s = (t.scheduler_time - before.scheduler_time).as_secs_f64();
    let tracker_s = (t.tracker_time - before.tracker_time).as_secs_f64();
    let notifier_s = (t.notifier_time - before.notifier_time).as_secs_f64();
    let notifications = ops
        .get("sns.Publish")
        .map_or(0, |s| s.calls.saturating_sub(s.errors));

    let template = std::fs::read_to_string(crate::moto::workspace_root()?.join("template.yaml"))?;
    let memory = cost::template_memory(&template);
    let mem = |f: &str| memory.get(f).copied().unwrap_or(128);
    let tracker_invocations = t.tracker_batches - before.tracker_batches;
    let notifier_invocations = t.stream_batches - before.stream_batches;
    let functions = [
        FunctionUse {
            name: "scheduler".into(),
            invocations: ticks,
            seconds: scheduler_s,
            memory_mb: mem("scheduler"),
        },
        FunctionUse {
            name: "tracker".into(),
            invocations: tracker_invocations,
            seconds: tracker_s,
            memory_mb: mem("tracker"),
        },
        FunctionUse {
            name: "notifier".into(),
            invocations: notifier_invocations,
            seconds: notifier_s,
            memory_mb: mem("notifier"),
        },
    ];
    let cost = cost::estimate(checks, &ops, &functions);
    let scheduler_memory_mb = mem("scheduler");
    proxy.shutdown().await;
    Ok(Throughput {
        parcels,
        simulated_hours: hours,
        ticks,
        checks,
        check_failures: t.message_failures - before.message_failures,
        stream_records: t.stream_records - before.stream_records,
        notifications,
        scheduler_s,
        tracker_s,
        notifier_s,
        wall_s,
        tracker_invocations,
        notifier_invocations,
        ops,
        cost,
        scheduler_memory_mb,
    })
}

pub fn figures(r: &Throughput) -> Vec<Figure> {
    const S: &str = "Pipeline throughput (local stack)";
    let run = format!(
        "{} parcels, {} simulated hours in {} ticks of 10 min, release build, moto (single-threaded Python) on loopback",
        r.parcels, r.simulated_hours, r.ticks
    );
    let checks_s = r.checks as f64 / (r.scheduler_s + r.tracker_s).max(1e-9);
    let notes_s = r.notifications as f64 / r.notifier_s.max(1e-9);
    vec![
        Figure::num(S, "checks", r.checks as f64, 0, "checks", format!("tracker messages handled ({} reported failed); {run}", r.check_failures)),
        Figure::num(S, "checks per second", checks_s, 1, "checks/s", format!("checks / (scheduler + tracker wall time, {:.1} s): due-index query, enqueue, receive, GetItem, provider query over HTTP to the sandbox, writes, delete; bound by moto", r.scheduler_s + r.tracker_s)),
        Figure::num(S, "notifications", r.notifications as f64, 0, "SNS publishes", format!("from {} stream records in {} notifier invocations", r.stream_records, r.notifier_invocations)),
        Figure::num(S, "notifications per second", notes_s, 1, "notifications/s", format!("SNS publishes / notifier wall time ({:.1} s): stream read, filter, ledger claim, KMS decrypt, render, publish, ledger complete", r.notifier_s)),
        Figure::num(S, "whole pipeline", r.checks as f64 / r.wall_s.max(1e-9), 1, "checks/s", format!("checks / wall time of all ticks ({:.1} s)", r.wall_s)),
    ]
}

pub fn cost_figures(r: &Throughput) -> Vec<Figure> {
    const S: &str = "AWS cost per 1M checks (us-east-1, on-demand)";
    let c = &r.cost;
    let mut out: Vec<Figure> = c
        .lines
        .iter()
        .map(|l| {
            Figure::num(
                S,
                format!("{}: {}", l.service, l.what),
                l.usd_per_1m_checks,
                2,
                "USD",
                format!(
                    "{} {} per 1M checks",
                    super::table::fmt_num(l.units_per_1m_checks, 0),
                    l.unit
                ),
            )
        })
        .collect();
    for (service, usd) in &c.by_service {
        out.push(Figure::num(
            S,
            format!("total {service}"),
            *usd,
            2,
            "USD",
            "sum of its lines",
        ));
    }
    out.push(Figure::num(
        S,
        "total AWS per 1M checks",
        c.total_usd_per_1m_checks,
        2,
        "USD",
        format!(
            "requests counted on the wire during the throughput run ({} checks), priced with local/src/cost.rs PRICES; SMS not priced: {} SMS per 1M checks",
            c.checks,
            super::table::fmt_num(c.sms_per_1m_checks, 0)
        ),
    ));
    let per_run = r.scheduler_s / r.ticks.max(1) as f64;
    out.push(Figure::num(
        S,
        "scheduler's standing cost per month (whatever the load)",
        cost::scheduler_standing_usd_per_month(per_run, r.scheduler_memory_mb, TEMPLATE_DUE_SHARDS),
        2,
        "USD/month",
        format!(
            "rate(1 minute): 43,200 runs a month of {:.0} ms (the run's mean per tick, an upper bound) at {} MB, {TEMPLATE_DUE_SHARDS} due-shard queries each",
            per_run * 1000.0,
            r.scheduler_memory_mb
        ),
    ));
    out
}

/// The template's `DUE_SHARDS`.
const TEMPLATE_DUE_SHARDS: u32 = 16;

#[cfg(test)]
mod tests {
    #[test]
    fn the_due_shards_are_the_templates() {
        let template =
            std::fs::read_to_string(crate::moto::workspace_root().unwrap().join("template.yaml"))
                .unwrap();
        assert!(
            template.contains(&format!("DUE_SHARDS: \"{}\"", super::TEMPLATE_DUE_SHARDS)),
            "template.yaml's DUE_SHARDS changed: update TEMPLATE_DUE_SHARDS"
        );
    }
}
