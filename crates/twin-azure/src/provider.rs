//! The Azure `Provider`: which resources each layer has, and the driver of each resource kind.
//! L1 (IoT Hub, device identities, Event Grid to the dispatcher) and L3 hot, cold and archive
//! are implemented; the other layers describe nothing yet.

use crate::arm::errors::SetupError;
use crate::arm::{ArmClient, ArmOptions};
use crate::context::LayerContext;
use crate::roles::{self, RoleScope};
use crate::{discover, identity, l1, l3, resource_group};
use async_trait::async_trait;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use twin_config::{names, AzureSettings, Layer, ProviderName, TwinConfig};
use twin_engine::{CloudError, Provider, ResourceDriver, ResourceSpec};

/// Environment variable naming the subscription when the config does not.
pub const SUBSCRIPTION_ENV: &str = "AZURE_SUBSCRIPTION_ID";

/// The layers this provider implements, in dependency order.
pub const IMPLEMENTED: &[Layer] = &[Layer::L1, Layer::L3Hot, Layer::L3Cold, Layer::L3Archive];

/// Deploys a twin's Azure layers into its own resource group.
pub struct AzureProvider {
    arm: Arc<ArmClient>,
    tenant_id: String,
    location: String,
    resource_group: Option<String>,
    drivers: HashMap<&'static str, Arc<dyn ResourceDriver>>,
}

impl AzureProvider {
    /// Connects to ARM for the config's `azure` settings: the subscription from
    /// `subscription_id` or `AZURE_SUBSCRIPTION_ID`, the endpoint and token from the
    /// environment (see [`ArmClient::from_env`]); reads the subscription's tenant.
    pub async fn new(settings: &AzureSettings) -> Result<Self, CloudError> {
        let subscription = settings
            .subscription_id
            .clone()
            .or_else(|| {
                std::env::var(SUBSCRIPTION_ENV)
                    .ok()
                    .filter(|s| !s.is_empty())
            })
            .ok_or(SetupError::NoSubscription)?;
        let arm = ArmClient::from_env(&subscription, ArmOptions::default())?;
        Self::with_client(Arc::new(arm), settings).await
    }

    /// A provider on a given client (tests, or a caller with its own options).
    pub async fn with_client(
        arm: Arc<ArmClient>,
        settings: &AzureSettings,
    ) -> Result<Self, CloudError> {
        let location = settings.location.clone().ok_or(SetupError::NoLocation)?;
        let tenant_id = arm.tenant_id().await?;
        let mut drivers: HashMap<&'static str, Arc<dyn ResourceDriver>> = HashMap::new();
        drivers.insert(
            resource_group::KIND,
            Arc::new(resource_group::ResourceGroupDriver::new(arm.clone())),
        );
        drivers.insert(
            identity::KIND,
            Arc::new(identity::IdentityDriver::new(arm.clone())),
        );
        drivers.insert(
            l3::storage::KIND,
            Arc::new(l3::storage::StorageAccountDriver::new(arm.clone())),
        );
        drivers.insert(
            l3::containers::KIND,
            Arc::new(l3::containers::ContainerDriver::new(arm.clone())),
        );
        drivers.insert(
            roles::KIND,
            Arc::new(roles::RoleAssignmentDriver::new(arm.clone())),
        );
        drivers.insert(
            l3::hot::account::KIND,
            Arc::new(l3::hot::account::CosmosAccountDriver::new(arm.clone())),
        );
        drivers.insert(
            l3::hot::database::KIND,
            Arc::new(l3::hot::database::SqlDatabaseDriver::new(arm.clone())),
        );
        drivers.insert(
            l3::hot::container::KIND,
            Arc::new(l3::hot::container::SqlContainerDriver::new(arm.clone())),
        );
        drivers.insert(
            l3::hot::data_role::KIND,
            Arc::new(l3::hot::data_role::SqlRoleAssignmentDriver::new(
                arm.clone(),
            )),
        );
        drivers.insert(
            l1::hub::KIND,
            Arc::new(l1::hub::IotHubDriver::new(arm.clone())),
        );
        drivers.insert(
            l1::devices::KIND,
            Arc::new(l1::devices::DeviceIdentityDriver::new(arm.clone())),
        );
        drivers.insert(
            l1::event_grid::TOPIC_KIND,
            Arc::new(l1::event_grid::SystemTopicDriver::new(arm.clone())),
        );
        drivers.insert(
            l1::event_grid::SUBSCRIPTION_KIND,
            Arc::new(l1::event_grid::EventSubscriptionDriver::new(arm.clone())),
        );
        drivers.insert(
            l1::simulator_config::KIND,
            Arc::new(l1::simulator_config::SimulatorConfigDriver),
        );
        Ok(AzureProvider {
            arm,
            tenant_id,
            location,
            resource_group: settings.resource_group.clone(),
            drivers,
        })
    }

    /// The ARM client.
    pub fn arm(&self) -> &Arc<ArmClient> {
        &self.arm
    }

    fn ctx<'a>(&'a self, twin: &'a TwinConfig) -> LayerContext<'a> {
        LayerContext {
            twin,
            arm: &self.arm,
            location: &self.location,
            resource_group: self
                .resource_group
                .clone()
                .unwrap_or_else(|| names::resource_group(twin.name())),
        }
    }
}

/// The first implemented layer on Azure: it owns the resources every Azure layer shares (the
/// resource group, the identity).
pub fn shared_layer(twin: &TwinConfig) -> Option<Layer> {
    IMPLEMENTED
        .iter()
        .copied()
        .find(|l| twin.providers.get(*l) == ProviderName::Azure)
}

/// The resource group's spec.
pub fn group_spec(ctx: &LayerContext<'_>, layer: Layer) -> ResourceSpec {
    ctx.spec(
        layer,
        resource_group::KIND,
        "twin",
        ctx.resource_group.clone(),
    )
    .desired(resource_group::desired(ctx.location))
}

fn layer_specs(ctx: &LayerContext<'_>, layer: Layer) -> Vec<ResourceSpec> {
    let Some(shared) = shared_layer(ctx.twin) else {
        return Vec::new();
    };
    if !IMPLEMENTED.contains(&layer) || ctx.twin.providers.get(layer) != ProviderName::Azure {
        return Vec::new();
    }
    let group = group_spec(ctx, shared);
    let mut specs = Vec::new();
    if layer == shared {
        specs.push(group.clone());
        specs.push(
            ctx.spec(
                layer,
                identity::KIND,
                "twin",
                names::managed_identity_name(ctx.name()),
            )
            .desired(identity::desired(ctx.location))
            .depends_on([group.id.clone()]),
        );
    }
    match layer {
        Layer::L1 => specs.extend(l1::specs(ctx, &group.id)),
        Layer::L3Hot => specs.extend(hot_specs(ctx, layer, &group)),
        Layer::L3Cold | Layer::L3Archive => specs.extend(cold_archive_specs(ctx, layer, &group)),
        _ => {}
    }
    specs
}

/// L3 hot: the Cosmos DB account, its database and container, and the identity's data role.
fn hot_specs(ctx: &LayerContext<'_>, layer: Layer, group: &ResourceSpec) -> Vec<ResourceSpec> {
    let Some(principal) = roles::twin_principal(ctx) else {
        return Vec::new();
    };
    let account_name = l3::hot::account_name(ctx.name(), ctx.arm.subscription_id());
    let account_path = crate::context::resource_path(
        ctx.arm,
        &ctx.resource_group,
        l3::hot::account::TYPE,
        &account_name,
    );
    let database_name = l3::hot::database_name(ctx.name());
    let account = ctx
        .spec(layer, l3::hot::account::KIND, "hot", account_name.clone())
        .desired(l3::hot::account::desired(ctx.location))
        .depends_on([group.id.clone()]);
    let mut database = ctx
        .spec(layer, l3::hot::database::KIND, "hot", database_name.clone())
        .desired(l3::hot::database::desired(&database_name))
        .depends_on([account.id.clone()]);
    database.inputs[l3::hot::ACCOUNT_KEY] = json!(account_name);
    let mut container = ctx
        .spec(
            layer,
            l3::hot::container::KIND,
            "hot",
            l3::hot::CONTAINER_NAME,
        )
        .desired(l3::hot::container::desired(l3::hot::CONTAINER_NAME))
        .depends_on([database.id.clone()]);
    container.inputs[l3::hot::ACCOUNT_KEY] = json!(account_name);
    container.inputs[l3::hot::DATABASE_KEY] = json!(database_name);
    let mut data_role = ctx
        .spec(
            layer,
            l3::hot::data_role::KIND,
            "hot",
            l3::hot::data_role::assignment_name(&account_path, &principal),
        )
        .desired(l3::hot::data_role::desired(&account_path))
        .depends_on([account.id.clone(), principal.spec.clone()]);
    data_role.inputs[l3::hot::ACCOUNT_KEY] = json!(account_name);
    data_role.inputs[roles::PRINCIPAL_KEY] = json!(principal.spec.0);
    vec![account, database, container, data_role]
}

/// The first of L3 cold and archive on Azure: it owns the storage account both tiers share.
fn storage_layer(twin: &TwinConfig) -> Option<Layer> {
    [Layer::L3Cold, Layer::L3Archive]
        .into_iter()
        .find(|l| twin.providers.get(*l) == ProviderName::Azure)
}

/// L3 cold or archive: its blob container, and in the first of them the storage account with
/// the identity's Storage Blob Data Contributor role on it.
fn cold_archive_specs(
    ctx: &LayerContext<'_>,
    layer: Layer,
    group: &ResourceSpec,
) -> Vec<ResourceSpec> {
    let Some(home) = storage_layer(ctx.twin) else {
        return Vec::new();
    };
    let mut specs = Vec::new();
    let account_id = crate::context::resource_id(home, l3::storage::KIND, "cold-archive");
    let account_name = names::storage_account_name(ctx.name(), ctx.arm.subscription_id());
    if layer == home {
        specs.push(
            ctx.spec(
                layer,
                l3::storage::KIND,
                "cold-archive",
                account_name.clone(),
            )
            .desired(l3::storage::desired(ctx.location))
            .depends_on([group.id.clone()]),
        );
        if let Some(principal) = roles::twin_principal(ctx) {
            let scope = RoleScope {
                spec: account_id.clone(),
                path: crate::context::resource_path(
                    ctx.arm,
                    &ctx.resource_group,
                    l3::storage::TYPE,
                    &account_name,
                ),
            };
            specs.push(roles::assignment_spec(
                ctx,
                layer,
                &scope,
                &roles::STORAGE_BLOB_DATA_CONTRIBUTOR,
                &principal,
            ));
        }
    }
    let tier = if layer == Layer::L3Cold {
        "cold"
    } else {
        "archive"
    };
    let mut container = ctx
        .spec(
            layer,
            l3::containers::KIND,
            tier,
            names::blob_container_name(tier),
        )
        .desired(l3::containers::desired())
        .depends_on([account_id]);
    container.inputs[l3::containers::ACCOUNT_KEY] = json!(account_name);
    specs.push(container);
    specs
}

#[async_trait]
impl Provider for AzureProvider {
    fn name(&self) -> ProviderName {
        ProviderName::Azure
    }

    fn scope(&self) -> twin_engine::Scope {
        [
            ("tenant", self.tenant_id.clone()),
            ("subscription", self.arm.subscription_id().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    async fn layer_resources(
        &self,
        layer: Layer,
        twin: &TwinConfig,
    ) -> Result<Vec<ResourceSpec>, CloudError> {
        Ok(layer_specs(&self.ctx(twin), layer))
    }

    fn driver(&self, kind: &str) -> Option<Arc<dyn ResourceDriver>> {
        self.drivers.get(kind).cloned()
    }

    async fn discover(
        &self,
        layer: Layer,
        twin: &TwinConfig,
    ) -> Result<Vec<ResourceSpec>, CloudError> {
        // Everything lives in the one group, found once: under the shared layer, or under L3
        // cold when no layer is on Azure any more (a twin that moved off Azure).
        let home = shared_layer(twin).unwrap_or(Layer::L3Cold);
        if layer != home {
            return Ok(Vec::new());
        }
        discover::discover(&self.ctx(twin), layer).await
    }
}
