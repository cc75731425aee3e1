//! The twin's Function App on Azure: one Flex Consumption Function App per twin that runs the
//! twin's one custom handler binary (SPEC §9), with what it needs around it: its own host and
//! deployment storage account and package container, a Log Analytics workspace and
//! workspace-based Application Insights, the FC1 plan, the site, its app settings, its
//! basic-auth publishing policies, and the code package deployed with OneDeploy and an Entra
//! token.
//!
//! The app belongs to the twin's *app layer* ([`app_layer`]): the first of L2, L3 hot and L3
//! cold that is on Azure and has functions there. It is L2 whenever L2 is on Azure; a twin that
//! keeps only its storage on Azure (L3 cold and archive receiving from another cloud) gets the
//! same app under L3 cold, holding only the functions of the layers on Azure.

pub mod events_topic;
pub mod handler_package;
pub mod insights;
pub mod package;
pub mod plan;
pub mod publishing;
pub mod settings;
pub mod site;
pub mod workspace;

use crate::context::{resource_id, resource_path, LayerContext};
use crate::{identity, l3};
use async_trait::async_trait;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use twin_config::{names, Hop, Layer, ProviderName, TwinConfig};
use twin_engine::{CloudError, ResourceId, ResourceSpec};
use twin_functions_azure::app::AppFunction;

pub use settings::Setting;

/// Key of the app's host/deployment storage account spec (`l2/azure_storage_account/app-host`).
pub const HOST_ACCOUNT_KEY: &str = "app-host";

/// Name (and spec key) of the blob container the Flex Consumption app deploys its package from.
pub const PACKAGE_CONTAINER: &str = "app-package";

/// Key of the specs there is one of per twin (plan, site, workspace, ...).
pub const TWIN_KEY: &str = "twin";

/// Built-in role Storage Blob Data Owner: the host's own storage (leases of timers and
/// singletons, the `azure-webjobs-*` containers) and the deployment container.
pub const STORAGE_BLOB_DATA_OWNER: &str = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b";

/// Built-in role Monitoring Metrics Publisher: lets the identity send telemetry to an
/// Application Insights component whose local (key) auth is disabled.
pub const MONITORING_METRICS_PUBLISHER: &str = "3913510d-42f4-4e42-8a64-420c390055eb";

/// A built function package: the zip, its content hash, and the functions it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppPackage {
    /// The zip (handler binary, `host.json`, one `<function>/function.json` per function).
    pub bytes: Vec<u8>,
    /// Hash of the package's content: what a deploy compares to decide on a new upload.
    pub hash: String,
    /// The functions in the package (directory names of their `function.json`).
    pub functions: Vec<String>,
}

/// Where the Function App's package comes from (the real builder plugs in here).
#[async_trait]
pub trait AppPackageSource: Send + Sync {
    /// The package for this twin; the same config gives the same hash.
    async fn package(&self, twin: &TwinConfig) -> Result<AppPackage, CloudError>;
}

/// A fixed package (tests, and until the real builder is wired in).
#[derive(Debug, Clone)]
pub struct StaticPackage(pub AppPackage);

#[async_trait]
impl AppPackageSource for StaticPackage {
    async fn package(&self, _twin: &TwinConfig) -> Result<AppPackage, CloudError> {
        Ok(self.0.clone())
    }
}

/// The layers that can hold the twin's Function App, in the order the first one on Azure with
/// functions is chosen (L1's dispatcher runs in L2's app: it needs the processor in process).
pub const APP_LAYERS: [Layer; 3] = [Layer::L2, Layer::L3Hot, Layer::L3Cold];

/// Whether the twin's L3 cold on Azure receives the hot → cold hop from another cloud
/// (`Hop::HotToCold` with its receiver on Azure): then the app hosts `ingress-cold`.
pub fn receives_hot_to_cold(twin: &TwinConfig) -> bool {
    twin_config::cross_cloud_boundaries(twin.name(), &twin.providers)
        .iter()
        .any(|b| b.hop == Hop::HotToCold && b.receiver.provider == ProviderName::Azure)
}

/// The functions `layer` brings to the twin's Function App (none when it is not on Azure).
pub fn layer_functions(twin: &TwinConfig, layer: Layer) -> Vec<AppFunction> {
    let on = |l: Layer| twin.providers.get(l) == ProviderName::Azure;
    if !on(layer) {
        return Vec::new();
    }
    match layer {
        Layer::L2 => {
            let mut f = Vec::new();
            // The dispatcher runs the processor and the persister in its own invocation, so
            // it lives where they do; with L2 elsewhere it is the L1 → L2 boundary's sender.
            if on(Layer::L1) {
                f.push(AppFunction::Dispatcher);
            }
            f.extend([AppFunction::Processor, AppFunction::Persister]);
            f
        }
        Layer::L3Hot => vec![AppFunction::HotReader, AppFunction::HotToColdMover],
        Layer::L3Cold => {
            let mut f = vec![AppFunction::ColdToArchiveMover];
            if receives_hot_to_cold(twin) {
                f.push(AppFunction::IngressCold);
            }
            f
        }
        _ => Vec::new(),
    }
}

/// The layer that owns the twin's Function App: the first of [`APP_LAYERS`] on Azure with
/// functions; `None` when no function of the twin runs on Azure.
pub fn app_layer(twin: &TwinConfig) -> Option<Layer> {
    APP_LAYERS
        .into_iter()
        .find(|l| !layer_functions(twin, *l).is_empty())
}

/// The id of a spec of the Function App's, of `kind` with `key`, under the app layer `app`.
pub fn spec_id(app: Layer, kind: &str, key: &str) -> ResourceId {
    resource_id(app, kind, key)
}

/// The package spec's id under the app layer `app`: role assignments the package needs (see
/// [`role_needs`]) must be among its dependencies, so the first deployment finds its rights
/// in place.
pub fn package_id(app: Layer) -> ResourceId {
    spec_id(app, package::KIND, "handler")
}

/// The site spec's id under the app layer `app` (its outputs: `id`, `default_host_name`,
/// `scm_host`, and [`site::INGRESS_COLD_URL`] when the app hosts `ingress-cold`).
pub fn site_id(app: Layer) -> ResourceId {
    spec_id(app, site::KIND, TWIN_KEY)
}

/// Where the hot → cold receiver's URL of a twin is, for a sender on another cloud to depend
/// on: the site spec's id and its output attribute ([`site::INGRESS_COLD_URL`],
/// `https://<defaultHostName>/api/ingress-cold`). `None` when the twin's L3 cold on Azure
/// receives no hot → cold hop.
pub fn ingress_cold_url_source(twin: &TwinConfig) -> Option<(ResourceId, &'static str)> {
    let app = app_layer(twin)?;
    receives_hot_to_cold(twin).then(|| (site_id(app), site::INGRESS_COLD_URL))
}

/// The role assignments the twin's identity needs for L2, as (scope spec id, built-in role
/// definition GUID): Blob Data Owner on the app's storage account (host storage by identity,
/// timers' blob leases, the deployment container; the handler uses no queue or table trigger,
/// so no queue/table role), and Monitoring Metrics Publisher on Application Insights (local
/// auth is disabled, so telemetry is sent with the identity).
pub fn role_needs(app: Layer) -> Vec<(ResourceId, &'static str)> {
    vec![
        (
            spec_id(app, l3::storage::KIND, HOST_ACCOUNT_KEY),
            STORAGE_BLOB_DATA_OWNER,
        ),
        (
            spec_id(app, insights::KIND, TWIN_KEY),
            MONITORING_METRICS_PUBLISHER,
        ),
    ]
}

/// The settings every twin's app gets (names as the handler reads them), from the identity
/// (owned by `shared`), Application Insights and the host storage account (owned by the app
/// layer `app`); other layers add theirs with `extra`.
pub fn base_settings(
    ctx: &LayerContext<'_>,
    shared: Layer,
    app: Layer,
) -> BTreeMap<String, Setting> {
    let identity = resource_id(shared, identity::KIND, "twin");
    let insights = spec_id(app, insights::KIND, TWIN_KEY);
    let account = names::function_storage_account_name(ctx.name(), ctx.arm.subscription_id());
    let client_id = |template: Option<&str>| Setting::Attr {
        dep: identity.0.clone(),
        attr: "client_id".into(),
        template: template.map(str::to_string),
    };
    let mut s = BTreeMap::new();
    // Host storage by identity: no connection string, no key (SPEC §9).
    s.insert(
        "AzureWebJobsStorage__accountName".into(),
        Setting::literal(account),
    );
    s.insert(
        "AzureWebJobsStorage__credential".into(),
        Setting::literal("managedidentity"),
    );
    s.insert("AzureWebJobsStorage__clientId".into(), client_id(None));
    // The handler's own Azure SDK credential picks the user-assigned identity by client id.
    s.insert("AZURE_CLIENT_ID".into(), client_id(None));
    s.insert(
        "APPLICATIONINSIGHTS_CONNECTION_STRING".into(),
        Setting::ArmProperty {
            dep: insights.0.clone(),
            pointer: "/properties/ConnectionString".into(),
            api: insights::API.into(),
        },
    );
    s.insert(
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING".into(),
        client_id(Some("Authorization=AAD;ClientId={}")),
    );
    s.insert("TWIN_NAME".into(), Setting::literal(ctx.name()));
    s.insert(
        "HOT_STORAGE_DAYS".into(),
        Setting::literal(ctx.twin.twin.hot_storage_size_in_days.to_string()),
    );
    s.insert(
        "COLD_STORAGE_DAYS".into(),
        Setting::literal(ctx.twin.twin.cold_storage_size_in_days.to_string()),
    );
    s.insert("LOG_LEVEL".into(), Setting::literal(log_level(ctx.twin)));
    s
}

/// The config's `mode` as the handler reads it (`DEBUG` / `INFO`).
fn log_level(twin: &TwinConfig) -> &'static str {
    twin.twin.mode.as_str()
}

/// The Function App's resources on Azure, under the app layer `app` ([`app_layer`]). `shared`
/// is the layer owning the group and the identity; `package` is the built package (its hash
/// and functions are the package's desired settings); `extra` are app settings other layers
/// need (they win over the base ones).
pub fn layer_specs(
    ctx: &LayerContext<'_>,
    shared: Layer,
    app: Layer,
    package: &AppPackage,
    extra: &BTreeMap<String, Setting>,
) -> Vec<ResourceSpec> {
    let layer = app;
    let sub = ctx.arm.subscription_id();
    let group = resource_id(shared, crate::resource_group::KIND, "twin");
    let identity = resource_id(shared, identity::KIND, "twin");
    let account_name = names::function_storage_account_name(ctx.name(), sub);
    let app_name = names::azure_unique_name(ctx.name(), "func", sub);

    let mut account_desired = l3::storage::desired(ctx.location);
    // The host writes leases and logs all the time: the hot tier.
    account_desired["access_tier"] = json!("Hot");
    let account = ctx
        .spec(
            layer,
            l3::storage::KIND,
            HOST_ACCOUNT_KEY,
            account_name.clone(),
        )
        .desired(account_desired)
        .depends_on([group.clone()]);
    let mut container = ctx
        .spec(
            layer,
            l3::containers::KIND,
            PACKAGE_CONTAINER,
            PACKAGE_CONTAINER,
        )
        .desired(l3::containers::desired())
        .depends_on([account.id.clone()]);
    container.inputs[l3::containers::ACCOUNT_KEY] = json!(account_name);

    let workspace = ctx
        .spec(
            layer,
            workspace::KIND,
            TWIN_KEY,
            format!("{}-logs", ctx.name()),
        )
        .desired(workspace::desired())
        .depends_on([group.clone()]);
    let mut insights = ctx
        .spec(
            layer,
            insights::KIND,
            TWIN_KEY,
            format!("{}-insights", ctx.name()),
        )
        .desired(insights::desired())
        .depends_on([workspace.id.clone()]);
    insights.inputs[insights::WORKSPACE_KEY] = json!(workspace.id.0);
    let plan = ctx
        .spec(layer, plan::KIND, TWIN_KEY, format!("{}-plan", ctx.name()))
        .desired(plan::desired())
        .depends_on([group.clone()]);
    let mut site = ctx
        .spec(layer, site::KIND, TWIN_KEY, app_name.clone())
        .desired(site::desired())
        .depends_on([
            plan.id.clone(),
            identity.clone(),
            account.id.clone(),
            container.id.clone(),
        ]);
    site.inputs[site::PLAN_KEY] = json!(plan.id.0);
    site.inputs[site::IDENTITY_KEY] = json!(identity.0);
    site.inputs[site::ACCOUNT_KEY] = json!(account.id.0);
    site.inputs[site::CONTAINER_KEY] = json!(PACKAGE_CONTAINER);
    if package
        .functions
        .iter()
        .any(|f| f == AppFunction::IngressCold.name())
    {
        site.inputs[site::INGRESS_COLD_KEY] = json!(true);
    }

    let mut all = base_settings(ctx, shared, app);
    all.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    let app_settings = settings::spec(ctx, &site, &app_name, &all);

    let policies: Vec<ResourceSpec> = publishing::POLICIES
        .iter()
        .map(|p| {
            let mut s = ctx
                .spec(layer, publishing::KIND, p, *p)
                .desired(publishing::desired())
                .depends_on([site.id.clone()]);
            s.inputs[publishing::SITE_KEY] = json!(app_name);
            s
        })
        .collect();

    let mut deps = vec![site.id.clone(), app_settings.id.clone()];
    deps.extend(policies.iter().map(|p| p.id.clone()));
    let mut pkg = ctx
        .spec(layer, package::KIND, "handler", app_name.clone())
        .desired(package::desired(package))
        .depends_on(deps);
    pkg.inputs[package::SITE_SPEC_KEY] = json!(site.id.0);

    let mut specs = vec![
        account,
        container,
        workspace,
        insights,
        plan,
        site,
        app_settings,
    ];
    specs.extend(policies);
    specs.push(pkg);
    specs
}

/// `.../providers/Microsoft.Web/sites/<name>` in the spec's group.
pub(crate) fn site_path(ctx_arm: &crate::arm::ArmClient, group: &str, name: &str) -> String {
    resource_path(ctx_arm, group, site::TYPE, name)
}

/// Whether two ARM ids name the same resource (ARM ids are case-insensitive).
pub(crate) fn same_id(a: Option<&str>, b: &str) -> bool {
    a.is_some_and(|a| {
        a.trim_end_matches('/')
            .eq_ignore_ascii_case(b.trim_end_matches('/'))
    })
}

/// "linked" when `ok`, else "other": how a reference to another resource is reported, so
/// the desired settings need no cloud-assigned id.
pub(crate) fn link(ok: bool) -> Value {
    json!(if ok { "linked" } else { "other" })
}
