//! When to look at a parcel again: the adaptive check schedule ([`plan`]).
//!
//! The aim is push-like freshness where the buyer is waiting at a fraction of the calls of a
//! fixed poll (`local/src/checksim.rs` measures both on the simulated journeys). The rules, each
//! with its table-driven tests below:
//! - **terminal**: stop. **Expiry**: a parcel without a new line for 30 days, or without any line
//!   a week after registration, becomes Expired ([`Expiry`]).
//! - **subscribed** to pushes: one safety-net poll [`SAFETY_NET`] after the last news.
//! - **near delivery**: out for delivery, the tier interval (normal 10 min, high 2 min) for the
//!   courier's round ([`ROUND`]); a failed attempt starts there and backs off. Where the
//!   carrier's history has taught a quiet start (the 2nd percentile of the time from the 派件
//!   scan to the next line), the round's start is checked at the stage cap instead.
//! - **earlier stages**: about two checks per usual gap between the carrier's lines
//!   (`cadence`: learned figures override the defaults), at least 30 min. The high tier is kept
//!   fresher in the buyer's city only (three checks per gap, at least 20 min, caps at three
//!   quarters): before it, nothing the buyer waits on can happen, and it is where the calls of a
//!   fresher tier would go for nothing (`local/src/checksim.rs` measures the trade).
//! - **back-off**: the interval grows with the time without news (a quarter of it) up to a
//!   per-stage cap kept below the shortest stage that can follow; any news resets it. Stalled
//!   parcels (two days without news) spread out to 12 h.
//! - **night**: what cannot move before the 07:00 Beijing rounds waits for them.
//! - **provider floor**: Kuaidi100's 30 minutes between two queries, applied by the decision
//!   that knows who answered ([`super::check::ProviderRules::requery_floor`]).

use super::cadence::{typical_gap, Cadence};
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

/// How long to wait before the next check of a parcel that has just reached `status` (nothing
/// idle yet), at the default cadence (a Tongda-family carrier). `None` = stop checking.
///
/// Near delivery (out for delivery, a failed attempt) the tier interval applies; earlier stages
/// move in hours, so checking them every few minutes only spends quota. See [`plan`] for the
/// whole schedule (back-off, carrier cadence, night, expiry).
pub fn check_interval(status: Status, priority: Priority) -> Option<Duration> {
    base_interval(status, priority, "", Cadence::DEFAULT)
}

/// The shortest time a provider allows between two queries of the same waybill: Kuaidi100 locks
/// a waybill queried more than once per 30 minutes. `None`: no such rule.
pub fn provider_requery_floor(provider: &str) -> Option<Duration> {
    match provider {
        "kuaidi100" => Some(Duration::minutes(30)),
        _ => None,
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

/// A parcel out for delivery this long has outlived its courier's round (out in the morning,
/// back by the evening): from then on it backs off like any other stage.
pub const ROUND: Duration = Duration::hours(12);

/// Idle this long, a parcel is stalled rather than between two scans: past Kdniao's own "no
/// update in time" verdict (StateEx 403), which it issues after about a day without a scan. Its
/// next news is likely days away, so checks spread out to [`STALLED_CAP`].
pub const STALLED_AFTER: Duration = Duration::hours(48);

/// The longest wait between two checks of a stalled parcel: the push safety net's interval.
pub const STALLED_CAP: Duration = SAFETY_NET;

/// When a parcel that has not moved for a long time stops being tracked: [`Status::Expired`].
///
/// The defaults follow the public trackers: 17TRACK stops tracking "after 30 days of no event
/// changes" (help.17track.net, "Why tracking stopped? How to restart it") and AfterShip turns a
/// shipment without tracking information for 30 days to Expired and stops tracking it
/// (AfterShip delivery statuses; support article "Updating pending statuses"). A waybill that
/// never got a single line is given up sooner: 17TRACK's own store integration stops looking for
/// a number without information after 120 hours (help-shopify.17track.net); we wait a week,
/// since domestic labels are sometimes printed days before the goods leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    /// Time since the newest trace line (carrier time) after which tracking stops.
    pub after_last_line: Duration,
    /// Time since registration after which a waybill without any trace line stops.
    pub without_any_line: Duration,
}

impl Expiry {
    pub const DEFAULT: Expiry = Expiry {
        after_last_line: Duration::days(30),
        without_any_line: Duration::days(7),
    };

    /// The instant the parcel expires if nothing new comes before it.
    pub fn expires_at(
        &self,
        last_line_at: Option<DateTime<Utc>>,
        registered_at: DateTime<Utc>,
    ) -> DateTime<Utc> {
        let (from, after) = match last_line_at {
            Some(t) => (t, self.after_last_line),
            None => (registered_at, self.without_any_line),
        };
        // A window too large to add (a misconfiguration) means "never".
        from.checked_add_signed(after)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

impl Default for Expiry {
    fn default() -> Self {
        Expiry::DEFAULT
    }
}

/// Everything the next check depends on, read from the shipment (see
/// `Shipment::schedule_input`) plus the learned cadence and the expiry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleInput<'a> {
    pub status: Status,
    pub priority: Priority,
    /// parcelwatch's carrier code (Kdniao ShipperCode): selects the default cadence.
    pub carrier: &'a str,
    /// When we saw the parcel reach its status (`Shipment::status_changed_at`).
    pub status_since: DateTime<Utc>,
    /// Carrier time of the newest trace line held, if any.
    pub last_line_at: Option<DateTime<Utc>>,
    pub registered_at: DateTime<Utc>,
    /// Pushes tell us about the parcel: polling is only the safety net.
    pub subscribed: bool,
    /// The carrier's learned cadence at this stage ([`Cadence::DEFAULT`]: the default table).
    pub cadence: Cadence,
    pub expiry: Expiry,
    pub now: DateTime<Utc>,
}

/// What to do after a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextCheck {
    At(DateTime<Utc>),
    /// Terminal status: tracking is over.
    Stop,
    /// Nothing new for too long ([`Expiry`]): the parcel becomes [`Status::Expired`].
    Expire,
}

impl NextCheck {
    pub fn at(self) -> Option<DateTime<Utc>> {
        match self {
            NextCheck::At(t) => Some(t),
            NextCheck::Stop | NextCheck::Expire => None,
        }
    }
}

/// Statuses where the buyer is waiting at the door and the tier interval is the floor.
fn near_delivery(status: Status) -> bool {
    matches!(status, Status::OutForDelivery | Status::DeliveryFailed)
}

/// The longest interval at a stage while the parcel is not stalled: shorter than the shortest
/// stage that can follow, so that no buyer-facing stage is stepped over unseen (the journey
/// simulator's shortest stages, see `local/src/sandbox/journey.rs`: picked up ≥ 2 h, destination
/// city ≥ 2 h before the courier, out for delivery ≥ 1.5 h, a 412 "locker overdue" ≥ 2 h before
/// collection, a 403 verdict ≥ 4 h). High tier in the buyer's city: three quarters of it.
/// Minutes, normal tier.
fn stage_cap_minutes(status: Status) -> i64 {
    match status {
        // Next: picked up (≥ 2 h).
        Status::Pending | Status::InfoReceived => 90,
        // Next: in transit, then the destination city (≥ 2 h) or a verdict (≥ 4 h).
        Status::PickedUp | Status::InTransit => 120,
        // Next: out for delivery (≥ 1.5 h). An exception can be followed by it too: Kdniao
        // reports a failed attempt as 402, which maps to Exception, before the redelivery.
        Status::ArrivedAtDestinationCity | Status::DeliveryFailed | Status::Exception => 80,
        // After its round (see [`ROUND`]); next: a locker (≥ 3 h), a failed attempt, a return.
        Status::OutForDelivery => 80,
        // Next: the 412 "overdue" verdict (≥ 2 h before collection) or the collection.
        Status::AvailableForPickup => 90,
        // Next: back with the sender (terminal).
        Status::Returning => 480,
        _ => 120,
    }
}

fn stage_cap(status: Status, priority: Priority) -> Duration {
    let m = stage_cap_minutes(status);
    Duration::minutes(match (priority, in_destination(status)) {
        (Priority::High, true) => m * 3 / 4,
        _ => m,
    })
}

/// The stages at which the parcel is in the buyer's city: where the high tier is kept fresher.
fn in_destination(status: Status) -> bool {
    matches!(
        status,
        Status::ArrivedAtDestinationCity
            | Status::OutForDelivery
            | Status::AvailableForPickup
            | Status::DeliveryFailed
            | Status::Exception
    )
}

/// The interval at a stage just reached: about two checks per usual gap between the carrier's
/// lines (high tier in the buyer's city: three), no shorter than the floor (30 min; high tier
/// in the buyer's city 20), no longer than the stage cap. Near delivery it is the tier interval
/// itself: there the buyer's wait, not the carrier's rhythm, sets the pace.
fn base_interval(
    status: Status,
    priority: Priority,
    carrier: &str,
    cadence: Cadence,
) -> Option<Duration> {
    let gap = typical_gap(carrier, status, cadence)?;
    let tier = priority.tier_interval();
    if near_delivery(status) {
        return Some(tier);
    }
    let (divisor, floor) = match (priority, in_destination(status)) {
        (Priority::High, true) => (3, earlier_floor(priority)),
        _ => (2, earlier_floor(Priority::Normal)),
    };
    let cap = stage_cap(status, priority);
    Some((gap / divisor).max(floor).min(cap))
}

/// How long the parcel has gone without news: since the later of its status change (as we saw
/// it) and its newest trace line (carrier time, never later than now).
fn idle(input: &ScheduleInput) -> Duration {
    let moved = match input.last_line_at {
        Some(t) => input.status_since.max(t.min(input.now)),
        None => input.status_since,
    };
    (input.now - moved).max(Duration::zero())
}

/// The adaptive interval, before the night rule and expiry. `None`: terminal.
///
/// - out for delivery, within its courier's round ([`ROUND`]): the tier interval, always;
/// - otherwise the stage's base interval (`base_interval`: status, tier, carrier cadence),
///   growing with the time without news (a quarter of it) up to the stage cap, and reset by any
///   change (a new status or a new line);
/// - stalled (idle ≥ [`STALLED_AFTER`]): an eighth of the idle time, from the stage cap up to
///   [`STALLED_CAP`].
pub fn adaptive_interval(input: &ScheduleInput) -> Option<Duration> {
    let base = base_interval(input.status, input.priority, input.carrier, input.cadence)?;
    let idle = idle(input);
    let cap = stage_cap(input.status, input.priority).max(base);
    if input.status == Status::OutForDelivery && input.now - input.status_since < ROUND {
        return Some(within_round(input));
    }
    Some(if idle >= STALLED_AFTER {
        (idle / 8).max(cap).min(STALLED_CAP)
    } else {
        (idle / 4).max(base).min(cap)
    })
}

/// Out for delivery, within the courier's round: the tier interval, except in the quiet start
/// the carrier's history has taught (`Cadence::quiet_start`: after a line, the time within
/// which the next practically never comes, learned as the 2nd percentile). There the parcel is
/// checked at the stage cap (normal 80 min, high 60 min) and once more as the quiet start ends;
/// from then on at the tier interval. Without a learned quiet start: the tier interval from the
/// first minute.
fn within_round(input: &ScheduleInput) -> Duration {
    let tier = input.priority.tier_interval();
    let quiet_until = match (input.cadence.quiet_start, input.last_line_at) {
        (Some(q), Some(line)) => line.min(input.now) + q,
        _ => return tier,
    };
    let left = quiet_until - input.now;
    if left <= tier {
        return tier;
    }
    left.min(stage_cap(Status::OutForDelivery, input.priority))
}

/// The shortest interval of a stage that is not near delivery (high tier: in the buyer's city).
fn earlier_floor(priority: Priority) -> Duration {
    match priority {
        Priority::High => Duration::minutes(20),
        Priority::Normal => Duration::minutes(30),
    }
}

/// Whether a check of this parcel that falls at night waits for the morning rounds: a parcel in
/// its destination city, after a failed attempt, or out for delivery past its round is not
/// handed over before couriers go out again.
fn waits_for_morning(input: &ScheduleInput) -> bool {
    match input.status {
        Status::ArrivedAtDestinationCity | Status::DeliveryFailed => true,
        Status::OutForDelivery => input.now - input.status_since >= ROUND,
        _ => false,
    }
}

/// `t`, or 07:00 Beijing time after it when `t` falls between 21:00 and 07:00 Beijing time.
fn morning_rounds(t: DateTime<Utc>) -> DateTime<Utc> {
    let h = china_hour(t);
    if (ROUNDS_START_HOUR..ROUNDS_END_HOUR).contains(&h) {
        return t;
    }
    let hours_to_morning = (24 + ROUNDS_START_HOUR - h) % 24;
    use chrono::{DurationRound, Timelike};
    let top_of_hour = t.duration_trunc(Duration::hours(1)).unwrap_or(t);
    let next = top_of_hour + Duration::hours(i64::from(hours_to_morning));
    debug_assert_eq!(china_hour(next), ROUNDS_START_HOUR);
    debug_assert_eq!(next.minute(), 0);
    next
}

/// The next check of a parcel:
/// - terminal: stop;
/// - nothing new for longer than the [`Expiry`] allows: expire;
/// - subscribed to pushes: the safety net ([`SAFETY_NET`] from now);
/// - otherwise [`adaptive_interval`] from now, and a check that would fall at night waits for
///   the morning rounds where nothing can happen before them (`waits_for_morning`);
/// - never later than the instant the parcel would expire, so it leaves the due index on time.
///
/// The provider's own minimum interval (Kuaidi100's 30 minutes) is applied by the caller that
/// knows which provider answered ([`super::check::ProviderRules::requery_floor`]).
pub fn plan(input: &ScheduleInput) -> NextCheck {
    if input.status.is_terminal() {
        return NextCheck::Stop;
    }
    let expires = input
        .expiry
        .expires_at(input.last_line_at, input.registered_at);
    if input.now >= expires {
        return NextCheck::Expire;
    }
    let next = if input.subscribed {
        input.now + SAFETY_NET
    } else {
        let Some(interval) = adaptive_interval(input) else {
            return NextCheck::Stop;
        };
        let next = input.now + interval;
        if waits_for_morning(input) {
            morning_rounds(next)
        } else {
            next
        }
    };
    NextCheck::At(next.min(expires))
}

/// The next check of a parcel of a default-cadence carrier with no trace line, in `status`
/// since `status_since`, without expiry: [`plan`] for callers that hold no shipment.
pub fn plan_next_check(
    status: Status,
    priority: Priority,
    status_since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    plan(&ScheduleInput {
        status,
        priority,
        carrier: "",
        status_since,
        last_line_at: None,
        registered_at: now,
        subscribed: false,
        cadence: Cadence::DEFAULT,
        expiry: Expiry {
            after_last_line: Duration::days(36_500),
            without_any_line: Duration::days(36_500),
        },
        now,
    })
    .at()
}

#[cfg(test)]
mod plan_tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, h, m, 0).unwrap()
    }

    #[test]
    fn a_parcel_not_yet_picked_up_backs_off_gradually() {
        // Labels are often printed hours before the courier comes: every 30 minutes at first,
        // a quarter of the wait after that, at most every 90 minutes. The high tier is kept
        // fresher only in the buyer's city: here it is checked like the normal one.
        let since = utc(0, 0);
        let table = [
            (Status::Pending, Priority::Normal, utc(1, 0), utc(1, 30)),
            (Status::Pending, Priority::Normal, utc(3, 0), utc(3, 45)),
            (Status::Pending, Priority::Normal, utc(6, 0), utc(7, 30)),
            (Status::Pending, Priority::Normal, utc(10, 0), utc(11, 30)),
            (Status::InfoReceived, Priority::High, utc(0, 30), utc(1, 0)),
            (Status::InfoReceived, Priority::High, utc(3, 0), utc(3, 45)),
            (Status::InfoReceived, Priority::High, utc(9, 0), utc(10, 30)),
        ];
        for (status, priority, now, want) in table {
            assert_eq!(
                plan_next_check(status, priority, since, now),
                Some(want),
                "{status} {priority:?} at {now}"
            );
        }
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
            // Before the buyer's city both tiers are checked alike...
            (Pending, Some(30), Some(30)),
            (InfoReceived, Some(30), Some(30)),
            (PickedUp, Some(60), Some(60)),
            (InTransit, Some(120), Some(120)),
            // ...in it the high tier three times per usual gap (at least 20 min), near
            // delivery at the tier interval.
            (ArrivedAtDestinationCity, Some(40), Some(60)),
            (OutForDelivery, Some(2), Some(10)),
            (AvailableForPickup, Some(40), Some(60)),
            (Delivered, None, None),
            (DeliveryFailed, Some(2), Some(10)),
            (Exception, Some(40), Some(60)),
            (Returning, Some(240), Some(240)),
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

#[cfg(test)]
mod adaptive_tests {
    use super::*;
    use chrono::TimeZone;

    /// 02:00 UTC = 10:00 Beijing: daytime, the night rule stays out of the way.
    fn day() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 2, 0, 0).unwrap()
    }

    fn m(n: i64) -> Duration {
        Duration::minutes(n)
    }

    fn h(n: i64) -> Duration {
        Duration::hours(n)
    }

    /// A YTO parcel in `status` for `idle`, its newest line as old, registered a day before that.
    fn input(status: Status, priority: Priority, idle: Duration) -> ScheduleInput<'static> {
        let now = day();
        ScheduleInput {
            status,
            priority,
            carrier: "YTO",
            status_since: now - idle,
            last_line_at: Some(now - idle),
            registered_at: now - idle - h(24),
            subscribed: false,
            cadence: Cadence::DEFAULT,
            expiry: Expiry::DEFAULT,
            now,
        }
    }

    fn wait(i: &ScheduleInput) -> Option<Duration> {
        plan(i).at().map(|t| t - i.now)
    }

    /// The interval by stage, tier and time without news: the base, the growth with idle time,
    /// the stage cap, the stalled regime and its cap.
    #[test]
    fn the_interval_grows_with_the_time_without_news_up_to_the_stage_cap() {
        use Priority::*;
        use Status::*;
        let table: &[(Status, Priority, Duration, Duration)] = &[
            // (status, tier, idle, wait)
            (PickedUp, Normal, m(0), m(60)),
            (PickedUp, Normal, h(6), m(90)),
            (PickedUp, Normal, h(8), m(120)),
            (PickedUp, Normal, h(20), m(120)),
            // Before the buyer's city the high tier is checked like the normal one.
            (PickedUp, High, m(0), m(60)),
            (PickedUp, High, h(6), m(90)),
            (InTransit, Normal, m(0), m(120)),
            (InTransit, Normal, h(47), m(120)),
            (InTransit, High, m(0), m(120)),
            (ArrivedAtDestinationCity, Normal, m(0), m(60)),
            (ArrivedAtDestinationCity, Normal, h(5), m(75)),
            (ArrivedAtDestinationCity, Normal, h(10), m(80)),
            // In it, a third of the usual gap, capped at three quarters of the normal cap.
            (ArrivedAtDestinationCity, High, m(0), m(40)),
            (ArrivedAtDestinationCity, High, h(3), m(45)),
            (ArrivedAtDestinationCity, High, h(10), m(60)),
            (AvailableForPickup, Normal, h(1), m(60)),
            (AvailableForPickup, Normal, h(10), m(90)),
            (Exception, Normal, m(0), m(60)),
            (Exception, Normal, h(6), m(80)),
            (Returning, Normal, m(0), m(240)),
            (Returning, Normal, h(24), h(6)),
            (Returning, Normal, h(40), m(480)),
            (Returning, High, m(0), m(240)),
            // A failed attempt starts at the tier interval and backs off to the stage cap.
            (DeliveryFailed, Normal, m(0), m(10)),
            (DeliveryFailed, Normal, h(2), m(30)),
            (DeliveryFailed, Normal, h(6), m(80)),
            (DeliveryFailed, High, m(0), m(2)),
            (DeliveryFailed, High, h(1), m(15)),
            (DeliveryFailed, High, h(4), m(60)),
            // Stalled: an eighth of the idle time, from the stage cap up to the safety net.
            (InTransit, Normal, h(48), h(6)),
            (InTransit, Normal, h(72), h(9)),
            (InTransit, Normal, h(96), h(12)),
            (InTransit, Normal, h(400), h(12)),
            (InTransit, High, h(48), h(6)),
            (Exception, Normal, h(60), m(450)),
            (Pending, Normal, h(49), m(367) + Duration::seconds(30)),
        ];
        for (status, priority, idle, want) in table {
            let i = input(*status, *priority, *idle);
            assert_eq!(
                wait(&i),
                Some(*want),
                "{status} {priority:?} idle {}h",
                idle.num_minutes() as f64 / 60.0
            );
        }
    }

    #[test]
    fn out_for_delivery_keeps_to_the_tier_for_a_round_then_backs_off() {
        for (priority, tier) in [(Priority::High, m(2)), (Priority::Normal, m(10))] {
            for idle in [m(0), h(3), h(11) + m(59)] {
                let i = input(Status::OutForDelivery, priority, idle);
                assert_eq!(wait(&i), Some(tier), "{priority:?} idle {idle}");
            }
        }
        // Past its round (12 h) it is a stalled delivery: backed off to the stage cap, and at
        // night (its round is over) it waits for the morning.
        let mut stuck = input(Status::OutForDelivery, Priority::Normal, h(12));
        assert_eq!(wait(&stuck), Some(m(80)));
        stuck.now = Utc.with_ymd_and_hms(2026, 11, 24, 14, 0, 0).unwrap(); // 22:00 Beijing
        stuck.status_since = stuck.now - h(14);
        assert_eq!(
            plan(&stuck),
            NextCheck::At(Utc.with_ymd_and_hms(2026, 11, 24, 23, 0, 0).unwrap())
        );
    }

    /// A learned quiet start (the carrier's couriers practically never deliver within 90 minutes
    /// of the 派件 scan): the start of the round is checked at the stage cap (normal 80 min,
    /// high 60) and once more as the quiet start ends, then at the tier interval.
    #[test]
    fn a_learned_quiet_start_spares_the_tier_interval_at_the_start_of_a_round() {
        let quiet = Cadence::learned(h(3)).with_quiet_start(m(90));
        let cases: &[(Priority, Duration, Duration)] = &[
            // (tier, since the out-for-delivery line, wait)
            (Priority::Normal, m(0), m(80)),
            (Priority::Normal, m(10), m(80)),
            (Priority::Normal, m(75), m(15)),
            (Priority::Normal, m(82), m(10)),
            (Priority::Normal, m(90), m(10)),
            (Priority::Normal, h(3), m(10)),
            (Priority::High, m(0), m(60)),
            (Priority::High, m(60), m(30)),
            (Priority::High, m(87), m(3)),
            (Priority::High, m(88), m(2)),
            (Priority::High, m(90), m(2)),
            (Priority::High, h(4), m(2)),
        ];
        for (priority, since, want) in cases {
            let mut i = input(Status::OutForDelivery, *priority, *since);
            i.cadence = quiet;
            assert_eq!(wait(&i), Some(*want), "{priority:?} {since}");
        }
        // The window runs from the newest line (carrier time), not from when we saw it: a
        // parcel seen out for delivery 40 minutes after its scan has 50 minutes of it left.
        let mut late = input(Status::OutForDelivery, Priority::High, m(0));
        late.cadence = quiet;
        late.last_line_at = Some(late.now - m(40));
        assert_eq!(wait(&late), Some(m(50)));
        // No line held, or nothing learned: the tier interval from the first minute.
        let mut none = input(Status::OutForDelivery, Priority::High, m(0));
        none.cadence = quiet;
        none.last_line_at = None;
        assert_eq!(wait(&none), Some(m(2)));
        let plain = input(Status::OutForDelivery, Priority::High, m(0));
        assert_eq!(wait(&plain), Some(m(2)));
        // A failed attempt is not a round's start: the tier interval, quiet start or not.
        let mut failed = input(Status::DeliveryFailed, Priority::High, m(0));
        failed.cadence = quiet;
        assert_eq!(wait(&failed), Some(m(2)));
    }

    #[test]
    fn any_news_resets_the_back_off() {
        // In transit for five days, stalled, until a new line an hour ago.
        let mut i = input(Status::InTransit, Priority::Normal, h(120));
        assert_eq!(wait(&i), Some(h(12)));
        i.last_line_at = Some(i.now - h(1));
        assert_eq!(wait(&i), Some(m(120)));
        // A status change seen now (a verdict without a line) resets it as well.
        let mut v = input(Status::Exception, Priority::Normal, h(100));
        v.status_since = v.now;
        assert_eq!(wait(&v), Some(m(60)));
        // A line stamped in the future (a carrier clock ahead) counts as now, not later.
        let mut f = input(Status::PickedUp, Priority::Normal, h(8));
        f.last_line_at = Some(f.now + h(3));
        assert_eq!(wait(&f), Some(m(60)));
    }

    #[test]
    fn the_carrier_cadence_sets_the_base_and_a_learned_one_overrides_it() {
        let cases: &[(&str, Cadence, Priority, Duration)] = &[
            // (carrier, learned, tier, wait in transit, fresh)
            ("YTO", Cadence::DEFAULT, Priority::Normal, m(120)),
            // SF scans every ~3 h in transit: checked every 90 minutes.
            ("SF", Cadence::DEFAULT, Priority::Normal, m(90)),
            ("SF", Cadence::DEFAULT, Priority::High, m(90)),
            // EMS's ~6 h would give 3 h: held to the stage cap.
            ("EMS", Cadence::DEFAULT, Priority::Normal, m(120)),
            ("YTO", Cadence::learned(h(3)), Priority::Normal, m(90)),
            ("YTO", Cadence::learned(h(10)), Priority::Normal, m(120)),
            // Never below the tier floor, whatever is learned.
            ("YTO", Cadence::learned(m(5)), Priority::Normal, m(30)),
            ("YTO", Cadence::learned(m(5)), Priority::High, m(30)),
        ];
        for (carrier, cadence, priority, want) in cases {
            let mut i = input(Status::InTransit, *priority, m(0));
            i.carrier = carrier;
            i.cadence = *cadence;
            assert_eq!(wait(&i), Some(*want), "{carrier} {cadence:?} {priority:?}");
        }
        // In the buyer's city the high tier's floor is 20 minutes.
        let mut i = input(Status::ArrivedAtDestinationCity, Priority::High, m(0));
        i.cadence = Cadence::learned(m(5));
        assert_eq!(wait(&i), Some(m(20)));
        // Near delivery the tier rules, not the carrier.
        let mut i = input(Status::OutForDelivery, Priority::Normal, m(0));
        i.cadence = Cadence::learned(h(5));
        assert_eq!(wait(&i), Some(m(10)));
    }

    #[test]
    fn nothing_new_for_too_long_expires_the_parcel() {
        let e = Expiry::DEFAULT;
        // 30 days after the newest line.
        let i = input(Status::InTransit, Priority::Normal, Duration::days(30));
        assert_eq!(plan(&i), NextCheck::Expire);
        let i = input(
            Status::InTransit,
            Priority::Normal,
            Duration::days(30) - m(1),
        );
        assert_eq!(
            plan(&i),
            NextCheck::At(i.now + m(1)),
            "checked when it expires"
        );
        // Never a line: a week after registration.
        let mut none = input(Status::Pending, Priority::Normal, h(1));
        none.last_line_at = None;
        none.registered_at = none.now - Duration::days(7);
        assert_eq!(plan(&none), NextCheck::Expire);
        none.registered_at = none.now - Duration::days(6);
        assert!(matches!(plan(&none), NextCheck::At(_)));
        // A line, however old the registration: the 30-day rule, not the week.
        let mut old = input(Status::InTransit, Priority::Normal, Duration::days(10));
        old.registered_at = old.now - Duration::days(40);
        assert!(matches!(plan(&old), NextCheck::At(_)));
        // Configurable windows.
        let mut short = input(Status::InTransit, Priority::Normal, Duration::days(3));
        short.expiry = Expiry {
            after_last_line: Duration::days(3),
            ..e
        };
        assert_eq!(plan(&short), NextCheck::Expire);
        // A window too large to add never expires (and does not overflow).
        let mut never = input(Status::InTransit, Priority::Normal, Duration::days(3));
        never.expiry = Expiry {
            after_last_line: Duration::days(1_000_000_000),
            ..e
        };
        assert!(matches!(plan(&never), NextCheck::At(_)));
        // Terminal parcels stop; they never expire.
        let done = input(Status::Delivered, Priority::Normal, Duration::days(90));
        assert_eq!(plan(&done), NextCheck::Stop);
    }

    #[test]
    fn a_subscribed_parcel_is_only_polled_as_a_safety_net_and_still_expires() {
        let mut i = input(Status::OutForDelivery, Priority::High, m(0));
        i.subscribed = true;
        assert_eq!(wait(&i), Some(SAFETY_NET));
        let mut late = input(
            Status::InTransit,
            Priority::Normal,
            Duration::days(30) - h(2),
        );
        late.subscribed = true;
        assert_eq!(wait(&late), Some(h(2)));
        late.last_line_at = Some(late.now - Duration::days(31));
        assert_eq!(plan(&late), NextCheck::Expire);
    }

    #[test]
    fn the_night_rule_holds_what_cannot_move_before_the_morning_rounds() {
        // 14:30 UTC = 22:30 Beijing; 07:00 Beijing = 23:00 UTC.
        let night = Utc.with_ymd_and_hms(2026, 11, 24, 14, 30, 0).unwrap();
        let morning = Utc.with_ymd_and_hms(2026, 11, 24, 23, 0, 0).unwrap();
        let at = |status: Status, since: Duration| {
            let mut i = input(status, Priority::Normal, since);
            i.now = night;
            i.status_since = night - since;
            i.last_line_at = Some(night - since);
            plan(&i)
        };
        assert_eq!(
            at(Status::ArrivedAtDestinationCity, m(0)),
            NextCheck::At(morning)
        );
        assert_eq!(at(Status::DeliveryFailed, h(1)), NextCheck::At(morning));
        // Out for delivery within its round: never held back.
        assert_eq!(
            at(Status::OutForDelivery, h(1)),
            NextCheck::At(night + m(10))
        );
        // In transit and in a locker things move at night too.
        assert_eq!(at(Status::InTransit, m(0)), NextCheck::At(night + m(120)));
        assert_eq!(
            at(Status::AvailableForPickup, m(0)),
            NextCheck::At(night + m(60))
        );
    }
}
