//! JSON Schema (draft 2020-12) of the config files, for editors (`deployer schema`).

use serde_json::{json, Value};

use crate::model::DataType;
use crate::providers::Layer;

const DIALECT: &str = "https://json-schema.org/draft/2020-12/schema";

/// The schemas of the four files, keyed by file name. They describe the shape; the loader also
/// checks what a schema cannot (unique ids, known devices, names once prefixed, hot < cold).
pub fn schema() -> Value {
    json!({
        "config.json": config(),
        "config_iot_devices.json": devices(),
        "config_providers.json": providers(),
        "config_hierarchy.json": hierarchy(),
    })
}

fn days(what: &str) -> Value {
    json!({ "description": what, "type": "integer", "minimum": 1, "maximum": u32::MAX })
}

fn config() -> Value {
    json!({
        "$schema": DIALECT,
        "title": "config.json",
        "description": "The twin's name, storage retention and log level.",
        "type": "object",
        "additionalProperties": false,
        "required": ["digital_twin_name", "hot_storage_size_in_days", "cold_storage_size_in_days"],
        "properties": {
            "digital_twin_name": {
                "description": "Prefix of every cloud resource name; no `--` and no trailing `-`.",
                "type": "string", "minLength": 1, "maxLength": 63,
                "pattern": "^[A-Za-z](?:[A-Za-z0-9_]|-(?=[A-Za-z0-9_]))*$"
            },
            "hot_storage_size_in_days": days("Days a record stays in hot storage; less than cold_storage_size_in_days."),
            "cold_storage_size_in_days": days("Days an object stays in cold storage before it moves to archive."),
            "mode": { "description": "Log level of the functions.", "enum": ["DEBUG", "INFO"], "default": "INFO" },
            "expected_load": {
                "description": "The load `plan` prices its monthly estimate for.",
                "type": "object",
                "additionalProperties": false,
                "required": ["messages_per_device_per_minute"],
                "properties": {
                    "devices": { "description": "Devices sending; default: the configured devices.", "type": "integer", "minimum": 1, "maximum": 10000000 },
                    "messages_per_device_per_minute": { "description": "Messages each device sends a minute.", "type": "number", "minimum": 0, "maximum": 600000 },
                    "message_bytes": { "description": "Bytes of one message; default: the largest example payload of the devices.", "type": "integer", "minimum": 1, "maximum": 262144 },
                    "dashboard_users": { "description": "People who open the dashboards; default 1.", "type": "integer", "minimum": 0, "maximum": 100000 }
                }
            }
        }
    })
}

fn data_type() -> Value {
    let names: Vec<&str> = DataType::ALL.iter().map(|t| t.as_str()).collect();
    json!({ "enum": names })
}

fn property_name() -> Value {
    json!({ "type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[A-Za-z0-9_-]+$" })
}

fn devices() -> Value {
    let reserved: Vec<Value> = crate::RESERVED_RECORD_FIELDS
        .iter()
        .map(|f| json!(f))
        .collect();
    let typed = |key: &str, t: &str, value: Value| {
        json!({ "if": { "properties": { "dataType": { "const": t } } },
                "then": { "properties": { key: value } } })
    };
    let const_value = |t: &str, value: Value| typed("value", t, value);
    json!({
        "$schema": DIALECT,
        "title": "config_iot_devices.json",
        "description": "The twin's IoT devices.",
        "type": "array",
        "minItems": 1,
        "items": {
            "type": "object",
            "additionalProperties": false,
            "required": ["id", "properties"],
            "properties": {
                "id": { "description": "Unique device id.", "type": "string", "minLength": 1,
                        "maxLength": 128, "pattern": "^[A-Za-z0-9_-]+$" },
                "properties": {
                    "description": "Telemetry properties the device publishes.",
                    "type": "array", "minItems": 1,
                    "items": {
                        "type": "object", "additionalProperties": false,
                        "required": ["name", "dataType"],
                        "properties": {
                            "name": { "allOf": [property_name(), { "not": { "enum": reserved } }] },
                            "dataType": data_type(),
                            "initValue": { "description": "The twin property's initial value, of the property's dataType." }
                        },
                        "allOf": [
                            typed("initValue", "DOUBLE", json!({ "type": "number" })),
                            typed("initValue", "INTEGER", json!({ "type": "integer", "minimum": i32::MIN, "maximum": i32::MAX })),
                            typed("initValue", "LONG", json!({ "type": "integer", "minimum": i64::MIN, "maximum": i64::MAX })),
                            typed("initValue", "BOOLEAN", json!({ "type": "boolean" })),
                            typed("initValue", "STRING", json!({ "type": "string" }))
                        ]
                    }
                },
                "constProperties": {
                    "description": "Properties with a fixed value.",
                    "type": "array",
                    "items": {
                        "type": "object", "additionalProperties": false,
                        "required": ["name", "dataType", "value"],
                        "properties": {
                            "name": property_name(),
                            "dataType": data_type(),
                            "value": true
                        },
                        "allOf": [
                            const_value("DOUBLE", json!({ "type": "number" })),
                            const_value("INTEGER", json!({ "type": "integer", "minimum": i32::MIN, "maximum": i32::MAX })),
                            const_value("LONG", json!({ "type": "integer", "minimum": i64::MIN, "maximum": i64::MAX })),
                            const_value("BOOLEAN", json!({ "type": "boolean" })),
                            const_value("STRING", json!({ "type": "string" }))
                        ]
                    }
                },
                "processor": {
                    "description": "Name of a custom processor crate under lambdas/ (default: the shared processor).",
                    "type": "string", "pattern": "^[A-Za-z][A-Za-z0-9_-]{0,63}$"
                }
            }
        }
    })
}

/// IAM Identity Center users and groups granted one Grafana role.
fn grantees() -> Value {
    let ids = json!({ "type": "array", "uniqueItems": true,
        "items": { "type": "string", "minLength": 1, "maxLength": 47, "pattern": "^\\S+$" } });
    json!({
        "type": "object", "additionalProperties": false,
        "properties": { "users": ids.clone(), "groups": ids }
    })
}

fn providers() -> Value {
    let mut props = serde_json::Map::new();
    let provider = json!({ "enum": ["aws", "azure", "none"] });
    for layer in Layer::IN_FILE_ORDER {
        props.insert(layer.key().to_string(), provider.clone());
    }
    props.insert(
        "aws".to_string(),
        json!({
            "type": "object", "additionalProperties": false,
            "properties": {
                "region": { "type": "string", "pattern": "^[a-z]+(-[a-z]+)+-[0-9]+$" },
                "architecture": { "enum": ["arm64", "x86_64"], "default": "arm64" },
                "grafana_authentication_provider": { "enum": ["AWS_SSO", "SAML"], "default": "AWS_SSO" },
                "processor_per_device": { "type": "boolean", "default": false },
                "grafana_admins": grantees(),
                "grafana_editors": grantees(),
                "grafana_viewers": grantees(),
                "grafana_saml": {
                    "type": "object", "additionalProperties": false,
                    "required": ["assertion_attributes", "admin_role_values"],
                    "properties": {
                        "idp_metadata_url": { "type": "string", "pattern": "^https://" },
                        "idp_metadata_xml": { "type": "string" },
                        "assertion_attributes": {
                            "type": "object", "additionalProperties": false, "required": ["role"],
                            "properties": {
                                "role": { "type": "string", "minLength": 1 },
                                "name": { "type": "string", "minLength": 1 },
                                "login": { "type": "string", "minLength": 1 },
                                "email": { "type": "string", "minLength": 1 },
                                "groups": { "type": "string", "minLength": 1 },
                                "org": { "type": "string", "minLength": 1 }
                            }
                        },
                        "admin_role_values": { "type": "array", "items": { "type": "string" }, "minItems": 1 },
                        "editor_role_values": { "type": "array", "items": { "type": "string" } },
                        "login_validity_minutes": { "type": "integer", "minimum": 1 }
                    }
                }
            }
        }),
    );
    props.insert(
        "azure".to_string(),
        json!({
            "type": "object", "additionalProperties": false,
            "properties": {
                "subscription_id": { "type": "string",
                    "pattern": "^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$" },
                "resource_group": { "type": "string", "minLength": 1, "maxLength": 90,
                    "pattern": "^[-\\w._()]*[-\\w_()]$" },
                "location": { "type": "string", "pattern": "^[a-z0-9]+$" }
            }
        }),
    );
    let required: Vec<&str> = Layer::IN_FILE_ORDER.iter().map(|l| l.key()).collect();
    json!({
        "$schema": DIALECT,
        "title": "config_providers.json",
        "description": "The cloud hosting each layer (or none), and per-cloud settings.",
        "type": "object",
        "additionalProperties": false,
        "required": required,
        "properties": props
    })
}

fn hierarchy() -> Value {
    json!({
        "$schema": DIALECT,
        "title": "config_hierarchy.json",
        "description": "The twin's entity tree: entities contain entities and device components.",
        "type": "array",
        "items": { "$ref": "#/$defs/entity" },
        "$defs": {
            "entity": {
                "type": "object", "additionalProperties": false,
                "required": ["id"],
                "properties": {
                    "type": { "const": "entity" },
                    "id": { "type": "string", "minLength": 1 },
                    "children": { "type": "array", "items": { "$ref": "#/$defs/node" } }
                }
            },
            "component": {
                "type": "object", "additionalProperties": false,
                "required": ["name"],
                "anyOf": [{ "required": ["iotDeviceId"] }, { "required": ["componentTypeId"] }],
                "properties": {
                    "type": { "const": "component" },
                    "name": { "type": "string", "minLength": 1 },
                    "iotDeviceId": { "type": "string" },
                    "componentTypeId": { "type": "string" }
                }
            },
            "node": {
                "oneOf": [
                    { "$ref": "#/$defs/entity", "required": ["id"] },
                    { "$ref": "#/$defs/component", "not": { "required": ["id"] } }
                ]
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn has_the_four_files_with_the_2020_12_dialect() {
        let s = schema();
        let files: Vec<&String> = s
            .as_object()
            .map(|m| m.keys().collect())
            .unwrap_or_default();
        assert_eq!(
            files,
            [
                "config.json",
                "config_iot_devices.json",
                "config_providers.json",
                "config_hierarchy.json"
            ]
        );
        for (_, file) in s.as_object().into_iter().flatten() {
            assert_eq!(file["$schema"], DIALECT);
        }
    }

    #[test]
    fn lists_the_allowed_values() {
        let s = schema();
        assert_eq!(
            s["config_iot_devices.json"]["items"]["properties"]["properties"]["items"]
                ["properties"]["dataType"]["enum"],
            json!(["DOUBLE", "INTEGER", "LONG", "BOOLEAN", "STRING"])
        );
        let p = &s["config_providers.json"];
        assert_eq!(p["required"].as_array().map(Vec::len), Some(7));
        assert_eq!(
            p["properties"]["layer_3_hot_provider"]["enum"],
            json!(["aws", "azure", "none"])
        );
        assert_eq!(p["additionalProperties"], json!(false));
    }
}
