//! What every Lambda adapter does before serving: JSON logs at `LOG_LEVEL`, settings checked from
//! the environment (one error naming everything missing), and the SDK configuration.

use crate::sdk_config::{sdk_config_from, SdkEnvError};
use std::io::Write;
use twin_functions::catalogue::{CatalogueError, CatalogueLocation, DeviceCatalogue};
use twin_functions::env_vars::LOG_LEVEL;
use twin_functions::settings::{LogLevel, SettingsError};

/// A function's settings reader, e.g. `PersisterSettings::from_lookup`.
pub type SettingsReader<T> = fn(&dyn Fn(&str) -> Option<String>) -> Result<T, SettingsError>;

/// Starts JSON logging and reads the function's settings with `read` (e.g.
/// `PersisterSettings::from_lookup`). A settings error is logged once, as JSON, and returned so
/// `main` exits before polling for events: Lambda reports it as an init error.
pub fn start<T>(read: SettingsReader<T>) -> Result<T, SettingsError> {
    let lookup = |name: &str| std::env::var(name).ok();
    let level = lookup(LOG_LEVEL)
        .as_deref()
        .and_then(LogLevel::parse)
        .unwrap_or(LogLevel::Info);
    init_tracing(level);
    read(&lookup).inspect_err(|e| {
        tracing::error!(error = %e, "cannot start");
        // The subscriber may be gone if init failed; make sure the reason reaches the log.
        let _ = std::io::stderr().flush();
    })
}

/// JSON logs on stdout (CloudWatch reads them), with the current span's fields (device id,
/// correlation id) on every line, at the configured level.
pub fn init_tracing(level: LogLevel) {
    let filter = match level {
        LogLevel::Debug => tracing::level_filters::LevelFilter::DEBUG,
        LogLevel::Info => tracing::level_filters::LevelFilter::INFO,
    };
    // A second init (tests) keeps the first subscriber: that is fine.
    let _ = tracing_subscriber::fmt()
        .json()
        .with_max_level(filter)
        .with_current_span(true)
        .with_span_list(false)
        .flatten_event(true)
        .with_target(false)
        .without_time()
        .try_init();
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

/// A DynamoDB client.
pub fn dynamodb_client(config: &aws_types::SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(config)
}

/// A Lambda client.
pub fn lambda_client(config: &aws_types::SdkConfig) -> aws_sdk_lambda::Client {
    aws_sdk_lambda::Client::new(config)
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
