//! Seeing a stuck parcel before the buyer does, on the local stack: moto (DynamoDB + Streams,
//! SQS, SNS through the real AWS SDK), the Kdniao sandbox over real HTTP, and the scheduler,
//! tracker and notifier under the runner. Stalled journeys (silent mid-transit, then Kdniao's
//! 403, then moving again) among normal ones; the merchant's alerts are read back from the
//! merchant topic through an SQS queue subscribed to it, as a merchant's integration would.

use chrono::{DateTime, Duration, Utc};
use parcelwatch::domain::stall::fallback_threshold;
use parcelwatch::domain::{Locale, PhoneNumber, Priority, Recipient, Shipment, ShipmentId, Status};
use parcelwatch::store::ShipmentStore;
use parcelwatch_local::pipeline::{expected_sms, Parcel, Pipeline, PipelineOptions};
use parcelwatch_local::sandbox::journey::{plan_kind, waybill_number, JourneyKind};
use std::collections::HashMap;

const SEED: u64 = 31;

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
            // Without raw delivery SNS wraps the document in its envelope.
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

/// The first waybill numbers of `carrier` from the `from`-th on whose journey, forced to `kind`,
/// satisfies `keep`.
fn numbers_where(
    from: u64,
    carrier: &str,
    kind: JourneyKind,
    shipped_at: DateTime<Utc>,
    count: usize,
    keep: impl Fn(&parcelwatch_local::sandbox::journey::Journey) -> bool,
) -> Vec<String> {
    (from..from + 1000)
        .map(|i| waybill_number(carrier, i, SEED))
        .filter(|n| keep(&plan_kind(kind, SEED, carrier, n, shipped_at)))
        .take(count)
        .collect()
}

/// A stalled journey that moves again after the carrier's 403 (three in four do).
fn resumes(j: &parcelwatch_local::sandbox::journey::Journey) -> bool {
    let verdict = j.steps.iter().position(|s| s.state_ex == "403");
    verdict.is_some_and(|v| j.steps[v + 1..].iter().any(|s| s.emits_line))
}

/// Register `kind` journeys in the sandbox (the carrier's side) and the table (ours).
async fn register(
    p: &mut Pipeline,
    items: &[(JourneyKind, &str, String)],
    shipped_at: DateTime<Utc>,
) -> Vec<Parcel> {
    let mut parcels = Vec::new();
    for (i, (kind, carrier, number)) in items.iter().enumerate() {
        let id = ShipmentId::parse(carrier, number).unwrap();
        let journey = p.sandbox.register_kind(*kind, carrier, number, shipped_at);
        let phone = PhoneNumber::parse(&format!("+8613900{:06}", 310 + i)).unwrap();
        let sealed = p.api.vault.seal(&phone).await.unwrap();
        let shipment = Shipment::register(
            id.clone(),
            Priority::Normal,
            "kdniao",
            Recipient {
                phone: Some(sealed),
                locale: if i % 2 == 0 { Locale::ZhCn } else { Locale::En },
            },
            Some(format!("TB{:016}", 2026112600000000u64 + i as u64)),
            p.now(),
        );
        p.scheduler.store.create(&shipment).await.unwrap();
        parcels.push(Parcel { id, phone, journey });
    }
    p.drain_stream().await.unwrap();
    parcels
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_parcel_raises_exactly_one_merchant_alert_before_its_buyer_would_notice() {
    let mut p = Pipeline::start(PipelineOptions {
        seed: SEED,
        tick: Duration::minutes(15),
        ..PipelineOptions::default()
    })
    .await
    .expect("local stack starts");
    let inbox = merchant_inbox(&p).await;
    let shipped_at = p.now();

    // Two stalled parcels that move again, and one of every other kind of journey.
    let mut items: Vec<(JourneyKind, &str, String)> = Vec::new();
    for carrier in ["ZTO", "YTO"] {
        for n in numbers_where(0, carrier, JourneyKind::Stalled, shipped_at, 1, resumes) {
            items.push((JourneyKind::Stalled, carrier, n));
        }
    }
    assert_eq!(items.len(), 2, "two resuming stalled journeys");
    let others = [
        (JourneyKind::Delivered, "STO"),
        (JourneyKind::Delivered, "SF"),
        (JourneyKind::LockerPickup, "YD"),
        (JourneyKind::DeliveryFailed, "JD"),
        (JourneyKind::Refused, "EMS"),
        (JourneyKind::Returned, "ZTO"),
    ];
    for (kind, carrier) in others {
        // Numbers far from the stalled ones: one waybill, one journey.
        let n = numbers_where(5000, carrier, kind, shipped_at, 1, |_| true).remove(0);
        items.push((kind, carrier, n));
    }
    let parcels = register(&mut p, &items, shipped_at).await;

    p.run_until_settled(14).await.expect("run");
    let now = p.now();

    // Every parcel reached its end, with the simulator's final status.
    let shipments: HashMap<ShipmentId, Shipment> = p
        .shipments()
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.id.clone(), s))
        .collect();
    for pc in &parcels {
        let s = &shipments[&pc.id];
        let truth = pc.journey.truth_statuses(now).last().map(|(_, s)| *s);
        assert_eq!(Some(s.status), truth, "{} ({:?})", pc.id, pc.journey.kind);
        assert!(s.status.is_terminal(), "{} still {}", pc.id, s.status);
    }

    let docs = read_inbox(&p, &inbox).await;
    let alerts: Vec<&serde_json::Value> = docs
        .iter()
        .filter(|d| d["event"] != "shipment.status_changed")
        .collect();
    let alerts_for = |pc: &Parcel| -> Vec<&serde_json::Value> {
        alerts
            .iter()
            .copied()
            .filter(|d| d["number"] == pc.id.number.as_str())
            .collect()
    };
    let at = |d: &serde_json::Value| -> DateTime<Utc> {
        parcelwatch::domain::parse_time(d["at"].as_str().expect("at")).expect("rfc 3339")
    };
    let threshold = fallback_threshold(Status::InTransit).unwrap();

    for pc in &parcels {
        let mine = alerts_for(pc);
        if pc.journey.kind != JourneyKind::Stalled {
            assert!(
                mine.is_empty(),
                "{} ({:?}): {mine:?}",
                pc.id,
                pc.journey.kind
            );
            continue;
        }
        // Exactly one, although the parcel then got the carrier's 403 and moved again.
        assert_eq!(mine.len(), 1, "{}: {mine:?}", pc.id);
        let alert = mine[0];
        assert_eq!(alert["event"], "shipment.stalled");
        assert_eq!(alert["stage"], "InTransit");
        assert_eq!(alert["basis"], "fallback");
        assert_eq!(alert["threshold_minutes"], threshold.num_minutes());
        assert_eq!(alert["carrier"], pc.id.carrier.as_str());
        assert!(alert["order_ref"]
            .as_str()
            .is_some_and(|r| r.starts_with("TB")));
        assert_eq!(alert["buyer_phone_last4"], pc.phone.last4());
        let start = pc.journey.stall_starts_at().unwrap();
        let notice = pc.journey.buyer_would_notice_at().unwrap();
        let raised = at(alert);
        // Not before the parcel was quiet for the threshold; well before the buyer would notice
        // (the scheduler's 15-minute tick and the tracker's batch are the only delay).
        assert!(
            raised >= start + threshold,
            "{}: {raised} vs {start}",
            pc.id
        );
        assert!(
            raised < notice,
            "{}: alert {raised}, buyer notices {notice}",
            pc.id
        );
        assert!(
            raised <= start + threshold + Duration::minutes(30),
            "{}: alert {raised}, stall from {start}",
            pc.id
        );
        eprintln!(
            "{}: silent from {start}, alert at {raised} (+{} min), buyer would notice at {notice} ({} min later)",
            pc.id,
            (raised - start).num_minutes(),
            (notice - raised).num_minutes()
        );
        let quiet = alert["quiet_for_minutes"].as_i64().unwrap();
        assert!(
            quiet >= threshold.num_minutes() && quiet <= threshold.num_minutes() + 30,
            "{quiet}"
        );
        // The alert went out before the carrier's own verdict reached the merchant.
        let pos = |pred: &dyn Fn(&serde_json::Value) -> bool| {
            docs.iter()
                .position(|d| d["number"] == pc.id.number.as_str() && pred(d))
        };
        let alert_pos = pos(&|d| d["event"] == "shipment.stalled").unwrap();
        let verdict_pos = pos(&|d| d["sub_status"] == "kdniao:403").expect("403 reached us");
        assert!(alert_pos < verdict_pos);
        // It moved again and was delivered: lines after the verdict, recorded.
        assert!(resumes(&pc.journey));
        assert_eq!(shipments[&pc.id].status, Status::Delivered);
    }
    assert_eq!(alerts.len(), 2, "no alert for anyone else: {alerts:?}");

    // The flag tells the buyer nothing (the apology is off): exactly the SMS the journey's
    // statuses deserve, read back from the local SNS.
    let sms = p.sent_sms().await.unwrap();
    for pc in &parcels {
        let got = sms
            .iter()
            .filter(|m| m.phone_number == pc.phone.expose())
            .count();
        assert_eq!(
            got,
            expected_sms(pc, now),
            "{} ({:?})",
            pc.id,
            pc.journey.kind
        );
    }
}
