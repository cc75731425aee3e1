//! Layer 5 on Azure (SPEC §9): an Azure Managed Grafana a person can open, showing the twin's
//! hot data.
//!
//! - The Grafana ([`grafana`]): `Microsoft.Dashboard/grafana`, Standard, with the Infinity
//!   plugin; its `endpoint` as ARM reports it is where every Grafana API call goes.
//! - The deployer's Grafana Admin role on it (a role assignment with its own principal id): the
//!   data source, folder and dashboard are made through the Grafana HTTP API with the
//!   deployer's Entra token ([`access::EntraGrafanaAuth`]), retried while the role propagates.
//! - The data source: Infinity calling the hot reader of the twin's Function App with the
//!   function's key in `secureJsonData` ([`access::HotReaderLink`]). The hot reader works for
//!   every mix of L4 (even none), so it is what the panels read.
//! - The twin's folder and the starter dashboard (a panel per device property, rows by
//!   hierarchy), made from the config by `twin_grafana::dashboard_model` as on AWS, updated
//!   when its hash changes, deleted by destroy (deleting the Grafana deletes them too).

pub mod access;
pub mod grafana;

use crate::arm::ArmClient;
use crate::context::{resource_path, LayerContext};
use crate::l2;
use crate::roles::{self, RoleScope};
use serde_json::json;
use std::sync::Arc;
use twin_config::{names, Layer, ProviderName};
use twin_engine::{CloudError, InfoRow, ResourceDriver, ResourceId, ResourceSpec};
use twin_grafana::api::{grafana_uid, GrafanaApi};
use twin_grafana::dashboard_model::{self, Source};
use twin_grafana::data_plane::{
    DashboardDriver, DatasourceDriver, FolderDriver, DASHBOARD_KIND, DATASOURCE_KIND, FOLDER_KIND,
    HEALTHY,
};

pub use twin_grafana::dashboard_model::{dashboard_uid, folder_uid};

/// The id of the Grafana spec.
pub fn grafana_id() -> ResourceId {
    crate::context::resource_id(Layer::L5, grafana::KIND, "grafana")
}

/// The Grafana uid of the hot data source (`<twin>-hot`).
pub fn datasource_uid(twin: &str) -> String {
    grafana_uid(twin, "hot")
}

/// The Grafana's name: globally unique (it is part of its endpoint), at most 23 characters.
pub fn grafana_name(twin: &str, subscription_id: &str) -> String {
    names::azure_unique_name(twin, "graf", subscription_id)
}

/// The resources of layer 5 (all depending on the resource group `group`); `deployer` is the
/// deployer's principal id, which gets Grafana Admin on the Grafana.
pub fn specs(
    ctx: &LayerContext<'_>,
    group: &ResourceId,
    deployer: &str,
) -> Result<Vec<ResourceSpec>, CloudError> {
    for (layer, why) in [
        (
            Layer::L2,
            "the hot reader runs in the Function App of layer 2",
        ),
        (Layer::L3Hot, "the hot reader reads hot storage on Azure"),
    ] {
        if ctx.twin.providers.get(layer) != ProviderName::Azure {
            return Err(CloudError::fatal(
                "GrafanaWithoutHotReader",
                format!(
                    "layer_5_provider is azure, but {} is not: Grafana on Azure shows the hot data through the hot reader, and {why}",
                    layer.key()
                ),
            )
            .with_hint(format!("put {} on azure, or layer_5_provider on another cloud", layer.key())));
        }
    }
    let twin = ctx.name();
    let name = grafana_name(twin, ctx.arm.subscription_id());
    let grafana = ctx
        .spec(Layer::L5, grafana::KIND, "grafana", name.clone())
        .desired(grafana::desired(ctx.location))
        .depends_on([group.clone()]);
    let scope = RoleScope {
        spec: grafana.id.clone(),
        path: resource_path(ctx.arm, &ctx.resource_group, grafana::TYPE, &name),
    };
    let admin = roles::principal_id_assignment_spec(
        ctx,
        Layer::L5,
        &scope,
        &roles::GRAFANA_ADMIN,
        deployer,
    );
    let api_deps = [grafana.id.clone(), admin.id.clone()];
    let ds_uid = datasource_uid(twin);
    let datasource = ctx
        .spec(Layer::L5, DATASOURCE_KIND, "hot", ds_uid.clone())
        // The key is listed from the app once its package holds the hot reader.
        .depends_on(api_deps.clone())
        // Grafana on Azure needs L2 there (checked above), so the app layer is L2.
        .depends_on([l2::site_id(Layer::L2), l2::package_id(Layer::L2)])
        .desired(json!({
            "name": format!("{twin} hot data"),
            "type": dashboard_model::INFINITY_TYPE,
            "access": "proxy",
            "jsonData": {"httpHeaderName1": access::KEY_HEADER},
            "health": HEALTHY,
            "url_current": true,
            "key_set": true,
        }));
    let folder = ctx
        .spec(Layer::L5, FOLDER_KIND, "twin", folder_uid(twin))
        .depends_on(api_deps.clone())
        .desired(dashboard_model::folder_desired(twin));
    let hierarchy = ctx.twin.hierarchy.as_deref().unwrap_or_default();
    let (desired, model) = dashboard_model::starter(
        twin,
        Source::HotReader,
        &ds_uid,
        &ctx.twin.devices,
        hierarchy,
    );
    let mut dashboard = ctx
        .spec(Layer::L5, DASHBOARD_KIND, "starter", dashboard_uid(twin))
        .depends_on(api_deps)
        .depends_on([folder.id.clone(), datasource.id.clone()])
        .desired(desired);
    dashboard.inputs["dashboard"] = model;
    Ok(vec![grafana, admin, datasource, folder, dashboard])
}

/// A driver kind and its driver.
pub type KindDriver = (&'static str, Arc<dyn ResourceDriver>);

/// The drivers of this layer's kinds, by kind.
pub fn drivers(arm: &Arc<ArmClient>) -> Result<Vec<KindDriver>, CloudError> {
    let api = Arc::new(GrafanaApi::new(Arc::new(access::EntraGrafanaAuth::new(
        arm.clone(),
    )))?);
    Ok(vec![
        (
            grafana::KIND,
            Arc::new(grafana::ManagedGrafanaDriver::new(arm.clone())),
        ),
        (
            DATASOURCE_KIND,
            Arc::new(DatasourceDriver::new(
                api.clone(),
                Arc::new(access::HotReaderLink::new(arm.clone())),
            )),
        ),
        (FOLDER_KIND, Arc::new(FolderDriver::new(api.clone()))),
        (DASHBOARD_KIND, Arc::new(DashboardDriver::new(api))),
    ])
}

/// The lines `info` prints about Grafana on Azure: the Grafana's URL, the data source's health
/// and the dashboard's URL.
pub fn info_lines(rows: &[InfoRow]) -> Vec<String> {
    twin_grafana::info::info_lines(rows, ProviderName::Azure, "Azure Managed Grafana")
}
