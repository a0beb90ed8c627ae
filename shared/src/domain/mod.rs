//! Pure domain: types and rules. No AWS, no Lambda, no I/O.

pub mod cadence;
pub mod carriers;
pub mod check;
pub mod detect;
pub mod eta;
pub mod geo;
pub mod ids;
pub mod order;
pub mod schedule;
pub mod shipment;
pub mod stall;
pub mod stats;
pub mod status;
pub mod templates;
pub mod trace;

pub use cadence::{Cadence, LearnedCadence};
pub use carriers::CarrierInfo;
pub use check::{decide, CheckContext, Decision, Observation, ProviderRules, Source};
pub use detect::{detect, detect_carrier, Candidate};
pub use ids::{Carrier, IdError, PhoneLast4, PhoneNumber, SealedPhone, ShipmentId, TrackingNumber};
pub use schedule::{
    check_interval, next_check_at, plan_next_check, safety_net_check, Priority, SAFETY_NET,
};
pub use schedule::{Expiry, NextCheck, ScheduleInput};
pub use shipment::{Ignored, Locale, Recipient, SchedulePolicy, Shipment, Transition, HOT_FIELDS};
pub use stall::{NoHistory, StageHistory};
pub use status::{Status, SubStatus};
pub use templates::{render, Notification};
pub use trace::{identify, EventKey, LineId, TraceEvent, TraceSnapshot, FUTURE_TOLERANCE};

use chrono::{DateTime, SecondsFormat, Utc};

/// The one text form of an instant in the table and the queue: RFC 3339, UTC, whole seconds,
/// fixed width, so that string order is time order (the due index sorts on it).
pub fn fmt_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}
