//! Layer 4 on AWS (SPEC §2): an IoT TwinMaker workspace with its role and resource bucket, the
//! CORS rule for the Grafana scene viewer, the twin connector Lambda that reads the hot table for
//! TwinMaker, a component type per device whose `dataReader` is that connector, and the entities
//! of `config_hierarchy.json`.
//!
//! What the component types and entities hold comes from `twin_models::twinmaker` (re-exported
//! here as [`model`]), the same code `deployer model --format twinmaker` writes files from.
//!
//! The dependency edges carry the order: entities after their parent and their component
//! types, component types after the workspace and the connector; destroy walks them backwards
//! (children first, component types before the workspace).

pub mod bucket_cors;
mod component_type;
mod convert;
mod entity;
mod status;
mod workspace;

pub use bucket_cors::BucketCorsDriver;
pub use component_type::ComponentTypeDriver;
pub use entity::EntityDriver;
/// The config-derived TwinMaker models (shared with `deployer model`).
pub use twin_models::twinmaker as model;
pub use workspace::{reclassify_role_not_ready, WorkspaceDriver};

use crate::iam::RoleSpec;
use crate::l3::buckets;
use crate::lambda_fn::{self, FunctionSpec};
use crate::{AwsClients, LayerContext};
use model::EntityModel;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use twin_config::{names, Layer};
use twin_engine::{CloudError, ResourceDriver, ResourceId, ResourceSpec};

/// Driver kind of the workspace.
pub const WORKSPACE_KIND: &str = workspace::KIND;
/// Driver kind of a component type.
pub const COMPONENT_TYPE_KIND: &str = component_type::KIND;
/// Driver kind of an entity.
pub const ENTITY_KIND: &str = entity::KIND;
/// Driver kind of the resource bucket's CORS configuration.
pub const BUCKET_CORS_KIND: &str = bucket_cors::KIND;

/// Local name (and crate, and role) of the twin connector function.
pub const CONNECTOR: &str = model::CONNECTOR;
/// Role of the workspace: `<twin>-twinmaker`.
pub const WORKSPACE_ROLE: &str = "twinmaker";
/// Bucket tier of the workspace's resource bucket.
pub const BUCKET_TIER: &str = "twinmaker";

/// The id of the workspace spec (L5 depends on it).
pub fn workspace_id() -> ResourceId {
    crate::context::resource_id(Layer::L4, WORKSPACE_KIND, "workspace")
}

/// The id of a device's component type spec.
pub fn component_type_spec_id(device: &str) -> ResourceId {
    crate::context::resource_id(Layer::L4, COMPONENT_TYPE_KIND, device)
}

/// The id of an entity spec.
pub fn entity_spec_id(entity: &str) -> ResourceId {
    crate::context::resource_id(Layer::L4, ENTITY_KIND, entity)
}

/// The ARN of the twin's workspace (deterministic, for policies that name it).
pub fn workspace_arn(ctx: &LayerContext<'_>) -> String {
    ctx.clients.arn(
        "iottwinmaker",
        &format!("workspace/{}", names::twinmaker_workspace_id(ctx.name())),
    )
}

/// The resources of layer 4.
pub fn specs(ctx: &LayerContext<'_>) -> Result<Vec<ResourceSpec>, CloudError> {
    let twin = ctx.name();
    let ws_name = names::twinmaker_workspace_id(twin);
    let bucket = buckets::bucket_spec(ctx, Layer::L4, BUCKET_TIER);
    let bucket_arn = format!("arn:{}:s3:::{}", ctx.clients.partition, bucket.name);
    let connector_name = names::function_name(twin, CONNECTOR);
    let connector_arn = lambda_fn::function_arn(ctx, CONNECTOR);

    let mut specs = vec![connector_role(ctx, &connector_name)?];
    specs.extend(lambda_fn::build_functions(
        ctx,
        Layer::L4,
        vec![FunctionSpec::new(CONNECTOR, CONNECTOR, CONNECTOR)
            .env("HOT_TABLE", names::table_name(twin))],
    )?);

    let role = workspace_role(&bucket_arn, &connector_arn).build(ctx, Layer::L4);

    let workspace = ctx
        .spec(Layer::L4, WORKSPACE_KIND, "workspace", ws_name.clone())
        .depends_on([role.id.clone(), bucket.id.clone()])
        .desired(json!({
            "role": role.name,
            "bucket": bucket.name,
        }));
    let ws_id = workspace.id.clone();
    let connector_id = lambda_fn::function_id(Layer::L4, CONNECTOR);
    if let Some(origins) =
        bucket_cors::grafana_origins(ctx.twin.providers.get(Layer::L5), &ctx.clients.region)
    {
        let settings = bucket_cors::CorsSettings {
            bucket: bucket.name.clone(),
            rules: vec![bucket_cors::scene_viewer_rule(origins)],
        };
        specs.push(
            ctx.spec(
                Layer::L4,
                BUCKET_CORS_KIND,
                BUCKET_TIER,
                bucket.name.clone(),
            )
            .depends_on([bucket.id.clone()])
            .desired(settings.to_desired()),
        );
    }
    specs.extend([bucket, role, workspace]);

    let component_types = model::component_types(ctx.twin);
    let own_types: BTreeMap<String, String> = component_types
        .iter()
        .map(|ct| (ct.id.clone(), ct.device.clone()))
        .collect();
    for ct in &component_types {
        specs.push(
            ctx.spec(Layer::L4, COMPONENT_TYPE_KIND, &ct.device, ct.id.clone())
                .depends_on([ws_id.clone(), connector_id.clone()])
                .desired(component_type::desired(&ws_name, &ct.model, json!({}))),
        );
    }

    for e in model::twin_entities(ctx.twin) {
        specs.push(entity_spec(ctx, &ws_name, &ws_id, &own_types, &e));
    }
    Ok(specs)
}

/// The workspace role as the TwinMaker guide's "Create and manage a service role" page gives it
/// for a specific bucket and a connector to an external data source: read and write the resource
/// bucket (`s3:GetBucket*` covers the GetBucketLocation/GetBucketCors TwinMaker and the scene
/// composer call), delete only the `DO_NOT_DELETE_WORKSPACE_*` marker TwinMaker puts there
/// (it removes it when the workspace is deleted), and invoke the twin connector.
fn workspace_role(bucket_arn: &str, connector_arn: &str) -> RoleSpec {
    RoleSpec::new(WORKSPACE_ROLE, "iottwinmaker.amazonaws.com")
        .allow(
            &[
                "s3:GetBucket*",
                "s3:GetObject",
                "s3:ListBucket",
                "s3:PutObject",
            ],
            &[bucket_arn.to_string(), format!("{bucket_arn}/*")],
        )
        .allow(
            &["s3:DeleteObject"],
            &[format!("{bucket_arn}/{WORKSPACE_MARKER_PREFIX}*")],
        )
        .allow(&["lambda:InvokeFunction"], &[connector_arn.to_string()])
}

/// The prefix of the object TwinMaker writes into a workspace's bucket to mark it in use.
pub const WORKSPACE_MARKER_PREFIX: &str = "DO_NOT_DELETE_WORKSPACE_";

/// The connector's role: its own log group, Query on the hot table, and reading the twin's
/// workspace's entities (a by-component-type request names no entity: the connector lists the
/// entities that carry the type and reads their components' devices).
fn connector_role(
    ctx: &LayerContext<'_>,
    connector_name: &str,
) -> Result<ResourceSpec, CloudError> {
    if !ctx.on_aws(Layer::L3Hot) {
        return Err(CloudError::fatal(
            "Unsupported",
            "the twin connector reads the hot store, which this config puts outside AWS",
        )
        .with_hint(
            "put layer_3_hot_provider on aws with layer_4_provider, or set layer_4_provider to none",
        ));
    }
    let table_arn = ctx.clients.arn(
        "dynamodb",
        &format!("table/{}", names::table_name(ctx.name())),
    );
    Ok(RoleSpec::new(CONNECTOR, "lambda.amazonaws.com")
        .allow_logs(ctx, &[connector_name.to_string()])
        .allow(&["dynamodb:Query"], &[table_arn])
        .allow(
            &["iottwinmaker:ListEntities", "iottwinmaker:GetEntity"],
            &[
                workspace_arn(ctx),
                format!("{}/entity/*", workspace_arn(ctx)),
            ],
        )
        .build(ctx, Layer::L4))
}

fn entity_spec(
    ctx: &LayerContext<'_>,
    ws_name: &str,
    ws_id: &ResourceId,
    own_types: &BTreeMap<String, String>,
    e: &EntityModel,
) -> ResourceSpec {
    let mut deps = vec![ws_id.clone()];
    if let Some(p) = &e.parent {
        deps.push(entity_spec_id(p));
    }
    // Components of our own types need those types first (and are deleted before them).
    for c in e.components.values() {
        if let Some(device) = own_types.get(&c.component_type_id) {
            deps.push(component_type_spec_id(device));
        }
    }
    deps.sort();
    deps.dedup();
    ctx.spec(Layer::L4, ENTITY_KIND, &e.id, e.id.clone())
        .depends_on(deps)
        .desired(entity::desired(ws_name, e, json!({})))
}

/// The twin's resources of this layer found in the cloud by name or tag. Every L4 resource has
/// a deterministic name that the config's own specs already find, and deleting the workspace
/// sweeps whatever entities and component types remain in it (a device or entity removed from
/// the config), so there is nothing extra to discover.
pub async fn discover(_ctx: &LayerContext<'_>) -> Result<Vec<ResourceSpec>, CloudError> {
    Ok(Vec::new())
}

/// The driver of a resource kind of this layer, if it is one.
pub fn driver(kind: &str, clients: &Arc<AwsClients>) -> Option<Arc<dyn ResourceDriver>> {
    match kind {
        WORKSPACE_KIND => Some(Arc::new(WorkspaceDriver::new(clients.clone()))),
        COMPONENT_TYPE_KIND => Some(Arc::new(ComponentTypeDriver::new(clients.clone()))),
        ENTITY_KIND => Some(Arc::new(EntityDriver::new(clients.clone()))),
        BUCKET_CORS_KIND => Some(Arc::new(BucketCorsDriver::new(clients.clone()))),
        _ => None,
    }
}
