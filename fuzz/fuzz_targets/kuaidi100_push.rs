//! Kuaidi100 push (form fields `param`, `sign`): the form body as received, and — so that the
//! fuzzer gets past the signature — the same bytes as a correctly signed `param` JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parcelwatch::providers::kuaidi100::{build_push_form, verify_push};
use parcelwatch::providers::push::{PushBatch, PushError};
use parcelwatch_fuzz::{check_snapshot, text};

const SALT: &str = "sandbox-salt-0001";

fn check(batch: &PushBatch) {
    for update in &batch.updates {
        check_snapshot(&update.snapshot);
    }
}

fuzz_target!(|data: &[u8]| {
    let input = text(data);

    // 1. The body exactly as received.
    if let Ok(batch) = verify_push(&input, SALT) {
        check(&batch);
    }

    // 2. The input as `param`, signed: the push JSON is what is fuzzed.
    let form = build_push_form(&input, SALT);
    match verify_push(&form, SALT) {
        Ok(batch) => check(&batch),
        Err(PushError::BadSignature) => panic!("a correctly signed push was refused"),
        Err(_) => {}
    }
});
