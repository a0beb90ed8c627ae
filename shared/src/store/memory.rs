//! In-memory store for fast handler tests. Same conditional semantics as the DynamoDB adapter,
//! the two items of a shipment included (`META` and `SCHED`, hot and full writes, a full write
//! that can be cut between its two puts); never the only proof (the integration tests run the
//! DynamoDB adapter against the local stack).

use super::record::{META, SCHED};
use super::{
    Claim, DueEntry, DueIndex, DuePosition, Ledger, Saved, ShipmentStore, StoreError, Watermarks,
    WriteKind,
};
use crate::domain::{fmt_time, EventKey, Shipment, ShipmentId, TraceEvent};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub state: String,
    pub claimed_at: DateTime<Utc>,
    pub message_id: Option<String>,
}

/// A shipment's `SCHED` item (see [`super::SchedRecord`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sched {
    pub checked_at: Option<DateTime<Utc>>,
    pub next_check_at: Option<DateTime<Utc>>,
    /// The `META` version it goes with (ahead of `META`'s while a full write is cut short).
    pub version: u64,
    pub sv: u64,
}

/// The two items of a shipment as DynamoDB holds them: `META` (the shipment as its last full
/// write, or its creation, left it; its `needs_full_write` says it still carries the due-index
/// keys) and `SCHED`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Items {
    pub meta: Shipment,
    pub sched: Option<Sched>,
}

impl Items {
    /// What [`ShipmentStore::get`] answers: `META` with `SCHED`'s hot fields laid over it.
    pub fn shipment(&self) -> Shipment {
        let mut s = self.meta.clone();
        s.sched_version = 0;
        if let Some(h) = &self.sched {
            s.checked_at = h.checked_at;
            s.next_check_at = h.next_check_at;
            s.sched_version = h.sv;
            s.needs_full_write |= h.version != s.version;
        }
        s
    }
}

#[derive(Default)]
pub struct MemoryStore {
    shards: u32,
    pub shipments: Mutex<BTreeMap<ShipmentId, Items>>,
    pub events: Mutex<BTreeMap<(ShipmentId, EventKey), TraceEvent>>,
    pub ledger: Mutex<BTreeMap<(ShipmentId, String), LedgerEntry>>,
    /// The scheduler's watermark item (`None`: not written yet).
    pub watermarks: Mutex<Option<Watermarks>>,
    /// Writes of `META` items (creations and full writes): the records the stream consumers
    /// would see. Hot writes are not counted.
    pub meta_writes: std::sync::atomic::AtomicU64,
}

impl MemoryStore {
    pub fn new(shards: u32) -> Self {
        MemoryStore {
            shards: shards.max(1),
            ..Default::default()
        }
    }
    /// Put the shipment as given, unconditionally: `META` as it is (with the due-index keys if
    /// `s.needs_full_write` and it is due), and a `SCHED` item from its hot fields when
    /// `s.sched_version > 0` (none otherwise).
    pub fn insert(&self, mut s: Shipment) {
        s.needs_full_write &= s.next_check_at.is_some();
        let sched = (s.sched_version > 0).then_some(Sched {
            checked_at: s.checked_at,
            next_check_at: s.next_check_at,
            version: s.version,
            sv: s.sched_version,
        });
        lock(&self.shipments).insert(s.id.clone(), Items { meta: s, sched });
    }
    /// The shipment as [`ShipmentStore::get`] reads it.
    pub fn shipment(&self, id: &ShipmentId) -> Option<Shipment> {
        lock(&self.shipments).get(id).map(Items::shipment)
    }
    /// The shipment's two items as stored.
    pub fn items(&self, id: &ShipmentId) -> Option<Items> {
        lock(&self.shipments).get(id).cloned()
    }
    pub fn event_count(&self, id: &ShipmentId) -> usize {
        lock(&self.events).keys().filter(|(i, _)| i == id).count()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means another test thread panicked; the data is still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl MemoryStore {
    /// The lines, then SCHED. `Ok(Some)`: the full write's META part is still to do.
    fn save_lines_and_sched(
        &self,
        held: &Shipment,
        updated: &Shipment,
        new_events: &[(EventKey, TraceEvent)],
    ) -> Result<(Saved, Option<Shipment>), StoreError> {
        let kind = match new_events.is_empty() {
            true => WriteKind::of(held, updated),
            false => WriteKind::Full,
        };
        let mut next = updated.clone();
        next.sched_version = held.sched_version + 1;
        next.version = match kind {
            WriteKind::Hot => held.version,
            WriteKind::Full => held.version + 1,
        };
        if kind == WriteKind::Full {
            let mut ev = lock(&self.events);
            for (k, e) in new_events {
                ev.insert((next.id.clone(), *k), e.clone());
            }
        }
        let mut m = lock(&self.shipments);
        let Some(items) = m.get_mut(&next.id) else {
            return Err(StoreError::Conflict(format!("{} does not exist", next.id)));
        };
        let sv = items.sched.as_ref().map_or(0, |h| h.sv);
        if sv != held.sched_version {
            return Err(StoreError::Conflict(format!(
                "{} SCHED is at sv {sv}, not {}",
                next.id, held.sched_version
            )));
        }
        items.sched = Some(Sched {
            checked_at: next.checked_at,
            next_check_at: next.next_check_at,
            version: next.version,
            sv: next.sched_version,
        });
        let saved = Saved {
            kind,
            version: next.version,
            sched_version: next.sched_version,
        };
        Ok((saved, (kind == WriteKind::Full).then_some(next)))
    }

    /// A full write's last step: META, conditional on the version `expected`.
    fn save_meta(&self, expected: u64, mut next: Shipment) -> Result<(), StoreError> {
        let mut m = lock(&self.shipments);
        let Some(items) = m.get_mut(&next.id) else {
            return Err(StoreError::Conflict(format!("{} does not exist", next.id)));
        };
        if items.meta.version != expected {
            return Err(StoreError::Conflict(format!(
                "{} is at version {}, not {expected}",
                next.id, items.meta.version
            )));
        }
        next.sched_version = 0;
        next.needs_full_write = false;
        items.meta = next;
        self.meta_writes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// A full write cut after its `SCHED` put: what a writer that died (or stalled) between
    /// its two puts leaves. For tests of the races; `Ok(None)` when the write was a hot one.
    pub fn save_until_meta(
        &self,
        held: &Shipment,
        updated: &Shipment,
        new_events: &[(EventKey, TraceEvent)],
    ) -> Result<Option<PendingMeta>, StoreError> {
        let (_, rest) = self.save_lines_and_sched(held, updated, new_events)?;
        Ok(rest.map(|next| PendingMeta {
            expected: held.version,
            next,
        }))
    }

    /// Finish a full write cut by [`MemoryStore::save_until_meta`].
    pub fn finish(&self, pending: PendingMeta) -> Result<(), StoreError> {
        self.save_meta(pending.expected, pending.next)
    }
}

/// The `META` put of a full write whose `SCHED` put has landed.
#[derive(Debug, Clone)]
pub struct PendingMeta {
    expected: u64,
    next: Shipment,
}

impl ShipmentStore for MemoryStore {
    async fn get(&self, id: &ShipmentId) -> Result<Option<Shipment>, StoreError> {
        Ok(self.shipment(id))
    }
    async fn create(&self, shipment: &Shipment) -> Result<bool, StoreError> {
        let mut m = lock(&self.shipments);
        if m.contains_key(&shipment.id) {
            return Ok(false);
        }
        let mut meta = shipment.clone();
        meta.sched_version = 0;
        meta.needs_full_write = meta.next_check_at.is_some();
        m.insert(shipment.id.clone(), Items { meta, sched: None });
        self.meta_writes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(true)
    }
    async fn trace(
        &self,
        id: &ShipmentId,
        limit: usize,
    ) -> Result<Vec<(EventKey, TraceEvent)>, StoreError> {
        Ok(lock(&self.events)
            .iter()
            .rev()
            .filter(|((i, _), _)| i == id)
            .take(limit)
            .map(|((_, k), e)| (*k, e.clone()))
            .collect())
    }
    async fn save(
        &self,
        held: &Shipment,
        updated: &Shipment,
        new_events: &[(EventKey, TraceEvent)],
    ) -> Result<Saved, StoreError> {
        let (saved, rest) = self.save_lines_and_sched(held, updated, new_events)?;
        if let Some(next) = rest {
            self.save_meta(held.version, next)?;
        }
        Ok(saved)
    }
}

impl DueIndex for MemoryStore {
    fn shards(&self) -> u32 {
        self.shards
    }
    async fn due_between(
        &self,
        shard: u32,
        after: Option<&DuePosition>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<DueEntry>, StoreError> {
        let until = fmt_time(until);
        let m = lock(&self.shipments);
        // The entries the items carry: SCHED's, and META's while it still has the keys.
        let mut due: Vec<DueEntry> = m
            .iter()
            .filter(|(id, _)| id.due_shard(self.shards) == shard)
            .flat_map(|(id, items)| {
                let meta = items
                    .meta
                    .next_check_at
                    .filter(|_| items.meta.needs_full_write)
                    .map(|t| (META, t));
                let sched = items
                    .sched
                    .as_ref()
                    .and_then(|h| h.next_check_at)
                    .map(|t| (SCHED, t));
                meta.into_iter().chain(sched).map(|(sk, t)| DueEntry {
                    id: id.clone(),
                    sk: sk.to_string(),
                    due_sk: fmt_time(t),
                })
            })
            .filter(|e| e.due_sk <= until)
            .filter(|e| after.is_none_or(|a| e.position() > *a))
            .collect();
        due.sort_by_key(DueEntry::position);
        due.truncate(limit);
        Ok(due)
    }
    async fn watermarks(&self) -> Result<Watermarks, StoreError> {
        Ok(lock(&self.watermarks).clone().unwrap_or_default())
    }
    async fn advance(&self, expected_run: u64, next: &Watermarks) -> Result<bool, StoreError> {
        let mut w = lock(&self.watermarks);
        if w.as_ref().map_or(0, |w| w.run) != expected_run {
            return Ok(false);
        }
        let mut next = next.clone();
        next.run = expected_run + 1;
        *w = Some(next);
        Ok(true)
    }
}

impl Ledger for MemoryStore {
    async fn claim(
        &self,
        id: &ShipmentId,
        note: &str,
        now: DateTime<Utc>,
        stale_after: Duration,
    ) -> Result<Claim, StoreError> {
        let mut l = lock(&self.ledger);
        let key = (id.clone(), note.to_string());
        let stale =
            now - chrono::Duration::from_std(stale_after).unwrap_or(chrono::Duration::minutes(5));
        match l.get(&key) {
            Some(e) if e.state == "sent" => return Ok(Claim::AlreadySent),
            Some(e) if e.state == "sending" && e.claimed_at >= stale => return Ok(Claim::InFlight),
            _ => {}
        }
        l.insert(
            key,
            LedgerEntry {
                state: "sending".into(),
                claimed_at: now,
                message_id: None,
            },
        );
        Ok(Claim::Claimed)
    }
    async fn complete(
        &self,
        id: &ShipmentId,
        note: &str,
        message_id: &str,
        _now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if let Some(e) = lock(&self.ledger).get_mut(&(id.clone(), note.to_string())) {
            e.state = "sent".into();
            e.message_id = Some(message_id.to_string());
        }
        Ok(())
    }
    async fn release(&self, id: &ShipmentId, note: &str, _reason: &str) -> Result<(), StoreError> {
        if let Some(e) = lock(&self.ledger).get_mut(&(id.clone(), note.to_string())) {
            if e.state == "sending" {
                e.state = "failed".into();
            }
        }
        Ok(())
    }
}
