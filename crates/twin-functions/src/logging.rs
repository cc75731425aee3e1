//! The functions' JSON logs, the same on every cloud: `LOG_LEVEL` applies to the twin's own
//! tracing targets (which each adapter lists), every dependency (cloud SDKs, hyper, runtimes)
//! stays at WARN so DEBUG does not bury the twin's lines under the SDK's.

use crate::env_vars::LOG_LEVEL;
use crate::settings::LogLevel;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;

/// `LOG_LEVEL` read through `lookup`; INFO when unset or not a level.
pub fn level_from(lookup: &dyn Fn(&str) -> Option<String>) -> LogLevel {
    lookup(LOG_LEVEL)
        .as_deref()
        .and_then(LogLevel::parse)
        .unwrap_or(LogLevel::Info)
}

/// The log filter: `own` targets at `level`, everything else at WARN.
pub fn log_filter(level: LogLevel, own: &[&str]) -> Targets {
    let own_level = match level {
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Info => LevelFilter::INFO,
    };
    Targets::new()
        .with_default(LevelFilter::WARN)
        .with_targets(own.iter().map(|t| (t.to_string(), own_level)))
}

/// Whether each JSON line carries its own timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timestamps {
    /// The log service stamps each line on arrival (CloudWatch): no timestamp of our own.
    ByLogService,
    /// Each line carries its own timestamp.
    InLine,
}

/// JSON logs on stdout through `filter` (see [`log_filter`]), with the current span's fields
/// (device id, correlation or invocation id) flattened onto every line.
pub fn init_json_logs(filter: Targets, timestamps: Timestamps) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let fmt = tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .flatten_event(true)
        .with_target(false);
    // A second init (tests) keeps the first subscriber: that is fine.
    let _ = match timestamps {
        Timestamps::ByLogService => tracing_subscriber::registry()
            .with(fmt.without_time())
            .with(filter)
            .try_init(),
        Timestamps::InLine => tracing_subscriber::registry()
            .with(fmt)
            .with(filter)
            .try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn log_level_applies_to_own_targets_and_dependencies_stay_at_warn() {
        let debug = log_filter(LogLevel::Debug, &["twin_functions", "persister"]);
        assert!(debug.would_enable("twin_functions::dispatcher", &Level::DEBUG));
        assert!(debug.would_enable("persister", &Level::DEBUG));
        assert!(!debug.would_enable("hyper_util", &Level::INFO));
        assert!(debug.would_enable("hyper_util", &Level::WARN));
        let info = log_filter(LogLevel::Info, &["persister"]);
        assert!(info.would_enable("persister", &Level::INFO));
        assert!(!info.would_enable("persister", &Level::DEBUG));
        assert_eq!(info.default_level(), Some(LevelFilter::WARN));
    }

    #[test]
    fn an_unset_or_unknown_level_is_info() {
        assert_eq!(level_from(&|_| None), LogLevel::Info);
        assert_eq!(level_from(&|_| Some("LOUD".into())), LogLevel::Info);
        assert_eq!(
            level_from(&|k| (k == LOG_LEVEL).then(|| "DEBUG".into())),
            LogLevel::Debug
        );
    }
}
