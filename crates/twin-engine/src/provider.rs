//! The seam between the engine and a cloud: a provider describes a layer's resources and hands
//! out one driver per resource kind; the engine does the rest.

use crate::error::CloudError;
use crate::resource::{Observed, ResourceId, ResourceSpec};
use crate::state::Scope;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Arc;
use twin_config::{Layer, ProviderName, TwinConfig};

/// What the resources a spec depends on look like in the cloud, by id.
#[derive(Debug, Default, Clone)]
pub struct Outputs(pub HashMap<ResourceId, Observed>);

impl Outputs {
    /// The observation of a dependency.
    pub fn get(&self, id: &ResourceId) -> Option<&Observed> {
        self.0.get(id)
    }

    /// A string attribute of a dependency, or a `NotFound` error naming both.
    pub fn attr(&self, id: &ResourceId, key: &str) -> Result<String, CloudError> {
        self.0
            .get(id)
            .and_then(|o| o.attr(key))
            .map(str::to_string)
            .ok_or_else(|| {
                CloudError::new(
                    crate::ErrorClass::NotFound,
                    "DependencyMissing",
                    format!("{id} has no `{key}` (is it deployed?)"),
                )
            })
    }
}

/// Create, read, update and delete for one kind of resource. Ordering, retries, concurrency and
/// state belong to the engine; a driver makes single attempts and classifies its errors.
#[async_trait]
pub trait ResourceDriver: Send + Sync {
    /// Looks the resource up by its deterministic name; `None` when it does not exist.
    async fn read(
        &self,
        spec: &ResourceSpec,
        deps: &Outputs,
    ) -> Result<Option<Observed>, CloudError>;

    /// Creates it. Called again after a retryable failure only when `read` still finds nothing.
    async fn create(&self, spec: &ResourceSpec, deps: &Outputs) -> Result<Observed, CloudError>;

    /// Brings an existing, drifted resource to the desired settings.
    async fn update(
        &self,
        spec: &ResourceSpec,
        current: &Observed,
        deps: &Outputs,
    ) -> Result<Observed, CloudError>;

    /// Deletes it (with whatever it owns that has no resource of its own, e.g. a role's inline
    /// policies). Deleting something already gone must succeed.
    async fn delete(&self, spec: &ResourceSpec, current: &Observed) -> Result<(), CloudError>;
}

/// A cloud (AWS, Azure) as the engine sees it.
#[async_trait]
pub trait Provider: Send + Sync {
    /// Which provider this is.
    fn name(&self) -> ProviderName;

    /// The cloud scope the provider's credentials reach (AWS `partition`, `account`, `region`;
    /// Azure `tenant`, `subscription`): recorded in the state, and a command against another
    /// scope is refused.
    fn scope(&self) -> Scope;

    /// The resources this provider deploys for one layer of the twin, with their dependencies
    /// (which may name resources of other layers and providers).
    async fn layer_resources(
        &self,
        layer: Layer,
        twin: &TwinConfig,
    ) -> Result<Vec<ResourceSpec>, CloudError>;

    /// The driver for a resource kind this provider described.
    fn driver(&self, kind: &str) -> Option<Arc<dyn ResourceDriver>>;

    /// The development commands on this provider's functions, if it hosts any.
    fn functions(&self) -> Option<Arc<dyn crate::FunctionOps>> {
        None
    }

    /// The device commands (certificate rotation), if this provider hosts devices.
    fn devices(&self) -> Option<Arc<dyn crate::DeviceOps>> {
        None
    }

    /// Finds the twin's resources in the cloud by name prefix or tag, for a destroy whose state
    /// file was lost or that missed something (e.g. a device removed from the config).
    async fn discover(
        &self,
        layer: Layer,
        twin: &TwinConfig,
    ) -> Result<Vec<ResourceSpec>, CloudError>;
}
