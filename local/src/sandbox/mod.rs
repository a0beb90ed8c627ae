//! The carrier sandbox: an HTTP server on loopback that speaks Kdniao's real wire protocol
//! (form fields, DataSign, 1002/8001 responses) and answers from deterministic simulated
//! journeys, as seen at the time of a [`Clock`].
//!
//! Routes:
//! - `POST /Ebusiness/EbusinessOrderHandle.aspx` — Kdniao 1002 / 8001 (see [`kdniao`]).
//! - `POST /sandbox/waybills` — `{carrier, number, shipped_at, kind?}`: register a waybill;
//!   answers with its journey.
//! - `GET /sandbox/waybills/{carrier}/{number}` — the journey, its truth statuses and what is
//!   visible now.
//! - `GET /sandbox/stats` — request counters.
//!
//! Any provider route can be made to fail a seeded share of its requests: see [`faults`].

pub mod faults;
pub mod journey;
pub mod kdniao;
pub mod kuaidi100;
pub mod orders;
pub mod push;
#[cfg(test)]
pub(crate) mod testkit;

use crate::clock::Clock;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use journey::{normalize_number, Journey, JourneyKind, KindWeights};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Test credentials the sandbox accepts by default.
pub const DEFAULT_EBUSINESS_ID: &str = "1000001";
pub const DEFAULT_APP_KEY: &str = "sandbox-appkey-0001";
/// Path of Kdniao's query endpoint, as on `api.kdniao.com`.
pub const KDNIAO_QUERY_PATH: &str = "/Ebusiness/EbusinessOrderHandle.aspx";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxConfig {
    /// Seed of every journey: same seed, same journeys.
    pub seed: u64,
    pub ebusiness_id: String,
    pub app_key: String,
    /// Port on 127.0.0.1; `None` picks a free one.
    pub port: Option<u16>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            seed: 0,
            ebusiness_id: DEFAULT_EBUSINESS_ID.to_string(),
            app_key: DEFAULT_APP_KEY.to_string(),
            port: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot bind the sandbox to {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the sandbox's local address")]
    LocalAddr(#[source] std::io::Error),
}

/// Request counters, read with [`Sandbox::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SandboxStats {
    /// Requests by RequestType (counted on arrival, before any check).
    pub requests_1002: u64,
    pub requests_8001: u64,
    pub requests_other: u64,
    /// Requests whose DataSign did not verify.
    pub bad_sign: u64,
    pub unknown_ebusiness_id: u64,
    /// Well-formed queries for a waybill the sandbox does not know.
    pub unknown_waybill: u64,
    /// Missing fields, malformed RequestData, unsupported RequestType or DataType, SF without
    /// CustomerName.
    pub bad_request: u64,
    /// Queries answered with the daily-quota failure while the quota was set as spent.
    pub quota_refused: u64,
}

impl SandboxStats {
    pub fn total_requests(&self) -> u64 {
        self.requests_1002 + self.requests_8001 + self.requests_other
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    requests_1002: AtomicU64,
    requests_8001: AtomicU64,
    requests_other: AtomicU64,
    bad_sign: AtomicU64,
    unknown_ebusiness_id: AtomicU64,
    unknown_waybill: AtomicU64,
    bad_request: AtomicU64,
    quota_refused: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> SandboxStats {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SandboxStats {
            requests_1002: r(&self.requests_1002),
            requests_8001: r(&self.requests_8001),
            requests_other: r(&self.requests_other),
            bad_sign: r(&self.bad_sign),
            unknown_ebusiness_id: r(&self.unknown_ebusiness_id),
            unknown_waybill: r(&self.unknown_waybill),
            bad_request: r(&self.bad_request),
            quota_refused: r(&self.quota_refused),
        }
    }
}

/// (carrier, number), both normalised to upper case.
type WaybillKey = (String, String);

/// State shared by the handlers and the [`Sandbox`] handle.
pub(crate) struct Shared {
    cfg: SandboxConfig,
    weights: KindWeights,
    clock: Arc<dyn Clock>,
    waybills: RwLock<HashMap<WaybillKey, Journey>>,
    counters: Counters,
    /// The order platforms' side (fw199 enhanced order list, TOP): see [`orders`].
    pub(crate) orders: orders::OrderBook,
    /// Push subscriptions (Kdniao 8008, Kuaidi100 poll) and push delivery: see [`push`].
    pub(crate) push: push::Subscriptions,
    /// Kdniao's daily query quota is spent: queries get its quota failure.
    pub(crate) kdniao_quota_exhausted: std::sync::atomic::AtomicBool,
    /// Kuaidi100 real-time query counters and 30-minute windows: see [`kuaidi100`].
    pub(crate) kuaidi100: kuaidi100::QueryState,
    /// Seeded provider faults: see [`faults`].
    pub(crate) faults: faults::FaultState,
}

fn key(carrier: &str, number: &str) -> WaybillKey {
    (
        carrier.trim().to_ascii_uppercase(),
        normalize_number(number),
    )
}

impl Shared {
    fn register(
        &self,
        kind: Option<JourneyKind>,
        carrier: &str,
        number: &str,
        shipped_at: DateTime<Utc>,
    ) -> Journey {
        let (carrier, number) = key(carrier, number);
        let j = match kind {
            Some(k) => journey::plan_kind(k, self.cfg.seed, &carrier, &number, shipped_at),
            None => journey::plan_with(&self.weights, self.cfg.seed, &carrier, &number, shipped_at),
        };
        // Registering again replaces the journey (same inputs give the same journey anyway).
        self.waybills
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert((carrier, number), j.clone());
        j
    }

    fn journey(&self, carrier: &str, number: &str) -> Option<Journey> {
        self.waybills
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key(carrier, number))
            .cloned()
    }
}

/// A running sandbox. Stops when dropped or on [`Sandbox::shutdown`].
pub struct Sandbox {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The AppKey is a secret, even a sandbox one: keep it out of debug output.
        f.debug_struct("Sandbox")
            .field("addr", &self.addr)
            .field("seed", &self.shared.cfg.seed)
            .field("ebusiness_id", &self.shared.cfg.ebusiness_id)
            .finish_non_exhaustive()
    }
}

impl Sandbox {
    pub async fn start(cfg: SandboxConfig, clock: Arc<dyn Clock>) -> Result<Sandbox, SandboxError> {
        Self::start_with_weights(cfg, KindWeights::default(), clock).await
    }

    pub async fn start_with_weights(
        cfg: SandboxConfig,
        weights: KindWeights,
        clock: Arc<dyn Clock>,
    ) -> Result<Sandbox, SandboxError> {
        let want = SocketAddr::from((Ipv4Addr::LOCALHOST, cfg.port.unwrap_or(0)));
        let listener = tokio::net::TcpListener::bind(want)
            .await
            .map_err(|source| SandboxError::Bind { addr: want, source })?;
        let addr = listener.local_addr().map_err(SandboxError::LocalAddr)?;
        let shared = Arc::new(Shared {
            cfg,
            weights,
            clock,
            waybills: RwLock::new(HashMap::new()),
            counters: Counters::default(),
            orders: orders::OrderBook::default(),
            push: push::Subscriptions::default(),
            kdniao_quota_exhausted: std::sync::atomic::AtomicBool::new(false),
            kuaidi100: kuaidi100::QueryState::default(),
            faults: faults::FaultState::default(),
        });
        let app = router(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    // Either an explicit stop or the handle being dropped ends the server.
                    let _stop_or_drop = stopped.await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "sandbox server failed");
            }
        });
        tracing::debug!(%addr, "sandbox listening");
        Ok(Sandbox {
            addr,
            shared,
            stop: Some(stop),
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The URL to configure as the Kdniao query endpoint.
    pub fn kdniao_endpoint(&self) -> String {
        format!("{}{}", self.base_url(), KDNIAO_QUERY_PATH)
    }

    pub fn ebusiness_id(&self) -> &str {
        &self.shared.cfg.ebusiness_id
    }

    pub fn app_key(&self) -> &str {
        &self.shared.cfg.app_key
    }

    pub fn seed(&self) -> u64 {
        self.shared.cfg.seed
    }

    /// Make the carrier know this waybill; its journey is drawn from the seed.
    pub fn register(&self, carrier: &str, number: &str, shipped_at: DateTime<Utc>) -> Journey {
        self.shared.register(None, carrier, number, shipped_at)
    }

    /// Like [`Sandbox::register`], forcing the journey's kind.
    pub fn register_kind(
        &self,
        kind: JourneyKind,
        carrier: &str,
        number: &str,
        shipped_at: DateTime<Utc>,
    ) -> Journey {
        self.shared
            .register(Some(kind), carrier, number, shipped_at)
    }

    pub fn journey(&self, carrier: &str, number: &str) -> Option<Journey> {
        self.shared.journey(carrier, number)
    }

    /// Spend (or restore) the merchant's Kdniao daily quota: while spent, every 1002/8001 query
    /// is answered with Kdniao's quota failure ("…超过上限…").
    pub fn set_kdniao_quota_exhausted(&self, spent: bool) {
        self.shared
            .kdniao_quota_exhausted
            .store(spent, Ordering::Relaxed);
    }

    pub fn stats(&self) -> SandboxStats {
        self.shared.counters.snapshot()
    }

    /// Stop accepting connections and wait for in-flight requests to finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _already_stopped = stop.send(());
        }
        if let Some(task) = self.task.take() {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "sandbox task ended abnormally");
            }
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _already_stopped = stop.send(());
        }
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(KDNIAO_QUERY_PATH, post(kdniao::handle))
        .route("/sandbox/waybills", post(register_waybill))
        .route("/sandbox/waybills/{carrier}/{number}", get(get_waybill))
        .route("/sandbox/stats", get(get_stats))
        .merge(orders::routes())
        .merge(push::routes())
        .merge(kuaidi100::routes())
        // In front of every route: a faulted provider request never reaches its handler.
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            faults::inject,
        ))
        .with_state(shared)
}

#[derive(Debug, Deserialize)]
struct RegisterBody {
    carrier: String,
    number: String,
    shipped_at: DateTime<Utc>,
    #[serde(default)]
    kind: Option<JourneyKind>,
}

fn bad_request(reason: String) -> (StatusCode, Json<Value>) {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": reason })))
}

async fn register_waybill(
    State(shared): State<Arc<Shared>>,
    body: Result<Json<RegisterBody>, JsonRejection>,
) -> (StatusCode, Json<Value>) {
    let body = match body {
        Ok(Json(b)) => b,
        Err(rejection) => return bad_request(rejection.body_text()),
    };
    // Only waybills the pipeline itself would accept.
    let id = match parcelwatch::domain::ShipmentId::parse(&body.carrier, &body.number) {
        Ok(id) => id,
        Err(e) => return bad_request(e.to_string()),
    };
    let j = shared.register(
        body.kind,
        id.carrier.as_str(),
        id.number.as_str(),
        body.shipped_at,
    );
    (
        StatusCode::OK,
        Json(waybill_view(
            &shared,
            id.carrier.as_str(),
            id.number.as_str(),
            &j,
        )),
    )
}

async fn get_waybill(
    State(shared): State<Arc<Shared>>,
    Path((carrier, number)): Path<(String, String)>,
) -> (StatusCode, Json<Value>) {
    let (carrier, number) = key(&carrier, &number);
    match shared.journey(&carrier, &number) {
        Some(j) => (
            StatusCode::OK,
            Json(waybill_view(&shared, &carrier, &number, &j)),
        ),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("waybill {carrier} {number} is not registered") })),
        ),
    }
}

async fn get_stats(State(shared): State<Arc<Shared>>) -> Json<SandboxStats> {
    Json(shared.counters.snapshot())
}

fn waybill_view(shared: &Shared, carrier: &str, number: &str, j: &Journey) -> Value {
    let now = shared.clock.now();
    let visible = j.visible_at(now);
    let truth: Vec<Value> = j
        .truth_statuses(DateTime::<Utc>::MAX_UTC)
        .into_iter()
        .map(|(at, s)| json!({ "at": at, "status": s }))
        .collect();
    json!({
        "carrier": carrier,
        "number": number,
        "kind": j.kind,
        "steps": j.steps,
        "truth": truth,
        "now": now,
        "visible": {
            "state": visible.state,
            "state_ex": visible.state_ex,
            "lines": visible.traces.len(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::journey::JourneyKind;
    use super::kdniao::china_time;
    use super::*;

    use crate::sandbox::testkit::{sandbox, t0};
    use chrono::Duration;
    use parcelwatch::providers::kdniao::data_sign;

    struct Req<'a> {
        request_type: &'a str,
        request_data: String,
        ebusiness_id: &'a str,
        app_key: &'a str,
    }

    impl<'a> Req<'a> {
        fn query(request_type: &'a str, carrier: &str, number: &str) -> Self {
            Req {
                request_type,
                request_data: format!(
                    r#"{{"OrderCode":"","ShipperCode":"{carrier}","LogisticCode":"{number}"}}"#
                ),
                ebusiness_id: DEFAULT_EBUSINESS_ID,
                app_key: DEFAULT_APP_KEY,
            }
        }

        async fn send(&self, sb: &Sandbox) -> Value {
            let sign = data_sign(&self.request_data, self.app_key);
            let form = [
                ("RequestData", self.request_data.as_str()),
                ("EBusinessID", self.ebusiness_id),
                ("RequestType", self.request_type),
                ("DataSign", sign.as_str()),
                ("DataType", "2"),
            ];
            let resp = reqwest::Client::new()
                .post(sb.kdniao_endpoint())
                .form(&form)
                .send()
                .await
                .expect("request reaches the sandbox");
            assert_eq!(
                resp.status(),
                reqwest::StatusCode::OK,
                "Kdniao answers errors with HTTP 200"
            );
            resp.json().await.expect("JSON body")
        }
    }

    fn traces(v: &Value) -> &Vec<Value> {
        v["Traces"].as_array().expect("Traces array")
    }

    #[tokio::test]
    async fn signed_8001_shows_what_is_visible_at_the_clock_time() {
        let (sb, clock) = sandbox(7).await;
        let j = sb.register_kind(JourneyKind::Delivered, "YTO", "YT1234567890123", t0());

        // Shipped but not yet picked up: a fine request, no trace yet.
        let v = Req::query("8001", "YTO", "YT1234567890123").send(&sb).await;
        assert_eq!(v["Success"], true);
        assert_eq!(v["State"], "0");
        assert_eq!(v["Reason"], "暂无轨迹信息");
        assert!(traces(&v).is_empty());

        // Just after the third step.
        let third = &j.steps[2];
        clock.set(third.at);
        let v = Req::query("8001", "YTO", "YT1234567890123").send(&sb).await;
        assert_eq!(v["Success"], true);
        assert_eq!(v["EBusinessID"], DEFAULT_EBUSINESS_ID);
        assert_eq!(v["ShipperCode"], "YTO");
        assert_eq!(v["LogisticCode"], "YT1234567890123");
        assert_eq!(v["State"], third.state);
        assert_eq!(v["StateEx"], third.state_ex);
        assert_eq!(v["Location"], third.location.as_str());
        let lines = traces(&v);
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["AcceptTime"], china_time(j.steps[0].at));
        assert_eq!(lines[0]["AcceptStation"], j.steps[0].station.as_str());
        assert_eq!(lines[0]["Action"], "1");
        assert_eq!(lines[2]["Location"], third.location.as_str());

        // Advancing the clock reveals more lines, up to the signature.
        clock.advance(Duration::days(30));
        let v = Req::query("8001", "YTO", "YT1234567890123").send(&sb).await;
        assert_eq!(traces(&v).len(), j.steps.len());
        assert_eq!(
            (v["State"].as_str(), v["StateEx"].as_str()),
            (Some("3"), Some("3"))
        );
        assert_eq!(sb.stats().requests_8001, 3);
        assert_eq!(sb.stats().unknown_waybill, 0);
    }

    #[tokio::test]
    async fn instant_1002_has_no_state_ex_nor_line_codes() {
        let (sb, clock) = sandbox(1).await;
        let j = sb.register_kind(JourneyKind::LockerPickup, "ZTO", "731234567890123", t0());
        let locker = j
            .steps
            .iter()
            .find(|s| s.state_ex == "211")
            .expect("locker step");
        clock.set(locker.at);
        let v = Req::query("1002", "ZTO", "731234567890123").send(&sb).await;
        assert_eq!(v["Success"], true);
        assert_eq!(v["State"], "2");
        assert!(v.get("StateEx").is_none(), "{v}");
        assert!(v.get("Location").is_none(), "{v}");
        let last = traces(&v).last().expect("lines").clone();
        assert_eq!(last["AcceptStation"], locker.station.as_str());
        assert!(last.get("Action").is_none() && last.get("Location").is_none());
        assert_eq!(sb.stats().requests_1002, 1);
    }

    #[tokio::test]
    async fn a_verdict_changes_state_ex_without_a_new_line() {
        let (sb, clock) = sandbox(2).await;
        let j = sb.register_kind(JourneyKind::Stalled, "STO", "771234567890123", t0());
        let verdict = j
            .steps
            .iter()
            .find(|s| s.state_ex == "403")
            .expect("stall verdict");
        clock.set(verdict.at - Duration::seconds(1));
        let before = Req::query("8001", "STO", "771234567890123").send(&sb).await;
        clock.set(verdict.at);
        let after = Req::query("8001", "STO", "771234567890123").send(&sb).await;
        assert_eq!(before["StateEx"], "2");
        assert_eq!(after["StateEx"], "403");
        assert_eq!(after["State"], "4");
        assert_eq!(traces(&before), traces(&after));
    }

    #[tokio::test]
    async fn a_wrong_sign_is_refused_and_counted() {
        let (sb, _clock) = sandbox(3).await;
        sb.register("YTO", "YT1234567890123", t0());
        let mut req = Req::query("8001", "YTO", "YT1234567890123");
        req.app_key = "not-the-key";
        let v = req.send(&sb).await;
        assert_eq!(v["Success"], false);
        assert_eq!(v["Reason"], "DataSign验证失败");
        assert!(v.get("Traces").is_none());
        let s = sb.stats();
        assert_eq!((s.bad_sign, s.requests_8001, s.unknown_waybill), (1, 1, 0));
    }

    #[tokio::test]
    async fn an_unknown_ebusiness_id_is_rejected() {
        let (sb, _clock) = sandbox(3).await;
        let mut req = Req::query("8001", "YTO", "YT1234567890123");
        req.ebusiness_id = "9999999";
        let v = req.send(&sb).await;
        assert_eq!(v["Success"], false);
        assert_eq!(v["EBusinessID"], "9999999");
        assert_eq!(sb.stats().unknown_ebusiness_id, 1);
        assert_eq!(sb.stats().bad_sign, 0);
    }

    #[tokio::test]
    async fn bad_requests_get_a_reason() {
        let (sb, _clock) = sandbox(4).await;
        let v = Req::query("1009", "YTO", "YT1234567890123").send(&sb).await;
        assert_eq!(v["Success"], false);
        assert!(
            v["Reason"].as_str().is_some_and(|r| r.contains("1009")),
            "{v}"
        );

        let mut req = Req::query("8001", "YTO", "YT1234567890123");
        req.request_data = "{not json".into();
        let v = req.send(&sb).await;
        assert_eq!(v["Success"], false);
        assert!(
            v["Reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("RequestData格式错误")),
            "{v}"
        );

        // SF insists on the last four digits of a phone number.
        sb.register("SF", "SF1234567890123", t0());
        let v = Req::query("8001", "SF", "SF1234567890123").send(&sb).await;
        assert_eq!(v["Success"], false);
        let mut req = Req::query("8001", "SF", "SF1234567890123");
        req.request_data =
            r#"{"ShipperCode":"SF","LogisticCode":"SF1234567890123","CustomerName":"5521"}"#.into();
        let v = req.send(&sb).await;
        assert_eq!(v["Success"], true, "{v}");

        // Missing fields.
        let resp = reqwest::Client::new()
            .post(sb.kdniao_endpoint())
            .form(&[("RequestType", "8001")])
            .send()
            .await
            .expect("request");
        let v: Value = resp.json().await.expect("json");
        assert_eq!(v["Success"], false);
        assert!(
            v["Reason"].as_str().is_some_and(|r| r.contains("DataSign")),
            "{v}"
        );

        let s = sb.stats();
        assert_eq!(s.requests_other, 1);
        assert_eq!(s.bad_request, 4);
        assert_eq!(s.requests_8001, 4);
    }

    #[tokio::test]
    async fn an_unknown_waybill_has_no_trace() {
        let (sb, _clock) = sandbox(5).await;
        let v = Req::query("8001", "YD", "431234567890123").send(&sb).await;
        assert_eq!(v["Success"], true);
        assert_eq!(v["State"], "0");
        assert_eq!(v["StateEx"], "0");
        assert!(traces(&v).is_empty());
        assert_eq!(sb.stats().unknown_waybill, 1);
    }

    #[tokio::test]
    async fn admin_routes_register_and_show_journeys() {
        let (sb, clock) = sandbox(6).await;
        let http = reqwest::Client::new();
        let resp = http
            .post(format!("{}/sandbox/waybills", sb.base_url()))
            .json(&json!({"carrier": "jd", "number": "JDV123456789012", "shipped_at": t0(), "kind": "Refused"}))
            .send()
            .await
            .expect("register");
        assert_eq!(resp.status(), reqwest::StatusCode::OK);
        let registered: Value = resp.json().await.expect("json");
        assert_eq!(registered["kind"], "Refused");
        let in_process = sb
            .journey("JD", "JDV123456789012")
            .expect("registered in the shared map");
        assert_eq!(in_process.kind, JourneyKind::Refused);
        assert_eq!(
            registered["steps"],
            serde_json::to_value(&in_process.steps).expect("serialize")
        );
        assert_eq!(
            registered["truth"]
                .as_array()
                .and_then(|t| t.last())
                .map(|l| l["status"].clone()),
            Some(json!("Returned"))
        );

        clock.set(in_process.steps[1].at);
        let shown: Value = http
            .get(format!(
                "{}/sandbox/waybills/JD/JDV123456789012",
                sb.base_url()
            ))
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        assert_eq!(shown["visible"]["lines"], 2);

        let missing = http
            .get(format!(
                "{}/sandbox/waybills/JD/JDV000000000000",
                sb.base_url()
            ))
            .send()
            .await
            .expect("get");
        assert_eq!(missing.status(), reqwest::StatusCode::NOT_FOUND);
        let bad = http
            .post(format!("{}/sandbox/waybills", sb.base_url()))
            .json(&json!({"carrier": "J D", "number": "x", "shipped_at": t0()}))
            .send()
            .await
            .expect("post");
        assert_eq!(bad.status(), reqwest::StatusCode::BAD_REQUEST);
        let stats: Value = http
            .get(format!("{}/sandbox/stats", sb.base_url()))
            .send()
            .await
            .expect("stats")
            .json()
            .await
            .expect("json");
        assert_eq!(stats["requests_8001"], 0);
    }

    #[tokio::test]
    async fn shutdown_stops_the_server() {
        let (sb, _clock) = sandbox(8).await;
        let url = sb.kdniao_endpoint();
        assert_eq!(
            Req::query("8001", "YTO", "YT1").send(&sb).await["Success"],
            true
        );
        sb.shutdown().await;
        let after = reqwest::Client::new()
            .post(&url)
            .form(&[("RequestType", "8001")])
            .send()
            .await;
        assert!(after.is_err(), "server still answering after shutdown");
    }

    #[tokio::test]
    async fn same_seed_sandboxes_agree() {
        let (a, _ca) = sandbox(9).await;
        let (b, _cb) = sandbox(9).await;
        let (c, _cc) = sandbox(10).await;
        let ja = a.register("EMS", "1123456789012", t0());
        assert_eq!(ja, b.register("EMS", "1123456789012", t0()));
        assert_ne!(ja, c.register("EMS", "1123456789012", t0()));
    }
}
