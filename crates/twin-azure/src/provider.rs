//! The Azure `Provider`: which resources each layer has, and the driver of each resource kind.
//! L1 (IoT Hub, device identities, Event Grid to the dispatcher), L2 (processor and persister),
//! L3 hot, cold and archive, L4 (Azure Digital Twins) and L5 (Azure Managed Grafana) are
//! implemented. Every function of the twin on Azure runs in one Function App, described under
//! the twin's app layer (`l2::app_layer`: L2, else L3 hot, else L3 cold).

use crate::arm::errors::SetupError;
use crate::arm::{ArmClient, ArmOptions};
use crate::context::LayerContext;
use crate::l2::package::{DeployPolling, PackageDriver};
use crate::l2::{AppPackage, AppPackageSource};
use crate::roles::{self, RoleScope};
use crate::{discover, identity, l1, l2, l3, l4, l5, resource_group};
use async_trait::async_trait;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use twin_config::{names, AzureSettings, Layer, ProviderName, TwinConfig};
use twin_engine::{CloudError, Provider, ResourceDriver, ResourceSpec};
use twin_functions_azure::app::AppFunction;

/// Environment variable naming the subscription when the config does not.
pub const SUBSCRIPTION_ENV: &str = "AZURE_SUBSCRIPTION_ID";

/// The layers this provider implements, in dependency order.
pub const IMPLEMENTED: &[Layer] = &[
    Layer::L1,
    Layer::L2,
    Layer::L3Hot,
    Layer::L3Cold,
    Layer::L3Archive,
    Layer::L4,
    Layer::L5,
];

/// Deploys a twin's Azure layers into its own resource group.
pub struct AzureProvider {
    arm: Arc<ArmClient>,
    tenant_id: String,
    location: String,
    resource_group: Option<String>,
    drivers: HashMap<&'static str, Arc<dyn ResourceDriver>>,
    package_source: Option<Arc<dyn AppPackageSource>>,
    package_driver: Arc<PackageDriver>,
    /// Whether the twin's Function App is described at all (see [`AzureProvider::without_app`]).
    describe_app: bool,
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

    /// The provider a deployer uses: [`AzureProvider::new`] with the Function App package
    /// built from the `azure-handler` crate found by `artifacts` (Flex Consumption runs
    /// x86-64 Linux only, whatever the AWS architecture setting says).
    pub async fn for_deployer(
        settings: &AzureSettings,
        functions_dir: Option<std::path::PathBuf>,
    ) -> Result<Self, CloudError> {
        let artifacts = Arc::new(twin_artifacts::Artifacts::new(
            functions_dir,
            twin_config::Architecture::X86_64,
        ));
        Ok(Self::new(settings).await?.with_app_package(
            Arc::new(l2::handler_package::HandlerPackage::new(artifacts)),
            DeployPolling::default(),
        ))
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
        let l2_drivers: [(&'static str, Arc<dyn ResourceDriver>); 7] = [
            (
                l2::events_topic::KIND,
                Arc::new(l2::events_topic::EventsTopicDriver::new(arm.clone())),
            ),
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
        drivers.extend(l5::drivers(&arm)?);
        let l4_drivers: [(&'static str, Arc<dyn ResourceDriver>); 4] = [
            (
                l4::instance::KIND,
                Arc::new(l4::instance::InstanceDriver::new(arm.clone())),
            ),
            (
                l4::models::KIND,
                Arc::new(l4::models::ModelsDriver::new(arm.clone())),
            ),
            (
                l4::graph::KIND,
                Arc::new(l4::graph::GraphDriver::new(arm.clone())),
            ),
            (
                l4::retire::KIND,
                Arc::new(l4::retire::RetireDriver::new(arm.clone())),
            ),
        ];
        drivers.extend(l4_drivers);
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
            describe_app: true,
        })
    }

    /// The same provider building the Function App package with `source`, and waiting for
    /// its deployments as `polling` says. Without a source, a twin with functions on Azure is
    /// refused.
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

    /// The Function App's package, for the app layer's specs: built (its hash is the package's
    /// desired setting) and kept for the package driver.
    async fn app_package(&self, twin: &TwinConfig, app: Layer) -> Result<AppPackage, CloudError> {
        let source = self.package_source.as_ref().ok_or_else(|| {
            CloudError::fatal(
                "NoPackageBuilder",
                format!(
                    "{} is on Azure and has functions, but this deployer has no Function App package builder",
                    app.key()
                ),
            )
            .with_hint(format!(
                "put {} on another cloud, or use a deployer built with the Azure handler",
                app.key()
            ))
        })?;
        let package = source.package(twin).await?;
        self.package_driver.remember(package.clone());
        Ok(package)
    }

    /// The same provider describing no Function App: only the other resources of the twin's
    /// Azure layers (tests of those layers, which then need no package builder). A deployer
    /// never uses it: a twin with functions on Azure gets its app or is refused.
    pub fn without_app(mut self) -> Self {
        self.describe_app = false;
        self
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

/// The specs of `layer`; the app layer's (`l2::app_layer`) include the Function App, built from
/// `package`; L1's, L4's and L5's need the deployer's principal id (the roles it gets).
fn layer_specs(
    ctx: &LayerContext<'_>,
    layer: Layer,
    package: Option<&AppPackage>,
    deployer: Option<&str>,
) -> Result<Vec<ResourceSpec>, CloudError> {
    let Some(shared) = shared_layer(ctx.twin) else {
        return Ok(Vec::new());
    };
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
        Layer::L1 => {
            let mut l1_specs = l1::specs(ctx, &group.id);
            if let Some(deployer) = deployer {
                add_deployer_roles(ctx, &mut l1_specs, deployer);
            }
            specs.extend(l1_specs);
        }
        // L2's only resources on Azure are its functions, in the app.
        Layer::L2 => {}
        Layer::L3Hot => specs.extend(hot_specs(ctx, layer, &group)),
        Layer::L3Cold | Layer::L3Archive => specs.extend(cold_archive_specs(ctx, layer, &group)),
        Layer::L4 => specs.extend(l4::specs(ctx, &group.id, deployer)?),
        Layer::L5 => {
            if let Some(deployer) = deployer {
                specs.extend(l5::specs(ctx, &group.id, deployer)?);
            }
        }
    }
    if l2::app_layer(ctx.twin) == Some(layer) {
        if let Some(package) = package {
            specs.extend(app_specs(ctx, shared, layer, &group, package)?);
        }
    }
    Ok(specs)
}

/// The Function App under the app layer `app`: its resources, the settings its functions read
/// from the other Azure layers, the identity's roles, and what the twin's event rules add when
/// the persister runs here.
fn app_specs(
    ctx: &LayerContext<'_>,
    shared: Layer,
    app: Layer,
    group: &ResourceSpec,
    package: &AppPackage,
) -> Result<Vec<ResourceSpec>, CloudError> {
    let functions = l2::handler_package::app_functions(ctx.twin);
    let mut settings = app_settings(ctx, &functions);
    let (event_specs, event_settings) = if functions.contains(&AppFunction::Persister) {
        event_rule_specs(ctx, app, group)?
    } else {
        // The rules fire in the persister: without it here they are another cloud's.
        Default::default()
    };
    settings.extend(event_settings);
    let mut app_specs = l2::layer_specs(ctx, shared, app, package, &settings);
    add_identity_roles(ctx, app, &mut app_specs);
    // The package (the app's first start) waits for the actions' rights, as for the
    // identity's other roles.
    let package_id = l2::package_id(app);
    if let Some(p) = app_specs.iter_mut().find(|s| s.id == package_id) {
        p.depends_on
            .extend(event_specs.iter().map(|s| s.id.clone()));
    }
    app_specs.extend(event_specs);
    Ok(app_specs)
}

/// The ARM path of a spec of this provider whose kind has a top-level ARM type.
fn arm_path(ctx: &LayerContext<'_>, spec: &ResourceSpec) -> Option<String> {
    let ty = match spec.kind.as_str() {
        l1::hub::KIND => l1::hub::TYPE,
        l3::storage::KIND => l3::storage::TYPE,
        l2::insights::KIND => l2::insights::TYPE,
        _ => return None,
    };
    Some(crate::context::resource_path(
        ctx.arm,
        &ctx.resource_group,
        ty,
        &spec.name,
    ))
}

/// L1's roles for the deployer itself (IoT Hub Registry Contributor on the hub: the device
/// registry is written with an Entra token), each a dependency of the specs that need it.
fn add_deployer_roles(ctx: &LayerContext<'_>, specs: &mut Vec<ResourceSpec>, deployer: &str) {
    for need in l1::role_needs(ctx) {
        let Some(role) = roles::builtin(need.role_definition) else {
            continue;
        };
        let Some(path) = specs
            .iter()
            .find(|s| s.id == need.scope)
            .and_then(|s| arm_path(ctx, s))
        else {
            continue;
        };
        let scope = RoleScope {
            spec: need.scope.clone(),
            path,
        };
        let assignment =
            roles::principal_id_assignment_spec(ctx, Layer::L1, &scope, &role, deployer);
        for s in specs.iter_mut().filter(|s| need.needed_by.contains(&s.id)) {
            s.depends_on.push(assignment.id.clone());
        }
        specs.push(assignment);
    }
}

/// The app's roles for the twin's identity (its host storage, Application Insights), each a
/// dependency of the package, so the first deployment finds its rights in place.
fn add_identity_roles(ctx: &LayerContext<'_>, app: Layer, specs: &mut Vec<ResourceSpec>) {
    let Some(principal) = roles::twin_principal(ctx) else {
        return;
    };
    let package = l2::package_id(app);
    for (scope_id, guid) in l2::role_needs(app) {
        let (Some(role), Some(path)) = (
            roles::builtin(guid),
            specs
                .iter()
                .find(|s| s.id == scope_id)
                .and_then(|s| arm_path(ctx, s)),
        ) else {
            continue;
        };
        let scope = RoleScope {
            spec: scope_id,
            path,
        };
        let assignment = roles::assignment_spec(ctx, app, &scope, &role, &principal);
        if let Some(p) = specs.iter_mut().find(|s| s.id == package) {
            p.depends_on.push(assignment.id.clone());
        }
        specs.push(assignment);
    }
}

/// What the twin's event rules add to the app (under `app`, where the persister runs):
/// `EVENT_RULES` for the persister; when a rule
/// sends feedback, the hub's host name (as ARM reports it) and the identity's "IoT Hub Data
/// Contributor" role on the hub (direct methods); when a rule notifies, the Event Grid topic,
/// its endpoint (as ARM reports it) and the identity's "EventGrid Data Sender" role on it.
/// Nothing for a twin without rules.
fn event_rule_specs(
    ctx: &LayerContext<'_>,
    app: Layer,
    group: &ResourceSpec,
) -> Result<(Vec<ResourceSpec>, BTreeMap<String, l2::Setting>), CloudError> {
    use twin_functions_azure::app::settings as names_of;
    let rules = &ctx.twin.events;
    let mut specs = Vec::new();
    let mut settings = BTreeMap::new();
    if rules.is_empty() {
        return Ok((specs, settings));
    }
    settings.insert(
        names_of::EVENT_RULES.to_string(),
        l2::Setting::literal(twin_config::events_env::rules_json(rules)),
    );
    let principal = roles::twin_principal(ctx);
    let feedback = rules.iter().any(|r| r.action.feedback().is_some());
    let notifies = rules
        .iter()
        .any(|r| matches!(r.action, twin_events::Action::Notification { .. }));
    if feedback {
        if ctx.twin.providers.get(Layer::L1) != ProviderName::Azure {
            return Err(CloudError::fatal(
                "FeedbackAcrossClouds",
                "an event rule sends feedback to a device, but layer 1 (the devices' hub) is not on Azure while layer 2 is",
            )
            .with_hint("put layers 1 and 2 on the same cloud, or drop the rule's feedback"));
        }
        let hub = l1::hub_spec_id();
        settings.insert(
            names_of::IOTHUB_HOSTNAME.to_string(),
            l2::Setting::Attr {
                dep: hub.0.clone(),
                attr: l1::hub::HOST_NAME.into(),
                template: None,
            },
        );
        if let Some(principal) = &principal {
            let hub_name = names::azure_unique_name(ctx.name(), "iot", ctx.arm.subscription_id());
            let scope = RoleScope {
                spec: hub,
                path: crate::context::resource_path(
                    ctx.arm,
                    &ctx.resource_group,
                    l1::hub::TYPE,
                    &hub_name,
                ),
            };
            specs.push(roles::assignment_spec(
                ctx,
                app,
                &scope,
                &roles::IOT_HUB_DATA_CONTRIBUTOR,
                principal,
            ));
        }
    }
    if notifies {
        let name = l2::events_topic::name(ctx.name());
        if let Some(problem) = l2::events_topic::name_problem(&name) {
            return Err(CloudError::fatal("NameTooLong", problem));
        }
        let topic = ctx
            .spec(app, l2::events_topic::KIND, l2::TWIN_KEY, name.clone())
            .desired(l2::events_topic::desired())
            .depends_on([group.id.clone()]);
        settings.insert(
            names_of::EVENT_TOPIC_ENDPOINT.to_string(),
            l2::Setting::Attr {
                dep: topic.id.0.clone(),
                attr: l2::events_topic::ENDPOINT.into(),
                template: None,
            },
        );
        if let Some(principal) = &principal {
            let scope = RoleScope {
                spec: topic.id.clone(),
                path: crate::context::resource_path(
                    ctx.arm,
                    &ctx.resource_group,
                    l2::events_topic::TYPE,
                    &name,
                ),
            };
            specs.push(roles::assignment_spec(
                ctx,
                app,
                &scope,
                &roles::EVENTGRID_DATA_SENDER,
                principal,
            ));
        }
        specs.push(topic);
    }
    Ok((specs, settings))
}

/// The app settings the app's `functions` read from the other Azure layers' resources, each
/// only when a function hosted there needs it (`required_settings`, the handler's own list):
/// Cosmos DB's endpoint (as ARM reports it), database and container for L3 hot; the storage
/// account's blob endpoint and the tiers' containers for L3 cold and archive; the nonce
/// ledger's container for `ingress-cold`; Digital Twins' host for the persister. The boundary
/// secrets `ingress-cold` needs are not among them: `AppSettingsSecretStore` writes those, so
/// their values are in no spec or state.
fn app_settings(
    ctx: &LayerContext<'_>,
    functions: &[AppFunction],
) -> BTreeMap<String, l2::Setting> {
    use twin_functions::env_vars;
    use twin_functions_azure::app::settings as names_of;
    let on = |l: Layer| ctx.twin.providers.get(l) == ProviderName::Azure;
    let required = twin_functions_azure::app::required_settings(functions);
    let needs = |name: &str| required.contains(&name);
    let mut s = BTreeMap::new();
    if on(Layer::L3Hot) && needs(names_of::COSMOS_ENDPOINT) {
        s.insert(
            names_of::COSMOS_ENDPOINT.to_string(),
            l2::Setting::Attr {
                dep: crate::context::resource_id(Layer::L3Hot, l3::hot::account::KIND, "hot").0,
                attr: "document_endpoint".into(),
                template: None,
            },
        );
        s.insert(
            names_of::COSMOS_DATABASE.to_string(),
            l2::Setting::literal(l3::hot::database_name(ctx.name())),
        );
        s.insert(
            env_vars::HOT_TABLE.to_string(),
            l2::Setting::literal(l3::hot::CONTAINER_NAME),
        );
    }
    if on(Layer::L4) && functions.contains(&AppFunction::Persister) {
        // The persister patches the device's twin at the host ARM reported for the instance.
        s.insert(
            names_of::ADT_ENDPOINT.to_string(),
            l2::Setting::Attr {
                dep: l4::instance_spec_id().0,
                attr: l4::instance::HOST_NAME.into(),
                template: None,
            },
        );
    }
    if let Some(home) = storage_layer(ctx.twin) {
        if needs(names_of::BLOB_ENDPOINT) {
            s.insert(
                names_of::BLOB_ENDPOINT.to_string(),
                l2::Setting::Attr {
                    dep: crate::context::resource_id(home, l3::storage::KIND, "cold-archive").0,
                    attr: "blob_endpoint".into(),
                    template: None,
                },
            );
        }
        for (name, tier) in [
            (env_vars::COLD_BUCKET, "cold"),
            (env_vars::ARCHIVE_BUCKET, "archive"),
        ] {
            if needs(name) {
                s.insert(
                    name.to_string(),
                    l2::Setting::literal(names::blob_container_name(tier)),
                );
            }
        }
        if needs(names_of::BOUNDARY_NONCE_CONTAINER) {
            s.insert(
                names_of::BOUNDARY_NONCE_CONTAINER.to_string(),
                l2::Setting::literal(l3::NONCE_CONTAINER),
            );
        }
    }
    s
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
    if layer == Layer::L3Cold && l2::receives_hot_to_cold(ctx.twin) {
        // `ingress-cold`'s nonce ledger: one blob per accepted request, in the cold tier's
        // account, where the identity already has Storage Blob Data Contributor.
        let mut nonces = ctx
            .spec(
                layer,
                l3::containers::KIND,
                "boundary-nonces",
                l3::NONCE_CONTAINER,
            )
            .desired(l3::containers::desired())
            .depends_on([crate::context::resource_id(
                home,
                l3::storage::KIND,
                "cold-archive",
            )]);
        nonces.inputs[l3::containers::ACCOUNT_KEY] = json!(account_name);
        specs.push(nonces);
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
        if !IMPLEMENTED.contains(&layer) || twin.providers.get(layer) != ProviderName::Azure {
            return Ok(Vec::new());
        }
        let package = match l2::app_layer(twin) {
            Some(app) if app == layer && self.describe_app => {
                Some(self.app_package(twin, app).await?)
            }
            _ => None,
        };
        let deployer = if matches!(layer, Layer::L1 | Layer::L4 | Layer::L5) {
            Some(l1::deployer_principal_id(&self.arm).await?)
        } else {
            None
        };
        layer_specs(
            &self.ctx(twin),
            layer,
            package.as_ref(),
            deployer.as_deref(),
        )
    }

    fn driver(&self, kind: &str) -> Option<Arc<dyn ResourceDriver>> {
        self.drivers.get(kind).cloned()
    }

    fn functions(&self) -> Option<Arc<dyn twin_engine::FunctionOps>> {
        Some(Arc::new(crate::function_ops::AzureFunctionOps::new(
            self.arm.clone(),
            self.location.clone(),
            self.resource_group.clone(),
            self.package_source.clone(),
            self.package_driver.clone(),
        )))
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
