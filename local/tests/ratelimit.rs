//! The provider token bucket on a real DynamoDB API (moto), provisioned from template.yaml like
//! every other local resource: many workers, each with its own SDK client and its own bucket
//! handle (as separate Lambda containers have), share one rate.

use chrono::{DateTime, Utc};
use parcelwatch::resilience::{Acquire, DynamoBucket, Jitter, RateLimiter, RateLimits};
use parcelwatch_local::stack::{sdk_config_for, LocalStack};
use std::time::Duration;

const WORKERS: usize = 8;
const RATE: f64 = 5.0;
const BURST: u32 = 5;
const RUN: Duration = Duration::from_secs(4);

/// One worker: take tokens as fast as the bucket allows for `RUN`, sleeping the stated wait
/// (plus up to as much again of jitter, as callers of a shared limiter should) when it is empty. Returns the grants and the earliest and latest `now` it asked with.
async fn worker(endpoint: String, table: String) -> (u32, DateTime<Utc>, DateTime<Utc>, u32) {
    let client = aws_sdk_dynamodb::Client::new(&sdk_config_for(&endpoint));
    let limits = RateLimits::parse(&format!("kdniao={RATE}/s:{BURST}")).unwrap();
    let bucket = DynamoBucket::new(client, table, limits);
    let mut jitter = Jitter::from_entropy();
    let started = std::time::Instant::now();
    let (mut granted, mut waits) = (0, 0);
    let first = Utc::now();
    let mut last = first;
    while started.elapsed() < RUN {
        last = Utc::now();
        match bucket.acquire("kdniao", last).await.unwrap() {
            Acquire::Granted => granted += 1,
            Acquire::Wait(w) => {
                waits += 1;
                assert!(w <= Duration::from_millis(1000 / RATE as u64 + 1), "{w:?}");
                tokio::time::sleep(w + jitter.full(w)).await;
            }
        }
    }
    (granted, first, last, waits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_workers_share_one_bucket_in_dynamodb() {
    let stack = LocalStack::start_shared().await.unwrap();
    let table = stack
        .function_env("tracker")
        .and_then(|env| env.get("RATE_LIMIT_TABLE"))
        .cloned()
        .expect("the tracker's RATE_LIMIT_TABLE from template.yaml");
    let endpoint = stack.endpoint.clone();

    let runs = futures::future::join_all(
        (0..WORKERS).map(|_| tokio::spawn(worker(endpoint.clone(), table.clone()))),
    )
    .await;
    let runs: Vec<_> = runs.into_iter().map(Result::unwrap).collect();
    let granted: u32 = runs.iter().map(|r| r.0).sum();
    let waits: u32 = runs.iter().map(|r| r.3).sum();
    let first = runs.iter().map(|r| r.1).min().unwrap();
    let last = runs.iter().map(|r| r.2).max().unwrap();
    let span = (last - first).num_milliseconds() as f64 / 1000.0;
    let ceiling = (RATE * span).floor() as u32 + BURST;
    println!(
        "{WORKERS} workers, {span:.3} s: {granted} tokens granted (ceiling rate x time + burst = \
         {ceiling}), {waits} waits, per worker {:?}",
        runs.iter().map(|r| r.0).collect::<Vec<_>>()
    );
    assert!(granted <= ceiling, "{granted} > {ceiling}");
    assert!(
        f64::from(granted) >= 0.8 * f64::from(ceiling),
        "{granted} is far below {ceiling}: the workers starve each other"
    );
    assert!(waits > granted, "demand exceeded the rate ({waits} waits)");
    assert!(
        runs.iter().filter(|r| r.0 > 0).count() >= WORKERS / 2,
        "tokens reach most workers"
    );

    // The bucket is one item, and it is in the rate-limit table (not the main table).
    let client = aws_sdk_dynamodb::Client::new(&sdk_config_for(&endpoint));
    let scan = client.scan().table_name(&table).send().await.unwrap();
    let keys: Vec<String> = scan
        .items()
        .iter()
        .filter_map(|i| i.get("pk").and_then(|v| v.as_s().ok()).cloned())
        .collect();
    assert_eq!(keys, ["RATE#kdniao"]);
}
