//! The Amazon Managed Grafana control plane, which has no emulator, built from `aws-smithy-mocks`
//! rules (`RuleMode::MatchAny`) over shared state: workspaces (CREATING / DELETING for a number
//! of polls, then ACTIVE / gone), their authentication (SAML configuration), permissions,
//! service accounts and service-account tokens. A token it issues is also issued to the
//! [`FakeGrafana`] HTTP fake that stands in for the workspace's Grafana (with its lifetime), and
//! deleting the token, the service account or the workspace revokes it there, so the HTTP fake
//! only accepts what the control plane would. Every answered call is logged.

use super::{meta, Calls};
use aws_sdk_grafana::operation::create_workspace::CreateWorkspaceOutput;
use aws_sdk_grafana::operation::create_workspace_service_account::CreateWorkspaceServiceAccountOutput;
use aws_sdk_grafana::operation::create_workspace_service_account_token::CreateWorkspaceServiceAccountTokenError;
use aws_sdk_grafana::operation::create_workspace_service_account_token::CreateWorkspaceServiceAccountTokenOutput;
use aws_sdk_grafana::operation::delete_workspace::DeleteWorkspaceOutput;
use aws_sdk_grafana::operation::delete_workspace_service_account::{
    DeleteWorkspaceServiceAccountError, DeleteWorkspaceServiceAccountOutput,
};
use aws_sdk_grafana::operation::delete_workspace_service_account_token::{
    DeleteWorkspaceServiceAccountTokenError, DeleteWorkspaceServiceAccountTokenOutput,
};
use aws_sdk_grafana::operation::describe_workspace::{
    DescribeWorkspaceError, DescribeWorkspaceOutput,
};
use aws_sdk_grafana::operation::describe_workspace_authentication::{
    DescribeWorkspaceAuthenticationError, DescribeWorkspaceAuthenticationOutput,
};
use aws_sdk_grafana::operation::list_permissions::{ListPermissionsError, ListPermissionsOutput};
use aws_sdk_grafana::operation::list_workspace_service_accounts::{
    ListWorkspaceServiceAccountsError, ListWorkspaceServiceAccountsOutput,
};
use aws_sdk_grafana::operation::list_workspaces::ListWorkspacesOutput;
use aws_sdk_grafana::operation::update_permissions::UpdatePermissionsOutput;
use aws_sdk_grafana::operation::update_workspace::UpdateWorkspaceOutput;
use aws_sdk_grafana::operation::update_workspace_authentication::UpdateWorkspaceAuthenticationOutput;
use aws_sdk_grafana::types::error::ResourceNotFoundException;
use aws_sdk_grafana::types::{
    AuthenticationDescription, AuthenticationProviderTypes, AuthenticationSummary, PermissionEntry,
    Role, SamlAuthentication, SamlConfiguration, SamlConfigurationStatus, ServiceAccountSummary,
    ServiceAccountTokenSummaryWithKey, UpdateAction, User, WorkspaceDescription, WorkspaceStatus,
    WorkspaceSummary,
};
use aws_sdk_grafana::Client;
use aws_smithy_mocks::{mock, MockResponse, Rule};
use aws_smithy_types::DateTime;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use twin_testkit::fake_grafana::FakeGrafana;

#[derive(Clone)]
struct Workspace {
    id: String,
    name: String,
    role_arn: Option<String>,
    providers: Vec<AuthenticationProviderTypes>,
    data_sources: Vec<aws_sdk_grafana::types::DataSourceType>,
    permission_type: Option<aws_sdk_grafana::types::PermissionType>,
    account_access: Option<aws_sdk_grafana::types::AccountAccessType>,
    status: WorkspaceStatus,
    polls_left: u32,
    saml: Option<SamlConfiguration>,
    /// (user id, user type) → role.
    permissions: BTreeMap<(String, String), Role>,
    /// Service account id → (name, role, token ids → token values).
    accounts: BTreeMap<String, (String, Role, BTreeMap<String, String>)>,
    tags: Option<std::collections::HashMap<String, String>>,
}

#[derive(Default)]
struct Cloud {
    workspaces: BTreeMap<String, Workspace>,
    next: u64,
}

/// The fake's state, call log and the HTTP fake its tokens open.
#[derive(Clone)]
pub struct FakeManagedGrafana {
    cloud: Arc<Mutex<Cloud>>,
    grafana: Arc<FakeGrafana>,
    /// Every call answered, in order, e.g. `CreateWorkspace dt-grafana`.
    pub calls: Calls,
    settle_polls: u32,
}

fn now() -> DateTime {
    DateTime::from_secs(1_700_000_000)
}

fn not_found(what: &str) -> ResourceNotFoundException {
    ResourceNotFoundException::builder()
        .message(format!("{what} not found"))
        .resource_id(what)
        .resource_type("workspace")
        .meta(meta(
            "ResourceNotFoundException",
            &format!("{what} not found"),
        ))
        .build()
        .expect("exception")
}

/// Calls that change something, by operation name (for "a second deploy changes nothing").
pub const MUTATING: &[&str] = &[
    "CreateWorkspace",
    "UpdateWorkspace",
    "UpdateWorkspaceAuthentication",
    "DeleteWorkspace",
    "CreateWorkspaceServiceAccount",
    "DeleteWorkspaceServiceAccount",
    "UpdatePermissions",
];

impl FakeManagedGrafana {
    /// An empty control plane whose workspaces settle after `settle_polls` describes, with
    /// workspaces served by `grafana`.
    pub fn new(grafana: Arc<FakeGrafana>, settle_polls: u32) -> Self {
        FakeManagedGrafana {
            cloud: Arc::new(Mutex::new(Cloud::default())),
            grafana,
            calls: Calls::default(),
            settle_polls,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cloud> {
        self.cloud.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Names of the workspaces that exist.
    pub fn workspaces(&self) -> Vec<String> {
        self.lock()
            .workspaces
            .values()
            .map(|w| w.name.clone())
            .collect()
    }

    /// (service accounts, live token ids) of the workspace named `name`.
    pub fn accounts(&self, name: &str) -> (Vec<String>, usize) {
        let c = self.lock();
        let Some(w) = c.workspaces.values().find(|w| w.name == name) else {
            return (Vec::new(), 0);
        };
        (
            w.accounts.values().map(|a| a.0.clone()).collect(),
            w.accounts.values().map(|a| a.2.len()).sum(),
        )
    }

    /// `role user-type id` of every permission of the workspace named `name`.
    pub fn permissions(&self, name: &str) -> Vec<String> {
        let c = self.lock();
        c.workspaces
            .values()
            .filter(|w| w.name == name)
            .flat_map(|w| {
                w.permissions
                    .iter()
                    .map(|((id, t), r)| format!("{} {t} {id}", r.as_str()))
            })
            .collect()
    }

    /// Grants a permission behind the deployer's back (someone used the console).
    pub fn grant_out_of_band(&self, name: &str, user: &str) {
        let mut c = self.lock();
        if let Some(w) = c.workspaces.values_mut().find(|w| w.name == name) {
            w.permissions
                .insert((user.into(), "SSO_USER".into()), Role::Admin);
        }
    }

    /// Calls logged since the last take that change something.
    pub fn take_mutating(&self) -> Vec<String> {
        self.calls
            .take()
            .into_iter()
            .filter(|c| MUTATING.iter().any(|m| c.split(' ').next() == Some(*m)))
            .collect()
    }

    /// An SDK client answered by this fake.
    pub fn client(&self) -> Client {
        let rules = self.rules();
        aws_smithy_mocks::mock_client!(
            aws_sdk_grafana,
            aws_smithy_mocks::RuleMode::MatchAny,
            rules.iter(),
            |c| c.retry_config(aws_smithy_types::retry::RetryConfig::disabled())
        )
    }

    fn description(&self, w: &Workspace) -> WorkspaceDescription {
        let mut b = WorkspaceDescription::builder()
            .id(&w.id)
            .name(&w.name)
            .status(w.status.clone())
            .created(now())
            .modified(now())
            .endpoint(&self.grafana.url)
            .grafana_version("10.4")
            .set_data_sources(Some(w.data_sources.clone()))
            .set_permission_type(w.permission_type.clone())
            .set_workspace_role_arn(w.role_arn.clone())
            .set_account_access_type(w.account_access.clone())
            .set_tags(w.tags.clone())
            .authentication(
                AuthenticationSummary::builder()
                    .set_providers(Some(w.providers.clone()))
                    .build()
                    .expect("summary"),
            );
        if w.status == WorkspaceStatus::Failed {
            b = b.degraded_workspace_reason("failed");
        }
        b.build().expect("description")
    }

    /// Revokes every token of a service account in the HTTP fake.
    fn revoke_all(&self, tokens: &BTreeMap<String, String>) {
        for key in tokens.values() {
            self.grafana.revoke_token(key);
        }
    }

    fn rules(&self) -> Vec<Rule> {
        vec![
            self.list_workspaces(),
            self.describe_workspace(),
            self.create_workspace(),
            self.update_workspace(),
            self.delete_workspace(),
            self.describe_authentication(),
            self.update_authentication(),
            self.list_accounts(),
            self.create_account(),
            self.delete_account(),
            self.create_token(),
            self.delete_token(),
            self.list_permissions(),
            self.update_permissions(),
        ]
    }

    fn list_workspaces(&self) -> Rule {
        let me = self.clone();
        mock!(Client::list_workspaces).then_compute_output(move |_| {
            let c = me.lock();
            me.calls.push("ListWorkspaces");
            let mut b = ListWorkspacesOutput::builder().set_workspaces(Some(Vec::new()));
            for w in c.workspaces.values() {
                b = b.workspaces(
                    WorkspaceSummary::builder()
                        .id(&w.id)
                        .name(&w.name)
                        .status(w.status.clone())
                        .created(now())
                        .modified(now())
                        .endpoint(&me.grafana.url)
                        .grafana_version("10.4")
                        .build()
                        .expect("summary"),
                );
            }
            b.build().expect("list")
        })
    }

    fn describe_workspace(&self) -> Rule {
        let me = self.clone();
        mock!(Client::describe_workspace).then_compute_response(move |req| {
            let id = req.workspace_id().unwrap_or_default().to_string();
            let mut c = me.lock();
            me.calls.push(format!("DescribeWorkspace {id}"));
            let Some(w) = c.workspaces.get_mut(&id) else {
                return MockResponse::Error(DescribeWorkspaceError::ResourceNotFoundException(
                    not_found(&id),
                ));
            };
            if w.polls_left > 0 {
                w.polls_left -= 1;
            } else {
                match w.status {
                    WorkspaceStatus::Creating | WorkspaceStatus::Updating => {
                        w.status = WorkspaceStatus::Active
                    }
                    WorkspaceStatus::Deleting => {
                        let gone = c.workspaces.remove(&id);
                        if let Some(w) = gone {
                            for a in w.accounts.values() {
                                me.revoke_all(&a.2);
                            }
                        }
                        return MockResponse::Error(
                            DescribeWorkspaceError::ResourceNotFoundException(not_found(&id)),
                        );
                    }
                    _ => {}
                }
            }
            let Some(w) = c.workspaces.get(&id) else {
                return MockResponse::Error(DescribeWorkspaceError::ResourceNotFoundException(
                    not_found(&id),
                ));
            };
            MockResponse::Output(
                DescribeWorkspaceOutput::builder()
                    .workspace(me.description(w))
                    .build(),
            )
        })
    }

    fn create_workspace(&self) -> Rule {
        let me = self.clone();
        mock!(Client::create_workspace).then_compute_output(move |req| {
            let name = req.workspace_name().unwrap_or_default().to_string();
            let mut c = me.lock();
            me.calls.push(format!("CreateWorkspace {name}"));
            c.next += 1;
            let id = format!("g-{:010}", c.next);
            let w = Workspace {
                id: id.clone(),
                name,
                role_arn: req.workspace_role_arn().map(str::to_string),
                providers: req.authentication_providers().to_vec(),
                data_sources: req.workspace_data_sources().to_vec(),
                permission_type: req.permission_type().cloned(),
                account_access: req.account_access_type().cloned(),
                status: WorkspaceStatus::Creating,
                polls_left: me.settle_polls,
                saml: None,
                permissions: BTreeMap::new(),
                accounts: BTreeMap::new(),
                tags: req.tags().cloned(),
            };
            let d = me.description(&w);
            c.workspaces.insert(id, w);
            CreateWorkspaceOutput::builder().workspace(d).build()
        })
    }

    fn update_workspace(&self) -> Rule {
        let me = self.clone();
        mock!(Client::update_workspace).then_compute_output(move |req| {
            let id = req.workspace_id().unwrap_or_default().to_string();
            let mut c = me.lock();
            me.calls.push(format!("UpdateWorkspace {id}"));
            let w = c.workspaces.get_mut(&id).expect("workspace to update");
            w.role_arn = req.workspace_role_arn().map(str::to_string);
            w.data_sources = req.workspace_data_sources().to_vec();
            w.permission_type = req.permission_type().cloned();
            w.account_access = req.account_access_type().cloned();
            w.status = WorkspaceStatus::Updating;
            w.polls_left = me.settle_polls;
            let d = me.description(w);
            UpdateWorkspaceOutput::builder().workspace(d).build()
        })
    }

    fn delete_workspace(&self) -> Rule {
        let me = self.clone();
        mock!(Client::delete_workspace).then_compute_output(move |req| {
            let id = req.workspace_id().unwrap_or_default().to_string();
            let mut c = me.lock();
            me.calls.push(format!("DeleteWorkspace {id}"));
            let mut d = None;
            if let Some(w) = c.workspaces.get_mut(&id) {
                w.status = WorkspaceStatus::Deleting;
                w.polls_left = me.settle_polls;
                d = Some(me.description(w));
            }
            DeleteWorkspaceOutput::builder().set_workspace(d).build()
        })
    }

    fn auth_description(w: &Workspace) -> AuthenticationDescription {
        let mut b = AuthenticationDescription::builder().set_providers(Some(w.providers.clone()));
        if w.providers.contains(&AuthenticationProviderTypes::Saml) {
            b = b.saml(
                SamlAuthentication::builder()
                    .status(if w.saml.is_some() {
                        SamlConfigurationStatus::Configured
                    } else {
                        SamlConfigurationStatus::NotConfigured
                    })
                    .set_configuration(w.saml.clone())
                    .build()
                    .expect("saml"),
            );
        }
        b.build().expect("authentication")
    }

    fn describe_authentication(&self) -> Rule {
        let me = self.clone();
        mock!(Client::describe_workspace_authentication).then_compute_response(move |req| {
            let id = req.workspace_id().unwrap_or_default().to_string();
            let c = me.lock();
            me.calls
                .push(format!("DescribeWorkspaceAuthentication {id}"));
            match c.workspaces.get(&id) {
                Some(w) => MockResponse::Output(
                    DescribeWorkspaceAuthenticationOutput::builder()
                        .authentication(Self::auth_description(w))
                        .build(),
                ),
                None => MockResponse::Error(
                    DescribeWorkspaceAuthenticationError::ResourceNotFoundException(not_found(&id)),
                ),
            }
        })
    }

    fn update_authentication(&self) -> Rule {
        let me = self.clone();
        mock!(Client::update_workspace_authentication).then_compute_output(move |req| {
            let id = req.workspace_id().unwrap_or_default().to_string();
            let mut c = me.lock();
            me.calls.push(format!("UpdateWorkspaceAuthentication {id}"));
            let w = c.workspaces.get_mut(&id).expect("workspace");
            w.providers = req.authentication_providers().to_vec();
            w.saml = req.saml_configuration().cloned();
            UpdateWorkspaceAuthenticationOutput::builder()
                .authentication(Self::auth_description(w))
                .build()
        })
    }

    fn list_accounts(&self) -> Rule {
        let me = self.clone();
        mock!(Client::list_workspace_service_accounts).then_compute_response(move |req| {
            let id = req.workspace_id().unwrap_or_default().to_string();
            let c = me.lock();
            me.calls.push(format!("ListWorkspaceServiceAccounts {id}"));
            let Some(w) = c.workspaces.get(&id) else {
                return MockResponse::Error(
                    ListWorkspaceServiceAccountsError::ResourceNotFoundException(not_found(&id)),
                );
            };
            let accounts = w
                .accounts
                .iter()
                .map(|(sid, (name, role, _))| {
                    ServiceAccountSummary::builder()
                        .id(sid)
                        .name(name)
                        .is_disabled("false")
                        .grafana_role(role.clone())
                        .build()
                        .expect("account")
                })
                .collect();
            MockResponse::Output(
                ListWorkspaceServiceAccountsOutput::builder()
                    .set_service_accounts(Some(accounts))
                    .workspace_id(&id)
                    .build()
                    .expect("list"),
            )
        })
    }

    fn create_account(&self) -> Rule {
        let me = self.clone();
        mock!(Client::create_workspace_service_account).then_compute_output(move |req| {
            let id = req.workspace_id().unwrap_or_default().to_string();
            let name = req.name().unwrap_or_default().to_string();
            let role = req.grafana_role().cloned().unwrap_or(Role::Viewer);
            let mut c = me.lock();
            me.calls.push(format!(
                "CreateWorkspaceServiceAccount {id} {name} {}",
                role.as_str()
            ));
            c.next += 1;
            let sid = format!("sa-{}", c.next);
            let w = c.workspaces.get_mut(&id).expect("workspace");
            w.accounts
                .insert(sid.clone(), (name.clone(), role.clone(), BTreeMap::new()));
            CreateWorkspaceServiceAccountOutput::builder()
                .id(sid)
                .name(name)
                .grafana_role(role)
                .workspace_id(id)
                .build()
                .expect("output")
        })
    }

    fn delete_account(&self) -> Rule {
        let me = self.clone();
        mock!(Client::delete_workspace_service_account).then_compute_response(move |req| {
            let id = req.workspace_id().unwrap_or_default().to_string();
            let sid = req.service_account_id().unwrap_or_default().to_string();
            let mut c = me.lock();
            me.calls
                .push(format!("DeleteWorkspaceServiceAccount {id} {sid}"));
            let removed = c
                .workspaces
                .get_mut(&id)
                .and_then(|w| w.accounts.remove(&sid));
            match removed {
                Some(a) => {
                    me.revoke_all(&a.2);
                    MockResponse::Output(
                        DeleteWorkspaceServiceAccountOutput::builder()
                            .service_account_id(sid)
                            .workspace_id(id)
                            .build()
                            .expect("output"),
                    )
                }
                None => MockResponse::Error(
                    DeleteWorkspaceServiceAccountError::ResourceNotFoundException(not_found(&sid)),
                ),
            }
        })
    }

    fn create_token(&self) -> Rule {
        let me = self.clone();
        mock!(Client::create_workspace_service_account_token).then_compute_response(move |req| {
            let id = req.workspace_id().unwrap_or_default().to_string();
            let sid = req.service_account_id().unwrap_or_default().to_string();
            let ttl = req.seconds_to_live().unwrap_or_default();
            let name = req.name().unwrap_or_default().to_string();
            let mut c = me.lock();
            me.calls.push(format!(
                "CreateWorkspaceServiceAccountToken {id} {sid} ttl={ttl}"
            ));
            c.next += 1;
            let tid = format!("tok-{}", c.next);
            let key = format!("glsa_secret_{}", c.next);
            let Some(a) = c
                .workspaces
                .get_mut(&id)
                .and_then(|w| w.accounts.get_mut(&sid))
            else {
                return MockResponse::Error(
                    CreateWorkspaceServiceAccountTokenError::ResourceNotFoundException(not_found(
                        &sid,
                    )),
                );
            };
            a.2.insert(tid.clone(), key.clone());
            me.grafana
                .issue_token(&key, Duration::from_secs(u64::try_from(ttl).unwrap_or(0)));
            MockResponse::Output(
                CreateWorkspaceServiceAccountTokenOutput::builder()
                    .service_account_token(
                        ServiceAccountTokenSummaryWithKey::builder()
                            .id(tid)
                            .name(name)
                            .key(key)
                            .build()
                            .expect("token"),
                    )
                    .service_account_id(sid)
                    .workspace_id(id)
                    .build()
                    .expect("output"),
            )
        })
    }

    fn delete_token(&self) -> Rule {
        let me = self.clone();
        mock!(Client::delete_workspace_service_account_token).then_compute_response(move |req| {
            let id = req.workspace_id().unwrap_or_default().to_string();
            let sid = req.service_account_id().unwrap_or_default().to_string();
            let tid = req.token_id().unwrap_or_default().to_string();
            let mut c = me.lock();
            me.calls.push(format!(
                "DeleteWorkspaceServiceAccountToken {id} {sid} {tid}"
            ));
            let key = c
                .workspaces
                .get_mut(&id)
                .and_then(|w| w.accounts.get_mut(&sid))
                .and_then(|a| a.2.remove(&tid));
            match key {
                Some(k) => {
                    me.grafana.revoke_token(&k);
                    MockResponse::Output(
                        DeleteWorkspaceServiceAccountTokenOutput::builder()
                            .token_id(tid)
                            .service_account_id(sid)
                            .workspace_id(id)
                            .build()
                            .expect("output"),
                    )
                }
                None => MockResponse::Error(
                    DeleteWorkspaceServiceAccountTokenError::ResourceNotFoundException(not_found(
                        &tid,
                    )),
                ),
            }
        })
    }

    fn list_permissions(&self) -> Rule {
        let me = self.clone();
        mock!(Client::list_permissions).then_compute_response(move |req| {
            let id = req.workspace_id().unwrap_or_default().to_string();
            let c = me.lock();
            me.calls.push(format!("ListPermissions {id}"));
            let Some(w) = c.workspaces.get(&id) else {
                return MockResponse::Error(ListPermissionsError::ResourceNotFoundException(
                    not_found(&id),
                ));
            };
            let entries = w
                .permissions
                .iter()
                .map(|((uid, t), role)| {
                    PermissionEntry::builder()
                        .user(
                            User::builder()
                                .id(uid)
                                .r#type(aws_sdk_grafana::types::UserType::from(t.as_str()))
                                .build()
                                .expect("user"),
                        )
                        .role(role.clone())
                        .build()
                        .expect("entry")
                })
                .collect();
            MockResponse::Output(
                ListPermissionsOutput::builder()
                    .set_permissions(Some(entries))
                    .build()
                    .expect("list"),
            )
        })
    }

    fn update_permissions(&self) -> Rule {
        let me = self.clone();
        mock!(Client::update_permissions).then_compute_output(move |req| {
            let id = req.workspace_id().unwrap_or_default().to_string();
            let mut c = me.lock();
            let w = c.workspaces.get_mut(&id).expect("workspace");
            let mut log = Vec::new();
            for i in req.update_instruction_batch() {
                for u in i.users() {
                    let key = (u.id().to_string(), u.r#type().as_str().to_string());
                    log.push(format!(
                        "{} {} {}",
                        i.action().as_str(),
                        i.role().as_str(),
                        u.id()
                    ));
                    match i.action() {
                        UpdateAction::Add => {
                            w.permissions.insert(key, i.role().clone());
                        }
                        _ => {
                            if w.permissions.get(&key) == Some(i.role()) {
                                w.permissions.remove(&key);
                            }
                        }
                    }
                }
            }
            me.calls
                .push(format!("UpdatePermissions {id} [{}]", log.join(", ")));
            UpdatePermissionsOutput::builder()
                .set_errors(Some(Vec::new()))
                .build()
                .expect("output")
        })
    }
}
