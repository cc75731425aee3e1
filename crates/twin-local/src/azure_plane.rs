//! The Azure half of the local data plane: what a twin's Azure deployment needs to run on this
//! machine, configured from what `deploy` put on ARM (read back over ARM, never from the config):
//!
//! 1. [`AzurePlatform::new`] before deploy: the local Functions host ([`crate::azure_host`]) and
//!    the managed identity endpoint its apps get tokens from ([`crate::azure_identity`]); a fake
//!    ARM reports the host's listeners as the sites' `defaultHostName`.
//! 2. [`AzurePlatform::start`] after deploy: the group's resources listed over ARM; the
//!    Cosmos SQL containers and blob containers ARM holds made in the emulators
//!    ([`crate::azure_storage`]); each Function App's package (from where the deploy put it, the
//!    [`PackageSource`]) loaded with its app settings (`POST .../config/appsettings/list`); a
//!    broker for each hub trusting exactly the devices whose certificates are registered in the
//!    hub's registry; and a bridge to the function each hub's Event Grid subscription names
//!    ([`crate::hub_bridge`]). The simulator's config is pointed at that broker. Each hub's
//!    direct method endpoint ([`crate::hub_methods`], https with the broker's certificate) is
//!    what the apps' `IOTHUB_HOSTNAME` points at, so event-rule feedback reaches the devices.
//! 3. [`AzureLocalPlane::sync_storage`] after a destroy deletes from the emulators what ARM no
//!    longer holds (what deleting the accounts does on Azure); [`AzureLocalPlane::stop`] ends it.

use crate::azure_host::{AppEnvironment, AzureHostError, LocalFunctionsHost, EVENT_GRID_KEY};
use crate::azure_identity::LocalIdentity;
use crate::azure_storage::{Emulators, MirrorError, Mirrored, StorageMirror};
use crate::hub_bridge::{self, BridgeCounters, Destination, EventGridBridge, HubBroker};
use crate::hub_methods::{DirectMethodService, MethodCounters};
use crate::LocalError;
use azure_core::http::Method;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use twin_azure::ArmClient;
use twin_engine::CloudError;

/// Where a deployed Function App's package is read from: the site's name → the zip, as the
/// deployment endpoint stored it (`None`: nothing was deployed there).
pub type PackageSource = Arc<dyn Fn(&str) -> Option<Vec<u8>> + Send + Sync>;

/// The API version of resource group listings.
const GROUP_API: &str = "2021-04-01";
/// The scope of IoT Hub's registry API.
const IOT_HUB_SCOPE: &str = "https://iothubs.azure.net/.default";

/// Why the local Azure plane cannot start.
#[derive(Debug, thiserror::Error)]
pub enum AzurePlaneError {
    /// Reading the deployment back over ARM (or the hub's registry) failed.
    #[error("reading the deployed twin back from ARM failed: {0}")]
    Arm(#[from] CloudError),
    /// The deployment is not complete.
    #[error("{0}; run `deployer deploy` first")]
    NotDeployed(String),
    /// An app could not be loaded.
    #[error(transparent)]
    Host(#[from] AzureHostError),
    /// The emulators could not be brought in line with ARM.
    #[error(transparent)]
    Storage(#[from] MirrorError),
    /// The broker or a local file failed.
    #[error(transparent)]
    Local(#[from] LocalError),
}

/// The parts that must run before deploy (ARM asks for the sites' hosts while creating them).
pub struct AzurePlatform {
    host: Arc<LocalFunctionsHost>,
    identity: Arc<LocalIdentity>,
    work_dir: PathBuf,
    host_pki: crate::pki::Pki,
}

/// What [`AzurePlatform::start`] needs.
pub struct PlaneSettings {
    /// The twin.
    pub twin: String,
    /// The twin's config directory (where `deploy` wrote `.deployer/`).
    pub config_dir: PathBuf,
    /// ARM, as the deployer reaches it.
    pub arm: Arc<ArmClient>,
    /// The emulators behind the twin's storage.
    pub emulators: Emulators,
    /// Where the deployed packages are.
    pub package: PackageSource,
    /// How long an event is retried before it is dead-lettered.
    pub delivery_deadline: Duration,
}

impl AzurePlatform {
    /// The host and identity endpoint, with their files under `work_dir`; tokens name
    /// `tenant_id`.
    pub async fn new(work_dir: &Path, tenant_id: &str) -> Result<AzurePlatform, LocalError> {
        let identity = LocalIdentity::start(tenant_id)
            .await
            .map_err(|e| LocalError::NoPort(e.to_string()))?;
        // The sites' https certificate (127.0.0.1), from a CA of this platform's own.
        let host_pki = crate::pki::Pki::in_dir(&work_dir.join("host-pki"));
        std::fs::create_dir_all(work_dir.join("host-pki")).map_err(|e| LocalError::Io {
            path: work_dir.join("host-pki"),
            message: e.to_string(),
        })?;
        host_pki.ensure()?;
        let host = Arc::new(
            LocalFunctionsHost::new(&work_dir.join("sites"), Some(identity.clone()))
                .with_tls(host_pki.https_server_config()?),
        );
        Ok(AzurePlatform {
            host,
            identity,
            work_dir: work_dir.to_path_buf(),
            host_pki,
        })
    }

    /// The CA the sites' https certificate chains to: what a caller on another cloud's local
    /// plane trusts to reach `https://<defaultHostName>`.
    pub fn sites_ca_cert(&self) -> &Path {
        &self.host_pki.ca_cert
    }

    /// The Functions host (its listeners and keys are what ARM hands out for the sites).
    pub fn host(&self) -> Arc<LocalFunctionsHost> {
        self.host.clone()
    }

    /// The identity endpoint.
    pub fn identity(&self) -> Arc<LocalIdentity> {
        self.identity.clone()
    }

    /// Reads the deployment back over ARM and starts everything it needs (see the module doc).
    pub async fn start(&self, settings: PlaneSettings) -> Result<AzureLocalPlane, AzurePlaneError> {
        let arm = settings.arm.clone();
        let group = format!(
            "{}/resourceGroups/{}",
            arm.subscription_path(),
            twin_config::names::resource_group(&settings.twin)
        );
        let resources = arm
            .list(
                &format!("{group}/resources"),
                GROUP_API,
                "the twin's resource group",
            )
            .await?;
        let of_type = |ty: &str| -> Vec<Value> {
            resources
                .iter()
                .filter(|r| {
                    r.get("type")
                        .and_then(Value::as_str)
                        .is_some_and(|t| t.eq_ignore_ascii_case(ty))
                })
                .cloned()
                .collect()
        };
        let mirror = StorageMirror::new(settings.emulators.clone())?;
        let wanted = wanted_storage(&arm, &group).await?;
        mirror.reconcile(&wanted).await?;

        // The hubs first: the apps are given their direct method endpoints.
        let cancel = CancellationToken::new();
        let mut hubs = Vec::new();
        for hub in of_type("Microsoft.Devices/IotHubs") {
            match self.start_hub(&arm, &hub, &settings, &cancel).await {
                Ok(h) => hubs.push(h),
                Err(e) => {
                    stop_hubs(&hubs, &cancel);
                    return Err(e);
                }
            }
        }
        match self
            .start_rest(
                &settings,
                &arm,
                &group,
                of_type(twin_azure::l2::site::TYPE),
                hubs,
                mirror,
                cancel,
            )
            .await
        {
            Ok(plane) => Ok(plane),
            Err((e, hubs, cancel)) => {
                stop_hubs(&hubs, &cancel);
                Err(e)
            }
        }
    }

    /// One hub's broker (trusting its registered devices) and direct method endpoint.
    async fn start_hub(
        &self,
        arm: &ArmClient,
        hub: &Value,
        settings: &PlaneSettings,
        cancel: &CancellationToken,
    ) -> Result<LocalHub, AzurePlaneError> {
        let host_name = text(hub, "/properties/hostName");
        let devices = self
            .registered_devices(arm, &host_name, &settings.config_dir)
            .await?;
        let dir = self.work_dir.join("hub").join(text(hub, "/name"));
        let broker = HubBroker::start(&dir, &devices)?;
        let methods = DirectMethodService::start(
            broker.port,
            &broker.pki,
            &broker.files.log,
            broker.log_start,
            self.identity.tenant_id(),
            cancel.clone(),
        )
        .await;
        match methods {
            Ok(methods) => Ok(LocalHub {
                id: text(hub, "/id"),
                host_name,
                broker,
                methods,
            }),
            Err(e) => {
                let _ = broker.stop();
                Err(e.into())
            }
        }
    }

    /// The apps and the bridges, once the hubs run; on failure the hubs are handed back to be
    /// stopped.
    #[allow(clippy::too_many_arguments)]
    async fn start_rest(
        &self,
        settings: &PlaneSettings,
        arm: &Arc<ArmClient>,
        group: &str,
        site_resources: Vec<Value>,
        hubs: Vec<LocalHub>,
        mirror: StorageMirror,
        cancel: CancellationToken,
    ) -> Result<AzureLocalPlane, (AzurePlaneError, Vec<LocalHub>, CancellationToken)> {
        let sites = match self.load_sites(settings, arm, site_resources, &hubs).await {
            Ok(s) => s,
            Err(e) => return Err((e, hubs, cancel)),
        };
        let mut bridges = Vec::new();
        for hub in &hubs {
            let destination = match self.destination(arm, group, &hub.id, &sites).await {
                Ok(d) => d,
                Err(e) => return Err((e, hubs, cancel)),
            };
            if let Some(destination) = destination {
                let bridge = EventGridBridge::new(
                    hub.broker.port,
                    hub.broker.pki.clone(),
                    hub.id.clone(),
                    destination,
                    settings.delivery_deadline,
                );
                let counters = bridge.counters();
                let task = tokio::spawn(bridge.run(cancel.clone()));
                bridges.push((counters, task));
            }
            let sim = settings.config_dir.join(".deployer").join("simulator");
            let root_ca = relative_to(&sim, &hub.broker.pki.ca_cert);
            if let Err(e) = crate::simulator::point_at_local(
                &sim.join("config.json"),
                &sim.join("config.hub.json"),
                hub.broker.port,
                &root_ca,
            ) {
                return Err((e.into(), hubs, cancel));
            }
        }
        Ok(AzureLocalPlane {
            host: self.host.clone(),
            mirror,
            arm: arm.clone(),
            group: group.to_string(),
            sites: sites.into_iter().map(|(_, n)| n).collect(),
            hubs,
            bridges,
            cancel,
        })
    }

    /// Loads each Function App's package with its app settings; an app whose `IOTHUB_HOSTNAME`
    /// names a hub gets that hub's local direct method endpoint instead. Returns (id, name).
    async fn load_sites(
        &self,
        settings: &PlaneSettings,
        arm: &ArmClient,
        site_resources: Vec<Value>,
        hubs: &[LocalHub],
    ) -> Result<Vec<(String, String)>, AzurePlaneError> {
        let ca_files: Vec<&Path> = hubs
            .iter()
            .map(|h| h.broker.pki.ca_cert.as_path())
            .chain([self.host_pki.ca_cert.as_path()])
            .collect();
        let mut platform = BTreeMap::new();
        platform.insert(
            "SSL_CERT_FILE".to_string(),
            self.trust_bundle(settings, &ca_files)?,
        );
        // The Cosmos emulator's certificate cannot be verified (see azure_storage); the SDK's
        // emulator switches apply to this local worker only, never to the app settings.
        for (k, v) in [
            (
                "AZURE_COSMOS_EMULATOR_SERVER_CERT_VALIDATION_DISABLED",
                "true",
            ),
            ("AZURE_COSMOS_CONNECTION_POOL_IS_HTTP2_ALLOWED", "false"),
            ("AZURE_COSMOS_BINARY_ENCODING_ENABLED", "false"),
        ] {
            platform.insert(k.to_string(), v.to_string());
        }
        let mut sites = Vec::new();
        for site in site_resources {
            let name = text(&site, "/name");
            let id = text(&site, "/id");
            let listed = arm
                .call(
                    Method::Post,
                    &format!("{id}/config/appsettings/list"),
                    twin_azure::l2::site::API,
                    None,
                    &format!("app settings of {name}"),
                )
                .await?
                .ok_or_else(|| {
                    AzurePlaneError::NotDeployed(format!("Function App {name} has no app settings"))
                })?;
            let app_settings: BTreeMap<String, String> = listed
                .get("properties")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default();
            let package = (settings.package)(&name).ok_or_else(|| {
                AzurePlaneError::NotDeployed(format!("Function App {name} has no deployed package"))
            })?;
            let mut platform = platform.clone();
            let hub_setting = twin_functions_azure::app::settings::IOTHUB_HOSTNAME;
            if let Some(hub) = app_settings.get(hub_setting).and_then(|h| {
                hubs.iter()
                    .find(|hub| hub.host_name.eq_ignore_ascii_case(h.trim()))
            }) {
                // What the persister's feedback calls: the local hub, not the registry's fake.
                platform.insert(hub_setting.to_string(), hub.methods.url().to_string());
            }
            self.host
                .load(
                    &name,
                    &package,
                    &AppEnvironment {
                        settings: app_settings,
                        platform,
                    },
                )
                .await?;
            sites.push((id, name));
        }
        Ok(sites)
    }

    /// `SSL_CERT_FILE` for the workers: the system's roots plus the CA Azurite's certificate
    /// chains to, the hubs' local CAs (their direct method endpoints) and the sites' CA, so the handler's TLS
    /// verifies the local endpoints as it verifies Azure's.
    fn trust_bundle(
        &self,
        settings: &PlaneSettings,
        local_cas: &[&Path],
    ) -> Result<String, LocalError> {
        let io = |path: &Path, e: std::io::Error| LocalError::Io {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let system = std::env::var_os("SSL_CERT_FILE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/etc/ssl/certs/ca-certificates.crt"));
        let mut bundle = std::fs::read_to_string(&system).unwrap_or_default();
        let local = std::fs::read_to_string(&settings.emulators.blob_ca)
            .map_err(|e| io(&settings.emulators.blob_ca, e))?;
        bundle.push('\n');
        bundle.push_str(&local);
        for ca in local_cas {
            let pem = std::fs::read_to_string(ca).map_err(|e| io(ca, e))?;
            bundle.push('\n');
            bundle.push_str(&pem);
        }
        std::fs::create_dir_all(&self.work_dir).map_err(|e| io(&self.work_dir, e))?;
        let path = self.work_dir.join("worker-ca-bundle.pem");
        std::fs::write(&path, bundle).map_err(|e| io(&path, e))?;
        Ok(path.display().to_string())
    }

    /// The devices with local credentials (`.deployer/devices/<id>/`) whose certificate's
    /// thumbprint the hub's registry holds.
    async fn registered_devices(
        &self,
        arm: &ArmClient,
        host_name: &str,
        config_dir: &Path,
    ) -> Result<Vec<crate::broker::TrustedDevice>, AzurePlaneError> {
        let registry = arm.data_plane(IOT_HUB_SCOPE);
        let base = registry.base_url(host_name);
        let devices_dir = twin_device_credentials::device_dir(config_dir, "_")
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir(&devices_dir) else {
            return Ok(out);
        };
        let mut ids: Vec<String> = entries
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        ids.sort();
        for id in ids {
            let cert = twin_device_credentials::device_dir(config_dir, &id)
                .join(twin_device_credentials::CERTIFICATE_FILE);
            let Ok(pem) = std::fs::read_to_string(&cert) else {
                continue;
            };
            let url = format!(
                "{base}/devices/{id}?api-version={}",
                twin_azure::l1::registry::API
            );
            let reply = registry
                .send(
                    Method::Get,
                    &url,
                    None,
                    &[],
                    &format!("device identity {id}"),
                )
                .await?;
            if reply.status == 404 {
                continue;
            }
            if !reply.is_success() {
                return Err(reply.error(&format!("device identity {id}")).into());
            }
            if let Some(d) = hub_bridge::registered_device(&id, &pem, &reply.body) {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// The function the hub's Event Grid subscription delivers to, on the local host.
    async fn destination(
        &self,
        arm: &ArmClient,
        group: &str,
        hub_id: &str,
        sites: &[(String, String)],
    ) -> Result<Option<Destination>, AzurePlaneError> {
        let topics = list_group_type(arm, group, "Microsoft.EventGrid/systemTopics").await?;
        for topic in topics {
            let source = text(&topic, "/properties/source");
            if !source.eq_ignore_ascii_case(hub_id) {
                continue;
            }
            let subs = arm
                .list(
                    &format!("{}/eventSubscriptions", text(&topic, "/id")),
                    twin_azure::l1::event_grid::API,
                    "Event Grid subscriptions",
                )
                .await?;
            for sub in subs {
                let target = text(&sub, "/properties/destination/properties/resourceId");
                let Some((site_id, function)) = target.split_once("/functions/") else {
                    continue;
                };
                let Some((_, site)) = sites
                    .iter()
                    .find(|(id, _)| id.eq_ignore_ascii_case(site_id))
                else {
                    continue;
                };
                let included = sub
                    .pointer("/properties/filter/includedEventTypes")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default();
                return Ok(Some(Destination {
                    host: self.host.host_for(site)?,
                    function: function.to_string(),
                    key: self.host.key_for(site, Some(EVENT_GRID_KEY))?,
                    included_event_types: included,
                }));
            }
        }
        Ok(None)
    }
}

/// The emulator containers ARM says exist under `group`.
async fn wanted_storage(arm: &ArmClient, group: &str) -> Result<BTreeSet<Mirrored>, CloudError> {
    let mut wanted = BTreeSet::new();
    let cosmos_api = twin_azure::l3::hot::API;
    let accounts = list_group_type(arm, group, "Microsoft.DocumentDB/databaseAccounts").await?;
    for account in accounts {
        let id = text(&account, "/id");
        for db in arm
            .list(&format!("{id}/sqlDatabases"), cosmos_api, "SQL databases")
            .await?
        {
            let db_id = text(&db, "/id");
            let database = text(&db, "/name");
            for c in arm
                .list(&format!("{db_id}/containers"), cosmos_api, "SQL containers")
                .await?
            {
                let partition_key = c
                    .pointer("/properties/resource/partitionKey/paths/0")
                    .and_then(Value::as_str)
                    .unwrap_or("/iotDeviceId")
                    .to_string();
                wanted.insert(Mirrored::Cosmos {
                    database: database.clone(),
                    container: text(&c, "/name"),
                    partition_key,
                });
            }
        }
    }
    for account in list_group_type(arm, group, "Microsoft.Storage/storageAccounts").await? {
        let id = text(&account, "/id");
        for c in arm
            .list(
                &format!("{id}/blobServices/default/containers"),
                twin_azure::l3::storage::API,
                "blob containers",
            )
            .await?
        {
            wanted.insert(Mirrored::Blob {
                container: text(&c, "/name"),
            });
        }
    }
    Ok(wanted)
}

/// The group's resources of one type (an empty list when the group is gone).
async fn list_group_type(arm: &ArmClient, group: &str, ty: &str) -> Result<Vec<Value>, CloudError> {
    match arm
        .list(
            &format!("{group}/resources"),
            GROUP_API,
            "the twin's resource group",
        )
        .await
    {
        Ok(all) => Ok(all
            .into_iter()
            .filter(|r| {
                r.get("type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.eq_ignore_ascii_case(ty))
            })
            .collect()),
        Err(e) if e.class == twin_engine::ErrorClass::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

fn text(v: &Value, pointer: &str) -> String {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// `target` relative to `from` when it is below the same root, else absolute.
fn relative_to(from: &Path, target: &Path) -> String {
    let (Ok(from), Ok(target)) = (from.canonicalize(), target.canonicalize()) else {
        return target.display().to_string();
    };
    let common = from
        .components()
        .zip(target.components())
        .take_while(|(a, b)| a == b)
        .count();
    let mut out = PathBuf::new();
    for _ in from.components().skip(common) {
        out.push("..");
    }
    for c in target.components().skip(common) {
        out.push(c);
    }
    out.display().to_string()
}

/// One hub run locally: its broker and direct method endpoint.
struct LocalHub {
    id: String,
    host_name: String,
    broker: HubBroker,
    methods: DirectMethodService,
}

/// Stops what [`AzurePlatform::start`] started before it failed.
fn stop_hubs(hubs: &[LocalHub], cancel: &CancellationToken) {
    cancel.cancel();
    for h in hubs {
        if let Err(e) = h.broker.stop() {
            tracing::warn!(error = %e, "local Azure plane: a hub broker did not stop");
        }
    }
}

/// A bridge's counters and its task.
type RunningBridge = (
    Arc<BridgeCounters>,
    tokio::task::JoinHandle<Result<(), LocalError>>,
);

/// The running local Azure plane.
pub struct AzureLocalPlane {
    host: Arc<LocalFunctionsHost>,
    mirror: StorageMirror,
    arm: Arc<ArmClient>,
    group: String,
    sites: Vec<String>,
    hubs: Vec<LocalHub>,
    bridges: Vec<RunningBridge>,
    cancel: CancellationToken,
}

impl AzureLocalPlane {
    /// The Function Apps it runs.
    pub fn sites(&self) -> &[String] {
        &self.sites
    }

    /// The Functions host.
    pub fn host(&self) -> Arc<LocalFunctionsHost> {
        self.host.clone()
    }

    /// The hub brokers' ports.
    pub fn broker_ports(&self) -> Vec<u16> {
        self.hubs.iter().map(|h| h.broker.port).collect()
    }

    /// Each hub's direct method endpoint (its URL, what the apps' `IOTHUB_HOSTNAME` became)
    /// and counters.
    pub fn direct_methods(&self) -> Vec<(String, Arc<MethodCounters>)> {
        self.hubs
            .iter()
            .map(|h| (h.methods.url().to_string(), h.methods.counters()))
            .collect()
    }

    /// Each bridge's counters.
    pub fn bridges(&self) -> Vec<hub_bridge::BridgeStatus> {
        self.bridges.iter().map(|(c, _)| c.status()).collect()
    }

    /// The storage mirror (what it made, blob listings).
    pub fn storage(&self) -> &StorageMirror {
        &self.mirror
    }

    /// Makes the emulators hold what ARM holds now: after a destroy, their containers go.
    pub async fn sync_storage(&self) -> Result<(), AzurePlaneError> {
        let wanted = match wanted_storage(&self.arm, &self.group).await {
            Ok(w) => w,
            Err(e) if e.class == twin_engine::ErrorClass::NotFound => BTreeSet::new(),
            Err(e) => return Err(e.into()),
        };
        self.mirror.reconcile(&wanted).await?;
        Ok(())
    }

    /// Stops the bridges, the brokers and the handlers.
    pub async fn stop(self) -> Result<(), AzurePlaneError> {
        self.cancel.cancel();
        for (_, task) in self.bridges {
            let _ = task.await;
        }
        for h in &self.hubs {
            h.broker.stop()?;
        }
        for s in &self.sites {
            self.host.unload(s).await;
        }
        Ok(())
    }
}
