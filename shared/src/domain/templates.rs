//! Buyer-facing notification texts (SMS body and a push title), zh-CN and en.
//!
//! What is worth a message is decided here from the transition alone; the words come from the
//! shipment (carrier, number, newest trace line). SMS budgets: a zh-CN body fits one UCS-2 segment
//! (70 characters) and an en body one GSM-7 segment (160) for realistic inputs; the trace-line
//! snippet is what gets shortened, never the facts.

use super::shipment::{Locale, Shipment, Transition};
use super::stall::FlagKind;
use super::status::Status;

/// A rendered message. `body` is the SMS text; `title` heads an app push or an e-mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub title: String,
    pub body: String,
}

/// One UCS-2 SMS segment.
pub const ZH_BODY_LIMIT: usize = 70;
/// One GSM-7 SMS segment.
pub const EN_BODY_LIMIT: usize = 160;

const ZH_SIGN: &str = "【parcelwatch】";
// GSM-7 has '[' and ']' only in its extension table (two septets each): a plain prefix instead.
const EN_SIGN: &str = "parcelwatch: ";

/// A snippet shorter than this is not worth cutting a trace line down to.
const MIN_SNIPPET: usize = 6;

/// What the buyer is told. One per buyer-facing transition kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    PickedUp,
    Shipped,
    /// Back in transit after an exception or failed delivery the buyer was told about.
    Resumed,
    ArrivedCity,
    OutForDelivery,
    ReadyForPickup,
    /// Kdniao 412: not collected from the locker/station in time.
    PickupOverdue,
    Delivered,
    DeliveryFailed,
    /// Kdniao 401: shipped, but no carrier scan since.
    NoInfoAfterShipping,
    /// Kdniao 402: not signed for in time.
    NotSignedInTime,
    /// Kdniao 403: no update for too long.
    NoUpdate,
    Exception,
    Returning,
    Returned,
}

/// The kind of message a transition deserves, if any.
fn kind(t: &Transition) -> Option<Kind> {
    if !t.to.is_buyer_facing() {
        return None;
    }
    let kdniao = t
        .to_sub
        .as_ref()
        .filter(|s| s.provider == "kdniao")
        .map(|s| s.code.as_str());

    if !t.is_status_change() {
        // Sub-code churn (Delivered 3 → 311, Exception 401 → 403, ...) tells the buyer nothing new,
        // except the locker-overdue verdict, which asks the buyer to act.
        return match (t.to, kdniao) {
            (Status::AvailableForPickup, Some("412")) => Some(Kind::PickupOverdue),
            _ => None,
        };
    }

    let from_side_state = matches!(t.from, Status::Exception | Status::DeliveryFailed);
    let forward = t.to.progress() > t.from.progress();
    Some(match t.to {
        // Only as the first news of the parcel; a re-scan later in the journey is noise.
        Status::PickedUp if forward => Kind::PickedUp,
        Status::InTransit => match t.from {
            Status::Pending | Status::InfoReceived | Status::PickedUp => Kind::Shipped,
            // The buyer was told something went wrong: say it is moving again.
            _ if from_side_state => Kind::Resumed,
            // Re-routing or a step back (e.g. from the destination city): nothing to act on.
            _ => return None,
        },
        // A parcel back at the city depot after an attempt is covered by DeliveryFailed and the
        // next OutForDelivery; only the forward arrival (or one after a problem) is news.
        Status::ArrivedAtDestinationCity if forward || from_side_state => Kind::ArrivedCity,
        // Every entry counts, redelivery after a failure included.
        Status::OutForDelivery => Kind::OutForDelivery,
        Status::AvailableForPickup if kdniao == Some("412") => Kind::PickupOverdue,
        Status::AvailableForPickup => Kind::ReadyForPickup,
        Status::Delivered => Kind::Delivered,
        Status::DeliveryFailed => Kind::DeliveryFailed,
        Status::Exception => match kdniao {
            Some("401") => Kind::NoInfoAfterShipping,
            Some("402") => Kind::NotSignedInTime,
            Some("403") => Kind::NoUpdate,
            _ => Kind::Exception,
        },
        Status::Returning => Kind::Returning,
        Status::Returned => Kind::Returned,
        _ => return None,
    })
}

/// Render the message for `transition` of `shipment` (the shipment as written after the
/// transition: its `last_event` is the newest line). `None` when the buyer need not hear of it:
/// non-buyer-facing targets (Pending, InfoReceived, Expired), sub-status-only changes other than
/// the locker-overdue reminder, and steps backwards that carry no news.
///
/// The recipient's phone number never appears in a text; should a carrier's trace line contain
/// it, it is masked.
pub fn render(
    shipment: &Shipment,
    transition: &Transition,
    locale: Locale,
) -> Option<Notification> {
    let kind = kind(transition)?;
    let snippet = snippet_for(kind, shipment, locale);
    let number = shipment.id.number.as_str();
    let last4 = &number[number.len().saturating_sub(4)..];
    let (carrier, full, short, limit, ellipsis) = match locale {
        Locale::ZhCn => (
            shipment.id.carrier.name_zh(),
            number.to_string(),
            format!("（尾号{last4}）"),
            ZH_BODY_LIMIT,
            "…",
        ),
        Locale::En => (
            shipment.id.carrier.name_en(),
            number.to_string(),
            format!("ending {last4}"),
            EN_BODY_LIMIT,
            "...",
        ),
    };
    let make = |num: &str, snip: Option<&str>| body(kind, locale, carrier, num, snip);
    Some(Notification {
        title: title(kind, locale).to_string(),
        body: fit(limit, ellipsis, &make, &full, &short, snippet.as_deref()),
    })
}

/// The buyer's apology for a parcel we flagged stalled or late (sent only when the merchant
/// turns it on: see the notifier's `STALL_BUYER_APOLOGY`). No trace snippet: the newest line is
/// the stale one. Same budgets as [`render`]: the full number when it fits, else its last four.
pub fn render_apology(shipment: &Shipment, kind: FlagKind, locale: Locale) -> Notification {
    let number = shipment.id.number.as_str();
    let last4 = &number[number.len().saturating_sub(4)..];
    let (title, carrier, short, limit, ellipsis) = match locale {
        Locale::ZhCn => (
            "包裹延误致歉",
            shipment.id.carrier.name_zh(),
            format!("（尾号{last4}）"),
            ZH_BODY_LIMIT,
            "…",
        ),
        Locale::En => (
            "Sorry, your parcel is delayed",
            shipment.id.carrier.name_en(),
            format!("ending {last4}"),
            EN_BODY_LIMIT,
            "...",
        ),
    };
    let make = |num: &str, _: Option<&str>| {
        match (locale, kind) {
        (Locale::ZhCn, FlagKind::Stalled) => format!(
            "{ZH_SIGN}您的{carrier}包裹{num}物流暂未更新，我们已在联系快递跟进，抱歉让您久等。"
        ),
        (Locale::ZhCn, FlagKind::Late) => {
            format!("{ZH_SIGN}您的{carrier}包裹{num}比预期晚到，我们正在跟进，抱歉让您久等。")
        }
        (Locale::En, FlagKind::Stalled) => format!(
            "{EN_SIGN}Your {carrier} parcel {num} has had no carrier update for a while. We are chasing it with the carrier. Sorry for the wait."
        ),
        (Locale::En, FlagKind::Late) => format!(
            "{EN_SIGN}Your {carrier} parcel {num} is running late. We are following it up with the carrier. Sorry for the wait."
        ),
    }
    };
    Notification {
        title: title.to_string(),
        body: fit(limit, ellipsis, &make, number, &short, None),
    }
}

/// Choose the number form and cut the snippet so that the body fits `limit` characters:
/// the full number when everything fits; otherwise the last four, which leaves the snippet (a
/// pickup code, a courier's name) more room. Over the limit only when the fixed text alone is.
fn fit(
    limit: usize,
    ellipsis: &str,
    make: &dyn Fn(&str, Option<&str>) -> String,
    full: &str,
    short: &str,
    snippet: Option<&str>,
) -> String {
    let len = |s: &str| s.chars().count();
    let snippet = snippet.filter(|s| !s.is_empty());
    if let Some(sn) = snippet {
        let whole = make(full, Some(sn));
        if len(&whole) <= limit {
            return whole;
        }
        let room = limit.saturating_sub(len(&make(short, Some(""))));
        if room >= MIN_SNIPPET {
            return make(short, Some(&truncate(sn, room, ellipsis)));
        }
    }
    let plain = make(full, None);
    if len(&plain) <= limit {
        plain
    } else {
        make(short, None)
    }
}

fn truncate(s: &str, max: usize, ellipsis: &str) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let keep = max.saturating_sub(ellipsis.chars().count());
    let mut out: String = s.chars().take(keep).collect();
    out.push_str(ellipsis);
    out
}

/// The part of the newest trace line worth quoting for this kind of message, cleaned up.
fn snippet_for(kind: Kind, shipment: &Shipment, locale: Locale) -> Option<String> {
    let (_, event) = shipment.last_event.as_ref()?;
    let raw = match kind {
        // The city is the news; the line itself is a depot scan.
        Kind::ArrivedCity => event.location.as_deref()?,
        // Station and pickup code; courier and their number; who signed; why it failed.
        Kind::OutForDelivery
        | Kind::ReadyForPickup
        | Kind::PickupOverdue
        | Kind::Delivered
        | Kind::DeliveryFailed
        | Kind::Exception => event.description.as_str(),
        _ => return None,
    };
    let cleaned = mask_recipient_phone(
        &collapse_whitespace(raw),
        shipment.recipient.phone.as_ref().map(|p| p.last4()),
    );
    let cleaned = cleaned
        .trim_end_matches(['。', '.', '，', ',', ' '])
        .to_string();
    if matches!(kind, Kind::ReadyForPickup | Kind::PickupOverdue) {
        // The pickup code is what the buyer needs at the locker: lead with it so no cut loses it,
        // and give it in English too (digits are GSM-safe even when the line is Chinese).
        if let Some(code) = pickup_code(&cleaned) {
            return Some(match (locale, station(&cleaned)) {
                (Locale::ZhCn, Some(st)) => format!("取件码{code}，{st}"),
                (Locale::ZhCn, None) => format!("取件码{code}"),
                (Locale::En, _) => format!("Pickup code {code}."),
            });
        }
    }
    match locale {
        Locale::ZhCn => Some(cleaned),
        // Chinese (or any non-GSM) text would turn the whole SMS into UCS-2 and triple its cost.
        Locale::En => Some(cleaned).filter(|s| is_gsm_basic(s)),
    }
    .filter(|s| !s.is_empty())
}

/// The code after 取件码/提货码/取货码 in a locker or station line: `8-2-4413`, `884213`.
fn pickup_code(s: &str) -> Option<String> {
    let rest = ["取件码", "提货码", "取货码", "取件号"]
        .iter()
        .find_map(|k| s.find(k).map(|i| &s[i + k.len()..]))?;
    let rest = rest.trim_start_matches([':', '：', ' ', '为', '是', '【', '[']);
    let code: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    let code = code.trim_matches('-');
    (code.len() >= 3).then(|| code.to_string())
}

/// The first 【…】 segment of a line (carriers bracket the station or locker name).
fn station(s: &str) -> Option<&str> {
    let start = s.find('【')?;
    let end = s[start..].find('】')? + start + '】'.len_utf8();
    let seg = &s[start..end];
    // Skip the bracket when it holds the pickup code itself.
    (!seg.contains("取件码") && seg.chars().count() > 2).then_some(seg)
}

fn collapse_whitespace(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Replace the recipient's number, in any of its usual spellings, with its masked form.
fn mask_recipient_phone(s: &str, last4: Option<&str>) -> String {
    let Some(last4) = last4 else {
        return s.to_string();
    };
    // The sealed phone only tells its last four digits: mask every mobile number spelling in
    // the line (`13812345678`, `8613812345678`, `+8613812345678`) that ends with them. A
    // courier's number that happens to share them is masked too, which costs nothing.
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < chars.len() {
        let start = i;
        if chars[i] == '+' && chars.get(i + 1).is_some_and(|c| c.is_ascii_digit()) {
            i += 1;
        }
        if !chars[i].is_ascii_digit() {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        while i < chars.len() && chars[i].is_ascii_digit() {
            i += 1;
        }
        let run: String = chars[start..i].iter().collect();
        let digits = run.trim_start_matches('+');
        let national = digits.strip_prefix("86").filter(|_| digits.len() == 13);
        let mobile = national.unwrap_or(digits);
        if mobile.len() == 11 && mobile.starts_with('1') && mobile.ends_with(last4) {
            // Keep the first three and last four characters, the way couriers print numbers.
            let n = run.len();
            out.push_str(&run[..3]);
            out.push_str(&"*".repeat(n - 7));
            out.push_str(&run[n - 4..]);
        } else {
            out.push_str(&run);
        }
    }
    out
}

/// Printable ASCII that GSM-7 encodes in its basic table (one septet each).
fn is_gsm_basic(s: &str) -> bool {
    s.chars().all(|c| {
        (c == ' ' || c.is_ascii_graphic())
            && !matches!(c, '[' | ']' | '{' | '}' | '\\' | '^' | '~' | '|' | '`')
    })
}

fn title(kind: Kind, locale: Locale) -> &'static str {
    use Kind::*;
    match locale {
        Locale::ZhCn => match kind {
            PickedUp => "包裹已揽收",
            Shipped => "包裹已发货",
            Resumed => "包裹恢复运输",
            ArrivedCity => "包裹已到达目的城市",
            OutForDelivery => "包裹派送中",
            ReadyForPickup => "包裹待取件",
            PickupOverdue => "取件提醒",
            Delivered => "包裹已签收",
            DeliveryFailed => "派送未成功",
            NoInfoAfterShipping => "暂无物流信息",
            NotSignedInTime => "包裹超时未签收",
            NoUpdate => "物流长时间未更新",
            Exception => "包裹运输异常",
            Returning => "包裹退回中",
            Returned => "包裹已退回",
        },
        Locale::En => match kind {
            PickedUp => "Parcel picked up",
            Shipped => "Parcel shipped",
            Resumed => "Parcel on the move again",
            ArrivedCity => "Parcel arrived in your city",
            OutForDelivery => "Out for delivery",
            ReadyForPickup => "Ready for pickup",
            PickupOverdue => "Pickup reminder",
            Delivered => "Parcel delivered",
            DeliveryFailed => "Delivery attempt failed",
            NoInfoAfterShipping => "No tracking information",
            NotSignedInTime => "Parcel not signed for",
            NoUpdate => "No tracking update",
            Exception => "Delivery issue",
            Returning => "Parcel being returned",
            Returned => "Parcel returned",
        },
    }
}

/// The SMS text. `num` is the waybill number or its short form; `snip` a cleaned trace snippet.
fn body(kind: Kind, locale: Locale, c: &str, num: &str, snip: Option<&str>) -> String {
    use Kind::*;
    match locale {
        Locale::ZhCn => {
            let p = format!("{ZH_SIGN}您的{c}包裹{num}");
            // "：snippet" or nothing.
            let colon = snip.map(|s| format!("：{s}")).unwrap_or_default();
            let tail = snip.unwrap_or("");
            match kind {
                PickedUp => format!("{p}已揽收，我们会持续为您跟踪。"),
                Shipped => format!("{p}已发出，正在运输途中。"),
                Resumed => format!("{p}已恢复运输，正在途中。"),
                ArrivedCity => format!("{p}已到达{}，即将为您派送。", snip.unwrap_or("目的城市")),
                OutForDelivery => format!("{p}正在派送，请保持电话畅通。{tail}"),
                ReadyForPickup => format!("{p}已到取件点，请及时取件。{tail}"),
                PickupOverdue => format!("{p}滞留未取，请尽快取件以免退回。{tail}"),
                Delivered => format!("{p}已签收{colon}。如非本人签收请联系商家。"),
                DeliveryFailed => format!("{p}派送未成功{colon}，请留意再次派送。"),
                NoInfoAfterShipping => format!("{p}发货后暂无物流信息，我们正在核实。"),
                NotSignedInTime => format!("{p}超时未签收，如未收到请联系商家。"),
                NoUpdate => format!("{p}物流长时间未更新，我们正在核实。"),
                Exception => format!("{p}运输异常{colon}。如有疑问请联系商家。"),
                Returning => format!("{p}正在退回发件人，如有疑问请联系商家。"),
                Returned => format!("{p}已退回发件人，如有疑问请联系商家。"),
            }
        }
        Locale::En => {
            let p = format!("{EN_SIGN}Your {c} parcel {num}");
            let colon = snip.map(|s| format!(": {s}")).unwrap_or_default();
            let tail = snip.map(|s| format!(" {s}")).unwrap_or_default();
            match kind {
                PickedUp => format!("{p} has been picked up by the carrier. We will keep you posted."),
                Shipped => format!("{p} has shipped and is on its way."),
                Resumed => format!("{p} is moving again and on its way."),
                ArrivedCity => format!(
                    "{p} has arrived in {} and will be out for delivery soon.",
                    snip.unwrap_or("your city")
                ),
                OutForDelivery => format!("{p} is out for delivery. Please keep your phone on.{tail}"),
                ReadyForPickup => format!("{p} is ready for pickup.{tail}"),
                PickupOverdue => format!("{p} is still waiting for pickup. Please collect it soon or it may be returned.{tail}"),
                Delivered => format!("{p} has been delivered{colon}. Not you? Contact the seller."),
                DeliveryFailed => format!("{p} could not be delivered{colon}. The courier will try again."),
                NoInfoAfterShipping => format!("{p} has no carrier scan since shipping. We are checking with the carrier."),
                NotSignedInTime => format!("{p} has not been signed for in time. Not received? Contact the seller."),
                NoUpdate => format!("{p} has had no tracking update for a while. We are checking with the carrier."),
                Exception => format!("{p} has a delivery issue{colon}. Questions? Contact the seller."),
                Returning => format!("{p} is being returned to the sender. Questions? Contact the seller."),
                Returned => format!("{p} has been returned to the sender. Questions? Contact the seller."),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EventKey, Priority, Recipient, ShipmentId, SubStatus, TraceEvent};
    use chrono::{DateTime, Utc};

    const PHONE: &str = "13812345678";

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-24T06:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn shipment(
        carrier: &str,
        number: &str,
        status: Status,
        line: Option<(&str, Option<&str>)>,
    ) -> Shipment {
        let mut s = Shipment::register(
            ShipmentId::parse(carrier, number).unwrap(),
            Priority::Normal,
            "kdniao",
            Recipient {
                phone: Some(
                    crate::domain::SealedPhone::parse("pw1.5678.d3JhcHBlZA.bm9uY2U.Y2lwaGVy")
                        .unwrap(),
                ),
                locale: Locale::ZhCn,
            },
            None,
            now(),
        );
        s.status = status;
        s.last_event = line.map(|(d, loc)| {
            (
                EventKey {
                    time: now(),
                    id: crate::domain::LineId(0),
                },
                TraceEvent {
                    time: now(),
                    description: d.to_string(),
                    location: loc.map(str::to_string),
                    status: Some(status),
                    raw_code: None,
                    claimed_time: None,
                },
            )
        });
        s
    }

    fn tr(from: Status, to: Status, sub: Option<&str>) -> Transition {
        Transition {
            from,
            to,
            from_sub: None,
            to_sub: sub.map(|c| SubStatus::new("kdniao", c)),
        }
    }

    /// A realistic newest line for each target status (Chinese, as carriers write them).
    fn line_for(to: Status) -> (&'static str, Option<&'static str>) {
        match to {
            Status::OutForDelivery => (
                "【深圳市南山区科技园营业点】派件员：王师傅 电话：13900001111 正在为您派件",
                Some("深圳市"),
            ),
            Status::AvailableForPickup => (
                "您的快件已放入丰巢智能快递柜【科技园南区3栋店】，请凭取件码 884213 及时取件",
                Some("深圳市"),
            ),
            Status::Delivered => (
                "快件已签收，签收人：门卫代收，如有疑问请电联快递员",
                Some("深圳市"),
            ),
            Status::DeliveryFailed => (
                "客户电话无人接听，联系不上收件人，快件将再次派送",
                Some("深圳市"),
            ),
            Status::Exception => ("快件外包装破损，已联系发件人处理", Some("广州市")),
            _ => ("快件已到达【深圳转运中心】", Some("深圳市")),
        }
    }

    /// (from, to, expected zh and en titles)
    type Row = (Status, Status, Option<(&'static str, &'static str)>);

    /// Every status as target, both locales: which get a message, and which title.
    #[test]
    fn every_status_in_both_locales() {
        use Status::*;
        // (from, to, expected zh title, expected en title)
        let table: [Row; 13] = [
            (InfoReceived, Pending, None),
            (Pending, InfoReceived, None),
            (Pending, PickedUp, Some(("包裹已揽收", "Parcel picked up"))),
            (PickedUp, InTransit, Some(("包裹已发货", "Parcel shipped"))),
            (
                InTransit,
                ArrivedAtDestinationCity,
                Some(("包裹已到达目的城市", "Parcel arrived in your city")),
            ),
            (
                ArrivedAtDestinationCity,
                OutForDelivery,
                Some(("包裹派送中", "Out for delivery")),
            ),
            (
                OutForDelivery,
                AvailableForPickup,
                Some(("包裹待取件", "Ready for pickup")),
            ),
            (
                OutForDelivery,
                Delivered,
                Some(("包裹已签收", "Parcel delivered")),
            ),
            (
                OutForDelivery,
                DeliveryFailed,
                Some(("派送未成功", "Delivery attempt failed")),
            ),
            (
                InTransit,
                Exception,
                Some(("包裹运输异常", "Delivery issue")),
            ),
            (
                Exception,
                Returning,
                Some(("包裹退回中", "Parcel being returned")),
            ),
            (Returning, Returned, Some(("包裹已退回", "Parcel returned"))),
            (InTransit, Expired, None),
        ];
        assert_eq!(
            table.iter().map(|r| r.1).collect::<Vec<_>>(),
            Status::ALL.to_vec(),
            "the table covers every status once"
        );
        for (from, to, want) in table {
            let s = shipment("SF", "SF1234567890123", to, Some(line_for(to)));
            let t = tr(from, to, None);
            let zh = render(&s, &t, Locale::ZhCn);
            let en = render(&s, &t, Locale::En);
            match want {
                None => {
                    assert_eq!(zh, None, "{from}>{to} zh");
                    assert_eq!(en, None, "{from}>{to} en");
                }
                Some((zh_title, en_title)) => {
                    let zh = zh.unwrap_or_else(|| panic!("{from}>{to}: no zh text"));
                    let en = en.unwrap_or_else(|| panic!("{from}>{to}: no en text"));
                    assert_eq!(zh.title, zh_title);
                    assert_eq!(en.title, en_title);
                    assert!(
                        zh.body.starts_with("【parcelwatch】您的顺丰速运包裹"),
                        "{}",
                        zh.body
                    );
                    assert!(
                        en.body.starts_with("parcelwatch: Your SF Express parcel "),
                        "{}",
                        en.body
                    );
                    assert!(
                        zh.body.contains("SF1234567890123") || zh.body.contains("尾号0123"),
                        "{}",
                        zh.body
                    );
                    assert!(
                        en.body.contains("SF1234567890123") || en.body.contains("ending 0123"),
                        "{}",
                        en.body
                    );
                    assert_budgets(&zh, &en);
                }
            }
        }
    }

    fn assert_budgets(zh: &Notification, en: &Notification) {
        assert!(
            zh.body.chars().count() <= ZH_BODY_LIMIT,
            "{} chars: {}",
            zh.body.chars().count(),
            zh.body
        );
        assert!(
            en.body.chars().count() <= EN_BODY_LIMIT,
            "{} chars: {}",
            en.body.chars().count(),
            en.body
        );
        assert!(is_gsm_basic(&en.body), "not GSM-7: {}", en.body);
        for b in [&zh.body, &en.body] {
            assert!(
                !b.contains(PHONE) && !b.contains("8613812345678"),
                "phone leaked: {b}"
            );
        }
    }

    #[test]
    fn verdicts_and_kdniao_codes_get_their_own_words() {
        use Status::*;
        let cases = [
            (
                InTransit,
                Exception,
                "402",
                "超时未签收",
                "not been signed for",
            ),
            (
                InTransit,
                Exception,
                "403",
                "长时间未更新",
                "no tracking update",
            ),
            (
                PickedUp,
                Exception,
                "401",
                "暂无物流信息",
                "no carrier scan",
            ),
            (
                OutForDelivery,
                AvailableForPickup,
                "412",
                "滞留未取",
                "still waiting for pickup",
            ),
            (
                ArrivedAtDestinationCity,
                Returning,
                "404",
                "正在退回",
                "being returned",
            ),
        ];
        for (from, to, code, zh_word, en_word) in cases {
            let s = shipment("YTO", "YT7412345678901", to, Some(line_for(to)));
            let t = tr(from, to, Some(code));
            let zh = render(&s, &t, Locale::ZhCn).unwrap();
            let en = render(&s, &t, Locale::En).unwrap();
            assert!(zh.body.contains(zh_word), "{code}: {}", zh.body);
            assert!(en.body.contains(en_word), "{code}: {}", en.body);
            assert!(zh.body.contains("圆通速递") && en.body.contains("YTO Express"));
            assert_budgets(&zh, &en);
        }
    }

    #[test]
    fn sub_status_only_changes_are_quiet_except_the_locker_reminder() {
        use Status::*;
        let s = shipment(
            "ZTO",
            "731234567890",
            AvailableForPickup,
            Some(line_for(AvailableForPickup)),
        );
        let reminder = Transition {
            from: AvailableForPickup,
            to: AvailableForPickup,
            from_sub: Some(SubStatus::new("kdniao", "211")),
            to_sub: Some(SubStatus::new("kdniao", "412")),
        };
        let zh = render(&s, &reminder, Locale::ZhCn).unwrap();
        assert_eq!(zh.title, "取件提醒");
        for (st, a, b) in [
            (Delivered, "3", "311"),
            (Exception, "401", "403"),
            (InTransit, "2", "201"),
            (AvailableForPickup, "412", "211"),
        ] {
            let t = Transition {
                from: st,
                to: st,
                from_sub: Some(SubStatus::new("kdniao", a)),
                to_sub: Some(SubStatus::new("kdniao", b)),
            };
            assert_eq!(render(&s, &t, Locale::ZhCn), None, "{st} {a}>{b}");
            assert_eq!(render(&s, &t, Locale::En), None, "{st} {a}>{b}");
        }
    }

    #[test]
    fn in_transit_is_news_only_as_shipping_or_recovery() {
        use Status::*;
        let s = shipment("STO", "773012345678", InTransit, Some(line_for(InTransit)));
        for (from, want) in [
            (Pending, Some("包裹已发货")),
            (InfoReceived, Some("包裹已发货")),
            (PickedUp, Some("包裹已发货")),
            (Exception, Some("包裹恢复运输")),
            (DeliveryFailed, Some("包裹恢复运输")),
            (ArrivedAtDestinationCity, None),
            (Returning, None),
        ] {
            let got = render(&s, &tr(from, InTransit, None), Locale::ZhCn).map(|n| n.title);
            assert_eq!(got.as_deref(), want, "{from}>InTransit");
        }
        // Steps backwards carry no news; a redelivery does.
        assert_eq!(
            render(
                &s,
                &tr(OutForDelivery, ArrivedAtDestinationCity, None),
                Locale::ZhCn
            ),
            None
        );
        assert_eq!(
            render(&s, &tr(InTransit, PickedUp, None), Locale::ZhCn),
            None
        );
        assert!(render(&s, &tr(DeliveryFailed, OutForDelivery, None), Locale::ZhCn).is_some());
    }

    #[test]
    fn snippets_help_fit_and_never_leak_the_phone() {
        use Status::*;
        // A long line: the number goes short to leave the courier's name room.
        let out = shipment(
            "SF",
            "SF1234567890123",
            OutForDelivery,
            Some(line_for(OutForDelivery)),
        );
        let zh = render(
            &out,
            &tr(ArrivedAtDestinationCity, OutForDelivery, None),
            Locale::ZhCn,
        )
        .unwrap();
        assert!(
            zh.body.contains("（尾号0123）") && zh.body.contains("派件员：王师傅"),
            "{}",
            zh.body
        );
        assert!(zh.body.ends_with('…'), "{}", zh.body);
        // Chinese snippets stay out of English texts (they would make the SMS UCS-2).
        let en = render(
            &out,
            &tr(ArrivedAtDestinationCity, OutForDelivery, None),
            Locale::En,
        )
        .unwrap();
        assert_eq!(
            en.body,
            "parcelwatch: Your SF Express parcel SF1234567890123 is out for delivery. Please keep your phone on."
        );

        // The buyer's own number inside a carrier line is masked.
        let leak = shipment(
            "YD",
            "4312345678901",
            Delivered,
            Some(("已签收，收件人电话 13812345678 本人签收", None)),
        );
        let zh = render(&leak, &tr(OutForDelivery, Delivered, None), Locale::ZhCn).unwrap();
        assert!(zh.body.contains("138****5678"), "{}", zh.body);
        assert!(!zh.body.contains(PHONE), "{}", zh.body);
        // Every spelling of it; a courier's number ending otherwise is left for the buyer.
        for (line, masked) in [
            ("电话+8613812345678签收", "+86*******5678"),
            ("电话 8613812345678 签收", "861******5678"),
            (
                "快递员13900001111，收件人13812345678",
                "快递员13900001111，收件人138****5678",
            ),
        ] {
            assert!(
                mask_recipient_phone(line, Some("5678")).contains(masked),
                "{line}"
            );
        }
        assert_eq!(mask_recipient_phone("13812345678", None), "13812345678");
        assert_eq!(
            mask_recipient_phone("138123456789", Some("6789")),
            "138123456789"
        );

        // A short city snippet, ASCII lines do reach English texts.
        let city = shipment(
            "JTSD",
            "JT0001234567890",
            ArrivedAtDestinationCity,
            Some(("Arrived at hub", Some("杭州市"))),
        );
        let zh = render(
            &city,
            &tr(InTransit, ArrivedAtDestinationCity, None),
            Locale::ZhCn,
        )
        .unwrap();
        assert!(zh.body.contains("已到达杭州市"), "{}", zh.body);
        let en = render(
            &city,
            &tr(InTransit, ArrivedAtDestinationCity, None),
            Locale::En,
        )
        .unwrap();
        assert!(
            en.body.contains("J&T Express") && en.body.contains("arrived in your city"),
            "{}",
            en.body
        );
        let ascii = shipment(
            "EMS",
            "EA123456789CN",
            DeliveryFailed,
            Some(("Addressee not available, notice left", None)),
        );
        let en = render(
            &ascii,
            &tr(OutForDelivery, DeliveryFailed, None),
            Locale::En,
        )
        .unwrap();
        assert!(
            en.body
                .contains(": Addressee not available, notice left. The courier"),
            "{}",
            en.body
        );
    }

    #[test]
    fn long_inputs_still_fit_one_segment() {
        use Status::*;
        let long_line = "快件已被【深圳市南山区粤海街道科技园南区深圳湾科技生态园10栋B座一楼菜鸟驿站】代收，取件码 8-2-4413，营业时间 09:00-21:00，如有疑问请联系 0755-86001234";
        // An unknown carrier prints its code (up to 16 characters).
        for carrier in ["SF", "YTO", "LONGCARRIERCODE1"] {
            for to in [
                OutForDelivery,
                AvailableForPickup,
                Delivered,
                DeliveryFailed,
                Exception,
            ] {
                let s = shipment(
                    carrier,
                    "ABCDEFGHIJ0123456789KLMNOPQRST99",
                    to,
                    Some((long_line, Some("深圳市"))),
                );
                let t = tr(InTransit, to, None);
                let zh = render(&s, &t, Locale::ZhCn).unwrap();
                let en = render(&s, &t, Locale::En).unwrap();
                assert_budgets(&zh, &en);
                assert!(
                    zh.body.contains("尾号ST99")
                        || zh.body.contains("ABCDEFGHIJ0123456789KLMNOPQRST99"),
                    "{}",
                    zh.body
                );
            }
        }
        assert_eq!(truncate("一二三四五六七八", 5, "…"), "一二三四…");
        assert_eq!(truncate("abc", 5, "..."), "abc");
    }

    #[test]
    fn pickup_codes_survive_in_both_locales() {
        use Status::*;
        for (from, to, sub) in [
            (OutForDelivery, AvailableForPickup, None),
            (AvailableForPickup, AvailableForPickup, Some("412")),
        ] {
            let s = shipment("SF", "SF1234567890123", to, Some(line_for(to)));
            let t = Transition {
                from,
                to,
                from_sub: Some(SubStatus::new("kdniao", "211")),
                to_sub: sub.map(|c| SubStatus::new("kdniao", c)),
            };
            let zh = render(&s, &t, Locale::ZhCn).unwrap();
            let en = render(&s, &t, Locale::En).unwrap();
            assert!(
                zh.body.ends_with("取件码884213，【科技园南区3栋店】"),
                "{}",
                zh.body
            );
            assert!(en.body.ends_with("Pickup code 884213."), "{}", en.body);
            assert_budgets(&zh, &en);
        }
        assert_eq!(
            pickup_code("凭取件码：8-2-4413到驿站取件").as_deref(),
            Some("8-2-4413")
        );
        assert_eq!(
            pickup_code("提货码为A1B2C3，请尽快"),
            Some("A1B2C3".to_string())
        );
        assert_eq!(pickup_code("请凭取件码取件"), None);
        assert_eq!(station("已放入【菜鸟驿站】代收"), Some("【菜鸟驿站】"));
        assert_eq!(station("没有括号"), None);
    }

    #[test]
    fn no_last_event_still_renders() {
        let s = shipment("SF", "SF1234567890123", Status::Delivered, None);
        let zh = render(
            &s,
            &tr(Status::OutForDelivery, Status::Delivered, None),
            Locale::ZhCn,
        )
        .unwrap();
        assert_eq!(
            zh.body,
            "【parcelwatch】您的顺丰速运包裹SF1234567890123已签收。如非本人签收请联系商家。"
        );
    }

    #[test]
    fn our_own_flags_tell_the_buyer_nothing_and_the_apology_fits_one_segment() {
        let s = shipment("ZTO", "731234567890123", Status::InTransit, None);
        // Flagging a stall or a delay is no status change: no buyer SMS.
        for code in [
            "stalled;after=1200m;fallback",
            "late;after=4425m;p90=3540m;n40",
        ] {
            let t = Transition {
                from: Status::InTransit,
                to: Status::InTransit,
                from_sub: Some(SubStatus::new("kdniao", "2")),
                to_sub: Some(SubStatus::new("parcelwatch", code)),
            };
            assert_eq!(render(&s, &t, Locale::ZhCn), None, "{code}");
        }
        let zh = render_apology(&s, FlagKind::Stalled, Locale::ZhCn);
        let en = render_apology(&s, FlagKind::Stalled, Locale::En);
        assert_budgets(&zh, &en);
        assert_eq!(
            zh.body,
            "【parcelwatch】您的中通快递包裹731234567890123物流暂未更新，我们已在联系快递跟进，抱歉让您久等。"
        );
        assert!(en.body.contains("731234567890123"), "{}", en.body);
        assert!(en.body.contains("no carrier update"), "{}", en.body);
        assert!(is_gsm_basic(&en.body), "{}", en.body);
        let zh = render_apology(&s, FlagKind::Late, Locale::ZhCn);
        let en = render_apology(&s, FlagKind::Late, Locale::En);
        assert_budgets(&zh, &en);
        assert!(zh.body.contains("比预期晚到"), "{}", zh.body);
        assert!(en.body.contains("running late"), "{}", en.body);
        // A long carrier name and number: the short form, still whole sentences.
        let long = shipment("JD", "JDV012345678901", Status::InTransit, None);
        for kind in [FlagKind::Stalled, FlagKind::Late] {
            assert_budgets(
                &render_apology(&long, kind, Locale::ZhCn),
                &render_apology(&long, kind, Locale::En),
            );
        }
    }
}
