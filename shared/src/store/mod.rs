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
pub use record::{BadRecord, EventRecord, ShipmentRecord};

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

/// Read and write shipments.
pub trait ShipmentStore: Send + Sync {
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

    /// Insert if absent. `Ok(false)` when the shipment already exists (registration is idempotent).
    fn create(&self, shipment: &Shipment) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Write the trace lines (idempotent: deterministic keys) and then the shipment, on condition
    /// that its stored version is still `shipment.version`. Returns the new version.
    /// `Err(Conflict)` when someone else wrote in between: re-read and decide again.
    fn save(
        &self,
        shipment: &Shipment,
        new_events: &[(EventKey, TraceEvent)],
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// The shipment's trace lines, newest first, at most `limit`.
    fn trace(
        &self,
        id: &ShipmentId,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<(EventKey, TraceEvent)>, StoreError>> + Send;
}

/// One entry of the due index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueEntry {
    pub id: ShipmentId,
    /// The due time as stored (the lease is conditional on it).
    pub due_sk: String,
}

/// The sparse, sharded due index.
pub trait DueIndex: Send + Sync {
    fn shards(&self) -> u32;
    /// Shipments of one shard due at or before `until`, oldest first, at most `limit`.
    fn due(
        &self,
        shard: u32,
        until: DateTime<Utc>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<DueEntry>, StoreError>> + Send;
    /// Push the due time to `until` while the check is in flight, on condition that nobody else
    /// leased or checked it meanwhile. `Ok(false)`: someone did; do not enqueue it.
    fn lease(
        &self,
        entry: &DueEntry,
        until: DateTime<Utc>,
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
