//! [`AwsFaultProxy`]: an HTTP reverse proxy on loopback in front of moto.
//!
//! Point the functions' AWS SDK clients at [`AwsFaultProxy::endpoint`]; keep the test's own
//! assertions on moto's endpoint. Every request is forwarded as it came (method, path, query,
//! every header including `Host` and the SigV4 ones, body) and moto's answer returned as it
//! came, except for a seeded share of selected calls, answered with the error the real service
//! sends (see [`AwsFaultPlan`] for each knob and its wire shape).
//!
//! Calls are recognised the way the services route them:
//! - DynamoDB and DynamoDB Streams (awsJson1_0): `X-Amz-Target: DynamoDB_20120810.PutItem`,
//!   `DynamoDBStreams_20120810.GetRecords`;
//! - SQS (awsJson1_0 since aws-sdk-sqs 1.x, query-compatible): `X-Amz-Target:
//!   AmazonSQS.SendMessage`;
//! - SNS (awsQuery): a form body with `Action=Publish` (what aws-sdk-sns 1.x writes, through
//!   `aws_smithy_query::QueryWriter::new(.., "Publish", "2010-03-31")`).

use super::{draw, pick};
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Router;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Largest request body the proxy buffers (DynamoDB's own limit on a request is 16 MB).
const MAX_BODY: usize = 32 * 1024 * 1024;
/// How long the proxy waits for moto: above SQS's 20 s long poll, with room for a slow moto.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(120);

/// Which calls fail, and how often. Every share is the probability (0..=1) that one eligible
/// call is faulted; NaN or negative counts as 0, above 1 as 1. The `n`-th eligible call of each
/// kind gets the same verdict for the same `seed` (see [`super::draw`]).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct AwsFaultPlan {
    pub seed: u64,
    /// Share of SNS `Publish` calls answered, without forwarding, with SNS's throttling error:
    /// HTTP 400, awsQuery XML `<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>
    /// <Message>Rate exceeded</Message></Error><RequestId>…</RequestId></ErrorResponse>`.
    /// The SDK's standard retry treats the code `Throttling` as a throttling error and retries
    /// it. Reproduces an account over its SMS / publish rate.
    pub sns_publish_throttle: f64,
    /// Share of DynamoDB writes (`PutItem`, `UpdateItem`, `DeleteItem`, `TransactWriteItems`,
    /// `BatchWriteItem`) answered, without forwarding, with HTTP 400 awsJson
    /// `{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
    /// "message":…}`: the write did not happen, the SDK retries it as throttling.
    pub dynamo_write_throttle: f64,
    /// Share of those writes forwarded to moto (so they happen) but answered with HTTP 500
    /// `{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"Internal
    /// server error"}`: the caller cannot know its write was stored. Reproduces a response lost
    /// after commit; whoever retries must be idempotent.
    pub dynamo_write_lost_response: f64,
    /// Share of SQS `SendMessage`, `SendMessageBatch`, `DeleteMessage`, `DeleteMessageBatch`,
    /// `ChangeMessageVisibility`, `ChangeMessageVisibilityBatch` and `ReceiveMessage` answered,
    /// without forwarding, with HTTP 500, header `x-amzn-query-error: InternalFailure;Receiver`
    /// and awsJson `{"__type":"com.amazon.coral.service#InternalFailure","message":…}` (AWS's
    /// common 500 error). Nothing was sent, deleted or received; the SDK retries 500s.
    pub sqs_error: f64,
    /// Share of DynamoDB Streams `GetRecords` answered, without forwarding, with HTTP 500
    /// `{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError",…}`: the shard
    /// iterator was not consumed, the same records come back on the next try.
    pub streams_error: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    #[error("cannot bind the AWS fault proxy to {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the AWS fault proxy's local address")]
    LocalAddr(#[source] std::io::Error),
    #[error("cannot build the AWS fault proxy's HTTP client")]
    Client(#[source] reqwest::Error),
    #[error("upstream {0:?} is not an http://host:port endpoint")]
    Upstream(String),
}

/// A call the plan may fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    SnsPublish,
    DynamoWrite,
    Sqs,
    StreamsRead,
}

impl Call {
    /// The draw stream and the prefix of its counters.
    fn stream(self) -> &'static str {
        match self {
            Call::SnsPublish => "sns.publish",
            Call::DynamoWrite => "dynamodb.write",
            Call::Sqs => "sqs",
            Call::StreamsRead => "dynamodbstreams.getrecords",
        }
    }
}

/// What to do with one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Forward,
    SnsThrottle,
    DynamoThrottle,
    DynamoLostResponse,
    SqsError,
    StreamsError,
}

impl Verdict {
    /// Counter name of an injected fault.
    fn counter(self) -> Option<&'static str> {
        match self {
            Verdict::Forward => None,
            Verdict::SnsThrottle => Some("sns.publish.throttle"),
            Verdict::DynamoThrottle => Some("dynamodb.write.throttle"),
            Verdict::DynamoLostResponse => Some("dynamodb.write.lost_response"),
            Verdict::SqsError => Some("sqs.error"),
            Verdict::StreamsError => Some("dynamodbstreams.getrecords.error"),
        }
    }
}

const DYNAMO_WRITES: [&str; 5] = [
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "TransactWriteItems",
    "BatchWriteItem",
];
const SQS_CALLS: [&str; 7] = [
    "SendMessage",
    "SendMessageBatch",
    "DeleteMessage",
    "DeleteMessageBatch",
    "ChangeMessageVisibility",
    "ChangeMessageVisibilityBatch",
    "ReceiveMessage",
];

/// Which faultable call a request is, if any.
fn classify(headers: &HeaderMap, body: &[u8]) -> Option<Call> {
    if let Some(target) = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
    {
        let (service, op) = target.split_once('.')?;
        return match service {
            "DynamoDB_20120810" if DYNAMO_WRITES.contains(&op) => Some(Call::DynamoWrite),
            "AmazonSQS" if SQS_CALLS.contains(&op) => Some(Call::Sqs),
            "DynamoDBStreams_20120810" if op == "GetRecords" => Some(Call::StreamsRead),
            _ => None,
        };
    }
    // awsQuery: `Action=Publish&Version=2010-03-31&…` (PublishBatch is another action).
    let is_publish = body
        .split(|b| *b == b'&')
        .any(|pair| pair == b"Action=Publish");
    is_publish.then_some(Call::SnsPublish)
}

struct ProxyState {
    upstream: String,
    http: reqwest::Client,
    plan: RwLock<AwsFaultPlan>,
    /// Eligible calls seen so far, per stream: the index of the next draw.
    seq: Mutex<BTreeMap<&'static str, u64>>,
    counts: Mutex<BTreeMap<String, u64>>,
    /// Sees every answered request (see [`AwsFaultProxy::start_tapped`]).
    tap: Option<Tap>,
}

/// Called with every request moto answered: `(operation, request body, HTTP status, answer
/// body)`, the operation as [`operation`] names it. For metering (`crate::cost`).
pub type Tap = Arc<dyn Fn(&str, &[u8], u16, &[u8]) + Send + Sync>;

/// `service.Operation` of a request: `dynamodb.PutItem`, `sqs.SendMessageBatch`,
/// `dynamodbstreams.GetRecords` (from `X-Amz-Target`), `sns.Publish` (awsQuery `Action=`), or
/// `other`.
pub fn operation(headers: &HeaderMap, body: &[u8]) -> String {
    if let Some(target) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        if let Some((service, op)) = target.trim().split_once('.') {
            let service = match service {
                "DynamoDB_20120810" => "dynamodb",
                "DynamoDBStreams_20120810" => "dynamodbstreams",
                "AmazonSQS" => "sqs",
                "TrentService" => "kms",
                other => other,
            };
            return format!("{service}.{op}");
        }
    }
    body.split(|b| *b == b'&')
        .find_map(|pair| pair.strip_prefix(b"Action="))
        .and_then(|a| std::str::from_utf8(a).ok())
        .map_or_else(|| "other".to_owned(), |a| format!("sns.{a}"))
}

impl ProxyState {
    fn count(&self, name: &str) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        *c.entry(name.to_owned()).or_default() += 1;
    }

    fn decide(&self, call: Call) -> Verdict {
        let plan = *self.plan.read().unwrap_or_else(|p| p.into_inner());
        let stream = call.stream();
        let n = {
            let mut seq = self.seq.lock().unwrap_or_else(|p| p.into_inner());
            let next = seq.entry(stream).or_default();
            let n = *next;
            *next += 1;
            n
        };
        self.count(&format!("{stream}.calls"));
        let u = draw(plan.seed, stream, n);
        match call {
            Call::SnsPublish => match pick(u, &[plan.sns_publish_throttle]) {
                Some(_) => Verdict::SnsThrottle,
                None => Verdict::Forward,
            },
            Call::DynamoWrite => match pick(
                u,
                &[plan.dynamo_write_throttle, plan.dynamo_write_lost_response],
            ) {
                Some(0) => Verdict::DynamoThrottle,
                Some(_) => Verdict::DynamoLostResponse,
                None => Verdict::Forward,
            },
            Call::Sqs => match pick(u, &[plan.sqs_error]) {
                Some(_) => Verdict::SqsError,
                None => Verdict::Forward,
            },
            Call::StreamsRead => match pick(u, &[plan.streams_error]) {
                Some(_) => Verdict::StreamsError,
                None => Verdict::Forward,
            },
        }
    }
}

/// A running proxy. Stops when dropped or on [`AwsFaultProxy::shutdown`].
pub struct AwsFaultProxy {
    addr: SocketAddr,
    state: Arc<ProxyState>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for AwsFaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsFaultProxy")
            .field("addr", &self.addr)
            .field("upstream", &self.state.upstream)
            .finish_non_exhaustive()
    }
}

impl AwsFaultProxy {
    /// Listen on a free loopback port and forward to `upstream` (`http://127.0.0.1:PORT`).
    pub async fn start(upstream: &str, plan: AwsFaultPlan) -> Result<AwsFaultProxy, FaultError> {
        Self::start_tapped(upstream, plan, None).await
    }

    /// [`AwsFaultProxy::start`], and `tap` sees every request moto answered (with an all-zero
    /// plan: a request meter in front of moto).
    pub async fn start_tapped(
        upstream: &str,
        plan: AwsFaultPlan,
        tap: Option<Tap>,
    ) -> Result<AwsFaultProxy, FaultError> {
        let upstream = upstream.trim().trim_end_matches('/').to_owned();
        let well_formed = upstream
            .strip_prefix("http://")
            .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'));
        if !well_formed {
            return Err(FaultError::Upstream(upstream));
        }
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(UPSTREAM_TIMEOUT)
            .build()
            .map_err(FaultError::Client)?;
        let want = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let listener = tokio::net::TcpListener::bind(want)
            .await
            .map_err(|source| FaultError::Bind { addr: want, source })?;
        let addr = listener.local_addr().map_err(FaultError::LocalAddr)?;
        let state = Arc::new(ProxyState {
            upstream,
            http,
            plan: RwLock::new(plan),
            seq: Mutex::new(BTreeMap::new()),
            counts: Mutex::new(BTreeMap::new()),
            tap,
        });
        let app = Router::new().fallback(handle).with_state(state.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _stop_or_drop = stopped.await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "AWS fault proxy failed");
            }
        });
        tracing::debug!(%addr, upstream = %state.upstream, "AWS fault proxy listening");
        Ok(AwsFaultProxy {
            addr,
            state,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT`: the endpoint to give the functions' SDK clients.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replace the plan (e.g. zero every share at the end of a soak). Draw indices carry on.
    pub fn set_plan(&self, plan: AwsFaultPlan) {
        *self.state.plan.write().unwrap_or_else(|p| p.into_inner()) = plan;
    }

    pub fn plan(&self) -> AwsFaultPlan {
        *self.state.plan.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Injected faults by kind (`sns.publish.throttle`, `dynamodb.write.throttle`,
    /// `dynamodb.write.lost_response`, `sqs.error`, `dynamodbstreams.getrecords.error`),
    /// eligible calls seen per kind (`sns.publish.calls`, `dynamodb.write.calls`, `sqs.calls`,
    /// `dynamodbstreams.getrecords.calls`), `forwarded` (requests moto received, lost-response
    /// writes included) and `upstream_failed` (moto did not answer). Absent means 0.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.state
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Stop accepting connections and wait for in-flight requests to finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _already_stopped = stop.send(());
        }
        if let Some(task) = self.task.take() {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "AWS fault proxy task ended abnormally");
            }
        }
    }
}

impl Drop for AwsFaultProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _already_stopped = stop.send(());
        }
    }
}

/// Connection-level headers a proxy must not pass on (RFC 9110 §7.6.1), plus `content-length`,
/// which the HTTP layer sets from the (unchanged) body.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "content-length"
    )
}

fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        if !hop_by_hop(name) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

async fn handle(State(st): State<Arc<ProxyState>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => {
            return plain(
                StatusCode::BAD_REQUEST,
                &format!("fault proxy: cannot read the request body: {e}"),
            )
        }
    };
    let verdict = classify(&parts.headers, &body).map_or(Verdict::Forward, |c| st.decide(c));
    if let Some(name) = verdict.counter() {
        st.count(name);
    }
    let request_id = uuid::Uuid::new_v4().to_string();
    match verdict {
        Verdict::Forward => forward(&st, parts, body).await,
        Verdict::DynamoLostResponse => {
            // The write happens; its answer is thrown away.
            let _discarded = forward(&st, parts, body).await;
            dynamo_internal_error(&request_id)
        }
        Verdict::SnsThrottle => sns_throttling(&request_id),
        Verdict::DynamoThrottle => dynamo_throttling(&request_id),
        Verdict::SqsError => sqs_internal_failure(&request_id),
        Verdict::StreamsError => dynamo_internal_error(&request_id),
    }
}

async fn forward(st: &ProxyState, parts: axum::http::request::Parts, body: Bytes) -> Response {
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    let url = format!("{}{}", st.upstream, path);
    let op = st.tap.as_ref().map(|_| operation(&parts.headers, &body));
    let tapped = st.tap.as_ref().map(|_| body.clone());
    // `Host` is passed on as the client signed it: moto does not check signatures, and the
    // request stays the one the SDK built.
    let sent = st
        .http
        .request(parts.method, &url)
        .headers(end_to_end(&parts.headers))
        .body(body)
        .send()
        .await;
    let resp = match sent {
        Ok(r) => r,
        Err(e) => return upstream_failed(st, &e),
    };
    let status = resp.status();
    let headers = end_to_end(resp.headers());
    let bytes = match resp.bytes().await {
        Ok(b) => b,
        Err(e) => return upstream_failed(st, &e),
    };
    st.count("forwarded");
    if let (Some(tap), Some(op), Some(req)) = (&st.tap, &op, &tapped) {
        tap(op, req, status.as_u16(), &bytes);
    }
    let mut out = Response::new(Body::from(bytes));
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    out
}

fn upstream_failed(st: &ProxyState, e: &reqwest::Error) -> Response {
    st.count("upstream_failed");
    tracing::warn!(error = %e, upstream = %st.upstream, "AWS fault proxy: moto did not answer");
    plain(
        StatusCode::BAD_GATEWAY,
        &format!("fault proxy: upstream {} did not answer: {e}", st.upstream),
    )
}

fn plain(status: StatusCode, text: &str) -> Response {
    respond(status, "text/plain; charset=utf-8", &[], text.to_owned())
}

fn respond(
    status: StatusCode,
    content_type: &'static str,
    extra: &[(&'static str, String)],
    body: String,
) -> Response {
    let mut out = Response::new(Body::from(body));
    *out.status_mut() = status;
    let h = out.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    for (name, value) in extra {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(*name, v);
        }
    }
    out
}

/// SNS (awsQuery) throttling, as SNS sends it.
pub(crate) fn sns_throttling_body(request_id: &str) -> String {
    format!(
        "<ErrorResponse xmlns=\"http://sns.amazonaws.com/doc/2010-03-31/\">\n  <Error>\n    \
         <Type>Sender</Type>\n    <Code>Throttling</Code>\n    <Message>Rate exceeded</Message>\n  \
         </Error>\n  <RequestId>{request_id}</RequestId>\n</ErrorResponse>\n"
    )
}

fn sns_throttling(request_id: &str) -> Response {
    respond(
        StatusCode::BAD_REQUEST,
        "text/xml",
        &[("x-amzn-requestid", request_id.to_owned())],
        sns_throttling_body(request_id),
    )
}

const DYNAMO_JSON: &str = "application/x-amz-json-1.0";

fn dynamo_throttling(request_id: &str) -> Response {
    respond(
        StatusCode::BAD_REQUEST,
        DYNAMO_JSON,
        &[("x-amzn-requestid", request_id.to_owned())],
        serde_json::json!({
            "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
            "message": "The level of configured provisioned throughput for the table was exceeded. Consider increasing your provisioning level with the UpdateTable API.",
        })
        .to_string(),
    )
}

fn dynamo_internal_error(request_id: &str) -> Response {
    respond(
        StatusCode::INTERNAL_SERVER_ERROR,
        DYNAMO_JSON,
        &[("x-amzn-requestid", request_id.to_owned())],
        serde_json::json!({
            "__type": "com.amazonaws.dynamodb.v20120810#InternalServerError",
            "message": "Internal server error",
        })
        .to_string(),
    )
}

fn sqs_internal_failure(request_id: &str) -> Response {
    respond(
        StatusCode::INTERNAL_SERVER_ERROR,
        DYNAMO_JSON,
        &[
            ("x-amzn-requestid", request_id.to_owned()),
            ("x-amzn-query-error", "InternalFailure;Receiver".to_owned()),
        ],
        serde_json::json!({
            "__type": "com.amazon.coral.service#InternalFailure",
            "message": "The request processing has failed because of an unknown error, exception or failure.",
        })
        .to_string(),
    )
}

#[cfg(test)]
#[path = "aws_tests.rs"]
mod tests;
