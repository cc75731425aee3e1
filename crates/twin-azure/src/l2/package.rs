//! The Function App's code package as a resource whose desired setting is the package's hash.
//! Create and update are a OneDeploy (`POST https://<scm host>/api/publish?RemoteBuild=false`
//! with the zip and an Entra token for ARM's scope; SCM basic auth is off), followed to its end
//! on the deployment's status URL (Kudu status 3 = failed, 4 = succeeded). The deployed hash is
//! kept as the site's `twin-package` tag (set through `Microsoft.Resources/tags/default` once
//! the deployment succeeded), which is what `read` reports; then the driver waits until ARM
//! lists the package's functions (`GET .../sites/<app>/functions`), so that the dispatcher's
//! ARM function id, an output, can be referenced by an Event Grid subscription.

use crate::arm::auth::ARM_SCOPE;
use crate::arm::{ArmClient, Body, Reply, RESOURCES_API};
use crate::context::{input, GROUP_KEY};
use crate::l2::{site, site_path, AppPackage};
use async_trait::async_trait;
use azure_core::http::Method;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use twin_engine::{
    CloudError, ErrorClass, Observed, Outputs, ResourceDriver, ResourceId, ResourceSpec,
};

/// Driver kind of the package.
pub const KIND: &str = "azure_function_package";

/// Inputs key: spec id of the site (its outputs name the SCM host).
pub const SITE_SPEC_KEY: &str = "site_spec";

/// Tag on the site that records the hash of the package deployed last.
pub const HASH_TAG: &str = "twin-package";

/// Name of the function Event Grid delivers telemetry to.
pub const DISPATCHER: &str = "dispatcher";

/// Output of the package: the hot-reader function's `invoke_url_template` (when the app has it).
pub const HOT_READER_URL: &str = "hot_reader_url";

/// A function ARM lists for a site: name, ARM id, invoke URL.
type Listed = (String, String, Option<String>);

/// Kudu's deployment status codes.
const KUDU_FAILED: u64 = 3;
const KUDU_SUCCEEDED: u64 = 4;

/// The desired settings of the package: its hash, and the functions the app must list.
pub fn desired(package: &AppPackage) -> Value {
    let mut functions = package.functions.clone();
    functions.sort();
    json!({"package_hash": package.hash, "functions": functions})
}

/// How a deployment and the functions' listing are waited for.
#[derive(Debug, Clone, Copy)]
pub struct DeployPolling {
    /// First wait between polls.
    pub min: Duration,
    /// Longest wait between polls (the wait doubles up to it).
    pub max: Duration,
    /// How long a deployment, and then the listing of its functions, may take.
    pub deadline: Duration,
}

impl Default for DeployPolling {
    fn default() -> Self {
        DeployPolling {
            min: Duration::from_secs(2),
            max: Duration::from_secs(15),
            // A Flex deployment mounts the package and restarts the host: minutes at worst.
            deadline: Duration::from_secs(10 * 60),
        }
    }
}

/// Deploys the package and reads back what is deployed.
pub struct PackageDriver {
    arm: Arc<ArmClient>,
    polling: DeployPolling,
    /// Packages built for this run's plan, by hash (bytes are never in the state).
    built: Mutex<HashMap<String, Arc<AppPackage>>>,
}

impl PackageDriver {
    /// A driver on this client.
    pub fn new(arm: Arc<ArmClient>, polling: DeployPolling) -> Self {
        PackageDriver {
            arm,
            polling,
            built: Mutex::new(HashMap::new()),
        }
    }

    /// Keeps a package built for the plan, so a create or update can upload it.
    pub fn remember(&self, package: AppPackage) {
        self.built
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(package.hash.clone(), Arc::new(package));
    }

    fn built(&self, hash: &str) -> Option<Arc<AppPackage>> {
        self.built
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(hash)
            .cloned()
    }

    fn site(&self, spec: &ResourceSpec) -> Result<String, CloudError> {
        Ok(site_path(&self.arm, input(spec, GROUP_KEY)?, &spec.name))
    }

    fn tags_path(site: &str) -> String {
        format!("{site}/providers/Microsoft.Resources/tags/default")
    }

    /// The site's tags (`None` when the site is gone).
    async fn tags(&self, site: &str, what: &str) -> Result<Option<Map<String, Value>>, CloudError> {
        Ok(self
            .arm
            .get(&Self::tags_path(site), RESOURCES_API, what)
            .await?
            .map(|b| {
                b.pointer("/properties/tags")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default()
            }))
    }

    /// The functions ARM lists for the site: (name, ARM id, `invoke_url_template` when ARM
    /// gives one: HTTP-triggered functions).
    async fn functions(&self, site: &str, what: &str) -> Result<Vec<Listed>, CloudError> {
        let items = self
            .arm
            .list(&format!("{site}/functions"), site::API, what)
            .await?;
        let mut out = Vec::new();
        for f in items {
            let id = f.get("id").and_then(Value::as_str).ok_or_else(|| {
                CloudError::fatal(
                    "IncompleteAnswer",
                    format!("{what}: a listed function has no id"),
                )
            })?;
            // `properties.name` is the function's own name; `name` is `<app>/<function>`.
            let name = f
                .pointer("/properties/name")
                .and_then(Value::as_str)
                .or_else(|| {
                    f.get("name")
                        .and_then(Value::as_str)
                        .and_then(|n| n.rsplit('/').next())
                })
                .ok_or_else(|| {
                    CloudError::fatal(
                        "IncompleteAnswer",
                        format!("{what}: function {id} has no name"),
                    )
                })?;
            let url = f
                .pointer("/properties/invoke_url_template")
                .and_then(Value::as_str)
                .filter(|u| !u.is_empty())
                .map(str::to_string);
            out.push((name.to_string(), id.to_string(), url));
        }
        out.sort();
        Ok(out)
    }

    async fn observe(&self, site: &str, hash: &str, what: &str) -> Result<Observed, CloudError> {
        let functions = self.functions(site, what).await?;
        let dispatcher = functions
            .iter()
            .find(|(n, _, _)| n == DISPATCHER)
            .map(|(_, id, _)| id.clone());
        let hot_reader_url = functions
            .iter()
            .find(|(n, _, _)| n == twin_functions_azure::app::AppFunction::HotReader.name())
            .and_then(|(_, _, url)| url.clone());
        Ok(Observed::new(
            Self::tags_path(site),
            json!({
                "package_hash": hash,
                "functions": functions.iter().map(|(n, _, _)| n.clone()).collect::<Vec<_>>(),
                // The hot-reader's URL as ARM reports it (no key in it), for `info`.
                HOT_READER_URL: hot_reader_url,
                // What an Event Grid subscription of type AzureFunction names as its endpoint.
                "dispatcher_function_id": dispatcher,
            }),
        ))
    }

    /// OneDeploy of `package` to the SCM host, followed until the deployment ends.
    async fn deploy(
        &self,
        scm_host: &str,
        package: &AppPackage,
        what: &str,
    ) -> Result<(), CloudError> {
        let dp = self.arm.data_plane(ARM_SCOPE);
        let base = dp.base_url(scm_host);
        tracing::info!(app = what, hash = %package.hash, bytes = package.bytes.len(), "deploying the function package");
        let r = dp
            .send(
                Method::Post,
                &format!("{base}/api/publish?RemoteBuild=false"),
                Some(Body {
                    content_type: "application/zip",
                    bytes: package.bytes.clone(),
                }),
                &[],
                what,
            )
            .await?;
        if !r.is_success() {
            return Err(kudu_error(what, &r));
        }
        let status_url = match r.location.as_deref() {
            Some(l) if l.starts_with('/') => format!("{base}{l}"),
            Some(l) => l.to_string(),
            None => format!("{base}/api/deployments/latest"),
        };
        let mut id = r.body.get("id").and_then(Value::as_str).map(str::to_string);
        let deadline = Instant::now() + self.polling.deadline;
        let mut delay = self.polling.min;
        loop {
            if Instant::now() + delay > deadline {
                return Err(CloudError::new(
                    ErrorClass::EventualConsistency,
                    "DeploymentStillRunning",
                    format!(
                        "{what}: deployment {} was still running after {}s",
                        id.as_deref().unwrap_or("(no id)"),
                        self.polling.deadline.as_secs()
                    ),
                ));
            }
            tokio::time::sleep(delay).await; // the deployment's own pace, with backoff
            delay = (delay * 2).min(self.polling.max);
            let r = match dp.send(Method::Get, &status_url, None, &[], what).await {
                Ok(r) => r,
                Err(e) if e.class.is_retryable() => continue,
                Err(e) => return Err(e),
            };
            if r.status == 202 {
                continue;
            }
            if !r.is_success() {
                let e = kudu_error(what, &r);
                if e.class.is_retryable() {
                    continue;
                }
                return Err(e);
            }
            if let Some(i) = r.body.get("id").and_then(Value::as_str) {
                id = Some(i.to_string());
            }
            let status = r
                .body
                .get("status")
                .and_then(Value::as_u64)
                .ok_or_else(|| {
                    CloudError::fatal(
                        "IncompleteAnswer",
                        format!("{what}: the deployment status names no `status`"),
                    )
                })?;
            match status {
                KUDU_SUCCEEDED => return Ok(()),
                KUDU_FAILED => {
                    let id = id.unwrap_or_else(|| "(no id)".into());
                    let text = r
                        .body
                        .get("status_text")
                        .and_then(Value::as_str)
                        .filter(|t| !t.is_empty())
                        .unwrap_or("no reason given");
                    // Often the identity's role on the deployment container still propagating,
                    // which a later attempt gets past: retried, with the reason kept.
                    return Err(CloudError::new(
                        ErrorClass::Transient,
                        "DeploymentFailed",
                        format!("{what}: deployment {id} failed: {text}"),
                    )
                    .with_hint(format!(
                        "see the deployment's log (`az functionapp log deployment show --deployment-id {id}`); the package is built by the deployer, so a failure that persists is worth reporting"
                    )));
                }
                _ => continue,
            }
        }
    }

    /// Records `hash` as the site's deployed package, keeping every other tag.
    async fn record(&self, site: &str, hash: &str, what: &str) -> Result<(), CloudError> {
        let mut tags = self.tags(site, what).await?.unwrap_or_default();
        tags.insert(HASH_TAG.into(), json!(hash));
        self.arm
            .put(
                &Self::tags_path(site),
                RESOURCES_API,
                &json!({"properties": {"tags": tags}}),
                what,
            )
            .await
            .map(|_| ())
    }

    /// Waits until ARM lists every function of the package.
    async fn wait_listed(&self, site: &str, want: &[String], what: &str) -> Result<(), CloudError> {
        let deadline = Instant::now() + self.polling.deadline;
        let mut delay = self.polling.min;
        loop {
            let listed: Vec<String> = self
                .functions(site, what)
                .await?
                .into_iter()
                .map(|(n, _, _)| n)
                .collect();
            let missing: Vec<&String> = want.iter().filter(|w| !listed.contains(w)).collect();
            if missing.is_empty() {
                return Ok(());
            }
            if Instant::now() + delay > deadline {
                return Err(CloudError::new(
                    ErrorClass::EventualConsistency,
                    "FunctionsNotListed",
                    format!(
                        "{what}: after the deployment the app still does not list {}",
                        missing
                            .iter()
                            .map(|m| m.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
                .with_hint(
                    "the host may not have started: check the app's logs in Application Insights",
                ));
            }
            tokio::time::sleep(delay).await; // the host syncs its triggers after a restart
            delay = (delay * 2).min(self.polling.max);
        }
    }

    async fn apply(
        &self,
        spec: &ResourceSpec,
        current: Option<&Observed>,
        deps: &Outputs,
    ) -> Result<Observed, CloudError> {
        let what = what(spec);
        let site = self.site(spec)?;
        let hash = spec.desired["package_hash"].as_str().ok_or_else(|| {
            CloudError::fatal(
                "SpecIncomplete",
                format!("{} has no package hash", spec.label()),
            )
        })?;
        let want: Vec<String> = spec.desired["functions"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        // Deployed already (only the listing was missing): no second upload.
        if current.and_then(|c| c.attr("package_hash")) != Some(hash) {
            let package = self.built(hash).ok_or_else(|| {
                CloudError::fatal(
                    "PackageNotBuilt",
                    format!("{what}: package {hash} was not built in this run"),
                )
                .with_hint("run deploy again; the package is built when the plan is made")
            })?;
            let site_spec = ResourceId(input(spec, SITE_SPEC_KEY)?.to_string());
            let scm = deps.attr(&site_spec, "scm_host")?;
            self.deploy(&scm, &package, &what).await?;
            self.record(&site, hash, &what).await?;
        }
        self.wait_listed(&site, &want, &what).await?;
        self.observe(&site, hash, &what).await
    }
}

fn what(spec: &ResourceSpec) -> String {
    format!("package of Function App {}", spec.name)
}

/// A classified error for a deployment endpoint's answer.
fn kudu_error(what: &str, r: &Reply) -> CloudError {
    let message = ["Message", "message", "error"]
        .iter()
        .find_map(|k| r.body.get(*k).and_then(Value::as_str))
        .unwrap_or("no message in the answer");
    let (class, code, hint) = match r.status {
        401 | 403 => (
            ErrorClass::EventualConsistency,
            "ScmUnauthorized",
            "the signed-in identity needs Website Contributor (or Contributor) on the app; rights granted a moment ago take minutes to reach the SCM site",
        ),
        404 => (
            ErrorClass::EventualConsistency,
            "ScmNotReady",
            "the app's deployment endpoint is not up yet right after the app was created",
        ),
        409 => (
            ErrorClass::Transient,
            "DeploymentInProgress",
            "another deployment to this app is running",
        ),
        429 => (ErrorClass::Throttling, "TooManyRequests", "slow down"),
        s if s >= 500 => (ErrorClass::Transient, "ScmServerError", "the deployment endpoint failed"),
        _ => (
            ErrorClass::Fatal,
            "DeploymentRefused",
            "the deployment endpoint refused the package; fix what it names, then run deploy again",
        ),
    };
    CloudError::new(
        class,
        code,
        format!("{what}: {message} (HTTP {})", r.status),
    )
    .with_retry_after(r.retry_after)
    .with_hint(hint)
}

#[async_trait]
impl ResourceDriver for PackageDriver {
    async fn read(&self, spec: &ResourceSpec, _: &Outputs) -> Result<Option<Observed>, CloudError> {
        let what = what(spec);
        let site = self.site(spec)?;
        let Some(tags) = self.tags(&site, &what).await? else {
            return Ok(None);
        };
        let Some(hash) = tags.get(HASH_TAG).and_then(Value::as_str) else {
            return Ok(None);
        };
        self.observe(&site, hash, &what).await.map(Some)
    }

    async fn create(&self, spec: &ResourceSpec, deps: &Outputs) -> Result<Observed, CloudError> {
        self.apply(spec, None, deps).await
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        current: &Observed,
        deps: &Outputs,
    ) -> Result<Observed, CloudError> {
        self.apply(spec, Some(current), deps).await
    }

    async fn delete(&self, _: &ResourceSpec, _: &Observed) -> Result<(), CloudError> {
        // The zip lives in the deployment container (deleted with the app's storage account)
        // and its record on the site (deleted with the site).
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: Value) -> Reply {
        Reply {
            status,
            body,
            async_operation: None,
            location: None,
            retry_after: None,
            etag: None,
        }
    }

    #[test]
    fn deployment_endpoint_errors_are_classified() {
        let e = kudu_error(
            "package of Function App a",
            &reply(403, json!({"Message": "no"})),
        );
        assert_eq!(e.class, ErrorClass::EventualConsistency);
        assert!(e.message.contains("Function App a") && e.message.contains("no"));
        assert_eq!(
            kudu_error("x", &reply(409, Value::Null)).class,
            ErrorClass::Transient
        );
        assert_eq!(
            kudu_error("x", &reply(503, Value::Null)).class,
            ErrorClass::Transient
        );
        assert_eq!(
            kudu_error("x", &reply(429, Value::Null)).class,
            ErrorClass::Throttling
        );
        let bad = kudu_error("x", &reply(400, json!({"message": "not a zip"})));
        assert_eq!(bad.class, ErrorClass::Fatal);
        assert!(bad.message.contains("not a zip") && bad.hint.is_some());
    }

    #[test]
    fn the_desired_functions_are_sorted() {
        let p = AppPackage {
            bytes: vec![],
            hash: "h".into(),
            functions: vec!["processor".into(), "dispatcher".into()],
        };
        assert_eq!(
            desired(&p),
            json!({"package_hash": "h", "functions": ["dispatcher", "processor"]})
        );
    }
}
