//! An AWS-hosted ingress's copy of its boundary secret, read from Secrets Manager at start:
//! `AWSCURRENT`, and `AWSPENDING` while a rotation has staged the next one (both accepted); and
//! a sender's, `AWSCURRENT` only.

use crate::error_map::cloud_error;
use twin_functions::boundary::{AcceptedSecrets, BoundarySecret};
use twin_functions::{CloudError, CloudErrorKind};

/// The value of `stage` of secret `name`; `None` when the stage is absent.
async fn stage(
    client: &aws_sdk_secretsmanager::Client,
    name: &str,
    stage: &str,
) -> Result<Option<BoundarySecret>, CloudError> {
    let out = match client
        .get_secret_value()
        .secret_id(name)
        .version_stage(stage)
        .send()
        .await
    {
        Ok(out) => out,
        Err(e) => {
            let e = cloud_error("GetSecretValue", format!("secret {name} ({stage})"), e);
            return match e.kind {
                CloudErrorKind::NotFound => Ok(None),
                _ => Err(e),
            };
        }
    };
    let text = out.secret_string().ok_or_else(|| {
        CloudError::new(
            "GetSecretValue",
            format!("secret {name} ({stage})"),
            "NoSecretString",
            "the secret has no string value",
            CloudErrorKind::Rejected,
        )
    })?;
    BoundarySecret::from_encoded(&format!("secret {name} ({stage})"), text)
        .map(Some)
        .map_err(|e| {
            CloudError::new(
                "GetSecretValue",
                format!("secret {name} ({stage})"),
                "InvalidBoundarySecret",
                e.to_string(),
                CloudErrorKind::Rejected,
            )
        })
}

/// The secret a sender signs with: `AWSCURRENT` (required).
pub async fn current_secret(
    client: &aws_sdk_secretsmanager::Client,
    name: &str,
) -> Result<BoundarySecret, CloudError> {
    stage(client, name, "AWSCURRENT").await?.ok_or_else(|| {
        CloudError::new(
            "GetSecretValue",
            format!("secret {name}"),
            "ResourceNotFoundException",
            "the boundary secret has no AWSCURRENT value; run `deployer deploy`",
            CloudErrorKind::NotFound,
        )
    })
}

/// The secrets the ingress accepts: `AWSCURRENT` (required) and `AWSPENDING` (if staged).
pub async fn accepted_secrets(
    client: &aws_sdk_secretsmanager::Client,
    name: &str,
) -> Result<AcceptedSecrets, CloudError> {
    let current = current_secret(client, name).await?;
    let accepted = AcceptedSecrets::new(current);
    Ok(match stage(client, name, "AWSPENDING").await? {
        Some(next) => accepted.also(next),
        None => accepted,
    })
}
