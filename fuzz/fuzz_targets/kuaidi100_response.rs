//! Kuaidi100 real-time query answer → normalized snapshot (or its classified error).
#![no_main]

use libfuzzer_sys::fuzz_target;
use parcelwatch::providers::kuaidi100::{decode_query_response, map_state, state_name};
use parcelwatch_fuzz::{check_snapshot, text};

fuzz_target!(|data: &[u8]| {
    let body = text(data);
    let _ = map_state(&body, Some(&body));
    let _ = state_name(&body);
    match decode_query_response(&body) {
        Ok(snap) => check_snapshot(&snap),
        Err(e) => {
            let _ = e.is_retryable();
        }
    }
});
