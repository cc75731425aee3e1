//! The local runner: one long-running process that runs the twin's deployed functions for real
//! (cargo-lambda's runtime API plus supervised `bootstrap` instances), fronts them with the
//! Lambda API router, ships their logs to the emulator's CloudWatch Logs, starts the extra
//! services (MQTT rule bridge, HTTP API stand-in, ...) given to it, and writes
//! `.deployer/local/runner.json` once all of it is ready. Also the control side used by
//! `deployer local up|down|status`: start detached, wait until ready, stop, read the state.

use crate::cloudwatch;
use crate::functions::{self, DeployedFunction};
use crate::router::{self, Routed, Upstreams};
use crate::runtime::{self, InstanceCounts, InstanceEnv, InstanceState, InstanceTable, Supervised};
use crate::LocalError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use twin_aws::AwsClients;

/// What an extra service is given when the runner starts it.
#[derive(Debug, Clone)]
pub struct ServiceContext {
    /// The router's URL: the Lambda endpoint to invoke the twin's functions through.
    pub router_url: String,
    /// The emulator's endpoint (`AWS_ENDPOINT_URL`).
    pub endpoint: String,
    /// `.deployer/local/`.
    pub local_dir: PathBuf,
    /// The twin's name.
    pub twin: String,
    /// Cancelled when the runner stops: the service ends its task then.
    pub cancel: CancellationToken,
}

/// A started extra service: what `runner.json` says about it, and its task.
pub struct StartedService {
    /// Its name (e.g. `rule-bridge`, `http-api`).
    pub name: String,
    /// Its port on 127.0.0.1, if it listens.
    pub port: Option<u16>,
    /// A short status for `local status`.
    pub status: String,
    /// Runs until the context's token is cancelled; an error ends the runner.
    pub task: tokio::task::JoinHandle<Result<(), LocalError>>,
}

/// An extra service the runner starts once the router is up (the MQTT rule bridge and the
/// HTTP API stand-in plug in here).
#[async_trait::async_trait]
pub trait LocalService: Send + Sync {
    /// Its name, for errors and `runner.json`.
    fn name(&self) -> String;
    /// Environment variables the twin's functions get because this service runs (e.g. the
    /// IoT data-plane shim's URL); asked before the functions start, so before [`Self::start`].
    fn function_env(&self) -> Vec<(String, String)> {
        Vec::new()
    }
    /// Starts it; returns once it is ready to serve.
    async fn start(self: Box<Self>, ctx: ServiceContext) -> Result<StartedService, LocalError>;
}

/// Everything the runner needs.
pub struct RunnerConfig {
    /// The twin's config directory (state goes to `<dir>/.deployer/local/`).
    pub config_dir: PathBuf,
    /// The twin's name.
    pub twin: String,
    /// Clients of the emulator.
    pub clients: Arc<AwsClients>,
    /// The emulator's endpoint URL (`AWS_ENDPOINT_URL`).
    pub endpoint: String,
    /// Instances per function.
    pub instances: InstanceCounts,
    /// Extra services to start with the router's URL.
    pub services: Vec<Box<dyn LocalService>>,
    /// A fingerprint of what the services were configured from (broker, rule), kept in
    /// `runner.json` so `up` can tell when they must be started again.
    pub services_fingerprint: String,
    /// Stops the runner (besides SIGTERM/SIGINT when `handle_signals`).
    pub cancel: CancellationToken,
    /// Whether SIGTERM and SIGINT stop the runner (the detached process; not tests).
    pub handle_signals: bool,
}

/// One function in `runner.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FunctionInfo {
    /// Its deployed name.
    pub name: String,
    /// The code it runs.
    pub code_sha256: String,
    /// Its instances.
    pub instances: Vec<InstanceState>,
    /// Its local log file.
    pub log: PathBuf,
}

/// One extra service in `runner.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceInfo {
    /// Its name.
    pub name: String,
    /// Its port, if any.
    pub port: Option<u16>,
    /// Its status.
    pub status: String,
}

/// `runner.json`: where everything runs (never secrets).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunnerInfo {
    /// The runner's pid.
    pub pid: u32,
    /// The emulator it stands in for.
    pub endpoint: String,
    /// The router's port on 127.0.0.1.
    pub router_port: u16,
    /// cargo-lambda's port on 127.0.0.1.
    pub runtime_port: u16,
    /// cargo-lambda's pid.
    pub runtime_pid: Option<u32>,
    /// Fingerprint of the deployed functions it runs (see [`functions::fingerprint`]).
    pub fingerprint: String,
    /// The functions and their instances.
    pub functions: Vec<FunctionInfo>,
    /// Extra services.
    pub services: Vec<ServiceInfo>,
    /// What the services were configured from (see [`RunnerConfig::services_fingerprint`]).
    #[serde(default)]
    pub services_fingerprint: String,
}

impl RunnerInfo {
    /// The URL of the extra service `name` that listens on a port.
    pub fn service_url(&self, name: &str) -> Option<String> {
        self.services
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| s.port)
            .map(|p| format!("http://127.0.0.1:{p}"))
    }
}

impl RunnerInfo {
    /// The router's URL.
    pub fn router_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.router_port)
    }
}

/// `.deployer/local/` of a config directory.
pub fn local_dir(config_dir: &Path) -> PathBuf {
    config_dir.join(".deployer").join("local")
}

/// `runner.json` in `local_dir`.
pub fn info_path(local_dir: &Path) -> PathBuf {
    local_dir.join("runner.json")
}

/// The runner's own log (the detached process's stdout and stderr).
pub fn log_path(local_dir: &Path) -> PathBuf {
    local_dir.join("runner.log")
}

/// Reads `runner.json`, if any.
pub fn read_info(local_dir: &Path) -> Option<RunnerInfo> {
    let text = std::fs::read_to_string(info_path(local_dir)).ok()?;
    serde_json::from_str(&text).ok()
}

fn write_info(local_dir: &Path, info: &RunnerInfo) -> Result<(), LocalError> {
    let path = info_path(local_dir);
    let text = serde_json::to_string_pretty(info).map_err(|e| LocalError::Io {
        path: path.clone(),
        message: e.to_string(),
    })?;
    // Written aside and renamed: a reader never sees half a file.
    let partial = local_dir.join("runner.json.partial");
    std::fs::write(&partial, text).map_err(|e| io(&partial, e))?;
    std::fs::rename(&partial, &path).map_err(|e| io(&path, e))
}

fn io(path: &Path, e: std::io::Error) -> LocalError {
    LocalError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Whether `pid` is a live process (not gone, not a zombie).
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Whether the runner `info` describes is alive: its process lives and its router accepts.
pub fn is_alive(info: &RunnerInfo) -> bool {
    pid_alive(info.pid)
        && std::net::TcpStream::connect_timeout(
            &std::net::SocketAddr::from(([127, 0, 0, 1], info.router_port)),
            Duration::from_secs(1),
        )
        .is_ok()
}

/// The live runner for `endpoint` in `local_dir`, if there is one.
pub fn live_runner(local_dir: &Path, endpoint: &str) -> Option<RunnerInfo> {
    read_info(local_dir).filter(|i| {
        i.endpoint.trim_end_matches('/') == endpoint.trim_end_matches('/') && is_alive(i)
    })
}

fn free_listener() -> Result<std::net::TcpListener, LocalError> {
    std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| LocalError::NoPort(e.to_string()))
}

/// Runs the functions, the router and the extra services until cancelled or signalled.
pub async fn run(mut config: RunnerConfig) -> Result<(), LocalError> {
    let services = std::mem::take(&mut config.services);
    if !config.clients.endpoint_override {
        return Err(LocalError::NotEmulator);
    }
    let dir = local_dir(&config.config_dir);
    std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
    // Not ready yet: a stale file of an earlier runner must not be taken for this one.
    match std::fs::remove_file(info_path(&dir)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(&info_path(&dir), e)),
    }
    let clients = &config.clients;
    let deployed = functions::read_deployed(clients, &config.twin).await?;
    if deployed.is_empty() {
        return Err(LocalError::NoFunctions {
            twin: config.twin.clone(),
        });
    }
    let mut bootstraps = Vec::new();
    for f in &deployed {
        bootstraps.push(functions::fetch_code(clients, &dir, f).await?);
    }
    let stop = config.cancel.child_token();
    let logs_dir = dir.join("logs");
    let (sink, shipper) = cloudwatch::start(&logs_dir, clients.logs.clone(), stop.clone())?;
    let runtime_port = free_listener()?
        .local_addr()
        .map_err(|e| LocalError::NoPort(e.to_string()))?
        .port();
    let mut api = runtime::RuntimeApi::start(
        &dir.join("runtime"),
        &deployed,
        runtime_port,
        &logs_dir.join("cargo-lambda.log"),
    )
    .await?;
    let outcome = serve(
        &config,
        services,
        &dir,
        &deployed,
        bootstraps,
        sink,
        &mut api,
        stop.clone(),
    )
    .await;
    stop.cancel();
    api.stop().await;
    let _ = shipper.await;
    // Only our own file: a newer runner may have written its own meanwhile.
    if read_info(&dir).is_some_and(|i| i.pid == std::process::id()) {
        let _ = std::fs::remove_file(info_path(&dir));
    }
    outcome
}

#[allow(clippy::too_many_arguments)]
async fn serve(
    config: &RunnerConfig,
    services: Vec<Box<dyn LocalService>>,
    dir: &Path,
    deployed: &[DeployedFunction],
    bootstraps: Vec<PathBuf>,
    sink: cloudwatch::LogSink,
    api: &mut runtime::RuntimeApi,
    stop: CancellationToken,
) -> Result<(), LocalError> {
    let std_listener = free_listener()?;
    std_listener
        .set_nonblocking(true)
        .map_err(|e| LocalError::Router(e.to_string()))?;
    let listener = tokio::net::TcpListener::from_std(std_listener)
        .map_err(|e| LocalError::Router(e.to_string()))?;
    let router_port = listener
        .local_addr()
        .map_err(|e| LocalError::Router(e.to_string()))?
        .port();
    let router_url = format!("http://127.0.0.1:{router_port}");
    let emulator = router::emulator_authority(&config.endpoint)?;
    let counts: Vec<usize> = deployed
        .iter()
        .map(|f| config.instances.of(&config.twin, &f.name))
        .collect();
    let routed =
        deployed
            .iter()
            .zip(&counts)
            .map(|(f, n)| Routed {
                name: f.name.clone(),
                arn: f.arn.clone(),
                timeout: Duration::from_secs(u64::try_from(f.timeout_s.max(1)).unwrap_or(3) + 2),
                workers: *n,
                retries: f
                    .async_settings
                    .max_retries
                    .unwrap_or(router::EVENT_FUNCTION_RETRIES),
                max_age: f
                    .async_settings
                    .max_event_age_s
                    .map_or(router::EVENT_MAX_AGE, |s| Duration::from_secs(u64::from(s))),
                on_failure: f.async_settings.on_failure.clone().map(|queue_arn| {
                    router::OnFailure {
                        queue_arn,
                        clients: config.clients.clone(),
                    }
                }),
            })
            .collect();
    let router_task = tokio::spawn(router::serve(
        listener,
        Upstreams {
            emulator,
            runtime_port: api.port,
        },
        routed,
        stop.clone(),
    ));

    let table: InstanceTable = Arc::new(Mutex::new(
        deployed
            .iter()
            .zip(&counts)
            .map(|(f, n)| {
                (
                    f.name.clone(),
                    (0..*n)
                        .map(|index| InstanceState {
                            index,
                            ..InstanceState::default()
                        })
                        .collect(),
                )
            })
            .collect::<BTreeMap<_, _>>(),
    ));
    let ready = Arc::new(AtomicBool::new(false));
    let base = Arc::new(Mutex::new(RunnerInfo {
        pid: std::process::id(),
        endpoint: config.endpoint.clone(),
        router_port,
        runtime_port: api.port,
        runtime_pid: api.pid(),
        fingerprint: functions::fingerprint(deployed),
        functions: Vec::new(),
        services: Vec::new(),
        services_fingerprint: config.services_fingerprint.clone(),
    }));
    let render = {
        let (table, base, dir, ready) = (
            table.clone(),
            base.clone(),
            dir.to_path_buf(),
            ready.clone(),
        );
        let deployed = deployed.to_vec();
        Arc::new(move || {
            if !ready.load(Ordering::SeqCst) {
                return;
            }
            let table = runtime::lock(&table).clone();
            let mut info = runtime::lock(&base).clone();
            info.functions = deployed
                .iter()
                .map(|f| FunctionInfo {
                    name: f.name.clone(),
                    code_sha256: f.code_sha256.clone(),
                    instances: table.get(&f.name).cloned().unwrap_or_default(),
                    log: cloudwatch::LogSink::file_of(&dir.join("logs"), &f.name),
                })
                .collect();
            if let Err(e) = write_info(&dir, &info) {
                tracing::warn!(error = %e, "cannot update runner.json");
            }
        }) as Arc<dyn Fn() + Send + Sync>
    };
    let (access_key_id, secret_access_key) = credentials();
    let extra = services.iter().flat_map(|s| s.function_env()).collect();
    let env = InstanceEnv {
        extra,
        runtime_port: api.port,
        endpoint: config.endpoint.clone(),
        router_url: router_url.clone(),
        region: config.clients.region.clone(),
        access_key_id,
        secret_access_key,
    };
    let mut supervisors = Vec::new();
    for ((f, bootstrap), n) in deployed.iter().zip(bootstraps).zip(&counts) {
        for index in 0..*n {
            supervisors.push(tokio::spawn(runtime::supervise(
                Supervised {
                    function: f.clone(),
                    bootstrap: bootstrap.clone(),
                    index,
                    env: env.clone(),
                    sink: sink.clone(),
                    table: table.clone(),
                    on_change: render.clone(),
                },
                stop.clone(),
            )));
        }
    }
    // Every instance has been started once (or failed to start, which its supervisor retries).
    wait_all_started(&table, &counts, Duration::from_secs(10)).await;

    // Extra services (the MQTT rule bridge, the HTTP API stand-in, ...) start here, given the
    // router's URL; their ports and status go into runner.json.
    let mut service_tasks = Vec::new();
    let mut services_info = Vec::new();
    let ctx = ServiceContext {
        router_url: router_url.clone(),
        endpoint: config.endpoint.clone(),
        local_dir: dir.to_path_buf(),
        twin: config.twin.clone(),
        cancel: stop.clone(),
    };
    for service in services {
        let name = service.name();
        let started = service
            .start(ctx.clone())
            .await
            .map_err(|e| LocalError::Service {
                name: name.clone(),
                message: e.to_string(),
            })?;
        services_info.push(ServiceInfo {
            name: started.name.clone(),
            port: started.port,
            status: started.status.clone(),
        });
        service_tasks.push((started.name, started.task));
    }
    runtime::lock(&base).services = services_info;
    ready.store(true, Ordering::SeqCst);
    render();
    tracing::info!(router = %router_url, runtime_port = api.port, functions = deployed.len(), "local runner ready");

    let outcome = wait_for_stop(config, api, &stop, &mut service_tasks).await;
    stop.cancel();
    for s in supervisors {
        let _ = s.await;
    }
    let _ = router_task.await;
    for (_, t) in service_tasks {
        let _ = t.await;
    }
    outcome
}

async fn wait_all_started(table: &InstanceTable, counts: &[usize], within: Duration) {
    let want: usize = counts.iter().sum();
    let deadline = Instant::now() + within;
    let mut delay = Duration::from_millis(5);
    loop {
        let started = runtime::lock(table)
            .values()
            .flatten()
            .filter(|i| i.starts > 0)
            .count();
        if started >= want || Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(delay).await; // poll backoff
        delay = (delay * 2).min(Duration::from_millis(100));
    }
}

/// Waits for the token, a signal (when asked), cargo-lambda's end or a service's end.
async fn wait_for_stop(
    config: &RunnerConfig,
    api: &mut runtime::RuntimeApi,
    stop: &CancellationToken,
    services: &mut [(String, tokio::task::JoinHandle<Result<(), LocalError>>)],
) -> Result<(), LocalError> {
    let signals = async {
        if !config.handle_signals {
            return std::future::pending::<()>().await;
        }
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => std::future::pending::<()>().await,
        }
    };
    tokio::pin!(signals);
    let mut check = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            () = &mut signals => return Ok(()),
            _ = check.tick() => {
                // The twin's directory is gone (a deleted checkout or test directory): nothing
                // can stop this runner through `local down` any more, so it stops itself.
                if !config.config_dir.exists() {
                    tracing::warn!(dir = %config.config_dir.display(), "the twin's directory is gone; stopping");
                    return Ok(());
                }
                if let Some(how) = api.exited() {
                    return Err(LocalError::RuntimeExited {
                        what: format!("cargo-lambda ({how})"),
                        log: local_dir(&config.config_dir).join("logs/cargo-lambda.log"),
                        tail: runtime::log_tail(&local_dir(&config.config_dir).join("logs/cargo-lambda.log")),
                    });
                }
                for (name, task) in services.iter_mut() {
                    if task.is_finished() {
                        let result = task.await;
                        let message = match result {
                            Ok(Ok(())) => "ended".to_string(),
                            Ok(Err(e)) => e.to_string(),
                            Err(e) => e.to_string(),
                        };
                        return Err(LocalError::Service { name: name.clone(), message });
                    }
                }
            }
        }
    }
}

/// The credentials the functions get: the caller's if set (the emulator accepts any), else
/// `testing`.
fn credentials() -> (String, String) {
    let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    (
        get("AWS_ACCESS_KEY_ID").unwrap_or_else(|| "testing".into()),
        get("AWS_SECRET_ACCESS_KEY").unwrap_or_else(|| "testing".into()),
    )
}

/// How long `up` waits for a detached runner to be ready (downloads, cargo-lambda start).
pub const START_WITHIN: Duration = Duration::from_secs(120);

/// Starts `command` (the deployer's hidden `local serve`) detached, in its own session, its
/// output appended to `runner.log`; waits (polling, with a deadline) until it wrote its
/// `runner.json`, reporting the log's tail if it exits first.
pub fn start_detached(
    mut command: std::process::Command,
    local_dir: &Path,
    within: Duration,
) -> Result<RunnerInfo, LocalError> {
    std::fs::create_dir_all(local_dir).map_err(|e| io(local_dir, e))?;
    let log = log_path(local_dir);
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(|e| io(&log, e))?;
    let err = out.try_clone().map_err(|e| io(&log, e))?;
    match std::fs::remove_file(info_path(local_dir)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(&info_path(local_dir), e)),
    }
    command
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err);
    // SAFETY: setsid(2) is async-signal-safe; it only detaches the child from our terminal
    // and process group, so Ctrl-C in the shell that ran `local up` does not reach it.
    unsafe {
        use std::os::unix::process::CommandExt;
        command.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = command.spawn().map_err(|e| LocalError::Io {
        path: PathBuf::from(command.get_program()),
        message: format!("cannot start the local runner: {e}"),
    })?;
    let pid = child.id();
    let deadline = Instant::now() + within;
    let mut delay = Duration::from_millis(20);
    loop {
        if let Some(info) = read_info(local_dir).filter(|i| i.pid == pid) {
            // Reaps it if it ends while this process lives; when we exit, init adopts it.
            std::thread::spawn(move || child.wait());
            return Ok(info);
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(LocalError::RunnerExited {
                status: status.to_string(),
                log: log.clone(),
                tail: runtime::log_tail(&log),
            });
        }
        if Instant::now() >= deadline {
            let _ = stop_pid(pid);
            let _ = child.wait();
            return Err(LocalError::RunnerNotReady {
                pid,
                within,
                log: log.clone(),
                tail: runtime::log_tail(&log),
            });
        }
        std::thread::sleep(delay); // poll backoff
        delay = (delay * 2).min(Duration::from_millis(250));
    }
}

/// SIGTERM, wait (polling, with a deadline) until gone, SIGKILL if it does not end in time.
fn stop_pid(pid: u32) -> Result<(), LocalError> {
    let Ok(raw) = libc::pid_t::try_from(pid) else {
        return Ok(());
    };
    for (signal, within) in [
        (libc::SIGTERM, Duration::from_secs(20)),
        (libc::SIGKILL, Duration::from_secs(5)),
    ] {
        if !pid_alive(pid) {
            return Ok(());
        }
        // SAFETY: kill(2) on the pid runner.json names, checked alive just above.
        unsafe { libc::kill(raw, signal) };
        let deadline = Instant::now() + within;
        let mut delay = Duration::from_millis(5);
        while pid_alive(pid) && Instant::now() < deadline {
            std::thread::sleep(delay); // poll backoff
            delay = (delay * 2).min(Duration::from_millis(200));
        }
    }
    if pid_alive(pid) {
        return Err(LocalError::StopFailed { pid });
    }
    Ok(())
}

/// Stops the runner `runner.json` names (if alive) and removes the file; returns whether a
/// runner was stopped.
pub fn stop(local_dir: &Path) -> Result<bool, LocalError> {
    let Some(info) = read_info(local_dir) else {
        return Ok(false);
    };
    let alive = is_alive(&info);
    if alive {
        stop_pid(info.pid)?;
    }
    match std::fs::remove_file(info_path(local_dir)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(&info_path(local_dir), e)),
    }
    Ok(alive)
}
