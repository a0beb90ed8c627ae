//! One SQS batch: each message parsed and processed on its own, provider calls bounded.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use chrono::{DateTime, Utc};
use futures::{stream, StreamExt};
use parcelwatch::domain::{CheckContext, Observation, Shipment, ShipmentId};
use parcelwatch::providers::failover::{shop_of, NONE_ASKED};
use parcelwatch::providers::push::{Subscribed, Subscriber};
use parcelwatch::providers::{ProviderError, RouteContext, TraceProvider, TraceQuery};
use parcelwatch::queue::{DeadLetters, TrackMessage};
use parcelwatch::store::{ShipmentStore, StoreError};
use parcelwatch::tracking::{apply, Applied, ApplyError};
use tracing::Instrument;

/// A stated wait at least this long reschedules the check; a shorter one is left to the queue's
/// visibility timeout (the message comes back in 3 minutes anyway) — unless no provider was asked
/// at all (circuit open, out of rate-limit tokens): that check is rescheduled whatever the wait,
/// so that our own guards never walk a message to the DLQ.
const DEFER_AT_LEAST: std::time::Duration = std::time::Duration::from_secs(120);

/// When no provider could be asked only because a token or a circuit is this close, the check
/// waits for it in the invocation (at most [`SHORT_WAIT_ROUNDS`] times) instead of being put
/// off: putting it off costs a write of the shipment and a later read, more than the wait.
const SHORT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
const SHORT_WAIT_ROUNDS: usize = 2;

pub struct Tracker<S, P, D, B = NoPush> {
    pub store: S,
    pub provider: P,
    pub dead_letters: D,
    pub concurrency: usize,
    /// Push mode: shipments of this provider are subscribed on their first check instead of
    /// polled, and then polled only as a safety net. `None`: poll everything.
    pub subscriber: Option<B>,
    /// What every decision is taken under (schedule policy, the carriers' history, the
    /// providers' rules): the same context the api's push routes use.
    pub ctx: CheckContext,
}

/// The subscriber of a tracker that only polls. Never called: its `Tracker::subscriber` is `None`.
pub struct NoPush;

impl Subscriber for NoPush {
    fn name(&self) -> &'static str {
        "none"
    }
    async fn subscribe(&self, _q: &TraceQuery) -> Result<Subscribed, ProviderError> {
        Err(ProviderError::Permanent {
            provider: "none",
            reason: "push mode is off".into(),
        })
    }
}

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Processed {
    Checked {
        transition: Option<String>,
        new_events: usize,
    },
    /// Subscribed for pushes (no trace query): the provider will push, we poll only as a safety net.
    Subscribed { already: bool },
    /// Every provider asked us to wait (quota, throttling, re-query floor): the next check was
    /// moved out accordingly.
    Deferred,
    /// Tracking already stopped (terminal status): nothing to do.
    AlreadyFinal,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Hand the message back to the queue (visibility timeout, then redelivery; DLQ after maxReceiveCount).
    #[error("retryable: {0}")]
    Retryable(String),
    /// Will never succeed: goes to the DLQ now, with this reason.
    #[error("permanent: {0}")]
    Permanent(String),
}

impl From<StoreError> for RecordError {
    fn from(e: StoreError) -> Self {
        if e.is_retryable() {
            RecordError::Retryable(e.to_string())
        } else {
            RecordError::Permanent(e.to_string())
        }
    }
}

impl From<ApplyError> for RecordError {
    fn from(e: ApplyError) -> Self {
        if e.is_retryable() {
            RecordError::Retryable(e.to_string())
        } else {
            RecordError::Permanent(e.to_string())
        }
    }
}

/// One SQS batch: every shipment of the batch read at once (one `BatchGetItem`), then each
/// message checked on its own, at most `concurrency` provider calls in flight. Only the
/// messages that must come back are reported.
pub async fn handle_batch<S, P, D, B>(
    t: &Tracker<S, P, D, B>,
    event: SqsEvent,
    now: DateTime<Utc>,
) -> SqsBatchResponse
where
    S: ShipmentStore,
    P: TraceProvider,
    D: DeadLetters,
    B: Subscriber,
{
    let parsed: Vec<(SqsMessage, Result<ShipmentId, String>)> = event
        .records
        .into_iter()
        .map(|msg| {
            let id = TrackMessage::parse(msg.body.as_deref().unwrap_or("")).map(|(_, id)| id);
            (msg, id)
        })
        .collect();
    let mut ids: Vec<ShipmentId> = parsed
        .iter()
        .filter_map(|(_, id)| id.as_ref().ok().cloned())
        .collect();
    ids.sort();
    ids.dedup();
    // A failed batch read is not fatal: each check then reads its own shipment.
    let held = match t.store.get_many(&ids).await {
        Ok(found) => Some(found),
        Err(e) => {
            tracing::warn!(error = %e, "batch read failed; reading shipments one by one");
            None
        }
    };
    let results: Vec<Option<String>> = stream::iter(parsed)
        .map(|(msg, id)| {
            // A shipment named twice in one batch: the second check's copy is stale once the
            // first has written, loses its conditional write and is read afresh.
            let first_copy = match (&held, &id) {
                (Some(h), Ok(id)) => Some(h.get(id).cloned()),
                _ => None,
            };
            let span = tracing::info_span!(
                "message",
                message_id = msg.message_id.as_deref().unwrap_or("")
            );
            async move { handle_message(t, msg, id, first_copy, now).await }.instrument(span)
        })
        .buffer_unordered(t.concurrency.max(1))
        .collect()
        .await;
    let mut response = SqsBatchResponse::default();
    for failed in results.into_iter().flatten() {
        let mut f = BatchItemFailure::default();
        f.item_identifier = failed;
        response.batch_item_failures.push(f);
    }
    response
}

/// Returns the message id when the message must be reported as failed. `held`: the batch read's
/// answer for this shipment (`Some(None)`: not in the table), `None` when there was none.
async fn handle_message<S, P, D, B>(
    t: &Tracker<S, P, D, B>,
    msg: SqsMessage,
    id: Result<ShipmentId, String>,
    held: Option<Option<Shipment>>,
    now: DateTime<Utc>,
) -> Option<String>
where
    S: ShipmentStore,
    P: TraceProvider,
    D: DeadLetters,
    B: Subscriber,
{
    let message_id = msg.message_id.clone().unwrap_or_default();
    let body = msg.body.as_deref().unwrap_or("");
    let result = match id {
        Err(reason) => Err(RecordError::Permanent(reason)),
        Ok(id) => {
            process(t, &id, held, now)
                .instrument(tracing::info_span!("shipment", shipment = %id))
                .await
        }
    };
    match result {
        Ok(p) => {
            tracing::debug!(outcome = ?p, "message processed");
            None
        }
        Err(RecordError::Retryable(reason)) => {
            tracing::warn!(%reason, "check failed; message returns to the queue");
            Some(message_id)
        }
        Err(RecordError::Permanent(reason)) => {
            match t.dead_letters.dead_letter(body, &reason).await {
                Ok(()) => {
                    tracing::error!(%reason, "message sent to the dead-letter queue");
                    None
                }
                Err(e) => {
                    // Not lost: reported failed, the queue redelivers and its redrive policy ends it in the DLQ.
                    tracing::error!(%reason, error = %e, "dead-lettering failed; message returns to the queue");
                    Some(message_id)
                }
            }
        }
    }
}

/// Check one shipment: take it as read (or read it), ask the provider chain once (or subscribe
/// it for pushes), and write what [`decide`](parcelwatch::domain::decide) makes of the outcome
/// through the shared write path (conditional on the version, re-reading on a lost race).
pub async fn process<S, P, D, B>(
    t: &Tracker<S, P, D, B>,
    id: &ShipmentId,
    held: Option<Option<Shipment>>,
    now: DateTime<Utc>,
) -> Result<Processed, RecordError>
where
    S: ShipmentStore,
    P: TraceProvider,
    D: DeadLetters,
    B: Subscriber,
{
    let shipment = match held {
        Some(found) => found,
        None => t.store.get(id).await?,
    };
    let Some(shipment) = shipment else {
        return Err(RecordError::Permanent(format!(
            "shipment {id} is not registered"
        )));
    };
    if shipment.status.is_terminal() {
        parcelwatch::tracking::leave_the_due_index(&t.store, &shipment).await?;
        return Ok(Processed::AlreadyFinal);
    }
    let q = TraceQuery {
        id: id.clone(),
        phone: shipment.recipient.phone.as_ref().map(|p| p.suffix()),
        order_ref: shipment.order_ref.clone(),
    };
    if let Some(sub) = t
        .subscriber
        .as_ref()
        .filter(|b| !shipment.is_subscribed() && shipment.provider == b.name())
    {
        match sub.subscribe(&q).await {
            Ok(done) => {
                // A lost race re-runs the decision on the fresh copy; subscribing twice is harmless.
                apply(
                    &t.store,
                    id,
                    Some(shipment),
                    Observation::Subscribed,
                    &t.ctx,
                    now,
                )
                .await?;
                tracing::info!(
                    provider = sub.name(),
                    already = done.already_subscribed,
                    "subscribed for pushes; polling drops to the safety net"
                );
                return Ok(Processed::Subscribed {
                    already: done.already_subscribed,
                });
            }
            Err(ProviderError::Retryable { reason, .. }) => {
                return Err(RecordError::Retryable(format!("subscribe: {reason}")))
            }
            Err(e) => {
                // Tracking must not stop because push is unavailable: poll this shipment.
                tracing::warn!(error = %e, "subscription refused; polling instead");
            }
        }
    }
    let ctx = RouteContext {
        preferred: shipment.provider.clone(),
        shop: shop_of(shipment.order_ref.as_deref()),
        last_provider: shipment.last_provider.clone(),
        last_checked: shipment.checked_at,
        now,
    };
    let mut asked = t.provider.query_routed(&q, &ctx).await;
    for _ in 0..SHORT_WAIT_ROUNDS {
        match &asked {
            Err(ProviderError::Retryable {
                provider,
                retry_after: Some(wait),
                ..
            }) if *provider == NONE_ASKED && *wait <= SHORT_WAIT => {
                tokio::time::sleep(*wait).await;
                asked = t.provider.query_routed(&q, &ctx).await;
            }
            _ => break,
        }
    }
    let answer = match asked {
        Ok(a) => a,
        // The providers stated how long to wait (quota spent, throttled, Kuaidi100's 30-minute
        // rule): move the check out that far instead of cycling the message through the queue
        // until it lands in the DLQ.
        Err(ProviderError::Retryable {
            reason,
            retry_after: Some(wait),
            provider,
        }) if wait >= DEFER_AT_LEAST || provider == NONE_ASKED => {
            let until =
                now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::hours(12));
            let wait = Observation::Wait { until };
            // Someone else wrote meanwhile (a push, another check): their schedule stands.
            apply(&t.store, id, Some(shipment), wait, &t.ctx, now).await?;
            tracing::info!(%reason, until = %until, "check deferred: the providers asked to wait");
            return Ok(Processed::Deferred);
        }
        Err(ProviderError::Retryable { reason, .. }) => return Err(RecordError::Retryable(reason)),
        Err(ProviderError::Permanent { reason, provider }) => {
            let rejected = Observation::Rejected {
                provider,
                reason: &reason,
            };
            apply(&t.store, id, Some(shipment), rejected, &t.ctx, now).await?;
            return Err(RecordError::Permanent(format!(
                "{provider} rejected {id}: {reason}"
            )));
        }
    };
    let observed = Observation::poll(&answer.snapshot, answer.provider);
    match apply(&t.store, id, Some(shipment), observed, &t.ctx, now).await? {
        Applied::Written {
            transition,
            new_events,
            ..
        } => Ok(Processed::Checked {
            transition: transition.map(|tr| tr.key()),
            new_events,
        }),
        Applied::AlreadyFinal | Applied::Superseded => Ok(Processed::AlreadyFinal),
        Applied::NotRegistered => Err(RecordError::Permanent(format!(
            "shipment {id} is not registered"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use parcelwatch::domain::{CheckContext, StageHistory};
    use parcelwatch::domain::{
        Priority, Recipient, Shipment, Status, SubStatus, TraceEvent, TraceSnapshot,
    };
    use parcelwatch::queue::QueueError;
    use parcelwatch::store::MemoryStore;
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::sync::Mutex;

    /// A scripted answer: a snapshot, or an error `(retryable, reason)`.
    type Answer = Result<TraceSnapshot, (bool, String)>;

    /// Provider answers by waybill number; unknown numbers are a retryable outage.
    #[derive(Default)]
    struct ScriptedProvider {
        answers: Mutex<HashMap<String, Answer>>,
        calls: Mutex<usize>,
    }
    impl TraceProvider for ScriptedProvider {
        fn name(&self) -> &'static str {
            "kdniao"
        }
        async fn query(&self, q: &TraceQuery) -> Result<TraceSnapshot, ProviderError> {
            *self.calls.lock().unwrap() += 1;
            match self.answers.lock().unwrap().get(q.id.number.as_str()) {
                Some(Ok(s)) => Ok(s.clone()),
                Some(Err((true, r))) => Err(ProviderError::Retryable {
                    provider: "kdniao",
                    reason: r.clone(),
                    // A spent daily quota says how long to wait.
                    retry_after: r
                        .starts_with("quota")
                        .then(|| std::time::Duration::from_secs(8 * 3600)),
                }),
                Some(Err((false, r))) => Err(ProviderError::Permanent {
                    provider: "kdniao",
                    reason: r.clone(),
                }),
                None => Err(ProviderError::Retryable {
                    provider: "kdniao",
                    reason: "timeout".into(),
                    retry_after: None,
                }),
            }
        }
    }

    #[derive(Default)]
    struct Dlq(Mutex<Vec<(String, String)>>);
    impl DeadLetters for Dlq {
        async fn dead_letter(&self, body: &str, reason: &str) -> Result<(), QueueError> {
            self.0
                .lock()
                .unwrap()
                .push((body.to_string(), reason.to_string()));
            Ok(())
        }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 8, 0, 0).unwrap()
    }

    fn in_transit(lines: usize) -> TraceSnapshot {
        let events = (0..lines)
            .map(|i| TraceEvent {
                time: now() - chrono::Duration::hours(10 - i as i64),
                description: format!("快件已到达【转运中心{i}】"),
                location: Some("杭州市".into()),
                status: Some(Status::InTransit),
                raw_code: Some("2".into()),
                claimed_time: None,
            })
            .collect();
        TraceSnapshot {
            status: Status::InTransit,
            sub_status: Some(SubStatus::new("kdniao", "2")),
            events,
        }
    }

    fn tracker() -> Tracker<MemoryStore, ScriptedProvider, Dlq> {
        let store = MemoryStore::new(4);
        for (c, n) in [
            ("YTO", "YT1000000000001"),
            ("SF", "SF1000000000002"),
            ("ZTO", "780000000000003"),
        ] {
            let id = ShipmentId::parse(c, n).unwrap();
            store.insert(Shipment::register(
                id,
                Priority::Normal,
                "kdniao",
                Recipient::default(),
                None,
                now(),
            ));
        }
        let provider = ScriptedProvider::default();
        {
            let mut a = provider.answers.lock().unwrap();
            a.insert("YT1000000000001".into(), Ok(in_transit(3)));
            a.insert("SF1000000000002".into(), Ok(in_transit(1)));
            a.insert("780000000000003".into(), Ok(in_transit(2)));
        }
        Tracker {
            store,
            provider,
            dead_letters: Dlq::default(),
            concurrency: 4,
            subscriber: None,
            ctx: CheckContext::standalone(),
        }
    }

    fn event(json: &str) -> SqsEvent {
        serde_json::from_str(json).unwrap()
    }

    #[tokio::test]
    async fn a_clean_batch_checks_every_shipment_and_reports_no_failure() {
        let t = tracker();
        let resp = handle_batch(
            &t,
            event(include_str!("../../../events/tracker/batch.json")),
            now(),
        )
        .await;
        assert!(resp.batch_item_failures.is_empty());
        let id = ShipmentId::parse("YTO", "YT1000000000001").unwrap();
        let s = t.store.shipment(&id).unwrap();
        assert_eq!(s.status, Status::InTransit);
        assert_eq!(s.event_count, 3);
        assert_eq!(s.version, 1);
        assert_eq!(t.store.event_count(&id), 3);
        assert_eq!(s.next_check_at, Some(now() + chrono::Duration::hours(2)));
    }

    #[tokio::test]
    async fn a_redelivered_batch_changes_nothing_and_records_no_event_twice() {
        let t = tracker();
        let ev = include_str!("../../../events/tracker/batch.json");
        handle_batch(&t, event(ev), now()).await;
        let resp = handle_batch(&t, event(ev), now()).await;
        assert!(resp.batch_item_failures.is_empty());
        let id = ShipmentId::parse("YTO", "YT1000000000001").unwrap();
        let s = t.store.shipment(&id).unwrap();
        assert_eq!((s.status, s.event_count), (Status::InTransit, 3));
        assert_eq!(t.store.event_count(&id), 3);
    }

    #[tokio::test]
    async fn malformed_messages_go_to_the_dlq_with_a_reason_and_the_rest_succeed() {
        let t = tracker();
        let resp = handle_batch(
            &t,
            event(include_str!(
                "../../../events/tracker/batch-with-malformed.json"
            )),
            now(),
        )
        .await;
        assert!(
            resp.batch_item_failures.is_empty(),
            "dead-lettered messages are acknowledged"
        );
        let dlq = t.dead_letters.0.lock().unwrap().clone();
        assert_eq!(dlq.len(), 2);
        assert!(dlq
            .iter()
            .any(|(b, r)| b.contains("numb") && r.contains("not a track message")));
        assert!(dlq
            .iter()
            .any(|(b, r)| b.contains("??") && r.contains("tracking number")));
        for (c, n) in [("YTO", "YT1000000000001"), ("ZTO", "780000000000003")] {
            let s = t.store.shipment(&ShipmentId::parse(c, n).unwrap()).unwrap();
            assert_eq!(s.status, Status::InTransit, "{c} {n} still checked");
        }
    }

    #[tokio::test]
    async fn a_provider_outage_fails_only_that_message() {
        let t = tracker();
        t.provider
            .answers
            .lock()
            .unwrap()
            .insert("SF1000000000002".into(), Err((true, "HTTP 502".into())));
        let resp = handle_batch(
            &t,
            event(include_str!("../../../events/tracker/batch.json")),
            now(),
        )
        .await;
        let failed: Vec<_> = resp
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        assert_eq!(
            failed,
            vec!["0b1b7d6c-5a2e-4c1a-9a0e-000000000002".to_string()]
        );
        assert!(t.dead_letters.0.lock().unwrap().is_empty());
        let sf = t
            .store
            .shipment(&ShipmentId::parse("SF", "SF1000000000002").unwrap())
            .unwrap();
        assert_eq!(sf.status, Status::Pending);
    }

    #[tokio::test]
    async fn a_permanent_rejection_is_recorded_dead_lettered_and_rechecked_later() {
        let t = tracker();
        t.provider.answers.lock().unwrap().insert(
            "SF1000000000002".into(),
            Err((false, "运单号不存在".into())),
        );
        let resp = handle_batch(
            &t,
            event(include_str!("../../../events/tracker/batch.json")),
            now(),
        )
        .await;
        assert!(resp.batch_item_failures.is_empty());
        let dlq = t.dead_letters.0.lock().unwrap().clone();
        assert_eq!(dlq.len(), 1);
        assert!(dlq[0].1.contains("运单号不存在"));
        let sf = t
            .store
            .shipment(&ShipmentId::parse("SF", "SF1000000000002").unwrap())
            .unwrap();
        assert_eq!(sf.last_error.as_deref(), Some("kdniao: 运单号不存在"));
        assert_eq!(sf.next_check_at, Some(now() + chrono::Duration::hours(6)));
    }

    #[tokio::test]
    async fn a_waybill_rejected_past_the_expiry_window_expires() {
        let t = tracker();
        let id = ShipmentId::parse("SF", "SF1000000000002").unwrap();
        let mut s = t.store.shipment(&id).unwrap();
        // Registered 8 days ago and never had a line: past the 7-day no-info window.
        s.created_at = now() - chrono::Duration::days(8);
        s.last_event = None;
        t.store.insert(s);
        t.provider.answers.lock().unwrap().insert(
            "SF1000000000002".into(),
            Err((false, "运单号不存在".into())),
        );
        let resp = handle_batch(
            &t,
            event(include_str!("../../../events/tracker/batch.json")),
            now(),
        )
        .await;
        assert!(resp.batch_item_failures.is_empty());
        let sf = t.store.shipment(&id).unwrap();
        assert_eq!(sf.status, Status::Expired);
        assert_eq!(sf.next_check_at, None);
        assert_eq!(sf.last_error.as_deref(), Some("kdniao: 运单号不存在"));
        // Still dead-lettered with its reason, like any rejection.
        assert_eq!(t.dead_letters.0.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_delivered_shipment_is_not_queried_again() {
        let t = tracker();
        let id = ShipmentId::parse("YTO", "YT1000000000001").unwrap();
        let mut s = t.store.shipment(&id).unwrap();
        s.status = Status::Delivered;
        s.next_check_at = None;
        t.store.insert(s);
        let before = *t.provider.calls.lock().unwrap();
        assert_eq!(
            process(&t, &id, None, now()).await.unwrap(),
            Processed::AlreadyFinal
        );
        assert_eq!(*t.provider.calls.lock().unwrap(), before);
    }

    /// A final shipment whose SCHED item is still due (a write decided before it became final
    /// put it after the final one): not queried, taken out of the due index.
    #[tokio::test]
    async fn a_final_shipment_still_due_leaves_the_index_unqueried() {
        let t = tracker();
        let id = ShipmentId::parse("YTO", "YT1000000000001").unwrap();
        let mut s = t.store.shipment(&id).unwrap();
        s.status = Status::Delivered;
        s.sched_version = 3;
        t.store.insert(s);
        let before = *t.provider.calls.lock().unwrap();
        assert_eq!(
            process(&t, &id, None, now()).await.unwrap(),
            Processed::AlreadyFinal
        );
        assert_eq!(*t.provider.calls.lock().unwrap(), before);
        let s = t.store.shipment(&id).unwrap();
        assert_eq!((s.next_check_at, s.sched_version), (None, 4));
        assert_eq!(s.status, Status::Delivered);
    }

    /// A carrier history in which every stage's 95th-percentile quiet gap is `gap`, over 100 samples.
    struct QuietGaps(chrono::Duration);
    impl StageHistory for QuietGaps {
        fn quiet_gap_quantile(
            &self,
            _: &str,
            _: Status,
            _: f64,
        ) -> Option<(chrono::Duration, u64)> {
            Some((self.0, 100))
        }
        fn delivery_time_quantile(
            &self,
            _: &str,
            _: Option<&str>,
            _: Option<&str>,
            _: f64,
        ) -> Option<(chrono::Duration, u64)> {
            None
        }
    }

    #[tokio::test]
    async fn the_history_the_tracker_holds_decides_stalls_and_wakes_the_parcel_in_time() {
        // The answer's newest line is 8 h old. On the fallbacks (20 h in transit) that is quiet,
        // not stalled: the planned 2-hour check stands (the batch test above).
        let mut t = tracker();
        let id = ShipmentId::parse("YTO", "YT1000000000001").unwrap();
        // A carrier that never stays quiet more than 4 h: threshold max(4 h × 1.5, 6 h floor).
        t.ctx = CheckContext::new(Arc::new(QuietGaps(chrono::Duration::hours(4))));
        let out = process(&t, &id, None, now()).await.unwrap();
        assert_eq!(
            out,
            Processed::Checked {
                transition: Some("Pending>InTransit(parcelwatch:stalled;after=360m;n100)".into()),
                new_events: 3
            }
        );
        let s = t.store.shipment(&id).unwrap();
        assert_eq!(
            s.sub_status.map(|s| s.to_string()).as_deref(),
            Some("parcelwatch:stalled;after=360m;n100")
        );
        // Asked again with the same answer: no transition (the old code does not clear it).
        let again = process(&t, &id, None, now() + chrono::Duration::hours(2))
            .await
            .unwrap();
        assert_eq!(
            again,
            Processed::Checked {
                transition: None,
                new_events: 0
            }
        );

        // A carrier quiet up to 6 h 40 min (threshold 10 h): a parcel whose newest line is 9 h
        // old is not stalled yet, but is due 1 h from now, before the planned 2-hour check.
        let other = ShipmentId::parse("ZTO", "780000000000003").unwrap();
        t.ctx = CheckContext::new(Arc::new(QuietGaps(chrono::Duration::minutes(400))));
        let out = process(&t, &other, None, now()).await.unwrap();
        assert_eq!(
            out,
            Processed::Checked {
                transition: Some("Pending>InTransit(kdniao:2)".into()),
                new_events: 2
            }
        );
        let s = t.store.shipment(&other).unwrap();
        assert_eq!(s.next_check_at, Some(now() + chrono::Duration::hours(1)));
    }

    /// Subscribes every shipment it is asked to; refuses the waybills listed in `refuse`.
    #[derive(Default)]
    struct ScriptedSubscriber {
        calls: Mutex<Vec<String>>,
        refuse: Vec<String>,
    }
    impl Subscriber for ScriptedSubscriber {
        fn name(&self) -> &'static str {
            "kdniao"
        }
        async fn subscribe(&self, q: &TraceQuery) -> Result<Subscribed, ProviderError> {
            self.calls.lock().unwrap().push(q.id.number.to_string());
            if self.refuse.iter().any(|n| n == q.id.number.as_str()) {
                return Err(ProviderError::Permanent {
                    provider: "kdniao",
                    reason: "订阅失败".into(),
                });
            }
            Ok(Subscribed {
                provider: "kdniao",
                already_subscribed: false,
                estimated_delivery: None,
            })
        }
    }

    fn push_tracker(
        refuse: &[&str],
    ) -> Tracker<MemoryStore, ScriptedProvider, Dlq, ScriptedSubscriber> {
        let t = tracker();
        Tracker {
            store: t.store,
            provider: t.provider,
            dead_letters: t.dead_letters,
            concurrency: 4,
            subscriber: Some(ScriptedSubscriber {
                calls: Mutex::default(),
                refuse: refuse.iter().map(|s| s.to_string()).collect(),
            }),
            ctx: CheckContext::standalone(),
        }
    }

    #[tokio::test]
    async fn push_mode_subscribes_instead_of_polling_then_polls_only_as_a_safety_net() {
        let t = push_tracker(&[]);
        let id = ShipmentId::parse("YTO", "YT1000000000001").unwrap();
        assert_eq!(
            process(&t, &id, None, now()).await.unwrap(),
            Processed::Subscribed { already: false }
        );
        assert_eq!(*t.provider.calls.lock().unwrap(), 0, "no trace query");
        let s = t.store.shipment(&id).unwrap();
        assert_eq!(s.subscribed_at, Some(now()));
        assert_eq!(
            s.next_check_at,
            Some(now() + parcelwatch::domain::SAFETY_NET)
        );
        // The safety-net check polls, and does not subscribe again.
        let later = now() + parcelwatch::domain::SAFETY_NET;
        let out = process(&t, &id, None, later).await.unwrap();
        assert!(
            matches!(out, Processed::Checked { new_events: 3, .. }),
            "{out:?}"
        );
        assert_eq!(*t.provider.calls.lock().unwrap(), 1);
        assert_eq!(
            t.subscriber.as_ref().unwrap().calls.lock().unwrap().len(),
            1
        );
        let s = t.store.shipment(&id).unwrap();
        assert_eq!(
            s.next_check_at,
            Some(later + parcelwatch::domain::SAFETY_NET)
        );
    }

    #[tokio::test]
    async fn a_refused_subscription_falls_back_to_polling() {
        let t = push_tracker(&["SF1000000000002"]);
        let id = ShipmentId::parse("SF", "SF1000000000002").unwrap();
        let out = process(&t, &id, None, now()).await.unwrap();
        assert!(
            matches!(out, Processed::Checked { new_events: 1, .. }),
            "{out:?}"
        );
        let s = t.store.shipment(&id).unwrap();
        assert_eq!(s.subscribed_at, None);
        assert!(s.next_check_at.unwrap() < now() + parcelwatch::domain::SAFETY_NET);
    }

    #[tokio::test]
    async fn a_spent_quota_moves_the_check_out_instead_of_cycling_the_message() {
        let t = tracker();
        t.provider.answers.lock().unwrap().insert(
            "YT1000000000001".into(),
            Err((true, "quota: 超过每日查询上限".into())),
        );
        let id = ShipmentId::parse("YTO", "YT1000000000001").unwrap();
        assert_eq!(
            process(&t, &id, None, now()).await.unwrap(),
            Processed::Deferred
        );
        let s = t.store.shipment(&id).unwrap();
        assert_eq!(s.next_check_at, Some(now() + chrono::Duration::hours(8)));
        assert!(t.dead_letters.0.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_provider_out_of_rate_limit_tokens_moves_the_check_out_instead_of_failing_it() {
        use parcelwatch::providers::failover::{Failover, ProviderRoutes};
        use parcelwatch::resilience::{Limiter, MemoryBucket, RateLimits};
        let base = tracker();
        let t = Tracker {
            store: base.store,
            provider: Failover::new(
                vec![base.provider],
                ProviderRoutes::parse("default=kdniao").unwrap(),
            )
            .with_limiter(
                Limiter::Memory(MemoryBucket::new(
                    RateLimits::parse("kdniao=1/min:1").unwrap(),
                )),
                std::time::Duration::ZERO,
            ),
            dead_letters: base.dead_letters,
            concurrency: 1,
            subscriber: None::<NoPush>,
            ctx: CheckContext::standalone(),
        };
        let id = ShipmentId::parse("YTO", "YT1000000000001").unwrap();
        assert!(matches!(
            process(&t, &id, None, now()).await.unwrap(),
            Processed::Checked { .. }
        ));
        let other = ShipmentId::parse("SF", "SF1000000000002").unwrap();
        let before = t.store.shipment(&other).unwrap();
        assert_eq!(
            process(&t, &other, None, now()).await.unwrap(),
            Processed::Deferred,
            "a one-minute wait for a token is not a failure of the message"
        );
        let s = t.store.shipment(&other).unwrap();
        // The next token is due within the minute (the bucket runs on the wall clock).
        let until = s.next_check_at.unwrap();
        assert!(
            until > now() + chrono::Duration::seconds(50)
                && until <= now() + chrono::Duration::minutes(1),
            "{until}"
        );
        assert_eq!(
            s.checked_at, before.checked_at,
            "the provider was not asked"
        );
        assert_eq!(s.event_count, before.event_count);
        assert!(t.dead_letters.0.lock().unwrap().is_empty());
    }
}
