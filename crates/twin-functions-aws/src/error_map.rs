//! SDK errors → [`CloudError`]: the resource, the service's error code, and a classification that
//! decides the advice and whether the platform's retry can help.

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use twin_functions::{CloudError, CloudErrorKind};

/// Classifies an AWS error code.
pub fn kind_of(code: &str) -> CloudErrorKind {
    match code {
        "ResourceNotFoundException" | "NoSuchBucket" | "NoSuchKey" | "NotFound"
        | "NotFoundException" => {
            CloudErrorKind::NotFound
        }
        "AccessDenied"
        | "AccessDeniedException"
        | "UnrecognizedClientException"
        | "InvalidAccessKeyId"
        | "SignatureDoesNotMatch"
        | "ExpiredToken"
        // SNS and the IoT data plane name a refused identity so.
        | "AuthorizationError"
        | "UnauthorizedException"
        | "ForbiddenException" => CloudErrorKind::AccessDenied,
        "ProvisionedThroughputExceededException"
        | "ThrottlingException"
        | "RequestLimitExceeded"
        | "SlowDown"
        | "TooManyRequestsException"
        | "Throttling"
        | "Throttled"
        | "ThrottledException"
        | "KMSThrottling" => CloudErrorKind::Throttled,
        "InternalServerError"
        | "InternalServerException"
        | "InternalError"
        | "ServiceUnavailable"
        | "ServiceException"
        | "ServiceUnavailableException"
        | "InternalFailureException"
        | "InternalErrorException"
        | "RequestTimeoutException" => CloudErrorKind::Transient,
        _ => CloudErrorKind::Rejected,
    }
}

/// Converts an SDK error of `operation` on `resource`.
pub fn cloud_error<E, R>(
    operation: &'static str,
    resource: impl Into<String>,
    err: SdkError<E, R>,
) -> CloudError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    let (code, kind) = match &err {
        SdkError::TimeoutError(_) => ("Timeout".to_string(), CloudErrorKind::Transient),
        SdkError::DispatchFailure(_) => ("DispatchFailure".to_string(), CloudErrorKind::Transient),
        SdkError::ResponseError(_) => ("ResponseError".to_string(), CloudErrorKind::Transient),
        SdkError::ConstructionFailure(_) => {
            ("ConstructionFailure".to_string(), CloudErrorKind::Rejected)
        }
        _ => {
            let code = err.code().unwrap_or("Unknown").to_string();
            let kind = kind_of(&code);
            (code, kind)
        }
    };
    let message = err
        .message()
        .map(str::to_string)
        .unwrap_or_else(|| DisplayErrorContext(&err).to_string());
    CloudError::new(operation, resource, code, message, kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_common_codes() {
        assert_eq!(
            kind_of("ResourceNotFoundException"),
            CloudErrorKind::NotFound
        );
        assert_eq!(
            kind_of("AccessDeniedException"),
            CloudErrorKind::AccessDenied
        );
        assert_eq!(
            kind_of("ProvisionedThroughputExceededException"),
            CloudErrorKind::Throttled
        );
        assert_eq!(kind_of("ValidationException"), CloudErrorKind::Rejected);
        // SNS and IoT data plane codes (event-rule actions).
        assert_eq!(kind_of("AuthorizationError"), CloudErrorKind::AccessDenied);
        assert_eq!(
            kind_of("UnauthorizedException"),
            CloudErrorKind::AccessDenied
        );
        assert_eq!(kind_of("ThrottledException"), CloudErrorKind::Throttled);
        assert_eq!(
            kind_of("InternalFailureException"),
            CloudErrorKind::Transient
        );
        assert_eq!(
            kind_of("ServiceUnavailableException"),
            CloudErrorKind::Transient
        );
        assert_eq!(kind_of("NotFound"), CloudErrorKind::NotFound);
        assert_eq!(kind_of("InvalidParameter"), CloudErrorKind::Rejected);
    }
}
