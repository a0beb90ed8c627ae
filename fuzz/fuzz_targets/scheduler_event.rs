//! scheduler: EventBridge scheduled event JSON → its `time` as "now" (what `scheduler::handle`
//! does) → the real due-index/enqueue/watermark run over an in-memory store with due shipments.
#![no_main]

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use libfuzzer_sys::fuzz_target;
use parcelwatch::config::SchedulerConfig;
use parcelwatch_fuzz::fakes::{seeded_store, CountingSink};
use parcelwatch_fuzz::{block_on, now};
use scheduler::run_schedule;
use std::sync::atomic::Ordering;
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    let Ok(event) = serde_json::from_slice::<EventBridgeEvent>(data) else {
        return;
    };
    let at = event.time.unwrap_or_else(now);
    // Registered a day before the default "now": due unless the event's time is earlier.
    let store = seeded_store(now() - chrono::Duration::days(1));
    let sink = CountingSink::default();
    let cfg = SchedulerConfig {
        queue_url: "https://sqs.us-east-1.amazonaws.com/123456789012/parcelwatch-tracking".into(),
        max_enqueue: 3,
        lease: Duration::from_secs(900),
    };
    if let Ok(report) = block_on(run_schedule(&store, &sink, &cfg, at)) {
        assert!(report.due_found + report.stuck <= cfg.max_enqueue);
        assert!(report.enqueued <= report.due_found + report.stuck);
        assert_eq!(report.enqueued, sink.0.load(Ordering::Relaxed));
        // A second run at the same time is a repeated tick: nothing is sent again.
        if let Ok(again) = block_on(run_schedule(&store, &sink, &cfg, at)) {
            assert_eq!(again.enqueued, 0);
        }
    }
});
