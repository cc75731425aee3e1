//! The twin as DTDL v3 interfaces, and those interfaces read back from JSON.
//!
//! Granularity: one interface **per device**, because the config has no device types — every
//! device lists its own properties — and the TwinMaker side is one component type per device
//! too, so both formats name the same things. Every device interface `extends` the twin's
//! `Device` base, which holds the `iotDeviceId` property (TwinMaker's external id) once.
//!
//! Every entity of `config_hierarchy.json` gets an interface of its own (its display name is
//! the entity's id) with one Relationship `contains`; each edge of the hierarchy (entity →
//! child entity, entity → device component) is an instance of that relationship between two
//! twins. It names no `target`: an entity contains entities and devices of many interfaces
//! and a DTDL relationship can name only one.
//!
//! Telemetry fields are Properties, not Telemetry: Azure Digital Twins stores properties on
//! the twin (the persister patches them), telemetry only passes through. Constant properties
//! are read-only Properties whose value the twin gets when it is created
//! ([`initial_properties`]). The generated DTDL uses the core language only (no extensions),
//! which every DTDL v3 importer accepts.

use crate::dtmi::{self, Collision, DTDL_CONTEXT};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use twin_config::{DataType, Device, HierarchyEntity, HierarchyNode, TwinConfig};

/// Name of the base interface every device interface extends.
pub const DEVICE_BASE: &str = "Device";

/// The relationship of an entity to what it contains.
pub const CONTAINS: &str = "contains";

/// The property of the device base naming the device (as TwinMaker's `iotDeviceId`).
pub const DEVICE_ID_PROPERTY: &str = crate::twinmaker::DEVICE_ID_PROPERTY;

/// Kind segment of a device interface's DTMI.
pub const DEVICE_KIND: &str = "device";

/// Kind segment of an entity interface's DTMI.
pub const ENTITY_KIND: &str = "entity";

/// A DTDL v3 Interface, as far as the generator uses the language.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    /// Always [`DTDL_CONTEXT`].
    #[serde(rename = "@context")]
    pub context: String,
    /// The interface's DTMI.
    #[serde(rename = "@id")]
    pub id: String,
    /// Always `Interface`.
    #[serde(rename = "@type")]
    pub kind: String,
    /// The config id the interface stands for, or the base's name.
    #[serde(
        rename = "displayName",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub display_name: Option<String>,
    /// What the interface is, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// DTMIs of the interfaces it extends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extends: Vec<String>,
    /// Properties and relationships.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contents: Vec<Content>,
}

/// One element of an interface's `contents`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "@type")]
pub enum Content {
    /// A Property.
    Property(PropertyDef),
    /// A Relationship.
    Relationship(RelationshipDef),
    /// A Component (another interface as a part; the generator makes none, upload order
    /// honours them).
    Component(ComponentDef),
}

/// A DTDL Property.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PropertyDef {
    /// The DTDL name (the config name mapped by [`dtmi::name`]).
    pub name: String,
    /// Primitive schema: `double`, `integer`, `long`, `boolean` or `string`.
    pub schema: String,
    /// The config's spelling of the name when it differs from `name`.
    #[serde(
        rename = "displayName",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub display_name: Option<String>,
    /// What the property holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Whether a twin's user may set it (DTDL's default: false).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub writable: bool,
}

/// A DTDL Relationship.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelationshipDef {
    /// The relationship's name.
    pub name: String,
    /// DTMI of the interface its targets must have; `None` for any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// What the relationship means.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A DTDL Component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentDef {
    /// The component's name.
    pub name: String,
    /// DTMI of the component's interface.
    pub schema: String,
}

impl Interface {
    fn new(id: String, display_name: &str, description: String) -> Interface {
        Interface {
            context: DTDL_CONTEXT.to_string(),
            id,
            kind: "Interface".to_string(),
            display_name: Some(cut(display_name, MAX_DISPLAY_NAME)),
            description: Some(cut(&description, MAX_DESCRIPTION)),
            extends: Vec::new(),
            contents: Vec::new(),
        }
    }

    /// The DTMIs this interface needs present before (or uploaded with) it: what it extends,
    /// its components' schemas and its relationships' targets; itself excluded.
    pub fn dependencies(&self) -> BTreeSet<&str> {
        let mut out: BTreeSet<&str> = self.extends.iter().map(String::as_str).collect();
        for c in &self.contents {
            match c {
                Content::Component(c) => {
                    out.insert(&c.schema);
                }
                Content::Relationship(r) => {
                    if let Some(t) = &r.target {
                        out.insert(t);
                    }
                }
                Content::Property(_) => {}
            }
        }
        out.remove(self.id.as_str());
        out
    }
}

/// Longest `displayName` written (DTDL v2's limit; v3 allows more, importers may not).
pub const MAX_DISPLAY_NAME: usize = 64;

/// Longest `description` written (DTDL v3's limit).
pub const MAX_DESCRIPTION: usize = 512;

/// `s` cut to at most `max` characters, `…` marking a cut.
fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// The DTDL primitive schema of a config data type.
pub fn schema(t: DataType) -> &'static str {
    match t {
        DataType::Double => "double",
        DataType::Integer => "integer",
        DataType::Long => "long",
        DataType::Boolean => "boolean",
        DataType::String => "string",
    }
}

/// The DTMI of a device's interface.
pub fn device_interface_id(twin: &str, device: &str) -> String {
    dtmi::interface_id(twin, DEVICE_KIND, device)
}

/// The DTMI of an entity's interface.
pub fn entity_interface_id(twin: &str, entity: &str) -> String {
    dtmi::interface_id(twin, ENTITY_KIND, entity)
}

/// The DTMI of the twin's device base interface.
pub fn device_base_id(twin: &str) -> String {
    dtmi::base_id(twin, DEVICE_BASE)
}

/// The DTDL property name of a device property (telemetry or constant) as named in the config:
/// the name to patch on a twin.
pub fn property_name(config_name: &str) -> String {
    dtmi::name(config_name)
}

/// Every interface of the twin: the device base, one per device (config order), one per
/// hierarchy entity (parents first). Fails when two ids or two property names of one device
/// map to the same DTMI or name (see [`crate::dtmi`]).
pub fn interfaces(config: &TwinConfig) -> Result<Vec<Interface>, Collision> {
    let twin = config.name();
    dtmi::check_unique(
        twin_config::DEVICES_FILE,
        "device id",
        config.devices.iter().map(|d| d.id.as_str()),
        dtmi::segment,
    )?;
    let entities = flatten(config.hierarchy.as_deref().unwrap_or_default());
    dtmi::check_unique(
        twin_config::HIERARCHY_FILE,
        "entity id",
        entities.iter().map(|e| e.id.as_str()),
        dtmi::segment,
    )?;

    let mut out = vec![device_base(twin)];
    for d in &config.devices {
        out.push(device_interface(twin, d)?);
    }
    for e in entities {
        let mut i = Interface::new(
            entity_interface_id(twin, &e.id),
            &e.id,
            format!("Entity {} of the twin's hierarchy", e.id),
        );
        i.contents.push(Content::Relationship(RelationshipDef {
            name: CONTAINS.to_string(),
            target: None,
            description: Some("A child entity or device of this entity".to_string()),
        }));
        out.push(i);
    }
    Ok(out)
}

fn device_base(twin: &str) -> Interface {
    let mut i = Interface::new(
        device_base_id(twin),
        DEVICE_BASE,
        format!("An IoT device of twin {twin}"),
    );
    i.contents.push(Content::Property(PropertyDef {
        name: DEVICE_ID_PROPERTY.to_string(),
        schema: schema(DataType::String).to_string(),
        display_name: None,
        description: Some("The device's id in the IoT hub".to_string()),
        writable: false,
    }));
    i
}

fn device_interface(twin: &str, d: &Device) -> Result<Interface, Collision> {
    let names = d
        .properties
        .iter()
        .map(|p| p.name.as_str())
        .chain(d.const_properties.iter().map(|c| c.name.as_str()))
        .chain([DEVICE_ID_PROPERTY]);
    dtmi::check_unique(
        twin_config::DEVICES_FILE,
        &format!("property of device {}", d.id),
        names,
        dtmi::name,
    )?;
    let mut i = Interface::new(
        device_interface_id(twin, &d.id),
        &d.id,
        format!(
            "Device {}: its latest telemetry and constant properties",
            d.id
        ),
    );
    i.extends.push(device_base_id(twin));
    let mapped = |n: &str| {
        let m = property_name(n);
        (m != n).then(|| n.to_string())
    };
    for p in &d.properties {
        i.contents.push(Content::Property(PropertyDef {
            name: property_name(&p.name),
            schema: schema(p.data_type).to_string(),
            display_name: mapped(&p.name).map(|n| cut(&n, MAX_DISPLAY_NAME)),
            description: Some("Latest telemetry value".to_string()),
            writable: false,
        }));
    }
    for c in &d.const_properties {
        i.contents.push(Content::Property(PropertyDef {
            name: property_name(&c.name),
            schema: schema(c.data_type).to_string(),
            display_name: mapped(&c.name).map(|n| cut(&n, MAX_DISPLAY_NAME)),
            description: Some("Constant, set from the config when the twin is created".to_string()),
            writable: false,
        }));
    }
    Ok(i)
}

/// The properties a device's twin starts with, by DTDL name: its id, its constant properties'
/// values and the telemetry properties' `initValue`s.
pub fn initial_properties(device: &Device) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(
        DEVICE_ID_PROPERTY.to_string(),
        Value::from(device.id.clone()),
    );
    for p in &device.properties {
        if let Some(v) = &p.init_value {
            m.insert(property_name(&p.name), v.clone());
        }
    }
    for c in &device.const_properties {
        m.insert(property_name(&c.name), c.value.clone());
    }
    m
}

/// The JSON Patch that sets a device twin's telemetry properties from one record: an `add`
/// (which creates or replaces) per telemetry property of the device present in `record`
/// (keyed by config name); other keys are not the twin's and are left out.
pub fn telemetry_patch(device: &Device, record: &Map<String, Value>) -> Value {
    Value::Array(
        device
            .properties
            .iter()
            .filter_map(|p| {
                record.get(&p.name).map(|v| {
                    serde_json::json!({
                        // DTDL names are letters, digits and `_`: nothing to escape in the pointer.
                        "op": "add", "path": format!("/{}", property_name(&p.name)), "value": v
                    })
                })
            })
            .collect(),
    )
}

/// The hierarchy's entities, parents before children.
fn flatten(hierarchy: &[HierarchyEntity]) -> Vec<&HierarchyEntity> {
    fn walk<'a>(e: &'a HierarchyEntity, out: &mut Vec<&'a HierarchyEntity>) {
        out.push(e);
        for c in &e.children {
            if let HierarchyNode::Entity(child) = c {
                walk(child, out);
            }
        }
    }
    let mut out = Vec::new();
    for e in hierarchy {
        walk(e, &mut out);
    }
    out
}

/// Interfaces read back from DTDL JSON: one interface object or an array of them.
pub fn parse(json: &str) -> Result<Vec<Interface>, serde_json::Error> {
    let v: Value = serde_json::from_str(json)?;
    match v {
        Value::Array(_) => serde_json::from_value(v),
        other => Ok(vec![serde_json::from_value(other)?]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{config, device};
    use serde_json::json;

    #[test]
    fn a_device_interface_has_a_property_per_field_and_extends_the_base() {
        let c = config(
            "dt",
            vec![device(
                "pressure-sensor-1",
                &["pressure"],
                &["serial-number"],
            )],
            None,
        );
        let all = interfaces(&c).unwrap_or_default();
        assert_eq!(all.len(), 2);
        let d = &all[1];
        assert_eq!(d.extends, [device_base_id("dt")]);
        let v = serde_json::to_value(d).unwrap_or_default();
        assert_eq!(v["@context"], json!("dtmi:dtdl:context;3"));
        assert_eq!(v["@type"], json!("Interface"));
        assert_eq!(v["displayName"], json!("pressure-sensor-1"));
        let contents = v["contents"].as_array().cloned().unwrap_or_default();
        assert_eq!(contents.len(), 2);
        assert_eq!(contents[0]["@type"], json!("Property"));
        assert_eq!(contents[0]["name"], json!("pressure"));
        assert_eq!(contents[0]["schema"], json!("double"));
        assert!(contents[0].get("displayName").is_none());
        assert_eq!(contents[1]["displayName"], json!("serial-number"));
        assert_eq!(contents[1]["schema"], json!("string"));
        assert!(dtmi::is_valid_segment(
            contents[1]["name"].as_str().unwrap_or("")
        ));
    }

    #[test]
    fn every_entity_is_an_interface_with_contains() {
        let h = json!([{"id": "site-1", "children": [
            {"type": "entity", "id": "room.1", "children": [
                {"type": "component", "name": "t", "iotDeviceId": "d1"}]}]}]);
        let c = config("dt", vec![device("d1", &["t"], &[])], Some(h));
        let all = interfaces(&c).unwrap_or_default();
        let ids: Vec<&str> = all.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids.len(), 4);
        assert_eq!(ids[2], entity_interface_id("dt", "site-1"));
        assert_eq!(ids[3], entity_interface_id("dt", "room.1"));
        assert!(ids.iter().all(|i| dtmi::is_valid_dtmi(i)));
        assert_eq!(
            all[3].contents,
            [Content::Relationship(RelationshipDef {
                name: CONTAINS.into(),
                target: None,
                description: Some("A child entity or device of this entity".into()),
            })]
        );
    }

    #[test]
    fn generated_json_parses_back_to_the_same_interfaces() {
        let c = config(
            "my-twin",
            vec![
                device("a-1", &["x-y", "z"], &["c"]),
                device("b", &["p"], &[]),
            ],
            Some(json!([{"id": "e", "children": []}])),
        );
        let all = interfaces(&c).unwrap_or_default();
        let text = serde_json::to_string_pretty(&all).unwrap_or_default();
        assert_eq!(parse(&text).ok(), Some(all.clone()));
        let one = serde_json::to_string(&all[1]).unwrap_or_default();
        assert_eq!(parse(&one).ok(), Some(vec![all[1].clone()]));
    }

    #[test]
    fn initial_properties_hold_constants_init_values_and_the_id() {
        let mut d = device("d-1", &["t"], &["serial-number"]);
        d.properties[0].init_value = Some(json!(1.5));
        let m = initial_properties(&d);
        assert_eq!(m.get("iotDeviceId"), Some(&json!("d-1")));
        assert_eq!(m.get("t"), Some(&json!(1.5)));
        assert_eq!(m.get(&property_name("serial-number")), Some(&json!("v")));
    }

    #[test]
    fn a_telemetry_patch_adds_the_device_properties_of_the_record() {
        let d = device("d", &["temp-c", "rh"], &["serial"]);
        let record = json!({"iotDeviceId": "d", "time": "t", "temp-c": 21.5, "serial": "x"});
        let patch = telemetry_patch(&d, record.as_object().unwrap_or(&Map::new()));
        assert_eq!(
            patch,
            json!([{"op": "add", "path": format!("/{}", property_name("temp-c")), "value": 21.5}])
        );
    }

    #[test]
    fn dependencies_are_extends_components_and_targets() {
        let mut i = Interface::new("dtmi:a:b;1".into(), "b", String::new());
        i.extends.push("dtmi:a:base;1".into());
        i.contents.push(Content::Component(ComponentDef {
            name: "c".into(),
            schema: "dtmi:a:part;1".into(),
        }));
        i.contents.push(Content::Relationship(RelationshipDef {
            name: "r".into(),
            target: Some("dtmi:a:b;1".into()),
            description: None,
        }));
        let deps: Vec<&str> = i.dependencies().into_iter().collect();
        assert_eq!(deps, ["dtmi:a:base;1", "dtmi:a:part;1"]);
    }
}
