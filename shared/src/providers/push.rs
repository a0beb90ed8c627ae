//! The push side of the providers: subscribing a waybill (Kdniao 8008, Kuaidi100 `/poll`) and
//! verifying and parsing what a provider then POSTs to our callback URL.
//!
//! Provider-specific code lives in [`super::kdniao_push`] and [`super::kuaidi100`]; this module
//! holds what they share: the result types, the [`Subscriber`] port, the error an API maps to an
//! HTTP 4xx, and a strict `application/x-www-form-urlencoded` codec (the shared crate has no
//! form-decoding dependency, and pushes must be decoded byte-exactly before their signature is
//! checked).
//!
//! ## Whole push versus one item
//! A push is refused as a whole (an `Err(PushError)`, which the API answers with a 4xx so that the
//! provider retries or alerts) only when its **envelope** is bad: undecodable form, missing field,
//! wrong signature, JSON that is not the documented shape, a RequestType we do not handle, another
//! merchant's EBusinessID. Once the envelope is authentic and readable, each waybill in it is
//! handled on its own: a good one becomes a [`PushUpdate`], a bad one (unknown carrier, invalid
//! waybill number, an item the provider itself marks failed) lands in [`PushBatch::rejected`] with
//! its reason, and the push is still acknowledged. Refusing the whole push for one bad item would
//! make the provider re-send the good ones forever (its retries carry the same bad item).

use super::{ProviderError, TraceQuery};
use crate::domain::{ShipmentId, TraceSnapshot};
use std::future::Future;
use std::time::Duration;

/// One waybill's new state, as a provider pushed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushUpdate {
    pub id: ShipmentId,
    pub snapshot: TraceSnapshot,
}

/// Everything one authentic push says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PushBatch {
    /// Waybills to store, in the order of the push.
    pub updates: Vec<PushUpdate>,
    /// Items that could not be used, each with its raw `carrier#number` (as the provider wrote
    /// them) and why. The push is still acknowledged: see the module docs.
    pub rejected: Vec<(String, PushError)>,
    /// The provider's own status of the push, for logs: Kuaidi100 `polling` / `shutdown` /
    /// `abort` / `updateall`. `None` for Kdniao, which has none.
    pub provider_status: Option<String>,
    /// The provider's message with that status (Kuaidi100 `message`, e.g. "3天查询无记录").
    pub message: Option<String>,
    /// The provider stopped tracking these waybills without them being delivered (Kuaidi100
    /// `abort`): subscribe again, no earlier than this, to keep receiving pushes.
    pub resubscribe_after: Option<Duration>,
}

/// Why a push was refused. Every variant is a client error: the API answers 4xx with the
/// `Display` text, which names the problem without internals (no keys, no signatures, no bodies).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// The signature is absent from the expected place or does not verify.
    #[error("push signature does not verify")]
    BadSignature,
    /// Missing field, undecodable form, JSON not of the documented shape, invalid waybill number.
    #[error("malformed push: {0}")]
    Malformed(String),
    /// A carrier code we cannot map to one of ours.
    #[error("unknown carrier: {0}")]
    UnknownCarrier(String),
    /// Authentic and readable, but not for us: another merchant's EBusinessID, an unsupported
    /// RequestType, an item the provider itself marks as failed.
    #[error("push rejected: {0}")]
    Rejected(String),
}

impl PushError {
    /// The HTTP status an API should answer a refused push with.
    pub fn http_status(&self) -> u16 {
        match self {
            PushError::BadSignature => 401,
            PushError::Malformed(_) => 400,
            PushError::UnknownCarrier(_) => 422,
            PushError::Rejected(_) => 403,
        }
    }
}

/// The provider's answer to a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribed {
    pub provider: &'static str,
    /// The provider already tracked this waybill for us (Kuaidi100 returnCode 501, Kdniao
    /// "重复订阅"): nothing changed, and that is fine.
    pub already_subscribed: bool,
    /// Kdniao's `EstimatedDeliveryTime`, when it gave one.
    pub estimated_delivery: Option<chrono::DateTime<chrono::Utc>>,
}

/// A provider that pushes trace changes to our callback URL once a waybill is subscribed.
pub trait Subscriber: Send + Sync {
    /// Short name used in sub-statuses and logs: `kdniao`, `kuaidi100`.
    fn name(&self) -> &'static str;
    fn subscribe(
        &self,
        q: &TraceQuery,
    ) -> impl Future<Output = Result<Subscribed, ProviderError>> + Send;
}

// ---------------------------------------------------------------------------------------------
// application/x-www-form-urlencoded
// ---------------------------------------------------------------------------------------------

/// Percent-decode one form component: `+` is a space, `%XX` a byte; the result must be UTF-8.
/// `None` on a bad escape or invalid UTF-8.
pub fn pct_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = bytes.get(i + 1).and_then(|b| (*b as char).to_digit(16))?;
                let lo = bytes.get(i + 2).and_then(|b| (*b as char).to_digit(16))?;
                out.push((hi * 16 + lo) as u8);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Percent-encode one form component the way browsers and `serde_urlencoded` do: ASCII
/// alphanumerics and `*-._` kept, space as `+`, every other byte `%XX` (upper case).
pub fn pct_encode(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len() * 3);
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(HEX[(b >> 4) as usize] as char);
                out.push(HEX[(b & 0xf) as usize] as char);
            }
        }
    }
    out
}

/// A form body from name/value pairs, each encoded exactly once.
pub fn form_encode(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", pct_encode(k), pct_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A decoded form body. Duplicate names are refused: a second `DataSign` or `param` could make
/// the value that is verified differ from the value that is parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Form(Vec<(String, String)>);

impl Form {
    pub fn parse(body: &str) -> Result<Form, PushError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for part in body.trim().split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            let k = pct_decode(k)
                .ok_or_else(|| PushError::Malformed("form field name is not decodable".into()))?;
            let v = pct_decode(v)
                .ok_or_else(|| PushError::Malformed(format!("form field {k} is not decodable")))?;
            if pairs.iter().any(|(name, _)| *name == k) {
                return Err(PushError::Malformed(format!(
                    "form field {k} appears more than once"
                )));
            }
            pairs.push((k, v));
        }
        Ok(Form(pairs))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A field that must be present (it may be empty).
    pub fn required(&self, name: &str) -> Result<&str, PushError> {
        self.get(name)
            .ok_or_else(|| PushError::Malformed(format!("missing form field {name}")))
    }
}

// ---------------------------------------------------------------------------------------------
// Shared by the subscribers
// ---------------------------------------------------------------------------------------------

pub(crate) fn retryable(provider: &'static str, reason: impl Into<String>) -> ProviderError {
    ProviderError::Retryable {
        provider,
        reason: reason.into(),
        retry_after: None,
    }
}

pub(crate) fn permanent(provider: &'static str, reason: impl Into<String>) -> ProviderError {
    ProviderError::Permanent {
        provider,
        reason: reason.into(),
    }
}

// At most `n` characters of a body, quoted, for an error reason (shared with every client).
pub(crate) use crate::http::body_prefix;

/// `carrier#number` as the provider wrote them, for [`PushBatch::rejected`].
pub(crate) fn raw_key(carrier: Option<&str>, number: Option<&str>) -> String {
    format!("{}#{}", carrier.unwrap_or(""), number.unwrap_or(""))
}

/// Parse a pushed carrier and number into our id, telling a bad carrier from a bad number.
pub(crate) fn parse_id(
    carrier: Option<&str>,
    number: Option<&str>,
) -> Result<ShipmentId, PushError> {
    use crate::domain::{Carrier, TrackingNumber};
    let raw = carrier.unwrap_or("");
    let carrier = Carrier::parse(raw).map_err(|e| PushError::UnknownCarrier(e.to_string()))?;
    if !carrier.is_known() {
        return Err(PushError::UnknownCarrier(format!(
            "carrier code `{raw}` is not one parcelwatch tracks"
        )));
    }
    let number = TrackingNumber::parse(number.unwrap_or(""))
        .map_err(|e| PushError::Malformed(e.to_string()))?;
    Ok(ShipmentId::new(carrier, number))
}

/// A callback URL: the configured base (http or https, no query) plus the provider's path.
pub(crate) fn callback_url(
    env: &dyn crate::config::Env,
    path: &str,
) -> Result<String, crate::config::ConfigError> {
    const NAME: &str = "PUSH_CALLBACK_BASE_URL";
    let base = env
        .get(NAME)
        .ok_or(crate::config::ConfigError::Missing(NAME))?;
    let base = base.trim().trim_end_matches('/');
    let scheme_ok = base.starts_with("https://") || base.starts_with("http://");
    let host_ok = base
        .split_once("://")
        .is_some_and(|(_, rest)| !rest.is_empty());
    if !scheme_ok || !host_ok || base.contains(['?', '#', ' ']) {
        return Err(crate::config::ConfigError::Invalid {
            name: NAME,
            reason: "must be an http(s) URL without query or fragment".into(),
        });
    }
    Ok(format!("{base}{path}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn form_round_trips_unicode_json_and_base64() {
        let rd = r#"{"A":"深圳市 南山区","B":"a+b=c&d%"}"#;
        let sign = "MDIyOTI2YTQ3MGJiNjg4OGNjODk4NjJlMGE4MDMxMmQ=";
        let body = form_encode(&[("RequestData", rd), ("DataSign", sign)]);
        assert!(
            body.starts_with("RequestData=%7B%22A%22%3A%22%E6%B7%B1"),
            "{body}"
        );
        assert!(body.contains("%E5%8C%BA%22%2C"), "{body}");
        assert!(body.ends_with("DataSign=MDIyOTI2YTQ3MGJiNjg4OGNjODk4NjJlMGE4MDMxMmQ%3D"));
        assert!(body.contains("+%E5%8D%97"), "space as +: {body}");
        let form = Form::parse(&body).unwrap();
        assert_eq!(form.get("RequestData"), Some(rd));
        assert_eq!(form.get("DataSign"), Some(sign));
        assert_eq!(form.get("Other"), None);
        assert_eq!(
            form.required("Other"),
            Err(PushError::Malformed("missing form field Other".into()))
        );
    }

    #[test]
    fn form_refuses_bad_escapes_bad_utf8_and_duplicates() {
        assert!(matches!(Form::parse("a=%7"), Err(PushError::Malformed(_))));
        assert!(matches!(Form::parse("a=%ZZ"), Err(PushError::Malformed(_))));
        assert!(matches!(
            Form::parse("a=%FF%FE"),
            Err(PushError::Malformed(_))
        ));
        assert_eq!(
            Form::parse("sign=A&param=x&sign=B"),
            Err(PushError::Malformed(
                "form field sign appears more than once".into()
            ))
        );
        // Empty parts and a field without '=' are tolerated.
        let f = Form::parse("a=1&&flag&b=").unwrap();
        assert_eq!(
            (f.get("a"), f.get("flag"), f.get("b")),
            (Some("1"), Some(""), Some(""))
        );
        assert_eq!(pct_decode("%7b%7D"), Some("{}".into()));
    }

    #[test]
    fn push_errors_read_well_and_map_to_4xx() {
        assert_eq!(
            PushError::BadSignature.to_string(),
            "push signature does not verify"
        );
        assert_eq!(
            PushError::Rejected("RequestType 107 is not handled".into()).to_string(),
            "push rejected: RequestType 107 is not handled"
        );
        let codes: Vec<u16> = [
            PushError::BadSignature,
            PushError::Malformed(String::new()),
            PushError::UnknownCarrier(String::new()),
            PushError::Rejected(String::new()),
        ]
        .iter()
        .map(PushError::http_status)
        .collect();
        assert_eq!(codes, vec![401, 400, 422, 403]);
    }

    #[test]
    fn ids_tell_a_bad_carrier_from_a_bad_number() {
        assert!(parse_id(Some("yto"), Some("YT123456789")).is_ok());
        assert!(matches!(
            parse_id(Some("Y T"), Some("YT123456789")),
            Err(PushError::UnknownCarrier(_))
        ));
        assert!(matches!(
            parse_id(None, Some("YT123456789")),
            Err(PushError::UnknownCarrier(_))
        ));
        assert!(matches!(
            parse_id(Some("YTO"), Some("1")),
            Err(PushError::Malformed(_))
        ));
        assert_eq!(raw_key(Some("YTO"), None), "YTO#");
    }

    #[test]
    fn callback_url_joins_base_and_path() {
        let env = |v: &str| HashMap::from([("PUSH_CALLBACK_BASE_URL".to_string(), v.to_string())]);
        assert_eq!(
            callback_url(&env("https://api.example.com/prod/"), "/push/kdniao").unwrap(),
            "https://api.example.com/prod/push/kdniao"
        );
        assert_eq!(
            callback_url(&env("http://127.0.0.1:9000"), "/push/kuaidi100").unwrap(),
            "http://127.0.0.1:9000/push/kuaidi100"
        );
        for bad in ["ftp://x", "https://", "api.example.com", "https://x/?a=1"] {
            assert!(callback_url(&env(bad), "/p").is_err(), "{bad}");
        }
        assert!(matches!(
            callback_url(&HashMap::new(), "/p"),
            Err(crate::config::ConfigError::Missing(
                "PUSH_CALLBACK_BASE_URL"
            ))
        ));
    }
}
