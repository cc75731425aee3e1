//! The twin graph the DTDL models describe, for Azure Digital Twins: one digital twin per device
//! and per hierarchy entity, and a `contains` relationship per hierarchy edge.
//!
//! Twin ids are the config ids as they are (a device's twin is found by its device id, which
//! is what the persister has), so an entity may not share its id with a device. A device in no
//! entity still gets its twin; a device shown by two components of one entity is one edge.

use crate::dtdl::{self, CONTAINS};
use crate::dtmi;
use crate::ModelError;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use twin_config::{HierarchyEntity, HierarchyNode, TwinConfig};

/// One digital twin: its id, the DTMI of its model and the properties it is created with.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Twin {
    /// The twin's id (`$dtId`): the device or entity id.
    pub id: String,
    /// DTMI of its interface.
    pub model: String,
    /// Properties to set when it is created, by DTDL name (a device's id, constants, initial
    /// values); empty for an entity.
    pub properties: Map<String, Value>,
}

/// One relationship instance: `source` contains `target`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Relationship {
    /// Relationship id, unique among the source's relationships: `contains-<target segment>`.
    pub id: String,
    /// Id of the containing twin (an entity).
    pub source: String,
    /// Id of the contained twin (an entity or a device).
    pub target: String,
    /// The relationship's name in the source's model ([`CONTAINS`]).
    pub name: String,
}

/// Every twin and relationship of the config.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TwinGraph {
    /// Devices in config order, then entities parents first (creation order).
    pub twins: Vec<Twin>,
    /// One per hierarchy edge, parents' edges first (relationships need both twins).
    pub relationships: Vec<Relationship>,
}

/// The twin graph of `config`; fails when an entity's id is a device's id (they would be one
/// twin) or ids collide in DTDL (see [`crate::dtmi`]).
pub fn twin_graph(config: &TwinConfig) -> Result<TwinGraph, ModelError> {
    let twin = config.name();
    // The same checks `dtdl::interfaces` makes, so every model named here is valid.
    dtdl::interfaces(config)?;
    let mut twins: Vec<Twin> = config
        .devices
        .iter()
        .map(|d| Twin {
            id: d.id.clone(),
            model: dtdl::device_interface_id(twin, &d.id),
            properties: dtdl::initial_properties(d),
        })
        .collect();
    let devices: BTreeSet<&str> = config.devices.iter().map(|d| d.id.as_str()).collect();
    let mut relationships = Vec::new();
    let mut seen: BTreeSet<(&str, &str)> = BTreeSet::new();
    let mut stack: Vec<&HierarchyEntity> = config
        .hierarchy
        .as_deref()
        .unwrap_or_default()
        .iter()
        .rev()
        .collect();
    while let Some(e) = stack.pop() {
        if devices.contains(e.id.as_str()) {
            return Err(ModelError::SharedTwinId(e.id.clone()));
        }
        twins.push(Twin {
            id: e.id.clone(),
            model: dtdl::entity_interface_id(twin, &e.id),
            properties: Map::new(),
        });
        for child in &e.children {
            let target = match child {
                HierarchyNode::Entity(c) => &c.id,
                HierarchyNode::Component { iot_device_id, .. } => iot_device_id,
            };
            if seen.insert((e.id.as_str(), target.as_str())) {
                relationships.push(Relationship {
                    id: format!("{CONTAINS}-{}", dtmi::segment(target)),
                    source: e.id.clone(),
                    target: target.clone(),
                    name: CONTAINS.to_string(),
                });
            }
        }
        // Children in file order, depth first: the order `dtdl::interfaces` lists them in.
        for child in e.children.iter().rev() {
            if let HierarchyNode::Entity(c) = child {
                stack.push(c);
            }
        }
    }
    Ok(TwinGraph {
        twins,
        relationships,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{config, device};
    use serde_json::json;

    #[test]
    fn twins_for_devices_and_entities_and_an_edge_per_child() {
        let h = json!([{"id": "site", "children": [
            {"type": "entity", "id": "room-1", "children": [
                {"type": "component", "name": "a", "iotDeviceId": "d-1"},
                {"type": "component", "name": "b", "iotDeviceId": "d-1"}]},
            {"type": "entity", "id": "room-2", "children": []}]}]);
        let c = config(
            "dt",
            vec![
                device("d-1", &["t"], &["serial"]),
                device("lonely", &["t"], &[]),
            ],
            Some(h),
        );
        let g = twin_graph(&c).unwrap_or_else(|e| panic!("{e}"));
        let ids: Vec<&str> = g.twins.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["d-1", "lonely", "site", "room-1", "room-2"]);
        assert_eq!(g.twins[0].model, dtdl::device_interface_id("dt", "d-1"));
        assert_eq!(g.twins[0].properties.get("serial"), Some(&json!("v")));
        assert_eq!(g.twins[2].model, dtdl::entity_interface_id("dt", "site"));
        let edges: Vec<(&str, &str)> = g
            .relationships
            .iter()
            .map(|r| (r.source.as_str(), r.target.as_str()))
            .collect();
        assert_eq!(
            edges,
            [("site", "room-1"), ("site", "room-2"), ("room-1", "d-1")]
        );
        assert!(g.relationships.iter().all(|r| r.name == CONTAINS));
        assert_eq!(
            g.relationships[2].id,
            format!("contains-{}", dtmi::segment("d-1"))
        );
        // Every twin's model is one of the generated interfaces.
        let models: BTreeSet<String> = dtdl::interfaces(&c)
            .unwrap_or_default()
            .into_iter()
            .map(|i| i.id)
            .collect();
        assert!(g.twins.iter().all(|t| models.contains(&t.model)));
    }

    #[test]
    fn an_entity_named_like_a_device_is_refused() {
        let h = json!([{"id": "d1", "children": []}]);
        let c = config("dt", vec![device("d1", &["t"], &[])], Some(h));
        let err = twin_graph(&c)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("\"d1\"") && err.contains("rename the entity"),
            "{err}"
        );
    }
}
