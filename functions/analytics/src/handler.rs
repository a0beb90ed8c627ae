//! Stream batch → shipment changes → aggregates, each change counted once.

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use parcelwatch::domain::stats::AggregateUpdate;
use parcelwatch::domain::Shipment;
use parcelwatch::store::analytics::{AnalyticsStore, Counted};
use parcelwatch::store::StoreError;

pub struct Analytics<A> {
    pub store: A,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("stream image does not decode: {0}")]
    BadImage(String),
    #[error("aggregates: {0}")]
    Store(#[from] StoreError),
}

/// Count every record of the batch; report the first failure so the stream retries from there
/// (records of a shard are retried in order; the once-per-version rule makes the redelivery of
/// the records before it harmless). A record that keeps failing ends in the on-failure queue
/// after the mapping's retries.
pub async fn handle_batch<A: AnalyticsStore>(
    a: &Analytics<A>,
    event: Event,
) -> DynamoDbEventResponse {
    parcelwatch::store::record::each_in_order(&event, |record| Box::pin(handle_record(a, record)))
        .await
}

fn decode(image: &serde_dynamo::Item) -> Result<Option<Shipment>, RecordError> {
    parcelwatch::store::record::shipment_in_image(image).map_err(RecordError::BadImage)
}

/// A shipment head (`pk = SHIP#…`, `sk = META`); the filter passes only these, but a mapping
/// without it must not count orders or trace lines.
fn is_meta(record: &EventRecord) -> bool {
    parcelwatch::store::record::is_shipment_head(&record.change.keys)
}

async fn handle_record<A: AnalyticsStore>(
    a: &Analytics<A>,
    record: &EventRecord,
) -> Result<(), RecordError> {
    if record.event_name == "REMOVE" || !is_meta(record) {
        return Ok(());
    }
    let Some(new) = decode(&record.change.new_image)? else {
        return Ok(());
    };
    let old = decode(&record.change.old_image)?;
    let update = AggregateUpdate::between(old.as_ref(), &new);
    if update.is_empty() {
        return Ok(());
    }
    let counted = a.store.count(&new.id, new.version, &update).await?;
    let finished = update.finished.as_ref();
    tracing::info!(
        shipment = %new.id,
        version = new.version,
        counted = ?counted,
        stages = update.stages.len(),
        finished = finished.is_some(),
        delivered = finished.is_some_and(|f| f.delivered),
        origin = finished.map(|f| f.key.origin.as_str()).unwrap_or(""),
        destination = finished.map(|f| f.key.destination.as_str()).unwrap_or(""),
        "aggregates"
    );
    if counted == Counted::AlreadyCounted {
        parcelwatch::metrics::count("AnalyticsRedelivered", &[]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;
    use parcelwatch::domain::Status;
    use parcelwatch::store::analytics::MemoryAnalytics;

    fn event(json: &str) -> Event {
        serde_json::from_str(json).expect("sample event")
    }

    const DELIVERED: &str = include_str!("../../../events/analytics/delivered.json");
    const MIXED: &str = include_str!("../../../events/analytics/mixed-batch.json");

    fn analytics() -> Analytics<MemoryAnalytics> {
        Analytics {
            store: MemoryAnalytics::default(),
        }
    }

    #[tokio::test]
    async fn a_delivery_counts_on_its_route_once_even_when_redelivered() {
        let a = analytics();
        for _ in 0..3 {
            let r = handle_batch(&a, event(DELIVERED)).await;
            assert!(r.batch_item_failures.is_empty());
        }
        let h = a.store.load_history().await.unwrap();
        let r = h.route("YTO", Some("浙江"), Some("北京"));
        assert_eq!((r.finished, r.delivered, r.exceptions), (1, 1, 0));
        // 2026-11-22T11:30 first scan → 2026-11-24T09:41 signed: 46 h 11 min.
        let (p50, n) = h
            .delivery_time_quantile("YTO", Some("浙江"), Some("北京"), 0.5)
            .unwrap();
        assert_eq!(n, 1);
        let exact = Duration::hours(46) + Duration::minutes(11);
        assert!(
            (p50 - exact).num_minutes().abs() < exact.num_minutes() / 10,
            "{p50}"
        );
        // Out for delivery 08:00 → delivered 10:00, and one quiet gap 07:52 → 09:41.
        let st = &h.stages[&("YTO".to_string(), Status::OutForDelivery)];
        assert_eq!(st.time_in_stage.total(), 1);
        assert_eq!(st.quiet_gap.total(), 1);
    }

    #[tokio::test]
    async fn a_mixed_batch_skips_trace_lines_and_counts_each_change() {
        let a = analytics();
        let r = handle_batch(&a, event(MIXED)).await;
        assert!(r.batch_item_failures.is_empty());
        let h = a.store.load_history().await.unwrap();
        // The in-transit change: one 6 h gap, no stage change.
        let transit = &h.stages[&("YTO".to_string(), Status::InTransit)];
        assert_eq!(transit.quiet_gap.total(), 1);
        assert_eq!(transit.time_in_stage.total(), 0);
        let (gap, _) = h.quiet_gap_quantile("YTO", Status::InTransit, 0.5).unwrap();
        assert!((gap - Duration::hours(6)).num_minutes().abs() < 40, "{gap}");
        assert_eq!(h.route("YTO", None, None).delivered, 1);
    }

    #[tokio::test]
    async fn an_undecodable_image_fails_from_that_record_on() {
        let a = analytics();
        let bad = MIXED.replacen(
            "\"status\": {\n            \"S\": \"InTransit\"",
            "\"status\": {\n            \"S\": \"Teleported\"",
            1,
        );
        assert_ne!(bad, MIXED, "the sample holds an InTransit image");
        let r = handle_batch(&a, event(&bad)).await;
        assert_eq!(r.batch_item_failures.len(), 1);
        assert_eq!(
            r.batch_item_failures[0].item_identifier.as_deref(),
            Some("200000000000000000002")
        );
        // Nothing after the failed record was counted.
        assert_eq!(
            a.store
                .load_history()
                .await
                .unwrap()
                .route("YTO", None, None)
                .finished,
            0
        );
    }

    /// A store that fails every write.
    struct Down;
    impl AnalyticsStore for Down {
        async fn count(
            &self,
            _: &parcelwatch::domain::ShipmentId,
            _: u64,
            _: &AggregateUpdate,
        ) -> Result<Counted, StoreError> {
            Err(StoreError::Retryable("throttled".into()))
        }
        async fn load_history(
            &self,
        ) -> Result<parcelwatch::domain::stats::HistorySnapshot, StoreError> {
            Err(StoreError::Retryable("throttled".into()))
        }
        async fn load_carrier_history(
            &self,
            _: &str,
        ) -> Result<parcelwatch::domain::stats::HistorySnapshot, StoreError> {
            Err(StoreError::Retryable("throttled".into()))
        }
    }

    #[tokio::test]
    async fn a_store_failure_reports_the_record_for_a_retry() {
        let r = handle_batch(&Analytics { store: Down }, event(DELIVERED)).await;
        assert_eq!(r.batch_item_failures.len(), 1);
        assert_eq!(
            r.batch_item_failures[0].item_identifier.as_deref(),
            Some("200000000000000000001")
        );
    }
}
