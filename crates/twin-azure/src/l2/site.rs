//! The Function App (`Microsoft.Web/sites`, kind `functionapp,linux`, API 2024-11-01) on the
//! Flex Consumption plan: the twin's user-assigned identity, runtime `custom` (the one Rust
//! custom handler), the package taken from the app's deployment blob container with that
//! identity (no connection string), HTTPS only, TLS 1.2 and FTP off (`config/web`). App
//! settings are a resource of their own ([`super::settings`]), so the site's PUT carries none
//! and never resets them.

use crate::arm::ArmClient;
use crate::context::{input, merged_tags, owner_from, settled_state, GROUP_KEY, LOCATION_KEY};
use crate::function_ops::host_base_url;
use crate::l2::{link, plan, same_id, site_path};
use async_trait::async_trait;
use serde_json::{json, Value};
use std::sync::Arc;
use twin_engine::{CloudError, Observed, Outputs, ResourceDriver, ResourceId, ResourceSpec};

/// Driver kind of the site.
pub const KIND: &str = "azure_function_app";

/// API version (Microsoft.Web stable 2024-11-01, as the plan).
pub const API: &str = plan::API;

/// ARM type of the site.
pub const TYPE: &str = "Microsoft.Web/sites";

/// Inputs key: spec id of the plan.
pub const PLAN_KEY: &str = "plan";
/// Inputs key: spec id of the twin's identity.
pub const IDENTITY_KEY: &str = "identity";
/// Inputs key: spec id of the app's storage account.
pub const ACCOUNT_KEY: &str = "account";
/// Inputs key: name of the deployment container.
pub const CONTAINER_KEY: &str = "container";
/// Inputs key: `true` when the app's package holds `ingress-cold` (its URL is then an output).
pub const INGRESS_COLD_KEY: &str = "ingress_cold";

/// Output attribute of the site when the app hosts the hot → cold boundary's receiver: its
/// URL, `https://<defaultHostName>/api/ingress-cold` from the host name ARM reported, for the
/// sender on another cloud (`BOUNDARY_INGRESS_URL` of the remote hot-to-cold mover).
pub const INGRESS_COLD_URL: &str = "ingress_cold_url";

/// Memory of one instance (MB; Flex offers 512, 2048, 4096).
const INSTANCE_MEMORY_MB: u64 = 2048;
/// Upper bound on scale-out: the twin's traffic is modest, and this caps the bill.
const MAXIMUM_INSTANCE_COUNT: u64 = 40;

/// The desired settings of the site (the keys `read` reports). References to the plan, the
/// identity and the deployment container are reported `linked` when they point at this
/// twin's resources, so no cloud-assigned id is needed here.
pub fn desired() -> Value {
    json!({
        "kind": "functionapp,linux",
        "https_only": true,
        "runtime": "custom",
        "runtime_version": "1.0",
        "instance_memory_mb": INSTANCE_MEMORY_MB,
        "maximum_instance_count": MAXIMUM_INSTANCE_COUNT,
        "plan": "linked",
        "identity": "linked",
        "deployment_storage": "linked",
        "min_tls_version": "1.2",
        "scm_min_tls_version": "1.2",
        "ftps_state": "Disabled",
    })
}

/// What the site points at, from its dependencies' observations.
struct Links {
    plan: String,
    identity: String,
    container_url: String,
}

fn dep(spec: &ResourceSpec, key: &str) -> Result<ResourceId, CloudError> {
    Ok(ResourceId(input(spec, key)?.to_string()))
}

fn links(spec: &ResourceSpec, deps: &Outputs) -> Result<Links, CloudError> {
    let blob = deps.attr(&dep(spec, ACCOUNT_KEY)?, "blob_endpoint")?;
    Ok(Links {
        plan: deps.attr(&dep(spec, PLAN_KEY)?, "id")?,
        identity: deps.attr(&dep(spec, IDENTITY_KEY)?, "id")?,
        // The endpoint as ARM reported it for the account, plus the container (SPEC §9).
        container_url: format!(
            "{}/{}",
            blob.trim_end_matches('/'),
            input(spec, CONTAINER_KEY)?
        ),
    })
}

/// Creates, reads, updates and deletes the site.
pub struct SiteDriver {
    arm: Arc<ArmClient>,
}

impl SiteDriver {
    /// A driver on this client.
    pub fn new(arm: Arc<ArmClient>) -> Self {
        SiteDriver { arm }
    }

    fn path(&self, spec: &ResourceSpec) -> Result<String, CloudError> {
        Ok(site_path(&self.arm, input(spec, GROUP_KEY)?, &spec.name))
    }

    /// PUT the site, then its `config/web` (TLS, FTP): ARM answers the site's GET with most
    /// of `siteConfig` empty, so the web config is set and read on its own path.
    async fn put(
        &self,
        spec: &ResourceSpec,
        tags: Value,
        deps: &Outputs,
    ) -> Result<Observed, CloudError> {
        let what = what(spec);
        let l = links(spec, deps)?;
        let d = &spec.desired;
        let body = json!({
            "location": input(spec, LOCATION_KEY)?,
            "kind": "functionapp,linux",
            "tags": tags,
            "identity": {
                "type": "UserAssigned",
                "userAssignedIdentities": {l.identity.clone(): {}},
            },
            "properties": {
                "serverFarmId": l.plan,
                "httpsOnly": true,
                "siteConfig": {
                    "minTlsVersion": d["min_tls_version"],
                    "scmMinTlsVersion": d["scm_min_tls_version"],
                    "ftpsState": d["ftps_state"],
                },
                "functionAppConfig": {
                    "deployment": {"storage": {
                        "type": "blobContainer",
                        "value": l.container_url,
                        "authentication": {
                            "type": "UserAssignedIdentity",
                            "userAssignedIdentityResourceId": l.identity,
                        },
                    }},
                    "runtime": {"name": d["runtime"], "version": d["runtime_version"]},
                    "scaleAndConcurrency": {
                        "instanceMemoryMB": d["instance_memory_mb"],
                        "maximumInstanceCount": d["maximum_instance_count"],
                    },
                },
            },
        });
        let path = self.path(spec)?;
        let got = self.arm.put(&path, API, &body, &what).await?;
        let web = json!({"properties": {
            "minTlsVersion": d["min_tls_version"],
            "scmMinTlsVersion": d["scm_min_tls_version"],
            "ftpsState": d["ftps_state"],
        }});
        let web = self
            .arm
            .put(
                &format!("{path}/config/web"),
                API,
                &web,
                &format!("{what} web config"),
            )
            .await?;
        observe(&got, Some(&web), &l, &Serves::of(spec, &self.arm), &what)
    }
}

fn what(spec: &ResourceSpec) -> String {
    format!("Function App {}", spec.name)
}

/// The SCM (deployment) host ARM names for the site: its `Repository` host, else the enabled
/// host name with `.scm.` in it.
pub fn scm_host(body: &Value) -> Option<String> {
    let p = body.get("properties")?;
    let from_ssl = p
        .get("hostNameSslStates")
        .and_then(Value::as_array)
        .and_then(|a| {
            a.iter()
                .find(|h| h.get("hostType").and_then(Value::as_str) == Some("Repository"))
        })
        .and_then(|h| h.get("name").and_then(Value::as_str));
    let from_enabled = || {
        p.get("enabledHostNames")
            .and_then(Value::as_array)
            .and_then(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .find(|h| h.contains(".scm."))
            })
    };
    from_ssl.or_else(from_enabled).map(str::to_string)
}

/// What the site's observation reports besides ARM's answer: whether it serves `ingress-cold`,
/// and whether its host is behind a local fake (plain http).
struct Serves {
    ingress_cold: bool,
    local: bool,
}

impl Serves {
    fn of(spec: &ResourceSpec, arm: &ArmClient) -> Self {
        Serves {
            ingress_cold: spec
                .inputs
                .get(INGRESS_COLD_KEY)
                .and_then(Value::as_bool)
                .unwrap_or(false),
            local: arm.is_local(),
        }
    }
}

fn observe(
    body: &Value,
    web: Option<&Value>,
    l: &Links,
    serves: &Serves,
    what: &str,
) -> Result<Observed, CloudError> {
    let state = settled_state(body, what)?;
    let missing = |field: &str| {
        CloudError::fatal(
            "IncompleteAnswer",
            format!("{what}: ARM's answer has no {field}"),
        )
        .with_hint("ARM may still be setting the app up; run deploy again")
    };
    let id = body
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| missing("id"))?;
    let default_host = body
        .pointer("/properties/defaultHostName")
        .and_then(Value::as_str)
        .ok_or_else(|| missing("properties.defaultHostName"))?;
    let scm = scm_host(body).ok_or_else(|| missing("Repository (SCM) host name"))?;
    let fac = |k: &str| {
        body.pointer(&format!("/properties/functionAppConfig/{k}"))
            .cloned()
    };
    let storage = body.pointer("/properties/functionAppConfig/deployment/storage");
    let s = |k: &str| storage.and_then(|s| s.pointer(k)).and_then(Value::as_str);
    let deployment_ok = s("/value")
        .is_some_and(|v| v.trim_end_matches('/') == l.container_url.trim_end_matches('/'))
        && s("/authentication/type") == Some("UserAssignedIdentity")
        && same_id(
            s("/authentication/userAssignedIdentityResourceId"),
            &l.identity,
        );
    let identity_ok = body
        .pointer("/identity/userAssignedIdentities")
        .and_then(Value::as_object)
        .is_some_and(|m| m.keys().any(|k| same_id(Some(k), &l.identity)));
    let w = |k: &str| web.and_then(|w| w.pointer(&format!("/properties/{k}")).cloned());
    // The receiver's URL from the host ARM reported, never a name rebuilt here.
    let ingress_cold_url = serves.ingress_cold.then(|| {
        format!(
            "{}/api/{}",
            host_base_url(default_host, serves.local),
            twin_functions_azure::app::AppFunction::IngressCold.name()
        )
    });
    Ok(Observed::new(
        id,
        json!({
            "id": id,
            "kind": body.get("kind"),
            "https_only": body.pointer("/properties/httpsOnly"),
            "runtime": fac("runtime/name"),
            "runtime_version": fac("runtime/version"),
            "instance_memory_mb": fac("scaleAndConcurrency/instanceMemoryMB"),
            "maximum_instance_count": fac("scaleAndConcurrency/maximumInstanceCount"),
            "plan": link(same_id(
                body.pointer("/properties/serverFarmId").and_then(Value::as_str),
                &l.plan,
            )),
            "identity": link(identity_ok),
            "deployment_storage": link(deployment_ok),
            "min_tls_version": w("minTlsVersion"),
            "scm_min_tls_version": w("scmMinTlsVersion"),
            "ftps_state": w("ftpsState"),
            "provisioning_state": state,
            "state": body.pointer("/properties/state"),
            // Hosts as ARM reports them: the data plane is never addressed by a rebuilt name.
            "default_host_name": default_host,
            "scm_host": scm,
            INGRESS_COLD_URL: ingress_cold_url,
        }),
    )
    .owned_by(owner_from(body.get("tags"))))
}

#[async_trait]
impl ResourceDriver for SiteDriver {
    async fn read(
        &self,
        spec: &ResourceSpec,
        deps: &Outputs,
    ) -> Result<Option<Observed>, CloudError> {
        let what = what(spec);
        let path = self.path(spec)?;
        let Some(body) = self.arm.get(&path, API, &what).await? else {
            return Ok(None);
        };
        let web = self
            .arm
            .get(
                &format!("{path}/config/web"),
                API,
                &format!("{what} web config"),
            )
            .await?;
        // Without the dependencies' outputs (a destroy after a lost state file) the links read
        // as drift, never as a match.
        let links = links(spec, deps).unwrap_or(Links {
            plan: String::new(),
            identity: String::new(),
            container_url: String::new(),
        });
        observe(
            &body,
            web.as_ref(),
            &links,
            &Serves::of(spec, &self.arm),
            &what,
        )
        .map(Some)
    }

    async fn create(&self, spec: &ResourceSpec, deps: &Outputs) -> Result<Observed, CloudError> {
        self.put(spec, merged_tags(None, spec), deps).await
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        _: &Observed,
        deps: &Outputs,
    ) -> Result<Observed, CloudError> {
        let current = self.arm.get(&self.path(spec)?, API, &what(spec)).await?;
        let tags = merged_tags(current.as_ref().and_then(|c| c.get("tags")), spec);
        self.put(spec, tags, deps).await
    }

    async fn delete(&self, spec: &ResourceSpec, _: &Observed) -> Result<(), CloudError> {
        // Its app settings, policies, functions and package record go with it.
        self.arm.delete(&self.path(spec)?, API, &what(spec)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scm_host_is_the_repository_host_arm_names() {
        let body = json!({"properties": {
        "enabledHostNames": ["a.azurewebsites.net", "a.scm.azurewebsites.net"],
        "hostNameSslStates": [
            {"name": "a.azurewebsites.net", "hostType": "Standard"},
            {"name": "127.0.0.1:4000", "hostType": "Repository"},
        ]}});
        assert_eq!(scm_host(&body).as_deref(), Some("127.0.0.1:4000"));
        let body = json!({"properties": {
            "enabledHostNames": ["a.azurewebsites.net", "a.scm.azurewebsites.net"]}});
        assert_eq!(scm_host(&body).as_deref(), Some("a.scm.azurewebsites.net"));
        assert_eq!(scm_host(&json!({"properties": {}})), None);
    }
}
