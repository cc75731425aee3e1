//! `config_iot_devices.json`: the devices, their telemetry properties and fixed properties.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::reader::{label, FileReader};
use crate::model::{ConstProperty, DataType, Device, Property};
use crate::names;
use crate::spans::{element, member, Pos};
use crate::validate::DeviceRef;
use crate::{RESERVED_COMPONENT_PROPERTIES, RESERVED_RECORD_FIELDS};

/// Whatever of the device file was readable.
#[derive(Debug, Default)]
pub(crate) struct DevicesPart {
    /// Devices without any diagnostic, in file order.
    pub devices: Vec<Device>,
    /// Every well-formed device id with its index in the file (for cross-file checks).
    pub ids: Vec<DeviceRef>,
}

const DEVICE_KEYS: [&str; 4] = ["id", "properties", "constProperties", "processor"];
const PROPERTY_KEYS: [&str; 3] = ["name", "dataType", "initValue"];
const CONST_KEYS: [&str; 3] = ["name", "dataType", "value"];

pub(crate) fn read(r: &mut FileReader<'_>, root: &Value) -> DevicesPart {
    let mut part = DevicesPart::default();
    let Some(items) = r.array(root, "$", "an array of devices") else {
        return part;
    };
    if items.is_empty() {
        r.at_value("$", "at least one device is required");
    }
    let mut first_seen: HashMap<String, Pos> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let path = element("$", i);
        let Some(map) = r.object(item, &path, "a device object") else {
            continue;
        };
        let before = r.count();
        let device_label = map
            .get("id")
            .and_then(Value::as_str)
            .map(|id| label("device", id));
        r.set_item(device_label);
        let id = device_id(r, map, &path);
        if let Some(id) = &id {
            let id_path = member(&path, "id");
            let here = r.pos(&id_path);
            match first_seen.get(id) {
                Some(first) => r.at_value(
                    &id_path,
                    format!(
                        "duplicate device id `{id}` (first defined at {}:{}); device ids must be unique",
                        first.line, first.column
                    ),
                ),
                None => {
                    first_seen.insert(id.clone(), here);
                    part.ids.push(DeviceRef {
                        index: i,
                        id: id.clone(),
                        own_processor: map.get("processor").is_some_and(Value::is_string),
                    });
                }
            }
        }
        let device = read_device(r, map, &path, id);
        r.set_item(None);
        if r.count() == before {
            if let Some(device) = device {
                part.devices.push(device);
            }
        }
    }
    part
}

fn device_id(r: &mut FileReader<'_>, map: &Map<String, Value>, path: &str) -> Option<String> {
    let id_path = member(path, "id");
    let id = r.string(map.get("id")?, &id_path, "the device id, a string")?;
    match names::DEVICE_ID.check(id) {
        Ok(()) => Some(id.to_string()),
        Err(e) => {
            r.at_value(&id_path, e.to_string());
            None
        }
    }
}

fn read_device(
    r: &mut FileReader<'_>,
    map: &Map<String, Value>,
    path: &str,
    id: Option<String>,
) -> Option<Device> {
    r.keys(
        map,
        path,
        &DEVICE_KEYS,
        &[
            ("id", "the device id, a string"),
            (
                "properties",
                "an array of {\"name\", \"dataType\"} objects, at least one",
            ),
        ],
    );
    // Property names share one namespace per device: TwinMaker and ADT put both kinds on the same component.
    let mut names_seen: HashMap<String, Pos> = HashMap::new();
    let properties = map
        .get("properties")
        .and_then(|v| read_properties(r, v, &member(path, "properties"), &mut names_seen));
    let const_properties = match map.get("constProperties") {
        None => Some(Vec::new()),
        Some(v) => read_const_properties(r, v, &member(path, "constProperties"), &mut names_seen),
    };
    let processor = match map.get("processor") {
        None => Some(None),
        Some(v) => {
            let p = member(path, "processor");
            r.string(
                v,
                &p,
                "the name of a processor crate under lambdas/, a string",
            )
            .and_then(|name| match names::PROCESSOR_CRATE.check(name) {
                Ok(()) => Some(Some(name.to_string())),
                Err(e) => {
                    r.at_value(&p, e.to_string());
                    None
                }
            })
        }
    };
    Some(Device {
        id: id?,
        properties: properties?,
        const_properties: const_properties?,
        processor: processor?,
    })
}

fn read_properties(
    r: &mut FileReader<'_>,
    value: &Value,
    path: &str,
    seen: &mut HashMap<String, Pos>,
) -> Option<Vec<Property>> {
    let items = r.array(value, path, "an array of {\"name\", \"dataType\"} objects")?;
    if items.is_empty() {
        r.at_value(
            path,
            "a device needs at least one property: an empty list leaves nothing to record",
        );
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    let outer = r.item().map(str::to_string);
    for (j, item) in items.iter().enumerate() {
        r.set_item(outer.clone());
        let p = element(path, j);
        let Some(map) = r.object(item, &p, "a property object {\"name\", \"dataType\"}") else {
            ok = false;
            continue;
        };
        r.set_item(sub_item(outer.as_deref(), map, "property"));
        r.keys(
            map,
            &p,
            &PROPERTY_KEYS,
            &[
                ("name", "the property name, a string"),
                ("dataType", "one of DOUBLE, INTEGER, LONG, BOOLEAN, STRING"),
            ],
        );
        let name = property_name(r, map, &p, seen, true);
        let data_type = map.get("dataType").and_then(|v| data_type(r, v, &p));
        let init_value = map.get("initValue");
        if let (Some(t), Some(v)) = (data_type, init_value) {
            if !t.accepts(v) {
                r.at_value(
                    &member(&p, "initValue"),
                    format!(
                        "initValue {} does not match dataType {t}: expected {}",
                        shorten(v),
                        t.describe_values()
                    ),
                );
                ok = false;
                continue;
            }
        }
        match (name, data_type) {
            (Some(name), Some(data_type)) => out.push(Property {
                name,
                data_type,
                init_value: init_value.cloned(),
            }),
            _ => ok = false,
        }
    }
    r.set_item(outer);
    ok.then_some(out)
}

fn read_const_properties(
    r: &mut FileReader<'_>,
    value: &Value,
    path: &str,
    seen: &mut HashMap<String, Pos>,
) -> Option<Vec<ConstProperty>> {
    let what = "an array of {\"name\", \"dataType\", \"value\"} objects";
    let items = r.array(value, path, what)?;
    let mut out = Vec::new();
    let mut ok = true;
    let outer = r.item().map(str::to_string);
    for (j, item) in items.iter().enumerate() {
        r.set_item(outer.clone());
        let p = element(path, j);
        let Some(map) = r.object(
            item,
            &p,
            "a constant property object {\"name\", \"dataType\", \"value\"}",
        ) else {
            ok = false;
            continue;
        };
        r.set_item(sub_item(outer.as_deref(), map, "constant property"));
        r.keys(
            map,
            &p,
            &CONST_KEYS,
            &[
                ("name", "the property name, a string"),
                ("dataType", "one of DOUBLE, INTEGER, LONG, BOOLEAN, STRING"),
                ("value", "the property's fixed value"),
            ],
        );
        let name = property_name(r, map, &p, seen, false);
        let data_type = map.get("dataType").and_then(|v| data_type(r, v, &p));
        let value = map.get("value");
        if let (Some(t), Some(v)) = (data_type, value) {
            if !t.accepts(v) {
                r.at_value(
                    &member(&p, "value"),
                    format!(
                        "value {} does not match dataType {t}: expected {}",
                        shorten(v),
                        t.describe_values()
                    ),
                );
                ok = false;
                continue;
            }
        }
        match (name, data_type, value) {
            (Some(name), Some(data_type), Some(value)) => out.push(ConstProperty {
                name,
                data_type,
                value: value.clone(),
            }),
            _ => ok = false,
        }
    }
    r.set_item(outer);
    ok.then_some(out)
}

/// The item label of a property inside the item `outer` (its device), e.g.
/// ``device `d1`, constant property `serial` ``; `outer` alone when the property has no name.
fn sub_item(outer: Option<&str>, map: &Map<String, Value>, what: &str) -> Option<String> {
    let Some(name) = map.get("name").and_then(Value::as_str) else {
        return outer.map(str::to_string);
    };
    let own = label(what, name);
    Some(match outer {
        Some(o) => format!("{o}, {own}"),
        None => own,
    })
}

fn property_name(
    r: &mut FileReader<'_>,
    map: &Map<String, Value>,
    path: &str,
    seen: &mut HashMap<String, Pos>,
    in_records: bool,
) -> Option<String> {
    let p = member(path, "name");
    let name = r.string(map.get("name")?, &p, "the property name, a string")?;
    if let Err(e) = names::PROPERTY_NAME.check(name) {
        r.at_value(&p, e.to_string());
        return None;
    }
    if in_records && RESERVED_RECORD_FIELDS.contains(&name) {
        r.at_value(
            &p,
            format!(
                "property name `{name}` is reserved: the pipeline writes {} into records",
                RESERVED_RECORD_FIELDS
                    .iter()
                    .map(|f| format!("`{f}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
        return None;
    }
    if !in_records && RESERVED_COMPONENT_PROPERTIES.contains(&name) {
        r.at_value(
            &p,
            format!(
                "constant property name `{name}` is reserved: every twin component has an \
                 `{name}` property naming its device"
            ),
        );
        return None;
    }
    let here = r.pos(&p);
    if let Some(first) = seen.get(name) {
        r.at_value(
            &p,
            format!(
                "duplicate property name `{name}` (first defined at {}:{}); property and constant property names must be unique within a device",
                first.line, first.column
            ),
        );
        return None;
    }
    seen.insert(name.to_string(), here);
    Some(name.to_string())
}

fn data_type(r: &mut FileReader<'_>, value: &Value, path: &str) -> Option<DataType> {
    let options: Vec<(&str, DataType)> = DataType::ALL.iter().map(|t| (t.as_str(), *t)).collect();
    r.one_of(value, &member(path, "dataType"), "dataType", &options)
}

/// A JSON value for a message, cut short so a huge value cannot flood the report.
fn shorten(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 40 {
        let cut: String = text.chars().take(37).collect();
        format!("{cut}...")
    } else {
        text
    }
}
