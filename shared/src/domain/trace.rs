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
            // More than 65,536 lines in one second is no carrier's trace: the excess is dropped
            // rather than wrapped onto (and overwriting) the second's first keys.
            Some((k, _)) if k.time == e.time => match k.seq.checked_add(1) {
                Some(seq) => seq,
                None => continue,
            },
            _ => 0,
        };
        out.push((EventKey { time: e.time, seq }, e));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    #[test]
    fn keys_of_one_second_never_wrap() {
        let t = Utc.with_ymd_and_hms(2026, 11, 24, 8, 0, 0).unwrap();
        let ev = |time| TraceEvent {
            time,
            description: "scan".into(),
            location: None,
            status: None,
            raw_code: None,
        };
        let mut events: Vec<TraceEvent> = (0..70_000).map(|_| ev(t)).collect();
        events.push(ev(t + chrono::Duration::seconds(1)));
        let keyed = keyed_events(&events);
        assert_eq!(
            keyed.len(),
            65_536 + 1,
            "the excess of one second is dropped"
        );
        let mut keys: Vec<EventKey> = keyed.iter().map(|(k, _)| *k).collect();
        keys.dedup();
        assert_eq!(keys.len(), keyed.len(), "every key unique");
        assert_eq!(
            keyed.last().unwrap().0.seq,
            0,
            "the next second starts at 0"
        );
    }
}
