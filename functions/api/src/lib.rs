//! api: the HTTP API (API Gateway HTTP API, payload 2.0). Merchants register tracking numbers
//! and read trajectories; Kdniao and Kuaidi100 push trace changes, which are folded into the
//! table through the same path the tracker uses.

pub mod config;
pub mod handler;
pub mod register;
pub mod view;

pub use config::ApiConfig;
pub use handler::{apply_push, handle, Api, PushSummary};

use aws_lambda_events::event::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use lambda_runtime::{Error, LambdaEvent};
use parcelwatch::config::{Config, ProcessEnv};
use parcelwatch::store::DynamoStore;

pub type LiveApi = Api<DynamoStore>;

/// Build the api from configuration and an SDK config (clients once per cold start).
pub fn build(sdk: &aws_config::SdkConfig, base: &Config, cfg: ApiConfig) -> LiveApi {
    Api {
        store: DynamoStore::new(
            aws_sdk_dynamodb::Client::new(sdk),
            &base.table_name,
            base.due_shards,
        ),
        cfg,
    }
}

pub async fn from_env() -> Result<LiveApi, Error> {
    let env = ProcessEnv;
    let base = Config::from_env(&env)?;
    let cfg = ApiConfig::from_env(&env)?;
    let sdk = aws_config::load_from_env().await;
    Ok(build(&sdk, &base, cfg))
}

pub async fn lambda(
    api: &LiveApi,
    event: LambdaEvent<ApiGatewayV2httpRequest>,
) -> Result<ApiGatewayV2httpResponse, Error> {
    Ok(handle(api, event.payload, chrono::Utc::now()).await)
}
