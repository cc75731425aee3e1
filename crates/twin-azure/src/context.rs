//! What every layer module needs to describe its resources, and the pieces of an ARM resource
//! every driver shares: its path, its `twin` tag and its provisioning state.

use crate::arm::ArmClient;
use serde_json::{json, Value};
use std::sync::Arc;
use twin_config::{names, Layer, ProviderName, TwinConfig};
use twin_engine::{CloudError, ErrorClass, Owner, ResourceId, ResourceSpec};

/// Inputs key under which a spec carries its tags (not compared: ownership is the engine's
/// question, answered by [`Owner`]).
pub const TAGS_KEY: &str = "tags";
/// Inputs key of the resource group a spec lives in.
pub const GROUP_KEY: &str = "resource_group";
/// Inputs key of the location a spec is created in.
pub const LOCATION_KEY: &str = "location";

/// The inputs of one layer's resource descriptions.
pub struct LayerContext<'a> {
    /// The validated config.
    pub twin: &'a TwinConfig,
    /// The ARM client (and the subscription it works in).
    pub arm: &'a Arc<ArmClient>,
    /// Where resources are created.
    pub location: &'a str,
    /// The twin's resource group.
    pub resource_group: String,
}

impl LayerContext<'_> {
    /// The twin's name, prefix of every resource name.
    pub fn name(&self) -> &str {
        self.twin.name()
    }

    /// A spec of this provider with id `<layer>/<kind>/<key>`, tagged and placed in the group.
    pub fn spec(
        &self,
        layer: Layer,
        kind: &str,
        key: &str,
        name: impl Into<String>,
    ) -> ResourceSpec {
        ResourceSpec::new(
            resource_id(layer, kind, key),
            layer,
            ProviderName::Azure,
            kind,
            name,
        )
        .inputs(json!({
            TAGS_KEY: { names::TAG_KEY: self.name() },
            GROUP_KEY: self.resource_group,
            LOCATION_KEY: self.location,
        }))
    }
}

/// The id of a resource: `<layer>/<kind>/<key>`.
pub fn resource_id(layer: Layer, kind: &str, key: &str) -> ResourceId {
    ResourceId::new(&[layer.short(), kind, key])
}

/// A string input of a spec, or a fatal error naming it (a bug in the spec, not the user's).
pub fn input<'a>(spec: &'a ResourceSpec, key: &str) -> Result<&'a str, CloudError> {
    spec.inputs.get(key).and_then(Value::as_str).ok_or_else(|| {
        CloudError::fatal(
            "SpecIncomplete",
            format!("{} has no `{key}` input", spec.label()),
        )
    })
}

/// The tags a spec asks for.
pub fn spec_tags(spec: &ResourceSpec) -> Value {
    spec.inputs
        .get(TAGS_KEY)
        .cloned()
        .unwrap_or_else(|| json!({}))
}

/// `/subscriptions/<id>/resourceGroups/<group>`.
pub fn group_path(arm: &ArmClient, group: &str) -> String {
    format!("{}/resourceGroups/{group}", arm.subscription_path())
}

/// `.../resourceGroups/<group>/providers/<ns_type>/<name>`.
pub fn resource_path(arm: &ArmClient, group: &str, ns_type: &str, name: &str) -> String {
    format!("{}/providers/{ns_type}/{name}", group_path(arm, group))
}

/// The owner an ARM resource's `tags` name (a resource with no `twin` tag is someone else's).
pub fn owner_from(tags: Option<&Value>) -> Owner {
    let map = tags.and_then(Value::as_object);
    Owner::from_tags(
        map.into_iter()
            .flatten()
            .filter_map(|(k, v)| v.as_str().map(|v| (k.as_str(), v))),
    )
}

/// The resource's `properties.provisioningState` (`Succeeded` when it reports none), or a
/// retryable error while an operation on it is still running: its settings are not final yet.
pub fn settled_state(body: &Value, what: &str) -> Result<String, CloudError> {
    let state = body
        .pointer("/properties/provisioningState")
        .and_then(Value::as_str)
        .unwrap_or("Succeeded");
    match state.to_ascii_lowercase().as_str() {
        "succeeded" | "failed" | "canceled" => Ok(state.to_string()),
        _ => Err(CloudError::new(
            ErrorClass::EventualConsistency,
            "StillProvisioning",
            format!("{what} is {state}"),
        )),
    }
}

/// The tags to PUT: what the resource has (someone may have added their own) plus the spec's.
pub fn merged_tags(current: Option<&Value>, spec: &ResourceSpec) -> Value {
    let mut tags = current
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if let Some(want) = spec_tags(spec).as_object() {
        for (k, v) in want {
            tags.insert(k.clone(), v.clone());
        }
    }
    Value::Object(tags)
}
