//! The Azure Digital Twins data plane (API 2023-10-31) at the host ARM reported for the
//! instance (`properties.hostName`), with an Entra token for
//! `https://digitaltwins.azure.net/.default`: models (`/models`), twins (`/digitaltwins/<id>`),
//! relationships (`/digitaltwins/<id>/relationships/<id>`) and queries (`/query`). Answers are
//! classified here so the engine can retry; 403 is retryable because a new "Azure Digital
//! Twins Data Owner" assignment takes minutes to reach the data plane (SPEC §9).

use crate::arm::data_plane::DataPlaneClient;
use crate::arm::errors::{arm_error, error_parts};
use crate::arm::{ArmClient, Body, Reply};
use azure_core::http::Method;
use serde_json::{json, Value};
use twin_engine::{CloudError, ErrorClass};

/// API version of the data plane.
pub const API: &str = "2023-10-31";

/// Token scope of the Azure Digital Twins data plane.
pub const SCOPE: &str = "https://digitaltwins.azure.net/.default";

/// Content type of a JSON Patch body.
const JSON_PATCH: &str = "application/json-patch+json";

/// A data-plane client of one instance.
pub struct AdtClient {
    client: DataPlaneClient,
    base: String,
}

/// `s` as one URL path segment: every byte but the unreserved ones percent-encoded (DTMIs
/// hold `:` and `;`, entity ids may hold anything).
pub fn path_segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl AdtClient {
    /// A client of the instance at `host_name` (as ARM returned it).
    pub fn new(arm: &ArmClient, host_name: &str) -> Self {
        let client = arm.data_plane(SCOPE);
        let base = client.base_url(host_name);
        AdtClient { client, base }
    }

    fn url(&self, path: &str, query: &str) -> String {
        let sep = if query.is_empty() { "" } else { "&" };
        format!("{}{path}?api-version={API}{sep}{query}", self.base)
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<Body>,
        what: &str,
    ) -> Result<Reply, CloudError> {
        self.client.send(method, url, body, &[], what).await
    }

    /// Every model the instance holds, with its definition (follows `nextLink`).
    pub async fn list_models(&self, what: &str) -> Result<Vec<Value>, CloudError> {
        let mut items = Vec::new();
        let mut url = Some(self.url("/models", "includeModelDefinition=true"));
        while let Some(u) = url.take() {
            let r = self.send(Method::Get, &u, None, what).await?;
            if !r.is_success() {
                return Err(adt_error(&r, what));
            }
            let page = r
                .body
                .get("value")
                .and_then(Value::as_array)
                .ok_or_else(|| malformed(what, "the model list has no `value`"))?;
            items.extend(page.iter().cloned());
            url = r
                .body
                .get("nextLink")
                .and_then(Value::as_str)
                .map(str::to_string);
        }
        Ok(items)
    }

    /// Uploads `models` in one call (the caller keeps to the service's 250 per call).
    pub async fn add_models(&self, models: &[Value], what: &str) -> Result<(), CloudError> {
        let body = Body::json(&Value::Array(models.to_vec()), what)?;
        let r = self
            .send(Method::Post, &self.url("/models", ""), Some(body), what)
            .await?;
        if r.is_success() {
            Ok(())
        } else {
            Err(adt_error(&r, what))
        }
    }

    /// Deletes the model `id`; one already gone is fine.
    pub async fn delete_model(&self, id: &str, what: &str) -> Result<(), CloudError> {
        let url = self.url(&format!("/models/{}", path_segment(id)), "");
        self.delete(&url, what).await
    }

    /// Every row a query returns (follows `continuationToken`).
    pub async fn query(&self, query: &str, what: &str) -> Result<Vec<Value>, CloudError> {
        let mut rows = Vec::new();
        let mut body = json!({"query": query});
        loop {
            let r = self
                .send(
                    Method::Post,
                    &self.url("/query", ""),
                    Some(Body::json(&body, what)?),
                    what,
                )
                .await?;
            if !r.is_success() {
                return Err(adt_error(&r, what));
            }
            let page = r
                .body
                .get("value")
                .and_then(Value::as_array)
                .ok_or_else(|| malformed(what, "the query answer has no `value`"))?;
            rows.extend(page.iter().cloned());
            match r.body.get("continuationToken").and_then(Value::as_str) {
                Some(t) if !t.is_empty() => body = json!({"continuationToken": t}),
                _ => return Ok(rows),
            }
        }
    }

    /// Creates or replaces the twin `id` with `body` (`$metadata.$model` and properties).
    pub async fn put_twin(&self, id: &str, body: &Value, what: &str) -> Result<(), CloudError> {
        let url = self.url(&format!("/digitaltwins/{}", path_segment(id)), "");
        let r = self
            .send(Method::Put, &url, Some(Body::json(body, what)?), what)
            .await?;
        if r.is_success() {
            Ok(())
        } else {
            Err(adt_error(&r, what))
        }
    }

    /// Applies a JSON Patch to the twin `id`.
    pub async fn patch_twin(&self, id: &str, patch: &Value, what: &str) -> Result<(), CloudError> {
        let url = self.url(&format!("/digitaltwins/{}", path_segment(id)), "");
        let bytes = serde_json::to_vec(patch)
            .map_err(|e| CloudError::fatal("BadRequestBody", format!("{what}: {e}")))?;
        let body = Body {
            content_type: JSON_PATCH,
            bytes,
        };
        let r = self.send(Method::Patch, &url, Some(body), what).await?;
        if r.is_success() {
            Ok(())
        } else {
            Err(adt_error(&r, what))
        }
    }

    /// Deletes the twin `id`; one already gone is fine (the service refuses a twin that still
    /// has relationships).
    pub async fn delete_twin(&self, id: &str, what: &str) -> Result<(), CloudError> {
        let url = self.url(&format!("/digitaltwins/{}", path_segment(id)), "");
        self.delete(&url, what).await
    }

    /// Creates or replaces the relationship `rel` of the twin `source`.
    pub async fn put_relationship(
        &self,
        source: &str,
        rel: &str,
        body: &Value,
        what: &str,
    ) -> Result<(), CloudError> {
        let url = self.url(
            &format!(
                "/digitaltwins/{}/relationships/{}",
                path_segment(source),
                path_segment(rel)
            ),
            "",
        );
        let r = self
            .send(Method::Put, &url, Some(Body::json(body, what)?), what)
            .await?;
        if r.is_success() {
            Ok(())
        } else {
            Err(adt_error(&r, what))
        }
    }

    /// Deletes the relationship `rel` of the twin `source`; one already gone is fine.
    pub async fn delete_relationship(
        &self,
        source: &str,
        rel: &str,
        what: &str,
    ) -> Result<(), CloudError> {
        let url = self.url(
            &format!(
                "/digitaltwins/{}/relationships/{}",
                path_segment(source),
                path_segment(rel)
            ),
            "",
        );
        self.delete(&url, what).await
    }

    async fn delete(&self, url: &str, what: &str) -> Result<(), CloudError> {
        let r = self.send(Method::Delete, url, None, what).await?;
        if r.is_success() || r.status == 404 {
            Ok(())
        } else {
            Err(adt_error(&r, what))
        }
    }
}

fn malformed(what: &str, why: &str) -> CloudError {
    CloudError::fatal("MalformedResponse", format!("{what}: {why}"))
        .with_hint("run deploy again; if it persists, the Azure Digital Twins API changed")
}

/// The classified error of a data-plane answer about `what`.
pub fn adt_error(r: &Reply, what: &str) -> CloudError {
    let (code, message) = error_parts(r.status, &r.body);
    match r.status {
        // A role assignment on the instance takes minutes to reach the data plane (SPEC §9).
        403 => CloudError::new(
            ErrorClass::EventualConsistency,
            code,
            format!("{what}: {message} (HTTP 403)"),
        )
        .with_hint(
            "the caller needs the role Azure Digital Twins Data Owner on the instance; a new assignment takes a few minutes to apply",
        ),
        429 => CloudError::new(
            ErrorClass::Throttling,
            code,
            format!("{what}: {message} (HTTP 429)"),
        )
        .with_retry_after(r.retry_after),
        // A model still used by twins or models, a twin still holding relationships: what
        // deletes them first runs in dependency order, so the conflict clears on a retry.
        409 if what.starts_with("delete") => CloudError::new(
            ErrorClass::EventualConsistency,
            code,
            format!("{what}: {message} (HTTP 409)"),
        )
        .with_hint("something else still uses it; remove that first, then run destroy again"),
        _ => arm_error(what, r.status, &code, &message, r.retry_after),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, code: &str) -> Reply {
        Reply {
            status,
            body: json!({"error": {"code": code, "message": "m"}}),
            async_operation: None,
            location: None,
            retry_after: None,
            etag: None,
        }
    }

    #[test]
    fn answers_are_classified() {
        let e = adt_error(&reply(403, "Forbidden"), "models of t-adt");
        assert_eq!(e.class, ErrorClass::EventualConsistency);
        assert!(e.hint.as_deref().is_some_and(|h| h.contains("Data Owner")));
        assert_eq!(
            adt_error(&reply(429, "TooManyRequests"), "x").class,
            ErrorClass::Throttling
        );
        assert_eq!(
            adt_error(&reply(503, "ServiceUnavailable"), "x").class,
            ErrorClass::Transient
        );
        let e = adt_error(&reply(400, "DTDLParserError"), "upload of models");
        assert_eq!(
            (e.class, e.code.as_str()),
            (ErrorClass::Fatal, "DTDLParserError")
        );
        assert!(e.message.contains("upload of models") && e.hint.is_some());
        assert_eq!(
            adt_error(&reply(409, "ModelReferencesNotDeleted"), "delete model x").class,
            ErrorClass::EventualConsistency
        );
        assert_eq!(
            adt_error(&reply(409, "ModelAlreadyExists"), "upload").class,
            ErrorClass::Fatal
        );
    }

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(path_segment("dtmi:a:b;1"), "dtmi%3Aa%3Ab%3B1");
        assert_eq!(path_segment("room 1/ä"), "room%201%2F%C3%A4");
        assert_eq!(path_segment("sensor-0"), "sensor-0");
    }
}
