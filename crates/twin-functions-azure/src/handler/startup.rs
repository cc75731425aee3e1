//! What the handler binary does before serving: JSON logs at `LOG_LEVEL`, the functions the
//! package holds (its `<function>/function.json` folders, which are also what the host reads),
//! their settings checked at once, the package's `catalogue.json`, then listening on
//! `127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT`. Nothing here touches the network, so the handler
//! listens well within the host's 60 s.

use super::{server, Handler, Stores};
use crate::app::settings::{AppSettingsError, HandlerSettings, PACKAGE_CATALOGUE};
use crate::app::{AppFunction, CATALOGUE_FILE};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use twin_functions::catalogue::{CatalogueError, CatalogueLocation, DeviceCatalogue};
use twin_functions::logging;
use twin_functions::settings::LogLevel;

/// The port the host tells the handler to listen on.
pub const PORT_ENV: &str = "FUNCTIONS_CUSTOMHANDLER_PORT";
/// The app's root directory, which the host sets for its worker process.
pub const APP_ROOT_ENV: &str = "FUNCTIONS_APP_ROOT_PATH";

/// Why the handler cannot start (logged once; the host then reports the app as failing).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Missing or invalid app settings.
    #[error(transparent)]
    Settings(#[from] AppSettingsError),
    /// The package holds no function this handler knows.
    #[error("the Function App package in {root} holds no function folder this handler serves (expected some of {}); run `deployer deploy` to upload it again", crate::app::AppFunction::ALL.map(|f| f.name()).join(", "))]
    NoFunctions {
        /// The app's root directory.
        root: String,
    },
    /// The package's catalogue is missing or unusable.
    #[error(transparent)]
    Catalogue(#[from] CatalogueError),
    /// The dispatcher or processor is present but no catalogue was given.
    #[error("the dispatcher and the processor need the device catalogue ({CATALOGUE_FILE} in the package); run `deployer deploy` to upload the package again")]
    NoCatalogue,
    /// A device's own processor crate has no binary in the package.
    #[error("devices {} name the processor crate `{crate_name}`, but the package has no executable {path}; run `deployer deploy` to upload the package again", .devices.join(", "))]
    OwnProcessorMissing {
        /// The crate.
        crate_name: String,
        /// The devices naming it.
        devices: Vec<String>,
        /// Where its binary should be.
        path: String,
    },
    /// An event rule's function crate has no binary in the package.
    #[error("event rule `{rule}` runs the function crate `{crate_name}`, but the package has no executable {path}; run `deployer deploy` to upload the package again")]
    EventFunctionMissing {
        /// The crate.
        crate_name: String,
        /// The (first) rule naming it.
        rule: String,
        /// Where its binary should be.
        path: String,
    },
    /// The handler was built from parts that do not fit together (a caller's mistake).
    #[error("the handler cannot be built: {0}")]
    Inconsistent(String),
    /// The twin's identity could not be set up.
    #[error(transparent)]
    Identity(#[from] twin_functions::CloudError),
    /// `FUNCTIONS_CUSTOMHANDLER_PORT` is missing or not a port.
    #[error("{PORT_ENV} is {0}; the Functions host sets it when it starts the custom handler, so run the binary only under the host (or set it for a local run)")]
    Port(String),
    /// The port cannot be bound.
    #[error("cannot listen on 127.0.0.1:{port}: {message}")]
    Bind {
        /// The port.
        port: u16,
        /// The OS error.
        message: String,
    },
}

/// The tracing targets of the twin's own code; `LOG_LEVEL` applies to these only.
pub const TWIN_TARGETS: [&str; 3] = ["twin_functions", "twin_functions_azure", "azure_handler"];

/// The log filter for `level`: the twin's own targets at `level`, every dependency (the Azure
/// SDK, hyper) at WARN, so DEBUG does not bury the twin's lines under the SDK's.
pub fn log_filter(level: LogLevel) -> tracing_subscriber::filter::Targets {
    logging::log_filter(level, &TWIN_TARGETS)
}

/// JSON logs on stdout (the host forwards its worker's output to Application Insights), with
/// the current span's fields (function, invocation id) and a timestamp on every line.
pub fn init_tracing(level: LogLevel) {
    logging::init_json_logs(log_filter(level), logging::Timestamps::InLine);
}

/// The functions whose `<name>/function.json` is in `root`, in order.
pub fn discover_functions(root: &Path) -> Vec<AppFunction> {
    AppFunction::ALL
        .into_iter()
        .filter(|f| root.join(f.name()).join("function.json").is_file())
        .collect()
}

/// Reads and checks `catalogue.json` in `root`.
pub fn load_catalogue(root: &Path) -> Result<DeviceCatalogue, CatalogueError> {
    let location = CatalogueLocation {
        bucket: PACKAGE_CATALOGUE.into(),
        key: CATALOGUE_FILE.into(),
    };
    let bytes = std::fs::read(root.join(CATALOGUE_FILE)).map_err(|e| CatalogueError {
        location: location.to_string(),
        problem: format!(
            "{} cannot be read: {e}",
            root.join(CATALOGUE_FILE).display()
        ),
    })?;
    DeviceCatalogue::parse(&bytes, &location)
}

/// The app's root: `FUNCTIONS_APP_ROOT_PATH`, else the directory of this executable (the
/// package puts the binary at its root).
fn app_root(lookup: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    if let Some(root) = lookup(APP_ROOT_ENV).filter(|r| !r.trim().is_empty()) {
        return PathBuf::from(root);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Builds the handler from the app as deployed: the package in the app root, the settings and
/// the managed identity from the environment.
pub fn handler_from_environment(
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Handler, StartError> {
    let root = app_root(lookup);
    let functions = discover_functions(&root);
    if functions.is_empty() {
        return Err(StartError::NoFunctions {
            root: root.display().to_string(),
        });
    }
    let settings = HandlerSettings::from_lookup(&functions, lookup)?;
    let needs_catalogue = functions
        .iter()
        .any(|f| matches!(f, AppFunction::Dispatcher | AppFunction::Processor));
    let catalogue = needs_catalogue.then(|| load_catalogue(&root)).transpose()?;
    if let Some(c) = &catalogue {
        tracing::info!(devices = c.devices.len(), "device catalogue loaded");
    }
    let stores = Stores::from_settings(&settings, lookup)?;
    let handler = Handler::new(&functions, &settings, catalogue, stores, &root)?;
    let names: Vec<&str> = functions.iter().map(|f| f.name()).collect();
    tracing::info!(functions = %names.join(","), root = %root.display(), "functions ready");
    Ok(handler)
}

/// The binary's whole life: logs, handler, listen, serve until SIGTERM or Ctrl-C. An error is
/// logged once and returned, so `main` exits non-zero and the host reports it.
pub async fn run_from_environment() -> Result<(), StartError> {
    let lookup = |name: &str| std::env::var(name).ok();
    init_tracing(logging::level_from(&lookup));
    let result = async {
        let port = match lookup(PORT_ENV) {
            None => return Err(StartError::Port("not set".into())),
            Some(raw) => raw
                .trim()
                .parse::<u16>()
                .map_err(|_| StartError::Port(format!("{raw:?}, not a port number")))?,
        };
        let handler = Arc::new(handler_from_environment(&lookup)?);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(|e| StartError::Bind {
                port,
                message: e.to_string(),
            })?;
        tracing::info!(port, "custom handler listening");
        server::serve(listener, handler, shutdown_signal()).await;
        tracing::info!("custom handler stopped");
        Ok(())
    }
    .await;
    result.inspect_err(|e| tracing::error!(error = %e, "cannot start"))
}

/// SIGTERM (the host stopping the worker) or Ctrl-C.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = tokio::signal::ctrl_c() => {},
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn log_level_applies_to_the_twin_and_dependencies_stay_at_warn() {
        let debug = log_filter(LogLevel::Debug);
        assert!(debug.would_enable("twin_functions_azure::handler", &Level::DEBUG));
        assert!(debug.would_enable("azure_handler", &Level::DEBUG));
        assert!(!debug.would_enable("azure_core::http", &Level::INFO));
        assert!(debug.would_enable("hyper", &Level::WARN));
        assert!(!log_filter(LogLevel::Info).would_enable("twin_functions", &Level::DEBUG));
    }

    #[test]
    fn finds_the_functions_and_catalogue_a_package_unpacked() {
        let dir = std::env::temp_dir().join(format!("twin-handler-root-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for f in ["persister", "hot-reader", "not-a-function"] {
            std::fs::create_dir_all(dir.join(f)).expect("mkdir");
            std::fs::write(dir.join(f).join("function.json"), "{}").expect("write");
        }
        assert_eq!(
            discover_functions(&dir),
            vec![AppFunction::Persister, AppFunction::HotReader]
        );
        let e = load_catalogue(&dir).unwrap_err();
        assert!(e.to_string().contains("catalogue.json"), "{e}");
        let root = dir.display().to_string();
        let lookup = move |k: &str| (k == APP_ROOT_ENV).then(|| root.clone());
        let e = handler_from_environment(&lookup)
            .err()
            .expect("settings are missing");
        assert!(e.to_string().contains("HOT_TABLE"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
