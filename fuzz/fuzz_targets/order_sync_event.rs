//! order-sync: EventBridge scheduled event JSON → its `time` as "now" (what `order_sync::handle`
//! does) → the real sync of one fw199 and one TOP shop against empty platforms, in memory.
#![no_main]

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use libfuzzer_sys::fuzz_target;
use order_sync::{run_sync, OrderSyncConfig, ShopSpec};
use parcelwatch::domain::order::Platform;
use parcelwatch::store::orders::MemoryOrderStore;
use parcelwatch::store::MemoryStore;
use parcelwatch_fuzz::fakes::EmptySource;
use parcelwatch_fuzz::{block_on, now, text};
use std::collections::HashMap;

fuzz_target!(|data: &[u8]| {
    // The bytes as the ORDER_SHOPS setting too: the other text order-sync parses.
    let shops = text(data);
    let env: HashMap<String, String> = HashMap::from([("ORDER_SHOPS".into(), shops.to_string())]);
    if let Ok(cfg) = OrderSyncConfig::from_env(&env) {
        assert!(cfg.shops.iter().all(|s| !s.shop.is_empty()));
    }

    let Ok(event) = serde_json::from_slice::<EventBridgeEvent>(data) else {
        return;
    };
    let at = event.time.unwrap_or_else(now);
    let env: HashMap<String, String> =
        HashMap::from([("ORDER_SHOPS".into(), "fw199:kingdo,top:fuzz-shop".into())]);
    let Ok(cfg) = OrderSyncConfig::from_env(&env) else {
        panic!("the fixed ORDER_SHOPS is valid");
    };
    let specs: Vec<ShopSpec> = cfg.shops.clone();
    let report = block_on(run_sync(
        Some(&EmptySource(Platform::Fw199)),
        Some(&EmptySource(Platform::Top)),
        &MemoryOrderStore::new(),
        &MemoryStore::new(4),
        &parcelwatch::crypto::Vault::ephemeral(),
        &cfg,
        at,
    ));
    assert_eq!(report.shops.len(), specs.len());
});
