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
    /// Settings compared against the cloud to find drift: every key here is one the driver's
    /// `read` reports back, and a key it does not report counts as drift (a half-made resource).
    pub desired: Value,
    /// Inputs the driver needs that are not compared (tags, code locations, secrets' hashes).
    #[serde(default, skip_serializing_if = "is_empty_object")]
    pub inputs: Value,
}

fn is_empty_object(v: &Value) -> bool {
    v.as_object().is_some_and(|o| o.is_empty()) || v.is_null()
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
            inputs: Value::Object(Default::default()),
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

    /// Sets the inputs that are not compared for drift.
    pub fn inputs(mut self, inputs: Value) -> Self {
        self.inputs = inputs;
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
    /// Who the cloud says the resource belongs to (its ownership tag or attribute).
    #[serde(default, skip_serializing_if = "Owner::is_unknown")]
    pub owner: Owner,
}

/// The ownership mark a resource carries in the cloud.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Owner {
    /// The kind cannot carry a mark (a permission statement, an attachment): ownership follows
    /// from the resource it belongs to and from the recorded cloud id.
    #[default]
    Unknown,
    /// Marked as a twin's: `twin=<name>`, with the per-twin id when the resource carries one.
    Twin {
        /// The twin name in the mark.
        name: String,
        /// The per-twin id in the mark, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// The kind can carry the mark but this resource has none: someone else made it.
    Unmarked,
}

impl Owner {
    /// Whether nothing is known.
    pub fn is_unknown(&self) -> bool {
        matches!(self, Owner::Unknown)
    }

    /// The owner read from a tag map: `twin=<name>` and `twin-id=<id>`.
    pub fn from_tags<'a, I>(tags: I) -> Owner
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let (mut name, mut id) = (None, None);
        for (k, v) in tags {
            if k == twin_config::names::TAG_KEY {
                name = Some(v.to_string());
            } else if k == TWIN_ID_TAG {
                id = Some(v.to_string());
            }
        }
        match name {
            Some(name) => Owner::Twin { name, id },
            None => Owner::Unmarked,
        }
    }

    /// Why a resource with this mark is not the twin `twin` (with per-twin id `twin_id`), or
    /// `None` when it is (or nothing says otherwise).
    pub fn foreign_to(&self, twin: &str, twin_id: Option<&str>) -> Option<String> {
        match self {
            Owner::Unknown => None,
            Owner::Unmarked => Some(format!(
                "it carries no `{}` tag",
                twin_config::names::TAG_KEY
            )),
            Owner::Twin { name, .. } if name != twin => {
                Some(format!("it is tagged as twin `{name}`"))
            }
            Owner::Twin { id: Some(id), .. } if twin_id.is_some_and(|t| t != id) => Some(format!(
                "it belongs to another deployment of a twin named `{twin}` (twin id {id})"
            )),
            Owner::Twin { .. } => None,
        }
    }
}

/// Tag key of the per-twin id (a random id made when the twin's state is first written).
pub const TWIN_ID_TAG: &str = "twin-id";

impl Observed {
    /// An observation with an id and attributes.
    pub fn new(cloud_id: impl Into<String>, attributes: Value) -> Self {
        Observed {
            cloud_id: cloud_id.into(),
            attributes,
            owner: Owner::Unknown,
        }
    }

    /// The same observation with its ownership mark.
    pub fn owned_by(mut self, owner: Owner) -> Self {
        self.owner = owner;
        self
    }

    /// A string attribute, if present.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).and_then(Value::as_str)
    }

    /// The keys of `desired` that the cloud does not report as desired: a key it does not
    /// report at all is drift (a step of the resource that never ran), and a value is compared
    /// by containment, so settings the cloud adds by itself (server defaults, extra tags) are not.
    pub fn drift(&self, desired: &Value) -> Vec<String> {
        let Some(want) = desired.as_object() else {
            return Vec::new();
        };
        let mut drifted: Vec<String> = want
            .iter()
            .filter(|(k, v)| match self.attributes.get(k.as_str()) {
                Some(have) => !contains(have, v),
                None => !v.is_null(),
            })
            .map(|(k, _)| k.clone())
            .collect();
        drifted.sort();
        drifted
    }
}

/// Whether `have` contains `want`: objects by key (recursively), everything else by equality.
pub fn contains(have: &Value, want: &Value) -> bool {
    match (have, want) {
        (Value::Object(h), Value::Object(w)) => w.iter().all(|(k, wv)| match h.get(k) {
            Some(hv) => contains(hv, wv),
            None => wv.is_null(),
        }),
        _ => have == want,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn drift_compares_desired_keys() {
        let o = Observed::new(
            "arn:x",
            json!({"memory": 128, "arn": "arn:x", "timeout": 3}),
        );
        assert!(o.drift(&json!({"memory": 128})).is_empty());
        assert_eq!(
            o.drift(&json!({"memory": 256, "timeout": 3})),
            vec!["memory"]
        );
        // A setting the cloud does not report is a step that never ran: drift.
        assert_eq!(o.drift(&json!({"policy": "x"})), vec!["policy"]);
    }

    #[test]
    fn drift_is_containment_of_desired_in_observed() {
        let o = Observed::new(
            "id",
            json!({"env": {"A": "1", "B": "2"}, "list": [1, 2], "target": null}),
        );
        assert!(o.drift(&json!({"env": {"A": "1", "B": "2"}})).is_empty());
        // The cloud added B by itself: not drift.
        assert!(o.drift(&json!({"env": {"A": "1"}})).is_empty());
        assert_eq!(o.drift(&json!({"env": {"A": "2"}})), vec!["env"]);
        assert_eq!(o.drift(&json!({"env": {"C": "3"}})), vec!["env"]);
        // Lists compare whole; a missing target is drift.
        assert_eq!(o.drift(&json!({"list": [1]})), vec!["list"]);
        assert_eq!(o.drift(&json!({"target": "arn:fn"})), vec!["target"]);
    }

    #[test]
    fn ownership_marks() {
        let mine = Owner::from_tags([("twin", "t"), ("twin-id", "abc")]);
        assert_eq!(mine.foreign_to("t", Some("abc")), None);
        assert_eq!(mine.foreign_to("t", None), None);
        assert!(mine.foreign_to("t", Some("zzz")).is_some());
        assert!(mine.foreign_to("u", Some("abc")).is_some());
        assert!(Owner::from_tags([("team", "x")])
            .foreign_to("t", None)
            .is_some());
        assert_eq!(Owner::Unknown.foreign_to("t", Some("abc")), None);
    }
}
