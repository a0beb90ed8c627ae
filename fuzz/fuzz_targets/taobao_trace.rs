//! Taobao TOP logistics trace search answer → transit infos → the parcel's snapshot.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parcelwatch::providers::taobao::{
    answer_json, decode_response, map_action, map_status, parse_response, select_for_waybill,
    to_snapshot,
};
use parcelwatch_fuzz::{check_snapshot, text};

fuzz_target!(|data: &[u8]| {
    let body = text(data);
    let _ = map_status(&body);
    let _ = map_action(&body);
    if let Ok(snap) = parse_response(&body, "4083720491274859", "YT7521868613427") {
        check_snapshot(&snap);
    }
    let Ok(infos) = decode_response(&body) else {
        return;
    };
    for info in &infos {
        check_snapshot(&to_snapshot(info));
        let _ = answer_json(info);
    }
    // Select by each info's own trade and waybill: always one of them, or a classified error.
    for info in infos.clone() {
        let tid = info.tid.clone().unwrap_or_default();
        let number = info.out_sid.clone().unwrap_or_default();
        if let Ok(chosen) = select_for_waybill(infos.clone(), &tid, &number) {
            check_snapshot(&to_snapshot(&chosen));
        }
    }
});
