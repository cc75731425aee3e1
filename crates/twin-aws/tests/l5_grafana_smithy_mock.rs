//! Layer 5 (Amazon Managed Grafana) against `aws-smithy-mocks` in `RuleMode::Sequential`:
//! Grafana has no emulator, so these tests pin the exact requests, in order, of deploy and
//! destroy, and that both wait on the workspace status.

mod l45_support;

use aws_sdk_grafana::operation::create_workspace::{CreateWorkspaceError, CreateWorkspaceOutput};
use aws_sdk_grafana::operation::delete_workspace::DeleteWorkspaceOutput;
use aws_sdk_grafana::operation::describe_workspace::{
    DescribeWorkspaceError, DescribeWorkspaceOutput,
};
use aws_sdk_grafana::operation::list_workspaces::ListWorkspacesOutput;
use aws_sdk_grafana::types::error::{ResourceNotFoundException, ValidationException};
use aws_sdk_grafana::types::{
    AccountAccessType, AuthenticationProviderTypes, AuthenticationSummary, DataSourceType,
    PermissionType, WorkspaceDescription, WorkspaceStatus, WorkspaceSummary,
};
use aws_sdk_grafana::Client;
use aws_smithy_mocks::{mock, Rule};
use aws_smithy_types::DateTime;
use l45_support::{clients, meta, twin, unused_twinmaker};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use twin_aws::artifacts::Artifacts;
use twin_aws::{l5_grafana, AwsClients, LayerContext};
use twin_config::{Architecture, Layer, ProviderName, TwinConfig};
use twin_engine::{Observed, Outputs, ResourceSpec, RetryPolicy};

const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/dt-grafana";

fn l5_specs(config: &TwinConfig, clients: &Arc<AwsClients>) -> Result<Vec<ResourceSpec>, String> {
    let artifacts = Arc::new(Artifacts::new(None, Architecture::X86_64));
    let ctx = LayerContext {
        twin: config,
        clients,
        artifacts: &artifacts,
    };
    l5_grafana::specs(&ctx).map_err(|e| e.to_string())
}

fn description(status: WorkspaceStatus) -> WorkspaceDescription {
    WorkspaceDescription::builder()
        .id("g-123")
        .name("dt-grafana")
        .status(status)
        .created(DateTime::from_secs(0))
        .modified(DateTime::from_secs(0))
        .endpoint("g-123.grafana-workspace.us-east-1.amazonaws.com")
        .grafana_version("10.4")
        .data_sources(DataSourceType::Twinmaker)
        .permission_type(PermissionType::CustomerManaged)
        .workspace_role_arn(ROLE_ARN)
        .account_access_type(AccountAccessType::CurrentAccount)
        .authentication(
            AuthenticationSummary::builder()
                .providers(AuthenticationProviderTypes::AwsSso)
                .build()
                .unwrap_or_else(|e| panic!("{e}")),
        )
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn describe(status: WorkspaceStatus) -> Rule {
    mock!(Client::describe_workspace)
        .match_requests(|r| r.workspace_id() == Some("g-123"))
        .then_output(move || {
            DescribeWorkspaceOutput::builder()
                .workspace(description(status.clone()))
                .build()
        })
}

fn list(found: bool) -> Rule {
    mock!(Client::list_workspaces).then_output(move || {
        let mut b = ListWorkspacesOutput::builder();
        if found {
            b = b.workspaces(
                WorkspaceSummary::builder()
                    .id("g-123")
                    .name("dt-grafana")
                    .status(WorkspaceStatus::Active)
                    .created(DateTime::from_secs(0))
                    .modified(DateTime::from_secs(0))
                    .endpoint("g-123.grafana-workspace.us-east-1.amazonaws.com")
                    .grafana_version("10.4")
                    .build()
                    .unwrap_or_else(|e| panic!("{e}")),
            );
        } else {
            // Another twin's workspace is not ours.
            b = b.workspaces(
                WorkspaceSummary::builder()
                    .id("g-999")
                    .name("other-grafana")
                    .status(WorkspaceStatus::Active)
                    .created(DateTime::from_secs(0))
                    .modified(DateTime::from_secs(0))
                    .endpoint("x")
                    .grafana_version("10.4")
                    .build()
                    .unwrap_or_else(|e| panic!("{e}")),
            );
        }
        b.build().unwrap_or_else(|e| panic!("{e}"))
    })
}

/// The exact CreateWorkspace the deployer sends for the test twin.
fn is_expected_create(
    r: &aws_sdk_grafana::operation::create_workspace::CreateWorkspaceInput,
) -> bool {
    r.workspace_name() == Some("dt-grafana")
        && r.account_access_type() == Some(&AccountAccessType::CurrentAccount)
        && r.authentication_providers() == [AuthenticationProviderTypes::AwsSso]
        && r.permission_type() == Some(&PermissionType::CustomerManaged)
        && r.workspace_role_arn() == Some(ROLE_ARN)
        && r.workspace_data_sources() == [DataSourceType::Twinmaker]
        && r.tags().and_then(|t| t.get("twin")).map(String::as_str) == Some("dt")
}

fn workspace_spec(config: &TwinConfig) -> ResourceSpec {
    let c = clients(unused_twinmaker(), l45_support::unused_grafana());
    l5_specs(config, &c)
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .find(|s| s.kind == l5_grafana::WORKSPACE_KIND)
        .unwrap_or_else(|| panic!("no workspace spec"))
}

#[test]
fn grafana_specs_use_a_least_privilege_role_and_twinmaker_data_source() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let config = twin(dir.path().to_path_buf());
    let c = clients(unused_twinmaker(), l45_support::unused_grafana());
    let specs = l5_specs(&config, &c).unwrap_or_else(|e| panic!("{e}"));
    let ids: Vec<&str> = specs.iter().map(|s| s.id.0.as_str()).collect();
    assert_eq!(
        ids,
        [
            "l5/iam_role/grafana",
            "l5/grafana_workspace/workspace",
            "l5/iam_role/grafana-dashboard",
            "l5/grafana_service_account/deployer",
            "l5/grafana_datasource/twinmaker",
            "l5/grafana_folder/twin",
            "l5/grafana_dashboard/starter",
        ]
    );
    let by_id = |id: &str| {
        specs
            .iter()
            .find(|s| s.id.0 == id)
            .unwrap_or_else(|| panic!("no {id}"))
    };
    let deps =
        |id: &str| -> Vec<&str> { by_id(id).depends_on.iter().map(|d| d.0.as_str()).collect() };
    // The workspace role may only assume the dashboard role.
    let role = by_id("l5/iam_role/grafana");
    assert_eq!(
        role.desired["trust"]["Statement"][0]["Principal"]["Service"],
        json!("grafana.amazonaws.com")
    );
    let dashboard_role_arn = "arn:aws:iam::123456789012:role/dt-grafana-dashboard";
    assert_eq!(
        role.desired["policy"]["Statement"],
        json!([{"Effect": "Allow", "Action": ["sts:AssumeRole"], "Resource": [dashboard_role_arn]}])
    );
    // The dashboard role: trusted by the workspace role only, the TwinMaker docs' read-only
    // dashboard policy on the twin's workspace and bucket.
    let dashboard = by_id("l5/iam_role/grafana-dashboard");
    assert_eq!(dashboard.name, "dt-grafana-dashboard");
    assert_eq!(
        dashboard.desired["trust"]["Statement"],
        json!([{"Effect": "Allow", "Principal": {"AWS": ROLE_ARN}, "Action": "sts:AssumeRole"}])
    );
    assert_eq!(
        deps("l5/iam_role/grafana-dashboard"),
        ["l5/iam_role/grafana"]
    );
    let ws_arn = "arn:aws:iottwinmaker:us-east-1:123456789012:workspace/dt-twinmaker";
    let bucket_arn = format!(
        "arn:aws:s3:::{}",
        twin_config::names::bucket_name("dt", "twinmaker", "123456789012", "us-east-1")
    );
    assert_eq!(
        dashboard.desired["policy"]["Statement"],
        json!([
            {"Effect": "Allow",
             "Action": ["iottwinmaker:Get*", "iottwinmaker:List*"],
             "Resource": [ws_arn, format!("{ws_arn}/*")]},
            {"Effect": "Allow", "Action": ["iottwinmaker:ListWorkspaces"], "Resource": ["*"]},
            {"Effect": "Allow", "Action": ["s3:GetObject"],
             "Resource": [bucket_arn.clone(), format!("{bucket_arn}/*")]}
        ])
    );
    let ws = by_id("l5/grafana_workspace/workspace");
    assert_eq!(ws.name, "dt-grafana");
    assert_eq!(
        deps("l5/grafana_workspace/workspace"),
        ["l5/iam_role/grafana", "l4/twinmaker_workspace/workspace"]
    );
    assert_eq!(ws.desired["authentication"], json!(["AWS_SSO"]));
    assert_eq!(ws.desired["permissionType"], json!("CUSTOMER_MANAGED"));
    assert_eq!(ws.desired["dataSources"], json!(["TWINMAKER"]));
    // The data source: the plugin's type and jsonData, the dashboard role, a healthy check.
    let ds = by_id("l5/grafana_datasource/twinmaker");
    assert_eq!(ds.name, "dt-twinmaker");
    assert_eq!(
        ds.desired["jsonData"],
        json!({"authType": "ec2_iam_role", "assumeRoleArn": dashboard_role_arn,
            "defaultRegion": "us-east-1", "workspaceId": "dt-twinmaker"})
    );
    assert_eq!(ds.desired["health"], json!("OK"));
    assert_eq!(
        deps("l5/grafana_datasource/twinmaker"),
        [
            "l5/grafana_workspace/workspace",
            "l5/grafana_service_account/deployer",
            "l5/iam_role/grafana-dashboard"
        ]
    );
    // The dashboard: its JSON is an input; its hash (in a tag) is what drift compares.
    let dash = by_id("l5/grafana_dashboard/starter");
    let model = &dash.inputs["dashboard"];
    assert_eq!(
        l5_grafana::dashboard_model::hash_of_stored(model).as_deref(),
        dash.desired["hash"].as_str()
    );
    assert_eq!(
        l5_grafana::dashboard_model::property_panels(model).len(),
        2,
        "pressure and hardness"
    );
    assert_eq!(dash.desired["folderUid"], json!("dt-twin"));

    // Without TwinMaker on AWS there is nothing to read from TwinMaker: no dashboard role,
    // data source or dashboard.
    let mut no_l4 = config.clone();
    no_l4.providers.set(Layer::L4, ProviderName::None);
    let specs = l5_specs(&no_l4, &c).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(specs.len(), 2);
    assert_eq!(specs[1].desired["dataSources"], json!([]));
    assert_eq!(specs[1].depends_on.len(), 1);
    assert_eq!(specs[0].desired["policy"]["Statement"], json!([]));

    // Grants become a permissions spec (AWS_SSO); a SAML configuration its own spec (SAML).
    let mut sso = config.clone();
    sso.providers.aws.grafana_admins.users = vec!["u-2".into(), "u-1".into()];
    let specs = l5_specs(&sso, &c).unwrap_or_else(|e| panic!("{e}"));
    let perms = specs
        .iter()
        .find(|s| s.kind == l5_grafana::PERMISSIONS_KIND)
        .unwrap_or_else(|| panic!("no permissions spec"));
    assert_eq!(
        perms.desired["ADMIN"],
        json!({"users": ["u-1", "u-2"], "groups": []})
    );
    assert_eq!(perms.depends_on[0].0, "l5/grafana_workspace/workspace");

    // An authentication provider Grafana does not know is refused before any cloud call.
    let mut saml = config.clone();
    saml.providers.aws.grafana_authentication_provider = "SAML".into();
    saml.providers.aws.grafana_saml = Some(twin_config::GrafanaSaml {
        idp_metadata_url: Some("https://idp.example/metadata".into()),
        assertion_attributes: twin_config::SamlAssertionAttributes {
            role: "role".into(),
            ..Default::default()
        },
        admin_role_values: vec!["admin".into()],
        ..Default::default()
    });
    let specs = l5_specs(&saml, &c).unwrap_or_else(|e| panic!("{e}"));
    let s = specs
        .iter()
        .find(|s| s.kind == l5_grafana::SAML_KIND)
        .unwrap_or_else(|| panic!("no SAML spec"));
    assert_eq!(
        s.desired,
        json!({"idpMetadata": {"url": "https://idp.example/metadata"},
            "assertionAttributes": {"role": "role"},
            "roleValues": {"admin": ["admin"], "editor": []}})
    );
    let mut bad = config;
    bad.providers.aws.grafana_authentication_provider = "OKTA".into();
    let err = l5_specs(&bad, &c).err().unwrap_or_default();
    assert!(err.contains("OKTA") && err.contains("AWS_SSO"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn grafana_deploy_sends_exact_requests_smithy_mock() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let spec = workspace_spec(&twin(dir.path().to_path_buf()));
    let rules = [
        // read: not there yet
        list(false),
        // IAM has not propagated the new role: Grafana cannot assume it yet → retried
        mock!(Client::create_workspace)
            .match_requests(is_expected_create)
            .then_error(|| {
                let m = "The role arn:aws:iam::123456789012:role/dt-grafana cannot be assumed; check its trust policy";
                CreateWorkspaceError::ValidationException(
                    ValidationException::builder()
                        .message(m)
                        .reason(aws_sdk_grafana::types::ValidationExceptionReason::Other)
                        .meta(meta("ValidationException", m))
                        .build()
                        .unwrap_or_else(|e| panic!("{e}")),
                )
            }),
        // the engine reads before retrying a create
        list(false),
        mock!(Client::create_workspace)
            .match_requests(is_expected_create)
            .then_output(|| {
                CreateWorkspaceOutput::builder()
                    .workspace(description(WorkspaceStatus::Creating))
                    .build()
            }),
        // asynchronous: polled until ACTIVE
        describe(WorkspaceStatus::Creating),
        describe(WorkspaceStatus::Creating),
        describe(WorkspaceStatus::Active),
        // a second deploy reads it and finds nothing to change
        list(true),
        describe(WorkspaceStatus::Active),
    ];
    let grafana = crate::grafana_mock!(rules.iter());
    let clients = clients(unused_twinmaker(), grafana);
    let driver = l5_grafana::driver(l5_grafana::WORKSPACE_KIND, &clients)
        .unwrap_or_else(|| panic!("no driver"));

    let policy = RetryPolicy {
        base: Duration::from_millis(1),
        cap: Duration::from_millis(5),
        deadline: Duration::from_secs(10),
    };
    let deps = Outputs::default();
    assert!(driver.read(&spec, &deps).await.ok().flatten().is_none());
    let created = policy
        .run(
            &CancellationToken::new(),
            |attempt| {
                let (driver, deps, spec) = (driver.clone(), &deps, &spec);
                async move {
                    if attempt > 1 {
                        if let Some(o) = driver.read(spec, deps).await? {
                            return Ok(o);
                        }
                    }
                    driver.create(spec, deps).await
                }
            },
            |_, _, _| {},
        )
        .await;
    let (observed, attempts) = match created {
        Ok(v) => v,
        Err(_) => panic!("create failed"),
    };
    assert_eq!(attempts, 2, "the role error is retried once");
    assert_eq!(observed.cloud_id, "g-123");
    assert_eq!(
        observed.attr("arn"),
        Some("arn:aws:grafana:us-east-1:123456789012:/workspaces/g-123")
    );
    assert_eq!(observed.attr("status"), Some("ACTIVE"));
    assert!(observed.drift(&spec.desired).is_empty());

    let again = driver
        .read(&spec, &deps)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("not found"));
    assert!(again.drift(&spec.desired).is_empty());
    for (i, r) in rules.iter().enumerate() {
        assert_eq!(r.num_calls(), 1, "rule {i} answered once");
    }
}

#[tokio::test(start_paused = true)]
async fn grafana_destroy_sends_exact_requests_smithy_mock() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let spec = workspace_spec(&twin(dir.path().to_path_buf()));
    let rules = [
        mock!(Client::delete_workspace)
            .match_requests(|r| r.workspace_id() == Some("g-123"))
            .then_output(|| DeleteWorkspaceOutput::builder().build()),
        describe(WorkspaceStatus::Deleting),
        describe(WorkspaceStatus::Deleting),
        mock!(Client::describe_workspace)
            .match_requests(|r| r.workspace_id() == Some("g-123"))
            .then_error(|| {
                DescribeWorkspaceError::ResourceNotFoundException(
                    ResourceNotFoundException::builder()
                        .message("gone")
                        .resource_id("g-123")
                        .resource_type("workspace")
                        .meta(meta("ResourceNotFoundException", "gone"))
                        .build()
                        .unwrap_or_else(|e| panic!("{e}")),
                )
            }),
        // destroy of a state without the id (crash before create answered): found by name
        list(false),
    ];
    let grafana = crate::grafana_mock!(rules.iter());
    let clients = clients(unused_twinmaker(), grafana);
    let driver = l5_grafana::driver(l5_grafana::WORKSPACE_KIND, &clients)
        .unwrap_or_else(|| panic!("no driver"));
    let current = Observed::new("g-123", json!({}));
    driver
        .delete(&spec, &current)
        .await
        .unwrap_or_else(|e| panic!("delete: {e}"));
    driver
        .delete(&spec, &Observed::default())
        .await
        .unwrap_or_else(|e| panic!("delete without id: {e}"));
    for (i, r) in rules.iter().enumerate() {
        assert_eq!(r.num_calls(), 1, "rule {i} answered once");
    }
}
