//! SNS adapter: transactional SMS to a phone number, JSON to the merchant topic.

use super::{PublishError, Publisher};
use crate::domain::PhoneNumber;
use aws_sdk_sns::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sns::types::MessageAttributeValue;
use aws_sdk_sns::Client;

#[derive(Clone)]
pub struct SnsPublisher {
    client: Client,
    sender_id: Option<String>,
}

impl SnsPublisher {
    pub fn new(client: Client, sender_id: Option<String>) -> Self {
        SnsPublisher { client, sender_id }
    }
}

fn classify<E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static>(
    e: SdkError<E, aws_sdk_sns::config::http::HttpResponse>,
) -> PublishError {
    let f = crate::aws_error::read(&e);
    if f.transient {
        PublishError::Retryable(f.message)
    } else {
        PublishError::Permanent(f.message)
    }
}

fn string_attr(v: &str) -> Result<MessageAttributeValue, PublishError> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(v)
        .build()
        .map_err(|e| PublishError::Permanent(e.to_string()))
}

impl Publisher for SnsPublisher {
    async fn sms(&self, to: &PhoneNumber, text: &str) -> Result<String, PublishError> {
        let mut req = self
            .client
            .publish()
            .phone_number(to.expose())
            .message(text)
            .message_attributes("AWS.SNS.SMS.SMSType", string_attr("Transactional")?);
        if let Some(id) = &self.sender_id {
            req = req.message_attributes("AWS.SNS.SMS.SenderID", string_attr(id)?);
        }
        let out = req.send().await.map_err(classify)?;
        Ok(out.message_id().unwrap_or_default().to_string())
    }

    async fn topic(
        &self,
        topic_arn: &str,
        subject: &str,
        json: &str,
    ) -> Result<String, PublishError> {
        let out = self
            .client
            .publish()
            .topic_arn(topic_arn)
            .subject(subject)
            .message(json)
            .send()
            .await
            .map_err(classify)?;
        Ok(out.message_id().unwrap_or_default().to_string())
    }
}
