//! `local up | down | status`: the local data plane under the emulator (the work is in
//! `twin-local`; this parses, checks, and renders).

use crate::cli::{Cli, LocalAction};
use crate::commands::load_config;
use crate::error::CliError;
use crate::output;
use twin_config::{Layer, ProviderName};
use twin_local::{LocalError, LocalPlane, UpAction};

fn local_error(e: LocalError) -> CliError {
    match e {
        LocalError::NotEmulator => CliError::Usage(e.to_string()),
        other => CliError::Local(other),
    }
}

/// Runs one `local` action for the twin in the config directory.
pub async fn run(cli: &Cli, action: LocalAction) -> Result<(), CliError> {
    let config = load_config(cli)?;
    let plane = LocalPlane::new(&config.dir, &config.twin.digital_twin_name);
    match action {
        LocalAction::Up => {
            if config.providers.get(Layer::L1) != ProviderName::Aws {
                return Err(CliError::Usage(
                    "the local data plane stands in for AWS IoT Core: layer_1_provider must be `aws`"
                        .into(),
                ));
            }
            // Said before any call: against real AWS there is nothing to stand in for.
            if std::env::var_os("AWS_ENDPOINT_URL").is_none() {
                return Err(local_error(LocalError::NotEmulator));
            }
            let clients = twin_aws::AwsClients::load(Some(&config.providers.aws)).await?;
            let r = plane.up(&clients).await.map_err(local_error)?;
            if cli.json {
                output::json(&r);
                return Ok(());
            }
            let what = match r.action {
                UpAction::Started => "started",
                UpAction::Restarted => "restarted (what is deployed changed)",
                UpAction::Unchanged => "already running, nothing changed",
            };
            println!(
                "local broker {what}: 127.0.0.1:{} (pid {}), {} device(s) trusted",
                r.port,
                r.pid,
                r.trusted.len()
            );
            for t in &r.trusted {
                println!("  {}: publish {}", t.identity, t.publish_topics.join(", "));
            }
            for f in &r.refused {
                println!("  refused {} ({}): {}", f.thing, f.certificate_id, f.reason);
            }
            for u in &r.unenforced {
                eprintln!("warning: not enforceable by mosquitto, so denied: {u}");
            }
            if r.simulator_pointed {
                println!(
                    "simulator config now points at the local broker (`local down` restores it)"
                );
            }
            Ok(())
        }
        LocalAction::Down => {
            let stopped = plane.down().map_err(local_error)?;
            if cli.json {
                output::json(&serde_json::json!({ "stopped": stopped }));
            } else if stopped {
                println!("local broker stopped; simulator config restored");
            } else {
                println!("local broker was not running");
            }
            Ok(())
        }
        LocalAction::Status => {
            let s = plane.status();
            if cli.json {
                output::json(&s);
            } else if s.running {
                println!(
                    "local broker running: 127.0.0.1:{} (pid {}), {} device(s) trusted: {}",
                    s.port.unwrap_or_default(),
                    s.pid.unwrap_or_default(),
                    s.trusted.len(),
                    s.trusted.join(", ")
                );
                for f in &s.refused {
                    println!("  refused {}: {}", f.thing, f.reason);
                }
                println!("log: {}", s.log.display());
            } else {
                println!("local broker stopped");
            }
            Ok(())
        }
    }
}
