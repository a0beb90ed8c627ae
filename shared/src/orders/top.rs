//! Taobao Open Platform: `taobao.trades.sold.increment.get` (PROTOCOLS.md §3).
//!
//! `POST {endpoint}` form with the common parameters (`method`, `app_key`, `session`,
//! `timestamp` in Beijing time, `format=json`, `v=2.0`, `sign_method`, `sign`) and the business
//! ones: `fields`, `start_modified`/`end_modified` (span ≤ one day: longer windows are refused
//! here and split by the caller), `page_no`, `page_size` (≤ 100).
//!
//! TOP lists newest first. Paging forwards through a list that shrinks while we read (an order
//! modified meanwhile leaves the window) skips orders; paging from the last page backwards does
//! not, and that needs `total_results`, which TOP leaves out when `use_has_next=true`. So this
//! client sends `use_has_next=false`, reports `total`, and derives `has_next` from it.

use super::{
    body_prefix, count, flag, md5, permanent, retry_after_from_text, retryable, sorted_params,
    text, trade_from_json, OrderError, OrderPage, OrderSource, SignMethod, TopConfig,
};
use crate::domain::order::Platform;
use crate::http::post_form;
use crate::providers::hex_lower;
use chrono::{DateTime, Utc};
use serde_json::Value;

pub const METHOD: &str = "taobao.trades.sold.increment.get";
/// The answer's wrapper key: the method without `taobao.`, dots as underscores.
pub const RESPONSE_KEY: &str = "trades_sold_increment_get_response";
/// Largest page asked for.
pub const MAX_PAGE_SIZE: u32 = 100;
/// The trade and sub-order fields we read.
pub const FIELDS: &str = "tid,status,created,modified,receiver_mobile,receiver_state,receiver_city,seller_nick,orders.oid,orders.status,orders.refund_status,orders.logistics_company,orders.invoice_no,orders.consign_time";

/// HMAC-MD5 (RFC 2104) over md-5: block size 64, keys longer than a block hashed first.
pub fn hmac_md5(key: &[u8], data: &[u8]) -> [u8; 16] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..16].copy_from_slice(&md5(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Vec::with_capacity(64 + data.len());
    inner.extend(block.iter().map(|b| b ^ 0x36));
    inner.extend_from_slice(data);
    let inner_hash = md5(&inner);
    let mut outer = Vec::with_capacity(64 + 16);
    outer.extend(block.iter().map(|b| b ^ 0x5c));
    outer.extend_from_slice(&inner_hash);
    md5(&outer)
}

/// TOP's sign: parameters (not `sign`, not empty values) sorted by name, `name+value`
/// concatenated; `MD5(secret + S + secret)` or `HMAC-MD5(secret, S)`; upper-case hex.
pub fn top_sign<'a>(
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
    secret: &str,
    method: SignMethod,
) -> String {
    let mut s = String::new();
    for (k, v) in sorted_params(params) {
        if v.is_empty() {
            continue;
        }
        s.push_str(k);
        s.push_str(v);
    }
    let digest = match method {
        SignMethod::Md5 => md5(format!("{secret}{s}{secret}").as_bytes()),
        SignMethod::Hmac => hmac_md5(secret.as_bytes(), s.as_bytes()),
    };
    hex_lower(&digest).to_ascii_uppercase()
}

/// What one page request carries, before signing.
#[derive(Debug, Clone)]
pub struct PageRequest<'a> {
    pub app_key: &'a str,
    pub session: &'a str,
    pub sign_method: SignMethod,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub page_no: u32,
    pub page_size: u32,
    pub timestamp: DateTime<Utc>,
}

/// The common parameters of one TOP call (any method), before the business ones.
#[derive(Debug, Clone, Copy)]
pub struct TopCall<'a> {
    pub method: &'a str,
    pub app_key: &'a str,
    pub session: &'a str,
    pub sign_method: SignMethod,
    pub timestamp: DateTime<Utc>,
}

/// The signed form of a TOP call: the common parameters (`method`, `app_key`, `session`,
/// `timestamp` in Beijing time, `format=json`, `v=2.0`, `sign_method`), then `business`, then
/// `sign` over all of them.
pub fn signed_form(
    call: &TopCall<'_>,
    business: Vec<(String, String)>,
    secret: &str,
) -> Vec<(String, String)> {
    let mut form: Vec<(String, String)> = vec![
        ("method".into(), call.method.into()),
        ("app_key".into(), call.app_key.into()),
        ("session".into(), call.session.into()),
        ("timestamp".into(), super::china_time(call.timestamp)),
        ("format".into(), "json".into()),
        ("v".into(), "2.0".into()),
        ("sign_method".into(), call.sign_method.as_str().into()),
    ];
    form.extend(business);
    let sign = top_sign(
        form.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        secret,
        call.sign_method,
    );
    form.push(("sign".into(), sign));
    form
}

/// The signed form fields of a page request.
pub fn build_form(req: &PageRequest<'_>, secret: &str) -> Vec<(String, String)> {
    let call = TopCall {
        method: METHOD,
        app_key: req.app_key,
        session: req.session,
        sign_method: req.sign_method,
        timestamp: req.timestamp,
    };
    let business: Vec<(String, String)> = vec![
        ("fields".into(), FIELDS.into()),
        ("start_modified".into(), super::china_time(req.from)),
        ("end_modified".into(), super::china_time(req.to)),
        ("page_no".into(), req.page_no.max(1).to_string()),
        (
            "page_size".into(),
            req.page_size.clamp(1, MAX_PAGE_SIZE).to_string(),
        ),
        ("use_has_next".into(), "false".into()),
    ];
    signed_form(&call, business, secret)
}

/// Classify an `error_response`.
///
/// `sub_code` decides first: `isv.*` (the caller's fault) is permanent; `isp.*` (the platform's)
/// and `accesscontrol.*` (throttling) are retryable. Then `code`: 7 and the call limits 4/5/6/8
/// and 15 (remote service error) are retryable; signature (25), session (26/27), app key
/// (28/29), method (21/22), permissions (11/12), timestamp (30/31) and arguments (40/41) are
/// permanent. Anything else is retryable. A ban's length comes from "This ban will last for N
/// more seconds".
pub fn classify_error(code: i64, msg: &str, sub_code: &str, sub_msg: &str) -> OrderError {
    let reason = if sub_code.is_empty() {
        format!("TOP error {code}: {msg}")
    } else {
        format!("TOP error {code} {sub_code}: {msg}; {sub_msg}")
    };
    let wait = || retry_after_from_text(sub_msg).or_else(|| retry_after_from_text(msg));
    if sub_code.starts_with("isv.") {
        return permanent(reason);
    }
    if sub_code.starts_with("isp.") || sub_code.starts_with("accesscontrol.") {
        return retryable(reason, wait());
    }
    match code {
        4..=8 | 15 => retryable(reason, wait()),
        11 | 12 | 21 | 22 | 25..=31 | 40 | 41 => permanent(reason),
        _ => retryable(reason, wait()),
    }
}

/// Parse a response body into a page. `page_no`/`page_size` derive `has_next` from the total.
pub fn parse_response(
    shop: &str,
    body: &str,
    page_no: u32,
    page_size: u32,
) -> Result<OrderPage, OrderError> {
    let v: Value = serde_json::from_str(body).map_err(|e| {
        retryable(
            format!("unreadable TOP answer ({e}): {}", body_prefix(body, 80)),
            None,
        )
    })?;
    if let Some(err) = v.get("error_response") {
        let code = count(err, "code").map(|c| c as i64).unwrap_or(-1);
        return Err(classify_error(
            code,
            &text(err, "msg").unwrap_or_default(),
            &text(err, "sub_code").unwrap_or_default(),
            &text(err, "sub_msg").unwrap_or_default(),
        ));
    }
    let Some(resp) = v.get(RESPONSE_KEY) else {
        return Err(retryable(
            format!(
                "TOP answer without {RESPONSE_KEY}: {}",
                body_prefix(body, 80)
            ),
            None,
        ));
    };
    let total = count(resp, "total_results");
    let trades = resp.get("trades").map(|t| match t {
        Value::Array(a) => a.iter().collect::<Vec<_>>(),
        Value::Object(o) => o
            .get("trade")
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default(),
        _ => Vec::new(),
    });
    let mut orders = Vec::new();
    for trade in trades.unwrap_or_default() {
        match trade_from_json(Platform::Top, shop, trade) {
            Ok(o) => orders.push(o),
            Err(e) => {
                tracing::warn!(platform = "top", shop, error = %e, "trade without tid skipped")
            }
        }
    }
    let has_next = match (flag(resp, "has_next"), total) {
        (Some(h), _) => h,
        (None, Some(t)) => u64::from(page_no.max(1)) * u64::from(page_size) < t,
        (None, None) => false,
    };
    Ok(OrderPage {
        orders,
        has_next,
        total,
    })
}

/// TOP client for one shop's session. Cheap to clone: the reqwest client is shared.
#[derive(Debug, Clone)]
pub struct TopClient {
    cfg: TopConfig,
    http: reqwest::Client,
}

impl TopClient {
    /// `http` is built once per cold start by the caller.
    pub fn new(cfg: TopConfig, http: reqwest::Client) -> Self {
        TopClient { cfg, http }
    }
}

impl OrderSource for TopClient {
    fn platform(&self) -> Platform {
        Platform::Top
    }

    async fn page(
        &self,
        shop: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        page_no: u32,
        page_size: u32,
    ) -> Result<OrderPage, OrderError> {
        if to - from > chrono::Duration::days(1) {
            return Err(permanent(format!(
                "TOP windows span at most one day; asked for {from}..{to}"
            )));
        }
        let page_size = page_size.clamp(1, MAX_PAGE_SIZE);
        let req = PageRequest {
            app_key: &self.cfg.app_key,
            session: self.cfg.session.expose(),
            sign_method: self.cfg.sign_method,
            from,
            to,
            page_no,
            page_size,
            timestamp: Utc::now(),
        };
        let form = build_form(&req, self.cfg.secret.expose());
        let result = post_form(&self.http, &self.cfg.endpoint, self.cfg.timeout, &form)
            .await
            .map_err(OrderError::from)
            .and_then(|body| parse_response(shop, &body, page_no, page_size));
        match &result {
            Ok(p) => {
                tracing::debug!(platform = "top", shop, page_no, orders = p.orders.len(), total = ?p.total, "order page fetched")
            }
            Err(e) => {
                tracing::info!(platform = "top", shop, page_no, retryable = e.is_retryable(), error = %e, "order page failed")
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn published(sign_method: &'static str) -> [(&'static str, &'static str); 8] {
        [
            ("app_key", "test"),
            ("fields", "nick"),
            ("format", "xml"),
            ("method", "taobao.user.seller.get"),
            ("session", "test"),
            ("sign_method", sign_method),
            ("timestamp", "2013-05-06 13:52:03"),
            ("v", "2.0"),
        ]
    }

    #[test]
    fn published_md5_vector() {
        assert_eq!(
            top_sign(published("md5"), "test", SignMethod::Md5),
            "72CB4D809B375A54502C09360D879C64"
        );
        // Empty values are skipped, `sign` is never signed.
        let mut more: Vec<(&str, &str)> = published("md5").to_vec();
        more.push(("partner_id", ""));
        more.push(("sign", "X"));
        assert_eq!(
            top_sign(more, "test", SignMethod::Md5),
            "72CB4D809B375A54502C09360D879C64"
        );
    }

    #[test]
    fn hmac_vector() {
        assert_eq!(
            top_sign(published("hmac"), "test", SignMethod::Hmac),
            "FA15A9D5B42AB2D6F3397843851ED09A"
        );
    }

    #[test]
    fn hmac_md5_matches_rfc_2202() {
        // RFC 2202 test cases 2 and 6 (key longer than a block).
        assert_eq!(
            hex_lower(&hmac_md5(b"Jefe", b"what do ya want for nothing?")),
            "750c783e6ab0b503eaa86e310a5db738"
        );
        assert_eq!(
            hex_lower(&hmac_md5(
                &[0xaa; 80],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "6b1ab7fe4bd7bf8f0b62e6ce61b9d0cd"
        );
    }

    #[test]
    fn errors_are_classified() {
        let ban = r#"{"error_response":{"code":7,"msg":"App Call Limited","sub_code":"accesscontrol.limited-by-app-access-count","sub_msg":"This ban will last for 17 more seconds","request_id":"x"}}"#;
        let e = parse_response("s", ban, 1, 100).unwrap_err();
        assert!(e.is_retryable());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(17)));
        let cases: [(i64, &str, bool); 11] = [
            (15, "isp.remote-service-error", true),
            (15, "", true),
            (15, "isv.invalid-parameter", false),
            (25, "", false),
            (26, "", false),
            (27, "", false),
            (28, "", false),
            (29, "", false),
            (22, "", false),
            (8, "", true),
            (999, "", true),
        ];
        for (code, sub, retry) in cases {
            assert_eq!(
                classify_error(code, "m", sub, "").is_retryable(),
                retry,
                "{code} {sub}"
            );
        }
    }

    #[test]
    fn answers_parse_into_pages() {
        let body = r#"{"trades_sold_increment_get_response":{"total_results":"150","trades":{"trade":[
            {"tid":4100000000000001,"status":"WAIT_BUYER_CONFIRM_GOODS","modified":"2026-11-11 10:00:00",
             "orders":{"order":[{"oid":41000000000000011,"status":"WAIT_BUYER_CONFIRM_GOODS","logistics_company":"顺丰速运","invoice_no":"SF1234567890123"}]}}]}}}"#;
        let p = parse_response("s", body, 1, 100).unwrap();
        assert_eq!(p.total, Some(150));
        assert!(p.has_next);
        assert_eq!(p.orders[0].tid, "4100000000000001");
        assert_eq!(p.orders[0].platform, Platform::Top);
        assert!(!parse_response("s", body, 2, 100).unwrap().has_next);
        let empty = parse_response(
            "s",
            r#"{"trades_sold_increment_get_response":{"total_results":0}}"#,
            1,
            100,
        )
        .unwrap();
        assert_eq!((empty.orders.len(), empty.has_next), (0, false));
        assert!(parse_response("s", r#"{"other":1}"#, 1, 100)
            .unwrap_err()
            .is_retryable());
    }
}
