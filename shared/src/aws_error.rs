//! One reading of an AWS SDK failure for every adapter: its error code, a message fit for logs
//! and DLQ reasons, and whether it is transient (transport failure, throttling, 5xx). Each adapter
//! adds its own service cases on top (DynamoDB's lost conditions, for one).

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

/// Error codes that mean "slow down or try again" across DynamoDB, SQS and SNS.
const TRANSIENT_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "RequestThrottled",
    "RequestLimitExceeded",
    "LimitExceededException",
    "KMSThrottlingException",
    "InternalServerError",
    "InternalError",
    "InternalErrorException",
    "InternalFailure",
    "ServiceUnavailable",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdkFailure {
    /// The service's error code (`ConditionalCheckFailedException`), empty for transport failures.
    pub code: String,
    pub message: String,
    pub transient: bool,
}

pub fn read<E>(err: &SdkError<E, HttpResponse>) -> SdkFailure
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = err.code().unwrap_or_default().to_string();
    let (message, transient) = match err {
        SdkError::ServiceError(se) => (
            format!("{code}: {}", se.err().message().unwrap_or_default()),
            TRANSIENT_CODES.contains(&code.as_str()) || se.raw().status().is_server_error(),
        ),
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            (err.to_string(), true)
        }
        other => (other.to_string(), false),
    };
    SdkFailure {
        code,
        message,
        transient,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::error::ErrorMetadata;
    use aws_sdk_dynamodb::operation::put_item::PutItemError;

    fn service_error(code: &str, status: u16) -> SdkError<PutItemError, HttpResponse> {
        let err = PutItemError::generic(ErrorMetadata::builder().code(code).message("m").build());
        let raw = HttpResponse::new(
            status.try_into().expect("valid status"),
            aws_smithy_types::body::SdkBody::empty(),
        );
        SdkError::service_error(err, raw)
    }

    #[test]
    fn throttling_and_server_errors_are_transient_validation_is_not() {
        let t = read(&service_error("ThrottlingException", 400));
        assert_eq!(
            (t.code.as_str(), t.transient),
            ("ThrottlingException", true)
        );
        assert!(t.message.starts_with("ThrottlingException: m"));
        assert!(read(&service_error("SomethingNew", 503)).transient);
        let v = read(&service_error("ValidationException", 400));
        assert!(!v.transient);
        let c = read(&service_error("ConditionalCheckFailedException", 400));
        assert!(
            !c.transient,
            "a lost condition is the caller's decision, not a retry"
        );
    }

    #[test]
    fn a_timeout_is_transient() {
        let e: SdkError<PutItemError, HttpResponse> = SdkError::timeout_error("deadline");
        assert!(read(&e).transient);
    }
}
