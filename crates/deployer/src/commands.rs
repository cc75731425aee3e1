//! Runs one parsed command: the same code path one-shot and in the REPL.

use crate::cli::{Cli, Command, COMMANDS};
use crate::error::CliError;
use crate::output;
use crate::registry;
use crate::render::{Progress, ProgressMode};
use clap::CommandFactory;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;
use twin_config::TwinConfig;
use twin_engine::{function_layer, function_names, Engine, EngineOptions, FunctionOps};

/// The config directory a command works on.
pub fn config_dir(cli: &Cli) -> PathBuf {
    cli.dir.clone().unwrap_or_else(|| PathBuf::from("."))
}

/// Loads and validates the twin's config; every problem at once, exit code 2.
pub fn load_config(cli: &Cli) -> Result<TwinConfig, CliError> {
    let dir = config_dir(cli);
    let mut config = twin_config::load_dir(&dir).map_err(CliError::Config)?;
    // Legal but doubtful settings: on stderr, so `--json` output on stdout stays one document.
    for warning in &config.warnings {
        eprintln!("warning: {warning}");
    }
    // Absolute, so the state file and device files land in the same place whatever the cwd.
    if let Ok(abs) = std::fs::canonicalize(&config.dir) {
        config.dir = abs;
    }
    let problems = registry::unimplemented_layers(&config);
    if !problems.is_empty() {
        return Err(CliError::Config(twin_config::Diagnostics(problems)));
    }
    Ok(config)
}

/// Runs `cmd` with the global options of `cli`.
pub async fn run(cli: &Cli, cmd: &Command, cancel: CancellationToken) -> Result<(), CliError> {
    match cmd {
        Command::Validate => validate(cli),
        Command::Schema => {
            output::json(&twin_config::schema());
            Ok(())
        }
        Command::Completions { shell } => {
            let mut command = <crate::cli::Cli as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut command, "deployer", &mut std::io::stdout());
            Ok(())
        }
        Command::Help { command } => help(command.as_deref()),
        Command::Model { format, out } => crate::model::run(cli, *format, out.as_deref()),
        Command::Exit => Ok(()),
        Command::Plan {
            layer,
            compare,
            devices,
            messages_per_minute,
            message_bytes,
            dashboard_users,
        } => {
            let overrides = twin_cost::LoadOverrides {
                devices: *devices,
                messages_per_device_per_minute: *messages_per_minute,
                message_bytes: *message_bytes,
                dashboard_users: *dashboard_users,
            };
            if *compare {
                let config = load_config(cli)?;
                let cost = crate::cost::compare(&config, &overrides)?;
                if cli.json {
                    output::json(&cost.json());
                } else {
                    println!("{}", cost.text());
                }
                return Ok(());
            }
            let (engine, progress, config) = engine(cli, cancel, false).await?;
            let cost = crate::cost::estimate(&config, &overrides)?;
            let plan = engine.plan(*layer).await;
            progress.finish();
            let plan = plan?;
            let boundaries = crate::boundaries::statuses(&config);
            if cli.json {
                let mut doc = output::plan_json(&plan);
                doc["cost"] = cost.json();
                doc["boundaries"] = crate::boundaries::json(&boundaries);
                output::json(&doc);
            } else {
                println!("{}\n\n{}", output::plan_text(&plan), cost.text());
                let shown = crate::boundaries::text(&boundaries);
                if !shown.is_empty() {
                    println!("\n{shown}");
                }
            }
            Ok(())
        }
        Command::Deploy { layer } => {
            let (engine, progress, config) = engine(cli, cancel, true).await?;
            let start = Instant::now();
            let report = engine.deploy(*layer).await;
            progress.finish();
            let report = report?;
            // The boundary secrets are values, not settings: put in step on both sides after
            // the resources that hold them exist, never through the state.
            crate::boundaries::sync_secrets(&config, *layer).await?;
            if cli.json {
                output::json(&serde_json::json!({
                    "created": report.created, "updated": report.updated,
                    "unchanged": report.unchanged, "deleted": report.deleted,
                    "seconds": start.elapsed().as_secs_f64(),
                }));
            } else {
                println!(
                    "{}",
                    output::report_text(
                        "Deployed",
                        &config.twin.digital_twin_name,
                        &report,
                        start.elapsed().as_secs_f64()
                    )
                );
            }
            crate::local::refresh_after_deploy(&config).await;
            Ok(())
        }
        Command::Destroy { layer } => {
            // Without a terminal to ask, -y is required: said before any cloud call.
            if !cli.yes && !std::io::stdin().is_terminal() {
                let config = load_config(cli)?;
                return confirm_destroy(cli, &config, *layer, &[]);
            }
            let (engine, progress, config) = engine(cli, cancel, true).await?;
            if let Err(e) = confirm_destroy(cli, &config, *layer, &engine.scopes()) {
                progress.finish();
                return Err(e);
            }
            let start = Instant::now();
            let report = engine.destroy(*layer).await;
            progress.finish();
            let report = report?;
            if cli.json {
                output::json(&serde_json::json!({
                    "deleted": report.deleted, "seconds": start.elapsed().as_secs_f64(),
                }));
            } else {
                println!(
                    "{}",
                    output::report_text(
                        "Destroyed",
                        &config.twin.digital_twin_name,
                        &report,
                        start.elapsed().as_secs_f64()
                    )
                );
            }
            if layer.is_none() {
                crate::local::stop_after_destroy(&config);
            }
            Ok(())
        }
        Command::Info { wide } => {
            let (engine, progress, config) = engine(cli, cancel, false).await?;
            let rows = engine.info().await;
            let boundaries = crate::boundaries::health(&config).await;
            progress.finish();
            let rows = rows?;
            if cli.json {
                let mut doc = output::info_json(&rows);
                if let Some(list) = doc.as_array_mut() {
                    list.extend(crate::boundaries::health_rows(&boundaries));
                }
                output::json(&doc);
            } else {
                // What a person opens first: where devices connect, where the hot data is
                // read, where Grafana is and whether its data answers.
                let state =
                    twin_engine::StateFile::peek(&config.dir, &config.twin.digital_twin_name)?;
                let found = crate::endpoints::endpoints(&state, &rows);
                let grafana: Vec<String> = twin_aws::l5_grafana::info_lines(&rows)
                    .into_iter()
                    .chain(twin_azure::l5::info_lines(&rows))
                    .collect();
                let top = crate::endpoints::lines(&found, grafana);
                for line in &top {
                    println!("{line}");
                }
                if !top.is_empty() {
                    println!();
                }
                println!("{}", output::info_table(&rows, *wide, output::width()));
                if let Some(lines) = crate::boundaries::health_text(&boundaries) {
                    println!("{lines}");
                }
                let config = load_config(cli)?;
                if let Some(lines) = crate::dead_letters::info_lines(&config).await {
                    println!("{lines}");
                }
                if let Some(line) = crate::local::info_lines(&config) {
                    println!("{line}");
                }
            }
            Ok(())
        }
        Command::Redrive { layer } => crate::dead_letters::redrive(cli, *layer).await,
        Command::RotateCertificates { devices } => rotate_certificates(cli, devices, &cancel).await,
        Command::RotateSecrets => crate::boundaries::rotate_secrets(cli).await,
        Command::Local { action, instances } => {
            crate::local::run(cli, *action, instances.as_deref()).await
        }
        Command::Verify {
            messages,
            movers,
            keep,
            timeout,
        } => {
            let options = twin_verify::VerifyOptions {
                messages: *messages,
                movers: *movers,
                keep: *keep,
                timeout: std::time::Duration::from_secs(*timeout),
            };
            crate::verify::run(cli, &options, &cancel).await
        }
        Command::LambdaUpdate { function, env_json } => {
            let env = match env_json {
                None => None,
                Some(text) => match serde_json::from_str::<serde_json::Value>(text) {
                    Ok(serde_json::Value::Object(m)) => Some(m),
                    Ok(_) => {
                        return Err(CliError::Usage(
                            "ENV_JSON must be a JSON object, e.g. '{\"LOG_LEVEL\":\"DEBUG\"}'"
                                .into(),
                        ))
                    }
                    Err(e) => {
                        return Err(CliError::Usage(format!("ENV_JSON is not valid JSON: {e}")))
                    }
                },
            };
            let (ops, config) = function_ops(cli, function).await?;
            let r = ops.update(&config, function, env).await?;
            if cli.json {
                output::json(&r);
            } else {
                println!(
                    "{function}: {}{}{}",
                    if r.rebuilt { "rebuilt, " } else { "" },
                    if r.code_updated {
                        "code uploaded"
                    } else {
                        "code unchanged"
                    },
                    if r.env_updated {
                        ", environment updated"
                    } else {
                        ""
                    }
                );
            }
            Ok(())
        }
        Command::LambdaLogs {
            function,
            lines,
            include_system,
            follow,
        } => {
            let (ops, config) = function_ops(cli, function).await?;
            let mut got = ops
                .logs(&config, function, *lines, *include_system, None)
                .await?;
            print_logs(cli, &got);
            if *follow {
                let mut since = got.last().map(|l| l.timestamp_ms + 1);
                let mut interval = std::time::Duration::from_millis(500);
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(interval) => {} // poll interval for new log lines
                    }
                    got = ops
                        .logs(&config, function, 1000, *include_system, since)
                        .await?;
                    if got.is_empty() {
                        interval = (interval * 2).min(std::time::Duration::from_secs(5));
                    } else {
                        interval = std::time::Duration::from_millis(500);
                        since = got.last().map(|l| l.timestamp_ms + 1);
                        print_logs(cli, &got);
                    }
                }
            }
            Ok(())
        }
        Command::LambdaInvoke {
            function,
            payload,
            asynchronous,
        } => {
            let payload = payload.clone().unwrap_or_else(|| "{}".into());
            if let Err(e) = serde_json::from_str::<serde_json::Value>(&payload) {
                return Err(CliError::Usage(format!("PAYLOAD is not valid JSON: {e}")));
            }
            let (ops, config) = function_ops(cli, function).await?;
            let r = ops
                .invoke(&config, function, &payload, *asynchronous)
                .await?;
            if cli.json {
                output::json(&r);
            } else {
                if let Some(p) = &r.payload {
                    println!("{p}");
                } else {
                    println!("{function}: accepted (status {})", r.status_code);
                }
                if let Some(tail) = &r.log_tail {
                    eprintln!("--- log tail ---\n{tail}");
                }
            }
            match &r.function_error {
                Some(kind) => Err(CliError::Cloud(twin_engine::CloudError::fatal(
                    format!("FunctionError:{kind}"),
                    format!("{function} failed; see its response and log tail above, or `lambda_logs {function}`"),
                ))),
                None => Ok(()),
            }
        }
    }
}

/// `rotate_certificates [DEVICE...]`: one device after the other, so a failure leaves at most
/// one device mid-rotation (a rerun finishes it).
async fn rotate_certificates(
    cli: &Cli,
    devices: &[String],
    cancel: &CancellationToken,
) -> Result<(), CliError> {
    let config = load_config(cli)?;
    let known: Vec<String> = config.devices.iter().map(|d| d.id.clone()).collect();
    let unknown: Vec<&str> = devices
        .iter()
        .filter(|d| !known.contains(d))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        return Err(CliError::Usage(format!(
            "no device {} in twin '{}'; devices: {}",
            unknown.join(", "),
            config.twin.digital_twin_name,
            known.join(", ")
        )));
    }
    let layer = twin_config::Layer::L1;
    let provider_name = config.providers.get(layer);
    if provider_name == twin_config::ProviderName::None {
        return Err(CliError::Usage(format!(
            "the devices belong to layer {layer}, whose provider is `none`"
        )));
    }
    let targets: Vec<String> = if devices.is_empty() {
        known
    } else {
        devices.to_vec()
    };
    let providers = registry::providers(&config, cli).await?;
    let provider = providers
        .iter()
        .find(|p| p.name() == provider_name)
        .ok_or_else(|| CliError::Usage(format!("provider `{provider_name}` is not available")))?;
    let ops = provider.devices().ok_or_else(|| {
        CliError::Usage(format!(
            "provider `{}` has no device commands",
            provider_name.as_str()
        ))
    })?;
    // The state lock keeps a deploy or destroy from running at the same time; the recorded
    // scope keeps the rotation in the account and region the twin was deployed to (SPEC §10).
    let state = twin_engine::StateStore::open(&config.dir, &config.twin.digital_twin_name)?;
    let scope_text = |s: &twin_engine::Scope| {
        s.iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(recorded) = state.snapshot().scopes.get(provider_name.as_str()) {
        let current = provider.scope();
        if *recorded != current {
            return Err(twin_engine::EngineError::ScopeMismatch {
                provider: provider_name.to_string(),
                path: state.path().display().to_string(),
                recorded: scope_text(recorded),
                current: scope_text(&current),
            }
            .into());
        }
    }
    let retry = EngineOptions::default().retry;
    let mut rotated = Vec::new();
    for device in &targets {
        if !cli.quiet {
            eprintln!("rotating the certificate of {device}");
        }
        let r = ops
            .rotate_certificate(&config, device, &retry, cancel)
            .await?;
        if !cli.json {
            println!(
                "{device}: certificate {} replaced by {}",
                r.old_certificate_id.as_deref().unwrap_or("(none)"),
                r.new_certificate_id
            );
        }
        rotated.push(r);
    }
    if cli.json {
        output::json(&serde_json::json!({ "rotated": rotated }));
    }
    Ok(())
}

fn print_logs(cli: &Cli, lines: &[twin_engine::LogLine]) {
    if cli.json {
        output::json(&lines);
    } else {
        for l in lines {
            println!("{}", l.message.trim_end());
        }
    }
}

fn validate(cli: &Cli) -> Result<(), CliError> {
    let config = load_config(cli)?;
    let boundaries = crate::boundaries::statuses(&config);
    if cli.json {
        output::json(&serde_json::json!({
            "valid": true, "diagnostics": [],
            "boundaries": crate::boundaries::json(&boundaries),
        }));
    } else {
        let layers: Vec<String> = twin_config::Layer::IN_FILE_ORDER
            .iter()
            .map(|l| format!("{l}={}", config.providers.get(*l).as_str()))
            .collect();
        println!(
            "config OK: twin '{}', {} device(s), {}",
            config.twin.digital_twin_name,
            config.devices.len(),
            layers.join(" ")
        );
        let shown = crate::boundaries::text(&boundaries);
        if !shown.is_empty() {
            println!("{shown}");
        }
    }
    Ok(())
}

fn help(command: Option<&str>) -> Result<(), CliError> {
    match command {
        None => {
            for (name, text) in COMMANDS {
                println!("  {name:<14} {text}");
            }
            println!(
                "Global options: -C DIR, --json, -y, -v, -q. `help <command>` for one in full."
            );
            Ok(())
        }
        Some(name) => {
            let name = name.replace('-', "_");
            let mut cmd = Cli::command();
            let sub = cmd.find_subcommand_mut(&name).ok_or_else(|| {
                CliError::Usage(format!("no command `{name}`; `help` lists them"))
            })?;
            println!("{}", sub.render_long_help());
            Ok(())
        }
    }
}

/// Destroy asks in a terminal unless `-y`; without a terminal it requires `-y`.
fn confirm_destroy(
    cli: &Cli,
    config: &TwinConfig,
    layer: Option<twin_config::Layer>,
    scopes: &[String],
) -> Result<(), CliError> {
    if cli.yes {
        return Ok(());
    }
    let what = match layer {
        Some(l) => format!("layer {l} of twin '{}'", config.twin.digital_twin_name),
        None => format!("every resource of twin '{}'", config.twin.digital_twin_name),
    };
    // Which account and region: the one question that matters before deleting anything.
    let what = if scopes.is_empty() {
        what
    } else {
        format!("{what} in {}", scopes.join("; "))
    };
    if !std::io::stdin().is_terminal() {
        return Err(CliError::Usage(format!(
            "destroy would delete {what}; without a terminal to confirm, pass -y"
        )));
    }
    eprint!("Delete {what}? Type 'yes' to confirm: ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| CliError::Io(format!("cannot read the confirmation: {e}")))?;
    if answer.trim() == "yes" {
        Ok(())
    } else {
        Err(CliError::Usage(
            "destroy cancelled; nothing was deleted".into(),
        ))
    }
}

async fn engine(
    cli: &Cli,
    cancel: CancellationToken,
    show_unchanged: bool,
) -> Result<(Engine, Arc<Progress>, Arc<TwinConfig>), CliError> {
    let config = Arc::new(load_config(cli)?);
    let providers = registry::providers(&config, cli).await?;
    let progress = Arc::new(Progress::new(
        ProgressMode::detect(cli.quiet),
        show_unchanged,
    ));
    let engine = Engine::new(
        config.clone(),
        providers,
        EngineOptions::default(),
        progress.clone(),
        cancel,
    );
    Ok((engine, progress, config))
}

async fn function_ops(
    cli: &Cli,
    function: &str,
) -> Result<(Arc<dyn FunctionOps>, TwinConfig), CliError> {
    let config = load_config(cli)?;
    let names = function_names(&config);
    let layer = function_layer(function)
        .filter(|_| names.iter().any(|n| n == function))
        .ok_or_else(|| {
            CliError::Usage(format!(
                "no function `{function}` in this twin; functions: {}",
                names.join(", ")
            ))
        })?;
    let provider_name = config.providers.get(layer);
    if provider_name == twin_config::ProviderName::None {
        return Err(CliError::Usage(format!(
            "{function} belongs to layer {layer}, whose provider is `none`"
        )));
    }
    let problems = registry::unimplemented_layers(&config);
    if !problems.is_empty() {
        return Err(CliError::Config(twin_config::Diagnostics(problems)));
    }
    let provider = registry::provider(&config, cli, provider_name).await?;
    let ops = provider.functions().ok_or_else(|| {
        CliError::Usage(format!(
            "provider `{}` has no function commands",
            provider_name.as_str()
        ))
    })?;
    Ok((ops, config))
}
