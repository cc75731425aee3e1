//! Who reaches the workspace, through the Managed Grafana control plane:
//! - the deployer's own service account (Admin), whose short-lived tokens call the Grafana
//!   HTTP API ([`super::api`]); desired key `grafanaRole`;
//! - the IAM Identity Center users and groups granted Admin / Editor / Viewer (UpdatePermissions);
//!   desired keys `ADMIN`, `EDITOR`, `VIEWER`, each `{users, groups}` sorted. The config is
//!   authoritative: a grant made elsewhere is revoked by the next deploy;
//! - the SAML configuration (UpdateWorkspaceAuthentication); desired keys `idpMetadata`,
//!   `assertionAttributes`, `roleValues` and, when set, `loginValidityDuration`.

use crate::errors::{cloud, gone_is_ok, not_found_is_none};
use crate::AwsClients;
use async_trait::async_trait;
use aws_sdk_grafana::types::{
    AssertionAttributes, AuthenticationProviderTypes, IdpMetadata, Role, RoleValues,
    SamlConfiguration, UpdateAction, UpdateInstruction, User, UserType,
};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use twin_engine::{CloudError, ErrorClass, Observed, Outputs, ResourceDriver, ResourceSpec};

/// Driver kind of the deployer's service account.
pub const SERVICE_ACCOUNT_KIND: &str = "grafana_service_account";
/// Driver kind of the user and group grants.
pub const PERMISSIONS_KIND: &str = "grafana_permissions";
/// Driver kind of the SAML configuration.
pub const SAML_KIND: &str = "grafana_saml_configuration";

/// The Grafana roles a grant can give, as the desired keys name them.
pub const ROLES: [&str; 3] = ["ADMIN", "EDITOR", "VIEWER"];

/// The workspace id a spec's workspace dependency reports.
fn workspace_of(deps: &Outputs) -> Result<String, CloudError> {
    deps.attr(&super::workspace_id(), "id")
}

/// The workspace id recorded in an observation (what delete has, without dependencies).
fn recorded_workspace(current: &Observed) -> Option<&str> {
    current.attr("workspaceId").filter(|s| !s.is_empty())
}

/// Creates, finds and deletes the deployer's service account (Admin) of the workspace.
pub struct ServiceAccountDriver {
    clients: Arc<AwsClients>,
}

impl ServiceAccountDriver {
    /// A driver using these clients.
    pub fn new(clients: Arc<AwsClients>) -> Self {
        ServiceAccountDriver { clients }
    }

    async fn find(&self, workspace: &str, name: &str) -> Result<Option<Observed>, CloudError> {
        let mut token = None;
        loop {
            let Some(page) = not_found_is_none(
                self.clients
                    .grafana
                    .list_workspace_service_accounts()
                    .workspace_id(workspace)
                    .set_next_token(token)
                    .send()
                    .await,
            )?
            else {
                return Ok(None);
            };
            if let Some(a) = page.service_accounts().iter().find(|a| a.name() == name) {
                return Ok(Some(Observed::new(
                    a.id(),
                    json!({
                        "id": a.id(),
                        "grafanaRole": a.grafana_role().as_str(),
                        "workspaceId": workspace,
                    }),
                )));
            }
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                return Ok(None);
            }
        }
    }
}

#[async_trait]
impl ResourceDriver for ServiceAccountDriver {
    async fn read(
        &self,
        spec: &ResourceSpec,
        deps: &Outputs,
    ) -> Result<Option<Observed>, CloudError> {
        // No workspace yet (a plan before the first deploy): nothing in it exists either.
        let Ok(workspace) = workspace_of(deps) else {
            return Ok(None);
        };
        self.find(&workspace, &spec.name).await
    }

    async fn create(&self, spec: &ResourceSpec, deps: &Outputs) -> Result<Observed, CloudError> {
        let workspace = workspace_of(deps)?;
        let role = spec
            .desired
            .get("grafanaRole")
            .and_then(Value::as_str)
            .unwrap_or("ADMIN");
        let out = self
            .clients
            .grafana
            .create_workspace_service_account()
            .workspace_id(&workspace)
            .name(&spec.name)
            .grafana_role(Role::from(role))
            .send()
            .await
            .map_err(cloud)?;
        Ok(Observed::new(
            out.id(),
            json!({
                "id": out.id(),
                "grafanaRole": out.grafana_role().as_str(),
                "workspaceId": workspace,
            }),
        ))
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        current: &Observed,
        deps: &Outputs,
    ) -> Result<Observed, CloudError> {
        // A service account's role cannot be changed: replace it (its tokens go with it, and
        // the deployer makes a new one for every call anyway).
        self.delete(spec, current).await?;
        self.create(spec, deps).await
    }

    async fn delete(&self, spec: &ResourceSpec, current: &Observed) -> Result<(), CloudError> {
        // Without a recorded workspace there is nothing to address; deleting the workspace
        // removes its service accounts.
        let Some(workspace) = recorded_workspace(current) else {
            return Ok(());
        };
        if current.cloud_id.is_empty() {
            return Ok(());
        }
        gone_is_ok(
            self.clients
                .grafana
                .delete_workspace_service_account()
                .workspace_id(workspace)
                .service_account_id(&current.cloud_id)
                .send()
                .await,
        )
        .map_err(|e| name_resource(e, &format!("service account {}", spec.name)))
    }
}

fn name_resource(mut e: CloudError, what: &str) -> CloudError {
    if !e.message.contains(what) {
        e.message = format!("{what}: {}", e.message);
    }
    e
}

/// The desired grants: `{"ADMIN": {"users": [...], "groups": [...]}, ...}`, ids sorted.
pub fn grants_desired(aws: &twin_config::AwsSettings) -> Value {
    let mut out = Map::new();
    for (role, g) in aws.grafana_grants() {
        let mut users = g.users.clone();
        let mut groups = g.groups.clone();
        users.sort();
        groups.sort();
        out.insert(role.to_string(), json!({"users": users, "groups": groups}));
    }
    Value::Object(out)
}

/// (role, kind, id) triples of a grants object (`kind` is `users` or `groups`).
fn triples(grants: &Value) -> Vec<(String, &'static str, String)> {
    let mut out = Vec::new();
    for role in ROLES {
        for kind in ["users", "groups"] {
            for id in grants[role][kind].as_array().into_iter().flatten() {
                if let Some(id) = id.as_str() {
                    out.push((role.to_string(), kind, id.to_string()));
                }
            }
        }
    }
    out
}

/// The UpdatePermissions instructions that turn `current` grants into `desired`: revoke what
/// is granted but not wanted (or wanted with another role), then add what is missing.
pub fn grant_changes(
    current: &Value,
    desired: &Value,
) -> Vec<(UpdateAction, String, &'static str, String)> {
    let have = triples(current);
    let want = triples(desired);
    let mut out = Vec::new();
    for t in &have {
        if !want.contains(t) {
            out.push((UpdateAction::Revoke, t.0.clone(), t.1, t.2.clone()));
        }
    }
    for t in &want {
        if !have.contains(t) {
            out.push((UpdateAction::Add, t.0.clone(), t.1, t.2.clone()));
        }
    }
    out
}

/// Grants the configured users and groups their Grafana roles.
pub struct PermissionsDriver {
    clients: Arc<AwsClients>,
}

impl PermissionsDriver {
    /// A driver using these clients.
    pub fn new(clients: Arc<AwsClients>) -> Self {
        PermissionsDriver { clients }
    }

    async fn list(&self, workspace: &str) -> Result<Option<Value>, CloudError> {
        let mut grants: BTreeMap<&str, (Vec<String>, Vec<String>)> = ROLES
            .iter()
            .map(|r| (*r, (Vec::new(), Vec::new())))
            .collect();
        let mut token = None;
        loop {
            let Some(page) = not_found_is_none(
                self.clients
                    .grafana
                    .list_permissions()
                    .workspace_id(workspace)
                    .set_next_token(token)
                    .send()
                    .await,
            )?
            else {
                return Ok(None);
            };
            for p in page.permissions() {
                let user = p.user().ok_or_else(|| {
                    CloudError::new(
                        ErrorClass::Transient,
                        "IncompleteResponse",
                        format!("ListPermissions of Grafana workspace {workspace} returned an entry without a user"),
                    )
                })?;
                let Some(slot) = grants.get_mut(p.role().as_str()) else {
                    continue;
                };
                match user.r#type() {
                    UserType::SsoUser => slot.0.push(user.id().to_string()),
                    UserType::SsoGroup => slot.1.push(user.id().to_string()),
                    _ => {}
                }
            }
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        let mut out = Map::new();
        for (role, (mut users, mut groups)) in grants {
            users.sort();
            groups.sort();
            out.insert(role.to_string(), json!({"users": users, "groups": groups}));
        }
        out.insert("workspaceId".into(), Value::String(workspace.to_string()));
        Ok(Some(Value::Object(out)))
    }

    async fn apply(
        &self,
        spec: &ResourceSpec,
        workspace: &str,
        current: &Value,
        desired: &Value,
    ) -> Result<(), CloudError> {
        let changes = grant_changes(current, desired);
        if changes.is_empty() {
            return Ok(());
        }
        // One instruction per (action, role, kind), revokes first: a user moving to another
        // role loses the old one before getting the new one.
        let mut batch: BTreeMap<(u8, String), Vec<User>> = BTreeMap::new();
        for (action, role, kind, id) in changes {
            let order = u8::from(action == UpdateAction::Add);
            let user_type = if kind == "users" {
                UserType::SsoUser
            } else {
                UserType::SsoGroup
            };
            let user = User::builder()
                .id(id)
                .r#type(user_type)
                .build()
                .map_err(|e| CloudError::fatal("RequestInvalid", e.to_string()))?;
            batch.entry((order, role)).or_default().push(user);
        }
        let mut instructions = Vec::new();
        for ((order, role), users) in batch {
            let action = if order == 0 {
                UpdateAction::Revoke
            } else {
                UpdateAction::Add
            };
            instructions.push(
                UpdateInstruction::builder()
                    .action(action)
                    .role(Role::from(role.as_str()))
                    .set_users(Some(users))
                    .build()
                    .map_err(|e| CloudError::fatal("RequestInvalid", e.to_string()))?,
            );
        }
        let out = self
            .clients
            .grafana
            .update_permissions()
            .workspace_id(workspace)
            .set_update_instruction_batch(Some(instructions))
            .send()
            .await
            .map_err(|e| name_resource(cloud(e), &format!("Grafana permissions {}", spec.name)))?;
        if let Some(err) = out.errors().first() {
            let retryable = err.code() >= 500 || err.code() == 429;
            let who: Vec<String> = err
                .caused_by()
                .map(|i| i.users().iter().map(|u| u.id().to_string()).collect())
                .unwrap_or_default();
            let e = CloudError::new(
                if retryable {
                    ErrorClass::Transient
                } else {
                    ErrorClass::Fatal
                },
                format!("UpdatePermissions{}", err.code()),
                format!(
                    "granting Grafana roles in workspace {workspace} failed for {}: {}",
                    who.join(", "),
                    err.message()
                ),
            );
            return Err(if retryable {
                e
            } else {
                e.with_hint("check that the ids in grafana_admins / grafana_editors / grafana_viewers are IAM Identity Center user or group ids of this account's identity store")
            });
        }
        Ok(())
    }

    async fn reread(&self, spec: &ResourceSpec, workspace: &str) -> Result<Observed, CloudError> {
        let found = self.list(workspace).await?;
        let attrs = found.ok_or_else(|| {
            CloudError::fatal(
                "ResourceNotFoundException",
                format!(
                    "Grafana workspace {workspace} vanished while granting {}",
                    spec.name
                ),
            )
        })?;
        Ok(Observed::new(format!("{workspace}/permissions"), attrs))
    }
}

#[async_trait]
impl ResourceDriver for PermissionsDriver {
    async fn read(
        &self,
        _spec: &ResourceSpec,
        deps: &Outputs,
    ) -> Result<Option<Observed>, CloudError> {
        let Ok(workspace) = workspace_of(deps) else {
            return Ok(None);
        };
        Ok(self
            .list(&workspace)
            .await?
            .map(|a| Observed::new(format!("{workspace}/permissions"), a)))
    }

    async fn create(&self, spec: &ResourceSpec, deps: &Outputs) -> Result<Observed, CloudError> {
        let workspace = workspace_of(deps)?;
        let current = self.list(&workspace).await?.unwrap_or(Value::Null);
        self.apply(spec, &workspace, &current, &spec.desired)
            .await?;
        self.reread(spec, &workspace).await
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        current: &Observed,
        deps: &Outputs,
    ) -> Result<Observed, CloudError> {
        let workspace = workspace_of(deps)?;
        self.apply(spec, &workspace, &current.attributes, &spec.desired)
            .await?;
        self.reread(spec, &workspace).await
    }

    async fn delete(&self, spec: &ResourceSpec, current: &Observed) -> Result<(), CloudError> {
        let Some(workspace) = recorded_workspace(current) else {
            return Ok(());
        };
        let workspace = workspace.to_string();
        // Revoke what is granted now (the recorded observation may be old).
        let Some(now) = self.list(&workspace).await? else {
            return Ok(());
        };
        match self.apply(spec, &workspace, &now, &Value::Null).await {
            Err(e) if e.class == ErrorClass::NotFound => Ok(()),
            other => other,
        }
    }
}

/// The desired SAML configuration from the config's `grafana_saml`.
pub fn saml_desired(saml: &twin_config::GrafanaSaml) -> Value {
    let idp = match (&saml.idp_metadata_url, &saml.idp_metadata_xml) {
        (Some(url), _) => json!({"url": url}),
        (None, Some(xml)) => json!({"xml": xml}),
        (None, None) => Value::Null,
    };
    let a = &saml.assertion_attributes;
    let mut attrs = Map::new();
    for (k, v) in [
        ("role", Some(&a.role)),
        ("name", a.name.as_ref()),
        ("login", a.login.as_ref()),
        ("email", a.email.as_ref()),
        ("groups", a.groups.as_ref()),
        ("org", a.org.as_ref()),
    ] {
        if let Some(v) = v {
            attrs.insert(k.to_string(), Value::String(v.clone()));
        }
    }
    let mut out = json!({
        "idpMetadata": idp,
        "assertionAttributes": attrs,
        "roleValues": {"admin": saml.admin_role_values, "editor": saml.editor_role_values},
    });
    if let Some(m) = saml.login_validity_minutes {
        out["loginValidityDuration"] = json!(m);
    }
    out
}

fn saml_observed(c: &SamlConfiguration) -> Value {
    let idp = match c.idp_metadata() {
        Some(IdpMetadata::Url(u)) => json!({"url": u}),
        Some(IdpMetadata::Xml(x)) => json!({"xml": x}),
        _ => Value::Null,
    };
    let mut attrs = Map::new();
    if let Some(a) = c.assertion_attributes() {
        for (k, v) in [
            ("role", a.role()),
            ("name", a.name()),
            ("login", a.login()),
            ("email", a.email()),
            ("groups", a.groups()),
            ("org", a.org()),
        ] {
            if let Some(v) = v {
                attrs.insert(k.to_string(), Value::String(v.to_string()));
            }
        }
    }
    let (admin, editor) = c
        .role_values()
        .map(|r| (r.admin().to_vec(), r.editor().to_vec()))
        .unwrap_or_default();
    json!({
        "idpMetadata": idp,
        "assertionAttributes": attrs,
        "roleValues": {"admin": admin, "editor": editor},
        "loginValidityDuration": c.login_validity_duration(),
    })
}

fn saml_request(desired: &Value) -> Result<SamlConfiguration, CloudError> {
    let s = |v: &Value| v.as_str().map(str::to_string);
    let idp = &desired["idpMetadata"];
    let idp = match (s(&idp["url"]), s(&idp["xml"])) {
        (Some(u), _) => IdpMetadata::Url(u),
        (None, Some(x)) => IdpMetadata::Xml(x),
        (None, None) => {
            return Err(CloudError::fatal(
                "InvalidSamlConfiguration",
                "grafana_saml names no IdP metadata",
            )
            .with_hint("set grafana_saml.idp_metadata_url or idp_metadata_xml"))
        }
    };
    let a = &desired["assertionAttributes"];
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect()
    };
    let mut b = SamlConfiguration::builder()
        .idp_metadata(idp)
        .assertion_attributes(
            AssertionAttributes::builder()
                .set_role(s(&a["role"]))
                .set_name(s(&a["name"]))
                .set_login(s(&a["login"]))
                .set_email(s(&a["email"]))
                .set_groups(s(&a["groups"]))
                .set_org(s(&a["org"]))
                .build(),
        )
        .role_values(
            RoleValues::builder()
                .set_admin(Some(strings(&desired["roleValues"]["admin"])))
                .set_editor(Some(strings(&desired["roleValues"]["editor"])))
                .build(),
        );
    if let Some(m) = desired["loginValidityDuration"]
        .as_i64()
        .and_then(|m| i32::try_from(m).ok())
    {
        b = b.login_validity_duration(m);
    }
    Ok(b.build())
}

/// Sets the workspace's SAML configuration.
pub struct SamlDriver {
    clients: Arc<AwsClients>,
}

impl SamlDriver {
    /// A driver using these clients.
    pub fn new(clients: Arc<AwsClients>) -> Self {
        SamlDriver { clients }
    }

    async fn describe(&self, workspace: &str) -> Result<Option<Observed>, CloudError> {
        let Some(out) = not_found_is_none(
            self.clients
                .grafana
                .describe_workspace_authentication()
                .workspace_id(workspace)
                .send()
                .await,
        )?
        else {
            return Ok(None);
        };
        let saml = out
            .authentication()
            .and_then(|a| a.saml())
            .and_then(|s| s.configuration().map(|c| (s.status().as_str(), c)));
        Ok(saml.map(|(status, c)| {
            let mut attrs = saml_observed(c);
            attrs["status"] = json!(status);
            attrs["workspaceId"] = json!(workspace);
            Observed::new(format!("{workspace}/saml"), attrs)
        }))
    }

    async fn put(&self, spec: &ResourceSpec, deps: &Outputs) -> Result<Observed, CloudError> {
        let workspace = workspace_of(deps)?;
        self.clients
            .grafana
            .update_workspace_authentication()
            .workspace_id(&workspace)
            .authentication_providers(AuthenticationProviderTypes::Saml)
            .saml_configuration(saml_request(&spec.desired)?)
            .send()
            .await
            .map_err(|e| name_resource(cloud(e), &format!("SAML configuration of {workspace}")))?;
        crate::errors::reread(
            self.describe(&workspace).await?,
            "ResourceNotFoundException",
            &format!("SAML configuration of Grafana workspace {workspace}"),
        )
    }
}

#[async_trait]
impl ResourceDriver for SamlDriver {
    async fn read(
        &self,
        _spec: &ResourceSpec,
        deps: &Outputs,
    ) -> Result<Option<Observed>, CloudError> {
        let Ok(workspace) = workspace_of(deps) else {
            return Ok(None);
        };
        self.describe(&workspace).await
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

    async fn delete(&self, _spec: &ResourceSpec, _current: &Observed) -> Result<(), CloudError> {
        // Managed Grafana has no call that removes a SAML configuration while keeping SAML;
        // it goes with the workspace.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_changes_revoke_then_add() {
        let current = json!({"ADMIN": {"users": ["a"], "groups": []},
            "VIEWER": {"users": ["b", "old"], "groups": ["g"]}});
        let desired = json!({"ADMIN": {"users": ["a", "b"], "groups": []},
            "EDITOR": {"users": [], "groups": []}, "VIEWER": {"users": [], "groups": ["g"]}});
        let c = grant_changes(&current, &desired);
        let text: Vec<String> = c
            .iter()
            .map(|(a, r, k, id)| format!("{} {r} {k} {id}", a.as_str()))
            .collect();
        assert_eq!(
            text,
            [
                "REVOKE VIEWER users b",
                "REVOKE VIEWER users old",
                "ADD ADMIN users b"
            ]
        );
        assert!(grant_changes(&desired, &desired).is_empty());
        // Deleting revokes everything.
        assert_eq!(grant_changes(&current, &Value::Null).len(), 4);
    }

    #[test]
    fn saml_settings_round_trip_through_the_sdk_shape() {
        let saml = twin_config::GrafanaSaml {
            idp_metadata_url: Some("https://idp/metadata".into()),
            idp_metadata_xml: None,
            assertion_attributes: twin_config::SamlAssertionAttributes {
                role: "role".into(),
                email: Some("mail".into()),
                ..Default::default()
            },
            admin_role_values: vec!["admin".into()],
            editor_role_values: vec![],
            login_validity_minutes: Some(60),
        };
        let desired = saml_desired(&saml);
        let request = saml_request(&desired).unwrap_or_else(|e| panic!("{e}"));
        let observed = saml_observed(&request);
        assert!(
            twin_engine::contains(&observed, &desired),
            "{observed} vs {desired}"
        );
    }
}
