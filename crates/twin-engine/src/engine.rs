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
    /// Resources found under the twin's names that belong to someone else, left alone.
    pub foreign: usize,
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
    twin: String,
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

    /// Runs a provider-level call (describing, discovering) under the retry policy.
    async fn provider_call<T, F, Fut>(
        &self,
        provider: ProviderName,
        call: F,
    ) -> Result<T, EngineError>
    where
        F: FnMut(u32) -> Fut,
        Fut: std::future::Future<Output = Result<T, CloudError>>,
    {
        self.options
            .retry
            .run_quiet(&self.cancel, call)
            .await
            .map_err(|e| match e {
                Some(error) => EngineError::Provider {
                    provider: provider.to_string(),
                    error,
                },
                None => EngineError::Cancelled,
            })
    }

    /// Refuses when the state was made in another cloud scope than the providers reach now.
    fn check_scopes(&self, state: &StateFile, path: &std::path::Path) -> Result<(), EngineError> {
        for p in &self.providers {
            let name = p.name().to_string();
            if let Some(recorded) = state.scopes.get(&name) {
                let current = p.scope();
                if *recorded != current {
                    return Err(EngineError::ScopeMismatch {
                        provider: name,
                        path: path.display().to_string(),
                        recorded: scope_text(recorded),
                        current: scope_text(&current),
                    });
                }
            }
        }
        Ok(())
    }

    /// The cloud scope of every provider, in words (for confirmations).
    pub fn scopes(&self) -> Vec<String> {
        self.providers
            .iter()
            .map(|p| format!("{} {}", p.name(), scope_text(&p.scope())))
            .collect()
    }

    fn state_path(&self) -> std::path::PathBuf {
        self.config
            .dir
            .join(".deployer")
            .join(format!("{}.json", self.config.twin.digital_twin_name))
    }

    /// The resources the config asks for in `layers`.
    async fn desired(&self, layers: &[Layer]) -> Result<Vec<ResourceSpec>, EngineError> {
        let mut specs = Vec::new();
        for layer in layers {
            let name = self.config.providers.get(*layer);
            let provider = self.provider(name).ok_or_else(|| {
                EngineError::Graph(format!("{layer}: provider `{name}` is not available"))
            })?;
            let mut layer_specs = self
                .provider_call(name, |_| provider.layer_resources(*layer, &self.config))
                .await?;
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
            twin: self.config.twin.digital_twin_name.clone(),
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
        let peeked = peek_state(&self.config)?;
        self.check_scopes(&peeked, &self.state_path())?;
        let recorded = peeked.resources;
        let mut specs = self.desired(&layers).await?;
        crate::reference::link(&mut specs, &recorded, true)?;
        let desired_ids: std::collections::HashSet<_> =
            specs.iter().map(|s| s.id.clone()).collect();
        let stale: Vec<ResourceRecord> = recorded
            .values()
            .filter(|r| self.is_stale(&r.spec, only, &desired_ids))
            .filter(|r| self.provider(r.spec.provider).is_some())
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
        let state = self.open_state()?;
        let snapshot = state.snapshot();
        self.check_scopes(&snapshot, state.path())?;
        let recorded = snapshot.resources;
        let mut specs = self.desired(&layers).await?;
        crate::reference::link(&mut specs, &recorded, true)?;
        let desired_ids: std::collections::HashSet<_> =
            specs.iter().map(|s| s.id.clone()).collect();
        let stale: Vec<ResourceSpec> = recorded
            .values()
            .filter(|r| self.is_stale(&r.spec, only, &desired_ids))
            .map(|r| r.spec.clone())
            .collect();
        let unreachable: Vec<String> = stale
            .iter()
            .filter(|s| self.provider(s.provider).is_none())
            .map(|s| format!("{} on {}", s.label(), s.provider))
            .collect();
        if !unreachable.is_empty() {
            return Err(EngineError::MissingDependency(format!(
                "the state records resources on a provider this command cannot reach: {}; give deployer that provider's credentials so the next deploy can delete them",
                unreachable.join(", ")
            )));
        }
        check_outside_deps(&specs, &desired_ids, &recorded)?;
        for p in &self.providers {
            state.set_scope(&p.name().to_string(), p.scope(), None)?;
        }
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
        // Every layer, deployed or not: a layer switched to `none` or to another provider may
        // still have resources on the provider it used before.
        let all: Vec<Layer> = Layer::ALL
            .iter()
            .copied()
            .filter(|l| only.is_none_or(|o| o == *l))
            .collect();
        let layers = self.layers(only);
        let state = self.open_state()?;
        let snapshot = state.snapshot();
        self.check_scopes(&snapshot, state.path())?;
        let recorded = snapshot.resources;
        let mut targets: BTreeMap<ResourceId, ResourceSpec> = BTreeMap::new();
        for r in recorded.values().filter(|r| all.contains(&r.spec.layer)) {
            if self.provider(r.spec.provider).is_some() {
                targets.insert(r.spec.id.clone(), r.spec.clone());
            }
        }
        // The config's own specs carry the full dependency edges; they win over the records.
        let mut described = self.desired(&layers).await?;
        // A reference only orders the deletes here: one whose resource is gone is no reason
        // to stop.
        crate::reference::link(&mut described, &recorded, false)?;
        for s in described {
            targets.insert(s.id.clone(), s);
        }
        // Discovery finds what neither knows (a lost state file, a device removed from the
        // config, a layer that moved to another provider); a resource both know already is
        // not added twice under another id.
        for provider in &self.providers {
            for layer in &all {
                let found = self
                    .provider_call(provider.name(), |_| provider.discover(*layer, &self.config))
                    .await?;
                for s in found {
                    let known = targets
                        .values()
                        .any(|t| t.provider == s.provider && t.kind == s.kind && t.name == s.name);
                    if !known {
                        targets.insert(s.id.clone(), s);
                    }
                }
            }
        }
        // Edges to resources that are not being destroyed (another layer's) are dropped.
        let ids: std::collections::HashSet<ResourceId> = targets.keys().cloned().collect();
        if only.is_some() {
            let blocking: Vec<String> = recorded
                .values()
                .filter(|r| !ids.contains(&r.spec.id))
                .filter(|r| r.spec.depends_on.iter().any(|d| ids.contains(d)))
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
        let report = result.map(|_| *lock(&run.report))?;
        let unreachable: Vec<String> = state
            .snapshot()
            .resources
            .values()
            .filter(|r| all.contains(&r.spec.layer))
            .map(|r| format!("{} on {}", r.spec.label(), r.spec.provider))
            .collect();
        if !unreachable.is_empty() {
            return Err(EngineError::MissingDependency(format!(
                "the state still records resources on a provider this command cannot reach: {}; give deployer that provider's credentials and run destroy again",
                unreachable.join(", ")
            )));
        }
        Ok(report)
    }

    /// Whether a recorded resource is no longer wanted by a deploy of `only` (or all layers):
    /// not in the config any more, its layer set to `none`, or moved to another provider.
    fn is_stale(
        &self,
        spec: &ResourceSpec,
        only: Option<Layer>,
        desired: &std::collections::HashSet<ResourceId>,
    ) -> bool {
        if only.is_some_and(|o| o != spec.layer) {
            return false;
        }
        !desired.contains(&spec.id) || self.config.providers.get(spec.layer) != spec.provider
    }

    /// Every resource of the twin with its status as found in the cloud.
    pub async fn info(&self) -> Result<Vec<InfoRow>, EngineError> {
        let layers = self.layers(None);
        let peeked = peek_state(&self.config)?;
        self.check_scopes(&peeked, &self.state_path())?;
        let recorded = peeked.resources;
        let mut specs = self.desired(&layers).await?;
        crate::reference::link(&mut specs, &recorded, true)?;
        let desired_ids: std::collections::HashSet<_> =
            specs.iter().map(|s| s.id.clone()).collect();
        let mut all = index(specs);
        for r in recorded.values() {
            if self.provider(r.spec.provider).is_some() {
                all.entry(r.spec.id.clone())
                    .or_insert_with(|| r.spec.clone());
            }
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
                        // Outputs of what was read stand in for references; one that cannot
                        // be resolved reads as pending, so as drift.
                        let deps = run.deps(s);
                        let d = match crate::reference::resolve(s, &deps, false) {
                            Ok(r) => o.drift(&r.desired),
                            Err(_) => o.drift(&s.desired),
                        };
                        if d.is_empty() {
                            InfoStatus::Ok
                        } else {
                            InfoStatus::Drifted(d)
                        }
                    }
                    // A pending record whose create never reached the cloud is not missing:
                    // it was never there.
                    (None, _)
                        if recorded
                            .get(&s.id)
                            .is_some_and(|r| r.status == RecordStatus::Created) =>
                    {
                        InfoStatus::Missing
                    }
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
                let spec = run.resolved(run.spec(&id)?, false)?;
                let driver = run.driver(&spec)?;
                let current = run.read(&spec, &driver).await?;
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

    /// The spec with its output references resolved from its dependencies (see
    /// [`crate::reference::resolve`]).
    fn resolved<'a>(
        &self,
        spec: &'a ResourceSpec,
        strict: bool,
    ) -> Result<std::borrow::Cow<'a, ResourceSpec>, NodeError> {
        crate::reference::resolve(spec, &self.deps(spec), strict)
            .map_err(|e| self.failure(spec, Action::Read, 0, e))
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
        // Dependencies are converged first, so when applying every reference resolves.
        let spec = self.resolved(self.spec(id)?, self.apply)?;
        let spec = &*spec;
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
        if let Some(cur) = &current {
            self.check_owned(spec, cur, Action::Update)?;
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
        // Recorded as done only when it reads back complete: a create retried after a lost
        // response may have found a resource whose later steps (a rule's target, a role's
        // policy) never ran; an update finishes them.
        let observed = self.complete(spec, &driver, &deps, observed).await?;
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

    /// Fails when a resource found under the twin's name is someone else's (its mark says so and
    /// the state does not record this very resource).
    fn check_owned(
        &self,
        spec: &ResourceSpec,
        cur: &Observed,
        action: Action,
    ) -> Result<(), NodeError> {
        match self.foreign(spec, cur) {
            None => Ok(()),
            Some(reason) => Err(self.failure(
                spec,
                action,
                1,
                CloudError::fatal(
                    "NotManaged",
                    format!(
                        "{} exists, not managed by twin {}: {reason}",
                        spec.label(),
                        self.twin
                    ),
                )
                .with_hint(
                    "deployer never adopts what it did not create; remove or rename that resource, or choose another twin name",
                ),
            )),
        }
    }

    /// Why `cur` is not this twin's, if it is not.
    fn foreign(&self, spec: &ResourceSpec, cur: &Observed) -> Option<String> {
        if let Some(r) = self.recorded.get(&spec.id) {
            let same_id = r
                .observed
                .as_ref()
                .is_some_and(|o| !o.cloud_id.is_empty() && o.cloud_id == cur.cloud_id);
            // A pending record is a create this twin sent whose answer was never recorded (a
            // crash between the create and its tagging step): what is found is what it made.
            if same_id || r.status == RecordStatus::Pending {
                return None;
            }
        }
        cur.owner.foreign_to(&self.twin, None)
    }

    /// Re-reads after a write until the resource matches its desired settings, updating what
    /// is still missing a few times before giving up with the keys that would not converge.
    async fn complete(
        &self,
        spec: &ResourceSpec,
        driver: &Arc<dyn ResourceDriver>,
        deps: &Outputs,
        mut observed: Observed,
    ) -> Result<Observed, NodeError> {
        const ROUNDS: u32 = 3;
        for round in 1..=ROUNDS {
            let mut drift = observed.drift(&spec.desired);
            // Ours (checked before) but not marked so: the tagging step never ran.
            if observed.owner.foreign_to(&self.twin, None).is_some() {
                drift.push("owner tag".into());
            }
            if drift.is_empty() {
                return Ok(observed);
            }
            if round == ROUNDS {
                return Err(self.failure(
                    spec,
                    Action::Update,
                    round,
                    CloudError::fatal(
                        "DidNotConverge",
                        format!(
                            "{} still differs in {} after {} updates",
                            spec.label(),
                            drift.join(", "),
                            ROUNDS - 1
                        ),
                    )
                    .with_hint("the cloud does not keep these settings; check for a policy or automation that changes them"),
                ));
            }
            let cur = observed.clone();
            self.record(spec, RecordStatus::Pending, Some(cur.clone()))?;
            observed = self
                .retried(spec, Action::Update, |_| driver.update(spec, &cur, deps))
                .await?;
        }
        Ok(observed)
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
        let current = match current {
            Some(cur) if self.foreign(spec, &cur).is_some() => {
                // Someone else's resource under the twin's name: left alone, and forgotten.
                let reason = self.foreign(spec, &cur).unwrap_or_default();
                self.events.emit(Event::Skipped {
                    id: id.clone(),
                    label: spec.label(),
                    reason: format!("left alone: not this twin's ({reason})"),
                });
                lock(&self.report).foreign += 1;
                None
            }
            other => other,
        };
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

/// The recorded state, read without taking the lock (plan and info only look).
fn peek_state(config: &TwinConfig) -> Result<StateFile, EngineError> {
    StateFile::peek(&config.dir, &config.twin.digital_twin_name)
}

/// A scope in words: `account 123456789012, partition aws, region eu-west-1`.
fn scope_text(scope: &crate::state::Scope) -> String {
    scope
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}
