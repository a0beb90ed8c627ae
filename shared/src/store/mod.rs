//! The shipment table behind narrow ports, so handlers can be tested against the in-memory
//! store and run against DynamoDB.

pub mod analytics;
pub mod dynamo;
pub mod memory;
pub mod orders;
pub mod record;

use crate::domain::{EventKey, Shipment, ShipmentId, TraceEvent};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

pub use dynamo::DynamoStore;
pub use memory::MemoryStore;
pub use record::{
    BadRecord, EventRecord, SchedRecord, ShipmentRecord, WatermarkRecord, SCHED, WATERMARK_PK,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The item changed since it was read (optimistic concurrency) or already exists.
    #[error("conditional write lost: {0}")]
    Conflict(String),
    /// Throttling, a timeout, a 5xx: try again.
    #[error("table temporarily unavailable: {0}")]
    Retryable(String),
    /// A stored item we cannot decode.
    #[error(transparent)]
    BadRecord(#[from] BadRecord),
    /// Anything else (validation, permissions): retrying will not help.
    #[error("table rejected the request: {0}")]
    Permanent(String),
}

impl StoreError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Retryable(_) | StoreError::Conflict(_))
    }
}

/// What a write of a shipment wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    /// The schedule alone (the hot fields, see [`crate::domain::HOT_FIELDS`]): one small
    /// `SCHED` item, conditional on its `sv`. `META` and its stream record are left alone.
    Hot,
    /// The trace lines, then `SCHED` (the lock every writer takes first), then `META`
    /// conditional on its version, without the due-index keys.
    Full,
}

impl WriteKind {
    /// The write that takes `held` (the shipment as read) to `updated`: hot when only the hot
    /// fields changed and the items were read in step; full otherwise.
    pub fn of(held: &Shipment, updated: &Shipment) -> WriteKind {
        if !held.needs_full_write && Shipment::hot_only_change(held, updated) {
            WriteKind::Hot
        } else {
            WriteKind::Full
        }
    }
}

/// What [`ShipmentStore::save`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Saved {
    pub kind: WriteKind,
    /// The `META` version now (unchanged by a hot write).
    pub version: u64,
    /// The `SCHED` item's `sv` now (every write bumps it).
    pub sched_version: u64,
}

/// Read and write shipments.
pub trait ShipmentStore: Send + Sync {
    /// The shipment: its `META` item with the hot fields of its `SCHED` item laid over it.
    fn get(
        &self,
        id: &ShipmentId,
    ) -> impl Future<Output = Result<Option<Shipment>, StoreError>> + Send;

    /// Many shipments at once (the tracker's batch): those that exist, by id. The default asks
    /// [`ShipmentStore::get`] for each; DynamoDB answers with `BatchGetItem`.
    fn get_many(
        &self,
        ids: &[ShipmentId],
    ) -> impl Future<Output = Result<HashMap<ShipmentId, Shipment>, StoreError>> + Send {
        async move {
            let mut out = HashMap::with_capacity(ids.len());
            for id in ids {
                if let Some(s) = self.get(id).await? {
                    out.insert(id.clone(), s);
                }
            }
            Ok(out)
        }
    }

    /// Insert if absent: one `META` item carrying the due-index keys (the first write after
    /// it moves them to `SCHED`). `Ok(false)` when the shipment already exists (registration
    /// is idempotent).
    fn create(&self, shipment: &Shipment) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Write `updated`, decided on `held` (the shipment as read: its versions are the
    /// conditions), and its new trace lines. [`WriteKind::of`] picks the write: a hot one puts
    /// `SCHED` alone; a full one writes the lines (idempotent: deterministic keys), then
    /// `SCHED`, then `META`. `Err(Conflict)` when someone else wrote either item in between
    /// (a full write may have put `SCHED` by then): re-read and decide again.
    fn save(
        &self,
        held: &Shipment,
        updated: &Shipment,
        new_events: &[(EventKey, TraceEvent)],
    ) -> impl Future<Output = Result<Saved, StoreError>> + Send;

    /// The shipment's trace lines, newest first, at most `limit`.
    fn trace(
        &self,
        id: &ShipmentId,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<(EventKey, TraceEvent)>, StoreError>> + Send;
}

/// The table key of the item carrying a due-index entry: the shipment's `pk`, and `SCHED`, or
/// `META` for a shipment not written since it was created (or since before the split).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ItemKey {
    pub pk: String,
    pub sk: String,
}

/// One entry of the due index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueEntry {
    pub id: ShipmentId,
    /// The sort key of the item carrying the entry (`SCHED` or `META`).
    pub sk: String,
    /// The due time as stored (`next_check_at`, RFC 3339, whole seconds).
    pub due_sk: String,
}

impl DueEntry {
    /// The index position just after this entry.
    pub fn position(&self) -> DuePosition {
        DuePosition {
            due_sk: self.due_sk.clone(),
            key: Some(ItemKey {
                pk: self.id.pk(),
                sk: self.sk.clone(),
            }),
        }
    }
}

/// A position in one shard of the due index, which is ordered by `due_sk` and, among equal due
/// times, by the item's table key, `pk` then `sk` (the order DynamoDB pages a GSI in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuePosition {
    pub due_sk: String,
    /// `Some(key)`: just after that entry. `None`: after every entry due at `due_sk`.
    pub key: Option<ItemKey>,
}

impl DuePosition {
    /// After every entry due at or before `t`.
    pub fn end_of(t: DateTime<Utc>) -> DuePosition {
        DuePosition {
            due_sk: crate::domain::fmt_time(t),
            key: None,
        }
    }
}

impl Ord for DuePosition {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // `None` sorts after every key of the same second.
        self.due_sk
            .cmp(&other.due_sk)
            .then_with(|| match (&self.key, &other.key) {
                (Some(a), Some(b)) => a.cmp(b),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            })
    }
}

impl PartialOrd for DuePosition {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Where the scheduler stands in one due shard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardMark {
    /// The watermark: every entry at or before it was enqueued by some run. `None`: nothing yet
    /// (the next run starts from the oldest entry).
    pub after: Option<DuePosition>,
    /// The stuck sweep's bound: entries due at or before it were passed by the watermark at
    /// least one lease before the sweep runs; those still there are re-enqueued.
    pub sweep_to: Option<DateTime<Utc>>,
    /// When the next sweep of this shard starts.
    pub sweep_at: Option<DateTime<Utc>>,
    /// How far an unfinished sweep (cut by the budget or a failed send) got.
    pub sweep_after: Option<DuePosition>,
}

/// The scheduler's state: one item (`SCHED#due` / `META`), outside the stream consumers'
/// filters (its pk does not start with `SHIP#`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Watermarks {
    /// Runs that advanced it; 0 when the item does not exist yet. The write is conditional on it.
    pub run: u64,
    /// The `now` of the last run that advanced it.
    pub at: Option<DateTime<Utc>>,
    pub shards: std::collections::BTreeMap<u32, ShardMark>,
}

/// The sparse, sharded due index and the scheduler's watermarks over it. The scheduler never
/// writes a shipment: a check moves its due time (the tracker's write), the index is only read.
pub trait DueIndex: Send + Sync {
    fn shards(&self) -> u32;
    /// Entries of one shard strictly after `after` (`None`: from the oldest) and due at or
    /// before `until`, in index order, at most `limit`.
    fn due_between(
        &self,
        shard: u32,
        after: Option<&DuePosition>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<DueEntry>, StoreError>> + Send;
    /// The watermarks as the last run left them (strongly consistent).
    fn watermarks(&self) -> impl Future<Output = Result<Watermarks, StoreError>> + Send;
    /// Replace the watermarks with `next` (its `run` is `expected_run + 1`), on condition that
    /// nobody advanced them since they were read at `expected_run`. `Ok(false)`: someone did.
    fn advance(
        &self,
        expected_run: u64,
        next: &Watermarks,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// The result of trying to claim a (transition, channel) send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Ours to send.
    Claimed,
    /// Already sent: skip.
    AlreadySent,
    /// Another invocation claimed it recently and may still be sending: retry later.
    InFlight,
}

/// The notification ledger: `NOTE#{transition}#{channel}` items.
pub trait Ledger: Send + Sync {
    /// Claim by conditional put. A claim older than `stale_after` that never completed (the
    /// sender died) or one marked failed can be claimed again.
    fn claim(
        &self,
        id: &ShipmentId,
        note: &str,
        now: DateTime<Utc>,
        stale_after: Duration,
    ) -> impl Future<Output = Result<Claim, StoreError>> + Send;
    fn complete(
        &self,
        id: &ShipmentId,
        note: &str,
        message_id: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn release(
        &self,
        id: &ShipmentId,
        note: &str,
        reason: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Ledger sort key for one transition on one channel.
pub fn note_sk(transition_key: &str, version: u64, channel: &str) -> String {
    format!("NOTE#{transition_key}@v{version}#{channel}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Priority, Recipient};
    use chrono::TimeZone;

    #[test]
    fn a_write_is_hot_only_when_the_schedule_alone_moved_and_the_items_are_in_step() {
        let t = Utc.with_ymd_and_hms(2026, 11, 24, 8, 0, 0).unwrap();
        let mut held = Shipment::register(
            ShipmentId::parse("YTO", "YT1000000000001").unwrap(),
            Priority::Normal,
            "kdniao",
            Recipient::default(),
            None,
            t,
        );
        let mut next = held.clone();
        next.checked_at = Some(t);
        next.next_check_at = Some(t + chrono::Duration::hours(2));
        // As created (due keys on META): full, whatever changed.
        assert!(held.needs_full_write);
        assert_eq!(WriteKind::of(&held, &next), WriteKind::Full);
        held.needs_full_write = false;
        next.needs_full_write = false;
        assert_eq!(WriteKind::of(&held, &next), WriteKind::Hot);
        assert_eq!(WriteKind::of(&held, &held), WriteKind::Hot, "nothing moved");
        let mut other = next.clone();
        other.last_provider = Some("kuaidi100".into());
        assert_eq!(WriteKind::of(&held, &other), WriteKind::Full);
        let mut other = next.clone();
        other.event_count += 1;
        assert_eq!(WriteKind::of(&held, &other), WriteKind::Full);
    }
}
