//! An SQS event-source mapping with `ReportBatchItemFailures`, as AWS Lambda runs it.
//!
//! One poll: `ReceiveMessage` (up to `batch_size`, all system and message attributes), one
//! invocation with the whole batch, then:
//! - `Ok` with no failures: every message is deleted;
//! - `Ok` with `batchItemFailures`: every message *not* named is deleted; the named ones stay on
//!   the queue and reappear when their visibility timeout ends (the queue's redrive policy moves
//!   them to the DLQ after `maxReceiveCount` receives — SQS does that on receive, and so does moto);
//! - `Ok` naming an empty or unknown `itemIdentifier`: AWS treats the whole batch as failed;
//! - `Err` (a function error): nothing is deleted, the whole batch comes back.
//!
//! AWS calls: a poll is one `ReceiveMessage`, plus one `DeleteMessageBatch` when something is
//! to be deleted; [`SqsSource::drain`] ends with the one empty receive that shows the queue
//! empty; [`SqsSource::expire_failed`] makes one call per 10 retained messages and none when
//! there are none.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use aws_lambda_events::encodings::Base64Data;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage, SqsMessageAttribute};
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
    MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName,
};

use super::{parse_arn, RunnerError};

/// SQS caps one receive at 10 messages and a long poll at 20 seconds.
const MAX_BATCH: i32 = 10;
const MAX_WAIT_SECS: u64 = 20;
/// Receipt handles kept for [`SqsSource::expire_failed`].
const MAX_RETAINED: usize = 10_000;

/// One SQS queue feeding one function.
#[derive(Debug)]
pub struct SqsSource {
    pub queue_url: String,
    pub queue_arn: String,
    /// 1..=10 messages per invocation.
    pub batch_size: i32,
    /// Long-poll wait of each receive (at most 20 s; zero = short poll).
    pub wait: Duration,
    region: String,
    /// Message id → latest receipt handle of each message left on the queue (reported failed
    /// or in a failed batch) and not deleted since, for [`SqsSource::expire_failed`].
    retained: Mutex<HashMap<String, String>>,
    /// AWS requests sent through this source (it is polled concurrently, hence atomic).
    calls: AtomicU64,
}

/// What one poll did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SqsPollReport {
    pub received: usize,
    pub deleted: usize,
    /// Messages named in `batchItemFailures` and left on the queue.
    pub reported_failed: usize,
    /// The handler returned `Err`: the whole batch was left on the queue.
    pub function_error: bool,
    /// The response named an empty or unknown `itemIdentifier`: the whole batch was left.
    pub invalid_response: bool,
    /// Deletes that `DeleteMessageBatch` listed as `Failed` (those messages will come back).
    pub delete_failed: usize,
    /// Receipt handles of every message left on the queue by this poll.
    pub retained: Vec<String>,
    /// AWS requests sent (ReceiveMessage, DeleteMessageBatch; an SDK-level retry counts once).
    pub calls: usize,
}

/// Totals of [`SqsSource::drain`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SqsDrainReport {
    /// Invocations of the function (polls that received something).
    pub batches: usize,
    pub received: usize,
    pub deleted: usize,
    pub reported_failed: usize,
    pub function_errors: usize,
    pub invalid_responses: usize,
    pub delete_failed: usize,
    /// True when the poll bound was reached before a receive came back empty.
    pub hit_poll_bound: bool,
    /// AWS requests sent, the final empty receive included.
    pub calls: usize,
}

impl SqsSource {
    pub fn new(
        queue_url: impl Into<String>,
        queue_arn: impl Into<String>,
        batch_size: i32,
        wait: Duration,
    ) -> Result<Self, RunnerError> {
        let queue_arn = queue_arn.into();
        let region = parse_arn(&queue_arn)?.region;
        let source = SqsSource {
            queue_url: queue_url.into(),
            queue_arn,
            batch_size,
            wait,
            region,
            retained: Mutex::new(HashMap::new()),
            calls: AtomicU64::new(0),
        };
        source.validate()?;
        Ok(source)
    }

    /// Like [`SqsSource::new`], reading the queue ARN with `GetQueueAttributes`.
    pub async fn for_queue(
        sqs: &aws_sdk_sqs::Client,
        queue_url: impl Into<String>,
        batch_size: i32,
        wait: Duration,
    ) -> Result<Self, RunnerError> {
        let queue_url = queue_url.into();
        let out = sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| RunnerError::sqs("GetQueueAttributes", e))?;
        let arn = out
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn))
            .cloned()
            .ok_or_else(|| RunnerError::MalformedResponse {
                op: "GetQueueAttributes",
                reason: "no QueueArn".to_string(),
            })?;
        let source = Self::new(queue_url, arn, batch_size, wait)?;
        source.count(1);
        Ok(source)
    }

    /// AWS requests this source has sent so far (`for_queue`'s GetQueueAttributes included).
    pub fn aws_calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    fn count(&self, calls: usize) {
        self.calls.fetch_add(calls as u64, Ordering::Relaxed);
    }

    fn validate(&self) -> Result<(), RunnerError> {
        if !(1..=MAX_BATCH).contains(&self.batch_size) {
            return Err(RunnerError::InvalidConfig(format!(
                "SQS batch size must be 1..=10, got {}",
                self.batch_size
            )));
        }
        if self.wait.as_secs() > MAX_WAIT_SECS {
            return Err(RunnerError::InvalidConfig(format!(
                "SQS wait must be at most 20 s, got {:?}",
                self.wait
            )));
        }
        Ok(())
    }

    /// One receive, one invocation (if anything was received), then the deletes AWS would do.
    pub async fn poll_once<H, Fut>(
        &self,
        sqs: &aws_sdk_sqs::Client,
        handler: H,
    ) -> Result<SqsPollReport, RunnerError>
    where
        H: Fn(SqsEvent) -> Fut,
        Fut: Future<Output = Result<SqsBatchResponse, lambda_runtime::Error>>,
    {
        self.validate()?;
        let wait_secs = i32::try_from(self.wait.as_secs()).unwrap_or(0);
        self.count(1);
        let out = sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(self.batch_size)
            .wait_time_seconds(wait_secs)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| RunnerError::sqs("ReceiveMessage", e))?;
        let messages = out.messages.unwrap_or_default();
        let mut report = SqsPollReport {
            received: messages.len(),
            calls: 1,
            ..SqsPollReport::default()
        };
        if messages.is_empty() {
            return Ok(report);
        }

        // (message id, receipt handle) in delivery order.
        let mut handles: Vec<(String, String)> = Vec::with_capacity(messages.len());
        let mut records = Vec::with_capacity(messages.len());
        for message in messages {
            let (Some(id), Some(handle)) =
                (message.message_id.clone(), message.receipt_handle.clone())
            else {
                return Err(RunnerError::MalformedResponse {
                    op: "ReceiveMessage",
                    reason: "message without MessageId or ReceiptHandle".to_string(),
                });
            };
            handles.push((id, handle));
            records.push(self.to_record(message));
        }
        let mut event = SqsEvent::default();
        event.records = records;

        let keep: HashSet<String> = match handler(event).await {
            Err(error) => {
                tracing::warn!(queue = %self.queue_arn, %error, "function error: whole batch retried");
                report.function_error = true;
                handles.iter().map(|(id, _)| id.clone()).collect()
            }
            Ok(response) => {
                let known: HashSet<&str> = handles.iter().map(|(id, _)| id.as_str()).collect();
                let named: HashSet<String> = response
                    .batch_item_failures
                    .iter()
                    .map(|f| f.item_identifier.clone())
                    .collect();
                if named.iter().any(|id| !known.contains(id.as_str())) {
                    tracing::warn!(
                        queue = %self.queue_arn,
                        "batchItemFailures names an empty or unknown itemIdentifier: whole batch retried"
                    );
                    report.invalid_response = true;
                    handles.iter().map(|(id, _)| id.clone()).collect()
                } else {
                    report.reported_failed = named.len();
                    named
                }
            }
        };

        let (retained, to_delete): (Vec<_>, Vec<_>) =
            handles.into_iter().partition(|(id, _)| keep.contains(id));
        report.retained = retained.iter().map(|(_, handle)| handle.clone()).collect();
        if !to_delete.is_empty() {
            report.calls += 1;
            let (deleted, failed) = self.delete_batch(sqs, &to_delete).await?;
            report.deleted = deleted;
            report.delete_failed = failed;
        }
        if let Ok(mut kept) = self.retained.lock() {
            for (id, _) in &to_delete {
                kept.remove(id);
            }
            for (id, handle) in retained {
                // Bounded for long runs that never expire; a message not tracked here still
                // comes back when its real visibility timeout ends.
                if kept.len() < MAX_RETAINED || kept.contains_key(&id) {
                    kept.insert(id, handle);
                }
            }
        }
        Ok(report)
    }

    /// Polls until a receive comes back empty, at most `max_polls` times.
    pub async fn drain<H, Fut>(
        &self,
        sqs: &aws_sdk_sqs::Client,
        handler: H,
        max_polls: usize,
    ) -> Result<SqsDrainReport, RunnerError>
    where
        H: Fn(SqsEvent) -> Fut,
        Fut: Future<Output = Result<SqsBatchResponse, lambda_runtime::Error>>,
    {
        let mut totals = SqsDrainReport {
            hit_poll_bound: true,
            ..SqsDrainReport::default()
        };
        for _ in 0..max_polls {
            let report = self.poll_once(sqs, &handler).await?;
            totals.calls += report.calls;
            if report.received == 0 {
                totals.hit_poll_bound = false;
                break;
            }
            totals.batches += 1;
            totals.received += report.received;
            totals.deleted += report.deleted;
            totals.reported_failed += report.reported_failed;
            totals.function_errors += usize::from(report.function_error);
            totals.invalid_responses += usize::from(report.invalid_response);
            totals.delete_failed += report.delete_failed;
        }
        Ok(totals)
    }

    /// Simulates "the visibility timeout elapsed" for every message this source left on the
    /// queue since the last call: their visibility is set to 0 so the next receive sees them.
    /// Returns how many were released; handles that are no longer valid (e.g. the message
    /// was moved to the DLQ) are skipped. With nothing retained it makes no AWS call.
    pub async fn expire_failed(&self, sqs: &aws_sdk_sqs::Client) -> Result<usize, RunnerError> {
        let handles: Vec<String> = match self.retained.lock() {
            Ok(mut kept) => std::mem::take(&mut *kept).into_values().collect(),
            Err(_) => Vec::new(),
        };
        self.release(sqs, &handles).await
    }

    /// Makes the messages behind `receipt_handles` visible again at once: one
    /// `ChangeMessageVisibilityBatch` per 10 handles, none for an empty list.
    pub async fn release(
        &self,
        sqs: &aws_sdk_sqs::Client,
        receipt_handles: &[String],
    ) -> Result<usize, RunnerError> {
        let mut released = 0;
        for chunk in receipt_handles.chunks(MAX_BATCH as usize) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, handle)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(handle)
                        .visibility_timeout(0)
                        .build()
                        .map_err(|e| RunnerError::InvalidConfig(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            self.count(1);
            let out = sqs
                .change_message_visibility_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| RunnerError::sqs("ChangeMessageVisibilityBatch", e))?;
            released += out.successful.len();
            for failure in &out.failed {
                tracing::debug!(queue = %self.queue_arn, code = %failure.code, "receipt handle no longer valid");
            }
        }
        Ok(released)
    }

    async fn delete_batch(
        &self,
        sqs: &aws_sdk_sqs::Client,
        messages: &[(String, String)],
    ) -> Result<(usize, usize), RunnerError> {
        let entries = messages
            .iter()
            .enumerate()
            .map(|(i, (_, handle))| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(handle)
                    .build()
                    .map_err(|e| RunnerError::InvalidConfig(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.count(1);
        let out = sqs
            .delete_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| RunnerError::sqs("DeleteMessageBatch", e))?;
        for failure in &out.failed {
            // The message stays on the queue and is delivered again: at-least-once, as in AWS.
            tracing::warn!(
                queue = %self.queue_arn,
                code = %failure.code,
                message = failure.message.as_deref().unwrap_or(""),
                "delete failed"
            );
        }
        Ok((out.successful.len(), out.failed.len()))
    }

    fn to_record(&self, message: Message) -> SqsMessage {
        let mut record = SqsMessage::default();
        record.message_id = message.message_id;
        record.receipt_handle = message.receipt_handle;
        record.body = message.body;
        record.md5_of_body = message.md5_of_body;
        record.md5_of_message_attributes = message.md5_of_message_attributes;
        record.attributes = message
            .attributes
            .unwrap_or_default()
            .into_iter()
            .map(|(name, value)| (name.as_str().to_string(), value))
            .collect();
        record.message_attributes = message
            .message_attributes
            .unwrap_or_default()
            .into_iter()
            .map(|(name, value)| (name, to_lambda_attribute(value)))
            .collect::<HashMap<_, _>>();
        record.event_source = Some("aws:sqs".to_string());
        record.event_source_arn = Some(self.queue_arn.clone());
        record.aws_region = Some(self.region.clone());
        record
    }
}

fn to_base64_data(bytes: Vec<u8>) -> Base64Data {
    let mut data = Base64Data::default();
    *data = bytes;
    data
}

fn to_lambda_attribute(value: MessageAttributeValue) -> SqsMessageAttribute {
    let mut attribute = SqsMessageAttribute::default();
    attribute.data_type = Some(value.data_type);
    attribute.string_value = value.string_value;
    attribute.binary_value = value.binary_value.map(|b| to_base64_data(b.into_inner()));
    attribute.string_list_values = value.string_list_values.unwrap_or_default();
    attribute.binary_list_values = value
        .binary_list_values
        .unwrap_or_default()
        .into_iter()
        .map(|b| to_base64_data(b.into_inner()))
        .collect();
    attribute
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::test_support::{sdk_config, start_moto, unique};
    use aws_sdk_sqs::types::MessageAttributeValue;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    struct Queues {
        source: SqsSource,
        dlq_url: String,
    }

    async fn queues(sqs: &aws_sdk_sqs::Client, name: &str, max_receive: u32) -> Queues {
        let dlq_url = sqs
            .create_queue()
            .queue_name(format!("{name}-dlq"))
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        let dlq_arn = sqs
            .get_queue_attributes()
            .queue_url(&dlq_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap()
            .remove(&QueueAttributeName::QueueArn)
            .unwrap();
        let redrive =
            format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"{max_receive}"}}"#);
        let url = sqs
            .create_queue()
            .queue_name(name)
            .attributes(QueueAttributeName::VisibilityTimeout, "1")
            .attributes(QueueAttributeName::RedrivePolicy, redrive)
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        let source = SqsSource::for_queue(sqs, url, 10, Duration::ZERO)
            .await
            .unwrap();
        Queues { source, dlq_url }
    }

    async fn send_bodies(sqs: &aws_sdk_sqs::Client, url: &str, bodies: &[&str]) {
        for body in bodies {
            sqs.send_message()
                .queue_url(url)
                .message_body(*body)
                .message_attributes(
                    "carrier",
                    MessageAttributeValue::builder()
                        .data_type("String")
                        .string_value("YTO")
                        .build()
                        .unwrap(),
                )
                .send()
                .await
                .unwrap();
        }
    }

    /// Fails (by batchItemFailures) every message whose body is "poison".
    async fn fail_poison(event: SqsEvent) -> Result<SqsBatchResponse, lambda_runtime::Error> {
        let mut response = SqsBatchResponse::default();
        for record in &event.records {
            if record.body.as_deref() == Some("poison") {
                response.add_failure(record.message_id.clone().unwrap_or_default());
            }
        }
        Ok(response)
    }

    #[test]
    fn rejects_out_of_range_batch_size() {
        let arn = "arn:aws:sqs:us-east-1:123456789012:q";
        assert!(SqsSource::new("http://x/q", arn, 0, Duration::ZERO).is_err());
        assert!(SqsSource::new("http://x/q", arn, 11, Duration::ZERO).is_err());
        assert!(SqsSource::new("http://x/q", arn, 10, Duration::from_secs(21)).is_err());
        assert!(SqsSource::new("http://x/q", arn, 10, Duration::from_secs(20)).is_ok());
    }

    #[tokio::test]
    async fn partial_failure_redelivers_only_the_failed_message_then_dead_letters_it() {
        let moto = start_moto().await;
        let sqs = aws_sdk_sqs::Client::new(&sdk_config(&moto).await);
        let Queues { source, dlq_url } = queues(&sqs, &unique("partial"), 2).await;
        send_bodies(&sqs, &source.queue_url, &["a", "b", "poison", "c", "d"]).await;

        let seen = Arc::new(Mutex::new(Vec::<SqsMessage>::new()));
        let handler = |event: SqsEvent| {
            let seen = Arc::clone(&seen);
            async move {
                seen.lock().unwrap().extend(event.records.iter().cloned());
                fail_poison(event).await
            }
        };

        let first = source.poll_once(&sqs, handler).await.unwrap();
        assert_eq!(first.received, 5);
        assert_eq!(first.deleted, 4);
        assert_eq!(first.reported_failed, 1);
        assert_eq!(first.retained.len(), 1);
        assert!(!first.function_error);

        // The record looks like what Lambda delivers.
        {
            let seen = seen.lock().unwrap();
            let record = &seen[0];
            assert_eq!(record.event_source.as_deref(), Some("aws:sqs"));
            assert_eq!(
                record.event_source_arn.as_deref(),
                Some(source.queue_arn.as_str())
            );
            assert_eq!(record.aws_region.as_deref(), Some("us-east-1"));
            assert_eq!(
                record
                    .attributes
                    .get("ApproximateReceiveCount")
                    .map(String::as_str),
                Some("1")
            );
            assert!(record.attributes.contains_key("SentTimestamp"));
            assert_eq!(
                record.md5_of_body.as_deref(),
                Some("0cc175b9c0f1b6a831c399e269772661") // md5("a")
            );
            assert_eq!(
                record.message_attributes["carrier"].string_value.as_deref(),
                Some("YTO")
            );
            let json = serde_json::to_value(record).unwrap();
            assert_eq!(json["eventSource"], "aws:sqs");
            assert!(json["receiptHandle"].is_string());
        }

        // Still invisible: nothing to receive.
        let empty = source.poll_once(&sqs, fail_poison).await.unwrap();
        assert_eq!(empty.received, 0);

        // Visibility timeout "elapses": only the poison message comes back, on its 2nd receive.
        assert_eq!(source.expire_failed(&sqs).await.unwrap(), 1);
        seen.lock().unwrap().clear();
        let second = source.poll_once(&sqs, handler).await.unwrap();
        assert_eq!(second.received, 1);
        assert_eq!(second.deleted, 0);
        {
            let seen = seen.lock().unwrap();
            assert_eq!(seen[0].body.as_deref(), Some("poison"));
            assert_eq!(seen[0].attributes["ApproximateReceiveCount"], "2");
        }

        // maxReceiveCount = 2 reached: the next receive moves it to the DLQ instead.
        assert_eq!(source.expire_failed(&sqs).await.unwrap(), 1);
        let third = source.poll_once(&sqs, fail_poison).await.unwrap();
        assert_eq!(third.received, 0);
        let dead = sqs
            .receive_message()
            .queue_url(&dlq_url)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].body.as_deref(), Some("poison"));
    }

    #[tokio::test]
    async fn function_error_deletes_nothing_and_invalid_identifier_fails_the_batch() {
        let moto = start_moto().await;
        let sqs = aws_sdk_sqs::Client::new(&sdk_config(&moto).await);
        let Queues { source, .. } = queues(&sqs, &unique("errors"), 5).await;
        send_bodies(&sqs, &source.queue_url, &["a", "b", "c"]).await;

        let failing = |_event: SqsEvent| async {
            Err::<SqsBatchResponse, lambda_runtime::Error>("provider down".into())
        };
        let report = source.poll_once(&sqs, failing).await.unwrap();
        assert_eq!(report.received, 3);
        assert_eq!(report.deleted, 0);
        assert!(report.function_error);
        assert_eq!(report.retained.len(), 3);

        // Real expiry this time (the queue's visibility timeout is 1 s): the batch comes back.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let unknown = |_event: SqsEvent| async {
            let mut response = SqsBatchResponse::default();
            response.add_failure("not-a-message-id");
            Ok::<_, lambda_runtime::Error>(response)
        };
        let report = source.poll_once(&sqs, unknown).await.unwrap();
        assert_eq!(report.received, 3);
        assert_eq!(report.deleted, 0);
        assert!(report.invalid_response);

        // Three messages retained (twice each): released once each.
        assert_eq!(source.expire_failed(&sqs).await.unwrap(), 3);
        let calls = AtomicUsize::new(0);
        let ok = |_event: SqsEvent| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, lambda_runtime::Error>(SqsBatchResponse::default()) }
        };
        let totals = source.drain(&sqs, ok, 10).await.unwrap();
        assert_eq!(totals.received, 3);
        assert_eq!(totals.deleted, 3);
        assert_eq!(totals.batches, calls.load(Ordering::SeqCst));
        assert!(!totals.hit_poll_bound);
        let left = sqs
            .get_queue_attributes()
            .queue_url(&source.queue_url)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap();
        assert_eq!(left[&QueueAttributeName::ApproximateNumberOfMessages], "0");
        assert_eq!(
            left[&QueueAttributeName::ApproximateNumberOfMessagesNotVisible],
            "0"
        );
    }

    #[tokio::test]
    async fn drains_make_only_the_calls_the_semantics_need() {
        let moto = start_moto().await;
        let sqs = aws_sdk_sqs::Client::new(&sdk_config(&moto).await);
        let Queues { source, .. } = queues(&sqs, &unique("calls"), 5).await;
        // for_queue's GetQueueAttributes.
        assert_eq!(source.aws_calls(), 1);
        let ok = |_event: SqsEvent| async {
            Ok::<_, lambda_runtime::Error>(SqsBatchResponse::default())
        };

        // Nothing retained: no ChangeMessageVisibilityBatch at all.
        assert_eq!(source.expire_failed(&sqs).await.unwrap(), 0);
        assert_eq!(source.aws_calls(), 1);

        // Idle drain: the one empty receive.
        let idle = source.drain(&sqs, ok, 10).await.unwrap();
        assert_eq!((idle.calls, idle.batches), (1, 0));
        assert!(!idle.hit_poll_bound);

        // Receive, delete, the empty receive.
        send_bodies(&sqs, &source.queue_url, &["a", "b", "c"]).await;
        let three = source.drain(&sqs, ok, 10).await.unwrap();
        assert_eq!((three.calls, three.batches, three.deleted), (3, 1, 3));

        // A partial failure deletes the rest in one call; the failed one is released in one.
        send_bodies(&sqs, &source.queue_url, &["d", "poison"]).await;
        let partial = source.drain(&sqs, fail_poison, 10).await.unwrap();
        assert_eq!(
            (partial.calls, partial.deleted, partial.reported_failed),
            (3, 1, 1)
        );
        assert_eq!(source.expire_failed(&sqs).await.unwrap(), 1);
        assert_eq!(source.expire_failed(&sqs).await.unwrap(), 0);

        // A function error deletes nothing: the receive is the only call of the poll.
        let failing = |_event: SqsEvent| async {
            Err::<SqsBatchResponse, lambda_runtime::Error>("provider down".into())
        };
        let errored = source.poll_once(&sqs, failing).await.unwrap();
        assert!(errored.function_error);
        assert_eq!((errored.received, errored.calls), (1, 1));

        assert_eq!(source.aws_calls(), 1 + 1 + 3 + 3 + 1 + 1);
    }
}
