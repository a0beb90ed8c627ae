//! Kdniao (快递鸟): instant query 1002 and monitor query 8001.
//!
//! The wire shape, signing and result codes are in PROTOCOLS.md §1. Everything that can be pure is
//! pure and `pub` (request body, response parsing, status mapping) so that the sandbox server and
//! fuzzers share exactly the code the client runs.

use super::unknown::note_unknown;
use super::{ProviderError, TraceProvider, TraceQuery};
use crate::config::KdniaoConfig;
use crate::domain::{Status, SubStatus, TraceEvent, TraceSnapshot};
use crate::http::{body_prefix, post_form};
use base64::Engine;
use chrono::{DateTime, Duration as ChronoDuration, NaiveDate, NaiveDateTime, TimeZone, Utc};
use md5::{Digest, Md5};
use serde::{Deserialize, Deserializer, Serialize};
use std::time::Duration;

/// Provider name used in sub-statuses, errors and logs.
pub const PROVIDER: &str = "kdniao";

/// Kdniao stamps trace lines in China Standard Time (UTC+8, no daylight saving).
const CHINA_OFFSET_HOURS: i64 = 8;

/// `DataSign = Base64(lowercase_hex(MD5_utf8(RequestData + AppKey)))`, over the raw JSON
/// exactly as sent, before any URL encoding.
pub fn data_sign(request_data: &str, app_key: &str) -> String {
    let mut h = Md5::new();
    h.update(request_data.as_bytes());
    h.update(app_key.as_bytes());
    let hex = super::hex_lower(&h.finalize());
    base64::engine::general_purpose::STANDARD.encode(hex.as_bytes())
}

/// A JSON string literal (quoted, escaped). `Value`'s `Display` cannot fail, unlike `to_string`.
fn json_str(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// The compact `RequestData` JSON for a 1002/8001 query, fields in the documented order:
/// `{"OrderCode":"","ShipperCode":"YTO","LogisticCode":"12345678"}`, plus `"CustomerName":"<last4>"`
/// when the carrier demands a phone suffix and we have a phone. `OrderCode` stays empty: it is
/// optional for queries and the merchant's order reference has no business at the aggregator.
pub fn build_request_data(q: &TraceQuery) -> String {
    let mut s = format!(
        "{{\"OrderCode\":\"\",\"ShipperCode\":{},\"LogisticCode\":{}",
        json_str(q.id.carrier.as_str()),
        json_str(q.id.number.as_str())
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

// ---------------------------------------------------------------------------------------------
// Wire types
// ---------------------------------------------------------------------------------------------

/// Answer to a 1002/8001 query, field names exactly as on the wire. Deserialization is lenient
/// where Kdniao is inconsistent (codes as strings or numbers, `null` lists); serialization writes
/// codes as strings, the way Kdniao does.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct KdniaoResponse {
    #[serde(rename = "EBusinessID", default, deserialize_with = "de_opt_code")]
    pub ebusiness_id: Option<String>,
    #[serde(
        rename = "OrderCode",
        default,
        deserialize_with = "de_opt_code",
        skip_serializing_if = "Option::is_none"
    )]
    pub order_code: Option<String>,
    #[serde(rename = "ShipperCode", default, deserialize_with = "de_opt_code")]
    pub shipper_code: Option<String>,
    #[serde(rename = "LogisticCode", default, deserialize_with = "de_opt_code")]
    pub logistic_code: Option<String>,
    #[serde(rename = "Success", default, deserialize_with = "de_bool")]
    pub success: bool,
    #[serde(
        rename = "Reason",
        default,
        deserialize_with = "de_opt_code",
        skip_serializing_if = "Option::is_none"
    )]
    pub reason: Option<String>,
    /// Result code some gateways add on failures (Go SDK constants 100–105, 401–405).
    #[serde(
        rename = "ResultCode",
        default,
        deserialize_with = "de_opt_code",
        skip_serializing_if = "Option::is_none"
    )]
    pub result_code: Option<String>,
    #[serde(
        rename = "State",
        default,
        deserialize_with = "de_opt_code",
        skip_serializing_if = "Option::is_none"
    )]
    pub state: Option<String>,
    /// 8001 only.
    #[serde(
        rename = "StateEx",
        default,
        deserialize_with = "de_opt_code",
        skip_serializing_if = "Option::is_none"
    )]
    pub state_ex: Option<String>,
    /// 8001 only: the parcel's current city.
    #[serde(
        rename = "Location",
        default,
        deserialize_with = "de_opt_code",
        skip_serializing_if = "Option::is_none"
    )]
    pub location: Option<String>,
    #[serde(rename = "Traces", default, deserialize_with = "de_traces")]
    pub traces: Vec<KdniaoTrace>,
}

/// One trace line. `Location` and `Action` come with 8001 only.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct KdniaoTrace {
    /// `yyyy-MM-dd HH:mm:ss`, China time. See [`format_accept_time`].
    #[serde(rename = "AcceptTime", default, deserialize_with = "de_string")]
    pub accept_time: String,
    #[serde(rename = "AcceptStation", default, deserialize_with = "de_string")]
    pub accept_station: String,
    #[serde(
        rename = "Location",
        default,
        deserialize_with = "de_opt_code",
        skip_serializing_if = "Option::is_none"
    )]
    pub location: Option<String>,
    #[serde(
        rename = "Action",
        default,
        deserialize_with = "de_opt_code",
        skip_serializing_if = "Option::is_none"
    )]
    pub action: Option<String>,
    #[serde(
        rename = "Remark",
        default,
        deserialize_with = "de_opt_code",
        skip_serializing_if = "Option::is_none"
    )]
    pub remark: Option<String>,
}

/// A string, number or bool as a trimmed string; `null` and blank as `None`.
fn de_opt_code<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = Option::<serde_json::Value>::deserialize(d)?;
    Ok(match v {
        Some(serde_json::Value::String(s)) => Some(s.trim().to_owned()).filter(|s| !s.is_empty()),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        Some(serde_json::Value::Bool(b)) => Some(b.to_string()),
        _ => None,
    })
}

fn de_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(de_opt_code(d)?.unwrap_or_default())
}

/// `true`, `"true"`, `1` are true; anything else (including absent) is false.
fn de_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let v = Option::<serde_json::Value>::deserialize(d)?;
    Ok(match v {
        Some(serde_json::Value::Bool(b)) => b,
        Some(serde_json::Value::String(s)) => s.trim().eq_ignore_ascii_case("true"),
        Some(serde_json::Value::Number(n)) => n.as_i64() == Some(1),
        _ => false,
    })
}

fn de_traces<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<KdniaoTrace>, D::Error> {
    Ok(Option::<Vec<KdniaoTrace>>::deserialize(d)?.unwrap_or_default())
}

// ---------------------------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------------------------

/// Parse an `AcceptTime` (China time) into UTC. Carriers relayed by Kdniao are not all tidy, so
/// slashes, fractional seconds and minute precision are accepted too.
pub fn parse_accept_time(s: &str) -> Option<DateTime<Utc>> {
    const FORMATS: [&str; 4] = [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y/%m/%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ];
    let s = s.trim();
    let naive = FORMATS
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())?;
    // Fixed UTC+8: subtracting is exact and cannot fail, unlike building a FixedOffset.
    Some(Utc.from_utc_datetime(&(naive - ChronoDuration::hours(CHINA_OFFSET_HOURS))))
}

/// The `AcceptTime` text of an instant, as Kdniao writes it (China time).
pub fn format_accept_time(t: DateTime<Utc>) -> String {
    (t + ChronoDuration::hours(CHINA_OFFSET_HOURS))
        .naive_utc()
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// How long until Kdniao's daily query quota resets (midnight China time), at least a minute.
fn until_quota_reset(now: DateTime<Utc>) -> Duration {
    let china_now = (now + ChronoDuration::hours(CHINA_OFFSET_HOURS)).naive_utc();
    let next_midnight = china_now
        .date()
        .succ_opt()
        .and_then(|d: NaiveDate| d.and_hms_opt(0, 0, 0));
    let secs = next_midnight
        .map(|m| (m - china_now).num_seconds())
        .unwrap_or(3600);
    Duration::from_secs(secs.max(60) as u64)
}

// ---------------------------------------------------------------------------------------------
// Status mapping
// ---------------------------------------------------------------------------------------------

/// The documented State/StateEx/Action codes. One table for all three: Kdniao uses the same
/// vocabulary for the main state, the detailed state and a line's action. The signed (3xx) and
/// problem (4xx) families are Kdniao's StateEx table (快递鸟 "物流状态码" / 8001 即时查询增值版
/// documentation, kdniao.com/api-monitor; the same table ships in Kdniao's SDK models).
fn known_code(code: &str) -> Option<Status> {
    Some(match code {
        // No trace yet. Kdniao answers the same for a waybill the carrier has not scanned and for a
        // mistyped number, so this says nothing about the carrier knowing the parcel: Pending,
        // not InfoReceived.
        "0" => Status::Pending,
        "1" => Status::PickedUp,
        "2" => Status::InTransit,
        "201" => Status::ArrivedAtDestinationCity,
        "202" => Status::OutForDelivery,
        "211" => Status::AvailableForPickup,
        // Signed: 3 signed, 301 正常签收, 302 异常后签收 (signed after a problem), 304 代收
        // (signed by a proxy), 311 collected from a locker or station.
        "3" | "301" | "302" | "304" | "311" => Status::Delivered,
        // 4 problem, 401 shipped but no information, 405 派件异常 (a delivery problem).
        "4" | "401" | "405" => Status::Exception,
        // "Not signed in time": a timer verdict, not a reported delivery attempt, so it is an
        // Exception (the buyer is asked to check) rather than DeliveryFailed.
        "402" => Status::Exception,
        // "No update in time".
        "403" => Status::Exception,
        // Refused, on its way back to the sender.
        "404" => Status::Returning,
        // 退货签收: the return was signed for by the sender. Kdniao reports it with State 4, so
        // StateEx must win over State here: the parcel's journey is over.
        "406" => Status::Returned,
        // 退货未签收: the return is on its way, not yet signed for.
        "407" => Status::Returning,
        // Not collected from the locker in time. The parcel is still there and the buyer can still
        // collect it, so it stays AvailableForPickup (keeping the near-delivery check cadence);
        // the sub-status 412 drives a reminder instead of an alarming "exception" message.
        "412" => Status::AvailableForPickup,
        // The rest of the problem family: 413 intercepted, 414 damaged, 415 cancelled,
        // 416 unreachable, 417 delayed, 418 taken out, 419 re-delivery, 420 address unclear,
        // 421 wrong phone, 422 mis-sorted, 423 out of area; none closes the parcel.
        "413" | "414" | "415" | "416" | "417" | "418" | "419" | "420" | "421" | "422" | "423" => {
            Status::Exception
        }
        _ => return None,
    })
}

/// Map Kdniao's `State` and (8001) `StateEx` to the canonical status, keeping the exact code.
///
/// StateEx is preferred when it is present and documented (406 with State 4 is Returned, not an
/// exception). An unknown StateEx resolves through `State`, with the exact
/// code kept as sub-status; when neither is known the parcel is taken as InTransit: not terminal
/// (tracking continues, nothing is closed on a guess) and not Exception (an unknown scan type is
/// far likelier than a problem, and Exception texts the buyer). Unknown codes are logged once
/// per process and counted ([`super::unknown::note_unknown`]).
pub fn map_state(state: &str, state_ex: Option<&str>) -> (Status, Option<SubStatus>) {
    let state = state.trim();
    let state_ex = state_ex.map(str::trim).filter(|s| !s.is_empty());
    let sub_code = state_ex.or(Some(state).filter(|s| !s.is_empty()));
    let sub = sub_code.map(|c| SubStatus::new(PROVIDER, c));

    if let Some(st) = state_ex.and_then(known_code) {
        return (st, sub);
    }
    if let Some(ex) = state_ex {
        note_unknown(PROVIDER, "StateEx", ex);
    }
    if state.is_empty() {
        // Nothing documented to go on: the caller decides from the trace lines (see
        // `response_to_snapshot`).
        return (Status::Pending, sub);
    }
    match known_code(state) {
        Some(st) => (st, sub),
        None => {
            note_unknown(PROVIDER, "State", state);
            (Status::InTransit, sub)
        }
    }
}

/// Status of one trace line from its 8001 `Action`; `None` when absent or unknown (the line is
/// kept, only unclassified: a line never decides on an undocumented code).
pub fn map_action(action: &str) -> Option<Status> {
    let action = action.trim();
    if action.is_empty() {
        return None;
    }
    let st = known_code(action);
    if st.is_none() {
        note_unknown(PROVIDER, "Action", action);
    }
    st
}

// ---------------------------------------------------------------------------------------------
// Response parsing and error classification
// ---------------------------------------------------------------------------------------------

fn retryable(reason: impl Into<String>, retry_after: Option<Duration>) -> ProviderError {
    ProviderError::Retryable {
        provider: PROVIDER,
        reason: reason.into(),
        retry_after,
    }
}

fn permanent(reason: impl Into<String>) -> ProviderError {
    ProviderError::Permanent {
        provider: PROVIDER,
        reason: reason.into(),
    }
}

/// Decode a response body. Not JSON, truncated JSON, or JSON of another shape is Retryable:
/// gateways in front of Kdniao do return HTML error pages and cut bodies, and a persistent one
/// reaches the DLQ through the queue's maxReceiveCount rather than being lost on the first try.
pub fn decode_response(body: &str) -> Result<KdniaoResponse, ProviderError> {
    serde_json::from_str::<KdniaoResponse>(body).map_err(|e| {
        retryable(
            format!("unreadable response ({e}): {}", body_prefix(body, 80)),
            None,
        )
    })
}

/// What a `Success:false` answer means for us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// "暂无轨迹信息": the query was fine, there is just nothing to see yet.
    NoTrace,
    DailyLimit,
    Permanent,
    Retryable,
}

fn classify_failure(reason: &str, result_code: Option<&str>) -> Failure {
    let lower = reason.to_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| lower.contains(w));

    match result_code.map(str::trim) {
        Some("405") => return Failure::DailyLimit,
        Some("101" | "102" | "103" | "104" | "401" | "402" | "403" | "404") => {
            return Failure::Permanent
        }
        _ => {}
    }
    if has(&["暂无轨迹", "没有轨迹", "无轨迹", "暂无物流", "no trace"]) {
        return Failure::NoTrace;
    }
    // Before the permanent words: "用户今日查询次数超过上限" names the user but is a quota.
    if has(&[
        "上限",
        "限额",
        "次数",
        "超出",
        "daily limit",
        "limit exceeded",
    ]) || (lower.contains("超过") && !has(&["长度", "length"]))
    {
        return Failure::DailyLimit;
    }
    if has(&[
        "签名",
        "datasign",
        "sign",
        "用户",
        "ebusinessid",
        "商户",
        "appkey",
        "权限",
        "未开通",
        "参数",
        "格式",
        "长度",
        "特殊字符",
        "非法",
        "不支持",
        "不存在",
    ]) {
        return Failure::Permanent;
    }
    // Busy, system error, or a reason we have never seen: worth another try; a persistent one
    // ends in the DLQ with this reason attached.
    Failure::Retryable
}

/// Turn a decoded answer into a snapshot (or the error it stands for). `now` sets the daily-limit
/// back-off.
pub fn response_to_snapshot(
    resp: &KdniaoResponse,
    now: DateTime<Utc>,
) -> Result<TraceSnapshot, ProviderError> {
    if !resp.success {
        let reason = resp.reason.as_deref().unwrap_or("");
        match classify_failure(reason, resp.result_code.as_deref()) {
            // Not an error: nothing to see yet. Pending (see `known_code("0")`), no events;
            // the decision (domain::check) refuses it as a regression if we already know better.
            Failure::NoTrace => {
                return Ok(TraceSnapshot {
                    status: Status::Pending,
                    sub_status: Some(SubStatus::new(PROVIDER, "0")),
                    events: Vec::new(),
                })
            }
            Failure::DailyLimit => {
                return Err(retryable(
                    format!("daily query limit reached: {reason}"),
                    Some(until_quota_reset(now)),
                ))
            }
            Failure::Permanent => return Err(permanent(format!("rejected: {reason}"))),
            Failure::Retryable => return Err(retryable(format!("failed: {reason}"), None)),
        }
    }

    let mut events = Vec::with_capacity(resp.traces.len());
    for line in &resp.traces {
        let Some(time) = parse_accept_time(&line.accept_time) else {
            // A line without a usable time cannot be ordered or keyed; keep the rest.
            tracing::warn!(provider = PROVIDER, accept_time = %line.accept_time, "trace line with unreadable AcceptTime skipped");
            continue;
        };
        let description = if line.accept_station.is_empty() {
            line.remark.clone().unwrap_or_default()
        } else {
            line.accept_station.clone()
        };
        events.push(TraceEvent {
            time,
            description,
            location: line.location.clone(),
            status: line.action.as_deref().and_then(map_action),
            raw_code: line.action.clone(),
            claimed_time: None,
        });
    }

    let (mut status, sub_status) = map_state(
        resp.state.as_deref().unwrap_or(""),
        resp.state_ex.as_deref(),
    );
    if status == Status::Pending && !events.is_empty() {
        // "No trace" alongside trace lines (seen with State missing or 0): trust the lines.
        // The newest classified line wins; unclassified lines still prove the carrier has it.
        let newest = events
            .iter()
            .filter_map(|e| e.status.map(|s| (e.time, s)))
            .max_by_key(|(t, _)| *t)
            .map(|(_, s)| s);
        status = newest
            .filter(|s| *s != Status::Pending)
            .unwrap_or(Status::InfoReceived);
    }

    Ok(TraceSnapshot {
        status,
        sub_status,
        events,
    })
}

/// Parse a 1002/8001 response body. Pure apart from reading the clock for a daily-limit back-off.
pub fn parse_response(body: &str) -> Result<TraceSnapshot, ProviderError> {
    let resp = decode_response(body)?;
    response_to_snapshot(&resp, Utc::now())
}

// ---------------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------------

/// Kdniao client. Cheap to clone: the reqwest client is shared.
#[derive(Debug, Clone)]
pub struct KdniaoClient {
    cfg: KdniaoConfig,
    http: reqwest::Client,
}

impl KdniaoClient {
    /// `http` is built once per cold start by the caller; `cfg.timeout` applies per request.
    pub fn new(cfg: KdniaoConfig, http: reqwest::Client) -> Self {
        KdniaoClient { cfg, http }
    }

    async fn call(&self, q: &TraceQuery) -> Result<TraceSnapshot, ProviderError> {
        let request_data = build_request_data(q);
        let sign = data_sign(&request_data, self.cfg.app_key.expose());
        // Raw values: the form encoder URL-encodes each exactly once (see PROTOCOLS.md on the
        // official demos' hand-made encoding).
        let form = [
            ("RequestData", request_data.as_str()),
            ("EBusinessID", self.cfg.ebusiness_id.as_str()),
            ("RequestType", self.cfg.request_type.as_str()),
            ("DataSign", sign.as_str()),
            ("DataType", "2"),
        ];
        let body = post_form(&self.http, &self.cfg.endpoint, self.cfg.timeout, &form)
            .await
            .map_err(|f| f.for_provider(PROVIDER))?;
        let decoded = decode_response(&body)?;
        if let Some(got) = decoded.logistic_code.as_deref() {
            // Never write another parcel's trace under this one.
            if !got.eq_ignore_ascii_case(q.id.number.as_str()) {
                return Err(retryable(
                    format!("answer is for waybill {got}, not {}", q.id.number),
                    None,
                ));
            }
        }
        response_to_snapshot(&decoded, Utc::now())
    }
}

impl TraceProvider for KdniaoClient {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    async fn query(&self, q: &TraceQuery) -> Result<TraceSnapshot, ProviderError> {
        logged_trace_query!(PROVIDER, q, self.call(q).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use crate::domain::{PhoneLast4, PhoneNumber, ShipmentId};

    const APP_KEY: &str = "test-appkey-0000";

    fn query(carrier: &str, number: &str, phone: Option<&str>) -> TraceQuery {
        TraceQuery {
            id: ShipmentId::parse(carrier, number).unwrap(),
            phone: phone.map(|p| PhoneLast4::from(&PhoneNumber::parse(p).unwrap())),
            order_ref: Some("TB-ORDER-1".into()),
        }
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn data_sign_matches_the_reference_vector() {
        let rd = r#"{"OrderCode":"","ShipperCode":"YTO","LogisticCode":"12345678"}"#;
        assert_eq!(
            data_sign(rd, "test-appkey-0000"),
            "MDIyOTI2YTQ3MGJiNjg4OGNjODk4NjJlMGE4MDMxMmQ="
        );
    }

    #[test]
    fn request_data_is_the_reference_json_and_signs_to_the_vector() {
        let rd = build_request_data(&query("YTO", "12345678", Some("13812345678")));
        // YTO needs no phone suffix, so the phone stays out.
        assert_eq!(
            rd,
            r#"{"OrderCode":"","ShipperCode":"YTO","LogisticCode":"12345678"}"#
        );
        assert_eq!(
            data_sign(&rd, APP_KEY),
            "MDIyOTI2YTQ3MGJiNjg4OGNjODk4NjJlMGE4MDMxMmQ="
        );
    }

    #[test]
    fn request_data_carries_the_phone_suffix_only_when_the_carrier_needs_it() {
        let sf = build_request_data(&query("SF", "SF1234567890123", Some("13812345678")));
        assert_eq!(
            sf,
            r#"{"OrderCode":"","ShipperCode":"SF","LogisticCode":"SF1234567890123","CustomerName":"5678"}"#
        );
        let sf_no_phone = build_request_data(&query("SF", "SF1234567890123", None));
        assert!(!sf_no_phone.contains("CustomerName"), "{sf_no_phone}");
        let zto = build_request_data(&query("ZTO", "7312345678901", Some("+8613900001111")));
        assert!(zto.ends_with(r#""CustomerName":"1111"}"#), "{zto}");
    }

    #[test]
    fn accept_time_is_china_time() {
        assert_eq!(
            parse_accept_time("2026-11-24 14:00:00"),
            Some(utc("2026-11-24T06:00:00Z"))
        );
        // Crossing midnight backwards into the previous UTC day.
        assert_eq!(
            parse_accept_time("2026-11-24 03:30:15"),
            Some(utc("2026-11-23T19:30:15Z"))
        );
        assert_eq!(
            parse_accept_time("2026/11/24 14:00:00"),
            Some(utc("2026-11-24T06:00:00Z"))
        );
        assert_eq!(
            parse_accept_time("2026-11-24 14:00:00.0"),
            Some(utc("2026-11-24T06:00:00Z"))
        );
        assert_eq!(
            parse_accept_time("2026-11-24 14:05"),
            Some(utc("2026-11-24T06:05:00Z"))
        );
        assert_eq!(parse_accept_time("yesterday"), None);
        assert_eq!(parse_accept_time(""), None);
        assert_eq!(
            format_accept_time(utc("2026-11-23T19:30:15Z")),
            "2026-11-24 03:30:15"
        );
        let t = utc("2026-01-31T16:00:00Z");
        assert_eq!(parse_accept_time(&format_accept_time(t)), Some(t));
    }

    #[test]
    fn quota_resets_at_china_midnight() {
        // 2026-11-24 22:00 China = 14:00Z; midnight China is 2 hours away.
        assert_eq!(
            until_quota_reset(utc("2026-11-24T14:00:00Z")),
            Duration::from_secs(7200)
        );
        // 23:59:30 China: never less than a minute.
        assert_eq!(
            until_quota_reset(utc("2026-11-24T15:59:30Z")),
            Duration::from_secs(60)
        );
        // 00:00:00 China: a full day.
        assert_eq!(
            until_quota_reset(utc("2026-11-24T16:00:00Z")),
            Duration::from_secs(86_400)
        );
    }

    /// Every code of PROTOCOLS.md §1, as State (1002/push) and as StateEx (8001).
    #[test]
    fn every_documented_code_maps() {
        use Status::*;
        let state_table = [
            ("0", Pending),
            ("1", PickedUp),
            ("2", InTransit),
            ("201", ArrivedAtDestinationCity),
            ("3", Delivered),
            ("4", Exception),
        ];
        for (code, want) in state_table {
            assert_eq!(
                map_state(code, None),
                (want, Some(SubStatus::new("kdniao", code))),
                "State {code}"
            );
        }
        let state_ex_table = [
            ("1", PickedUp),
            ("2", InTransit),
            ("201", ArrivedAtDestinationCity),
            ("202", OutForDelivery),
            ("211", AvailableForPickup),
            ("3", Delivered),
            ("311", Delivered),
            ("4", Exception),
            ("401", Exception),
            ("402", Exception),
            ("403", Exception),
            ("404", Returning),
            ("412", AvailableForPickup),
        ];
        for (code, want) in state_ex_table {
            // State deliberately disagrees: StateEx must win when known.
            assert_eq!(
                map_state("2", Some(code)),
                (want, Some(SubStatus::new("kdniao", code))),
                "StateEx {code}"
            );
            assert_eq!(map_action(code), Some(want), "Action {code}");
        }
    }

    /// The signed and return families, code by code, as Kdniao reports them: the family's State
    /// with the finer StateEx, which wins (406 comes with State 4 and is not an exception).
    #[test]
    fn the_signed_and_return_families_map_code_by_code() {
        use Status::*;
        let table = [
            // (State, StateEx, status, terminal)
            ("3", "301", Delivered, true),
            ("3", "302", Delivered, true),
            ("3", "304", Delivered, true),
            ("3", "311", Delivered, true),
            ("4", "405", Exception, false),
            ("4", "406", Returned, true),
            ("4", "407", Returning, false),
            // Without a State, or with one that disagrees, the StateEx decides all the same.
            ("", "301", Delivered, true),
            ("2", "406", Returned, true),
            ("", "407", Returning, false),
            ("4", "414", Exception, false),
            ("4", "423", Exception, false),
        ];
        for (state, ex, want, terminal) in table {
            let (st, sub) = map_state(state, Some(ex));
            assert_eq!(
                (st, sub),
                (want, Some(SubStatus::new("kdniao", ex))),
                "{state}/{ex}"
            );
            assert_eq!(st.is_terminal(), terminal, "{state}/{ex}");
            assert_eq!(map_action(ex), Some(want), "Action {ex}");
        }
    }

    #[test]
    fn unknown_codes_fall_back_safely_keeping_the_raw_code_and_are_counted() {
        use crate::providers::unknown::unknown_codes_seen;
        use Status::*;
        let before = unknown_codes_seen();
        // Unknown StateEx: through the State family.
        assert_eq!(
            map_state("2", Some("299")),
            (InTransit, Some(SubStatus::new("kdniao", "299")))
        );
        assert_eq!(
            map_state("3", Some("399")),
            (Delivered, Some(SubStatus::new("kdniao", "399")))
        );
        // Neither known: in transit, never terminal, never a panic.
        assert_eq!(
            map_state("9", Some("999")),
            (InTransit, Some(SubStatus::new("kdniao", "999")))
        );
        assert_eq!(
            map_state("77", None),
            (InTransit, Some(SubStatus::new("kdniao", "77")))
        );
        assert_eq!(
            map_state("", Some("abc")),
            (Pending, Some(SubStatus::new("kdniao", "abc")))
        );
        assert_eq!(map_action("999"), None);
        // 299, 399, 999 + 9, 77, abc, Action 999: seven sightings at least (other tests may add).
        assert!(unknown_codes_seen() - before >= 7);
        // Blank StateEx is absent, whitespace is trimmed.
        assert_eq!(
            map_state(" 3 ", Some("  ")),
            (Delivered, Some(SubStatus::new("kdniao", "3")))
        );
        assert_eq!(map_state("", None), (Pending, None));
        assert_eq!(map_action(""), None);
    }

    const NORMAL_8001: &str = r#"{
        "EBusinessID": "1237100",
        "OrderCode": "",
        "ShipperCode": "YTO",
        "LogisticCode": "YT7412345678901",
        "Success": true,
        "Reason": null,
        "State": "2",
        "StateEx": "202",
        "Location": "杭州市",
        "Traces": [
            {"AcceptTime": "2026-11-22 18:42:10", "AcceptStation": "【广东省广州市白云区公司】 已揽收", "Location": "广州市", "Action": "1", "Remark": null},
            {"AcceptTime": "2026-11-22 23:05:44", "AcceptStation": "【广州转运中心】 已发出 下一站 【杭州转运中心】", "Location": "广州市", "Action": "2"},
            {"AcceptTime": "2026-11-24 04:10:02", "AcceptStation": "快件已到达【杭州转运中心】", "Location": "杭州市", "Action": "201"},
            {"AcceptTime": "2026-11-24 08:30:00", "AcceptStation": "【浙江省杭州市西湖区文三路公司】 派件员：王师傅 电话：13900001111 正在为您派件", "Location": "杭州市", "Action": "202"}
        ]
    }"#;

    #[test]
    fn golden_normal_8001_answer() {
        let snap = parse_response(NORMAL_8001).unwrap();
        assert_eq!(snap.status, Status::OutForDelivery);
        assert_eq!(snap.sub_status, Some(SubStatus::new("kdniao", "202")));
        assert_eq!(snap.events.len(), 4);
        let first = &snap.events[0];
        assert_eq!(first.time, utc("2026-11-22T10:42:10Z"));
        assert_eq!(first.description, "【广东省广州市白云区公司】 已揽收");
        assert_eq!(first.location.as_deref(), Some("广州市"));
        assert_eq!(first.status, Some(Status::PickedUp));
        assert_eq!(first.raw_code.as_deref(), Some("1"));
        let last = &snap.events[3];
        assert_eq!(last.time, utc("2026-11-24T00:30:00Z"));
        assert_eq!(last.status, Some(Status::OutForDelivery));
        assert!(last.description.contains("正在为您派件"));
    }

    #[test]
    fn golden_1002_answer_without_state_ex_and_with_numeric_state() {
        let body = r#"{"EBusinessID":"1237100","ShipperCode":"ZTO","LogisticCode":"731234567890","Success":true,
            "State":3,"Traces":[
              {"AcceptTime":"2026-11-20 09:00:00","AcceptStation":"【上海市】 快件已揽收","Remark":""},
              {"AcceptTime":"2026-11-21 17:45:00","AcceptStation":"快件已在 【菜鸟驿站】 签收, 签收人: 本人","Remark":null}
            ]}"#;
        let snap = parse_response(body).unwrap();
        assert_eq!(snap.status, Status::Delivered);
        assert_eq!(snap.sub_status, Some(SubStatus::new("kdniao", "3")));
        assert_eq!(snap.events.len(), 2);
        assert!(snap
            .events
            .iter()
            .all(|e| e.status.is_none() && e.location.is_none()));
        assert_eq!(snap.events[1].time, utc("2026-11-21T09:45:00Z"));
    }

    #[test]
    fn golden_empty_traces_and_null_traces() {
        let empty = r#"{"EBusinessID":"1237100","ShipperCode":"YTO","LogisticCode":"YT7412345678901","Success":true,"State":"0","Traces":[]}"#;
        let snap = parse_response(empty).unwrap();
        assert_eq!(snap.status, Status::Pending);
        assert_eq!(snap.sub_status, Some(SubStatus::new("kdniao", "0")));
        assert!(snap.events.is_empty());
        let null = r#"{"Success":true,"State":"1","Traces":null}"#;
        assert_eq!(parse_response(null).unwrap().status, Status::PickedUp);
    }

    #[test]
    fn state_zero_with_lines_trusts_the_lines() {
        let body = r#"{"Success":true,"State":"0","Traces":[
            {"AcceptTime":"2026-11-20 09:00:00","AcceptStation":"商家已下单，等待揽收"},
            {"AcceptTime":"bad time","AcceptStation":"ignored"}]}"#;
        let snap = parse_response(body).unwrap();
        assert_eq!(snap.status, Status::InfoReceived);
        assert_eq!(
            snap.events.len(),
            1,
            "the line without a readable time is skipped"
        );
    }

    #[test]
    fn golden_no_trace_failure_is_not_an_error() {
        let body = r#"{"EBusinessID":"1237100","ShipperCode":"YTO","LogisticCode":"YT0000000000","Success":false,"Reason":"暂无轨迹信息","State":"0","Traces":[]}"#;
        let snap = parse_response(body).unwrap();
        assert_eq!(snap.status, Status::Pending);
        assert!(snap.events.is_empty());
    }

    #[test]
    fn golden_bad_sign_is_permanent() {
        let body = r#"{"EBusinessID":"1237100","Success":false,"Reason":"DataSign签名校验失败","Traces":[]}"#;
        let err = parse_response(body).unwrap_err();
        assert!(!err.is_retryable(), "{err}");
        assert!(err.to_string().contains("签名"), "{err}");
    }

    #[test]
    fn golden_daily_limit_is_retryable_until_the_reset() {
        let body = r#"{"EBusinessID":"1237100","Success":false,"Reason":"用户今日查询次数超过上限","Traces":[]}"#;
        let resp = decode_response(body).unwrap();
        // 20:00 China: four hours to the reset.
        match response_to_snapshot(&resp, utc("2026-11-24T12:00:00Z")) {
            Err(ProviderError::Retryable {
                retry_after,
                reason,
                ..
            }) => {
                assert_eq!(retry_after, Some(Duration::from_secs(4 * 3600)));
                assert!(reason.contains("daily"), "{reason}");
            }
            other => panic!("expected a retryable daily limit, got {other:?}"),
        }
        let by_code = r#"{"Success":false,"Reason":"","ResultCode":405}"#;
        assert!(matches!(
            parse_response(by_code),
            Err(ProviderError::Retryable {
                retry_after: Some(_),
                ..
            })
        ));
    }

    #[test]
    fn failure_reasons_are_classified() {
        use Failure::*;
        for (reason, code, want) in [
            ("暂无轨迹信息", None, NoTrace),
            ("DataSign签名错误", None, Permanent),
            ("用户不存在", None, Permanent),
            ("EBusinessID is invalid", None, Permanent),
            ("没有可用套餐，请开通权限", None, Permanent),
            ("单号长度超过限制", None, Permanent),
            ("", Some("101"), Permanent),
            ("", Some("404"), Permanent),
            ("今日查询超过限额", None, DailyLimit),
            ("", Some("405"), DailyLimit),
            ("系统繁忙，请稍后再试", None, Retryable),
            ("服务器内部错误", None, Retryable),
            ("", None, Retryable),
        ] {
            assert_eq!(
                classify_failure(reason, code),
                want,
                "{reason:?} / {code:?}"
            );
        }
    }

    #[test]
    fn garbage_and_truncated_bodies_are_retryable_with_a_prefix() {
        let html = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>";
        match parse_response(html) {
            Err(ProviderError::Retryable { reason, .. }) => {
                assert!(reason.contains("<html><head>"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        let truncated = &NORMAL_8001[..NORMAL_8001.len() / 2];
        assert!(parse_response(truncated).unwrap_err().is_retryable());
        assert!(parse_response("").unwrap_err().is_retryable());
        assert!(parse_response("[1,2]").unwrap_err().is_retryable());
        // A long body is cut in the reason.
        let long = "x".repeat(10_000);
        let reason = parse_response(&long).unwrap_err().to_string();
        assert!(reason.len() < 400, "{}", reason.len());
    }

    #[test]
    fn wire_types_round_trip_for_the_sandbox() {
        let resp = KdniaoResponse {
            ebusiness_id: Some("1237100".into()),
            shipper_code: Some("SF".into()),
            logistic_code: Some("SF1234567890123".into()),
            success: true,
            state: Some("2".into()),
            state_ex: Some("211".into()),
            location: Some("深圳市".into()),
            traces: vec![KdniaoTrace {
                accept_time: format_accept_time(utc("2026-11-24T06:00:00Z")),
                accept_station: "快件已放入丰巢柜【科技园店】，取件码 123456".into(),
                location: Some("深圳市".into()),
                action: Some("211".into()),
                remark: None,
            }],
            ..KdniaoResponse::default()
        };
        let json = serde_json::to_string(&resp).unwrap();
        for field in [
            "\"EBusinessID\"",
            "\"Success\":true",
            "\"State\":\"2\"",
            "\"StateEx\":\"211\"",
            "\"AcceptTime\":\"2026-11-24 14:00:00\"",
            "\"AcceptStation\"",
            "\"Action\":\"211\"",
        ] {
            assert!(json.contains(field), "{field} missing in {json}");
        }
        assert_eq!(decode_response(&json).unwrap(), resp);
        let snap = parse_response(&json).unwrap();
        assert_eq!(snap.status, Status::AvailableForPickup);
        assert_eq!(snap.events[0].time, utc("2026-11-24T06:00:00Z"));
    }

    // ----- over real HTTP, against a tiny axum server on loopback -----

    mod http {
        use super::*;
        use axum::extract::State;
        use axum::http::StatusCode;
        use axum::routing::post;
        use axum::Router;
        use std::collections::HashMap;
        use std::sync::{Arc, Mutex};

        #[derive(Clone, Default)]
        struct Seen(Arc<Mutex<Vec<String>>>);

        fn pct_decode(s: &str) -> String {
            let bytes = s.as_bytes();
            let mut out = Vec::with_capacity(bytes.len());
            let mut i = 0;
            while i < bytes.len() {
                match bytes[i] {
                    b'+' => out.push(b' '),
                    b'%' if i + 2 < bytes.len() => {
                        let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                        out.push(u8::from_str_radix(hex, 16).unwrap());
                        i += 2;
                    }
                    b => out.push(b),
                }
                i += 1;
            }
            String::from_utf8(out).unwrap()
        }

        fn form_decode(body: &str) -> HashMap<String, String> {
            body.split('&')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (pct_decode(k), pct_decode(v)))
                .collect()
        }

        /// Checks the signature like Kdniao does and answers with `NORMAL_8001` for the number asked.
        async fn kdniao(State(seen): State<Seen>, body: String) -> (StatusCode, String) {
            seen.0.lock().unwrap().push(body.clone());
            let form = form_decode(&body);
            let rd = form.get("RequestData").cloned().unwrap_or_default();
            let sign = form.get("DataSign").cloned().unwrap_or_default();
            if data_sign(&rd, APP_KEY) != sign {
                return (
                    StatusCode::OK,
                    r#"{"EBusinessID":"1237100","Success":false,"Reason":"DataSign签名校验失败"}"#
                        .into(),
                );
            }
            (StatusCode::OK, NORMAL_8001.to_string())
        }

        async fn serve(app: Router) -> String {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
            format!("http://{addr}/Ebusiness/EbusinessOrderHandle.aspx")
        }

        fn client(endpoint: String, app_key: &str, timeout: Duration) -> KdniaoClient {
            KdniaoClient::new(
                KdniaoConfig {
                    endpoint,
                    ebusiness_id: "1237100".into(),
                    app_key: Secret::new(app_key),
                    request_type: "8001".into(),
                    timeout,
                },
                reqwest::Client::new(),
            )
        }

        #[tokio::test]
        async fn sends_a_signed_form_once_encoded_and_parses_the_answer() {
            let seen = Seen::default();
            let endpoint = serve(
                Router::new()
                    .route("/Ebusiness/EbusinessOrderHandle.aspx", post(kdniao))
                    .with_state(seen.clone()),
            )
            .await;
            let c = client(endpoint, APP_KEY, Duration::from_secs(5));
            assert_eq!(c.name(), "kdniao");
            let snap = c
                .query(&query("YTO", "YT7412345678901", None))
                .await
                .unwrap();
            assert_eq!(snap.status, Status::OutForDelivery);
            assert_eq!(snap.events.len(), 4);

            let bodies = seen.0.lock().unwrap().clone();
            assert_eq!(bodies.len(), 1);
            let form = form_decode(&bodies[0]);
            assert_eq!(
                form.get("RequestData").map(String::as_str),
                Some(r#"{"OrderCode":"","ShipperCode":"YTO","LogisticCode":"YT7412345678901"}"#)
            );
            assert_eq!(form.get("EBusinessID").map(String::as_str), Some("1237100"));
            assert_eq!(form.get("RequestType").map(String::as_str), Some("8001"));
            assert_eq!(form.get("DataType").map(String::as_str), Some("2"));
            // Encoded exactly once: '=' padding of the Base64 is %3D on the wire, not %253D.
            assert!(!bodies[0].contains("%25"), "double-encoded: {}", bodies[0]);
            assert!(
                bodies[0].contains("RequestData=%7B%22OrderCode%22"),
                "{}",
                bodies[0]
            );
        }

        #[tokio::test]
        async fn a_wrong_app_key_is_permanent() {
            let endpoint = serve(
                Router::new()
                    .route("/Ebusiness/EbusinessOrderHandle.aspx", post(kdniao))
                    .with_state(Seen::default()),
            )
            .await;
            let c = client(endpoint, "not-the-key", Duration::from_secs(5));
            let err = c
                .query(&query("YTO", "YT7412345678901", None))
                .await
                .unwrap_err();
            assert!(!err.is_retryable(), "{err}");
        }

        #[tokio::test]
        async fn an_answer_for_another_waybill_is_refused() {
            let endpoint = serve(
                Router::new()
                    .route("/Ebusiness/EbusinessOrderHandle.aspx", post(kdniao))
                    .with_state(Seen::default()),
            )
            .await;
            let c = client(endpoint, APP_KEY, Duration::from_secs(5));
            let err = c
                .query(&query("YTO", "YT0000000001", None))
                .await
                .unwrap_err();
            assert!(
                err.is_retryable() && err.to_string().contains("YT7412345678901"),
                "{err}"
            );
        }

        #[tokio::test]
        async fn http_errors_are_classified() {
            let app = Router::new()
                .route(
                    "/500",
                    post(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "oops") }),
                )
                .route(
                    "/429",
                    post(|| async {
                        (
                            StatusCode::TOO_MANY_REQUESTS,
                            [("retry-after", "30")],
                            "slow down",
                        )
                    }),
                )
                .route("/403", post(|| async { (StatusCode::FORBIDDEN, "no") }))
                .route(
                    "/slow",
                    post(|| async {
                        tokio::time::sleep(Duration::from_secs(3)).await;
                        "{}"
                    }),
                );
            let base = serve(app).await;
            let base = base
                .trim_end_matches("/Ebusiness/EbusinessOrderHandle.aspx")
                .to_string();
            let q = query("YTO", "YT7412345678901", None);

            let e500 = client(format!("{base}/500"), APP_KEY, Duration::from_secs(5))
                .query(&q)
                .await
                .unwrap_err();
            assert!(
                e500.is_retryable() && e500.to_string().contains("500"),
                "{e500}"
            );

            match client(format!("{base}/429"), APP_KEY, Duration::from_secs(5))
                .query(&q)
                .await
            {
                Err(ProviderError::Retryable { retry_after, .. }) => {
                    assert_eq!(retry_after, Some(Duration::from_secs(30)))
                }
                other => panic!("{other:?}"),
            }

            let e403 = client(format!("{base}/403"), APP_KEY, Duration::from_secs(5))
                .query(&q)
                .await
                .unwrap_err();
            assert!(!e403.is_retryable(), "{e403}");

            let started = std::time::Instant::now();
            let slow = client(format!("{base}/slow"), APP_KEY, Duration::from_millis(200))
                .query(&q)
                .await
                .unwrap_err();
            assert!(
                slow.is_retryable() && slow.to_string().contains("timed out"),
                "{slow}"
            );
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "timeout not applied"
            );

            // Nothing listening: connection refused is retryable too.
            let dead = {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                let a = l.local_addr().unwrap();
                drop(l);
                format!("http://{a}/")
            };
            let refused = client(dead, APP_KEY, Duration::from_secs(2))
                .query(&q)
                .await
                .unwrap_err();
            assert!(refused.is_retryable(), "{refused}");
        }
    }
}
