//! scheduler: on every EventBridge tick, find the shipments that became due since the last run
//! (sharded, sparse due index, never a Scan; one watermark per shard), fan them out to the
//! tracking queue ten per `SendMessageBatch`, then advance the watermarks with one conditional
//! write. It never writes a shipment; a stuck sweep re-enqueues checks that never finished.

pub mod handler;

pub use handler::{run_schedule, ScheduleReport, SETTLE};

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use lambda_runtime::{Error, LambdaEvent};
use parcelwatch::config::{Config, ProcessEnv, SchedulerConfig};
use parcelwatch::queue::SqsQueue;
use parcelwatch::store::DynamoStore;

/// Clients and settings, built once per cold start.
pub struct Deps {
    pub store: DynamoStore,
    pub queue: SqsQueue,
    pub cfg: SchedulerConfig,
}

impl Deps {
    pub async fn from_env() -> Result<Deps, Error> {
        let env = ProcessEnv;
        let base = Config::from_env(&env)?;
        let cfg = SchedulerConfig::from_env(&env)?;
        let sdk = parcelwatch::resilience::load_sdk_config().await;
        Ok(Deps::new(&sdk, &base, cfg))
    }
    pub fn new(sdk: &aws_config::SdkConfig, base: &Config, cfg: SchedulerConfig) -> Deps {
        Deps {
            store: DynamoStore::new(
                aws_sdk_dynamodb::Client::new(sdk),
                &base.table_name,
                base.due_shards,
            ),
            queue: SqsQueue::new(aws_sdk_sqs::Client::new(sdk), &cfg.queue_url),
            cfg,
        }
    }
}

/// The Lambda entry: the scheduled event's `time` is "now" (so a simulated tick schedules as of
/// its own time; a tick not after the last run's does nothing).
pub async fn lambda(
    deps: &Deps,
    event: LambdaEvent<EventBridgeEvent>,
) -> Result<ScheduleReport, Error> {
    handle(deps, event.payload).await
}

/// Handle one scheduled event (also what the local runner calls).
pub async fn handle(deps: &Deps, event: EventBridgeEvent) -> Result<ScheduleReport, Error> {
    let now = event.time.unwrap_or_else(chrono::Utc::now);
    Ok(run_schedule(&deps.store, &deps.queue, &deps.cfg, now).await?)
}
