//! The one error type every storage and invocation trait returns: it names the resource, the
//! cloud's error code and what the operator should do.

use std::fmt;

/// What kind of failure a cloud call had, which decides the advice given and whether the
/// platform's own retry of the invocation can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloudErrorKind {
    /// The resource does not exist (table, bucket, function).
    NotFound,
    /// The function's identity may not do this.
    AccessDenied,
    /// The service asked us to slow down.
    Throttled,
    /// Network trouble, timeouts, 5xx: likely to pass.
    Transient,
    /// Anything else: a request the service refused.
    Rejected,
}

/// A failed call to a storage or invocation service.
#[derive(Debug, Clone, thiserror::Error)]
pub struct CloudError {
    /// What was attempted, e.g. `PutItem`.
    pub operation: &'static str,
    /// The resource it targeted, e.g. `table digital-twin-hot`.
    pub resource: String,
    /// The service's error code, e.g. `ResourceNotFoundException`.
    pub code: String,
    /// The service's message.
    pub message: String,
    /// The classification.
    pub kind: CloudErrorKind,
}

impl CloudError {
    /// Builds an error for `operation` on `resource`.
    pub fn new(
        operation: &'static str,
        resource: impl Into<String>,
        code: impl Into<String>,
        message: impl Into<String>,
        kind: CloudErrorKind,
    ) -> Self {
        Self {
            operation,
            resource: resource.into(),
            code: code.into(),
            message: message.into(),
            kind,
        }
    }

    /// Whether retrying the whole invocation later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            CloudErrorKind::Throttled | CloudErrorKind::Transient
        )
    }

    fn advice(&self) -> &'static str {
        match self.kind {
            CloudErrorKind::NotFound => "the resource is missing: run `deployer deploy` to create it",
            CloudErrorKind::AccessDenied => {
                "the function's role lacks this permission: run `deployer deploy` to restore its policy"
            }
            CloudErrorKind::Throttled => "the service is throttling; the invocation will be retried",
            CloudErrorKind::Transient => "a transient failure; the invocation will be retried",
            CloudErrorKind::Rejected => "the request was refused; see the message",
        }
    }
}

impl fmt::Display for CloudError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} on {} failed ({}): {}; {}",
            self.operation,
            self.resource,
            self.code,
            self.message,
            self.advice()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_names_resource_code_and_advice() {
        let e = CloudError::new(
            "PutItem",
            "table twin-hot",
            "ResourceNotFoundException",
            "Requested resource not found",
            CloudErrorKind::NotFound,
        );
        let text = e.to_string();
        assert!(text.contains("PutItem on table twin-hot"));
        assert!(text.contains("ResourceNotFoundException"));
        assert!(text.contains("deployer deploy"));
        assert!(!e.is_retryable());
    }
}
