//! Shared pieces of the L4/L5 tests: AWS clients whose TwinMaker and Grafana clients are
//! `aws-smithy-mocks` clients (no emulator exists for either), a log of the calls they answered
//! (so a test can pin the exact order across clients), and a small twin config.
#![allow(dead_code)]

pub mod fake_managed_grafana;
pub mod fake_twinmaker;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_types::error::ErrorMetadata;
use serde_json::json;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use twin_aws::AwsClients;
use twin_config::{ProviderName, Providers, TwinConfig};

/// The account and region every mocked client reports.
pub const ACCOUNT: &str = "123456789012";
/// The region of the mocked clients.
pub const REGION: &str = "us-east-1";
/// The twin of these tests.
pub const TWIN: &str = "dt";

/// The operations the mocks answered, in order, e.g. `CreateWorkspace dt-twinmaker`.
#[derive(Clone, Default)]
pub struct Calls(Arc<Mutex<Vec<String>>>);

impl Calls {
    /// Records one answered call.
    pub fn push(&self, call: impl Into<String>) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(call.into());
    }

    /// Every call so far, clearing the log.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Error metadata with the code and message a real service error carries.
pub fn meta(code: &str, message: &str) -> ErrorMetadata {
    ErrorMetadata::builder().code(code).message(message).build()
}

/// Clients for the test account whose TwinMaker and Grafana clients are the given mocks; the
/// others point nowhere (no credentials), so an unexpected call fails loudly.
pub fn clients(
    twinmaker: aws_sdk_iottwinmaker::Client,
    grafana: aws_sdk_grafana::Client,
) -> Arc<AwsClients> {
    let conf = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .build();
    let mut c = AwsClients::from_sdk_config(&conf, ACCOUNT.into(), REGION.into(), "aws".into());
    c.twinmaker = twinmaker;
    c.grafana = grafana;
    Arc::new(c)
}

/// A mocked TwinMaker client answering `rules` in order, without SDK retries (the engine
/// retries, by the classified error).
#[macro_export]
macro_rules! twinmaker_mock {
    ($rules:expr) => {
        aws_smithy_mocks::mock_client!(
            aws_sdk_iottwinmaker,
            aws_smithy_mocks::RuleMode::Sequential,
            $rules,
            |c| c.retry_config(aws_smithy_types::retry::RetryConfig::disabled())
        )
    };
}

/// A mocked Grafana client answering `rules` in order, without SDK retries.
#[macro_export]
macro_rules! grafana_mock {
    ($rules:expr) => {
        aws_smithy_mocks::mock_client!(
            aws_sdk_grafana,
            aws_smithy_mocks::RuleMode::Sequential,
            $rules,
            |c| c.retry_config(aws_smithy_types::retry::RetryConfig::disabled())
        )
    };
}

/// A mocked client that must not be called.
pub fn unused_twinmaker() -> aws_sdk_iottwinmaker::Client {
    let none: [&aws_smithy_mocks::Rule; 0] = [];
    twinmaker_mock!(none)
}

/// A mocked client that must not be called.
pub fn unused_grafana() -> aws_sdk_grafana::Client {
    let none: [&aws_smithy_mocks::Rule; 0] = [];
    grafana_mock!(none)
}

/// The twin: one pressure sensor (two telemetry properties, one const property) shown in
/// `building` → `room-1`, every layer on AWS.
pub fn twin(dir: PathBuf) -> TwinConfig {
    let devices = serde_json::from_value(json!([{
        "id": "pressure-sensor-1",
        "properties": [
            {"name": "pressure", "dataType": "DOUBLE"},
            {"name": "hardness", "dataType": "INTEGER"}
        ],
        "constProperties": [
            {"name": "serial-number", "dataType": "STRING", "value": "1232323"}
        ]
    }]))
    .unwrap_or_default();
    let hierarchy = serde_json::from_value(json!([{
        "id": "building",
        "children": [{
            "type": "entity", "id": "room-1",
            "children": [{"type": "component", "name": "pressure",
                          "iotDeviceId": "pressure-sensor-1"}]
        }]
    }]))
    .ok();
    TwinConfig {
        dir,
        twin: serde_json::from_value(json!({
            "digital_twin_name": TWIN,
            "hot_storage_size_in_days": 30,
            "cold_storage_size_in_days": 90,
            "mode": "DEBUG"
        }))
        .unwrap_or_else(|e| panic!("twin settings: {e}")),
        devices,
        providers: Providers::all(ProviderName::Aws),
        hierarchy,
        events: Vec::new(),
        warnings: Vec::new(),
    }
}
