//! `make stack`: moto and the carrier/order-platform sandbox on fixed loopback ports,
//! template.yaml's resources created in moto, the three waybills of events/tracker/batch.json
//! registered on both sides, and a few orders on the sandbox's fw199 and TOP platforms, so the
//! functions can run under `cargo lambda watch` against real servers.
//!
//! Prints the environment for the functions and writes it to `.local/stack.env`; stays up until
//! Ctrl-C. moto keeps everything in memory and every start provisions fresh resource names, so
//! source the file again after each restart (it is removed on a clean exit).

use std::fs::{self, File};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use parcelwatch::config::{Config, ConfigError};
use parcelwatch::crypto::{Vault, SAMPLE_EVENT_PHONE};
use parcelwatch::domain::order::Platform;
use parcelwatch::domain::{
    Locale, PhoneNumber, Priority, Recipient, SealedPhone, Shipment, ShipmentId,
};
use parcelwatch::store::{DynamoStore, ShipmentStore, StoreError};
use parcelwatch_local::clock::{AcceleratedClock, Clock};
use parcelwatch_local::moto::{workspace_root, MotoError};
use parcelwatch_local::pipeline::LOCAL_KUAIDI100_SALT;
use parcelwatch_local::sandbox::journey::JourneyKind;
use parcelwatch_local::sandbox::orders::{
    DEFAULT_FW199_APPID, DEFAULT_FW199_SECRET, DEFAULT_TOP_APP_KEY, DEFAULT_TOP_SECRET,
    DEFAULT_TOP_SESSION,
};
use parcelwatch_local::sandbox::{Sandbox, SandboxConfig, SandboxError};
use parcelwatch_local::stack::{LocalStack, StackError};

/// Merchant API keys the local api accepts: those of the sample events in events/api/.
const LOCAL_API_KEYS: &str = "test-key-0001,test-key-0002";
/// The shops `make stack` creates orders for on the sandbox's order platforms.
const STACK_FW199_SHOP: &str = "pw-demo-fw";
const STACK_TOP_SHOP: &str = "pw-demo-top";

const USAGE: &str = "usage: stack [--moto-port N] [--sandbox-port N] [--speed X] [--seed N]";
/// moto needs ~0.6 s idle, much longer while cargo builds hold the cores.
const MOTO_READY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq)]
struct Args {
    moto_port: u16,
    sandbox_port: u16,
    /// Simulated seconds per wall second in the sandbox (60 = one hour per minute).
    speed: f64,
    seed: u64,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            moto_port: 5005,
            sandbox_port: 9100,
            speed: 60.0,
            seed: 7,
        }
    }
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args::default();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--moto-port" => a.moto_port = value.parse().map_err(|e| bad(&e))?,
            "--sandbox-port" => a.sandbox_port = value.parse().map_err(|e| bad(&e))?,
            "--seed" => a.seed = value.parse().map_err(|e| bad(&e))?,
            "--speed" => {
                a.speed = value.parse().map_err(|e| bad(&e))?;
                if !(a.speed.is_finite() && a.speed > 0.0) {
                    return Err(bad(&"must be a positive number"));
                }
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if a.moto_port == a.sandbox_port {
        return Err("--moto-port and --sandbox-port must differ".into());
    }
    Ok(a)
}

#[derive(Debug, thiserror::Error)]
enum UpError {
    #[error("port {port} on 127.0.0.1 is taken (another `make stack`?): {source}")]
    PortTaken {
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start `{bin}` (run `make setup`): {source}")]
    MotoSpawn {
        bin: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("moto exited early ({status}); see {log}")]
    MotoExited { status: String, log: PathBuf },
    #[error("moto did not answer within {waited:?}; see {log}")]
    MotoNotReady { waited: Duration, log: PathBuf },
    #[error(transparent)]
    Workspace(#[from] MotoError),
    #[error(transparent)]
    Stack(#[from] StackError),
    #[error("carrier sandbox: {0}")]
    Sandbox(#[from] SandboxError),
    #[error("the stack's function environment: {0}")]
    Config(#[from] ConfigError),
    #[error("demo waybill {0}")]
    Waybill(String),
    #[error("cannot register {id} in the table: {source}")]
    Store {
        id: String,
        #[source]
        source: StoreError,
    },
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("cannot wait for Ctrl-C / SIGTERM: {0}")]
    Signal(#[source] std::io::Error),
}

/// moto on a chosen port, killed and reaped when dropped. (`MotoServer` picks a free port
/// itself; this binary needs a fixed one so printed URLs and commands stay the same.)
struct FixedMoto {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl FixedMoto {
    async fn start(root: &Path, port: u16) -> Result<FixedMoto, UpError> {
        // Fail with a clear reason rather than letting moto die on a bind error.
        drop(
            TcpListener::bind(("127.0.0.1", port))
                .map_err(|source| UpError::PortTaken { port, source })?,
        );
        let bin = parcelwatch_local::moto::moto_binary(root);
        let dir = root.join(".local");
        let file_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| UpError::File { path, source }
        };
        fs::create_dir_all(&dir).map_err(file_err(&dir))?;
        let log = dir.join(format!("moto-{port}.log"));
        let out = File::create(&log).map_err(file_err(&log))?;
        let err = out.try_clone().map_err(file_err(&log))?;
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|source| UpError::MotoSpawn { bin, source })?;
        let mut moto = FixedMoto { child, port, log };
        moto.wait_ready().await?;
        Ok(moto)
    }

    async fn wait_ready(&mut self) -> Result<(), UpError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let url = format!("{}/moto-api/", self.endpoint());
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(UpError::MotoExited {
                    status: status.to_string(),
                    log: self.log.clone(),
                });
            }
            if let Ok(resp) = http.get(&url).send().await {
                if resp.status().is_success() {
                    return Ok(());
                }
            }
            if started.elapsed() > MOTO_READY_TIMEOUT {
                return Err(UpError::MotoNotReady {
                    waited: started.elapsed(),
                    log: self.log.clone(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for FixedMoto {
    fn drop(&mut self) {
        // moto holds nothing worth flushing. Ctrl-C in a terminal may have ended it already.
        let _already_gone = self.child.kill();
        let _reaped = self.child.wait();
    }
}

/// A waybill registered with the carrier (sandbox) and with us (the table).
struct DemoWaybill {
    carrier: &'static str,
    number: &'static str,
    kind: JourneyKind,
    /// SF only answers a query carrying the last four digits of this number.
    phone: &'static str,
    /// How long (simulated) before start-up the carrier picked it up.
    shipped_hours_ago: i64,
    order_ref: &'static str,
}

/// The numbers of events/tracker/batch.json; the YTO phone and order are those of
/// events/notifier/transition.json.
const DEMO_WAYBILLS: [DemoWaybill; 3] = [
    DemoWaybill {
        carrier: "YTO",
        number: "YT1000000000001",
        kind: JourneyKind::Delivered,
        phone: "+8613812345678",
        shipped_hours_ago: 30,
        order_ref: "TB-2026112400001",
    },
    DemoWaybill {
        carrier: "SF",
        number: "SF1000000000002",
        kind: JourneyKind::LockerPickup,
        phone: "+8613900002222",
        shipped_hours_ago: 20,
        order_ref: "TB-2026112400002",
    },
    DemoWaybill {
        carrier: "ZTO",
        number: "780000000000003",
        kind: JourneyKind::Refused,
        phone: "+8613700003333",
        shipped_hours_ago: 4,
        order_ref: "TB-2026112400003",
    },
];

/// Everything `make stack` keeps running.
struct Running {
    stack: LocalStack,
    sandbox: Sandbox,
    env: Vec<(String, String)>,
    /// The first demo waybill's phone sealed under the stack's key, for the sample events.
    sample_phone: SealedPhone,
    lines: Vec<String>,
    // Declared last, so dropped (killed) after everything that talks to it.
    moto: FixedMoto,
}

/// Start moto, provision, start the sandbox, register the demo waybills, compose the env.
async fn start(args: &Args, root: &Path) -> Result<Running, UpError> {
    let moto = FixedMoto::start(root, args.moto_port).await?;
    let stack = LocalStack::provision(&moto.endpoint()).await?;
    let now = Utc::now();
    let clock = Arc::new(AcceleratedClock::new(now, args.speed));
    let sandbox = Sandbox::start(
        SandboxConfig {
            seed: args.seed,
            port: Some(args.sandbox_port),
            ..SandboxConfig::default()
        },
        clock.clone(),
    )
    .await?;

    let env = function_env(&stack, &sandbox);
    // The table name and shard count exactly as the functions will read them.
    let env_map: std::collections::HashMap<String, String> = env.iter().cloned().collect();
    let base = Config::from_env(&env_map)?;
    let store = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&stack.sdk_config),
        &base.table_name,
        base.due_shards,
    );
    // Phones are sealed as the api seals them: under the stack's phone key (PHONE_KEY_ID).
    let vault = Vault::from_env(&stack.sdk_config, &env_map)?;
    let mut lines = Vec::new();
    for w in &DEMO_WAYBILLS {
        lines.push(register(&store, &vault, &sandbox, clock.now(), now, w).await?);
    }
    // Orders for `make invoke-order-sync` to pull (their waybills get journeys too).
    // Created three hours ago, so shipped (consigned two hours after creation) by now.
    let created = now - chrono::Duration::hours(3);
    let fw = sandbox.generate_orders(STACK_FW199_SHOP, Platform::Fw199, 5, created);
    let top = sandbox.generate_orders(STACK_TOP_SHOP, Platform::Top, 5, created);
    lines.push(format!(
        "{} fw199 orders for {STACK_FW199_SHOP}, {} TOP orders for {STACK_TOP_SHOP}",
        fw.len(),
        top.len()
    ));
    // The sample stream events carry a stand-in sealed phone: `make stack` writes copies that
    // hold the first waybill's phone sealed under this stack's key, which its notifier opens.
    let first = PhoneNumber::parse(DEMO_WAYBILLS[0].phone)
        .map_err(|e| UpError::Waybill(format!("sample phone: {e}")))?;
    let sample_phone = vault
        .seal(&first)
        .await
        .map_err(|e| UpError::Waybill(format!("sample phone: {e}")))?;
    Ok(Running {
        stack,
        sandbox,
        env,
        sample_phone,
        lines,
        moto,
    })
}

/// The notifier's sample events as they hold for this stack: `events/notifier/<name>.json` with
/// the stand-in sealed phone replaced by `phone`, under `dir/notifier/`. Returns the paths.
fn write_sample_events(dir: &Path, phone: &SealedPhone) -> Result<Vec<PathBuf>, UpError> {
    let samples = [
        (
            "transition.json",
            include_str!("../../../events/notifier/transition.json"),
        ),
        (
            "no-transition.json",
            include_str!("../../../events/notifier/no-transition.json"),
        ),
        (
            "mixed-batch.json",
            include_str!("../../../events/notifier/mixed-batch.json"),
        ),
    ];
    let dir = dir.join("notifier");
    fs::create_dir_all(&dir).map_err(|source| UpError::File {
        path: dir.clone(),
        source,
    })?;
    let mut out = Vec::with_capacity(samples.len());
    for (name, text) in samples {
        let path = dir.join(name);
        let text = text.replace(SAMPLE_EVENT_PHONE, phone.as_str());
        fs::write(&path, text).map_err(|source| UpError::File {
            path: path.clone(),
            source,
        })?;
        out.push(path);
    }
    Ok(out)
}

/// Register one waybill on both sides; returns a line describing it.
async fn register(
    store: &DynamoStore,
    vault: &Vault,
    sandbox: &Sandbox,
    sim_now: DateTime<Utc>,
    now: DateTime<Utc>,
    w: &DemoWaybill,
) -> Result<String, UpError> {
    let id = ShipmentId::parse(w.carrier, w.number)
        .map_err(|e| UpError::Waybill(format!("{}/{}: {e}", w.carrier, w.number)))?;
    let phone =
        PhoneNumber::parse(w.phone).map_err(|e| UpError::Waybill(format!("{id} phone: {e}")))?;
    let sealed = vault
        .seal(&phone)
        .await
        .map_err(|e| UpError::Waybill(format!("{id} phone: {e}")))?;
    let shipped_at = sim_now - chrono::Duration::hours(w.shipped_hours_ago);
    let journey = sandbox.register_kind(w.kind, w.carrier, w.number, shipped_at);
    let shipment = Shipment::register(
        id.clone(),
        Priority::Normal,
        "kdniao",
        Recipient {
            phone: Some(sealed),
            locale: Locale::ZhCn,
        },
        Some(w.order_ref.to_string()),
        now,
    );
    store
        .create(&shipment)
        .await
        .map_err(|source| UpError::Store {
            id: id.to_string(),
            source,
        })?;
    let visible = journey.visible_at(sim_now);
    Ok(format!(
        "{:<20} {:<13} phone {}  carrier shows StateEx {} ({} lines) now",
        id.to_string(),
        format!("{:?}", w.kind),
        phone.masked(),
        visible.state_ex,
        visible.traces.len()
    ))
}

/// The stack's variables (AWS_*, every function's template environment) with the sandbox as
/// the Kdniao endpoint and its test credentials (in AWS these come from the template's
/// parameters and Secrets Manager).
fn function_env(stack: &LocalStack, sandbox: &Sandbox) -> Vec<(String, String)> {
    let mut env = stack.env_vars();
    set(&mut env, "KDNIAO_ENDPOINT", &sandbox.kdniao_endpoint());
    set(&mut env, "KDNIAO_EBUSINESS_ID", sandbox.ebusiness_id());
    set(&mut env, "KDNIAO_APP_KEY", sandbox.app_key());
    set(&mut env, "TRACKING_DLQ_URL", &stack.tracking_dlq_url);
    // For `make redrive`: the notifier's stream on-failure destination.
    set(
        &mut env,
        "NOTIFY_FAILURE_QUEUE_URL",
        &stack.notify_failure_queue_url,
    );
    set(
        &mut env,
        "KDNIAO_SUBSCRIBE_ENDPOINT",
        &sandbox.kdniao_subscribe_endpoint(),
    );
    // The api: the merchant keys the sample events in events/api/ carry, and the push salt.
    set(&mut env, "API_KEYS", LOCAL_API_KEYS);
    set(&mut env, "KUAIDI100_SALT", LOCAL_KUAIDI100_SALT);
    // order-sync: one shop on each platform of the sandbox, with its test credentials.
    set(
        &mut env,
        "ORDER_SHOPS",
        &format!("fw199:{STACK_FW199_SHOP},top:{STACK_TOP_SHOP}"),
    );
    set(&mut env, "FW199_ENDPOINT", &sandbox.fw199_endpoint());
    set(&mut env, "FW199_APPID", DEFAULT_FW199_APPID);
    set(&mut env, "FW199_SECRET", DEFAULT_FW199_SECRET);
    set(&mut env, "TOP_ENDPOINT", &sandbox.top_endpoint());
    set(&mut env, "TOP_APP_KEY", DEFAULT_TOP_APP_KEY);
    set(&mut env, "TOP_APP_SECRET", DEFAULT_TOP_SECRET);
    set(&mut env, "TOP_SESSION", DEFAULT_TOP_SESSION);
    env
}

fn set(env: &mut Vec<(String, String)>, key: &str, value: &str) {
    match env.iter_mut().find(|(k, _)| k == key) {
        Some(slot) => slot.1 = value.to_string(),
        None => env.push((key.to_string(), value.to_string())),
    }
}

/// `export K='v'` lines a POSIX shell can `source`.
fn export_block(env: &[(String, String)]) -> String {
    env.iter()
        .map(|(k, v)| format!("export {k}='{}'\n", v.replace('\'', r"'\''")))
        .collect()
}

/// Ctrl-C, or SIGTERM (`kill`): either way moto is stopped and the env file removed.
async fn shutdown_signal() -> std::io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}

async fn run(args: Args) -> Result<(), UpError> {
    let root = workspace_root()?;
    eprintln!(
        "starting moto on :{}, provisioning template.yaml, sandbox on :{} at {}x…",
        args.moto_port, args.sandbox_port, args.speed
    );
    let up = start(&args, &root).await?;
    let samples = write_sample_events(&root.join(".local/events"), &up.sample_phone)?;
    let env_file = root.join(".local/stack.env");
    let block = export_block(&up.env);
    fs::write(&env_file, &block).map_err(|source| UpError::File {
        path: env_file.clone(),
        source,
    })?;

    println!(
        "moto      {}  (log {})",
        up.stack.endpoint,
        up.moto.log.display()
    );
    println!(
        "sandbox   {}  (admin {}/sandbox/waybills, seed {}, {}x)",
        up.sandbox.kdniao_endpoint(),
        up.sandbox.base_url(),
        up.sandbox.seed(),
        args.speed
    );
    println!("table     {}", up.stack.table_name);
    println!("queue     {}", up.stack.tracking_queue_url);
    println!("dlq       {}", up.stack.tracking_dlq_url);
    println!("registered (sandbox + table):");
    for line in &up.lines {
        println!("  {line}");
    }
    println!("notifier sample events with this stack's sealed phone:");
    for path in &samples {
        println!("  {}", path.display());
    }
    println!(
        "\n# environment for the functions (also in {})",
        env_file.display()
    );
    print!("{block}");
    println!("\nnext, in another terminal: make watch   (Ctrl-C here stops the stack)");

    let waited = shutdown_signal().await;
    if let Err(e) = fs::remove_file(&env_file) {
        eprintln!("cannot remove {}: {e}", env_file.display());
    }
    let Running { sandbox, moto, .. } = up;
    sandbox.shutdown().await;
    drop(moto);
    waited.map_err(UpError::Signal)?;
    eprintln!("stack stopped");
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stack: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parcelwatch::domain::Status;

    fn args(list: &[&str]) -> Result<Args, String> {
        parse_args(list.iter().map(|s| s.to_string()))
    }

    #[test]
    fn args_default_and_override() {
        assert_eq!(args(&[]).unwrap(), Args::default());
        let a = args(&["--moto-port", "6000", "--speed", "600", "--seed", "3"]).unwrap();
        assert_eq!((a.moto_port, a.sandbox_port, a.seed), (6000, 9100, 3));
        assert_eq!(a.speed, 600.0);
        assert!(args(&["--speed", "0"]).is_err());
        assert!(args(&["--speed", "NaN"]).is_err());
        assert!(args(&["--moto-port"]).is_err());
        assert!(args(&["--moto-port", "70000"]).is_err());
        assert!(args(&["--sandbox-port", "5005"]).is_err());
        assert!(args(&["--port", "1"]).is_err());
    }

    #[test]
    fn export_block_quotes_for_the_shell() {
        let env = vec![
            ("A".to_string(), "plain".to_string()),
            ("B".to_string(), "it's $HOME".to_string()),
        ];
        assert_eq!(
            export_block(&env),
            "export A='plain'\nexport B='it'\\''s $HOME'\n"
        );
    }

    #[test]
    fn set_replaces_or_appends() {
        let mut env = vec![("K".to_string(), "old".to_string())];
        set(&mut env, "K", "new");
        set(&mut env, "L", "x");
        assert_eq!(
            env,
            vec![("K".into(), "new".into()), ("L".into(), "x".into())]
        );
    }

    fn free_port() -> u16 {
        TcpListener::bind(("127.0.0.1", 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port")
    }

    /// The whole start-up on chosen ports: env points at both servers, the waybills are known
    /// to the carrier and due in the table.
    #[tokio::test]
    async fn start_registers_waybills_on_both_sides() {
        let root = workspace_root().expect("workspace");
        let a = Args {
            moto_port: free_port(),
            sandbox_port: free_port(),
            ..Args::default()
        };
        let up = start(&a, &root).await.expect("stack starts");
        let env: std::collections::HashMap<_, _> = up.env.iter().cloned().collect();
        assert_eq!(
            env.get("AWS_ENDPOINT_URL"),
            Some(&format!("http://127.0.0.1:{}", a.moto_port))
        );
        assert_eq!(
            env.get("KDNIAO_ENDPOINT"),
            Some(&format!(
                "http://127.0.0.1:{}/Ebusiness/EbusinessOrderHandle.aspx",
                a.sandbox_port
            ))
        );
        assert_eq!(
            env.get("KDNIAO_APP_KEY").map(String::as_str),
            Some(up.sandbox.app_key())
        );
        assert_eq!(
            env.get("TRACKING_DLQ_URL"),
            Some(&up.stack.tracking_dlq_url)
        );
        assert_eq!(env.get("TABLE_NAME"), Some(&up.stack.table_name));

        let store = DynamoStore::new(
            aws_sdk_dynamodb::Client::new(&up.stack.sdk_config),
            &up.stack.table_name,
            16,
        );
        // The notifier's key access: the sealed phones open to the waybills' numbers.
        let notifier_vault = Vault::from_env(&up.stack.sdk_config, &env).unwrap();
        // The sample events written for this stack carry a phone its notifier opens.
        let dir = root.join(format!(".local/test-events-{}", std::process::id()));
        let written = write_sample_events(&dir, &up.sample_phone).unwrap();
        assert_eq!(written.len(), 3);
        for path in &written {
            let text = fs::read_to_string(path).unwrap();
            assert!(!text.contains(SAMPLE_EVENT_PHONE), "{}", path.display());
            assert!(
                text.contains(up.sample_phone.as_str()),
                "{}",
                path.display()
            );
        }
        let _ = fs::remove_dir_all(&dir);
        assert_eq!(
            notifier_vault
                .open(&up.sample_phone)
                .await
                .unwrap()
                .expose(),
            DEMO_WAYBILLS[0].phone
        );
        for w in &DEMO_WAYBILLS {
            let id = ShipmentId::parse(w.carrier, w.number).unwrap();
            let s = store.get(&id).await.unwrap().expect("registered");
            assert_eq!(s.status, Status::Pending);
            assert!(s.next_check_at.is_some_and(|t| t <= Utc::now()));
            let sealed = s.recipient.phone.clone().expect("a sealed phone");
            assert!(!sealed.as_str().contains(&w.phone[3..]));
            assert_eq!(
                notifier_vault.open(&sealed).await.unwrap().expose(),
                w.phone
            );
            assert_eq!(
                up.sandbox.journey(w.carrier, w.number).unwrap().kind,
                w.kind
            );
        }
        assert_eq!(
            up.lines.len(),
            DEMO_WAYBILLS.len() + 1,
            "waybills + orders line"
        );
        // The sandbox's platforms hold the orders `make invoke-order-sync` pulls.
        assert_eq!(
            up.sandbox.orders(Platform::Fw199, STACK_FW199_SHOP).len(),
            5
        );
        assert_eq!(up.sandbox.orders(Platform::Top, STACK_TOP_SHOP).len(), 5);
        assert_eq!(
            env.get("API_KEYS").map(String::as_str),
            Some(LOCAL_API_KEYS)
        );
        assert_eq!(
            env.get("FW199_ENDPOINT"),
            Some(&up.sandbox.fw199_endpoint())
        );
    }
}
