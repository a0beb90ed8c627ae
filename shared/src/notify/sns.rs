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

/// An SMS failure as SNS told it, minus the number: SNS echoes the phone it refused
/// (`Invalid parameter: PhoneNumber Reason: +86… is not valid`), and this text reaches logs,
/// the ledger's `last_error` and the DLQ.
fn without_number(e: PublishError, to: &PhoneNumber) -> PublishError {
    let scrub = |m: String| {
        let e164 = to.expose();
        let digits = e164.trim_start_matches('+');
        let national = digits.strip_prefix("86").unwrap_or(digits);
        [e164, digits, national]
            .iter()
            .fold(m, |m, spelling| m.replace(spelling, &to.masked()))
    };
    match e {
        PublishError::Retryable(m) => PublishError::Retryable(scrub(m)),
        PublishError::Permanent(m) => PublishError::Permanent(scrub(m)),
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
        let out = req
            .send()
            .await
            .map_err(|e| without_number(classify(e), to))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sms_failures_do_not_carry_the_number() {
        let to = PhoneNumber::parse("13812345678").unwrap();
        for raw in [
            "Invalid parameter: PhoneNumber Reason: +8613812345678 is not valid",
            "number 8613812345678 opted out",
            "13812345678 unreachable",
        ] {
            let e = without_number(PublishError::Permanent(raw.into()), &to);
            let text = e.to_string();
            assert!(!text.contains("13812345678"), "{text}");
            assert!(text.contains("+86138****5678"), "{text}");
            assert!(!e.is_retryable());
        }
        let e = without_number(
            PublishError::Retryable("+8613812345678 throttled".into()),
            &to,
        );
        assert!(e.is_retryable());
        assert_eq!(
            e.to_string(),
            "publish temporarily failed: +86138****5678 throttled"
        );
    }
}
