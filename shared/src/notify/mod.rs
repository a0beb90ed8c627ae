//! Sending notifications: SMS and the merchant topic, through SNS.

pub mod sns;

use crate::domain::PhoneNumber;
use std::future::Future;

pub use sns::SnsPublisher;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Throttling, 5xx, network: retry with back-off.
    #[error("publish temporarily failed: {0}")]
    Retryable(String),
    /// Invalid number, opted out, bad parameter: retrying will not help.
    #[error("publish rejected: {0}")]
    Permanent(String),
}

impl PublishError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, PublishError::Retryable(_))
    }
}

pub trait Publisher: Send + Sync {
    /// Send a transactional SMS; returns the provider's message id.
    fn sms(
        &self,
        to: &PhoneNumber,
        text: &str,
    ) -> impl Future<Output = Result<String, PublishError>> + Send;
    /// Publish a JSON document to a topic; returns the message id.
    fn topic(
        &self,
        topic_arn: &str,
        subject: &str,
        json: &str,
    ) -> impl Future<Output = Result<String, PublishError>> + Send;
}
