//! `verify`: the work is in `twin-verify`; this checks the twin's layers, builds the probe for the
//! provider that runs them, and renders the outcome.

use crate::cli::Cli;
use crate::commands::load_config;
use crate::error::CliError;
use crate::output;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use twin_config::{Layer, ProviderName};
use twin_verify::aws::AwsProbe;
use twin_verify::{VerifyOptions, VerifyTarget};

/// Runs verify against the twin in the config directory.
pub async fn run(
    cli: &Cli,
    options: &VerifyOptions,
    cancel: &CancellationToken,
) -> Result<(), CliError> {
    let config = load_config(cli)?;
    let mut needed = vec![Layer::L1, Layer::L2, Layer::L3Hot];
    if options.movers {
        needed.extend([Layer::L3Cold, Layer::L3Archive]);
    }
    for layer in &needed {
        match config.providers.get(*layer) {
            ProviderName::Aws => {}
            ProviderName::None => {
                return Err(CliError::Usage(format!(
                    "verify follows readings through {layer}, whose provider is `none`{}",
                    if options.movers {
                        " (drop --movers to stop at the hot tier)"
                    } else {
                        ""
                    }
                )))
            }
            other => {
                return Err(CliError::Usage(format!(
                    "verify does not follow readings on `{}` yet ({layer})",
                    other.as_str()
                )))
            }
        }
    }
    let twin = config.twin.digital_twin_name.clone();
    let clients = Arc::new(twin_aws::AwsClients::load(Some(&config.providers.aws)).await?);
    // Under the emulator the local data plane serves the hot-reader API; in the cloud it is
    // read from API Gateway.
    let api_url = if clients.endpoint_override {
        local_hot_api_url(&config.dir)
    } else {
        None
    };
    if clients.endpoint_override && api_url.is_none() {
        return Err(CliError::Usage(
            "the twin is on the emulator, which runs no functions and serves no API: start the local data plane first (`deployer local up`)".into(),
        ));
    }
    let components = twin_verify::aws::twin_components(&config);
    let probe = AwsProbe::new(clients, &twin, &config.devices, api_url, components)
        .await
        .map_err(|e| CliError::Verify(e.into()))?;
    let target = VerifyTarget {
        twin: twin.clone(),
        devices: config.devices.clone(),
        simulator_config: config.dir.join(".deployer/simulator/config.json"),
    };
    let quiet = cli.quiet;
    let progress = move |line: &str| {
        if !quiet {
            eprintln!("{line}");
        }
    };
    let report = twin_verify::verify(&target, &probe, options, &progress, cancel)
        .await
        .map_err(|e| match e {
            twin_verify::VerifyError::Cancelled => CliError::Usage(
                "verify was interrupted; its readings may be left (they carry verifyRun)".into(),
            ),
            other => CliError::Verify(other),
        })?;
    if cli.json {
        output::json(&report);
    } else {
        print!("{}", twin_verify::render_table(&report));
    }
    if report.ok {
        Ok(())
    } else {
        Err(CliError::Reported(format!(
            "verify run {}: not every reading arrived at every layer",
            report.run
        )))
    }
}

/// The hot-reader API's URL as the running local data plane serves it.
fn local_hot_api_url(dir: &std::path::Path) -> Option<String> {
    let local = twin_local::runner::local_dir(dir);
    twin_local::runner::read_info(&local)
        .filter(twin_local::runner::is_alive)?
        .service_url(twin_local::services::HTTP_API)
}
