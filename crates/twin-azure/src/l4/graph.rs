//! The twin graph in the instance, as one resource: a digital twin per device and per
//! hierarchy entity (`PUT /digitaltwins/<id>` with `$metadata.$model`) and a `contains`
//! relationship per hierarchy edge (`PUT /digitaltwins/<src>/relationships/<id>`), from
//! [`twin_models::graph`]. What is compared: each twin's id, model (unversioned) and fixed
//! properties (the device id and constants; telemetry values belong to the persister), each
//! relationship, and that every twin is on the model version the model set resolved. Read is
//! two queries whatever the twin's size; an update sends only the differences: it deletes
//! relationships and twins the config no longer has, creates missing twins, moves twins to a
//! new model version (JSON Patch `replace` of `/$metadata/$model`, removing properties the new
//! version no longer declares) and sets changed constants (`add`), then creates missing
//! relationships. Destroy deletes the relationships, then the twins.

use super::client::AdtClient;
use super::models::VERSIONS_ATTR;
use super::{content_hash, instance_host, no_instance, HOST_KEY, MODELS_KEY, PREFIX_KEY};
use crate::arm::ArmClient;
use crate::context::input;
use async_trait::async_trait;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use twin_config::TwinConfig;
use twin_engine::{
    CloudError, ErrorClass, Observed, Outputs, ResourceDriver, ResourceId, ResourceSpec,
};
use twin_models::dtdl::{self, Content, Interface};
use twin_models::graph::TwinGraph;
use twin_models::versions::unversioned;

/// Driver kind of the twin graph.
pub const KIND: &str = "azure_digital_twins_graph";

/// Inputs key: the graph (twins with their model, fixed and initial properties and the
/// properties their model declares; relationships).
pub const GRAPH_INPUT: &str = "graph";

/// The graph input of a spec: per twin its id, unversioned model, the properties compared
/// for drift (`fixed`), those it is created with (`initial`) and every property its model
/// declares (`declared`, with what it extends); the relationships as they are.
pub fn graph_input(config: &TwinConfig, graph: &TwinGraph, interfaces: &[Interface]) -> Value {
    let by_id: BTreeMap<&str, &Interface> = interfaces.iter().map(|i| (i.id.as_str(), i)).collect();
    let devices: BTreeMap<&str, &twin_config::Device> =
        config.devices.iter().map(|d| (d.id.as_str(), d)).collect();
    let twins: Vec<Value> = graph
        .twins
        .iter()
        .map(|t| {
            let mut fixed = Map::new();
            if let Some(d) = devices.get(t.id.as_str()) {
                fixed.insert(dtdl::DEVICE_ID_PROPERTY.to_string(), json!(d.id));
                for c in &d.const_properties {
                    fixed.insert(dtdl::property_name(&c.name), c.value.clone());
                }
            }
            json!({
                "id": t.id,
                "model": unversioned(&t.model),
                "fixed": fixed,
                "initial": t.properties,
                "declared": declared(&by_id, &t.model),
            })
        })
        .collect();
    json!({"twins": twins, "relationships": graph.relationships})
}

/// The property names `model` and what it extends declare.
fn declared(by_id: &BTreeMap<&str, &Interface>, model: &str) -> Vec<String> {
    let mut out = BTreeSet::new();
    let mut todo = vec![model.to_string()];
    let mut seen = BTreeSet::new();
    while let Some(m) = todo.pop() {
        if !seen.insert(m.clone()) {
            continue;
        }
        if let Some(i) = by_id.get(m.as_str()) {
            for c in &i.contents {
                if let Content::Property(p) = c {
                    out.insert(p.name.clone());
                }
            }
            todo.extend(i.extends.iter().cloned());
        }
    }
    out.into_iter().collect()
}

/// The desired settings: the graph's compared part, hashed (a 200-device graph is one short
/// value in the plan), and every twin on the model version the model set resolved.
pub fn desired(graph_input: &Value) -> Value {
    json!({"graph": content_hash(&compared(graph_input)), "twins_on_current_models": true})
}

/// What is compared of a graph input: twins (id, model, fixed) and relationships, sorted.
fn compared(graph: &Value) -> Value {
    let mut twins: Vec<Value> = graph["twins"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| json!({"id": t["id"], "model": t["model"], "fixed": t["fixed"]}))
        .collect();
    twins.sort_by_key(|t| t["id"].as_str().unwrap_or_default().to_string());
    let mut rels: Vec<Value> = graph["relationships"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    rels.sort_by_key(|r| {
        format!(
            "{}\n{}",
            r["source"].as_str().unwrap_or_default(),
            r["id"].as_str().unwrap_or_default()
        )
    });
    json!({"twins": twins, "relationships": rels})
}

/// A relationship as the service holds it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Rel {
    source: String,
    id: String,
    target: String,
    name: String,
}

impl Rel {
    fn json(&self) -> Value {
        json!({"id": self.id, "source": self.source, "target": self.target, "name": self.name})
    }
}

/// The twin's twins (model under its prefix) and their outgoing relationships, as held.
struct Held {
    twins: BTreeMap<String, Value>,
    rels: Vec<Rel>,
}

async fn held(client: &AdtClient, prefix: &str, what: &str) -> Result<Held, CloudError> {
    let q = format!("SELECT * FROM digitaltwins WHERE STARTSWITH($metadata.$model, '{prefix}')");
    let mut twins = BTreeMap::new();
    for row in client
        .query(&q, &format!("query of the twins of {what}"))
        .await?
    {
        let id = row.get("$dtId").and_then(Value::as_str).ok_or_else(|| {
            CloudError::fatal(
                "MalformedResponse",
                format!("{what}: a twin in the query answer has no `$dtId`"),
            )
        })?;
        twins.insert(id.to_string(), row.clone());
    }
    let mut rels = Vec::new();
    if !twins.is_empty() {
        for row in client
            .query(
                "SELECT * FROM relationships",
                &format!("query of the relationships of {what}"),
            )
            .await?
        {
            let s = |k: &str| row.get(k).and_then(Value::as_str).map(str::to_string);
            let (Some(source), Some(id), Some(target), Some(name)) = (
                s("$sourceId"),
                s("$relationshipId"),
                s("$targetId"),
                s("$relationshipName"),
            ) else {
                return Err(CloudError::fatal(
                    "MalformedResponse",
                    format!("{what}: a relationship in the query answer lacks its ids"),
                ));
            };
            if twins.contains_key(&source) {
                rels.push(Rel {
                    source,
                    id,
                    target,
                    name,
                });
            }
        }
    }
    rels.sort();
    Ok(Held { twins, rels })
}

fn model_of(twin: &Value) -> Option<&str> {
    twin.pointer("/$metadata/$model").and_then(Value::as_str)
}

/// The desired graph of a spec: twins by id, relationships.
struct Wanted {
    twins: BTreeMap<String, Value>,
    rels: Vec<Rel>,
}

fn wanted(spec: &ResourceSpec) -> Result<Wanted, CloudError> {
    let g = spec.inputs.get(GRAPH_INPUT).ok_or_else(|| {
        CloudError::fatal(
            "SpecIncomplete",
            format!("{} has no `{GRAPH_INPUT}` input", spec.label()),
        )
    })?;
    let twins = g["twins"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["id"].as_str().map(|id| (id.to_string(), t.clone())))
        .collect();
    let s = |r: &Value, k: &str| r[k].as_str().unwrap_or_default().to_string();
    let mut rels: Vec<Rel> = g["relationships"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| Rel {
            source: s(r, "source"),
            id: s(r, "id"),
            target: s(r, "target"),
            name: s(r, "name"),
        })
        .collect();
    rels.sort();
    Ok(Wanted { twins, rels })
}

/// The resolved DTMIs of the model set, from the outputs (`None` before it is deployed).
fn versions(
    spec: &ResourceSpec,
    deps: &Outputs,
) -> Result<Option<BTreeMap<String, String>>, CloudError> {
    let id = ResourceId(input(spec, MODELS_KEY)?.to_string());
    Ok(deps
        .get(&id)
        .and_then(|o| o.attributes.get(VERSIONS_ATTR))
        .and_then(|v| serde_json::from_value(v.clone()).ok()))
}

fn observe(host: &str, h: &Held, w: &Wanted, v: Option<&BTreeMap<String, String>>) -> Observed {
    let twins: Vec<Value> = h
        .twins
        .iter()
        .map(|(id, t)| {
            let fixed: Map<String, Value> = w
                .twins
                .get(id)
                .and_then(|want| want["fixed"].as_object())
                .map(|f| {
                    f.keys()
                        .map(|k| (k.clone(), t.get(k).cloned().unwrap_or(Value::Null)))
                        .collect()
                })
                .unwrap_or_default();
            json!({"id": id, "model": model_of(t).map(unversioned), "fixed": fixed})
        })
        .collect();
    let rels: Vec<Value> = h.rels.iter().map(Rel::json).collect();
    let on_current = v.is_some_and(|v| {
        h.twins.values().all(|t| {
            model_of(t).is_some_and(|m| v.get(unversioned(m)).map(String::as_str) == Some(m))
        })
    });
    Observed::new(
        format!("{host}/digitaltwins"),
        json!({
            "graph": content_hash(&compared(&json!({"twins": twins, "relationships": rels}))),
            "twins_on_current_models": on_current,
            "twins": h.twins.len(),
            "relationships": h.rels.len(),
            HOST_KEY: host,
        }),
    )
}

/// Creates, reads, updates and deletes the twin graph.
pub struct GraphDriver {
    arm: Arc<ArmClient>,
}

impl GraphDriver {
    /// A driver on this client (whose credential the data-plane client reuses).
    pub fn new(arm: Arc<ArmClient>) -> Self {
        GraphDriver { arm }
    }

    async fn converge(&self, spec: &ResourceSpec, deps: &Outputs) -> Result<Observed, CloudError> {
        let what = what(spec);
        let host = instance_host(&self.arm, spec, deps)
            .await?
            .ok_or_else(|| no_instance(&what))?;
        let v = versions(spec, deps)?.ok_or_else(|| {
            CloudError::new(
                ErrorClass::NotFound,
                "DependencyMissing",
                format!("{what}: the model set is not deployed"),
            )
        })?;
        let client = AdtClient::new(&self.arm, &host);
        let prefix = input(spec, PREFIX_KEY)?;
        let h = held(&client, prefix, &what).await?;
        let w = wanted(spec)?;
        let wanted_rels: BTreeSet<&Rel> = w.rels.iter().collect();
        for r in h.rels.iter().filter(|r| !wanted_rels.contains(r)) {
            client
                .delete_relationship(
                    &r.source,
                    &r.id,
                    &format!(
                        "delete relationship {} of twin {} in {what}",
                        r.id, r.source
                    ),
                )
                .await?;
        }
        for id in h.twins.keys().filter(|id| !w.twins.contains_key(*id)) {
            client
                .delete_twin(id, &format!("delete twin {id} in {what}"))
                .await?;
        }
        for (id, want) in &w.twins {
            let base = want["model"].as_str().unwrap_or_default();
            let model = v.get(base).ok_or_else(|| {
                CloudError::fatal(
                    "InvalidModels",
                    format!(
                        "{what}: twin {id} names model {base}, which the model set does not hold"
                    ),
                )
            })?;
            match h.twins.get(id) {
                None => {
                    let mut body = want["initial"].as_object().cloned().unwrap_or_default();
                    body.insert("$metadata".into(), json!({"$model": model}));
                    client
                        .put_twin(id, &Value::Object(body), &format!("twin {id} in {what}"))
                        .await?;
                }
                Some(have) => {
                    let patch = twin_patch(have, want, model);
                    if !patch.is_empty() {
                        client
                            .patch_twin(
                                id,
                                &Value::Array(patch),
                                &format!("update of twin {id} in {what}"),
                            )
                            .await?;
                    }
                }
            }
        }
        let held_rels: BTreeSet<&Rel> = h.rels.iter().collect();
        for r in w.rels.iter().filter(|r| !held_rels.contains(r)) {
            client
                .put_relationship(
                    &r.source,
                    &r.id,
                    &json!({"$targetId": r.target, "$relationshipName": r.name}),
                    &format!("relationship {} of twin {} in {what}", r.id, r.source),
                )
                .await?;
        }
        // What the service acknowledged, rather than a new query: ADT's query index trails
        // writes by seconds, and a lagging answer would read as drift right after the update.
        let twins = w
            .twins
            .iter()
            .map(|(id, want)| {
                let base = want["model"].as_str().unwrap_or_default();
                let mut t = want["fixed"].as_object().cloned().unwrap_or_default();
                t.insert("$metadata".into(), json!({"$model": v.get(base)}));
                (id.clone(), Value::Object(t))
            })
            .collect();
        let after = Held {
            twins,
            rels: w.rels.clone(),
        };
        Ok(observe(&host, &after, &w, Some(&v)))
    }
}

/// The JSON Patch that brings a held twin to the wanted one on `model`: the model replaced
/// (with the properties the new version no longer declares removed in the same patch, as
/// the service requires), then an `add` per fixed property whose value differs.
pub fn twin_patch(have: &Value, want: &Value, model: &str) -> Vec<Value> {
    let mut ops = Vec::new();
    if model_of(have) != Some(model) {
        ops.push(json!({"op": "replace", "path": "/$metadata/$model", "value": model}));
        let declared: BTreeSet<&str> = want["declared"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if let Some(props) = have.as_object() {
            for k in props
                .keys()
                .filter(|k| !k.starts_with('$') && !declared.contains(k.as_str()))
            {
                ops.push(json!({"op": "remove", "path": format!("/{k}")}));
            }
        }
    }
    if let Some(fixed) = want["fixed"].as_object() {
        for (k, v) in fixed {
            if have.get(k) != Some(v) {
                // DTDL names are letters, digits and `_`: nothing to escape in the pointer.
                ops.push(json!({"op": "add", "path": format!("/{k}"), "value": v}));
            }
        }
    }
    ops
}

fn what(spec: &ResourceSpec) -> String {
    format!(
        "the twin graph of Azure Digital Twins instance {}",
        spec.name.trim_end_matches("/twins")
    )
}

#[async_trait]
impl ResourceDriver for GraphDriver {
    async fn read(
        &self,
        spec: &ResourceSpec,
        deps: &Outputs,
    ) -> Result<Option<Observed>, CloudError> {
        let what = what(spec);
        let Some(host) = instance_host(&self.arm, spec, deps).await? else {
            return Ok(None);
        };
        let client = AdtClient::new(&self.arm, &host);
        let h = held(&client, input(spec, PREFIX_KEY)?, &what).await?;
        if h.twins.is_empty() {
            return Ok(None);
        }
        let v = versions(spec, deps)?;
        Ok(Some(observe(&host, &h, &wanted(spec)?, v.as_ref())))
    }

    async fn create(&self, spec: &ResourceSpec, deps: &Outputs) -> Result<Observed, CloudError> {
        self.converge(spec, deps).await
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        _: &Observed,
        deps: &Outputs,
    ) -> Result<Observed, CloudError> {
        self.converge(spec, deps).await
    }

    async fn delete(&self, spec: &ResourceSpec, current: &Observed) -> Result<(), CloudError> {
        // Twins found without a host (discovered, never read) go with the instance.
        let Some(host) = current.attr(HOST_KEY) else {
            return Ok(());
        };
        let what = what(spec);
        let client = AdtClient::new(&self.arm, host);
        let h = held(&client, input(spec, PREFIX_KEY)?, &what).await?;
        for r in &h.rels {
            client
                .delete_relationship(
                    &r.source,
                    &r.id,
                    &format!(
                        "delete relationship {} of twin {} in {what}",
                        r.id, r.source
                    ),
                )
                .await?;
        }
        for id in h.twins.keys() {
            client
                .delete_twin(id, &format!("delete twin {id} in {what}"))
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want() -> Value {
        json!({"id": "d", "model": "dtmi:deployer:t:device:d", "fixed": {"iotDeviceId": "d", "serial": "s2"},
            "initial": {}, "declared": ["iotDeviceId", "serial", "temperature"]})
    }

    #[test]
    fn a_twin_on_its_model_with_its_constants_needs_no_patch() {
        let have = json!({"$dtId": "d", "$metadata": {"$model": "dtmi:deployer:t:device:d;2"},
            "iotDeviceId": "d", "serial": "s2", "temperature": 21.0});
        assert!(twin_patch(&have, &want(), "dtmi:deployer:t:device:d;2").is_empty());
    }

    #[test]
    fn a_new_version_moves_the_twin_and_drops_undeclared_properties() {
        let have = json!({"$dtId": "d", "$metadata": {"$model": "dtmi:deployer:t:device:d;1"},
            "iotDeviceId": "d", "serial": "s1", "humidity": 40});
        let patch = twin_patch(&have, &want(), "dtmi:deployer:t:device:d;2");
        assert_eq!(
            patch,
            vec![
                json!({"op": "replace", "path": "/$metadata/$model", "value": "dtmi:deployer:t:device:d;2"}),
                json!({"op": "remove", "path": "/humidity"}),
                json!({"op": "add", "path": "/serial", "value": "s2"}),
            ]
        );
    }

    #[test]
    fn the_compared_part_ignores_initial_values_and_order() {
        let a = json!({"twins": [want(), {"id": "a", "model": "m", "fixed": {}, "initial": {"t": 1}}],
            "relationships": [{"id": "r2", "source": "s", "target": "b", "name": "contains"},
                {"id": "r1", "source": "s", "target": "a", "name": "contains"}]});
        let mut b = a.clone();
        b["twins"][1]["initial"] = json!({"t": 2});
        if let Some(r) = b["relationships"].as_array_mut() {
            r.reverse();
        }
        assert_eq!(desired(&a), desired(&b));
        b["twins"][0]["fixed"]["serial"] = json!("other");
        assert_ne!(desired(&a), desired(&b));
    }
}
