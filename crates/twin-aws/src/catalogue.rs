//! The device catalogue object (`twin_functions::catalogue`): every device's property types and
//! processor function, uploaded by deploy to the artifacts bucket as
//! `catalogue/<layer>/<content hash>.json` and read by the dispatcher (L1) and the processors
//! (L2) at cold start. Functions get only its bucket and key, so no environment variable and no
//! role policy grows with the number of devices (Lambda's environment holds 4 KB in all).
//!
//! Each layer uploads its own copy under its own prefix, so destroying one layer never takes
//! the catalogue from another, and each role may read its layer's prefix only. A new device
//! list is a new key: the functions' environment changes and they restart with it.

use crate::artifacts::{self, bucket_id};
use crate::context::LayerContext;
use crate::errors::{cloud, gone_is_ok, not_found_is_none};
use crate::lambda_fn::FunctionSpec;
use crate::AwsClients;
use async_trait::async_trait;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use twin_config::{names, Layer, TwinConfig};
use twin_engine::{CloudError, Observed, Outputs, ResourceDriver, ResourceId, ResourceSpec};
use twin_functions::catalogue::{CatalogueDevice, DeviceCatalogue};
use twin_functions::env_vars::{DEVICE_CATALOGUE_BUCKET, DEVICE_CATALOGUE_KEY};

/// Driver kind of the catalogue object.
pub const KIND: &str = "device_catalogue";

/// Key prefix of every catalogue object in the artifacts bucket.
pub const KEY_PREFIX: &str = "catalogue";

/// Hex digits of the content hash in the key.
const HASH_LEN: usize = 16;

/// The catalogue of a twin: each device's properties, and its own processor function's name
/// when it has one ([`TwinConfig::has_own_processor`]).
pub fn build(twin: &TwinConfig) -> Result<DeviceCatalogue, CloudError> {
    let name = twin.name();
    let mut devices = std::collections::BTreeMap::new();
    for d in &twin.devices {
        let properties = twin_artifacts::property_specs(d)?;
        let processor = twin
            .has_own_processor(d)
            .then(|| names::processor_function_name(name, &d.id));
        devices.insert(
            d.id.clone(),
            CatalogueDevice {
                properties,
                processor,
            },
        );
    }
    Ok(DeviceCatalogue {
        shared_processor: names::shared_processor_function_name(name),
        devices,
    })
}

/// The key prefix of `layer`'s copy: `catalogue/<layer>/`.
pub fn layer_prefix(layer: Layer) -> String {
    format!("{KEY_PREFIX}/{}/", layer.short())
}

/// The key of `layer`'s copy of a catalogue body: `catalogue/<layer>/<sha256 prefix>.json`.
pub fn object_key(layer: Layer, body: &str) -> String {
    let mut hash = hex::encode(Sha256::digest(body.as_bytes()));
    hash.truncate(HASH_LEN);
    format!("{}{hash}.json", layer_prefix(layer))
}

/// The id of `layer`'s catalogue object.
pub fn catalogue_id(layer: Layer) -> ResourceId {
    crate::context::resource_id(layer, KIND, "devices")
}

/// The ARN pattern a role in `layer` may read catalogues from: that layer's prefix of this
/// twin's artifacts bucket (a prefix, not the exact key, so a function restarted with a new key
/// never waits for its role's new policy to propagate).
pub fn read_arn(ctx: &LayerContext<'_>, layer: Layer) -> String {
    format!(
        "arn:{}:s3:::{}/{}*",
        ctx.clients.partition,
        artifacts::bucket_name(ctx),
        layer_prefix(layer)
    )
}

/// `layer`'s catalogue object, ready to upload.
pub struct LayerCatalogue {
    /// Its spec (the body rides in `inputs.body`).
    pub spec: ResourceSpec,
    /// The bucket.
    pub bucket: String,
    /// The key.
    pub key: String,
}

impl LayerCatalogue {
    /// The catalogue of this twin for `layer`.
    pub fn new(ctx: &LayerContext<'_>, layer: Layer) -> Result<Self, CloudError> {
        let body = build(ctx.twin)?.to_json();
        let bucket = artifacts::bucket_name(ctx);
        let key = object_key(layer, &body);
        let mut spec = ctx
            .spec(layer, KIND, "devices", format!("{bucket}/{key}"))
            .depends_on([bucket_id()])
            .desired(json!({"bucket": bucket, "key": key}));
        spec.inputs["body"] = Value::String(body);
        Ok(LayerCatalogue { spec, bucket, key })
    }

    /// `function` with the catalogue's location in its environment, created after the upload.
    pub fn pass_to(&self, function: FunctionSpec) -> FunctionSpec {
        function
            .env(DEVICE_CATALOGUE_BUCKET, &self.bucket)
            .env(DEVICE_CATALOGUE_KEY, &self.key)
            .depends_on([self.spec.id.clone()])
    }
}

/// Uploads catalogue objects; an object whose key (with the content hash in it) exists is up to
/// date.
pub struct CatalogueDriver {
    clients: Arc<AwsClients>,
}

impl CatalogueDriver {
    /// A driver using these clients.
    pub fn new(clients: Arc<AwsClients>) -> Self {
        CatalogueDriver { clients }
    }
}

fn str_of<'a>(spec: &'a ResourceSpec, key: &str) -> &'a str {
    spec.desired
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

#[async_trait]
impl ResourceDriver for CatalogueDriver {
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
                json!({"bucket": bucket, "key": key}),
            )
        }))
    }

    async fn create(&self, spec: &ResourceSpec, deps: &Outputs) -> Result<Observed, CloudError> {
        let Some(body) = spec.inputs.get("body").and_then(Value::as_str) else {
            return Err(CloudError::fatal(
                "CatalogueMissing",
                format!(
                    "the device catalogue {} has no content to upload",
                    spec.name
                ),
            )
            .with_hint("run `deployer deploy` again: the catalogue is rebuilt from the config"));
        };
        self.clients
            .s3
            .put_object()
            .bucket(str_of(spec, "bucket"))
            .key(str_of(spec, "key"))
            .content_type("application/json")
            .body(aws_sdk_s3::primitives::ByteStream::from(
                body.as_bytes().to_vec(),
            ))
            .send()
            .await
            .map_err(cloud)?;
        self.read(spec, deps).await?.ok_or_else(|| {
            CloudError::new(
                twin_engine::ErrorClass::EventualConsistency,
                "NotYetVisible",
                format!("uploaded device catalogue {} not visible yet", spec.name),
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

    async fn delete(&self, spec: &ResourceSpec, _: &Observed) -> Result<(), CloudError> {
        gone_is_ok(
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
