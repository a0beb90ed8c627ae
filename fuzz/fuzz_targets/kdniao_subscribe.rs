//! Kdniao 8008 subscription answer → subscribed / already subscribed / classified error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parcelwatch::providers::kdniao_push::parse_subscribe_response;
use parcelwatch_fuzz::text;

fuzz_target!(|data: &[u8]| {
    let body = text(data);
    match parse_subscribe_response(&body) {
        Ok(s) => assert_eq!(s.provider, "kdniao"),
        Err(e) => {
            let _ = e.is_retryable();
        }
    }
});
