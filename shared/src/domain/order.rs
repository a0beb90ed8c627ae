//! Shop orders as the order platforms (fw199's enhanced Taobao order list, Taobao TOP) report
//! them, and the pure decision of what each sub-order means for tracking.
//!
//! A Taobao trade (`tid`) holds sub-orders (`oid`); the seller ships each sub-order and writes the
//! carrier's company name (`logistics_company`, Chinese text) and the waybill (`invoice_no`) on
//! it. Several sub-orders may leave in one parcel (one waybill) or in several (split parcels), and
//! a trade may be part-shipped (`SELLER_CONSIGNED_PART`). During sales events Taobao answers with
//! blank fields; a blank is never evidence of anything (see [`plan_order`]).

use super::ids::{mask_phone, Carrier, PhoneNumber, SealedPhone, ShipmentId, TrackingNumber};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The order platform an order was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// fw199 (蜂巢) enhanced Taobao order list.
    Fw199,
    /// Taobao Open Platform, `taobao.trades.sold.increment.get`.
    Top,
}

impl Platform {
    pub const ALL: [Platform; 2] = [Platform::Fw199, Platform::Top];

    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Fw199 => "fw199",
            Platform::Top => "top",
        }
    }
    pub fn parse(s: &str) -> Option<Platform> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fw199" => Some(Platform::Fw199),
            "top" => Some(Platform::Top),
            _ => None,
        }
    }
    /// Largest page the platform serves (fw199: 500; TOP: 100).
    pub fn max_page_size(self) -> u32 {
        match self {
            Platform::Fw199 => 500,
            Platform::Top => 100,
        }
    }
    /// Longest modified-time window one query may span, when the platform limits it
    /// (TOP: one day).
    pub fn max_window(self) -> Option<Duration> {
        match self {
            Platform::Fw199 => None,
            Platform::Top => Some(Duration::days(1)),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Taobao trade (and sub-order) statuses, PROTOCOLS.md §3.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TradeStatus {
    TradeNoCreatePay,
    WaitBuyerPay,
    SellerConsignedPart,
    WaitSellerSendGoods,
    WaitBuyerConfirmGoods,
    TradeBuyerSigned,
    TradeFinished,
    TradeClosed,
    TradeClosedByTaobao,
    PayPending,
    WaitPreAuthConfirm,
    /// Anything else, kept verbatim; the empty string is a blank answer.
    Unknown(String),
}

impl TradeStatus {
    pub fn parse(s: &str) -> TradeStatus {
        match s.trim() {
            "TRADE_NO_CREATE_PAY" => TradeStatus::TradeNoCreatePay,
            "WAIT_BUYER_PAY" => TradeStatus::WaitBuyerPay,
            "SELLER_CONSIGNED_PART" => TradeStatus::SellerConsignedPart,
            "WAIT_SELLER_SEND_GOODS" => TradeStatus::WaitSellerSendGoods,
            "WAIT_BUYER_CONFIRM_GOODS" => TradeStatus::WaitBuyerConfirmGoods,
            "TRADE_BUYER_SIGNED" => TradeStatus::TradeBuyerSigned,
            "TRADE_FINISHED" => TradeStatus::TradeFinished,
            "TRADE_CLOSED" => TradeStatus::TradeClosed,
            "TRADE_CLOSED_BY_TAOBAO" => TradeStatus::TradeClosedByTaobao,
            "PAY_PENDING" => TradeStatus::PayPending,
            "WAIT_PRE_AUTH_CONFIRM" => TradeStatus::WaitPreAuthConfirm,
            other => TradeStatus::Unknown(other.to_string()),
        }
    }
    pub fn as_str(&self) -> &str {
        match self {
            TradeStatus::TradeNoCreatePay => "TRADE_NO_CREATE_PAY",
            TradeStatus::WaitBuyerPay => "WAIT_BUYER_PAY",
            TradeStatus::SellerConsignedPart => "SELLER_CONSIGNED_PART",
            TradeStatus::WaitSellerSendGoods => "WAIT_SELLER_SEND_GOODS",
            TradeStatus::WaitBuyerConfirmGoods => "WAIT_BUYER_CONFIRM_GOODS",
            TradeStatus::TradeBuyerSigned => "TRADE_BUYER_SIGNED",
            TradeStatus::TradeFinished => "TRADE_FINISHED",
            TradeStatus::TradeClosed => "TRADE_CLOSED",
            TradeStatus::TradeClosedByTaobao => "TRADE_CLOSED_BY_TAOBAO",
            TradeStatus::PayPending => "PAY_PENDING",
            TradeStatus::WaitPreAuthConfirm => "WAIT_PRE_AUTH_CONFIRM",
            TradeStatus::Unknown(s) => s,
        }
    }
    /// A blank answer (promotion-time empty field).
    pub fn is_blank(&self) -> bool {
        matches!(self, TradeStatus::Unknown(s) if s.trim().is_empty())
    }
    pub fn is_closed(&self) -> bool {
        matches!(
            self,
            TradeStatus::TradeClosed | TradeStatus::TradeClosedByTaobao
        )
    }
    /// The goods have left the seller (all or part of them).
    pub fn is_shipped(&self) -> bool {
        matches!(
            self,
            TradeStatus::SellerConsignedPart
                | TradeStatus::WaitBuyerConfirmGoods
                | TradeStatus::TradeBuyerSigned
                | TradeStatus::TradeFinished
        )
    }
}

impl Default for TradeStatus {
    fn default() -> Self {
        TradeStatus::Unknown(String::new())
    }
}

impl fmt::Display for TradeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for TradeStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for TradeStatus {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(TradeStatus::parse(&String::deserialize(d)?))
    }
}

/// Taobao's refund status of a sub-order that means the money went back to the buyer.
pub const REFUND_SUCCESS: &str = "SUCCESS";

/// One sub-order (Taobao `order`) of a trade.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SubOrder {
    pub oid: String,
    pub status: TradeStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_status: Option<String>,
    /// The carrier's company name as the seller picked it (`圆通速递`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logistics_company: Option<String>,
    /// The waybill number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoice_no: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consign_time: Option<DateTime<Utc>>,
}

fn present(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

impl SubOrder {
    pub fn new(oid: impl Into<String>, status: TradeStatus) -> SubOrder {
        SubOrder {
            oid: oid.into(),
            status,
            ..SubOrder::default()
        }
    }
    pub fn refunded(&self) -> bool {
        present(&self.refund_status) == Some(REFUND_SUCCESS)
    }
    /// The parcel this sub-order left in, from its company name and waybill.
    pub fn shipment_id(&self) -> Result<ShipmentId, SkipReason> {
        match (present(&self.logistics_company), present(&self.invoice_no)) {
            (None, None) => Err(SkipReason::NotShipped),
            (Some(_), None) => Err(SkipReason::Incomplete("invoice_no")),
            (None, Some(_)) => Err(SkipReason::Incomplete("logistics_company")),
            (Some(company), Some(number)) => {
                let carrier = carrier_from_company_name(company)
                    .ok_or_else(|| SkipReason::UnknownCarrier(company.to_string()))?;
                let number = TrackingNumber::parse(number)
                    .map_err(|_| SkipReason::MalformedNumber(number.to_string()))?;
                Ok(ShipmentId::new(carrier, number))
            }
        }
    }
}

/// A trade (Taobao `trade`) of one shop.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub platform: Platform,
    /// The seller's login nick (`tb_seller_nick`), not the shop's display name.
    pub shop: String,
    pub tid: String,
    pub status: TradeStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified: Option<DateTime<Utc>>,
    /// As the platform gives it; Taobao often masks it (`*******1889`). Never logged in clear,
    /// never stored in clear: order-sync replaces a usable number by its sealed form
    /// ([`Order::seal_phone`]) before the order is written, and drops an unusable one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiver_mobile: Option<String>,
    /// The receiver's province as the platform writes it (`福建省`, `北京`): where the parcel
    /// goes, known before any scan ([`Order::destination_province`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiver_state: Option<String>,
    /// The receiver's city (`漳州市`): the province when `receiver_state` is blank.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiver_city: Option<String>,
    #[serde(default)]
    pub orders: Vec<SubOrder>,
}

impl fmt::Debug for Order {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Order")
            .field("platform", &self.platform)
            .field("shop", &self.shop)
            .field("tid", &self.tid)
            .field("status", &self.status)
            .field("created", &self.created)
            .field("modified", &self.modified)
            .field("receiver_state", &self.receiver_state)
            .field("receiver_city", &self.receiver_city)
            .field(
                "receiver_mobile",
                &self
                    .receiver_mobile
                    .as_deref()
                    .map(|m| match SealedPhone::parse(m) {
                        Ok(sealed) => format!("{sealed:?}"),
                        Err(_) => mask_phone(m),
                    }),
            )
            .field("orders", &self.orders)
            .finish()
    }
}

impl Order {
    /// `fw199:shopnick:1234567890`: what a shipment registered from this order refers to.
    pub fn order_ref(&self) -> String {
        format!("{}:{}:{}", self.platform, self.shop, self.tid)
    }
    /// The province the parcels of this order go to, by its common name (`福建`, the key the
    /// delivery analytics use): from `receiver_state`, else from `receiver_city`. `None` when
    /// neither names a province.
    pub fn destination_province(&self) -> Option<&'static str> {
        use super::geo::{parse_province, province_of};
        present(&self.receiver_state)
            .and_then(parse_province)
            .or_else(|| present(&self.receiver_city).and_then(province_of))
            .map(|p| p.name)
    }
    /// The receiver's phone when it is a usable number (not blank, not masked).
    pub fn phone(&self) -> Option<PhoneNumber> {
        present(&self.receiver_mobile).and_then(|m| PhoneNumber::parse(m).ok())
    }
    /// The receiver's phone once sealed ([`Order::seal_phone`]).
    pub fn sealed_phone(&self) -> Option<SealedPhone> {
        present(&self.receiver_mobile).and_then(|m| SealedPhone::parse(m).ok())
    }
    /// Keep the phone sealed (what [`Order::phone`] gave, sealed) or nothing: a masked or blank
    /// value is no use, and a clear one must not be stored.
    pub fn seal_phone(&mut self, sealed: Option<SealedPhone>) {
        self.receiver_mobile = sealed.map(String::from);
    }
}

/// The carrier (Kdniao ShipperCode) a Taobao logistics company name stands for. Only exact
/// names: freight products of the same brands (`中通快运`, `顺丰快运`) are other carriers.
/// The names live in the carrier registry ([`super::carriers::CARRIERS`]).
pub fn carrier_from_company_name(name: &str) -> Option<Carrier> {
    super::carriers::by_taobao_name(name).and_then(|info| Carrier::parse(info.code).ok())
}

/// Why a sub-order's parcel is no longer tracked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// The trade (or the sub-order) was closed: `TRADE_CLOSED` / `TRADE_CLOSED_BY_TAOBAO`.
    Closed(TradeStatus),
    /// The sub-order's refund succeeded.
    Refunded,
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::Closed(s) => write!(f, "order {s}"),
            StopReason::Refunded => f.write_str("refund succeeded"),
        }
    }
}

/// Why a sub-order leads to no action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// No waybill yet and nothing says it left.
    NotShipped,
    /// Closed or refunded before any waybill was written.
    ClosedUnshipped,
    /// A field that should be there is blank (sales-event answers): decide nothing on it.
    Incomplete(&'static str),
    /// A company name we cannot map to a carrier.
    UnknownCarrier(String),
    /// A waybill that is not a tracking number.
    MalformedNumber(String),
}

impl SkipReason {
    /// Stable short name, for counters and reports.
    pub fn code(&self) -> &'static str {
        match self {
            SkipReason::NotShipped => "not_shipped",
            SkipReason::ClosedUnshipped => "closed_unshipped",
            SkipReason::Incomplete(_) => "incomplete",
            SkipReason::UnknownCarrier(_) => "unknown_carrier",
            SkipReason::MalformedNumber(_) => "malformed_number",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::NotShipped => f.write_str("not shipped"),
            SkipReason::ClosedUnshipped => f.write_str("closed before shipping"),
            SkipReason::Incomplete(field) => write!(f, "incomplete: {field} is blank"),
            SkipReason::UnknownCarrier(name) => write!(f, "unknown carrier name `{name}`"),
            SkipReason::MalformedNumber(n) => write!(f, "malformed waybill number `{n}`"),
        }
    }
}

/// What to do about one parcel (or one sub-order without a parcel) of an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubOrderPlan {
    /// Register the parcel (idempotent). `oids`: the sub-orders that left in it.
    Track {
        id: ShipmentId,
        oids: Vec<String>,
        phone: Option<SealedPhone>,
    },
    /// Stop checking the parcel: every sub-order in it was closed or refunded.
    StopTracking {
        id: ShipmentId,
        oids: Vec<String>,
        reason: StopReason,
    },
    /// Nothing to do for this sub-order (`oid` is the trade's `tid` when the trade came with no
    /// sub-orders at all).
    Skip { oid: String, reason: SkipReason },
}

/// The parcels of an order and what to do with each.
///
/// - A sub-order with a known company name and a valid waybill belongs to the parcel of that
///   waybill. Sub-orders sharing a waybill make one parcel; different waybills make one parcel
///   each (split parcels).
/// - A parcel is stopped when the trade is closed, or when every sub-order in it is closed or
///   refunded (a parcel that still carries one live sub-order is still tracked).
/// - Blank fields decide nothing: a sub-order that says it shipped but has no waybill, a waybill
///   without a company (or the reverse), a trade with no sub-orders — all `Skip(Incomplete)`.
///   Nothing here ever reads a blank as "closed" or "removed".
///
/// Plans come in the order of the sub-orders' first appearance.
pub fn plan_order(order: &Order) -> Vec<SubOrderPlan> {
    struct Parcel {
        id: ShipmentId,
        oids: Vec<String>,
        live: bool,
        stop: Option<StopReason>,
    }
    enum Slot {
        Parcel(usize),
        Skip(String, SkipReason),
    }

    if order.orders.is_empty() {
        return vec![SubOrderPlan::Skip {
            oid: order.tid.clone(),
            reason: SkipReason::Incomplete("orders"),
        }];
    }
    let trade_closed = order.status.is_closed();
    let mut parcels: Vec<Parcel> = Vec::new();
    let mut slots: Vec<Slot> = Vec::new();

    for sub in &order.orders {
        let oid = sub.oid.trim().to_string();
        if oid.is_empty() {
            slots.push(Slot::Skip(oid, SkipReason::Incomplete("oid")));
            continue;
        }
        let stop = if trade_closed {
            Some(StopReason::Closed(order.status.clone()))
        } else if sub.refunded() {
            Some(StopReason::Refunded)
        } else if sub.status.is_closed() {
            Some(StopReason::Closed(sub.status.clone()))
        } else {
            None
        };
        match sub.shipment_id() {
            Ok(id) => {
                let idx = match parcels.iter().position(|p| p.id == id) {
                    Some(i) => i,
                    None => {
                        parcels.push(Parcel {
                            id,
                            oids: Vec::new(),
                            live: false,
                            stop: None,
                        });
                        slots.push(Slot::Parcel(parcels.len() - 1));
                        parcels.len() - 1
                    }
                };
                let p = &mut parcels[idx];
                p.oids.push(oid);
                match stop {
                    None => p.live = true,
                    Some(r) => {
                        if p.stop.is_none() {
                            p.stop = Some(r);
                        }
                    }
                }
            }
            Err(SkipReason::NotShipped) => {
                let reason = if stop.is_some() {
                    SkipReason::ClosedUnshipped
                } else if sub.status.is_shipped() || sub.consign_time.is_some() {
                    // It says it left, yet the waybill is blank: a sales-event answer.
                    SkipReason::Incomplete("invoice_no")
                } else if sub.status.is_blank() {
                    SkipReason::Incomplete("status")
                } else {
                    SkipReason::NotShipped
                };
                slots.push(Slot::Skip(oid, reason));
            }
            Err(reason) => slots.push(Slot::Skip(oid, reason)),
        }
    }

    let phone = order.sealed_phone();
    slots
        .into_iter()
        .map(|slot| match slot {
            Slot::Skip(oid, reason) => SubOrderPlan::Skip { oid, reason },
            Slot::Parcel(i) => {
                let p = &parcels[i];
                match (&p.stop, p.live) {
                    (Some(reason), false) => SubOrderPlan::StopTracking {
                        id: p.id.clone(),
                        oids: p.oids.clone(),
                        reason: reason.clone(),
                    },
                    _ => SubOrderPlan::Track {
                        id: p.id.clone(),
                        oids: p.oids.clone(),
                        phone: phone.clone(),
                    },
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEALED: &str = "pw1.5678.d3JhcHBlZA.bm9uY2U.Y2lwaGVy";
    use chrono::TimeZone;

    fn t(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 11, h, 0, 0).unwrap()
    }

    fn sub(oid: &str, status: &str, company: &str, number: &str) -> SubOrder {
        SubOrder {
            oid: oid.into(),
            status: TradeStatus::parse(status),
            refund_status: None,
            logistics_company: Some(company.into()).filter(|s: &String| !s.is_empty()),
            invoice_no: Some(number.into()).filter(|s: &String| !s.is_empty()),
            consign_time: None,
        }
    }

    fn order(status: &str, subs: Vec<SubOrder>) -> Order {
        Order {
            platform: Platform::Fw199,
            shop: "kingdo".into(),
            tid: "1410072240792463390".into(),
            status: TradeStatus::parse(status),
            created: Some(t(1)),
            modified: Some(t(2)),
            receiver_mobile: Some(SEALED.into()),
            receiver_state: Some("浙江省".into()),
            receiver_city: None,
            orders: subs,
        }
    }

    fn id(c: &str, n: &str) -> ShipmentId {
        ShipmentId::parse(c, n).unwrap()
    }

    #[test]
    fn the_destination_province_comes_from_the_receivers_state_or_city() {
        let mut o = order("WAIT_BUYER_CONFIRM_GOODS", vec![]);
        let cases: &[(Option<&str>, Option<&str>, Option<&str>)] = &[
            (Some("福建省"), Some("漳州市"), Some("福建")),
            (Some("北京"), Some("北京市"), Some("北京")),
            (Some("广西壮族自治区"), None, Some("广西")),
            // A blank or unknown state: the city names it.
            (Some(""), Some("杭州市"), Some("浙江")),
            (Some("火星"), Some("苏州市"), Some("江苏")),
            (None, None, None),
            (None, Some("某某市"), None),
        ];
        for (state, city, want) in cases {
            o.receiver_state = state.map(String::from);
            o.receiver_city = city.map(String::from);
            assert_eq!(o.destination_province(), *want, "{state:?} {city:?}");
        }
    }

    #[test]
    fn company_names_map_to_carrier_codes() {
        let cases = [
            ("圆通速递", Some("YTO")),
            ("圆通快递", Some("YTO")),
            (" 中通 快递 ", Some("ZTO")),
            ("申通快递", Some("STO")),
            ("韵达快递", Some("YD")),
            ("韵达速递", Some("YD")),
            ("顺丰速运", Some("SF")),
            ("顺丰快递", Some("SF")),
            ("SF Express", Some("SF")),
            ("京东快递", Some("JD")),
            ("京东物流", Some("JD")),
            ("EMS", Some("EMS")),
            ("邮政EMS", Some("EMS")),
            ("中国邮政", Some("YZPY")),
            ("邮政快递包裹", Some("YZPY")),
            ("邮政小包", Some("YZPY")),
            ("China Post", Some("YZPY")),
            ("极兔速递", Some("JTSD")),
            ("J&T", Some("JTSD")),
            ("J＆T Express", Some("JTSD")),
            ("德邦快递", Some("DBL")),
            ("德邦物流", Some("DBL")),
            ("百世快递", Some("HTKY")),
            ("百世汇通", Some("HTKY")),
            ("YTO Express", Some("YTO")),
            ("yunda", Some("YD")),
            ("中通快运", None),
            ("顺丰快运", None),
            ("某某物流", None),
            ("", None),
            ("   ", None),
        ];
        for (name, want) in cases {
            assert_eq!(
                carrier_from_company_name(name).map(|c| c.as_str().to_string()),
                want.map(str::to_string),
                "{name:?}"
            );
        }
    }

    #[test]
    fn trade_statuses_round_trip() {
        for s in [
            "TRADE_NO_CREATE_PAY",
            "WAIT_BUYER_PAY",
            "SELLER_CONSIGNED_PART",
            "WAIT_SELLER_SEND_GOODS",
            "WAIT_BUYER_CONFIRM_GOODS",
            "TRADE_BUYER_SIGNED",
            "TRADE_FINISHED",
            "TRADE_CLOSED",
            "TRADE_CLOSED_BY_TAOBAO",
            "PAY_PENDING",
            "WAIT_PRE_AUTH_CONFIRM",
        ] {
            let st = TradeStatus::parse(s);
            assert!(!matches!(st, TradeStatus::Unknown(_)), "{s}");
            assert_eq!(st.as_str(), s);
        }
        assert_eq!(
            TradeStatus::parse("SOMETHING_NEW"),
            TradeStatus::Unknown("SOMETHING_NEW".into())
        );
        assert!(TradeStatus::parse(" ").is_blank());
        assert!(TradeStatus::TradeClosedByTaobao.is_closed());
        assert!(!TradeStatus::TradeFinished.is_closed());
        let json = serde_json::to_string(&TradeStatus::SellerConsignedPart).unwrap();
        assert_eq!(json, "\"SELLER_CONSIGNED_PART\"");
        assert_eq!(
            Platform::parse("FW199"),
            Some(Platform::Fw199),
            "case-insensitive"
        );
        assert_eq!(Platform::parse("tmall"), None);
    }

    #[test]
    fn the_planner_decides_per_parcel() {
        let ok_yto = "YT1234567890123";
        let ok_zto = "731234567890123";
        struct Case {
            name: &'static str,
            order: Order,
            want: Vec<SubOrderPlan>,
        }
        let phone = SealedPhone::parse(SEALED).ok();
        assert!(phone.is_some());
        let track = |c: &str, n: &str, oids: &[&str]| SubOrderPlan::Track {
            id: id(c, n),
            oids: oids.iter().map(|s| s.to_string()).collect(),
            phone: phone.clone(),
        };
        let skip = |oid: &str, reason: SkipReason| SubOrderPlan::Skip {
            oid: oid.into(),
            reason,
        };
        let mut refunded = sub("2", "TRADE_CLOSED", "中通快递", ok_zto);
        refunded.refund_status = Some("SUCCESS".into());
        let mut refund_pending = sub("2", "WAIT_BUYER_CONFIRM_GOODS", "中通快递", ok_zto);
        refund_pending.refund_status = Some("WAIT_SELLER_AGREE".into());
        let mut consigned_blank = sub("1", "WAIT_BUYER_CONFIRM_GOODS", "", "");
        consigned_blank.consign_time = Some(t(3));
        let mut refunded_in_shared = sub("2", "WAIT_BUYER_CONFIRM_GOODS", "圆通速递", ok_yto);
        refunded_in_shared.refund_status = Some("SUCCESS".into());

        let cases = vec![
            Case {
                name: "one shipped sub-order",
                order: order(
                    "WAIT_BUYER_CONFIRM_GOODS",
                    vec![sub("1", "WAIT_BUYER_CONFIRM_GOODS", "圆通速递", ok_yto)],
                ),
                want: vec![track("YTO", ok_yto, &["1"])],
            },
            Case {
                name: "split parcels: two waybills, two shipments",
                order: order(
                    "WAIT_BUYER_CONFIRM_GOODS",
                    vec![
                        sub("1", "WAIT_BUYER_CONFIRM_GOODS", "圆通速递", ok_yto),
                        sub("2", "WAIT_BUYER_CONFIRM_GOODS", "中通快递", ok_zto),
                    ],
                ),
                want: vec![track("YTO", ok_yto, &["1"]), track("ZTO", ok_zto, &["2"])],
            },
            Case {
                name: "one parcel for two sub-orders",
                order: order(
                    "WAIT_BUYER_CONFIRM_GOODS",
                    vec![
                        sub("1", "WAIT_BUYER_CONFIRM_GOODS", "圆通速递", ok_yto),
                        sub(
                            "2",
                            "WAIT_BUYER_CONFIRM_GOODS",
                            "圆通快递",
                            " yt1234567890123",
                        ),
                    ],
                ),
                want: vec![track("YTO", ok_yto, &["1", "2"])],
            },
            Case {
                name: "part shipped: only the consigned sub-order",
                order: order(
                    "SELLER_CONSIGNED_PART",
                    vec![
                        sub("1", "WAIT_BUYER_CONFIRM_GOODS", "圆通速递", ok_yto),
                        sub("2", "WAIT_SELLER_SEND_GOODS", "", ""),
                    ],
                ),
                want: vec![
                    track("YTO", ok_yto, &["1"]),
                    skip("2", SkipReason::NotShipped),
                ],
            },
            Case {
                name: "closed trade stops every parcel",
                order: order(
                    "TRADE_CLOSED",
                    vec![
                        sub("1", "TRADE_CLOSED", "圆通速递", ok_yto),
                        sub("2", "TRADE_CLOSED", "", ""),
                    ],
                ),
                want: vec![
                    SubOrderPlan::StopTracking {
                        id: id("YTO", ok_yto),
                        oids: vec!["1".into()],
                        reason: StopReason::Closed(TradeStatus::TradeClosed),
                    },
                    skip("2", SkipReason::ClosedUnshipped),
                ],
            },
            Case {
                name: "closed by Taobao",
                order: order(
                    "TRADE_CLOSED_BY_TAOBAO",
                    vec![sub(
                        "1",
                        "TRADE_CLOSED_BY_TAOBAO",
                        "韵达快递",
                        "4312345678901",
                    )],
                ),
                want: vec![SubOrderPlan::StopTracking {
                    id: id("YD", "4312345678901"),
                    oids: vec!["1".into()],
                    reason: StopReason::Closed(TradeStatus::TradeClosedByTaobao),
                }],
            },
            Case {
                name: "a successful refund stops that parcel only",
                order: order(
                    "WAIT_BUYER_CONFIRM_GOODS",
                    vec![
                        sub("1", "WAIT_BUYER_CONFIRM_GOODS", "圆通速递", ok_yto),
                        refunded.clone(),
                    ],
                ),
                want: vec![
                    track("YTO", ok_yto, &["1"]),
                    SubOrderPlan::StopTracking {
                        id: id("ZTO", ok_zto),
                        oids: vec!["2".into()],
                        reason: StopReason::Refunded,
                    },
                ],
            },
            Case {
                name: "a pending refund changes nothing",
                order: order("WAIT_BUYER_CONFIRM_GOODS", vec![refund_pending]),
                want: vec![track("ZTO", ok_zto, &["2"])],
            },
            Case {
                name: "a parcel still carrying a live sub-order is tracked",
                order: order(
                    "WAIT_BUYER_CONFIRM_GOODS",
                    vec![
                        sub("1", "WAIT_BUYER_CONFIRM_GOODS", "圆通速递", ok_yto),
                        refunded_in_shared,
                    ],
                ),
                want: vec![track("YTO", ok_yto, &["1", "2"])],
            },
            Case {
                name: "unknown carrier and malformed number say so",
                order: order(
                    "WAIT_BUYER_CONFIRM_GOODS",
                    vec![
                        sub("1", "WAIT_BUYER_CONFIRM_GOODS", "某某物流", ok_yto),
                        sub("2", "WAIT_BUYER_CONFIRM_GOODS", "圆通速递", "12;3"),
                    ],
                ),
                want: vec![
                    skip("1", SkipReason::UnknownCarrier("某某物流".into())),
                    skip("2", SkipReason::MalformedNumber("12;3".into())),
                ],
            },
            Case {
                name: "blank waybill on a shipped sub-order is incomplete, never a stop",
                order: order("WAIT_BUYER_CONFIRM_GOODS", vec![consigned_blank]),
                want: vec![skip("1", SkipReason::Incomplete("invoice_no"))],
            },
            Case {
                name: "a waybill without a company is incomplete",
                order: order(
                    "WAIT_BUYER_CONFIRM_GOODS",
                    vec![
                        sub("1", "WAIT_BUYER_CONFIRM_GOODS", "", ok_yto),
                        sub("2", "WAIT_BUYER_CONFIRM_GOODS", "圆通速递", ""),
                    ],
                ),
                want: vec![
                    skip("1", SkipReason::Incomplete("logistics_company")),
                    skip("2", SkipReason::Incomplete("invoice_no")),
                ],
            },
            Case {
                name: "blank statuses never stop a parcel",
                order: order(
                    "",
                    vec![sub("1", "", "圆通速递", ok_yto), sub("2", "", "", "")],
                ),
                want: vec![
                    track("YTO", ok_yto, &["1"]),
                    skip("2", SkipReason::Incomplete("status")),
                ],
            },
            Case {
                name: "a trade without sub-orders is incomplete",
                order: order("TRADE_CLOSED", vec![]),
                want: vec![skip(
                    "1410072240792463390",
                    SkipReason::Incomplete("orders"),
                )],
            },
            Case {
                name: "a blank oid is incomplete",
                order: order(
                    "WAIT_BUYER_CONFIRM_GOODS",
                    vec![sub(" ", "WAIT_BUYER_CONFIRM_GOODS", "圆通速递", ok_yto)],
                ),
                want: vec![skip("", SkipReason::Incomplete("oid"))],
            },
        ];
        for c in cases {
            assert_eq!(plan_order(&c.order), c.want, "{}", c.name);
        }
    }

    #[test]
    fn masked_or_blank_phones_are_not_used_and_debug_masks_them() {
        let mut o = order("WAIT_BUYER_CONFIRM_GOODS", vec![]);
        assert_eq!(
            o.sealed_phone().map(|p| p.last4().to_string()),
            Some("5678".into())
        );
        assert_eq!(o.phone(), None);
        assert!(format!("{o:?}").contains("SealedPhone(****5678)"));
        o.receiver_mobile = Some("13812345678".into());
        assert_eq!(o.sealed_phone(), None);
        assert_eq!(
            o.phone().map(|p| p.expose().to_string()),
            Some("+8613812345678".into())
        );
        let dbg = format!("{o:?}");
        assert!(!dbg.contains("13812345678"), "{dbg}");
        assert!(dbg.contains("138123*5678"), "{dbg}");
        o.receiver_mobile = Some("*******1889".into());
        assert_eq!(o.phone(), None);
        o.receiver_mobile = Some(" ".into());
        assert_eq!(o.phone(), None);
        o.seal_phone(SealedPhone::parse(SEALED).ok());
        assert_eq!(o.receiver_mobile.as_deref(), Some(SEALED));
        o.seal_phone(None);
        assert_eq!(o.receiver_mobile, None);
        assert_eq!(o.order_ref(), "fw199:kingdo:1410072240792463390");
    }
}
