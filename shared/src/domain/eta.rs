//! When a parcel still on its way will probably arrive, from how long its route's parcels took.
//!
//! The estimate counts from the first scan (pickup) and looks only at the delivered parcels that
//! took longer than this one has already been travelling: a parcel three days out on a route
//! whose median is two days gets the median of the slow ones, not a time in the past. The
//! history used is the narrowest one with enough deliveries: the route (carrier, origin and
//! destination province), then the carrier from that origin, then the carrier anywhere, then a
//! fixed default.

use super::shipment::Shipment;
use super::stats::{HistorySnapshot, RouteStats};
use super::status::Status;
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

/// Deliveries a history needs before its quantiles are trusted for an estimate.
pub const MIN_SAMPLES: u64 = 5;
/// With no usable history: first scan → delivered in 3 days, 5 days at the latest. An
/// assumption for domestic express, not a measurement; the answer says it is the default.
pub const DEFAULT_P50: Duration = Duration::days(3);
pub const DEFAULT_P90: Duration = Duration::days(5);

/// Which history an estimate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EtaBasis {
    /// The carrier's parcels from the origin to the destination province.
    Route,
    /// The carrier's parcels from the origin province, to anywhere.
    Origin,
    /// All of the carrier's parcels.
    Carrier,
    /// No history with enough deliveries: [`DEFAULT_P50`] / [`DEFAULT_P90`].
    Default,
}

/// An estimated arrival.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Eta {
    /// Half the comparable parcels had arrived by then (median).
    #[serde(serialize_with = "ser_time")]
    pub expected_at: DateTime<Utc>,
    /// Nine in ten had (90th percentile).
    #[serde(serialize_with = "ser_time")]
    pub latest_at: DateTime<Utc>,
    pub basis: EtaBasis,
    /// Deliveries behind the estimate (0 for the default).
    pub samples: u64,
}

fn ser_time<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&super::fmt_time(*t))
}

/// Statuses of a parcel still travelling to its buyer. A parcel waiting in a locker has
/// arrived; one going back to its sender is not coming.
pub fn is_on_its_way(s: Status) -> bool {
    matches!(
        s,
        Status::Pending
            | Status::InfoReceived
            | Status::PickedUp
            | Status::InTransit
            | Status::ArrivedAtDestinationCity
            | Status::OutForDelivery
            | Status::DeliveryFailed
            | Status::Exception
    )
}

/// The estimate for `shipment` at `now`; `None` unless it is on its way ([`is_on_its_way`]).
/// Before the first scan the clock has not started: the estimate counts from `now`.
pub fn eta(shipment: &Shipment, history: &HistorySnapshot, now: DateTime<Utc>) -> Option<Eta> {
    if !is_on_its_way(shipment.status) {
        return None;
    }
    let start = shipment.picked_up_at.unwrap_or(now).min(now);
    let elapsed = now - start;
    let carrier = shipment.id.carrier.as_str();
    let (origin, destination) = (shipment.origin.as_deref(), shipment.destination.as_deref());
    let mut candidates: Vec<(EtaBasis, RouteStats)> = Vec::with_capacity(3);
    if let (Some(o), Some(d)) = (origin, destination) {
        candidates.push((EtaBasis::Route, history.route(carrier, Some(o), Some(d))));
    }
    if let Some(o) = origin {
        candidates.push((EtaBasis::Origin, history.route(carrier, Some(o), None)));
    }
    candidates.push((EtaBasis::Carrier, history.route(carrier, None, None)));
    for (basis, stats) in candidates {
        let h = &stats.delivery;
        if h.total() < MIN_SAMPLES {
            continue;
        }
        // None: this parcel is already slower than every one of them; a wider history may
        // still hold slower ones.
        let (Some(p50), Some(p90)) = (
            h.quantile_after(elapsed, 0.5),
            h.quantile_after(elapsed, 0.9),
        ) else {
            continue;
        };
        return Some(Eta {
            expected_at: (start + p50).max(now),
            latest_at: (start + p90).max(now),
            basis,
            samples: h.total(),
        });
    }
    Some(Eta {
        expected_at: (start + DEFAULT_P50).max(now),
        latest_at: (start + DEFAULT_P90).max(now),
        basis: EtaBasis::Default,
        samples: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::stats::{RouteKey, RouteStats};
    use crate::domain::{Priority, Recipient, ShipmentId};
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 0, 0, 0).unwrap()
    }

    fn travelling(origin: Option<&str>, dest: Option<&str>) -> Shipment {
        let mut s = Shipment::register(
            ShipmentId::parse("YTO", "YT7412345678901").unwrap(),
            Priority::Normal,
            "kdniao",
            Recipient::default(),
            None,
            t0(),
        );
        s.status = Status::InTransit;
        s.picked_up_at = Some(t0());
        s.origin = origin.map(String::from);
        s.destination = dest.map(String::from);
        s
    }

    /// YTO: 浙江→北京 takes 24 h (6 parcels), 浙江→四川 72 h (6), 广东→北京 48 h (3).
    fn history() -> HistorySnapshot {
        let mut h = HistorySnapshot::default();
        for (o, d, hours, n) in [
            ("浙江", "北京", 24, 6),
            ("浙江", "四川", 72, 6),
            ("广东", "北京", 48, 3),
        ] {
            let mut r = RouteStats {
                finished: n,
                delivered: n,
                ..Default::default()
            };
            for _ in 0..n {
                r.delivery.record(Duration::hours(hours));
            }
            let key = RouteKey {
                carrier: "YTO".into(),
                origin: o.into(),
                destination: d.into(),
            };
            h.routes.insert(key, r);
        }
        h
    }

    fn near(a: DateTime<Utc>, b: DateTime<Utc>) -> bool {
        (a - b).num_minutes().abs() <= 240
    }

    #[test]
    fn the_route_is_used_when_it_has_enough_deliveries() {
        let e = eta(
            &travelling(Some("浙江"), Some("北京")),
            &history(),
            t0() + Duration::hours(2),
        )
        .unwrap();
        assert_eq!(e.basis, EtaBasis::Route);
        assert_eq!(e.samples, 6);
        assert!(near(e.expected_at, t0() + Duration::hours(24)), "{:?}", e);
        assert!(e.latest_at >= e.expected_at);
    }

    #[test]
    fn a_thin_route_falls_back_to_the_origin_then_the_carrier_then_the_default() {
        let now = t0() + Duration::hours(2);
        // 广东→北京 has 3 deliveries, 广东 as a whole the same 3: the carrier's 15 decide.
        let e = eta(&travelling(Some("广东"), Some("北京")), &history(), now).unwrap();
        assert_eq!((e.basis, e.samples), (EtaBasis::Carrier, 15));
        // Destination unknown: every route from 浙江 (12 deliveries, half 24 h, half 72 h).
        let e = eta(&travelling(Some("浙江"), None), &history(), now).unwrap();
        assert_eq!((e.basis, e.samples), (EtaBasis::Origin, 12));
        assert!(
            e.expected_at > t0() + Duration::hours(20)
                && e.expected_at < t0() + Duration::hours(76)
        );
        assert!(near(e.latest_at, t0() + Duration::hours(72)), "{:?}", e);
        // Another carrier: nothing known.
        let mut sf = travelling(Some("浙江"), Some("北京"));
        sf.id = ShipmentId::parse("SF", "SF1234567890123").unwrap();
        let e = eta(&sf, &history(), now).unwrap();
        assert_eq!(e.basis, EtaBasis::Default);
        assert_eq!(e.samples, 0);
        assert_eq!(e.expected_at, t0() + DEFAULT_P50);
        assert_eq!(e.latest_at, t0() + DEFAULT_P90);
    }

    #[test]
    fn a_slow_parcel_is_compared_with_the_slow_ones() {
        // 30 h out from 浙江: the 24 h parcels say nothing any more, the 72 h ones do.
        let e = eta(
            &travelling(Some("浙江"), None),
            &history(),
            t0() + Duration::hours(30),
        )
        .unwrap();
        assert_eq!(e.basis, EtaBasis::Origin);
        assert!(near(e.expected_at, t0() + Duration::hours(72)), "{:?}", e);
        // Slower than every one: the default, never a time in the past.
        let now = t0() + Duration::hours(200);
        let e = eta(&travelling(Some("浙江"), Some("北京")), &history(), now).unwrap();
        assert_eq!(e.basis, EtaBasis::Default);
        assert_eq!(e.expected_at, now);
    }

    #[test]
    fn only_parcels_on_their_way_get_one() {
        let mut s = travelling(None, None);
        for st in Status::ALL {
            s.status = st;
            let e = eta(&s, &history(), t0());
            assert_eq!(e.is_some(), is_on_its_way(st), "{st}");
        }
        // Not picked up yet: counts from now.
        let mut s = travelling(None, None);
        s.status = Status::InfoReceived;
        s.picked_up_at = None;
        let now = t0() + Duration::hours(5);
        let e = eta(&s, &history(), now).unwrap();
        assert_eq!(e.basis, EtaBasis::Carrier);
        assert!(e.expected_at > now + Duration::hours(20));
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["basis"], "carrier");
        assert!(json["expected_at"].as_str().unwrap().ends_with('Z'));
    }
}
