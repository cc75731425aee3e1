//! Shared setup of the moto tests of L1-L3: a twin directory, prebuilt stand-in function zips,
//! an engine over the AWS provider, and listing every service for the twin's prefix.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use tokio_util::sync::CancellationToken;
use twin_aws::artifacts::{Artifacts, PREBUILT_ENV};
use twin_aws::{AwsClients, AwsProvider};
use twin_engine::{Engine, EngineOptions, NoEvents, Provider, RetryPolicy};

/// Every function crate the provider deploys.
pub const CRATES: [&str; 7] = [
    "dispatcher",
    "processor",
    "persister",
    "hot-reader",
    "hot-to-cold-mover",
    "cold-to-archive-mover",
    "twin-connector",
];

/// Points the SDK at moto and the provider at stand-in zips (moto's Lambda does not run them).
pub fn setup() -> &'static twin_testkit::Moto {
    static PREBUILT: OnceLock<PathBuf> = OnceLock::new();
    let m = twin_testkit::aws_env_for_moto();
    let dir = PREBUILT.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("twin-aws-prebuilt-{}", std::process::id()));
        for c in CRATES {
            let d = dir.join(c);
            std::fs::create_dir_all(&d).expect("temp dir");
            std::fs::write(d.join("bootstrap.zip"), stored_zip("bootstrap", c.as_bytes()))
                .expect("write zip");
        }
        dir
    });
    // SAFETY of set_var: every test sets the same value.
    unsafe { std::env::set_var(PREBUILT_ENV, dir) };
    m
}

/// A minimal valid zip with one stored (uncompressed) file.
pub fn stored_zip(name: &str, data: &[u8]) -> Vec<u8> {
    let crc = crc32(data);
    let mut z = Vec::new();
    let n = name.len() as u16;
    let len = data.len() as u32;
    z.extend_from_slice(&0x04034b50u32.to_le_bytes());
    z.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    z.extend_from_slice(&crc.to_le_bytes());
    z.extend_from_slice(&len.to_le_bytes());
    z.extend_from_slice(&len.to_le_bytes());
    z.extend_from_slice(&n.to_le_bytes());
    z.extend_from_slice(&0u16.to_le_bytes());
    z.extend_from_slice(name.as_bytes());
    z.extend_from_slice(data);
    let cd_start = z.len() as u32;
    z.extend_from_slice(&0x02014b50u32.to_le_bytes());
    z.extend_from_slice(&[20, 3, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    z.extend_from_slice(&crc.to_le_bytes());
    z.extend_from_slice(&len.to_le_bytes());
    z.extend_from_slice(&len.to_le_bytes());
    z.extend_from_slice(&n.to_le_bytes());
    z.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
    z.extend_from_slice(&(0o100755u32 << 16).to_le_bytes());
    z.extend_from_slice(&0u32.to_le_bytes());
    z.extend_from_slice(name.as_bytes());
    let cd_len = z.len() as u32 - cd_start;
    z.extend_from_slice(&0x06054b50u32.to_le_bytes());
    z.extend_from_slice(&[0, 0, 0, 0, 1, 0, 1, 0]);
    z.extend_from_slice(&cd_len.to_le_bytes());
    z.extend_from_slice(&cd_start.to_le_bytes());
    z.extend_from_slice(&0u16.to_le_bytes());
    z
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for b in data {
        crc ^= *b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// Writes a twin's three config files (L4/L5 = none, x86_64) with `devices` devices.
pub fn write_twin(dir: &Path, twin: &str, devices: usize) {
    let devs: Vec<serde_json::Value> = (0..devices)
        .map(|i| {
            serde_json::json!({"id": format!("sensor-{i}"),
                "properties": [{"name": "temperature", "dataType": "DOUBLE"}]})
        })
        .collect();
    let files = [
        (
            "config.json",
            serde_json::json!({"digital_twin_name": twin, "hot_storage_size_in_days": 30,
                "cold_storage_size_in_days": 90, "mode": "DEBUG"}),
        ),
        ("config_iot_devices.json", serde_json::Value::Array(devs)),
        (
            "config_providers.json",
            serde_json::json!({"layer_1_provider": "aws", "layer_2_provider": "aws",
                "layer_3_hot_provider": "aws", "layer_3_cold_provider": "aws",
                "layer_3_archive_provider": "aws", "layer_4_provider": "none",
                "layer_5_provider": "none",
                "aws": {"region": "us-east-1", "architecture": "x86_64"}}),
        ),
    ];
    for (name, v) in files {
        std::fs::write(dir.join(name), serde_json::to_string_pretty(&v).expect("json"))
            .expect("write config");
    }
}

/// A fast retry policy for tests (moto is quick; injected faults clear after a few calls).
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        base: std::time::Duration::from_millis(20),
        cap: std::time::Duration::from_millis(200),
        deadline: std::time::Duration::from_secs(30),
    }
}

/// Clients talking to `endpoint` (moto or a proxy in front of it).
pub async fn clients(endpoint: &str) -> Arc<AwsClients> {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await;
    Arc::new(AwsClients::from_sdk_config(
        &config,
        "123456789012".into(),
        "us-east-1".into(),
        "aws".into(),
    ))
}

/// An engine over the AWS provider for the twin in `dir`, with clients on `endpoint`.
pub async fn engine(dir: &Path, endpoint: &str) -> (Engine, Arc<twin_config::TwinConfig>) {
    let config = Arc::new(twin_config::load_dir(dir).expect("valid twin config"));
    let clients = clients(endpoint).await;
    let artifacts = Arc::new(Artifacts::new(None, config.providers.aws.architecture));
    let provider: Arc<dyn Provider> = Arc::new(AwsProvider::with_clients(clients, artifacts));
    let engine = Engine::new(
        config.clone(),
        vec![provider],
        EngineOptions {
            concurrency: 16,
            retry: fast_retry(),
        },
        Arc::new(NoEvents),
        CancellationToken::new(),
    );
    (engine, config)
}

/// Every name in every service of the account that starts with `prefix` (or contains it, for
/// ARNs and log groups), as `service:name`.
pub async fn leftovers(c: &AwsClients, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let rule_prefix = prefix.replace('-', "_");
    for r in c.iam.list_roles().send().await.expect("roles").roles() {
        if r.role_name().starts_with(prefix) {
            out.push(format!("iam:{}", r.role_name()));
        }
    }
    for f in c.lambda.list_functions().send().await.expect("functions").functions() {
        if f.function_name().unwrap_or("").starts_with(prefix) {
            out.push(format!("lambda:{}", f.function_name().unwrap_or("")));
        }
    }
    for t in c.iot.list_things().send().await.expect("things").things() {
        if t.thing_name().unwrap_or("").starts_with(prefix) {
            out.push(format!("iot-thing:{}", t.thing_name().unwrap_or("")));
        }
    }
    for p in c.iot.list_policies().send().await.expect("policies").policies() {
        if p.policy_name().unwrap_or("").starts_with(prefix) {
            out.push(format!("iot-policy:{}", p.policy_name().unwrap_or("")));
        }
    }
    for r in c.iot.list_topic_rules().send().await.expect("rules").rules() {
        if r.rule_name().unwrap_or("").starts_with(&rule_prefix) {
            out.push(format!("iot-rule:{}", r.rule_name().unwrap_or("")));
        }
    }
    for t in c.dynamodb.list_tables().send().await.expect("tables").table_names() {
        if t.starts_with(prefix) {
            out.push(format!("dynamodb:{t}"));
        }
    }
    for b in c.s3.list_buckets().send().await.expect("buckets").buckets() {
        if b.name().unwrap_or("").starts_with(prefix) {
            out.push(format!("s3:{}", b.name().unwrap_or("")));
        }
    }
    for a in c.apigw.get_apis().send().await.expect("apis").items() {
        if a.name().unwrap_or("").starts_with(prefix) {
            out.push(format!("apigw:{}", a.name().unwrap_or("")));
        }
    }
    for r in c
        .events
        .list_rules()
        .name_prefix(prefix)
        .send()
        .await
        .expect("event rules")
        .rules()
    {
        out.push(format!("events:{}", r.name().unwrap_or("")));
    }
    for g in c
        .logs
        .describe_log_groups()
        .log_group_name_prefix(format!("/aws/lambda/{prefix}"))
        .send()
        .await
        .expect("log groups")
        .log_groups()
    {
        out.push(format!("logs:{}", g.log_group_name().unwrap_or("")));
    }
    for cert in c.iot.list_certificates().send().await.expect("certs").certificates() {
        let arn = cert.certificate_arn().unwrap_or("");
        let things = c
            .iot
            .list_principal_things()
            .principal(arn)
            .send()
            .await
            .map(|t| t.things().to_vec())
            .unwrap_or_default();
        if things.iter().any(|t| t.starts_with(prefix)) {
            out.push(format!("iot-cert:{arn}"));
        }
    }
    out.sort();
    out
}
