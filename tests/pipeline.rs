//! The whole product on the local stack: moto (real DynamoDB + Streams, SQS, SNS through the
//! real AWS SDK), the Kdniao sandbox over real HTTP with real signatures, and the three functions
//! driven with Lambda's event-source semantics. Assertions read what the local AWS recorded:
//! the SMS moto says it sent, the DLQ's messages, the table's items.

use chrono::Duration;
use parcelwatch::domain::Status;
use parcelwatch_local::pipeline::{expected_sms, Pipeline, PipelineOptions};
use parcelwatch_local::runner::stream::{StartingPosition, StreamSource};
use std::collections::HashMap;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_parcel_is_tracked_to_its_end_and_every_buyer_told_exactly_once() {
    let mut p = Pipeline::start(PipelineOptions {
        seed: 11,
        ..PipelineOptions::default()
    })
    .await
    .expect("local stack starts");
    let parcels = p
        .register_demo_parcels(21, Duration::hours(12))
        .await
        .expect("register");

    // A producer bug and a stale message: both must end in the DLQ with a reason, and nothing else.
    p.inject_tracking_message("{\"carrier\":\"YTO\",\"numb")
        .await
        .expect("inject");
    p.inject_tracking_message(
        r#"{"carrier":"ZTO","number":"789999999999999","due_at":"2026-11-24T00:00:00Z"}"#,
    )
    .await
    .expect("inject");

    p.run_until_settled(9).await.expect("run");
    let now = p.now();

    // 1. Every shipment reached the simulator's final status.
    let shipments: HashMap<_, _> = p
        .shipments()
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.id.clone(), s))
        .collect();
    assert_eq!(shipments.len(), parcels.len());
    for pc in &parcels {
        let truth = pc.journey.truth_statuses(now).last().map(|(_, s)| *s);
        let ours = &shipments[&pc.id];
        assert_eq!(
            Some(ours.status),
            truth,
            "{} ({:?} journey)",
            pc.id,
            pc.journey.kind
        );
        assert!(ours.status.is_terminal(), "{} still {}", pc.id, ours.status);
        assert_eq!(ours.next_check_at, None, "{} left the due index", pc.id);
        let lines = pc.journey.visible_at(now).traces.len();
        assert_eq!(
            ours.event_count as usize, lines,
            "{}: every trace line recorded once",
            pc.id
        );
        assert_eq!(
            p.event_items(&pc.id).await.unwrap(),
            lines,
            "{}: trace items in the table",
            pc.id
        );
    }

    // 2. Exactly one SMS per notifiable transition, read back from the local SNS.
    let sms = p.sent_sms().await.unwrap();
    let mut by_phone: HashMap<&str, Vec<&str>> = HashMap::new();
    for m in &sms {
        by_phone
            .entry(m.phone_number.as_str())
            .or_default()
            .push(m.message.as_str());
    }
    let mut expected_total = 0;
    for pc in &parcels {
        let expected = expected_sms(pc, now);
        expected_total += expected;
        let got = by_phone.get(pc.phone.expose()).map(Vec::len).unwrap_or(0);
        assert_eq!(
            got,
            expected,
            "{} ({:?}): SMS {:?}",
            pc.id,
            pc.journey.kind,
            by_phone.get(pc.phone.expose())
        );
    }
    assert_eq!(sms.len(), expected_total, "no SMS to anyone else");
    // Every SMS the local SNS holds is accounted for by exactly one ledger entry (message id).
    let ledger = p.sms_ledger().await.unwrap();
    assert_eq!(ledger.len(), sms.len(), "one ledger entry per SMS sent");
    for m in &sms {
        assert!(
            ledger.contains_key(&m.message_id),
            "SMS {} has no ledger entry",
            m.message_id
        );
    }
    let delivered_told = ledger.values().filter(|s| **s == Status::Delivered).count();
    let delivered = shipments
        .values()
        .filter(|s| s.status == Status::Delivered)
        .count();
    assert_eq!(
        delivered_told, delivered,
        "every delivered buyer was told once"
    );
    assert!(
        expected_total >= parcels.len() * 4,
        "at least picked up, shipped, arrived, delivered-ish"
    );

    // 3. The two bad messages, and only they, are in the DLQ with a reason; nothing reached the
    //    notifier's on-failure queue.
    let dlq = p.peek_queue(&p.stack.tracking_dlq_url).await.unwrap();
    assert_eq!(dlq.len(), 2, "{dlq:?}");
    assert!(dlq.iter().any(|(b, r)| b.contains("numb")
        && r.as_deref()
            .is_some_and(|r| r.contains("not a track message"))));
    assert!(dlq.iter().any(|(b, r)| b.contains("789999999999999")
        && r.as_deref().is_some_and(|r| r.contains("not registered"))));
    assert!(p
        .peek_queue(&p.stack.notify_failure_queue_url)
        .await
        .unwrap()
        .is_empty());

    // 4. The stream delivered again from its start (a new mapping, a replay): no SMS goes out twice.
    let mut replay = StreamSource::new(
        &p.stack.table_stream_arn,
        "arn:aws:lambda:us-east-1:123456789012:function:replay",
        StartingPosition::TrimHorizon,
    )
    .unwrap()
    .with_batch_size(100);
    let notifier = &p.notifier;
    let at = p.now();
    let replayed = replay
        .drain(
            &p.streams,
            &p.sqs,
            |event| async move { Ok(notifier::handle_batch(notifier, event, at).await) },
            10_000,
        )
        .await
        .unwrap();
    assert!(
        replayed.totals.delivered > parcels.len() * 10,
        "the replay re-read the history"
    );
    assert_eq!(
        p.sent_sms().await.unwrap().len(),
        sms.len(),
        "replay sent nothing new"
    );
}
