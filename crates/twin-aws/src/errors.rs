//! Classifying every SDK error so the engine knows whether to retry, treat as gone, or stop.

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use twin_engine::{CloudError, ErrorClass, Observed};

/// Error codes that mean "slow down".
const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "ProvisionedThroughputExceededException",
    "SlowDown",
    "PriorRequestNotComplete",
    "BandwidthLimitExceeded",
    "EC2ThrottledException",
    // SNS.
    "Throttled",
];

/// Error codes of server-side trouble.
const TRANSIENT_CODES: &[&str] = &[
    "InternalFailure",
    "InternalError",
    "InternalServerError",
    "InternalServerException",
    "InternalException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "ServiceFailure",
    "RequestTimeout",
    "RequestTimeoutException",
];

/// Error codes of a resource that does not exist.
const NOT_FOUND_CODES: &[&str] = &[
    "ResourceNotFoundException",
    "ResourceNotFound",
    "NoSuchEntity",
    "NoSuchBucket",
    "NoSuchKey",
    "NotFoundException",
    "NotFound",
    "NoSuchLifecycleConfiguration",
    // SQS (query-compatible code, and the JSON protocol's own).
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
];

/// Codes that always mean "still propagating / still changing": retry.
const CONSISTENCY_CODES: &[&str] = &[
    "ResourceConflictException",
    "ConflictException",
    "ConcurrentModificationException",
    "ResourceInUseException",
    "OperationAbortedException",
    "DeleteConflict",
    // IoT: a certificate's or policy's detach is asynchronous, so a delete right after it
    // conflicts for a few seconds.
    "DeleteConflictException",
    "ConflictingOperationInProgress",
    // SQS: a queue's name is reusable only 60 s after its deletion.
    "AWS.SimpleQueueService.QueueDeletedRecently",
    "QueueDeletedRecently",
];

/// Codes of an account quota that is reached: waiting does not help, so they fail at once.
const QUOTA_CODES: &[&str] = &[
    "LimitExceeded",
    "LimitExceededException",
    "ServiceQuotaExceededException",
    "TooManyTagsException",
    "CodeStorageExceededException",
];

/// (code, message fragment) pairs of known eventual-consistency errors that share a code with
/// real mistakes, so the message decides.
const CONSISTENCY_MESSAGES: &[(&str, &str)] = &[
    // Lambda right after the role was created.
    ("InvalidParameterValueException", "cannot be assumed"),
    (
        "InvalidParameterValueException",
        "role defined for the function",
    ),
    (
        "InvalidParameterValueException",
        "execution role does not have permissions",
    ),
    ("InvalidParameterValueException", "is not ready"),
    // IoT rule whose Lambda permission has not propagated.
    ("InvalidRequestException", "permission"),
    ("InvalidRequestException", "not authorized to invoke"),
    ("UnauthorizedException", "assume role"),
    // IoT rule whose error action's role has not propagated yet.
    ("InvalidRequestException", "assume"),
    // S3 right after a bucket was created or deleted.
    ("NoSuchBucket", "eventual"),
];

/// The class of an error given its code, HTTP status and message.
pub fn class_of(code: &str, status: Option<u16>, message: &str) -> ErrorClass {
    let lower = message.to_ascii_lowercase();
    if QUOTA_CODES.contains(&code) {
        return ErrorClass::Fatal;
    }
    if THROTTLING_CODES.contains(&code) || status == Some(429) {
        return ErrorClass::Throttling;
    }
    if CONSISTENCY_MESSAGES
        .iter()
        .any(|(c, m)| *c == code && lower.contains(m))
    {
        return ErrorClass::EventualConsistency;
    }
    if NOT_FOUND_CODES.contains(&code) || code.starts_with("NoSuch") {
        return ErrorClass::NotFound;
    }
    if CONSISTENCY_CODES.contains(&code) {
        return ErrorClass::EventualConsistency;
    }
    if TRANSIENT_CODES.contains(&code) || status.is_some_and(|s| s >= 500) {
        return ErrorClass::Transient;
    }
    // S3 HEAD requests have no body, so a 404 arrives without a code.
    if status == Some(404) {
        return ErrorClass::NotFound;
    }
    ErrorClass::Fatal
}

/// What a user can do about a fatal error with this code.
fn hint_for(code: &str, status: Option<u16>) -> Option<&'static str> {
    match code {
        "AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation" => {
            Some("the AWS identity lacks this permission; grant it or use other credentials")
        }
        "InvalidClientTokenId"
        | "UnrecognizedClientException"
        | "ExpiredToken"
        | "ExpiredTokenException"
        | "InvalidSignatureException"
        | "SignatureDoesNotMatch" => {
            Some("the AWS credentials are invalid or expired; log in again (e.g. `aws sso login`)")
        }
        "BucketAlreadyExists" => {
            Some("a bucket of this name belongs to another account; bucket names are global")
        }
        c if QUOTA_CODES.contains(&c) => Some(
            "an account quota is reached (the message names it); raise it in Service Quotas or delete unused resources",
        ),
        _ if status == Some(403) => {
            Some("the AWS identity lacks this permission; grant it or use other credentials")
        }
        _ => None,
    }
}

/// Classifies a failed SDK call: throttling, 5xx, timeouts and dispatch failures are retried;
/// known eventual-consistency errors are retried; not-found is reported as such; the rest is
/// fatal with the cloud's code and, where known, advice.
pub fn classify<E>(err: &SdkError<E, HttpResponse>) -> CloudError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match err {
        SdkError::ServiceError(ctx) => {
            let status = Some(ctx.raw().status().as_u16());
            let e = ctx.err();
            let code = e.code().unwrap_or("Unknown").to_string();
            let message = e
                .message()
                .map(str::to_string)
                .unwrap_or_else(|| format!("HTTP {}", ctx.raw().status().as_u16()));
            let class = class_of(&code, status, &message);
            let code = if code == "Unknown" {
                format!("HTTP{}", ctx.raw().status().as_u16())
            } else {
                code
            };
            let retry_after = ctx
                .raw()
                .headers()
                .get("retry-after")
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(std::time::Duration::from_secs_f64);
            let mut out =
                CloudError::new(class, code.clone(), message).with_retry_after(retry_after);
            if class == ErrorClass::Fatal {
                if let Some(h) = hint_for(&code, status) {
                    out = out.with_hint(h);
                }
            }
            out
        }
        SdkError::TimeoutError(_) => {
            CloudError::new(ErrorClass::Transient, "Timeout", "the AWS call timed out")
        }
        SdkError::DispatchFailure(d) => CloudError::new(
            ErrorClass::Transient,
            if d.is_timeout() {
                "Timeout"
            } else {
                "ConnectionFailed"
            },
            format!(
                "the connection to AWS failed: {}",
                error_chain(err, d.is_io())
            ),
        )
        .with_hint("a network problem, not your credentials; the call is retried"),
        SdkError::ResponseError(_) => CloudError::new(
            ErrorClass::Transient,
            "ResponseError",
            format!("unreadable response from AWS: {}", error_chain(err, false)),
        ),
        SdkError::ConstructionFailure(_) => CloudError::fatal(
            "RequestInvalid",
            format!(
                "the request could not be built: {}",
                error_chain(err, false)
            ),
        )
        .with_hint("this is a bug in deployer; please report it"),
        _ => CloudError::new(ErrorClass::Transient, "Unknown", error_chain(err, false)),
    }
}

fn error_chain(err: &dyn std::error::Error, _io: bool) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.join(": ")
}

/// Classifies a result: `Ok(None)` for a not-found error, so `read` can say "does not exist".
pub fn not_found_is_none<T, E>(
    result: Result<T, SdkError<E, HttpResponse>>,
) -> Result<Option<T>, CloudError>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) => {
            let c = classify(&e);
            if c.class == ErrorClass::NotFound {
                Ok(None)
            } else {
                Err(c)
            }
        }
    }
}

/// Classifies a result of a delete: a not-found error means it is already gone, which is success.
pub fn gone_is_ok<T, E>(result: Result<T, SdkError<E, HttpResponse>>) -> Result<(), CloudError>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    not_found_is_none(result).map(|_| ())
}

/// Shorthand: classify an SDK error (for `map_err`).
pub fn cloud<E>(err: SdkError<E, HttpResponse>) -> CloudError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    classify(&err)
}

/// The read that follows a write: `None` means the resource disappeared between the two calls,
/// reported as a fatal `code` error naming `what` (e.g. "thing digital-twin-sensor-1").
pub fn reread(found: Option<Observed>, code: &str, what: &str) -> Result<Observed, CloudError> {
    found.ok_or_else(|| CloudError::fatal(code, format!("{what} vanished")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_by_code_status_and_message() {
        assert_eq!(
            class_of("ThrottlingException", Some(400), ""),
            ErrorClass::Throttling
        );
        assert_eq!(class_of("Whatever", Some(429), ""), ErrorClass::Throttling);
        assert_eq!(class_of("Whatever", Some(503), ""), ErrorClass::Transient);
        assert_eq!(
            class_of("NoSuchEntity", Some(404), ""),
            ErrorClass::NotFound
        );
        assert_eq!(class_of("HTTP404", Some(404), ""), ErrorClass::NotFound);
        assert_eq!(
            class_of(
                "InvalidParameterValueException",
                Some(400),
                "The role defined for the function cannot be assumed by Lambda."
            ),
            ErrorClass::EventualConsistency
        );
        assert_eq!(
            class_of(
                "InvalidParameterValueException",
                Some(400),
                "Runtime is wrong"
            ),
            ErrorClass::Fatal
        );
        assert_eq!(
            class_of("DeleteConflict", Some(409), ""),
            ErrorClass::EventualConsistency
        );
        assert_eq!(class_of("AccessDenied", Some(403), "no"), ErrorClass::Fatal);
        assert_eq!(
            class_of("DeleteConflictException", Some(409), "attached"),
            ErrorClass::EventualConsistency
        );
        // A quota does not clear by waiting: fatal, with the advice to raise it.
        assert_eq!(
            class_of("LimitExceededException", Some(400), "rules per bus"),
            ErrorClass::Fatal
        );
        assert!(hint_for("LimitExceededException", Some(400)).is_some_and(|h| h.contains("quota")));
        assert!(hint_for("AccessDenied", Some(403)).is_some());
    }
}
