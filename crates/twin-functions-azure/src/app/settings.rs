//! The app settings of the twin's Function App: their names (the deployer writes them, the
//! handler reads them), which functions need which ([`required_settings`]), and the handler's
//! reading of them ([`HandlerSettings::from_lookup`]), which reports every missing or invalid
//! setting in one error so one redeploy fixes them all.
//!
//! The device catalogue is not a setting: it is `catalogue.json` in the package, so no setting
//! grows with the number of devices.

use super::AppFunction;
use std::collections::BTreeSet;
use twin_functions::boundary::{AcceptedSecrets, BoundarySecret};
use twin_functions::catalogue::CatalogueLocation;
use twin_functions::settings::{
    ColdToArchiveSettings, CommonSettings, DispatcherSettings, EnvReader, HotReaderSettings,
    HotToColdSettings, PersisterSettings, ProcessorSettings, DEFAULT_MAX_RESPONSE_BYTES,
    MAX_MAX_RESPONSE_BYTES,
};

pub use crate::credential::CLIENT_ID_ENV as AZURE_CLIENT_ID;
pub use twin_functions::env_vars::{
    ARCHIVE_BUCKET, COLD_BUCKET, COLD_STORAGE_DAYS, HOT_STORAGE_DAYS, HOT_TABLE, LOG_LEVEL,
    MAX_RESPONSE_BYTES, MOVER_LEASE_SECONDS, TWIN_NAME,
};

/// The Cosmos DB account's document endpoint, as ARM returns it (`documentEndpoint`).
pub const COSMOS_ENDPOINT: &str = "COSMOS_ENDPOINT";
/// The Cosmos DB SQL database holding the hot container.
pub const COSMOS_DATABASE: &str = "COSMOS_DATABASE";
/// The cold/archive storage account's blob endpoint, as ARM returns it (`primaryEndpoints.blob`).
pub const BLOB_ENDPOINT: &str = "BLOB_ENDPOINT";

/// The Azure Digital Twins instance's host name, as ARM returns it (`hostName`); set when L4
/// is on Azure, and the persister then patches the device's twin.
pub const ADT_ENDPOINT: &str = "ADT_ENDPOINT";

/// The hot → cold boundary's current secret (standard base64 of 32 bytes), on the app that
/// receives cold data from another cloud: written by `deployer deploy` (copied from the sending
/// side's secret store) and `deployer rotate-secrets`, never by the settings resource, so its
/// value is in no state file.
pub const INGRESS_COLD_SECRET: &str = "BOUNDARY_SECRET_HOT_TO_COLD";
/// The hot → cold boundary's next secret, set while a rotation is under way (both are accepted).
pub const INGRESS_COLD_SECRET_NEXT: &str = "BOUNDARY_SECRET_HOT_TO_COLD_NEXT";
/// The blob container of the ingress's nonce ledger, in the cold tier's storage account.
pub const BOUNDARY_NONCE_CONTAINER: &str = "BOUNDARY_NONCE_CONTAINER";
/// The hop the cold ingress serves, as signed into every request.
pub const INGRESS_COLD_HOP: &str = "hot-to-cold";
/// The IoT hub's host name, as ARM returns it (`properties.hostName`); set when an event rule
/// sends feedback (a direct method through the hub's service API).
pub const IOTHUB_HOSTNAME: &str = "IOTHUB_HOSTNAME";
/// The twin's Event Grid topic endpoint, as ARM returns it (`properties.endpoint`); set when an
/// event rule notifies.
pub const EVENT_TOPIC_ENDPOINT: &str = "EVENT_TOPIC_ENDPOINT";

pub use twin_functions::env_vars::EVENT_RULES;

/// Where the handler says the catalogue came from (in errors and logs).
pub const PACKAGE_CATALOGUE: &str = "the app package";

/// The settings `functions` need, each once, in a stable order: what the deployer must write and
/// what the handler refuses to start without. Optional settings (`LOG_LEVEL`,
/// `MAX_RESPONSE_BYTES`, `MOVER_LEASE_SECONDS`) are not listed.
pub fn required_settings(functions: &[AppFunction]) -> Vec<&'static str> {
    let mut out = vec![TWIN_NAME];
    let mut add = |names: &[&'static str]| {
        for n in names {
            if !out.contains(n) {
                out.push(n);
            }
        }
    };
    let cosmos = [AZURE_CLIENT_ID, COSMOS_ENDPOINT, COSMOS_DATABASE, HOT_TABLE];
    for f in closure(functions) {
        match f {
            // The catalogue is in the package; what the dispatcher and processor run in
            // process brings its own settings (see `closure`).
            AppFunction::Dispatcher | AppFunction::Processor => {}
            AppFunction::Persister | AppFunction::HotReader => add(&cosmos),
            AppFunction::HotToColdMover => {
                add(&cosmos);
                add(&[BLOB_ENDPOINT, COLD_BUCKET, HOT_STORAGE_DAYS]);
            }
            AppFunction::ColdToArchiveMover => add(&[
                AZURE_CLIENT_ID,
                BLOB_ENDPOINT,
                COLD_BUCKET,
                ARCHIVE_BUCKET,
                COLD_STORAGE_DAYS,
            ]),
            AppFunction::IngressCold => add(&[
                AZURE_CLIENT_ID,
                BLOB_ENDPOINT,
                COLD_BUCKET,
                BOUNDARY_NONCE_CONTAINER,
                INGRESS_COLD_SECRET,
            ]),
        }
    }
    out
}

/// `functions` and what they run in process, sorted.
fn closure(functions: &[AppFunction]) -> BTreeSet<AppFunction> {
    let mut all: BTreeSet<AppFunction> = functions.iter().copied().collect();
    for f in functions {
        all.extend(f.runs_in_process().iter().copied());
    }
    all
}

/// The app cannot start because of its settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the twin's Function App cannot start: {}. The deployer writes these app settings: run `deployer deploy` to restore them",
    .problems.join("; ")
)]
pub struct AppSettingsError {
    /// One entry per missing or invalid setting.
    pub problems: Vec<String>,
}

/// Where the hot container is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosmosLocation {
    /// `COSMOS_ENDPOINT`.
    pub endpoint: String,
    /// `COSMOS_DATABASE`.
    pub database: String,
    /// `HOT_TABLE`: the container.
    pub container: String,
}

/// The cold ingress's settings: the container it writes, its nonce ledger, the secrets it
/// accepts (their `Debug` shows no bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressColdSettings {
    /// `COLD_BUCKET`: the one container the ingress writes.
    pub cold_bucket: String,
    /// `BOUNDARY_NONCE_CONTAINER`.
    pub nonce_container: String,
    /// `BOUNDARY_SECRET_HOT_TO_COLD`; `None` until the deployer has written it.
    pub current: Option<BoundarySecret>,
    /// `BOUNDARY_SECRET_HOT_TO_COLD_NEXT`, during a rotation.
    pub next: Option<BoundarySecret>,
}

impl IngressColdSettings {
    /// The secrets the ingress accepts now; `None` while the current one is not set (the
    /// ingress is not ready: it accepts nothing rather than a lone next secret).
    pub fn accepted(&self) -> Option<AcceptedSecrets> {
        let accepted = AcceptedSecrets::new(self.current.clone()?);
        Some(match &self.next {
            Some(n) => accepted.also(n.clone()),
            None => accepted,
        })
    }
}

/// Everything the handler reads from its app settings, per function present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerSettings {
    /// `TWIN_NAME`, `LOG_LEVEL`.
    pub common: CommonSettings,
    /// `AZURE_CLIENT_ID`, when a function uses storage.
    pub client_id: Option<String>,
    /// The hot container, when a function uses it.
    pub cosmos: Option<CosmosLocation>,
    /// `BLOB_ENDPOINT`, when a mover uses blobs.
    pub blob_endpoint: Option<String>,
    /// `ADT_ENDPOINT`, when L4 is on Azure and the persister is in the app: the persister
    /// then patches the device's twin after each stored record.
    pub adt_endpoint: Option<String>,
    /// `IOTHUB_HOSTNAME`: required when the persister runs and a rule sends feedback.
    pub iothub_hostname: Option<String>,
    /// `EVENT_TOPIC_ENDPOINT`: required when the persister runs and a rule notifies.
    pub event_topic_endpoint: Option<String>,
    /// The dispatcher's settings, when it is in the app.
    pub dispatcher: Option<DispatcherSettings>,
    /// The processor's settings, when it is in the app (or run by the dispatcher).
    pub processor: Option<ProcessorSettings>,
    /// The persister's settings, when it is in the app (or run in process).
    pub persister: Option<PersisterSettings>,
    /// The hot reader's settings.
    pub hot_reader: Option<HotReaderSettings>,
    /// The hot-to-cold mover's settings.
    pub hot_to_cold: Option<HotToColdSettings>,
    /// The cold-to-archive mover's settings.
    pub cold_to_archive: Option<ColdToArchiveSettings>,
    /// The hot → cold boundary's ingress settings.
    pub ingress_cold: Option<IngressColdSettings>,
}

impl HandlerSettings {
    /// Reads the settings `functions` (and what they run in process) need through `lookup`
    /// (`std::env::var` in the app): every missing or invalid setting in one error.
    pub fn from_lookup(
        functions: &[AppFunction],
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, AppSettingsError> {
        let all = closure(functions);
        let needed = required_settings(functions);
        let mut env = EnvReader::new("function-app", lookup);
        let common = env.common();
        let required = |env: &mut EnvReader<'_>, name: &'static str| -> Option<String> {
            needed.contains(&name).then(|| env.required(name))
        };
        let client_id = required(&mut env, AZURE_CLIENT_ID);
        let cosmos_endpoint = required(&mut env, COSMOS_ENDPOINT);
        let database = required(&mut env, COSMOS_DATABASE);
        let hot_table = required(&mut env, HOT_TABLE);
        let blob_endpoint = required(&mut env, BLOB_ENDPOINT);
        let cold_bucket = required(&mut env, COLD_BUCKET);
        let archive_bucket = required(&mut env, ARCHIVE_BUCKET);
        for (name, value) in [
            (COSMOS_ENDPOINT, &cosmos_endpoint),
            (BLOB_ENDPOINT, &blob_endpoint),
        ] {
            if let Some(problem) = value.as_deref().and_then(|v| endpoint_problem(name, v)) {
                env.invalid(problem);
            }
        }
        let days = |env: &mut EnvReader<'_>, name: &'static str| {
            env.parsed(name, "a whole number of days >= 1", parse_days)
                .unwrap_or(0)
        };
        let hot_storage_days = needed
            .contains(&HOT_STORAGE_DAYS)
            .then(|| days(&mut env, HOT_STORAGE_DAYS));
        let cold_storage_days = needed
            .contains(&COLD_STORAGE_DAYS)
            .then(|| days(&mut env, COLD_STORAGE_DAYS));
        let movers = all.contains(&AppFunction::HotToColdMover)
            || all.contains(&AppFunction::ColdToArchiveMover);
        let lease_seconds = movers.then(|| env.lease_seconds());
        let max_response_bytes = all.contains(&AppFunction::HotReader).then(|| {
            let expected = format!("a byte count between 1024 and {MAX_MAX_RESPONSE_BYTES}");
            env.parsed_optional(MAX_RESPONSE_BYTES, &expected, |raw| {
                raw.parse::<usize>()
                    .ok()
                    .filter(|n| (1024..=MAX_MAX_RESPONSE_BYTES).contains(n))
            })
            .unwrap_or(DEFAULT_MAX_RESPONSE_BYTES)
        });
        let nonce_container = required(&mut env, BOUNDARY_NONCE_CONTAINER);
        // The secret is written by the deployer after the package is up (it comes from the
        // sender's store), so an app without it yet starts and its ingress answers 503 until
        // then: the sender retries, nothing is lost. A value that is there must be valid.
        let ingress_cold = needed.contains(&INGRESS_COLD_SECRET).then(|| {
            // A bad value is reported by name only: the error never echoes a secret.
            let mut read = |name: &'static str| match lookup(name)
                .filter(|v| !v.trim().is_empty())
                .map(|v| BoundarySecret::from_encoded(name, &v))
            {
                None => None,
                Some(Ok(secret)) => Some(secret),
                Some(Err(e)) => {
                    env.invalid(e.to_string());
                    None
                }
            };
            let current = read(INGRESS_COLD_SECRET);
            let next = read(INGRESS_COLD_SECRET_NEXT);
            IngressColdSettings {
                cold_bucket: cold_bucket.clone().unwrap_or_default(),
                nonce_container: nonce_container.clone().unwrap_or_default(),
                current,
                next,
            }
        });
        // The event rules (same variable and JSON as the AWS persister's); the hub and topic a
        // rule's actions need must be there, so a mismatch stops the app at start, not at the
        // first firing.
        let persists = all.contains(&AppFunction::Persister);
        let event_rules = match env.optional(EVENT_RULES).filter(|_| persists) {
            None => Vec::new(),
            Some(raw) => twin_functions::event_evaluator::EventEvaluator::<
                twin_functions::event_evaluator::InMemoryRuleStates,
                twin_functions::event_evaluator::RecordingActions,
            >::rules_from_json(&raw)
            .unwrap_or_else(|e| {
                env.invalid(format!("{EVENT_RULES}: {e}"));
                Vec::new()
            }),
        };
        let feedback = event_rules.iter().any(|r| r.action.feedback().is_some());
        let notifies = event_rules
            .iter()
            .any(|r| matches!(r.action, twin_events::Action::Notification { .. }));
        let iothub_hostname = feedback.then(|| env.required(IOTHUB_HOSTNAME));
        let event_topic_endpoint = notifies.then(|| env.required(EVENT_TOPIC_ENDPOINT));
        if let Some(problem) = event_topic_endpoint
            .as_deref()
            .and_then(|v| endpoint_problem(EVENT_TOPIC_ENDPOINT, v))
        {
            env.invalid(problem);
        }
        let catalogue = CatalogueLocation {
            bucket: PACKAGE_CATALOGUE.into(),
            key: super::CATALOGUE_FILE.into(),
        };
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        let has = |f: AppFunction| all.contains(&f);
        let settings = HandlerSettings {
            dispatcher: has(AppFunction::Dispatcher).then(|| DispatcherSettings {
                common: common.clone(),
                catalogue: catalogue.clone(),
                // Cross-cloud forwarding (L2 on another cloud) is not built for Azure yet; the
                // package refuses a dispatcher without its processor.
                remote_processor: None,
            }),
            processor: has(AppFunction::Processor).then(|| ProcessorSettings {
                common: common.clone(),
                device_id: None,
                catalogue: catalogue.clone(),
                persister_function: AppFunction::Persister.name().into(),
            }),
            // The AWS-only endpoint and topic ARN stay empty: the hub and the topic are this
            // struct's `iothub_hostname` and `event_topic_endpoint`.
            persister: has(AppFunction::Persister).then(|| PersisterSettings {
                common: common.clone(),
                hot_table: text(&hot_table),
                event_rules: event_rules.clone(),
                iot_data_endpoint: None,
                events_topic_arn: None,
            }),
            hot_reader: has(AppFunction::HotReader).then(|| HotReaderSettings {
                common: common.clone(),
                hot_table: text(&hot_table),
                max_response_bytes: max_response_bytes.unwrap_or(DEFAULT_MAX_RESPONSE_BYTES),
            }),
            hot_to_cold: has(AppFunction::HotToColdMover).then(|| HotToColdSettings {
                common: common.clone(),
                hot_table: text(&hot_table),
                cold_bucket: text(&cold_bucket),
                hot_storage_days: hot_storage_days.unwrap_or(0),
                lease_seconds: lease_seconds.unwrap_or_default(),
            }),
            cold_to_archive: has(AppFunction::ColdToArchiveMover).then(|| ColdToArchiveSettings {
                common: common.clone(),
                cold_bucket: text(&cold_bucket),
                archive_bucket: text(&archive_bucket),
                cold_storage_days: cold_storage_days.unwrap_or(0),
                lease_seconds: lease_seconds.unwrap_or_default(),
            }),
            ingress_cold,
            cosmos: match (&cosmos_endpoint, &database, &hot_table) {
                (Some(endpoint), Some(database), Some(container)) => Some(CosmosLocation {
                    endpoint: endpoint.clone(),
                    database: database.clone(),
                    container: container.clone(),
                }),
                _ => None,
            },
            blob_endpoint,
            // Optional: without it (L4 elsewhere or off) the persister only writes hot.
            adt_endpoint: has(AppFunction::Persister)
                .then(|| lookup(ADT_ENDPOINT))
                .flatten()
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty()),
            iothub_hostname,
            event_topic_endpoint,
            client_id,
            common,
        };
        env.finish(settings).map_err(|e| AppSettingsError {
            problems: e.problems,
        })
    }
}

/// Why an endpoint setting is unusable: not an absolute URL, or plain http to anything but this
/// machine (the identity's bearer token never travels over plain http; loopback is an emulator).
fn endpoint_problem(name: &str, value: &str) -> Option<String> {
    let Ok(url) = azure_core::http::Url::parse(value) else {
        return Some(format!("{name}={value:?} is not a URL"));
    };
    let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    match url.scheme() {
        "https" => None,
        "http" if loopback => None,
        _ => Some(format!(
            "{name}={value:?} must be an https:// endpoint (as ARM returns it)"
        )),
    }
}

fn parse_days(raw: &str) -> Option<u32> {
    // 100 years is far beyond any retention policy and keeps date arithmetic in range.
    raw.parse::<u32>().ok().filter(|d| (1..=36_500).contains(d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn each_function_needs_its_storage_settings_and_the_dispatcher_its_chain() {
        assert_eq!(
            required_settings(&[AppFunction::Dispatcher]),
            vec![
                TWIN_NAME,
                AZURE_CLIENT_ID,
                COSMOS_ENDPOINT,
                COSMOS_DATABASE,
                HOT_TABLE
            ]
        );
        assert_eq!(
            required_settings(&[AppFunction::ColdToArchiveMover]),
            vec![
                TWIN_NAME,
                AZURE_CLIENT_ID,
                BLOB_ENDPOINT,
                COLD_BUCKET,
                ARCHIVE_BUCKET,
                COLD_STORAGE_DAYS
            ]
        );
        let all = required_settings(&AppFunction::ALL);
        assert_eq!(all.len(), 12, "{all:?}");
        assert!(!all.contains(&LOG_LEVEL) && !all.contains(&MOVER_LEASE_SECONDS));
    }

    #[test]
    fn reports_every_missing_and_invalid_setting_at_once() {
        let e = HandlerSettings::from_lookup(
            &AppFunction::ALL,
            &env(&[
                ("HOT_STORAGE_DAYS", "soon"),
                ("BLOB_ENDPOINT", "http://account.blob.core.windows.net"),
            ]),
        )
        .unwrap_err();
        let text = e.to_string();
        for name in [
            TWIN_NAME,
            AZURE_CLIENT_ID,
            COSMOS_ENDPOINT,
            COSMOS_DATABASE,
            HOT_TABLE,
            COLD_BUCKET,
            ARCHIVE_BUCKET,
            COLD_STORAGE_DAYS,
        ] {
            assert!(text.contains(name), "{name} missing from {text}");
        }
        assert!(text.contains("HOT_STORAGE_DAYS=\"soon\""), "{text}");
        assert!(text.contains("must be an https://"), "{text}");
        assert!(text.contains("deployer deploy"), "{text}");
    }

    #[test]
    fn reads_a_complete_environment_for_the_functions_present() {
        let s = HandlerSettings::from_lookup(
            &[AppFunction::HotReader],
            &env(&[
                ("TWIN_NAME", "t"),
                ("AZURE_CLIENT_ID", "00000000-0000-0000-0000-000000000001"),
                ("COSMOS_ENDPOINT", "https://t.documents.azure.com:443/"),
                ("COSMOS_DATABASE", "twin"),
                ("HOT_TABLE", "hot"),
                ("MAX_RESPONSE_BYTES", "2048"),
            ]),
        )
        .unwrap();
        assert_eq!(s.hot_reader.map(|h| h.max_response_bytes), Some(2048));
        assert_eq!(s.cosmos.map(|c| c.container), Some("hot".into()));
        assert!(s.dispatcher.is_none() && s.hot_to_cold.is_none() && s.blob_endpoint.is_none());
    }

    #[test]
    fn the_twin_endpoint_is_optional_and_only_the_persister_reads_it() {
        let base = [
            ("TWIN_NAME", "t"),
            ("AZURE_CLIENT_ID", "00000000-0000-0000-0000-000000000001"),
            ("COSMOS_ENDPOINT", "https://t.documents.azure.com:443/"),
            ("COSMOS_DATABASE", "twin"),
            ("HOT_TABLE", "hot"),
        ];
        let without = HandlerSettings::from_lookup(&[AppFunction::Persister], &env(&base)).unwrap();
        assert_eq!(without.adt_endpoint, None);
        let mut with = base.to_vec();
        with.push((ADT_ENDPOINT, "t-adt.api.weu.digitaltwins.azure.net"));
        let s = HandlerSettings::from_lookup(&[AppFunction::Persister], &env(&with)).unwrap();
        assert_eq!(
            s.adt_endpoint.as_deref(),
            Some("t-adt.api.weu.digitaltwins.azure.net")
        );
        let reader = HandlerSettings::from_lookup(&[AppFunction::HotReader], &env(&with)).unwrap();
        assert_eq!(reader.adt_endpoint, None);
    }
}
