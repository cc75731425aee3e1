//! The Function App's app settings (`Microsoft.Web/sites/config/appsettings`, API 2024-11-01) as
//! a resource of their own, so a changed or removed setting is drift the next deploy fixes.
//! Settings someone else added are kept (a write merges into what the app has; ours win), and
//! a delete removes only ours: among them the boundary secrets that
//! `crate::boundary_secret::AppSettingsSecretStore` writes after apply, which no spec names.
//!
//! Values known when the plan is made (names, days) are desired settings compared as they are.
//! Values that come from other resources (the identity's client id, Application Insights'
//! connection string) are resolved when the settings are read or written, and the state keeps
//! only whether each one is `in sync`: no cloud value of a setting, and none of the settings
//! someone else added, is ever stored or logged.

use crate::arm::ArmClient;
use crate::context::{input, LayerContext, GROUP_KEY};
use crate::l2::{site, site_path};
use async_trait::async_trait;
use azure_core::http::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use twin_engine::{CloudError, Observed, Outputs, ResourceDriver, ResourceId, ResourceSpec};

/// Driver kind of the app settings.
pub const KIND: &str = "azure_function_app_settings";

/// Inputs key of the site's name.
pub const SITE_KEY: &str = "site";

/// Inputs key of the settings resolved from other resources (name → [`Setting`]).
pub const DERIVED_KEY: &str = "derived";

/// What a derived setting reports when the app has the resolved value.
pub const IN_SYNC: &str = "in sync";

/// Where an app setting's value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum Setting {
    /// A value known when the plan is made.
    Literal {
        /// The value.
        value: String,
    },
    /// An attribute of a dependency's observation, optionally inside `template`, where `{}`
    /// stands for it.
    Attr {
        /// Spec id of the dependency.
        dep: String,
        /// Attribute of its observation.
        attr: String,
        /// E.g. `Authorization=AAD;ClientId={}`.
        template: Option<String>,
    },
    /// A property of a dependency's ARM resource, read when needed and never stored.
    ArmProperty {
        /// Spec id of the dependency (its observation's `id` is the ARM id).
        dep: String,
        /// JSON pointer into the resource, e.g. `/properties/ConnectionString`.
        pointer: String,
        /// API version to read the resource with.
        api: String,
    },
}

impl Setting {
    /// A literal value.
    pub fn literal(value: impl Into<String>) -> Setting {
        Setting::Literal {
            value: value.into(),
        }
    }

    fn dep(&self) -> Option<ResourceId> {
        match self {
            Setting::Literal { .. } => None,
            Setting::Attr { dep, .. } | Setting::ArmProperty { dep, .. } => {
                Some(ResourceId(dep.clone()))
            }
        }
    }
}

/// The settings spec of the app `app_name` (whose spec is `site`): literals are its desired
/// `settings`, the others its `derived` inputs (each desired `in sync`), and every resource a
/// value comes from is a dependency.
pub fn spec(
    ctx: &LayerContext<'_>,
    site: &ResourceSpec,
    app_name: &str,
    settings: &BTreeMap<String, Setting>,
) -> ResourceSpec {
    let mut literal = Map::new();
    let mut derived = Map::new();
    let mut in_sync = Map::new();
    let mut deps = vec![site.id.clone()];
    for (name, s) in settings {
        match s {
            Setting::Literal { value } => {
                literal.insert(name.clone(), json!(value));
            }
            other => {
                derived.insert(name.clone(), json!(other));
                in_sync.insert(name.clone(), json!(IN_SYNC));
                if let Some(d) = other.dep().filter(|d| !deps.contains(d)) {
                    deps.push(d);
                }
            }
        }
    }
    let mut spec = ctx
        .spec(site.layer, KIND, super::TWIN_KEY, "appsettings")
        .desired(json!({"settings": literal, "derived": in_sync}))
        .depends_on(deps);
    spec.inputs[SITE_KEY] = json!(app_name);
    spec.inputs[DERIVED_KEY] = Value::Object(derived);
    spec
}

/// Writes and reads the app settings.
pub struct AppSettingsDriver {
    arm: Arc<ArmClient>,
}

impl AppSettingsDriver {
    /// A driver on this client.
    pub fn new(arm: Arc<ArmClient>) -> Self {
        AppSettingsDriver { arm }
    }

    fn path(&self, spec: &ResourceSpec) -> Result<String, CloudError> {
        let site = site_path(&self.arm, input(spec, GROUP_KEY)?, input(spec, SITE_KEY)?);
        Ok(format!("{site}/config/appsettings"))
    }

    /// The app's current settings (`POST .../config/appsettings/list`); `None` when the site
    /// is gone.
    async fn current(&self, spec: &ResourceSpec) -> Result<Option<Map<String, Value>>, CloudError> {
        let what = what(spec);
        let got = self
            .arm
            .call(
                Method::Post,
                &format!("{}/list", self.path(spec)?),
                site::API,
                None,
                &what,
            )
            .await?;
        Ok(got.map(|b| {
            b.get("properties")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default()
        }))
    }

    /// Every setting we want, with derived values resolved.
    async fn wanted(
        &self,
        spec: &ResourceSpec,
        deps: &Outputs,
    ) -> Result<BTreeMap<String, String>, CloudError> {
        let mut out = literals(spec)?;
        for (k, s) in derived(spec)? {
            out.insert(k.clone(), self.resolve(spec, &k, &s, deps).await?);
        }
        Ok(out)
    }

    async fn resolve(
        &self,
        spec: &ResourceSpec,
        name: &str,
        s: &Setting,
        deps: &Outputs,
    ) -> Result<String, CloudError> {
        match s {
            Setting::Literal { value } => Ok(value.clone()),
            Setting::Attr {
                dep,
                attr,
                template,
            } => {
                let v = deps.attr(&ResourceId(dep.clone()), attr)?;
                Ok(match template {
                    Some(t) => t.replace("{}", &v),
                    None => v,
                })
            }
            Setting::ArmProperty { dep, pointer, api } => {
                let id = deps.attr(&ResourceId(dep.clone()), "id")?;
                let what = format!("{id} (for app setting {name} of {})", what(spec));
                let body = self.arm.get(&id, api, &what).await?.ok_or_else(|| {
                    CloudError::new(
                        twin_engine::ErrorClass::NotFound,
                        "DependencyMissing",
                        format!("{what}: the resource is gone"),
                    )
                })?;
                body.pointer(pointer)
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .ok_or_else(|| {
                        CloudError::fatal(
                            "IncompleteAnswer",
                            format!("{what}: ARM's answer has no {pointer}"),
                        )
                        .with_hint("the resource may still be provisioning; run deploy again")
                    })
            }
        }
    }

    /// Replaces the app's settings with `all` (ARM applies it synchronously).
    async fn put(&self, spec: &ResourceSpec, all: Map<String, Value>) -> Result<(), CloudError> {
        let what = what(spec);
        let body = json!({"properties": all});
        match self
            .arm
            .call(
                Method::Put,
                &self.path(spec)?,
                site::API,
                Some(&body),
                &what,
            )
            .await?
        {
            Some(_) => Ok(()),
            None => Err(CloudError::new(
                twin_engine::ErrorClass::NotFound,
                "DependencyMissing",
                format!("{what}: the Function App does not exist"),
            )),
        }
    }

    /// Merges ours into what the app has (ours win) and PUTs the result.
    async fn write(&self, spec: &ResourceSpec, deps: &Outputs) -> Result<Observed, CloudError> {
        let what = what(spec);
        let mut merged = self.current(spec).await?.ok_or_else(|| {
            CloudError::new(
                twin_engine::ErrorClass::NotFound,
                "DependencyMissing",
                format!("{what}: the Function App does not exist"),
            )
        })?;
        let wanted = self.wanted(spec, deps).await?;
        for (k, v) in &wanted {
            merged.insert(k.clone(), json!(v));
        }
        self.put(spec, merged).await?;
        let now = self.current(spec).await?.unwrap_or_default();
        Ok(observe(spec, &self.path(spec)?, &now, &wanted))
    }
}

fn what(spec: &ResourceSpec) -> String {
    let site = spec
        .inputs
        .get(SITE_KEY)
        .and_then(Value::as_str)
        .unwrap_or("?");
    format!("app settings of Function App {site}")
}

fn derived(spec: &ResourceSpec) -> Result<Vec<(String, Setting)>, CloudError> {
    let Some(map) = spec.inputs.get(DERIVED_KEY).and_then(Value::as_object) else {
        return Ok(Vec::new());
    };
    map.iter()
        .map(|(k, v)| {
            serde_json::from_value(v.clone())
                .map(|s| (k.clone(), s))
                .map_err(|e| {
                    CloudError::fatal(
                        "SpecIncomplete",
                        format!("{}: setting {k}: {e}", spec.label()),
                    )
                })
        })
        .collect()
}

/// The names of every setting this spec sets.
fn our_keys(spec: &ResourceSpec) -> Result<Vec<String>, CloudError> {
    let mut keys: Vec<String> = derived(spec)?.into_iter().map(|(k, _)| k).collect();
    if let Some(m) = spec.desired.get("settings").and_then(Value::as_object) {
        keys.extend(m.keys().cloned());
    }
    Ok(keys)
}

/// Literal settings as the app has them (only ours), and whether each derived one matches.
/// The settings whose values the spec holds.
fn literals(spec: &ResourceSpec) -> Result<BTreeMap<String, String>, CloudError> {
    let mut out = BTreeMap::new();
    if let Some(lit) = spec.desired.get("settings").and_then(Value::as_object) {
        for (k, v) in lit {
            let v = v.as_str().ok_or_else(|| {
                CloudError::fatal(
                    "SpecIncomplete",
                    format!("{}: setting {k} is not text", spec.label()),
                )
            })?;
            out.insert(k.clone(), v.to_string());
        }
    }
    Ok(out)
}

fn observe(
    spec: &ResourceSpec,
    path: &str,
    have: &Map<String, Value>,
    wanted: &BTreeMap<String, String>,
) -> Observed {
    let literal_keys: Vec<&String> = spec
        .desired
        .get("settings")
        .and_then(Value::as_object)
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    let settings: Map<String, Value> = literal_keys
        .into_iter()
        .filter_map(|k| have.get(k).map(|v| (k.clone(), v.clone())))
        .collect();
    let derived_keys: Vec<&String> = spec
        .desired
        .get("derived")
        .and_then(Value::as_object)
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    let derived: Map<String, Value> = derived_keys
        .into_iter()
        .map(|k| {
            let status = match (have.get(k).and_then(Value::as_str), wanted.get(k)) {
                (Some(h), Some(w)) if h == w => IN_SYNC,
                (Some(_), _) => "differs",
                (None, _) => "missing",
            };
            (k.clone(), json!(status))
        })
        .collect();
    Observed::new(path, json!({"settings": settings, "derived": derived}))
}

#[async_trait]
impl ResourceDriver for AppSettingsDriver {
    async fn read(
        &self,
        spec: &ResourceSpec,
        deps: &Outputs,
    ) -> Result<Option<Observed>, CloudError> {
        let Some(have) = self.current(spec).await? else {
            return Ok(None);
        };
        let ours = our_keys(spec)?.iter().any(|k| have.contains_key(k));
        if !ours {
            // None of ours is there: never written (or wiped), so it is created.
            return Ok(None);
        }
        let wanted = match self.wanted(spec, deps).await {
            Ok(w) => w,
            // The dependencies' outputs are not at hand (a plan before they exist, a destroy
            // after a lost state file): what derives from them reads as drift.
            Err(e) if e.code == "DependencyMissing" => literals(spec)?,
            Err(e) => return Err(e),
        };
        Ok(Some(observe(spec, &self.path(spec)?, &have, &wanted)))
    }

    async fn create(&self, spec: &ResourceSpec, deps: &Outputs) -> Result<Observed, CloudError> {
        self.write(spec, deps).await
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        _: &Observed,
        deps: &Outputs,
    ) -> Result<Observed, CloudError> {
        self.write(spec, deps).await
    }

    async fn delete(&self, spec: &ResourceSpec, _: &Observed) -> Result<(), CloudError> {
        // Ours are removed, others' kept; a site already gone took them all.
        let Some(mut have) = self.current(spec).await? else {
            return Ok(());
        };
        let ours = our_keys(spec)?;
        let before = have.len();
        have.retain(|k, _| !ours.contains(k));
        if have.len() == before {
            return Ok(());
        }
        self.put(spec, have).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use twin_config::{Layer, ProviderName};

    fn spec_with(literal: Value, derived_in: Value, in_sync: Value) -> ResourceSpec {
        let mut s = ResourceSpec::new(
            ResourceId("l2/x/twin".into()),
            Layer::L2,
            ProviderName::Azure,
            KIND,
            "appsettings",
        )
        .desired(json!({"settings": literal, "derived": in_sync}));
        s.inputs = json!({SITE_KEY: "app", DERIVED_KEY: derived_in});
        s
    }

    #[test]
    fn settings_serialize_by_source() {
        let s = Setting::Attr {
            dep: "l2/id/twin".into(),
            attr: "client_id".into(),
            template: Some("ClientId={}".into()),
        };
        let v = serde_json::to_value(&s).expect("json");
        assert_eq!(v["from"], "attr");
        assert_eq!(serde_json::from_value::<Setting>(v).expect("back"), s);
        assert_eq!(
            serde_json::to_value(Setting::literal("x")).expect("json"),
            json!({"from": "literal", "value": "x"})
        );
    }

    #[test]
    fn observation_keeps_only_our_literals_and_the_sync_state_of_derived_values() {
        let derived_in = json!({
            "CS": {"from": "arm_property", "dep": "d", "pointer": "/p", "api": "v"},
            "ID": {"from": "attr", "dep": "d", "attr": "client_id", "template": null},
            "GONE": {"from": "attr", "dep": "d", "attr": "client_id", "template": null},
        });
        let spec = spec_with(
            json!({"TWIN_NAME": "t"}),
            derived_in,
            json!({"CS": IN_SYNC, "ID": IN_SYNC, "GONE": IN_SYNC}),
        );
        assert_eq!(derived(&spec).expect("derived").len(), 3);
        let mut keys = our_keys(&spec).expect("keys");
        keys.sort();
        assert_eq!(keys, ["CS", "GONE", "ID", "TWIN_NAME"]);
        let have: Map<String, Value> = serde_json::from_value(json!({
            "TWIN_NAME": "t", "CS": "secret-ish", "ID": "old", "OTHERS": "their secret"}))
        .expect("map");
        let wanted: BTreeMap<String, String> = [("CS", "secret-ish"), ("ID", "new"), ("GONE", "x")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let o = observe(&spec, "/sites/app/config/appsettings", &have, &wanted);
        assert_eq!(o.attributes["settings"], json!({"TWIN_NAME": "t"}));
        assert_eq!(
            o.attributes["derived"],
            json!({"CS": IN_SYNC, "GONE": "missing", "ID": "differs"})
        );
        let text = o.attributes.to_string();
        assert!(
            !text.contains("secret"),
            "no setting value beyond our literals: {text}"
        );
        assert_eq!(o.drift(&spec.desired), vec!["derived"]);
    }
}
