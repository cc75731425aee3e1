//! The site's basic-auth publishing policies
//! (`Microsoft.Web/sites/basicPublishingCredentialsPolicies/{scm,ftp}`, API 2024-11-01), both
//! `allow: false`: deployments use an Entra token only, so no publishing password works.

use crate::arm::ArmClient;
use crate::context::{input, GROUP_KEY};
use crate::l2::{site, site_path};
use async_trait::async_trait;
use serde_json::{json, Value};
use std::sync::Arc;
use twin_engine::{CloudError, Observed, Outputs, ResourceDriver, ResourceSpec};

/// Driver kind of a policy.
pub const KIND: &str = "azure_site_publishing_policy";

/// The two policies (their names are fixed by ARM).
pub const POLICIES: [&str; 2] = ["scm", "ftp"];

/// Inputs key of the site's name.
pub const SITE_KEY: &str = "site";

/// The desired settings of a policy.
pub fn desired() -> Value {
    json!({"allow": false})
}

/// Sets and reads a policy; deleting one is a no-op (it goes with the site).
pub struct PublishingPolicyDriver {
    arm: Arc<ArmClient>,
}

impl PublishingPolicyDriver {
    /// A driver on this client.
    pub fn new(arm: Arc<ArmClient>) -> Self {
        PublishingPolicyDriver { arm }
    }

    fn path(&self, spec: &ResourceSpec) -> Result<String, CloudError> {
        let site = site_path(&self.arm, input(spec, GROUP_KEY)?, input(spec, SITE_KEY)?);
        Ok(format!(
            "{site}/basicPublishingCredentialsPolicies/{}",
            spec.name
        ))
    }

    async fn put(&self, spec: &ResourceSpec) -> Result<Observed, CloudError> {
        let what = what(spec);
        let body = json!({"properties": {"allow": spec.desired["allow"]}});
        let got = self
            .arm
            .put(&self.path(spec)?, site::API, &body, &what)
            .await?;
        observe(&got, &what)
    }
}

fn what(spec: &ResourceSpec) -> String {
    let site = spec
        .inputs
        .get(SITE_KEY)
        .and_then(Value::as_str)
        .unwrap_or("?");
    format!(
        "{} basic-auth publishing policy of Function App {site}",
        spec.name
    )
}

fn observe(body: &Value, what: &str) -> Result<Observed, CloudError> {
    let id = body.get("id").and_then(Value::as_str).ok_or_else(|| {
        CloudError::fatal("NoResourceId", format!("{what}: ARM's answer has no id"))
    })?;
    let allow = body.pointer("/properties/allow").cloned().ok_or_else(|| {
        CloudError::fatal(
            "IncompleteAnswer",
            format!("{what}: ARM's answer has no properties.allow"),
        )
    })?;
    Ok(Observed::new(id, json!({"id": id, "allow": allow})))
}

#[async_trait]
impl ResourceDriver for PublishingPolicyDriver {
    async fn read(&self, spec: &ResourceSpec, _: &Outputs) -> Result<Option<Observed>, CloudError> {
        let what = what(spec);
        match self.arm.get(&self.path(spec)?, site::API, &what).await? {
            Some(b) => observe(&b, &what).map(Some),
            None => Ok(None),
        }
    }

    async fn create(&self, spec: &ResourceSpec, _: &Outputs) -> Result<Observed, CloudError> {
        self.put(spec).await
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        _: &Observed,
        _: &Outputs,
    ) -> Result<Observed, CloudError> {
        self.put(spec).await
    }

    async fn delete(&self, _: &ResourceSpec, _: &Observed) -> Result<(), CloudError> {
        // A policy cannot be deleted, only set; it is removed with the site.
        Ok(())
    }
}
