//! Delivery analytics on the local stack: parcels travel the simulator's journeys through the
//! real pipeline (moto's DynamoDB and Streams through the real SDK, the Kdniao sandbox over
//! HTTP), the analytics function reads the table stream through its own mapping, and its
//! aggregates are compared with the simulator's truth: route counts, delivery-time quantiles,
//! exception rates; then the whole stream is delivered again and nothing may change.

use chrono::{DateTime, Duration, Utc};
use parcelwatch::domain::eta::is_on_its_way;
use parcelwatch::domain::geo::province_of;
use parcelwatch::domain::stats::{bucket_of, exact_quantile, HistorySnapshot, UNKNOWN_PLACE};
use parcelwatch::domain::Status;
use parcelwatch::store::analytics::{AnalyticsStore, DynamoAnalytics};
use parcelwatch_local::pipeline::{Parcel, Pipeline, PipelineOptions};
use parcelwatch_local::provision::PhysicalResource;
use std::collections::{BTreeMap, HashMap};

/// What the simulator says about one finished parcel.
struct Truth {
    carrier: String,
    origin: String,
    destination: String,
    delivered: bool,
    exception: bool,
    /// First scan → signed, when delivered.
    delivery_time: Option<Duration>,
}

fn at_destination(s: Status) -> bool {
    matches!(
        s,
        Status::ArrivedAtDestinationCity
            | Status::OutForDelivery
            | Status::AvailableForPickup
            | Status::DeliveryFailed
            | Status::Delivered
    )
}

/// The truth of a parcel that finished by `now` (None while still on its way).
fn truth(p: &Parcel, now: DateTime<Utc>) -> Option<Truth> {
    let statuses = p.journey.truth_statuses(now);
    let (_, last) = *statuses.last()?;
    if !last.is_terminal() {
        return None;
    }
    let steps = &p.journey.steps;
    let place = |at: DateTime<Utc>| {
        steps
            .iter()
            .find(|s| s.at == at)
            .and_then(|s| province_of(&s.location))
            .map_or(UNKNOWN_PLACE.to_string(), |p| p.name.to_string())
    };
    let first = steps.first()?;
    let delivered_at = statuses
        .iter()
        .find(|(_, s)| *s == Status::Delivered)
        .map(|(at, _)| *at);
    Some(Truth {
        carrier: p.id.carrier.as_str().to_string(),
        origin: place(first.at),
        destination: statuses
            .iter()
            .find(|(_, s)| at_destination(*s))
            .map_or(UNKNOWN_PLACE.to_string(), |(at, _)| place(*at)),
        delivered: last == Status::Delivered,
        exception: statuses.iter().any(|(_, s)| *s == Status::Exception),
        delivery_time: delivered_at.map(|d| d - first.at),
    })
}

fn within_one_bucket(est: Duration, exact: Duration) -> bool {
    let b = |d: Duration| bucket_of(d.num_seconds() as f64 / 60.0) as i64;
    (b(est) - b(exact)).abs() <= 1
}

async fn get_json(p: &Pipeline, path_and_query: &str) -> serde_json::Value {
    let r = p
        .http
        .get(format!("{}{}", p.front.base_url(), path_and_query))
        .header("x-api-key", &p.api_key)
        .send()
        .await
        .expect("api answers");
    assert_eq!(r.status().as_u16(), 200, "{path_and_query}");
    r.json().await.expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_delivery_history_matches_the_simulator_and_counts_every_change_once() {
    let mut p = Pipeline::start(PipelineOptions {
        seed: 23,
        ..PipelineOptions::default()
    })
    .await
    .expect("local stack starts");
    let parcels = p
        .register_demo_parcels(28, Duration::hours(12))
        .await
        .expect("register");
    let store = DynamoAnalytics::new(p.dynamo.clone(), &p.stack.table_name);

    // 1. A day and a half in: every parcel still on its way has an ETA in its api view, never
    //    in the past, from some basis.
    for _ in 0..(36 * 6) {
        p.tick().await.expect("tick");
    }
    let now = p.now();
    let mut on_the_way = 0;
    for s in p.shipments().await.unwrap() {
        if !is_on_its_way(s.status) {
            continue;
        }
        on_the_way += 1;
        let v = get_json(
            &p,
            &format!(
                "/shipments/{}/{}",
                s.id.carrier.as_str(),
                s.id.number.as_str()
            ),
        )
        .await;
        let eta = &v["eta"];
        assert!(eta.is_object(), "{} ({}) has no ETA: {v}", s.id, s.status);
        let expected = parcelwatch::domain::parse_time(eta["expected_at"].as_str().unwrap())
            .expect("RFC 3339");
        let latest = parcelwatch::domain::parse_time(eta["latest_at"].as_str().unwrap()).unwrap();
        assert!(expected >= now && latest >= expected, "{}: {eta}", s.id);
        assert!(
            ["route", "origin", "carrier", "default"].contains(&eta["basis"].as_str().unwrap()),
            "{eta}"
        );
    }
    assert!(
        on_the_way > 0,
        "some parcels are still travelling after 36 h"
    );

    // 2. To the end: route counts equal the truth.
    p.run_until_settled(10).await.expect("run");
    let now = p.now();
    let truths: Vec<Truth> = parcels.iter().filter_map(|pc| truth(pc, now)).collect();
    assert!(truths.len() >= 20, "most parcels finish: {}", truths.len());
    let history = store.load_history().await.expect("history");
    let mut want: BTreeMap<(String, String, String), (u64, u64, u64)> = BTreeMap::new();
    for t in &truths {
        let e = want
            .entry((t.carrier.clone(), t.origin.clone(), t.destination.clone()))
            .or_default();
        e.0 += 1;
        e.1 += u64::from(t.delivered);
        e.2 += u64::from(t.exception);
    }
    let got: BTreeMap<(String, String, String), (u64, u64, u64)> = history
        .routes
        .iter()
        .map(|(k, r)| {
            (
                (k.carrier.clone(), k.origin.clone(), k.destination.clone()),
                (r.finished, r.delivered, r.exceptions),
            )
        })
        .collect();
    assert_eq!(got, want, "(finished, delivered, exceptions) per route");
    assert!(
        want.keys().all(|(_, o, _)| o != UNKNOWN_PLACE),
        "every origin known"
    );

    // 3. Delivery-time quantiles within one bucket of the exact ones, per carrier and overall;
    //    exception rates exact.
    let mut by_carrier: HashMap<&str, Vec<Duration>> = HashMap::new();
    for t in &truths {
        if let Some(d) = t.delivery_time {
            by_carrier.entry(t.carrier.as_str()).or_default().push(d);
        }
    }
    let all: Vec<Duration> = by_carrier.values().flatten().copied().collect();
    let mut merged = parcelwatch::domain::stats::RouteStats::default();
    for c in history.carriers() {
        merged.merge(&history.route(&c, None, None));
    }
    assert_eq!(merged.delivery.total(), all.len() as u64);
    for q in [0.5, 0.9] {
        let exact = exact_quantile(&all, q).unwrap();
        let est = merged.delivery.quantile(q).unwrap();
        assert!(
            within_one_bucket(est, exact),
            "overall q{q}: {est} vs {exact}"
        );
        for (carrier, times) in &by_carrier {
            let (est, n) = history
                .delivery_time_quantile(carrier, None, None, q)
                .expect("carrier history");
            assert_eq!(n, times.len() as u64, "{carrier}");
            let exact = exact_quantile(times, q).unwrap();
            assert!(
                within_one_bucket(est, exact),
                "{carrier} q{q}: {est} vs {exact}"
            );
        }
    }
    for carrier in by_carrier.keys() {
        let mine: Vec<&Truth> = truths.iter().filter(|t| t.carrier == *carrier).collect();
        let rate = mine.iter().filter(|t| t.exception).count() as f64 / mine.len() as f64;
        let got = history.route(carrier, None, None).exception_rate().unwrap();
        assert!((got - rate).abs() < 1e-9, "{carrier}: {got} vs {rate}");
    }
    // Quiet gaps were learned for transit (what stall detection reads).
    let gaps: u64 = history
        .carriers()
        .iter()
        .filter_map(|c| history.quiet_gap_quantile(c, Status::InTransit, 0.9))
        .map(|(_, n)| n)
        .sum();
    assert!(gaps > 0, "in-transit quiet gaps recorded");

    // 4. The api answers the same figures.
    for carrier in by_carrier.keys() {
        let v = get_json(&p, &format!("/analytics/routes?carrier={carrier}")).await;
        let r = history.route(carrier, None, None);
        assert_eq!(v["total"]["finished"], r.finished, "{carrier}");
        assert_eq!(v["total"]["delivered"], r.delivered, "{carrier}");
        assert_eq!(v["total"]["exceptions"], r.exceptions, "{carrier}");
        let p50 = r.delivery.quantile(0.5).unwrap();
        assert_eq!(
            v["total"]["delivery_time"]["p50_minutes"],
            (p50.num_seconds() as f64 / 60.0).round() as i64,
            "{carrier}"
        );
        let rows = v["routes"].as_array().unwrap();
        let want_rows = want.keys().filter(|(c, _, _)| c == carrier).count();
        assert_eq!(rows.len(), want_rows, "{carrier}");
    }
    let v = get_json(&p, "/analytics/routes").await;
    assert_eq!(v["total"]["finished"], merged.finished);
    let stages = get_json(&p, "/analytics/carriers/YTO/stages").await;
    assert!(!stages["stages"].as_array().unwrap().is_empty());

    // 5. The whole stream again (a recreated mapping from TRIM_HORIZON): nothing double counts.
    let replayed = p.replay_analytics().await.expect("replay");
    assert!(replayed > 100, "the stream was delivered again: {replayed}");
    let again: HistorySnapshot = store.load_history().await.expect("history");
    assert_eq!(again, history, "a redelivered stream adds nothing");

    // 6. Nothing was parked.
    let queue = match p.stack.resources.get("AnalyticsFailureQueue") {
        Some(PhysicalResource::Queue { url, .. }) => url.clone(),
        other => panic!("no analytics failure queue: {other:?}"),
    };
    assert_eq!(p.peek_queue(&queue).await.unwrap(), vec![]);
}
