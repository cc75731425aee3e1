//! What the twin's TwinMaker content looks like, derived from the config alone: one component
//! type per device and the entity tree of `config_hierarchy.json`. These are also the `desired`
//! settings of the AWS L4 specs (twin-aws builds its specs from them), so a driver's read
//! reports the same shape back for drift detection, and `deployer model --format twinmaker`
//! writes the same content.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use twin_config::{
    names, ConstProperty, DataType, Device, HierarchyEntity, HierarchyNode, TwinConfig,
};

/// The property every component type defines and every component sets: the device whose data
/// the twin connector reads (the connector finds the device through it, SPEC §6).
pub const DEVICE_ID_PROPERTY: &str = "iotDeviceId";

/// The function of a component type that the twin connector implements.
pub const DATA_READER_FUNCTION: &str = "dataReader";

/// Local name of the twin connector function (the `dataReader` of every component type).
pub const CONNECTOR: &str = "twin-connector";

/// One property definition of a component type, in the terms TwinMaker uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PropertyModel {
    /// TwinMaker data type (`DOUBLE`, `INTEGER`, `LONG`, `BOOLEAN`, `STRING`).
    pub data_type: DataType,
    /// A telemetry property: its values come from the data connector over time.
    #[serde(default)]
    pub time_series: bool,
    /// The property identifies the device in the external store (the hot table).
    #[serde(default)]
    pub external_id: bool,
    /// Every component of the type must set it.
    #[serde(default)]
    pub required: bool,
    /// The default value as a TwinMaker `DataValue` (`{"doubleValue": 1.0}`), for const properties.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_value: Option<Value>,
}

/// A device's component type: its properties and the connector function that reads its data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentTypeModel {
    /// Property definitions by name.
    pub properties: BTreeMap<String, PropertyModel>,
    /// Name of the Lambda function implementing `dataReader`.
    pub data_reader: String,
}

/// A component of an entity, bound to one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentModel {
    /// The component type it instantiates.
    pub component_type_id: String,
    /// The device whose data it shows (value of its `iotDeviceId` property).
    pub iot_device_id: String,
}

/// An entity of the hierarchy with its parent and components.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntityModel {
    /// Entity id (also its name).
    #[serde(skip)]
    pub id: String,
    /// Parent entity id; `None` for a root entity.
    pub parent: Option<String>,
    /// Components by name.
    pub components: BTreeMap<String, ComponentModel>,
}

impl ComponentTypeModel {
    /// The component type of one device: `iotDeviceId` as external id, each telemetry property
    /// as a time series stored externally (read through the connector), each const property
    /// with its value as default.
    pub fn for_device(twin: &str, device: &Device) -> ComponentTypeModel {
        let mut properties = BTreeMap::new();
        properties.insert(
            DEVICE_ID_PROPERTY.to_string(),
            PropertyModel {
                data_type: DataType::String,
                time_series: false,
                external_id: true,
                required: true,
                default_value: None,
            },
        );
        for p in &device.properties {
            properties.insert(
                p.name.clone(),
                PropertyModel {
                    data_type: p.data_type,
                    time_series: true,
                    external_id: false,
                    required: false,
                    default_value: None,
                },
            );
        }
        for c in &device.const_properties {
            properties.insert(
                c.name.clone(),
                PropertyModel {
                    data_type: c.data_type,
                    time_series: false,
                    external_id: false,
                    required: false,
                    default_value: Some(data_value(c)),
                },
            );
        }
        ComponentTypeModel {
            properties,
            data_reader: names::function_name(twin, CONNECTOR),
        }
    }

    /// The `desired` settings of the component type's spec.
    pub fn to_desired(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

impl EntityModel {
    /// The `desired` settings of the entity's spec.
    pub fn to_desired(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// A device's component type with its id.
#[derive(Debug, Clone, PartialEq)]
pub struct ComponentType {
    /// The component type id (`<twin>-<device>`).
    pub id: String,
    /// The device it is for.
    pub device: String,
    /// Its properties and data reader.
    pub model: ComponentTypeModel,
}

/// The twin's component types, one per device in config order.
pub fn component_types(config: &TwinConfig) -> Vec<ComponentType> {
    let twin = config.name();
    config
        .devices
        .iter()
        .map(|d| ComponentType {
            id: names::component_type_id(twin, &d.id),
            device: d.id.clone(),
            model: ComponentTypeModel::for_device(twin, d),
        })
        .collect()
}

/// The twin's entities (see [`entities`]), none without a hierarchy file.
pub fn twin_entities(config: &TwinConfig) -> Vec<EntityModel> {
    entities(
        config.name(),
        config.hierarchy.as_deref().unwrap_or_default(),
    )
}

/// A component type as `deployer model` writes it: its id, the device, and the model.
pub fn component_type_json(ct: &ComponentType) -> Value {
    let mut v = json!({"componentTypeId": ct.id, "iotDeviceId": ct.device});
    if let (Some(o), Value::Object(m)) = (v.as_object_mut(), ct.model.to_desired()) {
        o.extend(m);
    }
    v
}

/// The entities as `deployer model` writes them: a list, parents first, each with its id.
pub fn entities_json(entities: &[EntityModel]) -> Value {
    Value::Array(
        entities
            .iter()
            .map(|e| {
                json!({"entityId": e.id, "parentEntityId": e.parent, "components": e.components})
            })
            .collect(),
    )
}

/// A const property's value as a TwinMaker `DataValue` JSON object. Numbers are normalised to
/// the declared type (a DOUBLE written as `5` becomes `5.0`) so the value read back compares
/// equal.
pub fn data_value(c: &ConstProperty) -> Value {
    typed_value(c.data_type, &c.value)
}

/// `value` as the `DataValue` member for `data_type`; validation guarantees the value fits.
pub fn typed_value(data_type: DataType, value: &Value) -> Value {
    match data_type {
        DataType::Double => json!({"doubleValue": value.as_f64()}),
        DataType::Integer => json!({"integerValue": value.as_i64()}),
        DataType::Long => json!({"longValue": value.as_i64()}),
        DataType::Boolean => json!({"booleanValue": value.as_bool()}),
        DataType::String => json!({"stringValue": value.as_str()}),
    }
}

/// The entities of the hierarchy, parents before their children (the order they must be
/// created in); each component names its device's component type unless the file names one.
pub fn entities(twin: &str, hierarchy: &[HierarchyEntity]) -> Vec<EntityModel> {
    let mut out = Vec::new();
    for root in hierarchy {
        walk(twin, root, None, &mut out);
    }
    out
}

fn walk(twin: &str, entity: &HierarchyEntity, parent: Option<&str>, out: &mut Vec<EntityModel>) {
    let mut components = BTreeMap::new();
    for child in &entity.children {
        if let HierarchyNode::Component {
            name,
            iot_device_id,
            component_type_id,
        } = child
        {
            let type_id = component_type_id
                .clone()
                .unwrap_or_else(|| names::component_type_id(twin, iot_device_id));
            components.insert(
                name.clone(),
                ComponentModel {
                    component_type_id: type_id,
                    iot_device_id: iot_device_id.clone(),
                },
            );
        }
    }
    out.push(EntityModel {
        id: entity.id.clone(),
        parent: parent.map(str::to_string),
        components,
    });
    for child in &entity.children {
        if let HierarchyNode::Entity(e) = child {
            walk(twin, e, Some(&entity.id), out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use twin_config::Property;

    fn pressure_sensor() -> Device {
        Device {
            id: "pressure-sensor-1".into(),
            properties: vec![
                Property {
                    name: "pressure".into(),
                    data_type: DataType::Double,
                    init_value: None,
                },
                Property {
                    name: "hardness".into(),
                    data_type: DataType::Integer,
                    init_value: None,
                },
            ],
            const_properties: vec![
                ConstProperty {
                    name: "serial-number".into(),
                    data_type: DataType::String,
                    value: json!("1232323"),
                },
                ConstProperty {
                    name: "calibration".into(),
                    data_type: DataType::Double,
                    value: json!(5),
                },
            ],
            processor: None,
        }
    }

    #[test]
    fn component_type_maps_properties_to_twinmaker_definitions() {
        let ct = ComponentTypeModel::for_device("dt", &pressure_sensor());
        assert_eq!(
            ct.to_desired(),
            json!({
                "properties": {
                    "calibration": {"dataType": "DOUBLE", "timeSeries": false, "externalId": false,
                                    "required": false, "defaultValue": {"doubleValue": 5.0}},
                    "hardness": {"dataType": "INTEGER", "timeSeries": true, "externalId": false,
                                 "required": false},
                    "iotDeviceId": {"dataType": "STRING", "timeSeries": false, "externalId": true,
                                    "required": true},
                    "pressure": {"dataType": "DOUBLE", "timeSeries": true, "externalId": false,
                                 "required": false},
                    "serial-number": {"dataType": "STRING", "timeSeries": false, "externalId": false,
                                      "required": false, "defaultValue": {"stringValue": "1232323"}}
                },
                "dataReader": "dt-twin-connector"
            })
        );
    }

    #[test]
    fn typed_values_use_twinmaker_member_names() {
        assert_eq!(
            typed_value(DataType::Long, &json!(7)),
            json!({"longValue": 7})
        );
        assert_eq!(
            typed_value(DataType::Integer, &json!(-3)),
            json!({"integerValue": -3})
        );
        assert_eq!(
            typed_value(DataType::Boolean, &json!(true)),
            json!({"booleanValue": true})
        );
        assert_eq!(
            typed_value(DataType::Double, &json!(1.5)),
            json!({"doubleValue": 1.5})
        );
    }

    #[test]
    fn entities_come_parents_first_with_their_components() {
        let hierarchy: Vec<HierarchyEntity> = serde_json::from_value(json!([
            {"id": "building", "children": [
                {"type": "entity", "id": "room-1", "children": [
                    {"type": "component", "name": "temp", "iotDeviceId": "t-1"},
                    {"type": "entity", "id": "shelf", "children": []}
                ]},
                {"type": "component", "name": "press", "iotDeviceId": "p-1",
                 "componentTypeId": "custom-type"}
            ]},
            {"id": "yard", "children": []}
        ]))
        .unwrap_or_default();
        let es = entities("dt", &hierarchy);
        let ids: Vec<&str> = es.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["building", "room-1", "shelf", "yard"]);
        assert_eq!(
            es[0].to_desired(),
            json!({"parent": null, "components": {
                "press": {"componentTypeId": "custom-type", "iotDeviceId": "p-1"}}})
        );
        assert_eq!(
            es[1].to_desired(),
            json!({"parent": "building", "components": {
                "temp": {"componentTypeId": "dt-t-1", "iotDeviceId": "t-1"}}})
        );
        assert_eq!(es[2].parent.as_deref(), Some("room-1"));
        assert_eq!(es[3].parent, None);
    }
}
