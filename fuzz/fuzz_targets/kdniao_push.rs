//! Kdniao push (RequestType 101/102): the form body as received, and — so that the fuzzer gets
//! past the signature — the same bytes as a correctly signed `RequestData` envelope.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parcelwatch::providers::kdniao::data_sign;
use parcelwatch::providers::kdniao_push::verify_push;
use parcelwatch::providers::push::{form_encode, pct_decode, pct_encode, PushBatch, PushError};
use parcelwatch_fuzz::{check_snapshot, text};

const EBUSINESS_ID: &str = "1000001";
const APP_KEY: &str = "sandbox-appkey-0001";

fn check(batch: &PushBatch) {
    for update in &batch.updates {
        check_snapshot(&update.snapshot);
    }
}

fuzz_target!(|data: &[u8]| {
    let input = text(data);

    // Encoding round trip: what we encode, the form parser decodes back.
    assert_eq!(pct_decode(&pct_encode(&input)).as_deref(), Some(&*input));

    // 1. The body exactly as received.
    if let Ok(batch) = verify_push(&input, APP_KEY, EBUSINESS_ID) {
        check(&batch);
    }

    // 2. The input as RequestData, signed: the JSON envelope and items are what is fuzzed.
    for request_type in ["101", "102"] {
        let sign = data_sign(&input, APP_KEY);
        let form = form_encode(&[
            ("RequestData", input.as_ref()),
            ("RequestType", request_type),
            ("DataSign", sign.as_str()),
        ]);
        match verify_push(&form, APP_KEY, EBUSINESS_ID) {
            Ok(batch) => check(&batch),
            // A correct signature is refused only when the data itself looks encoded once more.
            Err(PushError::BadSignature) => assert!(
                input
                    .get(..3)
                    .is_some_and(|p| p.eq_ignore_ascii_case("%7B")),
                "a correctly signed push was refused"
            ),
            Err(_) => {}
        }
    }
});
