//! Function code on AWS: each distinct zip (built by `twin_artifacts`) uploaded once to the
//! twin's artifacts bucket (every default processor shares one upload).

use crate::context::LayerContext;
use crate::errors::{cloud, not_found_is_none};
use crate::AwsClients;
use async_trait::async_trait;
use serde_json::json;
use std::sync::Arc;
use twin_config::{names, Layer};
use twin_engine::{CloudError, Observed, Outputs, ResourceDriver, ResourceId, ResourceSpec};

/// Driver kind of an uploaded zip.
pub const KIND: &str = "lambda_artifact";

/// Bucket "tier" of the artifacts bucket in [`names::bucket_name`].
pub const BUCKET_TIER: &str = "artifacts";

pub use twin_artifacts::{Artifacts, PREBUILT_ENV};

/// The cloud name of the twin's artifacts bucket.
pub fn bucket_name(ctx: &LayerContext<'_>) -> String {
    names::bucket_name(
        ctx.name(),
        BUCKET_TIER,
        &ctx.clients.account_id,
        &ctx.clients.region,
    )
}

/// The id of the artifacts bucket (one per twin, in the first AWS layer that hosts functions).
pub fn bucket_id() -> ResourceId {
    ResourceId::new(&["shared", "s3_bucket", BUCKET_TIER])
}

/// The layers that host functions, in [`Layer::ALL`] order.
const FUNCTION_LAYERS: [Layer; 5] = [Layer::L3Cold, Layer::L3Hot, Layer::L4, Layer::L2, Layer::L1];

/// The layer that owns the artifacts bucket: the first AWS layer with functions.
pub fn bucket_layer(ctx: &LayerContext<'_>) -> Option<Layer> {
    Layer::ALL
        .into_iter()
        .find(|l| FUNCTION_LAYERS.contains(l) && ctx.on_aws(*l))
}

/// The id of a crate's uploaded zip in `layer`.
pub fn artifact_id(layer: Layer, crate_name: &str) -> ResourceId {
    crate::context::resource_id(layer, KIND, crate_name)
}

/// The spec of a crate's uploaded zip in `layer`.
pub fn artifact_spec(
    ctx: &LayerContext<'_>,
    layer: Layer,
    crate_name: &str,
) -> Result<ResourceSpec, CloudError> {
    let key = ctx.artifacts.object_key(crate_name)?;
    let bucket = bucket_name(ctx);
    Ok(ctx
        .spec(layer, KIND, crate_name, format!("{bucket}/{key}"))
        .depends_on([bucket_id()])
        .desired(json!({
            "bucket": bucket,
            "key": key,
            "crate": crate_name,
            "source_hash": ctx.artifacts.source_hash(crate_name)?,
        })))
}

/// Uploads zips; an object whose key (with the hash in it) exists is up to date.
pub struct ArtifactDriver {
    clients: Arc<AwsClients>,
    artifacts: Arc<Artifacts>,
}

impl ArtifactDriver {
    /// A driver using these clients and this code.
    pub fn new(clients: Arc<AwsClients>, artifacts: Arc<Artifacts>) -> Self {
        ArtifactDriver { clients, artifacts }
    }
}

fn str_of<'a>(spec: &'a ResourceSpec, key: &str) -> &'a str {
    spec.desired
        .get(key)
        .and_then(|v| v.as_str())
        .unwrap_or_default()
}

#[async_trait]
impl ResourceDriver for ArtifactDriver {
    async fn read(&self, spec: &ResourceSpec, _: &Outputs) -> Result<Option<Observed>, CloudError> {
        let (bucket, key) = (str_of(spec, "bucket"), str_of(spec, "key"));
        let found = not_found_is_none(
            self.clients
                .s3
                .head_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await,
        )?;
        Ok(found.map(|_| {
            Observed::new(
                format!("s3://{bucket}/{key}"),
                json!({
                    "bucket": bucket, "key": key,
                    "crate": str_of(spec, "crate"), "source_hash": str_of(spec, "source_hash"),
                }),
            )
        }))
    }

    async fn create(&self, spec: &ResourceSpec, deps: &Outputs) -> Result<Observed, CloudError> {
        let zip = self.artifacts.zip(str_of(spec, "crate")).await?;
        let body = aws_sdk_s3::primitives::ByteStream::from_path(&zip)
            .await
            .map_err(|e| CloudError::fatal("ArtifactMissing", format!("{}: {e}", zip.display())))?;
        self.clients
            .s3
            .put_object()
            .bucket(str_of(spec, "bucket"))
            .key(str_of(spec, "key"))
            .body(body)
            .send()
            .await
            .map_err(cloud)?;
        self.read(spec, deps).await?.ok_or_else(|| {
            CloudError::new(
                twin_engine::ErrorClass::EventualConsistency,
                "NotYetVisible",
                format!("uploaded {} not visible yet", spec.name),
            )
        })
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        _: &Observed,
        deps: &Outputs,
    ) -> Result<Observed, CloudError> {
        self.create(spec, deps).await
    }

    /// Objects go with the bucket; an old zip is harmless until then.
    async fn delete(&self, spec: &ResourceSpec, _: &Observed) -> Result<(), CloudError> {
        crate::errors::gone_is_ok(
            self.clients
                .s3
                .delete_object()
                .bucket(str_of(spec, "bucket"))
                .key(str_of(spec, "key"))
                .send()
                .await,
        )
    }
}
