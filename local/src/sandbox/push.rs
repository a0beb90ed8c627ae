//! Push subscriptions (Kdniao 8008 on `/api/dist`, Kuaidi100 `/poll`) and the pushes the
//! providers send to a subscriber's callback URL.
//!
//! Routes:
//! - `POST /api/dist` — Kdniao 8008 monitor subscription: the query endpoint's form, EBusinessID
//!   and DataSign checks; answers Kdniao's `{EBusinessID, UpdateTime, Success, Reason,
//!   EstimatedDeliveryTime}`. A waybill the sandbox does not know still subscribes (it is pushed
//!   once it is registered and scanned). Subscribing again renews the callback.
//! - `POST /poll` — Kuaidi100 subscription (`schema=json`, `param`): returnCode 200, 501 while
//!   the waybill is still tracked, 600 bad key, 700 bad data or callback URL, 702 unknown
//!   carrier.
//! - `GET /sandbox/subscriptions` — subscriptions and push counters.
//! - `POST /sandbox/pushes/deliver` — run [`Sandbox::deliver_pushes`] once.
//!
//! Pushes are not sent by a timer: [`Sandbox::deliver_pushes`] sends, for every subscription
//! whose journey (as visible at the sandbox clock) differs from what its callback last
//! acknowledged, the push the real provider would send, and records it as delivered only on the
//! provider's expected acknowledgement. Anything else is retried on the next call. Bodies are
//! built with the shared crate's `build_push_form`, so sandbox and receiver share one format.

use super::journey::{normalize_number, Journey, Step};
use super::kdniao::{china_time, failure, KdniaoForm};
use super::{Sandbox, Shared};
use axum::extract::rejection::FormRejection;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use parcelwatch::domain::TrackingNumber;
use parcelwatch::providers::kdniao::{data_sign, format_accept_time, KdniaoResponse, KdniaoTrace};
use parcelwatch::providers::{ct_eq, kdniao_push, kuaidi100};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Path of Kdniao's subscription endpoint, as on `api.kdniao.com`.
pub const KDNIAO_SUBSCRIBE_PATH: &str = "/api/dist";
/// Path of Kuaidi100's subscription endpoint, as on `poll.kuaidi100.com`.
pub const KUAIDI100_SUBSCRIBE_PATH: &str = "/poll";
/// The Kuaidi100 account the sandbox accepts.
pub const DEFAULT_KUAIDI100_KEY: &str = "sandbox-kuaidi100-key-0001";
pub const DEFAULT_KUAIDI100_CUSTOMER: &str = "SANDBOXCUSTOMER0001";
/// Kdniao batches waybills with the same callback into one push, at most this many.
pub const MAX_ITEMS_PER_KDNIAO_PUSH: usize = 10;
/// How long the sandbox waits for a callback to answer.
const PUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// Pushes in flight at once.
const PUSH_CONCURRENCY: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PushProvider {
    Kdniao,
    Kuaidi100,
}

/// What a callback last acknowledged for a subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pushed {
    /// Kdniao StateEx of the journey at the time of the push.
    pub state_ex: String,
    /// Trace lines in the push.
    pub lines: usize,
}

/// One subscription, as [`Sandbox::subscriptions`] shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Subscription {
    pub provider: PushProvider,
    /// parcelwatch / Kdniao ShipperCode vocabulary (`YTO`).
    pub carrier: String,
    /// Kuaidi100 `company` as subscribed (`yuantong`); Kuaidi100 only.
    pub com: Option<String>,
    pub number: String,
    pub callback_url: String,
    /// Kdniao `OrderCode`, echoed back in pushes.
    pub order_code: Option<String>,
    /// Whether the subscriber sent a salt (Kuaidi100); the salt itself is never shown.
    pub salted: bool,
    pub subscribed_at: DateTime<Utc>,
    pub times_subscribed: u64,
    /// What the callback last acknowledged; `None` until a first push is acknowledged.
    pub last_acked: Option<Pushed>,
    pub pushes_sent: u64,
    pub pushes_acked: u64,
    pub pushes_failed: u64,
    /// Tracking ended: a Kuaidi100 `shutdown` (signed) push was acknowledged.
    pub ended: bool,
}

type SubKey = (PushProvider, String, String);

#[derive(Debug, Clone)]
struct Entry {
    sub: Subscription,
    salt: Option<String>,
}

/// Subscription and push counters, read with [`Sandbox::push_stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PushStats {
    pub kdniao_subscribe_requests: u64,
    pub kuaidi100_subscribe_requests: u64,
    /// Subscriptions accepted (new or renewed).
    pub subscribed: u64,
    /// Kuaidi100 501 answers.
    pub duplicates: u64,
    /// Kdniao DataSign failures or unknown EBusinessID.
    pub bad_sign: u64,
    /// Kuaidi100 600 answers.
    pub bad_key: u64,
    /// Everything else refused.
    pub bad_request: u64,
    /// Push requests sent, acknowledged, failed (bad reply, HTTP error, no answer).
    pub pushes_sent: u64,
    pub pushes_acked: u64,
    pub pushes_failed: u64,
    /// Pushes sent with a deliberately wrong signature ([`Sandbox::corrupt_next_pushes`]).
    pub pushes_corrupted: u64,
}

#[derive(Debug, Default)]
struct Counters {
    kdniao_subscribe_requests: AtomicU64,
    kuaidi100_subscribe_requests: AtomicU64,
    subscribed: AtomicU64,
    duplicates: AtomicU64,
    bad_sign: AtomicU64,
    bad_key: AtomicU64,
    bad_request: AtomicU64,
    pushes_sent: AtomicU64,
    pushes_acked: AtomicU64,
    pushes_failed: AtomicU64,
    pushes_corrupted: AtomicU64,
}

fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

/// Subscriptions the sandbox's providers hold.
#[derive(Debug, Default)]
pub(crate) struct Subscriptions {
    entries: Mutex<BTreeMap<SubKey, Entry>>,
    corrupt_next: AtomicU64,
    counters: Counters,
}

impl Subscriptions {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<SubKey, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stats(&self) -> PushStats {
        let c = &self.counters;
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        PushStats {
            kdniao_subscribe_requests: r(&c.kdniao_subscribe_requests),
            kuaidi100_subscribe_requests: r(&c.kuaidi100_subscribe_requests),
            subscribed: r(&c.subscribed),
            duplicates: r(&c.duplicates),
            bad_sign: r(&c.bad_sign),
            bad_key: r(&c.bad_key),
            bad_request: r(&c.bad_request),
            pushes_sent: r(&c.pushes_sent),
            pushes_acked: r(&c.pushes_acked),
            pushes_failed: r(&c.pushes_failed),
            pushes_corrupted: r(&c.pushes_corrupted),
        }
    }

    fn list(&self) -> Vec<Subscription> {
        self.lock().values().map(|e| e.sub.clone()).collect()
    }

    /// Whether the next push should carry a wrong signature (and count it down).
    fn take_corruption(&self) -> bool {
        let took = self
            .corrupt_next
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok();
        if took {
            bump(&self.counters.pushes_corrupted);
        }
        took
    }
}

/// The subscription and admin routes, merged into the sandbox router.
pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route(KDNIAO_SUBSCRIBE_PATH, post(kdniao_subscribe))
        .route(KUAIDI100_SUBSCRIBE_PATH, post(kuaidi100_subscribe))
        .route("/sandbox/subscriptions", get(list_subscriptions))
        .route("/sandbox/pushes/deliver", post(deliver_now))
}

fn is_http_url(s: &str) -> bool {
    let s = s.trim();
    (s.starts_with("http://") || s.starts_with("https://"))
        && s.split_once("://")
            .is_some_and(|(_, rest)| !rest.is_empty())
        && !s.contains(char::is_whitespace)
}

// ---------------------------------------------------------------------------------------------
// Kdniao 8008
// ---------------------------------------------------------------------------------------------

/// RequestData of 8008.
#[derive(Debug, Deserialize)]
struct SubscribeRequest {
    #[serde(rename = "OrderCode", default)]
    order_code: Option<String>,
    #[serde(rename = "ShipperCode", default)]
    shipper_code: Option<String>,
    #[serde(rename = "LogisticCode", default)]
    logistic_code: Option<String>,
    #[serde(rename = "Callback", default)]
    callback: Option<String>,
    #[serde(rename = "CustomerName", default)]
    customer_name: Option<String>,
}

async fn kdniao_subscribe(
    State(shared): State<Arc<Shared>>,
    form: Result<Form<KdniaoForm>, FormRejection>,
) -> Json<Value> {
    let c = &shared.push.counters;
    bump(&c.kdniao_subscribe_requests);
    let our_id = shared.cfg.ebusiness_id.as_str();
    let refuse = |counter: &AtomicU64, eb: &str, reason: &str| {
        bump(counter);
        Json(failure(eb, reason))
    };
    let form = match form {
        Ok(Form(f)) => f,
        Err(rejection) => {
            return refuse(
                &c.bad_request,
                our_id,
                &format!(
                    "请求格式错误，须为application/x-www-form-urlencoded: {}",
                    rejection.body_text()
                ),
            )
        }
    };
    let (Some(request_data), Some(ebusiness_id), Some(request_type), Some(sign)) = (
        form.request_data.as_deref(),
        form.ebusiness_id.as_deref(),
        form.request_type.as_deref(),
        form.data_sign.as_deref(),
    ) else {
        return refuse(
            &c.bad_request,
            our_id,
            "缺少必填参数: RequestData,EBusinessID,RequestType,DataSign",
        );
    };
    if !ct_eq(ebusiness_id.trim(), our_id) {
        return refuse(
            &c.bad_sign,
            ebusiness_id,
            "EBusinessID不存在或未开通接口权限",
        );
    }
    if !ct_eq(sign, &data_sign(request_data, &shared.cfg.app_key)) {
        return refuse(&c.bad_sign, our_id, "DataSign验证失败");
    }
    if request_type.trim() != kdniao_push::SUBSCRIBE_REQUEST_TYPE {
        return refuse(
            &c.bad_request,
            our_id,
            &format!("RequestType不支持: {request_type}，本接口仅支持8008"),
        );
    }
    if form.data_type.as_deref().map(str::trim) != Some("2") {
        return refuse(&c.bad_request, our_id, "DataType参数错误，必须为2(JSON)");
    }
    let req: SubscribeRequest = match serde_json::from_str(request_data) {
        Ok(r) => r,
        Err(e) => return refuse(&c.bad_request, our_id, &format!("RequestData格式错误: {e}")),
    };
    let shipper = req
        .shipper_code
        .as_deref()
        .map(str::trim)
        .unwrap_or_default()
        .to_ascii_uppercase();
    let number = normalize_number(req.logistic_code.as_deref().unwrap_or_default());
    if shipper.is_empty() || number.is_empty() {
        return refuse(
            &c.bad_request,
            our_id,
            "缺少必填参数: ShipperCode和LogisticCode不能为空",
        );
    }
    if shipper == "SF" {
        let ok = req
            .customer_name
            .as_deref()
            .map(str::trim)
            .is_some_and(|n| n.len() == 4 && n.bytes().all(|b| b.is_ascii_digit()));
        if !ok {
            return refuse(
                &c.bad_request,
                our_id,
                "参数错误：顺丰单号订阅须提供CustomerName（寄件人或收件人手机号后四位）",
            );
        }
    }
    // The real service pushes to the URL set in the merchant console; the sandbox has no
    // console, so it delivers to `Callback` and insists on one.
    let Some(callback) = req
        .callback
        .as_deref()
        .map(str::trim)
        .filter(|u| is_http_url(u))
    else {
        return refuse(
            &c.bad_request,
            our_id,
            "参数错误：沙箱须提供Callback推送地址(http/https)",
        );
    };

    let now = shared.clock.now();
    let order_code = req
        .order_code
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    upsert(
        &shared,
        (PushProvider::Kdniao, shipper.clone(), number.clone()),
        |existing| match existing {
            // Renewing keeps what was acknowledged: the next push only carries news.
            Some(mut e) => {
                e.sub.callback_url = callback.to_owned();
                e.sub.order_code = order_code.clone();
                e.sub.times_subscribed += 1;
                e.sub.ended = false;
                e
            }
            None => Entry {
                sub: Subscription {
                    provider: PushProvider::Kdniao,
                    carrier: shipper.clone(),
                    com: None,
                    number: number.clone(),
                    callback_url: callback.to_owned(),
                    order_code: order_code.clone(),
                    salted: false,
                    subscribed_at: now,
                    times_subscribed: 1,
                    last_acked: None,
                    pushes_sent: 0,
                    pushes_acked: 0,
                    pushes_failed: 0,
                    ended: false,
                },
                salt: None,
            },
        },
    );
    bump(&c.subscribed);
    Json(json!({
        "EBusinessID": our_id,
        "UpdateTime": china_time(now),
        "Success": true,
        "Reason": "",
        "EstimatedDeliveryTime": "",
    }))
}

fn upsert(shared: &Shared, key: SubKey, f: impl FnOnce(Option<Entry>) -> Entry) {
    let mut entries = shared.push.lock();
    let existing = entries.remove(&key);
    entries.insert(key, f(existing));
}

// ---------------------------------------------------------------------------------------------
// Kuaidi100 /poll
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
struct PollForm {
    schema: Option<String>,
    param: Option<String>,
}

fn kuaidi100_answer(code: &str, message: &str) -> Json<Value> {
    Json(json!({ "result": code == "200", "returnCode": code, "message": message }))
}

async fn kuaidi100_subscribe(
    State(shared): State<Arc<Shared>>,
    form: Result<Form<PollForm>, FormRejection>,
) -> Json<Value> {
    let c = &shared.push.counters;
    bump(&c.kuaidi100_subscribe_requests);
    const BAD_DATA: &str =
        "订阅方的订阅数据存在错误（如不支持的快递公司、单号为空、单号超长等）或错误的回调地址";
    let bad = |reason: &str| {
        bump(&c.bad_request);
        kuaidi100_answer("700", &format!("{BAD_DATA}: {reason}"))
    };
    let Ok(Form(form)) = form else {
        return bad("请求须为application/x-www-form-urlencoded");
    };
    if form.schema.as_deref().map(str::trim) != Some("json") {
        return bad("schema须为json");
    }
    let Some(param) = form
        .param
        .as_deref()
        .and_then(|p| serde_json::from_str::<Value>(p).ok())
    else {
        return bad("param不是JSON");
    };
    let text = |v: &Value| v.as_str().map(str::trim).unwrap_or_default().to_owned();
    if !ct_eq(&text(&param["key"]), DEFAULT_KUAIDI100_KEY) {
        bump(&c.bad_key);
        return kuaidi100_answer("600", "您不是合法的订阅者（即授权Key出错）");
    }
    let com = text(&param["company"]).to_ascii_lowercase();
    let Some(carrier) = kuaidi100::carrier_of(&com) else {
        bump(&c.bad_request);
        return kuaidi100_answer("702", "POLL:识别不到该单号对应的快递公司");
    };
    let Ok(number) = TrackingNumber::parse(&text(&param["number"])) else {
        return bad("单号为空或格式错误");
    };
    let parameters = &param["parameters"];
    let callback = text(&parameters["callbackurl"]);
    if !is_http_url(&callback) {
        return bad("callbackurl须为http(s)地址");
    }
    let salt = Some(text(&parameters["salt"])).filter(|s| !s.is_empty());

    let key = (
        PushProvider::Kuaidi100,
        carrier.as_str().to_owned(),
        number.as_str().to_owned(),
    );
    let now = shared.clock.now();
    let mut entries = shared.push.lock();
    let renewed = match entries.get(&key) {
        Some(e) if !e.sub.ended => {
            bump(&c.duplicates);
            return kuaidi100_answer("501", "POLL:重复订阅");
        }
        Some(e) => e.sub.times_subscribed + 1,
        None => 1,
    };
    entries.insert(
        key,
        Entry {
            sub: Subscription {
                provider: PushProvider::Kuaidi100,
                carrier: carrier.as_str().to_owned(),
                com: Some(com),
                number: number.as_str().to_owned(),
                callback_url: callback,
                order_code: None,
                salted: salt.is_some(),
                subscribed_at: now,
                times_subscribed: renewed,
                // A new tracking period starts from nothing: the first push has everything.
                last_acked: None,
                pushes_sent: 0,
                pushes_acked: 0,
                pushes_failed: 0,
                ended: false,
            },
            salt,
        },
    );
    drop(entries);
    bump(&c.subscribed);
    kuaidi100_answer("200", "提交成功")
}

// ---------------------------------------------------------------------------------------------
// Building pushes
// ---------------------------------------------------------------------------------------------

/// Kuaidi100's code for a Kdniao StateEx / Action, knowing whether the parcel was already on its
/// way back (`404`): a sign after that is Kuaidi100's `4` (退签, returned and signed for).
///
/// | Kdniao | Kuaidi100 | | Kdniao | Kuaidi100 |
/// |---|---|---|---|---|
/// | 1 picked up | 103 | | 3 signed | 301 (4 after 404) |
/// | 2 in transit | 1002 | | 311 from locker | 304 (4 after 404) |
/// | 201 destination city | 1001 | | 4, 401, 402, 403 problems | 2 |
/// | 202 out for delivery | 5 | | 404 refused / returning | 6 |
/// | 211 locker / station | 501 | | 412 locker overdue | 501 |
///
/// Undocumented codes go by their State group: 1xx → 1, 2xx → 0, 3xx → 3, 4xx → 2.
pub fn kuaidi100_code(kdniao_code: &str, returning_seen: bool) -> &'static str {
    match kdniao_code {
        "1" => "103",
        "2" => "1002",
        "201" => "1001",
        "202" => "5",
        "211" | "412" => "501",
        "3" | "311" if returning_seen => "4",
        "3" => "301",
        "311" => "304",
        "4" | "401" | "402" | "403" => "2",
        "404" => "6",
        other => match other.as_bytes().first() {
            Some(b'1') => "1",
            Some(b'3') if returning_seen => "4",
            Some(b'3') => "3",
            Some(b'4') => "2",
            _ => "0",
        },
    }
}

/// The Kuaidi100 push for a journey as visible at `now`, and whether it is final (signed:
/// `shutdown`). `None` while there is no trace line.
pub fn kuaidi100_push_for(
    journey: &Journey,
    now: DateTime<Utc>,
    com: &str,
    number: &str,
) -> Option<(kuaidi100::Kuaidi100Push, bool)> {
    let mut returning = false;
    let mut state = "0";
    let mut lines = Vec::new();
    for s in journey.steps.iter().take_while(|s| s.at <= now) {
        state = kuaidi100_code(s.state_ex, returning);
        if s.emits_line {
            let code = kuaidi100_code(&s.action, returning);
            let t = format_accept_time(s.at);
            lines.push(kuaidi100::Kuaidi100Line {
                time: Some(t.clone()),
                ftime: Some(t),
                context: Some(s.station.clone()),
                location: Some(s.location.clone()).filter(|l| !l.is_empty()),
                status: Some(kuaidi100::state_name(code).to_owned()).filter(|n| !n.is_empty()),
                status_code: Some(code.to_owned()),
            });
        }
        returning |= s.state_ex == "404";
    }
    if lines.is_empty() {
        return None;
    }
    lines.reverse();
    let signed = matches!(state.as_bytes().first(), Some(b'3' | b'4'));
    let push = kuaidi100::Kuaidi100Push {
        status: Some(if signed { "shutdown" } else { "polling" }.to_owned()),
        billstatus: Some(if signed { "check" } else { "got" }.to_owned()),
        message: Some(String::new()).filter(|m| !m.is_empty()),
        auto_check: Some("0".to_owned()),
        com_old: None,
        com_new: None,
        last_result: Some(kuaidi100::Kuaidi100Result {
            message: Some("ok".to_owned()),
            state: Some(state.to_owned()),
            status: Some("200".to_owned()),
            condition: None,
            ischeck: Some(if signed { "1" } else { "0" }.to_owned()),
            com: Some(com.to_owned()),
            nu: Some(number.to_owned()),
            data: lines,
        }),
    };
    Some((push, signed))
}

fn kdniao_trace(s: &Step) -> KdniaoTrace {
    KdniaoTrace {
        accept_time: format_accept_time(s.at),
        accept_station: s.station.clone(),
        location: Some(s.location.clone()).filter(|l| !l.is_empty()),
        action: Some(s.action.clone()),
        remark: None,
    }
}

/// The Kdniao 8008 push item for a journey as visible at `now`: full history, ascending, with
/// State, StateEx and the current city, exactly as the 8001 query shows it.
pub fn kdniao_item_for(
    journey: &Journey,
    now: DateTime<Utc>,
    ebusiness_id: &str,
    shipper: &str,
    number: &str,
    order_code: Option<&str>,
) -> Option<KdniaoResponse> {
    let v = journey.visible_at(now);
    if v.traces.is_empty() {
        return None;
    }
    Some(KdniaoResponse {
        ebusiness_id: Some(ebusiness_id.to_owned()),
        order_code: order_code.map(str::to_owned),
        shipper_code: Some(shipper.to_owned()),
        logistic_code: Some(number.to_owned()),
        success: true,
        reason: None,
        result_code: None,
        state: Some(v.state.to_owned()),
        state_ex: Some(v.state_ex.to_owned()),
        location: v
            .traces
            .last()
            .map(|s| s.location.clone())
            .filter(|l| !l.is_empty()),
        traces: v.traces.iter().map(|s| kdniao_trace(s)).collect(),
    })
}

// ---------------------------------------------------------------------------------------------
// Delivering pushes
// ---------------------------------------------------------------------------------------------

/// Counts for one provider in a [`PushReport`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PushCounts {
    /// Push requests sent.
    pub sent: u64,
    /// Requests answered with the provider's expected acknowledgement.
    pub acked: u64,
    /// Requests answered otherwise, or not at all (retried on the next call).
    pub failed: u64,
    /// Waybills whose push was acknowledged.
    pub waybills_acked: u64,
}

/// What one [`Sandbox::deliver_pushes`] call did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PushReport {
    pub sent: u64,
    pub acked: u64,
    pub failed: u64,
    pub kdniao: PushCounts,
    pub kuaidi100: PushCounts,
    /// Why failed pushes failed, one line each (`<url>: <reason>`).
    pub failures: Vec<String>,
}

/// One push request to send.
struct Job {
    provider: PushProvider,
    url: String,
    body: String,
    /// The subscriptions it carries, what it shows, and whether it ends tracking.
    carries: Vec<(SubKey, Pushed, bool)>,
}

/// Is this reply the provider's expected acknowledgement?
fn acknowledged(provider: PushProvider, body: &str) -> bool {
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        return false;
    };
    match provider {
        PushProvider::Kdniao => match &v["Success"] {
            Value::Bool(b) => *b,
            Value::String(s) => s.eq_ignore_ascii_case("true"),
            _ => false,
        },
        PushProvider::Kuaidi100 => match &v["returnCode"] {
            Value::String(s) => s.trim() == "200",
            Value::Number(n) => n.as_u64() == Some(200),
            _ => false,
        },
    }
}

async fn send(http: &reqwest::Client, job: &Job) -> Result<(), String> {
    let resp = http
        .post(&job.url)
        .timeout(PUSH_TIMEOUT)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded;charset=utf-8",
        )
        .body(job.body.clone())
        .send()
        .await
        .map_err(|e| format!("no answer: {e}"))?;
    let status = resp.status();
    let body = resp
        .text()
        .await
        .map_err(|e| format!("unreadable answer: {e}"))?;
    if !status.is_success() {
        return Err(format!("HTTP {status}"));
    }
    if acknowledged(job.provider, &body) {
        Ok(())
    } else {
        let prefix: String = body.chars().take(120).collect();
        Err(format!("not acknowledged: {prefix}"))
    }
}

/// `body`, or its first half when the fault plan's `push_garbage` share draws this push: the
/// receiver cannot verify a cut form (the signature or the JSON is missing), refuses it, and
/// the push stays due until a later delivery is acknowledged.
fn garbled(shared: &Shared, body: String) -> String {
    if shared.faults.garble_next_push() {
        super::faults::first_half(&body).to_owned()
    } else {
        body
    }
}

/// The pushes due at the sandbox clock's now.
fn due_jobs(shared: &Shared) -> Vec<Job> {
    let now = shared.clock.now();
    let entries: Vec<(SubKey, Entry)> = shared
        .push
        .lock()
        .iter()
        .filter(|(_, e)| !e.sub.ended)
        .map(|(k, e)| (k.clone(), e.clone()))
        .collect();
    let cfg = &shared.cfg;
    let mut jobs = Vec::new();
    let mut kdniao_by_callback: BTreeMap<String, Vec<(SubKey, Pushed, KdniaoResponse)>> =
        BTreeMap::new();
    for (key, entry) in entries {
        let sub = &entry.sub;
        let Some(journey) = shared.journey(&sub.carrier, &sub.number) else {
            continue;
        };
        let visible = journey.visible_at(now);
        let pushed = Pushed {
            state_ex: visible.state_ex.to_owned(),
            lines: visible.traces.len(),
        };
        if sub.last_acked.as_ref() == Some(&pushed) {
            continue;
        }
        match sub.provider {
            PushProvider::Kdniao => {
                if let Some(item) = kdniao_item_for(
                    &journey,
                    now,
                    &cfg.ebusiness_id,
                    &sub.carrier,
                    &sub.number,
                    sub.order_code.as_deref(),
                ) {
                    kdniao_by_callback
                        .entry(sub.callback_url.clone())
                        .or_default()
                        .push((key, pushed, item));
                }
            }
            PushProvider::Kuaidi100 => {
                let com = sub.com.as_deref().unwrap_or_default();
                if let Some((push, ends)) = kuaidi100_push_for(&journey, now, com, &sub.number) {
                    let salt = entry.salt.clone().unwrap_or_default();
                    let salt = if shared.push.take_corruption() {
                        format!("{salt}-corrupted")
                    } else {
                        salt
                    };
                    jobs.push(Job {
                        provider: PushProvider::Kuaidi100,
                        url: sub.callback_url.clone(),
                        body: garbled(
                            shared,
                            kuaidi100::build_push_form(&kuaidi100::push_param(&push), &salt),
                        ),
                        carries: vec![(key, pushed, ends)],
                    });
                }
            }
        }
    }
    for (url, items) in kdniao_by_callback {
        for chunk in items.chunks(MAX_ITEMS_PER_KDNIAO_PUSH) {
            let app_key = if shared.push.take_corruption() {
                format!("{}-corrupted", cfg.app_key)
            } else {
                cfg.app_key.clone()
            };
            let data: Vec<KdniaoResponse> = chunk.iter().map(|(_, _, i)| i.clone()).collect();
            jobs.push(Job {
                provider: PushProvider::Kdniao,
                url: url.clone(),
                body: garbled(
                    shared,
                    kdniao_push::build_push_form(
                        &cfg.ebusiness_id,
                        &app_key,
                        kdniao_push::PUSH_REQUEST_TYPE_MONITOR,
                        now,
                        &data,
                    ),
                ),
                carries: chunk
                    .iter()
                    .map(|(k, p, _)| (k.clone(), p.clone(), false))
                    .collect(),
            });
        }
    }
    jobs
}

/// Send every due push once; see [`Sandbox::deliver_pushes`].
pub(crate) async fn deliver(shared: &Shared, http: &reqwest::Client) -> PushReport {
    let jobs = due_jobs(shared);
    let results: Vec<(Job, Result<(), String>)> = stream::iter(jobs)
        .map(|job| async move {
            let r = send(http, &job).await;
            (job, r)
        })
        .buffer_unordered(PUSH_CONCURRENCY)
        .collect()
        .await;

    let c = &shared.push.counters;
    let mut report = PushReport::default();
    let mut entries = shared.push.lock();
    for (job, result) in results {
        let counts = match job.provider {
            PushProvider::Kdniao => &mut report.kdniao,
            PushProvider::Kuaidi100 => &mut report.kuaidi100,
        };
        counts.sent += 1;
        report.sent += 1;
        bump(&c.pushes_sent);
        match &result {
            Ok(()) => {
                counts.acked += 1;
                counts.waybills_acked += job.carries.len() as u64;
                report.acked += 1;
                bump(&c.pushes_acked);
            }
            Err(reason) => {
                counts.failed += 1;
                report.failed += 1;
                bump(&c.pushes_failed);
                tracing::debug!(url = %job.url, %reason, "sandbox push not acknowledged");
                report.failures.push(format!("{}: {reason}", job.url));
            }
        }
        for (key, pushed, ends) in job.carries {
            // The subscription may have been renewed meanwhile; it is still the same waybill.
            let Some(e) = entries.get_mut(&key) else {
                continue;
            };
            e.sub.pushes_sent += 1;
            if result.is_ok() {
                e.sub.pushes_acked += 1;
                e.sub.last_acked = Some(pushed);
                e.sub.ended |= ends;
            } else {
                e.sub.pushes_failed += 1;
            }
        }
    }
    report
}

async fn list_subscriptions(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(json!({
        "subscriptions": shared.push.list(),
        "stats": shared.push.stats(),
    }))
}

async fn deliver_now(State(shared): State<Arc<Shared>>) -> Json<PushReport> {
    Json(deliver(&shared, &reqwest::Client::new()).await)
}

impl Sandbox {
    /// The URL to configure as `KDNIAO_SUBSCRIBE_ENDPOINT`.
    pub fn kdniao_subscribe_endpoint(&self) -> String {
        format!("{}{}", self.base_url(), KDNIAO_SUBSCRIBE_PATH)
    }

    /// The URL to configure as `KUAIDI100_SUBSCRIBE_ENDPOINT`.
    pub fn kuaidi100_subscribe_endpoint(&self) -> String {
        format!("{}{}", self.base_url(), KUAIDI100_SUBSCRIBE_PATH)
    }

    /// The Kuaidi100 key the sandbox accepts (`KUAIDI100_KEY`). The salt is the subscriber's
    /// choice, sent with each subscription.
    pub fn kuaidi100_key(&self) -> &'static str {
        DEFAULT_KUAIDI100_KEY
    }

    /// `KUAIDI100_CUSTOMER` for the sandbox account.
    pub fn kuaidi100_customer(&self) -> &'static str {
        DEFAULT_KUAIDI100_CUSTOMER
    }

    /// Every subscription, ordered by provider, carrier and number.
    pub fn subscriptions(&self) -> Vec<Subscription> {
        self.shared.push.list()
    }

    pub fn push_stats(&self) -> PushStats {
        self.shared.push.stats()
    }

    /// Sign the next `n` push requests wrongly (a receiver must refuse them; they are retried).
    pub fn corrupt_next_pushes(&self, n: u64) {
        self.shared.push.corrupt_next.store(n, Ordering::Relaxed);
    }

    /// For every subscription whose journey, as visible at the sandbox clock's now, differs
    /// from what its callback last acknowledged, POST the push the real provider would send:
    /// Kdniao RequestType 102 (full history, batched per callback URL), Kuaidi100 `polling` /
    /// `shutdown`. A push counts as delivered only on the expected acknowledgement (Kdniao
    /// `Success:true`, Kuaidi100 `returnCode:"200"`); otherwise the next call sends it again.
    pub async fn deliver_pushes(&self, http: &reqwest::Client) -> PushReport {
        deliver(&self.shared, http).await
    }
}

#[cfg(test)]
mod tests {
    use super::super::journey::{plan_kind, truth_status_after_return, JourneyKind};
    use super::super::{DEFAULT_APP_KEY, DEFAULT_EBUSINESS_ID};
    use super::*;
    use crate::clock::Clock;
    use crate::sandbox::testkit::{query, sandbox, t0};
    use axum::http::StatusCode;

    use parcelwatch::config::{KdniaoConfig, Secret};
    use parcelwatch::domain::Status;
    use parcelwatch::providers::kdniao::KdniaoClient;
    use parcelwatch::providers::kdniao_push::{KdniaoPushConfig, KdniaoSubscriber};
    use parcelwatch::providers::kuaidi100::{Kuaidi100Config, Kuaidi100Subscriber};
    use parcelwatch::providers::push::{PushUpdate, Subscriber};
    use parcelwatch::providers::TraceProvider;
    use std::sync::atomic::AtomicU8;

    const SALT: &str = "receiver-salt-42";

    /// How the test receiver answers.
    const ACK: u8 = 0;
    const NEGATIVE_REPLY: u8 = 1;
    const HTTP_500: u8 = 2;

    #[derive(Default)]
    struct Received {
        mode: AtomicU8,
        requests: AtomicU64,
        refused: Mutex<Vec<String>>,
        kdniao: Mutex<Vec<PushUpdate>>,
        kuaidi100: Mutex<Vec<(Option<String>, PushUpdate)>>,
    }

    /// A tiny merchant endpoint that verifies with the shared `verify_push` functions.
    async fn receiver() -> (String, Arc<Received>) {
        async fn kdniao(State(r): State<Arc<Received>>, body: String) -> (StatusCode, String) {
            r.requests.fetch_add(1, Ordering::Relaxed);
            let now = Utc::now();
            match kdniao_push::verify_push(&body, DEFAULT_APP_KEY, DEFAULT_EBUSINESS_ID) {
                Err(e) => {
                    r.refused.lock().expect("lock").push(e.to_string());
                    let code = StatusCode::from_u16(e.http_status()).expect("4xx");
                    (
                        code,
                        kdniao_push::push_ack(DEFAULT_EBUSINESS_ID, now, false, &e.to_string()),
                    )
                }
                Ok(batch) => match r.mode.load(Ordering::Relaxed) {
                    NEGATIVE_REPLY => (
                        StatusCode::OK,
                        kdniao_push::push_ack(DEFAULT_EBUSINESS_ID, now, false, "store down"),
                    ),
                    HTTP_500 => (StatusCode::INTERNAL_SERVER_ERROR, "oops".into()),
                    _ => {
                        assert!(batch.rejected.is_empty(), "{:?}", batch.rejected);
                        r.kdniao.lock().expect("lock").extend(batch.updates);
                        (
                            StatusCode::OK,
                            kdniao_push::push_ack(DEFAULT_EBUSINESS_ID, now, true, ""),
                        )
                    }
                },
            }
        }
        async fn kuaidi(State(r): State<Arc<Received>>, body: String) -> (StatusCode, String) {
            r.requests.fetch_add(1, Ordering::Relaxed);
            match kuaidi100::verify_push(&body, SALT) {
                Err(e) => {
                    r.refused.lock().expect("lock").push(e.to_string());
                    let code = StatusCode::from_u16(e.http_status()).expect("4xx");
                    (code, kuaidi100::push_nack(&e.to_string()))
                }
                Ok(batch) => match r.mode.load(Ordering::Relaxed) {
                    NEGATIVE_REPLY => (StatusCode::OK, kuaidi100::push_nack("store down")),
                    HTTP_500 => (StatusCode::INTERNAL_SERVER_ERROR, "oops".into()),
                    _ => {
                        let status = batch.provider_status.clone();
                        r.kuaidi100
                            .lock()
                            .expect("lock")
                            .extend(batch.updates.into_iter().map(|u| (status.clone(), u)));
                        (StatusCode::OK, kuaidi100::push_ack().to_owned())
                    }
                },
            }
        }
        let state = Arc::new(Received::default());
        let app = Router::new()
            .route("/push/kdniao", post(kdniao))
            .route("/push/kuaidi100", post(kuaidi))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        (format!("http://{addr}"), state)
    }

    fn kdniao_subscriber(sb: &Sandbox, base: &str, app_key: &str) -> KdniaoSubscriber {
        KdniaoSubscriber::new(
            KdniaoPushConfig {
                subscribe_endpoint: sb.kdniao_subscribe_endpoint(),
                ebusiness_id: sb.ebusiness_id().to_owned(),
                app_key: Secret::new(app_key),
                callback_url: format!("{base}/push/kdniao"),
                timeout: Duration::from_secs(5),
            },
            reqwest::Client::new(),
        )
    }

    fn kuaidi100_subscriber(sb: &Sandbox, callback_url: &str, key: &str) -> Kuaidi100Subscriber {
        Kuaidi100Subscriber::new(
            Kuaidi100Config {
                subscribe_endpoint: sb.kuaidi100_subscribe_endpoint(),
                key: Secret::new(key),
                customer: Some(sb.kuaidi100_customer().to_owned()),
                salt: Secret::new(SALT),
                callback_url: callback_url.to_owned(),
                timeout: Duration::from_secs(5),
            },
            reqwest::Client::new(),
        )
    }

    async fn post_form(url: &str, pairs: &[(&str, &str)]) -> Value {
        reqwest::Client::new()
            .post(url)
            .form(pairs)
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json")
    }

    #[tokio::test]
    async fn kdniao_subscriptions_are_checked_like_queries() {
        let (sb, _clock) = sandbox(1).await;
        let base = "http://127.0.0.1:9";
        let ok = kdniao_subscriber(&sb, base, DEFAULT_APP_KEY)
            .subscribe(&query("SF", "SF1234567890123", Some("13812345678")))
            .await
            .expect("subscribed");
        assert!(!ok.already_subscribed);
        // Unknown to the sandbox, still subscribed.
        kdniao_subscriber(&sb, base, DEFAULT_APP_KEY)
            .subscribe(&query("YD", "431234567890123", None))
            .await
            .expect("unknown waybill subscribes");

        let bad_key = kdniao_subscriber(&sb, base, "not-the-key")
            .subscribe(&query("YTO", "YT1234567890123", None))
            .await
            .expect_err("bad sign");
        assert!(!bad_key.is_retryable(), "{bad_key}");
        // SF without the phone suffix.
        let no_phone = kdniao_subscriber(&sb, base, DEFAULT_APP_KEY)
            .subscribe(&query("SF", "SF9999999999999", None))
            .await
            .expect_err("SF needs CustomerName");
        assert!(!no_phone.is_retryable(), "{no_phone}");

        // A query RequestType on the subscription endpoint, another merchant.
        let rd = r#"{"ShipperCode":"YTO","LogisticCode":"YT1234567890123","Callback":"http://x/"}"#;
        let sign = data_sign(rd, DEFAULT_APP_KEY);
        let url = sb.kdniao_subscribe_endpoint();
        let mut form = vec![
            ("RequestData", rd),
            ("EBusinessID", DEFAULT_EBUSINESS_ID),
            ("RequestType", "8001"),
            ("DataSign", sign.as_str()),
            ("DataType", "2"),
        ];
        let v = post_form(&url, &form).await;
        assert_eq!(v["Success"], false);
        assert!(
            v["Reason"].as_str().is_some_and(|r| r.contains("8008")),
            "{v}"
        );
        form[2].1 = "8008";
        form[1].1 = "9999999";
        assert_eq!(post_form(&url, &form).await["Success"], false);
        form[1].1 = DEFAULT_EBUSINESS_ID;
        let v = post_form(&url, &form).await;
        assert_eq!(v["Success"], true, "{v}");
        assert_eq!(v["EBusinessID"], DEFAULT_EBUSINESS_ID);
        assert!(
            v["UpdateTime"].as_str().is_some_and(|t| t.len() == 19),
            "{v}"
        );

        let subs = sb.subscriptions();
        let keys: Vec<(&str, &str)> = subs
            .iter()
            .map(|s| (s.carrier.as_str(), s.number.as_str()))
            .collect();
        assert_eq!(
            keys,
            vec![
                ("SF", "SF1234567890123"),
                ("YD", "431234567890123"),
                ("YTO", "YT1234567890123")
            ]
        );
        assert_eq!(subs[0].callback_url, "http://127.0.0.1:9/push/kdniao");
        assert_eq!(subs[2].callback_url, "http://x/");
        let st = sb.push_stats();
        assert_eq!(
            (
                st.kdniao_subscribe_requests,
                st.subscribed,
                st.bad_sign,
                st.bad_request
            ),
            (7, 3, 2, 2)
        );
    }

    #[tokio::test]
    async fn kuaidi100_subscriptions_answer_the_documented_codes() {
        let (sb, _clock) = sandbox(2).await;
        let cb = "http://127.0.0.1:9/push/kuaidi100";
        let s = kuaidi100_subscriber(&sb, cb, sb.kuaidi100_key());
        let q = query("YTO", "YT1234567890123", None);
        assert!(!s.subscribe(&q).await.expect("200").already_subscribed);
        assert!(
            s.subscribe(&q)
                .await
                .expect("501 is fine")
                .already_subscribed
        );
        let bad = kuaidi100_subscriber(&sb, cb, "wrong")
            .subscribe(&q)
            .await
            .expect_err("600");
        assert!(
            !bad.is_retryable() && bad.to_string().contains("600"),
            "{bad}"
        );
        let bad_cb = kuaidi100_subscriber(&sb, "ftp://nowhere", sb.kuaidi100_key())
            .subscribe(&query("ZTO", "731234567890123", None))
            .await
            .expect_err("700");
        assert!(bad_cb.to_string().contains("700"), "{bad_cb}");

        let url = sb.kuaidi100_subscribe_endpoint();
        let param = format!(
            r#"{{"company":"zhaijisong","number":"ZJS123456789","key":"{DEFAULT_KUAIDI100_KEY}","parameters":{{"callbackurl":"{cb}"}}}}"#
        );
        let v = post_form(&url, &[("schema", "json"), ("param", &param)]).await;
        assert_eq!(
            (v["result"].as_bool(), v["returnCode"].as_str()),
            (Some(false), Some("702"))
        );
        let v = post_form(&url, &[("schema", "xml"), ("param", &param)]).await;
        assert_eq!(v["returnCode"], "700");

        let subs = sb.subscriptions();
        assert_eq!(subs.len(), 1);
        assert_eq!(subs[0].provider, PushProvider::Kuaidi100);
        assert_eq!(subs[0].com.as_deref(), Some("yuantong"));
        assert!(subs[0].salted);
        let st = sb.push_stats();
        assert_eq!(
            (
                st.kuaidi100_subscribe_requests,
                st.subscribed,
                st.duplicates,
                st.bad_key,
                st.bad_request
            ),
            (6, 1, 1, 1, 3)
        );
    }

    #[tokio::test]
    async fn kdniao_pushes_are_sent_once_per_change_and_batched_per_callback() {
        let (sb, clock) = sandbox(3).await;
        let (base, rx) = receiver().await;
        let http = reqwest::Client::new();
        let j = sb.register_kind(JourneyKind::Delivered, "YTO", "YT1234567890123", t0());
        let j2 = sb.register_kind(JourneyKind::Delivered, "ZTO", "731234567890123", t0());
        let sub = kdniao_subscriber(&sb, &base, DEFAULT_APP_KEY);
        sub.subscribe(&query("YTO", "YT1234567890123", None))
            .await
            .expect("sub");
        sub.subscribe(&query("ZTO", "731234567890123", Some("13812345678")))
            .await
            .expect("sub");

        // Nothing scanned yet: nothing to push.
        assert_eq!(sb.deliver_pushes(&http).await, PushReport::default());

        // Both picked up: one push carrying both waybills.
        clock.set(j.steps[1].at.max(j2.steps[0].at));
        let r = sb.deliver_pushes(&http).await;
        assert_eq!((r.sent, r.acked, r.failed), (1, 1, 0), "{r:?}");
        assert_eq!(r.kdniao.waybills_acked, 2);
        {
            let got = rx.kdniao.lock().expect("lock");
            assert_eq!(got.len(), 2);
            let yto = got
                .iter()
                .find(|u| u.id.carrier.as_str() == "YTO")
                .expect("YTO pushed");
            let visible = j.visible_at(clock.now());
            assert_eq!(yto.snapshot.events.len(), visible.traces.len());
            assert_eq!(
                yto.snapshot.status,
                truth_status_after_return(visible.state_ex, false)
            );
        }

        // No change, no push.
        let r = sb.deliver_pushes(&http).await;
        assert_eq!(r.sent, 0, "{r:?}");

        // The clock moves: a new push with the full history.
        clock.advance(chrono::Duration::days(30));
        let r = sb.deliver_pushes(&http).await;
        assert_eq!((r.sent, r.acked), (1, 1), "{r:?}");
        let got = rx.kdniao.lock().expect("lock").clone();
        let last_yto = got
            .iter()
            .rev()
            .find(|u| u.id.carrier.as_str() == "YTO")
            .expect("YTO");
        assert_eq!(last_yto.snapshot.status, Status::Delivered);
        assert_eq!(
            last_yto.snapshot.events.len(),
            j.steps.iter().filter(|s| s.emits_line).count()
        );
        let yto_sub = sb
            .subscriptions()
            .into_iter()
            .find(|s| s.carrier == "YTO")
            .expect("sub");
        assert_eq!(
            yto_sub.last_acked,
            Some(Pushed {
                state_ex: "3".into(),
                lines: last_yto.snapshot.events.len()
            })
        );
        assert_eq!((yto_sub.pushes_sent, yto_sub.pushes_acked), (2, 2));
        assert_eq!(rx.requests.load(Ordering::Relaxed), 2);
        assert!(sb.deliver_pushes(&http).await.sent == 0);
    }

    #[tokio::test]
    async fn a_kdniao_push_and_an_8001_query_give_the_same_snapshot() {
        let (sb, clock) = sandbox(4).await;
        let (base, rx) = receiver().await;
        let j = sb.register_kind(JourneyKind::LockerPickup, "STO", "771234567890123", t0());
        kdniao_subscriber(&sb, &base, DEFAULT_APP_KEY)
            .subscribe(&query("STO", "771234567890123", None))
            .await
            .expect("sub");
        let locker = j.steps.iter().find(|s| s.state_ex == "211").expect("211");
        clock.set(locker.at);
        let r = sb.deliver_pushes(&reqwest::Client::new()).await;
        assert_eq!(r.acked, 1, "{r:?}");
        let client = KdniaoClient::new(
            KdniaoConfig {
                endpoint: sb.kdniao_endpoint(),
                ebusiness_id: sb.ebusiness_id().to_owned(),
                app_key: Secret::new(sb.app_key()),
                request_type: "8001".into(),
                timeout: Duration::from_secs(5),
            },
            reqwest::Client::new(),
        );
        let polled = client
            .query(&query("STO", "771234567890123", None))
            .await
            .expect("8001");
        let pushed = rx.kdniao.lock().expect("lock")[0].clone();
        assert_eq!(pushed.snapshot, polled);
        assert_eq!(polled.status, Status::AvailableForPickup);
    }

    #[tokio::test]
    async fn kuaidi100_pushes_end_with_shutdown_and_allow_a_new_subscription() {
        let (sb, clock) = sandbox(5).await;
        let (base, rx) = receiver().await;
        let http = reqwest::Client::new();
        let j = sb.register_kind(JourneyKind::Refused, "JD", "JDV123456789012", t0());
        let s = kuaidi100_subscriber(&sb, &format!("{base}/push/kuaidi100"), sb.kuaidi100_key());
        let q = query("JD", "JDV123456789012", None);
        s.subscribe(&q).await.expect("sub");

        clock.set(j.steps[2].at);
        let r = sb.deliver_pushes(&http).await;
        assert_eq!((r.kuaidi100.sent, r.kuaidi100.acked), (1, 1), "{r:?}");
        clock.advance(chrono::Duration::days(40));
        let r = sb.deliver_pushes(&http).await;
        assert_eq!(r.kuaidi100.acked, 1, "{r:?}");
        let got = rx.kuaidi100.lock().expect("lock").clone();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0.as_deref(), Some("polling"));
        assert_eq!(got[1].0.as_deref(), Some("shutdown"));
        assert_eq!(got[1].1.snapshot.status, Status::Returned);
        let times: Vec<_> = got[1].1.snapshot.events.iter().map(|e| e.time).collect();
        let mut ascending = times.clone();
        ascending.sort();
        assert_eq!(
            times.iter().rev().copied().collect::<Vec<_>>(),
            ascending,
            "newest first"
        );

        let sub = &sb.subscriptions()[0];
        assert!(sub.ended);
        assert_eq!(sb.deliver_pushes(&http).await.sent, 0);
        // Tracking ended: subscribing again is a new subscription, not a 501.
        assert!(!s.subscribe(&q).await.expect("renewed").already_subscribed);
        assert_eq!(sb.subscriptions()[0].times_subscribed, 2);
        // The new period starts from nothing: everything is pushed again.
        assert_eq!(sb.deliver_pushes(&http).await.acked, 1);
    }

    #[tokio::test]
    async fn unacknowledged_pushes_are_retried() {
        let (sb, clock) = sandbox(6).await;
        let (base, rx) = receiver().await;
        let http = reqwest::Client::new();
        let j = sb.register_kind(JourneyKind::Delivered, "YTO", "YT1234567890123", t0());
        sb.register_kind(JourneyKind::Delivered, "EMS", "1123456789012", t0());
        kdniao_subscriber(&sb, &base, DEFAULT_APP_KEY)
            .subscribe(&query("YTO", "YT1234567890123", None))
            .await
            .expect("sub");
        kuaidi100_subscriber(&sb, &format!("{base}/push/kuaidi100"), sb.kuaidi100_key())
            .subscribe(&query("EMS", "1123456789012", None))
            .await
            .expect("sub");
        clock.set(j.steps[3].at + chrono::Duration::days(1));

        rx.mode.store(NEGATIVE_REPLY, Ordering::Relaxed);
        let r = sb.deliver_pushes(&http).await;
        assert_eq!((r.sent, r.acked, r.failed), (2, 0, 2), "{r:?}");
        assert!(
            r.failures.iter().all(|f| f.contains("not acknowledged")),
            "{r:?}"
        );
        rx.mode.store(HTTP_500, Ordering::Relaxed);
        let r = sb.deliver_pushes(&http).await;
        assert_eq!((r.sent, r.failed), (2, 2), "{r:?}");
        assert!(sb.subscriptions().iter().all(|s| s.last_acked.is_none()));

        rx.mode.store(ACK, Ordering::Relaxed);
        let r = sb.deliver_pushes(&http).await;
        assert_eq!((r.sent, r.acked, r.failed), (2, 2, 0), "{r:?}");
        assert_eq!(sb.deliver_pushes(&http).await.sent, 0);
        let subs = sb.subscriptions();
        assert!(
            subs.iter()
                .all(|s| (s.pushes_sent, s.pushes_failed, s.pushes_acked) == (3, 2, 1)),
            "{subs:?}"
        );
        let st = sb.push_stats();
        assert_eq!(
            (st.pushes_sent, st.pushes_acked, st.pushes_failed),
            (6, 2, 4)
        );
    }

    #[tokio::test]
    async fn corrupted_signatures_are_refused_by_the_receiver_then_retried() {
        let (sb, clock) = sandbox(7).await;
        let (base, rx) = receiver().await;
        let http = reqwest::Client::new();
        let j = sb.register_kind(JourneyKind::Delivered, "YTO", "YT1234567890123", t0());
        sb.register_kind(JourneyKind::Delivered, "EMS", "1123456789012", t0());
        kdniao_subscriber(&sb, &base, DEFAULT_APP_KEY)
            .subscribe(&query("YTO", "YT1234567890123", None))
            .await
            .expect("sub");
        kuaidi100_subscriber(&sb, &format!("{base}/push/kuaidi100"), sb.kuaidi100_key())
            .subscribe(&query("EMS", "1123456789012", None))
            .await
            .expect("sub");
        clock.set(j.steps[3].at + chrono::Duration::days(1));
        sb.corrupt_next_pushes(2);
        let r = sb.deliver_pushes(&http).await;
        assert_eq!((r.sent, r.failed), (2, 2), "{r:?}");
        assert!(r.failures.iter().all(|f| f.contains("HTTP 401")), "{r:?}");
        assert_eq!(
            *rx.refused.lock().expect("lock"),
            vec!["push signature does not verify".to_string(); 2]
        );
        let r = sb.deliver_pushes(&http).await;
        assert_eq!((r.sent, r.acked), (2, 2), "{r:?}");
        assert_eq!(sb.push_stats().pushes_corrupted, 2);
    }

    #[tokio::test]
    async fn garbled_pushes_are_refused_then_sent_again_whole() {
        let (sb, clock) = sandbox(9).await;
        let (base, rx) = receiver().await;
        let http = reqwest::Client::new();
        let j = sb.register_kind(JourneyKind::Delivered, "YTO", "YT1234567890123", t0());
        sb.register_kind(JourneyKind::Delivered, "EMS", "1123456789012", t0());
        kdniao_subscriber(&sb, &base, DEFAULT_APP_KEY)
            .subscribe(&query("YTO", "YT1234567890123", None))
            .await
            .expect("sub");
        kuaidi100_subscriber(&sb, &format!("{base}/push/kuaidi100"), sb.kuaidi100_key())
            .subscribe(&query("EMS", "1123456789012", None))
            .await
            .expect("sub");
        clock.set(j.steps[3].at + chrono::Duration::days(1));
        sb.set_provider_faults(crate::sandbox::faults::ProviderFaults {
            seed: 3,
            push_garbage: 1.0,
            ..Default::default()
        });
        let r = sb.deliver_pushes(&http).await;
        assert_eq!((r.sent, r.failed, r.acked), (2, 2, 0), "{r:?}");
        assert_eq!(rx.refused.lock().expect("lock").len(), 2);
        assert!(rx.kdniao.lock().expect("lock").is_empty());
        assert!(rx.kuaidi100.lock().expect("lock").is_empty());
        // Still due: the next delivery, without faults, sends both again, whole.
        sb.set_provider_faults(Default::default());
        let r = sb.deliver_pushes(&http).await;
        assert_eq!((r.sent, r.acked), (2, 2), "{r:?}");
        assert_eq!(rx.kdniao.lock().expect("lock").len(), 1);
        assert_eq!(rx.kuaidi100.lock().expect("lock").len(), 1);
        let counts = sb.provider_fault_counts();
        assert_eq!(counts.get("push.garbage"), Some(&2));
        assert_eq!(counts.get("push.passed"), Some(&2));
        // Acknowledged: nothing is due any more.
        assert_eq!(sb.deliver_pushes(&http).await.sent, 0);
    }

    /// Every status a Kuaidi100 push built from a journey shows, read back with the shared
    /// parser, is the journey's truth.
    #[test]
    fn kuaidi100_translation_agrees_with_the_truth() {
        let mut checked = 0;
        for kind in JourneyKind::ALL {
            for (carrier, number) in [("YTO", "YT1234567890123"), ("SF", "SF7654321098765")] {
                let j = plan_kind(kind, 11, carrier, number, t0());
                let com = kuaidi100::com_of(
                    &parcelwatch::domain::Carrier::parse(carrier).expect("carrier"),
                )
                .expect("mapped");
                let mut returning = false;
                let mut any_line = false;
                for s in &j.steps {
                    let truth = truth_status_after_return(s.state_ex, returning);
                    returning |= s.state_ex == "404";
                    any_line |= s.emits_line;
                    let built = kuaidi100_push_for(&j, s.at, com, number);
                    let Some((push, ends)) = built else {
                        assert!(!any_line, "{kind:?}: no push despite lines");
                        continue;
                    };
                    let body = kuaidi100::build_push_form(&kuaidi100::push_param(&push), SALT);
                    let batch = kuaidi100::verify_push(&body, SALT).expect("verifies");
                    let [u] = batch.updates.as_slice() else {
                        panic!("{kind:?}: {batch:?}");
                    };
                    assert_eq!(
                        u.snapshot.status, truth,
                        "{kind:?} at {} ({})",
                        s.at, s.state_ex
                    );
                    assert_eq!(ends, truth.is_terminal(), "{kind:?} {}", s.state_ex);
                    checked += 1;
                }
            }
        }
        assert!(checked > 50, "{checked}");
    }

    #[test]
    fn kuaidi100_codes_follow_the_table() {
        for (kd, returning, k100) in [
            ("1", false, "103"),
            ("2", false, "1002"),
            ("201", false, "1001"),
            ("202", false, "5"),
            ("211", false, "501"),
            ("412", false, "501"),
            ("3", false, "301"),
            ("311", false, "304"),
            ("3", true, "4"),
            ("311", true, "4"),
            ("4", false, "2"),
            ("402", false, "2"),
            ("403", false, "2"),
            ("404", false, "6"),
            ("305", false, "3"),
            ("405", false, "2"),
            ("0", false, "0"),
        ] {
            assert_eq!(kuaidi100_code(kd, returning), k100, "{kd} {returning}");
        }
    }

    #[tokio::test]
    async fn admin_routes_list_and_deliver() {
        let (sb, clock) = sandbox(8).await;
        let (base, _rx) = receiver().await;
        let j = sb.register_kind(JourneyKind::Delivered, "YTO", "YT1234567890123", t0());
        kdniao_subscriber(&sb, &base, DEFAULT_APP_KEY)
            .subscribe(&query("YTO", "YT1234567890123", None))
            .await
            .expect("sub");
        clock.set(j.steps[1].at);
        let http = reqwest::Client::new();
        let report: Value = http
            .post(format!("{}/sandbox/pushes/deliver", sb.base_url()))
            .send()
            .await
            .expect("deliver")
            .json()
            .await
            .expect("json");
        assert_eq!(report["acked"], 1, "{report}");
        let listed: Value = http
            .get(format!("{}/sandbox/subscriptions", sb.base_url()))
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("json");
        assert_eq!(
            listed["subscriptions"][0]["last_acked"]["lines"], 2,
            "{listed}"
        );
        assert_eq!(listed["stats"]["pushes_acked"], 1);
        assert!(listed.to_string().find("salt\"").is_none(), "{listed}");
    }
}
