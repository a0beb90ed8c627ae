//! tracker: SQS event JSON → each message's body parsed as a track message → the real batch
//! handler over an in-memory store (two sample waybills registered) and a fixed provider.
#![no_main]

use aws_lambda_events::event::sqs::SqsEvent;
use libfuzzer_sys::fuzz_target;
use parcelwatch::domain::TrackingNumber;
use parcelwatch::queue::TrackMessage;
use parcelwatch_fuzz::fakes::{seeded_store, CountingDlq, FixedProvider};
use parcelwatch_fuzz::{block_on, now, text};
use tracker::handler::NoPush;
use tracker::{handle_batch, Tracker};

fuzz_target!(|data: &[u8]| {
    let input = text(data);
    // The bytes as a message body on their own.
    if let Ok((_, id)) = TrackMessage::parse(&input) {
        // Normalization is idempotent: the parsed number parses to itself.
        assert_eq!(
            TrackingNumber::parse(id.number.as_str()).as_ref(),
            Ok(&id.number)
        );
    }
    let Ok(event) = serde_json::from_slice::<SqsEvent>(data) else {
        return;
    };
    let ids: Vec<String> = event
        .records
        .iter()
        .map(|m| m.message_id.clone().unwrap_or_default())
        .collect();
    let tracker: Tracker<_, _, _, NoPush> = Tracker {
        store: seeded_store(now()),
        provider: FixedProvider(now()),
        dead_letters: CountingDlq::default(),
        concurrency: 4,
        subscriber: None,
        ctx: parcelwatch::domain::CheckContext::standalone(),
    };
    let response = block_on(handle_batch(&tracker, event, now()));
    for failure in &response.batch_item_failures {
        assert!(
            ids.contains(&failure.item_identifier),
            "failure for an unknown message"
        );
    }
});
