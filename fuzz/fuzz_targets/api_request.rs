//! api: API Gateway v2 HTTP event JSON → the real router (path, stage, method, x-api-key, body
//! base64/size/UTF-8, registration JSON, push form and signature) over an in-memory store, with
//! the sample events' keys configured. No AWS call and no carrier recognition.
#![no_main]

use api::register::parse_registration;
use api::{handle, Api, ApiConfig};
use aws_lambda_events::event::apigw::ApiGatewayV2httpRequest;
use libfuzzer_sys::fuzz_target;
use parcelwatch_fuzz::fakes::seeded_store;
use parcelwatch_fuzz::{block_on, now, text};
use std::collections::HashMap;

fn config() -> ApiConfig {
    let env: HashMap<String, String> = [
        ("API_KEYS", "test-key-0001,test-key-0002"),
        ("KDNIAO_EBUSINESS_ID", "1000001"),
        ("KDNIAO_APP_KEY", "sandbox-appkey-0001"),
        ("KUAIDI100_SALT", "sandbox-salt-0001"),
        ("API_CARRIER_RECOGNITION", "off"),
        ("API_MAX_BULK", "20"),
        ("API_MAX_BODY_BYTES", "65536"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    match ApiConfig::from_env(&env) {
        Ok(cfg) => cfg,
        Err(e) => panic!("fuzz api config is invalid: {e}"),
    }
}

fuzz_target!(|data: &[u8]| {
    // The bytes as a registration body on their own (one object or a bulk list).
    let _ = parse_registration(&text(data), 20);

    let Ok(req) = serde_json::from_slice::<ApiGatewayV2httpRequest>(data) else {
        return;
    };
    let mut api = Api::new(seeded_store(now()), config());
    api.vault = parcelwatch::crypto::Vault::ephemeral();
    let resp = block_on(handle(&api, req, now()));
    assert!(
        (200..=599).contains(&resp.status_code),
        "status {} is not an HTTP answer",
        resp.status_code
    );
});
