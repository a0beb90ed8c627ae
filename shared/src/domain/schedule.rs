//! When to look at a parcel again.

use super::status::Status;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// Merchant-chosen priority tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    High,
    #[default]
    Normal,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Normal => "normal",
        }
    }
    pub fn parse(s: &str) -> Option<Priority> {
        match s {
            "high" => Some(Priority::High),
            "normal" => Some(Priority::Normal),
            _ => None,
        }
    }
    /// The tier's interval: how fresh the parcel is kept when the buyer is waiting at the door.
    pub fn tier_interval(self) -> Duration {
        match self {
            Priority::High => Duration::minutes(2),
            Priority::Normal => Duration::minutes(10),
        }
    }
}

/// How long to wait before the next check, by status and tier. `None` = stop checking.
///
/// Near delivery (out for delivery, waiting in a locker, a failed attempt) the tier interval
/// applies; earlier stages move in hours, so checking them every few minutes only spends quota.
pub fn check_interval(status: Status, priority: Priority) -> Option<Duration> {
    let tier = priority.tier_interval();
    let scaled = |normal_minutes: i64| {
        let m = match priority {
            Priority::High => (normal_minutes / 4).max(tier.num_minutes()),
            Priority::Normal => normal_minutes,
        };
        Some(Duration::minutes(m))
    };
    match status {
        s if s.is_terminal() => None,
        Status::OutForDelivery | Status::AvailableForPickup | Status::DeliveryFailed => Some(tier),
        Status::ArrivedAtDestinationCity => scaled(30),
        Status::Pending | Status::InfoReceived => scaled(60),
        Status::PickedUp | Status::Exception => scaled(60),
        Status::InTransit | Status::Returning => scaled(120),
        _ => Some(tier),
    }
}

pub fn next_check_at(status: Status, priority: Priority, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    check_interval(status, priority).map(|d| now + d)
}
