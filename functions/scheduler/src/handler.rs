//! Due shards → leases → SendMessageBatch.

use chrono::{DateTime, Utc};
use futures::{stream, StreamExt};
use parcelwatch::config::SchedulerConfig;
use parcelwatch::queue::{MessageSink, Outgoing, QueueError, TrackMessage};
use parcelwatch::store::{DueEntry, DueIndex, StoreError};
use serde::Serialize;
use std::time::Duration;

/// Leases taken at once (each is one conditional UpdateItem).
const LEASE_CONCURRENCY: usize = 16;
/// Attempts per SendMessageBatch entry before giving up on it for this run.
const SEND_ATTEMPTS: u32 = 3;

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct ScheduleReport {
    pub due_found: usize,
    pub leased: usize,
    /// Someone else (another run, a tracker) moved the due time first.
    pub lease_lost: usize,
    pub enqueued: usize,
    /// Entries still failing after retries: picked up again when their lease expires.
    pub send_failed: usize,
    /// The run stopped at `max_enqueue`; more work is waiting.
    pub budget_exhausted: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("due index query failed: {0}")]
    Store(#[from] StoreError),
    #[error("tracking queue unavailable: {0}")]
    Queue(#[from] QueueError),
}

pub async fn run_schedule<D: DueIndex, Q: MessageSink>(
    due: &D,
    queue: &Q,
    cfg: &SchedulerConfig,
    now: DateTime<Utc>,
) -> Result<ScheduleReport, SchedulerError> {
    let mut report = ScheduleReport::default();
    let shards = due.shards();
    let lease_until =
        now + chrono::Duration::from_std(cfg.lease).unwrap_or(chrono::Duration::minutes(15));
    // Start at a different shard each minute so a run cut short by its budget does not always
    // starve the same shards.
    let first = (now.timestamp() / 60).rem_euclid(i64::from(shards)) as u32;

    for i in 0..shards {
        let remaining = cfg.max_enqueue.saturating_sub(report.leased);
        if remaining == 0 {
            report.budget_exhausted = true;
            break;
        }
        let shard = (first + i) % shards;
        let entries = due.due(shard, now, remaining).await?;
        report.due_found += entries.len();

        let results: Vec<(DueEntry, Result<bool, StoreError>)> = stream::iter(entries)
            .map(|e| async move {
                let r = due.lease(&e, lease_until).await;
                (e, r)
            })
            .buffer_unordered(LEASE_CONCURRENCY)
            .collect()
            .await;

        let mut leased = Vec::new();
        for (entry, r) in results {
            match r {
                Ok(true) => leased.push(entry),
                Ok(false) => report.lease_lost += 1,
                Err(e) => {
                    // Not leased, so not enqueued: it stays due and the next tick retries it.
                    tracing::warn!(shipment = %entry.id, error = %e, "lease failed");
                }
            }
        }
        report.leased += leased.len();
        for chunk in leased.chunks(10) {
            let (sent, failed) = send_with_retries(queue, chunk, now).await?;
            report.enqueued += sent;
            report.send_failed += failed;
        }
    }
    tracing::info!(
        due_found = report.due_found,
        leased = report.leased,
        lease_lost = report.lease_lost,
        enqueued = report.enqueued,
        send_failed = report.send_failed,
        budget_exhausted = report.budget_exhausted,
        "schedule run"
    );
    Ok(report)
}

/// One SendMessageBatch of up to 10, retrying only the entries named in `Failed`.
async fn send_with_retries<Q: MessageSink>(
    queue: &Q,
    chunk: &[DueEntry],
    now: DateTime<Utc>,
) -> Result<(usize, usize), QueueError> {
    let mut pending: Vec<Outgoing> = Vec::with_capacity(chunk.len());
    for (i, e) in chunk.iter().enumerate() {
        let body = serde_json::to_string(&TrackMessage::new(&e.id, now))
            .map_err(|err| QueueError::Permanent(err.to_string()))?;
        pending.push(Outgoing {
            id: format!("m{i}"),
            body,
        });
    }
    let total = pending.len();
    for attempt in 0..SEND_ATTEMPTS {
        let failed = match queue.send_batch(&pending).await {
            Ok(failed) => failed,
            Err(QueueError::Retryable(reason)) if attempt + 1 < SEND_ATTEMPTS => {
                tracing::warn!(%reason, attempt, "SendMessageBatch failed; retrying");
                pending.iter().map(|o| o.id.clone()).collect()
            }
            Err(e) => return Err(e),
        };
        pending.retain(|o| failed.contains(&o.id));
        if pending.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
    }
    if !pending.is_empty() {
        tracing::error!(
            count = pending.len(),
            "entries still failing after retries; they are re-enqueued when their lease expires"
        );
    }
    Ok((total - pending.len(), pending.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use parcelwatch::domain::{Priority, Recipient, Shipment, ShipmentId};
    use parcelwatch::store::MemoryStore;
    use std::sync::Mutex;

    /// A queue that records bodies and fails the first attempt of chosen entry ids.
    #[derive(Default)]
    struct FlakyQueue {
        sent: Mutex<Vec<String>>,
        fail_once: Mutex<Vec<String>>,
        calls: Mutex<usize>,
    }
    impl MessageSink for FlakyQueue {
        async fn send_batch(&self, entries: &[Outgoing]) -> Result<Vec<String>, QueueError> {
            assert!(
                entries.len() <= 10,
                "SendMessageBatch takes at most 10 entries"
            );
            *self.calls.lock().unwrap() += 1;
            let mut fail = self.fail_once.lock().unwrap();
            let mut failed = Vec::new();
            for e in entries {
                if let Some(p) = fail.iter().position(|f| f == &e.id) {
                    fail.remove(p);
                    failed.push(e.id.clone());
                } else {
                    self.sent.lock().unwrap().push(e.body.clone());
                }
            }
            Ok(failed)
        }
    }

    fn cfg(max: usize) -> SchedulerConfig {
        SchedulerConfig {
            queue_url: "q".into(),
            max_enqueue: max,
            lease: Duration::from_secs(900),
        }
    }

    fn store_with(n: usize, now: DateTime<Utc>) -> MemoryStore {
        let store = MemoryStore::new(4);
        for i in 0..n {
            let id = ShipmentId::parse("YTO", &format!("YT{:013}", i)).unwrap();
            store.insert(Shipment::register(
                id,
                Priority::Normal,
                "kdniao",
                Recipient::default(),
                None,
                now,
            ));
        }
        store
    }

    #[tokio::test]
    async fn enqueues_every_due_shipment_once_in_batches_of_ten_and_retries_failed_entries() {
        let now = Utc.with_ymd_and_hms(2026, 11, 24, 8, 0, 0).unwrap();
        let store = store_with(25, now);
        let queue = FlakyQueue::default();
        queue.fail_once.lock().unwrap().push("m3".into());
        let r = run_schedule(&store, &queue, &cfg(1000), now).await.unwrap();
        assert_eq!(
            (r.due_found, r.leased, r.enqueued, r.send_failed),
            (25, 25, 25, 0)
        );
        let mut bodies = queue.sent.lock().unwrap().clone();
        bodies.sort();
        bodies.dedup();
        assert_eq!(bodies.len(), 25, "each shipment exactly once");

        // Leased: a second tick at the same time finds nothing due.
        let again = run_schedule(&store, &queue, &cfg(1000), now).await.unwrap();
        assert_eq!(again.due_found, 0);
        // After the lease expires the shipments are due again (the tracker never answered).
        let later = now + chrono::Duration::minutes(16);
        assert_eq!(
            run_schedule(&store, &queue, &cfg(1000), later)
                .await
                .unwrap()
                .enqueued,
            25
        );
    }

    #[tokio::test]
    async fn stops_at_the_budget_and_says_so() {
        let now = Utc.with_ymd_and_hms(2026, 11, 24, 8, 0, 0).unwrap();
        let store = store_with(30, now);
        let queue = FlakyQueue::default();
        let r = run_schedule(&store, &queue, &cfg(12), now).await.unwrap();
        assert_eq!(r.enqueued, 12);
        assert!(r.budget_exhausted);
    }

    #[tokio::test]
    async fn nothing_is_enqueued_before_it_is_due() {
        let now = Utc.with_ymd_and_hms(2026, 11, 24, 8, 0, 0).unwrap();
        let store = store_with(5, now + chrono::Duration::minutes(5));
        let queue = FlakyQueue::default();
        let r = run_schedule(&store, &queue, &cfg(100), now).await.unwrap();
        assert_eq!(r.due_found, 0);
        assert_eq!(*queue.calls.lock().unwrap(), 0);
    }

    #[tokio::test]
    async fn the_sample_event_parses_as_a_scheduled_event() {
        let ev: aws_lambda_events::event::eventbridge::EventBridgeEvent =
            serde_json::from_str(include_str!("../../../events/scheduler/scheduled.json")).unwrap();
        assert_eq!(ev.detail_type, "Scheduled Event");
        assert_eq!(
            ev.time,
            Some(Utc.with_ymd_and_hms(2026, 11, 24, 8, 0, 0).unwrap())
        );
    }
}
