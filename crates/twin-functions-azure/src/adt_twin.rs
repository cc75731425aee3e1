//! The persister's twin update when L4 is on Azure: after a record is stored in the hot
//! container, the device's twin in Azure Digital Twins gets the record's values, one JSON Patch
//! `add` per property (`add` creates or replaces), at the instance host ARM returned
//! (`ADT_ENDPOINT`, data-plane API 2023-10-31), with a token for
//! `https://digitaltwins.azure.net/.default` from the twin's managed identity.
//!
//! The hot write comes first and is never undone: a patch that may pass later (403 while the
//! identity's Data Owner role propagates, 429, 5xx, a lost connection) fails the invocation as
//! retryable, so the platform redelivers it and the idempotent write happens again with the
//! patch; a patch the service will keep refusing (the twin does not exist, a property its
//! model does not declare) is logged and the record counts as stored.

use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use azure_core::http::{new_http_client, HttpClient, Method, Request, Url};
use serde_json::{json, Value};
use std::sync::Arc;
use twin_functions::hot_store::{DevicePage, DeviceQuery, HotPage, HotStore, ScanCursor};
use twin_functions::record::{HotItem, FIELD_VERIFY_RUN};
use twin_functions::{CloudError, CloudErrorKind, Timestamp};

/// Data-plane API version.
pub const API: &str = "2023-10-31";

/// Token scope of the Azure Digital Twins data plane.
pub const SCOPE: &str = "https://digitaltwins.azure.net/.default";

/// The JSON Patch that puts a stored record's values on its device's twin: an `add` per
/// property, named as the DTDL model names it (`-` and other characters mapped as
/// `twin_models` maps them); the verify-run marker is the hot item's, not the twin's.
pub fn patch_body(item: &HotItem) -> Value {
    Value::Array(
        item.properties
            .iter()
            .filter(|(k, _)| k.as_str() != FIELD_VERIFY_RUN)
            .map(|(k, v)| {
                // DTDL names are letters, digits and `_`: nothing to escape in the pointer.
                json!({"op": "add", "path": format!("/{}", twin_models::dtdl::property_name(k)), "value": v})
            })
            .collect(),
    )
}

/// The base URL of `endpoint`: a host name as ARM reports it gets `https://`; a URL is kept
/// (tests point it at a local fake).
pub fn base_url(endpoint: &str) -> String {
    let e = endpoint.trim().trim_end_matches('/');
    if e.starts_with("https://") || e.starts_with("http://") {
        e.to_string()
    } else {
        format!("https://{e}")
    }
}

/// `s` as one URL path segment (twin and device ids may hold any character).
pub(crate) fn path_segment(s: &str) -> String {
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

/// Patches device twins in one instance.
pub struct AdtTwinUpdater {
    base: String,
    credential: Arc<dyn TokenCredential>,
    http: Arc<dyn HttpClient>,
}

impl std::fmt::Debug for AdtTwinUpdater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdtTwinUpdater")
            .field("base", &self.base)
            .finish()
    }
}

impl AdtTwinUpdater {
    /// An updater of the instance at `endpoint` (`ADT_ENDPOINT`) with `credential`.
    pub fn new(endpoint: &str, credential: Arc<dyn TokenCredential>) -> Self {
        AdtTwinUpdater {
            base: base_url(endpoint),
            credential,
            http: new_http_client(None),
        }
    }

    /// Puts `item`'s values on its device's twin.
    pub async fn patch(&self, item: &HotItem) -> Result<(), CloudError> {
        let resource = format!("digital twin {} at {}", item.device_id, self.base);
        let err = |code: &str, message: String, kind| {
            CloudError::new("PatchTwin", resource.clone(), code, message, kind)
        };
        let token = self
            .credential
            .get_token(&[SCOPE], None)
            .await
            .map_err(|e| {
                err(
                    "NoToken",
                    format!("no token for {SCOPE}: {e}"),
                    CloudErrorKind::Transient,
                )
            })?;
        let url = format!(
            "{}/digitaltwins/{}?api-version={API}",
            self.base,
            path_segment(&item.device_id)
        );
        let url = Url::parse(&url).map_err(|e| {
            err(
                "BadEndpoint",
                format!("ADT_ENDPOINT gives no URL: {e}"),
                CloudErrorKind::Rejected,
            )
        })?;
        let mut req = Request::new(url, Method::Patch);
        req.insert_header("authorization", format!("Bearer {}", token.token.secret()));
        req.insert_header("content-type", "application/json-patch+json");
        let body = serde_json::to_vec(&patch_body(item))
            .map_err(|e| err("BadPatch", e.to_string(), CloudErrorKind::Rejected))?;
        req.set_body(body);
        let resp = self.http.execute_request(&req).await.map_err(|e| {
            err(
                "io",
                format!("the request failed: {e}"),
                CloudErrorKind::Transient,
            )
        })?;
        let status = u16::from(resp.status());
        if (200..300).contains(&status) {
            return Ok(());
        }
        let raw = resp.try_into_raw_response().await.map_err(|e| {
            err(
                "io",
                format!("the answer could not be read: {e}"),
                CloudErrorKind::Transient,
            )
        })?;
        let answer: Value = serde_json::from_slice(raw.into_body().as_ref()).unwrap_or(Value::Null);
        Err(classify(status, &answer, &resource))
    }
}

/// The error of a refused patch: retryable when a later delivery may pass.
pub fn classify(status: u16, answer: &Value, resource: &str) -> CloudError {
    let code = answer
        .pointer("/error/code")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| format!("Http{status}"));
    let message = answer
        .pointer("/error/message")
        .and_then(Value::as_str)
        .unwrap_or("no message in the answer");
    let kind = match status {
        // The identity's Data Owner role takes minutes to reach the data plane.
        403 => CloudErrorKind::Transient,
        429 => CloudErrorKind::Throttled,
        s if s >= 500 => CloudErrorKind::Transient,
        404 => CloudErrorKind::NotFound,
        401 => CloudErrorKind::AccessDenied,
        _ => CloudErrorKind::Rejected,
    };
    CloudError::new(
        "PatchTwin",
        resource,
        code,
        format!("{message} (HTTP {status})"),
        kind,
    )
}

/// The hot store the persister writes to, which also patches the device's twin after each
/// stored record when an updater is given (see the module doc for what a failed patch does).
#[derive(Debug, Clone)]
pub struct TwinPatchingStore<S> {
    inner: S,
    twin: Option<Arc<AdtTwinUpdater>>,
}

impl<S> TwinPatchingStore<S> {
    /// `inner`, patching twins with `twin` when there is one.
    pub fn new(inner: S, twin: Option<Arc<AdtTwinUpdater>>) -> Self {
        TwinPatchingStore { inner, twin }
    }
}

#[async_trait]
impl<S: HotStore> HotStore for TwinPatchingStore<S> {
    async fn put_item(&self, item: &HotItem) -> Result<(), CloudError> {
        self.inner.put_item(item).await?;
        let Some(twin) = &self.twin else {
            return Ok(());
        };
        match twin.patch(item).await {
            Ok(()) => Ok(()),
            Err(e) if e.is_retryable() => Err(e),
            Err(e) => {
                tracing::warn!(device_id = %item.device_id, error = %e, "the record is stored; its twin was not updated");
                Ok(())
            }
        }
    }
    async fn query_page(&self, query: &DeviceQuery) -> Result<HotPage, CloudError> {
        self.inner.query_page(query).await
    }
    async fn scan_devices_before(
        &self,
        cutoff: Timestamp,
        after: Option<ScanCursor>,
    ) -> Result<DevicePage, CloudError> {
        self.inner.scan_devices_before(cutoff, after).await
    }
    async fn delete_items(&self, device_id: &str, ids: &[Timestamp]) -> Result<(), CloudError> {
        self.inner.delete_items(device_id, ids).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_credential::FixedToken;
    use serde_json::Map;
    use twin_functions::in_memory::InMemoryHotStore;
    use twin_testkit::fake_adt::FakeAdt;

    async fn fake_with_twin() -> FakeAdt {
        let adt = FakeAdt::start(None).await.expect("fake ADT");
        adt.insert_model(json!({"@id": "dtmi:t:d;1", "@type": "Interface",
            "@context": "dtmi:dtdl:context;3", "contents": [
                {"@type": "Property", "name": "pressure", "schema": "double"},
                {"@type": "Property", "name": "iotDeviceId", "schema": "string"}]}));
        adt.insert_twin(
            "pressure-sensor-1",
            json!({"$metadata": {"$model": "dtmi:t:d;1"}, "iotDeviceId": "pressure-sensor-1"}),
        );
        adt
    }

    fn store(adt: &FakeAdt) -> TwinPatchingStore<Arc<InMemoryHotStore>> {
        let updater = AdtTwinUpdater::new(&format!("http://{}", adt.host), Arc::new(FixedToken));
        TwinPatchingStore::new(Arc::new(InMemoryHotStore::new(10)), Some(Arc::new(updater)))
    }

    #[tokio::test]
    async fn fake_adt_a_stored_record_patches_its_twin() {
        let adt = fake_with_twin().await;
        let s = store(&adt);
        s.put_item(&item(json!({"pressure": 2.5})))
            .await
            .expect("stored and patched");
        assert_eq!(s.inner.all().len(), 1);
        assert_eq!(
            adt.twin("pressure-sensor-1").expect("twin")["pressure"],
            json!(2.5)
        );
        assert_eq!(
            adt.mutating_calls(),
            ["PATCH /digitaltwins/pressure-sensor-1"]
        );
    }

    #[tokio::test]
    async fn fake_adt_a_failed_patch_keeps_the_hot_write_and_only_a_passing_failure_is_retried() {
        let adt = fake_with_twin().await;
        let s = store(&adt);
        // The role still propagating: retryable, so the platform redelivers; the item is kept.
        adt.forbid_next(1);
        let e = s
            .put_item(&item(json!({"pressure": 1.0})))
            .await
            .expect_err("403");
        assert!(e.is_retryable(), "{e:?}");
        assert_eq!(s.inner.all().len(), 1, "the hot write is not lost");
        // A property the model does not declare: the service keeps refusing, so the record
        // counts as stored and is not redelivered forever.
        s.put_item(&item(json!({"humidity": 40})))
            .await
            .expect("stored; twin refused");
        assert!(adt
            .twin("pressure-sensor-1")
            .expect("twin")
            .get("humidity")
            .is_none());
    }

    fn item(props: Value) -> HotItem {
        HotItem {
            device_id: "pressure-sensor-1".into(),
            id: Timestamp::parse("2025-11-04T13:23:11.203Z").expect("time"),
            properties: props.as_object().cloned().unwrap_or_else(Map::new),
        }
    }

    #[test]
    fn the_patch_adds_every_property_under_its_dtdl_name() {
        let body = patch_body(&item(
            json!({"pressure": 1.5, "hard-ness": 3, FIELD_VERIFY_RUN: "r"}),
        ));
        let ops = body.as_array().cloned().unwrap_or_default();
        assert_eq!(ops.len(), 2, "{body}");
        assert!(ops.contains(&json!({"op": "add", "path": "/pressure", "value": 1.5})));
        let mapped = format!("/{}", twin_models::dtdl::property_name("hard-ness"));
        assert!(ops.contains(&json!({"op": "add", "path": mapped, "value": 3})));
    }

    #[test]
    fn endpoints_and_refusals() {
        assert_eq!(
            base_url("a.api.weu.digitaltwins.azure.net"),
            "https://a.api.weu.digitaltwins.azure.net"
        );
        assert_eq!(base_url("http://127.0.0.1:9/"), "http://127.0.0.1:9");
        let e = classify(
            403,
            &json!({"error": {"code": "Forbidden", "message": "m"}}),
            "twin d",
        );
        assert!(e.is_retryable() && e.code == "Forbidden");
        assert!(classify(429, &Value::Null, "t").is_retryable());
        assert!(classify(503, &Value::Null, "t").is_retryable());
        let e = classify(
            400,
            &json!({"error": {"code": "ValidationFailed", "message": "no property x"}}),
            "twin d",
        );
        assert!(!e.is_retryable() && e.message.contains("no property x"));
        assert!(!classify(404, &Value::Null, "t").is_retryable());
    }
}
