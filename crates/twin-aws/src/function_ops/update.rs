//! `lambda_update`: rebuild a function's code when its sources changed, upload it only when it
//! differs from what Lambda runs (by SHA-256), merge environment variables into the current
//! ones, and wait until Lambda reports the update Successful.

use super::TwinFunction;
use crate::artifacts::Artifacts;
use crate::errors::cloud;
use crate::lambda_fn::wait_ready;
use crate::AwsClients;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::Environment;
use base64::Engine;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use twin_engine::{CloudError, ErrorClass, FunctionUpdate};

/// Updates one function; see the module docs.
pub async fn update(
    clients: &AwsClients,
    artifacts: &Artifacts,
    f: &TwinFunction,
    env: Option<Map<String, Value>>,
) -> Result<FunctionUpdate, CloudError> {
    // A deploy or an earlier update may still be in progress; Lambda refuses a second one.
    wait_ready(clients, &f.cloud)
        .await
        .map_err(|e| not_deployed(e, f))?;
    let current = clients
        .lambda
        .get_function_configuration()
        .function_name(&f.cloud)
        .send()
        .await
        .map_err(|e| not_deployed(cloud(e), f))?;

    let source_hash = artifacts.source_hash(&f.crate_name)?;
    let zip_path = artifacts.zip(&f.crate_name).await?;
    let zip = tokio::fs::read(&zip_path).await.map_err(|e| {
        CloudError::fatal("ArtifactMissing", format!("{}: {e}", zip_path.display()))
            .with_hint("rebuild the function, or check DEPLOYER_PREBUILT_FUNCTIONS")
    })?;
    let mut result = FunctionUpdate {
        rebuilt: !current
            .description()
            .unwrap_or_default()
            .ends_with(&source_hash),
        ..FunctionUpdate::default()
    };

    if current.code_sha256() != Some(code_sha256(&zip).as_str()) {
        clients
            .lambda
            .update_function_code()
            .function_name(&f.cloud)
            .zip_file(Blob::new(zip))
            .send()
            .await
            .map_err(cloud)?;
        wait_ready(clients, &f.cloud).await?;
        result.code_updated = true;
    }

    // The description carries the source hash deploy compares; keep it in step with the code
    // just uploaded so `info` and the next deploy see no drift.
    let description = format!("{}{source_hash}", crate::lambda_fn::HASH_PREFIX);
    let description_changed = current.description().unwrap_or_default() != description;
    let have: HashMap<String, String> = current
        .environment()
        .and_then(|e| e.variables())
        .cloned()
        .unwrap_or_default();
    let want = env.map(|changes| merge_env(&have, &changes));
    let env_changed = want.as_ref().is_some_and(|w| *w != have);
    if description_changed || env_changed {
        let mut call = clients
            .lambda
            .update_function_configuration()
            .function_name(&f.cloud)
            .description(description);
        if let Some(want) = want.filter(|_| env_changed) {
            call = call.environment(Environment::builder().set_variables(Some(want)).build());
        }
        call.send().await.map_err(cloud)?;
        wait_ready(clients, &f.cloud).await?;
        result.env_updated = env_changed;
    }
    Ok(result)
}

/// Lambda's `CodeSha256`: the base64 SHA-256 of the zip.
pub fn code_sha256(zip: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(zip))
}

/// `have` with `changes` applied: strings as given, other JSON values as their JSON text, and
/// `null` removing the variable.
pub fn merge_env(
    have: &HashMap<String, String>,
    changes: &Map<String, Value>,
) -> HashMap<String, String> {
    let mut out = have.clone();
    for (k, v) in changes {
        match v {
            Value::Null => {
                out.remove(k);
            }
            Value::String(s) => {
                out.insert(k.clone(), s.clone());
            }
            other => {
                out.insert(k.clone(), other.to_string());
            }
        }
    }
    out
}

fn not_deployed(e: CloudError, f: &TwinFunction) -> CloudError {
    if e.class == ErrorClass::NotFound {
        e.with_hint(format!(
            "function {} is not deployed; run `deploy` first",
            f.cloud
        ))
    } else {
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn env_changes_merge_into_the_current_variables() {
        let have = HashMap::from([
            ("TWIN_NAME".to_string(), "dt".to_string()),
            ("LOG_LEVEL".to_string(), "INFO".to_string()),
            ("OLD".to_string(), "x".to_string()),
        ]);
        let changes = json!({"LOG_LEVEL": "DEBUG", "LIMIT": 5, "OLD": null});
        let got = merge_env(&have, changes.as_object().unwrap_or(&Map::new()));
        assert_eq!(
            got,
            HashMap::from([
                ("TWIN_NAME".to_string(), "dt".to_string()),
                ("LOG_LEVEL".to_string(), "DEBUG".to_string()),
                ("LIMIT".to_string(), "5".to_string()),
            ])
        );
    }

    #[test]
    fn code_sha_matches_lambda_format() {
        // printf '' | openssl dgst -sha256 -binary | base64
        assert_eq!(
            code_sha256(b""),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
    }
}
