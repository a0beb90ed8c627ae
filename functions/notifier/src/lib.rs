//! notifier: reads the table's stream, finds status transitions from the old and new images,
//! renders the buyer's message and publishes it through SNS (transactional SMS) and to the
//! merchant topic, with bounded retries. A ledger item claimed by conditional put makes each
//! transition go out once per channel even when the stream redelivers.

pub mod handler;

pub use handler::{handle_batch, Notifier};

use aws_lambda_events::event::dynamodb::Event;
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use lambda_runtime::{Error, LambdaEvent};
use parcelwatch::config::{Config, NotifierConfig, ProcessEnv};
use parcelwatch::crypto::Vault;
use parcelwatch::notify::SnsPublisher;
use parcelwatch::store::DynamoStore;

pub type LiveNotifier = Notifier<DynamoStore, SnsPublisher>;

/// `vault` opens the sealed phones (`Vault::from_env`: the KMS key of `PHONE_KEY_ID`).
pub fn build(
    sdk: &aws_config::SdkConfig,
    base: &Config,
    cfg: NotifierConfig,
    vault: Vault,
) -> LiveNotifier {
    Notifier {
        vault,
        ledger: DynamoStore::new(
            aws_sdk_dynamodb::Client::new(sdk),
            &base.table_name,
            base.due_shards,
        ),
        publisher: SnsPublisher::new(aws_sdk_sns::Client::new(sdk), cfg.sms_sender_id.clone()),
        cfg,
    }
}

pub async fn from_env() -> Result<LiveNotifier, Error> {
    let env = ProcessEnv;
    let base = Config::from_env(&env)?;
    let cfg = NotifierConfig::from_env(&env)?;
    let sdk = parcelwatch::resilience::load_sdk_config().await;
    let vault = Vault::from_env(&sdk, &env)?;
    Ok(build(&sdk, &base, cfg, vault))
}

pub async fn lambda(
    n: &LiveNotifier,
    event: LambdaEvent<Event>,
) -> Result<DynamoDbEventResponse, Error> {
    Ok(handle_batch(n, event.payload, chrono::Utc::now()).await)
}
