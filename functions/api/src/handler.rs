//! One HTTP API request (payload format 2.0): route, authenticate, call the domain, answer.
//!
//! | route | auth | answers |
//! |---|---|---|
//! | `POST /shipments` | `x-api-key` | 201 created / 200 exists / 400 invalid (one); 200 with per-item results (bulk); 413 too many or too large |
//! | `GET /shipments/{carrier}/{number}` | `x-api-key` | 200 shipment + trajectory newest first + `eta`; 404 not tracked |
//! | `GET /analytics/routes?carrier=&origin=&destination=` | `x-api-key` | 200 routes (count, p50/p90 delivery time, exception rate) and their total; 400 bad filter |
//! | `GET /analytics/carriers/{carrier}/stages` | `x-api-key` | 200 time in stage and quiet gaps per stage; 400 bad carrier |
//! | `POST /push/kdniao` | DataSign | Kdniao's ack JSON; 401 bad signature, 400 malformed, 422 unknown carrier, 403 not for us, 503 store down |
//! | `POST /push/kuaidi100` | sign (salt) | Kuaidi100's ack JSON; same 4xx; 404 when not configured; 503 store down |
//!
//! Every merchant-route error is `{"error": "<reason>"}`. No answer ever carries internals; a
//! refused push writes nothing.

use crate::analytics::{parse_filter, routes_view, stages_view, HistorySource, RouteFilter};
use crate::config::ApiConfig;
use crate::recognition::{resolve_items, NoRecognizer, RECOGNITION_BUDGET};
use crate::register::{parse_registration, Item, NewShipment, Registration};
use crate::view::shipment_view;
use aws_lambda_events::encodings::Body;
use aws_lambda_events::event::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::http::{header, HeaderValue, Method};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use futures::{stream, StreamExt};
use parcelwatch::crypto::{Vault, VaultError};
use parcelwatch::domain::eta::{eta, is_on_its_way};
use parcelwatch::domain::{CheckContext, Observation};
use parcelwatch::domain::{Locale, Recipient, Shipment, ShipmentId};
use parcelwatch::providers::push::{PushBatch, PushError};
use parcelwatch::providers::recognize::Recognizer;
use parcelwatch::providers::{kdniao_push, kuaidi100};
use parcelwatch::store::{ShipmentStore, StoreError};
use parcelwatch::tracking::{apply, Applied};
use serde_json::{json, Value};
use tracing::Instrument;

/// Trace lines returned when the reader does not say.
pub const DEFAULT_TRACE_LIMIT: usize = 100;
/// Most trace lines one read returns.
pub const MAX_TRACE_LIMIT: usize = 500;
/// Registrations written at once in a bulk request.
const REGISTER_CONCURRENCY: usize = 16;

/// The api function: its store, settings, and the provider recognition asked about numbers
/// the rules cannot place (none: such items are refused with "carrier required").
pub struct Api<S, R = NoRecognizer> {
    pub store: S,
    pub cfg: ApiConfig,
    pub recognizer: Option<R>,
    /// Seals registered phones before they are written.
    pub vault: Vault,
    /// The delivery history (analytics routes, ETAs). None: routes answer 503, ETAs use the
    /// fixed default.
    pub history: Option<std::sync::Arc<dyn HistorySource>>,
    /// What pushes are decided under: the tracker's context (schedule policy, the carriers'
    /// live history, the providers' rules), so that a push and a poll decide alike.
    pub ctx: CheckContext,
}

impl<S> Api<S> {
    /// An api without carrier recognition.
    pub fn new(store: S, cfg: ApiConfig) -> Self {
        Api {
            store,
            cfg,
            recognizer: None,
            vault: Vault::disabled(),
            history: None,
            ctx: CheckContext::standalone(),
        }
    }
}

impl<S, R> Api<S, R> {
    /// The same api, asking `recognizer` (when `Some`) about numbers the rules cannot place.
    pub fn with_recognizer<R2: Recognizer>(self, recognizer: Option<R2>) -> Api<S, R2> {
        Api {
            store: self.store,
            cfg: self.cfg,
            recognizer,
            vault: self.vault,
            history: self.history,
            ctx: self.ctx,
        }
    }

    /// The same api, reading the delivery history from `history`.
    pub fn with_history(self, history: std::sync::Arc<dyn HistorySource>) -> Self {
        Api {
            history: Some(history),
            ..self
        }
    }

    /// The same api, deciding pushes under `ctx`.
    pub fn with_check_context(self, ctx: CheckContext) -> Self {
        Api { ctx, ..self }
    }

    /// The same api, sealing phones with `vault` (without one, a registration with a phone
    /// fails and nothing is written).
    pub fn with_vault(self, vault: Vault) -> Self {
        Api { vault, ..self }
    }
}

type Response = ApiGatewayV2httpResponse;

/// Answer one request. Never fails: every problem is an HTTP status with a reason.
pub async fn handle<S: ShipmentStore, R: Recognizer>(
    api: &Api<S, R>,
    req: ApiGatewayV2httpRequest,
    now: DateTime<Utc>,
) -> Response {
    let method = req.request_context.http.method.clone();
    let path = request_path(&req);
    let span = tracing::info_span!(
        "request",
        request_id = req.request_context.request_id.as_deref().unwrap_or(""),
        method = %method,
        path = %path,
    );
    async move {
        // Boxed: the routes' futures nest deeply (a bulk registration streams its writes), and
        // the runtime's own future would otherwise exceed the compiler's layout depth limit.
        let resp = Box::pin(route(api, &req, &method, &path, now)).await;
        tracing::info!(status = resp.status_code, "answered");
        resp
    }
    .instrument(span)
    .await
}

/// The path as routed: `rawPath` without a named stage's prefix (`/prod/shipments` on a `prod`
/// stage), without a trailing slash.
fn request_path(req: &ApiGatewayV2httpRequest) -> String {
    let raw = req
        .raw_path
        .as_deref()
        .or(req.request_context.http.path.as_deref())
        .unwrap_or("/");
    let stage = req.request_context.stage.as_deref().unwrap_or("$default");
    let path = if stage == "$default" {
        raw
    } else {
        raw.strip_prefix(&format!("/{stage}"))
            .filter(|rest| rest.is_empty() || rest.starts_with('/'))
            .unwrap_or(raw)
    };
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".to_string()
    } else {
        trimmed.to_string()
    }
}

async fn route<S: ShipmentStore, R: Recognizer>(
    api: &Api<S, R>,
    req: &ApiGatewayV2httpRequest,
    method: &Method,
    path: &str,
    now: DateTime<Utc>,
) -> Response {
    let segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(pct_decode)
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match segments.as_slice() {
        ["shipments"] => {
            if method != Method::POST {
                return method_not_allowed("POST");
            }
            if let Err(Denied(status, reason)) = authenticate(&api.cfg, req) {
                return error(status, reason);
            }
            match read_body(req, api.cfg.max_body_bytes) {
                Ok(body) => register(api, &body, now).await,
                Err(e) => error(e.status, &e.reason),
            }
        }
        ["shipments", carrier, number] => {
            if method != Method::GET {
                return method_not_allowed("GET");
            }
            if let Err(Denied(status, reason)) = authenticate(&api.cfg, req) {
                return error(status, reason);
            }
            get_shipment(api, req, carrier, number, now).await
        }
        ["analytics", "routes"] => {
            if method != Method::GET {
                return method_not_allowed("GET");
            }
            if let Err(Denied(status, reason)) = authenticate(&api.cfg, req) {
                return error(status, reason);
            }
            let q = &req.query_string_parameters;
            let filter = match parse_filter(
                q.first("carrier"),
                q.first("origin"),
                q.first("destination"),
            ) {
                Ok(f) => f,
                Err(reason) => return error(400, &reason),
            };
            match load_history(api, filter.carrier.as_deref()).await {
                Ok(h) => json_response(200, &routes_view(&h, &filter)),
                Err(r) => r,
            }
        }
        ["analytics", "carriers", carrier, "stages"] => {
            if method != Method::GET {
                return method_not_allowed("GET");
            }
            if let Err(Denied(status, reason)) = authenticate(&api.cfg, req) {
                return error(status, reason);
            }
            let carrier = match parse_filter(Some(carrier), None, None) {
                Ok(RouteFilter {
                    carrier: Some(c), ..
                }) => c,
                Ok(_) => return error(400, "carrier required"),
                Err(reason) => return error(400, &reason),
            };
            match load_history(api, Some(&carrier)).await {
                Ok(h) => json_response(200, &stages_view(&h, &carrier)),
                Err(r) => r,
            }
        }
        ["push", "kdniao"] => {
            if method != Method::POST {
                return method_not_allowed("POST");
            }
            push_kdniao(api, req, now).await
        }
        ["push", "kuaidi100"] => {
            if method != Method::POST {
                return method_not_allowed("POST");
            }
            push_kuaidi100(api, req, now).await
        }
        _ => error(404, &format!("no route for {path}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------

fn respond(status: u16, body: String) -> Response {
    let mut r = Response::default();
    r.status_code = i64::from(status);
    r.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r.headers
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.body = Some(Body::Text(body));
    r.is_base64_encoded = false;
    r
}

fn json_response(status: u16, body: &Value) -> Response {
    respond(status, body.to_string())
}

/// `{"error": reason}`
fn error(status: u16, reason: &str) -> Response {
    json_response(status, &json!({ "error": reason }))
}

fn method_not_allowed(allowed: &'static str) -> Response {
    let mut r = error(405, &format!("method not allowed; use {allowed}"));
    r.headers
        .insert(header::ALLOW, HeaderValue::from_static(allowed));
    r
}

/// A store failure on a merchant route: 503 when retrying may help, else a bare 500. Neither
/// says more than that; the log has the cause.
fn store_failure(e: &StoreError) -> Response {
    tracing::error!(error = %e, "shipment store failed");
    if e.is_retryable() {
        error(503, "shipment store temporarily unavailable; retry")
    } else {
        error(500, "internal error")
    }
}

// ---------------------------------------------------------------------------------------------
// Request pieces
// ---------------------------------------------------------------------------------------------

/// Percent-decode a path segment (`%XX` only); an invalid escape stays as written.
fn pct_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: Option<&u8>| b.and_then(|b| (*b as char).to_digit(16));
        match (bytes[i], hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct BodyRejected {
    status: u16,
    reason: String,
}

/// The request body as text: base64-decoded when API Gateway encoded it, at most `max` bytes.
fn read_body(req: &ApiGatewayV2httpRequest, max: usize) -> Result<String, BodyRejected> {
    let raw = req.body.as_deref().unwrap_or("");
    let too_large = || BodyRejected {
        status: 413,
        reason: format!("request body is larger than {max} bytes"),
    };
    let bytes: Vec<u8> = if req.is_base64_encoded {
        // 4 base64 characters carry 3 bytes: refuse before decoding a huge body.
        if raw.len() / 4 * 3 > max + 3 {
            return Err(too_large());
        }
        base64::engine::general_purpose::STANDARD
            .decode(raw.trim())
            .map_err(|_| BodyRejected {
                status: 400,
                reason: "request body is not valid base64".into(),
            })?
    } else {
        raw.as_bytes().to_vec()
    };
    if bytes.len() > max {
        return Err(too_large());
    }
    String::from_utf8(bytes).map_err(|_| BodyRejected {
        status: 400,
        reason: "request body is not UTF-8".into(),
    })
}

/// Constant-time comparison that does not stop at the first difference nor at a length
/// mismatch.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().max(b.len());
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..n {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

/// Merchant routes: the `x-api-key` header must hold one of the configured keys.
/// Why a merchant request was not let in: its HTTP status and reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Denied(u16, &'static str);

fn authenticate(cfg: &ApiConfig, req: &ApiGatewayV2httpRequest) -> Result<(), Denied> {
    let presented = req
        .headers
        .get("x-api-key")
        .map(|v| v.as_bytes())
        .filter(|v| !v.is_empty());
    let Some(presented) = presented else {
        return Err(Denied(401, "missing x-api-key header"));
    };
    // Compare with every key, so the time taken does not say which one (if any) matched.
    let matched = cfg.api_keys.iter().fold(false, |hit, key| {
        ct_eq(presented, key.expose().as_bytes()) | hit
    });
    if matched {
        Ok(())
    } else {
        tracing::warn!("request with an unknown API key refused");
        Err(Denied(403, "invalid API key"))
    }
}

// ---------------------------------------------------------------------------------------------
// POST /shipments
// ---------------------------------------------------------------------------------------------

/// What became of one registration item.
#[derive(Debug)]
enum Registered {
    Created,
    Exists,
    Invalid(String),
    Failed(StoreError),
}

impl Registered {
    fn result(&self) -> &'static str {
        match self {
            Registered::Created => "created",
            Registered::Exists => "exists",
            Registered::Invalid(_) => "invalid",
            Registered::Failed(_) => "failed",
        }
    }
}

async fn create<S: ShipmentStore, R: Recognizer>(
    api: &Api<S, R>,
    new: &NewShipment,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let phone = match &new.recipient.phone {
        Some(p) => Some(api.vault.seal(p).await.map_err(|e| match e {
            VaultError::Retryable(_) => StoreError::Retryable(e.to_string()),
            VaultError::Permanent(_) => StoreError::Permanent(e.to_string()),
        })?),
        None => None,
    };
    let mut shipment = Shipment::register(
        new.id.clone(),
        new.priority,
        api.cfg.default_provider.clone(),
        Recipient {
            phone,
            locale: new.recipient.locale,
        },
        new.order_ref.clone(),
        now,
    );
    shipment.destination = new.destination.map(String::from);
    let created = api.store.create(&shipment).await?;
    tracing::info!(shipment = %new.id, created, carrier_detected = new.carrier_detected(),
        detected_by = new.carrier_source.detected_by().unwrap_or(""),
        has_phone = new.recipient.phone.is_some(), "registration");
    Ok(created)
}

async fn register_item<S: ShipmentStore, R: Recognizer>(
    api: &Api<S, R>,
    item: &Item,
    now: DateTime<Utc>,
) -> Registered {
    match item {
        Err(e) => Registered::Invalid(e.reason.clone()),
        Ok(new) => match create(api, new, now).await {
            Ok(true) => Registered::Created,
            Ok(false) => Registered::Exists,
            Err(e) => Registered::Failed(e),
        },
    }
}

fn item_json(index: Option<usize>, item: &Item, outcome: &Registered) -> Value {
    let (carrier, number, detected_by) = match item {
        Ok(new) => (
            Some(new.id.carrier.to_string()),
            Some(new.id.number.to_string()),
            new.carrier_source.detected_by(),
        ),
        Err(e) => (e.carrier.clone(), e.number.clone(), None),
    };
    let mut v = json!({
        "carrier": carrier,
        "number": number,
        "result": outcome.result(),
    });
    if let Some(obj) = v.as_object_mut() {
        if let Some(i) = index {
            obj.insert("index".into(), json!(i));
        }
        if let Some(by) = detected_by {
            obj.insert("carrier_detected".into(), json!(true));
            obj.insert("detected_by".into(), json!(by));
        }
        match outcome {
            Registered::Invalid(reason) => {
                obj.insert("error".into(), json!(reason));
            }
            Registered::Failed(_) => {
                obj.insert(
                    "error".into(),
                    json!("shipment store temporarily unavailable; retry this item"),
                );
            }
            Registered::Created | Registered::Exists => {}
        }
    }
    v
}

async fn register<S: ShipmentStore, R: Recognizer>(
    api: &Api<S, R>,
    body: &str,
    now: DateTime<Utc>,
) -> Response {
    let registration = match parse_registration(body, api.cfg.max_bulk) {
        Ok(r) => r,
        Err(e) => return error(e.http_status(), &e.to_string()),
    };
    // Carriers the rules cannot place are asked of the provider first, within the request's
    // recognition budget; a miss refuses that item only.
    let resolve = |items| {
        resolve_items(
            api.recognizer.as_ref(),
            api.cfg.max_recognitions,
            RECOGNITION_BUDGET,
            items,
        )
    };
    match registration {
        Registration::Single(item) => {
            let Some(item) = resolve(vec![item]).await.pop() else {
                // One item in, one out: unreachable, but never a panic.
                return error(500, "internal error");
            };
            match register_item(api, &item, now).await {
                Registered::Invalid(reason) => error(400, &reason),
                Registered::Failed(e) => store_failure(&e),
                outcome @ Registered::Created => {
                    json_response(201, &item_json(None, &item, &outcome))
                }
                outcome @ Registered::Exists => {
                    json_response(200, &item_json(None, &item, &outcome))
                }
            }
        }
        Registration::Bulk(items) => {
            let items = resolve(items).await;
            // Owned items: a closure over `&Item` makes the future's `Send` bound
            // higher-ranked, which the compiler cannot prove for callers that spawn it.
            let outcomes: Vec<Registered> = stream::iter(items.clone())
                .map(|item| async move { register_item(api, &item, now).await })
                .buffered(REGISTER_CONCURRENCY)
                .collect()
                .await;
            let count = |r: &str| outcomes.iter().filter(|o| o.result() == r).count();
            let failed = count("failed");
            let results: Vec<Value> = items
                .iter()
                .zip(&outcomes)
                .enumerate()
                .map(|(i, (item, outcome))| item_json(Some(i), item, outcome))
                .collect();
            if let Some(Registered::Failed(e)) =
                outcomes.iter().find(|o| matches!(o, Registered::Failed(_)))
            {
                tracing::error!(error = %e, failed, "bulk registration: store failures");
            }
            let body = json!({
                "counts": {
                    "created": count("created"),
                    "exists": count("exists"),
                    "invalid": count("invalid"),
                    "failed": failed,
                },
                "results": results,
            });
            // Items that failed on the store can be sent again as they are: registration is
            // idempotent. 503 says so to clients that look only at the status.
            json_response(if failed > 0 { 503 } else { 200 }, &body)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// GET /shipments/{carrier}/{number}
// ---------------------------------------------------------------------------------------------

async fn get_shipment<S: ShipmentStore, R: Recognizer>(
    api: &Api<S, R>,
    req: &ApiGatewayV2httpRequest,
    carrier: &str,
    number: &str,
    now: DateTime<Utc>,
) -> Response {
    let id = match ShipmentId::parse(carrier, number) {
        Ok(id) => id,
        Err(e) => return error(400, &e.to_string()),
    };
    let query = &req.query_string_parameters;
    let locale = match query.first("lang") {
        None => Locale::ZhCn,
        Some(l) => match Locale::parse(l.trim()) {
            Some(l) => l,
            None => return error(400, "lang must be zh-CN or en"),
        },
    };
    let limit = match query.first("limit") {
        None => DEFAULT_TRACE_LIMIT,
        Some(l) => match l.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_TRACE_LIMIT).contains(&n) => n,
            _ => return error(400, &format!("limit must be 1 to {MAX_TRACE_LIMIT}")),
        },
    };
    let shipment = match api.store.get(&id).await {
        Ok(Some(s)) => s,
        Ok(None) => return error(404, &format!("shipment {id} is not tracked")),
        Err(e) => return store_failure(&e),
    };
    let trace = match api.store.trace(&id, limit).await {
        Ok(t) => t,
        Err(e) => return store_failure(&e),
    };
    let mut view = shipment_view(&shipment, &trace, locale);
    if let Some(o) = view.as_object_mut() {
        o.insert("eta".into(), shipment_eta(api, &shipment, now).await);
    }
    json_response(200, &view)
}

/// The shipment's ETA as JSON (`null` when it is not on its way). A history that cannot be
/// read is logged and answered as `null` too: the trajectory is what the reader came for.
async fn shipment_eta<S, R>(api: &Api<S, R>, s: &Shipment, now: DateTime<Utc>) -> Value {
    if !is_on_its_way(s.status) {
        return Value::Null;
    }
    let history = match &api.history {
        None => Default::default(),
        Some(h) => match h.load(Some(s.id.carrier.as_str())).await {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, shipment = %s.id, "delivery history unavailable; no ETA");
                return Value::Null;
            }
        },
    };
    eta(s, &history, now).map_or(Value::Null, |e| json!(e))
}

/// The history for an analytics route; a failure is the answer to send.
async fn load_history<S, R>(
    api: &Api<S, R>,
    carrier: Option<&str>,
) -> Result<parcelwatch::domain::stats::HistorySnapshot, Response> {
    let Some(h) = &api.history else {
        return Err(error(503, "delivery analytics are not configured"));
    };
    h.load(carrier).await.map_err(|e| store_failure(&e))
}

// ---------------------------------------------------------------------------------------------
// Pushes
// ---------------------------------------------------------------------------------------------

/// What applying one authentic push did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushSummary {
    pub updates: usize,
    /// Updates written (with or without a change).
    pub written: usize,
    /// Updates that changed status or sub-status.
    pub transitions: usize,
    pub new_events: usize,
    /// Waybills we do not track: acknowledged, not stored.
    pub not_registered: usize,
    /// Waybills whose tracking had already ended.
    pub already_final: usize,
    /// Items of the push that could not be used (see `PushBatch::rejected`).
    pub rejected: usize,
    /// Updates the store could not take: the push must be retried.
    pub failed: usize,
}

/// A push whose every item is unusable for a reason of the sender's making (unknown carrier,
/// malformed item) is refused as a whole: there is nothing to acknowledge. Items the provider
/// itself marks failed are acknowledged (it told us; retrying would not change them).
fn refused_items(batch: &PushBatch) -> Option<&PushError> {
    if !batch.updates.is_empty() {
        return None;
    }
    batch
        .rejected
        .iter()
        .map(|(_, e)| e)
        .find(|e| !matches!(e, PushError::Rejected(_)))
}

/// Fold every update of an authentic push into the table through the tracker's own path.
pub async fn apply_push<S: ShipmentStore>(
    store: &S,
    ctx: &CheckContext,
    provider: &'static str,
    batch: &PushBatch,
    now: DateTime<Utc>,
) -> PushSummary {
    let mut summary = PushSummary {
        updates: batch.updates.len(),
        rejected: batch.rejected.len(),
        ..PushSummary::default()
    };
    for update in &batch.updates {
        let id = &update.id;
        match apply(
            store,
            id,
            None,
            Observation::push(&update.snapshot),
            ctx,
            now,
        )
        .await
        {
            Ok(Applied::Written {
                transition,
                new_events,
                ..
            }) => {
                summary.written += 1;
                summary.new_events += new_events;
                summary.transitions += usize::from(transition.is_some());
            }
            Ok(Applied::AlreadyFinal | Applied::Superseded) => summary.already_final += 1,
            Ok(Applied::NotRegistered) => {
                summary.not_registered += 1;
                tracing::info!(provider, shipment = %id, "push for a shipment we do not track; ignored");
            }
            Err(e) => {
                summary.failed += 1;
                tracing::error!(provider, shipment = %id, error = %e, "push update not stored");
            }
        }
    }
    tracing::info!(
        provider,
        updates = summary.updates,
        written = summary.written,
        transitions = summary.transitions,
        new_events = summary.new_events,
        not_registered = summary.not_registered,
        already_final = summary.already_final,
        rejected = summary.rejected,
        failed = summary.failed,
        provider_status = batch.provider_status.as_deref().unwrap_or(""),
        "push applied"
    );
    summary
}

const PUSH_STORE_DOWN: &str = "store temporarily unavailable; retry later";

async fn push_kdniao<S: ShipmentStore, R: Recognizer>(
    api: &Api<S, R>,
    req: &ApiGatewayV2httpRequest,
    now: DateTime<Utc>,
) -> Response {
    let auth = &api.cfg.kdniao;
    let answer = |status: u16, success: bool, reason: &str| {
        respond(
            status,
            kdniao_push::push_ack(&auth.ebusiness_id, now, success, reason),
        )
    };
    let body = match read_body(req, api.cfg.max_body_bytes) {
        Ok(b) => b,
        Err(e) => return answer(e.status, false, &e.reason),
    };
    let batch = match kdniao_push::verify_push(&body, auth.app_key.expose(), &auth.ebusiness_id) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(provider = "kdniao", error = %e, "push refused");
            return answer(e.http_status(), false, &e.to_string());
        }
    };
    if let Some(e) = refused_items(&batch) {
        tracing::warn!(provider = "kdniao", error = %e, "push refused: no usable item");
        return answer(e.http_status(), false, &e.to_string());
    }
    let summary = apply_push(&api.store, &api.ctx, "kdniao", &batch, now).await;
    if summary.failed > 0 {
        return answer(503, false, PUSH_STORE_DOWN);
    }
    answer(200, true, "")
}

/// Kuaidi100's refusal shape, with the HTTP status as its `returnCode`.
fn kuaidi100_error(status: u16, reason: &str) -> Response {
    json_response(
        status,
        &json!({ "result": false, "returnCode": status.to_string(), "message": reason }),
    )
}

async fn push_kuaidi100<S: ShipmentStore, R: Recognizer>(
    api: &Api<S, R>,
    req: &ApiGatewayV2httpRequest,
    now: DateTime<Utc>,
) -> Response {
    let Some(salt) = &api.cfg.kuaidi100_salt else {
        return kuaidi100_error(404, "Kuaidi100 pushes are not configured");
    };
    let body = match read_body(req, api.cfg.max_body_bytes) {
        Ok(b) => b,
        Err(e) => return kuaidi100_error(e.status, &e.reason),
    };
    let batch = match kuaidi100::verify_push(&body, salt.expose()) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(provider = "kuaidi100", error = %e, "push refused");
            return kuaidi100_error(e.http_status(), &e.to_string());
        }
    };
    if let Some(e) = refused_items(&batch) {
        tracing::warn!(provider = "kuaidi100", error = %e, "push refused: no usable item");
        return kuaidi100_error(e.http_status(), &e.to_string());
    }
    if batch.resubscribe_after.is_some() {
        tracing::warn!(
            provider = "kuaidi100",
            message = batch.message.as_deref().unwrap_or(""),
            "Kuaidi100 stopped tracking (abort): the waybills need a new subscription"
        );
    }
    let summary = apply_push(&api.store, &api.ctx, "kuaidi100", &batch, now).await;
    if summary.failed > 0 {
        return kuaidi100_error(503, PUSH_STORE_DOWN);
    }
    respond(200, kuaidi100::push_ack().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::KdniaoPushAuth;
    use chrono::TimeZone;
    use parcelwatch::config::Secret;
    use parcelwatch::domain::{
        Carrier, EventKey, Priority, Recipient, Status, SubStatus, TraceEvent, TrackingNumber,
    };
    use parcelwatch::providers::kdniao::{data_sign, KdniaoResponse};
    use parcelwatch::providers::push::form_encode;
    use parcelwatch::providers::ProviderError;
    use parcelwatch::store::MemoryStore;
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    const EB: &str = "1000001";
    const APP_KEY: &str = "sandbox-appkey-0001";
    const SALT: &str = "sandbox-salt-0001";
    const KEY_1: &str = "test-key-0001";

    const REGISTER_ONE: &str = include_str!("../../../events/api/register-one.json");
    const REGISTER_BULK: &str = include_str!("../../../events/api/register-bulk.json");
    const GET_SHIPMENT: &str = include_str!("../../../events/api/get-shipment.json");
    const PUSH_KDNIAO: &str = include_str!("../../../events/api/push-kdniao.json");
    const PUSH_KDNIAO_BAD_SIGN: &str =
        include_str!("../../../events/api/push-kdniao-bad-sign.json");
    const PUSH_KUAIDI100: &str = include_str!("../../../events/api/push-kuaidi100.json");

    /// The waybill of push-kdniao.json, as Kdniao's 8001/push item.
    const KDNIAO_ITEM: &str = r#"{"EBusinessID":"1000001","ShipperCode":"YTO","LogisticCode":"YT1000000000001","Success":true,"State":"2","StateEx":"202","Location":"深圳市","Traces":[{"AcceptTime":"2026-11-22 18:02:11","AcceptStation":"【杭州市】圆通速递 浙江省杭州市滨江区公司 已揽收","Location":"杭州市","Action":"1"},{"AcceptTime":"2026-11-23 02:15:40","AcceptStation":"快件已发往 深圳转运中心","Location":"杭州市","Action":"2"},{"AcceptTime":"2026-11-24 07:30:00","AcceptStation":"快件已到达【深圳市】","Location":"深圳市","Action":"201"},{"AcceptTime":"2026-11-24 09:12:00","AcceptStation":"快件正在派送中","Location":"深圳市","Action":"202"}]}"#;
    /// The `param` of push-kuaidi100.json.
    const KUAIDI100_PARAM: &str = r#"{"status":"polling","billstatus":"got","message":"","lastResult":{"message":"ok","state":"1001","status":"200","condition":"F00","ischeck":"0","com":"zhongtong","nu":"780000000000003","data":[{"context":"快件已到达【广州转运中心】","time":"2026-11-24 06:40:00","ftime":"2026-11-24 06:40:00","status":"到达派件城市","statusCode":"1001","location":"广州市"},{"context":"中通快递 义乌分部 已揽收","time":"2026-11-23 15:20:00","ftime":"2026-11-23 15:20:00","status":"揽收","statusCode":"1","location":"金华市"}]}}"#;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 2, 0, 0).unwrap()
    }

    fn push_time() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 1, 30, 0).unwrap()
    }

    fn cfg() -> ApiConfig {
        ApiConfig {
            api_keys: vec![Secret::new(KEY_1), Secret::new("test-key-0002")],
            default_provider: "kdniao".into(),
            kdniao: KdniaoPushAuth {
                ebusiness_id: EB.into(),
                app_key: Secret::new(APP_KEY),
            },
            kuaidi100_salt: Some(Secret::new(SALT)),
            max_bulk: 500,
            max_body_bytes: 1024 * 1024,
            recognition: None,
            max_recognitions: 50,
        }
    }

    fn api() -> Api<MemoryStore> {
        Api::new(MemoryStore::new(4), cfg()).with_vault(Vault::ephemeral())
    }

    fn yto() -> ShipmentId {
        ShipmentId::parse("YTO", "YT1000000000001").unwrap()
    }

    fn zto() -> ShipmentId {
        ShipmentId::parse("ZTO", "780000000000003").unwrap()
    }

    /// An STO-shaped ZTO waybill: the rules cannot tell.
    fn zto_773() -> ShipmentId {
        ShipmentId::parse("ZTO", "773000000000001").unwrap()
    }

    /// `api` with the YTO and ZTO parcels of the push events registered.
    fn tracked() -> Api<MemoryStore> {
        let api = api();
        for id in [yto(), zto()] {
            api.store.insert(Shipment::register(
                id,
                Priority::Normal,
                "kdniao",
                Recipient::default(),
                None,
                now() - chrono::Duration::days(2),
            ));
        }
        api
    }

    fn event(json: &str) -> ApiGatewayV2httpRequest {
        serde_json::from_str(json).unwrap()
    }

    /// A sample event with another (plain-text) body.
    fn with_body(json: &str, body: &str) -> ApiGatewayV2httpRequest {
        let mut e = event(json);
        e.body = Some(body.to_string());
        e.is_base64_encoded = false;
        e
    }

    /// A sample event with another body, base64-encoded as API Gateway sends forms.
    fn with_form(json: &str, form: &str) -> ApiGatewayV2httpRequest {
        let mut e = event(json);
        e.body = Some(base64::engine::general_purpose::STANDARD.encode(form));
        e.is_base64_encoded = true;
        e
    }

    fn decoded_body(e: &ApiGatewayV2httpRequest) -> String {
        let raw = e.body.as_deref().unwrap();
        if e.is_base64_encoded {
            String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(raw)
                    .unwrap(),
            )
            .unwrap()
        } else {
            raw.to_string()
        }
    }

    async fn call<S: ShipmentStore, R: Recognizer>(
        api: &Api<S, R>,
        e: ApiGatewayV2httpRequest,
    ) -> Response {
        handle(api, e, now()).await
    }

    fn text(r: &Response) -> &str {
        match &r.body {
            Some(Body::Text(t)) => t,
            other => panic!("not a text body: {other:?}"),
        }
    }

    fn body(r: &Response) -> Value {
        serde_json::from_str(text(r)).unwrap()
    }

    type Snapshot = (
        BTreeMap<ShipmentId, parcelwatch::store::memory::Items>,
        BTreeMap<(ShipmentId, EventKey), TraceEvent>,
    );

    fn snapshot(store: &MemoryStore) -> Snapshot {
        (
            store.shipments.lock().unwrap().clone(),
            store.events.lock().unwrap().clone(),
        )
    }

    fn kdniao_item(json: &str) -> KdniaoResponse {
        serde_json::from_str(json).unwrap()
    }

    fn kdniao_form(items: &[KdniaoResponse]) -> String {
        kdniao_push::build_push_form(EB, APP_KEY, "102", push_time(), items)
    }

    fn ack(r: &Response) -> Value {
        let v = body(r);
        assert_eq!(v["EBusinessID"], EB, "{v}");
        v
    }

    // -----------------------------------------------------------------------------------------
    // Registration
    // -----------------------------------------------------------------------------------------

    #[tokio::test]
    async fn without_a_phone_key_a_registration_with_a_phone_fails_and_writes_nothing() {
        let api = Api::new(MemoryStore::new(4), cfg());
        let r = call(&api, event(REGISTER_ONE)).await;
        assert_eq!(r.status_code, 500, "{}", text(&r));
        assert!(!text(&r).contains("13812345678"), "{}", text(&r));
        assert_eq!(api.store.shipment(&yto()), None);
    }

    #[tokio::test]
    async fn registering_one_creates_it_and_a_repeat_reports_exists_without_change() {
        let api = api();
        let first = call(&api, event(REGISTER_ONE)).await;
        assert_eq!(first.status_code, 201, "{}", text(&first));
        assert_eq!(
            body(&first),
            json!({"carrier":"YTO","number":"YT1000000000001","result":"created"})
        );
        assert_eq!(
            first.headers[header::CONTENT_TYPE],
            "application/json; charset=utf-8"
        );
        let stored = api.store.shipment(&yto()).unwrap();
        assert_eq!(stored.status, Status::Pending);
        assert_eq!(stored.provider, "kdniao");
        assert_eq!(stored.priority, Priority::High);
        assert_eq!(stored.order_ref.as_deref(), Some("TB-4012345678901234"));
        assert_eq!(stored.destination.as_deref(), Some("北京"));
        // Stored sealed; it opens to the number sent.
        let sealed = stored.recipient.phone.clone().unwrap();
        assert_eq!(sealed.last4(), "5678");
        assert!(!sealed.as_str().contains("13812345678"));
        assert_eq!(
            api.vault.open(&sealed).await.unwrap().expose(),
            "+8613812345678"
        );
        assert_eq!(stored.created_at, now());
        assert_eq!(stored.next_check_at, Some(now()));

        // Again, asking for other settings: reported as existing, nothing changed.
        let again = with_body(
            REGISTER_ONE,
            r#"{"carrier":"yto","number":"YT1000000000001","priority":"normal","locale":"en"}"#,
        );
        let before = snapshot(&api.store);
        let second = call(&api, again).await;
        assert_eq!(second.status_code, 200);
        assert_eq!(body(&second)["result"], "exists");
        assert_eq!(snapshot(&api.store), before);
    }

    #[tokio::test]
    async fn an_invalid_single_registration_is_a_400_with_the_reason() {
        let api = api();
        let r = call(
            &api,
            with_body(REGISTER_ONE, r#"{"number":"780000000000003"}"#),
        )
        .await;
        assert_eq!(r.status_code, 400);
        assert_eq!(
            body(&r),
            json!({"error":"carrier required: could not detect it from the number"})
        );
        let r = call(&api, with_body(REGISTER_ONE, "not json")).await;
        assert_eq!(r.status_code, 400);
        assert!(body(&r)["error"]
            .as_str()
            .unwrap()
            .starts_with("body is not valid JSON"));
        assert!(api.store.shipments.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_bulk_registration_reports_every_item() {
        let api = api();
        let r = call(&api, event(REGISTER_BULK)).await;
        assert_eq!(r.status_code, 200, "{}", text(&r));
        let v = body(&r);
        assert_eq!(
            v["counts"],
            json!({"created":4,"exists":0,"invalid":2,"failed":0})
        );
        let results = v["results"].as_array().unwrap();
        let summary: Vec<(u64, &str, &str, &str)> = results
            .iter()
            .map(|r| {
                (
                    r["index"].as_u64().unwrap(),
                    r["carrier"].as_str().unwrap_or("-"),
                    r["number"].as_str().unwrap(),
                    r["result"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (0, "YTO", "YT1000000000001", "created"),
                (1, "SF", "SF1234567890123", "created"),
                (2, "ZTO", "780000000000003", "created"),
                (3, "-", "773000000000001", "invalid"),
                (4, "JTSD", "JT3000000000001", "invalid"),
                (5, "JD", "JDV000123456789", "created"),
            ]
        );
        assert_eq!(results[1]["carrier_detected"], true);
        assert_eq!(
            results[3]["error"],
            "carrier required: could not detect it from the number"
        );
        assert!(results[4]["error"].as_str().unwrap().starts_with("phone: "));
        assert!(results[0].get("error").is_none());
        assert_eq!(api.store.shipments.lock().unwrap().len(), 4);
        let sf = api
            .store
            .shipment(&ShipmentId::parse("SF", "SF1234567890123").unwrap())
            .unwrap();
        assert_eq!(sf.recipient.locale, Locale::En);
        assert_eq!(sf.priority, Priority::High);

        // The same batch again: the valid ones exist, nothing is modified.
        let before = snapshot(&api.store);
        let again = body(&call(&api, event(REGISTER_BULK)).await);
        assert_eq!(
            again["counts"],
            json!({"created":0,"exists":4,"invalid":2,"failed":0})
        );
        assert_eq!(snapshot(&api.store), before);
    }

    #[tokio::test]
    async fn too_many_shipments_or_too_large_a_body_is_a_413_and_writes_nothing() {
        let mut api = api();
        api.cfg.max_bulk = 5;
        let r = call(&api, event(REGISTER_BULK)).await;
        assert_eq!(r.status_code, 413);
        assert_eq!(
            body(&r),
            json!({"error":"at most 5 shipments per request; this one has 6"})
        );
        assert!(api.store.shipments.lock().unwrap().is_empty());

        let api = self::api();
        let items: Vec<Value> = (0..501)
            .map(|i| json!({"carrier":"ZTO","number":format!("78{i:013}")}))
            .collect();
        let r = call(
            &api,
            with_body(REGISTER_BULK, &json!({ "shipments": items }).to_string()),
        )
        .await;
        assert_eq!(r.status_code, 413);
        assert!(text(&r).contains("at most 500 shipments"));
        assert!(api.store.shipments.lock().unwrap().is_empty());

        let padding = " ".repeat(1024 * 1024);
        let big = format!(r#"{{"carrier":"ZTO","number":"780000000000003"}}{padding}"#);
        let r = call(&api, with_body(REGISTER_ONE, &big)).await;
        assert_eq!(r.status_code, 413);
        assert_eq!(
            body(&r),
            json!({"error":"request body is larger than 1048576 bytes"})
        );
        // Base64 bodies are measured decoded, and a huge one before decoding.
        let r = call(&api, with_form(REGISTER_ONE, &big)).await;
        assert_eq!(r.status_code, 413);
        assert!(api.store.shipments.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_base64_json_body_is_decoded() {
        let api = api();
        let mut e = event(REGISTER_ONE);
        let plain = decoded_body(&e);
        e.body = Some(base64::engine::general_purpose::STANDARD.encode(&plain));
        e.is_base64_encoded = true;
        assert_eq!(call(&api, e).await.status_code, 201);
        assert!(api.store.shipment(&yto()).is_some());

        let mut bad = event(REGISTER_ONE);
        bad.body = Some("***".into());
        bad.is_base64_encoded = true;
        let r = call(&api, bad).await;
        assert_eq!(r.status_code, 400);
        assert_eq!(
            body(&r),
            json!({"error":"request body is not valid base64"})
        );
    }

    // -----------------------------------------------------------------------------------------
    // Carrier recognition
    // -----------------------------------------------------------------------------------------

    /// A provider's recognition that records every number it is asked about.
    struct FakeRecognizer {
        asked: Mutex<Vec<String>>,
        answer: fn(&TrackingNumber) -> Result<Vec<Carrier>, ProviderError>,
    }

    impl Recognizer for FakeRecognizer {
        fn name(&self) -> &'static str {
            "kdniao"
        }
        async fn recognize(&self, n: &TrackingNumber) -> Result<Vec<Carrier>, ProviderError> {
            self.asked.lock().unwrap().push(n.to_string());
            (self.answer)(n)
        }
    }

    fn says_zto(_: &TrackingNumber) -> Result<Vec<Carrier>, ProviderError> {
        Ok(vec![
            Carrier::parse("ZTO").unwrap(),
            Carrier::parse("STO").unwrap(),
        ])
    }

    fn quota_exceeded(_: &TrackingNumber) -> Result<Vec<Carrier>, ProviderError> {
        Err(ProviderError::Retryable {
            provider: "kdniao",
            reason: "2002 quota: 今日查询次数超过上限".into(),
            retry_after: None,
        })
    }

    fn recognizing(
        answer: fn(&TrackingNumber) -> Result<Vec<Carrier>, ProviderError>,
    ) -> Api<MemoryStore, FakeRecognizer> {
        api().with_recognizer(Some(FakeRecognizer {
            asked: Mutex::new(Vec::new()),
            answer,
        }))
    }

    fn asked(api: &Api<MemoryStore, FakeRecognizer>) -> Vec<String> {
        api.recognizer
            .as_ref()
            .unwrap()
            .asked
            .lock()
            .unwrap()
            .clone()
    }

    #[tokio::test]
    async fn numbers_the_rules_place_never_reach_the_recognizer() {
        let api = recognizing(says_zto);
        let body = r#"{"shipments":[{"number":"SF1234567890123"},{"number":"YT1000000000001"},
            {"carrier":"STO","number":"773000000000001"}]}"#;
        let v = self::body(&call(&api, with_body(REGISTER_BULK, body)).await);
        assert_eq!(
            v["counts"],
            json!({"created":3,"exists":0,"invalid":0,"failed":0})
        );
        assert_eq!(v["results"][0]["carrier"], "SF");
        assert_eq!(v["results"][0]["detected_by"], "rules");
        assert_eq!(v["results"][0]["carrier_detected"], true);
        assert_eq!(v["results"][1]["detected_by"], "rules");
        // Given by the merchant: not detected, and the provider is not second-guessing it.
        assert!(v["results"][2].get("detected_by").is_none(), "{v}");
        assert!(v["results"][2].get("carrier_detected").is_none(), "{v}");
        assert!(asked(&api).is_empty(), "{:?}", asked(&api));
    }

    #[tokio::test]
    async fn an_ambiguous_all_digit_number_is_registered_with_the_recognized_carrier() {
        let api = recognizing(says_zto);
        let r = call(
            &api,
            with_body(
                REGISTER_ONE,
                r#"{"number":"773000000000001","priority":"high"}"#,
            ),
        )
        .await;
        assert_eq!(r.status_code, 201, "{}", text(&r));
        assert_eq!(
            body(&r),
            json!({"carrier":"ZTO","number":"773000000000001","result":"created",
                   "carrier_detected":true,"detected_by":"kdniao-2002"})
        );
        assert_eq!(asked(&api), ["773000000000001"]);
        let stored = api.store.shipment(&zto_773()).unwrap();
        assert_eq!(stored.priority, Priority::High);
        assert_eq!(stored.status, Status::Pending);
    }

    #[tokio::test]
    async fn a_failing_recognizer_refuses_its_items_and_the_others_still_register() {
        let api = recognizing(quota_exceeded);
        let r = call(&api, event(REGISTER_BULK)).await;
        assert_eq!(r.status_code, 200, "{}", text(&r));
        let v = body(&r);
        assert_eq!(
            v["counts"],
            json!({"created":4,"exists":0,"invalid":2,"failed":0})
        );
        let item = &v["results"][3];
        assert_eq!(item["number"], "773000000000001");
        assert_eq!(item["result"], "invalid");
        assert_eq!(item["carrier"], Value::Null);
        assert_eq!(
            item["error"],
            "carrier required: the number's format is ambiguous and recognition failed: \
             kdniao-2002 is unavailable; retry later or send the carrier"
        );
        assert!(
            !text(&r).contains("上限"),
            "no provider internals: {}",
            text(&r)
        );
        assert_eq!(asked(&api), ["773000000000001"]);
        assert_eq!(api.store.shipments.lock().unwrap().len(), 4);
        assert!(api.store.shipment(&zto_773()).is_none());

        // One item: a 400 with the same reason, nothing stored.
        let r = call(
            &api,
            with_body(REGISTER_ONE, r#"{"number":"773000000000001"}"#),
        )
        .await;
        assert_eq!(r.status_code, 400);
        assert!(body(&r)["error"].as_str().unwrap().starts_with(
            "carrier required: the number's format is ambiguous and recognition failed: "
        ));
        assert_eq!(api.store.shipments.lock().unwrap().len(), 4);
    }

    #[tokio::test]
    async fn recognitions_per_request_are_bounded() {
        let mut api = recognizing(says_zto);
        api.cfg.max_recognitions = 3;
        // Six distinct unsure numbers, the first one twice (asked once), and one the rules place.
        let mut items: Vec<Value> = (1..=6)
            .map(|i| json!({ "number": format!("77300000000000{i}") }))
            .collect();
        items.insert(2, json!({"number":"773000000000001","order_ref":"again"}));
        items.push(json!({"number":"SF1234567890123"}));
        let r = call(
            &api,
            with_body(REGISTER_BULK, &json!({ "shipments": items }).to_string()),
        )
        .await;
        assert_eq!(r.status_code, 200, "{}", text(&r));
        let v = body(&r);
        assert_eq!(
            asked(&api),
            ["773000000000001", "773000000000002", "773000000000003"]
        );
        let results: Vec<(&str, &str)> = v["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["number"].as_str().unwrap(), r["result"].as_str().unwrap()))
            .collect();
        assert_eq!(
            results,
            [
                ("773000000000001", "created"),
                ("773000000000002", "created"),
                ("773000000000001", "exists"),
                ("773000000000003", "created"),
                ("773000000000004", "invalid"),
                ("773000000000005", "invalid"),
                ("773000000000006", "invalid"),
                ("SF1234567890123", "created"),
            ]
        );
        assert_eq!(
            v["results"][4]["error"],
            "carrier required: the number's format is ambiguous and this request already used \
             its 3 carrier recognitions; send the carrier or register it in another request"
        );
        // The next request has its own budget.
        let r = call(
            &api,
            with_body(REGISTER_ONE, r#"{"number":"773000000000004"}"#),
        )
        .await;
        assert_eq!(r.status_code, 201, "{}", text(&r));
        assert_eq!(asked(&api).len(), 4);
    }

    // -----------------------------------------------------------------------------------------
    // Authentication and routing
    // -----------------------------------------------------------------------------------------

    #[tokio::test]
    async fn merchant_routes_need_a_known_api_key() {
        let api = tracked();
        let before = snapshot(&api.store);
        for sample in [REGISTER_ONE, GET_SHIPMENT] {
            let mut missing = event(sample);
            missing.headers.remove("x-api-key");
            let r = call(&api, missing).await;
            assert_eq!(r.status_code, 401);
            assert_eq!(body(&r), json!({"error":"missing x-api-key header"}));

            let mut wrong = event(sample);
            wrong
                .headers
                .insert("x-api-key", HeaderValue::from_static("test-key-0003"));
            let r = call(&api, wrong).await;
            assert_eq!(r.status_code, 403);
            assert_eq!(body(&r), json!({"error":"invalid API key"}));

            let mut prefix = event(sample);
            prefix
                .headers
                .insert("x-api-key", HeaderValue::from_static("test-key-000"));
            assert_eq!(call(&api, prefix).await.status_code, 403);
        }
        assert_eq!(snapshot(&api.store), before);
        // Either configured key works.
        assert_eq!(call(&api, event(GET_SHIPMENT)).await.status_code, 200);
    }

    #[test]
    fn constant_time_comparison_is_exact() {
        assert!(ct_eq(b"test-key-0001", b"test-key-0001"));
        assert!(!ct_eq(b"test-key-0001", b"test-key-0002"));
        assert!(!ct_eq(b"test-key-0001", b"test-key-00010"));
        assert!(!ct_eq(b"", b"x"));
        assert!(ct_eq(b"", b""));
    }

    #[tokio::test]
    async fn unknown_paths_are_404_and_wrong_methods_405() {
        let api = tracked();
        let mut e = event(GET_SHIPMENT);
        e.raw_path = Some("/shipment/YTO/YT1000000000001".into());
        let r = call(&api, e).await;
        assert_eq!(r.status_code, 404);
        assert_eq!(
            body(&r),
            json!({"error":"no route for /shipment/YTO/YT1000000000001"})
        );

        let mut e = event(GET_SHIPMENT);
        e.request_context.http.method = Method::DELETE;
        let r = call(&api, e).await;
        assert_eq!(r.status_code, 405);
        assert_eq!(r.headers[header::ALLOW], "GET");
        assert_eq!(body(&r), json!({"error":"method not allowed; use GET"}));

        for sample in [REGISTER_ONE, PUSH_KDNIAO, PUSH_KUAIDI100] {
            let mut e = event(sample);
            e.request_context.http.method = Method::GET;
            let r = call(&api, e).await;
            assert_eq!(r.status_code, 405, "{sample}");
            assert_eq!(r.headers[header::ALLOW], "POST");
        }
    }

    #[tokio::test]
    async fn a_named_stage_prefix_and_a_trailing_slash_still_route() {
        let api = tracked();
        let mut e = event(GET_SHIPMENT);
        e.raw_path = Some("/prod/shipments/yto/YT1000000000001/".into());
        e.request_context.stage = Some("prod".into());
        let r = call(&api, e).await;
        assert_eq!(r.status_code, 200, "{}", text(&r));
        assert_eq!(body(&r)["carrier"], "YTO");
    }

    // -----------------------------------------------------------------------------------------
    // Reading a shipment
    // -----------------------------------------------------------------------------------------

    #[tokio::test]
    async fn a_shipment_reads_with_its_trajectory_newest_first() {
        let api = tracked();
        assert_eq!(call(&api, event(PUSH_KDNIAO)).await.status_code, 200);
        let r = call(&api, event(GET_SHIPMENT)).await;
        assert_eq!(r.status_code, 200, "{}", text(&r));
        assert_eq!(
            r.headers[header::CONTENT_TYPE],
            "application/json; charset=utf-8"
        );
        let v = body(&r);
        assert_eq!(v["carrier"], "YTO");
        assert_eq!(v["carrier_name"], "YTO Express");
        assert_eq!(v["number"], "YT1000000000001");
        assert_eq!(v["status"], "OutForDelivery");
        assert_eq!(v["sub_status"], "kdniao:202");
        assert_eq!(v["status_text"], "Out for delivery");
        assert_eq!(v["status_changed_at"], "2026-11-24T02:00:00Z");
        assert_eq!(v["checked_at"], "2026-11-24T02:00:00Z");
        assert_eq!(v["delivered"], false);
        assert_eq!(v["terminal"], false);
        assert_eq!(v["event_count"], 4);
        let events = v["events"].as_array().unwrap();
        let times: Vec<&str> = events.iter().map(|e| e["time"].as_str().unwrap()).collect();
        assert_eq!(
            times,
            vec![
                "2026-11-24T01:12:00Z",
                "2026-11-23T23:30:00Z",
                "2026-11-22T18:15:40Z",
                "2026-11-22T10:02:11Z"
            ]
        );
        assert_eq!(
            events[0],
            json!({
                "time": "2026-11-24T01:12:00Z",
                "time_local": "2026-11-24 09:12:00",
                "description": "快件正在派送中",
                "location": "深圳市",
                "status": "OutForDelivery",
            })
        );
        assert_eq!(v["last_event"], events[0]);
        assert!(v.get("phone").is_none() && !text(&r).contains("+86"));

        // Chinese by default; the limit bounds the lines.
        let mut zh = event(GET_SHIPMENT);
        zh.query_string_parameters =
            std::collections::HashMap::from([("limit".to_string(), "2".to_string())]).into();
        let v = body(&call(&api, zh).await);
        assert_eq!(v["status_text"], "派送中");
        assert_eq!(v["carrier_name"], "圆通速递");
        assert_eq!(v["lang"], "zh-CN");
        assert_eq!(v["events"].as_array().unwrap().len(), 2);
        assert_eq!(v["events"][0]["time"], "2026-11-24T01:12:00Z");
    }

    #[tokio::test]
    async fn bad_query_parameters_and_ids_are_400() {
        let api = tracked();
        for (k, v, reason) in [
            ("lang", "fr", "lang must be zh-CN or en"),
            ("limit", "0", "limit must be 1 to 500"),
            ("limit", "all", "limit must be 1 to 500"),
        ] {
            let mut e = event(GET_SHIPMENT);
            e.query_string_parameters =
                std::collections::HashMap::from([(k.to_string(), v.to_string())]).into();
            let r = call(&api, e).await;
            assert_eq!(r.status_code, 400, "{k}={v}");
            assert_eq!(body(&r), json!({ "error": reason }));
        }
        let mut e = event(GET_SHIPMENT);
        e.raw_path = Some("/shipments/YTO/12".into());
        let r = call(&api, e).await;
        assert_eq!(r.status_code, 400);
        assert!(body(&r)["error"]
            .as_str()
            .unwrap()
            .contains("tracking number"));
    }

    #[tokio::test]
    async fn an_untracked_shipment_is_404() {
        let api = api();
        let r = call(&api, event(GET_SHIPMENT)).await;
        assert_eq!(r.status_code, 404);
        assert_eq!(
            body(&r),
            json!({"error":"shipment YTO/YT1000000000001 is not tracked"})
        );
    }

    // -----------------------------------------------------------------------------------------
    // Kdniao pushes
    // -----------------------------------------------------------------------------------------

    #[test]
    fn the_kdniao_sample_push_is_a_fresh_signed_build() {
        let e = event(PUSH_KDNIAO);
        assert!(
            e.is_base64_encoded,
            "API Gateway base64-encodes form bodies"
        );
        assert_eq!(decoded_body(&e), kdniao_form(&[kdniao_item(KDNIAO_ITEM)]));
        let batch = kdniao_push::verify_push(&decoded_body(&e), APP_KEY, EB).unwrap();
        assert_eq!(batch.updates.len(), 1);
        assert_eq!(batch.updates[0].id, yto());
        assert_eq!(
            kdniao_push::verify_push(&decoded_body(&event(PUSH_KDNIAO_BAD_SIGN)), APP_KEY, EB),
            Err(PushError::BadSignature)
        );
    }

    #[tokio::test]
    async fn a_kdniao_push_changes_the_status_once() {
        let api = tracked();
        let r = call(&api, event(PUSH_KDNIAO)).await;
        assert_eq!(r.status_code, 200, "{}", text(&r));
        let a = ack(&r);
        assert_eq!(a["Success"], true);
        assert_eq!(a["Reason"], "");
        assert_eq!(a["UpdateTime"], "2026-11-24 10:00:00");
        let s = api.store.shipment(&yto()).unwrap();
        assert_eq!(s.status, Status::OutForDelivery);
        assert_eq!(s.sub_status, Some(SubStatus::new("kdniao", "202")));
        assert_eq!(s.status_changed_at, now());
        assert_eq!(s.last_push_at, Some(now()));
        assert_eq!(s.event_count, 4);
        assert_eq!(api.store.event_count(&yto()), 4);
        let version = s.version;

        // Kdniao retries the same push: acknowledged, no new line, no second transition.
        let later = now() + chrono::Duration::minutes(5);
        let r = handle(&api, event(PUSH_KDNIAO), later).await;
        assert_eq!(r.status_code, 200);
        assert_eq!(ack(&r)["Success"], true);
        let again = api.store.shipment(&yto()).unwrap();
        assert_eq!(again.status, Status::OutForDelivery);
        assert_eq!(again.status_changed_at, now(), "no second transition");
        assert_eq!(again.event_count, 4);
        assert_eq!(api.store.event_count(&yto()), 4);
        assert_eq!(again.version, version + 1, "only last_push_at moved");
        // The untouched ZTO parcel stays as registered.
        assert_eq!(api.store.shipment(&zto()).unwrap().status, Status::Pending);
    }

    #[tokio::test]
    async fn applying_the_same_push_twice_counts_one_transition() {
        let api = tracked();
        let batch =
            kdniao_push::verify_push(&decoded_body(&event(PUSH_KDNIAO)), APP_KEY, EB).unwrap();
        let first = apply_push(&api.store, &api.ctx, "kdniao", &batch, now()).await;
        assert_eq!(
            first,
            PushSummary {
                updates: 1,
                written: 1,
                transitions: 1,
                new_events: 4,
                ..PushSummary::default()
            }
        );
        let second = apply_push(&api.store, &api.ctx, "kdniao", &batch, now()).await;
        assert_eq!(
            second,
            PushSummary {
                updates: 1,
                written: 1,
                ..PushSummary::default()
            }
        );
    }

    #[tokio::test]
    async fn a_badly_signed_kdniao_push_is_401_and_writes_nothing() {
        let api = tracked();
        let before = snapshot(&api.store);
        let r = call(&api, event(PUSH_KDNIAO_BAD_SIGN)).await;
        assert_eq!(r.status_code, 401);
        let a = ack(&r);
        assert_eq!(a["Success"], false);
        assert_eq!(a["Reason"], "push signature does not verify");
        assert_eq!(snapshot(&api.store), before);
    }

    #[tokio::test]
    async fn a_malformed_kdniao_push_is_400_and_writes_nothing() {
        let api = tracked();
        let before = snapshot(&api.store);
        let unsigned = form_encode(&[("RequestData", "{}"), ("RequestType", "102")]);
        let not_json = form_encode(&[
            ("RequestData", "not json"),
            ("RequestType", "102"),
            ("DataSign", &data_sign("not json", APP_KEY)),
        ]);
        for (form, reason) in [
            (
                unsigned.as_str(),
                "malformed push: missing form field DataSign",
            ),
            (not_json.as_str(), "malformed push: RequestData is not JSON"),
        ] {
            let r = call(&api, with_form(PUSH_KDNIAO, form)).await;
            assert_eq!(r.status_code, 400, "{form}");
            let a = ack(&r);
            assert_eq!(a["Success"], false);
            assert!(a["Reason"].as_str().unwrap().starts_with(reason), "{a}");
        }
        assert_eq!(snapshot(&api.store), before);
    }

    #[tokio::test]
    async fn a_kdniao_push_for_an_unknown_carrier_is_422_and_writes_nothing() {
        let api = tracked();
        let before = snapshot(&api.store);
        let item = KDNIAO_ITEM.replace(r#""ShipperCode":"YTO""#, r#""ShipperCode":"圆通""#);
        let r = call(
            &api,
            with_form(PUSH_KDNIAO, &kdniao_form(&[kdniao_item(&item)])),
        )
        .await;
        assert_eq!(r.status_code, 422, "{}", text(&r));
        let a = ack(&r);
        assert_eq!(a["Success"], false);
        assert!(a["Reason"].as_str().unwrap().starts_with("unknown carrier"));
        assert_eq!(snapshot(&api.store), before);
    }

    #[tokio::test]
    async fn a_push_mixing_a_good_and_an_unusable_item_stores_the_good_one() {
        let api = tracked();
        let bad = KDNIAO_ITEM.replace(r#""ShipperCode":"YTO""#, r#""ShipperCode":"圆通""#);
        let form = kdniao_form(&[kdniao_item(&bad), kdniao_item(KDNIAO_ITEM)]);
        let r = call(&api, with_form(PUSH_KDNIAO, &form)).await;
        assert_eq!(r.status_code, 200, "{}", text(&r));
        assert_eq!(ack(&r)["Success"], true);
        assert_eq!(
            api.store.shipment(&yto()).unwrap().status,
            Status::OutForDelivery
        );
    }

    #[tokio::test]
    async fn a_push_for_an_untracked_shipment_is_acknowledged_not_stored() {
        let api = api();
        let r = call(&api, event(PUSH_KDNIAO)).await;
        assert_eq!(r.status_code, 200);
        assert_eq!(ack(&r)["Success"], true);
        assert!(api.store.shipments.lock().unwrap().is_empty());
        assert!(api.store.events.lock().unwrap().is_empty());
        let batch =
            kdniao_push::verify_push(&decoded_body(&event(PUSH_KDNIAO)), APP_KEY, EB).unwrap();
        let summary = apply_push(&api.store, &api.ctx, "kdniao", &batch, now()).await;
        assert_eq!(summary.not_registered, 1);
        assert_eq!(summary.written, 0);
    }

    #[tokio::test]
    async fn a_plain_text_push_body_is_accepted_too() {
        let api = tracked();
        let plain = decoded_body(&event(PUSH_KDNIAO));
        let r = call(&api, with_body(PUSH_KDNIAO, &plain)).await;
        assert_eq!(r.status_code, 200, "{}", text(&r));
        assert_eq!(
            api.store.shipment(&yto()).unwrap().status,
            Status::OutForDelivery
        );
    }

    // -----------------------------------------------------------------------------------------
    // Kuaidi100 pushes
    // -----------------------------------------------------------------------------------------

    #[test]
    fn the_kuaidi100_sample_push_is_a_fresh_signed_build() {
        let e = event(PUSH_KUAIDI100);
        assert_eq!(
            decoded_body(&e),
            kuaidi100::build_push_form(KUAIDI100_PARAM, SALT)
        );
    }

    #[tokio::test]
    async fn a_kuaidi100_push_is_applied_and_acknowledged() {
        let api = tracked();
        let r = call(&api, event(PUSH_KUAIDI100)).await;
        assert_eq!(r.status_code, 200, "{}", text(&r));
        assert_eq!(
            text(&r),
            r#"{"result":true,"returnCode":"200","message":"成功"}"#
        );
        let s = api.store.shipment(&zto()).unwrap();
        assert_eq!(s.status, Status::ArrivedAtDestinationCity);
        assert_eq!(s.sub_status, Some(SubStatus::new("kuaidi100", "1001")));
        assert_eq!(api.store.event_count(&zto()), 2);
        assert_eq!(s.last_push_at, Some(now()));
        // Again: nothing new.
        let changed_at = s.status_changed_at;
        assert_eq!(call(&api, event(PUSH_KUAIDI100)).await.status_code, 200);
        let again = api.store.shipment(&zto()).unwrap();
        assert_eq!(again.status_changed_at, changed_at);
        assert_eq!(api.store.event_count(&zto()), 2);
    }

    #[tokio::test]
    async fn refused_kuaidi100_pushes_answer_in_its_shape_and_write_nothing() {
        let api = tracked();
        let before = snapshot(&api.store);
        let bad_sign = form_encode(&[
            ("param", KUAIDI100_PARAM),
            ("sign", "0BDDDF4AC8368D5145F2E3EBFBA0D586"),
        ]);
        let unknown = KUAIDI100_PARAM.replace("zhongtong", "xinguangsu");
        let not_json = kuaidi100::build_push_form("{", SALT);
        for (form, status, reason) in [
            (bad_sign, 401, "push signature does not verify"),
            (
                kuaidi100::build_push_form(&unknown, SALT),
                422,
                "unknown carrier",
            ),
            (not_json, 400, "malformed push"),
        ] {
            let r = call(&api, with_form(PUSH_KUAIDI100, &form)).await;
            assert_eq!(r.status_code, status, "{}", text(&r));
            let v = body(&r);
            assert_eq!(v["result"], false);
            assert_eq!(v["returnCode"], status.to_string());
            assert!(v["message"].as_str().unwrap().starts_with(reason), "{v}");
        }
        assert_eq!(snapshot(&api.store), before);
    }

    #[tokio::test]
    async fn kuaidi100_pushes_are_404_when_not_configured() {
        let mut api = tracked();
        api.cfg.kuaidi100_salt = None;
        let before = snapshot(&api.store);
        let r = call(&api, event(PUSH_KUAIDI100)).await;
        assert_eq!(r.status_code, 404);
        assert_eq!(
            body(&r),
            json!({"result":false,"returnCode":"404","message":"Kuaidi100 pushes are not configured"})
        );
        assert_eq!(snapshot(&api.store), before);
    }

    // -----------------------------------------------------------------------------------------
    // Store failures
    // -----------------------------------------------------------------------------------------

    /// A table that is down, with a cause that must not reach a client.
    struct DownStore;
    const INTERNAL: &str = "dynamodb ap-east-1 ProvisionedThroughputExceededException req 7Q3";
    impl ShipmentStore for DownStore {
        async fn get(&self, _: &ShipmentId) -> Result<Option<Shipment>, StoreError> {
            Err(StoreError::Retryable(INTERNAL.into()))
        }
        async fn create(&self, _: &Shipment) -> Result<bool, StoreError> {
            Err(StoreError::Retryable(INTERNAL.into()))
        }
        async fn save(
            &self,
            _: &Shipment,
            _: &Shipment,
            _: &[(EventKey, TraceEvent)],
        ) -> Result<parcelwatch::store::Saved, StoreError> {
            Err(StoreError::Retryable(INTERNAL.into()))
        }
        async fn trace(
            &self,
            _: &ShipmentId,
            _: usize,
        ) -> Result<Vec<(EventKey, TraceEvent)>, StoreError> {
            Err(StoreError::Retryable(INTERNAL.into()))
        }
    }

    #[tokio::test]
    async fn a_store_failure_is_a_503_that_asks_for_a_retry_without_internals() {
        let api = Api::new(DownStore, cfg()).with_vault(Vault::ephemeral());
        let r = call(&api, event(PUSH_KDNIAO)).await;
        assert_eq!(r.status_code, 503);
        let a = ack(&r);
        assert_eq!(a["Success"], false);
        assert_eq!(a["Reason"], PUSH_STORE_DOWN);

        let r = call(&api, event(PUSH_KUAIDI100)).await;
        assert_eq!(r.status_code, 503);
        assert_eq!(body(&r)["result"], false);
        assert_eq!(body(&r)["returnCode"], "503");

        for sample in [REGISTER_ONE, GET_SHIPMENT] {
            let r = call(&api, event(sample)).await;
            assert_eq!(r.status_code, 503, "{sample}");
            assert_eq!(
                body(&r),
                json!({"error":"shipment store temporarily unavailable; retry"})
            );
        }
        let r = call(&api, event(REGISTER_BULK)).await;
        assert_eq!(r.status_code, 503);
        assert_eq!(body(&r)["counts"]["failed"], 4);
        for r in [
            call(&api, event(PUSH_KDNIAO)).await,
            call(&api, event(REGISTER_BULK)).await,
        ] {
            assert!(!text(&r).contains("dynamodb"), "{}", text(&r));
        }
    }

    // -----------------------------------------------------------------------------------------
    // Logs
    // -----------------------------------------------------------------------------------------

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn logs_carry_no_phone_number_nor_key() {
        let capture = Capture::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish();
        // The process-wide subscriber (no other test here installs one): a thread-local default
        // would miss callsites that other test threads cached as "not interested" meanwhile.
        // The capture then also holds other tests' logs, which must be just as clean.
        tracing::subscriber::set_global_default(subscriber).expect("only this test sets one");
        let api = api();
        call(&api, event(REGISTER_ONE)).await;
        call(&api, event(REGISTER_BULK)).await;
        let mut wrong = event(GET_SHIPMENT);
        wrong
            .headers
            .insert("x-api-key", HeaderValue::from_static("leaked-key-9999"));
        call(&api, wrong).await;
        call(&api, event(PUSH_KDNIAO)).await;
        call(&api, event(PUSH_KDNIAO_BAD_SIGN)).await;
        let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
        assert!(logs.contains("registration"), "{logs}");
        assert!(logs.contains("push applied"), "{logs}");
        for secret in [
            "13812345678",
            "91234567",
            KEY_1,
            "test-key-0002",
            "leaked-key-9999",
            APP_KEY,
        ] {
            assert!(!logs.contains(secret), "{secret} in logs:\n{logs}");
        }
    }

    // -----------------------------------------------------------------------------------------
    // Analytics and ETA
    // -----------------------------------------------------------------------------------------

    /// Six YTO deliveries 浙江 → 广东 in 48 h, one finished with an exception.
    fn history() -> Arc<parcelwatch::store::analytics::MemoryAnalytics> {
        use parcelwatch::domain::stats::{RouteKey, RouteStats, StageStats};
        let m = parcelwatch::store::analytics::MemoryAnalytics::default();
        {
            let mut h = m.history.lock().unwrap();
            let mut r = RouteStats {
                finished: 7,
                delivered: 6,
                exceptions: 1,
                ..Default::default()
            };
            for _ in 0..6 {
                r.delivery.record(chrono::Duration::hours(48));
            }
            h.routes.insert(
                RouteKey {
                    carrier: "YTO".into(),
                    origin: "浙江".into(),
                    destination: "广东".into(),
                },
                r,
            );
            let mut st = StageStats::default();
            st.quiet_gap.record(chrono::Duration::hours(5));
            h.stages.insert(("YTO".into(), Status::InTransit), st);
        }
        Arc::new(m)
    }

    fn get(path: &str, query: &[(&str, &str)], key: Option<&str>) -> ApiGatewayV2httpRequest {
        let mut e = event(GET_SHIPMENT);
        e.raw_path = Some(path.into());
        e.query_string_parameters = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<std::collections::HashMap<_, _>>()
            .into();
        match key {
            Some(k) => {
                e.headers.insert("x-api-key", k.parse().unwrap());
            }
            None => {
                e.headers.remove("x-api-key");
            }
        }
        e
    }

    #[tokio::test]
    async fn a_shipment_on_its_way_reads_with_an_eta_from_its_route() {
        let api = tracked().with_history(history());
        assert_eq!(call(&api, event(PUSH_KDNIAO)).await.status_code, 200);
        let v = body(&call(&api, event(GET_SHIPMENT)).await);
        assert_eq!(v["status"], "OutForDelivery");
        assert_eq!(v["eta"]["basis"], "route", "{v}");
        assert_eq!(v["eta"]["samples"], 6);
        // Picked up 2026-11-22T10:02:11Z; the route takes about 48 h.
        let expected =
            parcelwatch::domain::parse_time(v["eta"]["expected_at"].as_str().unwrap()).unwrap();
        let picked = Utc.with_ymd_and_hms(2026, 11, 22, 10, 2, 11).unwrap();
        let took = expected - picked;
        assert!(
            (took - chrono::Duration::hours(48)).num_minutes().abs() < 5 * 60,
            "{took}"
        );
        assert!(expected >= now());
        // The same shipment without a history source: the fixed default.
        let plain = tracked();
        call(&plain, event(PUSH_KDNIAO)).await;
        let v = body(&call(&plain, event(GET_SHIPMENT)).await);
        assert_eq!(v["eta"]["basis"], "default");
        assert_eq!(v["eta"]["samples"], 0);
    }

    #[tokio::test]
    async fn analytics_routes_answer_the_figures_behind_the_api_key() {
        let api = tracked().with_history(history());
        let r = call(
            &api,
            get(
                "/analytics/routes",
                &[("carrier", "yto"), ("origin", "Zhejiang")],
                Some(KEY_1),
            ),
        )
        .await;
        assert_eq!(r.status_code, 200, "{}", text(&r));
        let v = body(&r);
        assert_eq!(v["filter"]["carrier"], "YTO");
        assert_eq!(v["filter"]["origin"], "浙江");
        assert_eq!(v["total"]["delivered"], 6);
        assert_eq!(v["total"]["finished"], 7);
        assert_eq!(v["total"]["exception_rate"], json!(1.0 / 7.0));
        assert_eq!(v["routes"][0]["destination"], "广东");
        let p50 = v["total"]["delivery_time"]["p50_minutes"].as_i64().unwrap();
        assert!((p50 - 48 * 60).abs() < 48 * 6, "{p50}");

        let r = call(
            &api,
            get("/analytics/carriers/YTO/stages", &[], Some(KEY_1)),
        )
        .await;
        assert_eq!(r.status_code, 200, "{}", text(&r));
        assert_eq!(body(&r)["stages"][0]["stage"], "InTransit");
        assert_eq!(body(&r)["stages"][0]["quiet_gap"]["samples"], 1);

        // Same auth as the other merchant routes; filters are checked; GET only.
        let r = call(&api, get("/analytics/routes", &[], None)).await;
        assert_eq!(r.status_code, 401);
        let r = call(&api, get("/analytics/routes", &[], Some("nope"))).await;
        assert_eq!(r.status_code, 403);
        let r = call(
            &api,
            get(
                "/analytics/routes",
                &[("destination", "Atlantis")],
                Some(KEY_1),
            ),
        )
        .await;
        assert_eq!(r.status_code, 400);
        assert!(body(&r)["error"]
            .as_str()
            .unwrap()
            .starts_with("destination must be a province"));
        let r = call(
            &api,
            get("/analytics/carriers/%21%21/stages", &[], Some(KEY_1)),
        )
        .await;
        assert_eq!(r.status_code, 400);
        let mut post = get("/analytics/routes", &[], Some(KEY_1));
        post.request_context.http.method = Method::POST;
        assert_eq!(call(&api, post).await.status_code, 405);
        // No history configured: the route says so.
        let r = call(&tracked(), get("/analytics/routes", &[], Some(KEY_1))).await;
        assert_eq!(r.status_code, 503);
    }
}
