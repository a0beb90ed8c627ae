//! fw199 (蜂巢 / H7B) "enhanced order list" for Taobao shops (PROTOCOLS.md §4, seeds/002).
//!
//! Request: `POST {endpoint}` (`https://kf.fw199.com/gateway/taobao/order/ext/list`), form fields
//! `appid`, `timestamp` (unix seconds), `tb_seller_nick`, `start_created`, `end_created`
//! (`yyyy-MM-dd HH:mm:ss`, Beijing time), `date_type=1` (the window filters on the *modified*
//! time), `order_asc=ASC` (the vendor's page documents `ASC`/`DESC`), `page_no`, `page_size`
//! (≤ 500), optional `sysid`, and `sign` = lowercase hex `MD5(secret + Σ sorted(key+value) +
//! secret)` over every other field, empty values included ([`fw199_sign`]).
//!
//! Response, as this client reads it (the reference calls the shape UNCERTAIN; this is the
//! vendor's published sample, with tolerance for the variants we have seen described):
//!
//! ```text
//! { "code": 0,                       // number or string; non-zero = failure
//!   "message": "ok",                 // or "msg"
//!   "data": { "total": 3,            // number or string; matching orders over all pages
//!             "has_next": false,     // optional; else derived from total / page
//!             "items": [ trade… ] }  // or "orders": [ trade… ]; or `data` itself is the list
//! }
//! ```
//!
//! Each trade uses Taobao's field names (`tid`, `status`, `created`, `modified`,
//! `receiver_mobile`, `orders: {order: [{oid, status, refund_status, logistics_company,
//! invoice_no, consign_time}]}`), read by [`super::trade_from_json`].

use super::{
    body_prefix, count, flag, md5, permanent, retry_after_from_text, retryable, sorted_params,
    text, trade_from_json, Fw199Config, OrderError, OrderPage, OrderSource,
};
use crate::domain::order::Platform;
use crate::http::post_form;
use crate::providers::hex_lower;
use chrono::{DateTime, Utc};
use serde_json::Value;

/// Largest page the vendor serves.
pub const MAX_PAGE_SIZE: u32 = 500;

/// `lowercase_hex(MD5(secret + concat(sorted key+value) + secret))`, `sign` excluded, empty
/// values included (the vendor SDK does not skip them).
pub fn fw199_sign<'a>(
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
    secret: &str,
) -> String {
    let mut s = String::from(secret);
    for (k, v) in sorted_params(params) {
        s.push_str(k);
        s.push_str(v);
    }
    s.push_str(secret);
    hex_lower(&md5(s.as_bytes()))
}

/// What one page request carries, before signing.
#[derive(Debug, Clone)]
pub struct PageRequest<'a> {
    pub appid: &'a str,
    pub sysid: Option<&'a str>,
    pub shop: &'a str,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub page_no: u32,
    pub page_size: u32,
    /// Unix seconds.
    pub timestamp: i64,
}

/// The signed form fields of a page request.
pub fn build_form(req: &PageRequest<'_>, secret: &str) -> Vec<(String, String)> {
    let mut form: Vec<(String, String)> = vec![
        ("appid".into(), req.appid.into()),
        ("timestamp".into(), req.timestamp.to_string()),
        ("tb_seller_nick".into(), req.shop.into()),
        ("start_created".into(), super::china_time(req.from)),
        ("end_created".into(), super::china_time(req.to)),
        ("date_type".into(), "1".into()),
        ("order_asc".into(), "ASC".into()),
        ("page_no".into(), req.page_no.max(1).to_string()),
        (
            "page_size".into(),
            req.page_size.clamp(1, MAX_PAGE_SIZE).to_string(),
        ),
    ];
    if let Some(sysid) = req.sysid {
        form.push(("sysid".into(), sysid.into()));
    }
    let sign = fw199_sign(form.iter().map(|(k, v)| (k.as_str(), v.as_str())), secret);
    form.push(("sign".into(), sign));
    form
}

/// Classify a non-zero `code`: throttling and busy answers are retryable, signature, credential
/// and parameter problems permanent; anything else retryable (the window is tried again next run).
pub fn classify_error(code: &str, message: &str) -> OrderError {
    let lower = message.to_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| lower.contains(w));
    let reason = format!("fw199 code {code}: {message}");
    if code == "429"
        || has(&[
            "频繁",
            "限流",
            "繁忙",
            "稍后",
            "throttl",
            "too many",
            "busy",
            "rate limit",
            "超时",
            "timeout",
        ])
    {
        return retryable(reason, retry_after_from_text(message));
    }
    if has(&[
        "sign",
        "签名",
        "appid",
        "auth",
        "授权",
        "订购",
        "参数",
        "param",
        "invalid",
        "不存在",
        "过期",
        "expired",
        "格式",
    ]) {
        return permanent(reason);
    }
    retryable(reason, None)
}

/// Parse a response body into a page. `page_no`/`page_size` derive `has_next` when the body
/// does not say.
pub fn parse_response(
    shop: &str,
    body: &str,
    page_no: u32,
    page_size: u32,
) -> Result<OrderPage, OrderError> {
    let v: Value = serde_json::from_str(body).map_err(|e| {
        retryable(
            format!("unreadable fw199 answer ({e}): {}", body_prefix(body, 80)),
            None,
        )
    })?;
    let code = text(&v, "code").ok_or_else(|| {
        retryable(
            format!("fw199 answer without code: {}", body_prefix(body, 80)),
            None,
        )
    })?;
    if code != "0" {
        let message = text(&v, "message")
            .or_else(|| text(&v, "msg"))
            .unwrap_or_default();
        return Err(classify_error(&code, &message));
    }
    let data = v.get("data").unwrap_or(&Value::Null);
    let (items, total, has_next) = match data {
        Value::Array(a) => (a.iter().collect::<Vec<_>>(), None, None),
        Value::Object(_) => {
            let items = data
                .get("items")
                .or_else(|| data.get("orders"))
                .or_else(|| data.get("trades"))
                .and_then(Value::as_array)
                .map(|a| a.iter().collect())
                .unwrap_or_default();
            (items, count(data, "total"), flag(data, "has_next"))
        }
        _ => (Vec::new(), Some(0), Some(false)),
    };
    let mut orders = Vec::with_capacity(items.len());
    for item in items {
        match trade_from_json(Platform::Fw199, shop, item) {
            Ok(o) => orders.push(o),
            Err(e) => {
                tracing::warn!(platform = "fw199", shop, error = %e, "trade without tid skipped")
            }
        }
    }
    let has_next = has_next.unwrap_or_else(|| match total {
        Some(t) => u64::from(page_no.max(1)) * u64::from(page_size) < t,
        None => orders.len() as u64 >= u64::from(page_size),
    });
    Ok(OrderPage {
        orders,
        has_next,
        total,
    })
}

/// fw199 client. Cheap to clone: the reqwest client is shared.
#[derive(Debug, Clone)]
pub struct Fw199Client {
    cfg: Fw199Config,
    http: reqwest::Client,
}

impl Fw199Client {
    /// `http` is built once per cold start by the caller.
    pub fn new(cfg: Fw199Config, http: reqwest::Client) -> Self {
        Fw199Client { cfg, http }
    }
}

impl OrderSource for Fw199Client {
    fn platform(&self) -> Platform {
        Platform::Fw199
    }

    async fn page(
        &self,
        shop: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        page_no: u32,
        page_size: u32,
    ) -> Result<OrderPage, OrderError> {
        let page_size = page_size.clamp(1, MAX_PAGE_SIZE);
        let req = PageRequest {
            appid: &self.cfg.appid,
            sysid: self.cfg.sysid.as_deref(),
            shop,
            from,
            to,
            page_no,
            page_size,
            timestamp: Utc::now().timestamp(),
        };
        let form = build_form(&req, self.cfg.secret.expose());
        let result = post_form(&self.http, &self.cfg.endpoint, self.cfg.timeout, &form)
            .await
            .map_err(OrderError::from)
            .and_then(|body| parse_response(shop, &body, page_no, page_size));
        match &result {
            Ok(p) => tracing::debug!(
                platform = "fw199",
                shop,
                page_no,
                orders = p.orders.len(),
                has_next = p.has_next,
                "order page fetched"
            ),
            Err(e) => {
                tracing::info!(platform = "fw199", shop, page_no, retryable = e.is_retryable(), error = %e, "order page failed")
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::time::Duration;

    #[test]
    fn published_sign_vector() {
        let params = [
            ("appid", "APPID1"),
            ("page_no", "1"),
            ("tb_seller_nick", "kingdo"),
            ("timestamp", "1633618722"),
        ];
        assert_eq!(
            fw199_sign(params, "SECRET1"),
            "9ae48f7a398b064be1e685fdc2366bda"
        );
        // Order of the input does not matter; `sign` itself is never signed.
        let shuffled = [
            ("timestamp", "1633618722"),
            ("sign", "whatever"),
            ("tb_seller_nick", "kingdo"),
            ("page_no", "1"),
            ("appid", "APPID1"),
        ];
        assert_eq!(
            fw199_sign(shuffled, "SECRET1"),
            "9ae48f7a398b064be1e685fdc2366bda"
        );
        // Empty values count (unlike TOP).
        let with_empty = [
            ("appid", "APPID1"),
            ("buyer_nick", ""),
            ("page_no", "1"),
            ("tb_seller_nick", "kingdo"),
            ("timestamp", "1633618722"),
        ];
        assert_ne!(
            fw199_sign(with_empty, "SECRET1"),
            "9ae48f7a398b064be1e685fdc2366bda"
        );
    }

    #[test]
    fn the_form_carries_the_window_in_beijing_time_by_modified_time() {
        let from = Utc.with_ymd_and_hms(2026, 11, 10, 16, 0, 0).unwrap();
        let to = Utc.with_ymd_and_hms(2026, 11, 11, 4, 30, 0).unwrap();
        let form = build_form(
            &PageRequest {
                appid: "APPID1",
                sysid: None,
                shop: "kingdo",
                from,
                to,
                page_no: 2,
                page_size: 900,
                timestamp: 1633618722,
            },
            "SECRET1",
        );
        let get = |k: &str| {
            form.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert_eq!(get("start_created"), "2026-11-11 00:00:00");
        assert_eq!(get("end_created"), "2026-11-11 12:30:00");
        assert_eq!(get("date_type"), "1");
        assert_eq!(get("order_asc"), "ASC");
        assert_eq!(get("page_size"), "500", "capped");
        assert_eq!(get("page_no"), "2");
        let unsigned = form
            .iter()
            .filter(|(k, _)| k != "sign")
            .map(|(k, v)| (k.as_str(), v.as_str()));
        assert_eq!(get("sign"), fw199_sign(unsigned, "SECRET1"));
    }

    #[test]
    fn answers_parse_into_pages() {
        let body = r#"{"code":0,"message":"ok","data":{"total":"3","items":[
            {"tid":"11","status":"WAIT_BUYER_CONFIRM_GOODS","modified":"2026-11-11 10:00:00",
             "orders":{"order":[{"oid":"111","status":"WAIT_BUYER_CONFIRM_GOODS","logistics_company":"圆通速递","invoice_no":"YT1234567890123"}]}},
            {"status":"no tid"},
            {"tid":12,"orders":[]}]}}"#;
        let p = parse_response("kingdo", body, 1, 2).unwrap();
        assert_eq!(p.total, Some(3));
        assert!(p.has_next, "3 > 1*2");
        assert_eq!(p.orders.len(), 2);
        assert_eq!(
            p.orders[0].orders[0].invoice_no.as_deref(),
            Some("YT1234567890123")
        );
        assert_eq!(p.orders[1].tid, "12");
        let last = parse_response("kingdo", body, 2, 2).unwrap();
        assert!(!last.has_next);
        let explicit = parse_response(
            "k",
            r#"{"code":"0","data":{"has_next":true,"orders":[]}}"#,
            1,
            100,
        )
        .unwrap();
        assert!(explicit.has_next);
        assert_eq!(explicit.total, None);
        let bare = parse_response("k", r#"{"code":0,"data":[{"tid":"1"}]}"#, 1, 100).unwrap();
        assert_eq!((bare.orders.len(), bare.has_next), (1, false));
    }

    #[test]
    fn failures_are_classified() {
        let cases: [(&str, bool); 6] = [
            (
                r#"{"code":429,"message":"请求过于频繁,请30秒后重试"}"#,
                true,
            ),
            (r#"{"code":"1001","message":"sign error 签名错误"}"#, false),
            (r#"{"code":1002,"msg":"appid不存在"}"#, false),
            (r#"{"code":1003,"message":"系统繁忙"}"#, true),
            (r#"{"code":500,"message":"something else"}"#, true),
            ("<html>bad gateway</html>", true),
        ];
        for (body, retry) in cases {
            let e = parse_response("k", body, 1, 100).unwrap_err();
            assert_eq!(e.is_retryable(), retry, "{body}: {e}");
        }
        let e = parse_response("k", cases[0].0, 1, 100).unwrap_err();
        assert_eq!(e.retry_after(), Some(Duration::from_secs(30)));
    }
}
