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

/// The shortest time a provider allows between two queries of the same waybill: Kuaidi100 locks
/// a waybill queried more than once per 30 minutes. `None`: no such rule.
pub fn provider_requery_floor(provider: &str) -> Option<Duration> {
    match provider {
        "kuaidi100" => Some(Duration::minutes(30)),
        _ => None,
    }
}

/// The next check, no earlier than the answering provider allows.
pub fn respect_requery_floor(
    next: Option<DateTime<Utc>>,
    provider: &str,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    match provider_requery_floor(provider) {
        Some(floor) => next.map(|t| t.max(now + floor)),
        None => next,
    }
}

/// How long a push-subscribed shipment may go without news before we poll it once ourselves:
/// the safety net under a subscription (a lost push, a provider that stopped pushing).
pub const SAFETY_NET: Duration = Duration::hours(12);

/// The next check of a shipment whose provider pushes its changes: one safety-net poll
/// [`SAFETY_NET`] after the last news, none once terminal.
pub fn safety_net_check(status: Status, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    (!status.is_terminal()).then(|| now + SAFETY_NET)
}

pub fn next_check_at(
    status: Status,
    priority: Priority,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    check_interval(status, priority).map(|d| now + d)
}

/// Beijing time (UTC+8): when couriers in China go out on delivery.
fn china_hour(t: DateTime<Utc>) -> u32 {
    use chrono::Timelike;
    (t + Duration::hours(8)).hour()
}

/// Couriers leave for their rounds from about 07:00 and stop by 21:00 Beijing time.
const ROUNDS_START_HOUR: u32 = 7;
const ROUNDS_END_HOUR: u32 = 21;

/// The next check, knowing how long the parcel has been in its status:
/// - the status interval of [`check_interval`];
/// - a parcel not yet picked up is checked every half hour for its first two hours, then every
///   90 minutes (high tier: 15 then 30): labels are often printed hours before the courier comes;
/// - a parcel waiting in its destination city overnight is not out for delivery before the
///   morning rounds: a check that would fall between 21:00 and 07:00 Beijing time waits for 07:00.
pub fn plan_next_check(
    status: Status,
    priority: Priority,
    status_since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let interval = match status {
        Status::Pending | Status::InfoReceived => {
            let early = now - status_since < Duration::hours(2);
            Some(match (priority, early) {
                (Priority::High, true) => Duration::minutes(15),
                (Priority::High, false) => Duration::minutes(30),
                (Priority::Normal, true) => Duration::minutes(30),
                (Priority::Normal, false) => Duration::minutes(90),
            })
        }
        s => check_interval(s, priority),
    }?;
    let mut next = now + interval;
    if status == Status::ArrivedAtDestinationCity {
        let h = china_hour(next);
        if !(ROUNDS_START_HOUR..ROUNDS_END_HOUR).contains(&h) {
            let hours_to_morning = (24 + ROUNDS_START_HOUR - h) % 24;
            use chrono::{DurationRound, Timelike};
            let top_of_hour = next.duration_trunc(Duration::hours(1)).unwrap_or(next);
            next = top_of_hour + Duration::hours(i64::from(hours_to_morning));
            debug_assert_eq!(china_hour(next), ROUNDS_START_HOUR);
            debug_assert_eq!(next.minute(), 0);
        }
    }
    Some(next)
}

#[cfg(test)]
mod plan_tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, h, m, 0).unwrap()
    }

    #[test]
    fn a_parcel_not_yet_picked_up_backs_off_after_two_hours() {
        let since = utc(0, 0);
        assert_eq!(
            plan_next_check(Status::Pending, Priority::Normal, since, utc(1, 0)),
            Some(utc(1, 30))
        );
        assert_eq!(
            plan_next_check(Status::Pending, Priority::Normal, since, utc(3, 0)),
            Some(utc(4, 30))
        );
        assert_eq!(
            plan_next_check(Status::InfoReceived, Priority::High, since, utc(3, 0)),
            Some(utc(3, 30))
        );
    }

    #[test]
    fn arrived_in_city_overnight_waits_for_the_morning_rounds() {
        // 14:30 UTC = 22:30 Beijing: next check 07:00 Beijing = 23:00 UTC.
        let at = utc(14, 30);
        assert_eq!(
            plan_next_check(Status::ArrivedAtDestinationCity, Priority::Normal, at, at),
            Some(utc(23, 0))
        );
        // 02:00 UTC = 10:00 Beijing: the plain hourly interval.
        let day = utc(2, 0);
        assert_eq!(
            plan_next_check(Status::ArrivedAtDestinationCity, Priority::Normal, day, day),
            Some(utc(3, 0))
        );
        // Out for delivery is never held back.
        assert_eq!(
            plan_next_check(Status::OutForDelivery, Priority::Normal, at, at),
            Some(at + Duration::minutes(10))
        );
        assert_eq!(
            plan_next_check(Status::Delivered, Priority::Normal, at, at),
            None
        );
    }
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
