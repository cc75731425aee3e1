//! The storage the handler's functions use: the hot container (Cosmos DB) and the cold/archive
//! blob containers, reached with the twin's managed identity in the deployed app.
//!
//! Reaching the hot container needs a round trip (the client resolves the container first), so
//! the deployed handler does it on the first invocation that needs it, not at start: the
//! handler is listening within the host's 60 s whatever the network does, and a failure (the
//! identity's role not propagated yet) fails that invocation, which Event Grid or the timer
//! retries, instead of the whole app.

use crate::adt_twin::AdtTwinUpdater;
use crate::app::settings::{CosmosLocation, HandlerSettings};
use crate::blob_object_store::BlobAuth;
use crate::error_map::cosmos_error;
use crate::{BlobObjectStore, CosmosHotStore};
use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use azure_data_cosmos::options::Region;
use azure_data_cosmos::{AccountEndpoint, AccountReference, CosmosClientBuilder, RoutingStrategy};
use std::sync::Arc;
use tokio::sync::OnceCell;
use twin_functions::event_evaluator::{RuleState, RuleStateStore};
use twin_functions::hot_store::{DevicePage, DeviceQuery, HotPage, HotStore, ScanCursor};
use twin_functions::lease::{LeaseOutcome, LeaseStore};
use twin_functions::record::HotItem;
use twin_functions::{CloudError, CloudErrorKind, Timestamp};

/// The platform's app setting naming the app's region (App Service sets it), used to prefer
/// the nearest Cosmos region.
pub const REGION_NAME: &str = "REGION_NAME";

/// The hot container, reached now or on first use.
#[derive(Clone)]
pub struct HotHandle(Arc<HotInner>);

enum HotInner {
    Ready(CosmosHotStore),
    Lazy {
        location: CosmosLocation,
        credential: Arc<dyn TokenCredential>,
        region: Option<String>,
        store: OnceCell<CosmosHotStore>,
    },
}

impl std::fmt::Debug for HotHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &*self.0 {
            HotInner::Ready(s) => f.debug_tuple("HotHandle").field(s).finish(),
            HotInner::Lazy { location, .. } => f.debug_tuple("HotHandle").field(location).finish(),
        }
    }
}

impl HotHandle {
    /// A store the caller built (tests: the emulator's key-authenticated client).
    pub fn ready(store: CosmosHotStore) -> Self {
        Self(Arc::new(HotInner::Ready(store)))
    }

    /// The container at `location` with `credential`, resolved on first use; `region` (the
    /// app's) orders the account's regions by proximity, else the account's own order is used.
    pub fn lazy(
        location: CosmosLocation,
        credential: Arc<dyn TokenCredential>,
        region: Option<String>,
    ) -> Self {
        Self(Arc::new(HotInner::Lazy {
            location,
            credential,
            region,
            store: OnceCell::new(),
        }))
    }

    async fn store(&self) -> Result<&CosmosHotStore, CloudError> {
        match &*self.0 {
            HotInner::Ready(store) => Ok(store),
            HotInner::Lazy {
                location,
                credential,
                region,
                store,
            } => {
                // A failed attempt leaves the cell empty: the next invocation tries again.
                store
                    .get_or_try_init(|| connect(location, credential.clone(), region.as_deref()))
                    .await
            }
        }
    }
}

async fn connect(
    location: &CosmosLocation,
    credential: Arc<dyn TokenCredential>,
    region: Option<&str>,
) -> Result<CosmosHotStore, CloudError> {
    let resource = format!(
        "Cosmos container {}/{} at {}",
        location.database, location.container, location.endpoint
    );
    let endpoint: AccountEndpoint = location.endpoint.parse().map_err(|e| {
        CloudError::new(
            "ConnectCosmos",
            resource.clone(),
            "InvalidEndpoint",
            format!("COSMOS_ENDPOINT is not an account endpoint: {e}"),
            CloudErrorKind::Rejected,
        )
    })?;
    let routing = match region.map(str::trim).filter(|r| !r.is_empty()) {
        Some(r) => RoutingStrategy::ProximityTo(Region::new(r.to_string())),
        None => RoutingStrategy::PreferredRegions(Vec::new()),
    };
    let client = CosmosClientBuilder::new()
        .build(
            AccountReference::with_credential(endpoint, credential),
            routing,
        )
        .await
        .map_err(|e| cosmos_error("ConnectCosmos", resource.clone(), &e))?;
    let container = client
        .database_client(&location.database)
        .container_client(location.container.clone(), None)
        .await
        .map_err(|e| cosmos_error("ResolveContainer", resource.clone(), &e))?;
    tracing::info!(container = %location.container, "hot container resolved");
    Ok(CosmosHotStore::new(container, location.container.clone()))
}

#[async_trait]
impl HotStore for HotHandle {
    async fn put_item(&self, item: &HotItem) -> Result<(), CloudError> {
        self.store().await?.put_item(item).await
    }
    async fn query_page(&self, query: &DeviceQuery) -> Result<HotPage, CloudError> {
        self.store().await?.query_page(query).await
    }
    async fn scan_devices_before(
        &self,
        cutoff: Timestamp,
        after: Option<ScanCursor>,
    ) -> Result<DevicePage, CloudError> {
        self.store().await?.scan_devices_before(cutoff, after).await
    }
    async fn delete_items(&self, device_id: &str, ids: &[Timestamp]) -> Result<(), CloudError> {
        self.store().await?.delete_items(device_id, ids).await
    }
}

#[async_trait]
impl LeaseStore for HotHandle {
    async fn try_acquire_lease(
        &self,
        name: &str,
        holder: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<LeaseOutcome, CloudError> {
        self.store()
            .await?
            .try_acquire_lease(name, holder, until, now)
            .await
    }
    async fn release_lease(&self, name: &str, holder: &str) -> Result<bool, CloudError> {
        self.store().await?.release_lease(name, holder).await
    }
}

#[async_trait]
impl RuleStateStore for HotHandle {
    async fn get(&self, rule: &str) -> Result<Option<RuleState>, CloudError> {
        RuleStateStore::get(self.store().await?, rule).await
    }
    async fn compare_and_set(
        &self,
        rule: &str,
        expected: Option<RuleState>,
        next: RuleState,
    ) -> Result<bool, CloudError> {
        self.store()
            .await?
            .compare_and_set(rule, expected, next)
            .await
    }
}

/// The stores of one handler.
#[derive(Debug, Clone, Default)]
pub struct Stores {
    /// The hot container, when a function uses it.
    pub hot: Option<HotHandle>,
    /// The cold/archive account, when a mover uses it.
    pub objects: Option<BlobObjectStore>,
    /// The Azure Digital Twins instance the persister patches twins in, when L4 is on Azure.
    pub twin: Option<Arc<AdtTwinUpdater>>,
    /// The twin's managed identity, for the event rules' actions (IoT Hub, Event Grid).
    pub credential: Option<Arc<dyn TokenCredential>>,
}

impl Stores {
    /// The deployed app's stores: the endpoints from the settings, the twin's user-assigned
    /// managed identity (`AZURE_CLIENT_ID`) as the credential, `REGION_NAME` from `lookup`.
    pub fn from_settings(
        settings: &HandlerSettings,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, CloudError> {
        let Some(client_id) = &settings.client_id else {
            // No function of this app touches storage.
            return Ok(Self::default());
        };
        let credential = crate::credential::managed_identity_with_client_id(client_id.clone())?;
        let hot = settings
            .cosmos
            .clone()
            .map(|c| HotHandle::lazy(c, credential.clone(), lookup(REGION_NAME)));
        let objects = settings
            .blob_endpoint
            .clone()
            .map(|url| BlobObjectStore::new(url, BlobAuth::Token(credential.clone())));
        let twin = settings
            .adt_endpoint
            .as_deref()
            .map(|e| Arc::new(AdtTwinUpdater::new(e, credential.clone())));
        Ok(Self {
            hot,
            objects,
            twin,
            credential: Some(credential),
        })
    }

    /// Stores the caller built: the test-only path, for clients authenticated with the
    /// emulators' key or SAS. The deployed app never takes it (`run_from_environment` always
    /// uses [`Stores::from_settings`]); no app setting can select it.
    pub fn prebuilt(hot: Option<CosmosHotStore>, objects: Option<BlobObjectStore>) -> Self {
        Self {
            hot: hot.map(HotHandle::ready),
            objects,
            twin: None,
            credential: None,
        }
    }

    /// The same stores, with `credential` for the event rules' actions (tests: a fixed token
    /// the fakes accept).
    pub fn with_credential(mut self, credential: Arc<dyn TokenCredential>) -> Self {
        self.credential = Some(credential);
        self
    }
}
