//! The Azure `Provider`: which resources each layer has, and the driver of each resource kind.
//! L1 (IoT Hub, device identities, Event Grid to the dispatcher) and L3 cold and archive are
//! implemented; the other layers describe nothing yet.

use crate::arm::errors::SetupError;
use crate::arm::{ArmClient, ArmOptions};
use crate::context::LayerContext;
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
const IMPLEMENTED: [Layer; 3] = [Layer::L1, Layer::L3Cold, Layer::L3Archive];

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
        .into_iter()
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

/// Whether the twin keeps L3 cold or archive on Azure (they share one storage account).
fn storage_on_azure(twin: &TwinConfig) -> bool {
    [Layer::L3Cold, Layer::L3Archive]
        .into_iter()
        .any(|l| twin.providers.get(l) == ProviderName::Azure)
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
        let identity = ctx
            .spec(
                layer,
                identity::KIND,
                "twin",
                names::managed_identity_name(ctx.name()),
            )
            .desired(identity::desired(ctx.location))
            .depends_on([group.id.clone()]);
        specs.push(identity);
        if storage_on_azure(ctx.twin) {
            let account = ctx
                .spec(
                    layer,
                    l3::storage::KIND,
                    "cold-archive",
                    names::storage_account_name(ctx.name(), ctx.arm.subscription_id()),
                )
                .desired(l3::storage::desired(ctx.location))
                .depends_on([group.id.clone()]);
            specs.push(account);
        }
    }
    if layer == Layer::L1 {
        specs.extend(l1::specs(ctx, &group.id));
    } else {
        let account_id = crate::context::resource_id(shared, l3::storage::KIND, "cold-archive");
        let account_name = names::storage_account_name(ctx.name(), ctx.arm.subscription_id());
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
    }
    if layer == shared {
        specs.insert(0, group);
    }
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
