//! Kdniao (快递鸟) push: monitor subscription 8008 on `/api/dist` and the pushes (RequestType
//! 101/102) it then sends to our callback URL. PROTOCOLS.md §1.
//!
//! Pushed items are read with the query's wire type ([`KdniaoResponse`]) and turned into
//! snapshots by the query's own [`response_to_snapshot`], so a push and a poll that carry the same
//! data give the same snapshot. [`build_push_form`] is what the sandbox sends: client and sandbox
//! share one format.
//!
//! About `Callback`: Kdniao's 8008 `Callback` is echoed back in each pushed item (`CallBack`); the
//! real push URL is the one set in the Kdniao merchant console. We send our callback URL in it so
//! that the pushes say where they were meant to go, and the sandbox delivers to it.

use super::kdniao::{
    data_sign, decode_response, format_accept_time, parse_accept_time, response_to_snapshot,
    KdniaoResponse, PROVIDER,
};
use super::push::{
    body_prefix, callback_url, parse_id, raw_key, retryable, Form, PushBatch, PushError,
    PushUpdate, Subscribed, Subscriber,
};
use super::{ct_eq, ProviderError, TraceQuery};
use crate::config::{parsed, required, ConfigError, Env, Secret};
use crate::http::post_form;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use std::time::Duration;

/// RequestType of the monitor subscription.
pub const SUBSCRIBE_REQUEST_TYPE: &str = "8008";
/// RequestType of a push from the standard (1008) subscription.
pub const PUSH_REQUEST_TYPE_STANDARD: &str = "101";
/// RequestType of a push from the monitor (8008) subscription.
pub const PUSH_REQUEST_TYPE_MONITOR: &str = "102";
/// Path of our push receiver, appended to `PUSH_CALLBACK_BASE_URL`.
pub const CALLBACK_PATH: &str = "/push/kdniao";

/// Settings of the 8008 subscription and of push verification.
#[derive(Debug, Clone)]
pub struct KdniaoPushConfig {
    /// `KDNIAO_SUBSCRIBE_ENDPOINT`, default [`Self::DEFAULT_SUBSCRIBE_ENDPOINT`].
    pub subscribe_endpoint: String,
    /// `KDNIAO_EBUSINESS_ID`: also the EBusinessID a push must carry.
    pub ebusiness_id: String,
    /// `KDNIAO_APP_KEY`: signs subscriptions and verifies pushes.
    pub app_key: Secret,
    /// `PUSH_CALLBACK_BASE_URL` + [`CALLBACK_PATH`].
    pub callback_url: String,
    /// `PROVIDER_TIMEOUT_MS`, default 5 s.
    pub timeout: Duration,
}

impl KdniaoPushConfig {
    pub const DEFAULT_SUBSCRIBE_ENDPOINT: &'static str = "https://api.kdniao.com/api/dist";

    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        Ok(KdniaoPushConfig {
            subscribe_endpoint: env
                .get("KDNIAO_SUBSCRIBE_ENDPOINT")
                .unwrap_or_else(|| Self::DEFAULT_SUBSCRIBE_ENDPOINT.into()),
            ebusiness_id: required(env, "KDNIAO_EBUSINESS_ID")?,
            app_key: Secret::new(required(env, "KDNIAO_APP_KEY")?),
            callback_url: callback_url(env, CALLBACK_PATH)?,
            timeout: Duration::from_millis(parsed(env, "PROVIDER_TIMEOUT_MS", 5000u64)?),
        })
    }
}

fn json_str(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

/// The compact 8008 `RequestData`:
/// `{"OrderCode":"","ShipperCode":"YTO","LogisticCode":"…","Callback":"…"}`, plus
/// `"CustomerName":"<last4>"` when the carrier demands a phone suffix (as the query does).
pub fn build_subscribe_data(q: &TraceQuery, callback_url: &str) -> String {
    let mut s = format!(
        "{{\"OrderCode\":\"\",\"ShipperCode\":{},\"LogisticCode\":{},\"Callback\":{}",
        json_str(q.id.carrier.as_str()),
        json_str(q.id.number.as_str()),
        json_str(callback_url)
    );
    if let Some(phone) = q
        .phone
        .as_ref()
        .filter(|_| q.id.carrier.needs_phone_suffix())
    {
        s.push_str(",\"CustomerName\":");
        s.push_str(&json_str(phone.last4()));
    }
    s.push('}');
    s
}

/// Read the answer to an 8008 subscription:
/// `{EBusinessID, UpdateTime, Success, Reason, EstimatedDeliveryTime}`.
///
/// `Success:true` and "already subscribed" (重复订阅 / 已订阅) are Ok. Failures are classified
/// like query failures (sign, user, parameter → Permanent; busy, unknown → Retryable); a body
/// that is not JSON is Retryable (gateway error pages).
pub fn parse_subscribe_response(body: &str) -> Result<Subscribed, ProviderError> {
    let resp = decode_response(body)?;
    let estimated_delivery = serde_json::from_str::<Value>(body).ok().and_then(|v| {
        v.get("EstimatedDeliveryTime")
            .and_then(Value::as_str)
            .and_then(parse_accept_time)
    });
    let reason = resp.reason.as_deref().unwrap_or("");
    let already = ["重复", "已订阅", "already"]
        .iter()
        .any(|w| reason.to_lowercase().contains(w));
    if resp.success || already {
        return Ok(Subscribed {
            provider: PROVIDER,
            already_subscribed: already,
            estimated_delivery,
        });
    }
    match response_to_snapshot(&resp, Utc::now()) {
        Err(e) => Err(e),
        // "No trace yet" makes no sense for a subscription: an answer we do not understand.
        Ok(_) => Err(retryable(
            PROVIDER,
            format!("subscription failed: {}", body_prefix(reason, 80)),
        )),
    }
}

/// Kdniao 8008 subscriber. Cheap to clone: the reqwest client is shared.
#[derive(Debug, Clone)]
pub struct KdniaoSubscriber {
    cfg: KdniaoPushConfig,
    http: reqwest::Client,
}

impl KdniaoSubscriber {
    /// `http` is built once per cold start by the caller; `cfg.timeout` applies per request.
    pub fn new(cfg: KdniaoPushConfig, http: reqwest::Client) -> Self {
        KdniaoSubscriber { cfg, http }
    }

    pub fn callback_url(&self) -> &str {
        &self.cfg.callback_url
    }

    async fn call(&self, q: &TraceQuery) -> Result<Subscribed, ProviderError> {
        let request_data = build_subscribe_data(q, &self.cfg.callback_url);
        let sign = data_sign(&request_data, self.cfg.app_key.expose());
        let form = [
            ("RequestData", request_data.as_str()),
            ("EBusinessID", self.cfg.ebusiness_id.as_str()),
            ("RequestType", SUBSCRIBE_REQUEST_TYPE),
            ("DataSign", sign.as_str()),
            ("DataType", "2"),
        ];
        let body = post_form(
            &self.http,
            &self.cfg.subscribe_endpoint,
            self.cfg.timeout,
            &form,
        )
        .await
        .map_err(|f| f.for_provider(PROVIDER))?;
        parse_subscribe_response(&body)
    }
}

impl Subscriber for KdniaoSubscriber {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    async fn subscribe(&self, q: &TraceQuery) -> Result<Subscribed, ProviderError> {
        logged_subscription!(PROVIDER, q, self.call(q).await)
    }
}

// ---------------------------------------------------------------------------------------------
// Pushes
// ---------------------------------------------------------------------------------------------

/// Decode a pushed value a second time when it still looks URL-encoded (the Go SDK does; some
/// senders encode twice). `looks_encoded` decides.
fn decode_again(v: &str, looks_encoded: bool) -> Result<String, PushError> {
    if !looks_encoded {
        return Ok(v.to_owned());
    }
    super::push::pct_decode(v)
        .ok_or_else(|| PushError::Malformed("double-encoded field is not decodable".into()))
}

/// A JSON scalar as a trimmed string (Kdniao writes codes both as strings and as numbers).
fn scalar(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.trim().to_owned()).filter(|s| !s.is_empty()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Verify and parse a push body (`application/x-www-form-urlencoded`: `RequestData`,
/// `RequestType`, `DataSign`).
///
/// In order: decode the form (once, then again for a value that still starts with `%7B`);
/// require the three fields; check `DataSign = Base64(md5hex(RequestData + AppKey))` in constant
/// time **before** reading the JSON; accept RequestType 101 and 102 only; read the envelope
/// `{EBusinessID, PushTime, Count, Data:[…]}` and refuse another merchant's EBusinessID. Each
/// `Data` item then succeeds or fails on its own (see [`super::push`]).
pub fn verify_push(
    form_body: &str,
    app_key: &str,
    expected_ebusiness_id: &str,
) -> Result<PushBatch, PushError> {
    let form = Form::parse(form_body)?;
    let raw_data = form.required("RequestData")?;
    let raw_type = form.required("RequestType")?;
    let raw_sign = form.required("DataSign")?;

    let request_data = decode_again(
        raw_data,
        raw_data
            .get(..3)
            .is_some_and(|p| p.eq_ignore_ascii_case("%7B")),
    )?;
    // Base64 never holds '%' nor ' ': a '%' is a second encoding layer, a ' ' an unencoded '+'.
    let sign = decode_again(raw_sign, raw_sign.contains('%'))?
        .trim()
        .replace(' ', "+");

    if !ct_eq(&data_sign(&request_data, app_key), &sign) {
        return Err(PushError::BadSignature);
    }
    let request_type = raw_type.trim();
    if request_type != PUSH_REQUEST_TYPE_STANDARD && request_type != PUSH_REQUEST_TYPE_MONITOR {
        return Err(PushError::Rejected(format!(
            "RequestType {} is not a trace push (101, 102)",
            body_prefix(request_type, 8)
        )));
    }

    let envelope: Value = serde_json::from_str(&request_data)
        .map_err(|e| PushError::Malformed(format!("RequestData is not JSON: {e}")))?;
    let Some(envelope) = envelope.as_object() else {
        return Err(PushError::Malformed(
            "RequestData is not a JSON object".into(),
        ));
    };
    if let Some(id) = scalar(envelope.get("EBusinessID")) {
        if !ct_eq(&id, expected_ebusiness_id) {
            return Err(PushError::Rejected(
                "push is for another EBusinessID".into(),
            ));
        }
    }
    let items = match envelope.get("Data") {
        Some(Value::Array(items)) => items,
        Some(Value::Null) | None => return Err(PushError::Malformed("missing Data".into())),
        Some(_) => return Err(PushError::Malformed("Data is not a list".into())),
    };
    if let Some(count) = scalar(envelope.get("Count")) {
        if count != items.len().to_string() {
            tracing::warn!(provider = PROVIDER, count = %count, items = items.len(), "Kdniao push Count differs from its Data");
        }
    }

    let now = Utc::now();
    let mut batch = PushBatch::default();
    for item in items {
        let carrier = scalar(item.get("ShipperCode"));
        let number = scalar(item.get("LogisticCode"));
        let key = raw_key(carrier.as_deref(), number.as_deref());
        match push_item(item, expected_ebusiness_id, now) {
            Ok(update) => batch.updates.push(update),
            Err(e) => {
                tracing::warn!(provider = PROVIDER, waybill = %key, error = %e, "push item rejected");
                batch.rejected.push((key, e));
            }
        }
    }
    Ok(batch)
}

fn push_item(
    item: &Value,
    expected_ebusiness_id: &str,
    now: DateTime<Utc>,
) -> Result<PushUpdate, PushError> {
    if !item.is_object() {
        return Err(PushError::Malformed("Data item is not an object".into()));
    }
    let mut resp: KdniaoResponse = serde_json::from_value(item.clone())
        .map_err(|e| PushError::Malformed(format!("Data item unreadable: {e}")))?;
    let id = parse_id(resp.shipper_code.as_deref(), resp.logistic_code.as_deref())?;
    if let Some(eb) = resp.ebusiness_id.as_deref() {
        if !ct_eq(eb, expected_ebusiness_id) {
            return Err(PushError::Rejected(
                "item is for another EBusinessID".into(),
            ));
        }
    }
    // A push item without `Success` is a trace, not a failure report.
    if item.get("Success").is_none() {
        resp.success = true;
    }
    let snapshot = response_to_snapshot(&resp, now).map_err(|_| {
        PushError::Rejected(format!(
            "Kdniao marked this waybill failed: {}",
            body_prefix(resp.reason.as_deref().unwrap_or(""), 80)
        ))
    })?;
    Ok(PushUpdate { id, snapshot })
}

/// The reply Kdniao expects from our push receiver:
/// `{"EBusinessID":"…","UpdateTime":"yyyy-MM-dd HH:mm:ss","Success":true,"Reason":""}`, the
/// time in China time.
pub fn push_ack(ebusiness_id: &str, now: DateTime<Utc>, success: bool, reason: &str) -> String {
    format!(
        "{{\"EBusinessID\":{},\"UpdateTime\":{},\"Success\":{},\"Reason\":{}}}",
        json_str(ebusiness_id),
        json_str(&format_accept_time(now)),
        success,
        json_str(reason)
    )
}

#[derive(Serialize)]
struct Envelope<'a> {
    #[serde(rename = "EBusinessID")]
    ebusiness_id: &'a str,
    #[serde(rename = "PushTime")]
    push_time: String,
    #[serde(rename = "Count")]
    count: String,
    #[serde(rename = "Data")]
    data: &'a [KdniaoResponse],
}

/// A push's `RequestData`: `{"EBusinessID":"…","PushTime":"…","Count":"n","Data":[…]}`, each
/// item in the query's wire shape (full trace history, ascending).
pub fn push_request_data(
    ebusiness_id: &str,
    push_time: DateTime<Utc>,
    items: &[KdniaoResponse],
) -> String {
    let envelope = Envelope {
        ebusiness_id,
        push_time: format_accept_time(push_time),
        count: items.len().to_string(),
        data: items,
    };
    // Strings, bools and lists of them always serialize; the fallback is never taken.
    serde_json::to_string(&envelope).unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot serialize a Kdniao push");
        String::from("{}")
    })
}

/// The form body of a push, as Kdniao POSTs it: `RequestData`, `RequestType`, `DataSign`, each
/// URL-encoded once.
pub fn build_push_form(
    ebusiness_id: &str,
    app_key: &str,
    request_type: &str,
    push_time: DateTime<Utc>,
    items: &[KdniaoResponse],
) -> String {
    let request_data = push_request_data(ebusiness_id, push_time, items);
    let sign = data_sign(&request_data, app_key);
    super::push::form_encode(&[
        ("RequestData", request_data.as_str()),
        ("RequestType", request_type),
        ("DataSign", sign.as_str()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{PhoneLast4, PhoneNumber, ShipmentId, Status, SubStatus};
    use crate::providers::kdniao::{parse_response, KdniaoTrace};
    use crate::providers::push::form_encode;
    use std::collections::HashMap;

    const APP_KEY: &str = "test-appkey-0000";
    const EB: &str = "1237100";

    fn query(carrier: &str, number: &str, phone: Option<&str>) -> TraceQuery {
        TraceQuery {
            id: ShipmentId::parse(carrier, number).unwrap(),
            phone: phone.map(|p| PhoneLast4::from(&PhoneNumber::parse(p).unwrap())),
            order_ref: None,
        }
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// An 8001 answer; the same item is pushed below.
    const ITEM_8001: &str = r#"{"EBusinessID":"1237100","ShipperCode":"YTO","LogisticCode":"YT7412345678901","Success":true,"State":"2","StateEx":"202","Location":"深圳市","Traces":[
        {"AcceptTime":"2026-11-22 18:02:11","AcceptStation":"【杭州市】圆通速递 浙江省杭州市滨江区公司 已揽收","Location":"杭州市","Action":"1"},
        {"AcceptTime":"2026-11-23 02:15:40","AcceptStation":"快件已发往 深圳转运中心","Location":"杭州市","Action":"2"},
        {"AcceptTime":"2026-11-24 07:30:00","AcceptStation":"快件已到达【深圳市】","Location":"深圳市","Action":"201"},
        {"AcceptTime":"2026-11-24 09:12:00","AcceptStation":"快件正在派送中，派件员：张三 138****5678","Location":"深圳市","Action":"202"}]}"#;

    fn push_body(request_type: &str, request_data: &str, key: &str) -> String {
        form_encode(&[
            ("RequestData", request_data),
            ("RequestType", request_type),
            ("DataSign", &data_sign(request_data, key)),
        ])
    }

    fn envelope(items: &[&str]) -> String {
        format!(
            r#"{{"EBusinessID":"1237100","PushTime":"2026-11-24 09:15:00","Count":"{}","Data":[{}]}}"#,
            items.len(),
            items.join(",")
        )
    }

    #[test]
    fn subscribe_data_is_the_query_json_plus_callback() {
        let cb = "https://api.example.com/prod/push/kdniao";
        let yto = build_subscribe_data(&query("YTO", "12345678", Some("13812345678")), cb);
        assert_eq!(
            yto,
            r#"{"OrderCode":"","ShipperCode":"YTO","LogisticCode":"12345678","Callback":"https://api.example.com/prod/push/kdniao"}"#
        );
        let sf = build_subscribe_data(&query("SF", "SF1234567890123", Some("13812345678")), cb);
        assert_eq!(
            sf,
            r#"{"OrderCode":"","ShipperCode":"SF","LogisticCode":"SF1234567890123","Callback":"https://api.example.com/prod/push/kdniao","CustomerName":"5678"}"#
        );
        let zto = build_subscribe_data(&query("ZTO", "7312345678901", None), cb);
        assert!(!zto.contains("CustomerName"), "{zto}");
    }

    #[test]
    fn subscribe_answers_are_classified() {
        let ok = parse_subscribe_response(
            r#"{"EBusinessID":"1237100","UpdateTime":"2026-11-24 10:00:00","Success":true,"Reason":"","EstimatedDeliveryTime":"2026-11-26 18:00:00"}"#,
        )
        .unwrap();
        assert_eq!(
            ok,
            Subscribed {
                provider: "kdniao",
                already_subscribed: false,
                estimated_delivery: Some(utc("2026-11-26T10:00:00Z")),
            }
        );
        let dup = parse_subscribe_response(
            r#"{"EBusinessID":"1237100","Success":false,"Reason":"该单号已订阅，请勿重复订阅"}"#,
        )
        .unwrap();
        assert!(dup.already_subscribed);
        for (body, retryable) in [
            (r#"{"Success":false,"Reason":"DataSign验证失败"}"#, false),
            (
                r#"{"Success":false,"Reason":"EBusinessID不存在或未开通接口权限"}"#,
                false,
            ),
            (
                r#"{"Success":false,"Reason":"参数错误：ShipperCode不能为空"}"#,
                false,
            ),
            (r#"{"Success":false,"Reason":"系统繁忙，请稍后再试"}"#, true),
            (r#"{"Success":false,"Reason":"暂无轨迹信息"}"#, true),
            ("<html>502 Bad Gateway</html>", true),
        ] {
            let e = parse_subscribe_response(body).unwrap_err();
            assert_eq!(e.is_retryable(), retryable, "{body}: {e}");
        }
    }

    #[test]
    fn push_ack_is_the_documented_reply_in_china_time() {
        assert_eq!(
            push_ack(EB, utc("2026-11-24T01:15:00Z"), true, ""),
            r#"{"EBusinessID":"1237100","UpdateTime":"2026-11-24 09:15:00","Success":true,"Reason":""}"#
        );
        assert_eq!(
            push_ack(EB, utc("2026-11-24T16:00:00Z"), false, "签名\"错误\""),
            r#"{"EBusinessID":"1237100","UpdateTime":"2026-11-25 00:00:00","Success":false,"Reason":"签名\"错误\""}"#
        );
    }

    #[test]
    fn golden_push_form() {
        let item = KdniaoResponse {
            ebusiness_id: Some(EB.into()),
            shipper_code: Some("YTO".into()),
            logistic_code: Some("YT7412345678901".into()),
            success: true,
            state: Some("1".into()),
            state_ex: Some("1".into()),
            location: Some("杭州市".into()),
            traces: vec![KdniaoTrace {
                accept_time: "2026-11-22 18:02:11".into(),
                accept_station: "已揽收".into(),
                location: Some("杭州市".into()),
                action: Some("1".into()),
                remark: None,
            }],
            ..KdniaoResponse::default()
        };
        let rd = push_request_data(EB, utc("2026-11-22T10:05:00Z"), std::slice::from_ref(&item));
        assert_eq!(
            rd,
            r#"{"EBusinessID":"1237100","PushTime":"2026-11-22 18:05:00","Count":"1","Data":[{"EBusinessID":"1237100","ShipperCode":"YTO","LogisticCode":"YT7412345678901","Success":true,"State":"1","StateEx":"1","Location":"杭州市","Traces":[{"AcceptTime":"2026-11-22 18:02:11","AcceptStation":"已揽收","Location":"杭州市","Action":"1"}]}]}"#
        );
        let body = build_push_form(EB, APP_KEY, "102", utc("2026-11-22T10:05:00Z"), &[item]);
        let sign = data_sign(&rd, APP_KEY);
        assert_eq!(
            body,
            format!(
                "RequestData={}&RequestType=102&DataSign={}",
                crate::providers::push::pct_encode(&rd),
                crate::providers::push::pct_encode(&sign)
            )
        );
        assert!(body.starts_with("RequestData=%7B%22EBusinessID%22%3A%221237100%22"));
        assert!(!body.contains("%25"), "encoded once");
        let batch = verify_push(&body, APP_KEY, EB).unwrap();
        assert_eq!(batch.updates.len(), 1);
        assert_eq!(batch.updates[0].snapshot.status, Status::PickedUp);
    }

    #[test]
    fn push_and_poll_give_identical_snapshots() {
        let poll = parse_response(ITEM_8001).unwrap();
        assert_eq!(poll.status, Status::OutForDelivery);
        let body = push_body("102", &envelope(&[ITEM_8001]), APP_KEY);
        let batch = verify_push(&body, APP_KEY, EB).unwrap();
        assert!(batch.rejected.is_empty(), "{:?}", batch.rejected);
        assert_eq!(batch.provider_status, None);
        assert_eq!(batch.updates.len(), 1);
        assert_eq!(
            batch.updates[0].id,
            ShipmentId::parse("YTO", "YT7412345678901").unwrap()
        );
        assert_eq!(batch.updates[0].snapshot, poll);
        assert_eq!(poll.sub_status, Some(SubStatus::new("kdniao", "202")));
        assert_eq!(poll.events.len(), 4);

        // And through the shared builder, from the decoded 8001 answer.
        let resp = decode_response(ITEM_8001).unwrap();
        let built = build_push_form(EB, APP_KEY, "101", Utc::now(), &[resp]);
        assert_eq!(
            verify_push(&built, APP_KEY, EB).unwrap().updates[0].snapshot,
            poll
        );
    }

    #[test]
    fn the_signature_is_checked_before_the_json_is_read() {
        // Garbage JSON with a wrong signature: BadSignature, not Malformed.
        let body = push_body("102", "{not json", "another-key");
        assert_eq!(
            verify_push(&body, APP_KEY, EB),
            Err(PushError::BadSignature)
        );
        // The same garbage correctly signed: now Malformed.
        let body = push_body("102", "{not json", APP_KEY);
        assert!(matches!(
            verify_push(&body, APP_KEY, EB),
            Err(PushError::Malformed(_))
        ));
        // A valid push with a tampered RequestData.
        let good = envelope(&[ITEM_8001]);
        let tampered = form_encode(&[
            ("RequestData", &good.replace("\"202\"", "\"3\"")),
            ("RequestType", "102"),
            ("DataSign", &data_sign(&good, APP_KEY)),
        ]);
        assert_eq!(
            verify_push(&tampered, APP_KEY, EB),
            Err(PushError::BadSignature)
        );
    }

    #[test]
    fn double_encoded_pushes_are_decoded_twice() {
        let rd = envelope(&[ITEM_8001]);
        let sign = data_sign(&rd, APP_KEY);
        let once = crate::providers::push::pct_encode;
        let body = format!(
            "RequestData={}&RequestType=102&DataSign={}",
            once(&once(&rd)),
            once(&once(&sign))
        );
        assert!(body.contains("RequestData=%257B"), "{body}");
        let batch = verify_push(&body, APP_KEY, EB).unwrap();
        assert_eq!(batch.updates.len(), 1);
        // An unencoded '+' in the Base64 arrives as a space and is put back.
        let with_plus = "RequestData=x&RequestType=102&DataSign=ab+cd";
        assert_eq!(
            verify_push(with_plus, APP_KEY, EB),
            Err(PushError::BadSignature)
        );
    }

    #[test]
    fn request_types_101_and_102_only() {
        let rd = envelope(&[ITEM_8001]);
        for t in ["101", "102"] {
            assert!(
                verify_push(&push_body(t, &rd, APP_KEY), APP_KEY, EB).is_ok(),
                "{t}"
            );
        }
        for t in ["107", "103", "8008", ""] {
            assert!(
                matches!(
                    verify_push(&push_body(t, &rd, APP_KEY), APP_KEY, EB),
                    Err(PushError::Rejected(_))
                ),
                "{t}"
            );
        }
    }

    #[test]
    fn envelope_problems_refuse_the_whole_push() {
        let rd = envelope(&[ITEM_8001]);
        // Missing fields.
        for missing in ["RequestData", "RequestType", "DataSign"] {
            let pairs: Vec<(&str, String)> = vec![
                ("RequestData", rd.clone()),
                ("RequestType", "102".into()),
                ("DataSign", data_sign(&rd, APP_KEY)),
            ];
            let kept: Vec<(&str, &str)> = pairs
                .iter()
                .filter(|(k, _)| *k != missing)
                .map(|(k, v)| (*k, v.as_str()))
                .collect();
            assert_eq!(
                verify_push(&form_encode(&kept), APP_KEY, EB),
                Err(PushError::Malformed(format!(
                    "missing form field {missing}"
                )))
            );
        }
        // Another merchant.
        assert_eq!(
            verify_push(&push_body("102", &rd, APP_KEY), APP_KEY, "9999999"),
            Err(PushError::Rejected(
                "push is for another EBusinessID".into()
            ))
        );
        // No Data, Data not a list, not an object.
        for rd in [r#"{"EBusinessID":"1237100"}"#, r#"{"Data":{}}"#, "[1]"] {
            assert!(
                matches!(
                    verify_push(&push_body("102", rd, APP_KEY), APP_KEY, EB),
                    Err(PushError::Malformed(_))
                ),
                "{rd}"
            );
        }
        // An empty push is fine.
        let empty = verify_push(&push_body("102", &envelope(&[]), APP_KEY), APP_KEY, EB).unwrap();
        assert_eq!(empty, PushBatch::default());
    }

    #[test]
    fn bad_items_are_reported_and_good_ones_kept() {
        let rd = envelope(&[
            ITEM_8001,
            r#"{"ShipperCode":"Y T O","LogisticCode":"YT1234567890","State":"2","Traces":[]}"#,
            r#"{"ShipperCode":"ZTO","LogisticCode":"12","State":"2","Traces":[]}"#,
            r#"{"EBusinessID":"9999999","ShipperCode":"STO","LogisticCode":"771234567890123","State":"2","Traces":[]}"#,
            r#"{"ShipperCode":"YD","LogisticCode":"431234567890123","Success":false,"Reason":"DataSign验证失败","Traces":[]}"#,
            r#"{"ShipperCode":"JD","LogisticCode":"JDV123456789012","Traces":"oops"}"#,
            r#"{"ShipperCode":"EMS","LogisticCode":"1123456789012","Success":false,"Reason":"暂无轨迹信息","State":"0","Traces":[]}"#,
            "42",
        ]);
        let batch = verify_push(&push_body("102", &rd, APP_KEY), APP_KEY, EB).unwrap();
        let ids: Vec<String> = batch.updates.iter().map(|u| u.id.pk()).collect();
        assert_eq!(
            ids,
            vec!["SHIP#YTO#YT7412345678901", "SHIP#EMS#1123456789012"]
        );
        assert_eq!(batch.updates[1].snapshot.status, Status::Pending);
        let rejected: Vec<(&str, u16)> = batch
            .rejected
            .iter()
            .map(|(k, e)| (k.as_str(), e.http_status()))
            .collect();
        assert_eq!(
            rejected,
            vec![
                ("Y T O#YT1234567890", 422),
                ("ZTO#12", 400),
                ("STO#771234567890123", 403),
                ("YD#431234567890123", 403),
                ("JD#JDV123456789012", 400),
                ("#", 400),
            ]
        );
    }

    #[test]
    fn config_reads_env_and_hides_the_key() {
        let env: HashMap<String, String> = [
            ("KDNIAO_EBUSINESS_ID", EB),
            ("KDNIAO_APP_KEY", "super-secret-key"),
            (
                "PUSH_CALLBACK_BASE_URL",
                "https://abc.execute-api.cn-north-1.amazonaws.com.cn/prod/",
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let cfg = KdniaoPushConfig::from_env(&env).unwrap();
        assert_eq!(cfg.subscribe_endpoint, "https://api.kdniao.com/api/dist");
        assert_eq!(
            cfg.callback_url,
            "https://abc.execute-api.cn-north-1.amazonaws.com.cn/prod/push/kdniao"
        );
        assert_eq!(cfg.timeout, Duration::from_secs(5));
        let dbg = format!("{cfg:?}");
        assert!(
            !dbg.contains("super-secret-key") && dbg.contains("***"),
            "{dbg}"
        );

        let mut env2 = env.clone();
        env2.insert(
            "KDNIAO_SUBSCRIBE_ENDPOINT".into(),
            "http://127.0.0.1:1/api/dist".into(),
        );
        assert_eq!(
            KdniaoPushConfig::from_env(&env2)
                .unwrap()
                .subscribe_endpoint,
            "http://127.0.0.1:1/api/dist"
        );
        env2.remove("PUSH_CALLBACK_BASE_URL");
        assert!(matches!(
            KdniaoPushConfig::from_env(&env2),
            Err(ConfigError::Missing("PUSH_CALLBACK_BASE_URL"))
        ));
    }

    mod http {
        use super::*;
        use axum::http::StatusCode;
        use axum::routing::post;
        use axum::Router;
        use std::sync::{Arc, Mutex};

        async fn serve(app: Router) -> String {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
            format!("http://{addr}")
        }

        fn subscriber(endpoint: String, app_key: &str) -> KdniaoSubscriber {
            KdniaoSubscriber::new(
                KdniaoPushConfig {
                    subscribe_endpoint: endpoint,
                    ebusiness_id: EB.into(),
                    app_key: Secret::new(app_key),
                    callback_url: "https://cb.example.com/push/kdniao".into(),
                    timeout: Duration::from_secs(5),
                },
                reqwest::Client::new(),
            )
        }

        #[tokio::test]
        async fn subscribes_with_a_signed_8008_form() {
            let seen: Arc<Mutex<Vec<String>>> = Arc::default();
            let s2 = seen.clone();
            let app = Router::new().route(
                "/api/dist",
                post(move |body: String| async move {
                    s2.lock().unwrap().push(body.clone());
                    let form = Form::parse(&body).unwrap();
                    let rd = form.get("RequestData").unwrap_or_default();
                    if form.get("DataSign") != Some(data_sign(rd, APP_KEY).as_str()) {
                        return r#"{"EBusinessID":"1237100","Success":false,"Reason":"DataSign验证失败"}"#;
                    }
                    r#"{"EBusinessID":"1237100","UpdateTime":"2026-11-24 10:00:00","Success":true,"Reason":"","EstimatedDeliveryTime":""}"#
                }),
            );
            let base = serve(app).await;
            let s = subscriber(format!("{base}/api/dist"), APP_KEY);
            assert_eq!(s.name(), "kdniao");
            let q = query("SF", "SF1234567890123", Some("13812345678"));
            let ok = s.subscribe(&q).await.unwrap();
            assert!(!ok.already_subscribed);
            assert_eq!(ok.estimated_delivery, None);
            let body = seen.lock().unwrap()[0].clone();
            let form = Form::parse(&body).unwrap();
            assert_eq!(form.get("RequestType"), Some("8008"));
            assert_eq!(form.get("EBusinessID"), Some(EB));
            assert_eq!(form.get("DataType"), Some("2"));
            assert_eq!(
                form.get("RequestData"),
                Some(build_subscribe_data(&q, "https://cb.example.com/push/kdniao").as_str())
            );
            assert!(!body.contains("%25"), "double-encoded: {body}");

            let bad = subscriber(format!("{base}/api/dist"), "wrong-key");
            let e = bad.subscribe(&q).await.unwrap_err();
            assert!(!e.is_retryable(), "{e}");
        }

        #[tokio::test]
        async fn http_failures_are_classified() {
            let app = Router::new()
                .route(
                    "/500",
                    post(|| async { (StatusCode::BAD_GATEWAY, "bad gateway") }),
                )
                .route("/404", post(|| async { (StatusCode::NOT_FOUND, "no") }))
                .route(
                    "/busy",
                    post(|| async { r#"{"Success":false,"Reason":"系统繁忙"}"# }),
                );
            let base = serve(app).await;
            let q = query("YTO", "YT7412345678901", None);
            assert!(subscriber(format!("{base}/500"), APP_KEY)
                .subscribe(&q)
                .await
                .unwrap_err()
                .is_retryable());
            assert!(!subscriber(format!("{base}/404"), APP_KEY)
                .subscribe(&q)
                .await
                .unwrap_err()
                .is_retryable());
            assert!(subscriber(format!("{base}/busy"), APP_KEY)
                .subscribe(&q)
                .await
                .unwrap_err()
                .is_retryable());
            let dead = {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                let a = l.local_addr().unwrap();
                drop(l);
                format!("http://{a}/api/dist")
            };
            assert!(subscriber(dead, APP_KEY)
                .subscribe(&q)
                .await
                .unwrap_err()
                .is_retryable());
        }
    }
}
