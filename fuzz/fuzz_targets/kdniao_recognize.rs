//! Kdniao 2002 carrier-recognition answer → our carriers, then the carrier choice.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parcelwatch::domain::{detect, TrackingNumber};
use parcelwatch::providers::recognize::{parse_kdniao_recognition, resolve_carrier};
use parcelwatch_fuzz::text;

fuzz_target!(|data: &[u8]| {
    let body = text(data);
    let Ok(number) = TrackingNumber::parse("YT7521868613427") else {
        return;
    };
    if let Ok(carriers) = parse_kdniao_recognition(&body, &number) {
        let rules = detect(&number);
        if let Some(chosen) = resolve_carrier(&rules, &carriers) {
            // The choice comes from the rules or from the recognized carriers, nowhere else.
            assert!(carriers.contains(&chosen) || rules.iter().any(|c| c.carrier == chosen));
        }
    }
});
