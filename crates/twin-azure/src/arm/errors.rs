//! Classifying ARM's answers so the engine knows whether to retry, treat as gone, or stop; and
//! the typed errors of setting the client up.

use std::time::Duration;
use twin_engine::{CloudError, ErrorClass};

/// Codes of a resource that does not exist.
const NOT_FOUND_CODES: &[&str] = &[
    "NotFound",
    "ResourceNotFound",
    "ResourceGroupNotFound",
    "ParentResourceNotFound",
    "ContainerNotFound",
];

/// Codes that mean "another change of this resource is still running": ARM answers 409 while
/// a resource (or its group) is provisioning or being deleted, and the same call succeeds later.
const BUSY_CODES: &[&str] = &[
    "AnotherOperationInProgress",
    "Conflict",
    "OperationNotAllowed",
    "ResourceGroupBeingDeleted",
    "StorageAccountOperationInProgress",
    "RetryableError",
];

/// Codes of identity propagation: a principal or role assignment made a moment ago is not yet
/// visible everywhere (SPEC §9, minutes after a role assignment).
const PROPAGATION_CODES: &[&str] = &["PrincipalNotFound", "AuthorizationFailed"];

/// Code ARM answers while a resource provider is not registered in the subscription.
pub const MISSING_REGISTRATION: &str = "MissingSubscriptionRegistration";

/// The class of an ARM error given the HTTP status and the `error.code`.
pub fn class_of(status: u16, code: &str) -> ErrorClass {
    if status == 429 || code == "TooManyRequests" {
        return ErrorClass::Throttling;
    }
    if PROPAGATION_CODES.contains(&code) || code == MISSING_REGISTRATION {
        return ErrorClass::EventualConsistency;
    }
    if status == 409 && BUSY_CODES.contains(&code) {
        return ErrorClass::Transient;
    }
    if status >= 500 || code == "InternalServerError" || code == "ServiceUnavailable" {
        return ErrorClass::Transient;
    }
    if status == 404 || NOT_FOUND_CODES.contains(&code) {
        return ErrorClass::NotFound;
    }
    ErrorClass::Fatal
}

/// What the user can do about an error ARM will keep answering.
fn hint_for(status: u16, code: &str) -> Option<&'static str> {
    Some(match code {
        "InvalidAuthenticationToken" | "ExpiredAuthenticationToken" | "AuthenticationFailed" => {
            "sign in again (`az login`) or check AZURE_TENANT_ID / AZURE_CLIENT_ID / AZURE_CLIENT_SECRET"
        }
        "AuthorizationFailed" => {
            "if this persists, the signed-in identity lacks a role on the subscription or resource group (Contributor and User Access Administrator are needed)"
        }
        "SubscriptionNotFound" | "InvalidSubscriptionId" => {
            "check `azure.subscription_id` in config_providers.json (or AZURE_SUBSCRIPTION_ID)"
        }
        "StorageAccountAlreadyTaken" => {
            "storage account names are global and another subscription holds this one; choose another twin name"
        }
        "StorageAccountAlreadyExists" => {
            "this subscription has the account in another resource group; delete or move it, or choose another twin name"
        }
        "LocationNotAvailableForResourceType" | "InvalidLocation" | "NoRegisteredProviderFound" => {
            "set `azure.location` to a region that offers this resource type"
        }
        "InvalidResourceGroupLocation" => {
            "a resource group cannot move: delete it with `deployer destroy`, or set `azure.location` back"
        }
        "QuotaExceeded" | "RequestDisallowedByPolicy" => {
            "a subscription quota or Azure Policy refuses it; ask the subscription's owner"
        }
        MISSING_REGISTRATION => {
            "register the resource provider: `az provider register --namespace <ns>` (needs rights on the subscription)"
        }
        _ if status == 401 => "the token was refused; sign in again (`az login`)",
        _ if status == 403 => "the signed-in identity lacks a role for this call",
        _ => return None,
    })
}

/// A classified error for an ARM answer about `what` (e.g. `storage account twin1a2b3c4d`).
pub fn arm_error(
    what: &str,
    status: u16,
    code: &str,
    message: &str,
    retry_after: Option<Duration>,
) -> CloudError {
    let class = class_of(status, code);
    let mut e = CloudError::new(class, code, format!("{what}: {message} (HTTP {status})"))
        .with_retry_after(retry_after);
    if let Some(h) = hint_for(status, code) {
        e = e.with_hint(h);
    } else if class == ErrorClass::Fatal {
        e = e.with_hint(
            "fix what ARM names above, then run deploy again; finished resources are kept",
        );
    }
    e
}

/// The `error.code` and `error.message` of an ARM error body (or its top-level `code` and
/// `message`, which some providers answer), with the HTTP reason when the body has none.
pub fn error_parts(status: u16, body: &serde_json::Value) -> (String, String) {
    let e = body.get("error").unwrap_or(body);
    let code = e
        .get("code")
        .and_then(|c| c.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| match status {
            404 => "NotFound".to_string(),
            429 => "TooManyRequests".to_string(),
            s if s >= 500 => "ServerError".to_string(),
            s => format!("Http{s}"),
        });
    let message = e
        .get("message")
        .and_then(|m| m.as_str())
        .unwrap_or("no message in the answer")
        .to_string();
    (code, message)
}

/// A transport failure (connection refused, reset, dropped): the request may or may not have
/// been applied, so it is retried after a read.
pub fn transport_error(what: &str, e: &dyn std::fmt::Display) -> CloudError {
    CloudError::new(
        ErrorClass::Transient,
        "io",
        format!("{what}: the request to Azure Resource Manager failed: {e}"),
    )
}

/// Why an `AzureProvider` could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// No subscription in the config or the environment.
    #[error("no Azure subscription: set `azure.subscription_id` in config_providers.json or AZURE_SUBSCRIPTION_ID")]
    NoSubscription,
    /// No location in the config.
    #[error(
        "no Azure location: set `azure.location` in config_providers.json (e.g. \"westeurope\")"
    )]
    NoLocation,
    /// `DEPLOYER_AZURE_ARM_URL` is not a URL.
    #[error("DEPLOYER_AZURE_ARM_URL `{url}` is not a URL: {reason}")]
    BadUrl {
        /// The value.
        url: String,
        /// The parser's reason.
        reason: String,
    },
    /// No credential of the chain could be built.
    #[error("no Azure credential could be set up: {0}; sign in with `az login`, or set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET")]
    Credential(String),
}

impl From<SetupError> for CloudError {
    fn from(e: SetupError) -> Self {
        let code = match &e {
            SetupError::NoSubscription => "NoSubscription",
            SetupError::NoLocation => "NoLocation",
            SetupError::BadUrl { .. } => "BadArmUrl",
            SetupError::Credential(_) => "NoCredential",
        };
        CloudError::fatal(code, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn classes_follow_status_and_code() {
        assert_eq!(class_of(429, "TooManyRequests"), ErrorClass::Throttling);
        assert_eq!(class_of(503, "ServiceUnavailable"), ErrorClass::Transient);
        assert_eq!(class_of(500, "Whatever"), ErrorClass::Transient);
        assert_eq!(
            class_of(409, "AnotherOperationInProgress"),
            ErrorClass::Transient
        );
        assert_eq!(class_of(409, "Conflict"), ErrorClass::Transient);
        assert_eq!(
            class_of(400, "PrincipalNotFound"),
            ErrorClass::EventualConsistency
        );
        assert_eq!(
            class_of(403, "AuthorizationFailed"),
            ErrorClass::EventualConsistency
        );
        assert_eq!(
            class_of(409, MISSING_REGISTRATION),
            ErrorClass::EventualConsistency
        );
        assert_eq!(class_of(404, "ResourceGroupNotFound"), ErrorClass::NotFound);
        assert_eq!(class_of(400, "InvalidTemplate"), ErrorClass::Fatal);
        assert_eq!(
            class_of(409, "StorageAccountAlreadyTaken"),
            ErrorClass::Fatal
        );
    }

    #[test]
    fn fatal_errors_carry_code_message_and_hint() {
        let (code, message) = error_parts(
            409,
            &json!({"error": {"code": "StorageAccountAlreadyTaken", "message": "The storage account named x is already taken."}}),
        );
        let e = arm_error("storage account x", 409, &code, &message, None);
        assert_eq!(e.class, ErrorClass::Fatal);
        assert_eq!(e.code, "StorageAccountAlreadyTaken");
        assert!(e.message.contains("already taken") && e.message.contains("storage account x"));
        assert!(e.hint.as_deref().is_some_and(|h| h.contains("twin name")));
        let e = arm_error("x", 400, "SomethingNew", "m", None);
        assert!(e.hint.is_some(), "every fatal error says what to do");
    }

    #[test]
    fn bodies_without_error_object_still_name_a_code() {
        assert_eq!(error_parts(404, &json!(null)).0, "NotFound");
        assert_eq!(
            error_parts(400, &json!({"code": "BadRequest", "message": "m"})),
            ("BadRequest".to_string(), "m".to_string())
        );
    }
}
