//! Kuaidi100 (快递100): carrier codes, status mapping, subscription (`POST /poll`), the pushes
//! it sends to our callback URL, and the real-time query (`POST /poll/query.do`,
//! [`Kuaidi100Client`]). PROTOCOLS.md §2.
//!
//! The wire types ([`Kuaidi100Result`], [`Kuaidi100Line`]) are those of both the push's
//! `lastResult` and the real-time query's answer, and [`result_to_snapshot`] reads either, so the
//! query and the push give the same snapshot for the same data.

use super::kdniao::parse_accept_time;
use super::push::{
    body_prefix, callback_url, form_encode, permanent, retryable, Form, PushBatch, PushError,
    PushUpdate, Subscribed, Subscriber,
};
use super::{ct_eq, ProviderError, TraceProvider, TraceQuery};
use crate::config::{parsed, required, ConfigError, Env, Secret};
use crate::domain::{
    Carrier, ShipmentId, Status, SubStatus, TraceEvent, TraceSnapshot, TrackingNumber,
};
use crate::http::post_form;
use md5::{Digest, Md5};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::time::Duration;

/// Provider name used in sub-statuses (`kuaidi100:501`), errors and logs.
pub const PROVIDER: &str = "kuaidi100";
/// Path of our push receiver, appended to `PUSH_CALLBACK_BASE_URL`.
pub const CALLBACK_PATH: &str = "/push/kuaidi100";
/// After an `abort` push Kuaidi100 accepts a new subscription for the waybill after 30 minutes.
pub const RESUBSCRIBE_AFTER_ABORT: Duration = Duration::from_secs(30 * 60);

/// parcelwatch carrier (Kdniao ShipperCode) ↔ Kuaidi100 `com`, from the carrier registry
/// (`domain::carriers`, the one table); the length is checked at compile time.
pub const CARRIERS: [(&str, &str); 11] = crate::domain::carriers::kuaidi100_pairs();

/// Kuaidi100's `com` for one of our carriers.
pub fn com_of(carrier: &Carrier) -> Option<&'static str> {
    carrier.info().and_then(|info| info.kuaidi100)
}

/// Our carrier for a Kuaidi100 `com` (case-insensitive).
pub fn carrier_of(com: &str) -> Option<Carrier> {
    crate::domain::carriers::by_kuaidi100(com).and_then(|info| Carrier::parse(info.code).ok())
}

// ---------------------------------------------------------------------------------------------
// Config
// ---------------------------------------------------------------------------------------------

/// Kuaidi100 settings.
#[derive(Debug, Clone)]
pub struct Kuaidi100Config {
    /// `KUAIDI100_SUBSCRIBE_ENDPOINT`, default [`Self::DEFAULT_SUBSCRIBE_ENDPOINT`].
    pub subscribe_endpoint: String,
    /// `KUAIDI100_KEY`: the account key, sent inside the subscription's `param`.
    pub key: Secret,
    /// `KUAIDI100_CUSTOMER`: needed by the real-time query only.
    pub customer: Option<String>,
    /// `KUAIDI100_SALT`: chosen by us, sent with each subscription; pushes are signed with it.
    pub salt: Secret,
    /// `PUSH_CALLBACK_BASE_URL` + [`CALLBACK_PATH`].
    pub callback_url: String,
    /// `PROVIDER_TIMEOUT_MS`, default 5 s.
    pub timeout: Duration,
}

impl Kuaidi100Config {
    pub const DEFAULT_SUBSCRIBE_ENDPOINT: &'static str = "https://poll.kuaidi100.com/poll";

    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        Ok(Kuaidi100Config {
            subscribe_endpoint: env
                .get("KUAIDI100_SUBSCRIBE_ENDPOINT")
                .unwrap_or_else(|| Self::DEFAULT_SUBSCRIBE_ENDPOINT.into()),
            key: Secret::new(required(env, "KUAIDI100_KEY")?),
            customer: env.get("KUAIDI100_CUSTOMER"),
            // Without a salt pushes are unsigned and anyone could post trace changes.
            salt: Secret::new(required(env, "KUAIDI100_SALT")?),
            callback_url: callback_url(env, CALLBACK_PATH)?,
            timeout: Duration::from_millis(parsed(env, "PROVIDER_TIMEOUT_MS", 5000u64)?),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Status mapping
// ---------------------------------------------------------------------------------------------

/// The documented codes (PROTOCOLS.md §2): main states and resultv2 sub-states in one table
/// (they do not collide).
fn known_code(code: &str) -> Option<Status> {
    Some(match code {
        // 在途 in transit; 1002 trunk line; 1003 forwarded to a new address.
        "0" | "1002" | "1003" => Status::InTransit,
        "1001" => Status::ArrivedAtDestinationCity,
        // 揽收; 101 order placed and 102 awaiting pickup: the carrier knows, has not scanned.
        "1" | "103" => Status::PickedUp,
        "101" | "102" => Status::InfoReceived,
        // 疑难: a problem.
        "2" => Status::Exception,
        // 签收: 301 recipient, 302 after a delivery exception, 303 proxy, 304 locker/station.
        "3" | "301" | "302" | "303" | "304" => Status::Delivered,
        // 退签: returned and signed for by the sender.
        "4" => Status::Returned,
        // 401 "cancelled" (销单): not a return; the buyer is told to check.
        "401" => Status::Exception,
        "5" => Status::OutForDelivery,
        "501" => Status::AvailableForPickup,
        // 退回: on its way back.
        "6" => Status::Returning,
        // 转投 (handed to another carrier) and customs: still moving.
        "7" | "8" | "10" | "11" | "12" => Status::InTransit,
        // Customs clearance exception.
        "13" => Status::Exception,
        // 拒签 refused: it goes back to the sender (as Kdniao 404).
        "14" => Status::Returning,
        _ => return None,
    })
}

/// The main state a code belongs to: `1001` → `0`, `501` → `5`, `205` → `2`, `11` → `8`.
fn family(code: &str) -> Option<&str> {
    let all_digits = !code.is_empty() && code.bytes().all(|b| b.is_ascii_digit());
    if !all_digits {
        return None;
    }
    match code.len() {
        1 => Some(code),
        2 if code == "14" => Some(code),
        2 if ("10".."14").contains(&code) => Some("8"),
        3 => code.get(..1),
        4 if code.starts_with("10") => Some("0"),
        _ => None,
    }
}

/// Status of one code: exact, else its main state's (an undocumented `2xx` is a problem).
fn classify(code: &str) -> Option<Status> {
    known_code(code).or_else(|| family(code).and_then(known_code))
}

/// Map Kuaidi100's `state` and a finer `statusCode` (resultv2 ≥ 4: usually the newest line's) to
/// the canonical status, keeping the exact code as sub-status `kuaidi100:<code>`.
///
/// `state` leads: `status_code` refines it only when `state` is a main state and the code
/// belongs to it (a `1001` refines `0`, a `501` refines `5`), so a state that moved without a
/// new line (`2` problem after a `1002` line) is not undone by the older line's code, and a fine
/// `state` (`1001`) is never overridden. Undocumented codes
/// resolve through their main state; a code outside every family is taken as InTransit (not
/// terminal, not Exception), kept raw, as for Kdniao.
pub fn map_state(state: &str, status_code: Option<&str>) -> (Status, Option<SubStatus>) {
    let state = state.trim();
    let fine = status_code.map(str::trim).filter(|s| !s.is_empty());
    let code = match (state.is_empty(), fine) {
        (true, None) => return (Status::Pending, None),
        (true, Some(f)) => f,
        (false, Some(f)) if family(f) == Some(state) => f,
        (false, _) => state,
    };
    let sub = Some(SubStatus::new(PROVIDER, code));
    match classify(code) {
        Some(st) => {
            if known_code(code).is_none() {
                // Undocumented, but its family is known: logged once per code, counted.
                super::unknown::note_unknown(PROVIDER, "state", code);
            }
            (st, sub)
        }
        None => {
            // Unknown: tracking continues as in transit, raw code kept, logged once, counted.
            super::unknown::note_unknown(PROVIDER, "state", code);
            (Status::InTransit, sub)
        }
    }
}

/// A line's `status` name (resultv2 = 1 and finer) for when `statusCode` is absent.
fn code_of_name(name: &str) -> Option<&'static str> {
    Some(match name.trim() {
        "在途" => "0",
        "揽收" => "1",
        "疑难" => "2",
        "签收" => "3",
        "退签" => "4",
        "派件" => "5",
        "退回" => "6",
        "转投" => "7",
        "清关" => "8",
        "拒签" => "14",
        "下单" => "101",
        "待揽收" => "102",
        "到达派件城市" => "1001",
        "干线" => "1002",
        "投柜或驿站" => "501",
        _ => return None,
    })
}

/// Kuaidi100's Chinese name of a main state, as it writes `status` on lines.
pub fn state_name(code: &str) -> &'static str {
    match family(code.trim()).unwrap_or("") {
        "0" => "在途",
        "1" => "揽收",
        "2" => "疑难",
        "3" => "签收",
        "4" => "退签",
        "5" => "派件",
        "6" => "退回",
        "7" => "转投",
        "8" => "清关",
        "14" => "拒签",
        _ => "",
    }
}

// ---------------------------------------------------------------------------------------------
// Wire types
// ---------------------------------------------------------------------------------------------

/// A string, number or bool as a trimmed string; `null` and blank as `None`.
fn de_opt_str<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::String(s)) => Some(s.trim().to_owned()).filter(|s| !s.is_empty()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::Bool(b)) => Some(b.to_string()),
        _ => None,
    })
}

fn de_lines<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Kuaidi100Line>, D::Error> {
    Ok(Option::<Vec<Kuaidi100Line>>::deserialize(d)?.unwrap_or_default())
}

/// A push's `param`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Kuaidi100Push {
    /// `polling`, `shutdown` (tracking ended: signed), `abort` (gave up), `updateall`.
    #[serde(
        default,
        deserialize_with = "de_opt_str",
        skip_serializing_if = "Option::is_none"
    )]
    pub status: Option<String>,
    #[serde(
        default,
        deserialize_with = "de_opt_str",
        skip_serializing_if = "Option::is_none"
    )]
    pub billstatus: Option<String>,
    #[serde(
        default,
        deserialize_with = "de_opt_str",
        skip_serializing_if = "Option::is_none"
    )]
    pub message: Option<String>,
    /// `1` when Kuaidi100 corrected the carrier (`comOld` → `comNew`).
    #[serde(
        rename = "autoCheck",
        default,
        deserialize_with = "de_opt_str",
        skip_serializing_if = "Option::is_none"
    )]
    pub auto_check: Option<String>,
    #[serde(
        rename = "comOld",
        default,
        deserialize_with = "de_opt_str",
        skip_serializing_if = "Option::is_none"
    )]
    pub com_old: Option<String>,
    #[serde(
        rename = "comNew",
        default,
        deserialize_with = "de_opt_str",
        skip_serializing_if = "Option::is_none"
    )]
    pub com_new: Option<String>,
    #[serde(
        rename = "lastResult",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub last_result: Option<Kuaidi100Result>,
}

/// A waybill's trace: a push's `lastResult`, or the real-time query's answer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Kuaidi100Result {
    #[serde(
        default,
        deserialize_with = "de_opt_str",
        skip_serializing_if = "Option::is_none"
    )]
    pub message: Option<String>,
    /// Main state (or a finer code).
    #[serde(
        default,
        deserialize_with = "de_opt_str",
        skip_serializing_if = "Option::is_none"
    )]
    pub state: Option<String>,
    /// HTTP-like status of the lookup, `"200"`.
    #[serde(
        default,
        deserialize_with = "de_opt_str",
        skip_serializing_if = "Option::is_none"
    )]
    pub status: Option<String>,
    #[serde(
        default,
        deserialize_with = "de_opt_str",
        skip_serializing_if = "Option::is_none"
    )]
    pub condition: Option<String>,
    /// `"1"` once signed for.
    #[serde(
        default,
        deserialize_with = "de_opt_str",
        skip_serializing_if = "Option::is_none"
    )]
    pub ischeck: Option<String>,
    #[serde(
        default,
        deserialize_with = "de_opt_str",
        skip_serializing_if = "Option::is_none"
    )]
    pub com: Option<String>,
    #[serde(
        default,
        deserialize_with = "de_opt_str",
        skip_serializing_if = "Option::is_none"
    )]
    pub nu: Option<String>,
    /// Full history, newest first.
    #[serde(default, deserialize_with = "de_lines")]
    pub data: Vec<Kuaidi100Line>,
}

/// One trace line.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Kuaidi100Line {
    /// `yyyy-MM-dd HH:mm:ss`, China time.
    #[serde(
        default,
        deserialize_with = "de_opt_str",
        skip_serializing_if = "Option::is_none"
    )]
    pub time: Option<String>,
    /// Same as `time`, formatted; preferred.
    #[serde(
        default,
        deserialize_with = "de_opt_str",
        skip_serializing_if = "Option::is_none"
    )]
    pub ftime: Option<String>,
    #[serde(
        default,
        deserialize_with = "de_opt_str",
        skip_serializing_if = "Option::is_none"
    )]
    pub context: Option<String>,
    #[serde(
        default,
        deserialize_with = "de_opt_str",
        skip_serializing_if = "Option::is_none"
    )]
    pub location: Option<String>,
    /// Chinese state name (`在途`, `签收`…).
    #[serde(
        default,
        deserialize_with = "de_opt_str",
        skip_serializing_if = "Option::is_none"
    )]
    pub status: Option<String>,
    #[serde(
        rename = "statusCode",
        default,
        deserialize_with = "de_opt_str",
        skip_serializing_if = "Option::is_none"
    )]
    pub status_code: Option<String>,
}

/// The snapshot a trace stands for. Lines without a readable `ftime`/`time` are skipped (they
/// cannot be ordered); `data` may come in any order.
pub fn result_to_snapshot(r: &Kuaidi100Result) -> TraceSnapshot {
    let mut events = Vec::with_capacity(r.data.len());
    let mut newest: Option<(chrono::DateTime<chrono::Utc>, Option<&str>)> = None;
    for line in &r.data {
        let time = line
            .ftime
            .as_deref()
            .and_then(parse_accept_time)
            .or_else(|| line.time.as_deref().and_then(parse_accept_time));
        let Some(time) = time else {
            tracing::warn!(
                provider = PROVIDER,
                "trace line with unreadable time skipped"
            );
            continue;
        };
        let code = line
            .status_code
            .as_deref()
            .or_else(|| line.status.as_deref().and_then(code_of_name));
        if newest.is_none_or(|(t, _)| time > t) {
            newest = Some((time, code));
        }
        events.push(TraceEvent {
            time,
            description: line.context.clone().unwrap_or_default(),
            location: line.location.clone(),
            status: code.and_then(classify),
            raw_code: line.status_code.clone().or_else(|| line.status.clone()),
            claimed_time: None,
        });
    }
    let (mut status, sub_status) = map_state(
        r.state.as_deref().unwrap_or(""),
        newest.and_then(|(_, c)| c),
    );
    if status == Status::Pending && !events.is_empty() {
        status = Status::InfoReceived;
    }
    TraceSnapshot {
        status,
        sub_status,
        events,
    }
}

// ---------------------------------------------------------------------------------------------
// Subscription
// ---------------------------------------------------------------------------------------------

fn json_str(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

/// The subscription's `param`:
/// `{"company":"yuantong","number":"…","key":"…","parameters":{"callbackurl":"…","salt":"…","resultv2":"4"}}`
/// plus `"phone":"<last4>"` in `parameters` for carriers that demand it. Refused (Permanent) for
/// a carrier Kuaidi100 has no code for here. The result holds the key: never log it.
pub fn subscribe_param(
    q: &TraceQuery,
    key: &str,
    callback_url: &str,
    salt: &str,
) -> Result<String, ProviderError> {
    let com = com_of(&q.id.carrier).ok_or_else(|| {
        permanent(
            PROVIDER,
            format!("carrier {} has no Kuaidi100 code", q.id.carrier),
        )
    })?;
    let mut s = format!(
        "{{\"company\":{},\"number\":{},\"key\":{},\"parameters\":{{\"callbackurl\":{},\"salt\":{},\"resultv2\":\"4\"",
        json_str(com),
        json_str(q.id.number.as_str()),
        json_str(key),
        json_str(callback_url),
        json_str(salt)
    );
    if let Some(phone) = q
        .phone
        .as_ref()
        .filter(|_| q.id.carrier.needs_phone_suffix())
    {
        s.push_str(",\"phone\":");
        s.push_str(&json_str(phone.last4()));
    }
    s.push_str("}}");
    Ok(s)
}

/// Read the answer to a subscription: `{"result":…,"returnCode":"200","message":"…"}`.
///
/// 200 → subscribed; 501 (already tracked, or subscribed too often this month) → already
/// subscribed, Ok; 500 → Retryable; 600 (bad key), 601 (key expired), 700 (bad data or
/// callback), 701 (carrier refused), 702 (carrier not recognised) → Permanent. Anything else,
/// and a body that is not JSON, is Retryable.
pub fn parse_subscribe_response(body: &str) -> Result<Subscribed, ProviderError> {
    let v: Value = serde_json::from_str(body).map_err(|e| {
        retryable(
            PROVIDER,
            format!("unreadable response ({e}): {}", body_prefix(body, 80)),
        )
    })?;
    let code = match v.get("returnCode") {
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    let message = v.get("message").and_then(Value::as_str).unwrap_or("");
    let ok = |already| Subscribed {
        provider: PROVIDER,
        already_subscribed: already,
        estimated_delivery: None,
    };
    match code.as_str() {
        "200" => Ok(ok(false)),
        "501" => Ok(ok(true)),
        "600" | "601" | "700" | "701" | "702" => Err(permanent(
            PROVIDER,
            format!(
                "subscription refused ({code}): {}",
                body_prefix(message, 80)
            ),
        )),
        _ if code.is_empty() && v.get("result") == Some(&Value::Bool(true)) => Ok(ok(false)),
        _ => Err(retryable(
            PROVIDER,
            format!("subscription failed ({code}): {}", body_prefix(message, 80)),
        )),
    }
}

/// Kuaidi100 subscriber. Cheap to clone: the reqwest client is shared.
#[derive(Debug, Clone)]
pub struct Kuaidi100Subscriber {
    cfg: Kuaidi100Config,
    http: reqwest::Client,
}

impl Kuaidi100Subscriber {
    pub fn new(cfg: Kuaidi100Config, http: reqwest::Client) -> Self {
        Kuaidi100Subscriber { cfg, http }
    }

    pub fn callback_url(&self) -> &str {
        &self.cfg.callback_url
    }

    async fn call(&self, q: &TraceQuery) -> Result<Subscribed, ProviderError> {
        let param = subscribe_param(
            q,
            self.cfg.key.expose(),
            &self.cfg.callback_url,
            self.cfg.salt.expose(),
        )?;
        let body = post_form(
            &self.http,
            &self.cfg.subscribe_endpoint,
            self.cfg.timeout,
            &[("schema", "json"), ("param", param.as_str())],
        )
        .await
        .map_err(|f| f.for_provider(PROVIDER))?;
        parse_subscribe_response(&body)
    }
}

impl Subscriber for Kuaidi100Subscriber {
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

/// `sign = UPPER(hex(MD5(param + salt)))`.
pub fn push_sign(param: &str, salt: &str) -> String {
    let mut h = Md5::new();
    h.update(param.as_bytes());
    h.update(salt.as_bytes());
    super::hex_lower(&h.finalize()).to_ascii_uppercase()
}

/// The reply Kuaidi100 requires; anything else makes it retry (3 times, ~35 minutes apart).
pub fn push_ack() -> &'static str {
    r#"{"result":true,"returnCode":"200","message":"成功"}"#
}

/// A reply asking Kuaidi100 to retry later (our store failed).
pub fn push_nack(reason: &str) -> String {
    format!(
        "{{\"result\":false,\"returnCode\":\"500\",\"message\":{}}}",
        json_str(reason)
    )
}

/// A push's `param` JSON text.
pub fn push_param(push: &Kuaidi100Push) -> String {
    // Options of strings and lists of them always serialize; the fallback is never taken.
    serde_json::to_string(push).unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot serialize a Kuaidi100 push");
        String::from("{}")
    })
}

/// The form body of a push, as Kuaidi100 POSTs it: `param` and `sign`, URL-encoded once.
pub fn build_push_form(param_json: &str, salt: &str) -> String {
    form_encode(&[
        ("param", param_json),
        ("sign", push_sign(param_json, salt).as_str()),
    ])
}

/// Verify and parse a push body (form fields `param`, `sign`).
///
/// The signature is compared case-insensitively, in constant time, **before** `param` is read.
/// `status` is exposed in [`PushBatch::provider_status`] (with `message`); `abort` also sets
/// [`PushBatch::resubscribe_after`]. An update is returned only when `lastResult` carries trace
/// lines (an `abort` usually carries none). A carrier we cannot map or an invalid number is a
/// rejected item, not a refused push.
pub fn verify_push(form_body: &str, salt: &str) -> Result<PushBatch, PushError> {
    let form = Form::parse(form_body)?;
    let param = form.required("param")?;
    let sign = form.required("sign")?;
    if !ct_eq(&push_sign(param, salt), &sign.trim().to_ascii_uppercase()) {
        return Err(PushError::BadSignature);
    }
    let push: Kuaidi100Push = serde_json::from_str(param)
        .map_err(|e| PushError::Malformed(format!("param is not the push JSON: {e}")))?;

    let mut batch = PushBatch {
        provider_status: push.status.clone(),
        message: push.message.clone(),
        ..PushBatch::default()
    };
    match push.status.as_deref() {
        Some("polling" | "shutdown" | "updateall") => {}
        Some("abort") => batch.resubscribe_after = Some(RESUBSCRIBE_AFTER_ABORT),
        other => {
            tracing::warn!(provider = PROVIDER, status = ?other, "unexpected Kuaidi100 push status")
        }
    }
    let Some(result) = push.last_result.as_ref().filter(|r| !r.data.is_empty()) else {
        return Ok(batch);
    };
    let com = result.com.as_deref().or(push.com_new.as_deref());
    let key = super::push::raw_key(com, result.nu.as_deref());
    let id = match (
        com.and_then(carrier_of),
        TrackingNumber::parse(result.nu.as_deref().unwrap_or("")),
    ) {
        (None, _) => Err(PushError::UnknownCarrier(format!(
            "Kuaidi100 code {}",
            body_prefix(com.unwrap_or(""), 32)
        ))),
        (Some(_), Err(e)) => Err(PushError::Malformed(e.to_string())),
        (Some(c), Ok(n)) => Ok(ShipmentId::new(c, n)),
    };
    match id {
        Ok(id) => batch.updates.push(PushUpdate {
            id,
            snapshot: result_to_snapshot(result),
        }),
        Err(e) => {
            tracing::warn!(provider = PROVIDER, waybill = %key, error = %e, "push item rejected");
            batch.rejected.push((key, e));
        }
    }
    Ok(batch)
}

// ---------------------------------------------------------------------------------------------
// Real-time query (`POST /poll/query.do`)
// ---------------------------------------------------------------------------------------------

/// Kuaidi100 locks a waybill that is queried more than once in this window (PROTOCOLS.md §2).
pub const QUERY_MIN_INTERVAL: Duration = Duration::from_secs(30 * 60);

/// Settings of the real-time query. Separate from [`Kuaidi100Config`]: the query needs the
/// `customer` id and no push settings (salt, callback URL).
#[derive(Debug, Clone)]
pub struct Kuaidi100QueryConfig {
    /// `KUAIDI100_QUERY_ENDPOINT`, default [`Self::DEFAULT_ENDPOINT`].
    pub endpoint: String,
    /// `KUAIDI100_CUSTOMER`: the account's customer id, sent in clear and signed over.
    pub customer: String,
    /// `KUAIDI100_KEY`: the account key; only its signature travels.
    pub key: Secret,
    /// `PROVIDER_TIMEOUT_MS`, default 5 s.
    pub timeout: Duration,
}

impl Kuaidi100QueryConfig {
    pub const DEFAULT_ENDPOINT: &'static str = "https://poll.kuaidi100.com/poll/query.do";

    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        Ok(Kuaidi100QueryConfig {
            endpoint: env
                .get("KUAIDI100_QUERY_ENDPOINT")
                .unwrap_or_else(|| Self::DEFAULT_ENDPOINT.into()),
            customer: required(env, "KUAIDI100_CUSTOMER")?,
            key: Secret::new(required(env, "KUAIDI100_KEY")?),
            timeout: Duration::from_millis(parsed(env, "PROVIDER_TIMEOUT_MS", 5000u64)?),
        })
    }
}

/// `sign = UPPER(hex(MD5(param + key + customer)))`, over the exact `param` text sent.
pub fn query_sign(param: &str, key: &str, customer: &str) -> String {
    let mut h = Md5::new();
    h.update(param.as_bytes());
    h.update(key.as_bytes());
    h.update(customer.as_bytes());
    super::hex_lower(&h.finalize()).to_ascii_uppercase()
}

/// The query's compact `param` JSON, fields in this order:
/// `{"com":"yuantong","num":"…","phone":"5678","resultv2":"4","show":"0","order":"desc"}`.
///
/// `phone` (the recipient phone's last four digits) is sent only for carriers that demand it
/// (SF, SFKY, ZTO) and only when we know it. Refused (Permanent, no request made) for a carrier
/// Kuaidi100 has no code for here, and for SF without a phone: Kuaidi100 would answer 408 every
/// time and, worse, the attempt would count against the waybill's 30-minute window. ZTO without a
/// phone is still sent (Kuaidi100 decides; a 408 comes back Permanent).
pub fn build_query_param(q: &TraceQuery) -> Result<String, ProviderError> {
    let com = com_of(&q.id.carrier).ok_or_else(|| {
        permanent(
            PROVIDER,
            format!("carrier {} has no Kuaidi100 code", q.id.carrier),
        )
    })?;
    let phone = q
        .phone
        .as_ref()
        .filter(|_| q.id.carrier.needs_phone_suffix());
    if phone.is_none() && q.id.carrier.as_str() == "SF" {
        return Err(permanent(PROVIDER, "SF needs the recipient's phone"));
    }
    let mut s = format!(
        "{{\"com\":{},\"num\":{}",
        json_str(com),
        json_str(q.id.number.as_str())
    );
    if let Some(phone) = phone {
        s.push_str(",\"phone\":");
        s.push_str(&json_str(phone.last4()));
    }
    s.push_str(",\"resultv2\":\"4\",\"show\":\"0\",\"order\":\"desc\"}");
    Ok(s)
}

/// A Retryable error with a wait.
fn retryable_after(reason: String, after: Duration) -> ProviderError {
    ProviderError::Retryable {
        provider: PROVIDER,
        reason,
        retry_after: Some(after),
    }
}

/// Whether an error message says the waybill was queried too often (locked for a while).
fn says_too_frequent(message: &str) -> bool {
    let lower = message.to_lowercase();
    ["频繁", "锁定", "too often", "too frequent", "locked"]
        .iter()
        .any(|w| lower.contains(w))
}

/// Whether a message says the server failed or is busy, rather than "no result".
fn says_server_trouble(message: &str) -> bool {
    let lower = message.to_lowercase();
    ["服务器", "繁忙", "server error", "busy"]
        .iter()
        .any(|w| lower.contains(w))
}

/// A query's answer, before it is turned into a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
enum QueryAnswer {
    /// `status:"200"` with trace lines.
    Trace(Kuaidi100Result),
    /// returnCode 500 "查询无结果", or a success with no lines: nothing to see yet.
    NoResult,
}

/// Classify an error answer `{"result":false,"returnCode":"…","message":"…"}`.
///
/// | returnCode | meaning | outcome |
/// |---|---|---|
/// | 500 | no result (查询无结果) | not an error: [`QueryAnswer::NoResult`] |
/// | 500 saying "too often" / "server error" | ambiguous wording | Retryable |
/// | 501, 502 | server error, busy | Retryable (30 min when the message says "too often") |
/// | 400 | incomplete data or unknown carrier | Permanent |
/// | 408 | phone check failed | Permanent |
/// | 503 | signature check failed | Permanent |
/// | 601 | key expired or no balance | Permanent |
/// | anything else | never seen | Retryable: a persistent one reaches the DLQ with its reason |
fn classify_query_error(code: &str, message: &str) -> Result<QueryAnswer, ProviderError> {
    let msg = body_prefix(message, 80);
    if says_too_frequent(message) {
        return Err(retryable_after(
            format!("waybill queried too often ({code}): {msg}"),
            QUERY_MIN_INTERVAL,
        ));
    }
    match code {
        "500" if says_server_trouble(message) => {
            Err(retryable(PROVIDER, format!("server error ({code}): {msg}")))
        }
        "500" => Ok(QueryAnswer::NoResult),
        "501" => Err(retryable(PROVIDER, format!("server error (501): {msg}"))),
        "502" => Err(retryable(PROVIDER, format!("server busy (502): {msg}"))),
        "400" => Err(permanent(
            PROVIDER,
            format!("incomplete data or unknown carrier (400): {msg}"),
        )),
        "408" => Err(permanent(
            PROVIDER,
            format!("recipient phone check failed (408): {msg}"),
        )),
        "503" => Err(permanent(
            PROVIDER,
            format!(
                "signature check failed (503), check KUAIDI100_KEY and KUAIDI100_CUSTOMER: {msg}"
            ),
        )),
        "601" => Err(permanent(
            PROVIDER,
            format!("key expired or no balance left (601): {msg}"),
        )),
        _ => Err(retryable(PROVIDER, format!("query failed ({code}): {msg}"))),
    }
}

/// Read a query's body into an answer or the error it stands for.
///
/// A body that is not JSON, is cut short, or is JSON of neither documented shape is Retryable,
/// by the rule of [`super::kdniao::decode_response`]: gateways do return HTML pages and truncated
/// bodies, and a persistent one reaches the DLQ through the queue's maxReceiveCount instead of
/// being dropped on the first try.
fn decode_query_answer(body: &str) -> Result<QueryAnswer, ProviderError> {
    let unreadable = |why: String| {
        retryable(
            PROVIDER,
            format!("unreadable response ({why}): {}", body_prefix(body, 80)),
        )
    };
    let v: Value = serde_json::from_str(body).map_err(|e| unreadable(e.to_string()))?;
    let Some(obj) = v.as_object() else {
        return Err(unreadable("not a JSON object".into()));
    };
    let text = |name: &str| match obj.get(name) {
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    let status = text("status");
    if status == "200" {
        let r: Kuaidi100Result =
            serde_json::from_value(v.clone()).map_err(|e| unreadable(e.to_string()))?;
        if r.data.is_empty() {
            return Ok(QueryAnswer::NoResult);
        }
        return Ok(QueryAnswer::Trace(r));
    }
    let code = text("returnCode");
    if obj.get("result") == Some(&Value::Bool(false)) || !code.is_empty() {
        return classify_query_error(&code, &text("message"));
    }
    Err(unreadable(format!("status {status:?} without returnCode")))
}

/// The snapshot for a "no result yet" answer: Pending, no sub-status, no events (as Kdniao's
/// 暂无轨迹信息). the decision (domain::check) refuses it as a regression when we already know better.
fn no_result_snapshot() -> TraceSnapshot {
    TraceSnapshot {
        status: Status::Pending,
        sub_status: None,
        events: Vec::new(),
    }
}

/// Decode a real-time query's body: the trace as a snapshot, "no result" as a Pending snapshot
/// without events, and every error answer classified (see `classify_query_error` in the
/// source: 500 no result → Ok; 501/502 → Retryable; 400/408/503/601 → Permanent; unreadable
/// body → Retryable).
pub fn decode_query_response(body: &str) -> Result<TraceSnapshot, ProviderError> {
    Ok(match decode_query_answer(body)? {
        QueryAnswer::Trace(r) => result_to_snapshot(&r),
        QueryAnswer::NoResult => no_result_snapshot(),
    })
}

/// Kuaidi100 real-time query client. Cheap to clone: the reqwest client is shared.
#[derive(Debug, Clone)]
pub struct Kuaidi100Client {
    cfg: Kuaidi100QueryConfig,
    http: reqwest::Client,
}

impl Kuaidi100Client {
    /// `http` is built once per cold start by the caller; `cfg.timeout` applies per request.
    pub fn new(cfg: Kuaidi100QueryConfig, http: reqwest::Client) -> Self {
        Kuaidi100Client { cfg, http }
    }

    async fn call(&self, q: &TraceQuery) -> Result<TraceSnapshot, ProviderError> {
        let param = build_query_param(q)?;
        let sign = query_sign(&param, self.cfg.key.expose(), &self.cfg.customer);
        tracing::debug!(
            provider = PROVIDER,
            shipment = %q.id,
            com = com_of(&q.id.carrier).unwrap_or(""),
            with_phone = param.contains("\"phone\""),
            "querying"
        );
        // Raw values: the form encoder URL-encodes each exactly once.
        let form = [
            ("customer", self.cfg.customer.as_str()),
            ("sign", sign.as_str()),
            ("param", param.as_str()),
        ];
        let body = post_form(&self.http, &self.cfg.endpoint, self.cfg.timeout, &form)
            .await
            .map_err(|f| f.for_provider(PROVIDER))?;
        match decode_query_answer(&body)? {
            QueryAnswer::NoResult => Ok(no_result_snapshot()),
            QueryAnswer::Trace(r) => {
                if let Some(got) = r.nu.as_deref() {
                    // Never write another parcel's trace under this one.
                    if !got.eq_ignore_ascii_case(q.id.number.as_str()) {
                        return Err(retryable(
                            PROVIDER,
                            format!(
                                "answer is for waybill {}, not {}",
                                body_prefix(got, 32),
                                q.id.number
                            ),
                        ));
                    }
                }
                Ok(result_to_snapshot(&r))
            }
        }
    }
}

impl TraceProvider for Kuaidi100Client {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    async fn query(&self, q: &TraceQuery) -> Result<TraceSnapshot, ProviderError> {
        let result = self.call(q).await;
        match &result {
            Ok(s) => {
                tracing::debug!(provider = PROVIDER, shipment = %q.id, status = %s.status, sub_status = ?s.sub_status.as_ref().map(ToString::to_string), events = s.events.len(), "trace fetched")
            }
            Err(e) => {
                tracing::debug!(provider = PROVIDER, shipment = %q.id, retryable = e.is_retryable(), error = %e, "trace query failed")
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{PhoneLast4, PhoneNumber};
    use chrono::{DateTime, Utc};
    use std::collections::HashMap;

    const SALT: &str = "SALT123";

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn query(carrier: &str, number: &str, phone: Option<&str>) -> TraceQuery {
        TraceQuery {
            id: ShipmentId::parse(carrier, number).unwrap(),
            phone: phone.map(|p| PhoneLast4::from(&PhoneNumber::parse(p).unwrap())),
            order_ref: None,
        }
    }

    /// A push as Kuaidi100 documents it: lines newest first.
    const POLLING: &str = r#"{"status":"polling","billstatus":"got","message":"","autoCheck":"0","comOld":"","comNew":"","lastResult":{"message":"ok","state":"0","status":"200","condition":"F00","ischeck":"0","com":"yuantong","nu":"YT7412345678901","data":[
        {"context":"快件已到达【深圳转运中心】","time":"2026-11-24 07:30:00","ftime":"2026-11-24 07:30:00","status":"到达派件城市","statusCode":"1001","areaName":"广东,深圳市","location":"深圳市"},
        {"context":"快件已发往 深圳转运中心","time":"2026-11-23 02:15:40","ftime":"2026-11-23 02:15:40","status":"干线","statusCode":"1002","location":"杭州市"},
        {"context":"圆通速递 杭州滨江公司 已揽收","time":"2026-11-22 18:02:11","ftime":"2026-11-22 18:02:11","status":"揽收","statusCode":"103","location":"杭州市"}]}}"#;

    #[test]
    fn push_sign_matches_the_reference_vector() {
        assert_eq!(
            push_sign(r#"{"com":"yuantong","num":"12345678"}"#, SALT),
            "0BDDDF4AC8368D5145F2E3EBFBA0D586"
        );
    }

    #[test]
    fn carriers_map_both_ways() {
        for (ours, com) in CARRIERS {
            let c = Carrier::parse(ours).unwrap();
            assert_eq!(com_of(&c), Some(com), "{ours}");
            assert_eq!(carrier_of(com), Some(c.clone()), "{com}");
            assert_eq!(carrier_of(&com.to_uppercase()), Some(c), "{com}");
        }
        assert_eq!(CARRIERS.len(), 11);
        assert_eq!(carrier_of("shunfengkuaiyun"), None);
        assert_eq!(com_of(&Carrier::parse("SFKY").unwrap()), None);
    }

    #[test]
    fn every_documented_code_maps() {
        use Status::*;
        for (code, want) in [
            ("0", InTransit),
            ("1", PickedUp),
            ("101", InfoReceived),
            ("102", InfoReceived),
            ("103", PickedUp),
            ("1001", ArrivedAtDestinationCity),
            ("1002", InTransit),
            ("1003", InTransit),
            ("2", Exception),
            ("3", Delivered),
            ("301", Delivered),
            ("302", Delivered),
            ("303", Delivered),
            ("304", Delivered),
            ("4", Returned),
            ("401", Exception),
            ("5", OutForDelivery),
            ("501", AvailableForPickup),
            ("6", Returning),
            ("7", InTransit),
            ("8", InTransit),
            ("10", InTransit),
            ("11", InTransit),
            ("12", InTransit),
            ("13", Exception),
            ("14", Returning),
            // Undocumented codes resolve through their family.
            ("205", Exception),
            ("1009", InTransit),
            ("599", OutForDelivery),
            // Outside every family: in transit, kept raw.
            ("99", InTransit),
            ("x", InTransit),
        ] {
            assert_eq!(
                map_state(code, None),
                (want, Some(SubStatus::new("kuaidi100", code))),
                "{code}"
            );
        }
        assert_eq!(map_state("", None), (Pending, None));
        assert_eq!(map_state(" ", Some(" ")), (Pending, None));
    }

    #[test]
    fn a_finer_code_refines_only_its_own_state() {
        use Status::*;
        let sub = |c: &str| Some(SubStatus::new("kuaidi100", c));
        assert_eq!(
            map_state("0", Some("1001")),
            (ArrivedAtDestinationCity, sub("1001"))
        );
        assert_eq!(
            map_state("5", Some("501")),
            (AvailableForPickup, sub("501"))
        );
        assert_eq!(map_state("3", Some("304")), (Delivered, sub("304")));
        assert_eq!(map_state("8", Some("13")), (Exception, sub("13")));
        // The state moved on without a line: the older line's code does not win.
        assert_eq!(map_state("2", Some("1002")), (Exception, sub("2")));
        assert_eq!(map_state("3", Some("5")), (Delivered, sub("3")));
        assert_eq!(map_state("", Some("501")), (AvailableForPickup, sub("501")));
        assert_eq!(
            map_state("1001", Some("1002")),
            (ArrivedAtDestinationCity, sub("1001"))
        );
        assert_eq!(map_state("14", Some("6")), (Returning, sub("14")));
        assert_eq!(state_name("1001"), "在途");
        assert_eq!(state_name("14"), "拒签");
    }

    #[test]
    fn subscribe_param_is_the_documented_json() {
        let cb = "https://api.example.com/prod/push/kuaidi100";
        assert_eq!(
            subscribe_param(
                &query("YTO", "YT7412345678901", Some("13812345678")),
                "KEY",
                cb,
                SALT
            )
            .unwrap(),
            r#"{"company":"yuantong","number":"YT7412345678901","key":"KEY","parameters":{"callbackurl":"https://api.example.com/prod/push/kuaidi100","salt":"SALT123","resultv2":"4"}}"#
        );
        assert_eq!(
            subscribe_param(
                &query("SF", "SF1234567890123", Some("13812345678")),
                "KEY",
                cb,
                SALT
            )
            .unwrap(),
            r#"{"company":"shunfeng","number":"SF1234567890123","key":"KEY","parameters":{"callbackurl":"https://api.example.com/prod/push/kuaidi100","salt":"SALT123","resultv2":"4","phone":"5678"}}"#
        );
        let e =
            subscribe_param(&query("SFKY", "SF1234567890123", None), "KEY", cb, SALT).unwrap_err();
        assert!(!e.is_retryable(), "{e}");
    }

    #[test]
    fn subscribe_answers_are_classified() {
        let ok =
            parse_subscribe_response(r#"{"result":true,"returnCode":"200","message":"提交成功"}"#)
                .unwrap();
        assert!(!ok.already_subscribed);
        assert_eq!(ok.provider, "kuaidi100");
        let dup = parse_subscribe_response(
            r#"{"result":false,"returnCode":"501","message":"POLL:重复订阅"}"#,
        )
        .unwrap();
        assert!(dup.already_subscribed);
        assert!(parse_subscribe_response(
            r#"{"result":false,"returnCode":500,"message":"服务器错误"}"#
        )
        .unwrap_err()
        .is_retryable());
        for code in ["600", "601", "700", "701", "702"] {
            let body = format!(r#"{{"result":false,"returnCode":"{code}","message":"x"}}"#);
            let e = parse_subscribe_response(&body).unwrap_err();
            assert!(!e.is_retryable() && e.to_string().contains(code), "{e}");
        }
        assert!(
            parse_subscribe_response(r#"{"result":false,"returnCode":"555"}"#)
                .unwrap_err()
                .is_retryable()
        );
        assert!(parse_subscribe_response("<html>")
            .unwrap_err()
            .is_retryable());
    }

    #[test]
    fn a_polling_push_becomes_one_update() {
        let body = build_push_form(POLLING, SALT);
        let batch = verify_push(&body, SALT).unwrap();
        assert_eq!(batch.provider_status.as_deref(), Some("polling"));
        assert_eq!(batch.resubscribe_after, None);
        assert!(batch.rejected.is_empty());
        let [u] = batch.updates.as_slice() else {
            panic!("{batch:?}")
        };
        assert_eq!(u.id, ShipmentId::parse("YTO", "YT7412345678901").unwrap());
        let s = &u.snapshot;
        assert_eq!(s.status, Status::ArrivedAtDestinationCity);
        assert_eq!(s.sub_status, Some(SubStatus::new("kuaidi100", "1001")));
        assert_eq!(s.events.len(), 3);
        assert_eq!(s.events[0].time, utc("2026-11-23T23:30:00Z"));
        assert_eq!(s.events[0].location.as_deref(), Some("深圳市"));
        assert_eq!(s.events[2].status, Some(Status::PickedUp));
        assert_eq!(s.events[2].raw_code.as_deref(), Some("103"));
        assert_eq!(s.events[1].description, "快件已发往 深圳转运中心");
    }

    #[test]
    fn the_signature_is_case_insensitive_and_checked_first() {
        let lower = form_encode(&[
            ("param", POLLING),
            ("sign", &push_sign(POLLING, SALT).to_lowercase()),
        ]);
        assert!(verify_push(&lower, SALT).is_ok());
        assert_eq!(
            verify_push(&build_push_form(POLLING, "other"), SALT),
            Err(PushError::BadSignature)
        );
        assert_eq!(
            verify_push(&build_push_form("{oops", "other"), SALT),
            Err(PushError::BadSignature)
        );
        assert!(matches!(
            verify_push(&build_push_form("{oops", SALT), SALT),
            Err(PushError::Malformed(_))
        ));
        let tampered = form_encode(&[
            (
                "param",
                &POLLING.replace("\"state\":\"0\"", "\"state\":\"3\""),
            ),
            ("sign", &push_sign(POLLING, SALT)),
        ]);
        assert_eq!(verify_push(&tampered, SALT), Err(PushError::BadSignature));
        assert_eq!(
            verify_push("param=%7B%7D", SALT),
            Err(PushError::Malformed("missing form field sign".into()))
        );
        assert_eq!(
            verify_push("sign=AB", SALT),
            Err(PushError::Malformed("missing form field param".into()))
        );
    }

    #[test]
    fn abort_and_shutdown_are_exposed() {
        let abort = r#"{"status":"abort","message":"3天查询无记录","lastResult":{"message":"快递公司参数异常：单号不存在或者已经过期","state":"0","status":"201","ischeck":"0","com":"yuantong","nu":"YT7412345678901","data":[]}}"#;
        let batch = verify_push(&build_push_form(abort, SALT), SALT).unwrap();
        assert!(batch.updates.is_empty() && batch.rejected.is_empty());
        assert_eq!(batch.provider_status.as_deref(), Some("abort"));
        assert_eq!(batch.message.as_deref(), Some("3天查询无记录"));
        assert_eq!(batch.resubscribe_after, Some(Duration::from_secs(1800)));

        let shutdown = POLLING
            .replace("\"polling\"", "\"shutdown\"")
            .replace("\"state\":\"0\"", "\"state\":\"3\"")
            .replace(
                "\"data\":[",
                r#""data":[{"context":"已签收，签收人：本人","ftime":"2026-11-24 15:00:00","status":"签收","statusCode":"301"},"#,
            );
        let batch = verify_push(&build_push_form(&shutdown, SALT), SALT).unwrap();
        assert_eq!(batch.provider_status.as_deref(), Some("shutdown"));
        assert_eq!(batch.updates[0].snapshot.status, Status::Delivered);
        assert_eq!(
            batch.updates[0].snapshot.sub_status,
            Some(SubStatus::new("kuaidi100", "301"))
        );
    }

    #[test]
    fn bad_items_are_rejected_not_the_push() {
        let unknown = POLLING.replace("\"yuantong\"", "\"zhaijisong\"");
        let batch = verify_push(&build_push_form(&unknown, SALT), SALT).unwrap();
        assert!(batch.updates.is_empty());
        assert_eq!(batch.rejected.len(), 1);
        assert_eq!(batch.rejected[0].0, "zhaijisong#YT7412345678901");
        assert!(matches!(batch.rejected[0].1, PushError::UnknownCarrier(_)));

        let bad_nu = POLLING.replace("YT7412345678901", "YT;1");
        let batch = verify_push(&build_push_form(&bad_nu, SALT), SALT).unwrap();
        assert!(matches!(batch.rejected[0].1, PushError::Malformed(_)));
    }

    #[test]
    fn lines_without_codes_use_names_and_unreadable_times_are_skipped() {
        let r: Kuaidi100Result = serde_json::from_str(
            r#"{"state":0,"com":"zhongtong","nu":"731234567890123","data":[
                {"context":"派件中","time":"2026-11-24 09:00:00","status":"派件"},
                {"context":"??","time":"someday"},
                {"context":"揽收","ftime":"2026-11-23 09:00","status":"揽收"}]}"#,
        )
        .unwrap();
        let s = result_to_snapshot(&r);
        assert_eq!(s.events.len(), 2);
        assert_eq!(s.events[0].status, Some(Status::OutForDelivery));
        assert_eq!(s.events[0].raw_code.as_deref(), Some("派件"));
        // The newest line's name-derived code (5) is not of state 0's family: state 0 stands.
        assert_eq!(s.status, Status::InTransit);
        assert_eq!(s.events[1].time, utc("2026-11-23T01:00:00Z"));
    }

    #[test]
    fn ack_and_nack_are_exact() {
        assert_eq!(
            push_ack(),
            r#"{"result":true,"returnCode":"200","message":"成功"}"#
        );
        assert_eq!(
            push_nack("store \"down\""),
            r#"{"result":false,"returnCode":"500","message":"store \"down\""}"#
        );
    }

    #[test]
    fn push_param_round_trips() {
        let push: Kuaidi100Push = serde_json::from_str(POLLING).unwrap();
        let text = push_param(&push);
        assert!(text.starts_with(r#"{"status":"polling","billstatus":"got","autoCheck":"0","lastResult":{"message":"ok","state":"0""#), "{text}");
        let back: Kuaidi100Push = serde_json::from_str(&text).unwrap();
        assert_eq!(back, push);
        assert_eq!(back.last_result.as_ref().map(|r| r.data.len()), Some(3));
    }

    #[test]
    fn config_reads_env_and_hides_secrets() {
        let mut env: HashMap<String, String> = [
            ("KUAIDI100_KEY", "the-key-1234"),
            ("KUAIDI100_SALT", "the-salt-5678"),
            ("KUAIDI100_CUSTOMER", "CUST01"),
            ("PUSH_CALLBACK_BASE_URL", "https://api.example.com"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let cfg = Kuaidi100Config::from_env(&env).unwrap();
        assert_eq!(cfg.subscribe_endpoint, "https://poll.kuaidi100.com/poll");
        assert_eq!(cfg.callback_url, "https://api.example.com/push/kuaidi100");
        assert_eq!(cfg.customer.as_deref(), Some("CUST01"));
        assert_eq!(cfg.salt.expose(), "the-salt-5678");
        let dbg = format!("{cfg:?}");
        assert!(
            !dbg.contains("the-key-1234") && !dbg.contains("the-salt-5678"),
            "{dbg}"
        );
        env.insert(
            "KUAIDI100_SUBSCRIBE_ENDPOINT".into(),
            "http://127.0.0.1:9/poll".into(),
        );
        assert_eq!(
            Kuaidi100Config::from_env(&env).unwrap().subscribe_endpoint,
            "http://127.0.0.1:9/poll"
        );
        env.remove("KUAIDI100_SALT");
        assert!(matches!(
            Kuaidi100Config::from_env(&env),
            Err(ConfigError::Missing("KUAIDI100_SALT"))
        ));
    }

    mod http {
        use super::*;
        use axum::routing::post;
        use axum::Router;
        use std::sync::{Arc, Mutex};

        #[tokio::test]
        async fn subscribes_with_schema_and_param_and_classifies_codes() {
            let seen: Arc<Mutex<Vec<String>>> = Arc::default();
            let s2 = seen.clone();
            let app = Router::new().route(
                "/poll",
                post(move |body: String| async move {
                    s2.lock().unwrap().push(body.clone());
                    let form = Form::parse(&body).unwrap();
                    let param: Value = serde_json::from_str(form.get("param").unwrap()).unwrap();
                    let code = match param["number"].as_str().unwrap() {
                        "YT0000000501" => "501",
                        "YT0000000500" => "500",
                        _ if param["key"] != "KEY" => "600",
                        _ => "200",
                    };
                    format!(
                        r#"{{"result":{},"returnCode":"{code}","message":"m"}}"#,
                        code == "200"
                    )
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
            let sub = |key: &str| {
                Kuaidi100Subscriber::new(
                    Kuaidi100Config {
                        subscribe_endpoint: format!("http://{addr}/poll"),
                        key: Secret::new(key),
                        customer: None,
                        salt: Secret::new(SALT),
                        callback_url: "https://cb.example.com/push/kuaidi100".into(),
                        timeout: Duration::from_secs(5),
                    },
                    reqwest::Client::new(),
                )
            };
            let s = sub("KEY");
            assert_eq!(s.name(), "kuaidi100");
            let q = query("YTO", "YT7412345678901", None);
            assert!(!s.subscribe(&q).await.unwrap().already_subscribed);
            let body = seen.lock().unwrap()[0].clone();
            let form = Form::parse(&body).unwrap();
            assert_eq!(form.get("schema"), Some("json"));
            assert_eq!(
                form.get("param"),
                Some(
                    subscribe_param(&q, "KEY", "https://cb.example.com/push/kuaidi100", SALT)
                        .unwrap()
                        .as_str()
                )
            );
            assert!(
                s.subscribe(&query("YTO", "YT0000000501", None))
                    .await
                    .unwrap()
                    .already_subscribed
            );
            assert!(s
                .subscribe(&query("YTO", "YT0000000500", None))
                .await
                .unwrap_err()
                .is_retryable());
            assert!(!sub("BAD").subscribe(&q).await.unwrap_err().is_retryable());
            // No request at all for a carrier Kuaidi100 has no code for.
            let before = seen.lock().unwrap().len();
            assert!(!s
                .subscribe(&query("SFKY", "SF1234567890", None))
                .await
                .unwrap_err()
                .is_retryable());
            assert_eq!(seen.lock().unwrap().len(), before);
        }
    }

    // ----- real-time query -----

    const F_DELIVERED: &str = include_str!("fixtures/kuaidi100/delivered.json");
    const F_IN_TRANSIT: &str = include_str!("fixtures/kuaidi100/in_transit.json");
    const F_LOCKER: &str = include_str!("fixtures/kuaidi100/locker.json");
    const F_NO_RESULT: &str = include_str!("fixtures/kuaidi100/no_result_500.json");
    const F_BAD_SIGN: &str = include_str!("fixtures/kuaidi100/bad_sign_503.json");
    const F_NO_BALANCE: &str = include_str!("fixtures/kuaidi100/no_balance_601.json");
    const F_BUSY: &str = include_str!("fixtures/kuaidi100/busy_502.json");
    const F_TRUNCATED: &str = include_str!("fixtures/kuaidi100/truncated.json");

    fn sub(code: &str) -> Option<SubStatus> {
        Some(SubStatus::new("kuaidi100", code))
    }

    #[test]
    fn query_sign_matches_the_reference_vector() {
        assert_eq!(
            query_sign(
                r#"{"com":"yuantong","num":"12345678"}"#,
                "KEYKEY",
                "CUSTOMER01"
            ),
            "8ED5529B255BB298809F1B18E2E7AEA2"
        );
        // Order matters: param + key + customer, not param + customer + key.
        assert_ne!(
            query_sign(
                r#"{"com":"yuantong","num":"12345678"}"#,
                "CUSTOMER01",
                "KEYKEY"
            ),
            "8ED5529B255BB298809F1B18E2E7AEA2"
        );
    }

    #[test]
    fn query_param_is_the_documented_json() {
        // YTO needs no phone: it stays out even when known.
        assert_eq!(
            build_query_param(&query("YTO", "YT7412345678901", Some("13812345678"))).unwrap(),
            r#"{"com":"yuantong","num":"YT7412345678901","resultv2":"4","show":"0","order":"desc"}"#
        );
        assert_eq!(
            build_query_param(&query("SF", "SF1234567890123", Some("+8613812345678"))).unwrap(),
            r#"{"com":"shunfeng","num":"SF1234567890123","phone":"5678","resultv2":"4","show":"0","order":"desc"}"#
        );
        assert_eq!(
            build_query_param(&query("ZTO", "731234567890123", Some("13900001111"))).unwrap(),
            r#"{"com":"zhongtong","num":"731234567890123","phone":"1111","resultv2":"4","show":"0","order":"desc"}"#
        );
        // ZTO without a phone is left to Kuaidi100 (it answers 408, Permanent).
        assert_eq!(
            build_query_param(&query("ZTO", "731234567890123", None)).unwrap(),
            r#"{"com":"zhongtong","num":"731234567890123","resultv2":"4","show":"0","order":"desc"}"#
        );
        match build_query_param(&query("SF", "SF1234567890123", None)) {
            Err(ProviderError::Permanent { provider, reason }) => {
                assert_eq!(provider, "kuaidi100");
                assert_eq!(reason, "SF needs the recipient's phone");
            }
            other => panic!("{other:?}"),
        }
        match build_query_param(&query("SFKY", "SF1234567890123", Some("13812345678"))) {
            Err(ProviderError::Permanent { reason, .. }) => {
                assert!(reason.contains("SFKY"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        // The result is valid JSON with the fields a server reads.
        let v: Value = serde_json::from_str(
            &build_query_param(&query("JD", "JDV123456789012", None)).unwrap(),
        )
        .unwrap();
        assert_eq!(
            (v["com"].as_str(), v["num"].as_str()),
            (Some("jd"), Some("JDV123456789012"))
        );
    }

    /// Every resultv2 sub-code of PROTOCOLS.md §2 under its own main state: the finer code wins
    /// and is the sub-status. Together with `every_documented_code_maps` (each code alone) this
    /// covers the whole table.
    #[test]
    fn every_sub_code_refines_its_main_state() {
        use Status::*;
        for (state, code, want) in [
            ("1", "101", InfoReceived),
            ("1", "102", InfoReceived),
            ("1", "103", PickedUp),
            ("0", "1001", ArrivedAtDestinationCity),
            ("0", "1002", InTransit),
            ("0", "1003", InTransit),
            ("5", "501", AvailableForPickup),
            ("3", "301", Delivered),
            ("3", "302", Delivered),
            ("3", "303", Delivered),
            ("3", "304", Delivered),
            ("4", "401", Exception),
            ("8", "10", InTransit),
            ("8", "11", InTransit),
            ("8", "12", InTransit),
            ("8", "13", Exception),
        ] {
            assert_eq!(
                map_state(state, Some(code)),
                (want, sub(code)),
                "{state}/{code}"
            );
        }
        // Main states without sub-codes: a line code of the same number keeps them.
        for (state, want) in [
            ("2", Exception),
            ("6", Returning),
            ("7", InTransit),
            ("14", Returning),
        ] {
            assert_eq!(map_state(state, Some(state)), (want, sub(state)), "{state}");
        }
        // Unknown codes: a safe status, the raw code kept.
        assert_eq!(map_state("42", None), (InTransit, sub("42")));
        assert_eq!(map_state("", Some("9999")), (InTransit, sub("9999")));
        assert_eq!(map_state("2", Some("207")), (Exception, sub("207")));
    }

    #[test]
    fn golden_delivered_answer() {
        let s = decode_query_response(F_DELIVERED).unwrap();
        assert_eq!(s.status, Status::Delivered);
        assert_eq!(s.sub_status, sub("301"));
        assert_eq!(s.events.len(), 5);
        let newest = &s.events[0];
        assert_eq!(newest.time, utc("2026-11-24T07:12:40Z"));
        assert_eq!(newest.status, Some(Status::Delivered));
        assert_eq!(newest.raw_code.as_deref(), Some("301"));
        assert_eq!(newest.location.as_deref(), Some("深圳市"));
        assert!(newest
            .description
            .starts_with("【深圳市南山区科技园公司】 已签收"));
        let oldest = &s.events[4];
        assert_eq!(oldest.time, utc("2026-11-22T10:02:11Z"));
        assert_eq!(oldest.status, Some(Status::PickedUp));
    }

    #[test]
    fn golden_in_transit_answer_with_resultv2_sub_codes() {
        let s = decode_query_response(F_IN_TRANSIT).unwrap();
        assert_eq!(s.status, Status::InTransit);
        assert_eq!(s.sub_status, sub("1002"));
        assert_eq!(
            s.events.iter().map(|e| e.status).collect::<Vec<_>>(),
            vec![
                Some(Status::InTransit),
                Some(Status::InTransit),
                Some(Status::PickedUp),
                Some(Status::InfoReceived)
            ]
        );
        assert_eq!(s.events[0].time, utc("2026-11-23T13:40:02Z"));
        // An empty location is no location.
        assert_eq!(s.events[3].location, None);
    }

    #[test]
    fn golden_locker_answer() {
        let s = decode_query_response(F_LOCKER).unwrap();
        assert_eq!(s.status, Status::AvailableForPickup);
        assert_eq!(s.sub_status, sub("501"));
        assert_eq!(s.events.len(), 3);
        assert_eq!(s.events[0].status, Some(Status::AvailableForPickup));
        assert!(s.events[0].description.contains("482913"));
    }

    #[test]
    fn golden_no_result_is_a_pending_snapshot_not_an_error() {
        assert_eq!(
            decode_query_response(F_NO_RESULT).unwrap(),
            TraceSnapshot {
                status: Status::Pending,
                sub_status: None,
                events: Vec::new()
            }
        );
        // A success without lines says the same.
        let empty = r#"{"message":"ok","status":"200","state":"0","com":"yuantong","nu":"YT1234567","data":[]}"#;
        assert_eq!(
            decode_query_response(empty).unwrap().status,
            Status::Pending
        );
    }

    #[test]
    fn golden_bad_sign_is_permanent() {
        match decode_query_response(F_BAD_SIGN) {
            Err(ProviderError::Permanent { provider, reason }) => {
                assert_eq!(provider, "kuaidi100");
                assert!(
                    reason.starts_with("signature check failed (503)"),
                    "{reason}"
                );
                assert!(
                    reason.contains("KUAIDI100_KEY") && reason.contains("验证签名失败"),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn golden_no_balance_is_permanent() {
        match decode_query_response(F_NO_BALANCE) {
            Err(ProviderError::Permanent { reason, .. }) => {
                assert!(
                    reason.starts_with("key expired or no balance left (601)"),
                    "{reason}"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn golden_busy_is_retryable_without_a_wait() {
        match decode_query_response(F_BUSY) {
            Err(ProviderError::Retryable {
                reason,
                retry_after,
                ..
            }) => {
                assert!(reason.starts_with("server busy (502)"), "{reason}");
                assert_eq!(retry_after, None);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn golden_truncated_body_is_retryable_with_a_prefix() {
        match decode_query_response(F_TRUNCATED) {
            Err(ProviderError::Retryable {
                reason,
                retry_after,
                ..
            }) => {
                assert!(reason.starts_with("unreadable response ("), "{reason}");
                assert!(reason.contains(r#"{\"message\":\"ok\""#), "{reason}");
                assert!(reason.ends_with("…\""), "cut to a prefix: {reason}");
                assert_eq!(retry_after, None);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_error_code_is_classified() {
        let thirty_min = Some(Duration::from_secs(1800));
        for (code, message, want_retryable, wait) in [
            ("400", "找不到对应公司", false, None),
            ("408", "电话号码校验失败", false, None),
            ("503", "验证签名失败", false, None),
            ("601", "POLL:KEY已过期", false, None),
            ("501", "服务器错误", true, None),
            ("502", "服务器繁忙", true, None),
            (
                "502",
                "该单号查询过于频繁，请30分钟后再查",
                true,
                thirty_min,
            ),
            ("500", "查询过于频繁", true, thirty_min),
            ("500", "服务器错误", true, None),
            ("777", "?", true, None),
            ("", "", true, None),
        ] {
            let body = format!(r#"{{"result":false,"returnCode":"{code}","message":"{message}"}}"#);
            match decode_query_response(&body) {
                Err(ProviderError::Retryable {
                    retry_after,
                    reason,
                    ..
                }) => {
                    assert!(want_retryable, "{code} {message}: {reason}");
                    assert_eq!(retry_after, wait, "{code} {message}");
                    assert!(reason.contains(code), "{reason}");
                }
                Err(ProviderError::Permanent { reason, .. }) => {
                    assert!(!want_retryable, "{code} {message}: {reason}");
                    assert!(reason.contains(code), "{reason}");
                }
                Ok(s) => panic!("{code} {message}: {s:?}"),
            }
        }
        // returnCode as a number.
        assert!(
            decode_query_response(r#"{"result":false,"returnCode":503,"message":"x"}"#)
                .is_err_and(|e| !e.is_retryable())
        );
        // Other garbage.
        for body in [
            "",
            "<html>502 Bad Gateway</html>",
            "[1]",
            "{}",
            r#"{"status":"201"}"#,
        ] {
            assert!(
                decode_query_response(body).is_err_and(|e| e.is_retryable()),
                "{body:?}"
            );
        }
    }

    #[test]
    fn query_config_reads_env_and_hides_the_key() {
        let mut env: HashMap<String, String> = [
            ("KUAIDI100_KEY", "the-key-1234"),
            ("KUAIDI100_CUSTOMER", "CUST01"),
            ("PROVIDER_TIMEOUT_MS", "1500"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let cfg = Kuaidi100QueryConfig::from_env(&env).unwrap();
        assert_eq!(cfg.endpoint, "https://poll.kuaidi100.com/poll/query.do");
        assert_eq!(cfg.customer, "CUST01");
        assert_eq!(cfg.key.expose(), "the-key-1234");
        assert_eq!(cfg.timeout, Duration::from_millis(1500));
        assert!(!format!("{cfg:?}").contains("the-key-1234"));
        env.insert(
            "KUAIDI100_QUERY_ENDPOINT".into(),
            "http://127.0.0.1:9/poll/query.do".into(),
        );
        assert_eq!(
            Kuaidi100QueryConfig::from_env(&env).unwrap().endpoint,
            "http://127.0.0.1:9/poll/query.do"
        );
        env.insert("PROVIDER_TIMEOUT_MS".into(), "soon".into());
        assert!(matches!(
            Kuaidi100QueryConfig::from_env(&env),
            Err(ConfigError::Invalid {
                name: "PROVIDER_TIMEOUT_MS",
                ..
            })
        ));
        env.remove("KUAIDI100_CUSTOMER");
        assert!(matches!(
            Kuaidi100QueryConfig::from_env(&env),
            Err(ConfigError::Missing("KUAIDI100_CUSTOMER"))
        ));
    }

    mod query_http {
        use super::*;
        use axum::http::StatusCode;
        use axum::routing::post;
        use axum::Router;
        use std::sync::{Arc, Mutex};

        const KEY: &str = "query-key-0001";
        const CUSTOMER: &str = "CUST0001";

        async fn serve(app: Router) -> String {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
            format!("http://{addr}")
        }

        fn client(endpoint: String, key: &str, timeout: Duration) -> Kuaidi100Client {
            Kuaidi100Client::new(
                Kuaidi100QueryConfig {
                    endpoint,
                    customer: CUSTOMER.into(),
                    key: Secret::new(key),
                    timeout,
                },
                reqwest::Client::new(),
            )
        }

        #[tokio::test]
        async fn sends_a_signed_form_and_reads_the_answer() {
            let seen: Arc<Mutex<Vec<String>>> = Arc::default();
            let s2 = seen.clone();
            let app = Router::new().route(
                "/poll/query.do",
                post(move |body: String| async move {
                    s2.lock().unwrap().push(body.clone());
                    let form = Form::parse(&body).unwrap();
                    let param = form.get("param").unwrap_or("");
                    if form.get("sign") != Some(query_sign(param, KEY, CUSTOMER).as_str()) {
                        return F_BAD_SIGN.to_string();
                    }
                    let v: Value = serde_json::from_str(param).unwrap();
                    match v["num"].as_str() {
                        Some("YT7412345678901") => F_DELIVERED.to_string(),
                        _ => F_NO_RESULT.to_string(),
                    }
                }),
            );
            let base = serve(app).await;
            let c = client(format!("{base}/poll/query.do"), KEY, Duration::from_secs(5));
            assert_eq!(c.name(), "kuaidi100");
            let q = query("YTO", "YT7412345678901", None);
            let snap = c.query(&q).await.unwrap();
            assert_eq!(snap, decode_query_response(F_DELIVERED).unwrap());

            let body = seen.lock().unwrap()[0].clone();
            let form = Form::parse(&body).unwrap();
            assert_eq!(form.get("customer"), Some(CUSTOMER));
            assert_eq!(
                form.get("param"),
                Some(build_query_param(&q).unwrap().as_str())
            );
            assert!(!body.contains(KEY), "the key travels only as its signature");
            assert!(!body.contains("%25"), "double-encoded: {body}");

            // Nothing yet: Pending, not an error.
            let pending = c.query(&query("YTO", "YT0000000000", None)).await.unwrap();
            assert_eq!(pending.status, Status::Pending);
            assert!(pending.events.is_empty());

            // A wrong key: the server's 503 is Permanent.
            let bad = client(
                format!("{base}/poll/query.do"),
                "wrong",
                Duration::from_secs(5),
            );
            assert!(!bad.query(&q).await.unwrap_err().is_retryable());

            // SF without a phone never leaves the process.
            let before = seen.lock().unwrap().len();
            assert!(!c
                .query(&query("SF", "SF1234567890123", None))
                .await
                .unwrap_err()
                .is_retryable());
            assert_eq!(seen.lock().unwrap().len(), before);
        }

        #[tokio::test]
        async fn transport_and_http_failures_are_classified() {
            let app = Router::new()
                .route(
                    "/500",
                    post(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "oops") }),
                )
                .route("/404", post(|| async { (StatusCode::NOT_FOUND, "no") }))
                .route("/other", post(|| async { F_DELIVERED }))
                .route(
                    "/slow",
                    post(|| async {
                        tokio::time::sleep(Duration::from_secs(3)).await;
                        F_DELIVERED
                    }),
                );
            let base = serve(app).await;
            let q = query("YTO", "YT1111111111111", None);
            let e500 = client(format!("{base}/500"), KEY, Duration::from_secs(5))
                .query(&q)
                .await
                .unwrap_err();
            assert!(
                e500.is_retryable() && e500.to_string().contains("500"),
                "{e500}"
            );
            let e404 = client(format!("{base}/404"), KEY, Duration::from_secs(5))
                .query(&q)
                .await
                .unwrap_err();
            assert!(!e404.is_retryable(), "{e404}");
            // An answer for another waybill is never written under this one.
            let other = client(format!("{base}/other"), KEY, Duration::from_secs(5))
                .query(&q)
                .await
                .unwrap_err();
            assert!(
                other.is_retryable() && other.to_string().contains("YT7412345678901"),
                "{other}"
            );
            let started = std::time::Instant::now();
            let slow = client(format!("{base}/slow"), KEY, Duration::from_millis(200))
                .query(&q)
                .await
                .unwrap_err();
            assert!(
                slow.is_retryable() && slow.to_string().contains("timed out"),
                "{slow}"
            );
            assert!(started.elapsed() < Duration::from_secs(2));
        }
    }
}
