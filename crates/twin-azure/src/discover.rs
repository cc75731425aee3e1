//! Finding a twin's Azure resources when the state file is lost: its resource group, if the
//! group carries the twin's tag, and the tagged resources the group holds. A group without the
//! tag is someone else's and nothing in it is returned.

use crate::arm::RESOURCES_API;
use crate::context::{group_path, owner_from, LayerContext};
use crate::{identity, l3, l5, provider};
use serde_json::Value;
use twin_config::Layer;
use twin_engine::{CloudError, ResourceSpec};

/// The twin's resources found in its resource group, each depending on the group.
pub async fn discover(
    ctx: &LayerContext<'_>,
    layer: Layer,
) -> Result<Vec<ResourceSpec>, CloudError> {
    let arm = ctx.arm;
    let what = format!("resource group {}", ctx.resource_group);
    let path = group_path(arm, &ctx.resource_group);
    let Some(group) = arm.get(&path, RESOURCES_API, &what).await? else {
        return Ok(Vec::new());
    };
    if owner_from(group.get("tags"))
        .foreign_to(ctx.name(), None)
        .is_some()
    {
        return Ok(Vec::new());
    }
    let group_spec = provider::group_spec(ctx, layer);
    let mut specs = Vec::new();
    let listed = arm
        .list(&format!("{path}/resources"), RESOURCES_API, &what)
        .await?;
    for r in listed {
        let (Some(ty), Some(name)) = (
            r.get("type").and_then(Value::as_str),
            r.get("name").and_then(Value::as_str),
        ) else {
            continue;
        };
        if owner_from(r.get("tags"))
            .foreign_to(ctx.name(), None)
            .is_some()
        {
            continue;
        }
        let kind = if ty.eq_ignore_ascii_case(identity::TYPE) {
            identity::KIND
        } else if ty.eq_ignore_ascii_case(l3::storage::TYPE) {
            l3::storage::KIND
        } else if ty.eq_ignore_ascii_case(l5::grafana::TYPE) {
            // Its data source, folder and dashboard live in it and go with it.
            l5::grafana::KIND
        } else {
            // Kinds this version does not deploy go with the group.
            continue;
        };
        specs.push(
            ctx.spec(layer, kind, &format!("discovered/{name}"), name)
                .depends_on([group_spec.id.clone()]),
        );
    }
    // Under the id the config's own spec has, so the dependents' edges hold either way.
    specs.push(group_spec);
    Ok(specs)
}
