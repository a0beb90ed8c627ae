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
        // At the door: the buyer is waiting, keep to the tier.
        Status::OutForDelivery | Status::DeliveryFailed => Some(tier),
        // In a locker or station the buyer already holds the code; collection is not urgent news.
        Status::AvailableForPickup => scaled(60),
        Status::ArrivedAtDestinationCity => scaled(60),
        Status::Pending | Status::InfoReceived => scaled(60),
        Status::PickedUp | Status::Exception => scaled(60),
        Status::InTransit => scaled(120),
        // The way back to the merchant takes days.
        Status::Returning => scaled(240),
        _ => Some(tier),
    }
}

pub fn next_check_at(
    status: Status,
    priority: Priority,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    check_interval(status, priority).map(|d| now + d)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every status, both tiers, in minutes (`None` = stop checking).
    #[test]
    fn interval_by_status_and_tier() {
        use Status::*;
        let table: [(Status, Option<i64>, Option<i64>); 13] = [
            // (status, high, normal)
            (Pending, Some(15), Some(60)),
            (InfoReceived, Some(15), Some(60)),
            (PickedUp, Some(15), Some(60)),
            (InTransit, Some(30), Some(120)),
            (ArrivedAtDestinationCity, Some(15), Some(60)),
            (OutForDelivery, Some(2), Some(10)),
            (AvailableForPickup, Some(15), Some(60)),
            (Delivered, None, None),
            (DeliveryFailed, Some(2), Some(10)),
            (Exception, Some(15), Some(60)),
            (Returning, Some(60), Some(240)),
            (Returned, None, None),
            (Expired, None, None),
        ];
        assert_eq!(
            table.iter().map(|r| r.0).collect::<Vec<_>>(),
            Status::ALL.to_vec()
        );
        for (status, high, normal) in table {
            assert_eq!(
                check_interval(status, Priority::High).map(|d| d.num_minutes()),
                high,
                "{status} high"
            );
            assert_eq!(
                check_interval(status, Priority::Normal).map(|d| d.num_minutes()),
                normal,
                "{status} normal"
            );
        }
    }

    #[test]
    fn high_is_never_slower_than_normal_nor_faster_than_its_tier() {
        for status in Status::ALL {
            match (
                check_interval(status, Priority::High),
                check_interval(status, Priority::Normal),
            ) {
                (Some(h), Some(n)) => {
                    assert!(h <= n, "{status}");
                    assert!(h >= Priority::High.tier_interval(), "{status}");
                    assert!(n >= Priority::Normal.tier_interval(), "{status}");
                }
                (None, None) => assert!(status.is_terminal(), "{status}"),
                other => panic!("{status}: tiers disagree on stopping: {other:?}"),
            }
        }
    }

    #[test]
    fn next_check_at_adds_the_interval_or_stops() {
        let now = DateTime::parse_from_rfc3339("2026-11-24T06:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            next_check_at(Status::OutForDelivery, Priority::High, now),
            Some(now + Duration::minutes(2))
        );
        assert_eq!(
            next_check_at(Status::InTransit, Priority::Normal, now),
            Some(now + Duration::hours(2))
        );
        assert_eq!(next_check_at(Status::Delivered, Priority::High, now), None);
        assert_eq!(next_check_at(Status::Returned, Priority::Normal, now), None);
    }

    #[test]
    fn priority_names_round_trip() {
        for p in [Priority::High, Priority::Normal] {
            assert_eq!(Priority::parse(p.as_str()), Some(p));
        }
        assert_eq!(Priority::parse("urgent"), None);
    }
}
