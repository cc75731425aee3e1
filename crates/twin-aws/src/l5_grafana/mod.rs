//! Layer 5 on AWS (SPEC §2): an Amazon Managed Grafana workspace with its own role
//! (CUSTOMER_MANAGED permissions) and TwinMaker as data source.
//!
//! The role may read exactly what the TwinMaker data source reads: the twin's TwinMaker
//! workspace and everything in it, and the workspace's resource bucket (scenes and models).
//! Managed Grafana has no DynamoDB data source; hot data reaches dashboards through TwinMaker,
//! which asks the twin connector, so the role needs no DynamoDB access of its own.

mod workspace;

pub use workspace::GrafanaWorkspaceDriver;

use crate::iam::RoleSpec;
use crate::l3::buckets;
use crate::l4_twinmaker;
use crate::{AwsClients, LayerContext};
use serde_json::json;
use std::sync::Arc;
use twin_config::{names, Layer};
use twin_engine::{CloudError, ResourceDriver, ResourceId, ResourceSpec};

/// Driver kind of the Grafana workspace.
pub const WORKSPACE_KIND: &str = workspace::KIND;

/// Role of the workspace: `<twin>-grafana`.
pub const ROLE: &str = "grafana";

/// The authentication providers Managed Grafana accepts.
const AUTH_PROVIDERS: [&str; 2] = ["AWS_SSO", "SAML"];

/// The id of the workspace spec.
pub fn workspace_id() -> ResourceId {
    crate::context::resource_id(Layer::L5, WORKSPACE_KIND, "workspace")
}

/// The resources of layer 5.
pub fn specs(ctx: &LayerContext<'_>) -> Result<Vec<ResourceSpec>, CloudError> {
    let auth = ctx
        .twin
        .providers
        .aws
        .grafana_authentication_provider
        .clone();
    if !AUTH_PROVIDERS.contains(&auth.as_str()) {
        return Err(CloudError::fatal(
            "InvalidAuthenticationProvider",
            format!("grafana_authentication_provider `{auth}` is not one Managed Grafana knows"),
        )
        .with_hint("set \"aws\": {\"grafana_authentication_provider\": \"AWS_SSO\"} or \"SAML\" in config_providers.json"));
    }
    let mut role = RoleSpec::new(ROLE, "grafana.amazonaws.com");
    let mut data_sources: Vec<&str> = Vec::new();
    let mut deps = Vec::new();
    if ctx.on_aws(Layer::L4) {
        let ws_arn = l4_twinmaker::workspace_arn(ctx);
        let bucket = buckets::bucket_name(ctx, l4_twinmaker::BUCKET_TIER);
        let bucket_arn = format!("arn:{}:s3:::{bucket}", ctx.clients.partition);
        role = role
            .allow(
                &[
                    "iottwinmaker:Get*",
                    "iottwinmaker:List*",
                    "iottwinmaker:ExecuteQuery",
                ],
                &[ws_arn.clone(), format!("{ws_arn}/*")],
            )
            // ListWorkspaces has no resource to scope to; the data source lists them.
            .allow(&["iottwinmaker:ListWorkspaces"], &["*"])
            .allow(
                &["s3:GetBucketLocation", "s3:ListBucket"],
                std::slice::from_ref(&bucket_arn),
            )
            .allow(&["s3:GetObject"], &[format!("{bucket_arn}/*")]);
        data_sources.push("TWINMAKER");
        deps.push(l4_twinmaker::workspace_id());
    }
    let role = role.build(ctx, Layer::L5);
    let workspace = ctx
        .spec(
            Layer::L5,
            WORKSPACE_KIND,
            "workspace",
            names::grafana_workspace_name(ctx.name()),
        )
        .depends_on([role.id.clone()])
        .depends_on(deps)
        .desired(json!({
            "authentication": [auth],
            "permissionType": "CUSTOMER_MANAGED",
            "role": role.name,
            "dataSources": data_sources,
            "accountAccess": "CURRENT_ACCOUNT",
        }));
    Ok(vec![role, workspace])
}

/// The twin's resources of this layer found in the cloud by name or tag: the workspace is found
/// by its deterministic name (the config's own spec does that), so nothing extra.
pub async fn discover(_ctx: &LayerContext<'_>) -> Result<Vec<ResourceSpec>, CloudError> {
    Ok(Vec::new())
}

/// The driver of a resource kind of this layer, if it is one.
pub fn driver(kind: &str, clients: &Arc<AwsClients>) -> Option<Arc<dyn ResourceDriver>> {
    match kind {
        WORKSPACE_KIND => Some(Arc::new(GrafanaWorkspaceDriver::new(clients.clone()))),
        _ => None,
    }
}
