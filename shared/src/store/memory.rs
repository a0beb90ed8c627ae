//! In-memory store for fast handler tests. Same conditional semantics as the DynamoDB adapter;
//! never the only proof (the integration tests run the DynamoDB adapter against the local stack).

use super::{
    Claim, DueEntry, DueIndex, DuePosition, Ledger, ShipmentStore, StoreError, Watermarks,
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

#[derive(Default)]
pub struct MemoryStore {
    shards: u32,
    pub shipments: Mutex<BTreeMap<ShipmentId, Shipment>>,
    pub events: Mutex<BTreeMap<(ShipmentId, EventKey), TraceEvent>>,
    pub ledger: Mutex<BTreeMap<(ShipmentId, String), LedgerEntry>>,
    /// The scheduler's watermark item (`None`: not written yet).
    pub watermarks: Mutex<Option<Watermarks>>,
}

impl MemoryStore {
    pub fn new(shards: u32) -> Self {
        MemoryStore {
            shards: shards.max(1),
            ..Default::default()
        }
    }
    pub fn insert(&self, s: Shipment) {
        lock(&self.shipments).insert(s.id.clone(), s);
    }
    pub fn shipment(&self, id: &ShipmentId) -> Option<Shipment> {
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

impl ShipmentStore for MemoryStore {
    async fn get(&self, id: &ShipmentId) -> Result<Option<Shipment>, StoreError> {
        Ok(self.shipment(id))
    }
    async fn create(&self, shipment: &Shipment) -> Result<bool, StoreError> {
        let mut m = lock(&self.shipments);
        if m.contains_key(&shipment.id) {
            return Ok(false);
        }
        m.insert(shipment.id.clone(), shipment.clone());
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
        shipment: &Shipment,
        new_events: &[(EventKey, TraceEvent)],
    ) -> Result<u64, StoreError> {
        {
            let mut ev = lock(&self.events);
            for (k, e) in new_events {
                ev.insert((shipment.id.clone(), *k), e.clone());
            }
        }
        let mut m = lock(&self.shipments);
        let stored = m.get(&shipment.id).map(|s| s.version);
        if stored != Some(shipment.version) {
            return Err(StoreError::Conflict(format!(
                "{} is at version {stored:?}, not {}",
                shipment.id, shipment.version
            )));
        }
        let mut next = shipment.clone();
        next.version += 1;
        let v = next.version;
        m.insert(shipment.id.clone(), next);
        Ok(v)
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
        let mut due: Vec<DueEntry> = m
            .values()
            .filter(|s| s.id.due_shard(self.shards) == shard)
            .filter_map(|s| {
                s.next_check_at.map(|t| DueEntry {
                    id: s.id.clone(),
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
