//! Layer 5 on AWS (SPEC §2): an Amazon Managed Grafana workspace a person can open and that
//! shows the twin.
//!
//! - The workspace has its own role (CUSTOMER_MANAGED permissions), which may do one thing:
//!   assume the **dashboard role**.
//! - The dashboard role (`<twin>-grafana-dashboard`), trusted only by the workspace role, is
//!   what the TwinMaker data source plugin assumes: read-only on the twin's TwinMaker workspace
//!   and its resource bucket, as the plugin's documented dashboard policy gives it (the plugin
//!   caps its session at that policy, so more would not work anyway).
//! - `workspaceDataSources = [TWINMAKER]` only permits the plugin; the **data source** itself
//!   is made through the workspace's Grafana HTTP API, with a service account of the deployer
//!   and a short-lived token per call ([`api`]), as are the twin's **folder** and the starter
//!   **dashboard** (a panel per device property, rows by hierarchy: [`dashboard_model`]).
//! - Access: the users and groups of `grafana_admins` / `grafana_editors` / `grafana_viewers`
//!   are granted their roles (AWS_SSO), or `grafana_saml` becomes the workspace's SAML
//!   configuration; with neither, the config's warnings say how to sign in.
//!
//! Managed Grafana has no DynamoDB data source; hot data reaches dashboards through TwinMaker,
//! which asks the twin connector, so without L4 on AWS there is no data source or dashboard.

pub mod access;
pub mod api;
mod workspace;

pub use twin_grafana::{dashboard_model, data_plane};

pub use workspace::GrafanaWorkspaceDriver;

use crate::iam::{self, RoleSpec};
use crate::l3::buckets;
use crate::l4_twinmaker;
use crate::{AwsClients, LayerContext};
use serde_json::json;
use std::sync::Arc;
use twin_config::{names, Layer};
use twin_engine::{CloudError, InfoRow, ResourceDriver, ResourceId, ResourceSpec};

/// Driver kind of the Grafana workspace.
pub const WORKSPACE_KIND: &str = workspace::KIND;
/// Driver kind of the deployer's service account.
pub const SERVICE_ACCOUNT_KIND: &str = access::SERVICE_ACCOUNT_KIND;
/// Driver kind of the user and group grants.
pub const PERMISSIONS_KIND: &str = access::PERMISSIONS_KIND;
/// Driver kind of the SAML configuration.
pub const SAML_KIND: &str = access::SAML_KIND;
/// Driver kind of the TwinMaker data source.
pub const DATASOURCE_KIND: &str = data_plane::DATASOURCE_KIND;
/// Driver kind of the twin's folder.
pub const FOLDER_KIND: &str = data_plane::FOLDER_KIND;
/// Driver kind of the starter dashboard.
pub const DASHBOARD_KIND: &str = data_plane::DASHBOARD_KIND;

/// Role of the workspace: `<twin>-grafana`.
pub const ROLE: &str = "grafana";
/// Role the TwinMaker data source assumes: `<twin>-grafana-dashboard`.
pub const DASHBOARD_ROLE: &str = "grafana-dashboard";
/// Name of the deployer's service account in the workspace.
pub const SERVICE_ACCOUNT: &str = "deployer";
/// Auth type of the data source: the workspace's own IAM role (Managed Grafana's name for it
/// in the AWS data source plugins).
pub const DATASOURCE_AUTH_TYPE: &str = "ec2_iam_role";

/// The authentication providers Managed Grafana accepts.
const AUTH_PROVIDERS: [&str; 2] = ["AWS_SSO", "SAML"];

/// The id of the workspace spec.
pub fn workspace_id() -> ResourceId {
    crate::context::resource_id(Layer::L5, WORKSPACE_KIND, "workspace")
}

/// The id of the service account spec.
pub fn service_account_id() -> ResourceId {
    crate::context::resource_id(Layer::L5, SERVICE_ACCOUNT_KIND, SERVICE_ACCOUNT)
}

/// The id of the data source spec.
pub fn datasource_id() -> ResourceId {
    crate::context::resource_id(Layer::L5, DATASOURCE_KIND, "twinmaker")
}

/// The id of the folder spec.
pub fn folder_id() -> ResourceId {
    crate::context::resource_id(Layer::L5, FOLDER_KIND, "twin")
}

/// The id of the dashboard spec.
pub fn dashboard_id() -> ResourceId {
    crate::context::resource_id(Layer::L5, DASHBOARD_KIND, "starter")
}

/// The Grafana uid of the data source (`<twin>-twinmaker`).
pub fn datasource_uid(twin: &str) -> String {
    api::grafana_uid(twin, "twinmaker")
}

pub use twin_grafana::dashboard_model::{dashboard_uid, folder_uid};

/// The resources of layer 5.
pub fn specs(ctx: &LayerContext<'_>) -> Result<Vec<ResourceSpec>, CloudError> {
    let aws = &ctx.twin.providers.aws;
    let auth = aws.grafana_authentication_provider.clone();
    if !AUTH_PROVIDERS.contains(&auth.as_str()) {
        return Err(CloudError::fatal(
            "InvalidAuthenticationProvider",
            format!("grafana_authentication_provider `{auth}` is not one Managed Grafana knows"),
        )
        .with_hint("set \"aws\": {\"grafana_authentication_provider\": \"AWS_SSO\"} or \"SAML\" in config_providers.json"));
    }
    let twin = ctx.name();
    let mut role = RoleSpec::new(ROLE, "grafana.amazonaws.com");
    let mut data_sources: Vec<&str> = Vec::new();
    let mut deps = Vec::new();
    let mut dashboard_role = None;
    if ctx.on_aws(Layer::L4) {
        let dashboard_role_arn = iam::role_arn(ctx, DASHBOARD_ROLE);
        role = role.allow(&["sts:AssumeRole"], &[dashboard_role_arn]);
        let ws_arn = l4_twinmaker::workspace_arn(ctx);
        let bucket = buckets::bucket_name(ctx, l4_twinmaker::BUCKET_TIER);
        let bucket_arn = format!("arn:{}:s3:::{bucket}", ctx.clients.partition);
        // The TwinMaker docs' dashboard policy without video: exactly what the plugin's
        // session policy lets through.
        dashboard_role = Some(
            RoleSpec::assumable_by_role(DASHBOARD_ROLE, &iam::role_arn(ctx, ROLE))
                .allow(
                    &["iottwinmaker:Get*", "iottwinmaker:List*"],
                    &[ws_arn.clone(), format!("{ws_arn}/*")],
                )
                // ListWorkspaces has no resource to scope to; the plugin lists workspaces.
                .allow(&["iottwinmaker:ListWorkspaces"], &["*"])
                .allow(
                    &["s3:GetObject"],
                    &[bucket_arn.clone(), format!("{bucket_arn}/*")],
                )
                // IAM refuses a trust policy naming a role that does not exist yet.
                .depends_on([iam::role_id(Layer::L5, ROLE)]),
        );
        data_sources.push("TWINMAKER");
        deps.push(l4_twinmaker::workspace_id());
    }
    let role = role.build(ctx, Layer::L5);
    let workspace = ctx
        .spec(
            Layer::L5,
            WORKSPACE_KIND,
            "workspace",
            names::grafana_workspace_name(twin),
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
    let ws_id = workspace.id.clone();
    let mut specs = vec![role, workspace];

    if auth == "AWS_SSO" && aws.grafana_has_grantees() {
        specs.push(
            ctx.spec(Layer::L5, PERMISSIONS_KIND, "access", "access")
                .depends_on([ws_id.clone()])
                .desired(access::grants_desired(aws)),
        );
    }
    if let (true, Some(saml)) = (auth == "SAML", &aws.grafana_saml) {
        specs.push(
            ctx.spec(Layer::L5, SAML_KIND, "saml", "saml")
                .depends_on([ws_id.clone()])
                .desired(access::saml_desired(saml)),
        );
    }

    let Some(dashboard_role) = dashboard_role else {
        return Ok(specs);
    };
    let dashboard_role = dashboard_role.build(ctx, Layer::L5);
    let sa = ctx
        .spec(
            Layer::L5,
            SERVICE_ACCOUNT_KIND,
            SERVICE_ACCOUNT,
            SERVICE_ACCOUNT,
        )
        .depends_on([ws_id.clone()])
        .desired(json!({"grafanaRole": "ADMIN"}));
    let ds_uid = datasource_uid(twin);
    let datasource = ctx
        .spec(Layer::L5, DATASOURCE_KIND, "twinmaker", ds_uid.clone())
        .depends_on([ws_id.clone(), sa.id.clone(), dashboard_role.id.clone()])
        .desired(json!({
            "name": format!("{twin} TwinMaker"),
            "type": dashboard_model::DATASOURCE_TYPE,
            "access": "proxy",
            "jsonData": {
                "authType": DATASOURCE_AUTH_TYPE,
                "assumeRoleArn": iam::role_arn(ctx, DASHBOARD_ROLE),
                "defaultRegion": ctx.clients.region,
                "workspaceId": names::twinmaker_workspace_id(twin),
            },
            "health": data_plane::HEALTHY,
        }));
    let folder = ctx
        .spec(Layer::L5, FOLDER_KIND, "twin", folder_uid(twin))
        .depends_on([ws_id.clone(), sa.id.clone()])
        .desired(dashboard_model::folder_desired(twin));
    let hierarchy = ctx.twin.hierarchy.as_deref().unwrap_or_default();
    let (desired, model) = dashboard_model::starter(
        twin,
        dashboard_model::Source::TwinMaker,
        &ds_uid,
        &ctx.twin.devices,
        hierarchy,
    );
    let mut dashboard = ctx
        .spec(Layer::L5, DASHBOARD_KIND, "starter", dashboard_uid(twin))
        .depends_on([
            ws_id,
            sa.id.clone(),
            folder.id.clone(),
            datasource.id.clone(),
        ])
        .desired(desired);
    dashboard.inputs["dashboard"] = model;
    specs.extend([dashboard_role, sa, datasource, folder, dashboard]);
    Ok(specs)
}

/// The twin's resources of this layer found in the cloud by name or tag: the workspace is found
/// by its deterministic name (the config's own spec does that), and everything else lives in
/// the workspace and goes with it, so nothing extra.
pub async fn discover(_ctx: &LayerContext<'_>) -> Result<Vec<ResourceSpec>, CloudError> {
    Ok(Vec::new())
}

/// The driver of a resource kind of this layer, if it is one.
pub fn driver(kind: &str, clients: &Arc<AwsClients>) -> Option<Arc<dyn ResourceDriver>> {
    let api = || match api::grafana_api(clients.clone()) {
        Ok(a) => Some(Arc::new(a)),
        Err(e) => {
            tracing::error!("the Grafana HTTP client: {e}");
            None
        }
    };
    match kind {
        WORKSPACE_KIND => Some(Arc::new(GrafanaWorkspaceDriver::new(clients.clone()))),
        SERVICE_ACCOUNT_KIND => Some(Arc::new(access::ServiceAccountDriver::new(clients.clone()))),
        PERMISSIONS_KIND => Some(Arc::new(access::PermissionsDriver::new(clients.clone()))),
        SAML_KIND => Some(Arc::new(access::SamlDriver::new(clients.clone()))),
        DATASOURCE_KIND => Some(Arc::new(data_plane::DatasourceDriver::new(
            api()?,
            Arc::new(api::TwinMakerLink),
        ))),
        FOLDER_KIND => Some(Arc::new(data_plane::FolderDriver::new(api()?))),
        DASHBOARD_KIND => Some(Arc::new(data_plane::DashboardDriver::new(api()?))),
        _ => None,
    }
}

/// The lines `info` prints about Grafana on AWS: the workspace's URL (the origin of the data
/// source's or dashboard's URL), the data source's health, and the dashboard's URL.
pub fn info_lines(rows: &[InfoRow]) -> Vec<String> {
    twin_grafana::info::info_lines(rows, twin_config::ProviderName::Aws, "Grafana workspace")
}
