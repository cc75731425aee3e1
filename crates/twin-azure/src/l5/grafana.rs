//! The twin's Azure Managed Grafana (`Microsoft.Dashboard/grafana`, API 2025-08-01, stable):
//! sku Standard (Essential has no JSON data sources), a system-assigned identity (Grafana's own,
//! for Azure data sources a user may add), API keys off (the deployer calls the Grafana API with
//! its Entra token), and the Infinity plugin installed (`grafanaPlugins`), which reads the hot
//! reader. Its `endpoint`, as ARM reports it, is the address of every Grafana API call.

use crate::arm::ArmClient;
use crate::arm_resource::{group_resource_path, ArmDriver, ArmResource};
use crate::context::{input, owner_from, settled_state, LOCATION_KEY};
use serde_json::{json, Value};
use twin_engine::{CloudError, ErrorClass, Observed, Outputs, ResourceSpec};
use twin_grafana::dashboard_model::INFINITY_TYPE;

/// Driver kind of the Grafana.
pub const KIND: &str = "azure_managed_grafana";

/// API version (specification/dashboard/resource-manager/Microsoft.Dashboard/stable/2025-08-01).
pub const API: &str = "2025-08-01";

/// ARM type of the Grafana.
pub const TYPE: &str = "Microsoft.Dashboard/grafana";

/// Output attribute: the Grafana's endpoint as ARM returned it.
pub const ENDPOINT: &str = "endpoint";

/// The desired settings of the Grafana (the keys `read` reports).
pub fn desired(location: &str) -> Value {
    json!({
        "location": location,
        "sku": "Standard",
        "identity": "SystemAssigned",
        "public_network_access": "Enabled",
        "api_key": "Disabled",
        "infinity_plugin": true,
        "provisioning_state": "Succeeded",
    })
}

/// The Grafana as an [`ArmResource`]: PUT creates and updates it (a long-running operation of
/// some minutes); deleting it deletes everything in it (data sources, folders, dashboards).
pub struct ManagedGrafana;

/// Creates, reads, updates and deletes the Grafana.
pub type ManagedGrafanaDriver = ArmDriver<ManagedGrafana>;

impl ArmResource for ManagedGrafana {
    const API: &'static str = API;

    fn what(spec: &ResourceSpec) -> String {
        format!("Azure Managed Grafana {}", spec.name)
    }

    fn path(arm: &ArmClient, spec: &ResourceSpec) -> Result<String, CloudError> {
        group_resource_path(arm, spec, TYPE)
    }

    fn body(
        _: &ArmClient,
        spec: &ResourceSpec,
        tags: Value,
        _: &Outputs,
    ) -> Result<Value, CloudError> {
        // Plugins are a map by id; an empty object installs the plugin's current version.
        let mut plugins = serde_json::Map::new();
        plugins.insert(INFINITY_TYPE.to_string(), json!({}));
        Ok(json!({
            "location": input(spec, LOCATION_KEY)?,
            "sku": {"name": "Standard"},
            "identity": {"type": "SystemAssigned"},
            "tags": tags,
            "properties": {
                "publicNetworkAccess": "Enabled",
                "apiKey": "Disabled",
                "grafanaPlugins": plugins,
            },
        }))
    }

    fn observe(
        body: &Value,
        what: &str,
        _: &ResourceSpec,
        _: &Outputs,
    ) -> Result<Observed, CloudError> {
        let state = settled_state(body, what)?;
        let id = body.get("id").and_then(Value::as_str).ok_or_else(|| {
            CloudError::fatal(
                "MalformedResponse",
                format!("{what}: ARM's answer has no `id`"),
            )
        })?;
        // The data plane is addressed by what ARM reports, never by a name rebuilt here; a
        // Grafana that reports none yet is still coming up.
        let endpoint = body
            .pointer("/properties/endpoint")
            .and_then(Value::as_str)
            .filter(|e| !e.is_empty())
            .ok_or_else(|| {
                CloudError::new(
                    ErrorClass::EventualConsistency,
                    "IncompleteAnswer",
                    format!("{what}: ARM's answer has no properties.endpoint"),
                )
                .with_hint("the Grafana may still be provisioning; the read is retried")
            })?;
        let p = |k: &str| body.pointer(&format!("/properties/{k}")).cloned();
        let infinity = body
            .pointer("/properties/grafanaPlugins")
            .and_then(Value::as_object)
            .is_some_and(|m| m.contains_key(INFINITY_TYPE));
        Ok(Observed::new(
            id,
            json!({
                "id": id,
                "location": body.get("location"),
                "sku": body.pointer("/sku/name"),
                "identity": body.pointer("/identity/type"),
                "public_network_access": p("publicNetworkAccess"),
                "api_key": p("apiKey"),
                "infinity_plugin": infinity,
                "provisioning_state": state,
                ENDPOINT: endpoint,
            }),
        )
        .owned_by(owner_from(body.get("tags"))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ResourceSpec {
        ResourceSpec::new(
            twin_engine::ResourceId::from("l5/azure_managed_grafana/grafana"),
            twin_config::Layer::L5,
            twin_config::ProviderName::Azure,
            KIND,
            "dt-graf-1234",
        )
        .desired(desired("westeurope"))
        .inputs(json!({LOCATION_KEY: "westeurope"}))
    }

    #[test]
    fn the_body_asks_for_standard_with_infinity_and_the_answer_matches_desired() {
        let arm = ArmClient::new(
            "http://127.0.0.1:9",
            "sub",
            crate::Auth::StaticToken("t".into()),
            crate::ArmOptions::default(),
        )
        .expect("client");
        let s = spec();
        let body = ManagedGrafana::body(&arm, &s, json!({"twin": "dt"}), &Outputs::default())
            .expect("body");
        assert_eq!(body["sku"]["name"], "Standard");
        assert!(body["properties"]["grafanaPlugins"][INFINITY_TYPE].is_object());
        let mut got = body.clone();
        got["id"] = json!("/subscriptions/sub/x");
        got["properties"]["provisioningState"] = json!("Succeeded");
        got["properties"]["endpoint"] = json!("https://dt-graf-1234-abc.weu.grafana.azure.com");
        let o = ManagedGrafana::observe(&got, "g", &s, &Outputs::default()).expect("observe");
        assert!(o.drift(&s.desired).is_empty(), "{o:?}");
        assert_eq!(
            o.attr(ENDPOINT),
            Some("https://dt-graf-1234-abc.weu.grafana.azure.com")
        );
        // No endpoint yet: retried, never guessed.
        got["properties"]
            .as_object_mut()
            .map(|p| p.remove("endpoint"));
        let e =
            ManagedGrafana::observe(&got, "g", &s, &Outputs::default()).expect_err("no endpoint");
        assert!(e.class.is_retryable(), "{e:?}");
    }
}
