//! The Lambda runtime API (cargo-lambda's emulator, `watch --only-lambda-apis`) and the
//! functions' `bootstrap` instances polling it, supervised: a crashed instance is restarted with
//! backoff, and everything is stopped with SIGTERM, then SIGKILL after a deadline.

use crate::cloudwatch::{LogLine, LogSink};
use crate::functions::DeployedFunction;
use crate::LocalError;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

/// How long a process gets between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// How long cargo-lambda gets to accept connections.
const RUNTIME_READY_WITHIN: Duration = Duration::from_secs(60);

/// The cargo-lambda binary: `$TWIN_VENV/bin/cargo-lambda`, else `.venv/bin/cargo-lambda` in the
/// current directory, the deployer binary's directory or one of their ancestors (the repo), else
/// `$PATH`.
pub fn cargo_lambda_binary() -> Result<PathBuf, LocalError> {
    let mut candidates = Vec::new();
    if let Some(venv) = std::env::var_os("TWIN_VENV") {
        candidates.push(PathBuf::from(venv).join("bin/cargo-lambda"));
    }
    let mut roots = Vec::new();
    if let Ok(dir) = std::env::current_dir() {
        roots.push(dir);
    }
    if let Ok(exe) = std::env::current_exe() {
        roots.push(exe);
    }
    for root in roots {
        for a in root.ancestors() {
            candidates.push(a.join(".venv/bin/cargo-lambda"));
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("cargo-lambda")));
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .ok_or(LocalError::CargoLambdaMissing)
}

/// The manifest cargo-lambda needs: it only accepts invocations of binary targets of the
/// manifest in its working directory, so each deployed function is one (never built).
pub fn render_manifest(functions: &[DeployedFunction]) -> String {
    let mut out = String::from(
        "# Written by the deployer's local runner: cargo-lambda's emulator only serves functions\n\
         # that are binary targets of this manifest. Nothing here is ever built.\n\
         [package]\nname = \"twin-local-functions\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n\
         # Not a member of any enclosing workspace.\n[workspace]\n",
    );
    for f in functions {
        out.push_str(&format!(
            "\n[[bin]]\nname = {}\npath = \"src/main.rs\"\n",
            toml_string(&f.name)
        ));
    }
    out
}

fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> LocalError + '_ {
    move |e| LocalError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// The running emulator of the Lambda runtime and invoke APIs.
pub struct RuntimeApi {
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: Child,
    log: PathBuf,
}

impl RuntimeApi {
    /// Writes the manifest in `dir` and starts cargo-lambda there on `port`, logging to `log`;
    /// returns once it accepts connections.
    pub async fn start(
        dir: &Path,
        functions: &[DeployedFunction],
        port: u16,
        log: &Path,
    ) -> Result<RuntimeApi, LocalError> {
        let bin = cargo_lambda_binary()?;
        std::fs::create_dir_all(dir.join("src")).map_err(io_err(dir))?;
        let manifest = dir.join("Cargo.toml");
        std::fs::write(&manifest, render_manifest(functions)).map_err(io_err(&manifest))?;
        let main = dir.join("src/main.rs");
        std::fs::write(&main, "fn main() {}\n").map_err(io_err(&main))?;
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(io_err(log))?;
        let err = out.try_clone().map_err(io_err(log))?;
        let mut cmd = Command::new(&bin);
        cmd.args([
            "lambda",
            "watch",
            "--only-lambda-apis",
            "-A",
            "127.0.0.1",
            "-P",
        ])
        .arg(port.to_string())
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true);
        // cargo-lambda runs `cargo metadata`: cargo must be findable even when the runner was
        // started from an environment without ~/.cargo/bin on PATH.
        if let Some(home) = std::env::var_os("HOME") {
            let mut paths: Vec<PathBuf> = std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).collect())
                .unwrap_or_default();
            paths.push(PathBuf::from(home).join(".cargo/bin"));
            if let Ok(joined) = std::env::join_paths(paths) {
                cmd.env("PATH", joined);
            }
        }
        let child = cmd.spawn().map_err(|e| LocalError::Io {
            path: bin.clone(),
            message: format!("cannot start cargo-lambda: {e}"),
        })?;
        let mut api = RuntimeApi {
            port,
            child,
            log: log.to_path_buf(),
        };
        api.wait_ready().await?;
        Ok(api)
    }

    /// Polls (with backoff) until cargo-lambda accepts a connection, it exits, or the deadline.
    async fn wait_ready(&mut self) -> Result<(), LocalError> {
        let deadline = Instant::now() + RUNTIME_READY_WITHIN;
        let mut delay = Duration::from_millis(20);
        loop {
            let last = match tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await {
                Ok(_) => return Ok(()),
                Err(e) => e.to_string(),
            };
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(LocalError::RuntimeExited {
                    what: format!("cargo-lambda ({status})"),
                    log: self.log.clone(),
                    tail: log_tail(&self.log),
                });
            }
            if Instant::now() >= deadline {
                return Err(LocalError::RuntimeNotReady {
                    port: self.port,
                    within: RUNTIME_READY_WITHIN,
                    last,
                    tail: log_tail(&self.log),
                });
            }
            tokio::time::sleep(delay).await; // poll backoff
            delay = (delay * 2).min(Duration::from_millis(500));
        }
    }

    /// cargo-lambda's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Whether cargo-lambda has ended (and how).
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(e.to_string()),
        }
    }

    /// SIGTERM, then SIGKILL after [`STOP_GRACE`].
    pub async fn stop(mut self) {
        stop_child(&mut self.child, STOP_GRACE).await;
    }
}

/// The last lines of a log file (for error messages).
pub fn log_tail(path: &Path) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Sends SIGTERM and waits up to `grace` for the child to end, then SIGKILLs and reaps it.
pub async fn stop_child(child: &mut Child, grace: Duration) {
    if let Some(pid) = child.id().and_then(|p| libc::pid_t::try_from(p).ok()) {
        // SAFETY: kill(2) on our own child, which is not reaped yet (its pid is still ours).
        unsafe { libc::kill(pid, libc::SIGTERM) };
        if tokio::time::timeout(grace, child.wait()).await.is_ok() {
            return;
        }
    }
    let _ = child.kill().await;
}

/// How many instances run per function: `default` unless `per_function` names it.
#[derive(Debug, Clone, Default)]
pub struct InstanceCounts {
    /// Overrides by deployed function name.
    pub per_function: BTreeMap<String, usize>,
}

/// Where `local up --instances` keeps the overrides, so a later `up` or a deploy's refresh
/// keeps them.
pub fn instance_counts_path(local_dir: &std::path::Path) -> std::path::PathBuf {
    local_dir.join("instances.json")
}

impl InstanceCounts {
    /// Parses `persister=4,dispatcher=3`: function names as the CLI names them (`persister`,
    /// `processor`, `<device>-processor`, ...) or as deployed, each with 1 to 64 instances.
    pub fn parse(twin: &str, text: &str) -> Result<InstanceCounts, String> {
        let mut per_function = BTreeMap::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((name, n)) = part.split_once('=') else {
                return Err(format!(
                    "`{part}`: expected FUNCTION=COUNT, e.g. persister=4"
                ));
            };
            let n: usize = n
                .trim()
                .parse()
                .ok()
                .filter(|n| (1..=64).contains(n))
                .ok_or_else(|| {
                    format!("`{part}`: the count must be a whole number from 1 to 64")
                })?;
            let name = name.trim();
            let cloud = if name.starts_with(&format!("{twin}-")) {
                name.to_string()
            } else {
                twin_config::names::cloud_function_name(twin, name)
            };
            per_function.insert(cloud, n);
        }
        Ok(InstanceCounts { per_function })
    }

    /// The overrides `local up --instances` saved, or none.
    pub fn load(local_dir: &std::path::Path) -> InstanceCounts {
        let per_function = std::fs::read_to_string(instance_counts_path(local_dir))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        InstanceCounts { per_function }
    }

    /// Saves the overrides for the next `up`.
    pub fn save(&self, local_dir: &std::path::Path) -> Result<(), LocalError> {
        let path = instance_counts_path(local_dir);
        let text =
            serde_json::to_string_pretty(&self.per_function).map_err(|e| LocalError::Io {
                path: path.clone(),
                message: e.to_string(),
            })?;
        std::fs::create_dir_all(local_dir)
            .and_then(|_| std::fs::write(&path, text))
            .map_err(|e| LocalError::Io {
                path,
                message: e.to_string(),
            })
    }

    /// Instances of `f` (at least one): 2 for the dispatcher, processors and persister (every
    /// message passes through them), 1 for the rest, unless overridden.
    pub fn of(&self, twin: &str, function: &str) -> usize {
        if let Some(n) = self.per_function.get(function) {
            return (*n).max(1);
        }
        let role = function
            .strip_prefix(twin)
            .and_then(|r| r.strip_prefix('-'))
            .unwrap_or(function);
        if role == "dispatcher" || role == "persister" || role.ends_with("processor") {
            2
        } else {
            1
        }
    }
}

/// What each function's instances get besides the deployed environment.
#[derive(Debug, Clone)]
pub struct InstanceEnv {
    /// The runtime API's port.
    pub runtime_port: u16,
    /// The emulator's endpoint (`AWS_ENDPOINT_URL`).
    pub endpoint: String,
    /// The router's URL (`AWS_ENDPOINT_URL_LAMBDA`).
    pub router_url: String,
    /// The region.
    pub region: String,
    /// Access key id (the emulator accepts any).
    pub access_key_id: String,
    /// Secret access key (never logged or written).
    pub secret_access_key: String,
    /// What the runner's services add (e.g. the IoT data-plane endpoint).
    pub extra: Vec<(String, String)>,
}

/// One instance's live pid and start count, shared with the runner for `runner.json`.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct InstanceState {
    /// The instance number within its function (0-based).
    pub index: usize,
    /// The current process id, if running.
    pub pid: Option<u32>,
    /// How many times it was started.
    pub starts: u32,
    /// How its last run ended.
    pub last_exit: Option<String>,
}

/// Shared, updated by the supervisors: per function, its instances.
pub type InstanceTable = Arc<Mutex<BTreeMap<String, Vec<InstanceState>>>>;

/// Locks a mutex, surviving a panicked holder (the data are plain status values).
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Everything one supervisor needs.
pub struct Supervised {
    /// The function.
    pub function: DeployedFunction,
    /// Its unpacked bootstrap.
    pub bootstrap: PathBuf,
    /// Its instance number.
    pub index: usize,
    /// The common environment.
    pub env: InstanceEnv,
    /// Where its log lines go.
    pub sink: LogSink,
    /// The shared status table.
    pub table: InstanceTable,
    /// Called after every (re)start with the table, e.g. to rewrite `runner.json`.
    pub on_change: Arc<dyn Fn() + Send + Sync>,
}

/// The environment of an instance: the deployed variables plus what Lambda would set.
pub fn instance_env(f: &DeployedFunction, env: &InstanceEnv) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> =
        f.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    vars.extend([
        (
            "AWS_LAMBDA_RUNTIME_API".into(),
            format!("http://127.0.0.1:{}/.rt/{}", env.runtime_port, f.name),
        ),
        ("AWS_LAMBDA_FUNCTION_NAME".into(), f.name.clone()),
        ("AWS_LAMBDA_FUNCTION_VERSION".into(), "$LATEST".into()),
        (
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE".into(),
            f.memory_mb.to_string(),
        ),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME".into(),
            format!("/aws/lambda/{}", f.name),
        ),
        ("AWS_REGION".into(), env.region.clone()),
        ("AWS_DEFAULT_REGION".into(), env.region.clone()),
        ("AWS_ACCESS_KEY_ID".into(), env.access_key_id.clone()),
        (
            "AWS_SECRET_ACCESS_KEY".into(),
            env.secret_access_key.clone(),
        ),
        ("AWS_ENDPOINT_URL".into(), env.endpoint.clone()),
        ("AWS_ENDPOINT_URL_LAMBDA".into(), env.router_url.clone()),
    ]);
    vars.extend(env.extra.iter().cloned());
    // Where this machine's TLS roots are (Lambda's image has its own): the one thing of the
    // runner's environment a function sees besides PATH, so a local plane of another cloud
    // whose CA was added there is reached over https as the real one is.
    for name in ["PATH", "SSL_CERT_FILE", "SSL_CERT_DIR"] {
        if let Ok(value) = std::env::var(name) {
            vars.push((name.into(), value));
        }
    }
    vars
}

/// Runs one instance until `cancel`: starts it, captures its output, restarts it with backoff
/// when it ends (1 s doubling to 30 s; back to 1 s after a run of a minute), and on cancel stops
/// it with SIGTERM then SIGKILL.
pub async fn supervise(s: Supervised, cancel: CancellationToken) {
    let mut delay = Duration::from_secs(1);
    loop {
        let started = Instant::now();
        let stream = crate::cloudwatch::stream_name(s.index);
        let mut cmd = Command::new(&s.bootstrap);
        // A clean environment as in Lambda: nothing of the runner's (profiles, tokens) leaks in.
        cmd.env_clear()
            .envs(instance_env(&s.function, &s.env))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let spawned = cmd.spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                let msg = format!(
                    "[runner] cannot start {} instance {}: {e}; retrying in {delay:?}",
                    s.function.name, s.index
                );
                tracing::warn!("{msg}");
                s.sink.send(LogLine::now(&s.function.name, &stream, msg));
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(delay) => {}, // restart backoff
                }
                delay = (delay * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        {
            let mut table = lock(&s.table);
            if let Some(i) = table
                .get_mut(&s.function.name)
                .and_then(|v| v.get_mut(s.index))
            {
                i.pid = child.id();
                i.starts += 1;
            }
        }
        (s.on_change)();
        let readers = [
            child.stdout.take().map(|o| {
                tokio::spawn(pump(
                    o,
                    s.sink.clone(),
                    s.function.name.clone(),
                    stream.clone(),
                ))
            }),
            child.stderr.take().map(|o| {
                tokio::spawn(pump(
                    o,
                    s.sink.clone(),
                    s.function.name.clone(),
                    stream.clone(),
                ))
            }),
        ];
        let status = tokio::select! {
            () = cancel.cancelled() => {
                stop_child(&mut child, STOP_GRACE).await;
                for r in readers.into_iter().flatten() {
                    let _ = r.await;
                }
                return;
            }
            status = child.wait() => status,
        };
        // The pipes close with the process: drain them so its last lines (a panic) are kept.
        for r in readers.into_iter().flatten() {
            let _ = r.await;
        }
        let how = match status {
            Ok(s) => s.to_string(),
            Err(e) => e.to_string(),
        };
        if started.elapsed() > Duration::from_secs(60) {
            delay = Duration::from_secs(1);
        }
        {
            let mut table = lock(&s.table);
            if let Some(i) = table
                .get_mut(&s.function.name)
                .and_then(|v| v.get_mut(s.index))
            {
                i.pid = None;
                i.last_exit = Some(how.clone());
            }
        }
        let msg = format!(
            "[runner] {} instance {} exited ({how}) after {:?}; restarting in {delay:?}",
            s.function.name,
            s.index,
            started.elapsed()
        );
        tracing::warn!("{msg}");
        s.sink.send(LogLine::now(&s.function.name, &stream, msg));
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(delay) => {}, // restart backoff
        }
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

/// Reads lines (lossily when not UTF-8) from a process pipe into the sink.
async fn pump<R: AsyncRead + Unpin>(pipe: R, sink: LogSink, function: String, stream: String) {
    let mut reader = BufReader::new(pipe);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf);
                let line = line.trim_end_matches(['\n', '\r']);
                sink.send(LogLine::now(&function, &stream, line.to_string()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_counts_parse_cli_and_deployed_names() {
        let c =
            InstanceCounts::parse("t", "persister=4, t-dispatcher=3,dev-1-processor=2").unwrap();
        assert_eq!(c.of("t", "t-persister"), 4);
        assert_eq!(c.of("t", "t-dispatcher"), 3);
        assert_eq!(c.of("t", "t--dev-1-processor"), 2);
        assert_eq!(c.of("t", "t-hot-reader"), 1);
        assert_eq!(c.of("t", "t-processor"), 2);
        assert!(InstanceCounts::parse("t", "persister").is_err());
        assert!(InstanceCounts::parse("t", "persister=0").is_err());
        assert!(InstanceCounts::parse("t", "persister=65").is_err());
        assert!(InstanceCounts::parse("t", "")
            .unwrap()
            .per_function
            .is_empty());
    }

    #[test]
    fn the_manifest_has_one_binary_per_function_and_an_empty_workspace() {
        let f = |name: &str| DeployedFunction {
            name: name.into(),
            arn: String::new(),
            env: BTreeMap::new(),
            memory_mb: 128,
            timeout_s: 3,
            code_sha256: String::new(),
            bucket: String::new(),
            key: String::new(),
            async_settings: Default::default(),
        };
        let m = render_manifest(&[f("t-dispatcher"), f("t-hot-reader")]);
        assert!(m.contains("\n[workspace]\n"), "{m}");
        assert!(m.contains("name = \"twin-local-functions\""));
        assert_eq!(m.matches("[[bin]]").count(), 2);
        assert!(m.contains("[[bin]]\nname = \"t-hot-reader\"\npath = \"src/main.rs\"\n"));
    }

    #[test]
    fn message_path_functions_get_two_instances_the_rest_one() {
        let mut c = InstanceCounts::default();
        assert_eq!(c.of("t", "t-dispatcher"), 2);
        assert_eq!(c.of("t", "t-persister"), 2);
        assert_eq!(c.of("t", "t-processor"), 2);
        assert_eq!(c.of("t", "t--dev-a-processor"), 2);
        assert_eq!(c.of("t", "t-hot-reader"), 1);
        c.per_function.insert("t-hot-reader".into(), 3);
        c.per_function.insert("t-dispatcher".into(), 0);
        assert_eq!(c.of("t", "t-hot-reader"), 3);
        assert_eq!(c.of("t", "t-dispatcher"), 1);
    }
}
