//! Trace lines and a provider's answer for one waybill.

use super::status::{Status, SubStatus};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One normalized line of a parcel's trajectory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceEvent {
    pub time: DateTime<Utc>,
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Canonical status of this line when the provider classifies lines (Kdniao 8001 `Action`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// The provider's raw code for this line, kept as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_code: Option<String>,
}

/// Position of an event in a trajectory: its time, then its index among lines with that same time.
/// Orders events stably even when a carrier stamps several lines with one second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EventKey {
    pub time: DateTime<Utc>,
    pub seq: u16,
}

impl EventKey {
    /// Sort key of the trace item: `EVT#2026-11-24T06:00:00Z#000`.
    pub fn sk(&self) -> String {
        format!("EVT#{}#{:03}", super::fmt_time(self.time), self.seq)
    }
}

/// What a provider said about one waybill at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceSnapshot {
    pub status: Status,
    pub sub_status: Option<SubStatus>,
    /// In any order; [`keyed_events`] sorts them.
    pub events: Vec<TraceEvent>,
}

/// Sort events ascending by time (stable for equal times) and key them.
pub fn keyed_events(events: &[TraceEvent]) -> Vec<(EventKey, TraceEvent)> {
    let mut sorted: Vec<TraceEvent> = events.to_vec();
    sorted.sort_by_key(|e| e.time);
    let mut out: Vec<(EventKey, TraceEvent)> = Vec::with_capacity(sorted.len());
    for e in sorted {
        let seq = match out.last() {
            Some((k, _)) if k.time == e.time => k.seq + 1,
            _ => 0,
        };
        out.push((EventKey { time: e.time, seq }, e));
    }
    out
}
