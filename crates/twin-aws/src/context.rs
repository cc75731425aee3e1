//! What every layer module needs to describe its resources: the twin, the clients (account,
//! region) and the function artifacts.

use crate::artifacts::Artifacts;
use crate::clients::AwsClients;
use std::sync::Arc;
use twin_config::{Layer, ProviderName, TwinConfig};
use twin_engine::{ResourceId, ResourceSpec};

/// The inputs of one layer's resource descriptions.
pub struct LayerContext<'a> {
    /// The validated config.
    pub twin: &'a TwinConfig,
    /// The SDK clients (and the account and region they talk to).
    pub clients: &'a Arc<AwsClients>,
    /// The function code of this twin.
    pub artifacts: &'a Arc<Artifacts>,
}

impl LayerContext<'_> {
    /// The twin's name, prefix of every resource name.
    pub fn name(&self) -> &str {
        self.twin.name()
    }

    /// A spec of this provider in `layer` with id `<layer>/<kind>/<key>`.
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
            ProviderName::Aws,
            kind,
            name,
        )
        .inputs(serde_json::json!({
            TAGS_KEY: { twin_config::names::TAG_KEY: self.name() }
        }))
    }

    /// Whether `layer` is deployed on AWS in this config.
    pub fn on_aws(&self, layer: Layer) -> bool {
        self.twin.providers.get(layer) == ProviderName::Aws
    }

    /// The tag every taggable resource carries: `twin=<name>`.
    pub fn tag(&self) -> (String, String) {
        (
            twin_config::names::TAG_KEY.to_string(),
            self.name().to_string(),
        )
    }
}

/// The id of a resource: `<layer>/<kind>/<key>` (e.g. `l1/iot_thing/temperature-sensor-1`).
pub fn resource_id(layer: Layer, kind: &str, key: &str) -> ResourceId {
    ResourceId::new(&[layer.short(), kind, key])
}

/// Inputs key under which a spec carries its tags (an input: tags are not settings to compare;
/// who owns a resource is the engine's question, answered by [`twin_engine::Owner`]).
pub const TAGS_KEY: &str = "tags";

/// The twin name a spec is tagged with (see [`LayerContext::spec`]).
pub fn twin_tag(spec: &ResourceSpec) -> String {
    spec.inputs
        .get(TAGS_KEY)
        .and_then(|t| t.get(twin_config::names::TAG_KEY))
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string()
}

/// The owner a tag list read from the cloud names.
pub fn owner_from_tags<'a, I>(tags: I) -> twin_engine::Owner
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    twin_engine::Owner::from_tags(tags)
}
