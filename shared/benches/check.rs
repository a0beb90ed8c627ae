//! CPU per check: what the tracker does with one provider answer once it has it, without I/O.
//!
//! A check of a parcel that already holds 19 trace lines receives a 20-line answer (the 20th line
//! is new, and moves the parcel to OutForDelivery). Per iteration:
//! 1. parse the body (serde) and normalize it (status mapping, times, line codes) into a
//!    [`TraceSnapshot`] — `kdniao::decode_response` + `response_to_snapshot`, or
//!    `kuaidi100::decode_query_response`, as the clients do;
//! 2. decide ([`decide`]): the carrier's learned cadence from the history the tracker holds,
//!    new lines by identity, transition, the stall and delay verdict, next check, as
//!    `tracking::apply` does;
//! 3. build the write the store sends: the new lines' `EVT#` items, the `SCHED` item and the
//!    `META` item with their versions bumped, as DynamoDB attribute maps (`serde_dynamo`, what
//!    `DynamoStore::save`'s full write does).
//!
//! `make bench` runs this with a short measurement time and reads criterion's
//! `target/criterion/check/<name>/new/estimates.json` into its table (see `local/src/bench`).

use chrono::{DateTime, Duration, TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use parcelwatch::domain::stats::{HistorySnapshot, StageStats};
use parcelwatch::domain::{
    CheckContext, Decision, Observation, Priority, Recipient, SchedulePolicy, Shipment, ShipmentId,
    Status, TraceSnapshot,
};
use parcelwatch::providers::kdniao::{
    decode_response, format_accept_time, response_to_snapshot, KdniaoResponse, KdniaoTrace,
};
use parcelwatch::providers::kuaidi100::decode_query_response;
use parcelwatch::store::{EventRecord, SchedRecord, ShipmentRecord};
use std::collections::HashMap;
use std::hint::black_box;

type Item = HashMap<String, aws_sdk_dynamodb::types::AttributeValue>;

/// The template's default number of due-index shards.
const DUE_SHARDS: u32 = 16;

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 2, 0, 0)
        .single()
        .expect("a valid fixed time")
}

/// A YTO parcel from Hangzhou to Beijing, 20 lines as Kdniao's 8001 answers them: (hours after
/// pick-up, AcceptStation, Location, Action). Actions: 1 picked up, 2 in transit, 201 arrived at
/// the destination city, 202 out for delivery (Kdniao's 8001 action codes).
const LINES: [(i64, &str, &str, &str); 20] = [
    (
        0,
        "【杭州市余杭区公司】 已揽收 揽投员：王师傅 电话：0571-8888xxxx",
        "杭州市",
        "1",
    ),
    (
        2,
        "【杭州市余杭区公司】 已发出 下一站 【杭州转运中心】",
        "杭州市",
        "2",
    ),
    (4, "【杭州转运中心】 已收入", "杭州市", "2"),
    (
        5,
        "【杭州转运中心】 已发出 下一站 【南京转运中心】",
        "杭州市",
        "2",
    ),
    (11, "【南京转运中心】 已收入", "南京市", "2"),
    (
        12,
        "【南京转运中心】 已发出 下一站 【济南转运中心】",
        "南京市",
        "2",
    ),
    (19, "【济南转运中心】 已收入", "济南市", "2"),
    (
        20,
        "【济南转运中心】 已发出 下一站 【天津转运中心】",
        "济南市",
        "2",
    ),
    (24, "【天津转运中心】 已收入", "天津市", "2"),
    (
        25,
        "【天津转运中心】 已发出 下一站 【北京转运中心】",
        "天津市",
        "2",
    ),
    (28, "【北京转运中心】 已收入", "北京市", "2"),
    (29, "【北京转运中心】 正在分拣", "北京市", "2"),
    (
        30,
        "【北京转运中心】 已发出 下一站 【北京市朝阳区公司】",
        "北京市",
        "2",
    ),
    (32, "快件已到达 【北京市】", "北京市", "201"),
    (33, "【北京市朝阳区公司】 已收入", "北京市", "201"),
    (34, "【北京市朝阳区公司】 正在分拣", "北京市", "201"),
    (35, "【北京市朝阳区望京营业部】 已收入", "北京市", "201"),
    (
        36,
        "【北京市朝阳区望京营业部】 快件已进行扫描",
        "北京市",
        "201",
    ),
    (
        37,
        "【北京市朝阳区望京营业部】 已到达派件点，等待派送",
        "北京市",
        "201",
    ),
    (
        38,
        "【北京市朝阳区望京营业部】 派件员：李师傅 电话：138xxxx1234 正在为您派件",
        "北京市",
        "202",
    ),
];

/// Kdniao 8001 answer with the first `n` lines (oldest first, as Kdniao sends them).
fn kdniao_body(n: usize) -> String {
    let lines = &LINES[..n];
    let traces = lines
        .iter()
        .map(|(h, station, city, action)| KdniaoTrace {
            accept_time: format_accept_time(start() + Duration::hours(*h)),
            accept_station: (*station).into(),
            location: Some((*city).into()),
            action: Some((*action).into()),
            remark: None,
        })
        .collect();
    let last = lines.last().map_or("2", |l| l.3);
    let resp = KdniaoResponse {
        ebusiness_id: Some("1237100".into()),
        shipper_code: Some("YTO".into()),
        logistic_code: Some("YT7412345678901".into()),
        success: true,
        state: Some("2".into()),
        state_ex: Some(last.into()),
        location: lines.last().map(|l| l.2.into()),
        traces,
        ..Default::default()
    };
    serde_json::to_string(&resp).expect("a KdniaoResponse serializes")
}

/// Kuaidi100 real-time query answer (`resultv2`) with the first `n` lines, newest first as
/// Kuaidi100 sends them. statusCode: 1 揽收, 1002 干线, 5 派件 (Kuaidi100's high-level codes).
fn kuaidi100_body(n: usize) -> String {
    let data: Vec<serde_json::Value> = LINES[..n]
        .iter()
        .rev()
        .map(|(h, station, city, action)| {
            let t = format_accept_time(start() + Duration::hours(*h));
            let (status, code) = match *action {
                "1" => ("揽收", "1"),
                "202" => ("派件", "5"),
                _ => ("在途", "1002"),
            };
            serde_json::json!({
                "time": t, "ftime": t, "context": station, "location": city,
                "areaName": city, "status": status, "statusCode": code,
            })
        })
        .collect();
    let state = if n == LINES.len() { "5" } else { "0" };
    serde_json::json!({
        "message": "ok", "nu": "YT7412345678901", "ischeck": "0", "com": "yuantong",
        "status": "200", "state": state, "condition": "F00", "data": data,
    })
    .to_string()
}

/// The shipment as stored after a check that saw the first 19 lines.
fn holding_19(snapshot_19: &TraceSnapshot) -> Shipment {
    let registered = Shipment::register(
        ShipmentId::parse("YTO", "YT7412345678901").expect("a valid waybill"),
        Priority::Normal,
        "kdniao",
        Recipient::default(),
        Some("TB-4242".into()),
        start() - Duration::hours(6),
    );
    let mut s = parcelwatch::domain::decide(
        &registered,
        Observation::poll(snapshot_19, "kdniao"),
        &CheckContext::standalone(),
        start() + Duration::hours(37),
    )
    .updated;
    s.version = 17;
    s
}

/// Step 3: the items `DynamoStore::save`'s full write puts (BatchWriteItem of the new lines,
/// then the conditional PutItems of `SCHED` at sv + 1 and of `META` at version + 1).
fn write_items(outcome: &Decision) -> (Vec<Item>, Item, Item) {
    let s = &outcome.updated;
    let events = outcome
        .new_events
        .iter()
        .map(|(k, e)| {
            serde_dynamo::to_item(EventRecord::new(&s.id, k, e, &s.provider))
                .expect("an event item encodes")
        })
        .collect();
    let mut next = s.clone();
    next.version += 1;
    next.sched_version += 1;
    let sched = serde_dynamo::to_item(SchedRecord::from_shipment(&next, DUE_SHARDS))
        .expect("a schedule item encodes");
    let meta =
        serde_dynamo::to_item(ShipmentRecord::from_shipment(&next, DUE_SHARDS).without_due_keys())
            .expect("a shipment item encodes");
    (events, sched, meta)
}

/// A carrier history as the tracker holds it after a few thousand deliveries: every stage of
/// YTO with 500 quiet gaps spread over 10 min – 10 h, so every learned figure is in use.
fn history() -> HistorySnapshot {
    let mut h = HistorySnapshot::default();
    for stage in Status::ALL.into_iter().filter(|s| !s.is_terminal()) {
        let mut st = StageStats::default();
        for i in 0..500 {
            st.quiet_gap.record(Duration::minutes(10 + i * 590 / 499));
            st.time_in_stage.record(Duration::minutes(30 + i * 2));
        }
        h.stages.insert(("YTO".into(), stage), st);
    }
    h
}

/// Step 2, as the tracker decides: one [`parcelwatch::domain::decide`] under the context the
/// tracker builds once per cold start.
fn decide(
    current: &Shipment,
    snap: &TraceSnapshot,
    ctx: &CheckContext,
    now: DateTime<Utc>,
) -> Decision {
    parcelwatch::domain::decide(current, Observation::poll(snap, "kdniao"), ctx, now)
}

fn kdniao_parse(body: &str, now: DateTime<Utc>) -> TraceSnapshot {
    let resp = decode_response(body).expect("the 20-line answer decodes");
    response_to_snapshot(&resp, now).expect("a successful answer")
}

fn checks(c: &mut Criterion) {
    let now = start() + Duration::hours(38) + Duration::minutes(20);
    let kd_19 = kdniao_parse(&kdniao_body(19), now);
    let kd_20 = kdniao_body(20);
    let k100_20 = kuaidi100_body(20);
    let current = holding_19(&kd_19);
    let history = history();
    let ctx = CheckContext::new(std::sync::Arc::new(history.clone()));
    let bare = CheckContext::standalone();

    // The figures are only meaningful if the check does what it claims: one new line, one
    // transition to OutForDelivery, three items to write.
    let outcome = decide(&current, &kdniao_parse(&kd_20, now), &ctx, now);
    assert_eq!(outcome.new_events.len(), 1, "exactly the 20th line is new");
    // The history is in use: every stage's cadence is learned (typical gap and quiet start).
    let learned = SchedulePolicy::default().with_history(&history, "YTO");
    for stage in Status::ALL.into_iter().filter(|s| !s.is_terminal()) {
        let c = learned.learned.get("YTO", stage);
        assert!(
            c.typical_gap.is_some() && c.quiet_start.is_some(),
            "{stage}"
        );
    }
    assert_eq!(
        outcome.transition.as_ref().map(|t| t.to),
        Some(parcelwatch::domain::Status::OutForDelivery)
    );
    let k100 = decode_query_response(&k100_20).expect("the Kuaidi100 answer decodes");
    assert_eq!(k100.events.len(), 20);
    assert_eq!(
        decide(&current, &k100, &bare, now).new_events.len(),
        1,
        "Kuaidi100's reading of the same trace adds the same one line"
    );

    let mut g = c.benchmark_group("check");
    g.bench_function("kdniao_20_lines", |b| {
        b.iter(|| {
            let snap = kdniao_parse(black_box(&kd_20), now);
            let outcome = decide(black_box(&current), &snap, &ctx, now);
            black_box(write_items(&outcome))
        })
    });
    g.bench_function("kuaidi100_20_lines", |b| {
        b.iter(|| {
            let snap = decode_query_response(black_box(&k100_20)).expect("decodes");
            let outcome = decide(black_box(&current), &snap, &ctx, now);
            black_box(write_items(&outcome))
        })
    });
    // The three steps of the Kdniao check alone, to show where the time goes.
    g.bench_function("kdniao_parse_normalize", |b| {
        b.iter(|| black_box(kdniao_parse(black_box(&kd_20), now)))
    });
    let snap = kdniao_parse(&kd_20, now);
    g.bench_function("apply_check", |b| {
        b.iter(|| black_box(decide(black_box(&current), black_box(&snap), &bare, now)))
    });
    g.bench_function("decide", |b| {
        b.iter(|| black_box(decide(black_box(&current), black_box(&snap), &ctx, now)))
    });
    g.bench_function("write_items", |b| {
        b.iter(|| black_box(write_items(black_box(&outcome))))
    });
    g.finish();
}

criterion_group!(benches, checks);
criterion_main!(benches);
