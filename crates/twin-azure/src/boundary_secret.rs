//! A cross-cloud boundary's secret on the Azure receiving side: two app settings of the twin's
//! Function App (`BOUNDARY_SECRET_HOT_TO_COLD` and, during a rotation,
//! `BOUNDARY_SECRET_HOT_TO_COLD_NEXT`), written over ARM for `sync` at deploy and
//! `deployer rotate-secrets` (`twin_functions::boundary::BoundarySecretStore`).
//!
//! The settings resource of `l2::settings` never names these two, so their values stay out of
//! the state file; a write merges into the app's settings (the others are kept). Changing an
//! app setting restarts the app, which is how the handler picks the new secrets up.

use crate::arm::ArmClient;
use crate::l2::{site, site_path};
use async_trait::async_trait;
use azure_core::http::Method;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use twin_engine::{CloudError, ErrorClass};
use twin_functions::boundary::{BoundarySecret, BoundarySecretStore};

/// The receiving copy of one boundary's secret in a Function App's app settings.
pub struct AppSettingsSecretStore {
    arm: Arc<ArmClient>,
    group: String,
    site: String,
    current: &'static str,
    next: &'static str,
}

impl AppSettingsSecretStore {
    /// The store in the app settings of Function App `site` in `group`, under the names
    /// `current` and `next`.
    pub fn new(
        arm: Arc<ArmClient>,
        group: impl Into<String>,
        site: impl Into<String>,
        current: &'static str,
        next: &'static str,
    ) -> Self {
        Self {
            arm,
            group: group.into(),
            site: site.into(),
            current,
            next,
        }
    }

    /// The hot → cold boundary's store on the twin's Function App.
    pub fn hot_to_cold(arm: Arc<ArmClient>, group: &str, site: &str) -> Self {
        use twin_functions_azure::app::settings::{INGRESS_COLD_SECRET, INGRESS_COLD_SECRET_NEXT};
        Self::new(
            arm,
            group,
            site,
            INGRESS_COLD_SECRET,
            INGRESS_COLD_SECRET_NEXT,
        )
    }

    fn path(&self) -> String {
        format!(
            "{}/config/appsettings",
            site_path(&self.arm, &self.group, &self.site)
        )
    }

    fn what(&self) -> String {
        format!("app settings of Function App {}", self.site)
    }

    fn err(&self, operation: &'static str, e: CloudError) -> twin_functions::CloudError {
        use twin_functions::CloudErrorKind as K;
        let kind = match e.class {
            ErrorClass::Throttling => K::Throttled,
            ErrorClass::Transient | ErrorClass::EventualConsistency => K::Transient,
            ErrorClass::NotFound => K::NotFound,
            ErrorClass::Fatal if e.code.contains("Authorization") => K::AccessDenied,
            ErrorClass::Fatal => K::Rejected,
        };
        twin_functions::CloudError::new(operation, self.location(), e.code, e.message, kind)
    }

    fn gone(&self, operation: &'static str) -> twin_functions::CloudError {
        twin_functions::CloudError::new(
            operation,
            self.location(),
            "ResourceNotFound",
            "the Function App does not exist; run `deployer deploy`",
            twin_functions::CloudErrorKind::NotFound,
        )
    }

    /// The app's settings (`POST .../config/appsettings/list`).
    async fn settings(&self) -> Result<Map<String, Value>, twin_functions::CloudError> {
        let got = self
            .arm
            .call(
                Method::Post,
                &format!("{}/list", self.path()),
                site::API,
                None,
                &self.what(),
            )
            .await
            .map_err(|e| self.err("ListAppSettings", e))?
            .ok_or_else(|| self.gone("ListAppSettings"))?;
        Ok(got
            .get("properties")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default())
    }

    /// Applies `change` to the app's settings and writes them back (the others unchanged).
    async fn update(
        &self,
        change: impl FnOnce(&mut Map<String, Value>),
    ) -> Result<(), twin_functions::CloudError> {
        let mut all = self.settings().await?;
        change(&mut all);
        self.arm
            .call(
                Method::Put,
                &self.path(),
                site::API,
                Some(&json!({"properties": all})),
                &self.what(),
            )
            .await
            .map_err(|e| self.err("UpdateAppSettings", e))?
            .ok_or_else(|| self.gone("UpdateAppSettings"))?;
        Ok(())
    }

    fn read(
        &self,
        all: &Map<String, Value>,
        name: &str,
    ) -> Result<Option<BoundarySecret>, twin_functions::CloudError> {
        let Some(text) = all.get(name).and_then(Value::as_str) else {
            return Ok(None);
        };
        if text.trim().is_empty() {
            return Ok(None);
        }
        BoundarySecret::from_encoded(&format!("app setting {name}"), text)
            .map(Some)
            .map_err(|e| {
                twin_functions::CloudError::new(
                    "ListAppSettings",
                    self.location(),
                    "InvalidBoundarySecret",
                    format!("{e}; run `deployer deploy` to write it again"),
                    twin_functions::CloudErrorKind::Rejected,
                )
            })
    }
}

#[async_trait]
impl BoundarySecretStore for AppSettingsSecretStore {
    fn location(&self) -> String {
        format!(
            "app setting {} of Azure Function App {}",
            self.current, self.site
        )
    }

    async fn current(&self) -> Result<Option<BoundarySecret>, twin_functions::CloudError> {
        let all = self.settings().await?;
        self.read(&all, self.current)
    }

    async fn next(&self) -> Result<Option<BoundarySecret>, twin_functions::CloudError> {
        let all = self.settings().await?;
        self.read(&all, self.next)
    }

    async fn set_current(&self, secret: &BoundarySecret) -> Result<(), twin_functions::CloudError> {
        let name = self.current;
        self.update(|all| {
            all.insert(name.into(), json!(secret.encoded()));
        })
        .await
    }

    async fn stage_next(&self, secret: &BoundarySecret) -> Result<(), twin_functions::CloudError> {
        let name = self.next;
        self.update(|all| {
            all.insert(name.into(), json!(secret.encoded()));
        })
        .await
    }

    async fn promote_next(&self) -> Result<(), twin_functions::CloudError> {
        let all = self.settings().await?;
        if self.read(&all, self.next)?.is_none() {
            return Ok(());
        }
        let (current, next) = (self.current, self.next);
        self.update(|all| {
            if let Some(v) = all.remove(next) {
                all.insert(current.into(), v);
            }
        })
        .await
    }
}
