//! Azure errors → [`CloudError`]: the resource, Azure's error code, and a classification that
//! decides the advice and whether the platform's retry can help.
//!
//! The SDK pipelines already retry 429/503 with the service's `Retry-After`; what reaches this
//! map has outlasted those retries, and the wait the service asked for is kept in the message.

use azure_core::error::ErrorKind;
use azure_core::http::StatusCode;
use twin_functions::{CloudError, CloudErrorKind};

/// Azure Storage's error code for reading an Archive-tier blob (HTTP 409).
pub const BLOB_ARCHIVED: &str = "BlobArchived";

/// Classifies an Azure status code and error code.
pub fn kind_of(status: Option<u16>, code: &str) -> CloudErrorKind {
    match (status, code) {
        (_, "BlobNotFound" | "ContainerNotFound" | "ResourceNotFound" | "NotFound") => {
            CloudErrorKind::NotFound
        }
        (_, "ServerBusy" | "TooManyRequests" | "RequestRateTooLarge") | (Some(429), _) => {
            CloudErrorKind::Throttled
        }
        (_, "InternalError" | "OperationTimedOut" | "ServiceUnavailable")
        | (Some(500 | 502 | 503 | 504 | 408), _) => CloudErrorKind::Transient,
        // A role assignment takes minutes to reach the data plane, so a 403 right after a
        // deployment passes by itself; one that persists is reported with the same advice to
        // re-run the deployment (see `advice_for`).
        (Some(403), _) => CloudErrorKind::Transient,
        (Some(401), _) => CloudErrorKind::AccessDenied,
        (Some(404), _) => CloudErrorKind::NotFound,
        _ => CloudErrorKind::Rejected,
    }
}

/// Extra advice for codes whose class alone does not say what to do.
fn advice_for(status: Option<u16>, code: &str) -> Option<&'static str> {
    match (status, code) {
        (_, BLOB_ARCHIVED) => Some(
            "the blob is in the Archive tier and offline: rehydrate it (set its tier to Cool) and \
             wait for the rehydration before reading it",
        ),
        (Some(403), _) => Some(
            "access was refused; right after a role assignment this is normal for a few minutes \
             (retried); if it persists, run `deployer deploy` to restore the identity's roles",
        ),
        _ => None,
    }
}

/// Builds the [`CloudError`] for `status`/`code`/`message`, adding the advice and the service's
/// requested wait.
pub fn classified(
    operation: &'static str,
    resource: impl Into<String>,
    status: Option<u16>,
    code: &str,
    message: &str,
    retry_after: Option<&str>,
) -> CloudError {
    let mut message = match status {
        Some(s) => format!("HTTP {s}: {message}"),
        None => message.to_string(),
    };
    if let Some(wait) = retry_after {
        message.push_str(&format!(" (the service asked to retry after {wait} s)"));
    }
    if let Some(advice) = advice_for(status, code) {
        message.push_str("; ");
        message.push_str(advice);
    }
    CloudError::new(operation, resource, code, message, kind_of(status, code))
}

/// Converts an `azure_core` error (Blob Storage, identity, HTTP) of `operation` on `resource`.
pub fn cloud_error(
    operation: &'static str,
    resource: impl Into<String>,
    err: &azure_core::Error,
) -> CloudError {
    let status = err.http_status().map(u16::from);
    match err.kind() {
        ErrorKind::HttpResponse {
            error_code,
            raw_response,
            ..
        } => {
            let code = error_code.clone().unwrap_or_else(|| {
                status
                    .map(|s| format!("Http{s}"))
                    .unwrap_or_else(|| "Unknown".into())
            });
            let retry_after = raw_response
                .as_ref()
                .and_then(|r| r.headers().get_optional_str(&"retry-after".into()))
                .map(str::to_string);
            classified(
                operation,
                resource,
                status,
                &code,
                &err.to_string(),
                retry_after.as_deref(),
            )
        }
        ErrorKind::Io | ErrorKind::Connection => CloudError::new(
            operation,
            resource,
            "Connection",
            err.to_string(),
            CloudErrorKind::Transient,
        ),
        ErrorKind::Credential => CloudError::new(
            operation,
            resource,
            "Credential",
            format!(
                "{err}; check the managed identity's client id ({})",
                crate::credential::CLIENT_ID_ENV
            ),
            CloudErrorKind::AccessDenied,
        ),
        _ => CloudError::new(
            operation,
            resource,
            "ClientError",
            err.to_string(),
            CloudErrorKind::Rejected,
        ),
    }
}

/// Converts a Cosmos DB error of `operation` on `resource`.
pub fn cosmos_error(
    operation: &'static str,
    resource: impl Into<String>,
    err: &azure_data_cosmos::CosmosError,
) -> CloudError {
    let status = err.status();
    let code_num = u16::from(status.status_code());
    // Errors raised before any response (connection, serialisation) carry no wire status.
    let status_code = err.is_from_wire().then_some(code_num);
    let code = status
        .name()
        .map(str::to_string)
        .unwrap_or_else(|| format!("Http{code_num}"));
    let retry_after = err
        .response()
        .and_then(|r| r.headers().retry_after_ms)
        .map(|ms| format!("{:.1}", ms as f64 / 1000.0));
    if status_code.is_none() {
        let kind = if status.is_transient() || status.is_timeout() {
            CloudErrorKind::Transient
        } else {
            CloudErrorKind::Rejected
        };
        return CloudError::new(operation, resource, code, err.to_string(), kind);
    }
    classified(
        operation,
        resource,
        status_code,
        &code,
        &err.to_string(),
        retry_after.as_deref(),
    )
}

/// Whether an HTTP status is the one Cosmos and Blob Storage use for a failed precondition.
pub fn is_precondition_failed(status: Option<StatusCode>) -> bool {
    status == Some(StatusCode::PreconditionFailed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_statuses_and_codes() {
        assert_eq!(kind_of(Some(404), "BlobNotFound"), CloudErrorKind::NotFound);
        assert_eq!(kind_of(Some(429), "Whatever"), CloudErrorKind::Throttled);
        assert_eq!(kind_of(Some(503), "ServerBusy"), CloudErrorKind::Throttled);
        assert_eq!(
            kind_of(Some(500), "InternalError"),
            CloudErrorKind::Transient
        );
        assert_eq!(
            kind_of(Some(403), "AuthorizationPermissionMismatch"),
            CloudErrorKind::Transient
        );
        assert_eq!(kind_of(Some(409), BLOB_ARCHIVED), CloudErrorKind::Rejected);
        assert_eq!(kind_of(Some(400), "InvalidInput"), CloudErrorKind::Rejected);
    }

    #[test]
    fn archived_and_forbidden_errors_say_what_to_do() {
        let e = classified(
            "GetBlob",
            "blob a/b",
            Some(409),
            BLOB_ARCHIVED,
            "archived",
            None,
        );
        assert!(e.to_string().contains("rehydrate"), "{e}");
        let e = classified(
            "PutBlob",
            "blob a/b",
            Some(429),
            "TooManyRequests",
            "slow",
            Some("3"),
        );
        assert!(e.to_string().contains("retry after 3 s"), "{e}");
        assert!(e.is_retryable());
        let e = classified(
            "PutBlob",
            "blob a/b",
            Some(403),
            "AuthorizationFailure",
            "no",
            None,
        );
        assert!(e.is_retryable() && e.to_string().contains("role"), "{e}");
    }
}
