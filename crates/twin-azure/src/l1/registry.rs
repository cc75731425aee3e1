//! IoT Hub's device registry (service API 2021-04-12) at the host ARM reported for the hub:
//! `GET|PUT|DELETE https://<hostName>/devices/<id>`, with an Entra token for
//! `https://iothubs.azure.net/.default` (the deployer holds IoT Hub Registry Contributor on the
//! hub) and ETags on every change. Answers are classified here so the engine can retry.

use crate::arm::data_plane::DataPlaneClient;
use crate::arm::errors::arm_error;
use crate::arm::{ArmClient, Body, Reply};
use azure_core::http::Method;
use serde_json::Value;
use twin_engine::{CloudError, ErrorClass};

/// API version of the registry.
pub const API: &str = "2021-04-12";

/// Token scope of IoT Hub's service APIs.
pub const SCOPE: &str = "https://iothubs.azure.net/.default";

/// A device registry client for one hub.
pub struct Registry {
    client: DataPlaneClient,
    base: String,
}

/// A device identity as the registry returned it, with its ETag.
#[derive(Debug, Clone)]
pub struct Device {
    /// The JSON body (`deviceId`, `status`, `authentication`, `etag`, ...).
    pub body: Value,
    /// The ETag to send as `If-Match` on a change.
    pub etag: Option<String>,
}

impl Registry {
    /// A client of the hub at `host_name` (as ARM returned it).
    pub fn new(arm: &ArmClient, host_name: &str) -> Self {
        let client = arm.data_plane(SCOPE);
        let base = client.base_url(host_name);
        Registry { client, base }
    }

    fn url(&self, device: &str) -> String {
        format!("{}/devices/{device}?api-version={API}", self.base)
    }

    /// The device, or `None` when the registry does not know it.
    pub async fn get(&self, device: &str, what: &str) -> Result<Option<Device>, CloudError> {
        let r = self
            .client
            .send(Method::Get, &self.url(device), None, &[], what)
            .await?;
        if r.status == 404 {
            return Ok(None);
        }
        if !r.is_success() {
            return Err(registry_error(&r, what));
        }
        Ok(Some(device_of(r)))
    }

    /// PUTs the device: a new identity when `if_match` is `None` (the registry refuses it if
    /// one exists), else a replacement of the identity with that ETag.
    pub async fn put(
        &self,
        device: &str,
        body: &Value,
        if_match: Option<&str>,
        what: &str,
    ) -> Result<Device, CloudError> {
        let headers: Vec<(&'static str, String)> = if_match
            .map(|e| vec![("if-match", quoted(e))])
            .unwrap_or_default();
        let r = self
            .client
            .send(
                Method::Put,
                &self.url(device),
                Some(Body::json(body, what)?),
                &headers,
                what,
            )
            .await?;
        if !r.is_success() {
            return Err(registry_error(&r, what));
        }
        Ok(device_of(r))
    }

    /// Deletes the device whatever its ETag; one already gone is fine.
    pub async fn delete(&self, device: &str, what: &str) -> Result<(), CloudError> {
        let r = self
            .client
            .send(
                Method::Delete,
                &self.url(device),
                None,
                &[("if-match", "*".to_string())],
                what,
            )
            .await?;
        if r.is_success() || r.status == 404 {
            Ok(())
        } else {
            Err(registry_error(&r, what))
        }
    }
}

fn quoted(etag: &str) -> String {
    if etag == "*" || etag.starts_with('"') || etag.starts_with("W/") {
        etag.to_string()
    } else {
        format!("\"{etag}\"")
    }
}

fn device_of(r: Reply) -> Device {
    let etag = r.etag.clone().or_else(|| {
        r.body
            .get("etag")
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    Device { body: r.body, etag }
}

/// IoT Hub's error code: `ErrorCode:DeviceNotFound;...` in `Message` (the service API's
/// shape), else ARM's `error.code`, else one named after the status.
pub fn error_code(status: u16, body: &Value) -> (String, String) {
    let message = body
        .get("Message")
        .or_else(|| body.get("message"))
        .and_then(Value::as_str);
    if let Some(m) = message {
        if let Some(rest) = m.strip_prefix("ErrorCode:") {
            let code = rest.split(';').next().unwrap_or("").trim().to_string();
            let text = rest.split_once(';').map(|(_, t)| t).unwrap_or(rest);
            if !code.is_empty() {
                return (code, text.trim().to_string());
            }
        }
    }
    crate::arm::errors::error_parts(status, body)
}

/// The classified error of a registry answer about `what`.
pub fn registry_error(r: &Reply, what: &str) -> CloudError {
    let (code, message) = error_code(r.status, &r.body);
    match r.status {
        // Another writer changed the identity since it was read: read again and retry.
        412 => CloudError::new(
            ErrorClass::EventualConsistency,
            code,
            format!("{what}: the identity changed while it was being updated (HTTP 412)"),
        ),
        // A role assignment on the hub takes minutes to reach the data plane (SPEC §9).
        403 => CloudError::new(
            ErrorClass::EventualConsistency,
            code,
            format!("{what}: {message} (HTTP 403)"),
        )
        .with_hint(
            "the deployer needs the role IoT Hub Registry Contributor on the hub; a new assignment takes a few minutes to apply",
        ),
        429 => CloudError::new(
            ErrorClass::Throttling,
            code,
            format!("{what}: {message} (HTTP 429)"),
        )
        .with_retry_after(r.retry_after),
        _ => arm_error(what, r.status, &code, &message, r.retry_after),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn iot_hub_error_codes_are_read_from_the_message() {
        let (code, text) = error_code(
            404,
            &json!({"Message": "ErrorCode:DeviceNotFound;Device d not found.", "ExceptionMessage": ""}),
        );
        assert_eq!(
            (code.as_str(), text.as_str()),
            ("DeviceNotFound", "Device d not found.")
        );
        assert_eq!(error_code(500, &json!(null)).0, "ServerError");
    }

    #[test]
    fn answers_are_classified() {
        let reply = |status| Reply {
            status,
            body: json!({"Message": "ErrorCode:X;m"}),
            async_operation: None,
            location: None,
            retry_after: None,
            etag: None,
        };
        assert_eq!(
            registry_error(&reply(412), "d").class,
            ErrorClass::EventualConsistency
        );
        assert_eq!(
            registry_error(&reply(403), "d").class,
            ErrorClass::EventualConsistency
        );
        assert_eq!(
            registry_error(&reply(429), "d").class,
            ErrorClass::Throttling
        );
        assert_eq!(
            registry_error(&reply(503), "d").class,
            ErrorClass::Transient
        );
        let e = registry_error(&reply(400), "device d");
        assert_eq!(e.class, ErrorClass::Fatal);
        assert!(e.message.contains("device d") && e.hint.is_some());
        assert_eq!(quoted("abc"), "\"abc\"");
        assert_eq!(quoted("\"abc\""), "\"abc\"");
    }
}
