//! One driver for the plain ARM resources: those whose whole lifecycle is GET (read), PUT
//! (create and update alike: ARM's PUT is create-or-update) and DELETE on one path. A type
//! says only what is its own ([`ArmResource`]: its path, its name in errors, the body it PUTs
//! and what it reads back, compared with its desired settings for drift); [`ArmDriver`] turns
//! that into a [`ResourceDriver`]. Types with more to do (the site's config, the IoT Hub's etag,
//! role assignments that are replaced, the system topic's source) keep their own drivers.

use crate::arm::ArmClient;
use crate::context::{input, merged_tags, resource_path, GROUP_KEY};
use async_trait::async_trait;
use serde_json::Value;
use std::marker::PhantomData;
use std::sync::Arc;
use twin_engine::{CloudError, ErrorClass, Observed, Outputs, ResourceDriver, ResourceSpec};

/// How a resource goes away on destroy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletion {
    /// `DELETE` on its path (a resource already gone counts as deleted).
    Delete,
    /// It cannot be deleted on its own and goes with its parent, so deleting it does nothing.
    WithParent,
}

/// What is specific to one plain ARM resource type. Implemented by a unit struct per type;
/// the functions take the spec (name, inputs, desired settings) and the dependencies' outputs.
pub trait ArmResource: Send + Sync + 'static {
    /// The API version of the resource's provider.
    const API: &'static str;

    /// Whether the resource carries ARM `tags`: an update then re-reads them first, so tags
    /// someone else added are kept (the observation keeps only ours).
    const TAGGED: bool = true;

    /// How the resource is deleted.
    const DELETION: Deletion = Deletion::Delete;

    /// Whether a `NotFound` error on GET (its parent is gone, taking it along) reads as absent.
    const ABSENT_WITH_PARENT: bool = false;

    /// The resource as errors name it, e.g. `managed identity <name>`.
    fn what(spec: &ResourceSpec) -> String;

    /// Its ARM path (`/subscriptions/.../<name>`), without the API version.
    fn path(arm: &ArmClient, spec: &ResourceSpec) -> Result<String, CloudError>;

    /// The body to PUT. `tags` are the tags to write: the spec's merged over the resource's
    /// current ones (for [`Self::TAGGED`] types; otherwise the spec's own).
    fn body(
        arm: &ArmClient,
        spec: &ResourceSpec,
        tags: Value,
        deps: &Outputs,
    ) -> Result<Value, CloudError>;

    /// The observation of `body` as ARM returned it (from a GET or a PUT); `what` names it.
    /// Reads tolerate missing dependency outputs (a plan before deploy, a destroy after a lost
    /// state): a link that cannot be checked reads as drift.
    fn observe(
        body: &Value,
        what: &str,
        spec: &ResourceSpec,
        deps: &Outputs,
    ) -> Result<Observed, CloudError>;

    /// Refuses an update the cloud cannot make in place (e.g. an immutable property), before
    /// anything is sent.
    fn check_update(_spec: &ResourceSpec, _current: &Observed) -> Result<(), CloudError> {
        Ok(())
    }
}

/// The path of a top-level resource of ARM type `ns_type` named like the spec, in the spec's
/// resource group (its `resource_group` input).
pub fn group_resource_path(
    arm: &ArmClient,
    spec: &ResourceSpec,
    ns_type: &str,
) -> Result<String, CloudError> {
    Ok(resource_path(
        arm,
        input(spec, GROUP_KEY)?,
        ns_type,
        &spec.name,
    ))
}

/// The [`ResourceDriver`] of any [`ArmResource`] type `R`.
pub struct ArmDriver<R> {
    arm: Arc<ArmClient>,
    // `fn() -> R`: the driver holds no `R`, so it is Send + Sync whatever `R` is.
    resource: PhantomData<fn() -> R>,
}

impl<R: ArmResource> ArmDriver<R> {
    /// A driver on this client.
    pub fn new(arm: Arc<ArmClient>) -> Self {
        ArmDriver {
            arm,
            resource: PhantomData,
        }
    }

    async fn put(
        &self,
        spec: &ResourceSpec,
        tags: Value,
        deps: &Outputs,
    ) -> Result<Observed, CloudError> {
        let what = R::what(spec);
        let body = R::body(&self.arm, spec, tags, deps)?;
        let got = self
            .arm
            .put(&R::path(&self.arm, spec)?, R::API, &body, &what)
            .await?;
        R::observe(&got, &what, spec, deps)
    }
}

#[async_trait]
impl<R: ArmResource> ResourceDriver for ArmDriver<R> {
    async fn read(
        &self,
        spec: &ResourceSpec,
        deps: &Outputs,
    ) -> Result<Option<Observed>, CloudError> {
        let what = R::what(spec);
        let got = match self
            .arm
            .get(&R::path(&self.arm, spec)?, R::API, &what)
            .await
        {
            Err(e) if R::ABSENT_WITH_PARENT && e.class == ErrorClass::NotFound => None,
            other => other?,
        };
        match got {
            Some(body) => R::observe(&body, &what, spec, deps).map(Some),
            None => Ok(None),
        }
    }

    async fn create(&self, spec: &ResourceSpec, deps: &Outputs) -> Result<Observed, CloudError> {
        self.put(spec, merged_tags(None, spec), deps).await
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        current: &Observed,
        deps: &Outputs,
    ) -> Result<Observed, CloudError> {
        R::check_update(spec, current)?;
        let tags = if R::TAGGED {
            let now = self
                .arm
                .get(&R::path(&self.arm, spec)?, R::API, &R::what(spec))
                .await?;
            merged_tags(now.as_ref().and_then(|c| c.get("tags")), spec)
        } else {
            merged_tags(None, spec)
        };
        self.put(spec, tags, deps).await
    }

    async fn delete(&self, spec: &ResourceSpec, _: &Observed) -> Result<(), CloudError> {
        match R::DELETION {
            Deletion::Delete => {
                self.arm
                    .delete(&R::path(&self.arm, spec)?, R::API, &R::what(spec))
                    .await
            }
            Deletion::WithParent => Ok(()),
        }
    }
}
