//! Seeded provider faults: the sandbox answers a chosen share of provider requests the way a
//! real provider (or the gateway in front of it) misbehaves, so a soak test can check that the
//! pipeline neither loses nor duplicates anything when carriers flake.
//!
//! Faulted endpoints ([`FaultedEndpoint`]): Kdniao 1002/8001 queries, Kdniao 8008 subscription,
//! Kuaidi100 real-time query and `/poll` subscription, TOP `taobao.logistics.trace.search`, and
//! the order APIs (TOP `taobao.trades.sold.increment.get` / `taobao.trade.fullinfo.get`, fw199's
//! enhanced order list). Kdniao 2002 recognition and the sandbox's admin routes are never
//! faulted.
//!
//! A faulted request is answered by a layer in front of the handlers: it never reaches them,
//! so it advances nothing a good answer would (Kuaidi100's 30-minute window, the Kdniao quota,
//! TOP/fw199 throttle budgets, push subscriptions, the request counters of
//! [`super::Sandbox::stats`] and friends). It is counted only in
//! [`super::Sandbox::provider_fault_counts`].
//!
//! The verdict for the `n`-th request to an endpoint is [`crate::faults::draw`]`(seed,
//! endpoint, n)` laid over the shares in the order of [`FaultKind::ALL`]: same seed, same
//! sequence of faults per endpoint, whatever the interleaving between endpoints.

use super::kdniao::china_time;
use super::orders::{FW199_PATH, TOP_PATH};
use super::push::{KDNIAO_SUBSCRIBE_PATH, KUAIDI100_SUBSCRIBE_PATH};
use super::{Sandbox, Shared, KDNIAO_QUERY_PATH};
use crate::faults::{draw, pick};
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use chrono::Utc;
use parcelwatch::providers::push::Form;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use super::kuaidi100::KUAIDI100_QUERY_PATH;

/// Largest provider request body the fault layer reads: axum's default body limit, which the
/// handlers behind it apply anyway (real requests are a few kilobytes).
const MAX_BODY: usize = 2 * 1024 * 1024;
/// Pieces a slow body is cut into.
const SLOW_CHUNKS: usize = 8;

/// Shares (0..=1, the probability that one request gets that fault) of each fault, and how long
/// the slow ones last. NaN or negative shares count as 0; the shares are laid end to end in the
/// order of the fields, so their sum should stay at or below 1 (past 1 the later kinds lose).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProviderFaults {
    pub seed: u64,
    /// An HTTP 500, 502 or 503 (by turns) with an nginx-style HTML page: the provider's gateway
    /// failing. Every client treats a 5xx as retryable.
    pub http_5xx: f64,
    /// Nothing for [`ProviderFaults::timeout_hold`], then HTTP 504 Gateway Time-out: a provider
    /// that hangs. A client whose timeout is shorter gives up first (its own timeout error).
    pub timeout: f64,
    /// HTTP 200 and the headers at once, then the body trickled in pieces over
    /// [`ProviderFaults::slow_hold`]: a provider that stalls mid-answer. The body is the
    /// provider's own "busy" answer (as for [`ProviderFaults::refused`]), so a client that waits
    /// it out still gets a retryable failure and no sandbox state has moved.
    pub slow_body: f64,
    /// HTTP 200 with an HTML maintenance page instead of JSON: a misconfigured gateway or WAF.
    pub garbage: f64,
    /// HTTP 200 with a well-formed success answer of the endpoint's shape cut in half: a
    /// connection dropped mid-body by a proxy that already sent the headers.
    pub truncated: f64,
    /// HTTP 200 with the provider's own "try again later" refusal: Kdniao `Success:false`,
    /// Reason 系统繁忙，请稍后再试; Kuaidi100 `result:false`, returnCode 500, message
    /// 服务器错误，请稍后重试 (a bare 500 means "no result", which is not an error); TOP
    /// `error_response` code 15 `isp.remote-service-error`; fw199 code 500 系统繁忙.
    pub refused: f64,
    /// HTTP 200 with the provider's rate-limit answer: Kdniao `Success:false`, ResultCode 405,
    /// 用户今日查询次数已超过上限 (the only limit Kdniao documents); Kuaidi100 returnCode 502
    /// 查询过于频繁 (the sandbox's own 30-minute answer; Kuaidi100 documents no throttle for
    /// `/poll`, which gets the same); TOP code 7 App Call Limited,
    /// `accesscontrol.limited-by-app-access-count`, "This ban will last for N more seconds"
    /// with N from [`ProviderFaults::throttle_ban`]; fw199 code 429 调用过于频繁,请N秒后重试.
    pub throttle: f64,
    /// Share of push requests (sandbox → callback) whose body is cut in half, so the receiver
    /// cannot verify it and refuses it; like any unacknowledged push, it is sent again on the
    /// next delivery.
    pub push_garbage: f64,
    /// How long a [`ProviderFaults::timeout`] holds the request before its 504.
    pub timeout_hold: Duration,
    /// How long a [`ProviderFaults::slow_body`] takes to send its body.
    pub slow_hold: Duration,
    /// The ban a TOP / fw199 [`ProviderFaults::throttle`] announces (whole seconds, at least 1).
    pub throttle_ban: Duration,
}

impl Default for ProviderFaults {
    /// No faults; holds of 2 s, a 1 s ban.
    fn default() -> Self {
        ProviderFaults {
            seed: 0,
            http_5xx: 0.0,
            timeout: 0.0,
            slow_body: 0.0,
            garbage: 0.0,
            truncated: 0.0,
            refused: 0.0,
            throttle: 0.0,
            push_garbage: 0.0,
            timeout_hold: Duration::from_secs(2),
            slow_hold: Duration::from_secs(2),
            throttle_ban: Duration::from_secs(1),
        }
    }
}

impl ProviderFaults {
    /// The request shares, in the order of [`FaultKind::ALL`].
    fn shares(&self) -> [f64; 7] {
        [
            self.http_5xx,
            self.timeout,
            self.slow_body,
            self.garbage,
            self.truncated,
            self.refused,
            self.throttle,
        ]
    }

    /// Only `kind`, at `share`; the rest as [`Default`].
    pub fn only(kind: FaultKind, share: f64, seed: u64) -> ProviderFaults {
        let mut f = ProviderFaults {
            seed,
            ..ProviderFaults::default()
        };
        *match kind {
            FaultKind::Http5xx => &mut f.http_5xx,
            FaultKind::Timeout => &mut f.timeout,
            FaultKind::SlowBody => &mut f.slow_body,
            FaultKind::Garbage => &mut f.garbage,
            FaultKind::Truncated => &mut f.truncated,
            FaultKind::Refused => &mut f.refused,
            FaultKind::Throttle => &mut f.throttle,
        } = share;
        f
    }
}

/// One kind of request fault (see the fields of [`ProviderFaults`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    Http5xx,
    Timeout,
    SlowBody,
    Garbage,
    Truncated,
    Refused,
    Throttle,
}

impl FaultKind {
    pub const ALL: [FaultKind; 7] = [
        FaultKind::Http5xx,
        FaultKind::Timeout,
        FaultKind::SlowBody,
        FaultKind::Garbage,
        FaultKind::Truncated,
        FaultKind::Refused,
        FaultKind::Throttle,
    ];

    /// Its name in the counters: `http_5xx`, `timeout`, `slow_body`, `garbage`, `truncated`,
    /// `refused`, `throttle`.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Http5xx => "http_5xx",
            FaultKind::Timeout => "timeout",
            FaultKind::SlowBody => "slow_body",
            FaultKind::Garbage => "garbage",
            FaultKind::Truncated => "truncated",
            FaultKind::Refused => "refused",
            FaultKind::Throttle => "throttle",
        }
    }
}

/// A provider endpoint that can be faulted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultedEndpoint {
    /// Kdniao RequestType 1002 / 8001 on the query path.
    KdniaoQuery,
    /// Kdniao RequestType 8008 on `/api/dist`.
    KdniaoSubscribe,
    Kuaidi100Query,
    Kuaidi100Subscribe,
    /// TOP `taobao.logistics.trace.search`.
    TaobaoTrace,
    /// TOP `taobao.trades.sold.increment.get` and `taobao.trade.fullinfo.get`.
    TopOrders,
    Fw199Orders,
}

impl FaultedEndpoint {
    pub const ALL: [FaultedEndpoint; 7] = [
        FaultedEndpoint::KdniaoQuery,
        FaultedEndpoint::KdniaoSubscribe,
        FaultedEndpoint::Kuaidi100Query,
        FaultedEndpoint::Kuaidi100Subscribe,
        FaultedEndpoint::TaobaoTrace,
        FaultedEndpoint::TopOrders,
        FaultedEndpoint::Fw199Orders,
    ];

    /// Its name in the counters and its draw stream: `kdniao.query`, `kdniao.subscribe`,
    /// `kuaidi100.query`, `kuaidi100.subscribe`, `taobao.trace`, `top.orders`, `fw199.orders`.
    pub fn name(self) -> &'static str {
        match self {
            FaultedEndpoint::KdniaoQuery => "kdniao.query",
            FaultedEndpoint::KdniaoSubscribe => "kdniao.subscribe",
            FaultedEndpoint::Kuaidi100Query => "kuaidi100.query",
            FaultedEndpoint::Kuaidi100Subscribe => "kuaidi100.subscribe",
            FaultedEndpoint::TaobaoTrace => "taobao.trace",
            FaultedEndpoint::TopOrders => "top.orders",
            FaultedEndpoint::Fw199Orders => "fw199.orders",
        }
    }
}

/// The plan, the draw indices and the counters of one sandbox.
#[derive(Debug)]
pub(crate) struct FaultState {
    plan: RwLock<ProviderFaults>,
    seq: Mutex<BTreeMap<&'static str, u64>>,
    counts: Mutex<BTreeMap<String, u64>>,
}

impl Default for FaultState {
    fn default() -> Self {
        FaultState {
            plan: RwLock::new(ProviderFaults::default()),
            seq: Mutex::new(BTreeMap::new()),
            counts: Mutex::new(BTreeMap::new()),
        }
    }
}

impl FaultState {
    fn plan(&self) -> ProviderFaults {
        *self.plan.read().unwrap_or_else(|p| p.into_inner())
    }

    fn next_index(&self, stream: &'static str) -> u64 {
        let mut seq = self.seq.lock().unwrap_or_else(|p| p.into_inner());
        let next = seq.entry(stream).or_default();
        let n = *next;
        *next += 1;
        n
    }

    fn count(&self, key: String) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        *c.entry(key).or_default() += 1;
    }

    /// The verdict for the next request to `ep`, counted; with the request's draw index.
    fn decide(&self, ep: FaultedEndpoint, plan: &ProviderFaults) -> (Option<FaultKind>, u64) {
        let n = self.next_index(ep.name());
        let kind = pick(draw(plan.seed, ep.name(), n), &plan.shares()).map(|i| FaultKind::ALL[i]);
        let what = kind.map_or("passed", FaultKind::name);
        self.count(format!("{}.{what}", ep.name()));
        (kind, n)
    }

    /// Whether the next push should be garbled (counted as `push.garbage` or `push.passed`).
    pub(crate) fn garble_next_push(&self) -> bool {
        let plan = self.plan();
        let n = self.next_index("push");
        let garble = pick(draw(plan.seed, "push", n), &[plan.push_garbage]).is_some();
        self.count(format!(
            "push.{}",
            if garble { "garbage" } else { "passed" }
        ));
        garble
    }
}

impl Sandbox {
    /// Replace the provider fault plan (all zero by default). Draw indices carry on.
    pub fn set_provider_faults(&self, f: ProviderFaults) {
        *self
            .shared
            .faults
            .plan
            .write()
            .unwrap_or_else(|p| p.into_inner()) = f;
    }

    pub fn provider_faults(&self) -> ProviderFaults {
        self.shared.faults.plan()
    }

    /// Requests by endpoint and outcome: `<endpoint>.<kind>` for each fault injected (names
    /// from [`FaultedEndpoint::name`] and [`FaultKind::name`]), `<endpoint>.passed` for requests
    /// let through to the handler; `push.garbage` / `push.passed` for pushes. Absent means 0.
    pub fn provider_fault_counts(&self) -> BTreeMap<String, u64> {
        self.shared
            .faults
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The endpoint a request is for, if it is one that may be faulted.
fn endpoint_of(path: &str, body: &[u8]) -> Option<FaultedEndpoint> {
    let form = || {
        std::str::from_utf8(body)
            .ok()
            .and_then(|b| Form::parse(b).ok())
    };
    let field = |name: &str| form().and_then(|f| f.get(name).map(|v| v.trim().to_owned()));
    match path {
        KDNIAO_QUERY_PATH => match field("RequestType").as_deref() {
            Some("1002" | "8001") => Some(FaultedEndpoint::KdniaoQuery),
            _ => None,
        },
        KDNIAO_SUBSCRIBE_PATH => match field("RequestType").as_deref() {
            Some("8008") => Some(FaultedEndpoint::KdniaoSubscribe),
            _ => None,
        },
        KUAIDI100_QUERY_PATH => Some(FaultedEndpoint::Kuaidi100Query),
        KUAIDI100_SUBSCRIBE_PATH => Some(FaultedEndpoint::Kuaidi100Subscribe),
        TOP_PATH => match field("method").as_deref() {
            Some("taobao.logistics.trace.search") => Some(FaultedEndpoint::TaobaoTrace),
            Some("taobao.trades.sold.increment.get" | "taobao.trade.fullinfo.get") => {
                Some(FaultedEndpoint::TopOrders)
            }
            _ => None,
        },
        FW199_PATH => Some(FaultedEndpoint::Fw199Orders),
        _ => None,
    }
}

fn is_provider_path(path: &str) -> bool {
    [
        KDNIAO_QUERY_PATH,
        KDNIAO_SUBSCRIBE_PATH,
        KUAIDI100_QUERY_PATH,
        KUAIDI100_SUBSCRIBE_PATH,
        TOP_PATH,
        FW199_PATH,
    ]
    .contains(&path)
}

/// The fault layer, in front of every sandbox route.
pub(crate) async fn inject(
    State(shared): State<Arc<Shared>>,
    req: Request,
    next: Next,
) -> Response {
    if req.method() != Method::POST || !is_provider_path(req.uri().path()) {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => {
            return respond(
                StatusCode::PAYLOAD_TOO_LARGE,
                "text/plain; charset=utf-8",
                Body::from(format!("request body unreadable: {e}")),
            )
        }
    };
    let ep = endpoint_of(parts.uri.path(), &bytes);
    let req = Request::from_parts(parts, Body::from(bytes));
    let Some(ep) = ep else {
        return next.run(req).await;
    };
    let plan = shared.faults.plan();
    match shared.faults.decide(ep, &plan) {
        (None, _) => next.run(req).await,
        (Some(kind), n) => {
            tracing::debug!(
                endpoint = ep.name(),
                fault = kind.name(),
                n,
                "sandbox fault"
            );
            fault_response(&shared, ep, kind, &plan, n).await
        }
    }
}

fn respond(status: StatusCode, content_type: &'static str, body: Body) -> Response {
    let mut out = Response::new(body);
    *out.status_mut() = status;
    out.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    out
}

const JSON: &str = "application/json;charset=UTF-8";
const HTML: &str = "text/html";

fn nginx_page(status: StatusCode) -> String {
    let line = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    );
    format!(
        "<html>\r\n<head><title>{line}</title></head>\r\n<body>\r\n<center><h1>{line}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    )
}

async fn fault_response(
    shared: &Shared,
    ep: FaultedEndpoint,
    kind: FaultKind,
    plan: &ProviderFaults,
    n: u64,
) -> Response {
    match kind {
        FaultKind::Http5xx => {
            let status = match n % 3 {
                0 => StatusCode::BAD_GATEWAY,
                1 => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            respond(status, HTML, Body::from(nginx_page(status)))
        }
        FaultKind::Timeout => {
            tokio::time::sleep(plan.timeout_hold).await;
            let status = StatusCode::GATEWAY_TIMEOUT;
            respond(status, HTML, Body::from(nginx_page(status)))
        }
        FaultKind::SlowBody => respond(
            StatusCode::OK,
            JSON,
            trickle(refused_body(shared, ep).to_string(), plan.slow_hold),
        ),
        FaultKind::Garbage => respond(
            StatusCode::OK,
            HTML,
            Body::from(
                "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>系统维护</title></head>\
                 <body><h1>系统维护中，请稍后访问</h1></body></html>",
            ),
        ),
        FaultKind::Truncated => respond(
            StatusCode::OK,
            JSON,
            Body::from(first_half(&good_body(shared, ep).to_string()).to_owned()),
        ),
        FaultKind::Refused => respond(
            StatusCode::OK,
            JSON,
            Body::from(refused_body(shared, ep).to_string()),
        ),
        FaultKind::Throttle => respond(
            StatusCode::OK,
            JSON,
            Body::from(throttle_body(shared, ep, plan.throttle_ban).to_string()),
        ),
    }
}

/// The first half of `s`, cut on a character boundary.
pub(crate) fn first_half(s: &str) -> &str {
    let mut cut = s.len() / 2;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    &s[..cut]
}

/// `body` in [`SLOW_CHUNKS`] pieces: the first at once, the others spread over `over`.
fn trickle(body: String, over: Duration) -> Body {
    let bytes = Bytes::from(body);
    let size = bytes.len().div_ceil(SLOW_CHUNKS).max(1);
    let pieces: Vec<Bytes> = (0..bytes.len())
        .step_by(size)
        .map(|start| bytes.slice(start..(start + size).min(bytes.len())))
        .collect();
    let gaps = u32::try_from(pieces.len().saturating_sub(1))
        .unwrap_or(1)
        .max(1);
    let pause = over / gaps;
    let stream = futures::stream::unfold(
        (pieces.into_iter(), true),
        move |(mut it, first)| async move {
            let piece = it.next()?;
            if !first {
                tokio::time::sleep(pause).await;
            }
            Some((Ok::<Bytes, std::io::Error>(piece), (it, false)))
        },
    );
    Body::from_stream(stream)
}

/// A success answer of the endpoint's shape (only ever sent cut in half).
fn good_body(shared: &Shared, ep: FaultedEndpoint) -> Value {
    let id = shared.cfg.ebusiness_id.as_str();
    let now = china_time(Utc::now());
    match ep {
        FaultedEndpoint::KdniaoQuery => json!({
            "EBusinessID": id, "OrderCode": "", "ShipperCode": "YTO",
            "LogisticCode": "YT0000000000000", "Success": true, "State": "2", "StateEx": "2",
            "Location": "杭州市",
            "Traces": [
                {"AcceptTime": now, "AcceptStation": "【杭州转运中心】已发出，下一站【上海转运中心】",
                 "Location": "杭州市", "Action": "2"}
            ],
        }),
        FaultedEndpoint::KdniaoSubscribe => json!({
            "EBusinessID": id, "UpdateTime": now, "Success": true, "Reason": "",
            "EstimatedDeliveryTime": "",
        }),
        FaultedEndpoint::Kuaidi100Query => json!({
            "message": "ok", "nu": "YT0000000000000", "ischeck": "0", "condition": "F00",
            "com": "yuantong", "status": "200", "state": "0",
            "data": [
                {"time": now, "ftime": now, "context": "【杭州转运中心】已发出，下一站【上海转运中心】",
                 "location": "杭州市"}
            ],
        }),
        FaultedEndpoint::Kuaidi100Subscribe => {
            json!({"result": true, "returnCode": "200", "message": "提交成功"})
        }
        FaultedEndpoint::TaobaoTrace => json!({
            "logistics_trace_search_response": {
                "tid": 3000000000000001u64, "out_sid": "YT0000000000000",
                "company_name": "圆通速递", "status": "物流公司揽收成功",
                "trace_list": {"transit_step_info": [
                    {"status_time": now, "status_desc": "【杭州转运中心】已发出", "action": "TRANSPORT"}
                ]},
                "request_id": "sandbox",
            }
        }),
        FaultedEndpoint::TopOrders => json!({
            "trades_sold_increment_get_response": {
                "total_results": 1, "has_next": false,
                "trades": {"trade": [{"tid": 3000000000000001u64, "status": "WAIT_SELLER_SEND_GOODS",
                                      "modified": now}]},
                "request_id": "sandbox",
            }
        }),
        FaultedEndpoint::Fw199Orders => json!({
            "code": 0, "message": "success",
            "data": {"total": 1, "list": [{"tid": "3000000000000001", "status": "WAIT_SELLER_SEND_GOODS",
                                           "modified": now}]},
        }),
    }
}

/// The provider's own "try again later" refusal (see [`ProviderFaults::refused`]).
fn refused_body(shared: &Shared, ep: FaultedEndpoint) -> Value {
    match ep {
        FaultedEndpoint::KdniaoQuery | FaultedEndpoint::KdniaoSubscribe => json!({
            "EBusinessID": shared.cfg.ebusiness_id, "UpdateTime": china_time(Utc::now()),
            "Success": false, "Reason": "系统繁忙，请稍后再试",
        }),
        FaultedEndpoint::Kuaidi100Query | FaultedEndpoint::Kuaidi100Subscribe => {
            json!({"result": false, "returnCode": "500", "message": "服务器错误，请稍后重试"})
        }
        FaultedEndpoint::TaobaoTrace | FaultedEndpoint::TopOrders => json!({
            "error_response": {
                "code": 15, "msg": "Remote service error",
                "sub_code": "isp.remote-service-error",
                "sub_msg": "后端服务调用失败，请稍后重试", "request_id": "sandbox",
            }
        }),
        FaultedEndpoint::Fw199Orders => {
            json!({"code": 500, "message": "系统繁忙，请稍后再试", "data": null})
        }
    }
}

/// The provider's rate-limit answer (see [`ProviderFaults::throttle`]).
fn throttle_body(shared: &Shared, ep: FaultedEndpoint, ban: Duration) -> Value {
    let secs = ban.as_secs().max(1);
    match ep {
        FaultedEndpoint::KdniaoQuery | FaultedEndpoint::KdniaoSubscribe => json!({
            "EBusinessID": shared.cfg.ebusiness_id, "UpdateTime": china_time(Utc::now()),
            "Success": false, "ResultCode": "405", "Reason": "用户今日查询次数已超过上限，请明日再查",
        }),
        FaultedEndpoint::Kuaidi100Query | FaultedEndpoint::Kuaidi100Subscribe => json!({
            "result": false, "returnCode": "502",
            "message": "查询过于频繁：同一单号30分钟内只能查询一次，请稍后再查",
        }),
        FaultedEndpoint::TaobaoTrace | FaultedEndpoint::TopOrders => json!({
            "error_response": {
                "code": 7, "msg": "App Call Limited",
                "sub_code": "accesscontrol.limited-by-app-access-count",
                "sub_msg": format!("This ban will last for {secs} more seconds"),
                "request_id": "sandbox",
            }
        }),
        FaultedEndpoint::Fw199Orders => json!({
            "code": super::orders::FW199_THROTTLE_CODE,
            "message": format!("调用过于频繁,请{secs}秒后重试"), "data": null,
        }),
    }
}

#[cfg(test)]
#[path = "faults_tests.rs"]
mod tests;
