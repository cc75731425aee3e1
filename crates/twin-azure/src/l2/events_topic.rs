//! The twin's Event Grid custom topic (`Microsoft.EventGrid/topics`, API 2025-02-15), made only
//! when an event rule notifies: the persister publishes the notifications to it with the twin's
//! identity (role "EventGrid Data Sender"), so local (key) authentication is off. Its
//! `properties.endpoint`, as ARM returns it, is the persister's `EVENT_TOPIC_ENDPOINT`.

use crate::arm::ArmClient;
use crate::arm_resource::{group_resource_path, ArmDriver, ArmResource};
use crate::context::{input, owner_from, settled_state, LOCATION_KEY};
use serde_json::{json, Value};
use twin_engine::{CloudError, Observed, Outputs, ResourceSpec};

/// Driver kind of the topic.
pub const KIND: &str = "azure_event_grid_topic";

/// API version (stable; specification/eventgrid/resource-manager/Microsoft.EventGrid/stable/
/// 2025-02-15/EventGrid.json).
pub const API: &str = "2025-02-15";

/// ARM type of the topic.
pub const TYPE: &str = "Microsoft.EventGrid/topics";

/// Output: the topic's publishing endpoint.
pub const ENDPOINT: &str = "endpoint";

/// Event Grid topic names: 3-50 characters of letters, digits and `-`.
pub const MAX_NAME: usize = 50;

/// The topic's name: `<twin>-events`.
pub fn name(twin: &str) -> String {
    format!("{twin}-events")
}

/// Why `name` cannot be a topic's name, if it cannot.
pub fn name_problem(name: &str) -> Option<String> {
    let ok_chars = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if (3..=MAX_NAME).contains(&name.len()) && ok_chars {
        None
    } else {
        Some(format!(
            "the Event Grid topic name `{name}` must be 3-{MAX_NAME} letters, digits or `-`; shorten digital_twin_name to at most {} characters",
            MAX_NAME - "-events".len()
        ))
    }
}

/// The desired settings of the topic (the keys `read` reports).
pub fn desired() -> Value {
    json!({"input_schema": "EventGridSchema", "disable_local_auth": true,
        "public_network_access": "Enabled"})
}

/// The topic as an [`ArmResource`].
pub struct EventsTopic;

/// Creates, reads, updates and deletes the topic.
pub type EventsTopicDriver = ArmDriver<EventsTopic>;

impl ArmResource for EventsTopic {
    const API: &'static str = API;

    fn what(spec: &ResourceSpec) -> String {
        format!("Event Grid topic {}", spec.name)
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
            "properties": {
                "inputSchema": spec.desired["input_schema"],
                "disableLocalAuth": spec.desired["disable_local_auth"],
                "publicNetworkAccess": spec.desired["public_network_access"],
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
            CloudError::fatal("NoResourceId", format!("{what}: ARM's answer has no id"))
        })?;
        let endpoint = body
            .pointer("/properties/endpoint")
            .and_then(Value::as_str)
            .filter(|e| !e.is_empty())
            .ok_or_else(|| {
                CloudError::fatal(
                    "IncompleteResponse",
                    format!("{what}: ARM's answer has no properties.endpoint, which the persister publishes to"),
                )
            })?;
        let p = |k: &str| body.pointer(&format!("/properties/{k}")).cloned();
        Ok(Observed::new(
            id,
            json!({
                "id": id,
                "input_schema": p("inputSchema"),
                "disable_local_auth": p("disableLocalAuth"),
                "public_network_access": p("publicNetworkAccess"),
                ENDPOINT: endpoint,
                "provisioning_state": state,
            }),
        )
        .owned_by(owner_from(body.get("tags"))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_event_grid_limits() {
        assert_eq!(name("t"), "t-events");
        assert!(name_problem(&name("t")).is_none());
        assert!(name_problem(&name(&"a".repeat(43))).is_none());
        let e = name_problem(&name(&"a".repeat(44))).expect("too long");
        assert!(e.contains("at most 43"), "{e}");
        assert!(name_problem("a_b").is_some());
    }
}
