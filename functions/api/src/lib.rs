//! api: the HTTP API (API Gateway HTTP API, payload 2.0). Merchants register tracking numbers
//! and read trajectories; Kdniao and Kuaidi100 push trace changes, which are folded into the
//! table through the same path the tracker uses.

pub mod analytics;
pub mod config;
pub mod handler;
pub mod recognition;
pub mod register;
pub mod view;

pub use config::ApiConfig;
pub use handler::{apply_push, handle, Api, PushSummary};
pub use recognition::NoRecognizer;

use aws_lambda_events::event::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use lambda_runtime::{Error, LambdaEvent};
use parcelwatch::config::{Config, KdniaoConfig, ProcessEnv};
use parcelwatch::crypto::Vault;
use parcelwatch::domain::CheckContext;
use parcelwatch::providers::recognize::KdniaoRecognizer;
use parcelwatch::store::analytics::{DynamoAnalytics, SharedHistory};
use parcelwatch::store::DynamoStore;

pub type LiveApi = Api<DynamoStore, KdniaoRecognizer>;

/// Build the api from configuration and an SDK config (clients once per cold start). `vault`
/// seals registered phones (`Vault::from_env`: the KMS key of `PHONE_KEY_ID`).
pub fn build(sdk: &aws_config::SdkConfig, base: &Config, cfg: ApiConfig, vault: Vault) -> LiveApi {
    let recognizer = cfg.recognition.clone().and_then(kdniao_recognizer);
    Api::new(
        DynamoStore::new(
            aws_sdk_dynamodb::Client::new(sdk),
            &base.table_name,
            base.due_shards,
        ),
        cfg,
    )
    .with_recognizer(recognizer)
    .with_vault(vault)
    .with_history(std::sync::Arc::new(DynamoAnalytics::new(
        aws_sdk_dynamodb::Client::new(sdk),
        &base.table_name,
    )))
    .with_check_context(CheckContext::new(SharedHistory::refreshed(
        DynamoAnalytics::new(aws_sdk_dynamodb::Client::new(sdk), &base.table_name),
    )))
}

/// Kdniao 2002 over its own HTTP client. A client that cannot be built (no TLS backend) turns
/// recognition off rather than the api: unsure numbers then ask for the carrier.
pub fn kdniao_recognizer(cfg: KdniaoConfig) -> Option<KdniaoRecognizer> {
    let http = reqwest::Client::builder()
        .timeout(cfg.timeout)
        .connect_timeout(std::time::Duration::from_secs(2))
        .pool_idle_timeout(std::time::Duration::from_secs(50))
        .build();
    match http {
        Ok(http) => Some(KdniaoRecognizer::new(cfg, http)),
        Err(e) => {
            tracing::error!(error = %e, "cannot build the HTTP client; carrier recognition is off");
            None
        }
    }
}

pub async fn from_env() -> Result<LiveApi, Error> {
    let env = ProcessEnv;
    let base = Config::from_env(&env)?;
    let cfg = ApiConfig::from_env(&env)?;
    let sdk = parcelwatch::resilience::load_sdk_config().await;
    let vault = Vault::from_env(&sdk, &env)?;
    Ok(build(&sdk, &base, cfg, vault))
}

/// How long a container's first invocation waits for the delivery history (one or two Queries).
const HISTORY_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

pub async fn lambda(
    api: &LiveApi,
    event: LambdaEvent<ApiGatewayV2httpRequest>,
) -> Result<ApiGatewayV2httpResponse, Error> {
    // The first invocation of a container decides only once the delivery history is in.
    parcelwatch::store::analytics::history_loaded(HISTORY_WAIT).await;
    Ok(handle(api, event.payload, chrono::Utc::now()).await)
}
