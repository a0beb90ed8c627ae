//! Push mode on the local stack: shipments registered through the api's HTTP front, subscribed
//! with the sandbox's Kdniao (8008) by the tracker, and then updated only by the pushes the
//! sandbox sends to `/push/kdniao` — with a poll only as the 12-hour safety net. And the push and
//! registration routes refusing bad input with a 4xx while the table stays as it was.

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::Duration;
use parcelwatch::domain::SAFETY_NET;
use parcelwatch::providers::kdniao::{KdniaoResponse, KdniaoTrace};
use parcelwatch::providers::kdniao_push::{build_push_form, PUSH_REQUEST_TYPE_MONITOR};
use parcelwatch_local::pipeline::{expected_sms, Pipeline, PipelineOptions};
use std::collections::{BTreeMap, HashMap};

/// Every item of the table by its key, to compare before and after a refused request. The items
/// are compared as values (`AttributeValue` maps compare regardless of order): rendering them
/// would print a nested map such as the scheduler's `shards` in hash order, which differs between
/// two reads of the same item.
async fn table_dump(p: &Pipeline) -> BTreeMap<(String, String), HashMap<String, AttributeValue>> {
    let mut out = BTreeMap::new();
    let mut start: Option<HashMap<String, AttributeValue>> = None;
    loop {
        let page = p
            .dynamo
            .scan()
            .table_name(&p.stack.table_name)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .expect("scan");
        for item in page.items() {
            let key = |k: &str| {
                item.get(k)
                    .and_then(|v| v.as_s().ok())
                    .cloned()
                    .unwrap_or_default()
            };
            out.insert((key("pk"), key("sk")), item.clone());
        }
        match page.last_evaluated_key {
            Some(k) if !k.is_empty() => start = Some(k),
            _ => break,
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_push_mode_every_buyer_is_told_once_without_polling_but_the_safety_net() {
    let mut p = Pipeline::start(PipelineOptions {
        seed: 23,
        push_mode: true,
        ..PipelineOptions::default()
    })
    .await
    .expect("local stack starts");
    let (parcels, answer) = p
        .register_via_api(14, Duration::hours(8))
        .await
        .expect("register through the api");
    assert_eq!(answer["counts"]["created"], 14, "{answer}");

    let start = p.now();
    p.run_until_settled(9).await.expect("run");
    let now = p.now();

    // Every parcel was subscribed once, and reached its true final status through pushes.
    let shipments: HashMap<_, _> = p
        .shipments()
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.id.clone(), s))
        .collect();
    assert_eq!(shipments.len(), parcels.len());
    for pc in &parcels {
        let ours = &shipments[&pc.id];
        let truth = pc.journey.truth_statuses(now).last().map(|(_, s)| *s);
        assert_eq!(
            Some(ours.status),
            truth,
            "{} ({:?})",
            pc.id,
            pc.journey.kind
        );
        assert!(ours.subscribed_at.is_some(), "{} subscribed", pc.id);
        assert!(ours.last_push_at.is_some(), "{} updated by a push", pc.id);
        let lines = pc.journey.visible_at(now).traces.len();
        assert_eq!(ours.event_count as usize, lines, "{}: lines once", pc.id);
        assert_eq!(p.event_items(&pc.id).await.unwrap(), lines);
    }
    assert_eq!(p.sandbox.subscriptions().len(), parcels.len());
    assert!(p.totals.pushes_sent > 0);
    assert_eq!(
        p.totals.pushes_sent, p.totals.pushes_acked,
        "every push acknowledged"
    );

    // No polling after subscription except the safety net: a parcel is polled only when it went
    // SAFETY_NET without a push, so at most once per SAFETY_NET of its tracked life.
    let stats = p.sandbox.stats();
    let tracked_hours: i64 = parcels
        .iter()
        .map(|pc| {
            let end = pc.journey.ends_at().unwrap_or(now).min(now);
            (end - start).num_hours().max(0)
        })
        .sum();
    let allowance = tracked_hours / SAFETY_NET.num_hours() + parcels.len() as i64;
    let polls = (stats.requests_8001 + stats.requests_1002) as i64;
    assert!(
        polls <= allowance,
        "{polls} trace queries in push mode; the safety net allows {allowance}"
    );

    // Exactly one SMS per notifiable transition, read back from the local SNS.
    let sms = p.sent_sms().await.unwrap();
    let mut by_phone: HashMap<&str, usize> = HashMap::new();
    for m in &sms {
        *by_phone.entry(m.phone_number.as_str()).or_default() += 1;
    }
    let mut expected_total = 0;
    for pc in &parcels {
        let expected = expected_sms(pc, now);
        expected_total += expected;
        assert_eq!(
            by_phone.get(pc.phone.expose()).copied().unwrap_or(0),
            expected,
            "{} ({:?})",
            pc.id,
            pc.journey.kind
        );
    }
    assert!(expected_total >= parcels.len() * 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_pushes_and_requests_get_a_4xx_and_leave_the_table_unchanged() {
    let mut p = Pipeline::start(PipelineOptions {
        seed: 29,
        push_mode: true,
        ..PipelineOptions::default()
    })
    .await
    .expect("local stack starts");
    let (parcels, _) = p
        .register_via_api(3, Duration::hours(1))
        .await
        .expect("register");
    for _ in 0..36 {
        p.tick().await.expect("tick");
    }
    let before = table_dump(&p).await;
    assert!(before.len() > 3, "the parcels have lines by now");
    let base = p.front.base_url();
    let eb = p.sandbox.ebusiness_id().to_string();
    let target = &parcels[0].id;
    let item = |shipper: &str| KdniaoResponse {
        ebusiness_id: Some(eb.clone()),
        shipper_code: Some(shipper.to_string()),
        logistic_code: Some(target.number.to_string()),
        success: true,
        state: Some("3".into()),
        state_ex: Some("3".into()),
        traces: vec![KdniaoTrace {
            accept_time: "2026-11-24 18:00:00".into(),
            accept_station: "已签收，签收人：本人".into(),
            action: Some("3".into()),
            ..Default::default()
        }],
        ..Default::default()
    };
    let push_time = p.now();
    let post = |path: &str, body: String, ctype: &str| {
        p.http
            .post(format!("{base}{path}"))
            .header("content-type", ctype)
            .body(body)
            .send()
    };
    let form = "application/x-www-form-urlencoded";

    // 1. A push signed with the wrong key.
    let forged = build_push_form(
        &eb,
        "not-the-app-key",
        PUSH_REQUEST_TYPE_MONITOR,
        push_time,
        &[item(target.carrier.as_str())],
    );
    let r = post("/push/kdniao", forged, form).await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let body = r.text().await.unwrap();
    assert!(body.contains("\"Success\":false"), "{body}");
    assert!(body.contains("signature"), "{body}");

    // 2. A malformed body.
    let r = post("/push/kdniao", "RequestData=%7Bnot-json".into(), form)
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);

    // 3. A correctly signed push for a carrier nobody knows.
    let unknown = build_push_form(
        &eb,
        p.sandbox.app_key(),
        PUSH_REQUEST_TYPE_MONITOR,
        push_time,
        &[item("NOSUCHCARRIER")],
    );
    let r = post("/push/kdniao", unknown, form).await.unwrap();
    let status = r.status().as_u16();
    let body = r.text().await.unwrap();
    assert!((400..500).contains(&status), "{status} {body}");
    assert!(body.contains("NOSUCHCARRIER"), "{body}");

    // 4. A bulk registration over the limit.
    let items: Vec<_> = (0..501)
        .map(|i| serde_json::json!({"carrier": "ZTO", "number": format!("78{i:013}")}))
        .collect();
    let r = p
        .http
        .post(format!("{base}/shipments"))
        .header("x-api-key", &p.api_key)
        .json(&serde_json::json!({ "shipments": items }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    assert!(r.text().await.unwrap().contains("500"));

    // 5. Merchant routes without and with a wrong key.
    let r = p
        .http
        .get(format!(
            "{base}/shipments/{}/{}",
            target.carrier, target.number
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = p
        .http
        .post(format!("{base}/shipments"))
        .header("x-api-key", "wrong")
        .json(&serde_json::json!({"carrier": "ZTO", "number": "780000000000999"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);

    assert_eq!(
        table_dump(&p).await,
        before,
        "nothing written by refused requests"
    );

    // The same routes do work: the trajectory reads back newest first.
    let r = p
        .http
        .get(format!(
            "{base}/shipments/{}/{}",
            target.carrier, target.number
        ))
        .header("x-api-key", &p.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let view: serde_json::Value = r.json().await.unwrap();
    let events = view["events"].as_array().expect("events");
    assert!(!events.is_empty(), "{view}");
    let times: Vec<&str> = events.iter().filter_map(|e| e["time"].as_str()).collect();
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted, "newest first");
    p.tick().await.expect("tick");
}
