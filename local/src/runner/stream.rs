//! A DynamoDB-stream event-source mapping, as AWS Lambda runs it with `ReportBatchItemFailures`,
//! `MaximumRetryAttempts`, `BisectBatchOnFunctionError` and an on-failure SQS destination.
//!
//! Per shard, in order:
//! - records are read with `GetRecords` and handed to the function in batches of `batch_size`;
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

use std::collections::VecDeque;
use std::future::Future;

use aws_lambda_events::event::dynamodb::{
    Event, EventRecord, StreamRecord, StreamViewType, UserIdentity,
};
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use aws_sdk_dynamodbstreams::types::{AttributeValue, Record, ShardIteratorType};
use chrono::{DateTime, SecondsFormat, Utc};

use super::{parse_arn, RunnerError};

/// GetRecords returns at most 1,000 records per call; one call feeds one batch here.
const MAX_BATCH: i32 = 1000;

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
}

#[derive(Debug)]
struct ShardState {
    shard_id: String,
    parent_shard_id: Option<String>,
    /// Iterator type used while there is no checkpoint.
    initial: ShardIteratorType,
    /// Sequence number of the last record done with (succeeded or sent to on-failure).
    checkpoint: Option<String>,
    /// Continues after the last record read into `pending`.
    iterator: Option<String>,
    /// Records read but not yet done with, in shard order.
    pending: VecDeque<EventRecord>,
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

impl ShardState {
    fn finished(&self) -> bool {
        self.closed && self.pending.is_empty()
    }
}

/// What one poll did, over all shards.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamPollReport {
    /// Records read from the stream by this poll.
    pub read: usize,
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
}

impl StreamPollReport {
    fn add(&mut self, other: &StreamPollReport) {
        self.read += other.read;
        self.invocations += other.invocations;
        self.delivered += other.delivered;
        self.succeeded += other.succeeded;
        self.function_errors += other.function_errors;
        self.partial_failures += other.partial_failures;
        self.retries_exhausted += other.retries_exhausted;
        self.sent_to_on_failure += other.sent_to_on_failure;
        self.discarded += other.discarded;
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
    /// on-failure destination.
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

    /// The checkpoint (last sequence number done with) of each shard seen so far.
    pub fn checkpoints(&self) -> Vec<(String, Option<String>)> {
        self.shards
            .iter()
            .map(|s| (s.shard_id.clone(), s.checkpoint.clone()))
            .collect()
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

    /// One round over every shard: read what is new (unless a retry is pending), invoke the
    /// function once per shard that has records, apply AWS's checkpoint and retry rules.
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
        self.refresh_shards(streams, batch_size).await?;
        let mut report = StreamPollReport::default();
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
            self.poll_shard(index, batch_size, streams, sqs, &handler, &mut report)
                .await?;
        }
        Ok(report)
    }

    /// Polls until a round reads nothing and has nothing to retry, at most `max_polls` rounds.
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
            if report.invocations == 0 && self.shards.iter().all(|s| s.pending.is_empty()) {
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
    ) -> Result<(), RunnerError> {
        let mut start: Option<String> = None;
        loop {
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
        // Resume after the last record already read (pending ones included), so a renewed
        // iterator never delivers a record twice.
        let resume_after = shard
            .pending
            .back()
            .and_then(|r| r.change.sequence_number.as_ref())
            .or(shard.checkpoint.as_ref());
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

    /// Reads up to `limit` next records of a shard into `pending`.
    async fn fetch(
        &mut self,
        index: usize,
        limit: usize,
        streams: &aws_sdk_dynamodbstreams::Client,
    ) -> Result<usize, RunnerError> {
        let limit = i32::try_from(limit)
            .unwrap_or(MAX_BATCH)
            .clamp(1, MAX_BATCH);
        let mut renewed = false;
        let out = loop {
            let iterator = match self.shards[index].iterator.clone() {
                Some(iterator) => iterator,
                None => match self.shard_iterator(streams, &self.shards[index]).await? {
                    Some(iterator) => iterator,
                    None => {
                        self.shards[index].closed = true;
                        return Ok(0);
                    }
                },
            };
            match streams
                .get_records()
                .shard_iterator(&iterator)
                .limit(limit)
                .send()
                .await
            {
                Ok(out) => break out,
                // Iterators expire after 15 minutes: take a new one from the checkpoint, once.
                Err(error)
                    if !renewed
                        && error
                            .as_service_error()
                            .is_some_and(|e| e.is_expired_iterator_exception()) =>
                {
                    renewed = true;
                    self.shards[index].iterator = None;
                }
                Err(error) => return Err(RunnerError::streams("GetRecords", error)),
            }
        };
        let records = out
            .records
            .unwrap_or_default()
            .into_iter()
            .map(|record| self.to_event_record(record))
            .collect::<Result<Vec<_>, _>>()?;
        let shard = &mut self.shards[index];
        shard.iterator = out.next_shard_iterator;
        if shard.iterator.is_none() {
            shard.closed = true;
        }
        let read = records.len();
        shard.pending.extend(records);
        Ok(read)
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
            let missing = wanted - shard.pending.len();
            report.read += self.fetch(index, missing, streams).await?;
        }
        let shard = &self.shards[index];
        if shard.pending.is_empty() {
            return Ok(());
        }
        let take = shard
            .batch_limit
            .clamp(1, batch_size)
            .min(shard.pending.len());
        let batch: Vec<EventRecord> = shard.pending.iter().take(take).cloned().collect();
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
                shard.pending.drain(..take);
                shard.checkpoint = sequences.last().cloned();
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
                    shard.pending.drain(..first);
                    shard.checkpoint = Some(sequences[first - 1].clone());
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
                let records: Vec<EventRecord> =
                    shard.pending.iter().take(failed).cloned().collect();
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
                shard.pending.drain(..failed);
                shard.checkpoint = records.last().map(sequence_of);
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
}
