//! Replaying what the pipeline gave up on, safely.
//!
//! Two places hold work that failed for good:
//! - the **tracking DLQ**: tracking messages the tracker refused (with an `error_reason`
//!   attribute) or that failed `maxReceiveCount` times (SQS moved them; no reason attribute);
//! - the notifier's **on-failure queue**: records Lambda's stream mapping gave up on after its
//!   retries and bisection; each names a shard and a range of sequence numbers.
//!
//! Why replay is safe: the tracker re-reads the shipment and writes with optimistic versions, so
//! a replayed check of a parcel that has moved on is a no-op; the notifier claims a ledger entry
//! per (transition, version, channel) before sending, so a replayed stream record whose
//! notification already went out sends nothing. The order is *send/replay first, delete after*:
//! a crash in between leaves a copy behind, which is harmless for the same reasons.
//!
//! What is not replayed: a tracking message whose body is not a track message (replaying it
//! fails the same way: it stays, with its reason), a message already redriven
//! [`RedriveOptions::max_redrives`] times (it keeps failing: a human looks at it), and
//! on-failure records whose stream records are past the stream's 24-hour retention.

use std::collections::BTreeMap;
use std::future::Future;

use aws_lambda_events::event::dynamodb::Event as StreamEvent;
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName};
use parcelwatch::queue::TrackMessage;

use crate::runner::stream::{StartingPosition, StreamSource};

/// Attribute counting how often a message went DLQ → queue.
pub const REDRIVE_COUNT: &str = "redrive_count";
/// The reason attribute the tracker (and this tool) put on dead letters.
pub const ERROR_REASON: &str = "error_reason";

#[derive(Debug, thiserror::Error)]
pub enum RedriveError {
    #[error("SQS {op}: {message}")]
    Sqs { op: &'static str, message: String },
    #[error("stream: {0}")]
    Stream(#[from] crate::runner::RunnerError),
}

fn sqs_err(op: &'static str, e: impl std::fmt::Display) -> RedriveError {
    RedriveError::Sqs {
        op,
        message: e.to_string(),
    }
}

#[derive(Debug, Clone, Copy)]
pub struct RedriveOptions {
    /// Replay (and delete what was replayed); otherwise only list.
    pub apply: bool,
    /// At most this many messages are looked at.
    pub max_messages: usize,
    /// A message redriven this often already stays in the DLQ.
    pub max_redrives: u32,
}

impl Default for RedriveOptions {
    fn default() -> Self {
        RedriveOptions {
            apply: false,
            max_messages: 10_000,
            max_redrives: 3,
        }
    }
}

/// What a redrive saw and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedriveReport {
    pub seen: usize,
    pub replayed: usize,
    /// Left in the DLQ: (why it was dead-lettered, why it was not replayed) → count.
    pub kept: BTreeMap<(String, String), usize>,
    /// Why each message was dead-lettered → count (replayed or not).
    pub reasons: BTreeMap<String, usize>,
}

impl RedriveReport {
    pub fn kept_total(&self) -> usize {
        self.kept.values().sum()
    }
}

impl std::fmt::Display for RedriveReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "seen {}  replayed {}  kept {}",
            self.seen,
            self.replayed,
            self.kept_total()
        )?;
        for (reason, n) in &self.reasons {
            writeln!(f, "  {n:>6}  dead-lettered: {reason}")?;
        }
        for ((reason, why), n) in &self.kept {
            writeln!(f, "  {n:>6}  kept ({why}): {reason}")?;
        }
        Ok(())
    }
}

struct Received {
    handle: String,
    body: String,
    reason: String,
    redrives: u32,
}

/// Receive up to `max` messages, holding each invisible long enough for one run.
async fn receive_all(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    max: usize,
) -> Result<Vec<Received>, RedriveError> {
    let mut out = Vec::new();
    while out.len() < max {
        let page = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .visibility_timeout(300)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| sqs_err("ReceiveMessage", aws_sdk_sqs::Error::from(e)))?;
        let messages = page.messages.unwrap_or_default();
        if messages.is_empty() {
            break;
        }
        for m in messages {
            let Some(handle) = m.receipt_handle.clone() else {
                continue;
            };
            let attrs = m.message_attributes.as_ref();
            let reason = attrs
                .and_then(|a| a.get(ERROR_REASON))
                .and_then(|v| v.string_value.clone())
                .unwrap_or_else(|| "failed maxReceiveCount times (moved by SQS)".to_string());
            let redrives = attrs
                .and_then(|a| a.get(REDRIVE_COUNT))
                .and_then(|v| v.string_value.as_deref())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            out.push(Received {
                handle,
                body: m.body.unwrap_or_default(),
                reason,
                redrives,
            });
        }
    }
    Ok(out)
}

async fn release(sqs: &aws_sdk_sqs::Client, url: &str, handle: &str) -> Result<(), RedriveError> {
    sqs.change_message_visibility()
        .queue_url(url)
        .receipt_handle(handle)
        .visibility_timeout(0)
        .send()
        .await
        .map_err(|e| sqs_err("ChangeMessageVisibility", aws_sdk_sqs::Error::from(e)))?;
    Ok(())
}

async fn delete(sqs: &aws_sdk_sqs::Client, url: &str, handle: &str) -> Result<(), RedriveError> {
    sqs.delete_message()
        .queue_url(url)
        .receipt_handle(handle)
        .send()
        .await
        .map_err(|e| sqs_err("DeleteMessage", aws_sdk_sqs::Error::from(e)))?;
    Ok(())
}

fn string_attr(v: impl Into<String>) -> Result<MessageAttributeValue, RedriveError> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(v)
        .build()
        .map_err(|e| sqs_err("SendMessage", e))
}

/// Tracking DLQ → tracking queue. Each replayable message is sent back (with its redrive
/// count raised), then deleted from the DLQ; the rest is made visible again and stays.
pub async fn redrive_tracking(
    sqs: &aws_sdk_sqs::Client,
    dlq_url: &str,
    queue_url: &str,
    opts: RedriveOptions,
) -> Result<RedriveReport, RedriveError> {
    let mut report = RedriveReport::default();
    let messages = receive_all(sqs, dlq_url, opts.max_messages).await?;
    for m in messages {
        report.seen += 1;
        *report.reasons.entry(m.reason.clone()).or_default() += 1;
        let refusal = match TrackMessage::parse(&m.body) {
            Err(_) => Some("not a track message; replaying fails the same way"),
            Ok(_) if m.redrives >= opts.max_redrives => Some("redriven too often already"),
            Ok(_) if !opts.apply => Some("dry run"),
            Ok(_) => None,
        };
        if let Some(why) = refusal {
            *report
                .kept
                .entry((m.reason.clone(), why.to_string()))
                .or_default() += 1;
            release(sqs, dlq_url, &m.handle).await?;
            continue;
        }
        sqs.send_message()
            .queue_url(queue_url)
            .message_body(&m.body)
            .message_attributes(REDRIVE_COUNT, string_attr((m.redrives + 1).to_string())?)
            .send()
            .await
            .map_err(|e| sqs_err("SendMessage", aws_sdk_sqs::Error::from(e)))?;
        delete(sqs, dlq_url, &m.handle).await?;
        report.replayed += 1;
        tracing::info!(reason = %m.reason, redrives = m.redrives + 1, "tracking message redriven");
    }
    Ok(report)
}

/// The part of a stream on-failure record that says what failed.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamBatchInfo {
    pub shard_id: String,
    pub start_sequence_number: String,
    pub end_sequence_number: String,
    pub stream_arn: String,
    #[serde(default)]
    pub batch_size: usize,
}

#[derive(Debug, serde::Deserialize)]
struct OnFailureRecord {
    #[serde(rename = "DDBStreamBatchInfo")]
    info: StreamBatchInfo,
    #[serde(rename = "requestContext", default)]
    context: Option<serde_json::Value>,
}

/// Notifier on-failure queue → the stream records it points at → `invoke` (the notifier). A
/// record is deleted only when the replayed batch reports no failure.
pub async fn redrive_stream<H, Fut>(
    sqs: &aws_sdk_sqs::Client,
    streams: &aws_sdk_dynamodbstreams::Client,
    failure_queue_url: &str,
    opts: RedriveOptions,
    invoke: H,
) -> Result<RedriveReport, RedriveError>
where
    H: Fn(StreamEvent) -> Fut,
    Fut: Future<Output = DynamoDbEventResponse>,
{
    let mut report = RedriveReport::default();
    let messages = receive_all(sqs, failure_queue_url, opts.max_messages).await?;
    for m in messages {
        report.seen += 1;
        let parsed: Result<OnFailureRecord, _> = serde_json::from_str(&m.body);
        let Ok(record) = parsed else {
            *report.reasons.entry("unreadable".to_string()).or_default() += 1;
            *report
                .kept
                .entry((
                    "unreadable".to_string(),
                    "not an on-failure record".to_string(),
                ))
                .or_default() += 1;
            release(sqs, failure_queue_url, &m.handle).await?;
            continue;
        };
        let condition = record
            .context
            .as_ref()
            .and_then(|c| c.get("condition"))
            .and_then(|c| c.as_str())
            .unwrap_or("unknown")
            .to_string();
        *report.reasons.entry(condition.clone()).or_default() += 1;
        if !opts.apply {
            *report
                .kept
                .entry((condition, "dry run".to_string()))
                .or_default() += 1;
            release(sqs, failure_queue_url, &m.handle).await?;
            continue;
        }
        let info = &record.info;
        let source = StreamSource::new(
            &info.stream_arn,
            "arn:aws:lambda:us-east-1:000000000000:function:redrive",
            StartingPosition::TrimHorizon,
        )?;
        let records = match source
            .read_range(
                streams,
                &info.shard_id,
                &info.start_sequence_number,
                &info.end_sequence_number,
                100,
            )
            .await
        {
            Ok(records) => records,
            Err(e) => {
                tracing::warn!(error = %e, shard = %info.shard_id, "on-failure record's records unreadable");
                Vec::new()
            }
        };
        if records.is_empty() {
            *report
                .kept
                .entry((condition, "records past the stream's retention".to_string()))
                .or_default() += 1;
            release(sqs, failure_queue_url, &m.handle).await?;
            continue;
        }
        let mut event = StreamEvent::default();
        event.records = records;
        let response = invoke(event).await;
        if response.batch_item_failures.is_empty() {
            delete(sqs, failure_queue_url, &m.handle).await?;
            report.replayed += 1;
        } else {
            *report
                .kept
                .entry((condition, "the replay failed again".to_string()))
                .or_default() += 1;
            release(sqs, failure_queue_url, &m.handle).await?;
        }
    }
    Ok(report)
}

/// The `redrive` command: `redrive tracking|notify [--apply] [--max N] [--max-redrives N]`.
/// Queues come from the environment `make stack` writes (`TRACKING_DLQ_URL`,
/// `TRACKING_QUEUE_URL`, `NOTIFY_FAILURE_QUEUE_URL`), AWS from the usual variables
/// (`AWS_ENDPOINT_URL` for a local stack). `notify --apply` replays through the notifier's own
/// code, built from the notifier's environment as its Lambda builds it.
pub async fn cli(
    args: &[String],
    env: &std::collections::HashMap<String, String>,
) -> Result<String, String> {
    const USAGE: &str =
        "usage: redrive tracking|notify [--apply] [--max N] [--max-redrives N]  (dry run without --apply)";
    let mut opts = RedriveOptions::default();
    let mut what = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut number = |name: &str| -> Result<usize, String> {
            it.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{name} needs a number\n{USAGE}"))
        };
        match a.as_str() {
            "--apply" => opts.apply = true,
            "--max" => opts.max_messages = number("--max")?,
            "--max-redrives" => opts.max_redrives = number("--max-redrives")? as u32,
            "tracking" | "notify" if what.is_none() => what = Some(a.clone()),
            "-h" | "--help" => return Ok(USAGE.to_string()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    let var = |k: &str| {
        env.get(k)
            .filter(|v| !v.is_empty())
            .cloned()
            .ok_or_else(|| format!("{k} is not set (source .local/stack.env, or export it)"))
    };
    let sdk = aws_config::load_from_env().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let report = match what.as_deref() {
        Some("tracking") => {
            let dlq = var("TRACKING_DLQ_URL")?;
            let queue = var("TRACKING_QUEUE_URL")?;
            redrive_tracking(&sqs, &dlq, &queue, opts)
                .await
                .map_err(|e| e.to_string())?
        }
        Some("notify") => {
            let failures = var("NOTIFY_FAILURE_QUEUE_URL")?;
            let streams = aws_sdk_dynamodbstreams::Client::new(&sdk);
            let base = parcelwatch::config::Config::from_env(env).map_err(|e| e.to_string())?;
            let cfg =
                parcelwatch::config::NotifierConfig::from_env(env).map_err(|e| e.to_string())?;
            let vault =
                parcelwatch::crypto::Vault::from_env(&sdk, env).map_err(|e| e.to_string())?;
            let n = notifier::build(&sdk, &base, cfg, vault);
            let n = &n;
            redrive_stream(&sqs, &streams, &failures, opts, |event| async move {
                notifier::handle_batch(n, event, chrono::Utc::now()).await
            })
            .await
            .map_err(|e| e.to_string())?
        }
        _ => return Err(USAGE.to_string()),
    };
    Ok(report.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::LocalStack;
    use aws_sdk_dynamodb::types::AttributeValue;
    use std::sync::Mutex;

    async fn send(sqs: &aws_sdk_sqs::Client, url: &str, body: &str, attrs: &[(&str, &str)]) {
        let mut req = sqs.send_message().queue_url(url).message_body(body);
        for (k, v) in attrs {
            req = req.message_attributes(*k, string_attr(*v).unwrap());
        }
        req.send().await.unwrap();
    }

    async fn bodies(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<(String, Option<String>)> {
        let got = receive_all(sqs, url, 100).await.unwrap();
        for m in &got {
            release(sqs, url, &m.handle).await.unwrap();
        }
        let mut out: Vec<_> = got
            .into_iter()
            .map(|m| {
                let count = (m.redrives > 0).then(|| m.redrives.to_string());
                (m.body, count)
            })
            .collect();
        out.sort();
        out
    }

    #[tokio::test]
    async fn tracking_dlq_replays_what_can_succeed_and_keeps_the_rest_with_reasons() {
        let stack = LocalStack::start_shared().await.unwrap();
        let sqs = aws_sdk_sqs::Client::new(&stack.sdk_config);
        let (dlq, queue) = (&stack.tracking_dlq_url, &stack.tracking_queue_url);
        let good =
            r#"{"carrier":"YTO","number":"YT1234567890123","due_at":"2026-11-24T00:00:00Z"}"#;
        let tired = r#"{"carrier":"ZTO","number":"731234567890","due_at":"2026-11-24T00:00:00Z"}"#;
        send(&sqs, dlq, good, &[(ERROR_REASON, "provider kept failing")]).await;
        send(
            &sqs,
            dlq,
            "{not json",
            &[(ERROR_REASON, "body is not a track message")],
        )
        .await;
        send(&sqs, dlq, tired, &[(REDRIVE_COUNT, "3")]).await;

        // A dry run lists and moves nothing.
        let dry = redrive_tracking(&sqs, dlq, queue, RedriveOptions::default())
            .await
            .unwrap();
        assert_eq!((dry.seen, dry.replayed, dry.kept_total()), (3, 0, 3));
        assert_eq!(dry.reasons.get("provider kept failing"), Some(&1));
        assert_eq!(
            dry.reasons
                .get("failed maxReceiveCount times (moved by SQS)"),
            Some(&1)
        );
        assert_eq!(bodies(&sqs, queue).await.len(), 0);

        let applied = redrive_tracking(
            &sqs,
            dlq,
            queue,
            RedriveOptions {
                apply: true,
                ..RedriveOptions::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(
            (applied.seen, applied.replayed, applied.kept_total()),
            (3, 1, 2)
        );
        assert_eq!(
            applied.kept.get(&(
                "body is not a track message".to_string(),
                "not a track message; replaying fails the same way".to_string()
            )),
            Some(&1)
        );
        assert_eq!(
            bodies(&sqs, queue).await,
            vec![(good.to_string(), Some("1".to_string()))],
            "the good message is back on the tracking queue, its redrive counted"
        );
        let left: Vec<String> = bodies(&sqs, dlq).await.into_iter().map(|b| b.0).collect();
        assert_eq!(left, vec![tired.to_string(), "{not json".to_string()]);
    }

    #[tokio::test]
    async fn stream_failures_replay_the_records_they_point_at_and_go_only_when_the_replay_succeeds()
    {
        let stack = LocalStack::start_shared().await.unwrap();
        let sqs = aws_sdk_sqs::Client::new(&stack.sdk_config);
        let streams = aws_sdk_dynamodbstreams::Client::new(&stack.sdk_config);
        let dynamo = aws_sdk_dynamodb::Client::new(&stack.sdk_config);
        for i in 0..3 {
            dynamo
                .put_item()
                .table_name(&stack.table_name)
                .item("pk", AttributeValue::S(format!("TEST#{i}")))
                .item("sk", AttributeValue::S("META".into()))
                .send()
                .await
                .unwrap();
        }
        // Where those writes landed: the shard and its records' sequence numbers.
        let source = StreamSource::new(
            &stack.table_stream_arn,
            "arn:aws:lambda:us-east-1:123456789012:function:t",
            StartingPosition::TrimHorizon,
        )
        .unwrap();
        let desc = streams
            .describe_stream()
            .stream_arn(&stack.table_stream_arn)
            .send()
            .await
            .unwrap();
        let shard = desc.stream_description.unwrap().shards.unwrap()[0]
            .shard_id
            .clone()
            .unwrap();
        let it = streams
            .get_shard_iterator()
            .stream_arn(&stack.table_stream_arn)
            .shard_id(&shard)
            .shard_iterator_type(aws_sdk_dynamodbstreams::types::ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator
            .unwrap();
        let raw = streams
            .get_records()
            .shard_iterator(it)
            .send()
            .await
            .unwrap()
            .records
            .unwrap_or_default();
        let last = raw
            .last()
            .and_then(|r| r.dynamodb.as_ref())
            .and_then(|d| d.sequence_number.clone())
            .unwrap();
        let first = raw
            .first()
            .and_then(|r| r.dynamodb.as_ref())
            .and_then(|d| d.sequence_number.clone())
            .unwrap();
        let all = source
            .read_range(&streams, &shard, &first, &last, 10)
            .await
            .unwrap();
        assert_eq!(all.len(), raw.len(), "read_range reads start..=end");
        let seqs: Vec<String> = all
            .iter()
            .filter(|r| {
                matches!(r.change.keys.get("pk"), Some(serde_dynamo::AttributeValue::S(s)) if s.starts_with("TEST#"))
            })
            .map(|r| r.change.sequence_number.clone().unwrap())
            .collect();
        assert_eq!(seqs.len(), 3);
        let failure = serde_json::json!({
            "requestContext": {"condition": "RetryAttemptsExhausted", "approximateInvokeCount": 3},
            "DDBStreamBatchInfo": {
                "shardId": shard, "startSequenceNumber": seqs[0], "endSequenceNumber": seqs[1],
                "batchSize": 2, "streamArn": stack.table_stream_arn,
            },
        })
        .to_string();
        let queue = &stack.notify_failure_queue_url;
        send(&sqs, queue, &failure, &[]).await;
        send(&sqs, queue, "garbage", &[]).await;
        let apply = RedriveOptions {
            apply: true,
            ..RedriveOptions::default()
        };

        // A replay that fails again keeps the record.
        let failing = redrive_stream(&sqs, &streams, queue, apply, |e: StreamEvent| async move {
            let mut r = DynamoDbEventResponse::default();
            let mut f = aws_lambda_events::event::streams::DynamoDbBatchItemFailure::default();
            f.item_identifier = e.records[0].change.sequence_number.clone();
            r.batch_item_failures.push(f);
            r
        })
        .await
        .unwrap();
        assert_eq!(
            (failing.seen, failing.replayed, failing.kept_total()),
            (2, 0, 2)
        );

        let seen = Mutex::new(Vec::new());
        let ok = redrive_stream(&sqs, &streams, queue, apply, |e: StreamEvent| {
            for r in &e.records {
                seen.lock()
                    .unwrap()
                    .push(r.change.sequence_number.clone().unwrap());
            }
            async { DynamoDbEventResponse::default() }
        })
        .await
        .unwrap();
        assert_eq!((ok.seen, ok.replayed), (2, 1));
        assert_eq!(
            *seen.lock().unwrap(),
            seqs[..2].to_vec(),
            "exactly the records the on-failure record names, in order"
        );
        assert_eq!(ok.reasons.get("RetryAttemptsExhausted"), Some(&1));
        let left: Vec<String> = bodies(&sqs, queue).await.into_iter().map(|b| b.0).collect();
        assert_eq!(
            left,
            vec!["garbage".to_string()],
            "only the unreadable one stays"
        );
    }
}
