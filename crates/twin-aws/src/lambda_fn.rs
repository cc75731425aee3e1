//! Lambda functions: the spec builder every layer uses, and the driver. A function's code comes
//! from its crate's uploaded zip; the zip's content hash is kept in the function's description so
//! new code shows up as drift.

use crate::artifacts;
use crate::context::LayerContext;
use crate::errors::{cloud, gone_is_ok, not_found_is_none};
use crate::{iam, logs, AwsClients};
use async_trait::async_trait;
use aws_sdk_lambda::types::{Architecture as LambdaArch, Environment, FunctionCode, Runtime};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use twin_config::{names, Layer};
use twin_engine::wait::poll_until;
use twin_engine::{
    CloudError, ErrorClass, Observed, OutputRef, Outputs, ResourceDriver, ResourceId, ResourceSpec,
};

/// Driver kind of a function.
pub const KIND: &str = "lambda_function";

/// The runtime of every function: the Rust binary is the `bootstrap` of an OS-only runtime.
pub const RUNTIME: &str = "provided.al2023";

/// Prefix of the description that carries the code hash.
pub(crate) const HASH_PREFIX: &str = "deployer source_hash=";

/// One function to describe.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    local_name: String,
    crate_name: String,
    role: String,
    role_layer: Option<Layer>,
    env: BTreeMap<String, String>,
    env_refs: BTreeMap<String, OutputRef>,
    memory_mb: i64,
    timeout_s: i64,
    depends_on: Vec<ResourceId>,
    dead_letters: bool,
}

impl FunctionSpec {
    /// The function `<twin>-<local_name>` built from `lambdas/<crate_name>`, running as the role
    /// `<twin>-<role>` (described by the same layer unless [`FunctionSpec::role_in`] says).
    pub fn new(local_name: &str, crate_name: &str, role: &str) -> Self {
        FunctionSpec {
            local_name: local_name.to_string(),
            crate_name: crate_name.to_string(),
            role: role.to_string(),
            role_layer: None,
            env: BTreeMap::new(),
            env_refs: BTreeMap::new(),
            memory_mb: 128,
            timeout_s: 30,
            depends_on: Vec::new(),
            dead_letters: false,
        }
    }

    /// The role is described by another layer.
    pub fn role_in(mut self, layer: Layer) -> Self {
        self.role_layer = Some(layer);
        self
    }

    /// Sets an environment variable (`TWIN_NAME` and `LOG_LEVEL` are always set).
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.insert(key.to_string(), value.into());
        self
    }

    /// Sets an environment variable to another resource's output (e.g. a remote ingress URL),
    /// which the engine resolves once that resource exists.
    pub fn env_ref(mut self, key: &str, value: OutputRef) -> Self {
        self.env_refs.insert(key.to_string(), value);
        self
    }

    /// Memory in MB (default 128).
    pub fn memory(mut self, mb: i64) -> Self {
        self.memory_mb = mb;
        self
    }

    /// Timeout in seconds (default 30).
    pub fn timeout(mut self, seconds: i64) -> Self {
        self.timeout_s = seconds;
        self
    }

    /// Adds dependencies (e.g. a function this one invokes, so it exists first).
    pub fn depends_on<I: IntoIterator<Item = ResourceId>>(mut self, deps: I) -> Self {
        self.depends_on.extend(deps);
        self
    }

    /// The function is invoked asynchronously: its failed events go to its layer's dead-letter
    /// queue (an event invoke config of its own; the role must [`crate::dead_letters::allow_send`]).
    pub fn async_with_dead_letters(mut self) -> Self {
        self.dead_letters = true;
        self
    }

    /// The function's resource id in `layer`.
    pub fn id(&self, layer: Layer) -> ResourceId {
        function_id(layer, &self.local_name)
    }

    /// The function's cloud name.
    pub fn cloud_name(&self, ctx: &LayerContext<'_>) -> String {
        names::cloud_function_name(ctx.name(), &self.local_name)
    }

    /// The function's log group and the function itself (which depends on the log group, its
    /// role and its crate's artifact in `layer`).
    pub fn build(
        self,
        ctx: &LayerContext<'_>,
        layer: Layer,
    ) -> Result<Vec<ResourceSpec>, CloudError> {
        let name = self.cloud_name(ctx);
        let log_group = ctx
            .spec(
                layer,
                logs::KIND,
                &self.local_name,
                logs::log_group_name(&name),
            )
            .desired(json!({"retention_days": logs::RETENTION_DAYS}));
        let mut env: Map<String, Value> = self
            .env
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        env.extend(self.env_refs.iter().map(|(k, r)| (k.clone(), r.to_value())));
        env.insert("TWIN_NAME".into(), json!(ctx.name()));
        env.insert("LOG_LEVEL".into(), json!(ctx.twin.twin.mode.as_str()));
        let key = ctx.artifacts.object_key(&self.crate_name)?;
        let function = ctx
            .spec(layer, KIND, &self.local_name, name)
            .depends_on([
                log_group.id.clone(),
                iam::role_id(self.role_layer.unwrap_or(layer), &self.role),
                artifacts::artifact_id(layer, &self.crate_name),
            ])
            .depends_on(self.depends_on)
            .desired(json!({
                "runtime": RUNTIME,
                "architecture": ctx.artifacts.architecture().as_str(),
                "handler": "bootstrap",
                "memory": self.memory_mb,
                "timeout": self.timeout_s,
                "env": env,
                "role": iam::role_arn(ctx, &self.role),
                "source_hash": ctx.artifacts.source_hash(&self.crate_name)?,
            }));
        let mut function = function;
        // Where the code is uploaded is an input: new code shows as a new `source_hash`.
        function.inputs["code"] = json!({"bucket": artifacts::bucket_name(ctx), "key": key});
        let mut specs = vec![log_group];
        if self.dead_letters {
            specs.push(crate::dead_letters::invoke_config_spec(
                ctx,
                layer,
                &self.local_name,
                &function.name,
                function.id.clone(),
            ));
        }
        specs.push(function);
        Ok(specs)
    }
}

/// Builds `functions` in `layer` with one artifact upload per distinct crate among them.
pub fn build_functions(
    ctx: &LayerContext<'_>,
    layer: Layer,
    functions: Vec<FunctionSpec>,
) -> Result<Vec<ResourceSpec>, CloudError> {
    let crates: BTreeSet<String> = functions.iter().map(|f| f.crate_name.clone()).collect();
    let mut specs = Vec::new();
    for c in crates {
        specs.push(artifacts::artifact_spec(ctx, layer, &c)?);
    }
    for f in functions {
        specs.extend(f.build(ctx, layer)?);
    }
    Ok(specs)
}

/// The id of the function `<twin>-<local_name>` in `layer`.
pub fn function_id(layer: Layer, local_name: &str) -> ResourceId {
    crate::context::resource_id(layer, KIND, local_name)
}

/// The ARN of the function `<twin>-<local_name>` (deterministic).
pub fn function_arn(ctx: &LayerContext<'_>, local_name: &str) -> String {
    ctx.clients.arn(
        "lambda",
        &format!(
            "function:{}",
            names::cloud_function_name(ctx.name(), local_name)
        ),
    )
}

/// Creates, reads, updates and deletes functions, waiting until each is ready.
pub struct FunctionDriver {
    clients: Arc<AwsClients>,
}

impl FunctionDriver {
    /// A driver using these clients.
    pub fn new(clients: Arc<AwsClients>) -> Self {
        FunctionDriver { clients }
    }

    /// Waits until the function is Active and its last update Successful.
    pub async fn wait_ready(&self, name: &str) -> Result<(), CloudError> {
        wait_ready(&self.clients, name).await
    }
}

/// Waits until a function is Active and its last update Successful (or fails with the reason
/// Lambda gives).
pub async fn wait_ready(clients: &AwsClients, name: &str) -> Result<(), CloudError> {
    poll_until(
        &format!("function {name} active"),
        Duration::from_millis(200),
        Duration::from_secs(5),
        Duration::from_secs(300),
        || async {
            let c = clients
                .lambda
                .get_function_configuration()
                .function_name(name)
                .send()
                .await
                .map_err(cloud)?;
            use aws_sdk_lambda::types::{LastUpdateStatus, State};
            match (c.state(), c.last_update_status()) {
                (Some(State::Failed), _) | (_, Some(LastUpdateStatus::Failed)) => {
                    Err(CloudError::fatal(
                        c.state_reason_code()
                            .map(|r| r.as_str().to_string())
                            .unwrap_or_else(|| "FunctionFailed".into()),
                        format!(
                            "function {name} failed: {}",
                            c.last_update_status_reason()
                                .or(c.state_reason())
                                .unwrap_or("no reason given")
                        ),
                    ))
                }
                (Some(State::Pending), _) | (_, Some(LastUpdateStatus::InProgress)) => Ok(None),
                _ => Ok(Some(())),
            }
        },
    )
    .await
}

fn env_of(spec: &ResourceSpec) -> Environment {
    let vars: std::collections::HashMap<String, String> = spec
        .desired
        .get("env")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    Environment::builder().set_variables(Some(vars)).build()
}

fn s(spec: &ResourceSpec, key: &str) -> String {
    spec.desired
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn i(spec: &ResourceSpec, key: &str) -> i32 {
    spec.desired.get(key).and_then(Value::as_i64).unwrap_or(0) as i32
}

fn code_of(spec: &ResourceSpec) -> (String, String) {
    let code = spec.inputs.get("code");
    let get = |k: &str| {
        code.and_then(|c| c.get(k))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    (get("bucket"), get("key"))
}

fn arch_of(spec: &ResourceSpec) -> LambdaArch {
    LambdaArch::from(s(spec, "architecture").as_str())
}

#[async_trait]
impl ResourceDriver for FunctionDriver {
    async fn read(&self, spec: &ResourceSpec, _: &Outputs) -> Result<Option<Observed>, CloudError> {
        let Some(got) = not_found_is_none(
            self.clients
                .lambda
                .get_function()
                .function_name(&spec.name)
                .send()
                .await,
        )?
        else {
            return Ok(None);
        };
        let Some(out) = got.configuration() else {
            return Err(CloudError::new(
                twin_engine::ErrorClass::Transient,
                "IncompleteResponse",
                format!("GetFunction {} returned no configuration", spec.name),
            ));
        };
        let owner = crate::context::owner_from_tags(
            got.tags()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        let env: Map<String, Value> = out
            .environment()
            .and_then(|e| e.variables())
            .map(|vars| {
                vars.iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect::<BTreeMap<_, _>>()
                    .into_iter()
                    .collect()
            })
            .unwrap_or_default();
        let arn = out.function_arn().unwrap_or_default().to_string();
        let hash = out
            .description()
            .and_then(|d| d.strip_prefix(HASH_PREFIX))
            .unwrap_or_default();
        Ok(Some(Observed::new(
            arn.clone(),
            json!({
                "arn": arn,
                "name": spec.name,
                "runtime": out.runtime().map(|r| r.as_str()).unwrap_or_default(),
                "architecture": out.architectures().first().map(|a| a.as_str()).unwrap_or("x86_64"),
                "handler": out.handler().unwrap_or_default(),
                "memory": out.memory_size().unwrap_or_default(),
                "timeout": out.timeout().unwrap_or_default(),
                "env": env,
                "role": out.role().unwrap_or_default(),
                "source_hash": hash,
            }),
        ).owned_by(owner)))
    }

    async fn create(&self, spec: &ResourceSpec, deps: &Outputs) -> Result<Observed, CloudError> {
        let (bucket, key) = code_of(spec);
        self.clients
            .lambda
            .create_function()
            .function_name(&spec.name)
            .runtime(Runtime::from(s(spec, "runtime").as_str()))
            .architectures(arch_of(spec))
            .handler(s(spec, "handler"))
            .memory_size(i(spec, "memory"))
            .timeout(i(spec, "timeout"))
            .role(s(spec, "role"))
            .environment(env_of(spec))
            .description(format!("{HASH_PREFIX}{}", s(spec, "source_hash")))
            .code(
                FunctionCode::builder()
                    .s3_bucket(bucket)
                    .s3_key(key)
                    .build(),
            )
            .tags(names::TAG_KEY, crate::context::twin_tag(spec))
            .send()
            .await
            .map_err(cloud)?;
        self.wait_ready(&spec.name).await?;
        self.read(spec, deps).await?.ok_or_else(|| {
            CloudError::new(
                ErrorClass::EventualConsistency,
                "NotYetVisible",
                format!("function {} not visible after create", spec.name),
            )
        })
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        current: &Observed,
        deps: &Outputs,
    ) -> Result<Observed, CloudError> {
        let drift = current.drift(&spec.desired);
        let code_keys = ["source_hash", "architecture"];
        if drift.iter().any(|d| code_keys.contains(&d.as_str())) {
            let (bucket, key) = code_of(spec);
            self.clients
                .lambda
                .update_function_code()
                .function_name(&spec.name)
                .s3_bucket(bucket)
                .s3_key(key)
                .architectures(arch_of(spec))
                .send()
                .await
                .map_err(cloud)?;
            self.wait_ready(&spec.name).await?;
        }
        // The description carries the hash, so it is updated with the configuration, after
        // the code: a crash in between leaves the old hash and the next deploy updates again.
        if !drift.is_empty() {
            self.clients
                .lambda
                .update_function_configuration()
                .function_name(&spec.name)
                .runtime(Runtime::from(s(spec, "runtime").as_str()))
                .handler(s(spec, "handler"))
                .memory_size(i(spec, "memory"))
                .timeout(i(spec, "timeout"))
                .role(s(spec, "role"))
                .environment(env_of(spec))
                .description(format!("{HASH_PREFIX}{}", s(spec, "source_hash")))
                .send()
                .await
                .map_err(cloud)?;
            self.wait_ready(&spec.name).await?;
        }
        crate::errors::reread(
            self.read(spec, deps).await?,
            "ResourceNotFoundException",
            &format!("function {}", spec.name),
        )
    }

    async fn delete(&self, spec: &ResourceSpec, _: &Observed) -> Result<(), CloudError> {
        gone_is_ok(
            self.clients
                .lambda
                .delete_function()
                .function_name(&spec.name)
                .send()
                .await,
        )
    }
}
