//! `lambda_update`, `lambda_logs` and `lambda_invoke` against moto (Lambda without Docker echoes
//! the payload; log events are written with PutLogEvents so filtering and ordering are known).

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{Environment, FunctionCode, Runtime};
use serde_json::json;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use twin_aws::artifacts::{Artifacts, PREBUILT_ENV};
use twin_aws::function_ops::AwsFunctionOps;
use twin_aws::AwsClients;
use twin_config::{Architecture, ProviderName, Providers, TwinConfig};
use twin_engine::FunctionOps;

/// One prebuilt-functions directory for the whole binary (the env var is process-wide); each
/// test uses its own crate names inside it.
fn prebuilt_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("twin-fnops-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        std::env::set_var(PREBUILT_ENV, &dir);
        dir
    })
}

/// A valid, empty zip archive whose comment makes its bytes (and so its hash) distinct.
fn zip_bytes(comment: &str) -> Vec<u8> {
    let mut z = b"PK\x05\x06".to_vec();
    z.extend([0u8; 16]);
    z.extend((comment.len() as u16).to_le_bytes());
    z.extend(comment.as_bytes());
    z
}

fn write_zip(crate_name: &str, bytes: &[u8]) {
    let d = prebuilt_dir().join(crate_name);
    std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(d.join("bootstrap.zip"), bytes).unwrap_or_else(|e| panic!("{e}"));
}

async fn moto_clients() -> Arc<AwsClients> {
    twin_testkit::aws_env_for_moto();
    prebuilt_dir();
    Arc::new(
        AwsClients::load(None)
            .await
            .unwrap_or_else(|e| panic!("clients: {e}")),
    )
}

/// A twin named `name` whose one device `<name>-dev` has its own processor crate `<name>-proc`.
fn twin(name: &str) -> TwinConfig {
    TwinConfig {
        dir: std::env::temp_dir(),
        twin: serde_json::from_value(json!({
            "digital_twin_name": name, "hot_storage_size_in_days": 1,
            "cold_storage_size_in_days": 2
        }))
        .unwrap_or_else(|e| panic!("{e}")),
        devices: serde_json::from_value(json!([{
            "id": format!("{name}-dev"),
            "properties": [{"name": "t", "dataType": "DOUBLE"}],
            "processor": format!("{name}-proc")
        }]))
        .unwrap_or_else(|e| panic!("{e}")),
        providers: Providers::all(ProviderName::Aws),
        hierarchy: None,
        events: Vec::new(),
        warnings: Vec::new(),
    }
}

/// Creates `function` with `zip` and `env` as deploy would, with a role of its own.
async fn create_function(c: &AwsClients, function: &str, zip: Vec<u8>, env: &[(&str, &str)]) {
    let role = c
        .iam
        .create_role()
        .role_name(function)
        .assume_role_policy_document(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
            .to_string(),
        )
        .send()
        .await
        .unwrap_or_else(|e| panic!("role: {e:?}"));
    let arn = role.role().map(|r| r.arn().to_string()).unwrap_or_default();
    let mut vars = Environment::builder();
    for (k, v) in env {
        vars = vars.variables(*k, *v);
    }
    c.lambda
        .create_function()
        .function_name(function)
        .runtime(Runtime::Providedal2023)
        .handler("bootstrap")
        .role(arn)
        .environment(vars.build())
        .code(FunctionCode::builder().zip_file(Blob::new(zip)).build())
        .send()
        .await
        .unwrap_or_else(|e| panic!("function: {e:?}"));
}

async fn env_of(c: &AwsClients, function: &str) -> serde_json::Value {
    let conf = c
        .lambda
        .get_function_configuration()
        .function_name(function)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    let vars = conf
        .environment()
        .and_then(|e| e.variables())
        .cloned()
        .unwrap_or_default();
    serde_json::to_value(
        vars.into_iter()
            .collect::<std::collections::BTreeMap<_, _>>(),
    )
    .unwrap_or_default()
}

#[tokio::test]
async fn lambda_update_uploads_only_changed_code_and_merges_env_moto() {
    let c = moto_clients().await;
    let config = twin("fo-upd");
    let (local, cloud, crate_name) = (
        "fo-upd-dev-processor",
        "fo-upd--fo-upd-dev-processor",
        "fo-upd-proc",
    );
    let first = zip_bytes("first");
    write_zip(crate_name, &first);
    create_function(
        &c,
        cloud,
        first,
        &[("TWIN_NAME", "fo-upd"), ("LOG_LEVEL", "INFO")],
    )
    .await;

    // Same code, no env: nothing to do.
    let ops = AwsFunctionOps::new(
        c.clone(),
        Arc::new(Artifacts::new(None, Architecture::X86_64)),
    );
    let r = ops
        .update(&config, local, None)
        .await
        .unwrap_or_else(|e| panic!("update: {e}"));
    assert!(!r.code_updated && !r.env_updated, "{r:?}");

    // Env merges into what is there: kept, changed, added, removed.
    let changes = json!({"LOG_LEVEL": "DEBUG", "EXTRA": 7, "GONE": null});
    let r = ops
        .update(&config, local, changes.as_object().cloned())
        .await
        .unwrap_or_else(|e| panic!("update: {e}"));
    assert!(!r.code_updated && r.env_updated, "{r:?}");
    assert_eq!(
        env_of(&c, cloud).await,
        json!({"EXTRA": "7", "LOG_LEVEL": "DEBUG", "TWIN_NAME": "fo-upd"})
    );
    // The same env again changes nothing.
    let r = ops
        .update(&config, local, changes.as_object().cloned())
        .await
        .unwrap_or_else(|e| panic!("update: {e}"));
    assert!(!r.env_updated, "{r:?}");

    // New code (a fresh command sees the changed sources): uploaded, and Lambda runs it.
    let second = zip_bytes("second version");
    write_zip(crate_name, &second);
    let ops = AwsFunctionOps::new(
        c.clone(),
        Arc::new(Artifacts::new(None, Architecture::X86_64)),
    );
    let r = ops
        .update(&config, local, None)
        .await
        .unwrap_or_else(|e| panic!("update: {e}"));
    assert!(r.code_updated && r.rebuilt && !r.env_updated, "{r:?}");
    let conf = c
        .lambda
        .get_function_configuration()
        .function_name(cloud)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(
        conf.code_sha256(),
        Some(twin_aws::function_ops::code_sha256(&second).as_str())
    );
    assert_eq!(env_of(&c, cloud).await["LOG_LEVEL"], json!("DEBUG"));
    // The description carries the new source hash, so deploy and info see no drift.
    let hash = Artifacts::new(None, Architecture::X86_64)
        .source_hash(crate_name)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        conf.description(),
        Some(format!("deployer source_hash={hash}").as_str())
    );
    let r = ops
        .update(&config, local, None)
        .await
        .unwrap_or_else(|e| panic!("update: {e}"));
    assert!(!r.code_updated && !r.env_updated && !r.rebuilt, "{r:?}");
}

#[tokio::test]
async fn lambda_commands_name_unknown_and_undeployed_functions_moto() {
    let c = moto_clients().await;
    let config = twin("fo-err");
    let ops = AwsFunctionOps::new(
        c.clone(),
        Arc::new(Artifacts::new(None, Architecture::X86_64)),
    );
    let e = ops
        .invoke(&config, "no-such-fn", "{}", false)
        .await
        .err()
        .unwrap_or_else(|| panic!("should fail"));
    assert_eq!(e.code, "UnknownFunction");
    assert!(
        e.hint
            .as_deref()
            .is_some_and(|h| h.contains("persister") && h.contains("fo-err-dev-processor")),
        "{e}"
    );
    let e = ops
        .logs(&config, "persister", 10, false, None)
        .await
        .err()
        .unwrap_or_else(|| panic!("should fail"));
    assert!(
        e.hint
            .as_deref()
            .is_some_and(|h| h.contains("/aws/lambda/fo-err-persister")),
        "{e}"
    );
    write_zip("persister", &zip_bytes("p"));
    let e = ops
        .update(&config, "persister", None)
        .await
        .err()
        .unwrap_or_else(|| panic!("should fail"));
    assert!(
        e.hint.as_deref().is_some_and(|h| h.contains("deploy")),
        "{e}"
    );

    let mut azure = config.clone();
    azure.providers.layer_2 = ProviderName::Azure;
    let e = ops
        .invoke(&azure, "persister", "{}", false)
        .await
        .err()
        .unwrap_or_else(|| panic!("should fail"));
    assert_eq!(e.code, "NotOnAws");
}

#[tokio::test]
async fn lambda_logs_newest_lines_oldest_first_without_system_lines_moto() {
    let c = moto_clients().await;
    let config = twin("fo-logs");
    let group = "/aws/lambda/fo-logs-persister";
    c.logs
        .create_log_group()
        .log_group_name(group)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    let now = chrono::Utc::now().timestamp_millis() - 60_000;
    let lines = [
        (0, "INIT_START Runtime Version: provided:al2023.v1"),
        (1, "START RequestId: r1 Version: $LATEST"),
        (
            2,
            "persisted temperature-sensor-1 2025-01-01T00:00:00.000Z\n",
        ),
        (3, "END RequestId: r1"),
        (4, "REPORT RequestId: r1 Duration: 3.1 ms"),
        (5, "START RequestId: r2 Version: $LATEST"),
        (6, "duplicate ignored"),
        (7, "wrote 1 item"),
        (8, "END RequestId: r2"),
    ];
    // Two streams, written out of order: the command orders by time, not by stream.
    for (stream, part) in [("s-b", &lines[5..]), ("s-a", &lines[..5])] {
        c.logs
            .create_log_stream()
            .log_group_name(group)
            .log_stream_name(stream)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
        let mut req = c
            .logs
            .put_log_events()
            .log_group_name(group)
            .log_stream_name(stream);
        for (dt, m) in part {
            req = req.log_events(
                aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                    .timestamp(now + dt * 1000)
                    .message(*m)
                    .build()
                    .unwrap_or_else(|e| panic!("{e:?}")),
            );
        }
        req.send().await.unwrap_or_else(|e| panic!("{e:?}"));
    }
    let ops = AwsFunctionOps::new(
        c.clone(),
        Arc::new(Artifacts::new(None, Architecture::X86_64)),
    );
    let msgs = |v: Vec<twin_engine::LogLine>| v.into_iter().map(|l| l.message).collect::<Vec<_>>();

    let got = ops
        .logs(&config, "persister", 2, false, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(msgs(got), ["duplicate ignored", "wrote 1 item"]);

    let got = ops
        .logs(&config, "persister", 50, false, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        msgs(got),
        [
            "persisted temperature-sensor-1 2025-01-01T00:00:00.000Z",
            "duplicate ignored",
            "wrote 1 item"
        ]
    );

    let got = ops
        .logs(&config, "persister", 3, true, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        msgs(got),
        ["duplicate ignored", "wrote 1 item", "END RequestId: r2"]
    );

    // --follow: only what is newer than the last line shown.
    let got = ops
        .logs(&config, "persister", 50, true, Some(now + 6 * 1000))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(msgs(got), ["wrote 1 item", "END RequestId: r2"]);
    let got = ops
        .logs(&config, "persister", 50, false, Some(now + 8 * 1000))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(got.is_empty());
}

#[tokio::test]
async fn lambda_invoke_sync_returns_the_answer_and_async_is_queued_moto() {
    let c = moto_clients().await;
    let config = twin("fo-inv");
    create_function(
        &c,
        "fo-inv-hot-reader",
        zip_bytes("hr"),
        &[("TWIN_NAME", "fo-inv")],
    )
    .await;
    let ops = AwsFunctionOps::new(
        c.clone(),
        Arc::new(Artifacts::new(None, Architecture::X86_64)),
    );
    let payload = r#"{"iotDeviceId":"temperature-sensor-1"}"#;
    let r = ops
        .invoke(&config, "hot-reader", payload, false)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status_code, 200);
    assert_eq!(r.function_error, None);
    // moto's Lambda without Docker echoes the payload.
    assert_eq!(r.payload.as_deref(), Some(payload));

    let r = ops
        .invoke(&config, "hot-reader", payload, true)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status_code, 202);
    assert_eq!(r.log_tail, None);
}
