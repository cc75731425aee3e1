//! What lives inside a Grafana, through its HTTP API (see [`crate::api`]): the data source,
//! the twin's folder and the starter dashboard. Each spec's name is the object's Grafana uid;
//! each observation records the target it was reached through, so a delete (which has no
//! dependencies) can reach it again.
//!
//! - data source: desired `name`, `type`, `access`, `jsonData` and `health` (`OK`): a data
//!   source whose health check fails has drifted, so the next deploy repairs it (and `info`
//!   shows it). Create and update wait until the health check passes (what the data source
//!   reaches may not let it in for some seconds). What only the deploy knows (a URL from a
//!   dependency, a key for `secureJsonData`) comes from the cloud's [`DatasourceLink`], is
//!   sent but never stored.
//! - folder: desired `title`.
//! - dashboard: desired `title`, `folderUid` and `hash` (of the JSON generated from the config,
//!   carried in a tag); the JSON itself is an input (`inputs.dashboard`), not compared.

use crate::api::{recorded_target, reread, GrafanaApi, Session, Target};
use crate::dashboard_model;
use async_trait::async_trait;
use http::Method;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use twin_engine::wait::poll_until;
use twin_engine::{CloudError, ErrorClass, Observed, Outputs, ResourceDriver, ResourceSpec};

/// Driver kind of a Grafana data source.
pub const DATASOURCE_KIND: &str = "grafana_datasource";
/// Driver kind of a Grafana folder.
pub const FOLDER_KIND: &str = "grafana_folder";
/// Driver kind of a Grafana dashboard.
pub const DASHBOARD_KIND: &str = "grafana_dashboard";

/// The health a data source is wanted in.
pub const HEALTHY: &str = "OK";

/// How long a new data source's health check may take to pass (what it reaches may need time
/// to let it in: IAM propagation on AWS, a new function key on Azure).
const HEALTH_DEADLINE: Duration = Duration::from_secs(120);
const HEALTH_FIRST_POLL: Duration = Duration::from_millis(500);
const HEALTH_MAX_POLL: Duration = Duration::from_secs(10);

/// What a cloud adds to its data source beyond the spec's desired settings.
#[async_trait]
pub trait DatasourceLink: Send + Sync {
    /// Fields merged over the body sent on create and update (e.g. `url`, `jsonData` keys,
    /// `secureJsonData`), from the dependencies; they are sent, never stored.
    async fn body_extra(&self, spec: &ResourceSpec, deps: &Outputs) -> Result<Value, CloudError>;

    /// Attributes merged over the observation, from Grafana's answer and the dependencies
    /// (e.g. whether the URL is the one the dependencies name now); `{}` for none.
    fn observe_extra(&self, answer: &Value, spec: &ResourceSpec, deps: &Outputs) -> Value;

    /// What the user can do when the health check keeps failing.
    fn unhealthy_hint(&self) -> &'static str;
}

/// Merges the keys of `extra` (an object) into `base`, objects recursively.
pub fn merge(base: &mut Value, extra: &Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, e) => *b = e.clone(),
    }
}

/// A field the code needs is missing from Grafana's answer.
fn incomplete(what: &str, field: &str) -> CloudError {
    CloudError::new(
        ErrorClass::Transient,
        "IncompleteResponse",
        format!("Grafana's answer for {what} has no `{field}`"),
    )
}

/// A delete whose Grafana (or the auth's account in it) is gone has nothing left to delete.
fn gone_is_done(r: Result<(), CloudError>) -> Result<(), CloudError> {
    match r {
        Err(e) if e.class == ErrorClass::NotFound => Ok(()),
        other => other,
    }
}

/// Deletes `<collection>/<uid>` in the Grafana recorded in `current`; already gone is done.
/// Found without a record, it lives in the Grafana, which destroy deletes with everything in it.
async fn delete_recorded(
    api: &GrafanaApi,
    current: &Observed,
    collection: &str,
    what: &str,
    uid: &str,
) -> Result<(), CloudError> {
    let Some(t) = recorded_target(current, api.auth().id_keys()) else {
        return Ok(());
    };
    gone_is_done(
        api.with_session(&t, async |s: &Session<'_>| {
            s.delete(
                &format!("{collection}/{uid}"),
                &format!("deleting {what} {uid}"),
            )
            .await
        })
        .await,
    )
}

/// Creates, reads, updates and deletes a data source.
pub struct DatasourceDriver {
    api: Arc<GrafanaApi>,
    link: Arc<dyn DatasourceLink>,
}

impl DatasourceDriver {
    /// A driver calling through `api`, completing the data source with `link`.
    pub fn new(api: Arc<GrafanaApi>, link: Arc<dyn DatasourceLink>) -> Self {
        DatasourceDriver { api, link }
    }
}

/// The health check's verdict: `OK`, or `ERROR` with Grafana's message.
async fn health(s: &Session<'_>, uid: &str) -> Result<(String, String), CloudError> {
    let a = s
        .call(
            Method::GET,
            &format!("/api/datasources/uid/{uid}/health"),
            None,
        )
        .await?;
    // 400 carries the plugin's verdict (ERROR and why). A retryable failure of the call itself
    // is an error (retried); any other answer is an unhealthy verdict naming the status, so
    // the data source shows as unhealthy instead of failing the whole read.
    match a.body.get("status").and_then(Value::as_str) {
        Some(status) if a.ok() || a.status == 400 => Ok((status.to_string(), a.message())),
        _ if a.ok() => Err(incomplete(&format!("data source {uid} health"), "status")),
        _ => {
            let e = a.error(&format!("health check of data source {uid}"));
            if e.class.is_retryable() {
                Err(e)
            } else {
                Ok((format!("HTTP{}", a.status), a.message()))
            }
        }
    }
}

async fn read_datasource(
    s: &Session<'_>,
    uid: &str,
    link: &dyn DatasourceLink,
    spec: &ResourceSpec,
    deps: &Outputs,
) -> Result<Option<Value>, CloudError> {
    let what = format!("data source {uid}");
    let Some(body) = s.get(&format!("/api/datasources/uid/{uid}"), &what).await? else {
        return Ok(None);
    };
    let (status, message) = health(s, uid).await?;
    let field = |k: &str| body.get(k).cloned().ok_or_else(|| incomplete(&what, k));
    let mut observed = json!({
        "uid": uid,
        "name": field("name")?,
        "type": field("type")?,
        "access": field("access")?,
        "jsonData": body.get("jsonData").cloned().unwrap_or_else(|| json!({})),
        "health": status,
        "healthMessage": message,
        "url": format!("{}/connections/datasources/edit/{uid}", s.base()),
    });
    merge(&mut observed, &link.observe_extra(&body, spec, deps));
    Ok(Some(observed))
}

/// Waits until the health check passes; an unhealthy verdict is "not yet" (what the data
/// source reaches may not let it in yet) until the deadline, which ends in a retryable error
/// naming Grafana's last message and `hint`.
async fn wait_healthy(s: &Session<'_>, uid: &str, hint: &str) -> Result<(), CloudError> {
    poll_until(
        &format!("Grafana data source {uid} health check"),
        HEALTH_FIRST_POLL,
        HEALTH_MAX_POLL,
        HEALTH_DEADLINE,
        || async {
            let (status, message) = health(s, uid).await?;
            if status == HEALTHY {
                Ok(Some(()))
            } else {
                Err(CloudError::new(
                    ErrorClass::EventualConsistency,
                    "DatasourceUnhealthy",
                    format!("data source {uid}: {status}: {message}"),
                ))
            }
        },
    )
    .await
    .map_err(|e| e.with_hint(hint))
}

impl DatasourceDriver {
    /// The body to send: the desired settings and what the link adds (a secret key among
    /// them, so the body is never logged or kept).
    async fn body(&self, spec: &ResourceSpec, deps: &Outputs) -> Result<Value, CloudError> {
        let d = &spec.desired;
        let mut body = json!({
            "uid": spec.name,
            "name": d["name"],
            "type": d["type"],
            "access": d["access"],
            "jsonData": d["jsonData"],
            "isDefault": true,
        });
        merge(&mut body, &self.link.body_extra(spec, deps).await?);
        Ok(body)
    }

    async fn observed(
        &self,
        s: &Session<'_>,
        spec: &ResourceSpec,
        t: &Target,
        deps: &Outputs,
    ) -> Result<Option<Observed>, CloudError> {
        Ok(
            read_datasource(s, &spec.name, self.link.as_ref(), spec, deps)
                .await?
                .map(|a| {
                    let url = a["url"].as_str().unwrap_or_default().to_string();
                    Observed::new(url, t.record(a))
                }),
        )
    }
}

#[async_trait]
impl ResourceDriver for DatasourceDriver {
    async fn read(
        &self,
        spec: &ResourceSpec,
        deps: &Outputs,
    ) -> Result<Option<Observed>, CloudError> {
        self.api
            .read_in_grafana_of(deps, async |s: &Session<'_>, t: &Target| {
                self.observed(s, spec, t, deps).await
            })
            .await
    }

    async fn create(&self, spec: &ResourceSpec, deps: &Outputs) -> Result<Observed, CloudError> {
        let body = self.body(spec, deps).await?;
        self.api
            .in_grafana_of(deps, async |s: &Session<'_>, t: &Target| {
                s.send(
                    Method::POST,
                    "/api/datasources",
                    &body,
                    &format!("creating data source {}", spec.name),
                )
                .await?;
                wait_healthy(s, &spec.name, self.link.unhealthy_hint()).await?;
                reread(
                    self.observed(s, spec, t, deps).await?,
                    &format!("data source {}", spec.name),
                )
            })
            .await
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        current: &Observed,
        deps: &Outputs,
    ) -> Result<Observed, CloudError> {
        // Only health drifted: the settings are right, so wait for the check rather than
        // rewrite them (a PUT would not make IAM propagate faster).
        let settings_drift = current.drift(&spec.desired).iter().any(|k| k != "health");
        let body = if settings_drift {
            Some(self.body(spec, deps).await?)
        } else {
            None
        };
        self.api
            .in_grafana_of(deps, async |s: &Session<'_>, t: &Target| {
                if let Some(body) = &body {
                    s.send(
                        Method::PUT,
                        &format!("/api/datasources/uid/{}", spec.name),
                        body,
                        &format!("updating data source {}", spec.name),
                    )
                    .await?;
                }
                wait_healthy(s, &spec.name, self.link.unhealthy_hint()).await?;
                reread(
                    self.observed(s, spec, t, deps).await?,
                    &format!("data source {}", spec.name),
                )
            })
            .await
    }

    async fn delete(&self, spec: &ResourceSpec, current: &Observed) -> Result<(), CloudError> {
        delete_recorded(
            &self.api,
            current,
            "/api/datasources/uid",
            "data source",
            &spec.name,
        )
        .await
    }
}

/// Creates, reads, updates and deletes the twin's folder.
pub struct FolderDriver {
    api: Arc<GrafanaApi>,
}

impl FolderDriver {
    /// A driver calling through `api`.
    pub fn new(api: Arc<GrafanaApi>) -> Self {
        FolderDriver { api }
    }
}

async fn read_folder(
    s: &Session<'_>,
    uid: &str,
    t: &Target,
) -> Result<Option<Observed>, CloudError> {
    let what = format!("folder {uid}");
    let Some(body) = s.get(&format!("/api/folders/{uid}"), &what).await? else {
        return Ok(None);
    };
    let title = body
        .get("title")
        .cloned()
        .ok_or_else(|| incomplete(&what, "title"))?;
    let url = format!("{}/dashboards/f/{uid}", s.base());
    Ok(Some(Observed::new(
        url.clone(),
        t.record(json!({"uid": uid, "title": title, "url": url})),
    )))
}

#[async_trait]
impl ResourceDriver for FolderDriver {
    async fn read(
        &self,
        spec: &ResourceSpec,
        deps: &Outputs,
    ) -> Result<Option<Observed>, CloudError> {
        self.api
            .read_in_grafana_of(deps, async |s: &Session<'_>, t: &Target| {
                read_folder(s, &spec.name, t).await
            })
            .await
    }

    async fn create(&self, spec: &ResourceSpec, deps: &Outputs) -> Result<Observed, CloudError> {
        self.api
            .in_grafana_of(deps, async |s: &Session<'_>, t: &Target| {
                s.send(
                    Method::POST,
                    "/api/folders",
                    &json!({"uid": spec.name, "title": spec.desired["title"]}),
                    &format!("creating folder {}", spec.name),
                )
                .await?;
                reread(
                    read_folder(s, &spec.name, t).await?,
                    &format!("folder {}", spec.name),
                )
            })
            .await
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        _current: &Observed,
        deps: &Outputs,
    ) -> Result<Observed, CloudError> {
        self.api
            .in_grafana_of(deps, async |s: &Session<'_>, t: &Target| {
                s.send(
                    Method::PUT,
                    &format!("/api/folders/{}", spec.name),
                    &json!({"title": spec.desired["title"], "overwrite": true}),
                    &format!("updating folder {}", spec.name),
                )
                .await?;
                reread(
                    read_folder(s, &spec.name, t).await?,
                    &format!("folder {}", spec.name),
                )
            })
            .await
    }

    async fn delete(&self, spec: &ResourceSpec, current: &Observed) -> Result<(), CloudError> {
        delete_recorded(&self.api, current, "/api/folders", "folder", &spec.name).await
    }
}

/// Creates, reads, updates and deletes the starter dashboard.
pub struct DashboardDriver {
    api: Arc<GrafanaApi>,
}

impl DashboardDriver {
    /// A driver calling through `api`.
    pub fn new(api: Arc<GrafanaApi>) -> Self {
        DashboardDriver { api }
    }
}

async fn read_dashboard(
    s: &Session<'_>,
    uid: &str,
    t: &Target,
) -> Result<Option<Observed>, CloudError> {
    let what = format!("dashboard {uid}");
    let Some(body) = s.get(&format!("/api/dashboards/uid/{uid}"), &what).await? else {
        return Ok(None);
    };
    let dashboard = body
        .get("dashboard")
        .ok_or_else(|| incomplete(&what, "dashboard"))?;
    let meta = body.get("meta").ok_or_else(|| incomplete(&what, "meta"))?;
    let path = meta
        .get("url")
        .and_then(Value::as_str)
        .ok_or_else(|| incomplete(&what, "meta.url"))?;
    let url = format!("{}{path}", s.base());
    Ok(Some(Observed::new(
        url.clone(),
        t.record(json!({
                "uid": uid,
                "title": dashboard.get("title"),
                "folderUid": meta.get("folderUid"),
                // No hash tag (edited by hand, or made by someone else) is drift.
                "hash": dashboard_model::hash_of_stored(dashboard),
                "panels": dashboard_model::property_panels(dashboard).len(),
                "url": url,
        })),
    )))
}

impl DashboardDriver {
    async fn put(&self, spec: &ResourceSpec, deps: &Outputs) -> Result<Observed, CloudError> {
        let dashboard = spec.inputs.get("dashboard").cloned().ok_or_else(|| {
            CloudError::fatal(
                "SpecInvalid",
                format!("dashboard {} has no JSON in its inputs", spec.name),
            )
            .with_hint("this is a bug in deployer; please report it")
        })?;
        self.api
            .in_grafana_of(deps, async |s: &Session<'_>, t: &Target| {
                // overwrite: the uid is the deployer's; what someone changed by hand is
                // replaced, as the dashboard's description says.
                s.send(
                    Method::POST,
                    "/api/dashboards/db",
                    &json!({
                        "dashboard": dashboard,
                        "folderUid": spec.desired["folderUid"],
                        "overwrite": true,
                        "message": "deployer: generated from the twin's devices and hierarchy",
                    }),
                    &format!("saving dashboard {}", spec.name),
                )
                .await?;
                reread(
                    read_dashboard(s, &spec.name, t).await?,
                    &format!("dashboard {}", spec.name),
                )
            })
            .await
    }
}

#[async_trait]
impl ResourceDriver for DashboardDriver {
    async fn read(
        &self,
        spec: &ResourceSpec,
        deps: &Outputs,
    ) -> Result<Option<Observed>, CloudError> {
        self.api
            .read_in_grafana_of(deps, async |s: &Session<'_>, t: &Target| {
                read_dashboard(s, &spec.name, t).await
            })
            .await
    }

    async fn create(&self, spec: &ResourceSpec, deps: &Outputs) -> Result<Observed, CloudError> {
        self.put(spec, deps).await
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        _current: &Observed,
        deps: &Outputs,
    ) -> Result<Observed, CloudError> {
        self.put(spec, deps).await
    }

    async fn delete(&self, spec: &ResourceSpec, current: &Observed) -> Result<(), CloudError> {
        delete_recorded(
            &self.api,
            current,
            "/api/dashboards/uid",
            "dashboard",
            &spec.name,
        )
        .await
    }
}
