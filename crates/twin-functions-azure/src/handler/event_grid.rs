//! IoT Hub telemetry as Event Grid delivers it to the dispatcher: events of type
//! `Microsoft.Devices.DeviceTelemetry` whose `data` holds the device's message (`body`), its
//! application `properties` and the hub's `systemProperties`.
//!
//! The body is JSON only when the device set content type `application/json` and encoding
//! `utf-8`; otherwise IoT Hub writes it base64-encoded. The device that sent the message is the
//! one the hub authenticated: `systemProperties["iothub-connection-device-id"]`. It plays the
//! role the topic's device segment plays on AWS: the handler sets it as `topicDeviceId`, so the
//! dispatcher's own check (payload `iotDeviceId` = topic device, else `topic_mismatch`) applies
//! unchanged, and a device cannot claim another's id in its payload.

use super::payload::unwrap_json;
use base64::Engine;
use serde_json::{Map, Value};
use twin_functions::record::FIELD_TOPIC_DEVICE_ID;

/// The Event Grid event type of device telemetry.
pub const DEVICE_TELEMETRY: &str = "Microsoft.Devices.DeviceTelemetry";
/// The system property naming the device the hub authenticated.
pub const CONNECTION_DEVICE_ID: &str = "iothub-connection-device-id";
/// The system property holding the message's content type.
pub const CONTENT_TYPE: &str = "iothub-content-type";
/// The system property holding the message's content encoding.
pub const CONTENT_ENCODING: &str = "iothub-content-encoding";

/// One telemetry message out of an event.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryEvent {
    /// The event's id (the same on every redelivery): the message's correlation id.
    pub event_id: String,
    /// The device the hub authenticated.
    pub connection_device_id: String,
    /// The device's message with `topicDeviceId` set to the authenticated device.
    pub message: Value,
}

/// Why an event is not a telemetry message the dispatcher can take (dropped, acknowledged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvelopeDrop {
    /// Not an Event Grid event object.
    NotAnEvent(String),
    /// An event of another type (the subscription filters on telemetry; defensive).
    NotTelemetry(String),
    /// The hub's system properties do not name the sending device.
    MissingConnectionDeviceId,
    /// The body is neither JSON nor base64 of JSON text.
    BodyNotJson(String),
}

impl EnvelopeDrop {
    /// A stable short code for log queries (next to the dispatcher's own drop codes).
    pub fn code(&self) -> &'static str {
        match self {
            EnvelopeDrop::NotAnEvent(_) => "not_an_event",
            EnvelopeDrop::NotTelemetry(_) => "not_telemetry",
            EnvelopeDrop::MissingConnectionDeviceId => "missing_connection_device_id",
            EnvelopeDrop::BodyNotJson(_) => "body_not_json",
        }
    }
}

impl std::fmt::Display for EnvelopeDrop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EnvelopeDrop::NotAnEvent(why) => write!(f, "not an Event Grid event: {why}"),
            EnvelopeDrop::NotTelemetry(t) => write!(f, "event type {t} is not {DEVICE_TELEMETRY}"),
            EnvelopeDrop::MissingConnectionDeviceId => {
                write!(
                    f,
                    "systemProperties has no {CONNECTION_DEVICE_ID}, so the sender is unknown"
                )
            }
            EnvelopeDrop::BodyNotJson(why) => write!(f, "the message body is not JSON: {why}"),
        }
    }
}

/// The events in the trigger's value: one event, or an array of them (JSON text unwrapped).
pub fn events(trigger: Value) -> Vec<Value> {
    match unwrap_json(trigger) {
        Value::Array(events) => events.into_iter().map(unwrap_json).collect(),
        one => vec![one],
    }
}

/// Reads one event as a telemetry message.
pub fn telemetry(event: &Value) -> Result<TelemetryEvent, EnvelopeDrop> {
    let Some(event) = event.as_object() else {
        return Err(EnvelopeDrop::NotAnEvent("not a JSON object".into()));
    };
    // Event Grid schema `eventType`; CloudEvents schema `type`.
    let event_type = event
        .get("eventType")
        .or_else(|| event.get("type"))
        .and_then(Value::as_str)
        .ok_or_else(|| EnvelopeDrop::NotAnEvent("no eventType".into()))?;
    if event_type != DEVICE_TELEMETRY {
        return Err(EnvelopeDrop::NotTelemetry(event_type.to_string()));
    }
    let event_id = event
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let data = match event.get("data").cloned().map(unwrap_json) {
        Some(Value::Object(data)) => data,
        _ => return Err(EnvelopeDrop::NotAnEvent("no data object".into())),
    };
    let system = match data.get("systemProperties") {
        Some(Value::Object(p)) => p.clone(),
        _ => Map::new(),
    };
    let device = match system.get(CONNECTION_DEVICE_ID) {
        Some(Value::String(d)) if !d.trim().is_empty() => d.clone(),
        _ => return Err(EnvelopeDrop::MissingConnectionDeviceId),
    };
    let body = data
        .get("body")
        .ok_or_else(|| EnvelopeDrop::BodyNotJson("the event has no body".into()))?;
    let message = with_connection_identity(decode_body(body, &system)?, &device);
    Ok(TelemetryEvent {
        event_id,
        connection_device_id: device,
        message,
    })
}

/// Whether the hub wrote the body as JSON: content type `application/json` (parameters
/// ignored) and encoding `utf-8`, both case-insensitive.
pub fn declared_json(system: &Map<String, Value>) -> bool {
    let text = |k: &str| {
        system
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    };
    let content_type = text(CONTENT_TYPE);
    let media = content_type.split(';').next().unwrap_or_default().trim();
    media == "application/json" && text(CONTENT_ENCODING) == "utf-8"
}

/// The device's message out of `body`: JSON as it is, or base64 of UTF-8 JSON text.
pub fn decode_body(body: &Value, system: &Map<String, Value>) -> Result<Value, EnvelopeDrop> {
    let text = match body {
        Value::String(text) => text,
        // Declared JSON: the hub put the message in as JSON.
        other => return Ok(other.clone()),
    };
    let as_json = || serde_json::from_str::<Value>(text).ok();
    let as_base64 = || {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .ok()?;
        serde_json::from_slice::<Value>(&bytes).ok()
    };
    // A base64 text can also be valid JSON (`"1234"`), so the declared encoding decides which
    // reading comes first.
    let decoded = if declared_json(system) {
        as_json().or_else(as_base64)
    } else {
        as_base64().or_else(as_json)
    };
    decoded.ok_or_else(|| {
        EnvelopeDrop::BodyNotJson(format!(
            "a {}-byte text that is neither JSON nor base64 of JSON (set content type application/json and encoding utf-8 on the device)",
            text.len()
        ))
    })
}

/// The message with `topicDeviceId` set to the authenticated device, replacing any value the
/// payload carried (which would otherwise let a device pass the dispatcher's check).
pub fn with_connection_identity(message: Value, device: &str) -> Value {
    match message {
        Value::Object(mut m) => {
            m.insert(
                FIELD_TOPIC_DEVICE_ID.into(),
                Value::String(device.to_string()),
            );
            Value::Object(m)
        }
        // The dispatcher drops it as `not_an_object`.
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(body: Value, content_type: Option<&str>, device: Option<&str>) -> Value {
        let mut system = json!({
            "iothub-connection-auth-method": "{\"scope\":\"device\",\"type\":\"x509Certificate\"}",
            "iothub-enqueuedtime": "2025-11-04T13:23:11.203Z",
            "iothub-message-source": "Telemetry",
        });
        if let Some(ct) = content_type {
            system["iothub-content-type"] = json!(ct);
            system["iothub-content-encoding"] = json!("utf-8");
        }
        if let Some(d) = device {
            system["iothub-connection-device-id"] = json!(d);
        }
        json!({
            "id": "9af86784-8d40-fe2g-8b2a-bab65e106785",
            "topic": "/SUBSCRIPTIONS/S/RESOURCEGROUPS/twin-rg/PROVIDERS/MICROSOFT.DEVICES/IOTHUBS/hub",
            "subject": "devices/s-1",
            "eventType": "Microsoft.Devices.DeviceTelemetry",
            "eventTime": "2025-11-04T13:23:11.48Z",
            "data": {"body": body, "properties": {}, "systemProperties": system},
            "dataVersion": "",
            "metadataVersion": "1"
        })
    }

    #[test]
    fn reads_a_json_body_and_sets_the_authenticated_device() {
        let msg = json!({"iotDeviceId": "s-1", "t": 1.5});
        let t = telemetry(&event(
            msg,
            Some("application/json; charset=utf-8"),
            Some("s-1"),
        ))
        .unwrap();
        assert_eq!(t.connection_device_id, "s-1");
        assert_eq!(t.event_id, "9af86784-8d40-fe2g-8b2a-bab65e106785");
        assert_eq!(
            t.message,
            json!({"iotDeviceId": "s-1", "t": 1.5, "topicDeviceId": "s-1"})
        );
    }

    #[test]
    fn reads_a_base64_body_when_the_device_set_no_content_type() {
        let text = r#"{"iotDeviceId":"s-1","t":2}"#;
        let b64 = base64::engine::general_purpose::STANDARD.encode(text);
        let t = telemetry(&event(json!(b64), None, Some("s-1"))).unwrap();
        assert_eq!(t.message["t"], 2);
        // JSON declared but delivered as a string of JSON text: read as JSON.
        let t = telemetry(&event(json!(text), Some("application/json"), Some("s-1"))).unwrap();
        assert_eq!(t.message["iotDeviceId"], "s-1");
    }

    #[test]
    fn drops_bodies_and_events_it_cannot_read() {
        let bad = telemetry(&event(json!("%%% not base64"), None, Some("s-1"))).unwrap_err();
        assert_eq!(bad.code(), "body_not_json");
        let nobody = telemetry(&event(json!({"t": 1}), None, None)).unwrap_err();
        assert_eq!(nobody, EnvelopeDrop::MissingConnectionDeviceId);
        let mut other = event(json!({}), None, Some("s-1"));
        other["eventType"] = json!("Microsoft.Devices.DeviceConnected");
        assert_eq!(telemetry(&other).unwrap_err().code(), "not_telemetry");
        assert_eq!(telemetry(&json!("x")).unwrap_err().code(), "not_an_event");
    }

    #[test]
    fn a_payload_cannot_bring_its_own_topic_device() {
        let spoof = json!({"iotDeviceId": "s-2", "topicDeviceId": "s-2", "t": 1});
        let t = telemetry(&event(spoof, Some("application/json"), Some("s-1"))).unwrap();
        assert_eq!(t.message["topicDeviceId"], "s-1");
        assert_eq!(t.message["iotDeviceId"], "s-2");
    }

    #[test]
    fn events_come_one_or_many_and_as_json_text() {
        let e = event(json!({}), None, Some("s-1"));
        assert_eq!(events(e.clone()).len(), 1);
        assert_eq!(events(json!([e.clone(), e.clone()])).len(), 2);
        assert_eq!(events(Value::String(e.to_string())), vec![e.clone()]);
        // A host that serializes the trigger's string value once more.
        let twice = Value::String(Value::String(e.to_string()).to_string());
        assert_eq!(events(twice), vec![e]);
    }
}
