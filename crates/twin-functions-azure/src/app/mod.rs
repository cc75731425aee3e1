//! The contract between the deployer and the twin's Function App: which functions the app holds
//! ([`AppFunction`]) and how each is triggered, the app settings each needs ([`settings`]), and
//! the zip package the deployer uploads ([`package`]).
//!
//! On Azure every L1–L3 function of a twin runs in one Flex Consumption Function App whose
//! runtime is `custom`: the Functions host starts one Rust binary (the custom handler, see
//! [`crate::handler`]) and POSTs each invocation to `/<function name>` on it.

pub mod package;
pub mod settings;

pub use package::{package, package_hash, PackageError, PackageInput};
pub use settings::required_settings;

/// The name of the handler binary inside the package (`host.json` points at it).
pub const HANDLER_EXECUTABLE: &str = "handler";
/// The device catalogue's file inside the package, next to the binary.
pub const CATALOGUE_FILE: &str = "catalogue.json";
/// The folder of the package holding each device's own processor crate's binary, by crate name.
pub const OWN_PROCESSORS_DIR: &str = "processors";
/// The daily schedule of the hot-to-cold mover: 03:00 UTC (NCRONTAB, six fields with seconds).
pub const HOT_TO_COLD_SCHEDULE: &str = "0 0 3 * * *";
/// The daily schedule of the cold-to-archive mover: 04:00 UTC, an hour after the hot-to-cold
/// mover so the two never hold the storage at once.
pub const COLD_TO_ARCHIVE_SCHEDULE: &str = "0 0 4 * * *";

/// One function of the twin's Function App.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AppFunction {
    /// L1: IoT Hub telemetry from Event Grid → processor → persister, in one invocation.
    Dispatcher,
    /// L2: the default processor, HTTP-triggered (direct invocation, cross-cloud ingress).
    Processor,
    /// L2 → L3: the persister, HTTP-triggered.
    Persister,
    /// L3: the hot reader's HTTP API.
    HotReader,
    /// L3: the daily hot-to-cold mover.
    HotToColdMover,
    /// L3: the daily cold-to-archive mover.
    ColdToArchiveMover,
    /// L3 cold: the HTTPS ingress of the hot → cold boundary, when L3 hot is on another cloud:
    /// the remote hot-to-cold mover's signed object operations, applied to the cold container.
    IngressCold,
}

/// How the Functions host triggers a function (its `function.json` trigger binding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// `eventGridTrigger`: an Event Grid event subscription of type `AzureFunction` delivers.
    EventGrid,
    /// `httpTrigger` (with an `http` output): callers need the function's key.
    Http {
        /// The HTTP methods allowed, lowercase.
        methods: &'static [&'static str],
    },
    /// `timerTrigger` on a six-field NCRONTAB schedule (UTC).
    Timer {
        /// e.g. `0 0 3 * * *`.
        schedule: &'static str,
    },
}

impl AppFunction {
    /// Every function, in a fixed order.
    pub const ALL: [AppFunction; 7] = [
        AppFunction::Dispatcher,
        AppFunction::Processor,
        AppFunction::Persister,
        AppFunction::HotReader,
        AppFunction::HotToColdMover,
        AppFunction::ColdToArchiveMover,
        AppFunction::IngressCold,
    ];

    /// The function's name in the app: its folder in the package and its path on the handler.
    pub fn name(&self) -> &'static str {
        match self {
            AppFunction::Dispatcher => "dispatcher",
            AppFunction::Processor => "processor",
            AppFunction::Persister => "persister",
            AppFunction::HotReader => "hot-reader",
            AppFunction::HotToColdMover => "hot-to-cold-mover",
            AppFunction::ColdToArchiveMover => "cold-to-archive-mover",
            AppFunction::IngressCold => "ingress-cold",
        }
    }

    /// The function named `name`, if the app has such a function.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }

    /// How the host triggers it.
    pub fn trigger(&self) -> Trigger {
        match self {
            AppFunction::Dispatcher => Trigger::EventGrid,
            AppFunction::Processor | AppFunction::Persister | AppFunction::IngressCold => {
                Trigger::Http { methods: &["post"] }
            }
            AppFunction::HotReader => Trigger::Http { methods: &["get"] },
            AppFunction::HotToColdMover => Trigger::Timer {
                schedule: HOT_TO_COLD_SCHEDULE,
            },
            AppFunction::ColdToArchiveMover => Trigger::Timer {
                schedule: COLD_TO_ARCHIVE_SCHEDULE,
            },
        }
    }

    /// The name of the trigger binding in `function.json`, which is the key of the trigger's
    /// value in the invocation's `Data`.
    pub fn trigger_binding(&self) -> &'static str {
        match self.trigger() {
            Trigger::EventGrid => "event",
            Trigger::Http { .. } => "req",
            Trigger::Timer { .. } => "timer",
        }
    }

    /// The `authLevel` of an HTTP-triggered function. A boundary ingress is `anonymous`: its
    /// caller is a function on another cloud, every request carries the boundary's HMAC
    /// signature over a timestamp and a nonce, checked before anything else, and a function key
    /// would be a second, static secret to hand over and keep out of the state file (the AWS
    /// ingress's function URL has auth `NONE` for the same reason). Every other HTTP function
    /// needs its function key.
    pub fn auth_level(&self) -> &'static str {
        match self {
            AppFunction::IngressCold => "anonymous",
            _ => "function",
        }
    }

    /// The functions this one runs in process and so needs in the same app: the dispatcher runs
    /// the processor and the persister in its own invocation (Event Grid is the durable queue),
    /// the processor runs the persister.
    pub fn runs_in_process(&self) -> &'static [AppFunction] {
        match self {
            AppFunction::Dispatcher => &[AppFunction::Processor, AppFunction::Persister],
            AppFunction::Processor => &[AppFunction::Persister],
            _ => &[],
        }
    }
}

impl std::fmt::Display for AppFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The name of the HTTP output binding of HTTP-triggered functions (`Outputs.res`).
pub const HTTP_OUTPUT_BINDING: &str = "res";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_triggers_match_the_contract() {
        for f in AppFunction::ALL {
            assert_eq!(AppFunction::from_name(f.name()), Some(f));
        }
        assert_eq!(AppFunction::from_name("twin-connector"), None);
        assert_eq!(AppFunction::Dispatcher.trigger(), Trigger::EventGrid);
        assert_eq!(
            AppFunction::HotReader.trigger(),
            Trigger::Http { methods: &["get"] }
        );
        assert_eq!(
            AppFunction::HotToColdMover.trigger(),
            Trigger::Timer {
                schedule: "0 0 3 * * *"
            }
        );
        assert_eq!(
            AppFunction::ColdToArchiveMover.trigger(),
            Trigger::Timer {
                schedule: "0 0 4 * * *"
            }
        );
    }
}
