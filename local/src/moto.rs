//! A moto server (real AWS APIs on loopback) owned by the test or demo that started it.
//!
//! The child process is a plain `std::process::Child`, killed and reaped in `Drop`: it is not
//! tied to the tokio runtime that spawned it, so one server can outlive a `#[tokio::test]`
//! runtime and be shared (see [`MotoServer::shared`]) without leaking zombies.

use std::fs::{self, File};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use serde::Deserialize;

/// How long a fresh moto may take to answer. It needs ~0.6 s on an idle machine, but Python's
/// imports crawl while parallel cargo builds hold both cores.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Attempts when another process grabs the free port between our probe and moto's bind.
const SPAWN_ATTEMPTS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum MotoError {
    #[error("no directory containing template.yaml above {0}")]
    WorkspaceNotFound(PathBuf),
    #[error("cannot find a free loopback port: {0}")]
    Port(#[source] std::io::Error),
    #[error("cannot open moto log {path}: {source}")]
    Log {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start `{bin}` (set MOTO_SERVER or create .venv with moto[server]): {source}")]
    Spawn {
        bin: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("moto exited early ({status}); see {log}")]
    Exited { status: String, log: PathBuf },
    #[error("moto at {endpoint} did not answer within {waited:?}; see {log}")]
    NotReady {
        endpoint: String,
        waited: Duration,
        log: PathBuf,
    },
    #[error("request to moto failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("moto's data.json has an unexpected shape: {0}")]
    UnexpectedData(String),
}

/// The directory holding template.yaml: walk up from `CARGO_MANIFEST_DIR` (set by cargo at run
/// time), then from the current directory, then from this crate's own directory at build time.
pub fn workspace_root() -> Result<PathBuf, MotoError> {
    let mut starts: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::var_os("CARGO_MANIFEST_DIR") {
        starts.push(PathBuf::from(dir));
    }
    if let Ok(dir) = std::env::current_dir() {
        starts.push(dir);
    }
    starts.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    for start in &starts {
        if let Some(found) = start
            .ancestors()
            .find(|d| d.join("template.yaml").is_file())
        {
            return Ok(found.to_path_buf());
        }
    }
    Err(MotoError::WorkspaceNotFound(starts.swap_remove(0)))
}

/// `MOTO_SERVER`, else `local/moto-server` (moto's server with memoised request routing, run by
/// the workspace venv), else the venv's plain `moto_server`, else `moto_server` on PATH.
pub fn moto_binary(root: &Path) -> PathBuf {
    if let Some(bin) = std::env::var_os("MOTO_SERVER").filter(|v| !v.is_empty()) {
        return PathBuf::from(bin);
    }
    let fast = root.join("local/moto-server");
    if fast.is_file() && root.join(".venv/bin/python").is_file() {
        return fast;
    }
    let venv = root.join(".venv/bin/moto_server");
    if venv.is_file() {
        venv
    } else {
        PathBuf::from("moto_server")
    }
}

fn free_port() -> Result<u16, MotoError> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).map_err(MotoError::Port)?;
    let port = listener.local_addr().map_err(MotoError::Port)?.port();
    Ok(port)
}

/// A running `moto_server`, killed when dropped.
#[derive(Debug)]
pub struct MotoServer {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl MotoServer {
    /// Spawn moto on a free loopback port and wait until it answers.
    pub async fn start() -> Result<MotoServer, MotoError> {
        let root = workspace_root()?;
        let bin = moto_binary(&root);
        let log_dir = root.join(".local");
        fs::create_dir_all(&log_dir).map_err(|source| MotoError::Log {
            path: log_dir.clone(),
            source,
        })?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;

        let mut last_err = None;
        for _ in 0..SPAWN_ATTEMPTS {
            let port = free_port()?;
            let server = Self::spawn(&bin, &log_dir, port)?;
            match server.wait_ready(&client).await {
                Ok(server) => return Ok(server),
                // Lost the port race (moto could not bind): try another port.
                Err(e @ MotoError::Exited { .. }) => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| MotoError::UnexpectedData("no spawn attempt made".into())))
    }

    /// One server shared by everyone in this process who holds the returned `Arc`; started on
    /// first use and stopped when the last holder drops it (tests in parallel each provision
    /// their own uniquely named resources on it).
    pub async fn shared() -> Result<Arc<MotoServer>, MotoError> {
        // tokio's mutex: the critical section awaits moto's start-up.
        static SHARED: tokio::sync::Mutex<Option<Weak<MotoServer>>> =
            tokio::sync::Mutex::const_new(None);
        let mut slot = SHARED.lock().await;
        if let Some(server) = slot.as_ref().and_then(Weak::upgrade) {
            return Ok(server);
        }
        let server = Arc::new(MotoServer::start().await?);
        *slot = Some(Arc::downgrade(&server));
        Ok(server)
    }

    fn spawn(bin: &Path, log_dir: &Path, port: u16) -> Result<MotoServer, MotoError> {
        let log = log_dir.join(format!("moto-{port}.log"));
        let open = |path: &Path| {
            File::create(path).map_err(|source| MotoError::Log {
                path: path.to_path_buf(),
                source,
            })
        };
        let stdout = open(&log)?;
        let stderr = stdout.try_clone().map_err(|source| MotoError::Log {
            path: log.clone(),
            source,
        })?;
        let child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|source| MotoError::Spawn {
                bin: bin.to_path_buf(),
                source,
            })?;
        Ok(MotoServer { child, port, log })
    }

    async fn wait_ready(mut self, client: &reqwest::Client) -> Result<MotoServer, MotoError> {
        let started = Instant::now();
        let url = format!("{}/moto-api/", self.endpoint());
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(MotoError::Exited {
                    status: status.to_string(),
                    log: self.log.clone(),
                });
            }
            if let Ok(resp) = client.get(&url).send().await {
                if resp.status().is_success() {
                    return Ok(self);
                }
            }
            if started.elapsed() > READY_TIMEOUT {
                // `self` drops here, which kills the child.
                return Err(MotoError::NotReady {
                    endpoint: self.endpoint(),
                    waited: started.elapsed(),
                    log: self.log.clone(),
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where moto's own output goes (`<workspace>/.local/moto-PORT.log`).
    pub fn log_path(&self) -> &Path {
        &self.log
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        // SIGKILL then reap: moto keeps everything in memory, there is nothing to flush.
        if let Err(e) = self.child.kill() {
            tracing::debug!(port = self.port, error = %e, "moto already gone");
        }
        if let Err(e) = self.child.wait() {
            tracing::debug!(port = self.port, error = %e, "cannot reap moto");
        }
    }
}

/// One SMS moto recorded as sent by a direct `Publish` to a phone number.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SentSms {
    pub phone_number: String,
    pub message: String,
    pub message_id: String,
}

/// Every SMS moto has recorded (all accounts and regions; filter by phone number when the
/// server is shared). Topic publishes are not listed: read those through an SQS subscriber.
pub async fn sent_sms(endpoint: &str) -> Result<Vec<SentSms>, MotoError> {
    let base = endpoint.trim_end_matches('/');
    // moto's full state dump grows with every object it ever created: give it time.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()?;
    // The launcher's SMS view (local/moto_server.py) when present; moto's data.json otherwise.
    let view = http
        .get(format!("{base}/moto-api/sns/sms.json"))
        .send()
        .await?;
    if view.status().is_success() {
        return Ok(view.json().await?);
    }
    let data: serde_json::Value = http
        .get(format!("{base}/moto-api/data.json"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    parse_sent_sms(&data)
}

/// `data["sns"]["SMS"]`; absent means moto's SNS backend was never touched, i.e. nothing sent.
fn parse_sent_sms(data: &serde_json::Value) -> Result<Vec<SentSms>, MotoError> {
    match data.get("sns").and_then(|sns| sns.get("SMS")) {
        None => Ok(Vec::new()),
        Some(list) => serde_json::from_value(list.clone())
            .map_err(|e| MotoError::UnexpectedData(format!("sns.SMS: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sns::Client as SnsClient;

    #[test]
    fn parses_moto_sms_shape() {
        let data = serde_json::json!({"sns": {"SMS": [
            {"message": "hi", "message_id": "m-1", "phone_number": "+8613800138000"}
        ], "Topic": []}});
        let sms = parse_sent_sms(&data).unwrap();
        assert_eq!(
            sms,
            vec![SentSms {
                phone_number: "+8613800138000".into(),
                message: "hi".into(),
                message_id: "m-1".into()
            }]
        );
        assert!(parse_sent_sms(&serde_json::json!({"sqs": {}}))
            .unwrap()
            .is_empty());
        assert!(parse_sent_sms(&serde_json::json!({"sns": {"SMS": [{"message": 1}]}})).is_err());
    }

    #[test]
    fn workspace_root_holds_template() {
        let root = workspace_root().unwrap();
        assert!(root.join("template.yaml").is_file());
        assert!(root.join("local").is_dir());
    }

    #[tokio::test]
    async fn moto_starts_records_sms_and_dies_on_drop() {
        let moto = MotoServer::start().await.unwrap();
        let endpoint = moto.endpoint();
        assert!(moto
            .log_path()
            .ends_with(format!(".local/moto-{}.log", moto.port())));

        let sns = SnsClient::new(&crate::stack::sdk_config_for(&endpoint));
        let phone = "+8613912345678";
        let text = "【parcelwatch】您的包裹 SF1234567890 已签收";
        let out = sns
            .publish()
            .phone_number(phone)
            .message(text)
            .send()
            .await
            .unwrap();
        let id = out.message_id().unwrap().to_string();

        let sent: Vec<SentSms> = sent_sms(&endpoint)
            .await
            .unwrap()
            .into_iter()
            .filter(|s| s.phone_number == phone)
            .collect();
        assert_eq!(
            sent,
            vec![SentSms {
                phone_number: phone.into(),
                message: text.into(),
                message_id: id
            }]
        );

        drop(moto);
        let client = reqwest::Client::new();
        let after = client.get(format!("{endpoint}/moto-api/")).send().await;
        assert!(after.is_err(), "moto still answers after drop");
    }
}
