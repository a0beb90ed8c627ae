//! Order-platform clients: fw199's enhanced Taobao order list ([`fw199`]) and Taobao TOP's
//! `taobao.trades.sold.increment.get` ([`top`]). Both read Taobao trades; both map them onto
//! [`Order`] through the one reader here ([`trade_from_json`]), and the sandbox writes its answers
//! with [`trade_to_json`], so the two sides cannot drift apart.
//!
//! Everything pure is `pub` (signing, parameters, parsing, error classification) so that the
//! sandbox checks requests with exactly the code the clients run.

pub mod fw199;
pub mod top;

pub use fw199::Fw199Client;
pub use top::{top_sign, TopClient};

use crate::config::{parsed, required, ConfigError, Env, Secret};
use crate::domain::order::{Order, Platform, SubOrder, TradeStatus};
use chrono::{DateTime, Duration as ChronoDuration, NaiveDateTime, TimeZone, Utc};
use md5::{Digest, Md5};
use serde_json::{json, Map, Value};
use std::future::Future;
use std::time::Duration;

/// One page of a platform's answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OrderPage {
    pub orders: Vec<Order>,
    pub has_next: bool,
    /// Orders matching the query over all pages, when the platform says.
    pub total: Option<u64>,
}

/// Failures of an order-platform call, classified once, here at the adapter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    /// Throttled, busy, network trouble: the same window works later.
    #[error("order platform temporarily failed: {reason}")]
    Retryable {
        reason: String,
        /// How long the platform asked us to wait, when it said.
        retry_after: Option<Duration>,
    },
    /// Bad signature, credentials, session or parameters: fails the same way until fixed.
    #[error("order platform rejected the request: {reason}")]
    Permanent { reason: String },
}

impl OrderError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, OrderError::Retryable { .. })
    }
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            OrderError::Retryable { retry_after, .. } => *retry_after,
            OrderError::Permanent { .. } => None,
        }
    }
}

pub(crate) fn retryable(reason: impl Into<String>, retry_after: Option<Duration>) -> OrderError {
    OrderError::Retryable {
        reason: reason.into(),
        retry_after,
    }
}

pub(crate) fn permanent(reason: impl Into<String>) -> OrderError {
    OrderError::Permanent {
        reason: reason.into(),
    }
}

/// A platform that lists a shop's orders modified in a time window, page by page.
pub trait OrderSource: Send + Sync {
    fn platform(&self) -> Platform;
    /// Orders of `shop` modified in `[from, to]`, page `page_no` (from 1) of `page_size`.
    fn page(
        &self,
        shop: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        page_no: u32,
        page_size: u32,
    ) -> impl Future<Output = Result<OrderPage, OrderError>> + Send;
}

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

/// fw199 enhanced order list settings (`FW199_*`).
#[derive(Debug, Clone)]
pub struct Fw199Config {
    pub endpoint: String,
    pub appid: String,
    pub secret: Secret,
    /// `sysid`, which the vendor assigns per application (sent only when set).
    pub sysid: Option<String>,
    pub timeout: Duration,
}

impl Fw199Config {
    pub const DEFAULT_ENDPOINT: &'static str = "https://kf.fw199.com/gateway/taobao/order/ext/list";

    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        Ok(Fw199Config {
            endpoint: env
                .get("FW199_ENDPOINT")
                .unwrap_or_else(|| Self::DEFAULT_ENDPOINT.into()),
            appid: required(env, "FW199_APPID")?,
            secret: Secret::new(required(env, "FW199_SECRET")?),
            sysid: env.get("FW199_SYSID"),
            timeout: Duration::from_millis(parsed(env, "ORDER_API_TIMEOUT_MS", 10_000u64)?),
        })
    }
}

/// How TOP requests are signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SignMethod {
    #[default]
    Md5,
    /// HMAC-MD5.
    Hmac,
}

impl SignMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            SignMethod::Md5 => "md5",
            SignMethod::Hmac => "hmac",
        }
    }
    pub fn parse(s: &str) -> Option<SignMethod> {
        match s.trim().to_ascii_lowercase().as_str() {
            "md5" => Some(SignMethod::Md5),
            "hmac" => Some(SignMethod::Hmac),
            _ => None,
        }
    }
}

/// Taobao TOP settings (`TOP_*`).
#[derive(Debug, Clone)]
pub struct TopConfig {
    pub endpoint: String,
    pub app_key: String,
    pub secret: Secret,
    /// The shop's access token (`session`).
    pub session: Secret,
    pub sign_method: SignMethod,
    pub timeout: Duration,
}

impl TopConfig {
    pub const DEFAULT_ENDPOINT: &'static str = "https://gw.api.taobao.com/router/rest";

    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let sign_method = match env.get("TOP_SIGN_METHOD") {
            None => SignMethod::Md5,
            Some(s) => SignMethod::parse(&s).ok_or_else(|| ConfigError::Invalid {
                name: "TOP_SIGN_METHOD",
                reason: format!("`{s}` is neither md5 nor hmac"),
            })?,
        };
        Ok(TopConfig {
            endpoint: env
                .get("TOP_ENDPOINT")
                .unwrap_or_else(|| Self::DEFAULT_ENDPOINT.into()),
            app_key: required(env, "TOP_APP_KEY")?,
            secret: Secret::new(required(env, "TOP_APP_SECRET")?),
            session: Secret::new(required(env, "TOP_SESSION")?),
            sign_method,
            timeout: Duration::from_millis(parsed(env, "ORDER_API_TIMEOUT_MS", 10_000u64)?),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Time, digests
// ---------------------------------------------------------------------------------------------

/// Taobao and fw199 write times as Beijing time (UTC+8, no daylight saving).
const CHINA_OFFSET_HOURS: i64 = 8;

/// `yyyy-MM-dd HH:mm:ss` in Beijing time.
pub fn china_time(t: DateTime<Utc>) -> String {
    (t + ChronoDuration::hours(CHINA_OFFSET_HOURS))
        .naive_utc()
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// Parse a Beijing-time `yyyy-MM-dd HH:mm:ss` (blank → `None`).
pub fn parse_china_time(s: &str) -> Option<DateTime<Utc>> {
    let naive = NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%d %H:%M:%S").ok()?;
    Some(Utc.from_utc_datetime(&(naive - ChronoDuration::hours(CHINA_OFFSET_HOURS))))
}

pub(crate) fn md5(bytes: &[u8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(&Md5::digest(bytes));
    out
}

/// Parameters sorted by name (byte order), `sign` left out.
pub(crate) fn sorted_params<'a>(
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Vec<(&'a str, &'a str)> {
    let mut v: Vec<(&str, &str)> = params.into_iter().filter(|(k, _)| *k != "sign").collect();
    v.sort_by(|a, b| a.0.cmp(b.0).then(a.1.cmp(b.1)));
    v
}

/// "…ban will last for 12 more seconds", "请30秒后重试": the first number before "second"/"秒".
pub fn retry_after_from_text(text: &str) -> Option<Duration> {
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_ascii_digit() {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            let n: String = chars[start..i].iter().collect();
            let rest: String = chars[i..].iter().collect::<String>().to_ascii_lowercase();
            let rest = rest.trim_start();
            let rest = rest
                .strip_prefix("more")
                .map(str::trim_start)
                .unwrap_or(rest);
            if rest.starts_with("second") || rest.starts_with('秒') || rest.starts_with("sec") {
                return n.parse::<u64>().ok().map(Duration::from_secs);
            }
        } else {
            i += 1;
        }
    }
    None
}

// At most `n` characters of a body, quoted, for an error reason (shared with every client).
pub(crate) use crate::http::body_prefix;

// ---------------------------------------------------------------------------------------------
// Taobao trade JSON
// ---------------------------------------------------------------------------------------------

/// A field as text: strings trimmed, numbers and bools written out; `null`/absent/blank → `None`.
pub fn text(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) => Some(s.trim().to_string()).filter(|s| !s.is_empty()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A count that may come as a number or a string.
pub fn count(v: &Value, key: &str) -> Option<u64> {
    text(v, key).and_then(|s| s.parse().ok())
}

/// A flag that may come as a bool, `"true"` or `1`.
pub fn flag(v: &Value, key: &str) -> Option<bool> {
    match v.get(key)? {
        Value::Bool(b) => Some(*b),
        Value::String(s) => Some(s.trim().eq_ignore_ascii_case("true") || s.trim() == "1"),
        Value::Number(n) => Some(n.as_i64() == Some(1)),
        _ => None,
    }
}

/// A Taobao list: `{"order":[…]}`, `[…]`, or a single object under the inner key.
pub(crate) fn list<'a>(v: Option<&'a Value>, inner: &str) -> Vec<&'a Value> {
    match v {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(Value::Object(o)) => match o.get(inner) {
            Some(Value::Array(a)) => a.iter().collect(),
            Some(one @ Value::Object(_)) => vec![one],
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// Read a Taobao `trade` object (fw199 and TOP use Taobao's field names): `tid`, `status`,
/// `created`, `modified`, `receiver_mobile`, `receiver_state`, `receiver_city`, `orders.order[]{oid, status, refund_status,
/// logistics_company, invoice_no, consign_time}`. Numbers may be strings and the reverse;
/// blanks are `None`. `Err` only when the trade has no `tid`.
pub fn trade_from_json(platform: Platform, shop: &str, v: &Value) -> Result<Order, String> {
    let tid = text(v, "tid")
        .or_else(|| text(v, "tid_str"))
        .ok_or_else(|| "trade without tid".to_string())?;
    let orders = list(v.get("orders"), "order")
        .into_iter()
        .map(|o| SubOrder {
            oid: text(o, "oid")
                .or_else(|| text(o, "oid_str"))
                .unwrap_or_default(),
            status: TradeStatus::parse(&text(o, "status").unwrap_or_default()),
            refund_status: text(o, "refund_status"),
            logistics_company: text(o, "logistics_company"),
            invoice_no: text(o, "invoice_no"),
            consign_time: text(o, "consign_time").and_then(|s| parse_china_time(&s)),
        })
        .collect();
    Ok(Order {
        platform,
        shop: shop.to_string(),
        tid,
        status: TradeStatus::parse(&text(v, "status").unwrap_or_default()),
        created: text(v, "created").and_then(|s| parse_china_time(&s)),
        modified: text(v, "modified").and_then(|s| parse_china_time(&s)),
        receiver_mobile: text(v, "receiver_mobile"),
        receiver_state: text(v, "receiver_state"),
        receiver_city: text(v, "receiver_city"),
        orders,
    })
}

pub(crate) fn number_or_string(s: &str) -> Value {
    // Taobao writes ids as JSON numbers; ours fit in u64 or stay strings.
    s.parse::<u64>()
        .map(Value::from)
        .unwrap_or_else(|_| Value::String(s.to_string()))
}

/// Write an order as a Taobao `trade` object (what [`trade_from_json`] reads), blanks as `""`.
pub fn trade_to_json(order: &Order) -> Value {
    let time = |t: Option<DateTime<Utc>>| t.map(china_time).unwrap_or_default();
    let opt = |s: &Option<String>| s.clone().unwrap_or_default();
    let subs: Vec<Value> = order
        .orders
        .iter()
        .map(|o| {
            json!({
                "oid": number_or_string(&o.oid),
                "status": o.status.as_str(),
                "refund_status": opt(&o.refund_status),
                "logistics_company": opt(&o.logistics_company),
                "invoice_no": opt(&o.invoice_no),
                "consign_time": time(o.consign_time),
            })
        })
        .collect();
    let mut m = Map::new();
    m.insert("tid".into(), number_or_string(&order.tid));
    m.insert("seller_nick".into(), Value::String(order.shop.clone()));
    m.insert("status".into(), Value::String(order.status.as_str().into()));
    m.insert("created".into(), Value::String(time(order.created)));
    m.insert("modified".into(), Value::String(time(order.modified)));
    m.insert(
        "receiver_mobile".into(),
        Value::String(opt(&order.receiver_mobile)),
    );
    m.insert(
        "receiver_state".into(),
        Value::String(opt(&order.receiver_state)),
    );
    m.insert(
        "receiver_city".into(),
        Value::String(opt(&order.receiver_city)),
    );
    m.insert("orders".into(), json!({ "order": subs }));
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn china_time_round_trips_at_utc_plus_8() {
        let t = Utc.with_ymd_and_hms(2021, 10, 2, 8, 13, 56).unwrap();
        assert_eq!(china_time(t), "2021-10-02 16:13:56");
        assert_eq!(parse_china_time("2021-10-02 16:13:56"), Some(t));
        assert_eq!(parse_china_time(""), None);
        assert_eq!(parse_china_time("2021/10/02"), None);
    }

    #[test]
    fn retry_after_is_read_from_the_message() {
        let cases = [
            (
                "This ban will last for 12 more seconds",
                Some(Duration::from_secs(12)),
            ),
            ("请求过于频繁,请30秒后重试", Some(Duration::from_secs(30))),
            ("wait 5 seconds", Some(Duration::from_secs(5))),
            ("error 7 happened", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(retry_after_from_text(text), want, "{text}");
        }
    }

    #[test]
    fn the_seed_trade_shape_is_read() {
        // Trimmed from the vendor's sample answer (seeds/002): ids as strings, nested
        // orders.order, blank waybill fields, masked phone.
        let v: Value = serde_json::from_str(
            r#"{"tid":"1410072240792463390","status":"TRADE_CLOSED","created":"2021-10-02 16:13:56",
            "modified":"2021-10-02 16:17:42","receiver_mobile":"*******1889",
            "receiver_state":"福建省","receiver_city":"漳州市",
            "orders":{"order":[{"oid":"1410072240792463390","status":"TRADE_CLOSED",
            "refund_status":"SUCCESS","invoice_no":"","logistics_company":"","consign_time":""}]}}"#,
        )
        .unwrap();
        let o = trade_from_json(Platform::Fw199, "可拆卸aa", &v).unwrap();
        assert_eq!(o.tid, "1410072240792463390");
        assert_eq!(o.status, TradeStatus::TradeClosed);
        assert_eq!(o.modified, parse_china_time("2021-10-02 16:17:42"));
        assert_eq!(o.orders.len(), 1);
        assert_eq!(o.orders[0].refund_status.as_deref(), Some("SUCCESS"));
        assert_eq!(o.orders[0].invoice_no, None);
        assert_eq!(o.orders[0].consign_time, None);
        assert_eq!(o.phone(), None);
        assert_eq!(o.receiver_state.as_deref(), Some("福建省"));
        assert_eq!(o.destination_province(), Some("福建"));
        // Numbers as numbers, orders as a bare array.
        let v = json!({"tid": 42u64, "orders": [{"oid": 421u64, "status": "WAIT_BUYER_CONFIRM_GOODS",
            "logistics_company": "圆通速递", "invoice_no": "YT1234567890123"}]});
        let o = trade_from_json(Platform::Top, "s", &v).unwrap();
        assert_eq!((o.tid.as_str(), o.orders[0].oid.as_str()), ("42", "421"));
        assert!(o.status.is_blank());
        assert!(trade_from_json(Platform::Top, "s", &json!({"status": "x"})).is_err());
    }

    #[test]
    fn trade_json_round_trips() {
        let t = Utc.with_ymd_and_hms(2026, 11, 11, 1, 2, 3).unwrap();
        let mut sub = SubOrder::new("20000000000000101", TradeStatus::WaitBuyerConfirmGoods);
        sub.logistics_company = Some("中通快递".into());
        sub.invoice_no = Some("731234567890123".into());
        sub.consign_time = Some(t);
        let o = Order {
            platform: Platform::Top,
            shop: "kingdo".into(),
            tid: "200000000000001".into(),
            status: TradeStatus::SellerConsignedPart,
            created: Some(t),
            modified: Some(t),
            receiver_mobile: Some("13812345678".into()),
            receiver_state: Some("福建省".into()),
            receiver_city: Some("漳州市".into()),
            orders: vec![
                sub,
                SubOrder::new("20000000000000102", TradeStatus::WaitSellerSendGoods),
            ],
        };
        let v = trade_to_json(&o);
        assert!(v["tid"].is_u64());
        assert_eq!(trade_from_json(Platform::Top, "kingdo", &v).unwrap(), o);
    }

    #[test]
    fn configs_come_from_the_environment_and_hide_secrets() {
        let env: HashMap<String, String> = [
            ("FW199_APPID", "APPID1"),
            ("FW199_SECRET", "SECRET1"),
            ("TOP_APP_KEY", "12345"),
            ("TOP_APP_SECRET", "topsecret"),
            ("TOP_SESSION", "sess-token"),
            ("TOP_SIGN_METHOD", "HMAC"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let f = Fw199Config::from_env(&env).unwrap();
        assert_eq!(f.endpoint, Fw199Config::DEFAULT_ENDPOINT);
        assert_eq!(f.secret.expose(), "SECRET1");
        let t = TopConfig::from_env(&env).unwrap();
        assert_eq!(t.sign_method, SignMethod::Hmac);
        let dbg = format!("{f:?} {t:?}");
        assert!(
            !dbg.contains("SECRET1") && !dbg.contains("topsecret") && !dbg.contains("sess-token"),
            "{dbg}"
        );
        let mut bad = env.clone();
        bad.insert("TOP_SIGN_METHOD".into(), "hmac-sha256".into());
        assert!(matches!(
            TopConfig::from_env(&bad),
            Err(ConfigError::Invalid {
                name: "TOP_SIGN_METHOD",
                ..
            })
        ));
        bad.remove("TOP_SESSION");
        assert!(matches!(
            TopConfig::from_env(&bad),
            Err(ConfigError::Invalid { .. } | ConfigError::Missing(_))
        ));
        let empty: HashMap<String, String> = HashMap::new();
        assert!(matches!(
            Fw199Config::from_env(&empty),
            Err(ConfigError::Missing("FW199_APPID"))
        ));
    }
}
