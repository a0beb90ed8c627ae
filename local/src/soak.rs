//! The soak: many parcels through the whole product on the local stack while everything that
//! can fail does — provider errors, garbage and throttles from the sandbox, SNS throttling,
//! DynamoDB throttles and lost write answers, SQS errors from the fault proxy in front of moto,
//! killed invocations and duplicate deliveries from the runner — and then the verdict, read from
//! the local SNS record: every buyer told about every change exactly once, every shipment at the
//! simulator's truth, every poison message in the DLQ with its reason.
//!
//! `make soak` runs the big one; `tests/soak.rs` a small one inside `make test`.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use chrono::Duration;

use crate::faults::{AwsFaultPlan, AwsFaultProxy};
use crate::pipeline::{expected_sms, BoxError, Parcel, Pipeline, PipelineOptions};
use crate::redrive::{self, RedriveOptions};
use crate::runner::chaos::ChaosPlan;
use crate::sandbox::faults::ProviderFaults;
use crate::stack::LocalStack;

/// What to run and how hard to shake it.
#[derive(Debug, Clone)]
pub struct SoakArgs {
    pub parcels: usize,
    pub seed: u64,
    /// Simulated days the storm lasts (then faults stop and the pipeline settles).
    pub days: i64,
    pub tick_minutes: i64,
    /// Share of provider requests answered with an error (5xx, timeout, slow body, refusal,
    /// throttle; split evenly).
    pub provider_errors: f64,
    /// Share answered with garbage or truncated JSON (split evenly), pushes included.
    pub garbage: f64,
    pub sns_throttle: f64,
    pub dynamo_throttle: f64,
    pub dynamo_lost_answer: f64,
    pub sqs_errors: f64,
    /// Share of invocations killed mid-batch / delivered twice.
    pub kill: f64,
    pub duplicate: f64,
    /// Poison messages put on the tracking queue (malformed bodies, unknown carriers).
    pub poison: usize,
    /// Every n-th parcel is registered with Kuaidi100 and so is polled (through the chain
    /// Kdniao → Kuaidi100) rather than subscribed for pushes: the query path under provider
    /// faults. 0: every parcel is pushed.
    pub polled_every: usize,
    /// Start a moto of its own (the `make soak` binary) rather than the process's shared one.
    pub own_moto: bool,
}

impl Default for SoakArgs {
    fn default() -> Self {
        SoakArgs {
            parcels: 1_500,
            seed: 7,
            days: 7,
            tick_minutes: 30,
            provider_errors: 0.05,
            garbage: 0.02,
            sns_throttle: 0.10,
            dynamo_throttle: 0.02,
            dynamo_lost_answer: 0.01,
            sqs_errors: 0.02,
            kill: 0.03,
            duplicate: 0.05,
            poison: 12,
            polled_every: 10,
            own_moto: true,
        }
    }
}

impl SoakArgs {
    pub fn parse(args: impl Iterator<Item = String>) -> Result<SoakArgs, String> {
        let mut a = SoakArgs::default();
        let mut it = args.peekable();
        while let Some(flag) = it.next() {
            let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
            let num = |v: String| v.parse::<f64>().map_err(|e| format!("{v}: {e}"));
            match flag.as_str() {
                "--parcels" => a.parcels = value()?.parse().map_err(|e| format!("{e}"))?,
                "--seed" => a.seed = value()?.parse().map_err(|e| format!("{e}"))?,
                "--days" => a.days = value()?.parse().map_err(|e| format!("{e}"))?,
                "--tick-minutes" => {
                    a.tick_minutes = value()?.parse().map_err(|e| format!("{e}"))?
                }
                "--provider-errors" => a.provider_errors = num(value()?)?,
                "--garbage" => a.garbage = num(value()?)?,
                "--sns-throttle" => a.sns_throttle = num(value()?)?,
                "--dynamo-throttle" => a.dynamo_throttle = num(value()?)?,
                "--dynamo-lost-answer" => a.dynamo_lost_answer = num(value()?)?,
                "--sqs-errors" => a.sqs_errors = num(value()?)?,
                "--kill" => a.kill = num(value()?)?,
                "--duplicate" => a.duplicate = num(value()?)?,
                "--poison" => a.poison = value()?.parse().map_err(|e| format!("{e}"))?,
                "--polled-every" => {
                    a.polled_every = value()?.parse().map_err(|e| format!("{e}"))?
                }
                other => return Err(format!("unknown flag {other}")),
            }
        }
        Ok(a)
    }
}

/// The verdict.
#[derive(Debug, Clone, Default)]
pub struct SoakReport {
    pub parcels: usize,
    /// Status changes of the simulator's truth over all parcels (what a buyer could be told).
    pub transitions: usize,
    /// Carrier sub-status (StateEx) changes of the truth: the finer transitions the pipeline
    /// folds and writes.
    pub sub_transitions: usize,
    /// Parcels polled rather than pushed, and their SMS against the truth's count.
    pub polled: usize,
    pub polled_expected: usize,
    pub polled_sent: usize,
    /// Notifications the truth holds for the pushed parcels.
    pub expected_notifications: usize,
    /// SMS the local SNS recorded for this run's buyers.
    pub sent: usize,
    pub lost: usize,
    pub duplicates: usize,
    /// The same text sent to one buyer more than once: "parcel (mode): n× text". Not a fault in
    /// itself (a second delivery attempt reads like the first); listed for the reader.
    pub repeated_texts: Vec<String>,
    /// Shipments whose final status differs from the truth.
    pub wrong_final: Vec<String>,
    /// SMS whose ledger entry is missing (sent by something other than the notifier's ledger path).
    pub unledgered: usize,
    /// Faults injected, by kind.
    pub faults: BTreeMap<String, u64>,
    /// Tracking DLQ contents by reason, and how many were the poison messages put in.
    pub dlq: BTreeMap<String, usize>,
    pub poison_sent: usize,
    /// Distinct poison bodies found in the DLQ.
    pub poison_in_dlq: usize,
    /// DLQ messages that are not poison: checks that gave up (moved after maxReceiveCount).
    pub dlq_not_poison: usize,
    /// Notifier on-failure records before the final redrive, and what the redrive did.
    pub notify_failures: usize,
    pub redriven: usize,
    pub ticks: u64,
    pub wall: std::time::Duration,
}

impl SoakReport {
    /// Nothing lost, nothing twice, every status right, every poison accounted for.
    pub fn ok(&self) -> bool {
        self.lost == 0
            && self.duplicates == 0
            && self.wrong_final.is_empty()
            && self.unledgered == 0
            && self.poison_in_dlq == self.poison_sent
    }
}

impl std::fmt::Display for SoakReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "soak: {} parcels, {} ticks, {:.0} s wall",
            self.parcels,
            self.ticks,
            self.wall.as_secs_f64()
        )?;
        writeln!(
            f,
            "  transitions (truth)     {:>7} status, {} carrier sub-status",
            self.transitions, self.sub_transitions
        )?;
        writeln!(
            f,
            "  notifications (pushed)  {:>7} expected, {} sent (local SNS record)",
            self.expected_notifications, self.sent
        )?;
        if self.polled > 0 {
            writeln!(
                f,
                "  polled parcels          {:>7}: {} SMS of the truth's {} (polls miss stages shorter than their interval)",
                self.polled, self.polled_sent, self.polled_expected
            )?;
        }
        writeln!(f, "  lost                    {:>7}", self.lost)?;
        writeln!(f, "  duplicates              {:>7}", self.duplicates)?;
        writeln!(
            f,
            "  final status = truth    {:>7}/{}",
            self.parcels - self.wrong_final.len(),
            self.parcels
        )?;
        writeln!(f, "  SMS without ledger      {:>7}", self.unledgered)?;
        writeln!(f, "  faults injected:")?;
        let total: u64 = self.faults.values().sum();
        for (kind, n) in &self.faults {
            writeln!(f, "    {kind:<38} {n:>7}")?;
        }
        writeln!(f, "    {:<38} {total:>7}", "total")?;
        writeln!(
            f,
            "  tracking DLQ            {:>7} messages: {} of {} poison bodies, {} other",
            self.dlq.values().sum::<usize>(),
            self.poison_in_dlq,
            self.poison_sent,
            self.dlq_not_poison
        )?;
        for (reason, n) in &self.dlq {
            writeln!(f, "    {n:>5}  {reason}")?;
        }
        writeln!(
            f,
            "  notifier on-failure     {:>7} (redriven: {})",
            self.notify_failures, self.redriven
        )?;
        for t in self.repeated_texts.iter().take(10) {
            writeln!(f, "  repeated: {t}")?;
        }
        for id in self.wrong_final.iter().take(10) {
            writeln!(f, "  wrong final status: {id}")?;
        }
        write!(f, "  verdict: {}", if self.ok() { "PASS" } else { "FAIL" })
    }
}

/// Poison bodies: each can never succeed, each must end in the DLQ with its reason.
fn poison_bodies(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| match i % 4 {
            0 => format!("{{not json {i}"),
            1 => format!(
                r#"{{"carrier":"NOPE{i}","number":"X{i}","due_at":"2026-11-24T00:00:00Z"}}"#
            ),
            2 => format!(r#"{{"carrier":"YTO","number":"","due_at":"{i}"}}"#),
            _ => format!(r#"{{"hello":"world {i}"}}"#),
        })
        .collect()
}

fn provider_faults(a: &SoakArgs, on: bool) -> ProviderFaults {
    let share = |x: f64| if on { x } else { 0.0 };
    let e = share(a.provider_errors) / 5.0;
    let g = share(a.garbage) / 2.0;
    ProviderFaults {
        seed: a.seed,
        http_5xx: e,
        timeout: e,
        slow_body: e,
        refused: e,
        throttle: e,
        garbage: g,
        truncated: g,
        push_garbage: share(a.garbage),
        ..ProviderFaults::default()
    }
}

fn aws_faults(a: &SoakArgs, on: bool) -> AwsFaultPlan {
    let share = |x: f64| if on { x } else { 0.0 };
    AwsFaultPlan {
        seed: a.seed,
        sns_publish_throttle: share(a.sns_throttle),
        dynamo_write_throttle: share(a.dynamo_throttle),
        dynamo_write_lost_response: share(a.dynamo_lost_answer),
        sqs_error: share(a.sqs_errors),
        // The functions read no stream (the runner does, straight from moto).
        streams_error: 0.0,
    }
}

fn chaos(a: &SoakArgs, on: bool) -> ChaosPlan {
    ChaosPlan {
        seed: a.seed,
        kill: if on { a.kill } else { 0.0 },
        duplicate: if on { a.duplicate } else { 0.0 },
    }
}

fn set_storm(p: &Pipeline, proxy: &AwsFaultProxy, a: &SoakArgs, on: bool) {
    p.sandbox.set_provider_faults(provider_faults(a, on));
    proxy.set_plan(aws_faults(a, on));
    for c in [&p.tracker_chaos, &p.notifier_chaos, &p.api_chaos] {
        c.set_plan(chaos(a, on));
    }
}

/// Truth transitions of one parcel up to `until`: (status changes, StateEx changes).
fn truth_transitions(p: &Parcel, until: chrono::DateTime<chrono::Utc>) -> (usize, usize) {
    let statuses = p.journey.truth_statuses(until).len();
    let mut subs = 0;
    let mut last = "";
    for s in p.journey.steps.iter().take_while(|s| s.at <= until) {
        if s.state_ex != last {
            subs += 1;
            last = s.state_ex;
        }
    }
    (statuses, subs)
}

pub async fn run(a: SoakArgs) -> Result<SoakReport, BoxError> {
    let t0 = Instant::now();
    let stack = if a.own_moto {
        LocalStack::start().await?
    } else {
        LocalStack::start_shared().await?
    };
    let proxy = AwsFaultProxy::start(&stack.endpoint, aws_faults(&a, false)).await?;
    let mut p = Pipeline::on_stack(
        stack,
        PipelineOptions {
            seed: a.seed,
            tick: Duration::minutes(a.tick_minutes),
            push_mode: true,
            function_endpoint: Some(proxy.endpoint()),
            chaos: chaos(&a, false),
            env: vec![
                ("SCHEDULER_MAX_ENQUEUE".into(), "2000".into()),
                ("DUE_SHARDS".into(), "2".into()),
                // A held request ends in a client timeout quickly (the sandbox holds 2 s).
                ("PROVIDER_TIMEOUT_MS".into(), "1000".into()),
                ("PROVIDER_ROUTES".into(), "default=kdniao,kuaidi100".into()),
            ],
            ..PipelineOptions::default()
        },
    )
    .await?;

    // Registration in calm weather (it is the merchant's call, retried by the merchant), then
    // the storm.
    let every = a.polled_every;
    let parcels = p
        .register_demo_parcels_by(a.parcels, Duration::hours(12), |i| {
            if every > 0 && i % every == every - 1 {
                "kuaidi100"
            } else {
                "kdniao"
            }
        })
        .await?;
    set_storm(&p, &proxy, &a, true);
    let poison = poison_bodies(a.poison);
    for body in &poison {
        p.inject_tracking_message(body).await?;
    }
    let storm_end = p.now() + Duration::days(a.days);
    let per_day = (24 * 60 / a.tick_minutes.max(1)) as u64;
    while p.now() < storm_end {
        p.tick().await?;
        if p.totals.ticks % per_day == 0 {
            eprintln!(
                "soak: day {} of {}, {:.0} s, {} tracker messages, {} stream records, {} pushes",
                p.totals.ticks / per_day,
                a.days,
                t0.elapsed().as_secs_f64(),
                p.totals.messages,
                p.totals.stream_records,
                p.totals.pushes_sent
            );
        }
    }

    // The storm passes: everything still in flight settles (retries, safety-net polls).
    set_storm(&p, &proxy, &a, false);
    for _ in 0..(6 * 60 / a.tick_minutes.max(1)) {
        p.tick().await?;
    }

    // What the notifier gave up on goes back through it (make redrive QUEUE=notify APPLY=1).
    let sqs = p.sqs.clone();
    let notify_failures = p.peek_queue(&p.stack.notify_failure_queue_url).await?.len();
    let redriven = {
        let notifier = &p.notifier;
        let now = p.now();
        redrive::redrive_stream(
            &sqs,
            &p.streams,
            &p.stack.notify_failure_queue_url,
            RedriveOptions {
                apply: true,
                ..RedriveOptions::default()
            },
            |event| async move { notifier::handle_batch(notifier, event, now).await },
        )
        .await?
        .replayed
    };

    let now = p.now();
    let polled: std::collections::HashSet<_> = parcels
        .iter()
        .enumerate()
        .filter(|(i, _)| every > 0 && i % every == every - 1)
        .map(|(_, pc)| pc.id.clone())
        .collect();
    let mut r = SoakReport {
        polled: polled.len(),
        parcels: parcels.len(),
        poison_sent: poison.len(),
        notify_failures,
        redriven,
        ticks: p.totals.ticks,
        ..SoakReport::default()
    };
    // The verdict, from the local SNS record.
    let sent = p.sent_sms().await?;
    let mut by_phone: HashMap<String, Vec<&str>> = HashMap::new();
    for s in &sent {
        by_phone
            .entry(s.phone_number.clone())
            .or_default()
            .push(&s.message);
    }
    let ledger = p.sms_ledger().await?;
    let shipments: HashMap<_, _> = p
        .shipments()
        .await?
        .into_iter()
        .map(|s| (s.id.clone(), s))
        .collect();
    for pc in &parcels {
        let (t, st) = truth_transitions(pc, now);
        r.transitions += t;
        r.sub_transitions += st;
        let want = expected_sms(pc, now);
        let got = by_phone
            .get(pc.phone.expose())
            .map_or(&[][..], |v| v.as_slice());
        let mut texts = got.to_vec();
        texts.sort_unstable();
        texts.dedup();
        let repeated = got.len() - texts.len();
        if repeated > 0 {
            for t in &texts {
                let n = got.iter().filter(|g| *g == t).count();
                if n > 1 {
                    r.repeated_texts.push(format!(
                        "{} ({}): {n}× {t}",
                        pc.id,
                        if polled.contains(&pc.id) {
                            "polled"
                        } else {
                            "pushed"
                        }
                    ));
                }
            }
        }
        if polled.contains(&pc.id) {
            // A poll sees what is there when it looks: a stage shorter than the interval, or a
            // code the answering provider lacks (Kuaidi100 has no locker-overdue code), is not
            // seen. So polled parcels are held to "never more than the truth", not to its count.
            r.polled_expected += want;
            r.polled_sent += got.len();
            r.duplicates += got.len().saturating_sub(want);
        } else {
            r.expected_notifications += want;
            r.sent += got.len();
            r.lost += want.saturating_sub(got.len());
            r.duplicates += got.len().saturating_sub(want);
        }
        let truth = pc.journey.truth_statuses(now).last().map(|(_, s)| *s);
        let ours = shipments.get(&pc.id).map(|s| s.status);
        if ours != truth {
            r.wrong_final
                .push(format!("{}: ours {ours:?}, truth {truth:?}", pc.id));
        }
    }
    let ours: std::collections::HashSet<&str> =
        parcels.iter().map(|pc| pc.phone.expose()).collect();
    r.unledgered = sent
        .iter()
        .filter(|s| ours.contains(s.phone_number.as_str()))
        .filter(|s| !ledger.contains_key(&s.message_id))
        .count();

    // A poison message delivered twice at once is dead-lettered by both invocations: the DLQ
    // is at-least-once too. Every poison body must be there at least once, with its reason.
    let mut poison_found = std::collections::HashSet::new();
    for (body, reason) in p.peek_queue(&p.stack.tracking_dlq_url).await? {
        let reason = reason.unwrap_or_else(|| "moved by SQS after maxReceiveCount".into());
        // Reasons carry details (the body's error position): group by their first clause.
        let head = reason.split(':').next().unwrap_or(&reason).to_string();
        *r.dlq.entry(head).or_default() += 1;
        if poison.contains(&body) {
            poison_found.insert(body);
        } else {
            r.dlq_not_poison += 1;
        }
    }
    r.poison_in_dlq = poison_found.len();

    for (k, v) in proxy.counts() {
        if k != "forwarded" {
            r.faults.insert(format!("aws.{k}"), v);
        }
    }
    for (k, v) in p.sandbox.provider_fault_counts() {
        r.faults.insert(format!("provider.{k}"), v);
    }
    for (name, c) in [
        ("tracker", &p.tracker_chaos),
        ("notifier", &p.notifier_chaos),
        ("api", &p.api_chaos),
    ] {
        let c = c.counts();
        r.faults.insert(format!("runner.{name}.killed"), c.killed);
        if name != "api" {
            r.faults
                .insert(format!("runner.{name}.duplicated"), c.duplicated);
        }
    }
    r.wall = t0.elapsed();
    Ok(r)
}
