//! An in-memory cloud and provider for engine tests: it records every call, enforces
//! dependency rules like a real cloud (a resource cannot be created before what it needs, nor
//! deleted while something still uses it), and injects errors, throttling and crashes.
#![allow(dead_code)]

use async_trait::async_trait;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use twin_config::{Layer, ProviderName, TwinConfig};
use twin_engine::{
    CloudError, ErrorClass, Observed, Outputs, Owner, Provider, ResourceDriver, ResourceId,
    ResourceSpec, Scope,
};

/// What the fake cloud does at one mutating call.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Fails with this error class, the cloud unchanged.
    Error(ErrorClass),
    /// Applies the change in the cloud, then the process "dies" before the answer arrives.
    CrashAfter,
    /// The process "dies" before the call reaches the cloud.
    CrashBefore,
    /// Applies the change, then the answer is lost (a timeout after success).
    TimeoutAfter,
    /// Applies only the first step of a create (the resource without its last setting, like a
    /// rule without its target), then the answer is lost.
    PartialAfter,
}

/// One resource as the fake cloud stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub id: String,
    pub kind: String,
    pub settings: Value,
    pub deps: Vec<String>,
    pub owner: Owner,
}

#[derive(Default)]
pub struct CloudInner {
    pub resources: BTreeMap<String, Stored>,
    pub calls: Vec<(String, String)>,
    pub faults: HashMap<usize, Fault>,
    pub throttle_each: usize,
    pub throttled: HashMap<String, usize>,
    pub next_id: usize,
}

/// The fake cloud shared by the provider and the test.
#[derive(Default, Clone)]
pub struct FakeCloud {
    pub inner: Arc<Mutex<CloudInner>>,
    pub mutations: Arc<AtomicUsize>,
    pub crashed: Arc<Notify>,
    pub op_delay: Arc<Mutex<Duration>>,
}

impl FakeCloud {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CloudInner> {
        self.inner.lock().unwrap()
    }

    pub fn names(&self) -> Vec<String> {
        self.lock().resources.keys().cloned().collect()
    }

    pub fn calls(&self) -> Vec<(String, String)> {
        self.lock().calls.clone()
    }

    pub fn mutating_calls(&self) -> Vec<(String, String)> {
        self.calls()
            .into_iter()
            .filter(|(op, _)| op != "read" && op != "list")
            .collect()
    }

    pub fn clear_calls(&self) {
        self.lock().calls.clear();
    }

    /// Injects `fault` at the n-th (0-based) mutating call from now on.
    pub fn fault_at(&self, n: usize, fault: Fault) {
        let base = self.mutations.load(Ordering::SeqCst);
        self.lock().faults.insert(base + n, fault);
    }

    /// Every resource's first `n` calls of each kind are throttled.
    pub fn throttle_first(&self, n: usize) {
        self.lock().throttle_each = n;
    }

    pub fn set_setting(&self, name: &str, key: &str, v: Value) {
        let mut c = self.lock();
        let r = c.resources.get_mut(name).unwrap();
        r.settings[key] = v;
    }

    pub fn remove(&self, name: &str) {
        self.lock().resources.remove(name);
    }

    /// Puts a resource that someone else made (marked `owner`) under `name`.
    pub fn put_foreign(&self, name: &str, kind: &str, owner: Owner) {
        self.lock().resources.insert(
            name.to_string(),
            Stored {
                id: format!("foreign:{name}"),
                kind: kind.into(),
                settings: json!({}),
                deps: Vec::new(),
                owner,
            },
        );
    }

    fn throttled(&self, op: &str, name: &str) -> bool {
        let mut c = self.lock();
        let limit = c.throttle_each;
        let n = c.throttled.entry(format!("{op}:{name}")).or_insert(0);
        if *n < limit {
            *n += 1;
            true
        } else {
            false
        }
    }

    /// Book-keeping for a mutating call: logs it and returns the fault to apply, if any.
    async fn begin(&self, op: &str, name: &str) -> Result<Option<Fault>, CloudError> {
        let delay = *self.op_delay.lock().unwrap();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        self.lock().calls.push((op.into(), name.into()));
        if self.throttled(op, name) {
            return Err(CloudError::new(
                ErrorClass::Throttling,
                "ThrottlingException",
                "Rate exceeded",
            ));
        }
        let n = self.mutations.fetch_add(1, Ordering::SeqCst);
        let fault = self.lock().faults.remove(&n);
        match fault {
            Some(Fault::Error(class)) => Err(CloudError::new(
                class,
                "InjectedFault",
                format!("injected at call {n}"),
            )),
            Some(Fault::CrashBefore) => self.die().await,
            other => Ok(other),
        }
    }

    /// Simulates kill -9: tells the test, then never returns (the test drops the command).
    async fn die<T>(&self) -> T {
        self.crashed.notify_one();
        std::future::pending::<T>().await
    }
}

/// The provider over the fake cloud: `model` is the graph it describes.
pub struct FakeProvider {
    pub cloud: FakeCloud,
    pub model: Mutex<Vec<ResourceSpec>>,
    pub scope: Mutex<Scope>,
}

impl FakeProvider {
    pub fn new(cloud: FakeCloud, model: Vec<ResourceSpec>) -> Arc<Self> {
        Arc::new(FakeProvider {
            cloud,
            model: Mutex::new(model),
            scope: Mutex::new(
                [("account", "111111111111"), ("region", "eu-west-1")]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
        })
    }

    /// Points the provider at another region, as other credentials would.
    pub fn set_region(&self, region: &str) {
        self.scope
            .lock()
            .unwrap()
            .insert("region".into(), region.into());
    }
}

#[async_trait]
impl Provider for FakeProvider {
    fn name(&self) -> ProviderName {
        ProviderName::Aws
    }

    fn scope(&self) -> Scope {
        self.scope.lock().unwrap().clone()
    }

    async fn layer_resources(
        &self,
        layer: Layer,
        _twin: &TwinConfig,
    ) -> Result<Vec<ResourceSpec>, CloudError> {
        Ok(self
            .model
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.layer == layer)
            .cloned()
            .collect())
    }

    fn driver(&self, _kind: &str) -> Option<Arc<dyn ResourceDriver>> {
        Some(Arc::new(FakeDriver {
            cloud: self.cloud.clone(),
        }))
    }

    async fn discover(
        &self,
        layer: Layer,
        _twin: &TwinConfig,
    ) -> Result<Vec<ResourceSpec>, CloudError> {
        // Like listing by name prefix: everything in the cloud whose layer tag matches.
        let c = self.cloud.lock();
        Ok(c.resources
            .iter()
            .filter(|(_, r)| r.settings.get("layer").and_then(Value::as_str) == Some(layer.short()))
            .map(|(name, r)| {
                ResourceSpec::new(
                    ResourceId(format!("found/{name}")),
                    layer,
                    ProviderName::Aws,
                    &r.kind,
                    name.clone(),
                )
            })
            .collect())
    }
}

struct FakeDriver {
    cloud: FakeCloud,
}

fn observed(s: &Stored) -> Observed {
    let mut attrs = s.settings.clone();
    attrs["arn"] = json!(s.id);
    Observed::new(s.id.clone(), attrs).owned_by(s.owner.clone())
}

#[async_trait]
impl ResourceDriver for FakeDriver {
    async fn read(
        &self,
        spec: &ResourceSpec,
        _deps: &Outputs,
    ) -> Result<Option<Observed>, CloudError> {
        self.cloud
            .lock()
            .calls
            .push(("read".into(), spec.name.clone()));
        if self.cloud.throttled("read", &spec.name) {
            return Err(CloudError::new(
                ErrorClass::Throttling,
                "ThrottlingException",
                "Rate exceeded",
            ));
        }
        Ok(self.cloud.lock().resources.get(&spec.name).map(observed))
    }

    async fn create(&self, spec: &ResourceSpec, deps: &Outputs) -> Result<Observed, CloudError> {
        let fault = self.cloud.begin("create", &spec.name).await?;
        let dep_names: Vec<String> = spec
            .depends_on
            .iter()
            .map(|d| {
                deps.attr(d, "arn")
                    .map(|arn| arn.trim_start_matches("fake:").to_string())
            })
            .collect::<Result<_, _>>()?;
        let stored = {
            let mut c = self.cloud.lock();
            for d in &dep_names {
                if !c.resources.contains_key(d) {
                    return Err(CloudError::fatal(
                        "DependencyMissing",
                        format!("{d} does not exist"),
                    ));
                }
            }
            if c.resources.contains_key(&spec.name) {
                return Err(CloudError::fatal("AlreadyExists", spec.name.clone()));
            }
            c.next_id += 1;
            let mut settings = spec.desired.clone();
            if matches!(fault, Some(Fault::PartialAfter)) {
                let last = settings
                    .as_object()
                    .and_then(|o| o.keys().next_back().cloned());
                if let (Some(o), Some(k)) = (settings.as_object_mut(), last) {
                    o.remove(&k);
                }
            }
            settings["layer"] = json!(spec.layer.short());
            let s = Stored {
                id: format!("fake:{}", spec.name),
                kind: spec.kind.clone(),
                settings,
                deps: dep_names,
                owner: Owner::Twin {
                    name: "t".into(),
                    id: None,
                },
            };
            c.resources.insert(spec.name.clone(), s.clone());
            s
        };
        if matches!(fault, Some(Fault::CrashAfter)) {
            self.cloud.die::<()>().await;
        }
        if matches!(fault, Some(Fault::TimeoutAfter | Fault::PartialAfter)) {
            return Err(CloudError::new(
                ErrorClass::Transient,
                "RequestTimeout",
                "no answer",
            ));
        }
        Ok(observed(&stored))
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        _current: &Observed,
        _deps: &Outputs,
    ) -> Result<Observed, CloudError> {
        let fault = self.cloud.begin("update", &spec.name).await?;
        let stored = {
            let mut c = self.cloud.lock();
            let r = c.resources.get_mut(&spec.name).ok_or_else(|| {
                CloudError::new(ErrorClass::NotFound, "NotFound", spec.name.clone())
            })?;
            for (k, v) in spec.desired.as_object().into_iter().flatten() {
                r.settings[k] = v.clone();
            }
            r.clone()
        };
        if matches!(fault, Some(Fault::CrashAfter)) {
            self.cloud.die::<()>().await;
        }
        Ok(observed(&stored))
    }

    async fn delete(&self, spec: &ResourceSpec, _current: &Observed) -> Result<(), CloudError> {
        let fault = self.cloud.begin("delete", &spec.name).await?;
        {
            let mut c = self.cloud.lock();
            let users: Vec<String> = c
                .resources
                .iter()
                .filter(|(_, r)| r.deps.contains(&spec.name))
                .map(|(n, _)| n.clone())
                .collect();
            if !users.is_empty() {
                return Err(CloudError::fatal(
                    "DeleteConflict",
                    format!("{} is used by {users:?}", spec.name),
                ));
            }
            c.resources.remove(&spec.name);
        }
        if matches!(fault, Some(Fault::CrashAfter)) {
            self.cloud.die::<()>().await;
        }
        Ok(())
    }
}

/// A small twin graph over three layers: role → function → rule, table, bucket, ...
pub fn model() -> Vec<ResourceSpec> {
    let spec = |id: &str, layer: Layer, kind: &str, deps: &[&str], desired: Value| {
        ResourceSpec::new(
            ResourceId(id.into()),
            layer,
            ProviderName::Aws,
            kind,
            format!("t-{}", id.replace('/', "-")),
        )
        .depends_on(deps.iter().map(|d| ResourceId((*d).into())))
        .desired(desired)
    };
    vec![
        spec(
            "l1/role/dispatcher",
            Layer::L1,
            "iam_role",
            &[],
            json!({"policy": "invoke"}),
        ),
        spec(
            "l1/fn/dispatcher",
            Layer::L1,
            "lambda_function",
            &[
                "l1/role/dispatcher",
                "l2/fn/processor-a",
                "l2/fn/processor-b",
            ],
            json!({"memory": 128, "code": "h1"}),
        ),
        spec(
            "l1/rule",
            Layer::L1,
            "topic_rule",
            &["l1/fn/dispatcher"],
            json!({"sql": "SELECT *"}),
        ),
        spec("l1/thing/a", Layer::L1, "thing", &[], json!({})),
        spec("l1/thing/b", Layer::L1, "thing", &[], json!({})),
        spec(
            "l2/role/processor",
            Layer::L2,
            "iam_role",
            &[],
            json!({"policy": "invoke persister"}),
        ),
        spec(
            "l2/fn/processor-a",
            Layer::L2,
            "lambda_function",
            &["l2/role/processor", "l2/fn/persister"],
            json!({"memory": 128, "code": "p"}),
        ),
        spec(
            "l2/fn/processor-b",
            Layer::L2,
            "lambda_function",
            &["l2/role/processor", "l2/fn/persister"],
            json!({"memory": 128, "code": "p"}),
        ),
        spec(
            "l2/role/persister",
            Layer::L2,
            "iam_role",
            &[],
            json!({"policy": "put table"}),
        ),
        spec(
            "l2/fn/persister",
            Layer::L2,
            "lambda_function",
            &["l2/role/persister", "l3/table"],
            json!({"memory": 256, "code": "q"}),
        ),
        spec(
            "l3/table",
            Layer::L3Hot,
            "dynamodb_table",
            &[],
            json!({"billing": "PAY_PER_REQUEST"}),
        ),
        spec(
            "l3/bucket-cold",
            Layer::L3Cold,
            "s3_bucket",
            &[],
            json!({"private": true}),
        ),
    ]
}

/// Writes a minimal valid twin config into `dir` and loads it.
pub fn twin_config(dir: &Path) -> Arc<TwinConfig> {
    std::fs::write(
        dir.join("config.json"),
        r#"{"digital_twin_name": "t", "hot_storage_size_in_days": 30, "cold_storage_size_in_days": 90, "mode": "INFO"}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("config_iot_devices.json"),
        r#"[{"id": "a", "properties": [{"name": "temperature", "dataType": "DOUBLE"}]}]"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("config_providers.json"),
        r#"{"layer_1_provider": "aws", "layer_2_provider": "aws", "layer_3_hot_provider": "aws",
            "layer_3_cold_provider": "aws", "layer_3_archive_provider": "aws",
            "layer_4_provider": "none", "layer_5_provider": "none"}"#,
    )
    .unwrap();
    Arc::new(twin_config::load_dir(dir).unwrap())
}
