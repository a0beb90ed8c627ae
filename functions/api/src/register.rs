//! Reading a registration body: one shipment (a JSON object) or many (`{"shipments":[…]}`).
//! Pure: no store, no HTTP. Each item is validated on its own so that one bad line of a WMS
//! back-fill does not sink the other 499.
//!
//! An item without a carrier whose number the rules cannot place confidently is not refused
//! here: it is [`Parsed::CarrierUnsure`], for the handler to ask a provider about (see
//! [`crate::recognition`]) or to refuse with [`CARRIER_REQUIRED`].

use parcelwatch::domain::detect::detect_carrier;
use parcelwatch::domain::{Carrier, Locale, PhoneNumber, Priority, ShipmentId, TrackingNumber};
use serde_json::{Map, Value};

/// Fields a registration item may carry.
pub const ITEM_FIELDS: [&str; 7] = [
    "carrier",
    "number",
    "phone",
    "locale",
    "order_ref",
    "priority",
    "destination",
];
/// Longest merchant order reference kept.
pub const ORDER_REF_MAX_CHARS: usize = 128;
/// Why an item without a carrier is refused when nothing but the number rules could place it.
pub const CARRIER_REQUIRED: &str = "carrier required: could not detect it from the number";

/// How a registration's carrier was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CarrierSource {
    /// The merchant named it.
    Given,
    /// The number rules were confident.
    Rules,
    /// A provider recognized the number (the rules were not): `kdniao-2002`, `kuaidi100-auto`.
    Recognized(&'static str),
}

impl CarrierSource {
    /// How the carrier was detected, for the answer: `rules`, `kdniao-2002`, …; `None` when
    /// the merchant gave it.
    pub fn detected_by(self) -> Option<&'static str> {
        match self {
            CarrierSource::Given => None,
            CarrierSource::Rules => Some("rules"),
            CarrierSource::Recognized(by) => Some(by),
        }
    }
}

/// Who is to be told, as the merchant sent it: the phone still in clear, in memory only. The
/// handler seals it before anything is written (see `parcelwatch::crypto`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Recipient {
    pub phone: Option<PhoneNumber>,
    pub locale: Locale,
}

/// A valid registration item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewShipment {
    pub id: ShipmentId,
    pub carrier_source: CarrierSource,
    pub priority: Priority,
    pub recipient: Recipient,
    pub order_ref: Option<String>,
    /// The receiver's province (common name, `浙江`), when the merchant named one: the route's
    /// destination from registration on (delivery estimates and late thresholds by route).
    pub destination: Option<&'static str>,
}

impl NewShipment {
    /// The carrier was not given and was detected (by the rules or a provider).
    pub fn carrier_detected(&self) -> bool {
        self.carrier_source != CarrierSource::Given
    }
}

/// A valid item but for its carrier: none was given and the number rules are not confident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarrierUnsure {
    pub number: TrackingNumber,
    pub priority: Priority,
    pub recipient: Recipient,
    pub order_ref: Option<String>,
    pub destination: Option<&'static str>,
}

impl CarrierUnsure {
    /// The shipment, once something found its carrier.
    pub fn with_carrier(self, carrier: Carrier, source: CarrierSource) -> NewShipment {
        NewShipment {
            id: ShipmentId::new(carrier, self.number),
            carrier_source: source,
            priority: self.priority,
            recipient: self.recipient,
            order_ref: self.order_ref,
            destination: self.destination,
        }
    }

    /// The item refused for `reason`, naming its number.
    pub fn refuse(&self, reason: impl Into<String>) -> ItemError {
        ItemError {
            carrier: None,
            number: Some(self.number.to_string()),
            reason: reason.into(),
        }
    }
}

/// A valid item, with its carrier or still looking for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Ready(NewShipment),
    CarrierUnsure(CarrierUnsure),
}

impl Parsed {
    /// The item as it stands when no provider may be asked: an unsure carrier is refused.
    pub fn without_recognition(self) -> Item {
        match self {
            Parsed::Ready(new) => Ok(new),
            Parsed::CarrierUnsure(unsure) => Err(unsure.refuse(CARRIER_REQUIRED)),
        }
    }
}

/// An invalid item: why, and what it named (normalized when it parsed, as sent otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemError {
    pub carrier: Option<String>,
    pub number: Option<String>,
    pub reason: String,
}

/// An item ready to register, or why not.
pub type Item = Result<NewShipment, ItemError>;
/// An item as read from the body, its carrier possibly still unknown.
pub type ParsedItem = Result<Parsed, ItemError>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    Single(ParsedItem),
    Bulk(Vec<ParsedItem>),
}

/// The body as a whole cannot be read. Every variant is the client's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("body is not valid JSON: {0}")]
    NotJson(String),
    #[error("body must be a JSON object (one shipment) or {{\"shipments\":[…]}}")]
    NotObject,
    #[error("`shipments` must be a list of shipment objects")]
    ShipmentsNotList,
    #[error("a bulk body holds only `shipments`; unexpected field `{0}`")]
    BulkExtraField(String),
    #[error("`shipments` is empty")]
    Empty,
    #[error("at most {max} shipments per request; this one has {got}")]
    TooMany { got: usize, max: usize },
}

impl BodyError {
    pub fn http_status(&self) -> u16 {
        match self {
            BodyError::TooMany { .. } => 413,
            _ => 400,
        }
    }
}

pub fn parse_registration(body: &str, max_bulk: usize) -> Result<Registration, BodyError> {
    let value: Value = serde_json::from_str(body).map_err(|e| BodyError::NotJson(e.to_string()))?;
    let Value::Object(obj) = value else {
        return Err(BodyError::NotObject);
    };
    let Some(list) = obj.get("shipments") else {
        return Ok(Registration::Single(parse_item(&obj)));
    };
    if let Some(extra) = obj.keys().find(|k| *k != "shipments") {
        return Err(BodyError::BulkExtraField(extra.clone()));
    }
    let Value::Array(items) = list else {
        return Err(BodyError::ShipmentsNotList);
    };
    if items.is_empty() {
        return Err(BodyError::Empty);
    }
    if items.len() > max_bulk {
        return Err(BodyError::TooMany {
            got: items.len(),
            max: max_bulk,
        });
    }
    Ok(Registration::Bulk(
        items
            .iter()
            .map(|v| match v {
                Value::Object(o) => parse_item(o),
                _ => Err(ItemError {
                    carrier: None,
                    number: None,
                    reason: "item is not a JSON object".into(),
                }),
            })
            .collect(),
    ))
}

/// A string field; `null` counts as absent, a JSON number is taken as its digits (waybill
/// numbers exported from spreadsheets often arrive as numbers).
fn text(obj: &Map<String, Value>, name: &str) -> Result<Option<String>, String> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
        Some(Value::Number(n)) if n.is_u64() => Ok(Some(n.to_string())),
        Some(_) => Err(format!("`{name}` must be a string")),
    }
}

pub fn parse_item(obj: &Map<String, Value>) -> ParsedItem {
    let raw_carrier = text(obj, "carrier").ok().flatten();
    let raw_number = text(obj, "number").ok().flatten();
    let fail = |carrier: Option<String>, number: Option<String>, reason: String| ItemError {
        carrier,
        number,
        reason,
    };
    let invalid = |reason: String| fail(raw_carrier.clone(), raw_number.clone(), reason);

    if let Some(unknown) = obj.keys().find(|k| !ITEM_FIELDS.contains(&k.as_str())) {
        return Err(invalid(format!(
            "unknown field `{unknown}` (expected {})",
            ITEM_FIELDS.join(", ")
        )));
    }
    let number = match text(obj, "number").map_err(&invalid)? {
        None => return Err(invalid("`number` is required".into())),
        Some(n) => TrackingNumber::parse(&n).map_err(|e| invalid(e.to_string()))?,
    };
    let invalid = |reason: String| fail(raw_carrier.clone(), Some(number.to_string()), reason);
    // `None`: no carrier given and the rules are unsure; the other fields are still checked
    // (an item refused anyway must not cost a provider call).
    let carrier: Option<(Carrier, CarrierSource)> = match text(obj, "carrier").map_err(&invalid)? {
        Some(c) => Some((
            Carrier::parse(&c)
                .map_err(|e| invalid(e.to_string()))
                .and_then(|c| {
                    if c.is_known() {
                        Ok(c)
                    } else {
                        Err(invalid(format!(
                            "carrier `{c}` is not one parcelwatch tracks (known: {})",
                            parcelwatch::domain::ids::KNOWN_CARRIERS.join(", ")
                        )))
                    }
                })?,
            CarrierSource::Given,
        )),
        None => detect_carrier(&number)
            .into_iter()
            .next()
            .map(|c| (c, CarrierSource::Rules)),
    };
    let invalid = |reason: String| {
        fail(
            carrier.as_ref().map(|(c, _)| c.to_string()),
            Some(number.to_string()),
            reason,
        )
    };
    let phone = text(obj, "phone")
        .map_err(&invalid)?
        .map(|p| PhoneNumber::parse(&p).map_err(|e| invalid(format!("phone: {e}"))))
        .transpose()?;
    let locale = match text(obj, "locale").map_err(&invalid)? {
        None => Locale::default(),
        Some(l) => {
            Locale::parse(&l).ok_or_else(|| invalid("`locale` must be zh-CN or en".into()))?
        }
    };
    let priority = match text(obj, "priority").map_err(&invalid)? {
        None => Priority::default(),
        Some(p) => Priority::parse(&p.to_ascii_lowercase())
            .ok_or_else(|| invalid("`priority` must be normal or high".into()))?,
    };
    let order_ref = text(obj, "order_ref").map_err(&invalid)?;
    if let Some(r) = &order_ref {
        if r.chars().count() > ORDER_REF_MAX_CHARS {
            return Err(invalid(format!(
                "`order_ref` is longer than {ORDER_REF_MAX_CHARS} characters"
            )));
        }
        if r.chars().any(char::is_control) {
            return Err(invalid("`order_ref` holds control characters".into()));
        }
    }
    let destination = match text(obj, "destination").map_err(&invalid)? {
        None => None,
        Some(d) => Some(
            parcelwatch::domain::geo::parse_province(&d)
                .map(|p| p.name)
                .ok_or_else(|| {
                    invalid(format!(
                        "`destination` {d:?} is not a province (浙江, 浙江省, 浙, Zhejiang)"
                    ))
                })?,
        ),
    };
    let unsure = CarrierUnsure {
        number,
        priority,
        recipient: Recipient { phone, locale },
        order_ref,
        destination,
    };
    Ok(match carrier {
        Some((carrier, source)) => Parsed::Ready(unsure.with_carrier(carrier, source)),
        None => Parsed::CarrierUnsure(unsure),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(json: &str) -> Item {
        match serde_json::from_str::<Value>(json).unwrap() {
            Value::Object(o) => parse_item(&o).and_then(Parsed::without_recognition),
            other => panic!("not an object: {other}"),
        }
    }

    fn reason(json: &str) -> String {
        item(json).unwrap_err().reason
    }

    #[test]
    fn a_full_item_is_normalized() {
        let s = item(
            r#"{"carrier":"yto","number":" yt 1000000000001 ","phone":"138 1234 5678",
                "locale":"en","order_ref":"TB-20261124-0001","priority":"HIGH",
                "destination":"Zhejiang"}"#,
        )
        .unwrap();
        assert_eq!(s.id.to_string(), "YTO/YT1000000000001");
        assert!(!s.carrier_detected());
        assert_eq!(s.carrier_source, CarrierSource::Given);
        assert_eq!(s.priority, Priority::High);
        assert_eq!(s.recipient.locale, Locale::En);
        assert_eq!(
            s.recipient.phone.as_ref().map(PhoneNumber::expose),
            Some("+8613812345678")
        );
        assert_eq!(s.order_ref.as_deref(), Some("TB-20261124-0001"));
        assert_eq!(s.destination, Some("浙江"));
        // Any name of a province: common, official, abbreviation.
        for d in ["浙江", "浙江省", "浙"] {
            let s = item(&format!(
                r#"{{"carrier":"YTO","number":"YT1000000000001","destination":"{d}"}}"#
            ))
            .unwrap();
            assert_eq!(s.destination, Some("浙江"), "{d}");
        }
    }

    #[test]
    fn defaults_and_detection_fill_what_is_missing() {
        let s = item(r#"{"number":"SF1234567890123","phone":null}"#).unwrap();
        assert_eq!(s.id.carrier.as_str(), "SF");
        assert!(s.carrier_detected());
        assert_eq!(s.carrier_source.detected_by(), Some("rules"));
        assert_eq!(s.priority, Priority::Normal);
        assert_eq!(s.recipient, Recipient::default());
        assert_eq!(s.order_ref, None);
        assert_eq!(s.destination, None);
        // A waybill number sent as a JSON number.
        let n = item(r#"{"carrier":"ZTO","number":780000000000003}"#).unwrap();
        assert_eq!(n.id.number.as_str(), "780000000000003");
    }

    #[test]
    fn each_bad_field_says_what_is_wrong() {
        assert_eq!(
            reason(r#"{"number":"780000000000003"}"#),
            "carrier required: could not detect it from the number"
        );
        assert_eq!(reason(r#"{"carrier":"YTO"}"#), "`number` is required");
        assert!(
            reason(r#"{"carrier":"YTO","number":"YT1000000000001","destination":"Atlantis"}"#)
                .starts_with("`destination` \"Atlantis\" is not a province"),
        );
        assert!(reason(r#"{"carrier":"YTO","number":"12"}"#).contains("tracking number"));
        assert!(
            reason(r#"{"carrier":"Y T O","number":"YT1000000000001"}"#).contains("carrier code")
        );
        assert!(
            reason(r#"{"carrier":"YTO","number":"YT1000000000001","phone":"12345"}"#)
                .starts_with("phone: ")
        );
        assert_eq!(
            reason(r#"{"carrier":"YTO","number":"YT1000000000001","locale":"fr"}"#),
            "`locale` must be zh-CN or en"
        );
        assert_eq!(
            reason(r#"{"carrier":"YTO","number":"YT1000000000001","priority":"urgent"}"#),
            "`priority` must be normal or high"
        );
        assert!(
            reason(r#"{"carrier":"YTO","number":"YT1000000000001","prority":"high"}"#)
                .starts_with("unknown field `prority`")
        );
        assert_eq!(
            reason(r#"{"carrier":"YTO","number":["YT1"]}"#),
            "`number` must be a string"
        );
        let long = format!(
            r#"{{"carrier":"YTO","number":"YT1000000000001","order_ref":"{}"}}"#,
            "x".repeat(129)
        );
        assert!(reason(&long).contains("longer than 128"));
    }

    #[test]
    fn an_unsure_carrier_is_left_for_recognition_after_the_other_fields_pass() {
        let parsed = |json: &str| match serde_json::from_str::<Value>(json).unwrap() {
            Value::Object(o) => parse_item(&o),
            other => panic!("not an object: {other}"),
        };
        match parsed(r#"{"number":"773000000000001","priority":"high"}"#) {
            Ok(Parsed::CarrierUnsure(u)) => {
                assert_eq!(u.number.as_str(), "773000000000001");
                assert_eq!(u.priority, Priority::High);
                let s = u.clone().with_carrier(
                    Carrier::parse("ZTO").unwrap(),
                    CarrierSource::Recognized("kdniao-2002"),
                );
                assert_eq!(s.id.to_string(), "ZTO/773000000000001");
                assert_eq!(s.carrier_source.detected_by(), Some("kdniao-2002"));
                assert_eq!(s.priority, Priority::High);
                let e = u.refuse("no");
                assert_eq!(
                    (e.carrier, e.number.as_deref(), e.reason.as_str()),
                    (None, Some("773000000000001"), "no")
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        // A bad field is reported as such, not as a missing carrier (no provider call for it).
        let e = parsed(r#"{"number":"773000000000001","locale":"fr"}"#).unwrap_err();
        assert_eq!(e.reason, "`locale` must be zh-CN or en");
        assert_eq!(e.carrier, None);
        assert_eq!(e.number.as_deref(), Some("773000000000001"));
    }

    #[test]
    fn an_invalid_item_still_names_the_waybill() {
        let e = item(r#"{"carrier":"yto","number":"yt1000000000001","locale":"fr"}"#).unwrap_err();
        assert_eq!(e.carrier.as_deref(), Some("YTO"));
        assert_eq!(e.number.as_deref(), Some("YT1000000000001"));
        let e = item(r#"{"carrier":"Y T O","number":"yt1000000000001"}"#).unwrap_err();
        assert_eq!(e.carrier.as_deref(), Some("Y T O"));
        assert_eq!(e.number.as_deref(), Some("YT1000000000001"));
    }

    #[test]
    fn bodies_are_one_object_or_a_bounded_list() {
        assert!(matches!(
            parse_registration(r#"{"carrier":"YTO","number":"YT1000000000001"}"#, 500),
            Ok(Registration::Single(Ok(_)))
        ));
        match parse_registration(
            r#"{"shipments":[{"carrier":"YTO","number":"YT1000000000001"}, 7]}"#,
            500,
        ) {
            Ok(Registration::Bulk(items)) => {
                assert_eq!(items.len(), 2);
                assert!(items[0].is_ok());
                assert_eq!(
                    items[1].as_ref().unwrap_err().reason,
                    "item is not a JSON object"
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        let three = r#"{"shipments":[{},{},{}]}"#;
        let too_many = parse_registration(three, 2).unwrap_err();
        assert_eq!(too_many, BodyError::TooMany { got: 3, max: 2 });
        assert_eq!(too_many.http_status(), 413);
        assert_eq!(
            too_many.to_string(),
            "at most 2 shipments per request; this one has 3"
        );
        for (body, want) in [
            ("[1]", BodyError::NotObject),
            (r#"{"shipments":{}}"#, BodyError::ShipmentsNotList),
            (r#"{"shipments":[]}"#, BodyError::Empty),
            (
                r#"{"shipments":[{}],"dry_run":true}"#,
                BodyError::BulkExtraField("dry_run".into()),
            ),
        ] {
            let e = parse_registration(body, 500).unwrap_err();
            assert_eq!(e, want, "{body}");
            assert_eq!(e.http_status(), 400);
        }
        assert!(matches!(
            parse_registration("{", 500),
            Err(BodyError::NotJson(_))
        ));
    }
}
