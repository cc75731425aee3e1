//! Model versions nothing uses any more, deleted once the twins moved off them: DTDL models
//! are immutable, so a changed device gets a new version ([`super::models`]), the twin graph
//! moves its twin to it ([`super::graph`]), and this resource, which runs after both, deletes
//! the old version (and the model of a device no longer in the config), dependents first.
//! Models outside the twin's DTMI prefix are never touched. Destroy leaves the deletion of
//! the remaining models to the model set.

use super::client::AdtClient;
use super::models::{held_models, VERSIONS_ATTR};
use super::{instance_host, no_instance, HOST_KEY, MODELS_KEY, PREFIX_KEY};
use crate::arm::ArmClient;
use crate::context::input;
use async_trait::async_trait;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::Arc;
use twin_engine::{
    CloudError, ErrorClass, Observed, Outputs, ResourceDriver, ResourceId, ResourceSpec,
};
use twin_models::dtdl::Interface;
use twin_models::order;

/// Driver kind of the retirement of old model versions.
pub const KIND: &str = "azure_digital_twins_old_models";

/// The desired settings: no model under the prefix that the model set does not resolve to.
pub fn desired() -> Value {
    json!({"obsolete_models": 0})
}

/// Deletes model versions the model set no longer resolves to.
pub struct RetireDriver {
    arm: Arc<ArmClient>,
}

impl RetireDriver {
    /// A driver on this client (whose credential the data-plane client reuses).
    pub fn new(arm: Arc<ArmClient>) -> Self {
        RetireDriver { arm }
    }

    /// The client and the obsolete models, dependents first; `None` without an instance.
    /// Without the model set's outputs every model under the prefix counts as obsolete for
    /// `read` (drift that cannot be checked), and `update` refuses to run.
    async fn obsolete(
        &self,
        spec: &ResourceSpec,
        deps: &Outputs,
    ) -> Result<Option<(AdtClient, String, Vec<String>, bool)>, CloudError> {
        let what = what(spec);
        let Some(host) = instance_host(&self.arm, spec, deps).await? else {
            return Ok(None);
        };
        let client = AdtClient::new(&self.arm, &host);
        let prefix = input(spec, PREFIX_KEY)?;
        let models_id = ResourceId(input(spec, MODELS_KEY)?.to_string());
        let used: Option<BTreeSet<String>> = deps
            .get(&models_id)
            .and_then(|o| o.attributes.get(VERSIONS_ATTR))
            .and_then(Value::as_object)
            .map(|m| {
                m.values()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            });
        let held = held_models(&client, &what).await?;
        let stale: Vec<Interface> = held
            .into_iter()
            .filter(|m| m.id.starts_with(prefix))
            .filter(|m| used.as_ref().is_none_or(|u| !u.contains(&m.id)))
            .collect();
        let ordered: Vec<String> = order::upload_order(&stale)
            .map_err(|e| CloudError::fatal("InvalidModels", format!("{what}: {e}")))?
            .into_iter()
            .rev()
            .map(|m| m.id.clone())
            .collect();
        Ok(Some((client, host, ordered, used.is_some())))
    }
}

fn what(spec: &ResourceSpec) -> String {
    format!(
        "old DTDL model versions of Azure Digital Twins instance {}",
        spec.name.trim_end_matches("/old-models")
    )
}

fn observe(host: &str, obsolete: &[String]) -> Observed {
    Observed::new(
        format!("{host}/models/obsolete"),
        json!({"obsolete_models": obsolete.len(), "obsolete": obsolete, HOST_KEY: host}),
    )
}

#[async_trait]
impl ResourceDriver for RetireDriver {
    async fn read(
        &self,
        spec: &ResourceSpec,
        deps: &Outputs,
    ) -> Result<Option<Observed>, CloudError> {
        Ok(self
            .obsolete(spec, deps)
            .await?
            .map(|(_, host, obsolete, _)| observe(&host, &obsolete)))
    }

    async fn create(&self, spec: &ResourceSpec, deps: &Outputs) -> Result<Observed, CloudError> {
        self.update(spec, &Observed::new("", json!({})), deps).await
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        _: &Observed,
        deps: &Outputs,
    ) -> Result<Observed, CloudError> {
        let what = what(spec);
        let (client, host, obsolete, known) = self
            .obsolete(spec, deps)
            .await?
            .ok_or_else(|| no_instance(&what))?;
        if !known {
            return Err(CloudError::new(
                ErrorClass::NotFound,
                "DependencyMissing",
                format!("{what}: the model set is not deployed"),
            ));
        }
        for id in &obsolete {
            client
                .delete_model(id, &format!("delete model {id} ({what})"))
                .await?;
        }
        Ok(observe(&host, &[]))
    }

    async fn delete(&self, _: &ResourceSpec, _: &Observed) -> Result<(), CloudError> {
        // Nothing of its own: the model set's delete removes every model under the prefix.
        Ok(())
    }
}
