//! A device's TwinMaker component type: its property definitions and the twin connector as its
//! `dataReader`. Desired keys: `workspace`, `properties`, `dataReader` (the connector's name).

use super::convert::{arn_name, data_reader, definition_model, definitions};
use super::model::{ComponentTypeModel, DATA_READER_FUNCTION};
use super::status::{polled, wait_active, wait_gone, Polled};
use crate::errors::{cloud, gone_is_ok, not_found_is_none};
use crate::AwsClients;
use async_trait::async_trait;
use aws_sdk_iottwinmaker::types::State;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use twin_engine::{CloudError, Observed, Outputs, ResourceDriver, ResourceSpec};

/// Driver kind of a component type.
pub const KIND: &str = "twinmaker_component_type";

/// Creates, reads, updates and deletes component types, waiting for each change to settle.
pub struct ComponentTypeDriver {
    clients: Arc<AwsClients>,
}

impl ComponentTypeDriver {
    /// A driver using these clients.
    pub fn new(clients: Arc<AwsClients>) -> Self {
        ComponentTypeDriver { clients }
    }

    async fn poll(&self, workspace: &str, id: &str) -> Result<Polled, CloudError> {
        let got = not_found_is_none(
            self.clients
                .twinmaker
                .get_component_type()
                .workspace_id(workspace)
                .component_type_id(id)
                .send()
                .await,
        )?;
        Ok(match got {
            Some(ct) => polled(ct.status()),
            None => Polled::Gone,
        })
    }

    fn connector_arn(&self, model: &ComponentTypeModel) -> String {
        self.clients
            .arn("lambda", &format!("function:{}", model.data_reader))
    }

    async fn observe(&self, spec: &ResourceSpec) -> Result<Observed, CloudError> {
        self.read(spec, &Outputs::default()).await?.ok_or_else(|| {
            CloudError::fatal(
                "ResourceNotFoundException",
                format!(
                    "component type {} vanished after it became ACTIVE",
                    spec.name
                ),
            )
        })
    }
}

/// The workspace and model a component type spec describes.
fn parts(spec: &ResourceSpec) -> Result<(String, ComponentTypeModel), CloudError> {
    let workspace = spec
        .desired
        .get("workspace")
        .and_then(Value::as_str)
        .map(str::to_string);
    let model = serde_json::from_value::<ComponentTypeModel>(spec.desired.clone()).ok();
    match (workspace, model) {
        (Some(w), Some(m)) => Ok((w, m)),
        _ => Err(CloudError::fatal(
            "InvalidSpec",
            format!("component type {} has no workspace or model", spec.name),
        )
        .with_hint("this is a bug in deployer; please report it")),
    }
}

/// A component type's desired settings: the model plus the workspace it lives in.
pub fn desired(workspace: &str, model: &ComponentTypeModel, tags: Value) -> Value {
    let mut v = model.to_desired();
    if let Some(o) = v.as_object_mut() {
        o.insert("workspace".into(), json!(workspace));
        if let Some(t) = tags.get("tags") {
            o.insert("tags".into(), t.clone());
        }
    }
    v
}

#[async_trait]
impl ResourceDriver for ComponentTypeDriver {
    async fn read(
        &self,
        spec: &ResourceSpec,
        _deps: &Outputs,
    ) -> Result<Option<Observed>, CloudError> {
        let (workspace, _) = parts(spec)?;
        let got = not_found_is_none(
            self.clients
                .twinmaker
                .get_component_type()
                .workspace_id(&workspace)
                .component_type_id(&spec.name)
                .send()
                .await,
        )?;
        let Some(ct) = got else {
            return Ok(None);
        };
        // A type being deleted is as good as gone: creating it again waits on the conflict.
        if ct.status().and_then(|s| s.state()) == Some(&State::Deleting) {
            return Ok(None);
        }
        let properties: BTreeMap<String, Value> = ct
            .property_definitions()
            .into_iter()
            .flatten()
            .filter_map(|(name, p)| {
                definition_model(p)
                    .and_then(|m| serde_json::to_value(m).ok().map(|v| (name.clone(), v)))
            })
            .collect();
        let reader = ct
            .functions()
            .and_then(|f| f.get(DATA_READER_FUNCTION))
            .and_then(|f| f.implemented_by())
            .and_then(|i| i.lambda())
            .map(|l| arn_name(l.arn()).to_string());
        Ok(Some(Observed::new(
            ct.arn(),
            json!({
                "arn": ct.arn(),
                "workspace": ct.workspace_id(),
                "properties": properties,
                "dataReader": reader,
                "state": ct.status().and_then(|s| s.state()).map(|s| s.as_str().to_string()),
            }),
        )))
    }

    async fn create(&self, spec: &ResourceSpec, _deps: &Outputs) -> Result<Observed, CloudError> {
        let (workspace, model) = parts(spec)?;
        self.clients
            .twinmaker
            .create_component_type()
            .workspace_id(&workspace)
            .component_type_id(&spec.name)
            .description("Created by deployer: one device's telemetry, read by the twin connector")
            .set_property_definitions(Some(definitions(&model)?))
            .functions(
                DATA_READER_FUNCTION,
                data_reader(&self.connector_arn(&model))?,
            )
            .tags(twin_config::names::TAG_KEY, crate::context::twin_tag(spec))
            .send()
            .await
            .map_err(cloud)?;
        let what = format!("component type {}", spec.name);
        wait_active(&what, || self.poll(&workspace, &spec.name)).await?;
        self.observe(spec).await
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        _current: &Observed,
        _deps: &Outputs,
    ) -> Result<Observed, CloudError> {
        let (workspace, model) = parts(spec)?;
        self.clients
            .twinmaker
            .update_component_type()
            .workspace_id(&workspace)
            .component_type_id(&spec.name)
            .set_property_definitions(Some(definitions(&model)?))
            .functions(
                DATA_READER_FUNCTION,
                data_reader(&self.connector_arn(&model))?,
            )
            .send()
            .await
            .map_err(|e| {
                let err = cloud(e);
                if err.code == "ValidationException" {
                    err.with_hint(
                        "TwinMaker cannot change this property in place; run `destroy --layer l4` and `deploy` to recreate the twin's TwinMaker content",
                    )
                } else {
                    err
                }
            })?;
        let what = format!("component type {}", spec.name);
        wait_active(&what, || self.poll(&workspace, &spec.name)).await?;
        self.observe(spec).await
    }

    async fn delete(&self, spec: &ResourceSpec, _current: &Observed) -> Result<(), CloudError> {
        let (workspace, _) = parts(spec)?;
        delete_component_type(&self.clients, &workspace, &spec.name).await
    }
}

/// Deletes one component type and waits until it is gone; one already gone is fine.
pub async fn delete_component_type(
    clients: &AwsClients,
    workspace: &str,
    id: &str,
) -> Result<(), CloudError> {
    gone_is_ok(
        clients
            .twinmaker
            .delete_component_type()
            .workspace_id(workspace)
            .component_type_id(id)
            .send()
            .await,
    )?;
    let poll = move || async move {
        let got = not_found_is_none(
            clients
                .twinmaker
                .get_component_type()
                .workspace_id(workspace)
                .component_type_id(id)
                .send()
                .await,
        )?;
        Ok(match got {
            Some(ct) => polled(ct.status()),
            None => Polled::Gone,
        })
    };
    wait_gone(&format!("component type {id}"), poll).await
}
