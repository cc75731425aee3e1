//! The starter dashboard, made from the config alone: one row per entity of
//! `config_hierarchy.json` that shows devices (titled by its path, e.g. `building / room-1`), and
//! in it one panel per telemetry property of each of its components' devices: the property's
//! history. Numbers are time series, booleans and strings a state timeline. Where the history
//! comes from is the [`Source`]:
//!
//! - [`Source::TwinMaker`] (AWS): the TwinMaker data source's entity history (entity,
//!   component, property). A device no entity shows has no TwinMaker entity to query, so a
//!   text panel names those devices instead.
//! - [`Source::HotReader`] (Azure): the twin's hot reader through the Infinity data source
//!   (`GET <hot reader>?iotDeviceId=…&startDate=…&endDate=…`, the dashboard's time range),
//!   one column per property. Every device has hot data, so devices no entity shows get a row
//!   of their own.
//!
//! Pure functions: the same config gives the same JSON, and its hash is what drift compares.

use serde_json::{json, Value};
use sha2::Digest;
use twin_config::{DataType, Device, HierarchyEntity, HierarchyNode};

/// Type of the TwinMaker data source plugin.
pub const DATASOURCE_TYPE: &str = "grafana-iot-twinmaker-datasource";

/// Type of the Infinity data source plugin (HTTP JSON APIs), which reads the hot reader.
pub const INFINITY_TYPE: &str = "yesoreyeram-infinity-datasource";

/// Path of the hot reader under the data source's URL (the Function App's HTTP route).
pub const HOT_READER_PATH: &str = "/api/hot-reader";

/// Title of the row of devices no entity of the hierarchy shows.
pub const UNPLACED_ROW: &str = "Devices not in the hierarchy";

/// Where the panels read a property's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// TwinMaker's entity history (the TwinMaker plugin).
    TwinMaker,
    /// The twin's hot reader (the Infinity plugin, the data source's URL the reader's host).
    HotReader,
}

impl Source {
    /// The plugin type of the data source the panels use.
    pub fn datasource_type(self) -> &'static str {
        match self {
            Source::TwinMaker => DATASOURCE_TYPE,
            Source::HotReader => INFINITY_TYPE,
        }
    }
}

/// Tag every dashboard the deployer makes carries.
pub const TAG: &str = "deployer";

/// Prefix of the tag that carries the dashboard JSON's hash (Grafana adds fields of its own to
/// what it stores, so the stored JSON cannot be compared; the tag survives).
pub const HASH_TAG_PREFIX: &str = "deployer-hash:";

/// Above this many property panels the rows start collapsed, so a large twin's dashboard
/// opens without querying every panel at once.
const COLLAPSE_ABOVE: usize = 40;

/// Panel size: two panels per line.
const PANEL_W: u32 = 12;
const PANEL_H: u32 = 8;

/// One panel to draw: a property of the device a component of an entity shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PanelRef {
    /// TwinMaker entity id.
    pub entity: String,
    /// Component name in the entity.
    pub component: String,
    /// The device the component shows.
    pub device: String,
    /// Telemetry property name.
    pub property: String,
    /// Its type.
    pub data_type: DataType,
}

/// An entity that shows devices, with its path from the root and its panels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowRef {
    /// Entity ids from the root to this entity.
    pub path: Vec<String>,
    /// Its panels, by component name then property (file order).
    pub panels: Vec<PanelRef>,
}

/// The rows of the dashboard in hierarchy order (depth first, file order), and the devices
/// that no entity shows.
pub fn layout(devices: &[Device], hierarchy: &[HierarchyEntity]) -> (Vec<RowRef>, Vec<String>) {
    let mut rows = Vec::new();
    let mut path = Vec::new();
    for root in hierarchy {
        walk(devices, root, &mut path, &mut rows);
    }
    let shown: std::collections::BTreeSet<&str> = rows
        .iter()
        .flat_map(|r| r.panels.iter().map(|p| p.device.as_str()))
        .collect();
    let unshown = devices
        .iter()
        .filter(|d| !shown.contains(d.id.as_str()))
        .map(|d| d.id.clone())
        .collect();
    (rows, unshown)
}

fn walk(
    devices: &[Device],
    entity: &HierarchyEntity,
    path: &mut Vec<String>,
    rows: &mut Vec<RowRef>,
) {
    path.push(entity.id.clone());
    let mut panels = Vec::new();
    for child in &entity.children {
        if let HierarchyNode::Component {
            name,
            iot_device_id,
            ..
        } = child
        {
            let Some(device) = devices.iter().find(|d| &d.id == iot_device_id) else {
                continue;
            };
            for p in &device.properties {
                panels.push(PanelRef {
                    entity: entity.id.clone(),
                    component: name.clone(),
                    device: device.id.clone(),
                    property: p.name.clone(),
                    data_type: p.data_type,
                });
            }
        }
    }
    if !panels.is_empty() {
        rows.push(RowRef {
            path: path.clone(),
            panels,
        });
    }
    for child in &entity.children {
        if let HierarchyNode::Entity(e) = child {
            walk(devices, e, path, rows);
        }
    }
    path.pop();
}

/// The row of the devices no entity shows, each under its own id as the component.
fn unplaced_row(devices: &[Device], unshown: &[String]) -> Option<RowRef> {
    let panels: Vec<PanelRef> = devices
        .iter()
        .filter(|d| unshown.contains(&d.id))
        .flat_map(|d| {
            d.properties.iter().map(|p| PanelRef {
                entity: String::new(),
                component: d.id.clone(),
                device: d.id.clone(),
                property: p.name.clone(),
                data_type: p.data_type,
            })
        })
        .collect();
    (!panels.is_empty()).then(|| RowRef {
        path: vec![UNPLACED_ROW.to_string()],
        panels,
    })
}

/// The dashboard JSON (without its hash tag) for the twin, its panels reading `source`
/// through the data source `datasource_uid`.
pub fn dashboard(
    twin: &str,
    uid: &str,
    source: Source,
    datasource_uid: &str,
    devices: &[Device],
    hierarchy: &[HierarchyEntity],
) -> Value {
    let (mut rows, mut unshown) = layout(devices, hierarchy);
    if source == Source::HotReader {
        rows.extend(unplaced_row(devices, &unshown));
        unshown.clear();
    }
    let total: usize = rows.iter().map(|r| r.panels.len()).sum();
    let collapsed = total > COLLAPSE_ABOVE;
    let datasource = json!({"type": source.datasource_type(), "uid": datasource_uid});
    let mut panels = Vec::new();
    let mut next_id = 1u32;
    let mut y = 0u32;
    if source == Source::TwinMaker && (rows.is_empty() || !unshown.is_empty()) {
        let text = if rows.is_empty() {
            "No device is shown by an entity of `config_hierarchy.json`, so TwinMaker has nothing to query. Add components that name devices (`iotDeviceId`) to the hierarchy and deploy again.".to_string()
        } else {
            format!(
                "Not in `config_hierarchy.json`, so TwinMaker has no entity to query for: {}. Add a component naming each to an entity and deploy again.",
                unshown.join(", ")
            )
        };
        panels.push(json!({
            "id": next_id, "type": "text", "title": "Devices without an entity",
            "gridPos": {"h": 4, "w": 24, "x": 0, "y": y},
            "options": {"mode": "markdown", "content": text},
        }));
        next_id += 1;
        y += 4;
    }
    for row in &rows {
        let row_id = next_id;
        next_id += 1;
        let row_y = y;
        y += 1;
        let mut children = Vec::new();
        for (i, p) in row.panels.iter().enumerate() {
            let x = if i % 2 == 0 { 0 } else { PANEL_W };
            if i > 0 && i % 2 == 0 {
                y += PANEL_H;
            }
            children.push(panel(next_id, p, source, &datasource, x, y));
            next_id += 1;
        }
        y += PANEL_H;
        let mut r = json!({
            "id": row_id, "type": "row", "title": row.path.join(" / "),
            "collapsed": collapsed,
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": row_y},
            "panels": [],
        });
        if collapsed {
            r["panels"] = Value::Array(children);
            panels.push(r);
        } else {
            panels.push(r);
            panels.extend(children);
        }
    }
    json!({
        "uid": uid,
        "title": format!("{twin} twin"),
        "description": "Made by deployer from config_iot_devices.json and config_hierarchy.json; a deploy overwrites changes made here.",
        "tags": [TAG, format!("twin:{twin}")],
        "timezone": "browser",
        "editable": true,
        "schemaVersion": 39,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "1m",
        "panels": panels,
    })
}

fn panel(id: u32, p: &PanelRef, source: Source, datasource: &Value, x: u32, y: u32) -> Value {
    let numeric = matches!(
        p.data_type,
        DataType::Double | DataType::Integer | DataType::Long
    );
    let title = if p.component == p.device {
        format!("{} · {}", p.device, p.property)
    } else {
        format!("{} · {} ({})", p.component, p.property, p.device)
    };
    let target = match source {
        Source::TwinMaker => json!({
            "refId": "A",
            "datasource": datasource,
            "queryType": "EntityHistory",
            "entityId": p.entity,
            "componentName": p.component,
            "properties": [p.property],
        }),
        Source::HotReader => hot_reader_target(p, datasource, numeric),
    };
    json!({
        "id": id,
        "type": if numeric { "timeseries" } else { "state-timeline" },
        "title": title,
        "datasource": datasource,
        "gridPos": {"h": PANEL_H, "w": PANEL_W, "x": x, "y": y},
        "targets": [target],
    })
}

/// An Infinity query of the hot reader: the device's records in the dashboard's time range
/// (ISO 8601, which the reader accepts), parsed by the plugin's backend into a time column
/// and the property's column.
fn hot_reader_target(p: &PanelRef, datasource: &Value, numeric: bool) -> Value {
    let value_type = match (numeric, p.data_type) {
        (true, _) => "number",
        (false, DataType::Boolean) => "boolean",
        (false, _) => "string",
    };
    json!({
        "refId": "A",
        "datasource": datasource,
        "type": "json",
        "source": "url",
        "parser": "backend",
        "format": "timeseries",
        "url": HOT_READER_PATH,
        "url_options": {
            "method": "GET",
            "params": [
                {"key": "iotDeviceId", "value": p.device},
                {"key": "startDate", "value": "${__from:date:iso}"},
                {"key": "endDate", "value": "${__to:date:iso}"},
            ],
        },
        "root_selector": "",
        "columns": [
            {"selector": "time", "text": "time", "type": "timestamp"},
            {"selector": p.property, "text": p.property, "type": value_type},
        ],
    })
}

/// The Grafana uid of the twin's folder (`<twin>-twin`).
pub fn folder_uid(twin: &str) -> String {
    crate::api::grafana_uid(twin, "twin")
}

/// The Grafana uid of the starter dashboard (`<twin>-overview`).
pub fn dashboard_uid(twin: &str) -> String {
    crate::api::grafana_uid(twin, "overview")
}

/// The desired settings of the twin's folder.
pub fn folder_desired(twin: &str) -> Value {
    json!({"title": format!("{twin} (deployer)")})
}

/// The starter dashboard of the twin, as (desired settings, JSON to send): the desired
/// settings are its title, its folder and the hash of the JSON; the JSON (the spec's
/// `inputs.dashboard`) carries the hash in a tag.
pub fn starter(
    twin: &str,
    source: Source,
    datasource_uid: &str,
    devices: &[Device],
    hierarchy: &[HierarchyEntity],
) -> (Value, Value) {
    let model = dashboard(
        twin,
        &dashboard_uid(twin),
        source,
        datasource_uid,
        devices,
        hierarchy,
    );
    let desired = json!({
        "title": model["title"],
        "folderUid": folder_uid(twin),
        "hash": hash(&model),
    });
    (desired, with_hash_tag(model))
}

/// The hash drift compares: SHA-256 of the JSON text, first 16 hex digits.
pub fn hash(dashboard: &Value) -> String {
    let digest = sha2::Sha256::digest(dashboard.to_string().as_bytes());
    hex::encode(digest)[..16].to_string()
}

/// The dashboard with its hash tag added (what is sent to Grafana).
pub fn with_hash_tag(mut dashboard: Value) -> Value {
    let h = hash(&dashboard);
    if let Some(tags) = dashboard.get_mut("tags").and_then(Value::as_array_mut) {
        tags.push(Value::String(format!("{HASH_TAG_PREFIX}{h}")));
    }
    dashboard
}

/// The hash a stored dashboard's tags carry, if any.
pub fn hash_of_stored(dashboard: &Value) -> Option<String> {
    dashboard
        .get("tags")?
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .find_map(|t| t.strip_prefix(HASH_TAG_PREFIX))
        .map(str::to_string)
}

/// Every panel that shows a property, in the dashboard (top level and inside collapsed rows).
pub fn property_panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dashboard
        .get("panels")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if p["type"] == "row" {
            out.extend(p["panels"].as_array().into_iter().flatten());
        } else if p.get("targets").is_some() {
            out.push(p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn devices(v: Value) -> Vec<Device> {
        serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"))
    }

    fn hierarchy(v: Value) -> Vec<HierarchyEntity> {
        serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The repository's example twin (config_iot_devices.json, config_hierarchy.json).
    fn example() -> (Vec<Device>, Vec<HierarchyEntity>) {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let read = |f: &str| -> Value {
            let text = std::fs::read_to_string(root.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{f}: {e}"))
        };
        (
            devices(read("config_iot_devices.json")),
            hierarchy(read("config_hierarchy.json")),
        )
    }

    /// (entity, component, property) of every property panel.
    fn queried(d: &Value) -> Vec<(String, String, String)> {
        property_panels(d)
            .iter()
            .map(|p| {
                let t = &p["targets"][0];
                assert_eq!(t["queryType"], "EntityHistory");
                assert_eq!(t["datasource"]["type"], DATASOURCE_TYPE);
                assert_eq!(t["datasource"]["uid"], "dt-twinmaker");
                (
                    t["entityId"].as_str().unwrap_or_default().to_string(),
                    t["componentName"].as_str().unwrap_or_default().to_string(),
                    t["properties"][0].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn the_example_twin_gets_a_panel_per_property() {
        let (devs, tree) = example();
        let d = dashboard(
            "dt",
            "dt-twin",
            Source::TwinMaker,
            "dt-twinmaker",
            &devs,
            &tree,
        );
        let want: Vec<(String, String, String)> = [
            ("temperature-sensor-1", "temperature"),
            ("temperature-sensor-2", "temperature"),
            ("pressure-sensor-1", "pressure"),
            ("pressure-sensor-1", "density"),
            ("pressure-sensor-1", "hardness"),
        ]
        .iter()
        .map(|(c, p)| ("room-1".to_string(), c.to_string(), p.to_string()))
        .collect();
        assert_eq!(queried(&d), want);
        let rows: Vec<&Value> = d["panels"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["type"] == "row")
            .collect();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0]["title"], "room-1");
        assert_eq!(rows[0]["collapsed"], false);
        // Every device is in the hierarchy: no note about missing entities.
        assert!(d["panels"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|p| p["type"] != "text"));
        // Panel ids are unique.
        let mut ids: Vec<u64> = d["panels"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["id"].as_u64())
            .collect();
        let n = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), n);
    }

    #[test]
    fn a_200_device_twin_gets_a_panel_per_property_in_collapsed_rows() {
        let devs: Vec<Value> = (0..200)
            .map(|i| {
                json!({"id": format!("sensor-{i}"), "properties": [
                    {"name": "temperature", "dataType": "DOUBLE"},
                    {"name": "open", "dataType": "BOOLEAN"}]})
            })
            .collect();
        let devs = devices(Value::Array(devs));
        // Ten floors of twenty rooms, one sensor each; sensor-199 is in no room.
        let floors: Vec<Value> = (0..10)
            .map(|f| {
                let rooms: Vec<Value> = (0..20)
                    .filter(|r| f * 20 + r < 199)
                    .map(|r| {
                        json!({"type": "entity", "id": format!("room-{f}-{r}"), "children": [
                            {"type": "component", "name": "sensor",
                             "iotDeviceId": format!("sensor-{}", f * 20 + r)}]})
                    })
                    .collect();
                json!({"type": "entity", "id": format!("floor-{f}"), "children": rooms})
            })
            .collect();
        let tree = hierarchy(json!([{"id": "building", "children": floors}]));
        let d = dashboard(
            "dt",
            "dt-twin",
            Source::TwinMaker,
            "dt-twinmaker",
            &devs,
            &tree,
        );
        let panels = queried(&d);
        assert_eq!(panels.len(), 199 * 2);
        assert!(panels.contains(&(
            "room-3-7".to_string(),
            "sensor".to_string(),
            "open".to_string()
        )));
        let top = d["panels"].as_array().cloned().unwrap_or_default();
        let rows: Vec<&Value> = top.iter().filter(|p| p["type"] == "row").collect();
        assert_eq!(rows.len(), 199);
        assert_eq!(rows[0]["title"], "building / floor-0 / room-0-0");
        assert!(rows.iter().all(|r| r["collapsed"] == true));
        let text = top
            .iter()
            .find(|p| p["type"] == "text")
            .map(|p| &p["options"]["content"]);
        assert!(text
            .and_then(Value::as_str)
            .is_some_and(|t| t.contains("sensor-199")));
        let kinds: std::collections::BTreeSet<&str> = property_panels(&d)
            .iter()
            .filter_map(|p| p["type"].as_str())
            .collect();
        assert_eq!(
            kinds,
            ["state-timeline", "timeseries"].into_iter().collect()
        );
    }

    #[test]
    fn the_hash_follows_the_devices() {
        let (devs, tree) = example();
        let a = dashboard(
            "dt",
            "dt-twin",
            Source::TwinMaker,
            "dt-twinmaker",
            &devs,
            &tree,
        );
        assert_eq!(
            hash(&a),
            hash(&dashboard(
                "dt",
                "dt-twin",
                Source::TwinMaker,
                "dt-twinmaker",
                &devs,
                &tree
            ))
        );
        let mut more = devs.clone();
        more[0].properties.push(twin_config::Property {
            name: "humidity".into(),
            data_type: DataType::Double,
            init_value: None,
        });
        let b = dashboard(
            "dt",
            "dt-twin",
            Source::TwinMaker,
            "dt-twinmaker",
            &more,
            &tree,
        );
        assert_ne!(hash(&a), hash(&b));
        let tagged = with_hash_tag(a.clone());
        assert_eq!(hash_of_stored(&tagged), Some(hash(&a)));
        assert_eq!(hash_of_stored(&a), None);
    }

    /// (row title, device, property) of every hot reader panel, checking each query.
    fn hot_queries(d: &Value) -> Vec<(String, String)> {
        property_panels(d)
            .iter()
            .map(|p| {
                let t = &p["targets"][0];
                assert_eq!(t["datasource"]["type"], INFINITY_TYPE);
                assert_eq!(t["datasource"]["uid"], "dt-hot");
                assert_eq!(t["url"], HOT_READER_PATH);
                let params = &t["url_options"]["params"];
                assert_eq!(params[1]["value"], "${__from:date:iso}");
                assert_eq!(t["columns"][0]["selector"], "time");
                (
                    params[0]["value"].as_str().unwrap_or_default().to_string(),
                    t["columns"][1]["selector"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn the_hot_reader_dashboard_has_a_panel_per_property_also_for_unplaced_devices() {
        let (devs, tree) = example();
        let d = dashboard("dt", "dt-twin", Source::HotReader, "dt-hot", &devs, &tree);
        let want: Vec<(String, String)> = [
            ("temperature-sensor-1", "temperature"),
            ("temperature-sensor-2", "temperature"),
            ("pressure-sensor-1", "pressure"),
            ("pressure-sensor-1", "density"),
            ("pressure-sensor-1", "hardness"),
        ]
        .iter()
        .map(|(c, p)| (c.to_string(), p.to_string()))
        .collect();
        assert_eq!(hot_queries(&d), want);
        // Without a hierarchy every device is still shown, in the row of unplaced devices.
        let flat = dashboard("dt", "dt-twin", Source::HotReader, "dt-hot", &devs, &[]);
        assert_eq!(hot_queries(&flat), want);
        let rows: Vec<&Value> = flat["panels"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["type"] == "row")
            .collect();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0]["title"], UNPLACED_ROW);
        assert!(flat["panels"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|p| p["type"] != "text"));
    }

    #[test]
    fn no_hierarchy_gives_a_note_instead_of_panels() {
        let (devs, _) = example();
        let d = dashboard(
            "dt",
            "dt-twin",
            Source::TwinMaker,
            "dt-twinmaker",
            &devs,
            &[],
        );
        assert!(property_panels(&d).is_empty());
        assert_eq!(d["panels"][0]["type"], "text");
    }
}
