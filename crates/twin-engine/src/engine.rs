//! The commands: plan, deploy, destroy and info over the resources the providers describe.

use crate::error::{CloudError, EngineError, ResourceFailure};
use crate::events::{Action, Event, EventSink};
use crate::executor::{walk, NodeError, Walk};
use crate::graph::Graph;
use crate::provider::{Outputs, Provider, ResourceDriver};
use crate::resource::{Observed, ResourceId, ResourceSpec};
use crate::retry::{RetryPolicy, RetryStop};
use crate::state::{RecordStatus, ResourceRecord, StateFile, StateStore};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio_util::sync::CancellationToken;
use twin_config::{Layer, ProviderName, TwinConfig};

/// Knobs of one engine.
#[derive(Debug, Clone, Copy)]
pub struct EngineOptions {
    /// Cloud operations in flight at once.
    pub concurrency: usize,
    /// Retry policy for every cloud call.
    pub retry: RetryPolicy,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            concurrency: 16,
            retry: RetryPolicy::default(),
        }
    }
}

/// One line of a plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanItem {
    /// Resource.
    pub id: ResourceId,
    /// Layer.
    pub layer: Layer,
    /// Provider.
    pub provider: ProviderName,
    /// Kind.
    pub kind: String,
    /// Cloud name.
    pub name: String,
    /// What deploy would do.
    pub action: Action,
    /// Settings that drifted (for updates).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<String>,
}

/// What deploy would do, resource by resource.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    /// Every resource, in id order.
    pub items: Vec<PlanItem>,
}

impl Plan {
    /// How many items have this action.
    pub fn count(&self, action: Action) -> usize {
        self.items.iter().filter(|i| i.action == action).count()
    }

    /// Whether deploy would change nothing.
    pub fn is_empty_change(&self) -> bool {
        self.items.iter().all(|i| i.action == Action::Unchanged)
    }
}

/// Counts of what a command did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Resources created.
    pub created: usize,
    /// Resources updated.
    pub updated: usize,
    /// Resources left alone.
    pub unchanged: usize,
    /// Resources deleted.
    pub deleted: usize,
}

/// Where a resource stands in `info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InfoStatus {
    /// Exists and matches the config.
    Ok,
    /// Exists but these settings differ.
    Drifted(Vec<String>),
    /// Recorded in the state file but gone from the cloud.
    Missing,
    /// In the config but not deployed.
    NotDeployed,
    /// Exists but no longer in the config (the next deploy deletes it).
    Orphaned,
}

impl std::fmt::Display for InfoStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InfoStatus::Ok => f.write_str("ok"),
            InfoStatus::Drifted(k) => write!(f, "drifted ({})", k.join(", ")),
            InfoStatus::Missing => f.write_str("missing"),
            InfoStatus::NotDeployed => f.write_str("not deployed"),
            InfoStatus::Orphaned => f.write_str("orphaned"),
        }
    }
}

/// One row of `info`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InfoRow {
    /// Layer.
    pub layer: Layer,
    /// Provider.
    pub provider: ProviderName,
    /// Kind.
    pub kind: String,
    /// Cloud name.
    pub name: String,
    /// Cloud id (ARN, URL), when it exists.
    pub id: String,
    /// Status as found in the cloud.
    pub status: InfoStatus,
}

/// Plans, deploys, destroys and inspects one twin.
pub struct Engine {
    config: Arc<TwinConfig>,
    providers: Vec<Arc<dyn Provider>>,
    options: EngineOptions,
    events: Arc<dyn EventSink>,
    cancel: CancellationToken,
}

/// Everything the per-resource tasks of one command share.
struct Run {
    specs: HashMap<ResourceId, ResourceSpec>,
    providers: Vec<Arc<dyn Provider>>,
    outputs: Mutex<HashMap<ResourceId, Observed>>,
    state: Option<Arc<StateStore>>,
    recorded: BTreeMap<ResourceId, ResourceRecord>,
    events: Arc<dyn EventSink>,
    retry: RetryPolicy,
    cancel: CancellationToken,
    apply: bool,
    plan: Mutex<Vec<PlanItem>>,
    report: Mutex<Report>,
}

impl Engine {
    /// An engine for `config` with the providers that are implemented.
    pub fn new(
        config: Arc<TwinConfig>,
        providers: Vec<Arc<dyn Provider>>,
        options: EngineOptions,
        events: Arc<dyn EventSink>,
        cancel: CancellationToken,
    ) -> Engine {
        Engine {
            config,
            providers,
            options,
            events,
            cancel,
        }
    }

    /// The layers deployed by some provider, in dependency order, restricted to `only` if given.
    pub fn layers(&self, only: Option<Layer>) -> Vec<Layer> {
        Layer::ALL
            .iter()
            .copied()
            .filter(|l| only.is_none_or(|o| o == *l))
            .filter(|l| self.config.providers.get(*l) != ProviderName::None)
            .collect()
    }

    fn provider(&self, name: ProviderName) -> Option<&Arc<dyn Provider>> {
        self.providers.iter().find(|p| p.name() == name)
    }

    /// The resources the config asks for in `layers`.
    async fn desired(&self, layers: &[Layer]) -> Result<Vec<ResourceSpec>, EngineError> {
        let mut specs = Vec::new();
        for layer in layers {
            let name = self.config.providers.get(*layer);
            let provider = self.provider(name).ok_or_else(|| {
                EngineError::Graph(format!("{layer}: provider `{name}` is not available"))
            })?;
            let mut layer_specs = provider
                .layer_resources(*layer, &self.config)
                .await
                .map_err(|error| EngineError::Provider {
                    provider: name.to_string(),
                    error,
                })?;
            specs.append(&mut layer_specs);
        }
        let mut seen = std::collections::HashSet::new();
        for s in &specs {
            if !seen.insert(&s.id) {
                return Err(EngineError::Graph(format!(
                    "resource {} described twice",
                    s.id
                )));
            }
        }
        Ok(specs)
    }

    fn open_state(&self) -> Result<Arc<StateStore>, EngineError> {
        StateStore::open(&self.config.dir, &self.config.twin.digital_twin_name).map(Arc::new)
    }

    fn new_run(
        &self,
        specs: HashMap<ResourceId, ResourceSpec>,
        state: Option<Arc<StateStore>>,
        recorded: BTreeMap<ResourceId, ResourceRecord>,
        apply: bool,
    ) -> Arc<Run> {
        // Outputs of recorded resources stand in until a read replaces them, so a resource
        // outside this command's layers (or one being destroyed) can still be referred to.
        let outputs = recorded
            .iter()
            .filter_map(|(id, r)| r.observed.clone().map(|o| (id.clone(), o)))
            .collect();
        Arc::new(Run {
            specs,
            providers: self.providers.clone(),
            outputs: Mutex::new(outputs),
            state,
            recorded,
            events: self.events.clone(),
            retry: self.options.retry,
            cancel: self.cancel.clone(),
            apply,
            plan: Mutex::new(Vec::new()),
            report: Mutex::new(Report::default()),
        })
    }

    /// What `deploy` would do, read from the cloud; changes nothing.
    pub async fn plan(&self, only: Option<Layer>) -> Result<Plan, EngineError> {
        let layers = self.layers(only);
        let specs = self.desired(&layers).await?;
        let recorded = peek_state(&self.config)?;
        let desired_ids: std::collections::HashSet<_> =
            specs.iter().map(|s| s.id.clone()).collect();
        let stale: Vec<ResourceRecord> = recorded
            .values()
            .filter(|r| layers.contains(&r.spec.layer) && !desired_ids.contains(&r.spec.id))
            .cloned()
            .collect();
        let run = self.new_run(index(specs), None, recorded, false);
        self.forward(&run).await?;
        let mut items = take(&run.plan);
        // A stale record only becomes a delete if the resource still exists.
        let stale_run = self.new_run(
            stale
                .iter()
                .map(|r| (r.spec.id.clone(), r.spec.clone()))
                .collect(),
            None,
            run.recorded.clone(),
            false,
        );
        let found = self.read_all(&stale_run).await?;
        for r in stale {
            if found.get(&r.spec.id).is_some_and(Option::is_some) {
                items.push(plan_item(&r.spec, Action::Delete, Vec::new()));
            }
        }
        items.sort_by(|a, b| (a.layer, &a.id).cmp(&(b.layer, &b.id)));
        Ok(Plan { items })
    }

    /// Creates what is missing, updates what drifted, deletes what the config no longer has.
    pub async fn deploy(&self, only: Option<Layer>) -> Result<Report, EngineError> {
        let layers = self.layers(only);
        let specs = self.desired(&layers).await?;
        let state = self.open_state()?;
        let recorded = state.snapshot().resources;
        let desired_ids: std::collections::HashSet<_> =
            specs.iter().map(|s| s.id.clone()).collect();
        let stale: Vec<ResourceSpec> = recorded
            .values()
            .filter(|r| layers.contains(&r.spec.layer) && !desired_ids.contains(&r.spec.id))
            .map(|r| r.spec.clone())
            .collect();
        check_outside_deps(&specs, &desired_ids, &recorded)?;
        let run = self.new_run(index(specs), Some(state.clone()), recorded.clone(), true);
        let result = self.forward(&run).await;
        let mut report = *lock(&run.report);
        if result.is_ok() && !stale.is_empty() {
            let del = self.new_run(index(stale), Some(state.clone()), recorded, true);
            let r = self.backward(&del).await;
            report.deleted = lock(&del.report).deleted;
            state.flush()?;
            r?;
        } else {
            state.flush()?;
        }
        result.map(|_| report)
    }

    /// Deletes every resource of `layers` in reverse dependency order: those in the state
    /// file, those the config describes, and those the providers discover by name or tag.
    pub async fn destroy(&self, only: Option<Layer>) -> Result<Report, EngineError> {
        let layers = self.layers(only);
        let state = self.open_state()?;
        let recorded = state.snapshot().resources;
        let mut targets: BTreeMap<ResourceId, ResourceSpec> = BTreeMap::new();
        for r in recorded.values().filter(|r| layers.contains(&r.spec.layer)) {
            targets.insert(r.spec.id.clone(), r.spec.clone());
        }
        // The config's own specs carry the full dependency edges; they win over the records.
        for s in self.desired(&layers).await? {
            targets.insert(s.id.clone(), s);
        }
        // Discovery finds what neither knows (a lost state file, a device removed from the
        // config); a resource both know already is not added twice under another id.
        for layer in &layers {
            let name = self.config.providers.get(*layer);
            let Some(provider) = self.provider(name) else {
                continue;
            };
            let found = provider
                .discover(*layer, &self.config)
                .await
                .map_err(|error| EngineError::Provider {
                    provider: name.to_string(),
                    error,
                })?;
            for s in found {
                let known = targets
                    .values()
                    .any(|t| t.provider == s.provider && t.kind == s.kind && t.name == s.name);
                if !known {
                    targets.insert(s.id.clone(), s);
                }
            }
        }
        if only.is_some() {
            let blocking: Vec<String> = recorded
                .values()
                .filter(|r| !layers.contains(&r.spec.layer))
                .filter(|r| r.spec.depends_on.iter().any(|d| targets.contains_key(d)))
                .map(|r| format!("{} ({})", r.spec.label(), r.spec.layer))
                .collect();
            if !blocking.is_empty() {
                return Err(EngineError::MissingDependency(format!(
                    "other layers still depend on this one: {}; destroy those layers first",
                    blocking.join(", ")
                )));
            }
        }
        let run = self.new_run(
            targets.into_iter().collect(),
            Some(state.clone()),
            recorded,
            true,
        );
        let result = self.backward(&run).await;
        state.flush()?;
        result.map(|_| *lock(&run.report))
    }

    /// Every resource of the twin with its status as found in the cloud.
    pub async fn info(&self) -> Result<Vec<InfoRow>, EngineError> {
        let layers = self.layers(None);
        let specs = self.desired(&layers).await?;
        let recorded = peek_state(&self.config)?;
        let desired_ids: std::collections::HashSet<_> =
            specs.iter().map(|s| s.id.clone()).collect();
        let mut all = index(specs);
        for r in recorded.values() {
            all.entry(r.spec.id.clone())
                .or_insert_with(|| r.spec.clone());
        }
        let run = self.new_run(all.clone(), None, recorded.clone(), false);
        let found = self.read_all(&run).await?;
        let mut rows: Vec<InfoRow> = all
            .values()
            .map(|s| {
                let observed = found.get(&s.id).cloned().flatten();
                let status = match (&observed, desired_ids.contains(&s.id)) {
                    (Some(_), false) => InfoStatus::Orphaned,
                    (Some(o), true) => {
                        let d = o.drift(&s.desired);
                        if d.is_empty() {
                            InfoStatus::Ok
                        } else {
                            InfoStatus::Drifted(d)
                        }
                    }
                    (None, _) if recorded.contains_key(&s.id) => InfoStatus::Missing,
                    (None, _) => InfoStatus::NotDeployed,
                };
                InfoRow {
                    layer: s.layer,
                    provider: s.provider,
                    kind: s.kind.clone(),
                    name: s.name.clone(),
                    id: observed.map(|o| o.cloud_id).unwrap_or_default(),
                    status,
                }
            })
            .collect();
        rows.sort_by(|a, b| (a.layer, &a.kind, &a.name).cmp(&(b.layer, &b.kind, &b.name)));
        Ok(rows)
    }

    /// Reads every spec of `run` in dependency order; returns what was found.
    async fn read_all(
        &self,
        run: &Arc<Run>,
    ) -> Result<HashMap<ResourceId, Option<Observed>>, EngineError> {
        let found = Arc::new(Mutex::new(HashMap::new()));
        let graph = graph_of(&run.specs)?;
        self.events.emit(Event::Planned { total: graph.len() });
        let w = walk(&graph, self.options.concurrency, &self.cancel, |id| {
            let (run, found) = (run.clone(), found.clone());
            async move {
                let spec = run.spec(&id)?;
                let driver = run.driver(spec)?;
                let current = run.read(spec, &driver).await?;
                if let Some(o) = &current {
                    lock(&run.outputs).insert(id.clone(), o.clone());
                }
                lock(&found).insert(id, current);
                Ok(())
            }
        })
        .await;
        finish(w)?;
        let out = std::mem::take(&mut *lock(&found));
        Ok(out)
    }

    /// Reads, then (when applying) creates or updates, in dependency order.
    async fn forward(&self, run: &Arc<Run>) -> Result<(), EngineError> {
        let graph = graph_of(&run.specs)?;
        self.events.emit(Event::Planned { total: graph.len() });
        let w = walk(&graph, self.options.concurrency, &self.cancel, |id| {
            let run = run.clone();
            async move { run.converge(&id).await }
        })
        .await;
        finish(w)
    }

    /// Deletes in reverse dependency order.
    async fn backward(&self, run: &Arc<Run>) -> Result<(), EngineError> {
        let graph = graph_of(&run.specs)?.reversed();
        self.events.emit(Event::Planned { total: graph.len() });
        let w = walk(&graph, self.options.concurrency, &self.cancel, |id| {
            let run = run.clone();
            async move { run.remove(&id).await }
        })
        .await;
        finish(w)
    }
}

impl Run {
    fn spec(&self, id: &ResourceId) -> Result<&ResourceSpec, NodeError> {
        self.specs.get(id).ok_or_else(|| {
            NodeError::Failed(Box::new(ResourceFailure {
                id: id.clone(),
                label: id.to_string(),
                action: Action::Read,
                attempts: 0,
                error: CloudError::fatal("UnknownResource", "not in the graph"),
            }))
        })
    }

    fn driver(&self, spec: &ResourceSpec) -> Result<Arc<dyn ResourceDriver>, NodeError> {
        self.providers
            .iter()
            .find(|p| p.name() == spec.provider)
            .and_then(|p| p.driver(&spec.kind))
            .ok_or_else(|| {
                self.failure(
                    spec,
                    Action::Read,
                    0,
                    CloudError::fatal(
                        "NoDriver",
                        format!(
                            "provider `{}` has no driver for `{}`",
                            spec.provider, spec.kind
                        ),
                    ),
                )
            })
    }

    fn failure(
        &self,
        spec: &ResourceSpec,
        action: Action,
        attempts: u32,
        error: CloudError,
    ) -> NodeError {
        let f = ResourceFailure {
            id: spec.id.clone(),
            label: spec.label(),
            action,
            attempts,
            error,
        };
        self.events.emit(Event::Failed {
            id: spec.id.clone(),
            label: spec.label(),
            error: f.to_string(),
        });
        NodeError::Failed(Box::new(f))
    }

    fn deps(&self, spec: &ResourceSpec) -> Outputs {
        let outputs = lock(&self.outputs);
        Outputs(
            spec.depends_on
                .iter()
                .filter_map(|d| outputs.get(d).map(|o| (d.clone(), o.clone())))
                .collect(),
        )
    }

    /// Runs one driver call under the retry policy, reporting retries as events.
    async fn retried<T, F, Fut>(
        &self,
        spec: &ResourceSpec,
        action: Action,
        call: F,
    ) -> Result<T, NodeError>
    where
        F: FnMut(u32) -> Fut,
        Fut: std::future::Future<Output = Result<T, CloudError>>,
    {
        let events = self.events.clone();
        match self
            .retry
            .run(&self.cancel, call, |attempt, delay, e| {
                events.emit(Event::Retrying {
                    id: spec.id.clone(),
                    label: spec.label(),
                    attempt,
                    delay,
                    error: e.to_string(),
                })
            })
            .await
        {
            Ok((v, _)) => Ok(v),
            Err(RetryStop::Failed(e, n)) => Err(self.failure(spec, action, n, e)),
            Err(RetryStop::Cancelled) => Err(NodeError::Cancelled),
        }
    }

    async fn read(
        &self,
        spec: &ResourceSpec,
        driver: &Arc<dyn ResourceDriver>,
    ) -> Result<Option<Observed>, NodeError> {
        let deps = self.deps(spec);
        self.retried(spec, Action::Read, |_| driver.read(spec, &deps))
            .await
    }

    fn record(
        &self,
        spec: &ResourceSpec,
        status: RecordStatus,
        observed: Option<Observed>,
    ) -> Result<(), NodeError> {
        let Some(state) = &self.state else {
            return Ok(());
        };
        state
            .put(ResourceRecord {
                spec: spec.clone(),
                status,
                observed,
            })
            .map_err(|e| {
                self.failure(
                    spec,
                    Action::Create,
                    0,
                    CloudError::fatal("StateWrite", e.to_string()),
                )
            })
    }

    /// Read, decide, and (when applying) create or update one resource.
    async fn converge(&self, id: &ResourceId) -> Result<(), NodeError> {
        if self.cancel.is_cancelled() {
            return Err(NodeError::Cancelled);
        }
        let spec = self.spec(id)?;
        let driver = self.driver(spec)?;
        let started = Instant::now();
        self.events.emit(Event::Started {
            id: id.clone(),
            label: spec.label(),
            action: Action::Read,
        });
        let current = self.read(spec, &driver).await?;
        let (action, drift) = match &current {
            None => (Action::Create, Vec::new()),
            Some(o) => {
                let d = o.drift(&spec.desired);
                if d.is_empty() {
                    (Action::Unchanged, d)
                } else {
                    (Action::Update, d)
                }
            }
        };
        if !self.apply {
            lock(&self.plan).push(plan_item(spec, action, drift));
            if let Some(o) = current {
                lock(&self.outputs).insert(id.clone(), o);
            }
            self.events.emit(Event::Finished {
                id: id.clone(),
                label: spec.label(),
                action: Action::Read,
                elapsed: started.elapsed(),
            });
            return Ok(());
        }
        let deps = self.deps(spec);
        let observed = match (action, current) {
            (Action::Create, _) => {
                self.events.emit(Event::Started {
                    id: id.clone(),
                    label: spec.label(),
                    action,
                });
                self.record(spec, RecordStatus::Pending, None)?;
                self.retried(spec, action, |attempt| {
                    let (driver, deps) = (driver.clone(), &deps);
                    async move {
                        // A create that timed out may have succeeded: look before trying again.
                        if attempt > 1 {
                            if let Some(o) = driver.read(spec, deps).await? {
                                return Ok(o);
                            }
                        }
                        driver.create(spec, deps).await
                    }
                })
                .await?
            }
            (Action::Update, Some(cur)) => {
                self.events.emit(Event::Started {
                    id: id.clone(),
                    label: spec.label(),
                    action,
                });
                self.record(spec, RecordStatus::Pending, Some(cur.clone()))?;
                self.retried(spec, action, |_| driver.update(spec, &cur, &deps))
                    .await?
            }
            (_, Some(cur)) => cur,
            (_, None) => unreachable_none(spec, self)?,
        };
        let unchanged_record = self.recorded.get(id).is_some_and(|r| {
            r.status == RecordStatus::Created
                && r.spec == *spec
                && r.observed.as_ref() == Some(&observed)
        });
        if !(action == Action::Unchanged && unchanged_record) {
            self.record(spec, RecordStatus::Created, Some(observed.clone()))?;
        }
        lock(&self.outputs).insert(id.clone(), observed);
        {
            let mut r = lock(&self.report);
            match action {
                Action::Create => r.created += 1,
                Action::Update => r.updated += 1,
                _ => r.unchanged += 1,
            }
        }
        self.events.emit(Event::Finished {
            id: id.clone(),
            label: spec.label(),
            action,
            elapsed: started.elapsed(),
        });
        Ok(())
    }

    /// Read and, if it exists, delete one resource; forget it in the state either way.
    async fn remove(&self, id: &ResourceId) -> Result<(), NodeError> {
        if self.cancel.is_cancelled() {
            return Err(NodeError::Cancelled);
        }
        let spec = self.spec(id)?;
        let driver = self.driver(spec)?;
        let started = Instant::now();
        self.events.emit(Event::Started {
            id: id.clone(),
            label: spec.label(),
            action: Action::Delete,
        });
        let current = self.read(spec, &driver).await?;
        let action = match current {
            Some(cur) => {
                self.retried(spec, Action::Delete, |_| driver.delete(spec, &cur))
                    .await?;
                lock(&self.report).deleted += 1;
                Action::Delete
            }
            None => Action::Unchanged,
        };
        if let Some(state) = &self.state {
            state.remove(id).map_err(|e| {
                self.failure(
                    spec,
                    Action::Delete,
                    0,
                    CloudError::fatal("StateWrite", e.to_string()),
                )
            })?;
        }
        lock(&self.outputs).remove(id);
        self.events.emit(Event::Finished {
            id: id.clone(),
            label: spec.label(),
            action,
            elapsed: started.elapsed(),
        });
        Ok(())
    }
}

fn unreachable_none(spec: &ResourceSpec, run: &Run) -> Result<Observed, NodeError> {
    Err(run.failure(
        spec,
        Action::Update,
        0,
        CloudError::fatal("Internal", "update decided without a current observation"),
    ))
}

fn plan_item(spec: &ResourceSpec, action: Action, drift: Vec<String>) -> PlanItem {
    PlanItem {
        id: spec.id.clone(),
        layer: spec.layer,
        provider: spec.provider,
        kind: spec.kind.clone(),
        name: spec.name.clone(),
        action,
        drift,
    }
}

fn index(specs: Vec<ResourceSpec>) -> HashMap<ResourceId, ResourceSpec> {
    specs.into_iter().map(|s| (s.id.clone(), s)).collect()
}

fn graph_of(specs: &HashMap<ResourceId, ResourceSpec>) -> Result<Graph, EngineError> {
    Graph::new(specs.values().map(|s| (&s.id, s.depends_on.as_slice())))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn take<T: Default>(m: &Mutex<T>) -> T {
    std::mem::take(&mut *lock(m))
}

fn finish(w: Walk) -> Result<(), EngineError> {
    if !w.failures.is_empty() {
        return Err(EngineError::Resources {
            failures: w.failures,
        });
    }
    if w.cancelled {
        return Err(EngineError::Cancelled);
    }
    Ok(())
}

/// A dependency outside the command's layers must already be deployed (recorded).
fn check_outside_deps(
    specs: &[ResourceSpec],
    desired: &std::collections::HashSet<ResourceId>,
    recorded: &BTreeMap<ResourceId, ResourceRecord>,
) -> Result<(), EngineError> {
    let mut missing = Vec::new();
    for s in specs {
        for d in &s.depends_on {
            if !desired.contains(d) && recorded.get(d).is_none_or(|r| r.observed.is_none()) {
                missing.push(format!("{} needs {d}", s.label()));
            }
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(EngineError::MissingDependency(format!(
            "{}; deploy the layers these belong to first",
            missing.join("; ")
        )))
    }
}

/// The recorded resources, read without taking the lock (plan and info only look).
fn peek_state(config: &TwinConfig) -> Result<BTreeMap<ResourceId, ResourceRecord>, EngineError> {
    StateFile::peek(&config.dir, &config.twin.digital_twin_name).map(|s| s.resources)
}
