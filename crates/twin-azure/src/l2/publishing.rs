//! The site's basic-auth publishing policies
//! (`Microsoft.Web/sites/basicPublishingCredentialsPolicies/{scm,ftp}`, API 2024-11-01), both
//! `allow: false`: deployments use an Entra token only, so no publishing password works.

use crate::arm::ArmClient;
use crate::arm_resource::{ArmDriver, ArmResource, Deletion};
use crate::context::{input, GROUP_KEY};
use crate::l2::{site, site_path};
use serde_json::{json, Value};
use twin_engine::{CloudError, Observed, Outputs, ResourceSpec};

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

/// A policy as an [`ArmResource`] (untagged). A policy cannot be deleted, only set; it is
/// removed with the site.
pub struct PublishingPolicy;

/// Sets and reads a policy; deleting one is a no-op (it goes with the site).
pub type PublishingPolicyDriver = ArmDriver<PublishingPolicy>;

impl ArmResource for PublishingPolicy {
    const API: &'static str = site::API;
    const TAGGED: bool = false;
    const DELETION: Deletion = Deletion::WithParent;

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

    fn path(arm: &ArmClient, spec: &ResourceSpec) -> Result<String, CloudError> {
        let site = site_path(arm, input(spec, GROUP_KEY)?, input(spec, SITE_KEY)?);
        Ok(format!(
            "{site}/basicPublishingCredentialsPolicies/{}",
            spec.name
        ))
    }

    fn body(
        _: &ArmClient,
        spec: &ResourceSpec,
        _: Value,
        _: &Outputs,
    ) -> Result<Value, CloudError> {
        Ok(json!({"properties": {"allow": spec.desired["allow"]}}))
    }

    fn observe(
        body: &Value,
        what: &str,
        _: &ResourceSpec,
        _: &Outputs,
    ) -> Result<Observed, CloudError> {
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
}
