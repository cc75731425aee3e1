//! The custom handler: one HTTP server that runs every function of the twin's Function App.
//!
//! The Functions host starts the binary, waits for it to listen on
//! `127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT`, and POSTs each invocation to `/<function>` with
//! the trigger's value in `Data` ([`payload`]). The handler answers in the custom handler
//! response shape; a non-2xx answer fails the invocation.
//!
//! - `dispatcher` (Event Grid): IoT Hub telemetry ([`event_grid`]) → dispatcher → processor →
//!   persister in this one request ([`in_process`]). A storage failure answers non-2xx, so Event
//!   Grid redelivers; a dropped message answers 2xx (logged), so it is not redelivered forever.
//! - `processor`, `persister` (HTTP): the same payloads as on AWS; the answer's `res` says what
//!   happened (200, 400 for a body that is not JSON, 503/500 for a storage failure).
//! - `hot-reader` (HTTP GET): the query string → `twin_functions::hot_reader`, its answer → `res`.
//! - the movers (timer): one run each, counts in `Logs`; an error fails the invocation.
//! - `ingress-cold` (HTTP POST, anonymous): the hot → cold boundary's receiver. The signature,
//!   timestamp and nonce are checked first (`twin_functions::boundary::verify`: a refusal is
//!   401 with its reason and touches nothing, not even the nonce ledger), then the one object
//!   operation is applied to the cold container, tier Cool, as the in-cloud mover writes it.
//!
//! [`Handler::new`] takes its stores from the caller, so tests hand it emulator clients
//! ([`Stores::prebuilt`]); the deployed binary goes through [`startup::run_from_environment`],
//! which always builds them from the settings with the managed identity.

pub mod event_grid;
pub mod http_trigger;
pub mod in_process;
pub mod own_processors;
pub mod payload;
pub mod server;
pub mod startup;
pub mod stores;

use crate::app::settings::HandlerSettings;
use crate::app::AppFunction;
use crate::blob_nonce_ledger::BlobNonceLedger;
use crate::BlobObjectStore;
use in_process::{AppPersister, AppProcessor, InProcessInvoker, InProcessTarget};
use payload::{collecting_logs, failure_status, http_output, log_line, HandlerResponse};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use stores::HotHandle;
use twin_functions::boundary::{IngressReply, ObjectIngress, ReceiverPolicy, DEFAULT_WINDOW_SECS};
use twin_functions::catalogue::DeviceCatalogue;
use twin_functions::cold_to_archive::ColdToArchiveMover;
use twin_functions::dispatcher::{DispatchOutcome, Dispatcher};
use twin_functions::event_evaluator::EventEvaluator;
use twin_functions::hot_reader::{answer, bad_request, parse_request, HotReader, RequestShape};
use twin_functions::hot_to_cold::HotToColdMover;
use twin_functions::mover_error::MoverError;
use twin_functions::mover_event::requested_cutoff;
use twin_functions::persister::PersistOutcome;
use twin_functions::processor::{ProcessOutcome, Processor};
use twin_functions::{CloudError, SystemClock, Timestamp};

pub use startup::{run_from_environment, StartError};
pub use stores::Stores;

/// Every function of one Function App, ready to be invoked.
pub struct Handler {
    functions: BTreeSet<AppFunction>,
    dispatcher: Option<Dispatcher<InProcessInvoker>>,
    processor: Option<Arc<AppProcessor>>,
    /// Each device's own processor (its crate's logic run by a child), by crate name.
    own_processors: BTreeMap<String, Arc<AppProcessor>>,
    catalogue: Option<DeviceCatalogue>,
    persister: Option<Arc<AppPersister>>,
    hot_reader: Option<HotReader<HotHandle>>,
    hot_to_cold: Option<HotToColdMover<HotHandle, BlobObjectStore, SystemClock>>,
    cold_to_archive: Option<ColdToArchiveMover<BlobObjectStore, SystemClock>>,
    ingress_cold: Option<ColdIngress>,
}

/// The cold ingress's parts: what it accepts, its ledger, the store it writes.
struct ColdIngress {
    /// `None` until the deployer has written the boundary secret: every request then gets 503.
    policy: Option<ReceiverPolicy>,
    ledger: BlobNonceLedger,
    store: BlobObjectStore,
    bucket: String,
}

fn inconsistent(what: String) -> StartError {
    StartError::Inconsistent(what)
}

impl Handler {
    /// The handler for `functions` (and what they run in process), with `settings` read for
    /// them, the package's `catalogue` (needed by the dispatcher and processor), `stores`, and
    /// the package unpacked at `app_root` (where the devices' own processor binaries are).
    pub fn new(
        functions: &[AppFunction],
        settings: &HandlerSettings,
        catalogue: Option<DeviceCatalogue>,
        stores: Stores,
        app_root: &Path,
    ) -> Result<Self, StartError> {
        let exposed: BTreeSet<AppFunction> = functions.iter().copied().collect();
        let mut all = exposed.clone();
        for f in functions {
            all.extend(f.runs_in_process().iter().copied());
        }
        let hot = || {
            stores.hot.clone().ok_or_else(|| {
                inconsistent("a function uses the hot container but no hot store was given".into())
            })
        };
        let objects = || {
            stores.objects.clone().ok_or_else(|| {
                inconsistent("a mover uses blob storage but no blob store was given".into())
            })
        };
        let missing = |f: AppFunction| inconsistent(format!("no settings were read for {f}"));
        let needs_catalogue =
            all.contains(&AppFunction::Dispatcher) || all.contains(&AppFunction::Processor);
        let catalogue = match catalogue {
            Some(c) => Some(c),
            None if needs_catalogue => return Err(StartError::NoCatalogue),
            None => None,
        };
        // Crate name → the devices naming it.
        let mut own: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        if let Some(c) = &catalogue {
            for (device, entry) in &c.devices {
                if let Some(p) = entry
                    .processor
                    .as_deref()
                    .filter(|p| *p != c.shared_processor)
                {
                    own.entry(p.to_string()).or_default().insert(device.clone());
                }
            }
        }

        let persister = match all.contains(&AppFunction::Persister) {
            true => {
                let s = settings
                    .persister
                    .as_ref()
                    .ok_or_else(|| missing(AppFunction::Persister))?;
                let events = match (&s.event_rules[..], &stores.credential) {
                    ([], _) => None,
                    (_, None) => return Err(inconsistent(
                        "the twin has event rules but no credential was given for their actions"
                            .into(),
                    )),
                    (rules, Some(credential)) => {
                        let mut sink = crate::AzureActionSink::new(
                            s.common.twin_name.clone(),
                            rules,
                            app_root,
                            credential.clone(),
                        );
                        for rule in rules {
                            if let twin_events::Action::Function { function_name, .. } =
                                &rule.action
                            {
                                let exe = crate::azure_action_sink::event_executable_in(
                                    app_root,
                                    function_name,
                                );
                                if !exe.is_file() {
                                    return Err(StartError::EventFunctionMissing {
                                        crate_name: function_name.clone(),
                                        rule: rule.key.clone(),
                                        path: exe.display().to_string(),
                                    });
                                }
                            }
                        }
                        if let Some(host) = &settings.iothub_hostname {
                            sink = sink.with_feedback(host.clone());
                        }
                        if let Some(endpoint) = &settings.event_topic_endpoint {
                            sink = sink.with_notifications(endpoint.clone());
                        }
                        Some(EventEvaluator::new(rules.to_vec(), hot()?, sink))
                    }
                };
                Some(Arc::new(AppPersister::new(
                    crate::adt_twin::TwinPatchingStore::new(hot()?, stores.twin.clone()),
                    hot()?,
                    events,
                )))
            }
            false => None,
        };
        let processor = match (
            &persister,
            &catalogue,
            all.contains(&AppFunction::Processor),
        ) {
            (Some(persister), Some(catalogue), true) => {
                let s = settings
                    .processor
                    .as_ref()
                    .ok_or_else(|| missing(AppFunction::Processor))?;
                let invoker = InProcessInvoker::new().with(
                    s.persister_function.clone(),
                    InProcessTarget::Persister(persister.clone()),
                );
                Some((
                    Arc::new(Processor::new(
                        s,
                        catalogue.clone(),
                        invoker.clone(),
                        SystemClock,
                    )),
                    (s, invoker),
                ))
            }
            (_, _, true) => return Err(missing(AppFunction::Processor)),
            _ => None,
        };
        let mut own_processors = BTreeMap::new();
        if let (Some((_, (s, invoker))), Some(catalogue)) = (&processor, &catalogue) {
            for (crate_name, devices) in own {
                let executable = own_processors::executable_in(app_root, &crate_name);
                if !executable.is_file() {
                    return Err(StartError::OwnProcessorMissing {
                        crate_name,
                        devices: devices.into_iter().collect(),
                        path: executable.display().to_string(),
                    });
                }
                let logic = own_processors::ChildLogic::new(crate_name.clone(), executable);
                let p = Processor::new(s, catalogue.clone(), invoker.clone(), SystemClock)
                    .with_logic(Arc::new(logic))
                    .serving(devices);
                own_processors.insert(crate_name, Arc::new(p));
            }
        }
        let processor = processor.map(|(p, _)| p);
        let dispatcher = match (
            &processor,
            &catalogue,
            all.contains(&AppFunction::Dispatcher),
        ) {
            (Some(processor), Some(catalogue), true) => {
                let s = settings
                    .dispatcher
                    .as_ref()
                    .ok_or_else(|| missing(AppFunction::Dispatcher))?;
                let mut invoker = InProcessInvoker::new().with(
                    catalogue.shared_processor.clone(),
                    InProcessTarget::Processor(processor.clone()),
                );
                for (crate_name, p) in &own_processors {
                    invoker =
                        invoker.with(crate_name.clone(), InProcessTarget::Processor(p.clone()));
                }
                Some(Dispatcher::new(s, catalogue.clone(), invoker))
            }
            (_, _, true) => return Err(missing(AppFunction::Dispatcher)),
            _ => None,
        };
        let hot_reader = match &settings.hot_reader {
            Some(s) if all.contains(&AppFunction::HotReader) => {
                Some(HotReader::new(hot()?, s.max_response_bytes))
            }
            _ if all.contains(&AppFunction::HotReader) => {
                return Err(missing(AppFunction::HotReader))
            }
            _ => None,
        };
        let hot_to_cold = match &settings.hot_to_cold {
            Some(s) if all.contains(&AppFunction::HotToColdMover) => {
                Some(HotToColdMover::new(s, hot()?, objects()?, SystemClock))
            }
            _ if all.contains(&AppFunction::HotToColdMover) => {
                return Err(missing(AppFunction::HotToColdMover))
            }
            _ => None,
        };
        let cold_to_archive = match &settings.cold_to_archive {
            Some(s) if all.contains(&AppFunction::ColdToArchiveMover) => {
                Some(ColdToArchiveMover::new(s, objects()?, SystemClock))
            }
            _ if all.contains(&AppFunction::ColdToArchiveMover) => {
                return Err(missing(AppFunction::ColdToArchiveMover))
            }
            _ => None,
        };
        let ingress_cold = match &settings.ingress_cold {
            Some(s) if all.contains(&AppFunction::IngressCold) => {
                let store = objects()?;
                Some(ColdIngress {
                    policy: s.accepted().map(|secrets| ReceiverPolicy {
                        hop: crate::app::settings::INGRESS_COLD_HOP.into(),
                        secrets,
                        window_secs: DEFAULT_WINDOW_SECS,
                    }),
                    ledger: BlobNonceLedger::new(store.clone(), s.nonce_container.clone()),
                    store,
                    bucket: s.cold_bucket.clone(),
                })
            }
            _ if all.contains(&AppFunction::IngressCold) => {
                return Err(missing(AppFunction::IngressCold))
            }
            _ => None,
        };
        Ok(Self {
            functions: exposed,
            dispatcher,
            processor,
            own_processors,
            catalogue,
            persister,
            hot_reader,
            hot_to_cold,
            cold_to_archive,
            ingress_cold,
        })
    }

    /// The processor serving the device of `event`: its own crate's, else the shared one.
    fn processor_for(&self, event: &Value) -> Option<&Arc<AppProcessor>> {
        let own = event
            .get(twin_functions::record::FIELD_DEVICE_ID)
            .and_then(Value::as_str)
            .and_then(|d| self.catalogue.as_ref()?.device(d))
            .and_then(|d| d.processor.as_deref())
            .and_then(|p| self.own_processors.get(p));
        own.or(self.processor.as_ref())
    }

    /// The functions this handler answers for, in order.
    pub fn functions(&self) -> Vec<AppFunction> {
        self.functions.iter().copied().collect()
    }

    /// Runs one invocation the host POSTed to `path` (`/<function>`) with `body`; the answer is
    /// always in the custom handler response shape, with the invocation's `Logs`.
    pub async fn invoke(&self, path: &str, body: &[u8], invocation_id: &str) -> HandlerResponse {
        let name = path.trim_matches('/');
        let span =
            tracing::info_span!("invocation", function = %name, invocation_id = %invocation_id);
        let ((status, outputs), logs) = collecting_logs(tracing::Instrument::instrument(
            self.route(name, body, invocation_id),
            span,
        ))
        .await;
        HandlerResponse::new(status, outputs, logs)
    }

    async fn route(
        &self,
        name: &str,
        body: &[u8],
        invocation_id: &str,
    ) -> (u16, Map<String, Value>) {
        let Some(function) = AppFunction::from_name(name).filter(|f| self.functions.contains(f))
        else {
            let held: Vec<&str> = self.functions.iter().map(|f| f.name()).collect();
            log_line(format!(
                "no function `{name}` in this Function App (it holds {})",
                held.join(", ")
            ));
            return (404, Map::new());
        };
        let trigger = match payload::trigger_value(body, function.trigger_binding()) {
            Ok(t) => t,
            Err(why) => {
                log_line(format!("{function}: {why}"));
                return (400, Map::new());
            }
        };
        match function {
            AppFunction::Dispatcher => (self.dispatch(trigger, invocation_id).await, Map::new()),
            AppFunction::Processor | AppFunction::Persister => {
                self.http_function(function, trigger, invocation_id).await
            }
            AppFunction::HotReader => self.hot_read(trigger).await,
            AppFunction::HotToColdMover | AppFunction::ColdToArchiveMover => {
                (self.run_mover(function, trigger).await, Map::new())
            }
            AppFunction::IngressCold => self.ingress(trigger).await,
        }
    }

    /// Deletes the cold ingress's nonces whose window has passed (the daily archive run does it:
    /// Blob Storage has no per-blob expiry). A failure is logged and left to the next run; the
    /// archive run's own outcome does not depend on it.
    async fn prune_nonces(&self) {
        let Some(ingress) = &self.ingress_cold else {
            return;
        };
        match ingress
            .ledger
            .prune_expired(Timestamp::now().millis() / 1000)
            .await
        {
            Ok(p) => log_line(format!(
                "ingress-cold: {} expired nonces deleted, {} still in their window",
                p.deleted, p.kept
            )),
            Err(e) => log_line(format!(
                "ingress-cold: expired nonces not pruned, the next run tries again: {e}"
            )),
        }
    }

    /// The cold ingress: the request's own headers and body bytes to `ObjectIngress`, its
    /// answer to `res`. The invocation itself succeeds (200 to the host) whatever the answer, so
    /// the host hands the sender the ingress's status (401, 503, ...) and reason.
    async fn ingress(&self, trigger: Value) -> (u16, Map<String, Value>) {
        let Some(ingress) = &self.ingress_cold else {
            return (404, Map::new());
        };
        let mut outputs = Map::new();
        let reply = match (
            http_trigger::HttpTriggerRequest::parse(&trigger),
            &ingress.policy,
        ) {
            (Err(why), _) => IngressReply {
                status: 400,
                body: json!({"error": "bad_request", "reason": why}),
            },
            // Between the package's start and the deployer's secret sync: a transient refusal
            // the sender retries, before anything of the request is looked at.
            (Ok(_), None) => IngressReply {
                status: 503,
                body: json!({"error": "not_ready", "reason": "secret_not_set"}),
            },
            (Ok(req), Some(policy)) => {
                let body = req.body.clone().unwrap_or_default().into_bytes();
                let object_ingress = ObjectIngress {
                    policy,
                    ledger: &ingress.ledger,
                    store: &ingress.store,
                    bucket: &ingress.bucket,
                };
                object_ingress
                    .handle(&req.headers, &body, Timestamp::now().millis() / 1000)
                    .await
            }
        };
        // The reason codes only: the ingress never echoes a request or a secret.
        log_line(format!(
            "ingress-cold: {} {}",
            reply.status,
            reply
                .body
                .get("reason")
                .or_else(|| reply.body.get("code"))
                .and_then(Value::as_str)
                .unwrap_or("ok")
        ));
        outputs.insert(
            crate::app::HTTP_OUTPUT_BINDING.into(),
            http_output(reply.status, Map::new(), reply.body.to_string()),
        );
        (200, outputs)
    }

    async fn dispatch(&self, trigger: Value, invocation_id: &str) -> u16 {
        let Some(dispatcher) = &self.dispatcher else {
            return 404;
        };
        let mut status = 200;
        for event in event_grid::events(trigger) {
            let telemetry = match event_grid::telemetry(&event) {
                Ok(t) => t,
                Err(drop) => {
                    tracing::warn!(
                        function = "dispatcher",
                        reason = drop.code(),
                        "message dropped: {drop}"
                    );
                    log_line(format!(
                        "dispatcher: event dropped ({}): {drop}",
                        drop.code()
                    ));
                    continue;
                }
            };
            // The event's id stays the same on every redelivery, so it follows the message.
            let event_id = match telemetry.event_id.as_str() {
                "" => invocation_id.to_string(),
                id => id.to_string(),
            };
            match dispatcher.handle(telemetry.message, &event_id).await {
                Ok(DispatchOutcome::Forwarded { device_id, .. }) => log_line(format!(
                    "dispatcher: event {event_id} of {device_id} processed"
                )),
                Ok(DispatchOutcome::Dropped(reason)) => log_line(format!(
                    "dispatcher: event {event_id} from {} dropped ({}): {reason}",
                    telemetry.connection_device_id,
                    reason.code()
                )),
                Err(e) => {
                    log_line(format!(
                        "dispatcher: event {event_id} failed, Event Grid redelivers it: {e}"
                    ));
                    status = status.max(failure_status(e.is_retryable()));
                }
            }
        }
        status
    }

    async fn http_function(
        &self,
        function: AppFunction,
        trigger: Value,
        invocation_id: &str,
    ) -> (u16, Map<String, Value>) {
        let res = |status: u16, body: Value| {
            let mut outputs = Map::new();
            outputs.insert(
                crate::app::HTTP_OUTPUT_BINDING.into(),
                http_output(status, Map::new(), body.to_string()),
            );
            (200, outputs)
        };
        let event =
            match http_trigger::HttpTriggerRequest::parse(&trigger).and_then(|r| r.json_body()) {
                Ok(e) => e,
                Err(why) => {
                    log_line(format!("{function}: bad request: {why}"));
                    return res(400, json!({"error": why}));
                }
            };
        let outcome: Result<Value, CloudError> = match function {
            AppFunction::Processor => match self.processor_for(&event) {
                Some(p) => p.handle(event, invocation_id).await.map(|o| match o {
                    ProcessOutcome::Persisting(record) => {
                        json!({"outcome": "persisting", "record": record})
                    }
                    ProcessOutcome::Dropped(r) => json!({"outcome": "dropped", "reason": r.code()}),
                }),
                None => return (404, Map::new()),
            },
            _ => match &self.persister {
                Some(p) => p.handle(event, invocation_id).await.map(|o| match o {
                    PersistOutcome::Stored(item) => json!({"outcome": "stored",
                        "iotDeviceId": item.device_id, "id": item.id.canonical()}),
                    PersistOutcome::Dropped(r) => json!({"outcome": "dropped", "reason": r.code()}),
                }),
                None => return (404, Map::new()),
            },
        };
        match outcome {
            Ok(body) => {
                log_line(format!(
                    "{function}: {}",
                    body["outcome"].as_str().unwrap_or_default()
                ));
                res(200, body)
            }
            Err(e) => {
                log_line(format!("{function}: failed: {e}"));
                res(
                    failure_status(e.is_retryable()),
                    json!({"error": e.to_string(), "code": e.code}),
                )
            }
        }
    }

    async fn hot_read(&self, trigger: Value) -> (u16, Map<String, Value>) {
        let Some(reader) = &self.hot_reader else {
            return (404, Map::new());
        };
        let mut outputs = Map::new();
        let mut put = |res: Value| {
            outputs.insert(crate::app::HTTP_OUTPUT_BINDING.into(), res);
        };
        let event = match http_trigger::HttpTriggerRequest::parse(&trigger) {
            Ok(r) => r.hot_reader_event(),
            Err(why) => {
                log_line(format!("hot-reader: bad request: {why}"));
                put(http_output(
                    400,
                    Map::new(),
                    json!({"error": why}).to_string(),
                ));
                return (200, outputs);
            }
        };
        let answer = match parse_request(&event) {
            Err((shape, bad)) => {
                log_line(format!("hot-reader: bad request: {bad}"));
                bad_request(shape, &bad)
            }
            Ok((_, request)) => match reader.read(&request).await {
                Ok(page) => {
                    log_line(format!(
                        "hot-reader: {} records of {}{}",
                        page.items.len(),
                        request.device_id,
                        if page.next_token.is_some() {
                            " (more follow)"
                        } else {
                            ""
                        }
                    ));
                    answer(RequestShape::Http, page)
                }
                Err(e) => {
                    log_line(format!("hot-reader: failed: {e}"));
                    http_output(
                        failure_status(e.is_retryable()),
                        Map::new(),
                        json!({"error": e.to_string(), "code": e.code}).to_string(),
                    )
                }
            },
        };
        put(answer);
        (200, outputs)
    }

    async fn run_mover(&self, function: AppFunction, trigger: Value) -> u16 {
        // The schedule sends the timer's status; a manual run may send `{"cutoff": ...}`.
        let cutoff = match requested_cutoff(&payload::unwrap_json(trigger)) {
            Ok(c) => c,
            Err(e) => {
                log_line(format!("{function}: {e}"));
                return 400;
            }
        };
        let report = match function {
            AppFunction::HotToColdMover => match &self.hot_to_cold {
                Some(m) => m.run_until(cutoff).await.map(|r| {
                    match &r.lease_held {
                        Some(held) => format!("{function}: another run holds the lease, nothing done: {held}"),
                        None => format!(
                            "{function}: {} records of {} devices moved to cold in {} objects ({} bytes), {} already there",
                            r.records_moved, r.devices, r.objects_written, r.bytes_written, r.records_already_in_cold
                        ),
                    }
                }),
                None => return 404,
            },
            _ => match &self.cold_to_archive {
                Some(m) => m.run_until(cutoff).await.map(|r| {
                    match &r.lease_held {
                        Some(held) => format!("{function}: another run holds the lease, nothing done: {held}"),
                        None => format!(
                            "{function}: {} objects archived ({} bytes), {} kept, {} not ours",
                            r.objects_archived, r.bytes_archived, r.objects_kept, r.objects_foreign
                        ),
                    }
                }),
                None => return 404,
            },
        };
        if function == AppFunction::ColdToArchiveMover {
            self.prune_nonces().await;
        }
        match report {
            Ok(line) => {
                log_line(line);
                200
            }
            Err(e) => {
                log_line(format!("{function}: failed, the next run continues: {e}"));
                let retryable = matches!(&e, MoverError::Cloud(c) if c.is_retryable());
                failure_status(retryable)
            }
        }
    }
}
