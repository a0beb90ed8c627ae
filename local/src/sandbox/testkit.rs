//! What the sandbox's test modules share: a fixed start time, a sandbox on a simulated clock,
//! and a trace query.

use super::{Sandbox, SandboxConfig};
use crate::clock::SimClock;
use chrono::{DateTime, TimeZone, Utc};
use parcelwatch::domain::{PhoneNumber, ShipmentId};
use parcelwatch::providers::TraceQuery;
use std::sync::Arc;

pub(crate) fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 2, 0, 0)
        .single()
        .expect("valid test time")
}

pub(crate) async fn sandbox(seed: u64) -> (Sandbox, SimClock) {
    let clock = SimClock::new(t0());
    let cfg = SandboxConfig {
        seed,
        ..SandboxConfig::default()
    };
    let sb = Sandbox::start(cfg, Arc::new(clock.clone()))
        .await
        .expect("sandbox starts");
    (sb, clock)
}

pub(crate) fn query(carrier: &str, number: &str, phone: Option<&str>) -> TraceQuery {
    TraceQuery {
        id: ShipmentId::parse(carrier, number).expect("valid id"),
        phone: phone.map(|p| (&PhoneNumber::parse(p).expect("valid phone")).into()),
        order_ref: None,
    }
}
