//! Cold start of each function binary, as Lambda starts it: a fresh process with the
//! environment Lambda gives (`AWS_LAMBDA_RUNTIME_API`, `AWS_LAMBDA_FUNCTION_NAME`, the memory
//! size, the AWS variables) plus the function's template environment pointed at a provisioned
//! local stack (moto) and the carrier sandbox. The process talks to a Runtime API served here on
//! loopback, the one lambda_runtime 1.x speaks (the 2018-06-01 API):
//! - `GET /2018-06-01/runtime/invocation/next` hands out the sample event of `events/<fn>/`
//!   once, with `Lambda-Runtime-Aws-Request-Id`, `Lambda-Runtime-Deadline-Ms` and
//!   `Lambda-Runtime-Invoked-Function-Arn`; later calls wait (as Lambda's do, until the next
//!   event or the freeze);
//! - `POST /2018-06-01/runtime/invocation/{id}/response` or `/error`, or
//!   `POST /2018-06-01/runtime/init/error`, ends the run.
//!
//! Measured per run: process spawn → first `/next` (init: telemetry, config, SDK clients) and
//! spawn → answer posted (init and the first event, with its real calls to moto and the
//! sandbox). The process is then killed. Lambda's own part of a cold start (fetching the code,
//! starting the micro-VM) is not in these figures.

use crate::clock::{Clock, SystemClock};
use crate::moto::workspace_root;
use crate::pipeline::{BoxError, LOCAL_KUAIDI100_SALT};
use crate::sandbox::journey::JourneyKind;
use crate::sandbox::orders::{
    DEFAULT_FW199_APPID, DEFAULT_FW199_SECRET, DEFAULT_TOP_APP_KEY, DEFAULT_TOP_SECRET,
    DEFAULT_TOP_SESSION,
};
use crate::sandbox::{Sandbox, SandboxConfig};
use crate::stack::LocalStack;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::{Duration as ChronoDuration, Utc};
use parcelwatch::config::Config;
use parcelwatch::crypto::{Vault, SAMPLE_EVENT_PHONE};
use parcelwatch::domain::order::Platform;
use parcelwatch::domain::{Locale, PhoneNumber, Priority, Recipient, Shipment, ShipmentId};
use parcelwatch::store::{DynamoStore, ShipmentStore};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The five functions and the sample event each is started with.
pub const FUNCTIONS: [(&str, &str); 5] = [
    ("scheduler", "scheduler/scheduled.json"),
    ("tracker", "tracker/batch.json"),
    ("notifier", "notifier/transition.json"),
    ("order-sync", "order-sync/scheduled.json"),
    ("api", "api/get-shipment.json"),
];

/// The merchant keys the api sample events carry (as `make stack` configures them).
const API_KEYS: &str = "test-key-0001,test-key-0002";
const FW199_SHOP: &str = "pw-bench-fw";
const TOP_SHOP: &str = "pw-bench-top";
/// A run that has not answered by then failed.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// The waybills of the sample events, registered on both sides (as `make stack` does).
const WAYBILLS: [(&str, &str, JourneyKind, &str, i64); 3] = [
    (
        "YTO",
        "YT1000000000001",
        JourneyKind::Delivered,
        "+8613812345678",
        30,
    ),
    (
        "SF",
        "SF1000000000002",
        JourneyKind::LockerPickup,
        "+8613900002222",
        20,
    ),
    (
        "ZTO",
        "780000000000003",
        JourneyKind::Refused,
        "+8613700003333",
        4,
    ),
];

/// One start of one binary.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Run {
    /// Spawn → first `GET /next`.
    pub init_ms: f64,
    /// Spawn → response (or error) posted.
    pub total_ms: f64,
    /// `ok: <first bytes of the answer>` or `error: …`.
    pub outcome: String,
}

/// The runs of one function.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ColdStart {
    pub function: String,
    pub binary_bytes: u64,
    pub runs: Vec<Run>,
}

impl ColdStart {
    fn ok_totals(&self) -> Vec<f64> {
        let mut v: Vec<f64> = self
            .runs
            .iter()
            .filter(|r| r.outcome.starts_with("ok"))
            .map(|r| r.total_ms)
            .collect();
        v.sort_by(f64::total_cmp);
        v
    }

    /// Median of the answered runs (ms).
    pub fn median_ms(&self) -> Option<f64> {
        let v = self.ok_totals();
        (!v.is_empty()).then(|| v[v.len() / 2])
    }

    pub fn max_ms(&self) -> Option<f64> {
        self.ok_totals().last().copied()
    }

    /// Median spawn → first `/next` (ms), over every run.
    pub fn median_init_ms(&self) -> Option<f64> {
        let mut v: Vec<f64> = self.runs.iter().map(|r| r.init_ms).collect();
        v.sort_by(f64::total_cmp);
        (!v.is_empty()).then(|| v[v.len() / 2])
    }

    pub fn answered(&self) -> usize {
        self.ok_totals().len()
    }
}

#[derive(Default)]
struct Invocation {
    handed: bool,
    first_next: Option<Instant>,
    done: Option<(Instant, String)>,
}

struct RuntimeState {
    event: Bytes,
    request_id: String,
    function_arn: String,
    inv: Mutex<Invocation>,
    finished: tokio::sync::Notify,
}

impl RuntimeState {
    fn finish(&self, outcome: String) {
        let mut inv = self.inv.lock().unwrap_or_else(|p| p.into_inner());
        if inv.done.is_none() {
            inv.done = Some((Instant::now(), outcome));
        }
        drop(inv);
        self.finished.notify_one();
    }
}

async fn next(State(st): State<Arc<RuntimeState>>) -> Response {
    let first = {
        let mut inv = st.inv.lock().unwrap_or_else(|p| p.into_inner());
        inv.first_next.get_or_insert_with(Instant::now);
        !std::mem::replace(&mut inv.handed, true)
    };
    if !first {
        // Lambda freezes the sandbox here until the next event: none comes.
        std::future::pending::<()>().await;
    }
    let deadline = (Utc::now() + ChronoDuration::seconds(60)).timestamp_millis();
    let mut resp = (StatusCode::OK, st.event.clone()).into_response();
    let h = resp.headers_mut();
    let mut set = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    };
    set("content-type", "application/json");
    set("lambda-runtime-aws-request-id", &st.request_id);
    set("lambda-runtime-deadline-ms", &deadline.to_string());
    set("lambda-runtime-invoked-function-arn", &st.function_arn);
    set(
        "lambda-runtime-trace-id",
        "Root=1-00000000-000000000000000000000000;Sampled=0",
    );
    resp
}

async fn response(
    State(st): State<Arc<RuntimeState>>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> StatusCode {
    if id != st.request_id {
        return StatusCode::BAD_REQUEST;
    }
    let text = String::from_utf8_lossy(&body);
    st.finish(format!(
        "ok: {}",
        text.chars().take(160).collect::<String>()
    ));
    StatusCode::ACCEPTED
}

async fn invocation_error(
    State(st): State<Arc<RuntimeState>>,
    UrlPath(_id): UrlPath<String>,
    body: Bytes,
) -> StatusCode {
    let text = String::from_utf8_lossy(&body);
    st.finish(format!(
        "error: {}",
        text.chars().take(200).collect::<String>()
    ));
    StatusCode::ACCEPTED
}

async fn init_error(State(st): State<Arc<RuntimeState>>, body: Bytes) -> StatusCode {
    let text = String::from_utf8_lossy(&body);
    st.finish(format!(
        "error: init: {}",
        text.chars().take(200).collect::<String>()
    ));
    StatusCode::ACCEPTED
}

/// Start one binary against a fresh Runtime API holding `event`; measure it; kill it.
async fn one_run(
    binary: &Path,
    function: &str,
    env: &BTreeMap<String, String>,
    event: &[u8],
    log: &Path,
    n: usize,
) -> Result<Run, BoxError> {
    let state = Arc::new(RuntimeState {
        event: Bytes::copy_from_slice(event),
        request_id: format!("00000000-0000-4000-8000-{n:012}"),
        function_arn: format!(
            "arn:aws:lambda:us-east-1:123456789012:function:parcelwatch-{function}"
        ),
        inv: Mutex::new(Invocation::default()),
        finished: tokio::sync::Notify::new(),
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
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "runtime API server failed");
        }
    });

    let logfile = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let mut cmd = tokio::process::Command::new(binary);
    cmd.env_clear()
        .envs(env)
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::from(logfile.try_clone()?))
        .stderr(Stdio::from(logfile))
        .kill_on_drop(true);
    let t0 = Instant::now();
    let mut child = cmd.spawn()?;
    let waited = tokio::time::timeout(RUN_TIMEOUT, async {
        loop {
            let notified = state.finished.notified();
            if state
                .inv
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .done
                .is_some()
            {
                return;
            }
            tokio::select! {
                _ = notified => {}
                // A binary that exits before answering (a panic, a refused config) ends the run.
                _ = child.wait() => {
                    state.finish("error: the process exited before answering".into());
                }
            }
        }
    })
    .await;
    // Ours, started above: stop it whatever happened.
    if let Err(e) = child.kill().await {
        tracing::debug!(error = %e, "function process already gone");
    }
    server.abort();
    let inv = state.inv.lock().unwrap_or_else(|p| p.into_inner());
    let ms = |t: Instant| t.duration_since(t0).as_secs_f64() * 1000.0;
    let init_ms = inv.first_next.map_or(f64::NAN, ms);
    Ok(match (&inv.done, waited) {
        (Some((t, outcome)), _) => Run {
            init_ms,
            total_ms: ms(*t),
            outcome: outcome.clone(),
        },
        (None, _) => Run {
            init_ms,
            total_ms: f64::NAN,
            outcome: format!("error: no answer within {} s", RUN_TIMEOUT.as_secs()),
        },
    })
}

/// The environment every function process gets: what Lambda sets, the AWS variables for the
/// local stack, and every function's template environment with the sandbox's endpoints and test
/// credentials (as `make stack` writes to `.local/stack.env`).
fn base_env(stack: &LocalStack, sandbox: &Sandbox) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = stack.env_vars().into_iter().collect();
    let mut set = |k: &str, v: &str| {
        env.insert(k.to_owned(), v.to_owned());
    };
    set("AWS_DEFAULT_REGION", crate::provision::LOCAL_REGION);
    set("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST");
    set("AWS_EXECUTION_ENV", "AWS_Lambda_rapid");
    set("TZ", ":UTC");
    set("KDNIAO_ENDPOINT", &sandbox.kdniao_endpoint());
    set("KDNIAO_EBUSINESS_ID", sandbox.ebusiness_id());
    set("KDNIAO_APP_KEY", sandbox.app_key());
    set(
        "KDNIAO_SUBSCRIBE_ENDPOINT",
        &sandbox.kdniao_subscribe_endpoint(),
    );
    set("TRACKING_DLQ_URL", &stack.tracking_dlq_url);
    set("NOTIFY_FAILURE_QUEUE_URL", &stack.notify_failure_queue_url);
    set("API_KEYS", API_KEYS);
    set("KUAIDI100_SALT", LOCAL_KUAIDI100_SALT);
    set("ORDER_SHOPS", &format!("fw199:{FW199_SHOP},top:{TOP_SHOP}"));
    set("FW199_ENDPOINT", &sandbox.fw199_endpoint());
    set("FW199_APPID", DEFAULT_FW199_APPID);
    set("FW199_SECRET", DEFAULT_FW199_SECRET);
    set("TOP_ENDPOINT", &sandbox.top_endpoint());
    set("TOP_APP_KEY", DEFAULT_TOP_APP_KEY);
    set("TOP_APP_SECRET", DEFAULT_TOP_SECRET);
    set("TOP_SESSION", DEFAULT_TOP_SESSION);
    env
}

/// The sample event of `function` as it holds for this stack: the scheduled events at the
/// current time, the notifier's stand-in sealed phone replaced by one sealed under the stack's key.
fn event_for(root: &Path, file: &str, sealed_phone: &str) -> Result<Vec<u8>, BoxError> {
    let text = std::fs::read_to_string(root.join("events").join(file))?;
    let text = if file.ends_with("scheduled.json") {
        let mut v: serde_json::Value = serde_json::from_str(&text)?;
        v["time"] = serde_json::Value::String(Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string());
        v.to_string()
    } else {
        text.replace(SAMPLE_EVENT_PHONE, sealed_phone)
    };
    Ok(text.into_bytes())
}

/// Cold-start every function binary in `bin_dir` (`target/release`) `runs` times.
pub async fn measure(bin_dir: &Path, runs: usize) -> Result<Vec<ColdStart>, BoxError> {
    let root = workspace_root()?;
    let template = std::fs::read_to_string(root.join("template.yaml"))?;
    let memory = crate::cost::template_memory(&template);
    let stack = LocalStack::start_shared().await?;
    let now = Utc::now();
    let sandbox = Sandbox::start(
        SandboxConfig {
            seed: 5,
            ..SandboxConfig::default()
        },
        Arc::new(SystemClock) as Arc<dyn Clock>,
    )
    .await?;
    let env = base_env(&stack, &sandbox);
    let env_map: HashMap<String, String> = env.clone().into_iter().collect();
    let base = Config::from_env(&env_map)?;
    let store = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&stack.sdk_config),
        &base.table_name,
        base.due_shards,
    );
    let vault = Vault::from_env(&stack.sdk_config, &env_map)?;
    let mut sealed_first = String::new();
    for (carrier, number, kind, phone, hours_ago) in WAYBILLS {
        let phone = PhoneNumber::parse(phone)?;
        let sealed = vault.seal(&phone).await?;
        if sealed_first.is_empty() {
            sealed_first = sealed.as_str().to_owned();
        }
        sandbox.register_kind(
            kind,
            carrier,
            number,
            now - ChronoDuration::hours(hours_ago),
        );
        let shipment = Shipment::register(
            ShipmentId::parse(carrier, number)?,
            Priority::Normal,
            "kdniao",
            Recipient {
                phone: Some(sealed),
                locale: Locale::ZhCn,
            },
            None,
            now - ChronoDuration::minutes(5),
        );
        store.create(&shipment).await?;
    }
    let created = now - ChronoDuration::hours(3);
    sandbox.generate_orders(FW199_SHOP, Platform::Fw199, 5, created);
    sandbox.generate_orders(TOP_SHOP, Platform::Top, 5, created);

    let logs = root.join(".local/bench");
    std::fs::create_dir_all(&logs)?;
    let mut out = Vec::new();
    for (function, file) in FUNCTIONS {
        let binary: PathBuf = bin_dir.join(function);
        let binary_bytes = std::fs::metadata(&binary)
            .map_err(|e| {
                format!(
                    "{}: {e} (build it: cargo build --release -p {function})",
                    binary.display()
                )
            })?
            .len();
        let mut fenv = env.clone();
        fenv.insert(
            "AWS_LAMBDA_FUNCTION_NAME".into(),
            format!("parcelwatch-{function}"),
        );
        fenv.insert(
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE".into(),
            memory.get(function).copied().unwrap_or(128).to_string(),
        );
        fenv.insert(
            "AWS_LAMBDA_LOG_GROUP_NAME".into(),
            format!("/aws/lambda/parcelwatch-{function}"),
        );
        fenv.insert(
            "AWS_LAMBDA_LOG_STREAM_NAME".into(),
            "2026/11/26/[$LATEST]bench".into(),
        );
        let log = logs.join(format!("coldstart-{function}.log"));
        let _fresh = std::fs::remove_file(&log);
        let mut cs = ColdStart {
            function: function.to_owned(),
            binary_bytes,
            runs: Vec::with_capacity(runs),
        };
        for n in 0..runs {
            let event = event_for(&root, file, &sealed_first)?;
            cs.runs
                .push(one_run(&binary, function, &fenv, &event, &log, n).await?);
        }
        out.push(cs);
    }
    Ok(out)
}
