//! fw199 "enhanced order list" page answer → orders, `has_next`, total.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parcelwatch::orders::fw199::parse_response;
use parcelwatch::orders::trade_to_json;
use parcelwatch_fuzz::text;

fuzz_target!(|data: &[u8]| {
    let body = text(data);
    // A normal page, and the extremes of the paging arithmetic.
    for (page_no, page_size) in [(1, 100), (0, 0), (u32::MAX, u32::MAX), (2, 1)] {
        if let Ok(page) = parse_response("fuzz-shop", &body, page_no, page_size) {
            for order in &page.orders {
                let _ = trade_to_json(order);
            }
        }
    }
});
