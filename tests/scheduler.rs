//! The scheduler against the local stack (moto's DynamoDB GSI and SQS through the real SDK): it
//! never writes a shipment, its one write per run is the watermark item, a budget cut inside one
//! second resumes where it stopped (the GSI's ExclusiveStartKey, whose table key is a `SCHED`
//! item's or, for a shipment not checked since it was created, a `META` item's), and a check
//! that never ran is enqueued again by the stuck sweep once the lease is over.
//!
//! And the due index's items: a shipment's first check moves its due keys from `META` (as
//! created, or as written before the split) to its `SCHED` item; a check that finds nothing new
//! writes `SCHED` alone (META unchanged, no record for the stream's consumers), and the
//! scheduler finds the shipment again when it is due.

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::Duration;
use parcelwatch::domain::{Priority, Recipient, Shipment, ShipmentId};
use parcelwatch::store::{ShipmentRecord, ShipmentStore, WriteKind};
use parcelwatch_local::faults::aws::Tap;
use parcelwatch_local::faults::{AwsFaultPlan, AwsFaultProxy};
use parcelwatch_local::pipeline::{Pipeline, PipelineOptions};
use parcelwatch_local::stack::sdk_config_for;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

type Item = HashMap<String, AttributeValue>;

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

/// One item of the table, read strongly consistent.
async fn item(p: &Pipeline, pk: &str, sk: &str) -> Option<Item> {
    p.dynamo
        .get_item()
        .table_name(&p.stack.table_name)
        .key("pk", AttributeValue::S(pk.into()))
        .key("sk", AttributeValue::S(sk.into()))
        .consistent_read(true)
        .send()
        .await
        .expect("GetItem")
        .item
}

fn s_attr<'a>(item: &'a Item, k: &str) -> Option<&'a str> {
    item.get(k).and_then(|v| v.as_s().ok()).map(String::as_str)
}

fn n_attr(item: &Item, k: &str) -> u64 {
    item.get(k)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number {k} in {item:?}"))
}

/// Put `s` as the code before the split wrote every check: one `META` item carrying the due
/// keys, no `SCHED` item.
async fn put_legacy(p: &Pipeline, s: &Shipment) {
    let rec = ShipmentRecord::from_shipment(s, p.base.due_shards);
    assert!(rec.due_sk.is_some());
    p.dynamo
        .put_item()
        .table_name(&p.stack.table_name)
        .set_item(Some(serde_dynamo::to_item(rec).unwrap()))
        .send()
        .await
        .expect("legacy put");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_without_news_writes_the_sched_item_alone() {
    let mut p = Pipeline::start(PipelineOptions {
        seed: 13,
        ..PipelineOptions::default()
    })
    .await
    .expect("local stack starts");
    let parcels = p
        .register_demo_parcels(6, Duration::hours(1))
        .await
        .expect("register");
    let mut ids: Vec<ShipmentId> = parcels.iter().map(|pc| pc.id.clone()).collect();
    // One more as the code before the split left it after five checks: META at version 5,
    // with the due keys.
    let number = parcelwatch_local::sandbox::journey::waybill_number("YTO", 99, 13);
    let legacy = ShipmentId::parse("YTO", &number).unwrap();
    p.sandbox.register("YTO", &number, p.now());
    let mut old = Shipment::register(
        legacy.clone(),
        Priority::Normal,
        "kdniao",
        Recipient::default(),
        Some("TB-legacy".into()),
        p.now() - Duration::hours(2),
    );
    old.version = 5;
    old.checked_at = Some(p.now() - Duration::minutes(20));
    old.next_check_at = Some(p.now());
    put_legacy(&p, &old).await;
    ids.push(legacy.clone());

    // As created: META carries the due keys, there is no SCHED item.
    for id in &ids {
        let meta = item(&p, &id.pk(), "META").await.expect("META");
        assert!(s_attr(&meta, "due_sk").is_some(), "{id}");
        assert!(item(&p, &id.pk(), "SCHED").await.is_none(), "{id}");
    }

    // The first check of each (all are due): the due keys move to SCHED, META drops them.
    p.tick().await.expect("tick");
    for id in &ids {
        let meta = item(&p, &id.pk(), "META").await.expect("META");
        let sched = item(&p, &id.pk(), "SCHED")
            .await
            .expect("SCHED after the first check");
        assert!(
            s_attr(&meta, "due_pk").is_none() && s_attr(&meta, "due_sk").is_none(),
            "{id}: {meta:?}"
        );
        assert!(s_attr(&sched, "due_pk").is_some_and(|d| d.starts_with("DUE#")));
        assert_eq!(s_attr(&sched, "due_sk"), s_attr(&sched, "next_check_at"));
        assert_eq!(n_attr(&sched, "sv"), 1, "{id}");
        assert_eq!(n_attr(&sched, "version"), n_attr(&meta, "version"), "{id}");
        // The full write put META whole, the schedule included.
        assert_eq!(
            s_attr(&meta, "next_check_at"),
            s_attr(&sched, "next_check_at")
        );
    }
    let migrated = item(&p, &legacy.pk(), "META").await.unwrap();
    assert_eq!(
        n_attr(&migrated, "version"),
        6,
        "the old item, migrated by its check"
    );

    // Three simulated hours of checks. A check that finds nothing new bumps SCHED's sv and
    // leaves META as it was, to the byte; META's stream records are the full writes'.
    let (mut hot, mut full) = (0, 0);
    for _ in 0..18 {
        let mut before = HashMap::new();
        for id in &ids {
            let meta = item(&p, &id.pk(), "META").await.unwrap();
            let sched = item(&p, &id.pk(), "SCHED").await.unwrap();
            before.insert(id.clone(), (meta, sched));
        }
        let r = p.tick().await.expect("tick");
        let mut meta_writes = 0;
        for id in &ids {
            let (meta0, sched0) = &before[id];
            let meta = item(&p, &id.pk(), "META").await.unwrap();
            let sched = item(&p, &id.pk(), "SCHED").await.unwrap();
            let checks = n_attr(&sched, "sv") - n_attr(sched0, "sv");
            let writes = n_attr(&meta, "version") - n_attr(meta0, "version");
            meta_writes += writes;
            assert!(
                writes <= checks,
                "{id}: META is never written without SCHED"
            );
            if checks > 0 && writes == 0 {
                hot += 1;
                assert_eq!(&meta, meta0, "{id}: a hot write leaves META alone");
                assert_ne!(s_attr(&sched, "checked_at"), s_attr(sched0, "checked_at"));
            } else if writes > 0 {
                full += 1;
                assert!(s_attr(&meta, "due_sk").is_none(), "{id}");
            }
            assert_eq!(n_attr(&sched, "version"), n_attr(&meta, "version"), "{id}");
            if s_attr(&sched, "next_check_at").is_some() {
                assert_eq!(s_attr(&sched, "due_sk"), s_attr(&sched, "next_check_at"));
            }
        }
        assert_eq!(
            r.stream_records as u64, meta_writes,
            "the notifier's records are META's writes, none for SCHED: {r:?}"
        );
    }
    assert!(
        hot > 0,
        "some checks found nothing new ({full} full writes)"
    );
    // Found again and again by the scheduler from their SCHED entries.
    for s in p.shipments().await.unwrap() {
        let sched = item(&p, &s.id.pk(), "SCHED").await.unwrap();
        assert_eq!(s.sched_version, n_attr(&sched, "sv"));
        assert_eq!(
            s.next_check_at
                .map(parcelwatch::domain::fmt_time)
                .as_deref(),
            s_attr(&sched, "next_check_at"),
            "the read lays SCHED over META"
        );
    }
    let most = p
        .shipments()
        .await
        .unwrap()
        .iter()
        .map(|s| s.sched_version)
        .max();
    assert!(most.is_some_and(|sv| sv >= 3), "{most:?}");
    eprintln!(
        "{hot} hot writes, {full} full writes over 18 ticks of {} shipments",
        ids.len()
    );
}

/// Eight shipments due at the same second, four of them checked once (their entries on SCHED
/// items) and four as the code before the split wrote them (on META): a budget of three cuts
/// the run inside that second, the watermark records the entry's table key with its sort key,
/// and the next runs resume right after it. Each is enqueued exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_cut_between_sched_and_meta_entries_resumes_after_the_right_one() {
    let mut p = Pipeline::start(PipelineOptions {
        seed: 11,
        env: vec![
            ("SCHEDULER_MAX_ENQUEUE".into(), "3".into()),
            ("DUE_SHARDS".into(), "1".into()),
            ("PROVIDER_RATE_LIMITS".into(), "none".into()),
        ],
        ..PipelineOptions::default()
    })
    .await
    .expect("local stack starts");
    let parcels = p
        .register_demo_parcels(8, Duration::hours(1))
        .await
        .expect("register");
    let start = p.now();
    let due = start + Duration::minutes(30);
    let store = p.scheduler.store.clone();
    let mut entries = Vec::new();
    for (i, pc) in parcels.iter().enumerate() {
        let held = store.get(&pc.id).await.unwrap().expect("registered");
        let mut next = held.clone();
        next.checked_at = Some(start);
        next.next_check_at = Some(due);
        if i % 2 == 0 {
            // The store's first write (full: it moves the keys), then one of the schedule alone.
            let saved = store.save(&held, &next, &[]).await.unwrap();
            assert_eq!(saved.kind, WriteKind::Full);
            let held = store.get(&pc.id).await.unwrap().unwrap();
            let mut again = held.clone();
            again.checked_at = Some(start + Duration::minutes(1));
            let saved = store.save(&held, &again, &[]).await.unwrap();
            assert_eq!((saved.kind, saved.sched_version), (WriteKind::Hot, 2));
            entries.push((pc.id.pk(), "SCHED"));
        } else {
            next.version += 1;
            put_legacy(&p, &next).await;
            entries.push((pc.id.pk(), "META"));
        }
    }
    entries.sort();
    let cut = entries[2].clone();

    let mut per_run = Vec::new();
    let mut marks = Vec::new();
    for m in 1..=4 {
        let ev = p.schedule.event_at(due + Duration::minutes(m));
        let r = scheduler::handle(&p.scheduler, ev).await.expect("run");
        per_run.push((r.due_found, r.enqueued));
        let w = item(&p, "SCHED#due", "META").await.expect("watermark item");
        let shard = w["shards"].as_m().unwrap()["0"].as_m().unwrap().clone();
        marks.push((
            s_attr(&shard, "w_pk").map(String::from),
            s_attr(&shard, "w_sk").map(String::from),
        ));
    }
    assert_eq!(per_run, [(3, 3), (3, 3), (2, 2), (0, 0)]);
    assert_eq!(
        marks[0],
        (Some(cut.0.clone()), Some(cut.1.to_string())),
        "the first cut, after the third entry in (pk, sk) order"
    );
    let at = |i: usize| (Some(entries[i].0.clone()), Some(entries[i].1.to_string()));
    assert_eq!(marks[1], at(5));
    assert_eq!(
        marks[2],
        at(7),
        "the last entry; nothing after it the next run"
    );
    assert_eq!(marks[3], at(7));
    assert!(entries.iter().any(|e| e.1 == "SCHED") && entries.iter().any(|e| e.1 == "META"));

    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for (body, _) in p.peek_queue(&p.stack.tracking_queue_url).await.unwrap() {
        let m: Value = serde_json::from_str(&body).unwrap();
        *count
            .entry(m["number"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(count.len(), parcels.len(), "{count:?}");
    assert!(count.values().all(|n| *n == 1), "{count:?}");
}
