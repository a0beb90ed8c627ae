//! What a Lambda fleet does to a function that the happy path never shows: a container killed
//! part-way through a batch (timeout, OOM, a crashed host), and the same batch delivered twice
//! at once (SQS is at-least-once; a stream batch is retried after a partial run).
//!
//! [`Chaos::wrap`] wraps the handler a runner invokes. Per invocation, with the configured
//! shares (drawn from a seeded generator):
//! - **kill**: the function handles only the first `j` records of the batch (`j` uniform in
//!   `0..n`, so their side effects happen) and then dies: the runner sees a function error and
//!   applies AWS's rule for it (SQS: the whole batch comes back after the visibility timeout;
//!   stream: the whole batch is retried, then bisected, then sent to the on-failure destination).
//! - **duplicate**: two invocations receive the same batch concurrently (two containers racing
//!   on the same records); the runner gets the union of both reported failures.
//!
//! A kill lands between records, never inside one: a process dying while an SNS `Publish` is in
//! flight leaves no way to know whether the buyer was told (no SMS API deduplicates), so that
//! window is the one a ledger can narrow but not close. See README "Failure model".

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use aws_lambda_events::event::dynamodb::Event as StreamEvent;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use aws_lambda_events::event::streams::DynamoDbEventResponse;

/// An event whose records can be cut short.
pub trait Batch: Clone {
    fn records(&self) -> usize;
    fn truncate(&mut self, n: usize);
}

impl Batch for SqsEvent {
    fn records(&self) -> usize {
        self.records.len()
    }
    fn truncate(&mut self, n: usize) {
        self.records.truncate(n);
    }
}

impl Batch for StreamEvent {
    fn records(&self) -> usize {
        self.records.len()
    }
    fn truncate(&mut self, n: usize) {
        self.records.truncate(n);
    }
}

/// A partial-batch response two of which can be merged.
pub trait Response {
    fn merge(self, other: Self) -> Self;
}

impl Response for SqsBatchResponse {
    fn merge(mut self, other: Self) -> Self {
        for f in other.batch_item_failures {
            if !self
                .batch_item_failures
                .iter()
                .any(|g| g.item_identifier == f.item_identifier)
            {
                self.batch_item_failures.push(f);
            }
        }
        self
    }
}

impl Response for DynamoDbEventResponse {
    fn merge(mut self, other: Self) -> Self {
        for f in other.batch_item_failures {
            if !self
                .batch_item_failures
                .iter()
                .any(|g| g.item_identifier == f.item_identifier)
            {
                self.batch_item_failures.push(f);
            }
        }
        self
    }
}

/// Shares of invocations that are killed mid-batch or delivered twice.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChaosPlan {
    pub seed: u64,
    pub kill: f64,
    pub duplicate: f64,
}

impl ChaosPlan {
    pub const NONE: ChaosPlan = ChaosPlan {
        seed: 0,
        kill: 0.0,
        duplicate: 0.0,
    };
}

/// Counters of what [`Chaos`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChaosCounts {
    pub invocations: u64,
    pub killed: u64,
    /// Records handled by invocations that were then killed.
    pub records_before_kill: u64,
    pub duplicated: u64,
}

/// Injects kills and duplicate deliveries into one function's invocations.
#[derive(Debug)]
pub struct Chaos {
    plan: Mutex<ChaosPlan>,
    rng: Mutex<u64>,
    invocations: AtomicU64,
    killed: AtomicU64,
    records_before_kill: AtomicU64,
    duplicated: AtomicU64,
}

enum Fate {
    Normal,
    Kill(usize),
    Duplicate,
}

impl Chaos {
    pub fn new(plan: ChaosPlan) -> Arc<Chaos> {
        Arc::new(Chaos {
            rng: Mutex::new(plan.seed ^ 0x9E37_79B9_7F4A_7C15),
            plan: Mutex::new(plan),
            invocations: AtomicU64::new(0),
            killed: AtomicU64::new(0),
            records_before_kill: AtomicU64::new(0),
            duplicated: AtomicU64::new(0),
        })
    }

    /// Change the shares (e.g. to zero at the end of a soak, so the last retries settle).
    pub fn set_plan(&self, plan: ChaosPlan) {
        if let Ok(mut p) = self.plan.lock() {
            p.kill = plan.kill;
            p.duplicate = plan.duplicate;
        }
    }

    pub fn counts(&self) -> ChaosCounts {
        ChaosCounts {
            invocations: self.invocations.load(Ordering::Relaxed),
            killed: self.killed.load(Ordering::Relaxed),
            records_before_kill: self.records_before_kill.load(Ordering::Relaxed),
            duplicated: self.duplicated.load(Ordering::Relaxed),
        }
    }

    /// SplitMix64: a uniform draw in [0, 1) and a raw word.
    fn next(&self) -> u64 {
        let mut state = match self.rng.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn uniform(&self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn fate(&self, records: usize) -> Fate {
        let plan = match self.plan.lock() {
            Ok(p) => *p,
            Err(_) => ChaosPlan::NONE,
        };
        let draw = self.uniform();
        if draw < plan.kill {
            Fate::Kill((self.next() % records.max(1) as u64) as usize)
        } else if draw < plan.kill + plan.duplicate {
            Fate::Duplicate
        } else {
            Fate::Normal
        }
    }

    /// For a request/response function (the api behind API Gateway): after it ran, does its
    /// answer get lost (the container died before replying)? Drawn with the `kill` share.
    pub fn lose_answer(&self) -> bool {
        self.invocations.fetch_add(1, Ordering::Relaxed);
        let kill = self.plan.lock().map(|p| p.kill).unwrap_or(0.0);
        let lost = self.uniform() < kill;
        if lost {
            self.killed.fetch_add(1, Ordering::Relaxed);
        }
        lost
    }

    /// Invoke `handler` with this invocation's fate applied.
    pub async fn invoke<E, R, H, Fut>(
        &self,
        handler: &H,
        event: E,
    ) -> Result<R, lambda_runtime::Error>
    where
        E: Batch,
        R: Response,
        H: Fn(E) -> Fut,
        Fut: Future<Output = Result<R, lambda_runtime::Error>>,
    {
        self.invocations.fetch_add(1, Ordering::Relaxed);
        match self.fate(event.records()) {
            Fate::Normal => handler(event).await,
            Fate::Kill(done) => {
                self.killed.fetch_add(1, Ordering::Relaxed);
                self.records_before_kill
                    .fetch_add(done as u64, Ordering::Relaxed);
                if done > 0 {
                    let mut head = event;
                    head.truncate(done);
                    // Whatever it answered never reaches the runtime.
                    let _ = handler(head).await;
                }
                Err(format!(
                    "Runtime.ExitError: the container died after {done} record(s) of the batch"
                )
                .into())
            }
            Fate::Duplicate => {
                self.duplicated.fetch_add(1, Ordering::Relaxed);
                let (a, b) = tokio::join!(handler(event.clone()), handler(event));
                match (a, b) {
                    (Ok(a), Ok(b)) => Ok(a.merge(b)),
                    (Err(e), _) | (_, Err(e)) => Err(e),
                }
            }
        }
    }
}

/// What API Gateway (HTTP API) answers when the function fails or dies: 502 and its fixed body.
pub fn gateway_error() -> aws_lambda_events::event::apigw::ApiGatewayV2httpResponse {
    let mut r = aws_lambda_events::event::apigw::ApiGatewayV2httpResponse::default();
    r.status_code = 502;
    r.body = Some(aws_lambda_events::encodings::Body::Text(
        r#"{"message":"Internal Server Error"}"#.to_string(),
    ));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::event::sqs::{BatchItemFailure, SqsMessage};
    use std::sync::Mutex as StdMutex;

    fn event(n: usize) -> SqsEvent {
        let mut e = SqsEvent::default();
        e.records = (0..n)
            .map(|i| {
                let mut m = SqsMessage::default();
                m.message_id = Some(format!("m{i}"));
                m
            })
            .collect();
        e
    }

    /// Records every record id the handler saw; fails the ids listed.
    fn recording(
        seen: Arc<StdMutex<Vec<String>>>,
        fail: &'static [&'static str],
    ) -> impl Fn(SqsEvent) -> std::future::Ready<Result<SqsBatchResponse, lambda_runtime::Error>>
    {
        move |e: SqsEvent| {
            let mut r = SqsBatchResponse::default();
            for m in &e.records {
                let id = m.message_id.clone().unwrap_or_default();
                if fail.contains(&id.as_str()) {
                    let mut f = BatchItemFailure::default();
                    f.item_identifier = id.clone();
                    r.batch_item_failures.push(f);
                }
                seen.lock().unwrap().push(id);
            }
            std::future::ready(Ok(r))
        }
    }

    #[tokio::test]
    async fn a_kill_runs_a_prefix_of_the_batch_then_fails_the_invocation() {
        let chaos = Chaos::new(ChaosPlan {
            seed: 3,
            kill: 1.0,
            duplicate: 0.0,
        });
        let seen = Arc::new(StdMutex::new(Vec::new()));
        let h = recording(seen.clone(), &[]);
        let mut total_prefix = 0;
        for _ in 0..50 {
            seen.lock().unwrap().clear();
            let out = chaos.invoke(&h, event(10)).await;
            let err = out.expect_err("a killed invocation is a function error");
            assert!(err.to_string().contains("died after"), "{err}");
            let got = seen.lock().unwrap().clone();
            assert!(got.len() < 10, "a kill never completes the batch");
            let want: Vec<String> = (0..got.len()).map(|i| format!("m{i}")).collect();
            assert_eq!(
                got, want,
                "the records handled are the batch's head, in order"
            );
            total_prefix += got.len();
        }
        let c = chaos.counts();
        assert_eq!((c.invocations, c.killed), (50, 50));
        assert_eq!(c.records_before_kill, total_prefix as u64);
        assert!(
            total_prefix > 50,
            "kills land at varied points, not always first"
        );
    }

    #[tokio::test]
    async fn a_duplicate_delivers_the_batch_twice_and_merges_failures() {
        let chaos = Chaos::new(ChaosPlan {
            seed: 3,
            kill: 0.0,
            duplicate: 1.0,
        });
        let seen = Arc::new(StdMutex::new(Vec::new()));
        let h = recording(seen.clone(), &["m1"]);
        let r = chaos.invoke(&h, event(3)).await.unwrap();
        let mut got = seen.lock().unwrap().clone();
        got.sort();
        assert_eq!(got, ["m0", "m0", "m1", "m1", "m2", "m2"]);
        let failed: Vec<_> = r
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(failed, ["m1"], "the union names each failed record once");
        assert_eq!(chaos.counts().duplicated, 1);
    }

    #[tokio::test]
    async fn shares_are_honoured_and_zero_means_untouched() {
        let chaos = Chaos::new(ChaosPlan {
            seed: 11,
            kill: 0.1,
            duplicate: 0.2,
        });
        let seen = Arc::new(StdMutex::new(Vec::new()));
        let h = recording(seen, &[]);
        for _ in 0..2000 {
            let _ = chaos.invoke(&h, event(4)).await;
        }
        let c = chaos.counts();
        assert!((150..=250).contains(&c.killed), "{c:?}");
        assert!((330..=470).contains(&c.duplicated), "{c:?}");

        chaos.set_plan(ChaosPlan::NONE);
        let before = chaos.counts();
        for _ in 0..100 {
            assert!(chaos.invoke(&h, event(4)).await.is_ok());
        }
        let after = chaos.counts();
        assert_eq!(
            (after.killed, after.duplicated),
            (before.killed, before.duplicated)
        );
    }
}
