//! The SDK configuration a function needs, read from the environment Lambda provides.
//!
//! Lambda hands every execution environment its role's credentials and region as environment
//! variables, so the functions read them directly instead of linking `aws-config`'s full provider
//! chain (SSO, STS, profiles, IMDS): that chain is never used in Lambda, and leaving it out makes
//! each zip smaller and each cold start shorter. `AWS_ENDPOINT_URL` points the clients at an
//! emulator (moto) in tests.

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use aws_sdk_dynamodb::config::BehaviorVersion;
use aws_types::region::Region;
use aws_types::SdkConfig;

/// The SDK environment is incomplete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the function cannot reach AWS: missing environment variable(s) {}; Lambda sets them for every function (outside Lambda, set them by hand)",
    .0.join(", ")
)]
pub struct SdkEnvError(pub Vec<&'static str>);

/// Builds the SDK configuration from `lookup` (`std::env::var` in production).
pub fn sdk_config_from(lookup: &dyn Fn(&str) -> Option<String>) -> Result<SdkConfig, SdkEnvError> {
    let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
    let region = get("AWS_REGION").or_else(|| get("AWS_DEFAULT_REGION"));
    let key = get("AWS_ACCESS_KEY_ID");
    let secret = get("AWS_SECRET_ACCESS_KEY");
    let (Some(region), Some(key), Some(secret)) = (region.clone(), key.clone(), secret.clone())
    else {
        let mut missing = Vec::new();
        if region.is_none() {
            missing.push("AWS_REGION");
        }
        if key.is_none() {
            missing.push("AWS_ACCESS_KEY_ID");
        }
        if secret.is_none() {
            missing.push("AWS_SECRET_ACCESS_KEY");
        }
        return Err(SdkEnvError(missing));
    };
    let credentials = Credentials::new(
        key,
        secret,
        get("AWS_SESSION_TOKEN"),
        None,
        "lambda-environment",
    );
    let mut builder = SdkConfig::builder()
        .region(Region::new(region))
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .behavior_version(BehaviorVersion::latest());
    if let Some(endpoint) = get("AWS_ENDPOINT_URL") {
        builder = builder.endpoint_url(endpoint);
    }
    Ok(builder.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_every_missing_variable() {
        let e = sdk_config_from(&|_| None).unwrap_err();
        assert_eq!(
            e.0,
            vec!["AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
        );
    }

    #[test]
    fn reads_region_credentials_and_endpoint() {
        let c = sdk_config_from(&|k| match k {
            "AWS_REGION" => Some("eu-west-1".into()),
            "AWS_ACCESS_KEY_ID" | "AWS_SECRET_ACCESS_KEY" => Some("x".into()),
            "AWS_ENDPOINT_URL" => Some("http://127.0.0.1:5000".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.region().map(|r| r.as_ref()), Some("eu-west-1"));
        assert_eq!(c.endpoint_url(), Some("http://127.0.0.1:5000"));
    }
}
