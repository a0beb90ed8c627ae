//! A Lambda Runtime API (the 2018-06-01 API lambda_runtime 1.x speaks) served on loopback, for
//! running a release function binary as Lambda runs it: one process, invoked again and again.
//! [`RuntimeApi::invoke`] hands an event to the process's next `GET …/invocation/next` and waits
//! for its `…/response` or `…/error`. Invocations are handed out one at a time, as Lambda does
//! for one execution environment.

use crate::pipeline::BoxError;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// How an invocation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The body the function posted to `/response`.
    Response(String),
    /// The body posted to `/error` (or `init/error`).
    Error(String),
}

type Job = (Bytes, oneshot::Sender<Outcome>);

struct Shared {
    jobs: tokio::sync::Mutex<mpsc::Receiver<Job>>,
    waiting: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    counter: AtomicU64,
    function_arn: String,
    first_next: Mutex<Option<Instant>>,
    first_next_seen: tokio::sync::Notify,
    init_error: Mutex<Option<String>>,
    /// How long the function may run per invocation (the deadline header).
    timeout: Duration,
}

/// The server; dropping it stops serving.
pub struct RuntimeApi {
    addr: SocketAddr,
    jobs: mpsc::Sender<Job>,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl RuntimeApi {
    /// Serve on a free loopback port, for `function` (its name goes into the ARN header).
    pub async fn start(function: &str, timeout: Duration) -> Result<RuntimeApi, BoxError> {
        let (tx, rx) = mpsc::channel(1);
        let shared = Arc::new(Shared {
            jobs: tokio::sync::Mutex::new(rx),
            waiting: Mutex::new(HashMap::new()),
            counter: AtomicU64::new(0),
            function_arn: format!(
                "arn:aws:lambda:us-east-1:123456789012:function:parcelwatch-{function}"
            ),
            first_next: Mutex::new(None),
            first_next_seen: tokio::sync::Notify::new(),
            init_error: Mutex::new(None),
            timeout,
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route(
                "/2018-06-01/runtime/invocation/{id}/error",
                post(invocation_error),
            )
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "runtime API server failed");
            }
        });
        Ok(RuntimeApi {
            addr,
            jobs: tx,
            shared,
            server,
        })
    }

    /// What `AWS_LAMBDA_RUNTIME_API` is set to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// When the process first asked for an invocation (its init is over), waiting at most
    /// `within`. `Err` with the reason when it reported an init error or never asked.
    pub async fn initialized(&self, within: Duration) -> Result<Instant, BoxError> {
        let deadline = Instant::now() + within;
        loop {
            let seen = self.shared.first_next_seen.notified();
            if let Some(e) = lock(&self.shared.init_error).clone() {
                return Err(format!("init error: {e}").into());
            }
            if let Some(t) = *lock(&self.shared.first_next) {
                return Ok(t);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err("the function never asked for an invocation".into());
            }
            let _ = tokio::time::timeout(left.min(Duration::from_millis(200)), seen).await;
        }
    }

    /// Hand `event` to the function and wait for its answer (at most the timeout and a bit).
    pub async fn invoke(&self, event: Vec<u8>) -> Result<Outcome, BoxError> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send((Bytes::from(event), tx))
            .await
            .map_err(|_| "runtime API server stopped")?;
        match tokio::time::timeout(self.shared.timeout + Duration::from_secs(5), rx).await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(_)) => Err("the invocation was dropped".into()),
            Err(_) => Err(format!(
                "no answer within the {} s timeout",
                self.shared.timeout.as_secs()
            )
            .into()),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn next(State(st): State<Arc<Shared>>) -> Response {
    lock(&st.first_next).get_or_insert_with(Instant::now);
    st.first_next_seen.notify_waiters();
    // Lambda freezes the environment here until the next event.
    let job = st.jobs.lock().await.recv().await;
    let Some((event, reply)) = job else {
        std::future::pending::<()>().await;
        unreachable!()
    };
    let n = st.counter.fetch_add(1, Ordering::Relaxed);
    let request_id = format!("00000000-0000-4000-8000-{n:012}");
    lock(&st.waiting).insert(request_id.clone(), reply);
    let deadline = (chrono::Utc::now()
        + chrono::Duration::from_std(st.timeout).unwrap_or(chrono::Duration::seconds(60)))
    .timestamp_millis();
    let mut resp = (StatusCode::OK, event).into_response();
    let h = resp.headers_mut();
    let mut set = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    };
    set("content-type", "application/json");
    set("lambda-runtime-aws-request-id", &request_id);
    set("lambda-runtime-deadline-ms", &deadline.to_string());
    set("lambda-runtime-invoked-function-arn", &st.function_arn);
    set(
        "lambda-runtime-trace-id",
        "Root=1-00000000-000000000000000000000000;Sampled=0",
    );
    resp
}

fn finish(st: &Shared, id: &str, outcome: Outcome) -> StatusCode {
    match lock(&st.waiting).remove(id) {
        Some(reply) => {
            let _gone = reply.send(outcome);
            StatusCode::ACCEPTED
        }
        None => StatusCode::BAD_REQUEST,
    }
}

async fn response(
    State(st): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> StatusCode {
    finish(
        &st,
        &id,
        Outcome::Response(String::from_utf8_lossy(&body).into_owned()),
    )
}

async fn invocation_error(
    State(st): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> StatusCode {
    finish(
        &st,
        &id,
        Outcome::Error(String::from_utf8_lossy(&body).into_owned()),
    )
}

async fn init_error(State(st): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    *lock(&st.init_error) = Some(String::from_utf8_lossy(&body).into_owned());
    st.first_next_seen.notify_waiters();
    StatusCode::ACCEPTED
}

/// CPU time a process has used so far (user + system, every thread, living or exited), from
/// `/proc/<pid>/stat` (in clock ticks of 1/100 s on Linux).
pub fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// The process's CPU time to the nanosecond: the scheduler's run time of each of its threads
/// (`/proc/<pid>/task/*/schedstat`). Threads that have exited are not counted (the Lambda
/// runtime's threads live as long as the process).
pub fn process_cpu_precise(pid: u32) -> Option<Duration> {
    let mut ns: u64 = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let path = task.ok()?.path().join("schedstat");
        if let Ok(s) = std::fs::read_to_string(path) {
            ns += s
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Some(Duration::from_nanos(ns))
}

/// Peak resident memory of a process (`VmHWM`), in KB.
pub fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_used_some_cpu_and_memory() {
        // Burn a little so the tick-based figure is not zero.
        let t = Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(30) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        assert!(x != 1);
        let pid = std::process::id();
        assert!(process_cpu(pid).unwrap() > Duration::ZERO);
        assert!(process_cpu_precise(pid).unwrap() >= Duration::from_millis(20));
        assert!(peak_rss_kb(pid).unwrap() > 1000);
    }

    #[tokio::test]
    async fn an_invocation_is_handed_out_and_answered() {
        let api = RuntimeApi::start("probe", Duration::from_secs(5))
            .await
            .unwrap();
        let base = format!("http://{}/2018-06-01/runtime", api.addr());
        let client = reqwest::Client::new();
        let worker = tokio::spawn(async move {
            let r = client
                .get(format!("{base}/invocation/next"))
                .send()
                .await
                .unwrap();
            let id = r.headers()["lambda-runtime-aws-request-id"]
                .to_str()
                .unwrap()
                .to_owned();
            let body = r.text().await.unwrap();
            client
                .post(format!("{base}/invocation/{id}/response"))
                .body(format!("echo {body}"))
                .send()
                .await
                .unwrap();
        });
        let out = api.invoke(b"{\"a\":1}".to_vec()).await.unwrap();
        assert_eq!(out, Outcome::Response("echo {\"a\":1}".into()));
        assert!(api.initialized(Duration::from_secs(1)).await.is_ok());
        worker.await.unwrap();
    }
}
