//! Kdniao 1002/8001 query answer → normalized snapshot (decode, then classify and normalize).
#![no_main]

use libfuzzer_sys::fuzz_target;
use parcelwatch::domain::Status;
use parcelwatch::providers::kdniao::{decode_response, parse_accept_time, response_to_snapshot};
use parcelwatch_fuzz::{check_snapshot, now, text};

fuzz_target!(|data: &[u8]| {
    let body = text(data);
    let _ = parse_accept_time(&body);
    let Ok(resp) = decode_response(&body) else {
        return;
    };
    match response_to_snapshot(&resp, now()) {
        Ok(snap) => {
            check_snapshot(&snap);
            assert!(snap.events.len() <= resp.traces.len(), "events invented");
            if !resp.success {
                // A failed answer is an error, or "no trace yet": Pending without events.
                assert_eq!(snap.status, Status::Pending);
                assert!(snap.events.is_empty());
            }
        }
        Err(e) => {
            let _ = e.is_retryable();
        }
    }
});
