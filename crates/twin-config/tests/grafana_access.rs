//! Who can sign in to the AWS Managed Grafana workspace: `grafana_admins` / `editors` /
//! `viewers` (IAM Identity Center ids) for AWS_SSO, `grafana_saml` for SAML, and the warning
//! that says what to do when neither is given.

use twin_config::{load_dir, GrafanaGrantees};

fn write(dir: &std::path::Path, aws: serde_json::Value, l5: &str) {
    let files = [
        (
            "config.json",
            // Settings that hit no storage cost trap, so the only warnings are Grafana's.
            serde_json::json!({"digital_twin_name": "t", "hot_storage_size_in_days": 1,
                "cold_storage_size_in_days": 31,
                "expected_load": {"messages_per_device_per_minute": 60}}),
        ),
        (
            "config_iot_devices.json",
            serde_json::json!([{"id": "d1", "properties": [{"name": "p", "dataType": "DOUBLE"}]}]),
        ),
        (
            "config_providers.json",
            serde_json::json!({"layer_1_provider": "aws", "layer_2_provider": "aws",
                "layer_3_hot_provider": "aws", "layer_3_cold_provider": "aws",
                "layer_3_archive_provider": "aws", "layer_4_provider": "aws",
                "layer_5_provider": l5, "aws": aws}),
        ),
    ];
    for (name, v) in files {
        std::fs::write(
            dir.join(name),
            serde_json::to_string_pretty(&v).expect("json"),
        )
        .expect("write");
    }
}

/// The warnings of a config that loads, or its errors.
fn load(
    aws: serde_json::Value,
    l5: &str,
) -> Result<(twin_config::TwinConfig, Vec<String>), Vec<String>> {
    let dir = tempfile::tempdir().expect("dir");
    write(dir.path(), aws, l5);
    match load_dir(dir.path()) {
        Ok(c) => {
            let w = c.warnings.iter().map(|d| d.message.clone()).collect();
            Ok((c, w))
        }
        Err(d) => Err(d
            .iter()
            .map(|d| format!("{}: {}", d.path, d.message))
            .collect()),
    }
}

#[test]
fn sso_grantees_are_read_by_role() {
    let (c, warnings) = load(
        serde_json::json!({"grafana_admins": {"users": ["u-1"], "groups": ["g-1"]},
            "grafana_viewers": {"groups": ["g-2"]}}),
        "aws",
    )
    .expect("loads");
    assert!(warnings.is_empty(), "{warnings:?}");
    let aws = &c.providers.aws;
    assert_eq!(
        aws.grafana_admins,
        GrafanaGrantees {
            users: vec!["u-1".into()],
            groups: vec!["g-1".into()]
        }
    );
    assert!(aws.grafana_editors.is_empty());
    assert_eq!(aws.grafana_viewers.groups, ["g-2"]);
    assert!(aws.grafana_has_grantees());
}

#[test]
fn nobody_granted_is_a_warning_that_says_what_to_do() {
    let (_, warnings) = load(serde_json::json!({}), "aws").expect("loads");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("nobody can sign in") && warnings[0].contains("grafana_admins"));
    let (_, warnings) = load(
        serde_json::json!({"grafana_authentication_provider": "SAML"}),
        "aws",
    )
    .expect("loads");
    assert!(warnings[0].contains("no SAML configuration") && warnings[0].contains("grafana_saml"));
    // No Grafana on AWS, nothing to warn about.
    let (_, warnings) = load(serde_json::json!({}), "none").expect("loads");
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn bad_grantees_are_errors() {
    let errors = load(
        serde_json::json!({"grafana_admins": {"users": ["u 1", ""], "roles": []},
            "grafana_editors": {"groups": ["g-1", "g-1"]},
            "grafana_viewers": {"groups": ["g-1"]}}),
        "aws",
    )
    .expect_err("fails");
    let text = errors.join("\n");
    assert!(
        text.contains("$.aws.grafana_admins.users[0]: `u 1` is not an IAM Identity Center id"),
        "{text}"
    );
    assert!(text.contains("$.aws.grafana_admins.users[1]"), "{text}");
    assert!(text.contains("unknown key `roles`"), "{text}");
    assert!(
        text.contains("$.aws.grafana_editors.groups[1]: `g-1` is listed twice"),
        "{text}"
    );
    let errors = load(
        serde_json::json!({"grafana_editors": {"groups": ["g-1"]},
            "grafana_viewers": {"groups": ["g-1"]}}),
        "aws",
    )
    .expect_err("fails");
    assert_eq!(
        errors,
        ["$.aws.grafana_viewers.groups: `g-1` is also in `grafana_editors`: a user or group has one Grafana role; keep it in one list"]
    );
}

#[test]
fn saml_configuration_is_read_and_checked() {
    let (c, warnings) = load(
        serde_json::json!({"grafana_authentication_provider": "SAML",
            "grafana_saml": {"idp_metadata_url": "https://idp.example/metadata",
                "assertion_attributes": {"role": "role", "email": "mail"},
                "admin_role_values": ["admin"], "editor_role_values": ["editor"],
                "login_validity_minutes": 120}}),
        "aws",
    )
    .expect("loads");
    assert!(warnings.is_empty(), "{warnings:?}");
    let saml = c.providers.aws.grafana_saml.expect("saml");
    assert_eq!(
        saml.idp_metadata_url.as_deref(),
        Some("https://idp.example/metadata")
    );
    assert_eq!(saml.assertion_attributes.role, "role");
    assert_eq!(saml.assertion_attributes.email.as_deref(), Some("mail"));
    assert_eq!(saml.admin_role_values, ["admin"]);
    assert_eq!(saml.login_validity_minutes, Some(120));

    let errors = load(
        serde_json::json!({"grafana_authentication_provider": "SAML",
            "grafana_admins": {"users": ["u-1"]},
            "grafana_saml": {"idp_metadata_url": "http://idp.example/metadata",
                "assertion_attributes": {}, "admin_role_values": []}}),
        "aws",
    )
    .expect_err("fails");
    let text = errors.join("\n");
    assert!(text.contains("not an HTTPS URL"), "{text}");
    assert!(text.contains("missing required key `role`"), "{text}");
    assert!(text.contains("name at least one role value"), "{text}");
    assert!(
        text.contains("$.aws.grafana_admins: `grafana_admins` grants IAM Identity Center users"),
        "{text}"
    );

    let errors = load(
        serde_json::json!({"grafana_saml": {"idp_metadata_xml": "<x/>",
            "assertion_attributes": {"role": "r"}, "admin_role_values": ["a"]}}),
        "aws",
    )
    .expect_err("fails");
    assert!(errors
        .join("\n")
        .contains("only used when grafana_authentication_provider is `SAML`"));
}
