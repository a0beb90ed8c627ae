//! Kuaidi100 subscription answer (`returnCode`, `message`) → subscribed or classified error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parcelwatch::providers::kuaidi100::parse_subscribe_response;
use parcelwatch_fuzz::text;

fuzz_target!(|data: &[u8]| {
    let body = text(data);
    match parse_subscribe_response(&body) {
        Ok(s) => assert_eq!(s.provider, "kuaidi100"),
        Err(e) => {
            let _ = e.is_retryable();
        }
    }
});
