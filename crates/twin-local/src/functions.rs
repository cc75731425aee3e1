//! The twin's deployed functions read back from the emulator: name, environment, memory and
//! code, and each function's `bootstrap` unpacked from the zip deploy uploaded (checked against
//! the function's `CodeSha256` before anything runs).

use crate::LocalError;
use aws_sdk_lambda::error::DisplayErrorContext;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use twin_aws::AwsClients;
use twin_config::names;

/// One deployed function of the twin, as the emulator knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployedFunction {
    /// Its cloud name (`<twin>-<role>`).
    pub name: String,
    /// Its ARN.
    pub arn: String,
    /// Its environment variables (never written to `runner.json`).
    #[serde(skip)]
    pub env: BTreeMap<String, String>,
    /// Memory in MB.
    pub memory_mb: i32,
    /// Timeout in seconds.
    pub timeout_s: i32,
    /// `CodeSha256`: base64 of the zip's sha256.
    pub code_sha256: String,
    /// The artifacts bucket the zip is in.
    pub bucket: String,
    /// The zip's key in it.
    pub key: String,
    /// How its asynchronous invocations are retried and where their failures go.
    #[serde(default)]
    pub async_settings: AsyncSettings,
}

/// A function's event invoke config as deployed (`GetFunctionEventInvokeConfig`); each field
/// `None` when the function has none, so Lambda's defaults apply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AsyncSettings {
    /// `MaximumRetryAttempts`.
    pub max_retries: Option<u32>,
    /// `MaximumEventAgeInSeconds`.
    pub max_event_age_s: Option<u32>,
    /// The on-failure destination's ARN.
    pub on_failure: Option<String>,
}

impl DeployedFunction {
    /// A short, path-safe form of the code hash (hex of its first bytes).
    pub fn sha_prefix(&self) -> String {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&self.code_sha256)
            .unwrap_or_else(|_| self.code_sha256.as_bytes().to_vec());
        hex::encode(&raw[..raw.len().min(8)])
    }

    /// A fingerprint of what runs (name, code, environment, memory): a change means restart.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        for part in [&self.name, &self.code_sha256] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        for (k, v) in &self.env {
            h.update(k.as_bytes());
            h.update([b'=']);
            h.update(v.as_bytes());
            h.update([0]);
        }
        h.update(self.memory_mb.to_le_bytes());
        let a = &self.async_settings;
        h.update(format!(
            "{:?}/{:?}/{:?}",
            a.max_retries, a.max_event_age_s, a.on_failure
        ));
        hex::encode(h.finalize())
    }
}

/// A fingerprint of a whole set of functions (order-independent).
pub fn fingerprint(functions: &[DeployedFunction]) -> String {
    let mut prints: Vec<String> = functions
        .iter()
        .map(DeployedFunction::fingerprint)
        .collect();
    prints.sort();
    hex::encode(Sha256::digest(prints.join(",").as_bytes()))
}

fn emulator<E>(call: &'static str) -> impl Fn(aws_sdk_lambda::error::SdkError<E>) -> LocalError
where
    E: std::error::Error + Send + Sync + 'static,
{
    move |e| LocalError::Emulator {
        call,
        message: DisplayErrorContext(&e).to_string(),
    }
}

/// The S3 key in moto's `Code.Location`
/// (`https://awslambda-<region>-tasks.s3.<region>.amazonaws.com/<key>`, maybe with a query).
pub fn key_of_location(location: &str) -> Option<String> {
    let rest = location.split_once("://").map_or(location, |(_, r)| r);
    let (_, path) = rest.split_once('/')?;
    let path = path.split(['?', '#']).next().unwrap_or_default();
    Some(path.to_string()).filter(|p| !p.is_empty())
}

/// Lists the twin's functions (name `<twin>-...` and tagged `twin=<twin>`), in name order.
pub async fn read_deployed(
    clients: &AwsClients,
    twin: &str,
) -> Result<Vec<DeployedFunction>, LocalError> {
    let lambda = &clients.lambda;
    let prefix = format!("{twin}-");
    let bucket = names::bucket_name(
        twin,
        twin_aws::artifacts::BUCKET_TIER,
        &clients.account_id,
        &clients.region,
    );
    let mut candidates = Vec::new();
    let mut marker = None;
    loop {
        let page = lambda
            .list_functions()
            .set_marker(marker.take())
            .send()
            .await
            .map_err(emulator("ListFunctions"))?;
        candidates.extend(
            page.functions()
                .iter()
                .filter_map(|f| f.function_name())
                .filter(|n| n.starts_with(&prefix))
                .map(str::to_string),
        );
        match page.next_marker() {
            Some(m) if !m.is_empty() => marker = Some(m.to_string()),
            _ => break,
        }
    }
    candidates.sort();
    let mut out = Vec::new();
    for name in candidates {
        let got = lambda
            .get_function()
            .function_name(&name)
            .send()
            .await
            .map_err(emulator("GetFunction"))?;
        let owner = twin_engine::Owner::from_tags(
            got.tags()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        // A function named like ours but not tagged as ours is someone else's: never run it.
        if owner.foreign_to(twin, None).is_some() {
            continue;
        }
        let config = lambda
            .get_function_configuration()
            .function_name(&name)
            .send()
            .await
            .map_err(emulator("GetFunctionConfiguration"))?;
        let location = got
            .code()
            .and_then(|c| c.location())
            .unwrap_or_default()
            .to_string();
        let key = key_of_location(&location).ok_or_else(|| LocalError::Emulator {
            call: "GetFunction",
            message: format!("function {name}: no S3 key in Code.Location `{location}`"),
        })?;
        let async_settings = match lambda
            .get_function_event_invoke_config()
            .function_name(&name)
            .send()
            .await
        {
            Ok(c) => AsyncSettings {
                max_retries: c
                    .maximum_retry_attempts()
                    .and_then(|n| u32::try_from(n).ok()),
                max_event_age_s: c
                    .maximum_event_age_in_seconds()
                    .and_then(|n| u32::try_from(n).ok()),
                on_failure: c
                    .destination_config()
                    .and_then(|d| d.on_failure())
                    .and_then(|f| f.destination())
                    .map(str::to_string),
            },
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                AsyncSettings::default()
            }
            Err(e) => return Err(emulator("GetFunctionEventInvokeConfig")(e)),
        };
        out.push(DeployedFunction {
            async_settings,
            arn: config.function_arn().unwrap_or_default().to_string(),
            env: config
                .environment()
                .and_then(|e| e.variables())
                .map(|v| v.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
            memory_mb: config.memory_size().unwrap_or(128),
            timeout_s: config.timeout().unwrap_or(3),
            code_sha256: config.code_sha256().unwrap_or_default().to_string(),
            bucket: bucket.clone(),
            key,
            name,
        });
    }
    Ok(out)
}

/// Where a function's `bootstrap` is unpacked: `<dir>/functions/<name>/<sha-prefix>/bootstrap`.
pub fn bootstrap_path(local_dir: &Path, f: &DeployedFunction) -> PathBuf {
    local_dir
        .join("functions")
        .join(&f.name)
        .join(f.sha_prefix())
        .join("bootstrap")
}

/// The base64 sha256 Lambda reports as `CodeSha256`.
pub fn code_sha256(zip: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(zip))
}

/// Downloads the function's zip from the emulator's S3, refuses it unless it is the code the
/// function was deployed with, and unpacks `bootstrap` (0755); an existing unpacked copy of the
/// same hash is reused.
pub async fn fetch_code(
    clients: &AwsClients,
    local_dir: &Path,
    f: &DeployedFunction,
) -> Result<PathBuf, LocalError> {
    let target = bootstrap_path(local_dir, f);
    if target.is_file() {
        return Ok(target);
    }
    let object = clients
        .s3
        .get_object()
        .bucket(&f.bucket)
        .key(&f.key)
        .send()
        .await
        .map_err(|e| LocalError::Code {
            function: f.name.clone(),
            message: format!(
                "cannot download s3://{}/{}: {}",
                f.bucket,
                f.key,
                DisplayErrorContext(&e)
            ),
        })?;
    let bytes = object
        .body
        .collect()
        .await
        .map_err(|e| LocalError::Code {
            function: f.name.clone(),
            message: format!("reading s3://{}/{}: {e}", f.bucket, f.key),
        })?
        .into_bytes();
    let got = code_sha256(&bytes);
    if got != f.code_sha256 {
        return Err(LocalError::Code {
            function: f.name.clone(),
            message: format!(
                "s3://{}/{} has sha256 {got} but the function was deployed with CodeSha256 {}: the artifact was changed after deploy; run `deployer deploy` again",
                f.bucket, f.key, f.code_sha256
            ),
        });
    }
    let bootstrap = unzip_bootstrap(&bytes).map_err(|message| LocalError::Code {
        function: f.name.clone(),
        message: format!("s3://{}/{}: {message}", f.bucket, f.key),
    })?;
    let dir = target.parent().unwrap_or(local_dir);
    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    // Written aside and renamed, so a crash never leaves a half-written bootstrap that the
    // `is_file` check above would take as complete.
    let partial = dir.join("bootstrap.partial");
    std::fs::write(&partial, &bootstrap).map_err(|e| io_err(&partial, e))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| io_err(&partial, e))?;
    std::fs::rename(&partial, &target).map_err(|e| io_err(&target, e))?;
    Ok(target)
}

fn io_err(path: &Path, e: std::io::Error) -> LocalError {
    LocalError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// The `bootstrap` entry of a function zip.
pub fn unzip_bootstrap(zip: &[u8]) -> Result<Vec<u8>, String> {
    let mut archive =
        zip::ZipArchive::new(std::io::Cursor::new(zip)).map_err(|e| format!("not a zip: {e}"))?;
    let mut entry = archive
        .by_name("bootstrap")
        .map_err(|e| format!("no `bootstrap` in the zip: {e}"))?;
    let mut out = Vec::with_capacity(usize::try_from(entry.size()).unwrap_or(0));
    entry
        .read_to_end(&mut out)
        .map_err(|e| format!("cannot unpack `bootstrap`: {e}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_the_path_of_the_code_location() {
        assert_eq!(
            key_of_location(
                "https://awslambda-us-east-1-tasks.s3.us-east-1.amazonaws.com/dispatcher/x86_64-ab12.zip"
            )
            .as_deref(),
            Some("dispatcher/x86_64-ab12.zip")
        );
        assert_eq!(
            key_of_location("https://h/k.zip?X-Amz-Signature=1").as_deref(),
            Some("k.zip")
        );
        assert_eq!(key_of_location("https://host-only"), None);
    }

    #[test]
    fn the_fingerprint_changes_with_code_env_and_memory_only() {
        let f = DeployedFunction {
            name: "t-dispatcher".into(),
            arn: "arn".into(),
            env: BTreeMap::from([("A".into(), "1".into())]),
            memory_mb: 128,
            timeout_s: 30,
            code_sha256: code_sha256(b"zip"),
            bucket: "b".into(),
            key: "k".into(),
            async_settings: AsyncSettings::default(),
        };
        let mut g = f.clone();
        g.timeout_s = 60;
        assert_eq!(f.fingerprint(), g.fingerprint());
        g.env.insert("A".into(), "2".into());
        assert_ne!(f.fingerprint(), g.fingerprint());
        let mut h = f.clone();
        h.code_sha256 = code_sha256(b"other");
        assert_ne!(f.fingerprint(), h.fingerprint());
        let mut d = f.clone();
        d.async_settings.on_failure = Some("arn:aws:sqs:r:1:t-l1-dead-letters".into());
        assert_ne!(
            f.fingerprint(),
            d.fingerprint(),
            "a new destination restarts the runner"
        );
        assert_eq!(f.sha_prefix().len(), 16);
        assert_eq!(fingerprint(&[f.clone(), h.clone()]), fingerprint(&[h, f]));
    }
}
