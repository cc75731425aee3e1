//! How the deployer reaches the Grafana's API and how the data source reaches the hot reader.
//!
//! - [`EntraGrafanaAuth`]: the deployer's own Entra token for Grafana's application
//!   ([`GRAFANA_SCOPE`]), at the `endpoint` ARM reported. The deployer holds Grafana Admin on
//!   the resource; until that assignment has propagated Grafana answers 401/403, which are
//!   retryable here, so the engine retries until its deadline.
//! - [`HotReaderLink`]: the data source's URL is the Function App's host as ARM reports it
//!   (`defaultHostName`), and its `x-functions-key` header the hot reader's function key,
//!   listed from ARM at create/update time and put in `secureJsonData`: Grafana never gives it
//!   back, and it is never stored in the state, printed or logged.

use crate::arm::{ArmClient, Auth};
use crate::function_ops::{function_key, host_base_url};
use crate::l2;
use async_trait::async_trait;
use serde_json::{json, Value};
use std::sync::Arc;
use twin_config::Layer;
use twin_engine::{CloudError, ErrorClass, Outputs, ResourceSpec};
use twin_functions_azure::app::AppFunction;
use twin_grafana::api::{Forbidden, GrafanaAuth, Secret, Target};
use twin_grafana::data_plane::DatasourceLink;

/// Token scope of Azure Managed Grafana's API: its Entra application.
pub const GRAFANA_SCOPE: &str = "ce34e7e5-485f-4d76-964f-b3d2b16d1e4f/.default";

/// The header the hot reader's function key travels in.
pub const KEY_HEADER: &str = "x-functions-key";

/// Entra tokens of the deployer for the Grafana API.
pub struct EntraGrafanaAuth {
    arm: Arc<ArmClient>,
}

impl EntraGrafanaAuth {
    /// Tokens from the credential of this ARM client.
    pub fn new(arm: Arc<ArmClient>) -> Self {
        EntraGrafanaAuth { arm }
    }
}

#[async_trait]
impl GrafanaAuth for EntraGrafanaAuth {
    fn target_of(&self, deps: &Outputs) -> Result<Target, CloudError> {
        Ok(Target {
            endpoint: deps.attr(&super::grafana_id(), super::grafana::ENDPOINT)?,
            ids: Vec::new(),
        })
    }

    fn id_keys(&self) -> &'static [&'static str] {
        &[]
    }

    async fn open(&self, _: &Target) -> Result<(Secret, Option<String>), CloudError> {
        match self.arm.auth() {
            Auth::StaticToken(t) => Ok((Secret::new(t.clone()), None)),
            Auth::Credential(c) => {
                let token = c.get_token(&[GRAFANA_SCOPE], None).await.map_err(|e| {
                    CloudError::new(
                        ErrorClass::Transient,
                        "NoToken",
                        format!("cannot get an Azure token for the Grafana API: {e}"),
                    )
                    .with_hint("sign in again (`az login`) or check the credential's environment")
                })?;
                Ok((Secret::new(token.token.secret()), None))
            }
        }
    }

    async fn close(&self, _: &Target, _: Option<String>) {
        // An Entra token is not the Grafana's to revoke; it expires by itself.
    }

    fn forbidden(&self) -> Forbidden {
        Forbidden {
            class: ErrorClass::EventualConsistency,
            hint: "the deployer's Grafana Admin role on the Grafana may still be propagating (minutes); if this persists, check that role assignment on the Grafana resource",
        }
    }
}

/// The hot reader as what the Infinity data source calls.
pub struct HotReaderLink {
    arm: Arc<ArmClient>,
}

impl HotReaderLink {
    /// A link listing keys through this ARM client.
    pub fn new(arm: Arc<ArmClient>) -> Self {
        HotReaderLink { arm }
    }

    /// The Function App's base URL, from the site's outputs.
    fn base(&self, deps: &Outputs) -> Result<String, CloudError> {
        // Grafana on Azure needs L2 there (see `l5::specs`): the app layer is L2.
        let host = deps.attr(&l2::site_id(Layer::L2), "default_host_name")?;
        Ok(host_base_url(&host, self.arm.is_local()))
    }
}

#[async_trait]
impl DatasourceLink for HotReaderLink {
    async fn body_extra(&self, spec: &ResourceSpec, deps: &Outputs) -> Result<Value, CloudError> {
        let base = self.base(deps)?;
        let site_path = deps.attr(&l2::site_id(Layer::L2), "id")?;
        let key = function_key(
            &self.arm,
            &site_path,
            AppFunction::HotReader,
            &format!("the hot reader of data source {}", spec.name),
        )
        .await?;
        Ok(json!({
            "url": base,
            // Infinity sends the data source's headers only to allowed hosts.
            "jsonData": {"allowedHosts": [base]},
            "secureJsonData": {"httpHeaderValue1": key},
        }))
    }

    fn observe_extra(&self, answer: &Value, _: &ResourceSpec, deps: &Outputs) -> Value {
        // Without the site's outputs (a destroy) the link cannot be checked: drift, not a match.
        let url_current = match self.base(deps) {
            Ok(base) => json!(
                answer.get("url").and_then(Value::as_str) == Some(base.as_str())
                    && answer.pointer("/jsonData/allowedHosts") == Some(&json!([base]))
            ),
            Err(_) => Value::Null,
        };
        json!({
            "url_current": url_current,
            "key_set": answer.pointer("/secureJsonFields/httpHeaderValue1") == Some(&json!(true)),
        })
    }

    fn unhealthy_hint(&self) -> &'static str {
        "the data source calls the hot reader with its function key; if this persists, check that the Function App runs and `deployer deploy --layer l2` published the hot reader"
    }
}
