//! [`ComponentDirectory`] over TwinMaker: ListEntities filtered by component type, then GetEntity
//! for each entity to read its components of that type and their `iotDeviceId` values.

use crate::error_map::cloud_error;
use async_trait::async_trait;
use aws_sdk_iottwinmaker::types::ListEntitiesFilter;
use twin_functions::twin_connector::{ComponentDirectory, ComponentRef};
use twin_functions::{CloudError, CloudErrorKind};

/// The property of a twin component that names its device.
const DEVICE_ID_PROPERTY: &str = "iotDeviceId";

/// Finds the components of a type in a TwinMaker workspace.
pub struct TwinMakerDirectory {
    client: aws_sdk_iottwinmaker::Client,
}

impl TwinMakerDirectory {
    /// A directory using `client`.
    pub fn new(client: aws_sdk_iottwinmaker::Client) -> Self {
        Self { client }
    }
}

#[async_trait]
impl ComponentDirectory for TwinMakerDirectory {
    async fn components_of_type(
        &self,
        workspace: &str,
        component_type_id: &str,
    ) -> Result<Vec<ComponentRef>, CloudError> {
        let mut entities = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .client
                .list_entities()
                .workspace_id(workspace)
                .filters(ListEntitiesFilter::ComponentTypeId(
                    component_type_id.to_string(),
                ))
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| cloud_error("ListEntities", format!("workspace {workspace}"), e))?;
            entities.extend(
                page.entity_summaries()
                    .iter()
                    .map(|e| e.entity_id().to_string()),
            );
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        let mut out = Vec::new();
        for entity in entities {
            let what = format!("entity {entity} of workspace {workspace}");
            let got = self
                .client
                .get_entity()
                .workspace_id(workspace)
                .entity_id(&entity)
                .send()
                .await
                .map_err(|e| cloud_error("GetEntity", what.clone(), e))?;
            for (name, component) in got.components().into_iter().flatten() {
                if component.component_type_id() != Some(component_type_id) {
                    continue;
                }
                let device = component
                    .properties()
                    .and_then(|p| p.get(DEVICE_ID_PROPERTY))
                    .and_then(|p| p.value())
                    .and_then(|v| v.string_value())
                    .filter(|d| !d.is_empty())
                    .ok_or_else(|| {
                        CloudError::new(
                            "GetEntity",
                            what.clone(),
                            "MissingDeviceId",
                            format!(
                                "component {name} (type {component_type_id}) has no {DEVICE_ID_PROPERTY} value; \
                                 run `deployer deploy` to set it again"
                            ),
                            CloudErrorKind::Rejected,
                        )
                    })?;
                out.push(ComponentRef {
                    entity_id: entity.clone(),
                    component_name: name.clone(),
                    device_id: device.to_string(),
                });
            }
        }
        Ok(out)
    }
}
