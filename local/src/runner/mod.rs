//! The in-process Lambda runner: the event-source semantics that AWS Lambda applies and moto
//! does not (moto runs no functions and has no event-source mappings).
//!
//! - [`SqsSource`]: an SQS event-source mapping with `ReportBatchItemFailures`.
//! - [`StreamSource`]: a DynamoDB-stream event-source mapping with `ReportBatchItemFailures`,
//!   retries, bisection and an on-failure SQS destination.
//! - [`ScheduleTick`]: the event an EventBridge schedule rule delivers.

pub mod chaos;
pub mod http;
pub mod sqs;
pub mod stream;

pub use sqs::{SqsDrainReport, SqsPollReport, SqsSource};
pub use stream::{StartingPosition, StreamDrainReport, StreamPollReport, StreamSource};

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use chrono::{DateTime, SubsecRound, Utc};

/// Why the runner itself (not the function it invokes) failed. A function error is never a
/// `RunnerError`: it is reported in the poll report and handled with AWS's retry rules.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("invalid event-source configuration: {0}")]
    InvalidConfig(String),
    #[error("SQS {op} failed")]
    Sqs {
        op: &'static str,
        #[source]
        source: Box<aws_sdk_sqs::Error>,
    },
    #[error("DynamoDB Streams {op} failed")]
    Streams {
        op: &'static str,
        #[source]
        source: Box<aws_sdk_dynamodbstreams::Error>,
    },
    #[error("malformed response from {op}: {reason}")]
    MalformedResponse { op: &'static str, reason: String },
    #[error("could not encode the on-failure record")]
    OnFailureEncode(#[source] serde_json::Error),
}

impl RunnerError {
    pub(crate) fn sqs(op: &'static str, source: impl Into<aws_sdk_sqs::Error>) -> Self {
        RunnerError::Sqs {
            op,
            source: Box::new(source.into()),
        }
    }

    pub(crate) fn streams(
        op: &'static str,
        source: impl Into<aws_sdk_dynamodbstreams::Error>,
    ) -> Self {
        RunnerError::Streams {
            op,
            source: Box::new(source.into()),
        }
    }
}

/// The parts of an ARN (`arn:partition:service:region:account:resource`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ArnParts {
    pub region: String,
    pub account: String,
}

pub(crate) fn parse_arn(arn: &str) -> Result<ArnParts, RunnerError> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", _partition, _service, region, account, resource]
            if !region.is_empty() && !resource.is_empty() =>
        {
            Ok(ArnParts {
                region: (*region).to_string(),
                account: (*account).to_string(),
            })
        }
        _ => Err(RunnerError::InvalidConfig(format!(
            "not a regional ARN: {arn:?}"
        ))),
    }
}

/// Builds the event an EventBridge schedule rule (`rate(..)` / `cron(..)`) delivers to its target.
#[derive(Debug, Clone)]
pub struct ScheduleTick {
    rule_arn: String,
    region: String,
    account: String,
}

impl ScheduleTick {
    /// `rule_arn` is `arn:aws:events:REGION:ACCOUNT:rule/NAME`.
    pub fn new(rule_arn: impl Into<String>) -> Result<Self, RunnerError> {
        let rule_arn = rule_arn.into();
        let parts = parse_arn(&rule_arn)?;
        Ok(ScheduleTick {
            rule_arn,
            region: parts.region,
            account: parts.account,
        })
    }

    pub fn rule_arn(&self) -> &str {
        &self.rule_arn
    }

    /// The "Scheduled Event" for a firing at `time` (real or simulated). EventBridge stamps
    /// scheduled events with whole seconds, so sub-second precision is dropped.
    pub fn event_at(&self, time: DateTime<Utc>) -> EventBridgeEvent<serde_json::Value> {
        let mut event = EventBridgeEvent::<serde_json::Value>::default();
        event.version = Some("0".to_string());
        event.id = Some(uuid::Uuid::new_v4().to_string());
        event.detail_type = "Scheduled Event".to_string();
        event.source = "aws.events".to_string();
        event.account = Some(self.account.clone());
        event.time = Some(time.trunc_subsecs(0));
        event.region = Some(self.region.clone());
        event.resources = Some(vec![self.rule_arn.clone()]);
        event.detail = serde_json::Value::Object(serde_json::Map::new());
        event
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! The moto server shared by this test binary, and SDK config pointing at it.

    use std::sync::Arc;

    pub type Moto = Arc<crate::moto::MotoServer>;

    pub async fn start_moto() -> Moto {
        crate::moto::MotoServer::shared().await.unwrap()
    }

    /// Tests share one moto: every resource name gets a unique suffix.
    pub fn unique(name: &str) -> String {
        format!("runner-{name}-{}", uuid::Uuid::new_v4().simple())
    }

    pub async fn sdk_config(moto: &Moto) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(moto.endpoint())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                "test", "test", None, None, "static",
            ))
            .load()
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn schedule_tick_is_a_scheduled_event() {
        let tick =
            ScheduleTick::new("arn:aws:events:us-east-1:123456789012:rule/parcelwatch-scheduler")
                .unwrap();
        let at = Utc
            .with_ymd_and_hms(2026, 11, 24, 8, 5, 0)
            .unwrap()
            .checked_add_signed(chrono::Duration::milliseconds(731))
            .unwrap();
        let json = serde_json::to_value(tick.event_at(at)).unwrap();
        assert_eq!(json["detail-type"], "Scheduled Event");
        assert_eq!(json["source"], "aws.events");
        assert_eq!(json["account"], "123456789012");
        assert_eq!(json["region"], "us-east-1");
        assert_eq!(json["time"], "2026-11-24T08:05:00Z");
        assert_eq!(
            json["resources"][0],
            "arn:aws:events:us-east-1:123456789012:rule/parcelwatch-scheduler"
        );
        assert_eq!(json["detail"], serde_json::json!({}));
        assert_eq!(json["version"], "0");
        assert_eq!(json["id"].as_str().map(str::len), Some(36));
    }

    #[test]
    fn bad_arn_is_rejected() {
        assert!(matches!(
            ScheduleTick::new("parcelwatch-scheduler"),
            Err(RunnerError::InvalidConfig(_))
        ));
        let parts = parse_arn("arn:aws:sqs:ap-east-1:000000000000:tracking").unwrap();
        assert_eq!(parts.region, "ap-east-1");
        assert_eq!(parts.account, "000000000000");
    }
}
