//! A local Functions host for deployed Function Apps (Azure's half of the local data plane):
//! no emulator runs a Flex Consumption app, so this does what the platform does with the
//! package `deploy` uploaded. Each site gets a public listener as soon as ARM creates it (its
//! `defaultHostName`, [`LocalFunctionsHost::host_for`]) and keys ([`LocalFunctionsHost::key_for`],
//! what ARM's `listkeys` hands out); [`LocalFunctionsHost::load`] unpacks the package, starts the
//! custom handler named in `host.json` with the app settings as its environment plus
//! `FUNCTIONS_CUSTOMHANDLER_PORT`, waits until it listens, and from then on the listener fronts
//! it as the Functions host does:
//!
//! - `GET|POST /api/<fn>` for `httpTrigger` functions, checking the function key
//!   (`x-functions-key` or `?code=`; the master key opens every function), as `authLevel` says;
//! - `POST /runtime/webhooks/eventgrid?functionName=<fn>` for `eventGridTrigger` functions, one
//!   invocation per event (the Event Grid extension's system key);
//! - `POST /admin/functions/<fn>` (master key) runs any function once, answering 202 at once as
//!   the real host does; [`LocalFunctionsHost::runs`] tells when the run ended.
//!
//! Each invocation is translated to the custom handler's `{"Data", "Metadata"}` and back from its
//! `{"Outputs", "Logs", "ReturnValue"}` (HTTP functions answer through their `res` output).

use crate::azure_identity::LocalIdentity;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The environment variable naming the custom handler's port (set by the host).
pub const PORT_ENV: &str = "FUNCTIONS_CUSTOMHANDLER_PORT";
/// How long the handler has to listen after it starts (the real host's limit).
pub const START_WITHIN: Duration = Duration::from_secs(60);
/// How long one invocation may take before the host gives up on it.
const INVOKE_WITHIN: Duration = Duration::from_secs(120);
/// The largest request body taken (the real host's HTTP trigger limit is 100 MB).
const MAX_BODY: usize = 16 * 1024 * 1024;
/// The key name of the Event Grid extension's system key.
pub const EVENT_GRID_KEY: &str = "eventgrid_extension";

/// What can go wrong loading or running an app.
#[derive(Debug, thiserror::Error)]
pub enum AzureHostError {
    /// The package is not a usable Function App package.
    #[error("the package of Function App {site} is not usable: {problem}; run `deployer deploy` to upload it again")]
    Package {
        /// The site.
        site: String,
        /// What is wrong.
        problem: String,
    },
    /// A file of the unpacked app could not be written.
    #[error("Function App {site}: {}: {message}", path.display())]
    Io {
        /// The site.
        site: String,
        /// The file.
        path: PathBuf,
        /// The OS error.
        message: String,
    },
    /// The handler could not be started, or ended while starting.
    #[error("Function App {site}: the custom handler {} {problem}; its output is in {}", executable.display(), log.display())]
    Handler {
        /// The site.
        site: String,
        /// The executable.
        executable: PathBuf,
        /// What happened (with the log's last lines).
        problem: String,
        /// Its log.
        log: PathBuf,
    },
    /// `load` was called for a site ARM never created here.
    #[error("Function App {0} has no local host: it was not created while this host was serving the fake ARM")]
    UnknownSite(String),
    /// No port could be bound on 127.0.0.1.
    #[error("no free port on 127.0.0.1: {0}")]
    NoPort(String),
}

/// The trigger of one function, from its `function.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// `httpTrigger`: the binding name, `authLevel` and the allowed methods (upper case).
    Http {
        /// The trigger binding's name (the key of `Data`).
        binding: String,
        /// `anonymous`, `function` or `admin`.
        auth_level: String,
        /// Allowed methods; empty: any.
        methods: Vec<String>,
        /// The name of the `http` output binding (`res`).
        output: String,
    },
    /// `eventGridTrigger`, with its binding name.
    EventGrid {
        /// The trigger binding's name.
        binding: String,
    },
    /// `timerTrigger`, with its binding name and schedule.
    Timer {
        /// The trigger binding's name.
        binding: String,
        /// Its NCRONTAB schedule.
        schedule: String,
    },
    /// Any other trigger type (run only through the admin API).
    Other {
        /// The trigger binding's name.
        binding: String,
        /// The binding type.
        kind: String,
    },
}

impl Trigger {
    fn binding(&self) -> &str {
        match self {
            Trigger::Http { binding, .. }
            | Trigger::EventGrid { binding }
            | Trigger::Timer { binding, .. }
            | Trigger::Other { binding, .. } => binding,
        }
    }
}

/// Reads a `function.json`: its trigger (the first `in` binding whose type ends in `Trigger`).
pub fn parse_function_json(text: &[u8]) -> Result<Trigger, String> {
    let v: Value = serde_json::from_slice(text).map_err(|e| format!("not JSON: {e}"))?;
    let bindings = v
        .get("bindings")
        .and_then(Value::as_array)
        .ok_or("no `bindings` array")?;
    let text_of = |b: &Value, k: &str| b.get(k).and_then(Value::as_str).map(str::to_string);
    let trigger = bindings
        .iter()
        .find(|b| text_of(b, "type").is_some_and(|t| t.ends_with("Trigger")))
        .ok_or("no trigger binding")?;
    let kind = text_of(trigger, "type").unwrap_or_default();
    let binding = text_of(trigger, "name").ok_or("the trigger binding has no `name`")?;
    Ok(match kind.as_str() {
        "httpTrigger" => Trigger::Http {
            binding,
            auth_level: text_of(trigger, "authLevel").unwrap_or_else(|| "function".into()),
            methods: trigger
                .get("methods")
                .and_then(Value::as_array)
                .map(|m| {
                    m.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_ascii_uppercase)
                        .collect()
                })
                .unwrap_or_default(),
            output: bindings
                .iter()
                .find(|b| text_of(b, "type").as_deref() == Some("http"))
                .and_then(|b| text_of(b, "name"))
                .unwrap_or_else(|| "res".into()),
        },
        "eventGridTrigger" => Trigger::EventGrid { binding },
        "timerTrigger" => Trigger::Timer {
            binding,
            schedule: text_of(trigger, "schedule").unwrap_or_default(),
        },
        _ => Trigger::Other { binding, kind },
    })
}

/// The executable `host.json` names (`customHandler.description.defaultExecutablePath`).
pub fn handler_executable(host_json: &[u8]) -> Result<String, String> {
    let v: Value = serde_json::from_slice(host_json).map_err(|e| format!("not JSON: {e}"))?;
    v.pointer("/customHandler/description/defaultExecutablePath")
        .and_then(Value::as_str)
        .filter(|p| !p.trim().is_empty())
        .map(str::to_string)
        .ok_or_else(|| "host.json names no customHandler.description.defaultExecutablePath".into())
}

/// One finished run started through the admin API.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminRun {
    /// The function.
    pub function: String,
    /// The handler's HTTP status (2xx: the run succeeded).
    pub status: u16,
    /// Its `Logs` lines.
    pub logs: Vec<String>,
}

/// What `load` needs besides the package.
#[derive(Debug, Clone, Default)]
pub struct AppEnvironment {
    /// The app settings as ARM lists them (`POST .../config/appsettings/list`).
    pub settings: BTreeMap<String, String>,
    /// Variables the platform itself sets for the worker (identity endpoint, TLS trust,
    /// emulator switches); they win over settings of the same name.
    pub platform: BTreeMap<String, String>,
}

struct RunningApp {
    port: u16,
    functions: BTreeMap<String, Trigger>,
    // Killed when the app is replaced or the host dropped.
    _child: tokio::process::Child,
}

struct Site {
    name: String,
    host: String,
    secret: [u8; 16],
    app: tokio::sync::RwLock<Option<Arc<RunningApp>>>,
    runs: Arc<Mutex<Vec<AdminRun>>>,
}

impl Site {
    fn key(&self, name: Option<&str>) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(self.secret);
        h.update(name.unwrap_or("_master").as_bytes());
        hex::encode(&h.finalize()[..24])
    }
}

#[derive(Default)]
struct Inner {
    sites: HashMap<String, Arc<Site>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The local Functions host: one listener per site, the handlers it started.
pub struct LocalFunctionsHost {
    inner: Arc<Mutex<Inner>>,
    work_dir: PathBuf,
    identity: Option<Arc<LocalIdentity>>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Drop for LocalFunctionsHost {
    fn drop(&mut self) {
        for t in lock(&self.inner).tasks.drain(..) {
            t.abort();
        }
    }
}

impl LocalFunctionsHost {
    /// A host that unpacks apps under `work_dir` and, when `identity` is given, lets each app's
    /// handler get tokens for its managed identity there (as `IDENTITY_ENDPOINT` does on Azure).
    pub fn new(work_dir: &Path, identity: Option<Arc<LocalIdentity>>) -> LocalFunctionsHost {
        LocalFunctionsHost {
            inner: Arc::new(Mutex::new(Inner::default())),
            work_dir: work_dir.to_path_buf(),
            identity,
            tls: None,
        }
    }

    /// The same host, its listeners also speaking https with `tls` on the same port (a
    /// connection opening with a TLS handshake gets TLS, any other plain HTTP): a site is
    /// reached at `https://<defaultHostName>` as on Azure, by callers on another cloud that
    /// only ever take an https URL, while local callers keep plain HTTP. Call before any site
    /// is bound.
    pub fn with_tls(mut self, tls: Arc<rustls::ServerConfig>) -> LocalFunctionsHost {
        self.tls = Some(tokio_rustls::TlsAcceptor::from(tls));
        self
    }

    /// The `127.0.0.1:<port>` serving `site`, bound on first use (inside a tokio runtime): what
    /// ARM reports as the site's `defaultHostName`. Until [`Self::load`] the listener answers 503,
    /// as an app without a package does.
    pub fn host_for(&self, site: &str) -> Result<String, AzureHostError> {
        Ok(self.site(site)?.host.clone())
    }

    /// The current key of `site`: `None` for the master key, else `function`'s default key
    /// (what ARM's `listkeys` answers).
    pub fn key_for(&self, site: &str, function: Option<&str>) -> Result<String, AzureHostError> {
        Ok(self.site(site)?.key(function))
    }

    /// Every run started through the admin API that has ended, in order.
    pub fn runs(&self, site: &str) -> Vec<AdminRun> {
        let s = lock(&self.inner).sites.get(site).cloned();
        s.map(|s| s.runs.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .unwrap_or_default()
    }

    fn site(&self, name: &str) -> Result<Arc<Site>, AzureHostError> {
        if let Some(s) = lock(&self.inner).sites.get(name) {
            return Ok(s.clone());
        }
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| AzureHostError::NoPort(e.to_string()))?;
        let addr = std_listener
            .local_addr()
            .map_err(|e| AzureHostError::NoPort(e.to_string()))?;
        let listener = tokio::net::TcpListener::from_std(std_listener)
            .map_err(|e| AzureHostError::NoPort(e.to_string()))?;
        let site = Arc::new(Site {
            name: name.to_string(),
            host: format!("127.0.0.1:{}", addr.port()),
            secret: random_bytes(),
            app: tokio::sync::RwLock::new(None),
            runs: Arc::new(Mutex::new(Vec::new())),
        });
        let (serving, tls) = (site.clone(), self.tls.clone());
        let task = tokio::spawn(async move { serve(listener, serving, tls).await });
        let mut inner = lock(&self.inner);
        // Two callers racing for a new site: the first one's listener stays.
        if let Some(s) = inner.sites.get(name) {
            task.abort();
            return Ok(s.clone());
        }
        inner.tasks.push(task);
        inner.sites.insert(name.to_string(), site.clone());
        Ok(site)
    }

    /// Unpacks `package` for `site`, starts its custom handler with `env` and waits (polling,
    /// up to [`START_WITHIN`]) until it listens; a previous handler of the site is stopped.
    /// Returns the functions the package holds.
    pub async fn load(
        &self,
        site: &str,
        package: &[u8],
        env: &AppEnvironment,
    ) -> Result<Vec<String>, AzureHostError> {
        let s = lock(&self.inner)
            .sites
            .get(site)
            .cloned()
            .ok_or_else(|| AzureHostError::UnknownSite(site.to_string()))?;
        let root = self.work_dir.join(site).join("wwwroot");
        let io = |path: &Path, e: std::io::Error| AzureHostError::Io {
            site: site.to_string(),
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        if root.exists() {
            std::fs::remove_dir_all(&root).map_err(|e| io(&root, e))?;
        }
        std::fs::create_dir_all(&root).map_err(|e| io(&root, e))?;
        let bad = |problem: String| AzureHostError::Package {
            site: site.to_string(),
            problem,
        };
        unpack(package, &root).map_err(bad)?;
        let host_json =
            std::fs::read(root.join("host.json")).map_err(|e| bad(format!("host.json: {e}")))?;
        let exe = handler_executable(&host_json).map_err(bad)?;
        let executable = root.join(&exe);
        let functions = read_functions(&root).map_err(bad)?;
        if functions.is_empty() {
            return Err(bad("it holds no <function>/function.json".into()));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| AzureHostError::NoPort(e.to_string()))?;
        let log = self.work_dir.join(site).join("handler.log");
        let log_file = std::fs::File::create(&log).map_err(|e| io(&log, e))?;
        let log_err = log_file.try_clone().map_err(|e| io(&log, e))?;
        let mut cmd = tokio::process::Command::new(&executable);
        cmd.current_dir(&root)
            .env_clear()
            .envs(&env.settings)
            .envs(&env.platform)
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env(PORT_ENV, port.to_string())
            .env("FUNCTIONS_APP_ROOT_PATH", &root)
            .env("WEBSITE_SITE_NAME", site)
            .stdin(std::process::Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            .kill_on_drop(true);
        if let Some(identity) = &self.identity {
            let client_id = env
                .settings
                .get("AZURE_CLIENT_ID")
                .cloned()
                .unwrap_or_default();
            let (endpoint, header) = identity.endpoint_for(site, &client_id);
            cmd.env("IDENTITY_ENDPOINT", endpoint)
                .env("IDENTITY_HEADER", header);
        }
        let handler_err = |problem: String| AzureHostError::Handler {
            site: site.to_string(),
            executable: executable.clone(),
            problem,
            log: log.clone(),
        };
        let mut child = cmd
            .spawn()
            .map_err(|e| handler_err(format!("cannot be started: {e}")))?;
        let deadline = Instant::now() + START_WITHIN;
        let mut delay = Duration::from_millis(10);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(handler_err(format!(
                    "exited while starting ({status}):\n{}",
                    tail(&log)
                )));
            }
            if Instant::now() >= deadline {
                return Err(handler_err(format!(
                    "did not listen on 127.0.0.1:{port} within {START_WITHIN:?}:\n{}",
                    tail(&log)
                )));
            }
            tokio::time::sleep(delay).await; // poll backoff
            delay = (delay * 2).min(Duration::from_millis(200));
        }
        let names = functions.keys().cloned().collect();
        *s.app.write().await = Some(Arc::new(RunningApp {
            port,
            functions,
            _child: child,
        }));
        tracing::info!(site, port, "custom handler listening");
        Ok(names)
    }

    /// Stops the handler of `site` (the listener stays and answers 503).
    pub async fn unload(&self, site: &str) {
        let s = lock(&self.inner).sites.get(site).cloned();
        if let Some(s) = s {
            s.app.write().await.take();
        }
    }
}

pub(crate) fn random_bytes() -> [u8; 16] {
    let mut secret = [0u8; 16];
    let filled = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut secret))
        .is_ok();
    if !filled {
        // No urandom: the keys still differ per process and instant, which is all a local
        // host on 127.0.0.1 needs.
        use sha2::{Digest, Sha256};
        let seed = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
        secret.copy_from_slice(&Sha256::digest(seed.as_bytes())[..16]);
    }
    secret
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Unpacks a zip into `root`, keeping each entry's Unix mode (the handler's executable bit).
fn unpack(package: &[u8], root: &Path) -> Result<(), String> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(package))
        .map_err(|e| format!("not a zip: {e}"))?;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(|e| e.to_string())?;
        let Some(rel) = entry.enclosed_name() else {
            return Err(format!("entry {} leaves the app folder", entry.name()));
        };
        let path = root.join(rel);
        if entry.is_dir() {
            std::fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        let mut bytes = Vec::new();
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| format!("{}: {e}", entry.name()))?;
        std::fs::write(&path, &bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        if let Some(mode) = entry.unix_mode() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o777))
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    Ok(())
}

/// The functions of an unpacked app: every `<name>/function.json` directly under `root`.
fn read_functions(root: &Path) -> Result<BTreeMap<String, Trigger>, String> {
    let mut out = BTreeMap::new();
    let entries = std::fs::read_dir(root).map_err(|e| format!("{}: {e}", root.display()))?;
    for entry in entries.flatten() {
        let file = entry.path().join("function.json");
        if !file.is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let text = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        let trigger =
            parse_function_json(&text).map_err(|e| format!("{name}/function.json: {e}"))?;
        out.insert(name, trigger);
    }
    Ok(out)
}

type Reply = Response<Full<Bytes>>;

fn reply(status: u16, body: impl Into<Bytes>, content_type: &str) -> Reply {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

fn error(status: u16, message: &str) -> Reply {
    reply(
        status,
        json!({"error": message}).to_string(),
        "application/json",
    )
}

/// The first byte of a TLS connection (a handshake record); an HTTP request starts with a
/// method's letter.
const TLS_HANDSHAKE: u8 = 0x16;

async fn serve(
    listener: tokio::net::TcpListener,
    site: Arc<Site>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (site, tls) = (site.clone(), tls.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let site = site.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(&site, req).await) }
            });
            let http = hyper::server::conn::http1::Builder::new();
            let mut first = [0u8; 1];
            let opens_tls = match &tls {
                Some(_) => {
                    matches!(stream.peek(&mut first).await, Ok(1) if first[0] == TLS_HANDSHAKE)
                }
                None => false,
            };
            match tls.filter(|_| opens_tls) {
                Some(acceptor) => {
                    // A failed handshake is the client's to report; the listener goes on.
                    if let Ok(stream) = acceptor.accept(stream).await {
                        let _ = http.serve_connection(TokioIo::new(stream), service).await;
                    }
                }
                None => {
                    let _ = http.serve_connection(TokioIo::new(stream), service).await;
                }
            }
        });
    }
}

/// The query string's parameters, percent-decoded.
fn query_map(query: &str) -> Map<String, Value> {
    let mut out = Map::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.insert(percent_decode(k), Value::String(percent_decode(v)));
    }
    out
}

pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn handle(site: &Site, req: Request<Incoming>) -> Reply {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let raw_query = req.uri().query().unwrap_or("").to_string();
    let query = query_map(&raw_query);
    let host = req
        .headers()
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or(&site.host)
        .to_string();
    let mut headers = Map::new();
    for (k, v) in req.headers() {
        if let Ok(v) = v.to_str() {
            headers.insert(k.as_str().to_string(), json!([v]));
        }
    }
    let key = req
        .headers()
        .get("x-functions-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| {
            query
                .get("code")
                .and_then(Value::as_str)
                .map(str::to_string)
        });
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return error(413, &format!("the body could not be read: {e}")),
    };
    let Some(app) = site.app.read().await.clone() else {
        return error(
            503,
            &format!(
                "Function App {} has no running code yet (the local plane loads it after deploy)",
                site.name
            ),
        );
    };
    let master = site.key(None);
    let key_is = |want: &str| key.as_deref().is_some_and(|k| k == want || k == master);
    if let Some(function) = path.strip_prefix("/api/") {
        let Some(Trigger::Http {
            binding,
            auth_level,
            methods,
            output,
        }) = app.functions.get(function)
        else {
            return error(404, &format!("no HTTP-triggered function {function}"));
        };
        let allowed = match auth_level.as_str() {
            "anonymous" => true,
            "admin" => key.as_deref() == Some(master.as_str()),
            _ => key_is(&site.key(Some(function))),
        };
        if !allowed {
            return reply(401, "", "text/plain");
        }
        if !methods.is_empty() && !methods.contains(&method) {
            return error(405, &format!("{function} accepts {}", methods.join(", ")));
        }
        // The whole query, `code` included, as the real host passes it: a function that
        // refuses unknown parameters refuses `?code=` here as it would on Azure.
        let clean = query.clone();
        let trigger = json!({
            "Url": format!("http://{host}{path}{}", if raw_query.is_empty() { String::new() } else { format!("?{raw_query}") }),
            "Method": method,
            "Query": clean,
            "Headers": headers,
            "Params": {},
            "Body": String::from_utf8_lossy(&body),
        });
        let metadata = json!({"Query": clean, "Headers": headers});
        let (status, answer) = invoke(&app, function, binding, trigger, metadata).await;
        if !(200..300).contains(&status) {
            return error(
                500,
                &format!("{function} failed (handler answered {status})"),
            );
        }
        return http_answer(&answer, output);
    }
    if path == "/runtime/webhooks/eventgrid" {
        let Some(function) = query.get("functionName").and_then(Value::as_str) else {
            return error(400, "functionName is required");
        };
        let Some(Trigger::EventGrid { binding }) = app.functions.get(function) else {
            return error(404, &format!("no Event Grid-triggered function {function}"));
        };
        if !key_is(&site.key(Some(EVENT_GRID_KEY))) {
            return reply(401, "", "text/plain");
        }
        let events = match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Array(events)) => events,
            Ok(one) => vec![one],
            Err(e) => return error(400, &format!("the body is not JSON: {e}")),
        };
        // One invocation per event, as the extension runs a single-event trigger; the first
        // failure fails the delivery so Event Grid retries it.
        for event in events {
            let (status, _) = invoke(&app, function, binding, event, json!({})).await;
            if !(200..300).contains(&status) {
                return error(
                    if status == 503 { 503 } else { 500 },
                    &format!("{function} failed (handler answered {status})"),
                );
            }
        }
        return reply(200, "", "text/plain");
    }
    if let Some(function) = path.strip_prefix("/admin/functions/") {
        if key.as_deref() != Some(master.as_str()) {
            return reply(401, "", "text/plain");
        }
        let Some(trigger) = app.functions.get(function).cloned() else {
            return error(404, &format!("no function {function}"));
        };
        // `{"input": "<text>"}`: the text (JSON if it parses) is the trigger's value; a timer
        // without input gets the value a scheduled run carries.
        let input = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.get("input").cloned())
            .and_then(|i| match i {
                Value::String(s) if s.trim().is_empty() => None,
                Value::String(s) => Some(serde_json::from_str(&s).unwrap_or(Value::String(s))),
                Value::Null => None,
                other => Some(other),
            });
        let value = match (&trigger, input) {
            (_, Some(v)) => v,
            (Trigger::Timer { schedule, .. }, None) => json!({
                "Schedule": {"AdjustForDST": true, "Expression": schedule},
                "ScheduleStatus": null,
                "IsPastDue": false,
            }),
            (_, None) => Value::Null,
        };
        let (app, function) = (app.clone(), function.to_string());
        let runs = site.runs.clone();
        tokio::spawn(async move {
            let (status, answer) =
                invoke(&app, &function, trigger.binding(), value, json!({})).await;
            let logs = answer["Logs"]
                .as_array()
                .map(|l| {
                    l.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            runs.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(AdminRun {
                    function,
                    status,
                    logs,
                });
        });
        return reply(202, "", "text/plain");
    }
    error(
        404,
        &format!("{method} {path} is not a Functions host path"),
    )
}

/// POSTs one invocation to the handler: `{"Data": {binding: value}, "Metadata": ...}`; returns
/// the handler's status and its answer (`{"Outputs", "Logs", "ReturnValue"}`).
async fn invoke(
    app: &RunningApp,
    function: &str,
    binding: &str,
    value: Value,
    metadata: Value,
) -> (u16, Value) {
    let mut data = Map::new();
    data.insert(binding.to_string(), value);
    let body = json!({"Data": data, "Metadata": metadata}).to_string();
    let invocation_id = format!("local-{}", hex::encode(random_bytes()));
    let headers = [
        ("content-type", "application/json".to_string()),
        ("x-azure-functions-invocationid", invocation_id),
    ];
    match crate::local_http::call(
        ("127.0.0.1", app.port),
        "POST",
        &format!("/{function}"),
        &headers,
        Bytes::from(body),
        INVOKE_WITHIN,
    )
    .await
    {
        Ok((status, answer)) => (
            status,
            serde_json::from_slice(&answer).unwrap_or_else(
                |_| json!({"Outputs": {}, "Logs": [String::from_utf8_lossy(&answer)]}),
            ),
        ),
        Err(e) => {
            tracing::warn!(function, error = %e, "the custom handler did not answer");
            (502, json!({"Outputs": {}, "Logs": [e]}))
        }
    }
}

/// The HTTP answer of an HTTP-triggered function: its `res` output (`statusCode`, `headers`,
/// `body`), as the host's HTTP output binding reads it.
fn http_answer(answer: &Value, output: &str) -> Reply {
    let Some(res) = answer.pointer(&format!("/Outputs/{output}")) else {
        return reply(204, "", "text/plain");
    };
    let status = res
        .get("statusCode")
        .and_then(|s| {
            s.as_u64()
                .or_else(|| s.as_str().and_then(|t| t.parse().ok()))
        })
        .and_then(|s| u16::try_from(s).ok())
        .unwrap_or(200);
    let body = match res.get("body") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    let mut r = reply(status, body, "application/json");
    if let Some(Value::Object(h)) = res.get("headers") {
        for (k, v) in h {
            if let (Ok(name), Some(Ok(value))) = (
                hyper::header::HeaderName::from_bytes(k.as_bytes()),
                v.as_str().map(hyper::header::HeaderValue::from_str),
            ) {
                r.headers_mut().insert(name, value);
            }
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_triggers_of_the_packaged_function_json_files() {
        let http = br#"{"bindings":[{"type":"httpTrigger","direction":"in","name":"req","authLevel":"function","methods":["get"]},{"type":"http","direction":"out","name":"res"}]}"#;
        assert_eq!(
            parse_function_json(http).unwrap(),
            Trigger::Http {
                binding: "req".into(),
                auth_level: "function".into(),
                methods: vec!["GET".into()],
                output: "res".into()
            }
        );
        let eg = br#"{"bindings":[{"type":"eventGridTrigger","direction":"in","name":"event"}]}"#;
        assert_eq!(
            parse_function_json(eg).unwrap(),
            Trigger::EventGrid {
                binding: "event".into()
            }
        );
        assert!(parse_function_json(br#"{"bindings":[]}"#).is_err());
        assert!(handler_executable(
            br#"{"customHandler":{"description":{"defaultExecutablePath":"handler"}}}"#
        )
        .is_ok_and(|p| p == "handler"));
        assert!(handler_executable(b"{}").is_err());
    }

    #[test]
    fn decodes_query_parameters() {
        let q = query_map("iotDeviceId=s%2D1&startDate=2026-01-01T00%3A00%3A00.000Z&code=k+1");
        assert_eq!(q["iotDeviceId"], "s-1");
        assert_eq!(q["startDate"], "2026-01-01T00:00:00.000Z");
        assert_eq!(q["code"], "k 1");
        assert_eq!(percent_decode("100%"), "100%");
    }

    #[test]
    fn the_res_output_becomes_the_http_answer() {
        let answer =
            json!({"Outputs": {"res": {"statusCode": 404, "headers": {"x-a": "b"}, "body": "[]"}}});
        let r = http_answer(&answer, "res");
        assert_eq!(r.status(), 404);
        assert_eq!(r.headers()["x-a"], "b");
        assert_eq!(http_answer(&json!({"Outputs": {}}), "res").status(), 204);
    }
}
