//! The AWS `Provider`: which resources each layer has, and the driver of each resource kind.

use crate::artifacts::{self, ArtifactDriver, Artifacts};
use crate::context::LayerContext;
use crate::AwsClients;
use crate::{
    catalogue, dead_letters, discover, iam, l1, l2, l3, l4_twinmaker, l5_grafana, lambda_fn, logs,
    permissions,
};
use async_trait::async_trait;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use twin_config::{Layer, ProviderName, TwinConfig};
use twin_engine::{CloudError, Provider, ResourceDriver, ResourceSpec};

/// Deploys a twin's AWS layers.
pub struct AwsProvider {
    clients: Arc<AwsClients>,
    artifacts: Arc<Artifacts>,
    drivers: HashMap<&'static str, Arc<dyn ResourceDriver>>,
}

impl AwsProvider {
    /// Connects to AWS (region from the config's `aws` settings or the environment) for `twin`,
    /// finding function crates in `functions_dir` or the deployer's workspace.
    pub async fn new(
        twin: &TwinConfig,
        functions_dir: Option<PathBuf>,
    ) -> Result<Self, CloudError> {
        let settings = &twin.providers.aws;
        let clients = Arc::new(AwsClients::load(Some(settings)).await?);
        let arch = settings.architecture;
        Ok(Self::with_clients(
            clients,
            Arc::new(Artifacts::new(functions_dir, arch)),
        ))
    }

    /// A provider on given clients and code (tests).
    pub fn with_clients(clients: Arc<AwsClients>, artifacts: Arc<Artifacts>) -> Self {
        let mut drivers: HashMap<&'static str, Arc<dyn ResourceDriver>> = HashMap::new();
        drivers.insert(iam::KIND, Arc::new(iam::RoleDriver::new(clients.clone())));
        drivers.insert(
            crate::boundary_nonce_table::KIND,
            Arc::new(crate::boundary_nonce_table::NonceTableDriver::new(
                clients.clone(),
            )),
        );
        drivers.insert(
            crate::boundary_secret::KIND,
            Arc::new(crate::boundary_secret::BoundarySecretDriver::new(
                clients.clone(),
            )),
        );
        drivers.insert(
            crate::l2::events_topic::KIND,
            Arc::new(crate::l2::events_topic::EventsTopicDriver::new(
                clients.clone(),
            )),
        );
        drivers.insert(
            lambda_fn::KIND,
            Arc::new(lambda_fn::FunctionDriver::new(clients.clone())),
        );
        drivers.insert(
            logs::KIND,
            Arc::new(logs::LogGroupDriver::new(clients.clone())),
        );
        drivers.insert(
            artifacts::KIND,
            Arc::new(ArtifactDriver::new(clients.clone(), artifacts.clone())),
        );
        drivers.insert(
            catalogue::KIND,
            Arc::new(catalogue::CatalogueDriver::new(clients.clone())),
        );
        drivers.insert(
            permissions::KIND,
            Arc::new(permissions::PermissionDriver::new(clients.clone())),
        );
        drivers.insert(
            l3::buckets::KIND,
            Arc::new(l3::buckets::BucketDriver::new(clients.clone())),
        );
        drivers.insert(
            l3::table::KIND,
            Arc::new(l3::table::TableDriver::new(clients.clone())),
        );
        drivers.insert(
            l3::http_api::KIND,
            Arc::new(l3::http_api::HttpApiDriver::new(clients.clone())),
        );
        drivers.insert(
            l3::schedules::KIND,
            Arc::new(l3::schedules::ScheduleDriver::new(clients.clone())),
        );
        drivers.insert(
            l1::thing::KIND,
            Arc::new(l1::thing::ThingDriver::new(clients.clone())),
        );
        drivers.insert(
            l1::certificate::KIND,
            Arc::new(l1::certificate::CertificateDriver::new(clients.clone())),
        );
        drivers.insert(
            l1::iot_policy::KIND,
            Arc::new(l1::iot_policy::IotPolicyDriver::new(clients.clone())),
        );
        drivers.insert(
            l1::attachments::KIND,
            Arc::new(l1::attachments::AttachmentsDriver::new(clients.clone())),
        );
        drivers.insert(
            l1::topic_rule::KIND,
            Arc::new(l1::topic_rule::TopicRuleDriver::new(clients.clone())),
        );
        drivers.insert(
            l1::simulator_config::KIND,
            Arc::new(l1::simulator_config::SimulatorConfigDriver::new(
                clients.clone(),
            )),
        );
        drivers.insert(
            dead_letters::queue::KIND,
            Arc::new(dead_letters::queue::QueueDriver::new(clients.clone())),
        );
        drivers.insert(
            dead_letters::invoke_config::KIND,
            Arc::new(dead_letters::invoke_config::InvokeConfigDriver::new(
                clients.clone(),
            )),
        );
        AwsProvider {
            clients,
            artifacts,
            drivers,
        }
    }

    /// The SDK clients.
    pub fn clients(&self) -> &Arc<AwsClients> {
        &self.clients
    }

    fn ctx<'a>(&'a self, twin: &'a TwinConfig) -> LayerContext<'a> {
        LayerContext {
            twin,
            clients: &self.clients,
            artifacts: &self.artifacts,
        }
    }
}

#[async_trait]
impl Provider for AwsProvider {
    fn name(&self) -> ProviderName {
        ProviderName::Aws
    }

    fn scope(&self) -> twin_engine::Scope {
        let c = &self.clients;
        [
            ("partition", &c.partition),
            ("account", &c.account_id),
            ("region", &c.region),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
    }

    async fn layer_resources(
        &self,
        layer: Layer,
        twin: &TwinConfig,
    ) -> Result<Vec<ResourceSpec>, CloudError> {
        let ctx = self.ctx(twin);
        let mut specs = match layer {
            Layer::L1 => l1::specs(&ctx)?,
            Layer::L2 => {
                // Read from IoT, never built from names: the endpoint differs per account.
                let endpoint = if l2::events::sends_feedback(&ctx) {
                    Some(l2::events::iot_data_endpoint(&self.clients).await?)
                } else {
                    None
                };
                l2::specs(&ctx, endpoint.as_deref())?
            }
            Layer::L3Hot | Layer::L3Cold | Layer::L3Archive => l3::specs(&ctx, layer)?,
            Layer::L4 => l4_twinmaker::specs(&ctx)?,
            Layer::L5 => l5_grafana::specs(&ctx)?,
        };
        if artifacts::bucket_layer(&ctx) == Some(layer) {
            specs.push(l3::buckets::artifacts_bucket_spec(&ctx, layer));
        }
        Ok(specs)
    }

    fn driver(&self, kind: &str) -> Option<Arc<dyn ResourceDriver>> {
        self.drivers
            .get(kind)
            .cloned()
            .or_else(|| l4_twinmaker::driver(kind, &self.clients))
            .or_else(|| l5_grafana::driver(kind, &self.clients))
    }

    fn functions(&self) -> Option<Arc<dyn twin_engine::FunctionOps>> {
        Some(Arc::new(crate::function_ops::AwsFunctionOps::new(
            self.clients.clone(),
            self.artifacts.clone(),
        )))
    }

    fn devices(&self) -> Option<Arc<dyn twin_engine::DeviceOps>> {
        Some(Arc::new(l1::rotation::AwsDeviceOps::new(
            self.clients.clone(),
        )))
    }

    async fn discover(
        &self,
        layer: Layer,
        twin: &TwinConfig,
    ) -> Result<Vec<ResourceSpec>, CloudError> {
        let ctx = self.ctx(twin);
        match layer {
            Layer::L4 => l4_twinmaker::discover(&ctx).await,
            Layer::L5 => l5_grafana::discover(&ctx).await,
            _ => discover::discover(&ctx, layer).await,
        }
    }
}
