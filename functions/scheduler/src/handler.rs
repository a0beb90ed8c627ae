//! Due shards → SendMessageBatch → one conditional watermark write. The scheduler never writes a
//! shipment: the tracker's write with the next check time is the only move of a `due_sk`.
//!
//! Per due shard it keeps a watermark (a position in the index): every entry at or before it was
//! enqueued by some run. A run enqueues the entries past the watermark and due by `now`, oldest
//! first, then moves the watermark to the last entry sent. All shards' watermarks live in one
//! item (`SCHED#due`), read once and written once per run, conditional on the run counter read.
//! Send first, then advance: a run that dies in between is repeated by the next one
//! (duplicate checks, which the tracker absorbs), never skipped.
//!
//! A checked shipment leaves the slice by itself (the tracker writes a `next_check_at` after its
//! own `now`). One enqueued but never checked (its message ended in the DLQ, or was lost) stays
//! behind the watermark: the stuck sweep re-enqueues, once per `SCHEDULER_LEASE_SECONDS` per
//! shard, whatever the watermark passed at least that long ago and is still due.

use chrono::{DateTime, Utc};
use parcelwatch::config::SchedulerConfig;
use parcelwatch::queue::{MessageSink, Outgoing, QueueError, TrackMessage};
use parcelwatch::store::{DueEntry, DueIndex, DuePosition, ShardMark, StoreError};
use serde::Serialize;
use std::time::Duration;

/// Attempts per SendMessageBatch entry before giving up on it for this run.
const SEND_ATTEMPTS: u32 = 3;

/// The watermark stops this far short of `now`. Entries due in the last few seconds are enqueued
/// all the same, but the next run reads that band again: a shipment stamped due at about `now`
/// whose write reached the index after this run's query (a registration racing the tick, GSI
/// propagation) is found by the next run instead of the stuck sweep. The band costs a second
/// message only for an entry whose check has not finished by the next run.
pub const SETTLE: chrono::Duration = chrono::Duration::seconds(5);

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct ScheduleReport {
    /// Entries found past the watermarks, due by now.
    pub due_found: usize,
    /// Entries the stuck sweep found: passed by the watermark at least `SCHEDULER_LEASE_SECONDS`
    /// ago and still due (a check that never finished, or a write that landed behind the
    /// watermark). Enqueued again.
    pub stuck: usize,
    /// Messages the queue accepted (due and stuck).
    pub enqueued: usize,
    /// Entries still failing after retries. The watermark stops before the first of them, so
    /// the next run offers them again.
    pub send_failed: usize,
    /// The run stopped at `max_enqueue`; more work is waiting.
    pub budget_exhausted: bool,
    /// The watermark item was written (not when nothing moved).
    pub watermark_advanced: bool,
    /// The conditional write lost (another run advanced the watermarks first) or failed: the
    /// next run starts from what it reads and may enqueue this run's entries again.
    pub watermark_lost: bool,
    /// The event's time is not after the last run's (a duplicate delivery or a replayed tick):
    /// nothing was done.
    pub stale_tick: bool,
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
    let read = due.watermarks().await?;
    if read.at.is_some_and(|at| now <= at) {
        report.stale_tick = true;
        tracing::warn!(now = %now, last_run = ?read.at, "tick not after the last run's; nothing to do");
        return Ok(report);
    }
    let shards = due.shards();
    let lease = chrono::Duration::from_std(cfg.lease).unwrap_or(chrono::Duration::minutes(15));
    let cap = DuePosition::end_of(now.checked_sub_signed(SETTLE).unwrap_or(now));
    // Start at a different shard each minute so a run cut short by its budget does not always
    // starve the same shards.
    let first = (now.timestamp() / 60).rem_euclid(i64::from(shards)) as u32;
    let mut next = read.clone();
    let mut taken = 0usize;
    let mut failure: Option<SchedulerError> = None;

    for i in 0..shards {
        let shard = (first + i) % shards;
        let remaining = cfg.max_enqueue.saturating_sub(taken);
        if remaining == 0 {
            report.budget_exhausted = true;
            break;
        }
        let mark = next.shards.entry(shard).or_default();

        // 1. What became due since the watermark.
        let entries = match due
            .due_between(shard, mark.after.as_ref(), now, remaining)
            .await
        {
            Ok(e) => e,
            Err(e) => {
                failure = Some(e.into());
                break;
            }
        };
        taken += entries.len();
        report.due_found += entries.len();
        let sent = send_all(queue, &entries, now).await;
        report.enqueued += sent.sent;
        report.send_failed += sent.failed;
        if let Some(upto) = sent.done_upto(&entries) {
            let upto = upto.min(cap.clone());
            if mark.after.as_ref().is_none_or(|a| upto > *a) {
                mark.after = Some(upto);
            }
        }
        if let Some(e) = sent.error {
            failure = Some(e.into());
            break;
        }
        if sent.first_failed.is_some() {
            continue;
        }

        // 2. The stuck sweep, once per lease.
        match (mark.sweep_at, mark.sweep_to) {
            (Some(at), Some(to)) if now >= at => {
                let remaining = cfg.max_enqueue.saturating_sub(taken);
                if remaining == 0 {
                    report.budget_exhausted = true;
                    break;
                }
                let entries = match due
                    .due_between(shard, mark.sweep_after.as_ref(), to, remaining)
                    .await
                {
                    Ok(e) => e,
                    Err(e) => {
                        failure = Some(e.into());
                        break;
                    }
                };
                taken += entries.len();
                report.stuck += entries.len();
                if !entries.is_empty() {
                    tracing::warn!(
                        shard,
                        count = entries.len(),
                        oldest = %entries[0].due_sk,
                        "checks not done within the lease; enqueued again"
                    );
                }
                let sent = send_all(queue, &entries, now).await;
                report.enqueued += sent.sent;
                report.send_failed += sent.failed;
                if sent.first_failed.is_some() {
                    // Resume after what went out.
                    if let Some(upto) = sent.done_upto(&entries) {
                        mark.sweep_after = Some(upto);
                    }
                } else if entries.len() < remaining {
                    plan_sweep(mark, now, lease);
                } else {
                    // Cut by the budget: the next run carries on from here.
                    mark.sweep_after = entries.last().map(DueEntry::position);
                }
                if let Some(e) = sent.error {
                    failure = Some(e.into());
                    break;
                }
            }
            (Some(at), None) if now >= at => plan_sweep(mark, now, lease),
            (None, _) => plan_sweep(mark, now, lease),
            _ => {}
        }
    }
    if taken >= cfg.max_enqueue {
        report.budget_exhausted = true;
    }

    // 3. One conditional write for the whole run, and only when something moved.
    if next.shards != read.shards {
        next.at = Some(now);
        match due.advance(read.run, &next).await {
            Ok(true) => report.watermark_advanced = true,
            Ok(false) => {
                report.watermark_lost = true;
                tracing::error!(
                    run = read.run,
                    "watermarks advanced by another run meanwhile; this run's messages may be sent again"
                );
            }
            Err(e) => {
                report.watermark_lost = true;
                tracing::error!(error = %e, "watermark write failed; the next run starts from the old watermarks");
            }
        }
    }
    tracing::info!(
        due_found = report.due_found,
        stuck = report.stuck,
        enqueued = report.enqueued,
        send_failed = report.send_failed,
        budget_exhausted = report.budget_exhausted,
        watermark_advanced = report.watermark_advanced,
        watermark_lost = report.watermark_lost,
        "schedule run"
    );
    match failure {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

/// Start a new lease period for the shard's sweep: the next sweep, one lease from now, covers
/// what the watermark has passed by now, and the whole second it stands in (entries of that
/// second past it go out with the next run's slice, long before this sweep).
fn plan_sweep(mark: &mut ShardMark, now: DateTime<Utc>, lease: chrono::Duration) {
    mark.sweep_at = Some(now.checked_add_signed(lease).unwrap_or(now));
    mark.sweep_after = None;
    mark.sweep_to = mark
        .after
        .as_ref()
        .and_then(|p| parcelwatch::domain::parse_time(&p.due_sk));
}

/// What became of a run of entries sent in order.
#[derive(Debug, Default)]
struct Sent {
    sent: usize,
    failed: usize,
    /// Index of the first entry that did not go out; the entries after its batch were not tried.
    first_failed: Option<usize>,
    /// The queue failed as a whole.
    error: Option<QueueError>,
}

impl Sent {
    /// The position up to which every entry went out (`None`: not even the first).
    fn done_upto(&self, entries: &[DueEntry]) -> Option<DuePosition> {
        let n = self.first_failed.unwrap_or(entries.len());
        n.checked_sub(1)
            .and_then(|i| entries.get(i))
            .map(DueEntry::position)
    }
}

/// Send `entries` ten per SendMessageBatch, in order, stopping at the first batch that still has
/// failures after retries.
async fn send_all<Q: MessageSink>(queue: &Q, entries: &[DueEntry], now: DateTime<Utc>) -> Sent {
    let mut out = Sent::default();
    for (c, chunk) in entries.chunks(10).enumerate() {
        match send_with_retries(queue, chunk, now).await {
            Ok(failed) => {
                out.sent += chunk.len() - failed.len();
                out.failed += failed.len();
                if let Some(first) = failed.iter().min() {
                    out.first_failed = Some(c * 10 + first);
                    break;
                }
            }
            Err(e) => {
                out.failed += chunk.len();
                out.first_failed = Some(c * 10);
                out.error = Some(e);
                break;
            }
        }
    }
    out
}

/// One SendMessageBatch of up to 10, retrying only the entries named in `Failed`. Returns the
/// indices (in `chunk`) of the entries still failing.
async fn send_with_retries<Q: MessageSink>(
    queue: &Q,
    chunk: &[DueEntry],
    now: DateTime<Utc>,
) -> Result<Vec<usize>, QueueError> {
    let mut pending: Vec<Outgoing> = Vec::with_capacity(chunk.len());
    for (i, e) in chunk.iter().enumerate() {
        let body = serde_json::to_string(&TrackMessage::new(&e.id, now))
            .map_err(|err| QueueError::Permanent(err.to_string()))?;
        pending.push(Outgoing {
            id: format!("m{i}"),
            body,
        });
    }
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
            "entries still failing after retries; the watermark stops before them"
        );
    }
    Ok(pending
        .iter()
        .filter_map(|o| o.id.strip_prefix('m').and_then(|i| i.parse().ok()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use parcelwatch::domain::{Priority, Recipient, Shipment, ShipmentId};
    use parcelwatch::store::{MemoryStore, Watermarks};
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    /// A queue that records bodies and fails chosen entry ids (one attempt per listed copy).
    #[derive(Default)]
    struct FlakyQueue {
        sent: Mutex<Vec<String>>,
        fail: Mutex<Vec<String>>,
        calls: Mutex<usize>,
        /// Every call fails as a whole.
        down: Mutex<bool>,
    }
    impl MessageSink for FlakyQueue {
        async fn send_batch(&self, entries: &[Outgoing]) -> Result<Vec<String>, QueueError> {
            assert!(
                entries.len() <= 10,
                "SendMessageBatch takes at most 10 entries"
            );
            *self.calls.lock().unwrap() += 1;
            if *self.down.lock().unwrap() {
                return Err(QueueError::Retryable("queue unavailable".into()));
            }
            let mut fail = self.fail.lock().unwrap();
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
    impl FlakyQueue {
        /// Messages per waybill number.
        fn per_shipment(&self) -> BTreeMap<String, usize> {
            let mut m = BTreeMap::new();
            for b in self.sent.lock().unwrap().iter() {
                let v: serde_json::Value = serde_json::from_str(b).unwrap();
                *m.entry(v["number"].as_str().unwrap().to_string())
                    .or_default() += 1;
            }
            m
        }
        fn total(&self) -> usize {
            self.sent.lock().unwrap().len()
        }
    }

    fn cfg(max: usize) -> SchedulerConfig {
        SchedulerConfig {
            queue_url: "q".into(),
            max_enqueue: max,
            lease: Duration::from_secs(900),
        }
    }

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 8, 0, 0).unwrap()
    }
    fn min(n: i64) -> chrono::Duration {
        chrono::Duration::minutes(n)
    }

    fn shipment(i: usize, due: DateTime<Utc>) -> Shipment {
        let id = ShipmentId::parse("YTO", &format!("YT{:013}", i)).unwrap();
        Shipment::register(
            id,
            Priority::Normal,
            "kdniao",
            Recipient::default(),
            None,
            due,
        )
    }

    fn store_with(shards: u32, n: usize, due: DateTime<Utc>) -> MemoryStore {
        let store = MemoryStore::new(shards);
        for i in 0..n {
            store.insert(shipment(i, due));
        }
        store
    }

    fn snapshot(store: &MemoryStore) -> Vec<parcelwatch::store::memory::Items> {
        store.shipments.lock().unwrap().values().cloned().collect()
    }

    async fn run(
        store: &MemoryStore,
        q: &FlakyQueue,
        max: usize,
        now: DateTime<Utc>,
    ) -> ScheduleReport {
        run_schedule(store, q, &cfg(max), now).await.unwrap()
    }

    #[tokio::test]
    async fn a_due_shipment_is_enqueued_once_across_runs_though_nothing_writes_to_it() {
        let now = t0();
        let store = store_with(4, 25, now - min(10));
        // One registered a week ago and never checked: the first run starts from the oldest.
        store.insert(shipment(99, now - chrono::Duration::days(7)));
        let before = snapshot(&store);
        let queue = FlakyQueue::default();
        queue.fail.lock().unwrap().push("m3".into());
        let r = run(&store, &queue, 1000, now).await;
        assert_eq!(
            (r.due_found, r.enqueued, r.send_failed, r.stuck),
            (26, 26, 0, 0)
        );
        assert!(r.watermark_advanced && !r.watermark_lost);
        let per = queue.per_shipment();
        assert_eq!(per.len(), 26);
        assert!(per.values().all(|n| *n == 1), "each shipment exactly once");

        // Nothing checked them, nothing wrote to them: later runs find nothing new.
        for m in 1..=10 {
            let again = run(&store, &queue, 1000, now + min(m)).await;
            assert_eq!((again.due_found, again.enqueued), (0, 0), "run +{m} min");
        }
        assert_eq!(queue.total(), 26);
        assert_eq!(snapshot(&store), before, "the scheduler wrote no shipment");
        assert_eq!(
            store.watermarks.lock().unwrap().as_ref().unwrap().run,
            1,
            "one write"
        );
    }

    #[tokio::test]
    async fn the_watermark_advances_with_what_became_due() {
        let now = t0();
        let store = MemoryStore::new(1);
        for (i, due) in [now - min(5), now + min(3), now + min(7)]
            .into_iter()
            .enumerate()
        {
            store.insert(shipment(i, due));
        }
        let queue = FlakyQueue::default();
        assert_eq!(run(&store, &queue, 100, now).await.enqueued, 1);
        let w = store.watermarks.lock().unwrap().clone().unwrap();
        assert_eq!(
            w.shards[&0].after,
            Some(DuePosition {
                due_sk: parcelwatch::domain::fmt_time(now - min(5)),
                key: Some(parcelwatch::store::ItemKey {
                    pk: "SHIP#YTO#YT0000000000000".into(),
                    sk: "META".into(),
                }),
            })
        );
        assert_eq!(run(&store, &queue, 100, now + min(5)).await.enqueued, 1);
        assert_eq!(run(&store, &queue, 100, now + min(6)).await.enqueued, 0);
        assert_eq!(run(&store, &queue, 100, now + min(10)).await.enqueued, 1);
        assert!(queue.per_shipment().values().all(|n| *n == 1));
        // A checked shipment (the tracker's write moves it past now) comes back when it is due.
        let mut s = store.shipment(&shipment(0, now).id).unwrap();
        s.next_check_at = Some(now + min(20));
        store.insert(s);
        assert_eq!(run(&store, &queue, 100, now + min(21)).await.enqueued, 1);
        assert_eq!(queue.per_shipment()["YT0000000000000"], 2);
    }

    #[tokio::test]
    async fn a_run_cut_by_the_budget_leaves_the_rest_to_the_next_even_inside_one_second() {
        // 30 shipments due at the same second (one order-sync run registers them so), one
        // shard: the watermark stops inside the second and the next run resumes after it.
        for shards in [1, 4] {
            let now = t0();
            let store = store_with(shards, 30, now - min(10));
            let queue = FlakyQueue::default();
            let r = run(&store, &queue, 12, now).await;
            assert_eq!(r.enqueued, 12);
            assert!(r.budget_exhausted);
            assert_eq!(run(&store, &queue, 12, now + min(1)).await.enqueued, 12);
            let last = run(&store, &queue, 12, now + min(2)).await;
            assert_eq!((last.enqueued, last.budget_exhausted), (6, false));
            assert_eq!(run(&store, &queue, 12, now + min(3)).await.enqueued, 0);
            let per = queue.per_shipment();
            assert_eq!(per.len(), 30, "{shards} shards");
            assert!(per.values().all(|n| *n == 1), "{shards} shards: {per:?}");
        }
    }

    #[tokio::test]
    async fn a_stuck_check_is_enqueued_again_once_per_lease_not_every_run() {
        let now = t0();
        let store = store_with(2, 3, now - min(1));
        let queue = FlakyQueue::default();
        assert_eq!(run(&store, &queue, 100, now).await.enqueued, 3);
        // The messages die (DLQ): nothing ever checks them. One run a minute for 40 minutes.
        let mut stuck_at = Vec::new();
        for m in 1..=40 {
            let r = run(&store, &queue, 100, now + min(m)).await;
            assert_eq!(r.due_found, 0);
            assert_eq!(r.enqueued, r.stuck);
            if r.stuck > 0 {
                stuck_at.push((m, r.stuck));
            }
        }
        assert_eq!(stuck_at, [(15, 3), (30, 3)], "once per 15-minute lease");
        assert!(queue.per_shipment().values().all(|n| *n == 3));
        // Checked at last: the sweep lets it go.
        for i in 0..3 {
            let mut s = store.shipment(&shipment(i, now).id).unwrap();
            s.next_check_at = Some(now + min(100));
            store.insert(s);
        }
        for m in 41..=60 {
            assert_eq!(run(&store, &queue, 100, now + min(m)).await.enqueued, 0);
        }
    }

    #[tokio::test]
    async fn a_send_failure_loses_nothing() {
        let now = t0();
        let store = store_with(1, 25, now - min(10));
        let queue = FlakyQueue::default();
        // The fourth entry fails every attempt of this run.
        queue
            .fail
            .lock()
            .unwrap()
            .extend(["m3".into(), "m3".into(), "m3".into()]);
        let r = run(&store, &queue, 1000, now).await;
        assert_eq!(r.send_failed, 1);
        assert_eq!(
            r.enqueued, 9,
            "its batch went out but for it; the next batches wait"
        );
        // The watermark stopped before it: the next run offers it and everything after.
        let r = run(&store, &queue, 1000, now + min(1)).await;
        assert_eq!((r.due_found, r.enqueued, r.send_failed), (22, 22, 0));
        let per = queue.per_shipment();
        assert_eq!(per.len(), 25, "nothing lost");
        assert_eq!(
            per.values().filter(|n| **n == 2).count(),
            6,
            "the rest of its batch twice"
        );
        assert_eq!(run(&store, &queue, 1000, now + min(2)).await.enqueued, 0);

        // The queue down as a whole: the run fails, and what did not go out comes next run.
        let store = store_with(2, 25, now - min(10));
        let queue = FlakyQueue::default();
        *queue.down.lock().unwrap() = true;
        assert!(matches!(
            run_schedule(&store, &queue, &cfg(1000), now).await,
            Err(SchedulerError::Queue(_))
        ));
        *queue.down.lock().unwrap() = false;
        assert_eq!(run(&store, &queue, 1000, now + min(1)).await.enqueued, 25);
        assert!(queue.per_shipment().values().all(|n| *n == 1));
    }

    #[tokio::test]
    async fn a_write_landing_at_the_tick_is_found_by_the_next_run_and_one_behind_it_by_the_sweep() {
        let now = t0();
        let store = store_with(1, 1, now - min(1));
        let queue = FlakyQueue::default();
        assert_eq!(run(&store, &queue, 100, now).await.enqueued, 1);
        // A registration stamped `now` whose write reached the index after this run's query:
        // inside the settle band, the next run reads it.
        store.insert(shipment(1, now));
        let r = run(&store, &queue, 100, now + min(1)).await;
        assert_eq!((r.due_found, r.enqueued), (1, 1));
        // A write stamped well behind the watermark (a slow writer): not lost, the stuck sweep
        // finds it within two leases.
        store.insert(shipment(2, now - min(3)));
        let mut found = None;
        for m in 2..=31 {
            let r = run(&store, &queue, 100, now + min(m)).await;
            if r.enqueued > 0 {
                found = Some((m, r.stuck));
                break;
            }
        }
        assert_eq!(
            found,
            Some((15, 2)),
            "with shipment 0, never checked either"
        );
        assert_eq!(queue.per_shipment()["YT0000000000002"], 1);
    }

    #[tokio::test]
    async fn a_lost_watermark_write_is_reported_and_a_repeated_tick_does_nothing() {
        /// Another run advances the watermarks between this run's read and write.
        struct Racing(MemoryStore);
        impl DueIndex for Racing {
            fn shards(&self) -> u32 {
                self.0.shards()
            }
            async fn due_between(
                &self,
                shard: u32,
                after: Option<&DuePosition>,
                until: DateTime<Utc>,
                limit: usize,
            ) -> Result<Vec<DueEntry>, StoreError> {
                self.0.due_between(shard, after, until, limit).await
            }
            async fn watermarks(&self) -> Result<Watermarks, StoreError> {
                self.0.watermarks().await
            }
            async fn advance(&self, expected: u64, next: &Watermarks) -> Result<bool, StoreError> {
                assert!(self.0.advance(expected, &Watermarks::default()).await?);
                self.0.advance(expected, next).await
            }
        }
        let now = t0();
        let racing = Racing(store_with(2, 5, now - min(1)));
        let queue = FlakyQueue::default();
        let r = run_schedule(&racing, &queue, &cfg(100), now).await.unwrap();
        assert_eq!(r.enqueued, 5);
        assert!(r.watermark_lost && !r.watermark_advanced);

        let store = store_with(2, 5, now - min(1));
        let queue = FlakyQueue::default();
        assert_eq!(run(&store, &queue, 100, now).await.enqueued, 5);
        let calls = *queue.calls.lock().unwrap();
        let again = run(&store, &queue, 100, now).await;
        assert!(again.stale_tick);
        assert_eq!((again.due_found, again.enqueued), (0, 0));
        assert_eq!(*queue.calls.lock().unwrap(), calls, "no message sent");
    }

    #[tokio::test]
    async fn stops_at_the_budget_and_says_so() {
        let now = t0();
        let store = store_with(4, 30, now);
        let queue = FlakyQueue::default();
        let r = run(&store, &queue, 12, now).await;
        assert_eq!(r.enqueued, 12);
        assert!(r.budget_exhausted);
    }

    #[tokio::test]
    async fn nothing_is_enqueued_before_it_is_due() {
        let now = t0();
        let store = store_with(4, 5, now + min(5));
        let queue = FlakyQueue::default();
        let r = run(&store, &queue, 100, now).await;
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
