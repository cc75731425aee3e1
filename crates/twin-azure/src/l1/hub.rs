//! The twin's IoT Hub (`Microsoft.Devices/IotHubs`, API 2023-06-30, stable): S1 with one unit,
//! TLS 1.2, shared-access keys off (`disableLocalAuth`, `disableDeviceSAS`, `disableModuleSAS`):
//! devices authenticate with X.509 and the deployer reaches the registry with an Entra token.
//! Its `hostName`, as ARM reports it, is the output every L1 part uses.

use crate::arm::ArmClient;
use crate::context::{
    input, merged_tags, owner_from, resource_path, settled_state, GROUP_KEY, LOCATION_KEY,
};
use async_trait::async_trait;
use serde_json::{json, Value};
use std::sync::Arc;
use twin_engine::{CloudError, ErrorClass, Observed, Outputs, ResourceDriver, ResourceSpec};

/// Driver kind of the hub.
pub const KIND: &str = "azure_iot_hub";

/// API version (specification/iothub/resource-manager/Microsoft.Devices/IoTHub/stable/2023-06-30).
pub const API: &str = "2023-06-30";

/// ARM type of the hub.
pub const TYPE: &str = "Microsoft.Devices/IotHubs";

/// Output attribute: the hub's host name as ARM returned it.
pub const HOST_NAME: &str = "host_name";

/// The desired settings of the hub (the keys `read` reports).
pub fn desired(location: &str) -> Value {
    json!({
        "location": location,
        "sku": "S1",
        "capacity": 1,
        "disable_local_auth": true,
        "disable_device_sas": true,
        "disable_module_sas": true,
        "min_tls_version": "1.2",
        "provisioning_state": "Succeeded",
    })
}

/// Creates, reads, updates and deletes the hub.
pub struct IotHubDriver {
    arm: Arc<ArmClient>,
}

impl IotHubDriver {
    /// A driver on this client.
    pub fn new(arm: Arc<ArmClient>) -> Self {
        IotHubDriver { arm }
    }

    fn path(&self, spec: &ResourceSpec) -> Result<String, CloudError> {
        Ok(resource_path(
            &self.arm,
            input(spec, GROUP_KEY)?,
            TYPE,
            &spec.name,
        ))
    }
}

fn what(spec: &ResourceSpec) -> String {
    format!("IoT Hub {}", spec.name)
}

/// The settings this deployer owns, written over `body` (a new hub's, or the current one as
/// ARM returned it: an IoT Hub PUT replaces the whole description, so routes and endpoints
/// that Event Grid or someone else added are carried over, and the `etag` guards the change).
fn apply_settings(body: &mut Value, spec: &ResourceSpec, tags: Value) -> Result<(), CloudError> {
    let d = &spec.desired;
    body["location"] = json!(input(spec, LOCATION_KEY)?);
    body["tags"] = tags;
    body["sku"] = json!({
        "name": d.get("sku").cloned().unwrap_or(json!("S1")),
        "capacity": d.get("capacity").cloned().unwrap_or(json!(1)),
    });
    if !body["properties"].is_object() {
        body["properties"] = json!({});
    }
    let p = &mut body["properties"];
    p["disableLocalAuth"] = json!(true);
    p["disableDeviceSAS"] = json!(true);
    p["disableModuleSAS"] = json!(true);
    p["minTlsVersion"] = json!("1.2");
    // "This key has to be present in the dictionary while making create or update calls."
    if !p["eventHubEndpoints"]["events"].is_object() {
        p["eventHubEndpoints"] = json!({"events": {"retentionTimeInDays": 1, "partitionCount": 2}});
    }
    // Read-only properties are ARM's to fill.
    if let Some(o) = p.as_object_mut() {
        for k in ["provisioningState", "state", "hostName", "locations"] {
            o.remove(k);
        }
    }
    Ok(())
}

/// The observation of a hub as ARM returned it (`what` names it in errors).
pub fn observe(body: &Value, what: &str) -> Result<Observed, CloudError> {
    let state = settled_state(body, what)?;
    let id = body
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| missing(what, "id"))?;
    let p = |k: &str| body.pointer(&format!("/properties/{k}")).cloned();
    // The host is what devices and the registry are reached at: a settled hub without one is
    // an answer this code cannot work with, not something to guess.
    let host = if state.eq_ignore_ascii_case("Succeeded") {
        Some(
            body.pointer("/properties/hostName")
                .and_then(Value::as_str)
                .filter(|h| !h.is_empty())
                .ok_or_else(|| missing(what, "properties.hostName"))?,
        )
    } else {
        None
    };
    Ok(Observed::new(
        id,
        json!({
            "id": id,
            "location": body.get("location"),
            "sku": body.pointer("/sku/name"),
            "capacity": body.pointer("/sku/capacity"),
            "disable_local_auth": p("disableLocalAuth"),
            "disable_device_sas": p("disableDeviceSAS"),
            "disable_module_sas": p("disableModuleSAS"),
            "min_tls_version": p("minTlsVersion"),
            "provisioning_state": state,
            "state": p("state"),
            HOST_NAME: host,
        }),
    )
    .owned_by(owner_from(body.get("tags"))))
}

/// The error of an ARM answer that lacks a field the deployer needs.
pub(crate) fn missing(what: &str, field: &str) -> CloudError {
    CloudError::fatal(
        "MissingField",
        format!("{what}: Azure Resource Manager's answer has no `{field}`"),
    )
    .with_hint("this is unexpected from the cloud; run deploy again, and report it if it persists")
}

#[async_trait]
impl ResourceDriver for IotHubDriver {
    async fn read(&self, spec: &ResourceSpec, _: &Outputs) -> Result<Option<Observed>, CloudError> {
        let what = what(spec);
        match self.arm.get(&self.path(spec)?, API, &what).await? {
            Some(b) => observe(&b, &what).map(Some),
            None => Ok(None),
        }
    }

    async fn create(&self, spec: &ResourceSpec, _: &Outputs) -> Result<Observed, CloudError> {
        let what = what(spec);
        let mut body = json!({});
        apply_settings(&mut body, spec, merged_tags(None, spec))?;
        let got = self.arm.put(&self.path(spec)?, API, &body, &what).await?;
        observe(&got, &what)
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        _: &Observed,
        _: &Outputs,
    ) -> Result<Observed, CloudError> {
        let what = what(spec);
        let path = self.path(spec)?;
        let mut body = self.arm.get(&path, API, &what).await?.ok_or_else(|| {
            CloudError::new(
                ErrorClass::EventualConsistency,
                "NotFound",
                format!("{what}: gone while it was being updated"),
            )
        })?;
        // "ETag of the IoT Hub. Required to update an existing IoT Hub." (If-Match)
        let etag = body
            .get("etag")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| missing(&what, "etag"))?;
        let tags = merged_tags(body.get("tags"), spec);
        apply_settings(&mut body, spec, tags)?;
        let got = self
            .arm
            .put_with_headers(&path, API, &body, &[("if-match", etag)], &what)
            .await
            .map_err(|e| {
                if e.code == "PreconditionFailed" {
                    // Changed by someone else since the GET: the engine retries with a new one.
                    CloudError::new(ErrorClass::EventualConsistency, e.code, e.message)
                } else {
                    e
                }
            })?;
        observe(&got, &what)
    }

    async fn delete(&self, spec: &ResourceSpec, _: &Observed) -> Result<(), CloudError> {
        // Deleting the hub deletes its device registry with it.
        self.arm.delete(&self.path(spec)?, API, &what(spec)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_settled_hub_without_a_host_name_is_an_error_naming_it() {
        let body = json!({"id": "/x/IotHubs/h", "properties": {"provisioningState": "Succeeded"}});
        let e = observe(&body, "IoT Hub h").expect_err("no host");
        assert!(e.message.contains("IoT Hub h") && e.message.contains("hostName"));
        let body = json!({"id": "/x/IotHubs/h", "properties": {"provisioningState": "Succeeded",
            "hostName": "h.azure-devices.net", "disableLocalAuth": true}});
        let o = observe(&body, "IoT Hub h").expect("observed");
        assert_eq!(o.attr(HOST_NAME), Some("h.azure-devices.net"));
    }

    #[test]
    fn settings_keep_what_others_added_and_drop_read_only_fields() {
        let spec = ResourceSpec::new(
            twin_engine::ResourceId::new(&["l1", KIND, "hub"]),
            twin_config::Layer::L1,
            twin_config::ProviderName::Azure,
            KIND,
            "hub",
        )
        .desired(desired("westeurope"))
        .inputs(json!({LOCATION_KEY: "westeurope"}));
        let mut body = json!({"etag": "e1", "properties": {"hostName": "h", "state": "Active",
            "routing": {"routes": [{"name": "eventgrid"}]}, "disableLocalAuth": false}});
        apply_settings(&mut body, &spec, json!({"twin": "t"})).expect("settings");
        assert_eq!(body["etag"], "e1");
        assert_eq!(
            body["properties"]["routing"]["routes"][0]["name"],
            "eventgrid"
        );
        assert_eq!(body["properties"]["disableLocalAuth"], true);
        assert!(body["properties"].get("hostName").is_none());
        assert_eq!(body["sku"], json!({"name": "S1", "capacity": 1}));
    }
}
