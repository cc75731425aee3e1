//! What every Lambda adapter does before serving: JSON logs at `LOG_LEVEL`, settings checked from
//! the environment (one error naming everything missing), and the SDK configuration.

use crate::sdk_config::{sdk_config_from, SdkEnvError};
use std::io::Write;
use twin_functions::catalogue::{CatalogueError, CatalogueLocation, DeviceCatalogue};
use twin_functions::logging;
use twin_functions::settings::{LogLevel, SettingsError};

/// A function's settings reader, e.g. `PersisterSettings::from_lookup`.
pub type SettingsReader<T> = fn(&dyn Fn(&str) -> Option<String>) -> Result<T, SettingsError>;

/// Starts JSON logging and reads the function's settings with `read` (e.g.
/// `PersisterSettings::from_lookup`). A settings error is logged once, as JSON, and returned so
/// `main` exits before polling for events: Lambda reports it as an init error.
pub fn start<T>(read: SettingsReader<T>) -> Result<T, SettingsError> {
    let lookup = |name: &str| std::env::var(name).ok();
    init_tracing(logging::level_from(&lookup));
    read(&lookup).inspect_err(|e| {
        tracing::error!(error = %e, "cannot start");
        // The subscriber may be gone if init failed; make sure the reason reaches the log.
        let _ = std::io::stderr().flush();
    })
}

/// The tracing targets of the twin's own code: the shared logic, this crate and the function
/// binaries (each binary's target is its crate name with `_`). `LOG_LEVEL` applies to these only.
pub const TWIN_TARGETS: [&str; 9] = [
    "twin_functions",
    "twin_functions_aws",
    "dispatcher",
    "processor",
    "persister",
    "hot_reader",
    "hot_to_cold_mover",
    "cold_to_archive_mover",
    "twin_connector",
];

/// The log filter for `level`: the twin's own targets at `level`, every dependency (the AWS SDK,
/// hyper, the Lambda runtime client) at WARN, so DEBUG does not bury the twin's lines under
/// dozens of SDK lines per call.
pub fn log_filter(level: LogLevel) -> tracing_subscriber::filter::Targets {
    logging::log_filter(level, &TWIN_TARGETS)
}

/// JSON logs on stdout (CloudWatch reads them and stamps each line), with the current span's
/// fields (device id, correlation id) on every line, at the configured level (see
/// [`log_filter`]).
pub fn init_tracing(level: LogLevel) {
    logging::init_json_logs(log_filter(level), logging::Timestamps::ByLogService);
}

/// The SDK configuration from the environment (the Lambda role's credentials, `AWS_REGION`,
/// `AWS_ENDPOINT_URL` for emulators); see [`crate::sdk_config`]. A missing variable is logged
/// once and returned, so `main` exits before polling for events.
pub fn aws_sdk_config() -> Result<aws_types::SdkConfig, SdkEnvError> {
    sdk_config_from(&|name| std::env::var(name).ok())
        .inspect_err(|e| tracing::error!(error = %e, "cannot start"))
}

/// An S3 client; path-style addressing when an endpoint is overridden (emulators).
pub fn s3_client(config: &aws_types::SdkConfig) -> aws_sdk_s3::Client {
    let path_style = std::env::var_os("AWS_ENDPOINT_URL").is_some()
        || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
    let s3 = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(path_style)
        .build();
    aws_sdk_s3::Client::from_conf(s3)
}

/// A Secrets Manager client (a boundary ingress reads its secret with it).
pub fn secrets_client(config: &aws_types::SdkConfig) -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(config)
}

/// A DynamoDB client.
pub fn dynamodb_client(config: &aws_types::SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(config)
}

/// An IoT data-plane client at `endpoint` (`IOT_DATA_ENDPOINT`: the account's `iot:Data-ATS`
/// endpoint the deployer read from DescribeEndpoint; IoT has no regional default for it).
pub fn iot_data_client(
    config: &aws_types::SdkConfig,
    endpoint: &str,
) -> aws_sdk_iotdataplane::Client {
    let conf = aws_sdk_iotdataplane::config::Builder::from(config)
        .endpoint_url(endpoint)
        .build();
    aws_sdk_iotdataplane::Client::from_conf(conf)
}

/// An SNS client (event-rule notifications).
pub fn sns_client(config: &aws_types::SdkConfig) -> aws_sdk_sns::Client {
    aws_sdk_sns::Client::new(config)
}

/// A TwinMaker client (the twin connector finds the components of a type through it).
pub fn twinmaker_client(config: &aws_types::SdkConfig) -> aws_sdk_iottwinmaker::Client {
    aws_sdk_iottwinmaker::Client::new(config)
}

/// A Lambda client; `AWS_ENDPOINT_URL_LAMBDA` (the SDKs' per-service override) wins over the
/// shared endpoint, so a local runner can take invocations while the rest goes to the emulator.
pub fn lambda_client(config: &aws_types::SdkConfig) -> aws_sdk_lambda::Client {
    lambda_client_from(config, &|name| std::env::var(name).ok())
}

/// [`lambda_client`] reading the environment through `lookup` (tests).
pub fn lambda_client_from(
    config: &aws_types::SdkConfig,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> aws_sdk_lambda::Client {
    aws_sdk_lambda::Client::from_conf(lambda_config_from(config, lookup))
}

/// The Lambda client's configuration: the shared one, with [`lambda_endpoint`] as its endpoint.
pub fn lambda_config_from(
    config: &aws_types::SdkConfig,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> aws_sdk_lambda::Config {
    let mut builder = aws_sdk_lambda::config::Builder::from(config);
    if let Some(endpoint) = lambda_endpoint(config, lookup) {
        builder = builder.endpoint_url(endpoint);
    }
    builder.build()
}

/// The Lambda endpoint: `AWS_ENDPOINT_URL_LAMBDA` when set and not blank, else the shared
/// override (`AWS_ENDPOINT_URL`), else none (the SDK's default AWS endpoint). The SdkConfig here
/// is built by hand (see `sdk_config`), so the SDK's own lookup of the per-service variable
/// (done by aws-config's loader) never runs: it is done here.
pub fn lambda_endpoint(
    config: &aws_types::SdkConfig,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Option<String> {
    lookup("AWS_ENDPOINT_URL_LAMBDA")
        .filter(|v| !v.trim().is_empty())
        .or_else(|| config.endpoint_url().map(str::to_string))
}

/// Reads the device catalogue from S3 at cold start (dispatcher, processors). A failure is logged
/// once and returned, so `main` exits before polling for events: Lambda reports it as an init
/// error and the next cold start tries again.
pub async fn load_catalogue(
    config: &aws_types::SdkConfig,
    location: &CatalogueLocation,
) -> Result<DeviceCatalogue, CatalogueError> {
    let store = crate::S3ObjectStore::new(s3_client(config));
    let catalogue = DeviceCatalogue::load(&store, location)
        .await
        .inspect_err(|e| tracing::error!(error = %e, "cannot start"))?;
    tracing::info!(
        devices = catalogue.devices.len(),
        catalogue = %location,
        "device catalogue loaded"
    );
    Ok(catalogue)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::level_filters::LevelFilter;
    use tracing::Level;

    fn config() -> aws_types::SdkConfig {
        crate::sdk_config::sdk_config_from(&|k| match k {
            "AWS_REGION" => Some("us-east-1".into()),
            "AWS_ACCESS_KEY_ID" | "AWS_SECRET_ACCESS_KEY" => Some("x".into()),
            "AWS_ENDPOINT_URL" => Some("http://127.0.0.1:5000".into()),
            _ => None,
        })
        .expect("complete environment")
    }

    #[test]
    fn the_lambda_client_takes_its_own_endpoint_when_set() {
        let own = lambda_endpoint(&config(), &|k| {
            (k == "AWS_ENDPOINT_URL_LAMBDA").then(|| "http://127.0.0.1:6000".to_string())
        });
        assert_eq!(own.as_deref(), Some("http://127.0.0.1:6000"));
        let shared = lambda_endpoint(&config(), &|_| None);
        assert_eq!(shared.as_deref(), Some("http://127.0.0.1:5000"));
        let blank = lambda_endpoint(&config(), &|_| Some(" ".into()));
        assert_eq!(blank.as_deref(), Some("http://127.0.0.1:5000"));
        // The client builds with it (the endpoint is resolved per request).
        let _ = lambda_client_from(&config(), &|_| Some("http://127.0.0.1:6000".into()));
    }

    #[test]
    fn log_level_applies_to_the_twin_and_dependencies_stay_at_warn() {
        let debug = log_filter(LogLevel::Debug);
        for own in ["twin_functions::dispatcher", "persister", "hot_reader"] {
            assert!(debug.would_enable(own, &Level::DEBUG), "{own}");
        }
        for dep in ["aws_smithy_runtime::client", "hyper_util", "lambda_runtime"] {
            assert!(!debug.would_enable(dep, &Level::INFO), "{dep}");
            assert!(debug.would_enable(dep, &Level::WARN), "{dep}");
        }
        let info = log_filter(LogLevel::Info);
        assert!(info.would_enable("processor", &Level::INFO));
        assert!(!info.would_enable("processor", &Level::DEBUG));
        assert_eq!(info.default_level(), Some(LevelFilter::WARN));
    }
}
