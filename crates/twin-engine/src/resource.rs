//! What a resource is to the engine: a typed description with a stable id.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use twin_config::{Layer, ProviderName};

/// Stable key of a resource in the graph and the state file, e.g. `l1/thing/temperature-sensor-1`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ResourceId(pub String);

impl ResourceId {
    /// Builds an id from its parts joined by `/`.
    pub fn new(parts: &[&str]) -> Self {
        ResourceId(parts.join("/"))
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for ResourceId {
    fn from(s: &str) -> Self {
        ResourceId(s.to_string())
    }
}

/// What the config asks for: one resource, its cloud name, dependencies and desired settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceSpec {
    /// Stable key.
    pub id: ResourceId,
    /// Layer the resource belongs to.
    pub layer: Layer,
    /// Provider that owns it.
    pub provider: ProviderName,
    /// Resource type as the provider names its driver (e.g. `iam_role`).
    pub kind: String,
    /// Deterministic cloud name (`<twin>-<role>`).
    pub name: String,
    /// Resources that must exist before this one (and are destroyed after it).
    pub depends_on: Vec<ResourceId>,
    /// Settings compared against the cloud to find drift; a driver's `read` reports the same keys.
    pub desired: Value,
}

impl ResourceSpec {
    /// A spec with no dependencies and no settings; chain the builder methods to fill it.
    pub fn new(
        id: ResourceId,
        layer: Layer,
        provider: ProviderName,
        kind: &str,
        name: impl Into<String>,
    ) -> Self {
        ResourceSpec {
            id,
            layer,
            provider,
            kind: kind.to_string(),
            name: name.into(),
            depends_on: Vec::new(),
            desired: Value::Object(Default::default()),
        }
    }

    /// Adds dependencies.
    pub fn depends_on<I: IntoIterator<Item = ResourceId>>(mut self, deps: I) -> Self {
        self.depends_on.extend(deps);
        self
    }

    /// Sets the desired settings.
    pub fn desired(mut self, desired: Value) -> Self {
        self.desired = desired;
        self
    }

    /// A short human label: `kind name`.
    pub fn label(&self) -> String {
        format!("{} {}", self.kind, self.name)
    }
}

/// What the cloud reports about a resource that exists.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Observed {
    /// The cloud's identifier (ARN, resource id, URL).
    pub cloud_id: String,
    /// Observed settings (same keys as `desired`) and outputs dependents need (e.g. `arn`).
    pub attributes: Value,
}

impl Observed {
    /// An observation with an id and attributes.
    pub fn new(cloud_id: impl Into<String>, attributes: Value) -> Self {
        Observed {
            cloud_id: cloud_id.into(),
            attributes,
        }
    }

    /// A string attribute, if present.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).and_then(Value::as_str)
    }

    /// The keys of `desired` whose observed value differs; keys the cloud does not report are
    /// not compared (a driver reports every setting it can read back).
    pub fn drift(&self, desired: &Value) -> Vec<String> {
        let Some(want) = desired.as_object() else {
            return Vec::new();
        };
        let mut drifted: Vec<String> = want
            .iter()
            .filter(|(k, v)| matches!(self.attributes.get(k.as_str()), Some(have) if have != *v))
            .map(|(k, _)| k.clone())
            .collect();
        drifted.sort();
        drifted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn drift_compares_only_reported_keys() {
        let o = Observed::new(
            "arn:x",
            json!({"memory": 128, "arn": "arn:x", "timeout": 3}),
        );
        assert!(o.drift(&json!({"memory": 128})).is_empty());
        assert_eq!(
            o.drift(&json!({"memory": 256, "timeout": 3})),
            vec!["memory"]
        );
        // A setting the cloud cannot report back is not drift.
        assert!(o.drift(&json!({"secret": "x"})).is_empty());
    }

    #[test]
    fn drift_compares_nested_values_whole() {
        let o = Observed::new("id", json!({"env": {"A": "1", "B": "2"}}));
        assert!(o.drift(&json!({"env": {"A": "1", "B": "2"}})).is_empty());
        assert_eq!(o.drift(&json!({"env": {"A": "1"}})), vec!["env"]);
    }
}
