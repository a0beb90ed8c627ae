//! Kuaidi100 carrier auto-recognition answer (a list of `comCode`s) → our carriers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parcelwatch::providers::recognize::parse_kuaidi100_auto;
use parcelwatch_fuzz::text;

fuzz_target!(|data: &[u8]| {
    let body = text(data);
    if let Ok(carriers) = parse_kuaidi100_auto(&body) {
        // Documented: known carriers only, no duplicates.
        for (i, c) in carriers.iter().enumerate() {
            assert!(!carriers[..i].contains(c), "duplicate carrier {c:?}");
        }
    }
});
