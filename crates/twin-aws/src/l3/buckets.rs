//! S3 buckets (cold, archive, function artifacts): private (every public access blocked) and
//! encrypted by default. Destroy empties them first, since S3 refuses to delete a non-empty bucket.

use crate::context::LayerContext;
use crate::errors::{classify, cloud, gone_is_ok, not_found_is_none};
use crate::AwsClients;
use async_trait::async_trait;
use aws_sdk_s3::types::{
    BucketLocationConstraint, CreateBucketConfiguration, Delete, ObjectIdentifier,
    PublicAccessBlockConfiguration, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule, Tag, Tagging,
};
use serde_json::{json, Value};
use std::sync::Arc;
use twin_config::{names, Layer};
use twin_engine::{
    CloudError, ErrorClass, Observed, Outputs, ResourceDriver, ResourceId, ResourceSpec,
};

/// Driver kind of a bucket.
pub const KIND: &str = "s3_bucket";

/// The desired settings of every bucket.
fn bucket_desired(tier: &str) -> Value {
    json!({"tier": tier, "encryption": "AES256", "public_access_blocked": true})
}

/// The cloud name of a tier's bucket (`cold`, `archive`, `twinmaker`, `artifacts`).
pub fn bucket_name(ctx: &LayerContext<'_>, tier: &str) -> String {
    names::bucket_name(
        ctx.name(),
        tier,
        &ctx.clients.account_id,
        &ctx.clients.region,
    )
}

/// The id of a tier's bucket in `layer`.
pub fn bucket_id(layer: Layer, tier: &str) -> ResourceId {
    crate::context::resource_id(layer, KIND, tier)
}

/// The bucket of a tier in `layer`.
pub fn bucket_spec(ctx: &LayerContext<'_>, layer: Layer, tier: &str) -> ResourceSpec {
    ctx.spec(layer, KIND, tier, bucket_name(ctx, tier))
        .desired(bucket_desired(tier))
}

/// The function artifacts bucket, owned by `layer`.
pub fn artifacts_bucket_spec(ctx: &LayerContext<'_>, layer: Layer) -> ResourceSpec {
    let tier = crate::artifacts::BUCKET_TIER;
    let mut s = ResourceSpec::new(
        crate::artifacts::bucket_id(),
        layer,
        twin_config::ProviderName::Aws,
        KIND,
        bucket_name(ctx, tier),
    );
    s.desired = bucket_desired(tier);
    s.inputs = serde_json::json!({
        crate::context::TAGS_KEY: { names::TAG_KEY: ctx.name() }
    });
    s
}

/// Creates, reads and deletes buckets.
pub struct BucketDriver {
    clients: Arc<AwsClients>,
}

impl BucketDriver {
    /// A driver using these clients.
    pub fn new(clients: Arc<AwsClients>) -> Self {
        BucketDriver { clients }
    }

    async fn configure(&self, spec: &ResourceSpec) -> Result<(), CloudError> {
        let s3 = &self.clients.s3;
        let block = PublicAccessBlockConfiguration::builder()
            .block_public_acls(true)
            .ignore_public_acls(true)
            .block_public_policy(true)
            .restrict_public_buckets(true)
            .build();
        s3.put_public_access_block()
            .bucket(&spec.name)
            .public_access_block_configuration(block)
            .send()
            .await
            .map_err(cloud)?;
        let rule = ServerSideEncryptionRule::builder()
            .apply_server_side_encryption_by_default(
                ServerSideEncryptionByDefault::builder()
                    .sse_algorithm(ServerSideEncryption::Aes256)
                    .build()
                    .map_err(|e| CloudError::fatal("RequestInvalid", e.to_string()))?,
            )
            .build();
        s3.put_bucket_encryption()
            .bucket(&spec.name)
            .server_side_encryption_configuration(
                ServerSideEncryptionConfiguration::builder()
                    .rules(rule)
                    .build()
                    .map_err(|e| CloudError::fatal("RequestInvalid", e.to_string()))?,
            )
            .send()
            .await
            .map_err(cloud)?;
        let tag = Tag::builder()
            .key(names::TAG_KEY)
            .value(crate::context::twin_tag(spec))
            .build()
            .map_err(|e| CloudError::fatal("RequestInvalid", e.to_string()))?;
        s3.put_bucket_tagging()
            .bucket(&spec.name)
            .tagging(
                Tagging::builder()
                    .tag_set(tag)
                    .build()
                    .map_err(|e| CloudError::fatal("RequestInvalid", e.to_string()))?,
            )
            .send()
            .await
            .map_err(cloud)?;
        Ok(())
    }
}

#[async_trait]
impl ResourceDriver for BucketDriver {
    async fn read(&self, spec: &ResourceSpec, _: &Outputs) -> Result<Option<Observed>, CloudError> {
        let s3 = &self.clients.s3;
        if not_found_is_none(s3.head_bucket().bucket(&spec.name).send().await)?.is_none() {
            return Ok(None);
        }
        let encryption =
            not_found_is_none(s3.get_bucket_encryption().bucket(&spec.name).send().await)
                .or_else(|e| {
                    // No default encryption configured reads as its own error code.
                    if e.code == "ServerSideEncryptionConfigurationNotFoundError" {
                        Ok(None)
                    } else {
                        Err(e)
                    }
                })?
                .and_then(|o| {
                    o.server_side_encryption_configuration()
                        .and_then(|c| c.rules().first())
                        .and_then(|r| r.apply_server_side_encryption_by_default())
                        .map(|d| d.sse_algorithm().as_str().to_string())
                });
        let blocked =
            not_found_is_none(s3.get_public_access_block().bucket(&spec.name).send().await)?
                .and_then(|o| o.public_access_block_configuration().cloned())
                .map(|c| {
                    c.block_public_acls() == Some(true)
                        && c.ignore_public_acls() == Some(true)
                        && c.block_public_policy() == Some(true)
                        && c.restrict_public_buckets() == Some(true)
                })
                .unwrap_or(false);
        let tagging = match s3.get_bucket_tagging().bucket(&spec.name).send().await {
            Ok(t) => Some(t),
            Err(e) => {
                let c = crate::errors::classify(&e);
                // A bucket without tags answers with its own error code.
                if c.code == "NoSuchTagSet" || c.code == "NoSuchTagSetError" {
                    None
                } else if c.class == ErrorClass::NotFound {
                    return Ok(None);
                } else {
                    return Err(c);
                }
            }
        };
        let owner = crate::context::owner_from_tags(
            tagging
                .iter()
                .flat_map(|t| t.tag_set())
                .map(|t| (t.key(), t.value())),
        );
        let arn = format!("arn:{}:s3:::{}", self.clients.partition, spec.name);
        Ok(Some(
            Observed::new(
                arn.clone(),
                json!({
                    "arn": arn,
                    "name": spec.name,
                    "tier": spec.desired.get("tier"),
                    "encryption": encryption,
                    "public_access_blocked": blocked,
                }),
            )
            .owned_by(owner),
        ))
    }

    async fn create(&self, spec: &ResourceSpec, deps: &Outputs) -> Result<Observed, CloudError> {
        let mut req = self.clients.s3.create_bucket().bucket(&spec.name);
        // us-east-1 is the one region that rejects its own location constraint.
        if self.clients.region != "us-east-1" {
            req = req.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(
                        self.clients.region.as_str(),
                    ))
                    .build(),
            );
        }
        if let Err(e) = req.send().await {
            let c = classify(&e);
            // Ours already (a retried create whose first attempt landed): configure it.
            if c.code != "BucketAlreadyOwnedByYou" {
                return Err(c);
            }
        }
        self.configure(spec).await?;
        self.read(spec, deps).await?.ok_or_else(|| {
            CloudError::new(
                ErrorClass::EventualConsistency,
                "NotYetVisible",
                format!("bucket {} not visible after create", spec.name),
            )
        })
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        _: &Observed,
        deps: &Outputs,
    ) -> Result<Observed, CloudError> {
        self.configure(spec).await?;
        crate::errors::reread(
            self.read(spec, deps).await?,
            "NoSuchBucket",
            &format!("bucket {}", spec.name),
        )
    }

    async fn delete(&self, spec: &ResourceSpec, _: &Observed) -> Result<(), CloudError> {
        empty_bucket(&self.clients, &spec.name).await?;
        gone_is_ok(
            self.clients
                .s3
                .delete_bucket()
                .bucket(&spec.name)
                .send()
                .await,
        )
    }
}

/// Deletes every object version and delete marker of a bucket, 1000 per call.
pub async fn empty_bucket(clients: &AwsClients, bucket: &str) -> Result<(), CloudError> {
    let s3 = &clients.s3;
    // Each round deletes what one listing returned; a round that frees nothing means the
    // objects cannot be deleted (object lock, a bucket policy), and repeating would loop forever.
    let mut last_count = usize::MAX;
    loop {
        let page = match not_found_is_none(s3.list_object_versions().bucket(bucket).send().await)? {
            Some(p) => p,
            None => return Ok(()),
        };
        let mut ids = Vec::new();
        for v in page.versions() {
            if let Some(k) = v.key() {
                ids.push((k.to_string(), v.version_id().map(str::to_string)));
            }
        }
        for m in page.delete_markers() {
            if let Some(k) = m.key() {
                ids.push((k.to_string(), m.version_id().map(str::to_string)));
            }
        }
        if ids.is_empty() {
            return Ok(());
        }
        if ids.len() >= last_count && !page.is_truncated().unwrap_or(false) {
            return Err(CloudError::fatal(
                "BucketNotEmptied",
                format!(
                    "bucket {bucket} still holds {} object(s) after deleting them",
                    ids.len()
                ),
            )
            .with_hint("an object lock, retention or bucket policy keeps them; remove it or empty the bucket by hand, then run destroy again"));
        }
        last_count = ids.len();
        let objects: Result<Vec<ObjectIdentifier>, _> = ids
            .into_iter()
            .map(|(k, v)| {
                ObjectIdentifier::builder()
                    .key(k)
                    .set_version_id(v.filter(|v| v != "null"))
                    .build()
            })
            .collect();
        let objects = objects.map_err(|e| CloudError::fatal("RequestInvalid", e.to_string()))?;
        for chunk in objects.chunks(1000) {
            let del = Delete::builder()
                .set_objects(Some(chunk.to_vec()))
                .quiet(true)
                .build()
                .map_err(|e| CloudError::fatal("RequestInvalid", e.to_string()))?;
            let out =
                not_found_is_none(s3.delete_objects().bucket(bucket).delete(del).send().await)?;
            // DeleteObjects answers 200 with per-key errors: the first one names the cause.
            if let Some(e) = out.as_ref().and_then(|o| o.errors().first()) {
                let code = e.code().unwrap_or("DeleteFailed").to_string();
                let message = format!(
                    "cannot delete {} from bucket {bucket}: {}",
                    e.key().unwrap_or("an object"),
                    e.message().unwrap_or("no reason given")
                );
                let class = crate::errors::class_of(&code, None, &message);
                let mut err = CloudError::new(class, code, message);
                if class == twin_engine::ErrorClass::Fatal {
                    err = err.with_hint("check the bucket's object lock and policy; destroy resumes where it stopped");
                }
                return Err(err);
            }
        }
    }
}
