//! tracker: for each SQS message, ask the provider for the parcel's trace, fold it into the
//! shipment (pure domain rule), and write it conditionally. Reports only the failed messages.

pub mod handler;

pub use handler::{handle_batch, Tracker};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent};
use parcelwatch::config::{Config, ProcessEnv, TrackerConfig};
use parcelwatch::providers::any::AnyProvider;
use parcelwatch::providers::failover::Failover;
use parcelwatch::providers::kdniao::KdniaoClient;
use parcelwatch::providers::kdniao_push::KdniaoSubscriber;
use parcelwatch::providers::kuaidi100::Kuaidi100Client;
use parcelwatch::providers::taobao::TaobaoClient;
use parcelwatch::queue::SqsQueue;
use parcelwatch::resilience::{DynamoBucket, Limiter, MemoryBucket};
use parcelwatch::store::DynamoStore;

pub type LiveTracker = Tracker<DynamoStore, Failover<AnyProvider>, SqsQueue, KdniaoSubscriber>;

/// Build the tracker from configuration and an SDK config (clients once per cold start).
pub fn build(
    sdk: &aws_config::SdkConfig,
    base: &Config,
    cfg: TrackerConfig,
) -> Result<LiveTracker, Error> {
    let http = reqwest::Client::builder()
        .timeout(cfg.kdniao.timeout)
        .connect_timeout(std::time::Duration::from_secs(3))
        .pool_idle_timeout(std::time::Duration::from_secs(50))
        .build()?;
    Ok(Tracker {
        store: DynamoStore::new(
            aws_sdk_dynamodb::Client::new(sdk),
            &base.table_name,
            base.due_shards,
        ),
        provider: providers(&cfg, &http, sdk),
        subscriber: cfg
            .kdniao_push
            .clone()
            .map(|push| KdniaoSubscriber::new(push, http)),
        dead_letters: SqsQueue::new(aws_sdk_sqs::Client::new(sdk), &cfg.dead_letter_queue_url),
        concurrency: cfg.concurrency,
        ctx: parcelwatch::domain::CheckContext::new(history(sdk, base)),
    })
}

/// The delivery history the analytics function keeps, refreshed in the background.
fn history(
    sdk: &aws_config::SdkConfig,
    base: &Config,
) -> std::sync::Arc<dyn parcelwatch::domain::StageHistory + Send + Sync> {
    use parcelwatch::store::analytics::{DynamoAnalytics, SharedHistory};
    SharedHistory::refreshed(DynamoAnalytics::new(
        aws_sdk_dynamodb::Client::new(sdk),
        &base.table_name,
    ))
}

/// Every provider the configuration has credentials for, behind the configured routes, each
/// behind its circuit breaker and rate limit.
fn providers(
    cfg: &TrackerConfig,
    http: &reqwest::Client,
    sdk: &aws_config::SdkConfig,
) -> Failover<AnyProvider> {
    let mut members = vec![AnyProvider::Kdniao(KdniaoClient::new(
        cfg.kdniao.clone(),
        http.clone(),
    ))];
    if let Some(k) = &cfg.kuaidi100 {
        members.push(AnyProvider::Kuaidi100(Kuaidi100Client::new(
            k.clone(),
            http.clone(),
        )));
    }
    if let Some(t) = &cfg.taobao {
        members.push(AnyProvider::Taobao(TaobaoClient::new(
            t.clone(),
            http.clone(),
        )));
    }
    let limiter = match (&cfg.rate_limit_table, cfg.rate_limits.0.is_empty()) {
        (_, true) => Limiter::Unlimited,
        // Shared by every container, taken in slices.
        (Some(table), false) => Limiter::Dynamo(
            DynamoBucket::new(
                aws_sdk_dynamodb::Client::new(sdk),
                table,
                cfg.rate_limits.clone(),
            )
            .with_slice(cfg.rate_limit_slice),
        ),
        // Each container on its own.
        (None, false) => Limiter::Memory(MemoryBucket::new(cfg.rate_limits.clone())),
    };
    let failover = Failover::new(members, cfg.routes.clone())
        .with_breakers(cfg.breaker)
        .with_limiter(limiter, cfg.rate_limit_max_wait);
    tracing::info!(
        providers = ?failover.members(),
        routes = ?failover.routes(),
        rate_limits = ?cfg.rate_limits,
        rate_limit_table = ?cfg.rate_limit_table,
        rate_limit_slice_ms = cfg.rate_limit_slice.as_millis() as u64,
        breaker = ?cfg.breaker,
        "tracking providers"
    );
    failover
}

pub async fn from_env() -> Result<LiveTracker, Error> {
    let env = ProcessEnv;
    let base = Config::from_env(&env)?;
    let cfg = TrackerConfig::from_env(&env)?;
    let sdk = parcelwatch::resilience::load_sdk_config().await;
    build(&sdk, &base, cfg)
}

/// How long a container's first invocation waits for the delivery history (one or two Queries).
const HISTORY_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

pub async fn lambda(
    tracker: &LiveTracker,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Error> {
    // The first invocation of a container decides only once the delivery history is in.
    parcelwatch::store::analytics::history_loaded(HISTORY_WAIT).await;
    Ok(handle_batch(tracker, event.payload, chrono::Utc::now()).await)
}
