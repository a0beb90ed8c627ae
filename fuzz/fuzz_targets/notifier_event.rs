//! notifier: DynamoDB stream event JSON → records → old/new images decoded → the real batch
//! handler over an in-memory ledger and a publisher that always succeeds.
#![no_main]

use aws_lambda_events::event::dynamodb::Event;
use libfuzzer_sys::fuzz_target;
use notifier::{handle_batch, Notifier};
use parcelwatch::config::NotifierConfig;
use parcelwatch::store::MemoryStore;
use parcelwatch_fuzz::fakes::OkPublisher;
use parcelwatch_fuzz::{block_on, now};
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    let Ok(event) = serde_json::from_slice::<Event>(data) else {
        return;
    };
    let sequences: Vec<String> = event
        .records
        .iter()
        .map(|r| r.change.sequence_number.clone().unwrap_or_default())
        .collect();
    let n = Notifier {
        ledger: MemoryStore::new(4),
        publisher: OkPublisher,
        cfg: NotifierConfig {
            merchant_topic_arn: Some("arn:aws:sns:us-east-1:123456789012:merchant".into()),
            sms_sender_id: None,
            max_attempts: 2,
            base_backoff: Duration::from_millis(1),
            // On: the apology path is fuzzed too.
            stall_apology: true,
        },
        vault: parcelwatch::crypto::Vault::ephemeral(),
    };
    let response = block_on(handle_batch(&n, event, now()));
    // Records of a shard are retried from the first failure on: at most one is reported.
    assert!(response.batch_item_failures.len() <= 1);
    for failure in &response.batch_item_failures {
        let seq = failure.item_identifier.clone().unwrap_or_default();
        assert!(sequences.contains(&seq), "failure for an unknown record");
    }
});
