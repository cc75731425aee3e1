//! Each function's settings, read from the environment once at cold start. Every missing or
//! invalid variable is reported in one error, so one redeploy fixes them all.

use crate::catalogue::CatalogueLocation;
use crate::env_vars::*;
use std::fmt;

/// The hot reader's default response cap: below Lambda's 6 MB synchronous response limit with
/// room for the HTTP envelope and JSON string escaping.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 4_000_000;
/// The largest accepted `MAX_RESPONSE_BYTES`.
pub const MAX_MAX_RESPONSE_BYTES: usize = 6_000_000;

/// A function that cannot start because of its environment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the {function} function cannot start: {}. The deployer sets these variables: run `deployer deploy` (or `deployer lambda_update {function}`) to restore them",
    .problems.join("; ")
)]
pub struct SettingsError {
    /// The function's local name, e.g. `hot-reader`.
    pub function: &'static str,
    /// One entry per missing or invalid variable.
    pub problems: Vec<String>,
}

/// Log verbosity (config.json `mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Debug logs on.
    Debug,
    /// Info and above.
    Info,
}

impl LogLevel {
    /// Reads `LOG_LEVEL`'s value (case-insensitive); `None` for anything else.
    pub fn parse(value: &str) -> Option<Self> {
        match value.trim().to_ascii_uppercase().as_str() {
            "DEBUG" => Some(LogLevel::Debug),
            "INFO" => Some(LogLevel::Info),
            _ => None,
        }
    }
}

/// Collects variables and problems; [`EnvReader::finish`] turns the problems into one error.
pub struct EnvReader<'a> {
    function: &'static str,
    lookup: &'a dyn Fn(&str) -> Option<String>,
    missing: Vec<&'static str>,
    invalid: Vec<String>,
}

impl<'a> EnvReader<'a> {
    /// A reader for `function` over `lookup` (`std::env::var` in production).
    pub fn new(function: &'static str, lookup: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Self {
            function,
            lookup,
            missing: Vec::new(),
            invalid: Vec::new(),
        }
    }

    /// A variable that must be set and non-blank.
    pub fn required(&mut self, name: &'static str) -> String {
        match self.optional(name) {
            Some(v) => v,
            None => {
                self.missing.push(name);
                String::new()
            }
        }
    }

    /// A variable that may be absent; blank counts as absent.
    pub fn optional(&mut self, name: &'static str) -> Option<String> {
        (self.lookup)(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    /// A required variable parsed by `parse`; `expected` says what a valid value looks like.
    pub fn parsed<T>(
        &mut self,
        name: &'static str,
        expected: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Option<T> {
        let raw = (self.lookup)(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty());
        match raw {
            None => {
                self.missing.push(name);
                None
            }
            Some(raw) => self.check(name, &raw, expected, parse),
        }
    }

    /// An optional variable parsed by `parse`.
    pub fn parsed_optional<T>(
        &mut self,
        name: &'static str,
        expected: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Option<T> {
        let raw = self.optional(name)?;
        self.check(name, &raw, expected, parse)
    }

    /// Records a problem found by the caller (e.g. two variables that only make sense together).
    pub fn invalid(&mut self, problem: String) {
        self.invalid.push(problem);
    }

    fn check<T>(
        &mut self,
        name: &'static str,
        raw: &str,
        expected: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Option<T> {
        let parsed = parse(raw);
        if parsed.is_none() {
            let mut shown: String = raw.chars().take(60).collect();
            if shown.len() < raw.len() {
                shown.push('…');
            }
            self.invalid
                .push(format!("{name}={shown:?} is not {expected}"));
        }
        parsed
    }

    /// The movers' optional `MOVER_LEASE_SECONDS` (60..=86400), defaulted.
    pub fn lease_seconds(&mut self) -> u32 {
        self.parsed_optional(
            MOVER_LEASE_SECONDS,
            "a number of seconds between 60 and 86400",
            |raw| {
                raw.parse::<u32>()
                    .ok()
                    .filter(|s| (60..=86_400).contains(s))
            },
        )
        .unwrap_or(crate::lease::DEFAULT_LEASE_SECONDS)
    }

    /// `DEVICE_CATALOGUE_BUCKET` and `DEVICE_CATALOGUE_KEY`: where the device catalogue is.
    pub fn catalogue(&mut self) -> CatalogueLocation {
        CatalogueLocation {
            bucket: self.required(DEVICE_CATALOGUE_BUCKET),
            key: self.required(DEVICE_CATALOGUE_KEY),
        }
    }

    /// The common settings every function reads.
    pub fn common(&mut self) -> CommonSettings {
        let twin_name = self.required(TWIN_NAME);
        let log_level = self
            .parsed_optional(LOG_LEVEL, "DEBUG or INFO", LogLevel::parse)
            .unwrap_or(LogLevel::Info);
        CommonSettings {
            twin_name,
            log_level,
        }
    }

    /// `Ok(value)` if nothing was missing or invalid, else the error listing everything.
    pub fn finish<T>(self, value: T) -> Result<T, SettingsError> {
        let mut problems = Vec::new();
        if !self.missing.is_empty() {
            problems.push(format!(
                "missing environment variable(s) {}",
                self.missing.join(", ")
            ));
        }
        problems.extend(self.invalid);
        if problems.is_empty() {
            Ok(value)
        } else {
            Err(SettingsError {
                function: self.function,
                problems,
            })
        }
    }
}

/// What every function reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommonSettings {
    /// `TWIN_NAME`.
    pub twin_name: String,
    /// `LOG_LEVEL`.
    pub log_level: LogLevel,
}

/// The cross-cloud HTTPS ingress of a remote function (SPEC §2).
#[derive(Clone, PartialEq, Eq)]
pub struct RemoteIngress {
    /// HTTPS URL.
    pub url: String,
    /// Bearer token (never printed).
    pub token: String,
}

impl fmt::Debug for RemoteIngress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteIngress")
            .field("url", &self.url)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// Dispatcher settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatcherSettings {
    /// Common settings.
    pub common: CommonSettings,
    /// `DEVICE_CATALOGUE_BUCKET` + `DEVICE_CATALOGUE_KEY`: the configured devices and their
    /// processors, read at cold start.
    pub catalogue: CatalogueLocation,
    /// `REMOTE_PROCESSOR_URL` + `REMOTE_TOKEN`, when L2 is on another cloud.
    pub remote_processor: Option<RemoteIngress>,
}

impl DispatcherSettings {
    /// Reads and checks the dispatcher's environment.
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let mut env = EnvReader::new("dispatcher", lookup);
        let common = env.common();
        let catalogue = env.catalogue();
        let url = env.optional(REMOTE_PROCESSOR_URL);
        let token = env.optional(REMOTE_TOKEN);
        let remote_processor = match (url, token) {
            (None, None) => None,
            (Some(url), Some(token)) => {
                if !url.starts_with("https://") {
                    env.invalid(format!("{REMOTE_PROCESSOR_URL} must be an https:// URL"));
                }
                Some(RemoteIngress { url, token })
            }
            (Some(_), None) => {
                env.invalid(format!(
                    "{REMOTE_PROCESSOR_URL} is set but {REMOTE_TOKEN} is missing"
                ));
                None
            }
            (None, Some(_)) => {
                env.invalid(format!(
                    "{REMOTE_TOKEN} is set but {REMOTE_PROCESSOR_URL} is missing"
                ));
                None
            }
        };
        env.finish(Self {
            common,
            catalogue,
            remote_processor,
        })
    }
}

/// Processor settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessorSettings {
    /// Common settings.
    pub common: CommonSettings,
    /// `DEVICE_ID`: set on a device's own processor, which serves that device only; `None` on
    /// the shared processor.
    pub device_id: Option<String>,
    /// `DEVICE_CATALOGUE_BUCKET` + `DEVICE_CATALOGUE_KEY`: every device's property types.
    pub catalogue: CatalogueLocation,
    /// `PERSISTER_FUNCTION`.
    pub persister_function: String,
}

impl ProcessorSettings {
    /// Reads and checks the processor's environment.
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let mut env = EnvReader::new("processor", lookup);
        let common = env.common();
        let device_id = env.optional(DEVICE_ID);
        let catalogue = env.catalogue();
        let persister_function = env.required(PERSISTER_FUNCTION);
        env.finish(Self {
            common,
            device_id,
            catalogue,
            persister_function,
        })
    }
}

/// Any evaluator type, to reach its (type-independent) `rules_from_json`.
type AnyEvaluator = crate::event_evaluator::EventEvaluator<
    crate::event_evaluator::InMemoryRuleStates,
    crate::event_evaluator::RecordingActions,
>;

/// Persister settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersisterSettings {
    /// Common settings.
    pub common: CommonSettings,
    /// `HOT_TABLE`.
    pub hot_table: String,
    /// `EVENT_RULES`: the twin's event rules; empty when absent.
    pub event_rules: Vec<twin_events::Rule>,
    /// `IOT_DATA_ENDPOINT`: required when a rule sends feedback.
    pub iot_data_endpoint: Option<String>,
    /// `EVENTS_TOPIC_ARN`: required when a rule notifies.
    pub events_topic_arn: Option<String>,
}

impl PersisterSettings {
    /// Reads and checks the persister's environment: the endpoint and topic a rule's actions
    /// need must be there, so a mismatch stops the function at start, not at the first firing.
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let mut env = EnvReader::new("persister", lookup);
        let common = env.common();
        let hot_table = env.required(HOT_TABLE);
        let event_rules = match env.optional(EVENT_RULES) {
            None => Vec::new(),
            Some(raw) => AnyEvaluator::rules_from_json(&raw).unwrap_or_else(|e| {
                env.invalid(format!("{EVENT_RULES}: {e}"));
                Vec::new()
            }),
        };
        let feedback = event_rules.iter().any(|r| r.action.feedback().is_some());
        let notifies = event_rules
            .iter()
            .any(|r| matches!(r.action, twin_events::Action::Notification { .. }));
        let iot_data_endpoint = if feedback {
            Some(env.required(IOT_DATA_ENDPOINT))
        } else {
            env.optional(IOT_DATA_ENDPOINT)
        };
        let events_topic_arn = if notifies {
            Some(env.required(EVENTS_TOPIC_ARN))
        } else {
            env.optional(EVENTS_TOPIC_ARN)
        };
        env.finish(Self {
            common,
            hot_table,
            event_rules,
            iot_data_endpoint,
            events_topic_arn,
        })
    }
}

/// Hot reader settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HotReaderSettings {
    /// Common settings.
    pub common: CommonSettings,
    /// `HOT_TABLE`.
    pub hot_table: String,
    /// `MAX_RESPONSE_BYTES`, defaulted.
    pub max_response_bytes: usize,
}

impl HotReaderSettings {
    /// Reads and checks the hot reader's environment.
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let mut env = EnvReader::new("hot-reader", lookup);
        let common = env.common();
        let hot_table = env.required(HOT_TABLE);
        let expected = format!("a byte count between 1024 and {MAX_MAX_RESPONSE_BYTES}");
        let max_response_bytes = env
            .parsed_optional(MAX_RESPONSE_BYTES, &expected, |raw| {
                raw.parse::<usize>()
                    .ok()
                    .filter(|n| (1024..=MAX_MAX_RESPONSE_BYTES).contains(n))
            })
            .unwrap_or(DEFAULT_MAX_RESPONSE_BYTES);
        env.finish(Self {
            common,
            hot_table,
            max_response_bytes,
        })
    }
}

/// Hot-to-cold mover settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HotToColdSettings {
    /// Common settings.
    pub common: CommonSettings,
    /// `HOT_TABLE`.
    pub hot_table: String,
    /// `COLD_BUCKET`.
    pub cold_bucket: String,
    /// `HOT_STORAGE_DAYS`.
    pub hot_storage_days: u32,
    /// `MOVER_LEASE_SECONDS`, defaulted: how long a run's lease lasts.
    pub lease_seconds: u32,
}

impl HotToColdSettings {
    /// Reads and checks the hot-to-cold mover's environment.
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let mut env = EnvReader::new("hot-to-cold-mover", lookup);
        let common = env.common();
        let hot_table = env.required(HOT_TABLE);
        let cold_bucket = env.required(COLD_BUCKET);
        let hot_storage_days = env
            .parsed(HOT_STORAGE_DAYS, "a whole number of days >= 1", parse_days)
            .unwrap_or(0);
        let lease_seconds = env.lease_seconds();
        env.finish(Self {
            common,
            hot_table,
            cold_bucket,
            hot_storage_days,
            lease_seconds,
        })
    }
}

/// Cold-to-archive mover settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColdToArchiveSettings {
    /// Common settings.
    pub common: CommonSettings,
    /// `COLD_BUCKET`.
    pub cold_bucket: String,
    /// `ARCHIVE_BUCKET`.
    pub archive_bucket: String,
    /// `COLD_STORAGE_DAYS`.
    pub cold_storage_days: u32,
    /// `MOVER_LEASE_SECONDS`, defaulted: how long a run's lease lasts.
    pub lease_seconds: u32,
}

impl ColdToArchiveSettings {
    /// Reads and checks the cold-to-archive mover's environment.
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let mut env = EnvReader::new("cold-to-archive-mover", lookup);
        let common = env.common();
        let cold_bucket = env.required(COLD_BUCKET);
        let archive_bucket = env.required(ARCHIVE_BUCKET);
        let cold_storage_days = env
            .parsed(COLD_STORAGE_DAYS, "a whole number of days >= 1", parse_days)
            .unwrap_or(0);
        let lease_seconds = env.lease_seconds();
        env.finish(Self {
            common,
            cold_bucket,
            archive_bucket,
            cold_storage_days,
            lease_seconds,
        })
    }
}

/// Twin connector settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwinConnectorSettings {
    /// Common settings.
    pub common: CommonSettings,
    /// `HOT_TABLE`.
    pub hot_table: String,
}

impl TwinConnectorSettings {
    /// Reads and checks the twin connector's environment.
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let mut env = EnvReader::new("twin-connector", lookup);
        let common = env.common();
        let hot_table = env.required(HOT_TABLE);
        env.finish(Self { common, hot_table })
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
    fn reports_every_missing_variable_at_once() {
        let e = HotToColdSettings::from_lookup(&env(&[("HOT_STORAGE_DAYS", "soon")])).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("hot-to-cold-mover function cannot start"),
            "{text}"
        );
        assert!(text.contains("TWIN_NAME, HOT_TABLE, COLD_BUCKET"), "{text}");
        assert!(
            text.contains("HOT_STORAGE_DAYS=\"soon\" is not a whole number"),
            "{text}"
        );
    }

    #[test]
    fn persister_needs_the_endpoint_and_topic_its_rules_use() {
        let rules = serde_json::json!([
            {"key": "a", "condition": {"text": "r.s.t > 1", "devices": ["s"]},
             "action": {"type": "mqtt", "iotDeviceId": "s", "payload": "x"}},
            {"key": "b", "condition": {"text": "r.s.t > 1", "devices": ["s"]},
             "action": {"type": "notification", "message": "y"}}
        ])
        .to_string();
        let base = [("TWIN_NAME", "t"), ("HOT_TABLE", "t-hot")];
        let none = PersisterSettings::from_lookup(&env(&base)).unwrap();
        assert!(none.event_rules.is_empty());
        let mut with_rules = base.to_vec();
        with_rules.push(("EVENT_RULES", &rules));
        let text = PersisterSettings::from_lookup(&env(&with_rules))
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("IOT_DATA_ENDPOINT, EVENTS_TOPIC_ARN"),
            "{text}"
        );
        with_rules.push((
            "IOT_DATA_ENDPOINT",
            "https://x-ats.iot.us-east-1.amazonaws.com",
        ));
        with_rules.push(("EVENTS_TOPIC_ARN", "arn:aws:sns:us-east-1:1:t-events"));
        let s = PersisterSettings::from_lookup(&env(&with_rules)).unwrap();
        assert_eq!(s.event_rules.len(), 2);
        let bad = [
            ("TWIN_NAME", "t"),
            ("HOT_TABLE", "t-hot"),
            ("EVENT_RULES", "[{"),
        ];
        let text = PersisterSettings::from_lookup(&env(&bad))
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("EVENT_RULES: the event rules are not valid"),
            "{text}"
        );
    }

    #[test]
    fn reads_a_complete_processor_environment() {
        let s = ProcessorSettings::from_lookup(&env(&[
            ("TWIN_NAME", "twin"),
            ("LOG_LEVEL", "debug"),
            ("DEVICE_CATALOGUE_BUCKET", "b"),
            ("DEVICE_CATALOGUE_KEY", "catalogue/l2/abc.json"),
            ("PERSISTER_FUNCTION", "twin-persister"),
        ]))
        .unwrap();
        assert_eq!(s.common.log_level, LogLevel::Debug);
        assert_eq!(s.device_id, None);
        assert_eq!(s.catalogue.to_string(), "b/catalogue/l2/abc.json");
    }

    #[test]
    fn processor_and_dispatcher_need_the_catalogue() {
        let e = ProcessorSettings::from_lookup(&env(&[
            ("TWIN_NAME", "twin"),
            ("DEVICE_ID", "s-1"),
            ("PERSISTER_FUNCTION", "p"),
        ]))
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("DEVICE_CATALOGUE_BUCKET, DEVICE_CATALOGUE_KEY"),
            "{e}"
        );
        let e = DispatcherSettings::from_lookup(&env(&[("TWIN_NAME", "twin")])).unwrap_err();
        assert!(e.to_string().contains("DEVICE_CATALOGUE_BUCKET"), "{e}");
    }

    #[test]
    fn dispatcher_needs_url_and_token_together_and_hides_the_token() {
        let e = DispatcherSettings::from_lookup(&env(&[
            ("TWIN_NAME", "twin"),
            ("DEVICE_CATALOGUE_BUCKET", "b"),
            ("DEVICE_CATALOGUE_KEY", "k"),
            ("REMOTE_PROCESSOR_URL", "https://x"),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("REMOTE_TOKEN is missing"));
        let s = DispatcherSettings::from_lookup(&env(&[
            ("TWIN_NAME", "twin"),
            ("DEVICE_CATALOGUE_BUCKET", "b"),
            ("DEVICE_CATALOGUE_KEY", "k"),
            ("REMOTE_PROCESSOR_URL", "https://x"),
            ("REMOTE_TOKEN", "s3cret"),
        ]))
        .unwrap();
        assert_eq!(s.catalogue.key, "k");
        assert!(!format!("{s:?}").contains("s3cret"));
    }

    #[test]
    fn movers_default_and_bound_the_lease_duration() {
        let base = [
            ("TWIN_NAME", "t"),
            ("COLD_BUCKET", "c"),
            ("ARCHIVE_BUCKET", "a"),
            ("COLD_STORAGE_DAYS", "90"),
        ];
        let s = ColdToArchiveSettings::from_lookup(&env(&base)).unwrap();
        assert_eq!(s.lease_seconds, crate::lease::DEFAULT_LEASE_SECONDS);
        let mut set = base.to_vec();
        set.push(("MOVER_LEASE_SECONDS", "1200"));
        let s = ColdToArchiveSettings::from_lookup(&env(&set)).unwrap();
        assert_eq!(s.lease_seconds, 1200);
        set.pop();
        set.push(("MOVER_LEASE_SECONDS", "5"));
        let e = ColdToArchiveSettings::from_lookup(&env(&set)).unwrap_err();
        assert!(e.to_string().contains("MOVER_LEASE_SECONDS"), "{e}");
    }

    #[test]
    fn hot_reader_defaults_and_bounds_the_response_cap() {
        let s = HotReaderSettings::from_lookup(&env(&[("TWIN_NAME", "t"), ("HOT_TABLE", "h")]))
            .unwrap();
        assert_eq!(s.max_response_bytes, DEFAULT_MAX_RESPONSE_BYTES);
        let e = HotReaderSettings::from_lookup(&env(&[
            ("TWIN_NAME", "t"),
            ("HOT_TABLE", "h"),
            ("MAX_RESPONSE_BYTES", "7000000"),
        ]));
        assert!(e.is_err());
    }
}
