//! Taobao Open Platform: `taobao.logistics.trace.search` (PROTOCOLS.md §3).
//!
//! TOP looks traces up by **order** (`tid`), not by waybill: the shipment's
//! [`TraceQuery::order_ref`] must name the Taobao trade — `top:<seller_nick>:<tid>`,
//! `fw199:<seller_nick>:<tid>` (fw199 lists the same Taobao trades) or a bare numeric tid. Signing,
//! the common parameters, error classification and Beijing time come from [`crate::orders`]: one
//! TOP implementation for orders and traces.
//!
//! Everything that can be pure is `pub` (order reference, request form, decoding, status mapping,
//! the answer's JSON) so the sandbox answers with exactly the shape the client reads.
//!
//! ## Decisions on uncertain points
//! - **Split trades.** The answer carries one `out_sid`. The client never sends `is_split` /
//!   `sub_tid`: the shipment only knows the trade (`order_ref` has no sub-order id), and TOP
//!   requires `sub_tid` whenever `is_split=1`. The transit info whose `out_sid` equals our waybill is
//!   used (answers listing several under `transit_step_result` are accepted too); when the answer
//!   is for another waybill the error is **Permanent** ("order T ships under X, not Y"): asking
//!   again returns the same parcel, so another provider must track this one. An answer without
//!   `out_sid` is accepted, like Kdniao's answers without `LogisticCode`.
//! - **`对方已签收` is not always a delivery.** TOP documents that for offline consignments
//!   (`offline.send`) the status turns to 对方已签收 as soon as the seller ships. So it counts as
//!   Delivered only when the newest line agrees (a sign action) or is unclassified; with no line at
//!   all it reads InfoReceived, and a newer forward line (e.g. SENT_SCAN) wins over it.
//! - **Actions** (`transit_step_info.action`) are not documented anywhere we trust; the table
//!   [`ACTIONS`] holds the ones seen in the wild. An unknown action keeps its line unclassified
//!   (the status then comes from the trade-level status), keeps the raw code, and is logged once
//!   per code per cold start through [`UnknownCodes`]; the same for an unknown trade status.
//! - **Garbage bodies** (HTML error pages, truncated JSON) are Retryable, as in Kdniao: a proxy or
//!   gateway hiccup, not our request's fault; a persistent one ends in the DLQ with the prefix.

use super::{ProviderError, TraceProvider, TraceQuery};
use crate::config::{parsed, ConfigError, Env, Secret};
use crate::domain::{Status, SubStatus, TraceEvent, TraceSnapshot};
use crate::http::post_form;
use crate::orders::top::{classify_error, signed_form, TopCall};
use crate::orders::{body_prefix, count, list, number_or_string, text, OrderError, SignMethod};
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Provider name used in sub-statuses (`taobao:SENT_SCAN`), errors and logs.
pub const PROVIDER: &str = "taobao";
/// The TOP method.
pub const METHOD: &str = "taobao.logistics.trace.search";
/// The answer's wrapper key.
pub const RESPONSE_KEY: &str = "logistics_trace_search_response";

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

/// TOP trace settings. The app and the shop's session are the ones order sync uses (`TOP_*`);
/// only the endpoint may differ (`TAOBAO_TRACE_ENDPOINT`).
#[derive(Debug, Clone)]
pub struct TaobaoConfig {
    pub endpoint: String,
    pub app_key: String,
    pub secret: Secret,
    /// The shop's access token (`session`).
    pub session: Secret,
    pub sign_method: SignMethod,
    pub timeout: Duration,
}

impl TaobaoConfig {
    pub const DEFAULT_ENDPOINT: &'static str = "https://eco.taobao.com/router/rest";

    /// `TAOBAO_TRACE_ENDPOINT` (else `TOP_ENDPOINT`, else [`Self::DEFAULT_ENDPOINT`]),
    /// `TOP_APP_KEY`, `TOP_APP_SECRET`, `TOP_SESSION`, `TOP_SIGN_METHOD` (md5 | hmac, default
    /// md5), `PROVIDER_TIMEOUT_MS` (default 5000).
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let sign_method = match env.get("TOP_SIGN_METHOD") {
            None => SignMethod::Md5,
            Some(s) => SignMethod::parse(&s).ok_or_else(|| ConfigError::Invalid {
                name: "TOP_SIGN_METHOD",
                reason: format!("`{s}` is neither md5 nor hmac"),
            })?,
        };
        let required = |key: &'static str| env.get(key).ok_or(ConfigError::Missing(key));
        Ok(TaobaoConfig {
            endpoint: env
                .get("TAOBAO_TRACE_ENDPOINT")
                .or_else(|| env.get("TOP_ENDPOINT"))
                .unwrap_or_else(|| Self::DEFAULT_ENDPOINT.into()),
            app_key: required("TOP_APP_KEY")?,
            secret: Secret::new(required("TOP_APP_SECRET")?),
            session: Secret::new(required("TOP_SESSION")?),
            sign_method,
            timeout: Duration::from_millis(parsed(env, "PROVIDER_TIMEOUT_MS", 5000u64)?),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Order reference, request
// ---------------------------------------------------------------------------------------------

/// The Taobao trade a shipment belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TradeRef {
    /// The seller's nick, when the reference names it (sent as `seller_nick`).
    pub seller_nick: Option<String>,
    /// Taobao trade id: digits only.
    pub tid: String,
}

fn is_tid(s: &str) -> bool {
    !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Read `top:<nick>:<tid>`, `fw199:<nick>:<tid>` (the nick may itself hold `:`) or a bare tid.
/// `None` for anything else (another platform's reference, a free-text order number).
pub fn parse_order_ref(order_ref: &str) -> Option<TradeRef> {
    let r = order_ref.trim();
    if is_tid(r) {
        return Some(TradeRef {
            seller_nick: None,
            tid: r.to_string(),
        });
    }
    let (platform, rest) = r.split_once(':')?;
    if !matches!(platform.to_ascii_lowercase().as_str(), "top" | "fw199") {
        return None;
    }
    let (nick, tid) = rest.rsplit_once(':')?;
    let (nick, tid) = (nick.trim(), tid.trim());
    is_tid(tid).then(|| TradeRef {
        seller_nick: Some(nick.to_string()).filter(|n| !n.is_empty()),
        tid: tid.to_string(),
    })
}

/// What one trace request carries, before signing.
#[derive(Debug, Clone)]
pub struct TraceRequest<'a> {
    pub app_key: &'a str,
    pub session: &'a str,
    pub sign_method: SignMethod,
    pub trade: &'a TradeRef,
    pub timestamp: DateTime<Utc>,
}

/// The signed form of a trace request: the common TOP parameters, `tid`, and `seller_nick` when
/// known (older SDKs require it; newer gateways ignore it). No `is_split`: see the module docs.
pub fn build_form(req: &TraceRequest<'_>, secret: &str) -> Vec<(String, String)> {
    let call = TopCall {
        method: METHOD,
        app_key: req.app_key,
        session: req.session,
        sign_method: req.sign_method,
        timestamp: req.timestamp,
    };
    let mut business = vec![("tid".to_string(), req.trade.tid.clone())];
    if let Some(nick) = &req.trade.seller_nick {
        business.push(("seller_nick".to_string(), nick.clone()));
    }
    signed_form(&call, business, secret)
}

// ---------------------------------------------------------------------------------------------
// Unknown codes
// ---------------------------------------------------------------------------------------------

/// Counts codes outside our tables and logs each distinct one once per cold start (a warm
/// Lambda sees the same unknown action on every parcel of a carrier; one line is enough).
#[derive(Debug, Default)]
pub struct UnknownCodes {
    seen: Mutex<BTreeSet<String>>,
    sightings: AtomicU64,
}

impl UnknownCodes {
    /// Distinct codes remembered; beyond this, sightings are counted but no longer logged.
    pub const MAX_DISTINCT: usize = 256;

    pub const fn new() -> Self {
        UnknownCodes {
            seen: Mutex::new(BTreeSet::new()),
            sightings: AtomicU64::new(0),
        }
    }

    /// Count one sighting of `code` (a `kind`: "action", "status"); `true` the first time,
    /// when it is logged.
    pub fn note(&self, kind: &'static str, code: &str) -> bool {
        self.sightings.fetch_add(1, Ordering::Relaxed);
        let first = {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            seen.len() < Self::MAX_DISTINCT && seen.insert(format!("{kind}:{code}"))
        };
        if first {
            tracing::warn!(
                provider = PROVIDER,
                kind,
                code,
                "unknown Taobao code, mapped conservatively (logged once per cold start)"
            );
        }
        first
    }

    /// Sightings of unknown codes since the cold start.
    pub fn sightings(&self) -> u64 {
        self.sightings.load(Ordering::Relaxed)
    }

    /// Whether `code` of `kind` has been seen.
    pub fn has_seen(&self, kind: &str, code: &str) -> bool {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&format!("{kind}:{code}"))
    }
}

static UNKNOWN: UnknownCodes = UnknownCodes::new();

/// This module's unknown statuses and actions.
pub fn unknown_codes() -> &'static UnknownCodes {
    &UNKNOWN
}

// ---------------------------------------------------------------------------------------------
// Status mapping
// ---------------------------------------------------------------------------------------------

/// The ten trade-level `status` values (PROTOCOLS.md §3), in the order of a parcel's life.
pub const TRADE_STATUSES: [(&str, Status); 10] = [
    // Not yet sent to the carrier / sent but not acknowledged: nothing a carrier knows.
    ("等候发送给物流公司", Status::Pending),
    ("已提交给物流公司等待接单", Status::Pending),
    // The carrier's system has the order.
    ("已经确认消息接收", Status::InfoReceived),
    ("物流公司已接单", Status::InfoReceived),
    // The carrier will not or could not take the parcel: the seller must act.
    ("物流公司不接单", Status::Exception),
    ("物流公司揽收失败", Status::Exception),
    // Picked up; everything until the door is this one status, the lines carry the detail.
    ("物流公司揽收成功", Status::PickedUp),
    ("签收失败", Status::DeliveryFailed),
    ("对方已签收", Status::Delivered),
    // Refused: the parcel goes back to the seller (Kdniao 404).
    ("对方拒绝签收", Status::Returning),
];

/// Step actions seen in the wild (UNCERTAIN: no authoritative list). `None`: known, but not a
/// parcel event (the trade completing).
pub const ACTIONS: [(&str, Option<Status>); 18] = [
    ("CREATE", Some(Status::InfoReceived)),
    ("CONSIGN", Some(Status::InfoReceived)),
    ("TMS_ACCEPT", Some(Status::InfoReceived)),
    ("ACCEPT", Some(Status::PickedUp)),
    ("GOT", Some(Status::PickedUp)),
    ("DEPARTURE", Some(Status::InTransit)),
    // An arrival anywhere: a hub or the destination city, TOP does not say which.
    ("ARRIVAL", Some(Status::InTransit)),
    ("SENT_SCAN", Some(Status::OutForDelivery)),
    ("STA_INBOUND", Some(Status::AvailableForPickup)),
    ("SIGNED", Some(Status::Delivered)),
    ("TMS_SIGN", Some(Status::Delivered)),
    ("STA_SIGN", Some(Status::Delivered)),
    ("AGENT_SIGN", Some(Status::Delivered)),
    ("FAILED", Some(Status::DeliveryFailed)),
    ("ISSUE", Some(Status::Exception)),
    ("REJECT", Some(Status::Returning)),
    ("RETURN", Some(Status::Returning)),
    // The buyer confirmed receipt, or the trade auto-completed: says nothing about the parcel.
    ("TRADE_SUCCESS", None),
];

fn trade_status(status: &str) -> Option<Status> {
    TRADE_STATUSES
        .iter()
        .find(|(s, _)| *s == status)
        .map(|(_, st)| *st)
}

/// Map the trade-level `status` to the canonical status, keeping it as sub-status
/// `taobao:<status>`. Blank → Pending without sub-status. Unknown → InTransit (not terminal, not
/// Exception, as for Kdniao), counted and logged once.
pub fn map_status(status: &str) -> (Status, Option<SubStatus>) {
    let s = status.trim();
    if s.is_empty() {
        return (Status::Pending, None);
    }
    let sub = Some(SubStatus::new(PROVIDER, s));
    match trade_status(s) {
        Some(st) => (st, sub),
        None => {
            UNKNOWN.note("status", s);
            (Status::InTransit, sub)
        }
    }
}

/// Status of one step from its `action` (case-insensitive); `None` when blank, unknown (counted
/// and logged once) or not a parcel event.
pub fn map_action(action: &str) -> Option<Status> {
    let a = action.trim().to_ascii_uppercase();
    if a.is_empty() {
        return None;
    }
    match ACTIONS.iter().find(|(code, _)| *code == a) {
        Some((_, st)) => *st,
        None => {
            UNKNOWN.note("action", &a);
            None
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Wire
// ---------------------------------------------------------------------------------------------

/// One parcel's transit info, field names as on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TransitInfo {
    pub tid: Option<String>,
    /// The waybill number.
    pub out_sid: Option<String>,
    pub company_name: Option<String>,
    /// Trade-level logistics status (Chinese text, see [`TRADE_STATUSES`]).
    pub status: String,
    /// `trace_list.transit_step_info`, as sent.
    pub steps: Vec<TransitStep>,
}

/// One `transit_step_info`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TransitStep {
    /// `yyyy-MM-dd HH:mm:ss`, Beijing time.
    pub status_time: String,
    pub status_desc: String,
    pub action: Option<String>,
}

fn read_info(v: &Value) -> TransitInfo {
    let steps = list(v.get("trace_list"), "transit_step_info")
        .into_iter()
        .map(|s| TransitStep {
            // Some SDK versions name them `time` and `desc` / `node_description`.
            status_time: text(s, "status_time")
                .or_else(|| text(s, "time"))
                .unwrap_or_default(),
            status_desc: text(s, "status_desc")
                .or_else(|| text(s, "desc"))
                .or_else(|| text(s, "node_description"))
                .unwrap_or_default(),
            action: text(s, "action"),
        })
        .collect();
    TransitInfo {
        tid: text(v, "tid").or_else(|| text(v, "tid_str")),
        out_sid: text(v, "out_sid"),
        company_name: text(v, "company_name"),
        status: text(v, "status").unwrap_or_default(),
        steps,
    }
}

fn retryable(reason: String, retry_after: Option<Duration>) -> ProviderError {
    ProviderError::Retryable {
        provider: PROVIDER,
        reason,
        retry_after,
    }
}

fn permanent(reason: String) -> ProviderError {
    ProviderError::Permanent {
        provider: PROVIDER,
        reason,
    }
}

fn from_order_error(e: OrderError) -> ProviderError {
    match e {
        OrderError::Retryable {
            reason,
            retry_after,
        } => retryable(reason, retry_after),
        OrderError::Permanent { reason } => permanent(reason),
    }
}

/// An `error_response`, classified by [`classify_error`] (throttling with the ban's seconds,
/// `isp.*` and 15 retryable; `isv.*`, sign, session, app key permanent), with what to do about
/// sign and session failures.
pub fn error_from_response(err: &Value) -> ProviderError {
    let code = count(err, "code").map_or(-1, |c| c as i64);
    let sub_code = text(err, "sub_code").unwrap_or_default();
    let e = classify_error(
        code,
        &text(err, "msg").unwrap_or_default(),
        &sub_code,
        &text(err, "sub_msg").unwrap_or_default(),
    );
    let hint = match code {
        25 => Some("check TOP_APP_SECRET and TOP_SIGN_METHOD"),
        26 | 27 => Some("the shop must re-authorize the app (TOP session missing or expired)"),
        _ if sub_code.contains("session") => {
            Some("the shop must re-authorize the app (TOP session missing or expired)")
        }
        _ => None,
    };
    match (from_order_error(e), hint) {
        (ProviderError::Permanent { provider, reason }, Some(h)) => ProviderError::Permanent {
            provider,
            reason: format!("{reason} — {h}"),
        },
        (other, _) => other,
    }
}

/// Decode a body into the transit infos it holds (usually one), or the error it stands for.
/// Unreadable bodies and answers without [`RESPONSE_KEY`] are Retryable (see the module docs).
pub fn decode_response(body: &str) -> Result<Vec<TransitInfo>, ProviderError> {
    let v: Value = serde_json::from_str(body).map_err(|e| {
        retryable(
            format!("unreadable TOP answer ({e}): {}", body_prefix(body, 80)),
            None,
        )
    })?;
    if let Some(err) = v.get("error_response") {
        return Err(error_from_response(err));
    }
    let Some(resp) = v.get(RESPONSE_KEY).filter(|r| r.is_object()) else {
        return Err(retryable(
            format!(
                "TOP answer without {RESPONSE_KEY}: {}",
                body_prefix(body, 80)
            ),
            None,
        ));
    };
    // `taobao.logistics.trace.get`-like answers list one info per parcel.
    let many = resp.get("transit_step_result").or_else(|| {
        resp.get("result")
            .and_then(|r| r.get("transit_step_result"))
    });
    Ok(match many {
        Some(m) => list(Some(m), "transit_step_result")
            .into_iter()
            .map(read_info)
            .collect(),
        None => vec![read_info(resp)],
    })
}

/// The JSON of a successful answer, as TOP writes it (what [`decode_response`] reads).
pub fn answer_json(info: &TransitInfo) -> Value {
    let mut m = Map::new();
    if let Some(tid) = &info.tid {
        m.insert("tid".into(), number_or_string(tid));
    }
    if let Some(out_sid) = &info.out_sid {
        m.insert("out_sid".into(), Value::String(out_sid.clone()));
    }
    if let Some(company) = &info.company_name {
        m.insert("company_name".into(), Value::String(company.clone()));
    }
    m.insert("status".into(), Value::String(info.status.clone()));
    let steps: Vec<Value> = info
        .steps
        .iter()
        .map(|s| {
            let mut step = json!({ "status_time": s.status_time, "status_desc": s.status_desc });
            if let Some(a) = &s.action {
                step["action"] = Value::String(a.clone());
            }
            step
        })
        .collect();
    m.insert("trace_list".into(), json!({ "transit_step_info": steps }));
    json!({ RESPONSE_KEY: Value::Object(m) })
}

fn norm(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase()
}

/// Pick our parcel's info: the one whose `out_sid` is `number`; or the only one when it names no
/// waybill. Another waybill → Permanent (see the module docs); another trade → Retryable (a
/// gateway mix-up, never written under this parcel).
pub fn select_for_waybill(
    infos: Vec<TransitInfo>,
    tid: &str,
    number: &str,
) -> Result<TransitInfo, ProviderError> {
    let want = norm(number);
    let n = infos.len();
    let mut others: Vec<String> = Vec::new();
    let mut unnamed: Option<TransitInfo> = None;
    let mut chosen: Option<TransitInfo> = None;
    for info in infos {
        match info.out_sid.as_deref() {
            Some(sid) if norm(sid) == want => {
                chosen = Some(info);
                break;
            }
            Some(sid) => others.push(sid.to_string()),
            None => unnamed = Some(info),
        }
    }
    let info = match (chosen, unnamed) {
        (Some(i), _) => i,
        (None, Some(i)) if n == 1 => i,
        _ if !others.is_empty() => {
            return Err(permanent(format!(
                "order {tid} ships under {}, not {number}",
                others.join(", ")
            )))
        }
        _ => {
            return Err(retryable(
                format!("answer for order {tid} names no usable parcel"),
                None,
            ))
        }
    };
    if let Some(got) = info.tid.as_deref().filter(|t| *t != tid) {
        return Err(retryable(
            format!("answer is for order {got}, not {tid}"),
            None,
        ));
    }
    Ok(info)
}

/// Turn one parcel's transit info into a snapshot.
///
/// Lines: time from `status_time` (Beijing; unreadable → skipped), status from `action`, the raw
/// action kept. A sign after a refusal/return line is the seller taking the parcel back:
/// Returned (the same rule the sandbox's journeys follow for Kdniao).
///
/// Status: the trade-level status gives the phase, the newest classified line the detail:
/// - 揽收成功 and the pre-pickup statuses: the newest line when it is at least as far along;
/// - 对方已签收: Delivered when the newest line is a sign or unclassified; a newer forward line
///   wins; no line at all → InfoReceived (offline consignments, see the module docs);
/// - 对方拒绝签收: Returning, Returned once a sign line follows;
/// - 签收失败: DeliveryFailed unless the newest line shows the parcel delivered, returning or in
///   a locker; 不接单 / 揽收失败: Exception unless a line shows it moving after all;
/// - unknown or blank: the newest line, else InTransit with lines, Pending without.
///
/// Sub-status: `taobao:<action>` when the status is the newest line's, else
/// `taobao:<status>`.
pub fn to_snapshot(info: &TransitInfo) -> TraceSnapshot {
    let mut steps: Vec<(DateTime<Utc>, &TransitStep)> = Vec::with_capacity(info.steps.len());
    for s in &info.steps {
        // Lenient (slashes, fractions, minutes) Beijing time, shared with Kdniao.
        match super::kdniao::parse_accept_time(&s.status_time) {
            Some(t) => steps.push((t, s)),
            None => {
                tracing::warn!(provider = PROVIDER, status_time = %s.status_time, "trace step with unreadable status_time skipped")
            }
        }
    }
    steps.sort_by_key(|(t, _)| *t);

    let mut events = Vec::with_capacity(steps.len());
    let mut returning_seen = false;
    // (status, action) of the newest classified line.
    let mut newest: Option<(Status, String)> = None;
    let mut newest_is_classified = false;
    for (time, s) in &steps {
        let mut st = s.action.as_deref().and_then(map_action);
        if st == Some(Status::Delivered) && returning_seen {
            st = Some(Status::Returned);
        }
        returning_seen |= st == Some(Status::Returning);
        if let Some(st) = st {
            newest = Some((st, s.action.clone().unwrap_or_default()));
        }
        newest_is_classified = st.is_some();
        events.push(TraceEvent {
            time: *time,
            description: s.status_desc.clone(),
            location: None,
            status: st,
            raw_code: s.action.clone(),
            claimed_time: None,
        });
    }

    let (trade, trade_sub) = map_status(&info.status);
    let line = newest.as_ref().map(|(st, _)| *st);
    let known = trade_status(info.status.trim()).is_some();
    let status = if !known {
        line.unwrap_or(if events.is_empty() {
            Status::Pending
        } else {
            Status::InTransit
        })
    } else {
        match trade {
            Status::Delivered => match line {
                // Offline consignments read 对方已签收 from the moment they ship.
                _ if events.is_empty() => Status::InfoReceived,
                Some(l) if newest_is_classified => l,
                // The newest line is unclassified: likely the sign itself, in words we lack.
                _ => Status::Delivered,
            },
            Status::Returning => match line {
                Some(Status::Delivered | Status::Returned) => Status::Returned,
                _ => Status::Returning,
            },
            Status::DeliveryFailed => match line {
                Some(
                    l @ (Status::Delivered
                    | Status::Returned
                    | Status::Returning
                    | Status::AvailableForPickup
                    | Status::DeliveryFailed),
                ) => l,
                _ => Status::DeliveryFailed,
            },
            Status::Exception => match line {
                // A transit scan or later: the carrier did take it after all.
                Some(l) if l.progress() >= Status::InTransit.progress() => l,
                _ => Status::Exception,
            },
            // Pending, InfoReceived, PickedUp: the lines may only move it forward.
            t => match line {
                Some(l) if l.progress() >= t.progress() => l,
                _ => t,
            },
        }
    };
    let sub_status = match &newest {
        Some((st, action)) if *st == status && !action.is_empty() => {
            Some(SubStatus::new(PROVIDER, action.trim()))
        }
        _ => trade_sub,
    };
    TraceSnapshot {
        status,
        sub_status,
        events,
    }
}

/// Parse a body for trade `tid` and waybill `number` into a snapshot.
pub fn parse_response(body: &str, tid: &str, number: &str) -> Result<TraceSnapshot, ProviderError> {
    let infos = decode_response(body)?;
    let info = select_for_waybill(infos, tid, number)?;
    Ok(to_snapshot(&info))
}

// ---------------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------------

/// TOP trace client for one app and shop session. Cheap to clone: the reqwest client is shared.
#[derive(Debug, Clone)]
pub struct TaobaoClient {
    cfg: TaobaoConfig,
    http: reqwest::Client,
}

impl TaobaoClient {
    /// `http` is built once per cold start by the caller; `cfg.timeout` applies per request.
    pub fn new(cfg: TaobaoConfig, http: reqwest::Client) -> Self {
        TaobaoClient { cfg, http }
    }

    async fn call(&self, q: &TraceQuery) -> Result<TraceSnapshot, ProviderError> {
        let trade = q
            .order_ref
            .as_deref()
            .and_then(parse_order_ref)
            .ok_or_else(|| {
                permanent("taobao trace needs the Taobao order id (order_ref)".to_string())
            })?;
        let req = TraceRequest {
            app_key: &self.cfg.app_key,
            session: self.cfg.session.expose(),
            sign_method: self.cfg.sign_method,
            trade: &trade,
            timestamp: Utc::now(),
        };
        let form = build_form(&req, self.cfg.secret.expose());
        let body = post_form(&self.http, &self.cfg.endpoint, self.cfg.timeout, &form)
            .await
            .map_err(|f| f.for_provider(PROVIDER))?;
        parse_response(&body, &trade.tid, q.id.number.as_str())
    }
}

impl TraceProvider for TaobaoClient {
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
    use crate::domain::ShipmentId;
    use crate::orders::top::top_sign;
    use std::collections::HashMap;

    const IN_TRANSIT: &str = include_str!("fixtures/taobao/trace_in_transit.json");
    const SIGNED: &str = include_str!("fixtures/taobao/trace_signed.json");
    const REFUSED: &str = include_str!("fixtures/taobao/trace_refused.json");
    const THROTTLED: &str = include_str!("fixtures/taobao/error_throttled.json");
    const ISP: &str = include_str!("fixtures/taobao/error_isp.json");
    const ISV_INVALID_PARAMETER: &str =
        include_str!("fixtures/taobao/error_isv_invalid_parameter.json");
    const SESSION_INVALID: &str = include_str!("fixtures/taobao/error_session_invalid.json");
    const TRUNCATED: &str = include_str!("fixtures/taobao/trace_truncated.json");

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn sub(code: &str) -> Option<SubStatus> {
        Some(SubStatus::new("taobao", code))
    }

    fn info(status: &str, steps: &[(&str, Option<&str>)]) -> TransitInfo {
        TransitInfo {
            tid: Some("1".into()),
            out_sid: Some("YT1".into()),
            company_name: None,
            status: status.into(),
            steps: steps
                .iter()
                .enumerate()
                .map(|(i, (desc, action))| TransitStep {
                    status_time: format!("2026-11-2{i} 10:00:00"),
                    status_desc: (*desc).into(),
                    action: action.map(str::to_string),
                })
                .collect(),
        }
    }

    #[test]
    fn every_documented_status_maps() {
        use Status::*;
        let want: [(&str, Status); 10] = [
            ("等候发送给物流公司", Pending),
            ("已提交给物流公司等待接单", Pending),
            ("已经确认消息接收", InfoReceived),
            ("物流公司已接单", InfoReceived),
            ("物流公司不接单", Exception),
            ("物流公司揽收失败", Exception),
            ("物流公司揽收成功", PickedUp),
            ("签收失败", DeliveryFailed),
            ("对方已签收", Delivered),
            ("对方拒绝签收", Returning),
        ];
        for (code, st) in want {
            assert_eq!(map_status(code), (st, sub(code)), "{code}");
            assert_eq!(map_status(&format!(" {code} ")), (st, sub(code)), "{code}");
        }
        assert_eq!(want.len(), TRADE_STATUSES.len(), "every status is tested");
        assert_eq!(map_status(""), (Status::Pending, None));
        // Unknown: InTransit, raw kept, noted once.
        assert_eq!(
            map_status("物流公司已转单"),
            (Status::InTransit, sub("物流公司已转单"))
        );
        assert!(unknown_codes().has_seen("status", "物流公司已转单"));
    }

    #[test]
    fn every_supported_action_maps() {
        use Status::*;
        let want: [(&str, Option<Status>); 18] = [
            ("CREATE", Some(InfoReceived)),
            ("CONSIGN", Some(InfoReceived)),
            ("TMS_ACCEPT", Some(InfoReceived)),
            ("ACCEPT", Some(PickedUp)),
            ("GOT", Some(PickedUp)),
            ("DEPARTURE", Some(InTransit)),
            ("ARRIVAL", Some(InTransit)),
            ("SENT_SCAN", Some(OutForDelivery)),
            ("STA_INBOUND", Some(AvailableForPickup)),
            ("SIGNED", Some(Delivered)),
            ("TMS_SIGN", Some(Delivered)),
            ("STA_SIGN", Some(Delivered)),
            ("AGENT_SIGN", Some(Delivered)),
            ("FAILED", Some(DeliveryFailed)),
            ("ISSUE", Some(Exception)),
            ("REJECT", Some(Returning)),
            ("RETURN", Some(Returning)),
            ("TRADE_SUCCESS", None),
        ];
        assert_eq!(want.len(), ACTIONS.len(), "every action is tested");
        for (code, st) in want {
            assert_eq!(map_action(code), st, "{code}");
            assert_eq!(
                map_action(&code.to_ascii_lowercase()),
                st,
                "{code} lower case"
            );
            assert!(!unknown_codes().has_seen("action", code), "{code}");
        }
        assert_eq!(map_action(""), None);
    }

    #[test]
    fn unknown_codes_are_counted_every_time_and_logged_once() {
        let u = UnknownCodes::new();
        assert!(u.note("action", "WAREHOUSE_OUT"));
        assert!(!u.note("action", "WAREHOUSE_OUT"));
        assert!(u.note("status", "WAREHOUSE_OUT"), "kinds are separate");
        assert_eq!(u.sightings(), 3);
        assert!(u.has_seen("action", "WAREHOUSE_OUT"));
        for i in 0..(UnknownCodes::MAX_DISTINCT + 10) {
            u.note("action", &format!("X{i}"));
        }
        assert!(!u.note("action", "ONE_TOO_MANY"), "bounded memory");
        assert_eq!(u.sightings(), 3 + UnknownCodes::MAX_DISTINCT as u64 + 11);
        // The module's logger sees unknown actions.
        let before = unknown_codes().sightings();
        assert_eq!(map_action("TMS_MYSTERY"), None);
        assert!(unknown_codes().has_seen("action", "TMS_MYSTERY"));
        assert!(unknown_codes().sightings() > before);
    }

    #[test]
    fn order_refs() {
        let r = |s: &str| parse_order_ref(s);
        let tr = |nick: Option<&str>, tid: &str| {
            Some(TradeRef {
                seller_nick: nick.map(str::to_string),
                tid: tid.into(),
            })
        };
        assert_eq!(
            r("top:kingdo:4100000000000001"),
            tr(Some("kingdo"), "4100000000000001")
        );
        assert_eq!(
            r("fw199:可拆卸aa:1410072240792463390"),
            tr(Some("可拆卸aa"), "1410072240792463390")
        );
        assert_eq!(r("TOP:a:b:c:42"), tr(Some("a:b:c"), "42"));
        assert_eq!(r(" 4100000000000001 "), tr(None, "4100000000000001"));
        assert_eq!(r("top::42"), tr(None, "42"));
        for bad in [
            "",
            "TB-20261124-0001",
            "top:kingdo:",
            "top:kingdo:41x",
            "jd:shop:42",
            "top:42",
            "123456789012345678901234567890123",
        ] {
            assert_eq!(r(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_form_is_signed_over_every_field() {
        let trade = TradeRef {
            seller_nick: Some("kingdo".into()),
            tid: "4100000000000001".into(),
        };
        for method in [SignMethod::Md5, SignMethod::Hmac] {
            let req = TraceRequest {
                app_key: "12345",
                session: "sess",
                sign_method: method,
                trade: &trade,
                timestamp: utc("2026-11-24T06:00:00Z"),
            };
            let form = build_form(&req, "topsecret");
            let m: HashMap<&str, &str> =
                form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            assert_eq!(m["method"], "taobao.logistics.trace.search");
            assert_eq!(m["tid"], "4100000000000001");
            assert_eq!(m["seller_nick"], "kingdo");
            assert_eq!(m["timestamp"], "2026-11-24 14:00:00", "Beijing time");
            assert_eq!(m["format"], "json");
            assert_eq!(m["v"], "2.0");
            assert_eq!(m["sign_method"], method.as_str());
            assert_eq!(m["session"], "sess");
            assert!(!m.contains_key("is_split"));
            assert_eq!(
                m["sign"],
                top_sign(m.iter().map(|(k, v)| (*k, *v)), "topsecret", method)
            );
            assert_eq!(m["sign"].len(), 32);
        }
        let bare = TradeRef {
            seller_nick: None,
            tid: "42".into(),
        };
        let form = build_form(
            &TraceRequest {
                app_key: "k",
                session: "s",
                sign_method: SignMethod::Md5,
                trade: &bare,
                timestamp: utc("2026-11-24T06:00:00Z"),
            },
            "x",
        );
        assert!(form.iter().all(|(k, _)| k != "seller_nick"));
    }

    #[test]
    fn golden_in_transit_with_several_steps() {
        let snap = parse_response(IN_TRANSIT, "4100000000000001", "YT7412345678901").unwrap();
        assert_eq!(snap.status, Status::OutForDelivery);
        assert_eq!(snap.sub_status, sub("SENT_SCAN"));
        assert_eq!(snap.events.len(), 5);
        assert_eq!(snap.events[0].time, utc("2026-11-20T01:12:44Z"));
        assert_eq!(snap.events[0].description, "卖家已发货");
        assert_eq!(snap.events[0].status, Some(Status::InfoReceived));
        assert_eq!(snap.events[1].raw_code.as_deref(), Some("GOT"));
        assert_eq!(snap.events[1].status, Some(Status::PickedUp));
        assert_eq!(snap.events[3].status, Some(Status::InTransit));
        assert_eq!(snap.events[4].time, utc("2026-11-23T00:30:00Z"));
        // Waybill numbers compare without case or spaces.
        assert_eq!(
            parse_response(IN_TRANSIT, "4100000000000001", "yt7412345678901 ")
                .unwrap()
                .status,
            Status::OutForDelivery
        );
    }

    #[test]
    fn golden_signed() {
        let snap = parse_response(SIGNED, "4100000000000002", "SF1234567890123").unwrap();
        assert_eq!(snap.status, Status::Delivered);
        assert_eq!(snap.sub_status, sub("SIGNED"));
        assert_eq!(snap.events.len(), 3);
        assert_eq!(snap.events[2].time, utc("2026-11-22T10:03:51Z"));
    }

    #[test]
    fn golden_refused() {
        let snap = parse_response(REFUSED, "4100000000000003", "773123456789012").unwrap();
        assert_eq!(snap.status, Status::Returning);
        assert_eq!(snap.sub_status, sub("REJECT"));
        assert_eq!(snap.events.len(), 3);
    }

    #[test]
    fn golden_throttle_is_retryable_for_the_ban() {
        match parse_response(THROTTLED, "4100000000000001", "YT7412345678901") {
            Err(ProviderError::Retryable {
                provider,
                retry_after,
                reason,
            }) => {
                assert_eq!(provider, "taobao");
                assert_eq!(retry_after, Some(Duration::from_secs(41)));
                assert!(
                    reason.contains("accesscontrol.limited-by-api-access-count"),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn golden_isp_is_retryable() {
        match parse_response(ISP, "1", "YT1") {
            Err(ProviderError::Retryable {
                retry_after,
                reason,
                ..
            }) => {
                assert_eq!(retry_after, None);
                assert!(reason.contains("isp.remote-service-timeout"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn golden_isv_invalid_parameter_is_permanent() {
        match parse_response(ISV_INVALID_PARAMETER, "1", "YT1") {
            Err(ProviderError::Permanent { provider, reason }) => {
                assert_eq!(provider, "taobao");
                assert!(reason.contains("isv.invalid-parameter"), "{reason}");
                assert!(!reason.contains("re-authorize"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn golden_session_invalid_asks_for_reauthorization() {
        match parse_response(SESSION_INVALID, "1", "YT1") {
            Err(ProviderError::Permanent { reason, .. }) => {
                assert!(reason.contains("TOP error 27"), "{reason}");
                assert!(reason.contains("re-authorize"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn golden_truncated_body_is_retryable_with_a_prefix() {
        match parse_response(TRUNCATED, "4100000000000001", "YT7412345678901") {
            Err(ProviderError::Retryable { reason, .. }) => {
                assert!(reason.contains("unreadable TOP answer"), "{reason}");
                assert!(
                    reason.contains("logistics_trace_search_response"),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
        let html = "<html><body>502 Bad Gateway</body></html>";
        assert!(parse_response(html, "1", "YT1").unwrap_err().is_retryable());
        assert!(parse_response("", "1", "YT1").unwrap_err().is_retryable());
        let other = parse_response(r#"{"trades_sold_increment_get_response":{}}"#, "1", "YT1");
        assert!(other.unwrap_err().is_retryable());
        let long = "x".repeat(10_000);
        assert!(
            parse_response(&long, "1", "YT1")
                .unwrap_err()
                .to_string()
                .len()
                < 400
        );
    }

    #[test]
    fn error_codes_are_classified() {
        let err = |code: i64, sub_code: &str, sub_msg: &str| {
            error_from_response(
                &json!({"code": code, "msg": "m", "sub_code": sub_code, "sub_msg": sub_msg}),
            )
        };
        let e = err(
            7,
            "accesscontrol.limited-by-app-access-count",
            "This ban will last for 3 more seconds",
        );
        assert!(
            matches!(e, ProviderError::Retryable { retry_after: Some(d), .. } if d == Duration::from_secs(3)),
            "{e:?}"
        );
        let e = err(7, "", "");
        assert!(
            matches!(
                e,
                ProviderError::Retryable {
                    retry_after: None,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(err(15, "", "").is_retryable());
        assert!(err(15, "isp.unknown-error", "").is_retryable());
        let sign = err(25, "", "");
        assert!(!sign.is_retryable());
        assert!(sign.to_string().contains("TOP_APP_SECRET"), "{sign}");
        for code in [26, 27] {
            let e = err(code, "", "");
            assert!(!e.is_retryable());
            assert!(e.to_string().contains("re-authorize"), "{e}");
        }
        let e = err(15, "isv.session-expired", "");
        assert!(e.to_string().contains("re-authorize"), "{e}");
        assert!(!err(15, "isv.trade-not-exist", "").is_retryable());
        assert!(!err(29, "", "").is_retryable());
        assert!(!err(11, "", "").is_retryable());
    }

    #[test]
    fn the_parcel_is_picked_by_waybill() {
        // Another waybill of the same (split) trade: permanent.
        match parse_response(IN_TRANSIT, "4100000000000001", "YT0000000000001") {
            Err(ProviderError::Permanent { reason, .. }) => assert_eq!(
                reason,
                "order 4100000000000001 ships under YT7412345678901, not YT0000000000001"
            ),
            other => panic!("{other:?}"),
        }
        // Another trade: a mix-up, retryable, never stored.
        let e = parse_response(IN_TRANSIT, "4100000000000009", "YT7412345678901").unwrap_err();
        assert!(
            e.is_retryable() && e.to_string().contains("4100000000000001"),
            "{e}"
        );
        // A list of parcels: ours is chosen.
        let body = r#"{"logistics_trace_search_response":{"transit_step_result":[
            {"tid":7,"out_sid":"SF1","status":"对方已签收","trace_list":{"transit_step_info":[{"status_time":"2026-11-20 10:00:00","status_desc":"签收","action":"SIGNED"}]}},
            {"tid":7,"out_sid":"YT2","status":"物流公司揽收成功","trace_list":{"transit_step_info":[{"status_time":"2026-11-20 10:00:00","status_desc":"揽收","action":"GOT"}]}}]}}"#;
        let snap = parse_response(body, "7", "YT2").unwrap();
        assert_eq!((snap.status, snap.events.len()), (Status::PickedUp, 1));
        let e = parse_response(body, "7", "ZT3").unwrap_err();
        assert!(
            !e.is_retryable() && e.to_string().contains("SF1, YT2"),
            "{e}"
        );
        // No out_sid (not shipped yet): accepted.
        let body = r#"{"logistics_trace_search_response":{"tid":7,"status":"等候发送给物流公司"}}"#;
        let snap = parse_response(body, "7", "YT2").unwrap();
        assert_eq!(snap.status, Status::Pending);
        assert_eq!(snap.sub_status, sub("等候发送给物流公司"));
        assert!(snap.events.is_empty());
    }

    #[test]
    fn trade_status_and_lines_combine() {
        use Status::*;
        let cases: Vec<(TransitInfo, Status, Option<SubStatus>)> = vec![
            // Offline consignment: signed from the start, no lines.
            (info("对方已签收", &[]), InfoReceived, sub("对方已签收")),
            // ... or one consign line.
            (
                info("对方已签收", &[("卖家已发货", Some("CONSIGN"))]),
                InfoReceived,
                sub("CONSIGN"),
            ),
            // A newer forward line wins over 对方已签收.
            (
                info(
                    "对方已签收",
                    &[("揽收", Some("GOT")), ("派件", Some("SENT_SCAN"))],
                ),
                OutForDelivery,
                sub("SENT_SCAN"),
            ),
            // An unknown newest line under 对方已签收: trust the trade status.
            (
                info(
                    "对方已签收",
                    &[
                        ("派件", Some("SENT_SCAN")),
                        ("已签收", Some("SIGN_BY_NEIGHBOUR")),
                    ],
                ),
                Delivered,
                sub("对方已签收"),
            ),
            // Refused then signed by the seller: Returned, by line or by trade status.
            (
                info(
                    "对方拒绝签收",
                    &[("拒收", Some("REJECT")), ("退回件已签收", Some("SIGNED"))],
                ),
                Returned,
                sub("SIGNED"),
            ),
            (
                info("对方拒绝签收", &[("派件", Some("SENT_SCAN"))]),
                Returning,
                sub("对方拒绝签收"),
            ),
            (
                info(
                    "物流公司揽收成功",
                    &[("退回", Some("RETURN")), ("签收", Some("SIGNED"))],
                ),
                Returned,
                sub("SIGNED"),
            ),
            // Delivery failed, with or without its own line.
            (
                info("签收失败", &[("派件", Some("SENT_SCAN"))]),
                DeliveryFailed,
                sub("签收失败"),
            ),
            (
                info(
                    "签收失败",
                    &[("派件", Some("SENT_SCAN")), ("未妥投", Some("FAILED"))],
                ),
                DeliveryFailed,
                sub("FAILED"),
            ),
            (
                info(
                    "签收失败",
                    &[("派件", Some("FAILED")), ("入柜", Some("STA_INBOUND"))],
                ),
                AvailableForPickup,
                sub("STA_INBOUND"),
            ),
            // Picked up: lines give the detail, never move it back.
            (
                info("物流公司揽收成功", &[]),
                PickedUp,
                sub("物流公司揽收成功"),
            ),
            (
                info("物流公司揽收成功", &[("发货", Some("CONSIGN"))]),
                PickedUp,
                sub("物流公司揽收成功"),
            ),
            (
                info(
                    "物流公司揽收成功",
                    &[("揽收", Some("GOT")), ("问题件", Some("ISSUE"))],
                ),
                Exception,
                sub("ISSUE"),
            ),
            (
                info(
                    "物流公司揽收成功",
                    &[("揽收", Some("GOT")), ("交易成功", Some("TRADE_SUCCESS"))],
                ),
                PickedUp,
                sub("GOT"),
            ),
            // An unknown action keeps the line, raw, unclassified; status from the trade.
            (
                info("物流公司揽收成功", &[("???", Some("WAREHOUSE_SCAN"))]),
                PickedUp,
                sub("物流公司揽收成功"),
            ),
            (
                info("物流公司已接单", &[]),
                InfoReceived,
                sub("物流公司已接单"),
            ),
            (
                info("物流公司已接单", &[("揽收", Some("GOT"))]),
                PickedUp,
                sub("GOT"),
            ),
            (
                info("物流公司揽收失败", &[("揽收", Some("GOT"))]),
                Exception,
                sub("物流公司揽收失败"),
            ),
            (
                info("物流公司揽收失败", &[("发出", Some("DEPARTURE"))]),
                InTransit,
                sub("DEPARTURE"),
            ),
            // Unknown trade status.
            (info("物流公司已转单", &[]), Pending, sub("物流公司已转单")),
            (
                info("物流公司已转单", &[("?", Some("TMS_MYSTERY"))]),
                InTransit,
                sub("物流公司已转单"),
            ),
            (
                info("物流公司已转单", &[("派件", Some("SENT_SCAN"))]),
                OutForDelivery,
                sub("SENT_SCAN"),
            ),
            (info("", &[]), Pending, None),
        ];
        for (i, want, want_sub) in cases {
            let snap = to_snapshot(&i);
            assert_eq!((snap.status, &snap.sub_status), (want, &want_sub), "{i:?}");
            assert_eq!(snap.events.len(), i.steps.len());
        }
        let unknown = to_snapshot(&info(
            "物流公司揽收成功",
            &[("???", Some("WAREHOUSE_SCAN"))],
        ));
        assert_eq!(
            unknown.events[0].raw_code.as_deref(),
            Some("WAREHOUSE_SCAN")
        );
        assert_eq!(unknown.events[0].status, None);
    }

    #[test]
    fn steps_are_ordered_and_unreadable_times_skipped() {
        let mut i = info(
            "物流公司揽收成功",
            &[("派件", Some("SENT_SCAN")), ("揽收", Some("GOT"))],
        );
        // Newest first on the wire: the newest by time still decides.
        i.steps[0].status_time = "2026-11-22 10:00:00".into();
        i.steps[1].status_time = "2026-11-21 10:00:00".into();
        i.steps.push(TransitStep {
            status_time: "昨天".into(),
            status_desc: "bad".into(),
            action: Some("SIGNED".into()),
        });
        let snap = to_snapshot(&i);
        assert_eq!(snap.status, Status::OutForDelivery);
        assert_eq!(snap.events.len(), 2);
        assert_eq!(snap.events[0].time, utc("2026-11-21T02:00:00Z"));
    }

    #[test]
    fn answers_round_trip_for_the_sandbox() {
        let i = TransitInfo {
            tid: Some("4100000000000001".into()),
            out_sid: Some("YT7412345678901".into()),
            company_name: Some("圆通速递".into()),
            status: "物流公司揽收成功".into(),
            steps: vec![TransitStep {
                status_time: "2026-11-20 17:05:10".into(),
                status_desc: "已揽收".into(),
                action: Some("GOT".into()),
            }],
        };
        let v = answer_json(&i);
        assert_eq!(v[RESPONSE_KEY]["tid"], json!(4100000000000001u64));
        assert_eq!(
            v[RESPONSE_KEY]["trace_list"]["transit_step_info"][0]["action"],
            "GOT"
        );
        assert_eq!(decode_response(&v.to_string()).unwrap(), vec![i.clone()]);
        // The golden file reads into the same shape.
        let golden = decode_response(IN_TRANSIT).unwrap();
        assert_eq!(golden.len(), 1);
        assert_eq!(golden[0].company_name.as_deref(), Some("圆通速递"));
        assert_eq!(golden[0].steps.len(), 5);
        assert_eq!(
            decode_response(&answer_json(&golden[0]).to_string()).unwrap(),
            golden
        );
    }

    #[test]
    fn config_from_env() {
        let env = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let base = [
            ("TOP_APP_KEY", "12345"),
            ("TOP_APP_SECRET", "topsecret"),
            ("TOP_SESSION", "sess-token"),
        ];
        let c = TaobaoConfig::from_env(&env(&base)).unwrap();
        assert_eq!(c.endpoint, "https://eco.taobao.com/router/rest");
        assert_eq!(c.sign_method, SignMethod::Md5);
        assert_eq!(c.timeout, Duration::from_millis(5000));
        let dbg = format!("{c:?}");
        assert!(
            !dbg.contains("topsecret") && !dbg.contains("sess-token"),
            "{dbg}"
        );

        let mut more = base.to_vec();
        more.extend([
            ("TOP_ENDPOINT", "http://top.local/router/rest"),
            ("TOP_SIGN_METHOD", "hmac"),
            ("PROVIDER_TIMEOUT_MS", "1500"),
        ]);
        let c = TaobaoConfig::from_env(&env(&more)).unwrap();
        assert_eq!(c.endpoint, "http://top.local/router/rest");
        assert_eq!(c.sign_method, SignMethod::Hmac);
        assert_eq!(c.timeout, Duration::from_millis(1500));
        more.push(("TAOBAO_TRACE_ENDPOINT", "http://trace.local/router/rest"));
        assert_eq!(
            TaobaoConfig::from_env(&env(&more)).unwrap().endpoint,
            "http://trace.local/router/rest"
        );

        let mut bad = base.to_vec();
        bad.push(("TOP_SIGN_METHOD", "hmac-sha256"));
        assert!(matches!(
            TaobaoConfig::from_env(&env(&bad)),
            Err(ConfigError::Invalid {
                name: "TOP_SIGN_METHOD",
                ..
            })
        ));
        assert!(matches!(
            TaobaoConfig::from_env(&env(&base[..2])),
            Err(ConfigError::Missing("TOP_SESSION"))
        ));
    }

    #[tokio::test]
    async fn a_query_without_a_taobao_order_is_permanent_without_a_call() {
        let c = TaobaoClient::new(
            TaobaoConfig {
                // Nothing listens here: a call would fail as retryable.
                endpoint: "http://127.0.0.1:9/router/rest".into(),
                app_key: "k".into(),
                secret: Secret::new("s"),
                session: Secret::new("t"),
                sign_method: SignMethod::Md5,
                timeout: Duration::from_secs(1),
            },
            reqwest::Client::new(),
        );
        assert_eq!(c.name(), "taobao");
        for order_ref in [None, Some("TB-20261124-0001".to_string())] {
            let q = TraceQuery {
                id: ShipmentId::parse("YTO", "YT7412345678901").unwrap(),
                phone: None,
                order_ref,
            };
            match c.query(&q).await {
                Err(ProviderError::Permanent { reason, .. }) => {
                    assert_eq!(reason, "taobao trace needs the Taobao order id (order_ref)")
                }
                other => panic!("{other:?}"),
            }
        }
        let q = TraceQuery {
            id: ShipmentId::parse("YTO", "YT7412345678901").unwrap(),
            phone: None,
            order_ref: Some("top:kingdo:42".into()),
        };
        assert!(
            c.query(&q).await.unwrap_err().is_retryable(),
            "connection refused"
        );
    }
}
