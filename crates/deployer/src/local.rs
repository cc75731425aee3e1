//! `local up | down | status`: the local data plane under the emulator (the work is in
//! `twin-local`; this parses, checks, and renders), the hidden `local serve` that is the
//! detached runner, and pointing this process's Lambda client at a live runner's router.

use crate::cli::{Cli, LocalAction};
use crate::commands::load_config;
use crate::error::CliError;
use crate::output;
use std::sync::Arc;
use twin_config::{Layer, ProviderName};
use twin_local::runner::{self, RunnerConfig, RunnerInfo};
use twin_local::services::{HttpApiService, RuleBridgeService};
use twin_local::{LocalError, LocalPlane, UpAction};

/// When the emulator's endpoint is set and a live local runner in the twin's directory stands in
/// for that same emulator, points this process's Lambda client at its router
/// (`AWS_ENDPOINT_URL_LAMBDA`, which aws-config honours), so `lambda_invoke` reaches the real
/// functions. An explicit `AWS_ENDPOINT_URL_LAMBDA` is left alone. Call before any thread or
/// SDK config exists.
pub fn point_lambda_at_runner(cli: &Cli) {
    if matches!(cli.command, Some(crate::cli::Command::Local { .. })) {
        // The runner reads the emulator itself; `up`/`down` must not depend on an old runner.
        return;
    }
    let Some(endpoint) = std::env::var("AWS_ENDPOINT_URL")
        .ok()
        .filter(|e| !e.is_empty())
    else {
        return;
    };
    if std::env::var_os("AWS_ENDPOINT_URL_LAMBDA").is_some() {
        return;
    }
    let dir = runner::local_dir(&crate::commands::config_dir(cli));
    if let Some(info) = runner::live_runner(&dir, &endpoint) {
        tracing::debug!(router = %info.router_url(), "Lambda calls go to the local runner");
        // SAFETY of set_var: called from main before the async runtime or any other thread.
        unsafe { std::env::set_var("AWS_ENDPOINT_URL_LAMBDA", info.router_url()) };
    }
}

/// The runner's extra services for what is deployed: the topic rule bridge on the running
/// broker, the IoT data-plane shim publishing the functions' feedback to it, and the hot
/// reader's HTTP API.
async fn services(
    clients: &twin_aws::AwsClients,
    plane: &LocalPlane,
    twin: &str,
) -> Result<Vec<Box<dyn runner::LocalService>>, CliError> {
    let mut services: Vec<Box<dyn runner::LocalService>> = Vec::new();
    if let Some(rule) = twin_local::registered::read_rule(clients, twin)
        .await
        .map_err(local_error)?
    {
        let broker = plane.running_broker().ok_or_else(|| {
            CliError::Usage(
                "the local broker is not running: start the data plane with `deployer local up`"
                    .into(),
            )
        })?;
        services.push(Box::new(RuleBridgeService {
            config: twin_local::rule::BridgeConfig {
                port: broker.port,
                pki: plane.pki(),
                error_action: twin_local::rule::ErrorAction::of(&rule, Arc::new(clients.clone())),
                rule,
                publishers: broker.trusted,
            },
        }));
    }
    if let Some(broker) = plane.running_broker() {
        services.push(Box::new(
            twin_local::iot_data::IotDataService::bind(twin, broker.port, plane.pki())
                .map_err(local_error)?,
        ));
    }
    if let Some(api) = twin_local::http_api::read(clients, twin)
        .await
        .map_err(|e| {
            CliError::Local(LocalError::Service {
                name: twin_local::services::HTTP_API.into(),
                message: e.to_string(),
            })
        })?
    {
        services.push(Box::new(HttpApiService { api }));
    }
    Ok(services)
}

/// What the runner's services are configured from: the broker it bridges (port, trusted
/// devices) and the rule it applies; a change means the runner must start again.
async fn services_fingerprint(
    clients: &twin_aws::AwsClients,
    plane: &LocalPlane,
    twin: &str,
) -> Result<String, CliError> {
    use sha2::{Digest, Sha256};
    let rule = twin_local::registered::read_rule(clients, twin)
        .await
        .map_err(local_error)?;
    let broker = plane.running_broker();
    let mut h = Sha256::new();
    h.update(format!("{:?}", broker.map(|b| (b.port, b.fingerprint))).as_bytes());
    h.update(format!("{rule:?}").as_bytes());
    h.update(
        format!(
            "{:?}",
            twin_local::runtime::InstanceCounts::load(plane.dir()).per_function
        )
        .as_bytes(),
    );
    Ok(hex::encode(h.finalize()))
}

/// What `up` did with the runner.
#[derive(Debug, Clone, serde::Serialize)]
struct RunnerUp {
    action: UpAction,
    #[serde(flatten)]
    info: RunnerInfo,
}

/// Starts the runner detached, or restarts it when the deployed functions changed.
async fn runner_up(
    config: &twin_config::TwinConfig,
    clients: &twin_aws::AwsClients,
    plane: &LocalPlane,
) -> Result<RunnerUp, CliError> {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    let deployed = twin_local::functions::read_deployed(clients, &config.twin.digital_twin_name)
        .await
        .map_err(local_error)?;
    let fingerprint = twin_local::functions::fingerprint(&deployed);
    let services_fp = services_fingerprint(clients, plane, &config.twin.digital_twin_name).await?;
    let action = match runner::live_runner(plane.dir(), &endpoint) {
        Some(info)
            if info.fingerprint == fingerprint && info.services_fingerprint == services_fp =>
        {
            return Ok(RunnerUp {
                action: UpAction::Unchanged,
                info,
            })
        }
        Some(_) => {
            runner::stop(plane.dir()).map_err(local_error)?;
            UpAction::Restarted
        }
        None => UpAction::Started,
    };
    let exe = std::env::current_exe().map_err(|e| {
        CliError::Local(LocalError::Io {
            path: "deployer".into(),
            message: format!("cannot find this program to start the local runner: {e}"),
        })
    })?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("-C").arg(&config.dir).args(["local", "serve"]);
    // This process may point its own Lambda client at the runner being replaced (after a
    // deploy); the new runner talks to the emulator itself.
    cmd.env_remove("AWS_ENDPOINT_URL_LAMBDA");
    let dir = plane.dir().to_path_buf();
    let info = tokio::task::spawn_blocking(move || {
        runner::start_detached(cmd, &dir, runner::START_WITHIN)
    })
    .await
    .map_err(|e| CliError::Local(LocalError::Router(format!("the start task failed: {e}"))))?
    .map_err(local_error)?;
    Ok(RunnerUp { action, info })
}

fn print_runner(r: &RunnerInfo) {
    println!(
        "local runner: Lambda API router http://127.0.0.1:{} (pid {}), runtime API 127.0.0.1:{}",
        r.router_port, r.pid, r.runtime_port
    );
    for f in &r.functions {
        let pids: Vec<String> = f
            .instances
            .iter()
            .map(|i| {
                i.pid
                    .map_or_else(|| "restarting".to_string(), |p| p.to_string())
            })
            .collect();
        println!(
            "  {}: {} instance(s) (pids {})",
            f.name,
            f.instances.len(),
            pids.join(", ")
        );
    }
    for s in &r.services {
        match s.port {
            Some(p) => println!("  {}: 127.0.0.1:{p} ({})", s.name, s.status),
            None => println!("  {}: {}", s.name, s.status),
        }
    }
}

fn local_error(e: LocalError) -> CliError {
    match e {
        LocalError::NotEmulator => CliError::Usage(e.to_string()),
        other => CliError::Local(other),
    }
}

/// Runs one `local` action for the twin in the config directory.
pub async fn run(cli: &Cli, action: LocalAction, instances: Option<&str>) -> Result<(), CliError> {
    let config = load_config(cli)?;
    let plane = LocalPlane::new(&config.dir, &config.twin.digital_twin_name);
    if instances.is_some() && action != LocalAction::Up {
        return Err(CliError::Usage("--instances goes with `local up`".into()));
    }
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
            if let Some(text) = instances {
                let counts = twin_local::runtime::InstanceCounts::parse(
                    &config.twin.digital_twin_name,
                    text,
                )
                .map_err(|e| CliError::Usage(format!("--instances: {e}")))?;
                counts.save(plane.dir()).map_err(local_error)?;
            }
            let clients = twin_aws::AwsClients::load(Some(&config.providers.aws)).await?;
            let r = plane.up(&clients).await.map_err(local_error)?;
            let run = runner_up(&config, &clients, &plane).await?;
            if cli.json {
                output::json(&serde_json::json!({"broker": r, "runner": run}));
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
            let what = match run.action {
                UpAction::Started => "started",
                UpAction::Restarted => "restarted (the deployed functions changed)",
                UpAction::Unchanged => "already running, nothing changed",
            };
            println!("local runner {what}");
            print_runner(&run.info);
            if r.simulator_pointed {
                println!(
                    "simulator config now points at the local broker (`local down` restores it)"
                );
            }
            Ok(())
        }
        LocalAction::Down => {
            let runner_stopped = runner::stop(plane.dir()).map_err(local_error)?;
            let stopped = plane.down().map_err(local_error)?;
            if cli.json {
                output::json(
                    &serde_json::json!({ "stopped": stopped, "runner_stopped": runner_stopped }),
                );
                return Ok(());
            }
            if runner_stopped {
                println!("local runner stopped");
            }
            if stopped {
                println!("local broker stopped; simulator config restored");
            } else {
                println!("local broker was not running");
            }
            Ok(())
        }
        LocalAction::Serve => {
            let Some(endpoint) = std::env::var("AWS_ENDPOINT_URL")
                .ok()
                .filter(|e| !e.is_empty())
            else {
                return Err(local_error(LocalError::NotEmulator));
            };
            let clients = twin_aws::AwsClients::load(Some(&config.providers.aws)).await?;
            let twin = config.twin.digital_twin_name.clone();
            let services_fingerprint = services_fingerprint(&clients, &plane, &twin).await?;
            let services = services(&clients, &plane, &twin).await?;
            runner::run(RunnerConfig {
                config_dir: config.dir.clone(),
                twin: config.twin.digital_twin_name.clone(),
                clients: Arc::new(clients),
                endpoint,
                instances: twin_local::runtime::InstanceCounts::load(plane.dir()),
                services,
                services_fingerprint,
                cancel: tokio_util::sync::CancellationToken::new(),
                handle_signals: true,
            })
            .await
            .map_err(local_error)
        }
        LocalAction::Status => {
            let s = plane.status();
            let run = runner::read_info(plane.dir()).filter(runner::is_alive);
            let rule = run
                .as_ref()
                .and_then(|_| twin_local::services::rule_status(plane.dir()));
            let api = run
                .as_ref()
                .and_then(|r| r.service_url(twin_local::services::HTTP_API));
            if cli.json {
                output::json(&serde_json::json!({
                    "broker": s, "runner": run, "rule": rule, "http_api_url": api,
                }));
                return Ok(());
            }
            match &run {
                Some(r) => print_runner(r),
                None => println!("local runner stopped"),
            }
            if let Some(r) = &rule {
                println!(
                    "topic rule: {} received, {} delivered to the dispatcher, {} skipped by WHERE, {} rejected{}",
                    r.received,
                    r.delivered,
                    r.skipped,
                    r.rejected,
                    if r.connected { "" } else { " (not connected to the broker)" }
                );
                for (reason, n) in &r.rejected_by_reason {
                    println!("  rejected {n}: {reason}");
                }
            }
            if let Some(url) = &api {
                println!("hot-reader API: {url}");
            }
            if s.running {
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

/// What `info` says about the local data plane: nothing when the twin is not on an emulator
/// and has never run one, else where it runs and what it carried (`local status` has the rest).
pub fn info_lines(config: &twin_config::TwinConfig) -> Option<String> {
    let plane = LocalPlane::new(&config.dir, &config.twin.digital_twin_name);
    let on_emulator = std::env::var_os("AWS_ENDPOINT_URL").is_some();
    if !on_emulator && !plane.dir().exists() {
        return None;
    }
    let broker = plane.status();
    let run = runner::read_info(plane.dir()).filter(runner::is_alive);
    if !broker.running && run.is_none() {
        return Some("local data plane: stopped (`deployer local up` starts it)".into());
    }
    let mut out = String::from("local data plane:");
    if broker.running {
        out.push_str(&format!(
            "\n  broker (IoT Core): 127.0.0.1:{}, {} device(s) trusted, {} publish(es) denied by policy",
            broker.port.unwrap_or_default(),
            broker.trusted.len(),
            broker.denied_publishes
        ));
    } else {
        out.push_str("\n  broker (IoT Core): stopped");
    }
    match &run {
        Some(r) => {
            let instances: usize = r.functions.iter().map(|f| f.instances.len()).sum();
            out.push_str(&format!(
                "\n  functions: {} running ({} instance(s)), Lambda API http://127.0.0.1:{}",
                r.functions.len(),
                instances,
                r.router_port
            ));
            if let Some(rule) = twin_local::services::rule_status(plane.dir()) {
                out.push_str(&format!(
                    "\n  topic rule: {} delivered to the dispatcher, {} rejected",
                    rule.delivered, rule.rejected
                ));
            }
            if let Some(url) = r.service_url(twin_local::services::HTTP_API) {
                out.push_str(&format!("\n  hot-reader API: {url}"));
            }
        }
        None => out.push_str("\n  functions: stopped"),
    }
    Some(out)
}

/// After a deploy under the emulator, a running local data plane is brought up to date with
/// what is deployed now (new certificates, policies, function code or environment), so it keeps
/// carrying data across re-deploys. Said on stderr; a failure is a warning, the deploy stands.
pub async fn refresh_after_deploy(config: &twin_config::TwinConfig) {
    let plane = LocalPlane::new(&config.dir, &config.twin.digital_twin_name);
    let Some(endpoint) = std::env::var("AWS_ENDPOINT_URL")
        .ok()
        .filter(|e| !e.is_empty())
    else {
        return;
    };
    let running = plane.status().running || runner::live_runner(plane.dir(), &endpoint).is_some();
    if !running {
        return;
    }
    let outcome = async {
        let clients = twin_aws::AwsClients::load(Some(&config.providers.aws)).await?;
        let broker = plane.up(&clients).await.map_err(local_error)?;
        let run = runner_up(config, &clients, &plane).await?;
        Ok::<_, CliError>((broker.action, run.action))
    }
    .await;
    match outcome {
        Ok((UpAction::Unchanged, UpAction::Unchanged)) => {}
        Ok((broker, run)) => eprintln!(
            "local data plane brought up to date: broker {}, functions {}",
            action_word(broker),
            action_word(run)
        ),
        Err(e) => eprintln!(
            "warning: the local data plane could not be brought up to date ({e}); run `deployer local up`"
        ),
    }
}

/// After a whole twin is destroyed, its local data plane (processes, ports) is stopped too:
/// nothing of the twin is left running.
pub fn stop_after_destroy(config: &twin_config::TwinConfig) {
    let plane = LocalPlane::new(&config.dir, &config.twin.digital_twin_name);
    let runner_stopped = runner::stop(plane.dir());
    let broker_stopped = plane.down();
    match (runner_stopped, broker_stopped) {
        (Ok(false), Ok(false)) => {}
        (Ok(_), Ok(_)) => eprintln!("local data plane stopped"),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("warning: the local data plane could not be stopped ({e}); run `deployer local down`")
        }
    }
}

fn action_word(a: UpAction) -> &'static str {
    match a {
        UpAction::Started => "started",
        UpAction::Restarted => "restarted",
        UpAction::Unchanged => "unchanged",
    }
}
