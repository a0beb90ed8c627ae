//! The provider token bucket on a real DynamoDB API (moto), provisioned from template.yaml like
//! every other local resource. Each `DynamoBucket` stands for one Lambda container (its own SDK
//! client, its own pool of tokens); the DynamoDB calls are counted on the wire by an SDK
//! interceptor, so the figures below are what the table would bill.

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use chrono::{DateTime, Utc};
use parcelwatch::resilience::{Acquire, DynamoBucket, Jitter, RateLimiter, RateLimits};
use parcelwatch_local::stack::{sdk_config_for, LocalStack};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// DynamoDB requests sent (every attempt), by operation (`PutItem`, `GetItem`, ...).
#[derive(Debug, Clone, Default)]
struct Calls(Arc<Mutex<BTreeMap<String, u64>>>);

impl Calls {
    fn of(&self, op: &str) -> u64 {
        self.0.lock().unwrap().get(op).copied().unwrap_or(0)
    }
}

impl Intercept for Calls {
    fn name(&self) -> &'static str {
        "CountDynamoDbCalls"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // `X-Amz-Target: DynamoDB_20120810.PutItem`
        let op = context
            .request()
            .headers()
            .get("x-amz-target")
            .and_then(|t| t.rsplit('.').next())
            .unwrap_or("?")
            .to_string();
        *self.0.lock().unwrap().entry(op).or_default() += 1;
        Ok(())
    }
}

/// One "container": its own client, counted, and its own bucket handle.
fn container(endpoint: &str, table: &str, spec: &str) -> (DynamoBucket, Calls) {
    let calls = Calls::default();
    let conf = aws_sdk_dynamodb::config::Builder::from(&sdk_config_for(endpoint))
        .interceptor(calls.clone())
        .build();
    let client = aws_sdk_dynamodb::Client::from_conf(conf);
    (
        DynamoBucket::new(client, table, RateLimits::parse(spec).unwrap()),
        calls,
    )
}

async fn stack_and_table() -> (LocalStack, String) {
    let stack = LocalStack::start_shared().await.unwrap();
    let table = stack
        .function_env("tracker")
        .and_then(|env| env.get("RATE_LIMIT_TABLE"))
        .cloned()
        .expect("the tracker's RATE_LIMIT_TABLE from template.yaml");
    (stack, table)
}

/// `n` callers of one container asking at the same moment, as the tracker's concurrent checks
/// do (futures of one task, like its `buffer_unordered`).
async fn at_once(bucket: &DynamoBucket, provider: &str, n: usize) -> Vec<Acquire> {
    let now = Utc::now();
    futures::future::join_all((0..n).map(|_| bucket.acquire(provider, now)))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_of_one_container_take_their_tokens_in_slices() {
    let (stack, table) = stack_and_table().await;
    // Slices (1 s of refill): kdniao 10, kuaidi100 10; bursts of 20 and 30.
    let (bucket, calls) = container(
        &stack.endpoint,
        &table,
        "kdniao=10/s:20,kuaidi100=10/s:30,taobao=40/s:40",
    );

    // 8 callers (TRACKER_CONCURRENCY), well within the burst: ceil(8/10) = 1 write.
    let answers = at_once(&bucket, "kdniao", 8).await;
    assert_eq!(answers, [Acquire::Granted; 8]);
    assert_eq!(calls.of("PutItem"), 1, "{calls:?}");
    assert_eq!(
        calls.of("GetItem"),
        1,
        "the container's first look at the item"
    );

    // 25 callers, slices of 10: ceil(25/10) = 3 writes at most.
    let answers = at_once(&bucket, "kuaidi100", 25).await;
    assert_eq!(answers, [Acquire::Granted; 25]);
    let writes = calls.of("PutItem") - 1;
    assert!(writes <= 3, "{writes} writes for 25 callers");
    let s = bucket.stats();
    assert_eq!((s.lost, s.contended, s.waits), (0, 0, 0), "{s:?}");

    // A sustained run like the tracker's: 8 callers, each taking a token and then "calling the
    // provider" for 300 ms, for 3 s: about 26 calls a second against a limit of 40/s.
    let before = calls.of("PutItem") + calls.of("GetItem");
    let started = std::time::Instant::now();
    let run = Duration::from_secs(3);
    let worker = || async {
        let (mut granted, mut waited) = (0u64, 0u64);
        while started.elapsed() < run {
            match bucket.acquire("taobao", Utc::now()).await.unwrap() {
                Acquire::Granted => {
                    granted += 1;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Acquire::Wait(w) => {
                    waited += 1;
                    tokio::time::sleep(w).await;
                }
            }
        }
        (granted, waited)
    };
    let runs = futures::future::join_all((0..8).map(|_| worker())).await;
    let granted: u64 = runs.iter().map(|r| r.0).sum();
    let waited: u64 = runs.iter().map(|r| r.1).sum();
    let dynamo = calls.of("PutItem") + calls.of("GetItem") - before;
    let s = bucket.stats();
    println!(
        "sustained: {granted} tokens in {:.1} s, {dynamo} DynamoDB calls ({:.3} per token), \
         {waited} waits; all phases: {s:?}, wire {calls:?}",
        started.elapsed().as_secs_f64(),
        dynamo as f64 / granted as f64
    );
    assert_eq!(waited, 0, "the rate was never reached");
    assert!(granted >= 60, "{granted}");
    assert!(
        dynamo * 8 <= granted,
        "{dynamo} calls for {granted} tokens: not even one write per 8 calls"
    );
    assert_eq!(
        (s.lost, s.contended),
        (0, 0),
        "a container never races itself"
    );
    // The counters agree with the wire.
    assert_eq!(s.writes, calls.of("PutItem"));
    assert_eq!(s.reads, calls.of("GetItem"));
}

/// One container's callers for `run`: take a token and "call the provider" for `call`, or sleep
/// the stated wait plus up to as much again of jitter, as the failover chain does. Returns the
/// tokens granted, the waits, and the earliest and latest `now` asked with.
async fn busy_container(
    bucket: &DynamoBucket,
    callers: usize,
    run: Duration,
    call: Duration,
) -> (u64, u64, DateTime<Utc>, DateTime<Utc>) {
    let started = std::time::Instant::now();
    let first = Utc::now();
    let runs = futures::future::join_all((0..callers).map(|_| async {
        let mut jitter = Jitter::from_entropy();
        let (mut granted, mut waits) = (0u64, 0u64);
        let mut last = first;
        while started.elapsed() < run {
            last = Utc::now();
            match bucket.acquire("kdniao", last).await.unwrap() {
                Acquire::Granted => {
                    granted += 1;
                    tokio::time::sleep(call).await;
                }
                Acquire::Wait(w) => {
                    waits += 1;
                    // The next token, or half the burst (5 at 10/s) after a lost write.
                    assert!(w <= Duration::from_millis(500), "{w:?}");
                    tokio::time::sleep(w + jitter.full(w)).await;
                }
            }
        }
        (granted, waits, last)
    }))
    .await;
    (
        runs.iter().map(|r| r.0).sum(),
        runs.iter().map(|r| r.1).sum(),
        first,
        runs.iter().map(|r| r.2).max().unwrap_or(first),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_containers_on_one_table_stay_within_rate_times_time_plus_burst() {
    const RATE: f64 = 10.0;
    const BURST: u32 = 10;
    let (stack, table) = stack_and_table().await;
    let spec = format!("kdniao={RATE}/s:{BURST}");
    let (a, calls_a) = container(&stack.endpoint, &table, &spec);
    let (b, calls_b) = container(&stack.endpoint, &table, &spec);
    let (a, b) = (Arc::new(a), Arc::new(b));
    // Each container has 8 callers and could make 160 calls a second: far over the limit.
    let run = Duration::from_secs(4);
    let call = Duration::from_millis(50);
    let (ra, rb) = tokio::join!(
        tokio::spawn({
            let a = a.clone();
            async move { busy_container(&a, 8, run, call).await }
        }),
        tokio::spawn({
            let b = b.clone();
            async move { busy_container(&b, 8, run, call).await }
        }),
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    let granted = ra.0 + rb.0;
    let first = ra.2.min(rb.2);
    let last = ra.3.max(rb.3);
    let span = (last - first).num_milliseconds() as f64 / 1000.0;
    let ceiling = (RATE * span).floor() as u64 + u64::from(BURST);
    let (sa, sb) = (a.stats(), b.stats());
    let taken = sa.taken + sb.taken;
    let dynamo: u64 = [&calls_a, &calls_b]
        .iter()
        .map(|c| c.of("PutItem") + c.of("GetItem"))
        .sum();
    println!(
        "two containers, {span:.3} s: {granted} tokens granted ({} + {}), {taken} taken from \
         the table, ceiling rate x time + burst = {ceiling}; {dynamo} DynamoDB calls ({:.3} per \
         token); waits {} + {}; a {sa:?}; b {sb:?}",
        ra.0,
        rb.0,
        dynamo as f64 / granted as f64,
        ra.1,
        rb.1
    );
    assert!(
        taken <= ceiling,
        "{taken} tokens left the table > {ceiling}"
    );
    assert!(granted <= taken, "{granted} granted > {taken} taken");
    assert!(
        granted as f64 >= 0.6 * ceiling as f64,
        "{granted} is far below {ceiling}: the slices waste the rate"
    );
    assert!(ra.0 > 0 && rb.0 > 0, "both containers get tokens");
    assert!(ra.1 + rb.1 > 0, "the demand exceeded the rate");
    assert_eq!((sa.contended, sb.contended), (0, 0));
    // Saturated, the container that wins takes tokens one write each as they come, and the
    // one that loses backs off to whole takes: about one call per token, not one per try.
    assert!(
        dynamo <= 2 * granted,
        "{dynamo} DynamoDB calls for {granted} tokens"
    );
}

const WORKERS: usize = 8;
const RATE: f64 = 5.0;
const BURST: u32 = 5;
const RUN: Duration = Duration::from_secs(4);

/// One single-caller container: take tokens as fast as the bucket allows for `RUN`, sleeping
/// the stated wait (plus up to as much again of jitter, as callers of a shared limiter should)
/// when it is empty. Returns the grants, the earliest and latest `now` it asked with, and the
/// waits.
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
                // The next token, or half the burst (2 at 5/s) after a lost write.
                assert!(w <= Duration::from_millis(400), "{w:?}");
                tokio::time::sleep(w + jitter.full(w)).await;
            }
        }
    }
    (granted, first, last, waits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_workers_share_one_bucket_in_dynamodb() {
    let (stack, table) = stack_and_table().await;
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
