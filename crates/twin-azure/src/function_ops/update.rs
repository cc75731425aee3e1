//! `lambda_update` on Azure: the app holds every function, so an update is of the whole app.
//!
//! 1. `env` is merged into the app settings (`POST .../config/appsettings/list`, then `PUT
//!    .../config/appsettings` only when something changed; ours win, every other setting is
//!    kept, `null` removes one). App settings are APP-WIDE on Azure: every function of the app
//!    sees the change, and the next `deploy` sets the settings the deployer owns back to the
//!    config's values (settings it does not own stay).
//! 2. The package is rebuilt (its hash covers the handler's build and the device catalogue)
//!    and, when its hash differs from the one recorded on the site, deployed through the
//!    package driver `deploy` uses (OneDeploy, the hash recorded on the site, then the wait
//!    until ARM lists the package's functions), so the next `deploy` sees no drift.
//! 3. After a settings change alone the host restarts: the same driver, with the deployed
//!    hash, only waits until ARM lists the functions again.

use super::{required, AzureFunctionOps};
use crate::context::LayerContext;
use crate::l2::{self, site};
use crate::provider::shared_layer;
use azure_core::http::Method;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use twin_config::TwinConfig;
use twin_engine::{CloudError, ErrorClass, FunctionUpdate, Observed, Outputs, ResourceDriver};
use twin_functions_azure::app::AppFunction;

/// `have` with `changes` applied: strings as given, other JSON values as their JSON text,
/// `null` removing the setting.
pub fn merge_settings(
    have: &Map<String, Value>,
    changes: &Map<String, Value>,
) -> Map<String, Value> {
    let mut out = have.clone();
    for (k, v) in changes {
        match v {
            Value::Null => {
                out.remove(k);
            }
            Value::String(s) => {
                out.insert(k.clone(), json!(s));
            }
            other => {
                out.insert(k.clone(), json!(other.to_string()));
            }
        }
    }
    out
}

/// What earlier attempts of one update already did: a retried attempt finds the settings merged
/// or the package deployed and changes nothing, but the update still did it.
#[derive(Debug, Default)]
pub struct Done {
    env: AtomicBool,
    code: AtomicBool,
}

/// Updates the app that runs `f`; see the module docs. `done` carries over between attempts.
pub async fn update(
    ops: &AzureFunctionOps,
    twin: &TwinConfig,
    f: AppFunction,
    env: Option<Map<String, Value>>,
    done: &Done,
) -> Result<FunctionUpdate, CloudError> {
    let app = ops.app(twin);
    let what = format!("Function App {}", app.name);
    let site_body = ops.site(&app).await?;
    let scm = site::scm_host(&site_body).ok_or_else(|| {
        CloudError::fatal(
            "IncompleteAnswer",
            format!("{what}: ARM's answer names no Repository (SCM) host"),
        )
    })?;
    let site_arm_id = required(&site_body, "/id", &what)?.to_string();

    let source = ops.packages.as_ref().ok_or_else(|| {
        CloudError::fatal(
            "NoPackageBuilder",
            "this deployer has no Function App package builder",
        )
        .with_hint("use a deployer built with the Azure handler")
    })?;
    let shared = shared_layer(twin).ok_or_else(|| {
        CloudError::fatal(
            "NotOnAzure",
            format!("no layer of twin {} is on Azure", twin.name()),
        )
    })?;
    let app_layer = l2::app_layer(twin).ok_or_else(|| {
        CloudError::fatal(
            "NotOnAzure",
            format!(
                "no layer of twin {} with functions (layer 2, 3 hot or 3 cold) is on Azure",
                twin.name()
            ),
        )
    })?;
    let built = source.package(twin).await?;
    let ctx = LayerContext {
        twin,
        arm: &ops.arm,
        location: &ops.location,
        resource_group: app.group.clone(),
    };
    // The package's spec exactly as deploy makes it (name, inputs, desired hash and functions).
    let pkg_spec = l2::layer_specs(&ctx, shared, app_layer, &built, &BTreeMap::new())
        .into_iter()
        .find(|s| s.id == l2::package_id(app_layer))
        .ok_or_else(|| {
            CloudError::fatal(
                "SpecIncomplete",
                format!("{what}: the app layer describes no package"),
            )
        })?;
    // What the package driver reads from its site dependency: the SCM host ARM reported.
    let deps = Outputs(HashMap::from([(
        l2::site_id(app_layer),
        Observed::new(
            site_arm_id.clone(),
            json!({"id": site_arm_id, "scm_host": scm}),
        ),
    )]));
    let driver = &ops.deployer;
    let current = driver.read(&pkg_spec, &deps).await?;

    let mut env_changed = false;
    if let Some(changes) = env {
        env_changed = merge_env(ops, &app.path, &what, &changes).await?;
        if env_changed {
            done.env.store(true, Ordering::SeqCst);
            tracing::info!(
                app = %app.name,
                function = %f,
                "app settings are app-wide on Azure: every function of the app sees the change"
            );
        }
    }

    let deployed = current.as_ref().and_then(|c| c.attr("package_hash"));
    if deployed != Some(built.hash.as_str()) {
        driver.remember(built.clone());
        match &current {
            Some(c) => driver.update(&pkg_spec, c, &deps).await?,
            None => driver.create(&pkg_spec, &deps).await?,
        };
        done.code.store(true, Ordering::SeqCst);
    } else if let (true, Some(c)) = (env_changed || done.env.load(Ordering::SeqCst), &current) {
        // Same hash: no upload, only the wait until the restarted host lists the functions.
        driver.update(&pkg_spec, c, &deps).await?;
    }
    let code = done.code.load(Ordering::SeqCst);
    Ok(FunctionUpdate {
        // The package is rebuilt from the sources on every update; it counts as rebuilt when
        // its hash (sources and catalogue) differs from the deployed one.
        rebuilt: code,
        code_updated: code,
        env_updated: done.env.load(Ordering::SeqCst),
    })
}

/// Merges `changes` into the app's settings; whether anything changed. Values are never
/// logged (others' settings may be secrets).
async fn merge_env(
    ops: &AzureFunctionOps,
    site_path: &str,
    what: &str,
    changes: &Map<String, Value>,
) -> Result<bool, CloudError> {
    let path = format!("{site_path}/config/appsettings");
    let what = format!("app settings of {what}");
    let missing = || {
        CloudError::new(
            ErrorClass::NotFound,
            "NotDeployed",
            format!("{what}: the Function App does not exist"),
        )
        .with_hint("run `deploy` first")
    };
    let got = ops
        .arm
        .call(
            Method::Post,
            &format!("{path}/list"),
            site::API,
            None,
            &what,
        )
        .await?
        .ok_or_else(missing)?;
    let have = got
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .ok_or_else(|| {
            CloudError::fatal(
                "IncompleteAnswer",
                format!("{what}: the answer has no properties"),
            )
        })?;
    let want = merge_settings(&have, changes);
    if want == have {
        return Ok(false);
    }
    ops.arm
        .call(
            Method::Put,
            &path,
            site::API,
            Some(&json!({ "properties": want })),
            &what,
        )
        .await?
        .ok_or_else(missing)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_merge_into_the_settings_others_kept() {
        let have: Map<String, Value> = serde_json::from_value(json!({
            "TWIN_NAME": "dt", "LOG_LEVEL": "INFO", "OLD": "x", "SOMEONE_ELSES": "s"}))
        .expect("map");
        let changes: Map<String, Value> =
            serde_json::from_value(json!({"LOG_LEVEL": "DEBUG", "LIMIT": 5, "OLD": null}))
                .expect("map");
        let got = merge_settings(&have, &changes);
        assert_eq!(
            Value::Object(got),
            json!({"TWIN_NAME": "dt", "LOG_LEVEL": "DEBUG", "LIMIT": "5", "SOMEONE_ELSES": "s"})
        );
        assert_eq!(merge_settings(&have, &Map::new()), have);
    }
}
