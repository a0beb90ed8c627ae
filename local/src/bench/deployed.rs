//! The deployed check, measured as Lambda runs it: the release `tracker` binary in its own
//! process behind a Lambda Runtime API ([`crate::runtime_api`]), with the template's environment
//! for the tracker — the shared token bucket on (`PROVIDER_RATE_LIMITS` as the template sets
//! it), `TRACKER_CONCURRENCY`, the timeouts — against moto and the sandbox's Kdniao. Its SQS
//! batches come from the project's tracking queue through the same event-source mapping the
//! local runner uses (`ReceiveMessage` of the template's batch size, `DeleteMessageBatch` of what
//! was not reported failed).
//!
//! One run:
//! 1. N parcels in transit are registered (journeys started 3–40 h ago, so their traces hold
//!    lines and few are finished).
//! 2. The release `scheduler` binary is invoked once (its own process, its template
//!    environment): it moves the due parcels from the due index to the queue.
//! 3. The tracker drains the queue: the **first check** of every parcel (every line is new).
//! 4. Then, `rechecks` times, every parcel still tracked is enqueued again and checked: a
//!    **re-check** finds what a check usually finds, nothing new.
//!
//! Measured, per phase and over the run: the tracker process's CPU (`/proc/<pid>/stat`, user +
//! system of every thread, from its first `GET /next` to the end, so init is apart), checks,
//! every AWS request by operation with its WRU/RRU ([`crate::cost::Meter`] on the wire), the
//! items written under `SHIP#` (each a DynamoDB stream record; those on `META` are the ones the
//! notifier's and analytics' filters let through), and the cost per 1M checks.

use super::table::{fmt_num, Figure};
use crate::cost::{self, CostEstimate, FunctionUse, Meter, OpStats};
use crate::faults::{AwsFaultPlan, AwsFaultProxy};
use crate::moto::workspace_root;
use crate::pipeline::{BoxError, DEMO_CARRIERS};
use crate::runner::sqs::SqsSource;
use crate::runtime_api::{peak_rss_kb, process_cpu, process_cpu_precise, Outcome, RuntimeApi};
use crate::sandbox::journey::{waybill_number, JourneyKind};
use crate::sandbox::{Sandbox, SandboxConfig};
use crate::stack::{sdk_config_for, LocalStack};
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use chrono::{Duration as ChronoDuration, Utc};
use parcelwatch::config::Config;
use parcelwatch::crypto::Vault;
use parcelwatch::domain::{Locale, PhoneNumber, Priority, Recipient, Shipment, ShipmentId};
use parcelwatch::queue::TrackMessage;
use parcelwatch::store::{DynamoStore, ShipmentStore};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Items written in the table, by kind (each write is one stream record).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Writes {
    /// `SHIP#…/META`: the records the notifier's and analytics' stream filters pass.
    pub meta: u64,
    /// `SHIP#…/SCHED`: the schedule item (filtered out of both triggers).
    pub sched: u64,
    /// `SHIP#…/EVT#…`: trace lines (filtered out).
    pub lines: u64,
    /// Anything else in the table (`SCHED#due`, ledger items, …).
    pub other: u64,
}

impl Writes {
    fn minus(&self, b: &Writes) -> Writes {
        Writes {
            meta: self.meta - b.meta,
            sched: self.sched - b.sched,
            lines: self.lines - b.lines,
            other: self.other - b.other,
        }
    }
    pub fn stream_records(&self) -> u64 {
        self.meta + self.sched + self.lines + self.other
    }
}

/// One phase of the run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Phase {
    pub label: String,
    /// Tracker messages handled (each a check: a provider query, a wait or a skip).
    pub checks: u64,
    /// Messages the tracker reported failed.
    pub failed: u64,
    pub invocations: u64,
    /// Tracker process CPU during the phase (ms), from /proc stat ticks and from schedstat.
    pub cpu_ms: f64,
    pub cpu_ms_precise: f64,
    /// Wall time of the tracker's invocations (what Lambda bills), summed.
    pub invoke_s: f64,
    pub ops: BTreeMap<String, OpStats>,
    pub writes: Writes,
}

impl Phase {
    fn new(label: impl Into<String>) -> Phase {
        Phase {
            label: label.into(),
            checks: 0,
            failed: 0,
            invocations: 0,
            cpu_ms: 0.0,
            cpu_ms_precise: 0.0,
            invoke_s: 0.0,
            ops: BTreeMap::new(),
            writes: Writes::default(),
        }
    }
    fn per_check(&self, v: f64) -> f64 {
        v / self.checks.max(1) as f64
    }
    /// AWS requests of the tracker process itself (DynamoDB, and SQS/SNS it sends to).
    pub fn tracker_requests(&self) -> u64 {
        self.ops
            .iter()
            .filter(|(op, _)| !EVENT_SOURCE_OPS.contains(&op.as_str()))
            .map(|(_, s)| s.calls)
            .sum()
    }
    /// Requests of the event-source mapping (Lambda's SQS poller: receive, delete).
    pub fn poller_requests(&self) -> u64 {
        self.ops
            .iter()
            .filter(|(op, _)| EVENT_SOURCE_OPS.contains(&op.as_str()))
            .map(|(_, s)| s.calls)
            .sum()
    }
    fn sum(&self, f: impl Fn(&OpStats) -> f64) -> f64 {
        self.ops.values().map(f).sum()
    }
}

const EVENT_SOURCE_OPS: [&str; 2] = ["sqs.ReceiveMessage", "sqs.DeleteMessageBatch"];

#[derive(Debug, Clone, serde::Serialize)]
pub struct Deployed {
    pub parcels: usize,
    /// `PROVIDER_RATE_LIMITS` of the tracker as the template sets it.
    pub rate_limits: String,
    pub tracker_memory_mb: u64,
    pub tracker_init_ms: f64,
    pub tracker_init_cpu_ms: f64,
    pub tracker_peak_rss_kb: u64,
    /// The scheduler's one run that enqueued the first checks, and the stand-in sends of the
    /// re-checks (one `SendMessageBatch` per 10, as the scheduler sends).
    pub scheduler: Phase,
    pub phases: Vec<Phase>,
    pub cost: CostEstimate,
}

impl Deployed {
    /// Every tracker phase together.
    pub fn total(&self) -> Phase {
        let mut t = Phase::new("all checks");
        for p in &self.phases {
            t.checks += p.checks;
            t.failed += p.failed;
            t.invocations += p.invocations;
            t.cpu_ms += p.cpu_ms;
            t.cpu_ms_precise += p.cpu_ms_precise;
            t.invoke_s += p.invoke_s;
            merge_ops(&mut t.ops, &p.ops);
            t.writes.meta += p.writes.meta;
            t.writes.sched += p.writes.sched;
            t.writes.lines += p.writes.lines;
            t.writes.other += p.writes.other;
        }
        t
    }
}

fn merge_ops(into: &mut BTreeMap<String, OpStats>, from: &BTreeMap<String, OpStats>) {
    for (op, s) in from {
        into.entry(op.clone()).or_default().add(s);
    }
}

fn diff_ops(
    after: &BTreeMap<String, OpStats>,
    before: &BTreeMap<String, OpStats>,
) -> BTreeMap<String, OpStats> {
    let mut out = BTreeMap::new();
    for (op, a) in after {
        let d = a.since(&before.get(op).cloned().unwrap_or_default());
        if d.calls > 0 {
            out.insert(op.clone(), d);
        }
    }
    out
}

/// Count the items a successful DynamoDB write request wrote in `table`, by kind.
fn count_writes(op: &str, req: &[u8], table: &str, w: &mut Writes) {
    let Some(name) = op.strip_prefix("dynamodb.") else {
        return;
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(req) else {
        return;
    };
    let mut keys: Vec<&serde_json::Value> = Vec::new();
    match name {
        "PutItem" if v["TableName"] == table => keys.push(&v["Item"]),
        "UpdateItem" | "DeleteItem" if v["TableName"] == table => keys.push(&v["Key"]),
        "BatchWriteItem" => {
            for r in v["RequestItems"][table].as_array().into_iter().flatten() {
                keys.push(if r["PutRequest"].is_object() {
                    &r["PutRequest"]["Item"]
                } else {
                    &r["DeleteRequest"]["Key"]
                });
            }
        }
        "TransactWriteItems" => {
            for t in v["TransactItems"].as_array().into_iter().flatten() {
                for (kind, field) in [("Put", "Item"), ("Update", "Key"), ("Delete", "Key")] {
                    if t[kind]["TableName"] == table {
                        keys.push(&t[kind][field]);
                    }
                }
            }
        }
        _ => {}
    }
    for k in keys {
        let pk = k["pk"]["S"].as_str().unwrap_or("");
        let sk = k["sk"]["S"].as_str().unwrap_or("");
        match (pk.starts_with("SHIP#"), sk) {
            (true, "META") => w.meta += 1,
            (true, "SCHED") => w.sched += 1,
            (true, sk) if sk.starts_with("EVT#") => w.lines += 1,
            _ => w.other += 1,
        }
    }
}

/// The environment Lambda gives `function`: its own template environment (not the other
/// functions'), the AWS variables pointed at `aws_endpoint`, Lambda's variables, and what only
/// AWS could supply (the Kdniao credentials from Secrets Manager, the sandbox's endpoints).
fn function_env(
    stack: &LocalStack,
    sandbox: &Sandbox,
    function: &str,
    aws_endpoint: &str,
    memory_mb: u64,
) -> Result<BTreeMap<String, String>, BoxError> {
    let mut env: BTreeMap<String, String> = stack.aws_env_vars().into_iter().collect();
    env.insert("AWS_ENDPOINT_URL".into(), aws_endpoint.to_owned());
    env.extend(
        stack
            .function_env(function)
            .ok_or_else(|| format!("template.yaml has no function {function}"))?
            .clone(),
    );
    let mut set = |k: &str, v: &str| {
        env.insert(k.to_owned(), v.to_owned());
    };
    set("AWS_DEFAULT_REGION", crate::provision::LOCAL_REGION);
    set(
        "AWS_LAMBDA_FUNCTION_NAME",
        &format!("parcelwatch-{function}"),
    );
    set("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", &memory_mb.to_string());
    set("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST");
    set(
        "AWS_LAMBDA_LOG_GROUP_NAME",
        &format!("/aws/lambda/parcelwatch-{function}"),
    );
    set("AWS_LAMBDA_LOG_STREAM_NAME", "2026/12/02/[$LATEST]bench");
    set("AWS_EXECUTION_ENV", "AWS_Lambda_rapid");
    set("TZ", ":UTC");
    if function == "tracker" {
        set("KDNIAO_ENDPOINT", &sandbox.kdniao_endpoint());
        set("KDNIAO_EBUSINESS_ID", sandbox.ebusiness_id());
        set("KDNIAO_APP_KEY", sandbox.app_key());
        set(
            "KDNIAO_SUBSCRIBE_ENDPOINT",
            &sandbox.kdniao_subscribe_endpoint(),
        );
    }
    Ok(env)
}

/// Start a release function binary against `api`, its output appended to `log`.
fn spawn(
    bin_dir: &Path,
    function: &str,
    env: &BTreeMap<String, String>,
    api: &RuntimeApi,
    log: &Path,
) -> Result<tokio::process::Child, BoxError> {
    let binary = bin_dir.join(function);
    if !binary.exists() {
        return Err(format!(
            "{}: missing (build it: cargo build --release -p {function})",
            binary.display()
        )
        .into());
    }
    let logfile = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let child = tokio::process::Command::new(binary)
        .env_clear()
        .envs(env)
        .env("AWS_LAMBDA_RUNTIME_API", api.addr().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::from(logfile.try_clone()?))
        .stderr(Stdio::from(logfile))
        .kill_on_drop(true)
        .spawn()?;
    Ok(child)
}

/// The measurement; `bin_dir` holds the release `tracker` and `scheduler`.
pub async fn run(bin_dir: &Path, parcels: usize, rechecks: usize) -> Result<Deployed, BoxError> {
    let root = workspace_root()?;
    let template = std::fs::read_to_string(root.join("template.yaml"))?;
    let memory = cost::template_memory(&template);
    let mem = |f: &str| memory.get(f).copied().unwrap_or(128);
    let stack = LocalStack::start_shared().await?;
    let meter = Meter::new();
    let writes = Arc::new(Mutex::new(Writes::default()));
    let tap: crate::faults::aws::Tap = {
        let meter = meter.clone();
        let writes = writes.clone();
        let table = stack.table_name.clone();
        Arc::new(move |op: &str, req: &[u8], status: u16, resp: &[u8]| {
            meter.record(op, req, status, resp);
            if status < 400 {
                let mut w = writes.lock().unwrap_or_else(|p| p.into_inner());
                count_writes(op, req, &table, &mut w);
            }
        })
    };
    let proxy =
        AwsFaultProxy::start_tapped(&stack.endpoint, AwsFaultPlan::default(), Some(tap)).await?;
    let sandbox = Sandbox::start(
        SandboxConfig {
            seed: 13,
            ..SandboxConfig::default()
        },
        Arc::new(crate::clock::SystemClock) as Arc<dyn crate::clock::Clock>,
    )
    .await?;
    let endpoint = proxy.endpoint();
    let tracker_env = function_env(&stack, &sandbox, "tracker", &endpoint, mem("tracker"))?;
    let scheduler_env = function_env(&stack, &sandbox, "scheduler", &endpoint, mem("scheduler"))?;
    let rate_limits = tracker_env
        .get("PROVIDER_RATE_LIMITS")
        .cloned()
        .unwrap_or_default();
    if rate_limits.is_empty() || rate_limits == "none" {
        return Err(format!(
            "the template's tracker has no rate limit ({rate_limits:?}): this section measures it on"
        )
        .into());
    }

    // 1. Parcels, registered directly (not metered: registration is not a check).
    let env_map: HashMap<String, String> = stack.env_vars().into_iter().collect();
    let base = Config::from_env(&env_map)?;
    let store = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&stack.sdk_config),
        &base.table_name,
        base.due_shards,
    );
    let vault = Vault::from_env(&stack.sdk_config, &env_map)?;
    let now = Utc::now();
    let mut ids = Vec::with_capacity(parcels);
    for i in 0..parcels {
        let carrier = DEMO_CARRIERS[i % DEMO_CARRIERS.len()];
        let number = waybill_number(carrier, i as u64, 13);
        let id = ShipmentId::parse(carrier, &number)?;
        let hours_ago = 3 + (i as i64 * 37) % 38;
        sandbox.register_kind(
            JourneyKind::Delivered,
            carrier,
            &number,
            now - ChronoDuration::hours(hours_ago),
        );
        let phone = PhoneNumber::parse(&format!("+86139{:08}", 4_000_000 + i))?;
        let shipment = Shipment::register(
            id.clone(),
            if i % 10 == 0 {
                Priority::High
            } else {
                Priority::Normal
            },
            "kdniao",
            Recipient {
                phone: Some(vault.seal(&phone).await?),
                locale: Locale::ZhCn,
            },
            Some(format!("TB{:016}", 2026120200000000u64 + i as u64)),
            now - ChronoDuration::minutes(1),
        );
        store.create(&shipment).await?;
        ids.push(id);
    }

    let logs = root.join(".local/bench");
    std::fs::create_dir_all(&logs)?;
    let metered = sdk_config_for(&endpoint);
    let sqs = aws_sdk_sqs::Client::new(&metered);
    let spec = &stack.event_sources.tracker_sqs;
    let source = SqsSource::for_queue(
        &sqs,
        &stack.tracking_queue_url,
        spec.batch_size as i32,
        Duration::ZERO,
    )
    .await?;
    let timeout = Duration::from_secs(
        stack
            .event_sources
            .function_timeouts
            .get("tracker")
            .copied()
            .unwrap_or(30),
    );

    // 2. The scheduler, once, as Lambda runs it.
    let snap = |m: &Arc<Meter>, w: &Arc<Mutex<Writes>>| {
        (m.snapshot(), *w.lock().unwrap_or_else(|p| p.into_inner()))
    };
    let (ops0, w0) = snap(&meter, &writes);
    {
        let api = RuntimeApi::start("scheduler", Duration::from_secs(60)).await?;
        let log = logs.join("deployed-scheduler.log");
        let _fresh = std::fs::remove_file(&log);
        let mut child = spawn(bin_dir, "scheduler", &scheduler_env, &api, &log)?;
        api.initialized(Duration::from_secs(30)).await?;
        let mut event: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
            root.join("events/scheduler/scheduled.json"),
        )?)?;
        event["time"] =
            serde_json::Value::String(Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string());
        let out = api.invoke(event.to_string().into_bytes()).await?;
        let _gone = child.kill().await;
        if let Outcome::Error(e) = out {
            return Err(format!("the scheduler failed: {e}").into());
        }
    }
    let (ops1, w1) = snap(&meter, &writes);
    let mut scheduler = Phase {
        invocations: 1,
        ops: diff_ops(&ops1, &ops0),
        writes: w1.minus(&w0),
        ..Phase::new("scheduler")
    };

    // 3–4. The tracker, one process for the whole run (one warm execution environment).
    let api = RuntimeApi::start("tracker", timeout).await?;
    let log = logs.join("deployed-tracker.log");
    let _fresh = std::fs::remove_file(&log);
    let t_spawn = Instant::now();
    let mut child = spawn(bin_dir, "tracker", &tracker_env, &api, &log)?;
    let pid = child.id().ok_or("the tracker exited at once")?;
    let t_init = api.initialized(Duration::from_secs(30)).await?;
    let tracker_init_ms = t_init.duration_since(t_spawn).as_secs_f64() * 1000.0;
    let cpu = || {
        (
            process_cpu(pid).unwrap_or_default(),
            process_cpu_precise(pid).unwrap_or_default(),
        )
    };
    let tracker_init_cpu_ms = cpu().0.as_secs_f64() * 1000.0;
    let mut phases = Vec::new();
    for round in 0..=rechecks {
        let label = if round == 0 {
            "first check (every line new)".to_owned()
        } else {
            // The scheduler's part of a re-check: one SendMessageBatch per 10 due parcels.
            let (a, wa) = snap(&meter, &writes);
            let held = store.get_many(&ids).await?;
            let due: Vec<&ShipmentId> = ids
                .iter()
                .filter(|id| held.get(*id).is_some_and(|s| s.next_check_at.is_some()))
                .collect();
            for chunk in due.chunks(10) {
                let mut batch = sqs
                    .send_message_batch()
                    .queue_url(&stack.tracking_queue_url);
                for (n, id) in chunk.iter().enumerate() {
                    let body = serde_json::to_string(&TrackMessage::new(id, Utc::now()))?;
                    batch = batch.entries(
                        aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                            .id(n.to_string())
                            .message_body(body)
                            .build()?,
                    );
                }
                batch.send().await?;
            }
            let (b, wb) = snap(&meter, &writes);
            merge_ops(&mut scheduler.ops, &diff_ops(&b, &a));
            scheduler.writes.other += wb.minus(&wa).other;
            format!("re-check {round} (nothing new expected)")
        };
        let (ops_a, w_a) = snap(&meter, &writes);
        let (cpu_a, cpu_pa) = cpu();
        let mut phase = Phase::new(label);
        let invoke_time = Arc::new(Mutex::new(Duration::ZERO));
        let mut empty = 0;
        while empty < 2 {
            let api = &api;
            let invoke_time = invoke_time.clone();
            let report = source
                .poll_once(&sqs, move |event: SqsEvent| {
                    let invoke_time = invoke_time.clone();
                    async move {
                        let body = serde_json::to_vec(&event)?;
                        let t = Instant::now();
                        let out = api.invoke(body).await;
                        *invoke_time.lock().unwrap_or_else(|p| p.into_inner()) += t.elapsed();
                        match out.map_err(|e| lambda_runtime::Error::from(e.to_string()))? {
                            Outcome::Response(r) => {
                                Ok(serde_json::from_str::<SqsBatchResponse>(&r)?)
                            }
                            Outcome::Error(e) => Err(lambda_runtime::Error::from(e)),
                        }
                    }
                })
                .await?;
            if report.received == 0 {
                empty += 1;
                continue;
            }
            empty = 0;
            phase.invocations += 1;
            phase.checks += report.received as u64;
            phase.failed += (report.received - report.deleted) as u64;
            if phase.failed > 0 && report.deleted == 0 {
                return Err(
                    format!("the tracker failed a whole batch (see {})", log.display()).into(),
                );
            }
        }
        let (cpu_b, cpu_pb) = cpu();
        let (ops_b, w_b) = snap(&meter, &writes);
        phase.cpu_ms = (cpu_b - cpu_a).as_secs_f64() * 1000.0;
        phase.cpu_ms_precise = (cpu_pb.saturating_sub(cpu_pa)).as_secs_f64() * 1000.0;
        phase.invoke_s = invoke_time
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_secs_f64();
        phase.ops = diff_ops(&ops_b, &ops_a);
        phase.writes = w_b.minus(&w_a);
        phases.push(phase);
    }
    let tracker_peak_rss_kb = peak_rss_kb(pid).unwrap_or(0);
    let _gone = child.kill().await;
    drop(api);
    proxy.shutdown().await;

    let mut d = Deployed {
        parcels,
        rate_limits,
        tracker_memory_mb: mem("tracker"),
        tracker_init_ms,
        tracker_init_cpu_ms,
        tracker_peak_rss_kb,
        scheduler,
        phases,
        cost: cost::estimate(0, &BTreeMap::new(), &[]),
    };
    let total = d.total();
    let mut ops = total.ops.clone();
    merge_ops(&mut ops, &d.scheduler.ops);
    d.cost = cost::estimate(
        total.checks,
        &ops,
        &[
            FunctionUse {
                name: "tracker".into(),
                invocations: total.invocations,
                seconds: total.invoke_s,
                memory_mb: mem("tracker"),
            },
            // The notifier is invoked for the records its filter passes (at most one
            // invocation each); its duration is in the throughput section, not here.
            FunctionUse {
                name: "notifier (records passing its filter)".into(),
                invocations: total.writes.meta,
                seconds: 0.0,
                memory_mb: mem("notifier"),
            },
        ],
    );
    Ok(d)
}

pub fn figures(d: &Deployed) -> Vec<Figure> {
    const S: &str = "Deployed check (release tracker process, template config, limiter on)";
    let total = d.total();
    let mut out = Vec::new();
    let setup = format!(
        "{} parcels, one tracker process behind a Runtime API, PROVIDER_RATE_LIMITS={}, {} MB; moto + sandbox on loopback",
        d.parcels, d.rate_limits, d.tracker_memory_mb
    );
    let mut phases: Vec<&Phase> = d.phases.iter().collect();
    phases.push(&total);
    for p in phases {
        let name = &p.label;
        out.push(Figure::num(
            S,
            format!("{name}: CPU per check"),
            p.per_check(p.cpu_ms),
            3,
            "ms",
            format!(
                "process user+system CPU ({:.0} ms, /proc/<pid>/stat; {:.3} ms/check by schedstat) / {} checks ({} reported failed) in {} invocations; {setup}",
                p.cpu_ms,
                p.per_check(p.cpu_ms_precise),
                p.checks,
                p.failed,
                p.invocations
            ),
        ));
        let by_op: Vec<String> = p
            .ops
            .iter()
            .map(|(op, s)| format!("{op} {}", fmt_num(p.per_check(s.calls as f64), 2)))
            .collect();
        out.push(Figure::num(
            S,
            format!("{name}: AWS requests per check (tracker process)"),
            p.per_check(p.tracker_requests() as f64),
            2,
            "requests",
            format!(
                "plus {} of the SQS event source (receive, delete); by operation: {}",
                fmt_num(p.per_check(p.poller_requests() as f64), 2),
                by_op.join(", ")
            ),
        ));
        out.push(Figure::num(
            S,
            format!("{name}: DynamoDB WRU per check"),
            p.per_check(p.sum(|s| s.wru + s.gsi_wru)),
            2,
            "WRU",
            format!(
                "table {} + due index {}; RRU {}",
                fmt_num(p.per_check(p.sum(|s| s.wru)), 2),
                fmt_num(p.per_check(p.sum(|s| s.gsi_wru)), 2),
                fmt_num(p.per_check(p.sum(|s| s.rru)), 2)
            ),
        ));
        out.push(Figure::num(
            S,
            format!("{name}: stream records per check"),
            p.per_check(p.writes.stream_records() as f64),
            2,
            "records",
            format!(
                "items written: META {} (the records the notifier's filter passes), SCHED {}, trace lines {}, other {}",
                fmt_num(p.per_check(p.writes.meta as f64), 2),
                fmt_num(p.per_check(p.writes.sched as f64), 2),
                fmt_num(p.per_check(p.writes.lines as f64), 2),
                fmt_num(p.per_check(p.writes.other as f64), 2)
            ),
        ));
    }
    let sched_calls: u64 = d.scheduler.ops.values().map(|s| s.calls).sum();
    out.push(Figure::num(
        S,
        "scheduler: AWS requests per check",
        sched_calls as f64 / total.checks.max(1) as f64,
        2,
        "requests",
        "its run that enqueued the first checks, and the sends of the re-checks (SendMessageBatch per 10); the minute-by-minute standing runs are priced in the throughput section",
    ));
    out.push(Figure::num(
        S,
        "AWS requests per check (tracker + event source + scheduler)",
        (total.tracker_requests() + total.poller_requests() + sched_calls) as f64
            / total.checks.max(1) as f64,
        2,
        "requests",
        "every request on the wire during the checks, / checks",
    ));
    out.push(Figure::num(
        S,
        "AWS cost per 1M checks",
        d.cost.total_usd_per_1m_checks,
        2,
        "USD",
        d.cost
            .lines
            .iter()
            .filter(|l| l.usd_per_1m_checks > 0.0)
            .map(|l| format!("{} {}: {:.2}", l.service, l.what, l.usd_per_1m_checks))
            .collect::<Vec<_>>()
            .join("; "),
    ));
    out.push(Figure::num(
        S,
        "tracker init (process start → first /next)",
        d.tracker_init_ms,
        0,
        "ms",
        format!(
            "{:.0} ms CPU in init (not in the per-check figures); peak RSS {:.1} MB",
            d.tracker_init_cpu_ms,
            d.tracker_peak_rss_kb as f64 / 1024.0
        ),
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_counted_by_item_kind() {
        let mut w = Writes::default();
        let put = serde_json::json!({"TableName": "t", "Item": {"pk": {"S": "SHIP#SF#1"}, "sk": {"S": "META"}}});
        count_writes("dynamodb.PutItem", put.to_string().as_bytes(), "t", &mut w);
        count_writes(
            "dynamodb.PutItem",
            put.to_string().as_bytes(),
            "other-table",
            &mut w,
        );
        let batch = serde_json::json!({"RequestItems": {"t": [
            {"PutRequest": {"Item": {"pk": {"S": "SHIP#SF#1"}, "sk": {"S": "EVT#2026#ab"}}}},
            {"PutRequest": {"Item": {"pk": {"S": "SHIP#SF#1"}, "sk": {"S": "EVT#2026#cd"}}}}
        ]}});
        count_writes(
            "dynamodb.BatchWriteItem",
            batch.to_string().as_bytes(),
            "t",
            &mut w,
        );
        let sched = serde_json::json!({"TableName": "t", "Item": {"pk": {"S": "SHIP#SF#1"}, "sk": {"S": "SCHED"}}});
        count_writes(
            "dynamodb.PutItem",
            sched.to_string().as_bytes(),
            "t",
            &mut w,
        );
        let mark = serde_json::json!({"TableName": "t", "Item": {"pk": {"S": "SCHED#due"}, "sk": {"S": "META"}}});
        count_writes("dynamodb.PutItem", mark.to_string().as_bytes(), "t", &mut w);
        count_writes("sqs.SendMessage", b"{}", "t", &mut w);
        assert_eq!(
            w,
            Writes {
                meta: 1,
                sched: 1,
                lines: 2,
                other: 1
            }
        );
        assert_eq!(w.stream_records(), 5);
    }
}
