//! The Azure `Provider`: which resources each layer has, and the driver of each resource kind.
//! L2 (the Function App) and L3 cold and archive are implemented; the other layers describe
//! nothing yet.

use crate::arm::errors::SetupError;
use crate::arm::{ArmClient, ArmOptions};
use crate::context::{resource_id, LayerContext};
use crate::l2::package::{DeployPolling, PackageDriver};
use crate::l2::AppPackageSource;
use crate::{discover, identity, l2, l3, resource_group};
use async_trait::async_trait;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use twin_config::{names, AzureSettings, Layer, ProviderName, TwinConfig};
use twin_engine::{CloudError, Provider, ResourceDriver, ResourceSpec};

/// Environment variable naming the subscription when the config does not.
pub const SUBSCRIPTION_ENV: &str = "AZURE_SUBSCRIPTION_ID";

/// The layers this provider implements, in dependency order.
const IMPLEMENTED: [Layer; 3] = [Layer::L2, Layer::L3Cold, Layer::L3Archive];

/// Deploys a twin's Azure layers into its own resource group.
pub struct AzureProvider {
    arm: Arc<ArmClient>,
    tenant_id: String,
    location: String,
    resource_group: Option<String>,
    drivers: HashMap<&'static str, Arc<dyn ResourceDriver>>,
    package_source: Option<Arc<dyn AppPackageSource>>,
    package_driver: Arc<PackageDriver>,
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
        let l2_drivers: [(&'static str, Arc<dyn ResourceDriver>); 6] = [
            (
                l2::workspace::KIND,
                Arc::new(l2::workspace::WorkspaceDriver::new(arm.clone())),
            ),
            (
                l2::insights::KIND,
                Arc::new(l2::insights::InsightsDriver::new(arm.clone())),
            ),
            (
                l2::plan::KIND,
                Arc::new(l2::plan::PlanDriver::new(arm.clone())),
            ),
            (
                l2::site::KIND,
                Arc::new(l2::site::SiteDriver::new(arm.clone())),
            ),
            (
                l2::settings::KIND,
                Arc::new(l2::settings::AppSettingsDriver::new(arm.clone())),
            ),
            (
                l2::publishing::KIND,
                Arc::new(l2::publishing::PublishingPolicyDriver::new(arm.clone())),
            ),
        ];
        drivers.extend(l2_drivers);
        let package_driver = Arc::new(PackageDriver::new(arm.clone(), DeployPolling::default()));
        drivers.insert(l2::package::KIND, package_driver.clone());
        Ok(AzureProvider {
            arm,
            tenant_id,
            location,
            resource_group: settings.resource_group.clone(),
            drivers,
            package_source: None,
            package_driver,
        })
    }

    /// The same provider building L2's Function App package with `source`, and waiting for
    /// its deployments as `polling` says. Without a source, a twin with L2 on Azure is refused.
    pub fn with_app_package(
        mut self,
        source: Arc<dyn AppPackageSource>,
        polling: DeployPolling,
    ) -> Self {
        let driver = Arc::new(PackageDriver::new(self.arm.clone(), polling));
        self.drivers.insert(l2::package::KIND, driver.clone());
        self.package_driver = driver;
        self.package_source = Some(source);
        self
    }

    /// L2's specs: builds the package (its hash is the package's desired setting) and keeps
    /// it for the package driver.
    async fn l2_specs(&self, twin: &TwinConfig) -> Result<Vec<ResourceSpec>, CloudError> {
        let ctx = self.ctx(twin);
        let Some(shared) = shared_layer(twin) else {
            return Ok(Vec::new());
        };
        let source = self.package_source.as_ref().ok_or_else(|| {
            CloudError::fatal(
                "NoPackageBuilder",
                "L2 is on Azure but this deployer has no Function App package builder",
            )
            .with_hint("put layer_2_provider on another cloud, or use a deployer built with the Azure handler")
        })?;
        let package = source.package(twin).await?;
        self.package_driver.remember(package.clone());
        let mut specs = shared_specs(&ctx, Layer::L2);
        specs.extend(l2::layer_specs(&ctx, shared, &package, &BTreeMap::new()));
        Ok(specs)
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

/// The resources the shared layer owns: the group and the twin's identity.
fn shared_specs(ctx: &LayerContext<'_>, layer: Layer) -> Vec<ResourceSpec> {
    if shared_layer(ctx.twin) != Some(layer) {
        return Vec::new();
    }
    let group = group_spec(ctx, layer);
    let identity = ctx
        .spec(
            layer,
            identity::KIND,
            "twin",
            names::managed_identity_name(ctx.name()),
        )
        .desired(identity::desired(ctx.location))
        .depends_on([group.id.clone()]);
    vec![group, identity]
}

/// The first of L3 cold and archive on Azure: it owns their storage account.
fn l3_home(twin: &TwinConfig) -> Option<Layer> {
    [Layer::L3Cold, Layer::L3Archive]
        .into_iter()
        .find(|l| twin.providers.get(*l) == ProviderName::Azure)
}

fn l3_specs(ctx: &LayerContext<'_>, layer: Layer) -> Vec<ResourceSpec> {
    let (Some(shared), Some(home)) = (shared_layer(ctx.twin), l3_home(ctx.twin)) else {
        return Vec::new();
    };
    let group = resource_id(shared, resource_group::KIND, "twin");
    let account_name = names::storage_account_name(ctx.name(), ctx.arm.subscription_id());
    let mut specs = shared_specs(ctx, layer);
    if layer == home {
        specs.push(
            ctx.spec(
                layer,
                l3::storage::KIND,
                "cold-archive",
                account_name.clone(),
            )
            .desired(l3::storage::desired(ctx.location))
            .depends_on([group]),
        );
    }
    let account_id = resource_id(home, l3::storage::KIND, "cold-archive");
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
        if !IMPLEMENTED.contains(&layer) || twin.providers.get(layer) != ProviderName::Azure {
            return Ok(Vec::new());
        }
        if layer == Layer::L2 {
            return self.l2_specs(twin).await;
        }
        Ok(l3_specs(&self.ctx(twin), layer))
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
