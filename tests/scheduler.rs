//! The scheduler against the local stack (moto's DynamoDB GSI and SQS through the real SDK): it
//! never writes a shipment, its one write per run is the watermark item, a budget cut inside one
//! second resumes where it stopped (the GSI's ExclusiveStartKey), and a check that never ran is
//! enqueued again by the stuck sweep once the lease is over.

use chrono::Duration;
use parcelwatch_local::faults::aws::Tap;
use parcelwatch_local::faults::{AwsFaultPlan, AwsFaultProxy};
use parcelwatch_local::pipeline::{Pipeline, PipelineOptions};
use parcelwatch_local::stack::sdk_config_for;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Every request the tapped clients sent: (operation, request body).
type Recorded = Arc<Mutex<Vec<(String, Value)>>>;

fn recorder() -> (Recorded, Tap) {
    let seen: Recorded = Arc::default();
    let tap_seen = seen.clone();
    let tap: Tap = Arc::new(move |op: &str, req: &[u8], _status: u16, _resp: &[u8]| {
        let body = serde_json::from_slice(req).unwrap_or(Value::Null);
        tap_seen.lock().unwrap().push((op.to_string(), body));
    });
    (seen, tap)
}

fn key_pk(body: &Value, field: &str) -> Option<String> {
    body.get(field)?
        .get("pk")?
        .get("S")?
        .as_str()
        .map(String::from)
}

/// Waybill numbers in SendMessageBatch requests.
fn numbers_sent(calls: &[(String, Value)]) -> Vec<String> {
    calls
        .iter()
        .filter(|(op, _)| op == "sqs.SendMessageBatch")
        .flat_map(|(_, b)| b["Entries"].as_array().cloned().unwrap_or_default())
        .map(|e| {
            let m: Value = serde_json::from_str(e["MessageBody"].as_str().unwrap()).unwrap();
            m["number"].as_str().unwrap().to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_writes_no_shipment_only_its_watermark_once_per_run() {
    let mut p = Pipeline::start(PipelineOptions {
        seed: 5,
        ..PipelineOptions::default()
    })
    .await
    .expect("local stack starts");
    let parcels = p
        .register_demo_parcels(30, Duration::hours(2))
        .await
        .expect("register");

    // The scheduler's clients (only its) go through a recording proxy in front of moto.
    let (seen, tap) = recorder();
    let proxy = AwsFaultProxy::start_tapped(&p.stack.endpoint, AwsFaultPlan::default(), Some(tap))
        .await
        .unwrap();
    p.scheduler = scheduler::Deps::new(
        &sdk_config_for(&proxy.endpoint()),
        &p.base,
        p.scheduler.cfg.clone(),
    );

    let ticks = 24; // four simulated hours
    let before = p.totals;
    for _ in 0..ticks {
        p.tick().await.expect("tick");
    }
    let checks = p.totals.messages - before.messages;
    let enqueued = p.totals.enqueued - before.enqueued;
    let calls = seen.lock().unwrap().clone();
    proxy.shutdown().await;

    let mut by_op: BTreeMap<&str, u64> = BTreeMap::new();
    for (op, body) in &calls {
        *by_op.entry(op.as_str()).or_default() += 1;
        match op.as_str() {
            "dynamodb.Query" => assert_eq!(body["IndexName"], "due-index", "{body}"),
            "dynamodb.GetItem" => assert_eq!(key_pk(body, "Key").as_deref(), Some("SCHED#due")),
            "dynamodb.PutItem" => {
                assert_eq!(key_pk(body, "Item").as_deref(), Some("SCHED#due"), "{body}");
                assert!(body["ConditionExpression"].is_string(), "conditional");
            }
            "sqs.SendMessageBatch" => {}
            other => panic!("the scheduler called {other}: {body}"),
        }
    }
    assert!(
        checks > 0 && enqueued == checks,
        "{enqueued} enqueued, {checks} checked"
    );
    assert_eq!(numbers_sent(&calls).len() as u64, enqueued);
    // One read of the watermark per run, at most one write.
    assert_eq!(by_op["dynamodb.GetItem"], ticks);
    assert!(by_op["dynamodb.PutItem"] <= ticks);
    let shards = u64::from(p.base.due_shards);
    eprintln!(
        "scheduler, {ticks} runs, {} parcels, {shards} due shards: {by_op:?}; {enqueued} checks enqueued; \
         per run {:.2} AWS calls, per check {:.3}",
        parcels.len(),
        calls.len() as f64 / ticks as f64,
        calls.len() as f64 / enqueued as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_cut_resumes_inside_its_second_and_unchecked_work_returns_after_the_lease() {
    let mut p = Pipeline::start(PipelineOptions {
        seed: 9,
        env: vec![
            ("SCHEDULER_MAX_ENQUEUE".into(), "3".into()),
            ("DUE_SHARDS".into(), "1".into()),
            ("PROVIDER_RATE_LIMITS".into(), "none".into()),
        ],
        ..PipelineOptions::default()
    })
    .await
    .expect("local stack starts");
    // Eight parcels registered at the same instant: all due at the same second.
    let parcels = p
        .register_demo_parcels(8, Duration::hours(1))
        .await
        .expect("register");
    let start = p.now();

    // One run a minute, the trackers never run: the messages stay in the queue unchecked.
    let mut per_run = Vec::new();
    for m in 1..=20 {
        let ev = p.schedule.event_at(start + Duration::minutes(m));
        let r = scheduler::handle(&p.scheduler, ev).await.expect("run");
        assert!(!r.watermark_lost, "{r:?}");
        per_run.push((r.due_found, r.stuck, r.enqueued));
    }
    let mut want = vec![(3, 0, 3), (3, 0, 3), (2, 0, 2)];
    want.extend(std::iter::repeat_n((0, 0, 0), 12));
    // The first run planned the sweep 15 minutes on: the eight, three at a time.
    want.extend([(0, 3, 3), (0, 3, 3), (0, 2, 2), (0, 0, 0), (0, 0, 0)]);
    assert_eq!(per_run, want);

    // Each parcel twice in the queue: once due, once stuck; none skipped, none more.
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for (body, _) in p.peek_queue(&p.stack.tracking_queue_url).await.unwrap() {
        let m: Value = serde_json::from_str(&body).unwrap();
        *count
            .entry(m["number"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(count.len(), parcels.len());
    assert!(count.values().all(|n| *n == 2), "{count:?}");

    // No shipment was written: every one still at version 0, due at registration.
    for s in p.shipments().await.unwrap() {
        assert_eq!((s.version, s.next_check_at), (0, Some(start)), "{}", s.id);
    }
}
