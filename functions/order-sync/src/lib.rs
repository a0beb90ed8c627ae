//! order-sync: on every EventBridge tick, pull each configured shop's orders modified since its
//! watermark (fw199 enhanced order list or Taobao TOP), merge them into the table, register the
//! parcels their sub-orders shipped in, and stop tracking parcels of closed or refunded orders.

pub mod handler;

pub use handler::{run_sync, ShopReport, SyncReport};

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use chrono::Duration;
use lambda_runtime::{Error, LambdaEvent};
use parcelwatch::config::{Config, ConfigError, Env, ProcessEnv};
use parcelwatch::crypto::Vault;
use parcelwatch::domain::order::Platform;
use parcelwatch::orders::{Fw199Client, Fw199Config, TopClient, TopConfig};
use parcelwatch::store::orders::DynamoOrderStore;
use parcelwatch::store::DynamoStore;

/// One shop to sync: `fw199:<seller_nick>` or `top:<seller_nick>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShopSpec {
    pub platform: Platform,
    /// The seller's login nick.
    pub shop: String,
}

impl ShopSpec {
    pub fn parse(s: &str) -> Result<ShopSpec, String> {
        let (platform, shop) = s
            .split_once(':')
            .ok_or_else(|| format!("`{s}` is not <platform>:<seller_nick>"))?;
        let platform = Platform::parse(platform)
            .ok_or_else(|| format!("`{platform}` is neither fw199 nor top"))?;
        let shop = shop.trim();
        if shop.is_empty() {
            return Err(format!("`{s}` names no shop"));
        }
        Ok(ShopSpec {
            platform,
            shop: shop.to_string(),
        })
    }
}

/// order-sync settings.
#[derive(Debug, Clone)]
pub struct OrderSyncConfig {
    /// `ORDER_SHOPS`: comma-separated `fw199:<nick>` / `top:<nick>`.
    pub shops: Vec<ShopSpec>,
    /// `ORDER_SYNC_OVERLAP_SECONDS` (300): each window starts this long before the watermark.
    pub overlap: Duration,
    /// `ORDER_SYNC_PAGE_SIZE`: default and cap are the platform's maximum (fw199 500, TOP 100).
    pub page_size: Option<u32>,
    /// `ORDER_SYNC_MAX_WINDOW_HOURS` (24): longer spans are pulled window by window (TOP never
    /// more than a day).
    pub max_window: Duration,
    /// `ORDER_DEFAULT_PROVIDER` (`kdniao`): the tracking provider of registered parcels.
    pub default_provider: String,
}

fn number<T: std::str::FromStr>(env: &dyn Env, key: &'static str) -> Result<Option<T>, ConfigError>
where
    T::Err: std::fmt::Display,
{
    env.get(key)
        .map(|v| {
            v.trim().parse::<T>().map_err(|e| ConfigError::Invalid {
                name: key,
                reason: e.to_string(),
            })
        })
        .transpose()
}

impl OrderSyncConfig {
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let shops = env
            .get("ORDER_SHOPS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(ShopSpec::parse)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|reason| ConfigError::Invalid {
                name: "ORDER_SHOPS",
                reason,
            })?;
        let page_size = number::<u32>(env, "ORDER_SYNC_PAGE_SIZE")?;
        if page_size == Some(0) {
            return Err(ConfigError::Invalid {
                name: "ORDER_SYNC_PAGE_SIZE",
                reason: "must be at least 1".into(),
            });
        }
        let hours = number::<i64>(env, "ORDER_SYNC_MAX_WINDOW_HOURS")?.unwrap_or(24);
        if !(1..=24 * 30).contains(&hours) {
            return Err(ConfigError::Invalid {
                name: "ORDER_SYNC_MAX_WINDOW_HOURS",
                reason: "must be 1..=720".into(),
            });
        }
        let overlap = number::<i64>(env, "ORDER_SYNC_OVERLAP_SECONDS")?.unwrap_or(300);
        if !(0..=86_400).contains(&overlap) {
            return Err(ConfigError::Invalid {
                name: "ORDER_SYNC_OVERLAP_SECONDS",
                reason: "must be 0..=86400".into(),
            });
        }
        Ok(OrderSyncConfig {
            shops,
            overlap: Duration::seconds(overlap),
            page_size,
            max_window: Duration::hours(hours),
            default_provider: env
                .get("ORDER_DEFAULT_PROVIDER")
                .unwrap_or_else(|| "kdniao".into()),
        })
    }

    pub fn has(&self, platform: Platform) -> bool {
        self.shops.iter().any(|s| s.platform == platform)
    }
}

/// Clients and settings, built once per cold start.
pub struct Deps {
    pub shipments: DynamoStore,
    pub orders: DynamoOrderStore,
    pub fw199: Option<Fw199Client>,
    pub top: Option<TopClient>,
    pub cfg: OrderSyncConfig,
    /// Seals the receivers' phones before orders and parcels are written.
    pub vault: Vault,
}

impl Deps {
    pub async fn from_env() -> Result<Deps, Error> {
        let env = ProcessEnv;
        let base = Config::from_env(&env)?;
        let cfg = OrderSyncConfig::from_env(&env)?;
        // Credentials are required only for the platforms some shop uses.
        let fw199 = if cfg.has(Platform::Fw199) {
            Some(Fw199Config::from_env(&env)?)
        } else {
            None
        };
        let top = if cfg.has(Platform::Top) {
            Some(TopConfig::from_env(&env)?)
        } else {
            None
        };
        let sdk = parcelwatch::resilience::load_sdk_config().await;
        let http = reqwest::Client::builder().build()?;
        let vault = Vault::from_env(&sdk, &env)?;
        Ok(Deps::new(&sdk, &base, cfg, fw199, top, http, vault))
    }

    pub fn new(
        sdk: &aws_config::SdkConfig,
        base: &Config,
        cfg: OrderSyncConfig,
        fw199: Option<Fw199Config>,
        top: Option<TopConfig>,
        http: reqwest::Client,
        vault: Vault,
    ) -> Deps {
        let dynamo = aws_sdk_dynamodb::Client::new(sdk);
        Deps {
            shipments: DynamoStore::new(dynamo.clone(), &base.table_name, base.due_shards),
            orders: DynamoOrderStore::new(dynamo, &base.table_name),
            fw199: fw199.map(|c| Fw199Client::new(c, http.clone())),
            top: top.map(|c| TopClient::new(c, http)),
            cfg,
            vault,
        }
    }
}

/// The Lambda entry: the scheduled event's `time` is "now".
pub async fn lambda(
    deps: &Deps,
    event: LambdaEvent<EventBridgeEvent>,
) -> Result<SyncReport, Error> {
    handle(deps, event.payload).await
}

/// Handle one scheduled event (also what the local runner calls). Shops that failed are in the
/// report (and the logs); the invocation itself succeeds so that EventBridge does not replay it.
pub async fn handle(deps: &Deps, event: EventBridgeEvent) -> Result<SyncReport, Error> {
    let now = event.time.unwrap_or_else(chrono::Utc::now);
    Ok(run_sync(
        deps.fw199.as_ref(),
        deps.top.as_ref(),
        &deps.orders,
        &deps.shipments,
        &deps.vault,
        &deps.cfg,
        now,
    )
    .await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn config_reads_shops_and_defaults() {
        let cfg =
            OrderSyncConfig::from_env(&env(&[("ORDER_SHOPS", "fw199:kingdo, top:可拆卸aa ,")]))
                .unwrap();
        assert_eq!(
            cfg.shops,
            vec![
                ShopSpec {
                    platform: Platform::Fw199,
                    shop: "kingdo".into()
                },
                ShopSpec {
                    platform: Platform::Top,
                    shop: "可拆卸aa".into()
                },
            ]
        );
        assert_eq!(cfg.overlap, Duration::seconds(300));
        assert_eq!(cfg.max_window, Duration::hours(24));
        assert_eq!(cfg.page_size, None);
        assert_eq!(cfg.default_provider, "kdniao");

        for bad in [
            ("ORDER_SHOPS", "tmall:x"),
            ("ORDER_SHOPS", "kingdo"),
            ("ORDER_SHOPS", "top:"),
            ("ORDER_SYNC_PAGE_SIZE", "0"),
            ("ORDER_SYNC_MAX_WINDOW_HOURS", "0"),
            ("ORDER_SYNC_OVERLAP_SECONDS", "-5"),
        ] {
            assert!(
                OrderSyncConfig::from_env(&env(&[bad])).is_err(),
                "{bad:?} accepted"
            );
        }
        let cfg = OrderSyncConfig::from_env(&env(&[
            ("ORDER_SYNC_PAGE_SIZE", "50"),
            ("ORDER_SYNC_OVERLAP_SECONDS", "0"),
        ]))
        .unwrap();
        assert_eq!((cfg.page_size, cfg.overlap), (Some(50), Duration::zero()));
        assert!(cfg.shops.is_empty());
    }
}
