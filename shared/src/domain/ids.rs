//! Identifier newtypes: a carrier code and a tracking (waybill) number, each with a `parse`.

use super::carriers::{self, CarrierInfo};
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("carrier code is empty")]
    EmptyCarrier,
    #[error("carrier code `{0}` is not 2-16 ASCII letters, digits or underscores")]
    BadCarrier(String),
    #[error("tracking number is empty")]
    EmptyNumber,
    #[error("tracking number `{0}` must be 6-32 ASCII letters, digits or '-'")]
    BadNumber(String),
    #[error("shipment key `{0}` is not of the form SHIP#<carrier>#<number>")]
    BadKey(String),
}

/// The carriers parcelwatch knows, in its own (Kdniao ShipperCode) vocabulary: the codes of the
/// registry ([`super::carriers::CARRIERS`]), in its order.
pub const KNOWN_CARRIERS: [&str; carriers::CARRIERS.len()] = carriers::codes();

/// A carrier in parcelwatch's own vocabulary (Kdniao ShipperCode style, upper case: `SF`, `YTO`, `ZTO`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(try_from = "String", into = "String")]
pub struct Carrier(String);

impl Carrier {
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(IdError::EmptyCarrier);
        }
        if !(2..=16).contains(&s.len()) || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(IdError::BadCarrier(raw.to_string()));
        }
        Ok(Carrier(s.to_ascii_uppercase()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The registry entry of this carrier, if parcelwatch knows it.
    pub fn info(&self) -> Option<&'static CarrierInfo> {
        carriers::by_code(&self.0)
    }
    /// A carrier parcelwatch has a name and provider codes for. Anything else is refused at
    /// the edges (registration, pushes) with a clear reason instead of being tracked blind.
    pub fn is_known(&self) -> bool {
        self.info().is_some()
    }
    /// The carrier asks for the last four digits of a phone number with every query (SF and
    /// SF freight at Kdniao and Kuaidi100, ZTO at Kuaidi100).
    pub fn needs_phone_suffix(&self) -> bool {
        self.info().is_some_and(|c| c.needs_phone_suffix)
    }
    /// Display name in Chinese; the code itself for a carrier we do not know.
    pub fn name_zh(&self) -> &str {
        self.info().map_or(self.0.as_str(), |c| c.name_zh)
    }
    /// Display name in English; the code itself for a carrier we do not know.
    pub fn name_en(&self) -> &str {
        self.info().map_or(self.0.as_str(), |c| c.name_en)
    }
}

impl TryFrom<String> for Carrier {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Carrier::parse(&s)
    }
}
impl From<Carrier> for String {
    fn from(c: Carrier) -> String {
        c.0
    }
}
impl fmt::Display for Carrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A waybill number as printed on the label, normalised to upper case without spaces.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(try_from = "String", into = "String")]
pub struct TrackingNumber(String);

impl TrackingNumber {
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        let s: String = raw.chars().filter(|c| !c.is_whitespace()).collect();
        if s.is_empty() {
            return Err(IdError::EmptyNumber);
        }
        if !(6..=32).contains(&s.len()) || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(IdError::BadNumber(raw.to_string()));
        }
        Ok(TrackingNumber(s.to_ascii_uppercase()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TrackingNumber {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        TrackingNumber::parse(&s)
    }
}
impl From<TrackingNumber> for String {
    fn from(c: TrackingNumber) -> String {
        c.0
    }
}
impl fmt::Display for TrackingNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Identity of a parcel: a carrier and its waybill number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub struct ShipmentId {
    pub carrier: Carrier,
    pub number: TrackingNumber,
}

impl ShipmentId {
    pub fn new(carrier: Carrier, number: TrackingNumber) -> Self {
        ShipmentId { carrier, number }
    }
    pub fn parse(carrier: &str, number: &str) -> Result<Self, IdError> {
        Ok(ShipmentId::new(
            Carrier::parse(carrier)?,
            TrackingNumber::parse(number)?,
        ))
    }
    /// Partition key of the shipment's items: `SHIP#{carrier}#{number}`.
    pub fn pk(&self) -> String {
        format!("SHIP#{}#{}", self.carrier, self.number)
    }
    pub fn from_pk(pk: &str) -> Result<Self, IdError> {
        let mut parts = pk.splitn(3, '#');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("SHIP"), Some(c), Some(n)) => ShipmentId::parse(c, n),
            _ => Err(IdError::BadKey(pk.to_string())),
        }
    }
    /// Which due-index shard this shipment lives in: a stable FNV-1a hash of the key.
    pub fn due_shard(&self, shards: u32) -> u32 {
        let mut h: u32 = 0x811c_9dc5;
        for b in self.pk().bytes() {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
        h % shards.max(1)
    }
}

impl fmt::Display for ShipmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.carrier, self.number)
    }
}

/// An E.164 phone number. Its `Debug` and `Display` are masked so that it cannot
/// reach a log line in clear by accident; `expose()` is the one way to the digits.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneNumber(String);

impl PhoneNumber {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let digits: String = raw.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
        let (plus, rest) = match digits.strip_prefix('+') {
            Some(r) => (true, r.to_string()),
            None => (false, digits.clone()),
        };
        if rest.is_empty() || !rest.chars().all(|c| c.is_ascii_digit()) {
            return Err("phone number must be digits, optionally with a leading +".into());
        }
        let e164 = match (plus, rest.len()) {
            (true, 8..=15) => format!("+{rest}"),
            // A bare 11-digit mainland mobile number.
            (false, 11) if rest.starts_with('1') => format!("+86{rest}"),
            _ => return Err("phone number is not E.164 nor an 11-digit mainland mobile".into()),
        };
        Ok(PhoneNumber(e164))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn last4(&self) -> &str {
        &self.0[self.0.len() - 4..]
    }
    /// `+86138****5678`: country code and prefix, then the last four.
    pub fn masked(&self) -> String {
        mask_phone(&self.0)
    }
}

/// Mask every digit of a phone-like string but the first 6 and the last 4 characters.
pub fn mask_phone(p: &str) -> String {
    let n = p.chars().count();
    if n <= 8 {
        return "*".repeat(n);
    }
    p.chars()
        .enumerate()
        .map(|(i, c)| if i < 6 || i >= n - 4 { c } else { '*' })
        .collect()
}

impl TryFrom<String> for PhoneNumber {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        PhoneNumber::parse(&s)
    }
}
impl From<PhoneNumber> for String {
    fn from(p: PhoneNumber) -> String {
        p.0
    }
}
impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhoneNumber({})", self.masked())
    }
}
impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// The last four digits of a recipient's phone: all the carriers that check a phone ask for
/// (Kdniao `CustomerName`, Kuaidi100 `phone`), and all of it that is stored in clear.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PhoneLast4(String);

impl PhoneLast4 {
    /// Exactly four ASCII digits.
    pub fn parse(s: &str) -> Option<PhoneLast4> {
        (s.len() == 4 && s.bytes().all(|b| b.is_ascii_digit())).then(|| PhoneLast4(s.to_string()))
    }
    pub fn last4(&self) -> &str {
        &self.0
    }
}

impl From<&PhoneNumber> for PhoneLast4 {
    fn from(p: &PhoneNumber) -> PhoneLast4 {
        PhoneLast4(p.last4().to_string())
    }
}

impl fmt::Display for PhoneLast4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "****{}", self.0)
    }
}

/// The version prefix of a sealed phone.
pub const SEALED_PHONE_PREFIX: &str = "pw1";

/// A recipient phone number as it is kept at rest: envelope-encrypted (see
/// `parcelwatch::crypto`), `pw1.<last4>.<wrapped data key>.<nonce>.<ciphertext>` (the last three
/// URL-safe base64 without padding). Only its last four digits are readable without the key;
/// `Debug` and `Display` show `****5678`. Everything but the notifier carries it opaque.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SealedPhone {
    sealed: String,
    last4: PhoneLast4,
}

impl SealedPhone {
    /// Read a stored sealed phone. Checks its shape, not its cryptography.
    pub fn parse(sealed: &str) -> Result<SealedPhone, String> {
        let parts: Vec<&str> = sealed.split('.').collect();
        let [prefix, last4, wrapped, nonce, ciphertext] = parts.as_slice() else {
            return Err("sealed phone does not have five parts".into());
        };
        if *prefix != SEALED_PHONE_PREFIX {
            return Err(format!(
                "sealed phone version `{prefix}` is not {SEALED_PHONE_PREFIX}"
            ));
        }
        let last4 = PhoneLast4::parse(last4).ok_or("sealed phone has no last four digits")?;
        let b64 = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !(b64(wrapped) && b64(nonce) && b64(ciphertext)) {
            return Err("sealed phone parts are not base64url".into());
        }
        Ok(SealedPhone {
            sealed: sealed.to_string(),
            last4,
        })
    }
    /// The stored form.
    pub fn as_str(&self) -> &str {
        &self.sealed
    }
    pub fn last4(&self) -> &str {
        self.last4.last4()
    }
    pub fn suffix(&self) -> PhoneLast4 {
        self.last4.clone()
    }
    /// The three opaque parts: wrapped data key, nonce, ciphertext (base64url).
    pub fn parts(&self) -> (&str, &str, &str) {
        let mut it = self.sealed.splitn(5, '.').skip(2);
        (
            it.next().unwrap_or_default(),
            it.next().unwrap_or_default(),
            it.next().unwrap_or_default(),
        )
    }
}

impl TryFrom<String> for SealedPhone {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        SealedPhone::parse(&s)
    }
}
impl From<SealedPhone> for String {
    fn from(p: SealedPhone) -> String {
        p.sealed
    }
}
impl fmt::Debug for SealedPhone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealedPhone({})", self.last4)
    }
}
impl fmt::Display for SealedPhone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.last4, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracking_numbers_are_normalised_and_validated() {
        assert_eq!(
            TrackingNumber::parse(" yt 1234 5678 ").unwrap().as_str(),
            "YT12345678"
        );
        assert_eq!(TrackingNumber::parse(""), Err(IdError::EmptyNumber));
        assert!(matches!(
            TrackingNumber::parse("12345"),
            Err(IdError::BadNumber(_))
        ));
        assert!(matches!(
            TrackingNumber::parse("1234567;DROP"),
            Err(IdError::BadNumber(_))
        ));
        assert!(TrackingNumber::parse(&"9".repeat(33)).is_err());
    }

    #[test]
    fn carriers_are_upper_cased_and_validated() {
        assert_eq!(Carrier::parse("yto").unwrap().as_str(), "YTO");
        assert!(matches!(
            Carrier::parse("Y T O"),
            Err(IdError::BadCarrier(_))
        ));
        assert_eq!(Carrier::parse(" "), Err(IdError::EmptyCarrier));
    }

    #[test]
    fn shipment_key_round_trips_and_shards_stably() {
        let id = ShipmentId::parse("SF", "SF1234567890").unwrap();
        assert_eq!(id.pk(), "SHIP#SF#SF1234567890");
        assert_eq!(ShipmentId::from_pk(&id.pk()).unwrap(), id);
        assert!(ShipmentId::from_pk("ORDER#x").is_err());
        let a = id.due_shard(16);
        assert!(a < 16);
        assert_eq!(a, id.due_shard(16));
    }

    #[test]
    fn phone_numbers_never_print_in_clear() {
        let p = PhoneNumber::parse("13812345678").unwrap();
        assert_eq!(p.expose(), "+8613812345678");
        assert_eq!(p.last4(), "5678");
        assert_eq!(format!("{p}"), "+86138****5678");
        assert_eq!(format!("{p:?}"), "PhoneNumber(+86138****5678)");
        assert!(PhoneNumber::parse("12345").is_err());
        assert!(PhoneNumber::parse("+86abc").is_err());
    }

    #[test]
    fn sealed_phones_parse_their_shape_and_print_only_the_last_four() {
        let s = SealedPhone::parse("pw1.5678.d3JhcHBlZA.bm9uY2U.Y2lwaGVy").unwrap();
        assert_eq!(s.last4(), "5678");
        assert_eq!(s.parts(), ("d3JhcHBlZA", "bm9uY2U", "Y2lwaGVy"));
        assert_eq!(format!("{s:?}"), "SealedPhone(****5678)");
        assert_eq!(s.to_string(), "****5678");
        assert_eq!(s.suffix(), PhoneLast4::parse("5678").unwrap());
        for bad in [
            "13812345678",
            "+8613812345678",
            "pw2.5678.a.b.c",
            "pw1.567.a.b.c",
            "pw1.5678.a.b",
            "pw1.5678.a.b.c.d",
            "pw1.5678.a+.b.c",
            "pw1.5678..b.c",
        ] {
            assert!(SealedPhone::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(PhoneLast4::parse("12a4"), None);
        let p = PhoneNumber::parse("13812345678").unwrap();
        assert_eq!(PhoneLast4::from(&p).last4(), "5678");
    }
}
