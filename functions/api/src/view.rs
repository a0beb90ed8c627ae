//! What an order-detail page needs to show a parcel: the shipment and its trajectory as JSON,
//! with human status texts in the reader's language and times in UTC and Beijing time.

use chrono::{DateTime, FixedOffset, Utc};
use parcelwatch::domain::{fmt_time, EventKey, Locale, Shipment, Status, SubStatus, TraceEvent};
use serde_json::{json, Value};

/// China Standard Time: UTC+8 all year.
const BEIJING_OFFSET_SECS: i32 = 8 * 3600;

/// `yyyy-MM-dd HH:mm:ss` in Beijing time.
pub fn beijing_time(t: DateTime<Utc>) -> String {
    match FixedOffset::east_opt(BEIJING_OFFSET_SECS) {
        Some(tz) => t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S").to_string(),
        None => t.format("%Y-%m-%d %H:%M:%S").to_string(),
    }
}

/// The words for a status, refined by the Kdniao verdict codes a buyer would care about.
pub fn status_text(status: Status, sub: Option<&SubStatus>, locale: Locale) -> &'static str {
    let kdniao = sub
        .filter(|s| s.provider == "kdniao")
        .map(|s| s.code.as_str());
    let zh = locale == Locale::ZhCn;
    let pick = |zh_text: &'static str, en_text: &'static str| if zh { zh_text } else { en_text };
    match (status, kdniao) {
        (Status::Exception, Some("401")) => {
            pick("已发货，暂无物流信息", "Shipped, no carrier scan yet")
        }
        (Status::Exception, Some("402")) => pick("超时未签收", "Not signed for in time"),
        (Status::Exception, Some("403")) => pick("物流超时未更新", "No update for too long"),
        (Status::AvailableForPickup, Some("412")) => {
            pick("待取件（已超时）", "Awaiting pickup (overdue)")
        }
        (Status::Delivered, Some("311")) => pick(
            "已签收（已从快递柜或驿站取出）",
            "Delivered (collected from locker or station)",
        ),
        (Status::Pending, _) => pick(
            "已登记，暂无物流信息",
            "Registered, no tracking information yet",
        ),
        (Status::InfoReceived, _) => pick("已下单，待揽收", "Label created, awaiting pickup"),
        (Status::PickedUp, _) => pick("已揽收", "Picked up"),
        (Status::InTransit, _) => pick("运输中", "In transit"),
        (Status::ArrivedAtDestinationCity, _) => {
            pick("已到达目的城市", "Arrived in destination city")
        }
        (Status::OutForDelivery, _) => pick("派送中", "Out for delivery"),
        (Status::AvailableForPickup, _) => pick("待取件", "Ready for pickup"),
        (Status::Delivered, _) => pick("已签收", "Delivered"),
        (Status::DeliveryFailed, _) => pick("派送失败", "Delivery attempt failed"),
        (Status::Exception, _) => pick("物流异常", "Exception"),
        (Status::Returning, _) => pick("退回中", "Returning to sender"),
        (Status::Returned, _) => pick("已退回", "Returned to sender"),
        (Status::Expired, _) => pick("已停止跟踪", "Tracking stopped"),
    }
}

fn carrier_name(s: &Shipment, locale: Locale) -> &str {
    match locale {
        Locale::ZhCn => s.id.carrier.name_zh(),
        Locale::En => s.id.carrier.name_en(),
    }
}

/// One trace line. A line the carrier dated in the future when we first saw it also carries
/// `claimed_time` (the time as reported by the carrier; `time` is then when we first saw it), so
/// that a page can say so instead of showing a wrong date as fact.
pub fn event_view(e: &TraceEvent) -> Value {
    let mut v = json!({
        "time": fmt_time(e.time),
        "time_local": beijing_time(e.time),
        "description": e.description,
        "location": e.location,
        "status": e.status.map(Status::as_str),
    });
    if let (Some(claimed), Some(o)) = (e.claimed_time, v.as_object_mut()) {
        o.insert("claimed_time".into(), json!(fmt_time(claimed)));
    }
    v
}

/// The shipment and up to `trace.len()` trace lines (given newest first).
pub fn shipment_view(s: &Shipment, trace: &[(EventKey, TraceEvent)], locale: Locale) -> Value {
    json!({
        "carrier": s.id.carrier.as_str(),
        "carrier_name": carrier_name(s, locale),
        "number": s.id.number.as_str(),
        "status": s.status.as_str(),
        "sub_status": s.sub_status.as_ref().map(ToString::to_string),
        "status_text": status_text(s.status, s.sub_status.as_ref(), locale),
        "lang": locale.as_str(),
        "status_changed_at": fmt_time(s.status_changed_at),
        "checked_at": s.checked_at.map(fmt_time),
        "delivered": s.status == Status::Delivered,
        "terminal": s.status.is_terminal(),
        "provider": s.provider,
        "priority": s.priority.as_str(),
        "order_ref": s.order_ref,
        "created_at": fmt_time(s.created_at),
        "last_error": s.last_error,
        "last_event": s.last_event.as_ref().map(|(_, e)| event_view(e)),
        "event_count": s.event_count,
        "events": trace.iter().map(|(_, e)| event_view(e)).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn beijing_time_is_utc_plus_eight_across_midnight() {
        let t = Utc.with_ymd_and_hms(2026, 11, 23, 18, 2, 11).unwrap();
        assert_eq!(beijing_time(t), "2026-11-24 02:02:11");
    }

    #[test]
    fn a_future_dated_line_shows_the_time_the_carrier_claimed() {
        let seen = Utc.with_ymd_and_hms(2026, 11, 24, 6, 0, 0).unwrap();
        let mut e = TraceEvent {
            time: seen,
            description: "【杭州市】快件已发出".into(),
            ..TraceEvent::default()
        };
        let plain = event_view(&e);
        assert_eq!(plain["time"], "2026-11-24T06:00:00Z");
        assert!(plain.get("claimed_time").is_none(), "{plain}");

        e.claimed_time = Some(Utc.with_ymd_and_hms(2098, 12, 31, 16, 0, 0).unwrap());
        let flagged = event_view(&e);
        assert_eq!(flagged["claimed_time"], "2098-12-31T16:00:00Z");
        // The line stays where we first saw it.
        assert_eq!(flagged["time"], "2026-11-24T06:00:00Z");
        assert_eq!(flagged["time_local"], "2026-11-24 14:00:00");
    }

    #[test]
    fn every_status_has_words_in_both_languages() {
        for st in Status::ALL {
            let zh = status_text(st, None, Locale::ZhCn);
            let en = status_text(st, None, Locale::En);
            assert!(!zh.is_empty() && !en.is_empty(), "{st}");
            assert_ne!(zh, en, "{st}");
            assert!(!zh.is_ascii(), "{st}: {zh}");
        }
        let overdue = SubStatus::new("kdniao", "412");
        assert_eq!(
            status_text(Status::AvailableForPickup, Some(&overdue), Locale::En),
            "Awaiting pickup (overdue)"
        );
        // The same code from another provider is not a Kdniao verdict.
        let other = SubStatus::new("kuaidi100", "412");
        assert_eq!(
            status_text(Status::AvailableForPickup, Some(&other), Locale::ZhCn),
            "待取件"
        );
    }
}
