//! A DynamoDB-stream event-source mapping, as AWS Lambda runs it with `ReportBatchItemFailures`,
//! `MaximumRetryAttempts`, `BisectBatchOnFunctionError`, event filtering and an on-failure SQS
//! destination.
//!
//! Per shard, in order:
//! - records are read with `GetRecords`; with filter patterns, records no pattern matches are
//!   dropped before batching (the checkpoint still moves past them, and a read whose records
//!   are all dropped invokes nothing), as Lambda's event filtering does;
//! - the remaining records are handed to the function in batches of `batch_size`;
//! - `Ok` with no failures: the shard's checkpoint moves past the batch;
//! - `Ok` with `batchItemFailures`: the checkpoint moves to just before the first failed
//!   sequence number and the next poll retries from that record (never the earlier ones);
//!   an empty or unknown `itemIdentifier` fails the whole batch, as in AWS;
//! - `Err`: the whole batch is retried; with bisection a failing batch of more than one record
//!   is split in half first (a split does not count towards the retry quota, as in AWS);
//! - once a batch has been retried `max_retry_attempts` times, a JSON record in AWS's
//!   on-failure shape is sent to the on-failure queue (if any) and the shard moves past it.
//!
//! The records of a failing batch are kept in memory and re-delivered unchanged, which is what
//! Lambda's re-read from the checkpoint yields on a stream that is not trimmed meanwhile.
//!
//! AWS calls are kept to what the semantics need, since every call to the local stack is
//! slow: a shard iterator is kept from one `GetRecords` to the next (a new one is taken,
//! after the last record read, only when it expired or a read failed); `DescribeStream` runs
//! on the first poll, after a shard closed (to find its children), while no open shard is
//! known, and otherwise every `describe_every` polls. A poll with nothing new is one call.

use std::collections::VecDeque;
use std::future::Future;

use aws_lambda_events::event::dynamodb::{
    Event, EventRecord, StreamRecord, StreamViewType, UserIdentity,
};
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use aws_sdk_dynamodbstreams::types::{AttributeValue, Record, ShardIteratorType};
use chrono::{DateTime, SecondsFormat, Utc};

use super::{parse_arn, RunnerError};

/// GetRecords returns at most 1,000 records per call; reads always ask for that many (Lambda's
/// poller reads ahead of its batches too), so a backlog costs one call per 1,000 records.
const MAX_BATCH: i32 = 1000;

/// Default of [`StreamSource::with_describe_every`]: shards only change when one closes, which
/// is noticed without DescribeStream; the periodic describe is a safety net.
pub const DEFAULT_DESCRIBE_EVERY: usize = 100;

/// Where a mapping starts reading a shard it has no checkpoint for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartingPosition {
    TrimHorizon,
    Latest,
}

/// One DynamoDB stream feeding one function.
#[derive(Debug)]
pub struct StreamSource {
    pub stream_arn: String,
    /// Named in on-failure records (`requestContext.functionArn`).
    pub function_arn: String,
    /// 1..=1000 records per invocation.
    pub batch_size: i32,
    /// `None` = retry until success (AWS's -1).
    pub max_retry_attempts: Option<u32>,
    pub bisect_on_error: bool,
    pub on_failure_queue_url: Option<String>,
    pub starting_position: StartingPosition,
    region: String,
    shards: Vec<ShardState>,
    described_once: bool,
    /// Parsed filter patterns; empty = every record is delivered.
    filters: Vec<serde_json::Value>,
    /// Why a pattern given to `with_filters` is unusable (Lambda rejects such a mapping);
    /// reported by every poll.
    filter_error: Option<String>,
    describe_every: usize,
    /// Polls since the last DescribeStream.
    polls_since_describe: usize,
    /// A shard closed since the last DescribeStream: its children must be looked up.
    shard_closed: bool,
    /// AWS calls made by this source so far.
    calls: u64,
}

#[derive(Debug)]
struct ShardState {
    shard_id: String,
    parent_shard_id: Option<String>,
    /// Iterator type used while nothing has been read.
    initial: ShardIteratorType,
    /// Sequence number of the last record done with (succeeded, filtered out or sent to
    /// on-failure) with nothing before it left to do.
    checkpoint: Option<String>,
    /// Sequence number of the last record read (filtered out or not): a new iterator resumes
    /// after it.
    last_read: Option<String>,
    /// Continues after `last_read`.
    iterator: Option<String>,
    /// Records read, passing the filters and not yet done with, in shard order.
    pending: VecDeque<PendingRecord>,
    /// Largest batch to deliver next (smaller than `batch_size` while bisecting).
    batch_limit: usize,
    /// Sequence number of the first record of the failing batch, and its counters.
    failing_head: Option<String>,
    /// Invocations that count towards the retry quota.
    attempts: u32,
    /// All invocations of the failing head (`approximateInvokeCount`).
    invocations: u32,
    /// `GetRecords` returned no next iterator: the shard is closed and fully read.
    closed: bool,
}

#[derive(Debug)]
struct PendingRecord {
    record: EventRecord,
    /// Sequence number of the record read just before this one (perhaps filtered out): once
    /// every record before this one is done, the checkpoint may move there.
    previous: Option<String>,
}

impl ShardState {
    fn finished(&self) -> bool {
        self.closed && self.pending.is_empty()
    }

    /// The first `count` (> 0) pending records are done with: the checkpoint moves past them
    /// and past any filtered-out record between them and the next pending one.
    fn done_with(&mut self, count: usize) {
        let last = self.pending.drain(..count).next_back();
        self.checkpoint = match self.pending.front() {
            Some(next) => next
                .previous
                .clone()
                .or_else(|| last.map(|done| sequence_of(&done.record))),
            None => self.last_read.clone(),
        };
    }

    fn batch(&self, take: usize) -> Vec<EventRecord> {
        self.pending
            .iter()
            .take(take)
            .map(|p| p.record.clone())
            .collect()
    }
}

/// What one poll did, over all shards.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamPollReport {
    /// Records read from the stream by this poll (filtered-out ones included).
    pub read: usize,
    /// Records read and dropped by the filter patterns (never delivered).
    pub filtered: usize,
    pub invocations: usize,
    /// Records handed to the function (retries included).
    pub delivered: usize,
    /// Records the checkpoint moved past because the function processed them.
    pub succeeded: usize,
    pub function_errors: usize,
    /// Invocations that returned `batchItemFailures` (or an invalid identifier).
    pub partial_failures: usize,
    pub retries_exhausted: usize,
    pub sent_to_on_failure: usize,
    /// Records skipped after retries were exhausted with no on-failure destination.
    pub discarded: usize,
    /// AWS requests sent (DescribeStream pages, GetShardIterator, GetRecords, on-failure
    /// SendMessage; a request the SDK itself retried counts once).
    pub calls: usize,
}

impl StreamPollReport {
    fn add(&mut self, other: &StreamPollReport) {
        self.read += other.read;
        self.filtered += other.filtered;
        self.invocations += other.invocations;
        self.delivered += other.delivered;
        self.succeeded += other.succeeded;
        self.function_errors += other.function_errors;
        self.partial_failures += other.partial_failures;
        self.retries_exhausted += other.retries_exhausted;
        self.sent_to_on_failure += other.sent_to_on_failure;
        self.discarded += other.discarded;
        self.calls += other.calls;
    }
}

/// Totals of [`StreamSource::drain`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamDrainReport {
    pub polls: usize,
    pub totals: StreamPollReport,
    /// True when the poll bound was reached while there was still work.
    pub hit_poll_bound: bool,
}

enum Outcome {
    Success,
    /// Index in the batch of the first failed record.
    Failed {
        first: usize,
        function_error: bool,
    },
}

impl StreamSource {
    /// A mapping with Lambda's defaults: batch size 100, infinite retries, no bisection, no
    /// filters, no on-failure destination.
    pub fn new(
        stream_arn: impl Into<String>,
        function_arn: impl Into<String>,
        starting_position: StartingPosition,
    ) -> Result<Self, RunnerError> {
        let stream_arn = stream_arn.into();
        let region = parse_arn(&stream_arn)?.region;
        Ok(StreamSource {
            stream_arn,
            function_arn: function_arn.into(),
            batch_size: 100,
            max_retry_attempts: None,
            bisect_on_error: false,
            on_failure_queue_url: None,
            starting_position,
            region,
            shards: Vec::new(),
            described_once: false,
            filters: Vec::new(),
            filter_error: None,
            describe_every: DEFAULT_DESCRIBE_EVERY,
            polls_since_describe: 0,
            shard_closed: false,
            calls: 0,
        })
    }

    pub fn with_batch_size(mut self, batch_size: i32) -> Self {
        self.batch_size = batch_size;
        self
    }

    pub fn with_max_retry_attempts(mut self, attempts: Option<u32>) -> Self {
        self.max_retry_attempts = attempts;
        self
    }

    pub fn with_bisect_on_error(mut self, bisect: bool) -> Self {
        self.bisect_on_error = bisect;
        self
    }

    pub fn with_on_failure_queue(mut self, queue_url: impl Into<String>) -> Self {
        self.on_failure_queue_url = Some(queue_url.into());
        self
    }

    /// Lambda event filtering (`FilterCriteria.Filters[].Pattern`, e.g.
    /// `StreamSourceSpec::filter_patterns`): a record is delivered when any pattern matches
    /// its Lambda JSON shape; an empty list delivers everything. A pattern that is not a JSON
    /// object makes every poll fail with [`RunnerError::InvalidConfig`], as Lambda refuses to
    /// create such a mapping.
    pub fn with_filters(mut self, patterns: Vec<String>) -> Self {
        self.filters.clear();
        self.filter_error = None;
        for pattern in patterns {
            match serde_json::from_str::<serde_json::Value>(&pattern) {
                Ok(parsed) if parsed.is_object() => self.filters.push(parsed),
                _ => {
                    self.filter_error =
                        Some(format!("filter pattern is not a JSON object: {pattern}"));
                }
            }
        }
        self
    }

    /// DescribeStream at most every `polls` polls (at least 1) besides the first poll, shard
    /// closes and while no open shard is known.
    pub fn with_describe_every(mut self, polls: usize) -> Self {
        self.describe_every = polls.max(1);
        self
    }

    /// The checkpoint (last sequence number done with) of each shard seen so far.
    pub fn checkpoints(&self) -> Vec<(String, Option<String>)> {
        self.shards
            .iter()
            .map(|s| (s.shard_id.clone(), s.checkpoint.clone()))
            .collect()
    }

    /// AWS requests this source has sent so far (polls that failed included).
    pub fn aws_calls(&self) -> u64 {
        self.calls
    }

    fn batch_size(&self) -> Result<usize, RunnerError> {
        if !(1..=MAX_BATCH).contains(&self.batch_size) {
            return Err(RunnerError::InvalidConfig(format!(
                "stream batch size must be 1..=1000, got {}",
                self.batch_size
            )));
        }
        usize::try_from(self.batch_size)
            .map_err(|_| RunnerError::InvalidConfig("batch size".to_string()))
    }

    /// One round over every shard: read what is new (unless enough records are already
    /// pending), invoke the function once per shard that has records, apply AWS's checkpoint
    /// and retry rules.
    pub async fn poll_once<H, Fut>(
        &mut self,
        streams: &aws_sdk_dynamodbstreams::Client,
        sqs: &aws_sdk_sqs::Client,
        handler: H,
    ) -> Result<StreamPollReport, RunnerError>
    where
        H: Fn(Event) -> Fut,
        Fut: Future<Output = Result<DynamoDbEventResponse, lambda_runtime::Error>>,
    {
        let batch_size = self.batch_size()?;
        if let Some(reason) = &self.filter_error {
            return Err(RunnerError::InvalidConfig(reason.clone()));
        }
        let mut report = StreamPollReport::default();
        let result = self
            .poll_round(batch_size, streams, sqs, &handler, &mut report)
            .await;
        // Counted even when the round failed half-way: those calls were made.
        self.calls += report.calls as u64;
        result.map(|()| report)
    }

    async fn poll_round<H, Fut>(
        &mut self,
        batch_size: usize,
        streams: &aws_sdk_dynamodbstreams::Client,
        sqs: &aws_sdk_sqs::Client,
        handler: &H,
        report: &mut StreamPollReport,
    ) -> Result<(), RunnerError>
    where
        H: Fn(Event) -> Fut,
        Fut: Future<Output = Result<DynamoDbEventResponse, lambda_runtime::Error>>,
    {
        if self.describe_due() {
            self.refresh_shards(streams, batch_size, report).await?;
        }
        self.polls_since_describe = self.polls_since_describe.saturating_add(1);
        for index in 0..self.shards.len() {
            if self.shards[index].finished() {
                continue;
            }
            // A child shard waits until its parent is fully processed (AWS keeps that order).
            let parent_pending =
                self.shards[index]
                    .parent_shard_id
                    .as_ref()
                    .is_some_and(|parent| {
                        self.shards
                            .iter()
                            .any(|s| &s.shard_id == parent && !s.finished())
                    });
            if parent_pending {
                continue;
            }
            self.poll_shard(index, batch_size, streams, sqs, handler, report)
                .await?;
        }
        Ok(())
    }

    fn describe_due(&self) -> bool {
        !self.described_once
            || self.shard_closed
            || self.polls_since_describe >= self.describe_every
            || self.shards.iter().all(|s| s.closed)
    }

    /// Polls until a round reads nothing, invokes nothing and has nothing left to retry or to
    /// look up, at most `max_polls` rounds. With nothing new that is one poll (one
    /// `GetRecords` per open shard).
    pub async fn drain<H, Fut>(
        &mut self,
        streams: &aws_sdk_dynamodbstreams::Client,
        sqs: &aws_sdk_sqs::Client,
        handler: H,
        max_polls: usize,
    ) -> Result<StreamDrainReport, RunnerError>
    where
        H: Fn(Event) -> Fut,
        Fut: Future<Output = Result<DynamoDbEventResponse, lambda_runtime::Error>>,
    {
        let mut drained = StreamDrainReport {
            hit_poll_bound: true,
            ..StreamDrainReport::default()
        };
        for _ in 0..max_polls {
            let report = self.poll_once(streams, sqs, &handler).await?;
            drained.polls += 1;
            drained.totals.add(&report);
            // A read whose records were all filtered out invokes nothing but may not be the
            // end of the shard; a closed shard may have children to read.
            let idle = report.read == 0
                && report.invocations == 0
                && !self.shard_closed
                && self.shards.iter().all(|s| s.pending.is_empty());
            if idle {
                drained.hit_poll_bound = false;
                break;
            }
        }
        Ok(drained)
    }

    /// DescribeStream (all pages); shards not seen before are added. Shards present at the
    /// first describe start at the starting position; later ones (children after a split)
    /// from their beginning, so nothing written to them is skipped.
    async fn refresh_shards(
        &mut self,
        streams: &aws_sdk_dynamodbstreams::Client,
        batch_size: usize,
        report: &mut StreamPollReport,
    ) -> Result<(), RunnerError> {
        let mut start: Option<String> = None;
        loop {
            report.calls += 1;
            let out = streams
                .describe_stream()
                .stream_arn(&self.stream_arn)
                .set_exclusive_start_shard_id(start.clone())
                .send()
                .await
                .map_err(|e| RunnerError::streams("DescribeStream", e))?;
            let Some(description) = out.stream_description else {
                return Err(RunnerError::MalformedResponse {
                    op: "DescribeStream",
                    reason: "no StreamDescription".to_string(),
                });
            };
            for shard in description.shards.unwrap_or_default() {
                let Some(shard_id) = shard.shard_id else {
                    continue;
                };
                if self.shards.iter().any(|s| s.shard_id == shard_id) {
                    continue;
                }
                let initial = match (self.described_once, self.starting_position) {
                    (false, StartingPosition::Latest) => ShardIteratorType::Latest,
                    _ => ShardIteratorType::TrimHorizon,
                };
                self.shards.push(ShardState {
                    shard_id,
                    parent_shard_id: shard.parent_shard_id,
                    initial,
                    checkpoint: None,
                    last_read: None,
                    iterator: None,
                    pending: VecDeque::new(),
                    batch_limit: batch_size,
                    failing_head: None,
                    attempts: 0,
                    invocations: 0,
                    closed: false,
                });
            }
            match description.last_evaluated_shard_id {
                Some(last) if start.as_deref() != Some(last.as_str()) => start = Some(last),
                _ => break,
            }
        }
        self.described_once = true;
        self.shard_closed = false;
        self.polls_since_describe = 0;
        Ok(())
    }

    async fn shard_iterator(
        &self,
        streams: &aws_sdk_dynamodbstreams::Client,
        shard: &ShardState,
    ) -> Result<Option<String>, RunnerError> {
        let request = streams
            .get_shard_iterator()
            .stream_arn(&self.stream_arn)
            .shard_id(&shard.shard_id);
        // Resume after the last record already read (pending and filtered ones included), so
        // a renewed iterator never delivers a record twice nor skips one.
        let resume_after = shard.last_read.as_ref().or(shard.checkpoint.as_ref());
        let request = match resume_after {
            Some(sequence) => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .sequence_number(sequence),
            None => request.shard_iterator_type(shard.initial.clone()),
        };
        let out = request
            .send()
            .await
            .map_err(|e| RunnerError::streams("GetShardIterator", e))?;
        Ok(out.shard_iterator)
    }

    /// Reads the next records of a shard (up to 1,000) into `pending`, dropping those the
    /// filters reject.
    async fn fetch(
        &mut self,
        index: usize,
        streams: &aws_sdk_dynamodbstreams::Client,
        report: &mut StreamPollReport,
    ) -> Result<(), RunnerError> {
        let mut renewed = false;
        let out = loop {
            let iterator = match self.shards[index].iterator.clone() {
                Some(iterator) => iterator,
                None => {
                    report.calls += 1;
                    match self.shard_iterator(streams, &self.shards[index]).await? {
                        Some(iterator) => iterator,
                        None => {
                            self.shards[index].closed = true;
                            self.shard_closed = true;
                            return Ok(());
                        }
                    }
                }
            };
            report.calls += 1;
            match streams
                .get_records()
                .shard_iterator(&iterator)
                .limit(MAX_BATCH)
                .send()
                .await
            {
                Ok(out) => break out,
                // Iterators expire after 15 minutes: take a new one from the last read, once.
                Err(error)
                    if !renewed
                        && error
                            .as_service_error()
                            .is_some_and(|e| e.is_expired_iterator_exception()) =>
                {
                    renewed = true;
                    self.shards[index].iterator = None;
                }
                Err(error) => {
                    // Whether the iterator is still good is unknown: the next poll takes a
                    // new one after the last record read.
                    self.shards[index].iterator = None;
                    return Err(RunnerError::streams("GetRecords", error));
                }
            }
        };
        let mut read = Vec::new();
        for record in out.records.unwrap_or_default() {
            let record = self.to_event_record(record)?;
            let passes = self.passes_filters(&record)?;
            read.push((record, passes));
        }
        let shard = &mut self.shards[index];
        match out.next_shard_iterator {
            Some(next) => shard.iterator = Some(next),
            None => {
                shard.iterator = None;
                shard.closed = true;
                self.shard_closed = true;
            }
        }
        report.read += read.len();
        for (record, passes) in read {
            let sequence = sequence_of(&record);
            if passes {
                shard.pending.push_back(PendingRecord {
                    record,
                    previous: shard.last_read.clone(),
                });
            } else {
                report.filtered += 1;
            }
            shard.last_read = Some(sequence);
        }
        if shard.pending.is_empty() {
            // Everything read was filtered out (or nothing was read): done with all of it.
            shard.checkpoint = shard.last_read.clone();
        }
        Ok(())
    }

    /// Lambda's event filtering: any pattern matching the record's JSON shape lets it through.
    fn passes_filters(&self, record: &EventRecord) -> Result<bool, RunnerError> {
        if self.filters.is_empty() {
            return Ok(true);
        }
        let json = serde_json::to_value(record).map_err(|e| RunnerError::MalformedResponse {
            op: "GetRecords",
            reason: format!("record not representable as JSON for filtering: {e}"),
        })?;
        Ok(self
            .filters
            .iter()
            .any(|pattern| crate::provision::filter_matches(pattern, &json)))
    }

    async fn poll_shard<H, Fut>(
        &mut self,
        index: usize,
        batch_size: usize,
        streams: &aws_sdk_dynamodbstreams::Client,
        sqs: &aws_sdk_sqs::Client,
        handler: &H,
        report: &mut StreamPollReport,
    ) -> Result<(), RunnerError>
    where
        H: Fn(Event) -> Fut,
        Fut: Future<Output = Result<DynamoDbEventResponse, lambda_runtime::Error>>,
    {
        // Top the batch up with new records, as Lambda's read from the checkpoint would.
        let shard = &self.shards[index];
        let wanted = shard.batch_limit.clamp(1, batch_size);
        if !shard.closed && shard.pending.len() < wanted {
            self.fetch(index, streams, report).await?;
        }
        let shard = &self.shards[index];
        if shard.pending.is_empty() {
            return Ok(());
        }
        let take = shard
            .batch_limit
            .clamp(1, batch_size)
            .min(shard.pending.len());
        let batch = shard.batch(take);
        let sequences: Vec<String> = batch.iter().map(sequence_of).collect();

        let mut event = Event::default();
        event.records = batch;
        report.invocations += 1;
        report.delivered += take;
        let outcome = match handler(event).await {
            Err(error) => {
                tracing::warn!(stream = %self.stream_arn, shard = %self.shards[index].shard_id, %error, "function error");
                report.function_errors += 1;
                Outcome::Failed {
                    first: 0,
                    function_error: true,
                }
            }
            Ok(response) => {
                first_failure(&response, &sequences).map_or(Outcome::Success, |first| {
                    report.partial_failures += 1;
                    Outcome::Failed {
                        first,
                        function_error: false,
                    }
                })
            }
        };

        let shard = &mut self.shards[index];
        match outcome {
            Outcome::Success => {
                shard.done_with(take);
                shard.failing_head = None;
                shard.attempts = 0;
                shard.invocations = 0;
                shard.batch_limit = batch_size;
                report.succeeded += take;
            }
            Outcome::Failed {
                first,
                function_error,
            } => {
                // Records before the first failure are done: checkpoint past them.
                if first > 0 {
                    shard.done_with(first);
                    report.succeeded += first;
                }
                let head = sequences[first].clone();
                if shard.failing_head.as_deref() != Some(head.as_str()) {
                    shard.failing_head = Some(head);
                    shard.attempts = 0;
                    shard.invocations = 0;
                }
                shard.invocations += 1;
                let failed = take - first;
                if function_error && self.bisect_on_error && failed > 1 {
                    // Retry the first half alone; a split is not a retry in AWS's count.
                    shard.batch_limit = failed.div_ceil(2);
                    return Ok(());
                }
                shard.attempts += 1;
                let exhausted = self
                    .max_retry_attempts
                    .is_some_and(|max| shard.attempts > max);
                if !exhausted {
                    return Ok(());
                }
                let invocations = shard.invocations;
                let shard_id = shard.shard_id.clone();
                let records = shard.batch(failed);
                report.retries_exhausted += 1;
                match &self.on_failure_queue_url {
                    Some(queue_url) => {
                        let body = self.on_failure_record(
                            &shard_id,
                            &records,
                            invocations,
                            function_error,
                            Utc::now(),
                        )?;
                        report.calls += 1;
                        sqs.send_message()
                            .queue_url(queue_url)
                            .message_body(body)
                            .send()
                            .await
                            .map_err(|e| RunnerError::sqs("SendMessage", e))?;
                        report.sent_to_on_failure += failed;
                    }
                    None => {
                        tracing::warn!(stream = %self.stream_arn, shard = %shard_id, records = failed, "retries exhausted, no on-failure destination: records skipped");
                        report.discarded += failed;
                    }
                }
                let shard = &mut self.shards[index];
                shard.done_with(failed);
                shard.failing_head = None;
                shard.attempts = 0;
                shard.invocations = 0;
                shard.batch_limit = batch_size;
            }
        }
        Ok(())
    }

    /// The message Lambda sends to an on-failure destination for a stream batch.
    fn on_failure_record(
        &self,
        shard_id: &str,
        records: &[EventRecord],
        invocations: u32,
        function_error: bool,
        now: DateTime<Utc>,
    ) -> Result<String, RunnerError> {
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            return Err(RunnerError::InvalidConfig(
                "on-failure record for an empty batch".to_string(),
            ));
        };
        let arrival = |record: &EventRecord| {
            record
                .change
                .approximate_creation_date_time
                .to_rfc3339_opts(SecondsFormat::Secs, true)
        };
        let mut response_context = serde_json::json!({
            "statusCode": 200,
            "executedVersion": "$LATEST",
        });
        if function_error {
            response_context["functionError"] = serde_json::json!("Unhandled");
        }
        let body = serde_json::json!({
            "requestContext": {
                "requestId": uuid::Uuid::new_v4().to_string(),
                "functionArn": self.function_arn,
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": invocations,
            },
            "responseContext": response_context,
            "version": "1.0",
            "timestamp": now.to_rfc3339_opts(SecondsFormat::Millis, true),
            "DDBStreamBatchInfo": {
                "shardId": shard_id,
                "startSequenceNumber": sequence_of(first),
                "endSequenceNumber": sequence_of(last),
                "approximateArrivalOfFirstRecord": arrival(first),
                "approximateArrivalOfLastRecord": arrival(last),
                "batchSize": records.len(),
                "streamArn": self.stream_arn,
            },
        });
        serde_json::to_string(&body).map_err(RunnerError::OnFailureEncode)
    }

    /// The records of one shard from `start` to `end` (sequence numbers, both included), as
    /// Lambda delivers them: what an on-failure record (`DDBStreamBatchInfo`) points at. Records
    /// older than the stream's retention (24 h) are gone: the answer is then shorter (or empty).
    /// At most `max_calls` GetRecords calls.
    pub async fn read_range(
        &self,
        streams: &aws_sdk_dynamodbstreams::Client,
        shard_id: &str,
        start: &str,
        end: &str,
        max_calls: usize,
    ) -> Result<Vec<EventRecord>, RunnerError> {
        let out = streams
            .get_shard_iterator()
            .stream_arn(&self.stream_arn)
            .shard_id(shard_id)
            .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
            .sequence_number(start)
            .send()
            .await
            .map_err(|e| RunnerError::streams("GetShardIterator", e))?;
        let mut iterator = out.shard_iterator;
        let mut records = Vec::new();
        for _ in 0..max_calls {
            let Some(it) = iterator.take() else { break };
            let page = streams
                .get_records()
                .shard_iterator(it)
                .limit(MAX_BATCH)
                .send()
                .await
                .map_err(|e| RunnerError::streams("GetRecords", e))?;
            let got = page.records.unwrap_or_default();
            let empty = got.is_empty();
            for record in got {
                let event = self.to_event_record(record)?;
                let seq = sequence_of(&event);
                if seq_cmp(&seq, end) == std::cmp::Ordering::Greater {
                    return Ok(records);
                }
                records.push(event);
                if seq_cmp(&seq, end) == std::cmp::Ordering::Equal {
                    return Ok(records);
                }
            }
            if empty {
                break;
            }
            iterator = page.next_shard_iterator;
        }
        Ok(records)
    }

    /// Converts a `GetRecords` record into the record Lambda delivers.
    fn to_event_record(&self, record: Record) -> Result<EventRecord, RunnerError> {
        let malformed = |reason: &str| RunnerError::MalformedResponse {
            op: "GetRecords",
            reason: reason.to_string(),
        };
        let change = record
            .dynamodb
            .ok_or_else(|| malformed("record without dynamodb"))?;
        if change.sequence_number.as_deref().is_none_or(str::is_empty) {
            return Err(malformed("record without SequenceNumber"));
        }
        let mut stream_record = StreamRecord::default();
        if let Some(at) = change.approximate_creation_date_time {
            stream_record.approximate_creation_date_time =
                DateTime::from_timestamp(at.secs(), at.subsec_nanos()).unwrap_or_default();
        }
        stream_record.keys = to_item(change.keys)?;
        stream_record.new_image = to_item(change.new_image)?;
        stream_record.old_image = to_item(change.old_image)?;
        stream_record.sequence_number = change.sequence_number;
        stream_record.size_bytes = change.size_bytes.unwrap_or_default();
        stream_record.stream_view_type = change
            .stream_view_type
            .map(|view| match view.as_str() {
                "NEW_IMAGE" => Ok(StreamViewType::NewImage),
                "OLD_IMAGE" => Ok(StreamViewType::OldImage),
                "NEW_AND_OLD_IMAGES" => Ok(StreamViewType::NewAndOldImages),
                "KEYS_ONLY" => Ok(StreamViewType::KeysOnly),
                other => Err(malformed(&format!("unknown StreamViewType {other}"))),
            })
            .transpose()?;

        let mut event_record = EventRecord::default();
        event_record.aws_region = record
            .aws_region
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| self.region.clone());
        event_record.change = stream_record;
        event_record.event_id = record
            .event_id
            .ok_or_else(|| malformed("record without eventID"))?;
        event_record.event_name = record
            .event_name
            .map(|name| name.as_str().to_string())
            .ok_or_else(|| malformed("record without eventName"))?;
        event_record.event_source = Some("aws:dynamodb".to_string());
        event_record.event_version =
            Some(record.event_version.unwrap_or_else(|| "1.1".to_string()));
        event_record.event_source_arn = Some(self.stream_arn.clone());
        event_record.user_identity = record.user_identity.map(|identity| {
            let mut user = UserIdentity::default();
            user.type_ = identity.r#type.unwrap_or_default();
            user.principal_id = identity.principal_id.unwrap_or_default();
            user
        });
        Ok(event_record)
    }
}

/// Sequence numbers are decimal strings of varying length: compare them as numbers.
pub fn seq_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn sequence_of(record: &EventRecord) -> String {
    // Every pending record was checked to carry a sequence number when it was read.
    record.change.sequence_number.clone().unwrap_or_default()
}

/// Index of the first failed record, or `None` when the whole batch succeeded. An empty or
/// unknown `itemIdentifier` fails the whole batch (index 0), which is AWS's rule.
fn first_failure(response: &DynamoDbEventResponse, sequences: &[String]) -> Option<usize> {
    response
        .batch_item_failures
        .iter()
        .map(|failure| {
            failure
                .item_identifier
                .as_deref()
                .and_then(|id| sequences.iter().position(|s| s == id))
                .unwrap_or(0)
        })
        .min()
}

fn to_item(
    map: Option<std::collections::HashMap<String, AttributeValue>>,
) -> Result<serde_dynamo::Item, RunnerError> {
    let converted = map
        .unwrap_or_default()
        .into_iter()
        .map(|(name, value)| Ok((name, to_attribute(value)?)))
        .collect::<Result<std::collections::HashMap<_, _>, RunnerError>>()?;
    Ok(serde_dynamo::Item::from(converted))
}

/// serde_dynamo's own conversion panics on an attribute type this SDK version does not know;
/// this one reports it instead.
fn to_attribute(value: AttributeValue) -> Result<serde_dynamo::AttributeValue, RunnerError> {
    use serde_dynamo::AttributeValue as Lv;
    Ok(match value {
        AttributeValue::S(s) => Lv::S(s),
        AttributeValue::N(n) => Lv::N(n),
        AttributeValue::Bool(b) => Lv::Bool(b),
        AttributeValue::Null(n) => Lv::Null(n),
        AttributeValue::B(b) => Lv::B(b.into_inner()),
        AttributeValue::Ss(ss) => Lv::Ss(ss),
        AttributeValue::Ns(ns) => Lv::Ns(ns),
        AttributeValue::Bs(bs) => Lv::Bs(bs.into_iter().map(|b| b.into_inner()).collect()),
        AttributeValue::L(list) => Lv::L(
            list.into_iter()
                .map(to_attribute)
                .collect::<Result<Vec<_>, _>>()?,
        ),
        AttributeValue::M(map) => Lv::M(
            map.into_iter()
                .map(|(k, v)| Ok((k, to_attribute(v)?)))
                .collect::<Result<std::collections::HashMap<_, _>, RunnerError>>()?,
        ),
        _ => {
            return Err(RunnerError::MalformedResponse {
                op: "GetRecords",
                reason: "attribute of an unknown type".to_string(),
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::test_support::{sdk_config, start_moto, unique, Moto};
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, AttributeValue as Av, BillingMode, KeySchemaElement, KeyType,
        ScalarAttributeType, StreamSpecification, StreamViewType as SdkViewType,
    };
    use std::sync::{Arc, Mutex};

    const FUNCTION_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:notifier";

    struct Env {
        _moto: Moto,
        ddb: aws_sdk_dynamodb::Client,
        streams: aws_sdk_dynamodbstreams::Client,
        sqs: aws_sdk_sqs::Client,
        table: String,
        stream_arn: String,
        config: aws_config::SdkConfig,
    }

    async fn env(table: &str) -> Env {
        let moto = start_moto().await;
        let config = sdk_config(&moto).await;
        let ddb = aws_sdk_dynamodb::Client::new(&config);
        let table = unique(table);
        let out = ddb
            .create_table()
            .table_name(&table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("pk")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .unwrap(),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("pk")
                    .key_type(KeyType::Hash)
                    .build()
                    .unwrap(),
            )
            .stream_specification(
                StreamSpecification::builder()
                    .stream_enabled(true)
                    .stream_view_type(SdkViewType::NewAndOldImages)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        let stream_arn = out.table_description.unwrap().latest_stream_arn.unwrap();
        Env {
            streams: aws_sdk_dynamodbstreams::Client::new(&config),
            sqs: aws_sdk_sqs::Client::new(&config),
            ddb,
            _moto: moto,
            table,
            stream_arn,
            config,
        }
    }

    async fn put(env: &Env, pk: &str, status: &str) {
        env.ddb
            .put_item()
            .table_name(&env.table)
            .item("pk", Av::S(pk.to_string()))
            .item("status", Av::S(status.to_string()))
            .item("version", Av::N("1".to_string()))
            .send()
            .await
            .unwrap();
    }

    fn s(item: &serde_dynamo::Item, name: &str) -> Option<String> {
        match item.get(name) {
            Some(serde_dynamo::AttributeValue::S(v)) => Some(v.clone()),
            _ => None,
        }
    }

    type Seen = Arc<Mutex<Vec<Vec<EventRecord>>>>;

    fn failure(id: Option<&str>) -> aws_lambda_events::event::streams::DynamoDbBatchItemFailure {
        let mut failure = aws_lambda_events::event::streams::DynamoDbBatchItemFailure::default();
        failure.item_identifier = id.map(str::to_string);
        failure
    }

    #[test]
    fn first_failure_follows_aws_rules() {
        let seqs: Vec<String> = ["100", "101", "102"].map(String::from).to_vec();
        let mut response = DynamoDbEventResponse::default();
        assert_eq!(first_failure(&response, &seqs), None);
        response.batch_item_failures = vec![failure(Some("102")), failure(Some("101"))];
        assert_eq!(first_failure(&response, &seqs), Some(1));
        response.batch_item_failures = vec![failure(Some("102")), failure(Some("999"))];
        assert_eq!(first_failure(&response, &seqs), Some(0));
        response.batch_item_failures = vec![failure(None)];
        assert_eq!(first_failure(&response, &seqs), Some(0));
    }

    #[test]
    fn on_failure_record_of_a_partial_failure_has_no_function_error() {
        let source = StreamSource::new(
            "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/2026-11-24T00:00:00.000",
            FUNCTION_ARN,
            StartingPosition::TrimHorizon,
        )
        .unwrap();
        let mut record = EventRecord::default();
        record.change.sequence_number = Some("4200".to_string());
        let now = Utc::now();
        let body = source
            .on_failure_record("shardId-1", &[record], 4, false, now)
            .unwrap();
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(json["responseContext"].get("functionError").is_none());
        assert_eq!(json["responseContext"]["statusCode"], 200);
        assert_eq!(json["requestContext"]["approximateInvokeCount"], 4);
        assert_eq!(json["DDBStreamBatchInfo"]["startSequenceNumber"], "4200");
        assert_eq!(
            json["timestamp"],
            now.to_rfc3339_opts(SecondsFormat::Millis, true)
        );
        assert!(source
            .on_failure_record("shardId-1", &[], 1, true, now)
            .is_err());
    }

    #[tokio::test]
    async fn delivers_insert_and_modify_with_images_as_lambda_does() {
        let env = env("images").await;
        put(&env, "SHIP#YTO#1", "InTransit").await;
        env.ddb
            .update_item()
            .table_name(&env.table)
            .key("pk", Av::S("SHIP#YTO#1".to_string()))
            .update_expression("SET #s = :d")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":d", Av::S("Delivered".to_string()))
            .send()
            .await
            .unwrap();

        let mut source =
            StreamSource::new(&env.stream_arn, FUNCTION_ARN, StartingPosition::TrimHorizon)
                .unwrap()
                .with_batch_size(10);
        let seen: Seen = Arc::default();
        let handler = |event: Event| {
            let seen = Arc::clone(&seen);
            async move {
                seen.lock().unwrap().push(event.records);
                Ok::<_, lambda_runtime::Error>(DynamoDbEventResponse::default())
            }
        };
        let report = source
            .poll_once(&env.streams, &env.sqs, handler)
            .await
            .unwrap();
        assert_eq!(report.read, 2);
        assert_eq!(report.invocations, 1);
        assert_eq!(report.succeeded, 2);

        let batches = seen.lock().unwrap().clone();
        let records = &batches[0];
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].event_name, "INSERT");
        assert_eq!(records[1].event_name, "MODIFY");
        assert_eq!(
            s(&records[0].change.keys, "pk").as_deref(),
            Some("SHIP#YTO#1")
        );
        assert_eq!(
            s(&records[0].change.new_image, "status").as_deref(),
            Some("InTransit")
        );
        assert!(records[0].change.old_image.is_empty());
        assert_eq!(
            s(&records[1].change.old_image, "status").as_deref(),
            Some("InTransit")
        );
        assert_eq!(
            s(&records[1].change.new_image, "status").as_deref(),
            Some("Delivered")
        );
        assert_eq!(
            records[1].change.new_image.get("version"),
            Some(&serde_dynamo::AttributeValue::N("1".to_string()))
        );
        assert_eq!(records[0].event_source.as_deref(), Some("aws:dynamodb"));
        assert_eq!(
            records[0].event_source_arn.as_deref(),
            Some(env.stream_arn.as_str())
        );
        assert_eq!(records[0].aws_region, "us-east-1");
        assert_eq!(
            records[0].change.stream_view_type,
            Some(StreamViewType::NewAndOldImages)
        );
        assert!(records[0].change.size_bytes > 0);
        // ApproximateCreationDateTime came through from moto (not the epoch default).
        let age = Utc::now() - records[0].change.approximate_creation_date_time;
        assert!(age.num_minutes().abs() < 10, "creation time {age:?} ago");
        let first_seq = sequence_of(&records[0]);
        let second_seq = sequence_of(&records[1]);
        assert_ne!(first_seq, second_seq);

        // On the wire it is Lambda's JSON shape.
        let mut event = Event::default();
        event.records = records.clone();
        let json = serde_json::to_value(&event).unwrap();
        let record = &json["Records"][1];
        assert_eq!(record["eventName"], "MODIFY");
        assert_eq!(record["eventSourceARN"], env.stream_arn.as_str());
        assert_eq!(record["dynamodb"]["NewImage"]["status"]["S"], "Delivered");
        assert_eq!(record["dynamodb"]["OldImage"]["status"]["S"], "InTransit");
        assert_eq!(record["dynamodb"]["StreamViewType"], "NEW_AND_OLD_IMAGES");
        assert_eq!(record["dynamodb"]["SequenceNumber"], second_seq.as_str());

        // Nothing new: no invocation, checkpoint at the last record.
        let again = source
            .poll_once(&env.streams, &env.sqs, handler)
            .await
            .unwrap();
        assert_eq!(again.invocations, 0);
        assert_eq!(
            source.checkpoints()[0].1.as_deref(),
            Some(second_seq.as_str())
        );

        // Later writes are picked up from the checkpoint.
        put(&env, "SHIP#YTO#2", "PickedUp").await;
        let later = source
            .poll_once(&env.streams, &env.sqs, handler)
            .await
            .unwrap();
        assert_eq!(later.invocations, 1);
        let batches = seen.lock().unwrap().clone();
        assert_eq!(batches[1].len(), 1);
        assert_eq!(
            s(&batches[1][0].change.keys, "pk").as_deref(),
            Some("SHIP#YTO#2")
        );
    }

    #[tokio::test]
    async fn partial_failure_retries_from_the_failed_record_only() {
        let env = env("partial").await;
        for pk in ["a", "b", "c", "d"] {
            put(&env, pk, "InTransit").await;
        }
        let mut source =
            StreamSource::new(&env.stream_arn, FUNCTION_ARN, StartingPosition::TrimHorizon)
                .unwrap()
                .with_batch_size(10)
                .with_max_retry_attempts(Some(3));
        let seen: Seen = Arc::default();
        let fail_c_once = Arc::new(Mutex::new(true));
        let handler = |event: Event| {
            let seen = Arc::clone(&seen);
            let fail_c_once = Arc::clone(&fail_c_once);
            async move {
                let mut response = DynamoDbEventResponse::default();
                let mut fail = fail_c_once.lock().unwrap();
                for record in &event.records {
                    if *fail && s(&record.change.keys, "pk").as_deref() == Some("c") {
                        let mut failure =
                            aws_lambda_events::event::streams::DynamoDbBatchItemFailure::default();
                        failure.item_identifier = record.change.sequence_number.clone();
                        response.batch_item_failures.push(failure);
                        *fail = false;
                    }
                }
                seen.lock().unwrap().push(event.records);
                Ok::<_, lambda_runtime::Error>(response)
            }
        };
        let first = source
            .poll_once(&env.streams, &env.sqs, handler)
            .await
            .unwrap();
        assert_eq!(first.delivered, 4);
        assert_eq!(first.partial_failures, 1);
        assert_eq!(first.succeeded, 2);
        let b_seq = sequence_of(&seen.lock().unwrap()[0][1]);
        assert_eq!(source.checkpoints()[0].1.as_deref(), Some(b_seq.as_str()));

        // A write during the retry joins the retried batch, after the kept records, once.
        put(&env, "e", "InTransit").await;
        let second = source
            .poll_once(&env.streams, &env.sqs, handler)
            .await
            .unwrap();
        assert_eq!(second.read, 1);
        assert_eq!(second.delivered, 3);
        assert_eq!(second.succeeded, 3);
        let batches = seen.lock().unwrap().clone();
        let keys: Vec<_> = batches[1]
            .iter()
            .map(|r| s(&r.change.keys, "pk").unwrap())
            .collect();
        assert_eq!(keys, ["c", "d", "e"]);
        assert_eq!(source.checkpoints()[0].1, Some(sequence_of(&batches[1][2])));
    }

    #[tokio::test]
    async fn an_unknown_item_identifier_fails_the_whole_batch() {
        let env = env("unknown").await;
        put(&env, "a", "InTransit").await;
        put(&env, "b", "InTransit").await;
        let mut source =
            StreamSource::new(&env.stream_arn, FUNCTION_ARN, StartingPosition::TrimHorizon)
                .unwrap()
                .with_max_retry_attempts(Some(0));
        let handler = |_event: Event| async {
            let mut response = DynamoDbEventResponse::default();
            let mut failure =
                aws_lambda_events::event::streams::DynamoDbBatchItemFailure::default();
            failure.item_identifier = Some(String::new());
            response.batch_item_failures.push(failure);
            Ok::<_, lambda_runtime::Error>(response)
        };
        let report = source
            .poll_once(&env.streams, &env.sqs, handler)
            .await
            .unwrap();
        // No retries allowed and no destination: both records are skipped, none succeeded.
        assert_eq!(report.succeeded, 0);
        assert_eq!(report.retries_exhausted, 1);
        assert_eq!(report.discarded, 2);
    }

    #[tokio::test]
    async fn exhausted_retries_bisect_to_the_poison_record_and_send_it_on_failure() {
        let env = env("poison").await;
        for pk in ["ok1", "poison", "ok2"] {
            put(&env, pk, "InTransit").await;
        }
        let on_failure = env
            .sqs
            .create_queue()
            .queue_name(unique("notify-on-failure"))
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        let mut source =
            StreamSource::new(&env.stream_arn, FUNCTION_ARN, StartingPosition::TrimHorizon)
                .unwrap()
                .with_batch_size(10)
                .with_max_retry_attempts(Some(1))
                .with_bisect_on_error(true)
                .with_on_failure_queue(&on_failure);
        let processed = Arc::new(Mutex::new(Vec::<String>::new()));
        let handler = |event: Event| {
            let processed = Arc::clone(&processed);
            async move {
                let keys: Vec<String> = event
                    .records
                    .iter()
                    .filter_map(|r| s(&r.change.keys, "pk"))
                    .collect();
                if keys.iter().any(|k| k == "poison") {
                    return Err::<DynamoDbEventResponse, lambda_runtime::Error>(
                        "cannot render".into(),
                    );
                }
                processed.lock().unwrap().extend(keys);
                Ok(DynamoDbEventResponse::default())
            }
        };
        let drained = source
            .drain(&env.streams, &env.sqs, handler, 20)
            .await
            .unwrap();
        assert!(!drained.hit_poll_bound);
        assert_eq!(*processed.lock().unwrap(), ["ok1", "ok2"]);
        assert_eq!(drained.totals.retries_exhausted, 1);
        assert_eq!(drained.totals.sent_to_on_failure, 1);
        assert_eq!(drained.totals.succeeded, 2);
        // [ok1,poison,ok2] → [ok1,poison] → [ok1] ✓ → [poison,ok2] → [poison] ×2 → [ok2] ✓
        assert_eq!(drained.totals.invocations, 7);

        let shard_id = env
            .streams
            .describe_stream()
            .stream_arn(&env.stream_arn)
            .send()
            .await
            .unwrap()
            .stream_description
            .unwrap()
            .shards
            .unwrap()[0]
            .shard_id
            .clone()
            .unwrap();
        let messages = env
            .sqs
            .receive_message()
            .queue_url(&on_failure)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default();
        assert_eq!(messages.len(), 1);
        let body: serde_json::Value =
            serde_json::from_str(messages[0].body.as_deref().unwrap()).unwrap();
        let poison_seq = {
            let records = env
                .streams
                .get_records()
                .shard_iterator(
                    env.streams
                        .get_shard_iterator()
                        .stream_arn(&env.stream_arn)
                        .shard_id(&shard_id)
                        .shard_iterator_type(ShardIteratorType::TrimHorizon)
                        .send()
                        .await
                        .unwrap()
                        .shard_iterator
                        .unwrap(),
                )
                .send()
                .await
                .unwrap()
                .records
                .unwrap();
            records[1]
                .dynamodb
                .as_ref()
                .unwrap()
                .sequence_number
                .clone()
                .unwrap()
        };
        let info = &body["DDBStreamBatchInfo"];
        assert_eq!(info["shardId"], shard_id.as_str());
        assert_eq!(info["startSequenceNumber"], poison_seq.as_str());
        assert_eq!(info["endSequenceNumber"], poison_seq.as_str());
        assert_eq!(info["batchSize"], 1);
        assert_eq!(info["streamArn"], env.stream_arn.as_str());
        assert_eq!(
            body["requestContext"]["condition"],
            "RetryAttemptsExhausted"
        );
        assert_eq!(body["requestContext"]["functionArn"], FUNCTION_ARN);
        assert_eq!(body["requestContext"]["approximateInvokeCount"], 3);
        assert_eq!(body["responseContext"]["functionError"], "Unhandled");
        assert_eq!(body["version"], "1.0");
        let arrival = body["DDBStreamBatchInfo"]["approximateArrivalOfFirstRecord"]
            .as_str()
            .unwrap();
        let arrival = DateTime::parse_from_rfc3339(arrival).unwrap();
        assert!(
            (Utc::now() - arrival.with_timezone(&Utc))
                .num_minutes()
                .abs()
                < 10
        );
    }

    /// (pk, eventName, sequence number) of every record of the table's stream, in order.
    async fn raw_stream(env: &Env) -> Vec<(String, String, String)> {
        let shard_id = env
            .streams
            .describe_stream()
            .stream_arn(&env.stream_arn)
            .send()
            .await
            .unwrap()
            .stream_description
            .unwrap()
            .shards
            .unwrap()[0]
            .shard_id
            .clone()
            .unwrap();
        let iterator = env
            .streams
            .get_shard_iterator()
            .stream_arn(&env.stream_arn)
            .shard_id(&shard_id)
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator
            .unwrap();
        let records = env
            .streams
            .get_records()
            .shard_iterator(iterator)
            .send()
            .await
            .unwrap()
            .records
            .unwrap_or_default();
        records
            .iter()
            .map(|r| {
                let change = r.dynamodb.as_ref().unwrap();
                let pk = match change.keys.as_ref().unwrap().get("pk") {
                    Some(AttributeValue::S(pk)) => pk.clone(),
                    other => panic!("pk {other:?}"),
                };
                (
                    pk,
                    r.event_name.as_ref().unwrap().as_str().to_string(),
                    change.sequence_number.clone().unwrap(),
                )
            })
            .collect()
    }

    fn keys_of(records: &[EventRecord]) -> Vec<String> {
        records
            .iter()
            .filter_map(|r| s(&r.change.keys, "pk"))
            .collect()
    }

    #[tokio::test]
    async fn an_idle_drain_is_one_call_and_new_records_cost_one_read_more() {
        let env = env("calls").await;
        let mut source =
            StreamSource::new(&env.stream_arn, FUNCTION_ARN, StartingPosition::TrimHorizon)
                .unwrap()
                .with_batch_size(10);
        let seen: Seen = Arc::default();
        let handler = |event: Event| {
            let seen = Arc::clone(&seen);
            async move {
                seen.lock().unwrap().push(event.records);
                Ok::<_, lambda_runtime::Error>(DynamoDbEventResponse::default())
            }
        };

        // First drain: DescribeStream, GetShardIterator, GetRecords (empty).
        let first = source
            .drain(&env.streams, &env.sqs, handler, 100)
            .await
            .unwrap();
        assert_eq!((first.polls, first.totals.calls), (1, 3));

        // Nothing new: the kept iterator's GetRecords is the only call.
        for _ in 0..5 {
            let idle = source
                .drain(&env.streams, &env.sqs, handler, 100)
                .await
                .unwrap();
            assert_eq!((idle.polls, idle.totals.calls), (1, 1));
            assert_eq!(idle.totals.invocations, 0);
            assert!(!idle.hit_poll_bound);
        }

        // One new record: the read that finds it and the empty read that ends the drain.
        put(&env, "one", "InTransit").await;
        let one = source
            .drain(&env.streams, &env.sqs, handler, 100)
            .await
            .unwrap();
        assert_eq!(one.totals.calls, 2);
        assert_eq!((one.totals.read, one.totals.invocations), (1, 1));

        // 25 records in batches of 10: one read of all 25, then an empty read at the third
        // batch (pending < batch) and one ending the drain.
        for i in 0..25 {
            put(&env, &format!("r{i:02}"), "InTransit").await;
        }
        let many = source
            .drain(&env.streams, &env.sqs, handler, 100)
            .await
            .unwrap();
        assert_eq!(many.totals.read, 25);
        assert_eq!(many.totals.invocations, 3);
        assert_eq!(many.totals.calls, 3);
        assert!(many.totals.calls <= 25usize.div_ceil(10) + 1);
        let batches = seen.lock().unwrap().clone();
        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, [1, 10, 10, 5]);
        let delivered: Vec<String> = batches[1..].iter().flat_map(|b| keys_of(b)).collect();
        let expected: Vec<String> = (0..25).map(|i| format!("r{i:02}")).collect();
        assert_eq!(delivered, expected);
        assert_eq!(source.aws_calls(), 3 + 5 + 2 + 3);
    }

    #[tokio::test]
    async fn describe_stream_runs_on_the_first_poll_then_every_n_polls() {
        let env = env("describe").await;
        let mut source = StreamSource::new(&env.stream_arn, FUNCTION_ARN, StartingPosition::Latest)
            .unwrap()
            .with_describe_every(3);
        let handler = |_event: Event| async {
            Ok::<_, lambda_runtime::Error>(DynamoDbEventResponse::default())
        };
        let mut calls = Vec::new();
        for _ in 0..7 {
            let report = source
                .poll_once(&env.streams, &env.sqs, handler)
                .await
                .unwrap();
            calls.push(report.calls);
        }
        // Poll 1 also takes the iterator; polls 4 and 7 add a DescribeStream.
        assert_eq!(calls, [3, 1, 1, 2, 1, 1, 2]);
        assert_eq!(source.aws_calls(), 11);
    }

    #[tokio::test]
    async fn a_failed_read_takes_a_new_iterator_after_the_last_record_read() {
        let env = env("reacquire").await;
        put(&env, "a", "InTransit").await;
        let mut source =
            StreamSource::new(&env.stream_arn, FUNCTION_ARN, StartingPosition::TrimHorizon)
                .unwrap();
        let seen: Seen = Arc::default();
        let handler = |event: Event| {
            let seen = Arc::clone(&seen);
            async move {
                seen.lock().unwrap().push(event.records);
                Ok::<_, lambda_runtime::Error>(DynamoDbEventResponse::default())
            }
        };
        source
            .drain(&env.streams, &env.sqs, handler, 10)
            .await
            .unwrap();
        put(&env, "b", "InTransit").await;

        // A stream endpoint that refuses connections: the read fails and is counted.
        let broken = aws_sdk_dynamodbstreams::Client::from_conf(
            aws_sdk_dynamodbstreams::config::Builder::from(&env.config)
                .endpoint_url("http://127.0.0.1:1")
                .retry_config(aws_sdk_dynamodbstreams::config::retry::RetryConfig::disabled())
                .build(),
        );
        let before = source.aws_calls();
        let failed = source.poll_once(&broken, &env.sqs, handler).await;
        assert!(
            matches!(
                failed,
                Err(RunnerError::Streams {
                    op: "GetRecords",
                    ..
                })
            ),
            "{failed:?}"
        );
        assert_eq!(source.aws_calls(), before + 1);

        put(&env, "c", "InTransit").await;
        let after = source
            .drain(&env.streams, &env.sqs, handler, 10)
            .await
            .unwrap();
        // GetShardIterator (after "a"), GetRecords (b, c), GetRecords (empty).
        assert_eq!(after.totals.calls, 3);
        let batches = seen.lock().unwrap().clone();
        let keys: Vec<Vec<String>> = batches.iter().map(|b| keys_of(b)).collect();
        assert_eq!(keys, [vec!["a"], vec!["b", "c"]]);
    }

    #[tokio::test]
    async fn filtered_out_records_are_never_delivered_but_advance_the_checkpoint() {
        let env = env("filters").await;
        let pattern = r#"{"eventName": ["INSERT", "MODIFY"], "dynamodb": {"Keys": {"pk": {"S": [{"prefix": "SHIP#"}]}}}}"#;
        put(&env, "NOTE#1", "x").await;
        put(&env, "SHIP#a", "InTransit").await;
        put(&env, "NOTE#2", "x").await;
        put(&env, "SHIP#b", "InTransit").await;
        env.ddb
            .delete_item()
            .table_name(&env.table)
            .key("pk", Av::S("SHIP#a".to_string()))
            .send()
            .await
            .unwrap();
        put(&env, "NOTE#3", "x").await;
        let raw = raw_stream(&env).await;
        assert_eq!(raw.len(), 6);
        assert_eq!((raw[4].0.as_str(), raw[4].1.as_str()), ("SHIP#a", "REMOVE"));

        let mut source =
            StreamSource::new(&env.stream_arn, FUNCTION_ARN, StartingPosition::TrimHorizon)
                .unwrap()
                .with_batch_size(10)
                .with_max_retry_attempts(Some(3))
                .with_filters(vec![pattern.to_string()]);
        let seen: Seen = Arc::default();
        let fail_b_once = Arc::new(Mutex::new(true));
        let handler = |event: Event| {
            let seen = Arc::clone(&seen);
            let fail_b_once = Arc::clone(&fail_b_once);
            async move {
                let mut response = DynamoDbEventResponse::default();
                let mut fail = fail_b_once.lock().unwrap();
                for record in &event.records {
                    if *fail && s(&record.change.keys, "pk").as_deref() == Some("SHIP#b") {
                        response
                            .batch_item_failures
                            .push(failure(record.change.sequence_number.as_deref()));
                        *fail = false;
                    }
                }
                seen.lock().unwrap().push(event.records);
                Ok::<_, lambda_runtime::Error>(response)
            }
        };

        let first = source
            .poll_once(&env.streams, &env.sqs, handler)
            .await
            .unwrap();
        assert_eq!(first.read, 6);
        assert_eq!(first.filtered, 4);
        assert_eq!(first.invocations, 1);
        assert_eq!(first.delivered, 2);
        assert_eq!(first.succeeded, 1);
        // Done through the filtered NOTE#2 just before the failed SHIP#b.
        assert_eq!(
            source.checkpoints()[0].1.as_deref(),
            Some(raw[2].2.as_str())
        );

        let second = source
            .poll_once(&env.streams, &env.sqs, handler)
            .await
            .unwrap();
        assert_eq!((second.read, second.delivered, second.succeeded), (0, 1, 1));
        // Nothing pending: done through the filtered REMOVE and NOTE#3 after it.
        assert_eq!(
            source.checkpoints()[0].1.as_deref(),
            Some(raw[5].2.as_str())
        );
        let keys: Vec<Vec<String>> = seen.lock().unwrap().iter().map(|b| keys_of(b)).collect();
        assert_eq!(keys, [vec!["SHIP#a", "SHIP#b"], vec!["SHIP#b"]]);

        // Only filtered-out records: no invocation, the checkpoint still moves.
        put(&env, "NOTE#4", "x").await;
        put(&env, "NOTE#5", "x").await;
        let drained = source
            .drain(&env.streams, &env.sqs, handler, 10)
            .await
            .unwrap();
        assert_eq!(drained.totals.invocations, 0);
        assert_eq!((drained.totals.read, drained.totals.filtered), (2, 2));
        assert_eq!((drained.polls, drained.totals.calls), (2, 2));
        let raw = raw_stream(&env).await;
        assert_eq!(raw[7].0, "NOTE#5");
        assert_eq!(
            source.checkpoints()[0].1.as_deref(),
            Some(raw[7].2.as_str())
        );
        assert_eq!(seen.lock().unwrap().len(), 2);

        // A MODIFY of a shipment passes again.
        put(&env, "SHIP#b", "Delivered").await;
        let modified = source
            .drain(&env.streams, &env.sqs, handler, 10)
            .await
            .unwrap();
        assert_eq!(modified.totals.delivered, 1);
        let last = seen.lock().unwrap().last().cloned().unwrap();
        assert_eq!(last[0].event_name, "MODIFY");
    }

    #[tokio::test]
    async fn a_pattern_that_is_not_a_json_object_fails_every_poll_without_calls() {
        let env = env("badfilter").await;
        let handler = |_event: Event| async {
            Ok::<_, lambda_runtime::Error>(DynamoDbEventResponse::default())
        };
        for bad in ["not json", r#"["INSERT"]"#] {
            let mut source =
                StreamSource::new(&env.stream_arn, FUNCTION_ARN, StartingPosition::TrimHorizon)
                    .unwrap()
                    .with_filters(vec![
                        r#"{"eventName": ["INSERT"]}"#.to_string(),
                        bad.to_string(),
                    ]);
            let result = source.poll_once(&env.streams, &env.sqs, handler).await;
            assert!(
                matches!(result, Err(RunnerError::InvalidConfig(_))),
                "{bad}"
            );
            assert_eq!(source.aws_calls(), 0);
        }
        // Replacing the patterns with valid ones clears the error.
        let mut source =
            StreamSource::new(&env.stream_arn, FUNCTION_ARN, StartingPosition::TrimHorizon)
                .unwrap()
                .with_filters(vec!["nope".to_string()])
                .with_filters(vec![r#"{"eventName": ["INSERT"]}"#.to_string()]);
        assert!(source
            .poll_once(&env.streams, &env.sqs, handler)
            .await
            .is_ok());
    }
}
