//! A local stand-in for an API Gateway **HTTP API** (payload format 2.0) with a `$default` route
//! and stage, integrated with one Lambda function run in-process.
//!
//! Every HTTP request becomes the event API Gateway would send, built as JSON and read back
//! through `aws_lambda_events` exactly as the Lambda runtime does:
//! - `version` `2.0`, `routeKey` `$default`, `rawPath`, `rawQueryString` (as sent);
//! - `queryStringParameters` decoded, duplicate names joined with commas (absent without a query);
//! - `headers` with lower-case names, duplicates joined with commas; `cookie` headers are taken
//!   out and split into `cookies`;
//! - `requestContext`: `http{method, path, protocol, sourceIp, userAgent}`, `requestId`, `time`
//!   (`dd/Mon/yyyy:HH:mm:ss +0000`), `timeEpoch` (ms), `stage` `$default`, `domainName` from Host;
//! - `body` as text when the content type is textual (`text/*`, JSON, XML, JavaScript) and the
//!   bytes are UTF-8; otherwise base64 with `isBase64Encoded: true`. Like the real service this
//!   base64-encodes `application/x-www-form-urlencoded` bodies, so provider pushes reach the
//!   function encoded;
//! - `pathParameters` empty (the `$default` route has none).
//!
//! The function's response is serialized as the runtime would send it and written back:
//! `statusCode`, `headers`, `multiValueHeaders`, `cookies` as `set-cookie` headers, and `body`
//! base64-decoded when `isBase64Encoded`. A response API Gateway could not read becomes its
//! `500 {"message":"Internal Server Error"}`.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use aws_lambda_events::event::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, Version};
use axum::response::Response;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde_json::{json, Map, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The function behind the API: one event in, one response out.
pub type ApiHandler = Arc<
    dyn Fn(ApiGatewayV2httpRequest) -> BoxFuture<'static, ApiGatewayV2httpResponse> + Send + Sync,
>;

/// Wrap an async function or closure as an [`ApiHandler`].
pub fn api_handler<F, Fut>(f: F) -> ApiHandler
where
    F: Fn(ApiGatewayV2httpRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ApiGatewayV2httpResponse> + Send + 'static,
{
    Arc::new(move |event| Box::pin(f(event)))
}

/// API Gateway's own payload limit for a Lambda integration (a larger body is refused with 413
/// before the function runs).
pub const MAX_PAYLOAD_BYTES: usize = 10 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HttpFrontError {
    #[error("cannot bind {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the bound address")]
    LocalAddr(#[source] std::io::Error),
}

/// A running HTTP API on `127.0.0.1`. Stops when dropped or on [`HttpFront::shutdown`].
pub struct HttpFront {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for HttpFront {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpFront")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl HttpFront {
    /// Serve `handler` on a free loopback port.
    pub async fn start(handler: ApiHandler) -> Result<HttpFront, HttpFrontError> {
        let want = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let listener = tokio::net::TcpListener::bind(want)
            .await
            .map_err(|source| HttpFrontError::Bind { addr: want, source })?;
        let addr = listener.local_addr().map_err(HttpFrontError::LocalAddr)?;
        let app = axum::Router::new()
            .fallback(
                move |ConnectInfo(peer): ConnectInfo<SocketAddr>, req: Request| {
                    let handler = handler.clone();
                    async move { serve_one(handler, peer, req).await }
                },
            )
            .into_make_service_with_connect_info::<SocketAddr>();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    // Either an explicit stop or the handle being dropped ends the server.
                    let _stop_or_drop = stopped.await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "HTTP front failed");
            }
        });
        tracing::debug!(%addr, "HTTP API front listening");
        Ok(HttpFront {
            addr,
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

    /// Stop accepting connections and wait for in-flight requests to finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _already_stopped = stop.send(());
        }
        if let Some(task) = self.task.take() {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "HTTP front task ended abnormally");
            }
        }
    }
}

impl Drop for HttpFront {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _already_stopped = stop.send(());
        }
    }
}

async fn serve_one(handler: ApiHandler, peer: SocketAddr, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, MAX_PAYLOAD_BYTES).await {
        Ok(b) => b,
        Err(_) => return gateway_error(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large"),
    };
    let request_id = uuid::Uuid::new_v4().to_string();
    let event = match to_event(
        &parts.method,
        &parts.uri,
        parts.version,
        &parts.headers,
        &body,
        peer,
        Utc::now(),
        &request_id,
    ) {
        Ok(e) => e,
        Err(reason) => {
            tracing::error!(%reason, "cannot build the API Gateway event");
            return gateway_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
        }
    };
    let response = handler(event).await;
    match to_http(&response) {
        Ok(r) => r,
        Err(reason) => {
            tracing::error!(%reason, "the function's response is not a valid payload-2.0 response");
            gateway_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }
    }
}

/// API Gateway's own error body: `{"message":"…"}`.
fn gateway_error(status: StatusCode, message: &str) -> Response {
    let mut r = Response::new(Body::from(json!({ "message": message }).to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Is a body of this content type passed to the function as text?
fn is_textual(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else {
        return false;
    };
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mime.starts_with("text/")
        || mime == "application/json"
        || mime.ends_with("+json")
        || mime == "application/xml"
        || mime.ends_with("+xml")
        || mime == "application/javascript"
}

/// Percent-decode one query component (`+` is a space); invalid escapes stay as written.
fn query_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: Option<&u8>| b.and_then(|b| (*b as char).to_digit(16));
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
                (Some(hi), Some(lo)) => {
                    out.push((hi * 16 + lo) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn protocol(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// The payload-2.0 event for one request, read back through `aws_lambda_events`.
#[allow(clippy::too_many_arguments)]
pub fn to_event(
    method: &Method,
    uri: &Uri,
    version: Version,
    headers: &HeaderMap,
    body: &[u8],
    source: SocketAddr,
    now: DateTime<Utc>,
    request_id: &str,
) -> Result<ApiGatewayV2httpRequest, String> {
    let path = uri.path().to_string();
    let raw_query = uri.query().unwrap_or("").to_string();

    // Headers: lower-case names (http already lower-cases them), duplicates joined by commas;
    // cookies split out.
    let mut header_map: Map<String, Value> = Map::new();
    let mut cookies: Vec<String> = Vec::new();
    for name in headers.keys() {
        let values: Vec<String> = headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        if name == axum::http::header::COOKIE {
            cookies.extend(
                values
                    .iter()
                    .flat_map(|v| v.split(';'))
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(String::from),
            );
            continue;
        }
        header_map.insert(name.as_str().to_string(), Value::String(values.join(",")));
    }
    let header = |n: &str| header_map.get(n).and_then(Value::as_str).map(String::from);

    // Query parameters, decoded, duplicates joined by commas, in order of appearance.
    let mut query: Vec<(String, String)> = Vec::new();
    for part in raw_query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        let (k, v) = (query_decode(k), query_decode(v));
        match query.iter_mut().find(|(name, _)| *name == k) {
            Some((_, existing)) => {
                existing.push(',');
                existing.push_str(&v);
            }
            None => query.push((k, v)),
        }
    }

    let host = header("host").unwrap_or_else(|| "localhost".to_string());
    let domain_prefix = host.split(['.', ':']).next().unwrap_or("").to_string();
    let mut event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": header_map,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": host,
            "domainPrefix": domain_prefix,
            "http": {
                "method": method.as_str(),
                "path": path,
                "protocol": protocol(version),
                "sourceIp": source.ip().to_string(),
                "userAgent": header("user-agent").unwrap_or_default(),
            },
            "requestId": request_id,
            "routeKey": "$default",
            "stage": "$default",
            "time": now.format("%d/%b/%Y:%H:%M:%S +0000").to_string(),
            "timeEpoch": now.timestamp_millis(),
        },
        "isBase64Encoded": false,
    });
    let obj = event
        .as_object_mut()
        .ok_or_else(|| "event is not an object".to_string())?;
    if !cookies.is_empty() {
        obj.insert("cookies".into(), json!(cookies));
    }
    if !query.is_empty() {
        let q: Map<String, Value> = query.into_iter().map(|(k, v)| (k, json!(v))).collect();
        obj.insert("queryStringParameters".into(), Value::Object(q));
    }
    if !body.is_empty() {
        match std::str::from_utf8(body) {
            Ok(text) if is_textual(header("content-type").as_deref()) => {
                obj.insert("body".into(), json!(text));
            }
            _ => {
                let encoded = base64::engine::general_purpose::STANDARD.encode(body);
                obj.insert("body".into(), json!(encoded));
                obj.insert("isBase64Encoded".into(), json!(true));
            }
        }
    }
    serde_json::from_value(event).map_err(|e| format!("event does not deserialize: {e}"))
}

/// The HTTP response API Gateway writes for the function's answer.
pub fn to_http(response: &ApiGatewayV2httpResponse) -> Result<Response, String> {
    // What the runtime sends over the wire, read the way API Gateway reads it.
    let wire = serde_json::to_value(response).map_err(|e| format!("unserializable: {e}"))?;
    let status = wire
        .get("statusCode")
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or_else(|| "statusCode is not an HTTP status".to_string())?;
    let text = wire.get("body").and_then(Value::as_str).unwrap_or("");
    let encoded = wire
        .get("isBase64Encoded")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let body: Bytes = if encoded {
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| format!("body is not base64: {e}"))?
            .into()
    } else {
        Bytes::copy_from_slice(text.as_bytes())
    };
    let mut out = Response::new(Body::from(body));
    *out.status_mut() = status;
    let h = out.headers_mut();
    let mut add = |name: &str, value: &str| -> Result<(), String> {
        let n = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("bad header name {name:?}"))?;
        let v = HeaderValue::from_str(value).map_err(|_| format!("bad value of header {name}"))?;
        h.append(n, v);
        Ok(())
    };
    for (name, value) in response.headers.iter() {
        add(
            name.as_str(),
            value
                .to_str()
                .map_err(|_| format!("bad value of header {name}"))?,
        )?;
    }
    for (name, value) in response.multi_value_headers.iter() {
        if !response.headers.contains_key(name) {
            add(
                name.as_str(),
                value
                    .to_str()
                    .map_err(|_| format!("bad value of header {name}"))?,
            )?;
        }
    }
    for cookie in &response.cookies {
        add("set-cookie", cookie)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::encodings::Body as LambdaBody;
    use chrono::TimeZone;
    use std::sync::Mutex;

    /// Records every event it receives and answers with a JSON echo of the essentials.
    fn echo(seen: Arc<Mutex<Vec<ApiGatewayV2httpRequest>>>) -> ApiHandler {
        api_handler(move |event: ApiGatewayV2httpRequest| {
            let seen = seen.clone();
            async move {
                let echo = json!({
                    "method": event.request_context.http.method.as_str(),
                    "path": event.raw_path,
                    "lang": event.query_string_parameters.first("lang"),
                    "body": event.body,
                    "b64": event.is_base64_encoded,
                });
                seen.lock().unwrap().push(event);
                let mut r = ApiGatewayV2httpResponse::default();
                r.status_code = 201;
                r.headers
                    .insert("content-type", HeaderValue::from_static("application/json"));
                r.headers
                    .insert("x-request", HeaderValue::from_static("echo"));
                r.cookies = vec!["session=abc; Path=/".into()];
                r.body = Some(LambdaBody::Text(echo.to_string()));
                r
            }
        })
    }

    #[tokio::test]
    async fn a_json_request_becomes_a_payload_v2_event_and_the_response_comes_back() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let front = HttpFront::start(echo(seen.clone())).await.unwrap();
        let resp = reqwest::Client::new()
            .post(format!(
                "{}/shipments/YTO/YT1?lang=en&limit=5&tag=a&tag=b%20c",
                front.base_url()
            ))
            .header("content-type", "application/json")
            .header("X-Api-Key", "k1")
            .header("cookie", "a=1; b=2")
            .header("user-agent", "parcelwatch-test")
            .body(r#"{"number":"YT1"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 201);
        assert_eq!(resp.headers()["x-request"], "echo");
        assert_eq!(resp.headers()["set-cookie"], "session=abc; Path=/");
        let echoed: Value = resp.json().await.unwrap();
        assert_eq!(echoed["method"], "POST");
        assert_eq!(echoed["path"], "/shipments/YTO/YT1");
        assert_eq!(echoed["lang"], "en");
        assert_eq!(echoed["body"], r#"{"number":"YT1"}"#);
        assert_eq!(echoed["b64"], false);

        let events = seen.lock().unwrap().clone();
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.version.as_deref(), Some("2.0"));
        assert_eq!(e.route_key.as_deref(), Some("$default"));
        assert_eq!(
            e.raw_query_string.as_deref(),
            Some("lang=en&limit=5&tag=a&tag=b%20c")
        );
        assert_eq!(e.query_string_parameters.first("limit"), Some("5"));
        assert_eq!(e.query_string_parameters.all("tag"), Some(vec!["a", "b c"]));
        assert_eq!(e.headers["x-api-key"], "k1");
        assert!(
            e.headers.get("cookie").is_none(),
            "cookies move out of headers"
        );
        assert_eq!(e.cookies, Some(vec!["a=1".to_string(), "b=2".to_string()]));
        assert!(e.path_parameters.is_empty());
        let ctx = &e.request_context;
        assert_eq!(ctx.stage.as_deref(), Some("$default"));
        assert_eq!(ctx.route_key.as_deref(), Some("$default"));
        assert_eq!(ctx.http.path.as_deref(), Some("/shipments/YTO/YT1"));
        assert_eq!(ctx.http.protocol.as_deref(), Some("HTTP/1.1"));
        assert_eq!(ctx.http.source_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(ctx.http.user_agent.as_deref(), Some("parcelwatch-test"));
        assert_eq!(ctx.request_id.as_deref().map(str::len), Some(36));
        assert!(ctx.time_epoch > 1_700_000_000_000);
        front.shutdown().await;
    }

    #[tokio::test]
    async fn form_and_binary_bodies_arrive_base64_and_binary_responses_are_decoded() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handler = {
            let seen = seen.clone();
            api_handler(move |event: ApiGatewayV2httpRequest| {
                let seen = seen.clone();
                async move {
                    seen.lock().unwrap().push(event);
                    let mut r = ApiGatewayV2httpResponse::default();
                    r.status_code = 200;
                    r.is_base64_encoded = true;
                    r.body = Some(LambdaBody::Text(
                        base64::engine::general_purpose::STANDARD.encode([0xffu8, 0x00, 0x7f]),
                    ));
                    r
                }
            })
        };
        let front = HttpFront::start(handler).await.unwrap();
        let client = reqwest::Client::new();
        let form = client
            .post(format!("{}/push/kdniao", front.base_url()))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("RequestData=%7B%7D&DataSign=abc%3D")
            .send()
            .await
            .unwrap();
        assert_eq!(form.status().as_u16(), 200);
        assert_eq!(form.bytes().await.unwrap().as_ref(), &[0xff, 0x00, 0x7f]);
        let binary = client
            .put(format!("{}/blob", front.base_url()))
            .header("content-type", "text/plain")
            .body(vec![0xc3u8, 0x28])
            .send()
            .await
            .unwrap();
        assert_eq!(binary.status().as_u16(), 200);
        let get = client.get(front.base_url()).send().await.unwrap();
        assert_eq!(get.status().as_u16(), 200);

        let events = seen.lock().unwrap().clone();
        assert_eq!(events.len(), 3);
        assert!(events[0].is_base64_encoded);
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(events[0].body.as_deref().unwrap())
            .unwrap();
        assert_eq!(decoded, b"RequestData=%7B%7D&DataSign=abc%3D");
        assert!(
            events[1].is_base64_encoded,
            "invalid UTF-8 is base64 even as text/plain"
        );
        assert_eq!(events[1].body.as_deref(), Some("wyg="));
        assert_eq!(events[1].request_context.http.method, Method::PUT);
        assert_eq!(events[2].body, None);
        assert!(!events[2].is_base64_encoded);
        assert_eq!(events[2].raw_path.as_deref(), Some("/"));
        assert!(events[2].query_string_parameters.is_empty());
    }

    /// The real api function behind the front: JSON in the clear, a form push base64-encoded
    /// on the way in, as API Gateway does it.
    #[tokio::test]
    async fn the_api_function_serves_registration_push_and_read_over_http() {
        use parcelwatch::providers::kdniao::KdniaoResponse;
        use parcelwatch::providers::kdniao_push;
        let env: std::collections::HashMap<String, String> = [
            ("API_KEYS", "front-key-0001"),
            ("KDNIAO_EBUSINESS_ID", "1000001"),
            ("KDNIAO_APP_KEY", "sandbox-appkey-0001"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let api = Arc::new(api::Api::new(
            parcelwatch::store::MemoryStore::new(2),
            api::ApiConfig::from_env(&env).unwrap(),
        ));
        let front = {
            let api = api.clone();
            HttpFront::start(api_handler(move |req| {
                let api = api.clone();
                async move { api::handle(&*api, req, Utc::now()).await }
            }))
            .await
            .unwrap()
        };
        let client = reqwest::Client::new();
        let url = |p: &str| format!("{}{p}", front.base_url());

        let created = client
            .post(url("/shipments"))
            .header("x-api-key", "front-key-0001")
            .header("content-type", "application/json")
            .body(r#"{"number":"YT1000000000001","locale":"en"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(created.status().as_u16(), 201);
        assert_eq!(
            created.headers()["content-type"],
            "application/json; charset=utf-8"
        );
        let created: Value = created.json().await.unwrap();
        assert_eq!(created["carrier"], "YTO");
        assert_eq!(created["carrier_detected"], true);

        let item: KdniaoResponse = serde_json::from_str(
            r#"{"ShipperCode":"YTO","LogisticCode":"YT1000000000001","Success":true,"State":"2","StateEx":"202",
                "Traces":[{"AcceptTime":"2026-11-24 09:12:00","AcceptStation":"快件正在派送中","Action":"202"}]}"#,
        )
        .unwrap();
        let form = kdniao_push::build_push_form(
            "1000001",
            "sandbox-appkey-0001",
            "102",
            Utc::now(),
            &[item],
        );
        let pushed = client
            .post(url("/push/kdniao"))
            .header(
                "content-type",
                "application/x-www-form-urlencoded;charset=utf-8",
            )
            .body(form)
            .send()
            .await
            .unwrap();
        assert_eq!(pushed.status().as_u16(), 200);
        let ack: Value = pushed.json().await.unwrap();
        assert_eq!(ack["Success"], true, "{ack}");

        let read = client
            .get(url("/shipments/YTO/YT1000000000001?lang=en"))
            .header("x-api-key", "front-key-0001")
            .send()
            .await
            .unwrap();
        assert_eq!(read.status().as_u16(), 200);
        let read: Value = read.json().await.unwrap();
        assert_eq!(read["status"], "OutForDelivery");
        assert_eq!(read["status_text"], "Out for delivery");
        assert_eq!(read["events"][0]["time_local"], "2026-11-24 09:12:00");

        let anonymous = client
            .get(url("/shipments/YTO/YT1000000000001"))
            .send()
            .await
            .unwrap();
        assert_eq!(anonymous.status().as_u16(), 401);
        front.shutdown().await;
    }

    /// The api with Kdniao 2002 recognition pointed at the sandbox, served over HTTP: an
    /// all-digit number the rules cannot place is registered as the carrier the sandbox knows.
    #[tokio::test]
    async fn an_ambiguous_number_is_registered_as_the_carrier_kdniao_2002_names() {
        use crate::clock::SimClock;
        use crate::sandbox::{Sandbox, SandboxConfig};
        let shipped = Utc.with_ymd_and_hms(2026, 11, 22, 8, 0, 0).unwrap();
        let sandbox = Sandbox::start(SandboxConfig::default(), Arc::new(SimClock::new(shipped)))
            .await
            .unwrap();
        // 15 digits 77…: STO by shape, not confidently; the sandbox's parcel is a ZTO one.
        let number = "773000000000458";
        sandbox.register("ZTO", number, shipped);
        let env: std::collections::HashMap<String, String> = [
            ("API_KEYS", "front-key-0001"),
            ("KDNIAO_ENDPOINT", sandbox.kdniao_endpoint().as_str()),
            ("KDNIAO_EBUSINESS_ID", sandbox.ebusiness_id()),
            ("KDNIAO_APP_KEY", sandbox.app_key()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let cfg = api::ApiConfig::from_env(&env).unwrap();
        let recognizer = api::kdniao_recognizer(cfg.recognition.clone().unwrap());
        assert!(recognizer.is_some());
        let api = Arc::new(
            api::Api::new(parcelwatch::store::MemoryStore::new(2), cfg).with_recognizer(recognizer),
        );
        let front = {
            let api = api.clone();
            HttpFront::start(api_handler(move |req| {
                let api = api.clone();
                async move { api::handle(&*api, req, Utc::now()).await }
            }))
            .await
            .unwrap()
        };
        let before = sandbox.stats().requests_other;
        let resp = reqwest::Client::new()
            .post(format!("{}/shipments", front.base_url()))
            .header("x-api-key", "front-key-0001")
            .header("content-type", "application/json")
            .body(json!({ "number": number }).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 201);
        let created: Value = resp.json().await.unwrap();
        assert_eq!(
            created,
            json!({"carrier":"ZTO","number":number,"result":"created",
                   "carrier_detected":true,"detected_by":"kdniao-2002"})
        );
        assert_eq!(sandbox.stats().requests_other, before + 1, "one 2002 call");
        let id = parcelwatch::domain::ShipmentId::parse("ZTO", number).unwrap();
        assert!(api.store.shipment(&id).is_some());
        front.shutdown().await;
    }

    #[test]
    fn the_event_stamps_api_gateway_time_formats() {
        let now = Utc.with_ymd_and_hms(2026, 3, 5, 7, 8, 9).unwrap();
        let e = to_event(
            &Method::GET,
            &"/x?q".parse::<Uri>().unwrap(),
            Version::HTTP_11,
            &HeaderMap::new(),
            b"",
            SocketAddr::from((Ipv4Addr::new(10, 0, 0, 7), 5555)),
            now,
            "req-1",
        )
        .unwrap();
        assert_eq!(
            e.request_context.time.as_deref(),
            Some("05/Mar/2026:07:08:09 +0000")
        );
        assert_eq!(e.request_context.time_epoch, now.timestamp_millis());
        assert_eq!(
            e.request_context.http.source_ip.as_deref(),
            Some("10.0.0.7")
        );
        assert_eq!(e.query_string_parameters.first("q"), Some(""));
        assert_eq!(e.request_context.request_id.as_deref(), Some("req-1"));
    }

    #[test]
    fn a_response_with_a_bad_status_or_body_is_a_gateway_500() {
        let mut r = ApiGatewayV2httpResponse::default();
        r.status_code = 42;
        assert!(to_http(&r).is_err());
        r.status_code = 200;
        r.is_base64_encoded = true;
        r.body = Some(LambdaBody::Text("***".into()));
        assert!(to_http(&r).unwrap_err().contains("base64"));
    }

    #[test]
    fn only_textual_content_types_pass_as_text() {
        for ct in [
            "application/json",
            "application/json; charset=utf-8",
            "text/plain",
            "application/problem+json",
            "Application/XML",
        ] {
            assert!(is_textual(Some(ct)), "{ct}");
        }
        for ct in [
            "application/x-www-form-urlencoded",
            "application/octet-stream",
            "multipart/form-data; boundary=x",
        ] {
            assert!(!is_textual(Some(ct)), "{ct}");
        }
        assert!(!is_textual(None));
    }
}
