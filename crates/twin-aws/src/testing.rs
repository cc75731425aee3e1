//! Test and benchmark helpers shared by this crate's tests and the deployer's end-to-end
//! tests: stand-in function zips, and listing what of a twin is left in every service.

use crate::artifacts::Artifacts;
use crate::AwsClients;
use std::path::Path;
use std::sync::Arc;
use twin_config::Architecture;

/// Clients that reach nothing (`127.0.0.1:9`) and artifacts that only hash this workspace's
/// function sources, for tests that compute specs: nothing is called, built or uploaded.
pub fn offline_clients_and_artifacts() -> (Arc<AwsClients>, Arc<Artifacts>) {
    let conf = aws_types::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_types::region::Region::new("us-east-1"))
        .endpoint_url("http://127.0.0.1:9")
        .build();
    let clients = AwsClients::from_sdk_config(
        &conf,
        "123456789012".into(),
        "us-east-1".into(),
        "aws".into(),
    );
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let artifacts = Artifacts::new(Some(workspace), Architecture::Arm64);
    (Arc::new(clients), Arc::new(artifacts))
}

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

/// Writes `<dir>/<crate>/bootstrap.zip` stand-ins for every function crate (for
/// `DEPLOYER_PREBUILT_FUNCTIONS` against an emulator that does not run the code).
pub fn write_prebuilt(dir: &Path) -> std::io::Result<()> {
    for c in CRATES {
        let d = dir.join(c);
        std::fs::create_dir_all(&d)?;
        std::fs::write(
            d.join("bootstrap.zip"),
            stored_zip("bootstrap", c.as_bytes()),
        )?;
    }
    Ok(())
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
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Every name in every service of the account that starts with `prefix` (or contains it, for
/// ARNs and log groups), as `service:name`.
pub async fn leftovers(c: &AwsClients, prefix: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let rule_prefix = prefix.replace('-', "_");
    for r in c
        .iam
        .list_roles()
        .send()
        .await
        .map_err(|e| e.to_string())?
        .roles()
    {
        if r.role_name().starts_with(prefix) {
            out.push(format!("iam:{}", r.role_name()));
        }
    }
    for f in c
        .lambda
        .list_functions()
        .send()
        .await
        .map_err(|e| e.to_string())?
        .functions()
    {
        if f.function_name().unwrap_or("").starts_with(prefix) {
            out.push(format!("lambda:{}", f.function_name().unwrap_or("")));
        }
    }
    for t in c
        .iot
        .list_things()
        .send()
        .await
        .map_err(|e| e.to_string())?
        .things()
    {
        if t.thing_name().unwrap_or("").starts_with(prefix) {
            out.push(format!("iot-thing:{}", t.thing_name().unwrap_or("")));
        }
    }
    for p in c
        .iot
        .list_policies()
        .send()
        .await
        .map_err(|e| e.to_string())?
        .policies()
    {
        if p.policy_name().unwrap_or("").starts_with(prefix) {
            out.push(format!("iot-policy:{}", p.policy_name().unwrap_or("")));
        }
    }
    for r in c
        .iot
        .list_topic_rules()
        .send()
        .await
        .map_err(|e| e.to_string())?
        .rules()
    {
        if r.rule_name().unwrap_or("").starts_with(&rule_prefix) {
            out.push(format!("iot-rule:{}", r.rule_name().unwrap_or("")));
        }
    }
    for url in c
        .sqs
        .list_queues()
        .queue_name_prefix(prefix)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .queue_urls()
    {
        out.push(format!("sqs:{url}"));
    }
    // SNS lists topics by ARN only; the name is its last segment.
    let mut token = None;
    loop {
        let page = c
            .sns
            .list_topics()
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        for t in page.topics() {
            let arn = t.topic_arn().unwrap_or("");
            if arn
                .rsplit(':')
                .next()
                .is_some_and(|n| n.starts_with(prefix))
            {
                out.push(format!("sns:{arn}"));
            }
        }
        match page.next_token() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    let mut token = None;
    loop {
        let page = c
            .secrets
            .list_secrets()
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        for s in page.secret_list() {
            if s.name().unwrap_or("").starts_with(prefix) {
                out.push(format!("secret:{}", s.name().unwrap_or("")));
            }
        }
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    for t in c
        .dynamodb
        .list_tables()
        .send()
        .await
        .map_err(|e| e.to_string())?
        .table_names()
    {
        if t.starts_with(prefix) {
            out.push(format!("dynamodb:{t}"));
        }
    }
    for b in
        c.s3.list_buckets()
            .send()
            .await
            .map_err(|e| e.to_string())?
            .buckets()
    {
        if b.name().unwrap_or("").starts_with(prefix) {
            out.push(format!("s3:{}", b.name().unwrap_or("")));
        }
    }
    for a in c
        .apigw
        .get_apis()
        .send()
        .await
        .map_err(|e| e.to_string())?
        .items()
    {
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
        .map_err(|e| e.to_string())?
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
        .map_err(|e| e.to_string())?
        .log_groups()
    {
        out.push(format!("logs:{}", g.log_group_name().unwrap_or("")));
    }
    for cert in c
        .iot
        .list_certificates()
        .send()
        .await
        .map_err(|e| e.to_string())?
        .certificates()
    {
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
    Ok(out)
}
