//! analytics: reads the table's stream and keeps the delivery history up to date: per carrier
//! and origin/destination province, finished and delivered parcels, exceptions and the
//! pickup → delivered histogram; per carrier and stage, time in stage and the quiet gaps between
//! trace lines. Each shipment change is counted once (see `parcelwatch::store::analytics`), so
//! stream redeliveries and retries never double count. The api reads these aggregates for
//! `GET /analytics/...` and for the ETA of a shipment.

pub mod handler;

pub use handler::{handle_batch, Analytics};

use aws_lambda_events::event::dynamodb::Event;
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use lambda_runtime::{Error, LambdaEvent};
use parcelwatch::config::{Config, ProcessEnv};
use parcelwatch::store::analytics::DynamoAnalytics;

pub type LiveAnalytics = Analytics<DynamoAnalytics>;

pub fn build(sdk: &aws_config::SdkConfig, base: &Config) -> LiveAnalytics {
    Analytics {
        store: DynamoAnalytics::new(aws_sdk_dynamodb::Client::new(sdk), &base.table_name),
    }
}

pub async fn from_env() -> Result<LiveAnalytics, Error> {
    let base = Config::from_env(&ProcessEnv)?;
    let sdk = parcelwatch::resilience::load_sdk_config().await;
    Ok(build(&sdk, &base))
}

pub async fn lambda(
    a: &LiveAnalytics,
    event: LambdaEvent<Event>,
) -> Result<DynamoDbEventResponse, Error> {
    Ok(handle_batch(a, event.payload).await)
}
