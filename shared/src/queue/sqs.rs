//! SQS adapter.

use super::{DeadLetters, MessageSink, Outgoing, QueueError};
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use aws_sdk_sqs::Client;

#[derive(Clone)]
pub struct SqsQueue {
    client: Client,
    url: String,
}

impl SqsQueue {
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        SqsQueue {
            client,
            url: url.into(),
        }
    }
}

fn classify<E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static>(
    e: SdkError<E, aws_sdk_sqs::config::http::HttpResponse>,
) -> QueueError {
    let f = crate::aws_error::read(&e);
    if f.transient {
        QueueError::Retryable(f.message)
    } else {
        QueueError::Permanent(f.message)
    }
}

impl MessageSink for SqsQueue {
    async fn send_batch(&self, entries: &[Outgoing]) -> Result<Vec<String>, QueueError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let mut batch = Vec::with_capacity(entries.len());
        for e in entries {
            batch.push(
                SendMessageBatchRequestEntry::builder()
                    .id(&e.id)
                    .message_body(&e.body)
                    .build()
                    .map_err(|err| QueueError::Permanent(err.to_string()))?,
            );
        }
        let out = self
            .client
            .send_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(batch))
            .send()
            .await
            .map_err(classify)?;
        Ok(out.failed().iter().map(|f| f.id().to_string()).collect())
    }
}

impl DeadLetters for SqsQueue {
    async fn dead_letter(&self, body: &str, reason: &str) -> Result<(), QueueError> {
        let attr = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(reason)
            .build()
            .map_err(|err| QueueError::Permanent(err.to_string()))?;
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .message_attributes("error_reason", attr)
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }
}
