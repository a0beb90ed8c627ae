//! Helpers shared by the fuzz targets: cheap invariants on parser output and a tiny executor.

use chrono::{DateTime, TimeZone, Utc};
use parcelwatch::domain::{identify, TraceSnapshot};
use std::future::Future;

/// A fixed "now", so a run is reproducible (parsers that need a clock take it as an argument).
pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0)
        .single()
        .unwrap_or_default()
}

/// Fuzz input as text: parsers take `&str`, so invalid UTF-8 is replaced rather than skipped.
pub fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(data)
}

/// Invariants every normalized snapshot keeps: identifying its lines sorts them by key, drops
/// only repeats of one identity, and never dates a line beyond now plus the tolerance.
pub fn check_snapshot(snap: &TraceSnapshot) {
    let keyed = identify(&snap.events, now());
    let mut ids: Vec<_> = snap.events.iter().map(|e| e.line_id()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(keyed.len(), ids.len(), "identifying lost or invented lines");
    for pair in keyed.windows(2) {
        let (a, b) = (&pair[0].0, &pair[1].0);
        assert!(a < b, "event keys not strictly ascending: {a:?} then {b:?}");
    }
    for (key, event) in &keyed {
        assert_eq!(key.time, event.time);
        assert!(event.time <= now() + parcelwatch::domain::FUTURE_TOLERANCE);
        let _ = key.sk();
    }
    let _ = snap.status.as_str();
}

/// Run a future to completion on a fresh current-thread runtime (the fakes never sleep long).
pub fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("current-thread runtime")
        .block_on(f)
}

/// In-memory stand-ins for the functions' AWS and provider dependencies: the event targets drive
/// the real handlers, and these never fail, so what is fuzzed is the event decoding and routing.
pub mod fakes {
    use chrono::{DateTime, Utc};
    use parcelwatch::domain::order::Platform;
    use parcelwatch::domain::{
        PhoneNumber, Priority, Recipient, Shipment, ShipmentId, Status, TraceEvent, TraceSnapshot,
    };
    use parcelwatch::notify::{PublishError, Publisher};
    use parcelwatch::orders::{OrderError, OrderPage, OrderSource};
    use parcelwatch::providers::{ProviderError, TraceProvider, TraceQuery};
    use parcelwatch::queue::{DeadLetters, MessageSink, Outgoing, QueueError};
    use parcelwatch::store::MemoryStore;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A store holding registered shipments for the waybills of the sample events, so that a
    /// mutated sample still reaches the provider and the write path.
    pub fn seeded_store(now: DateTime<Utc>) -> MemoryStore {
        let store = MemoryStore::new(4);
        for (carrier, number) in [
            ("YTO", "YT1000000000001"),
            ("SF", "SF1000000000002"),
            ("YTO", "YT7521868613427"),
            ("ZTO", "73100000000001"),
        ] {
            if let Ok(id) = ShipmentId::parse(carrier, number) {
                store.insert(Shipment::register(
                    id,
                    Priority::Normal,
                    "kdniao",
                    Recipient::default(),
                    None,
                    now,
                ));
            }
        }
        store
    }

    /// Answers every query with one in-transit line at the query's own time.
    pub struct FixedProvider(pub DateTime<Utc>);
    impl TraceProvider for FixedProvider {
        fn name(&self) -> &'static str {
            "kdniao"
        }
        async fn query(&self, _q: &TraceQuery) -> Result<TraceSnapshot, ProviderError> {
            Ok(TraceSnapshot {
                status: Status::InTransit,
                sub_status: None,
                events: vec![TraceEvent {
                    time: self.0,
                    description: "快件已到达【杭州转运中心】".into(),
                    location: Some("杭州市".into()),
                    status: Some(Status::InTransit),
                    raw_code: Some("2".into()),
                    claimed_time: None,
                }],
            })
        }
    }

    /// Counts dead-lettered messages.
    #[derive(Default)]
    pub struct CountingDlq(pub AtomicUsize);
    impl DeadLetters for CountingDlq {
        async fn dead_letter(&self, _body: &str, _reason: &str) -> Result<(), QueueError> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
    }

    /// Accepts every entry; counts them.
    #[derive(Default)]
    pub struct CountingSink(pub AtomicUsize);
    impl MessageSink for CountingSink {
        async fn send_batch(&self, entries: &[Outgoing]) -> Result<Vec<String>, QueueError> {
            assert!(entries.len() <= 10, "SendMessageBatch takes at most 10");
            self.0.fetch_add(entries.len(), Ordering::Relaxed);
            Ok(Vec::new())
        }
    }

    /// Accepts every SMS and topic message.
    #[derive(Default)]
    pub struct OkPublisher;
    impl Publisher for OkPublisher {
        async fn sms(&self, _to: &PhoneNumber, _text: &str) -> Result<String, PublishError> {
            Ok("sms-1".into())
        }
        async fn topic(
            &self,
            _arn: &str,
            _subject: &str,
            _json: &str,
        ) -> Result<String, PublishError> {
            Ok("topic-1".into())
        }
    }

    /// An order platform with no orders.
    pub struct EmptySource(pub Platform);
    impl OrderSource for EmptySource {
        fn platform(&self) -> Platform {
            self.0
        }
        async fn page(
            &self,
            _shop: &str,
            from: DateTime<Utc>,
            to: DateTime<Utc>,
            _page_no: u32,
            _page_size: u32,
        ) -> Result<OrderPage, OrderError> {
            assert!(from <= to, "window ends before it starts: {from} > {to}");
            Ok(OrderPage {
                orders: Vec::new(),
                has_next: false,
                total: Some(0),
            })
        }
    }
}
