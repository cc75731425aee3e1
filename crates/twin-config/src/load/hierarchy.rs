//! `config_hierarchy.json`: the entity tree of the twin, in the established tool's format.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::reader::FileReader;
use crate::model::{HierarchyEntity, HierarchyNode};
use crate::names;
use crate::spans::{element, member, Pos};

/// What the hierarchy is checked against; `None` where that file could not be read, so that
/// one broken file does not cause a cascade of follow-on reports here.
pub(crate) struct Context<'c> {
    pub twin: Option<&'c str>,
    pub device_ids: Option<Vec<&'c str>>,
    /// Layer 4 is on AWS: entity ids and component names become TwinMaker ids and must match
    /// TwinMaker's patterns, or the deploy would fail half-way through the hierarchy.
    pub twinmaker: bool,
}

/// What a TwinMaker naming problem says beyond the rule: why the rule applies.
const TWINMAKER_REASON: &str = "(layer_4_provider is aws, so it becomes a TwinMaker id)";

pub(crate) fn read(
    r: &mut FileReader<'_>,
    root: &Value,
    ctx: &Context<'_>,
) -> Option<Vec<HierarchyEntity>> {
    let items = r.array(root, "$", "an array of entities")?;
    let mut walk = Walk {
        ctx,
        entity_ids: HashMap::new(),
    };
    let before = r.count();
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = element("$", i);
        match walk.node(r, item, &path) {
            Some(HierarchyNode::Entity(e)) => out.push(e),
            Some(HierarchyNode::Component { .. }) => r.at_value(
                &path,
                "a component cannot stand at the top level; put it in an entity's `children`",
            ),
            None => {}
        }
    }
    (r.count() == before).then_some(out)
}

struct Walk<'c, 'x> {
    ctx: &'x Context<'c>,
    entity_ids: HashMap<String, Pos>,
}

#[derive(Clone, Copy)]
enum Kind {
    Entity,
    Component,
}

const ENTITY_KEYS: [&str; 3] = ["type", "id", "children"];
const COMPONENT_KEYS: [&str; 4] = ["type", "name", "iotDeviceId", "componentTypeId"];

impl Walk<'_, '_> {
    fn node(&mut self, r: &mut FileReader<'_>, value: &Value, path: &str) -> Option<HierarchyNode> {
        let map = r.object(value, path, "an entity or component object")?;
        let kind = match map.get("type") {
            Some(v) => r.one_of(
                v,
                &member(path, "type"),
                "node type",
                &[("entity", Kind::Entity), ("component", Kind::Component)],
            )?,
            None if map.contains_key("id") => Kind::Entity,
            None if map.contains_key("name") || map.contains_key("iotDeviceId") => Kind::Component,
            None => {
                r.at_value(
                    path,
                    "cannot tell an entity (with `id` and `children`) from a component \
                     (with `name` and `iotDeviceId`); add \"type\": \"entity\" or \"type\": \"component\"",
                );
                return None;
            }
        };
        match kind {
            Kind::Entity => self.entity(r, map, path).map(HierarchyNode::Entity),
            Kind::Component => self.component(r, map, path),
        }
    }

    fn entity(
        &mut self,
        r: &mut FileReader<'_>,
        map: &Map<String, Value>,
        path: &str,
    ) -> Option<HierarchyEntity> {
        r.keys(
            map,
            path,
            &ENTITY_KEYS,
            &[("id", "the entity id, a string")],
        );
        let id_path = member(path, "id");
        let id = map
            .get("id")
            .and_then(|v| r.string(v, &id_path, "the entity id, a string"))
            .and_then(|id| {
                if id.is_empty() {
                    r.at_value(&id_path, "entity ids must not be empty");
                    return None;
                }
                if self.ctx.twinmaker {
                    if let Err(e) = names::TWINMAKER_ENTITY_ID.check(id) {
                        r.at_value(&id_path, format!("{e} {TWINMAKER_REASON}"));
                        return None;
                    }
                }
                let here = r.pos(&id_path);
                if let Some(first) = self.entity_ids.get(id) {
                    r.at_value(
                        &id_path,
                        format!(
                            "duplicate entity id `{id}` (first defined at {}:{}); entity ids must be unique in the hierarchy",
                            first.line, first.column
                        ),
                    );
                    return None;
                }
                self.entity_ids.insert(id.to_string(), here);
                Some(id.to_string())
            });
        let mut children = Vec::new();
        let mut component_names: HashMap<String, Pos> = HashMap::new();
        if let Some(v) = map.get("children") {
            let c_path = member(path, "children");
            if let Some(items) = r.array(v, &c_path, "an array of entities and components") {
                for (j, item) in items.iter().enumerate() {
                    let p = element(&c_path, j);
                    let Some(node) = self.node(r, item, &p) else {
                        continue;
                    };
                    if let HierarchyNode::Component { name, .. } = &node {
                        let name_path = member(&p, "name");
                        let here = r.pos(&name_path);
                        if let Some(first) = component_names.get(name) {
                            r.at_value(
                                &name_path,
                                format!(
                                    "duplicate component name `{name}` (first defined at {}:{}); component names must be unique within an entity",
                                    first.line, first.column
                                ),
                            );
                            continue;
                        }
                        component_names.insert(name.clone(), here);
                    }
                    children.push(node);
                }
            }
        }
        Some(HierarchyEntity { id: id?, children })
    }

    fn component(
        &mut self,
        r: &mut FileReader<'_>,
        map: &Map<String, Value>,
        path: &str,
    ) -> Option<HierarchyNode> {
        r.keys(
            map,
            path,
            &COMPONENT_KEYS,
            &[("name", "the component name, a string")],
        );
        let name_path = member(path, "name");
        let name = map
            .get("name")
            .and_then(|v| r.string(v, &name_path, "the component name, a string"))
            .and_then(|n| {
                if n.is_empty() {
                    r.at_value(&name_path, "component names must not be empty");
                    return None;
                }
                if self.ctx.twinmaker {
                    if let Err(e) = names::TWINMAKER_COMPONENT_NAME.check(n) {
                        r.at_value(&name_path, format!("{e} {TWINMAKER_REASON}"));
                        return None;
                    }
                }
                Some(n.to_string())
            });
        let type_path = member(path, "componentTypeId");
        let component_type_id = match map.get("componentTypeId") {
            None => Some(None),
            Some(v) => r
                .string(v, &type_path, "a TwinMaker component type id, a string")
                .map(|s| Some(s.to_string())),
        };
        let device = self.device(
            r,
            map,
            path,
            component_type_id.as_ref().and_then(|c| c.as_deref()),
        );
        Some(HierarchyNode::Component {
            name: name?,
            iot_device_id: device?,
            component_type_id: component_type_id?,
        })
    }

    /// The component's device: `iotDeviceId`, or for the established tool's files that name only
    /// a `componentTypeId`, the device whose default component type id that is.
    fn device(
        &self,
        r: &mut FileReader<'_>,
        map: &Map<String, Value>,
        path: &str,
        component_type_id: Option<&str>,
    ) -> Option<String> {
        let dev_path = member(path, "iotDeviceId");
        let known = self.ctx.device_ids.as_deref();
        let Some(v) = map.get("iotDeviceId") else {
            let (Some(twin), Some(ids)) = (self.ctx.twin, known) else {
                // The twin or device file is broken: it has its own reports, and nothing here can be resolved.
                return None;
            };
            if let Some(ct) = component_type_id {
                if let Some(id) = ids
                    .iter()
                    .find(|id| names::component_type_id(twin, id) == ct)
                {
                    return Some(id.to_string());
                }
                r.at_value(
                    &member(path, "componentTypeId"),
                    format!(
                        "unknown componentTypeId `{ct}`; the configured devices' component types: {}",
                        ids.iter()
                            .map(|i| format!("`{}`", names::component_type_id(twin, i)))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
                return None;
            }
            r.at_value(
                &dev_path,
                "missing required key `iotDeviceId` (the id of the configured device whose data this component shows)",
            );
            return None;
        };
        let id = r.string(v, &dev_path, "a configured device id, a string")?;
        if let Some(ids) = known {
            if !ids.contains(&id) {
                r.at_value(
                    &dev_path,
                    format!(
                        "unknown device `{id}`; configured devices: {}",
                        ids.iter()
                            .map(|i| format!("`{i}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
                return None;
            }
            if let (Some(twin), Some(ct)) = (self.ctx.twin, component_type_id) {
                let own = names::component_type_id(twin, id);
                if ct != own {
                    r.at_value(
                        &member(path, "componentTypeId"),
                        format!(
                            "componentTypeId `{ct}` is not the component type of device `{id}`; allowed: `{own}`, or leave componentTypeId out"
                        ),
                    );
                    return None;
                }
            }
        }
        Some(id.to_string())
    }
}
