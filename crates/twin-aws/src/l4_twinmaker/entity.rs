//! A TwinMaker entity of the hierarchy with its components. Desired keys: `workspace`, `parent`
//! (`null` for a root entity) and `components` (name → component type and device).

use super::convert::component_request;
use super::model::{ComponentModel, EntityModel, DEVICE_ID_PROPERTY};
use super::status::{polled, wait_active, wait_gone, Polled};
use crate::errors::{cloud, gone_is_ok, not_found_is_none};
use crate::AwsClients;
use async_trait::async_trait;
use aws_sdk_iottwinmaker::types::{
    ComponentUpdateRequest, ComponentUpdateType, DataValue, ParentEntityUpdateRequest,
    ParentEntityUpdateType, PropertyRequest, State,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use twin_engine::{CloudError, Observed, Outputs, ResourceDriver, ResourceSpec};

/// Driver kind of an entity.
pub const KIND: &str = "twinmaker_entity";

/// The parent id TwinMaker reports for an entity at the top of the tree.
const ROOT_PARENT: &str = "$ROOT";

/// Creates, reads, updates and deletes entities, waiting for each change to settle.
pub struct EntityDriver {
    clients: Arc<AwsClients>,
}

impl EntityDriver {
    /// A driver using these clients.
    pub fn new(clients: Arc<AwsClients>) -> Self {
        EntityDriver { clients }
    }

    async fn observe(&self, spec: &ResourceSpec) -> Result<Observed, CloudError> {
        self.read(spec, &Outputs::default()).await?.ok_or_else(|| {
            CloudError::fatal(
                "ResourceNotFoundException",
                format!("entity {} vanished after it became ACTIVE", spec.name),
            )
        })
    }
}

/// An entity's desired settings: the model plus the workspace it lives in.
pub fn desired(workspace: &str, model: &EntityModel, tags: Value) -> Value {
    let mut v = model.to_desired();
    if let Some(o) = v.as_object_mut() {
        o.insert("workspace".into(), json!(workspace));
        if let Some(t) = tags.get("tags") {
            o.insert("tags".into(), t.clone());
        }
    }
    v
}

fn parts(spec: &ResourceSpec) -> Result<(String, EntityModel), CloudError> {
    let workspace = spec
        .desired
        .get("workspace")
        .and_then(Value::as_str)
        .map(str::to_string);
    let model = serde_json::from_value::<EntityModel>(spec.desired.clone()).ok();
    match (workspace, model) {
        (Some(w), Some(mut m)) => {
            m.id = spec.name.clone();
            Ok((w, m))
        }
        _ => Err(CloudError::fatal(
            "InvalidSpec",
            format!("entity {} has no workspace or model", spec.name),
        )
        .with_hint("this is a bug in deployer; please report it")),
    }
}

async fn poll(clients: &AwsClients, workspace: &str, id: &str) -> Result<Polled, CloudError> {
    let got = not_found_is_none(
        clients
            .twinmaker
            .get_entity()
            .workspace_id(workspace)
            .entity_id(id)
            .send()
            .await,
    )?;
    Ok(match got {
        Some(e) => polled(e.status()),
        None => Polled::Gone,
    })
}

#[async_trait]
impl ResourceDriver for EntityDriver {
    async fn read(
        &self,
        spec: &ResourceSpec,
        _deps: &Outputs,
    ) -> Result<Option<Observed>, CloudError> {
        let (workspace, _) = parts(spec)?;
        let got = not_found_is_none(
            self.clients
                .twinmaker
                .get_entity()
                .workspace_id(&workspace)
                .entity_id(&spec.name)
                .send()
                .await,
        )?;
        let Some(e) = got else {
            return Ok(None);
        };
        // An entity being deleted is as good as gone: creating it again waits on the conflict.
        if e.status().and_then(|s| s.state()) == Some(&State::Deleting) {
            return Ok(None);
        }
        let components: BTreeMap<String, ComponentModel> = e
            .components()
            .into_iter()
            .flatten()
            .filter_map(|(name, c)| {
                let device = c
                    .properties()
                    .and_then(|p| p.get(DEVICE_ID_PROPERTY))
                    .and_then(|p| p.value())
                    .and_then(|v| v.string_value())?;
                Some((
                    name.clone(),
                    ComponentModel {
                        component_type_id: c.component_type_id().unwrap_or_default().to_string(),
                        iot_device_id: device.to_string(),
                    },
                ))
            })
            .collect();
        let parent = Some(e.parent_entity_id())
            .filter(|p| !p.is_empty() && *p != ROOT_PARENT)
            .map(str::to_string);
        Ok(Some(Observed::new(
            e.arn(),
            json!({
                "arn": e.arn(),
                "workspace": e.workspace_id(),
                "parent": parent,
                "components": components,
                "state": e.status().and_then(|s| s.state()).map(|s| s.as_str().to_string()),
            }),
        )))
    }

    async fn create(&self, spec: &ResourceSpec, _deps: &Outputs) -> Result<Observed, CloudError> {
        let (workspace, model) = parts(spec)?;
        let components = model
            .components
            .iter()
            .map(|(name, c)| (name.clone(), component_request(c)))
            .collect();
        self.clients
            .twinmaker
            .create_entity()
            .workspace_id(&workspace)
            .entity_id(&model.id)
            .entity_name(&model.id)
            .set_parent_entity_id(model.parent.clone())
            .set_components(Some(components))
            .tags(twin_config::names::TAG_KEY, crate::context::twin_tag(spec))
            .send()
            .await
            .map_err(cloud)?;
        let what = format!("entity {}", spec.name);
        wait_active(&what, || poll(&self.clients, &workspace, &spec.name)).await?;
        self.observe(spec).await
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        current: &Observed,
        _deps: &Outputs,
    ) -> Result<Observed, CloudError> {
        let (workspace, model) = parts(spec)?;
        let have: BTreeMap<String, ComponentModel> = current
            .attributes
            .get("components")
            .and_then(|c| serde_json::from_value(c.clone()).ok())
            .unwrap_or_default();
        let mut req = self
            .clients
            .twinmaker
            .update_entity()
            .workspace_id(&workspace)
            .entity_id(&model.id);
        for (name, update) in component_updates(&spec.name, &have, &model.components)? {
            req = req.component_updates(name, update);
        }
        let have_parent = current.attributes.get("parent").and_then(Value::as_str);
        if have_parent != model.parent.as_deref() {
            let parent = match &model.parent {
                Some(p) => ParentEntityUpdateRequest::builder()
                    .update_type(ParentEntityUpdateType::Update)
                    .parent_entity_id(p),
                None => {
                    ParentEntityUpdateRequest::builder().update_type(ParentEntityUpdateType::Delete)
                }
            }
            .build()
            .map_err(|e| CloudError::fatal("RequestInvalid", e.to_string()))?;
            req = req.parent_entity_update(parent);
        }
        req.send().await.map_err(cloud)?;
        let what = format!("entity {}", spec.name);
        wait_active(&what, || poll(&self.clients, &workspace, &spec.name)).await?;
        self.observe(spec).await
    }

    async fn delete(&self, spec: &ResourceSpec, _current: &Observed) -> Result<(), CloudError> {
        let (workspace, _) = parts(spec)?;
        delete_entity(&self.clients, &workspace, &spec.name).await
    }
}

/// The component changes turning `have` into `want`: new components are created, removed ones
/// deleted, a changed device id updated in place. TwinMaker cannot change a component's type,
/// so that is an error telling the user how to get there.
fn component_updates(
    entity: &str,
    have: &BTreeMap<String, ComponentModel>,
    want: &BTreeMap<String, ComponentModel>,
) -> Result<Vec<(String, ComponentUpdateRequest)>, CloudError> {
    let mut out = Vec::new();
    for (name, w) in want {
        let device = PropertyRequest::builder()
            .value(DataValue::builder().string_value(&w.iot_device_id).build())
            .build();
        match have.get(name) {
            None => out.push((
                name.clone(),
                ComponentUpdateRequest::builder()
                    .update_type(ComponentUpdateType::Create)
                    .component_type_id(&w.component_type_id)
                    .property_updates(DEVICE_ID_PROPERTY, device)
                    .build(),
            )),
            Some(h) if h.component_type_id != w.component_type_id => {
                return Err(CloudError::fatal(
                    "ComponentTypeChanged",
                    format!(
                        "component {name} of entity {entity} has type {} but the hierarchy asks for {}",
                        h.component_type_id, w.component_type_id
                    ),
                )
                .with_hint("TwinMaker cannot change a component's type: rename the component, or run `destroy --layer l4` then `deploy`"));
            }
            Some(h) if h.iot_device_id != w.iot_device_id => out.push((
                name.clone(),
                ComponentUpdateRequest::builder()
                    .update_type(ComponentUpdateType::Update)
                    .property_updates(DEVICE_ID_PROPERTY, device)
                    .build(),
            )),
            Some(_) => {}
        }
    }
    for name in have.keys().filter(|n| !want.contains_key(*n)) {
        out.push((
            name.clone(),
            ComponentUpdateRequest::builder()
                .update_type(ComponentUpdateType::Delete)
                .build(),
        ));
    }
    Ok(out)
}

/// Deletes an entity (and any children it still has) and waits until it is gone; one already
/// gone is fine.
pub async fn delete_entity(
    clients: &AwsClients,
    workspace: &str,
    id: &str,
) -> Result<(), CloudError> {
    gone_is_ok(
        clients
            .twinmaker
            .delete_entity()
            .workspace_id(workspace)
            .entity_id(id)
            .is_recursive(true)
            .send()
            .await,
    )?;
    wait_gone(&format!("entity {id}"), || poll(clients, workspace, id)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comp(t: &str, d: &str) -> ComponentModel {
        ComponentModel {
            component_type_id: t.into(),
            iot_device_id: d.into(),
        }
    }

    #[test]
    fn component_updates_create_update_and_delete() {
        let have = BTreeMap::from([
            ("a".to_string(), comp("t-a", "a")),
            ("b".to_string(), comp("t-b", "b")),
        ]);
        let want = BTreeMap::from([
            ("a".to_string(), comp("t-a", "a2")),
            ("c".to_string(), comp("t-c", "c")),
        ]);
        let ups = component_updates("e", &have, &want).unwrap_or_default();
        let kinds: Vec<(String, String)> = ups
            .iter()
            .map(|(n, u)| {
                (
                    n.clone(),
                    u.update_type()
                        .map(|t| t.as_str().to_string())
                        .unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(
            kinds,
            [
                ("a".to_string(), "UPDATE".to_string()),
                ("c".to_string(), "CREATE".to_string()),
                ("b".to_string(), "DELETE".to_string())
            ]
        );
    }

    #[test]
    fn a_changed_component_type_is_refused_with_advice() {
        let have = BTreeMap::from([("a".to_string(), comp("t-a", "a"))]);
        let want = BTreeMap::from([("a".to_string(), comp("t-x", "a"))]);
        let err = component_updates("room", &have, &want).err();
        assert_eq!(
            err.as_ref().map(|e| e.code.as_str()),
            Some("ComponentTypeChanged")
        );
        assert!(err
            .and_then(|e| e.hint)
            .is_some_and(|h| h.contains("destroy --layer l4")));
    }
}
