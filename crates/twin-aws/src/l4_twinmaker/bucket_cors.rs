//! The CORS rule of the workspace's resource bucket, so the Grafana TwinMaker plugin's scene
//! viewer may load the scene files from the browser (without it the viewer shows "Load 3D Scene
//! failed with Network Failure"). The rule is the one the TwinMaker guide's "CORS configuration
//! for Grafana scene viewer" page gives: any header, GET/PUT/POST/DELETE/HEAD, the Grafana
//! workspace's domain as origin (with a leading `*`), `ETag` exposed.
//!
//! Desired keys: `bucket` and `rules` ([`CorsRule`]s, lists sorted so that the order S3 reports
//! them in does not read as drift). A bucket with no CORS configuration reads as absent.

use crate::errors::{cloud, gone_is_ok, not_found_is_none};
use crate::AwsClients;
use async_trait::async_trait;
use aws_sdk_s3::types::{CorsConfiguration, CorsRule as S3CorsRule};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::Arc;
use twin_config::ProviderName;
use twin_engine::{CloudError, ErrorClass, Observed, Outputs, ResourceDriver, ResourceSpec};

/// Driver kind of a bucket's CORS configuration.
pub const KIND: &str = "s3_bucket_cors";

/// The methods the scene viewer uses on the resource bucket.
pub const SCENE_VIEWER_METHODS: [&str; 5] = ["DELETE", "GET", "HEAD", "POST", "PUT"];

/// One CORS rule, in the terms of S3's `CORSRule`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CorsRule {
    /// `AllowedOrigins`: at most one `*` each.
    pub allowed_origins: Vec<String>,
    /// `AllowedMethods`.
    pub allowed_methods: Vec<String>,
    /// `AllowedHeaders`.
    pub allowed_headers: Vec<String>,
    /// `ExposeHeaders`.
    pub expose_headers: Vec<String>,
}

impl CorsRule {
    /// The rule with every list sorted, the form desired and observed settings are compared in.
    pub fn normalized(mut self) -> Self {
        for list in [
            &mut self.allowed_origins,
            &mut self.allowed_methods,
            &mut self.allowed_headers,
            &mut self.expose_headers,
        ] {
            list.sort();
            list.dedup();
        }
        self
    }
}

/// The typed desired settings of a bucket's CORS configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorsSettings {
    /// The bucket's name.
    pub bucket: String,
    /// Its rules.
    pub rules: Vec<CorsRule>,
}

impl CorsSettings {
    /// The `desired` JSON of the spec.
    pub fn to_desired(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    fn from_spec(spec: &ResourceSpec) -> Result<Self, CloudError> {
        serde_json::from_value(spec.desired.clone()).map_err(|e| {
            CloudError::fatal(
                "InvalidSpec",
                format!("CORS settings of bucket {}: {e}", spec.name),
            )
            .with_hint("this is a bug in deployer; please report it")
        })
    }
}

/// The browser origins of the Grafana that shows the twin, by the provider of layer 5: Amazon
/// Managed Grafana serves every workspace from `<id>.grafana-workspace.<region>.amazonaws.com`
/// and Azure Managed Grafana from `<name>-<hash>.<region-code>.grafana.azure.com`. The workspace
/// itself is created after this bucket (L5 depends on L4), so the origin is the service's
/// domain with the one `*` S3 allows, as the TwinMaker guide's rule has it. `None` when there is
/// no Grafana layer to serve.
pub fn grafana_origins(l5: ProviderName, region: &str) -> Option<Vec<String>> {
    match l5 {
        ProviderName::Aws => Some(vec![format!(
            "https://*.grafana-workspace.{region}.amazonaws.com"
        )]),
        ProviderName::Azure => Some(vec!["https://*.grafana.azure.com".to_string()]),
        _ => None,
    }
}

/// The scene viewer's rule for these origins.
pub fn scene_viewer_rule(origins: Vec<String>) -> CorsRule {
    CorsRule {
        allowed_origins: origins,
        allowed_methods: SCENE_VIEWER_METHODS.iter().map(|m| m.to_string()).collect(),
        allowed_headers: vec!["*".to_string()],
        expose_headers: vec!["ETag".to_string()],
    }
    .normalized()
}

/// Puts, reads and deletes a bucket's CORS configuration.
pub struct BucketCorsDriver {
    clients: Arc<AwsClients>,
}

impl BucketCorsDriver {
    /// A driver using these clients.
    pub fn new(clients: Arc<AwsClients>) -> Self {
        BucketCorsDriver { clients }
    }

    async fn put(&self, spec: &ResourceSpec) -> Result<Observed, CloudError> {
        let settings = CorsSettings::from_spec(spec)?;
        let invalid = |e: aws_sdk_s3::error::BuildError| {
            CloudError::fatal(
                "RequestInvalid",
                format!("CORS rule of bucket {}: {e}", settings.bucket),
            )
        };
        let rules = settings
            .rules
            .iter()
            .map(|r| {
                S3CorsRule::builder()
                    .set_allowed_origins(Some(r.allowed_origins.clone()))
                    .set_allowed_methods(Some(r.allowed_methods.clone()))
                    .set_allowed_headers(Some(r.allowed_headers.clone()))
                    .set_expose_headers(Some(r.expose_headers.clone()))
                    .build()
                    .map_err(invalid)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let config = CorsConfiguration::builder()
            .set_cors_rules(Some(rules))
            .build()
            .map_err(invalid)?;
        self.clients
            .s3
            .put_bucket_cors()
            .bucket(&settings.bucket)
            .cors_configuration(config)
            .send()
            .await
            .map_err(|e| {
                let mut err = cloud(e);
                err.message = format!("CORS of bucket {}: {}", settings.bucket, err.message);
                err
            })?;
        self.read(spec, &Outputs::default()).await?.ok_or_else(|| {
            CloudError::new(
                ErrorClass::EventualConsistency,
                "NotYetVisible",
                format!(
                    "CORS configuration of bucket {} not visible after it was put",
                    settings.bucket
                ),
            )
        })
    }
}

#[async_trait]
impl ResourceDriver for BucketCorsDriver {
    async fn read(&self, spec: &ResourceSpec, _: &Outputs) -> Result<Option<Observed>, CloudError> {
        let settings = CorsSettings::from_spec(spec)?;
        // No CORS configuration (NoSuchCORSConfiguration) and no bucket both read as absent.
        let Some(out) = not_found_is_none(
            self.clients
                .s3
                .get_bucket_cors()
                .bucket(&settings.bucket)
                .send()
                .await,
        )?
        else {
            return Ok(None);
        };
        let rules: Vec<Value> = out
            .cors_rules()
            .iter()
            .map(|r| {
                let rule = CorsRule {
                    allowed_origins: r.allowed_origins().to_vec(),
                    allowed_methods: r.allowed_methods().to_vec(),
                    allowed_headers: r.allowed_headers().to_vec(),
                    expose_headers: r.expose_headers().to_vec(),
                }
                .normalized();
                serde_json::to_value(rule).unwrap_or(Value::Null)
            })
            .collect();
        let id = format!(
            "arn:{}:s3:::{}#cors",
            self.clients.partition, settings.bucket
        );
        Ok(Some(Observed::new(
            id,
            json!({"bucket": settings.bucket, "rules": rules}),
        )))
    }

    async fn create(&self, spec: &ResourceSpec, _: &Outputs) -> Result<Observed, CloudError> {
        self.put(spec).await
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        _: &Observed,
        _: &Outputs,
    ) -> Result<Observed, CloudError> {
        // PutBucketCors replaces the whole configuration: rules added by hand are dropped too.
        self.put(spec).await
    }

    async fn delete(&self, spec: &ResourceSpec, _: &Observed) -> Result<(), CloudError> {
        let settings = CorsSettings::from_spec(spec)?;
        gone_is_ok(
            self.clients
                .s3
                .delete_bucket_cors()
                .bucket(&settings.bucket)
                .send()
                .await,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scene_viewer_rule_is_the_documented_one() {
        let origins = grafana_origins(ProviderName::Aws, "eu-west-1");
        let rule = scene_viewer_rule(origins.unwrap_or_default());
        assert_eq!(
            serde_json::to_value(&rule).unwrap_or_default(),
            json!({
                "allowedOrigins": ["https://*.grafana-workspace.eu-west-1.amazonaws.com"],
                "allowedMethods": ["DELETE", "GET", "HEAD", "POST", "PUT"],
                "allowedHeaders": ["*"],
                "exposeHeaders": ["ETag"],
            })
        );
    }

    #[test]
    fn origins_follow_the_grafana_provider() {
        assert_eq!(
            grafana_origins(ProviderName::Azure, "eu-west-1"),
            Some(vec!["https://*.grafana.azure.com".to_string()])
        );
        assert_eq!(grafana_origins(ProviderName::None, "eu-west-1"), None);
    }

    #[test]
    fn rule_order_does_not_matter() {
        let a = CorsRule {
            allowed_origins: vec!["b".into(), "a".into()],
            allowed_methods: vec!["PUT".into(), "GET".into()],
            allowed_headers: vec![],
            expose_headers: vec![],
        };
        let b = CorsRule {
            allowed_origins: vec!["a".into(), "b".into()],
            allowed_methods: vec!["GET".into(), "PUT".into()],
            allowed_headers: vec![],
            expose_headers: vec![],
        };
        assert_eq!(a.normalized(), b.normalized());
    }
}
