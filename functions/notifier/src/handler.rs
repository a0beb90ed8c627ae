//! Stream batch → transitions → ledger-guarded sends.

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use chrono::{DateTime, Utc};
use parcelwatch::config::NotifierConfig;
use parcelwatch::crypto::{Vault, VaultError};
use parcelwatch::domain::stall::{self, FlagKind};
use parcelwatch::domain::templates::{render, render_apology};
use parcelwatch::domain::{fmt_time, Shipment, Status, Transition};
use parcelwatch::notify::{PublishError, Publisher};
use parcelwatch::resilience::{retry, RetryPolicy};
use parcelwatch::store::{note_sk, Claim, Ledger, StoreError};
use serde::Serialize;
use std::time::Duration;

/// A claim older than this that never completed belongs to a sender that died: claim it again.
const STALE_CLAIM: Duration = Duration::from_secs(300);
/// One channel's sends, retries included, start within this (the function's timeout is 30 s).
const SEND_BUDGET: Duration = Duration::from_secs(10);
/// Recording a sent message in the ledger: a few quick tries (the ledger condition is only ever
/// lost to a stale re-claim, which a retry cannot fix: that is not retried).
const LEDGER_POLICY: RetryPolicy = RetryPolicy {
    max_attempts: 4,
    base: Duration::from_millis(50),
    max_delay: Duration::from_millis(800),
    max_total: Duration::from_secs(3),
};

pub struct Notifier<L, P> {
    pub ledger: L,
    pub publisher: P,
    pub cfg: NotifierConfig,
    /// Opens the recipients' sealed phones (one KMS Decrypt per data key, cached).
    pub vault: Vault,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("stream image does not decode: {0}")]
    BadImage(String),
    #[error("ledger: {0}")]
    Ledger(#[from] StoreError),
    #[error("{channel} send failed after {attempts} attempts: {source}")]
    Publish {
        channel: &'static str,
        attempts: u32,
        source: PublishError,
    },
    #[error("{0} is being sent by another invocation")]
    InFlight(String),
    #[error("recipient phone: {0}")]
    Phone(#[from] VaultError),
}

/// The merchant-topic document for one transition.
#[derive(Debug, Serialize)]
struct MerchantEvent<'a> {
    event: &'static str,
    carrier: &'a str,
    number: &'a str,
    from: Status,
    to: Status,
    sub_status: Option<String>,
    order_ref: Option<&'a str>,
    at: String,
    last_event: Option<&'a str>,
    version: u64,
}

/// The merchant-topic document for a parcel we flagged stalled or late: what a merchant needs to
/// act before the buyer asks (chase the carrier, reassure the buyer). Sent instead of the
/// `shipment.status_changed` document for the transition that raises it, once (the ledger).
#[derive(Debug, Serialize)]
struct MerchantAlert<'a> {
    /// `shipment.stalled` or `shipment.late`.
    event: &'static str,
    carrier: &'a str,
    number: &'a str,
    /// The stage the parcel is stuck at (its canonical status).
    stage: Status,
    /// Minutes without a new trace line when the flag was raised.
    quiet_for_minutes: i64,
    /// The threshold it crossed (stalled: quiet time; late: time since pickup), in minutes.
    threshold_minutes: Option<i64>,
    /// Late only: the route's 90th-percentile pickup-to-delivery time, in minutes.
    p90_minutes: Option<i64>,
    /// `fallback` (the stage's fixed threshold) or `n{samples}` (learned from that many).
    basis: Option<String>,
    order_ref: Option<&'a str>,
    /// The buyer's phone as the merchant may see it: its last four digits only.
    buyer_phone_last4: Option<&'a str>,
    last_event_at: Option<String>,
    last_event: Option<&'a str>,
    at: String,
    version: u64,
}

pub async fn handle_batch<L: Ledger, P: Publisher>(
    n: &Notifier<L, P>,
    event: Event,
    now: DateTime<Utc>,
) -> DynamoDbEventResponse {
    // Records of a shard are retried from the first failure on, in order; the ledger makes the
    // redelivery of the records before it harmless.
    parcelwatch::store::record::each_in_order(&event, |record| {
        Box::pin(handle_record(n, record, now))
    })
    .await
}

fn decode(image: &serde_dynamo::Item) -> Result<Option<Shipment>, RecordError> {
    parcelwatch::store::record::shipment_in_image(image).map_err(RecordError::BadImage)
}

/// A shipment head (`pk = SHIP#…`, `sk = META`). Order heads and sync watermarks share
/// `sk = META` in the same table and are not the notifier's business.
fn is_meta(record: &EventRecord) -> bool {
    parcelwatch::store::record::is_shipment_head(&record.change.keys)
}

async fn handle_record<L: Ledger, P: Publisher>(
    n: &Notifier<L, P>,
    record: &EventRecord,
    now: DateTime<Utc>,
) -> Result<(), RecordError> {
    if record.event_name == "REMOVE" || !is_meta(record) {
        return Ok(());
    }
    let Some(new) = decode(&record.change.new_image)? else {
        return Ok(());
    };
    let old = decode(&record.change.old_image)?;
    let (old_status, old_sub) = match &old {
        Some(o) => (o.status, o.sub_status.as_ref()),
        None => (Status::Pending, None),
    };
    let Some(transition) =
        Transition::between((old_status, old_sub), (new.status, new.sub_status.as_ref()))
    else {
        return Ok(());
    };
    tracing::info!(shipment = %new.id, transition = %transition.key(), "transition");
    // A stall or delay we flagged: the merchant is alerted; the buyer hears nothing (render has no
    // message for a sub-status of ours) unless the apology is turned on.
    let alert = stall::alert_for(&transition);
    // When the change was seen: the check that found it. `status_changed_at` is the stage
    // clock, which a sub-status change (a flag, a locker reminder) does not move.
    let seen_at = new.checked_at.unwrap_or(new.status_changed_at);

    if let Some(sealed) = &new.recipient.phone {
        if let Some(msg) = render(&new, &transition, new.recipient.locale) {
            // Opened only to be sent: the clear number lives for this send and is never logged.
            let phone = n.vault.open(sealed).await?;
            let note = note_sk(&transition.key(), new.version, "sms");
            send_once(n, &new, &note, "sms", now, || {
                n.publisher.sms(&phone, &msg.body)
            })
            .await?;
        }
        if let Some(flag) = alert.filter(|_| n.cfg.stall_apology) {
            let msg = render_apology(&new, flag.kind, new.recipient.locale);
            let phone = n.vault.open(sealed).await?;
            let note = note_sk(&transition.key(), new.version, "apology");
            send_once(n, &new, &note, "apology", now, || {
                n.publisher.sms(&phone, &msg.body)
            })
            .await?;
        }
    }
    if let (Some(topic), Some(flag)) = (&n.cfg.merchant_topic_arn, alert) {
        let (event, word) = match flag.kind {
            FlagKind::Stalled => ("shipment.stalled", "stalled"),
            FlagKind::Late => ("shipment.late", "late"),
        };
        let doc = MerchantAlert {
            event,
            carrier: new.id.carrier.as_str(),
            number: new.id.number.as_str(),
            stage: new.status,
            quiet_for_minutes: (seen_at - stall::quiet_since(&new)).num_minutes(),
            threshold_minutes: flag.threshold.map(|d| d.num_minutes()),
            p90_minutes: flag.p90.map(|d| d.num_minutes()),
            basis: flag.basis.map(|b| b.code()),
            order_ref: new.order_ref.as_deref(),
            buyer_phone_last4: new.recipient.phone.as_ref().map(|p| p.last4()),
            last_event_at: new.last_event.as_ref().map(|(k, _)| fmt_time(k.time)),
            last_event: new.last_event.as_ref().map(|(_, e)| e.description.as_str()),
            at: fmt_time(seen_at),
            version: new.version,
        };
        let json = serde_json::to_string(&doc).map_err(|e| RecordError::BadImage(e.to_string()))?;
        let subject = format!("{} {word} at {}", new.id, new.status);
        let note = note_sk(&transition.key(), new.version, "merchant");
        tracing::info!(alert = event, stage = %new.status, quiet_for_minutes = doc.quiet_for_minutes,
            threshold_minutes = ?doc.threshold_minutes, basis = ?doc.basis, "merchant alert");
        send_once(n, &new, &note, "merchant", now, || {
            n.publisher.topic(topic, &subject, &json)
        })
        .await?;
    } else if let Some(topic) = &n.cfg.merchant_topic_arn {
        let doc = MerchantEvent {
            event: "shipment.status_changed",
            carrier: new.id.carrier.as_str(),
            number: new.id.number.as_str(),
            from: transition.from,
            to: transition.to,
            sub_status: transition.to_sub.as_ref().map(|s| s.to_string()),
            order_ref: new.order_ref.as_deref(),
            at: fmt_time(seen_at),
            last_event: new.last_event.as_ref().map(|(_, e)| e.description.as_str()),
            version: new.version,
        };
        let json = serde_json::to_string(&doc).map_err(|e| RecordError::BadImage(e.to_string()))?;
        let subject = format!("{} {}", new.id, transition.to);
        let note = note_sk(&transition.key(), new.version, "merchant");
        send_once(n, &new, &note, "merchant", now, || {
            n.publisher.topic(topic, &subject, &json)
        })
        .await?;
    }
    Ok(())
}

/// Claim the ledger entry, send with retries, then record the outcome.
async fn send_once<L, P, F, Fut>(
    n: &Notifier<L, P>,
    shipment: &Shipment,
    note: &str,
    channel: &'static str,
    now: DateTime<Utc>,
    send: F,
) -> Result<(), RecordError>
where
    L: Ledger,
    P: Publisher,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<String, PublishError>>,
{
    match n.ledger.claim(&shipment.id, note, now, STALE_CLAIM).await? {
        Claim::AlreadySent => {
            tracing::info!(channel, note, "already sent; skipped");
            return Ok(());
        }
        Claim::InFlight => return Err(RecordError::InFlight(note.to_string())),
        Claim::Claimed => {}
    }
    let policy = send_policy(&n.cfg);
    let attempts = std::sync::atomic::AtomicU32::new(0);
    let sent = retry(&policy, PublishError::is_retryable, || {
        let attempt = attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let send = &send;
        async move {
            let out = send().await;
            if let Err(e) = &out {
                tracing::warn!(channel, error = %e, attempt, retryable = e.is_retryable(), "send failed");
            }
            out
        }
    })
    .await;
    let attempts = attempts.into_inner();
    let source = match sent {
        Ok(message_id) => {
            // SNS has the message: from here a lost ledger write is the one way to a duplicate
            // (the claim goes stale and a redelivery sends again), so the write is retried.
            let transient = |e: &StoreError| matches!(e, StoreError::Retryable(_));
            let recorded = retry(&LEDGER_POLICY, transient, || {
                n.ledger.complete(&shipment.id, note, &message_id, now)
            })
            .await;
            if let Err(e) = recorded {
                tracing::error!(channel, note, %message_id, error = %e,
                    "sent, but the ledger write failed; a redelivery after the stale-claim time may send it again");
                parcelwatch::metrics::count("LedgerCompleteFailed", &[("Channel", channel)]);
                return Err(e.into());
            }
            tracing::info!(channel, note, %message_id, attempts, to = ?shipment.recipient.phone, "notification sent");
            return Ok(());
        }
        Err(e) => e,
    };
    // Free the claim so a redelivery may send it; if this write fails the claim goes stale and is
    // re-claimable after STALE_CLAIM anyway.
    if let Err(e) = n
        .ledger
        .release(&shipment.id, note, &source.to_string())
        .await
    {
        tracing::warn!(error = %e, note, "could not release the claim");
    }
    Err(RecordError::Publish {
        channel,
        attempts,
        source,
    })
}

/// The send retries: `max_attempts` in all, waits with full jitter from `base_backoff` doubling
/// up to 64 × `base_backoff`, and none starting later than [`SEND_BUDGET`] after the first.
fn send_policy(cfg: &NotifierConfig) -> RetryPolicy {
    RetryPolicy {
        max_attempts: cfg.max_attempts.max(1),
        base: cfg.base_backoff,
        max_delay: cfg.base_backoff.saturating_mul(64),
        max_total: SEND_BUDGET,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use parcelwatch::domain::{PhoneNumber, SealedPhone};
    use parcelwatch::store::MemoryStore;
    use std::sync::{Mutex, OnceLock};

    /// The sealed phone the sample events carry: a stand-in the tests replace by the buyer's
    /// number sealed with the test vault.
    const SAMPLE_SEALED: &str = parcelwatch::crypto::SAMPLE_EVENT_PHONE;

    /// One vault for the tests, and +8613812345678 sealed with it.
    fn test_vault() -> &'static (Vault, SealedPhone) {
        static V: OnceLock<(Vault, SealedPhone)> = OnceLock::new();
        V.get_or_init(|| {
            let vault = Vault::ephemeral();
            let phone = PhoneNumber::parse("+8613812345678").unwrap();
            let sealed = futures::executor::block_on(vault.seal(&phone)).unwrap();
            (vault, sealed)
        })
    }

    /// Records sends; fails the first `fail_first` calls with the given error kind.
    #[derive(Default)]
    struct FakeSns {
        sms: Mutex<Vec<(String, String)>>,
        topic: Mutex<Vec<String>>,
        fail_first: Mutex<u32>,
        permanent: bool,
    }
    impl Publisher for FakeSns {
        async fn sms(&self, to: &PhoneNumber, text: &str) -> Result<String, PublishError> {
            {
                let mut f = self.fail_first.lock().unwrap();
                if *f > 0 {
                    *f -= 1;
                    return Err(if self.permanent {
                        PublishError::Permanent("InvalidParameter".into())
                    } else {
                        PublishError::Retryable("Throttling".into())
                    });
                }
            }
            let mut s = self.sms.lock().unwrap();
            s.push((to.expose().to_string(), text.to_string()));
            Ok(format!("sms-{}", s.len()))
        }
        async fn topic(
            &self,
            _arn: &str,
            _subject: &str,
            json: &str,
        ) -> Result<String, PublishError> {
            let mut t = self.topic.lock().unwrap();
            t.push(json.to_string());
            Ok(format!("topic-{}", t.len()))
        }
    }

    fn notifier(topic: bool) -> Notifier<MemoryStore, FakeSns> {
        Notifier {
            ledger: MemoryStore::new(4),
            publisher: FakeSns::default(),
            vault: test_vault().0.clone(),
            cfg: NotifierConfig {
                merchant_topic_arn: topic
                    .then(|| "arn:aws:sns:us-east-1:123456789012:merchant".to_string()),
                sms_sender_id: None,
                max_attempts: 3,
                base_backoff: Duration::from_millis(1),
                stall_apology: false,
            },
        }
    }
    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 8, 0, 5).unwrap()
    }
    fn event(json: &str) -> Event {
        assert!(json.contains(SAMPLE_SEALED));
        serde_json::from_str(&json.replace(SAMPLE_SEALED, test_vault().1.as_str())).unwrap()
    }

    #[tokio::test]
    async fn a_transition_sends_one_sms_and_one_merchant_event() {
        let n = notifier(true);
        let resp = handle_batch(
            &n,
            event(include_str!("../../../events/notifier/transition.json")),
            now(),
        )
        .await;
        assert!(resp.batch_item_failures.is_empty());
        let sms = n.publisher.sms.lock().unwrap().clone();
        assert_eq!(sms.len(), 1);
        assert_eq!(sms[0].0, "+8613812345678");
        assert!(
            sms[0].1.contains("派件") || sms[0].1.contains("派送"),
            "{}",
            sms[0].1
        );
        let topic = n.publisher.topic.lock().unwrap().clone();
        assert_eq!(topic.len(), 1);
        let doc: serde_json::Value = serde_json::from_str(&topic[0]).unwrap();
        assert_eq!(doc["from"], "InTransit");
        assert_eq!(doc["to"], "OutForDelivery");
        assert_eq!(doc["sub_status"], "kdniao:202");
        assert_eq!(doc["order_ref"], "TB-2026112400001");
    }

    #[tokio::test]
    async fn a_redelivered_record_is_not_sent_twice() {
        let n = notifier(true);
        let ev = include_str!("../../../events/notifier/transition.json");
        handle_batch(&n, event(ev), now()).await;
        let resp = handle_batch(&n, event(ev), now()).await;
        assert!(resp.batch_item_failures.is_empty());
        assert_eq!(n.publisher.sms.lock().unwrap().len(), 1);
        assert_eq!(n.publisher.topic.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_stall_raises_one_merchant_alert_and_no_buyer_sms() {
        let n = notifier(true);
        let ev = include_str!("../../../events/notifier/stalled.json");
        let resp = handle_batch(&n, event(ev), now()).await;
        assert!(resp.batch_item_failures.is_empty());
        // Redelivered: the ledger holds it.
        handle_batch(&n, event(ev), now()).await;
        assert!(
            n.publisher.sms.lock().unwrap().is_empty(),
            "no buyer SMS for our own flag (apology off)"
        );
        let topic = n.publisher.topic.lock().unwrap().clone();
        assert_eq!(topic.len(), 1, "{topic:?}");
        let doc: serde_json::Value = serde_json::from_str(&topic[0]).unwrap();
        assert_eq!(doc["event"], "shipment.stalled");
        assert_eq!(doc["carrier"], "YTO");
        assert_eq!(doc["number"], "YT1000000000001");
        assert_eq!(doc["stage"], "InTransit");
        assert_eq!(doc["quiet_for_minutes"], 1200);
        assert_eq!(doc["threshold_minutes"], 1200);
        assert_eq!(doc["basis"], "fallback");
        assert_eq!(doc["p90_minutes"], serde_json::Value::Null);
        assert_eq!(doc["order_ref"], "TB-2026112400001");
        assert_eq!(doc["buyer_phone_last4"], "5678");
        assert_eq!(doc["last_event_at"], "2026-11-23T11:40:00Z");
        assert_eq!(doc["at"], "2026-11-24T07:40:00Z");
        assert!(!topic[0].contains("13812345678"));
    }

    #[tokio::test]
    async fn the_buyer_apology_is_sent_once_when_turned_on() {
        let mut n = notifier(true);
        n.cfg.stall_apology = true;
        let ev = include_str!("../../../events/notifier/stalled.json");
        handle_batch(&n, event(ev), now()).await;
        handle_batch(&n, event(ev), now()).await;
        let sms = n.publisher.sms.lock().unwrap().clone();
        assert_eq!(sms.len(), 1, "{sms:?}");
        assert_eq!(sms[0].0, "+8613812345678");
        assert!(sms[0].1.contains("物流暂未更新"), "{}", sms[0].1);
        assert!(sms[0].1.contains("抱歉"), "{}", sms[0].1);
        assert_eq!(n.publisher.topic.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_cleared_stall_is_a_plain_status_event_not_a_second_alert() {
        let n = notifier(true);
        // The stalled record reversed: flag → the provider's code (a new line came).
        let mut v: serde_json::Value =
            serde_json::from_str(include_str!("../../../events/notifier/stalled.json")).unwrap();
        let img = &mut v["Records"][0]["dynamodb"];
        let (old, new) = (img["OldImage"].clone(), img["NewImage"].clone());
        img["OldImage"] = new;
        img["NewImage"] = old;
        img["NewImage"]["version"] = serde_json::json!({"N": "9"});
        let resp = handle_batch(&n, event(&v.to_string()), now()).await;
        assert!(resp.batch_item_failures.is_empty());
        assert!(n.publisher.sms.lock().unwrap().is_empty());
        let topic = n.publisher.topic.lock().unwrap().clone();
        assert_eq!(topic.len(), 1);
        let doc: serde_json::Value = serde_json::from_str(&topic[0]).unwrap();
        assert_eq!(doc["event"], "shipment.status_changed");
        assert_eq!(doc["sub_status"], "kdniao:2");
    }

    #[tokio::test]
    async fn a_change_without_a_transition_sends_nothing() {
        let n = notifier(true);
        let resp = handle_batch(
            &n,
            event(include_str!("../../../events/notifier/no-transition.json")),
            now(),
        )
        .await;
        assert!(resp.batch_item_failures.is_empty());
        assert!(n.publisher.sms.lock().unwrap().is_empty());
        assert!(n.publisher.topic.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn in_a_mixed_batch_only_the_meta_transition_is_sent() {
        let n = notifier(false);
        let resp = handle_batch(
            &n,
            event(include_str!("../../../events/notifier/mixed-batch.json")),
            now(),
        )
        .await;
        assert!(resp.batch_item_failures.is_empty());
        assert_eq!(n.publisher.sms.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn throttling_is_retried_within_the_invocation() {
        let n = notifier(false);
        *n.publisher.fail_first.lock().unwrap() = 2;
        let resp = handle_batch(
            &n,
            event(include_str!("../../../events/notifier/transition.json")),
            now(),
        )
        .await;
        assert!(resp.batch_item_failures.is_empty());
        assert_eq!(n.publisher.sms.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn exhausted_retries_report_the_record_and_a_redelivery_sends_it_once() {
        let n = notifier(false);
        *n.publisher.fail_first.lock().unwrap() = 3;
        let ev = include_str!("../../../events/notifier/transition.json");
        let resp = handle_batch(&n, event(ev), now()).await;
        let failed: Vec<_> = resp
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        assert_eq!(failed, vec![Some("100000000000000000001".to_string())]);
        assert!(n.publisher.sms.lock().unwrap().is_empty());
        // The stream retries the record: the released claim is taken again and the SMS goes out once.
        let resp = handle_batch(&n, event(ev), now()).await;
        assert!(resp.batch_item_failures.is_empty());
        assert_eq!(n.publisher.sms.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_phone_that_does_not_open_fails_the_record_and_sends_nothing() {
        // Sealed under another key: the record fails (the stream retries, then the on-failure
        // queue), no SMS goes out, and the error names only the last four digits.
        let n = notifier(false);
        let other = Vault::ephemeral()
            .seal(&PhoneNumber::parse("+8613812345678").unwrap())
            .await
            .unwrap();
        let sample = include_str!("../../../events/notifier/transition.json");
        let good = event(sample);
        assert!(handle_record(&n, &good.records[0], now()).await.is_ok());
        let json = sample.replace(SAMPLE_SEALED, other.as_str());
        let foreign: Event = serde_json::from_str(&json).unwrap();
        let err = handle_record(&n, &foreign.records[0], now())
            .await
            .unwrap_err();
        assert!(
            matches!(err, RecordError::Phone(VaultError::Permanent(_))),
            "{err}"
        );
        assert!(err.to_string().contains("****5678"), "{err}");
        assert!(!err.to_string().contains("13812345678"), "{err}");
        let resp = handle_batch(&n, foreign, now()).await;
        assert_eq!(resp.batch_item_failures.len(), 1);
        assert_eq!(
            n.publisher.sms.lock().unwrap().len(),
            1,
            "only the good record's SMS"
        );
    }

    #[tokio::test]
    async fn a_permanent_rejection_is_not_retried_in_a_loop() {
        let n = Notifier {
            publisher: FakeSns {
                permanent: true,
                fail_first: Mutex::new(1),
                ..Default::default()
            },
            ..notifier(false)
        };
        let resp = handle_batch(
            &n,
            event(include_str!("../../../events/notifier/transition.json")),
            now(),
        )
        .await;
        assert_eq!(resp.batch_item_failures.len(), 1);
        assert!(
            n.publisher.sms.lock().unwrap().is_empty(),
            "one attempt only"
        );
        assert_eq!(*n.publisher.fail_first.lock().unwrap(), 0);
    }

    #[test]
    fn send_retries_follow_the_configured_attempts_and_back_off() {
        let p = send_policy(&NotifierConfig {
            max_attempts: 0,
            base_backoff: Duration::from_millis(200),
            ..notifier(false).cfg
        });
        assert_eq!(p.max_attempts, 1, "at least one attempt");
        assert_eq!(p.delay_cap(1), Duration::from_millis(200));
        assert_eq!(p.delay_cap(3), Duration::from_millis(800));
        assert_eq!(p.delay_cap(20), Duration::from_millis(12_800), "capped");
        assert_eq!(p.max_total, SEND_BUDGET);
    }

    /// A ledger whose first `fail_complete` completions fail transiently.
    struct FlakyLedger {
        inner: MemoryStore,
        fail_complete: Mutex<u32>,
    }
    impl Ledger for FlakyLedger {
        async fn claim(
            &self,
            id: &parcelwatch::domain::ShipmentId,
            note: &str,
            now: DateTime<Utc>,
            stale_after: Duration,
        ) -> Result<Claim, StoreError> {
            self.inner.claim(id, note, now, stale_after).await
        }
        async fn complete(
            &self,
            id: &parcelwatch::domain::ShipmentId,
            note: &str,
            message_id: &str,
            now: DateTime<Utc>,
        ) -> Result<(), StoreError> {
            {
                let mut f = self.fail_complete.lock().unwrap();
                if *f > 0 {
                    *f -= 1;
                    return Err(StoreError::Retryable(
                        "ProvisionedThroughputExceeded".into(),
                    ));
                }
            }
            self.inner.complete(id, note, message_id, now).await
        }
        async fn release(
            &self,
            id: &parcelwatch::domain::ShipmentId,
            note: &str,
            reason: &str,
        ) -> Result<(), StoreError> {
            self.inner.release(id, note, reason).await
        }
    }

    #[tokio::test]
    async fn a_ledger_write_that_fails_after_the_send_is_retried_so_a_redelivery_sends_nothing() {
        let base = notifier(false);
        let n = Notifier {
            ledger: FlakyLedger {
                inner: MemoryStore::new(4),
                fail_complete: Mutex::new(2),
            },
            publisher: base.publisher,
            cfg: base.cfg,
            vault: base.vault,
        };
        let ev = include_str!("../../../events/notifier/transition.json");
        let resp = handle_batch(&n, event(ev), now()).await;
        assert!(resp.batch_item_failures.is_empty());
        assert_eq!(*n.ledger.fail_complete.lock().unwrap(), 0, "retried");
        // The completion was recorded: the stream's redelivery finds it sent.
        let resp = handle_batch(&n, event(ev), now()).await;
        assert!(resp.batch_item_failures.is_empty());
        assert_eq!(n.publisher.sms.lock().unwrap().len(), 1, "sent once");
    }
}
