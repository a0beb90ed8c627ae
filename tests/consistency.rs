//! A poll and a push decide alike, on the local stack: moto (DynamoDB + Streams, SQS, SNS through
//! the real AWS SDK), the Kdniao sandbox over real HTTP, the scheduler, tracker and notifier under
//! the runner, and the api behind its local API Gateway, fed signed Kdniao pushes.
//!
//! 1. With the carriers' delivery history in the table, a poll flags a parcel late, a push brings
//!    its next scan, a poll follows: the merchant hears `shipment.late` once. (Before the push
//!    path decided with the same history, the push cleared the flag and the next poll raised it
//!    again: a second alert.)
//! 2. A line the carrier dated 2099, then a genuine one: both stored, the first clamped and
//!    flagged, the genuine one the parcel's newest, the schedule on today's clock.

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Duration, TimeZone, Utc};
use parcelwatch::domain::geo::province_of_line;
use parcelwatch::domain::stats::{HistorySnapshot, RouteKey, RouteStats, StageStats};
use parcelwatch::domain::{fmt_time, parse_time, Shipment, ShipmentId, Status};
use parcelwatch::providers::kdniao::{format_accept_time, KdniaoResponse, KdniaoTrace};
use parcelwatch::providers::kdniao_push::{build_push_form, PUSH_REQUEST_TYPE_MONITOR};
use parcelwatch::store::ShipmentStore;
use parcelwatch_local::pipeline::{Pipeline, PipelineOptions};
use parcelwatch_local::sandbox::journey::{plan_kind, waybill_number, Journey, JourneyKind};
use parcelwatch_local::sandbox::push::kdniao_item_for;
use std::collections::HashMap;

const FORM: &str = "application/x-www-form-urlencoded";

/// An SQS queue subscribed to the merchant topic (raw delivery): its URL.
async fn merchant_inbox(p: &Pipeline) -> String {
    let url = p
        .sqs
        .create_queue()
        .queue_name(format!("{}-merchant-inbox", p.stack.prefix))
        .send()
        .await
        .expect("create queue")
        .queue_url()
        .expect("queue url")
        .to_string();
    let arn = p
        .sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue attributes")
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
        .cloned()
        .expect("queue arn");
    aws_sdk_sns::Client::new(&p.stack.sdk_config)
        .subscribe()
        .topic_arn(&p.stack.merchant_topic_arn)
        .protocol("sqs")
        .endpoint(arn)
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .expect("subscribe");
    url
}

/// Every document the merchant topic delivered to the inbox (each received once, then deleted).
async fn read_inbox(p: &Pipeline, url: &str) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    loop {
        let r = p
            .sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .send()
            .await
            .expect("receive");
        let msgs = r.messages();
        if msgs.is_empty() {
            return out;
        }
        for m in msgs {
            let body: serde_json::Value =
                serde_json::from_str(m.body().unwrap_or_default()).expect("json body");
            let doc = match body.get("Message").and_then(|v| v.as_str()) {
                Some(inner) => serde_json::from_str(inner).expect("json message"),
                None => body,
            };
            out.push(doc);
            p.sqs
                .delete_message()
                .queue_url(url)
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .send()
                .await
                .expect("delete");
        }
    }
}

/// Register one waybill through `POST /shipments` (merchant key), with the receiver's province.
async fn register(p: &Pipeline, id: &ShipmentId, destination: Option<&str>) {
    let mut item = serde_json::json!({
        "carrier": id.carrier.as_str(),
        "number": id.number.as_str(),
        "order_ref": format!("TB-{}", id.number),
    });
    if let Some(d) = destination {
        item["destination"] = serde_json::json!(d);
    }
    let r = p
        .http
        .post(format!("{}/shipments", p.front.base_url()))
        .header("x-api-key", &p.api_key)
        .json(&item)
        .send()
        .await
        .expect("POST /shipments");
    let status = r.status();
    let body = r.text().await.unwrap_or_default();
    assert!(status.is_success(), "registration: {status} {body}");
}

/// POST a Kdniao 8008 push of `items`, signed with the sandbox's key, to the api; the ack.
async fn push(p: &Pipeline, items: &[KdniaoResponse]) -> serde_json::Value {
    let form = build_push_form(
        p.sandbox.ebusiness_id(),
        p.sandbox.app_key(),
        PUSH_REQUEST_TYPE_MONITOR,
        p.now(),
        items,
    );
    let r = p
        .http
        .post(format!("{}/push/kdniao", p.front.base_url()))
        .header("content-type", FORM)
        .body(form)
        .send()
        .await
        .expect("POST /push/kdniao");
    let status = r.status().as_u16();
    let body = r.text().await.unwrap_or_default();
    assert_eq!(status, 200, "push answered {status}: {body}");
    let ack: serde_json::Value = serde_json::from_str(&body).expect("ack json");
    assert_eq!(ack["Success"], true, "{ack}");
    ack
}

async fn shipment(p: &Pipeline, id: &ShipmentId) -> Shipment {
    p.scheduler
        .store
        .get(id)
        .await
        .expect("read shipment")
        .expect("registered")
}

/// The shipment's `EVT#` items as stored, in sort-key order.
async fn event_items(p: &Pipeline, id: &ShipmentId) -> Vec<HashMap<String, AttributeValue>> {
    p.dynamo
        .query()
        .table_name(&p.stack.table_name)
        .key_condition_expression("pk = :pk AND begins_with(sk, :evt)")
        .expression_attribute_values(":pk", AttributeValue::S(id.pk()))
        .expression_attribute_values(":evt", AttributeValue::S("EVT#".into()))
        .consistent_read(true)
        .send()
        .await
        .expect("query EVT#")
        .items()
        .to_vec()
}

fn attr<'a>(item: &'a HashMap<String, AttributeValue>, k: &str) -> Option<&'a str> {
    item.get(k).and_then(|v| v.as_s().ok()).map(String::as_str)
}

fn polls(p: &Pipeline) -> u64 {
    let s = p.sandbox.stats();
    s.requests_1002 + s.requests_8001
}

fn is_late(s: &Shipment) -> bool {
    s.sub_status
        .as_ref()
        .is_some_and(|sub| sub.to_string().starts_with("parcelwatch:late"))
}

/// `n` delivered parcels of `carrier` between two provinces, each `hours` from first scan to
/// delivery, as the analytics function would have counted them.
fn route(
    h: &mut HistorySnapshot,
    carrier: &str,
    origin: &str,
    destination: &str,
    n: u64,
    hours: i64,
) {
    let mut stats = RouteStats {
        finished: n,
        delivered: n,
        ..RouteStats::default()
    };
    for _ in 0..n {
        stats.delivery.record(Duration::hours(hours));
    }
    h.routes.insert(
        RouteKey {
            carrier: carrier.into(),
            origin: origin.into(),
            destination: destination.into(),
        },
        stats,
    );
}

/// The first scan's province: where the parcel's route starts (as `geo::note_route` reads it).
fn origin_of(j: &Journey) -> &'static str {
    let first = j.steps.iter().find(|s| s.emits_line).expect("a first scan");
    province_of_line(Some(&first.location), &first.station)
        .expect("the first scan names a province")
        .name
}

const SEED_LATE: u64 = 37;
const CARRIER: &str = "ZTO";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_history_a_late_parcel_pushed_a_new_line_alerts_the_merchant_once() {
    let wall = std::time::Instant::now();
    let opts = PipelineOptions {
        seed: SEED_LATE,
        ..PipelineOptions::default()
    };
    let start = opts.start;
    let first_poll = start + opts.tick;
    // Shipped two days before the pipeline starts; still in transit at the first poll, its next
    // scan (in transit too) comes within six hours, and it reaches the destination city at least
    // eight hours after that: the poll, the push and the poll after it all see a parcel in
    // transit, on the road for more than 40 hours.
    let shipped_at = start - Duration::hours(48);
    let next_scan = |j: &Journey| {
        j.steps
            .iter()
            .find(|s| s.emits_line && s.at > first_poll)
            .cloned()
    };
    let (number, journey) = (0..2000)
        .map(|i| waybill_number(CARRIER, i, SEED_LATE))
        .map(|n| {
            let j = plan_kind(JourneyKind::Delivered, SEED_LATE, CARRIER, &n, shipped_at);
            (n, j)
        })
        .find(|(_, j)| {
            let Some(next) = next_scan(j) else {
                return false;
            };
            let arrives = j.steps.iter().find(|s| s.state_ex == "201").map(|s| s.at);
            j.visible_at(first_poll).state_ex == "2"
                && next.state_ex == "2"
                && next.at > first_poll + Duration::minutes(30)
                && next.at < first_poll + Duration::hours(6)
                && arrives.is_some_and(|a| a > next.at + Duration::hours(8))
        })
        .expect("a journey in transit at the first poll");
    let id = ShipmentId::parse(CARRIER, &number).unwrap();
    let origin = origin_of(&journey);
    let destination = journey.destination.province;
    let pickup = journey.steps[0].at;
    let next = next_scan(&journey).unwrap();

    // The carrier's history: 40 parcels of 24 h on this parcel's route, 40 of 96 h from another
    // origin to its destination and 40 of 96 h from its origin elsewhere. Only the exact route
    // (origin from the first scan, destination from the registration) makes it late (p90 ≈ 24 h,
    // threshold ≈ 30 h < 40 h); any coarser view (p90 ≈ 96 h) would not. Quiet gaps of 8 h in
    // transit: stalled only past ≈ 13 h without a scan, which this journey never is.
    let other = |p: &str| {
        ["浙江", "广东", "四川"]
            .into_iter()
            .find(|o| *o != p && *o != origin && *o != destination)
            .unwrap()
    };
    let mut history = HistorySnapshot::default();
    route(&mut history, CARRIER, origin, destination, 40, 24);
    route(&mut history, CARRIER, other(origin), destination, 40, 96);
    route(&mut history, CARRIER, origin, other(destination), 40, 96);
    let mut stage = StageStats::default();
    for _ in 0..40 {
        stage.quiet_gap.record(Duration::hours(8));
        stage.time_in_stage.record(Duration::hours(30));
    }
    history
        .stages
        .insert((CARRIER.to_string(), Status::InTransit), stage);

    let mut p = Pipeline::start(PipelineOptions {
        seed_history: Some(history),
        ..opts
    })
    .await
    .expect("local stack starts");
    let inbox = merchant_inbox(&p).await;
    let registered = p
        .sandbox
        .register_kind(JourneyKind::Delivered, CARRIER, &number, shipped_at);
    assert_eq!(registered, journey, "the sandbox plays the planned journey");
    register(&p, &id, Some(destination)).await;
    p.drain_stream().await.unwrap();

    // 1. The first poll: late at once.
    p.tick().await.unwrap();
    assert_eq!(p.now(), first_poll);
    assert_eq!(polls(&p), 1, "one poll");
    let polled = shipment(&p, &id).await;
    assert_eq!(polled.status, Status::InTransit);
    assert_eq!(
        polled.origin.as_deref(),
        Some(origin),
        "origin from the first scan"
    );
    assert_eq!(polled.destination.as_deref(), Some(destination));
    assert_eq!(polled.picked_up_at, Some(pickup));
    assert!(
        is_late(&polled),
        "late at the first poll: {:?}",
        polled.sub_status
    );
    let flag = polled.sub_status.clone();
    assert!(
        flag.as_ref().unwrap().to_string().ends_with(";n40"),
        "the route's own 40 deliveries: {flag:?}"
    );
    assert!(first_poll - pickup > Duration::hours(40));

    // Until just before the next scan the scheduler polls as it would; nothing new.
    while p.now() + p.opts.tick < next.at {
        p.tick().await.unwrap();
    }
    let held = shipment(&p, &id).await;
    assert_eq!(held.sub_status, flag, "no news, the flag as raised");
    let lines_before = journey
        .visible_at(next.at - Duration::seconds(1))
        .traces
        .len();
    assert_eq!(held.event_count as usize, lines_before);

    // 2. The carrier scans the parcel and Kdniao pushes a minute later, before any poll: the
    // whole trajectory with the new line, signed.
    let at = next.at + Duration::minutes(1);
    p.clock.advance(at - p.now());
    let item = kdniao_item_for(
        &journey,
        p.now(),
        p.sandbox.ebusiness_id(),
        CARRIER,
        &number,
        None,
    )
    .unwrap();
    assert_eq!(
        item.traces.len(),
        lines_before + 1,
        "the push brings one line"
    );
    push(&p, &[item]).await;
    p.drain_stream().await.unwrap();
    let pushed = shipment(&p, &id).await;
    assert_eq!(pushed.last_push_at, Some(at));
    assert_eq!(
        pushed.event_count as usize,
        lines_before + 1,
        "the new line stored"
    );
    assert_eq!(
        pushed.last_event.as_ref().map(|(k, _)| k.time),
        Some(next.at)
    );
    assert_eq!(pushed.status, Status::InTransit);
    assert_eq!(
        pushed.sub_status, flag,
        "the push decided with the same history: still late, the flag as raised"
    );

    // 3. A poll follows.
    let before = polls(&p);
    for _ in 0..72 {
        p.tick().await.unwrap();
        if polls(&p) > before {
            break;
        }
    }
    assert!(polls(&p) > before, "a poll within twelve hours of the push");
    p.drain_stream().await.unwrap();
    let after = shipment(&p, &id).await;
    assert!(after.checked_at.unwrap() > at, "polled after the push");
    assert_eq!(after.last_provider.as_deref(), Some("kdniao"));
    assert!(is_late(&after), "still late: {:?}", after.sub_status);
    assert_eq!(after.sub_status, flag);

    // The merchant heard of it once.
    let docs: Vec<serde_json::Value> = read_inbox(&p, &inbox)
        .await
        .into_iter()
        .filter(|d| d["number"] == number.as_str())
        .collect();
    let late: Vec<&serde_json::Value> = docs
        .iter()
        .filter(|d| d["event"] == "shipment.late")
        .collect();
    assert_eq!(late.len(), 1, "exactly one shipment.late: {docs:#?}");
    let alert = late[0];
    assert_eq!(alert["carrier"], CARRIER);
    assert_eq!(alert["stage"], "InTransit");
    assert_eq!(alert["basis"], "n40");
    assert_eq!(
        parse_time(alert["at"].as_str().unwrap()),
        Some(first_poll),
        "raised by the first poll"
    );
    let p90 = alert["p90_minutes"].as_i64().unwrap();
    // 24 h read back from its histogram bucket (9 % wide), not any coarser view's 96 h.
    assert!(
        (22 * 60..=27 * 60).contains(&p90),
        "the route's p90: {p90} min"
    );
    let threshold = alert["threshold_minutes"].as_i64().unwrap();
    assert!((threshold - p90 * 5 / 4).abs() <= 1, "{threshold} vs {p90}");
    // And never heard of the flag going away in between.
    for d in &docs {
        if d["event"] == "shipment.status_changed" {
            let sub = d["sub_status"].as_str().unwrap_or_default();
            assert!(sub.starts_with("parcelwatch:late"), "flag cleared: {d}");
        }
    }
    eprintln!(
        "{id}: {origin}→{destination}, picked up {pickup}, late at {first_poll} ({:?}); push at {at}; \
         polled again at {:?}; merchant documents: {}; wall {:.1} s",
        flag.as_ref().map(ToString::to_string),
        after.checked_at,
        docs.len(),
        wall.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2099_dated_line_then_a_genuine_one_both_stored_status_and_schedule_sane() {
    let wall = std::time::Instant::now();
    let p = Pipeline::start(PipelineOptions {
        seed: 41,
        ..PipelineOptions::default()
    })
    .await
    .expect("local stack starts");
    let number = waybill_number(CARRIER, 7, 41);
    let id = ShipmentId::parse(CARRIER, &number).unwrap();
    // Registered with us only: no poll runs in this test (no tick), pushes alone feed it.
    register(&p, &id, None).await;
    let base = p.front.base_url();
    let item = |state_ex: &str, traces: Vec<KdniaoTrace>| KdniaoResponse {
        ebusiness_id: Some(p.sandbox.ebusiness_id().to_string()),
        shipper_code: Some(CARRIER.into()),
        logistic_code: Some(number.clone()),
        success: true,
        state: Some(state_ex[..1].to_string()),
        state_ex: Some(state_ex.into()),
        traces,
        ..Default::default()
    };
    let wrong_clock = KdniaoTrace {
        accept_time: "2099-01-01 00:00:00".into(),
        accept_station: "【杭州市】快件已由【杭州转运中心】发往【成都转运中心】".into(),
        location: Some("杭州市".into()),
        action: Some("2".into()),
        remark: None,
    };
    // 2099-01-01 00:00 China time.
    let claimed = Utc.with_ymd_and_hms(2098, 12, 31, 16, 0, 0).unwrap();

    // 1. The line dated 2099.
    let t1 = p.now();
    push(&p, &[item("2", vec![wrong_clock.clone()])]).await;
    let s1 = shipment(&p, &id).await;
    assert_eq!(s1.event_count, 1, "the line is stored");
    assert_eq!(s1.last_event, None, "a future-dated line is not the newest");
    assert_eq!(s1.picked_up_at, None, "nor the start of the journey");
    assert_eq!(s1.status, Status::InTransit);
    let evt = event_items(&p, &id).await;
    assert_eq!(evt.len(), 1);
    assert_eq!(attr(&evt[0], "time"), Some(fmt_time(t1).as_str()));
    assert_eq!(
        attr(&evt[0], "claimed_time"),
        Some(fmt_time(claimed).as_str())
    );
    let next1 = s1.next_check_at.expect("still checked");
    assert!(
        next1 >= t1 && next1 <= t1 + Duration::days(1),
        "next check {next1} on today's clock (now {t1})"
    );

    // 2. Three hours later, a genuine line, later stage: out for delivery. Kdniao pushes the
    // whole trajectory, the 2099 line included.
    p.clock.advance(Duration::hours(3));
    let t2 = p.now();
    let genuine = KdniaoTrace {
        accept_time: format_accept_time(t2),
        accept_station: "【成都市】【成都武侯区营业部】快递员王师傅正在派件".into(),
        location: Some("成都市".into()),
        action: Some("202".into()),
        remark: None,
    };
    let second = item("202", vec![wrong_clock.clone(), genuine.clone()]);
    push(&p, std::slice::from_ref(&second)).await;
    let s2 = shipment(&p, &id).await;
    assert_eq!(s2.event_count, 2, "one new line: the genuine one");
    assert_eq!(s2.status, Status::OutForDelivery);
    let (last_key, last) = s2.last_event.clone().expect("a newest line");
    assert_eq!(last_key.time, t2);
    assert_eq!(last.description, genuine.accept_station);
    assert_eq!(last.claimed_time, None);
    assert_eq!(s2.last_push_at, Some(t2));
    let next2 = s2.next_check_at.expect("still checked");
    assert!(
        next2 >= t2 && next2 <= t2 + Duration::days(1),
        "next check {next2} on today's clock (now {t2})"
    );
    let evt = event_items(&p, &id).await;
    assert_eq!(evt.len(), 2, "{evt:?}");
    let by_time: HashMap<&str, &HashMap<String, AttributeValue>> = evt
        .iter()
        .map(|i| (attr(i, "time").unwrap_or_default(), i))
        .collect();
    let flagged = by_time[fmt_time(t1).as_str()];
    assert_eq!(
        attr(flagged, "claimed_time"),
        Some(fmt_time(claimed).as_str())
    );
    assert_eq!(
        attr(flagged, "description"),
        Some(wrong_clock.accept_station.as_str())
    );
    let real = by_time[fmt_time(t2).as_str()];
    assert_eq!(attr(real, "claimed_time"), None);
    assert_eq!(attr(real, "status"), Some("OutForDelivery"));

    // 3. The same push again ten minutes later: the 2099 line is the same line (its identity is
    // the time the carrier stated), nothing is new.
    p.clock.advance(Duration::minutes(10));
    push(&p, &[second]).await;
    let s3 = shipment(&p, &id).await;
    assert_eq!(s3.event_count, 2);
    assert_eq!(event_items(&p, &id).await.len(), 2);
    assert_eq!(s3.last_event, s2.last_event);
    assert_eq!(s3.status, Status::OutForDelivery);

    // 4. What an order page reads through the api: newest first, the 2099 line flagged.
    let r = p
        .http
        .get(format!("{base}/shipments/{CARRIER}/{number}"))
        .header("x-api-key", &p.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let view: serde_json::Value = r.json().await.unwrap();
    assert_eq!(view["status"], "OutForDelivery", "{view}");
    assert_eq!(view["event_count"], 2);
    assert_eq!(
        view["last_event"]["description"],
        genuine.accept_station.as_str()
    );
    assert_eq!(view["last_event"]["time"], fmt_time(t2));
    let events = view["events"].as_array().expect("events");
    assert_eq!(events.len(), 2, "{view}");
    assert_eq!(events[0]["description"], genuine.accept_station.as_str());
    assert!(events[0].get("claimed_time").is_none(), "{}", events[0]);
    assert_eq!(
        events[1]["description"],
        wrong_clock.accept_station.as_str()
    );
    assert_eq!(events[1]["time"], fmt_time(t1));
    assert_eq!(events[1]["claimed_time"], fmt_time(claimed));
    let parse =
        |v: &serde_json::Value| -> DateTime<Utc> { parse_time(v.as_str().unwrap()).unwrap() };
    assert!(parse(&events[1]["time"]) < parse(&events[0]["time"]));
    eprintln!(
        "{id}: 2099 line kept at {t1} (claimed {claimed}), genuine line at {t2}; next check {next2}; wall {:.1} s",
        wall.elapsed().as_secs_f64()
    );
}
