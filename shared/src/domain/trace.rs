//! Trace lines and a provider's answer for one waybill.

use super::status::{Status, SubStatus};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One normalized line of a parcel's trajectory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
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
    /// The time the provider stated, when it lay beyond now + [`FUTURE_TOLERANCE`] as we first
    /// saw the line (a carrier scanner with a wrong clock, a mis-zoned timestamp): `time` is
    /// then the moment we first saw it. Such a line is kept and shown, flagged, but it neither
    /// counts as the parcel's newest line nor moves its schedule or stall clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_time: Option<DateTime<Utc>>,
}

impl TraceEvent {
    /// The line's identity: its stated time and text, the carrier's scan as every provider
    /// relays it. What providers add of their own is left out — the classification (`status`,
    /// `raw_code`) and the place (`location`, which Kdniao and Kuaidi100 derive differently) —
    /// so the same scan seen through another provider after a failover is the same line.
    pub fn line_id(&self) -> LineId {
        let stated = self.claimed_time.unwrap_or(self.time);
        let mut h = Fnv::new();
        h.write(super::fmt_time(stated).as_bytes());
        h.write(&[0x1f]);
        h.write(self.description.trim().as_bytes());
        LineId(h.finish() & LineId::MASK)
    }

    /// Flagged as dated in the future when first seen (see [`TraceEvent::claimed_time`]).
    pub fn is_future_dated(&self) -> bool {
        self.claimed_time.is_some()
    }
}

/// A line dated more than this after the moment we see it is future-dated: kept with its time
/// clamped to that moment and flagged ([`TraceEvent::claimed_time`]). Ten minutes absorbs the
/// clock skew of carrier scanners; a whole hour of difference is a wrong clock or time zone.
pub const FUTURE_TOLERANCE: chrono::Duration = chrono::Duration::minutes(10);

/// FNV-1a, 64 bits: a fixed, dependency-free hash, stable across builds and platforms (the
/// standard library's hasher is neither), so stored identities stay valid.
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// The identity of a trace line: 40 bits of its [`TraceEvent::line_id`] hash. Two different
/// lines of one parcel collide with a chance of about n²/2⁴¹ (10⁻⁹ for 50 lines).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LineId(pub u64);

impl LineId {
    const MASK: u64 = (1 << 40) - 1;
    /// Hex digits of one id in keys and in the shipment's set of held lines.
    pub const HEX: usize = 10;

    pub fn hex(self) -> String {
        format!("{:010x}", self.0)
    }

    pub fn parse_hex(s: &str) -> Option<LineId> {
        (s.len() <= Self::HEX)
            .then(|| u64::from_str_radix(s, 16).ok())
            .flatten()
            .map(LineId)
    }
}

/// Position of a line in a trajectory: its time, then its identity. Lines keep distinct keys
/// even when a carrier stamps several with one second, and the same line always gets the same
/// key, so rewriting it (a retry, a redelivery, the same line by push and by poll) never
/// duplicates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EventKey {
    pub time: DateTime<Utc>,
    pub id: LineId,
}

impl EventKey {
    pub fn of(e: &TraceEvent) -> EventKey {
        EventKey {
            time: e.time,
            id: e.line_id(),
        }
    }

    /// Sort key of the trace item: `EVT#2026-11-24T06:00:00Z#00a1b2c3d4`. Items written before
    /// lines had identities end in a three-digit sequence (`#000`), read as that number.
    pub fn sk(&self) -> String {
        format!("EVT#{}#{}", super::fmt_time(self.time), self.id.hex())
    }
}

/// What a provider said about one waybill at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceSnapshot {
    pub status: Status,
    pub sub_status: Option<SubStatus>,
    /// In any order, possibly repeated; [`identify`] sorts them and drops repeats.
    pub events: Vec<TraceEvent>,
}

/// The answer's lines as seen at `now`: future-dated ones clamped to `now` and flagged, each
/// keyed by its time and identity, repeats dropped, ascending by key.
pub fn identify(events: &[TraceEvent], now: DateTime<Utc>) -> Vec<(EventKey, TraceEvent)> {
    let mut out: Vec<(EventKey, TraceEvent)> = events
        .iter()
        .map(|e| {
            let mut e = e.clone();
            if e.claimed_time.is_none() && e.time > now + FUTURE_TOLERANCE {
                e.claimed_time = Some(e.time);
                e.time = now;
            }
            (EventKey::of(&e), e)
        })
        .collect();
    out.sort_by_key(|(k, _)| *k);
    let mut seen = std::collections::HashSet::with_capacity(out.len());
    out.retain(|(k, _)| seen.insert(k.id));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn ev(time: DateTime<Utc>, d: &str) -> TraceEvent {
        TraceEvent {
            time,
            description: d.into(),
            ..TraceEvent::default()
        }
    }

    #[test]
    fn lines_are_keyed_by_identity_and_repeats_dropped() {
        let t = Utc.with_ymd_and_hms(2026, 11, 24, 8, 0, 0).unwrap();
        let now = t + chrono::Duration::hours(1);
        let lines = vec![ev(t, "发出"), ev(t, "到达"), ev(t, "发出"), ev(t, "到达")];
        let keyed = identify(&lines, now);
        assert_eq!(keyed.len(), 2, "two distinct lines of one second");
        assert_ne!(keyed[0].0, keyed[1].0);
        // Reclassifying a line does not change its identity; rewording does.
        let mut coded = ev(t, "发出");
        coded.raw_code = Some("2".into());
        coded.status = Some(Status::InTransit);
        assert_eq!(coded.line_id(), ev(t, "发出").line_id());
        assert_ne!(ev(t, "发出 ").line_id().0, ev(t, "已发出").line_id().0);
        assert_ne!(
            ev(t, "发出").line_id(),
            ev(t + chrono::Duration::seconds(1), "发出").line_id()
        );
        // The key round-trips through its sort key text.
        let k = keyed[0].0;
        let hex = k.sk().rsplit('#').next().unwrap().to_string();
        assert_eq!(hex.len(), LineId::HEX);
        assert_eq!(LineId::parse_hex(&hex), Some(k.id));
    }

    #[test]
    fn a_future_dated_line_is_clamped_flagged_and_keeps_its_identity() {
        let now = Utc.with_ymd_and_hms(2026, 11, 24, 8, 0, 0).unwrap();
        let future = Utc.with_ymd_and_hms(2099, 1, 1, 0, 0, 0).unwrap();
        let keyed = identify(&[ev(future, "签收")], now);
        let (k, e) = &keyed[0];
        assert_eq!(e.time, now);
        assert_eq!(e.claimed_time, Some(future));
        assert!(e.is_future_dated());
        assert_eq!(k.time, now);
        // Seen again later: clamped to another moment, the same line all the same.
        let later = identify(&[ev(future, "签收")], now + chrono::Duration::hours(3));
        assert_eq!(later[0].0.id, k.id);
        assert_ne!(later[0].0.time, k.time);
        // Within the tolerance a line is taken as dated.
        let soon = now + FUTURE_TOLERANCE;
        assert_eq!(identify(&[ev(soon, "派件")], now)[0].1.claimed_time, None);
    }
}
