//! The typed twin description that the rest of the deployer works from.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::diagnostics::Diagnostic;
use crate::providers::Providers;

/// A property's value type, named as IoT TwinMaker names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum DataType {
    /// 64-bit floating point number.
    Double,
    /// 32-bit signed integer.
    Integer,
    /// 64-bit signed integer.
    Long,
    /// `true` or `false`.
    Boolean,
    /// UTF-8 text.
    String,
}

impl DataType {
    /// Every data type, in the order the config documentation lists them.
    pub const ALL: [DataType; 5] = [
        DataType::Double,
        DataType::Integer,
        DataType::Long,
        DataType::Boolean,
        DataType::String,
    ];

    /// The spelling used in `config_iot_devices.json` (`"DOUBLE"`, ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            DataType::Double => "DOUBLE",
            DataType::Integer => "INTEGER",
            DataType::Long => "LONG",
            DataType::Boolean => "BOOLEAN",
            DataType::String => "STRING",
        }
    }

    /// Parses the config spelling; `None` for anything else (matching is case-sensitive).
    pub fn parse(text: &str) -> Option<DataType> {
        DataType::ALL.into_iter().find(|t| t.as_str() == text)
    }

    /// Whether a JSON value can be stored as this type without conversion.
    pub fn accepts(&self, value: &serde_json::Value) -> bool {
        match self {
            DataType::Double => value.is_number(),
            DataType::Integer => value.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
            DataType::Long => value.as_i64().is_some(),
            DataType::Boolean => value.is_boolean(),
            DataType::String => value.is_string(),
        }
    }

    /// What [`DataType::accepts`] allows, in words, for error messages.
    pub fn describe_values(&self) -> &'static str {
        match self {
            DataType::Double => "a number",
            DataType::Integer => "a whole number from -2147483648 to 2147483647",
            DataType::Long => "a whole number from -9223372036854775808 to 9223372036854775807",
            DataType::Boolean => "true or false",
            DataType::String => "a string",
        }
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A telemetry property a device publishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Property {
    /// Key of the property in the telemetry message.
    pub name: String,
    /// Type the processor coerces the value to.
    pub data_type: DataType,
    /// The twin property's initial value (the established tool's `initValue`), shown until the
    /// first telemetry arrives; validation guarantees it matches `data_type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_value: Option<serde_json::Value>,
}

/// A property whose value is fixed in the config (e.g. a serial number).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConstProperty {
    /// Name of the property on the twin component.
    pub name: String,
    /// Type of `value`.
    pub data_type: DataType,
    /// The fixed value; validation guarantees it matches `data_type`.
    pub value: serde_json::Value,
}

/// One IoT device of the twin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    /// Device id, unique within the twin; part of several cloud resource names.
    pub id: String,
    /// Telemetry properties; never empty after validation.
    pub properties: Vec<Property>,
    /// Fixed properties; empty when the config has none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub const_properties: Vec<ConstProperty>,
    /// Name of a custom processor crate under `lambdas/`; `None` uses the shared default processor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processor: Option<String>,
}

/// Log level of the deployed functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum LogMode {
    /// Verbose logs.
    Debug,
    /// Normal logs.
    #[default]
    Info,
}

impl LogMode {
    /// The spelling used in `config.json`.
    pub fn as_str(&self) -> &'static str {
        match self {
            LogMode::Debug => "DEBUG",
            LogMode::Info => "INFO",
        }
    }
}

impl fmt::Display for LogMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The contents of `config.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TwinSettings {
    /// The twin's name; prefix of every cloud resource name.
    pub digital_twin_name: String,
    /// Days a record stays in the hot store before moving to cold.
    pub hot_storage_size_in_days: u32,
    /// Days an object stays in cold storage before moving to archive; at least the hot days.
    pub cold_storage_size_in_days: u32,
    /// Log level of the deployed functions.
    #[serde(default)]
    pub mode: LogMode,
    /// The load `plan` prices (`expected_load`); `None` = its defaults or flags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_load: Option<ExpectedLoad>,
}

/// `config.json` `"expected_load"`: what the twin is expected to carry, for `plan`'s estimate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ExpectedLoad {
    /// Devices sending; `None` = the configured devices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<u64>,
    /// Messages each device sends a minute (finite, ≥ 0).
    pub messages_per_device_per_minute: f64,
    /// Bytes of one message; `None` = the largest example payload of the twin's devices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_bytes: Option<u64>,
    /// People who open the dashboards; `None` = 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dashboard_users: Option<u64>,
}

// The loader refuses NaN and infinities, so equality is total on loaded values.
impl Eq for ExpectedLoad {}

/// An entity of the twin hierarchy (`config_hierarchy.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HierarchyEntity {
    /// Entity id, unique in the whole hierarchy.
    pub id: String,
    /// Child entities and components, in file order.
    #[serde(default)]
    pub children: Vec<HierarchyNode>,
}

/// A node below an entity: another entity or a component bound to a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum HierarchyNode {
    /// A nested entity.
    Entity(HierarchyEntity),
    /// A component showing one device's data.
    Component {
        /// Component name within its entity.
        name: String,
        /// The configured device whose data the component shows.
        #[serde(rename = "iotDeviceId")]
        iot_device_id: String,
        /// Explicit component type id; `None` means the device's default type.
        #[serde(
            rename = "componentTypeId",
            default,
            skip_serializing_if = "Option::is_none"
        )]
        component_type_id: Option<String>,
    },
}

/// A whole, validated twin configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TwinConfig {
    /// The directory the files were read from.
    pub dir: PathBuf,
    /// `config.json`.
    pub twin: TwinSettings,
    /// `config_iot_devices.json`, in file order.
    pub devices: Vec<Device>,
    /// `config_providers.json`.
    pub providers: Providers,
    /// `config_hierarchy.json`, when present.
    pub hierarchy: Option<Vec<HierarchyEntity>>,
    /// The rules of `config_events.json` (empty when the file is absent), checked against the
    /// hierarchy and devices; their property references are resolved to device ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<twin_events::Rule>,
    /// Legal but doubtful settings, rendered like errors; they do not fail the load.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<Diagnostic>,
}

impl TwinConfig {
    /// The device with this id, if configured.
    pub fn device(&self, id: &str) -> Option<&Device> {
        self.devices.iter().find(|d| d.id == id)
    }

    /// Whether an event rule of the twin sends feedback to `device` (its identity may then
    /// receive it: its feedback topic on AWS, direct methods on Azure).
    pub fn receives_feedback(&self, device: &str) -> bool {
        self.events.iter().any(|r| {
            r.action
                .feedback()
                .is_some_and(|f| f.iot_device_id == device)
        })
    }

    /// The crates of the event rules' functions the twin deploys (`autoDeploy`), each once, in
    /// the order the rules name them.
    pub fn deployed_rule_functions(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for r in &self.events {
            if let twin_events::Action::Function {
                function_name,
                auto_deploy: true,
                ..
            } = &r.action
            {
                if !out.contains(&function_name.as_str()) {
                    out.push(function_name);
                }
            }
        }
        out
    }

    /// One example message per device, with a sample value of each property's type (the
    /// simulator's payloads file, on every cloud).
    pub fn example_payloads(&self) -> serde_json::Value {
        use serde_json::json;
        serde_json::Value::Array(
            self.devices
                .iter()
                .map(|d| {
                    let mut m = serde_json::Map::new();
                    m.insert("iotDeviceId".into(), json!(d.id));
                    m.insert("time".into(), json!(""));
                    for p in &d.properties {
                        let v = match p.data_type {
                            DataType::Double => json!(21.5),
                            DataType::Integer | DataType::Long => json!(1),
                            DataType::Boolean => json!(true),
                            DataType::String => json!("sample"),
                        };
                        m.insert(p.name.clone(), v);
                    }
                    serde_json::Value::Object(m)
                })
                .collect(),
        )
    }

    /// The twin's name (shorthand for `twin.digital_twin_name`).
    pub fn name(&self) -> &str {
        &self.twin.digital_twin_name
    }

    /// Whether `device` gets a processor function of its own on AWS: it names its own crate,
    /// or `aws.processor_per_device` is set. Every other device uses the shared processor.
    pub fn has_own_processor(&self, device: &Device) -> bool {
        device.processor.is_some() || self.providers.aws.processor_per_device
    }

    /// The crate a device's processor is built from (`processor` unless it names its own).
    pub fn processor_crate<'a>(&self, device: &'a Device) -> &'a str {
        device
            .processor
            .as_deref()
            .unwrap_or(DEFAULT_PROCESSOR_CRATE)
    }
}

/// The crate of the default processor (shared, or per device with `processor_per_device`).
pub const DEFAULT_PROCESSOR_CRATE: &str = "processor";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn data_types_accept_their_values_only() {
        assert!(DataType::Double.accepts(&json!(1)));
        assert!(DataType::Double.accepts(&json!(1.5)));
        assert!(!DataType::Double.accepts(&json!("1")));
        assert!(DataType::Integer.accepts(&json!(2147483647)));
        assert!(!DataType::Integer.accepts(&json!(2147483648_i64)));
        assert!(!DataType::Integer.accepts(&json!(1.0)));
        assert!(DataType::Long.accepts(&json!(i64::MIN)));
        assert!(!DataType::Long.accepts(&json!(u64::MAX)));
        assert!(DataType::Boolean.accepts(&json!(false)));
        assert!(!DataType::Boolean.accepts(&json!(0)));
        assert!(DataType::String.accepts(&json!("")));
        assert!(!DataType::String.accepts(&json!(null)));
        assert_eq!(DataType::parse("LONG"), Some(DataType::Long));
        assert_eq!(DataType::parse("long"), None);
    }

    #[test]
    fn devices_serialize_in_the_config_shape() {
        let d = Device {
            id: "d".to_string(),
            properties: vec![Property {
                name: "p".to_string(),
                data_type: DataType::Double,
                init_value: None,
            }],
            const_properties: Vec::new(),
            processor: None,
        };
        let v = serde_json::to_value(&d).unwrap_or_default();
        assert_eq!(
            v,
            json!({"id": "d", "properties": [{"name": "p", "dataType": "DOUBLE"}]})
        );
        let back: Result<Device, _> = serde_json::from_value(v);
        assert_eq!(back.ok(), Some(d));
    }
}
