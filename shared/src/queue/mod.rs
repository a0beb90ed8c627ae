//! The tracking queue: what the scheduler sends and the tracker receives.

pub mod sqs;

use crate::domain::{fmt_time, ShipmentId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::future::Future;

pub use sqs::SqsQueue;

/// Body of one tracking-queue message: "check this parcel".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackMessage {
    pub carrier: String,
    pub number: String,
    /// When the scheduler found it due (for lag metrics).
    pub due_at: String,
}

impl TrackMessage {
    pub fn new(id: &ShipmentId, due_at: DateTime<Utc>) -> Self {
        TrackMessage {
            carrier: id.carrier.to_string(),
            number: id.number.to_string(),
            due_at: fmt_time(due_at),
        }
    }
    /// Parse and validate a message body. The error says what is wrong, for the DLQ record.
    pub fn parse(body: &str) -> Result<(TrackMessage, ShipmentId), String> {
        let m: TrackMessage =
            serde_json::from_str(body).map_err(|e| format!("body is not a track message: {e}"))?;
        let id = ShipmentId::parse(&m.carrier, &m.number).map_err(|e| e.to_string())?;
        Ok((m, id))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue temporarily unavailable: {0}")]
    Retryable(String),
    #[error("queue rejected the request: {0}")]
    Permanent(String),
}

/// One entry of a batch send: an id unique within the batch, and the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub id: String,
    pub body: String,
}

pub trait MessageSink: Send + Sync {
    /// Send up to 10 entries; returns the ids of the entries that failed (SendMessageBatch `Failed`).
    fn send_batch(
        &self,
        entries: &[Outgoing],
    ) -> impl Future<Output = Result<Vec<String>, QueueError>> + Send;
}

/// Where a message that can never succeed goes, with the reason.
pub trait DeadLetters: Send + Sync {
    fn dead_letter(
        &self,
        body: &str,
        reason: &str,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;
}
