//! Telemetry from the hub to the dispatcher through Event Grid (API 2025-02-15, stable): a
//! system topic on the hub (`Microsoft.EventGrid/systemTopics`, topic type
//! `Microsoft.Devices.IoTHubs`) and an event subscription on it delivering
//! `Microsoft.Devices.DeviceTelemetry` events to the dispatcher function (endpoint type
//! `AzureFunction`, addressed by its ARM id: no URL, no secret).

use crate::arm::ArmClient;
use crate::arm_resource::{group_resource_path, ArmDriver, ArmResource};
use crate::context::{input, owner_from, resource_path, settled_state, GROUP_KEY, LOCATION_KEY};
use crate::l1::hub;
use serde_json::{json, Value};
use twin_engine::{CloudError, Observed, Outputs, ResourceId, ResourceSpec};

/// Driver kind of the system topic.
pub const TOPIC_KIND: &str = "azure_event_grid_system_topic";

/// Driver kind of the event subscription.
pub const SUBSCRIPTION_KIND: &str = "azure_event_grid_subscription";

/// API version (specification/eventgrid/resource-manager/Microsoft.EventGrid/EventGrid/stable/2025-02-15).
pub const API: &str = "2025-02-15";

/// ARM type of a system topic.
pub const TOPIC_TYPE: &str = "Microsoft.EventGrid/systemTopics";

/// Event Grid's topic type of an IoT Hub.
pub const IOT_HUB_TOPIC_TYPE: &str = "Microsoft.Devices.IoTHubs";

/// The event type of device telemetry.
pub const TELEMETRY_EVENT: &str = "Microsoft.Devices.DeviceTelemetry";

/// Inputs key: the id of the hub's spec (the topic's source).
pub const HUB_KEY: &str = "hub";

/// Inputs key: the id of the system topic's spec (a subscription's parent).
pub const TOPIC_KEY: &str = "topic";

/// Inputs key: the id of the dispatcher function's spec, whose outputs carry its ARM `id`.
pub const DISPATCHER_KEY: &str = "dispatcher";

/// How often Event Grid tries one event, and for how long (its own defaults, stated so that
/// drift is visible).
pub const MAX_DELIVERY_ATTEMPTS: u64 = 30;
/// See [`MAX_DELIVERY_ATTEMPTS`].
pub const EVENT_TTL_MINUTES: u64 = 1440;

/// The desired settings of the system topic.
pub fn topic_desired(location: &str) -> Value {
    json!({
        "location": location,
        "topic_type": IOT_HUB_TOPIC_TYPE,
        "source_is_hub": true,
        "provisioning_state": "Succeeded",
    })
}

/// The desired settings of the event subscription.
pub fn subscription_desired() -> Value {
    json!({
        "endpoint_type": "AzureFunction",
        "destination_is_dispatcher": true,
        "included_event_types": [TELEMETRY_EVENT],
        "event_delivery_schema": "EventGridSchema",
        "max_delivery_attempts": MAX_DELIVERY_ATTEMPTS,
        "event_ttl_minutes": EVENT_TTL_MINUTES,
        "provisioning_state": "Succeeded",
    })
}

/// The ARM id in a dependency's outputs (`id`), or an error naming both.
fn dep_id(spec: &ResourceSpec, deps: &Outputs, key: &str) -> Result<String, CloudError> {
    let dep = ResourceId(input(spec, key)?.to_string());
    let attr = if key == DISPATCHER_KEY {
        super::DISPATCHER_ATTR
    } else {
        "id"
    };
    deps.attr(&dep, attr)
}

/// The hub's system topic as an [`ArmResource`]. A system topic's source cannot change: one
/// with another source is replaced. Deleting the topic deletes its event subscriptions with it.
pub struct SystemTopic;

/// Creates, reads, updates and deletes the hub's system topic.
pub type SystemTopicDriver = ArmDriver<SystemTopic>;

impl ArmResource for SystemTopic {
    const API: &'static str = API;

    fn what(spec: &ResourceSpec) -> String {
        format!("Event Grid system topic {}", spec.name)
    }

    fn path(arm: &ArmClient, spec: &ResourceSpec) -> Result<String, CloudError> {
        group_resource_path(arm, spec, TOPIC_TYPE)
    }

    fn body(
        _: &ArmClient,
        spec: &ResourceSpec,
        tags: Value,
        deps: &Outputs,
    ) -> Result<Value, CloudError> {
        let source = dep_id(spec, deps, HUB_KEY)?;
        Ok(json!({
            "location": input(spec, LOCATION_KEY)?,
            "tags": tags,
            "properties": {"source": source, "topicType": IOT_HUB_TOPIC_TYPE},
        }))
    }

    fn observe(
        body: &Value,
        what: &str,
        spec: &ResourceSpec,
        deps: &Outputs,
    ) -> Result<Observed, CloudError> {
        // On destroy the hub may have no outputs: the source then reads as drift.
        let hub_id = dep_id(spec, deps, HUB_KEY).unwrap_or_default();
        observe_topic(body, &hub_id, what)
    }

    fn must_replace(_: &ResourceSpec, current: &Observed) -> bool {
        !current
            .attributes
            .get("source_is_hub")
            .and_then(Value::as_bool)
            .unwrap_or(true)
    }
}

fn observe_topic(body: &Value, hub_id: &str, what: &str) -> Result<Observed, CloudError> {
    let state = settled_state(body, what)?;
    let id = body
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| hub::missing(what, "id"))?;
    let source = body.pointer("/properties/source").and_then(Value::as_str);
    Ok(Observed::new(
        id,
        json!({
            "id": id,
            "location": body.get("location"),
            "topic_type": body.pointer("/properties/topicType"),
            "source": source,
            // ARM ids compare without case (ARM itself varies `resourceGroups`' case).
            "source_is_hub": source.is_some_and(|s| s.eq_ignore_ascii_case(hub_id)),
            "provisioning_state": state,
        }),
    )
    .owned_by(owner_from(body.get("tags"))))
}

/// The telemetry subscription as an [`ArmResource`] (untagged). A parent topic that is gone
/// takes its subscriptions with it: ARM then answers 404, which reads as absent.
pub struct EventSubscription;

/// Creates, reads, updates and deletes the telemetry subscription.
pub type EventSubscriptionDriver = ArmDriver<EventSubscription>;

impl ArmResource for EventSubscription {
    const API: &'static str = API;
    const TAGGED: bool = false;

    fn what(spec: &ResourceSpec) -> String {
        format!("Event Grid subscription {}", spec.name)
    }

    fn path(arm: &ArmClient, spec: &ResourceSpec) -> Result<String, CloudError> {
        let topic = resource_path(
            arm,
            input(spec, GROUP_KEY)?,
            TOPIC_TYPE,
            input(spec, "topic_name")?,
        );
        Ok(format!("{topic}/eventSubscriptions/{}", spec.name))
    }

    fn body(
        _: &ArmClient,
        spec: &ResourceSpec,
        _: Value,
        deps: &Outputs,
    ) -> Result<Value, CloudError> {
        Ok(subscription_body(&dep_id(spec, deps, DISPATCHER_KEY)?))
    }

    fn observe(
        body: &Value,
        what: &str,
        spec: &ResourceSpec,
        deps: &Outputs,
    ) -> Result<Observed, CloudError> {
        // Without the dispatcher's outputs (a plan before deploy, a destroy) the destination
        // reads as drift.
        let function = dep_id(spec, deps, DISPATCHER_KEY).unwrap_or_default();
        observe_subscription(body, &function, what)
    }
}

/// The body of the telemetry subscription to the function with ARM id `function_id`.
pub fn subscription_body(function_id: &str) -> Value {
    json!({
        "properties": {
            "destination": {
                "endpointType": "AzureFunction",
                "properties": {
                    "resourceId": function_id,
                    // One event per invocation: the dispatcher handles one message at a time.
                    "maxEventsPerBatch": 1,
                    "preferredBatchSizeInKilobytes": 64,
                },
            },
            "filter": {"includedEventTypes": [TELEMETRY_EVENT]},
            "eventDeliverySchema": "EventGridSchema",
            "retryPolicy": {
                "maxDeliveryAttempts": MAX_DELIVERY_ATTEMPTS,
                "eventTimeToLiveInMinutes": EVENT_TTL_MINUTES,
            },
        },
    })
}

fn observe_subscription(
    body: &Value,
    function_id: &str,
    what: &str,
) -> Result<Observed, CloudError> {
    let state = settled_state(body, what)?;
    let id = body
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| hub::missing(what, "id"))?;
    let p = |k: &str| body.pointer(&format!("/properties/{k}")).cloned();
    let destination = body
        .pointer("/properties/destination/properties/resourceId")
        .and_then(Value::as_str);
    Ok(Observed::new(
        id,
        json!({
            "id": id,
            "endpoint_type": p("destination/endpointType"),
            "destination": destination,
            "destination_is_dispatcher": destination
                .is_some_and(|d| d.eq_ignore_ascii_case(function_id)),
            "included_event_types": p("filter/includedEventTypes"),
            "event_delivery_schema": p("eventDeliverySchema"),
            "max_delivery_attempts": p("retryPolicy/maxDeliveryAttempts"),
            "event_ttl_minutes": p("retryPolicy/eventTimeToLiveInMinutes"),
            "provisioning_state": state,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subscription_filters_telemetry_to_the_function_without_a_secret() {
        let f = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Web/sites/a/functions/dispatcher";
        let body = subscription_body(f);
        let p = &body["properties"];
        assert_eq!(p["destination"]["endpointType"], "AzureFunction");
        assert_eq!(p["destination"]["properties"]["resourceId"], f);
        assert_eq!(p["filter"]["includedEventTypes"], json!([TELEMETRY_EVENT]));
        let text = body.to_string().to_ascii_lowercase();
        assert!(!text.contains("key") && !text.contains("secret") && !text.contains("url"));
        let mut got = body.clone();
        got["id"] = json!("/x/eventSubscriptions/s");
        got["properties"]["provisioningState"] = json!("Succeeded");
        got["properties"]["destination"]["properties"]["resourceId"] =
            json!(f.to_ascii_lowercase());
        let o = observe_subscription(&got, f, "s").expect("observed");
        assert!(o.drift(&subscription_desired()).is_empty(), "{o:?}");
    }
}
