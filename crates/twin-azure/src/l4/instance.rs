//! The Azure Digital Twins instance (`Microsoft.DigitalTwins/digitalTwinsInstances`, API
//! 2023-01-31) in the twin's group. Creating it is a long-running operation; its data-plane
//! host is `properties.hostName` as ARM returns it (never rebuilt from the name). Deleting it
//! deletes whatever its data plane still holds.

use crate::arm::ArmClient;
use crate::arm_resource::{group_resource_path, ArmDriver, ArmResource};
use crate::context::{input, owner_from, settled_state, LOCATION_KEY};
use serde_json::{json, Value};
use twin_engine::{CloudError, Observed, Outputs, ResourceSpec};

/// Driver kind of the instance.
pub const KIND: &str = "azure_digital_twins_instance";

/// ARM type of the instance.
pub const TYPE: &str = "Microsoft.DigitalTwins/digitalTwinsInstances";

/// API version (stable; specification/digitaltwins/resource-manager).
pub const API: &str = "2023-01-31";

/// Observed attribute: the data-plane host as ARM reported it.
pub const HOST_NAME: &str = "host_name";

/// The desired settings of the instance (the keys `read` reports).
pub fn desired(location: &str) -> Value {
    json!({
        "location": location.to_ascii_lowercase(),
        // The deployer and the persister reach it over the internet with Entra tokens.
        "public_network_access": "Enabled",
        "provisioning_state": "Succeeded",
    })
}

/// The instance as an [`ArmResource`]: PUT is create-or-update.
pub struct DigitalTwinsInstance;

/// Creates, reads, updates and deletes the instance.
pub type InstanceDriver = ArmDriver<DigitalTwinsInstance>;

impl ArmResource for DigitalTwinsInstance {
    const API: &'static str = API;

    fn what(spec: &ResourceSpec) -> String {
        format!("Azure Digital Twins instance {}", spec.name)
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
        Ok(json!({
            "location": input(spec, LOCATION_KEY)?,
            "tags": tags,
            "properties": {"publicNetworkAccess": "Enabled"},
        }))
    }

    fn observe(
        body: &Value,
        what: &str,
        _: &ResourceSpec,
        _: &Outputs,
    ) -> Result<Observed, CloudError> {
        observe(body, what)
    }
}

/// The observation of an instance as ARM returned it (`what` names it in errors).
pub fn observe(body: &Value, what: &str) -> Result<Observed, CloudError> {
    let state = settled_state(body, what)?;
    let missing = |k: &str| {
        CloudError::fatal(
            "MalformedResponse",
            format!("{what}: ARM's answer has no `{k}`"),
        )
        .with_hint("run deploy again; if it persists, the Microsoft.DigitalTwins API changed")
    };
    let id = body
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| missing("id"))?;
    let host = body
        .pointer("/properties/hostName")
        .and_then(Value::as_str)
        .filter(|h| !h.is_empty())
        .ok_or_else(|| missing("properties.hostName"))?;
    Ok(Observed::new(
        id,
        json!({
            "id": id,
            "location": body.get("location").and_then(Value::as_str).map(|l| l
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect::<String>()
                .to_ascii_lowercase()),
            "public_network_access": body.pointer("/properties/publicNetworkAccess"),
            "provisioning_state": state,
            HOST_NAME: host,
        }),
    )
    .owned_by(owner_from(body.get("tags"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observe_needs_the_host_name() {
        let body = json!({"id": "/x", "location": "West Europe", "tags": {"twin": "t"},
            "properties": {"provisioningState": "Succeeded", "publicNetworkAccess": "Enabled",
                "hostName": "t-adt.api.weu.digitaltwins.azure.net"}});
        let o = observe(&body, "Azure Digital Twins instance t-adt").expect("observed");
        assert!(o.drift(&desired("westeurope")).is_empty(), "{o:?}");
        assert_eq!(
            o.attr(HOST_NAME),
            Some("t-adt.api.weu.digitaltwins.azure.net")
        );
        let mut no_host = body.clone();
        no_host["properties"]["hostName"] = Value::Null;
        let e = observe(&no_host, "Azure Digital Twins instance t-adt").expect_err("must fail");
        assert!(e.message.contains("t-adt") && e.message.contains("hostName"));
        let mut busy = body;
        busy["properties"]["provisioningState"] = json!("Provisioning");
        assert!(observe(&busy, "i")
            .expect_err("not settled")
            .class
            .is_retryable());
    }
}
