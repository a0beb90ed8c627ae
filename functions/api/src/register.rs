//! Reading a registration body: one shipment (a JSON object) or many (`{"shipments":[…]}`).
//! Pure: no store, no HTTP. Each item is validated on its own so that one bad line of a WMS
//! back-fill does not sink the other 499.

use parcelwatch::domain::detect::detect_carrier;
use parcelwatch::domain::{
    Carrier, Locale, PhoneNumber, Priority, Recipient, ShipmentId, TrackingNumber,
};
use serde_json::{Map, Value};

/// Fields a registration item may carry.
pub const ITEM_FIELDS: [&str; 6] = [
    "carrier",
    "number",
    "phone",
    "locale",
    "order_ref",
    "priority",
];
/// Longest merchant order reference kept.
pub const ORDER_REF_MAX_CHARS: usize = 128;

/// A valid registration item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewShipment {
    pub id: ShipmentId,
    /// The carrier was not given and was detected from the number.
    pub carrier_detected: bool,
    pub priority: Priority,
    pub recipient: Recipient,
    pub order_ref: Option<String>,
}

/// An invalid item: why, and what it named (normalized when it parsed, as sent otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemError {
    pub carrier: Option<String>,
    pub number: Option<String>,
    pub reason: String,
}

pub type Item = Result<NewShipment, ItemError>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    Single(Item),
    Bulk(Vec<Item>),
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

pub fn parse_item(obj: &Map<String, Value>) -> Item {
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
    let (carrier, carrier_detected) = match text(obj, "carrier").map_err(&invalid)? {
        Some(c) => (
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
            false,
        ),
        None => match detect_carrier(&number).into_iter().next() {
            Some(c) => (c, true),
            None => {
                return Err(invalid(
                    "carrier required: could not detect it from the number".into(),
                ))
            }
        },
    };
    let invalid =
        |reason: String| fail(Some(carrier.to_string()), Some(number.to_string()), reason);
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
    Ok(NewShipment {
        id: ShipmentId::new(carrier, number),
        carrier_detected,
        priority,
        recipient: Recipient { phone, locale },
        order_ref,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(json: &str) -> Item {
        match serde_json::from_str::<Value>(json).unwrap() {
            Value::Object(o) => parse_item(&o),
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
                "locale":"en","order_ref":"TB-20261124-0001","priority":"HIGH"}"#,
        )
        .unwrap();
        assert_eq!(s.id.to_string(), "YTO/YT1000000000001");
        assert!(!s.carrier_detected);
        assert_eq!(s.priority, Priority::High);
        assert_eq!(s.recipient.locale, Locale::En);
        assert_eq!(
            s.recipient.phone.as_ref().map(PhoneNumber::expose),
            Some("+8613812345678")
        );
        assert_eq!(s.order_ref.as_deref(), Some("TB-20261124-0001"));
    }

    #[test]
    fn defaults_and_detection_fill_what_is_missing() {
        let s = item(r#"{"number":"SF1234567890123","phone":null}"#).unwrap();
        assert_eq!(s.id.carrier.as_str(), "SF");
        assert!(s.carrier_detected);
        assert_eq!(s.priority, Priority::Normal);
        assert_eq!(s.recipient, Recipient::default());
        assert_eq!(s.order_ref, None);
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
