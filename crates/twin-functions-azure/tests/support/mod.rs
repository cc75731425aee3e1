//! Shared set-up for the tests against the emulators: a Cosmos container and blob containers per
//! test, in the one Azurite and Cosmos emulator this test binary starts.

#![allow(dead_code)]

use azure_data_cosmos::models::ContainerProperties;
use azure_data_cosmos::options::Region;
use azure_data_cosmos::{AccountReference, CosmosClient, CosmosClientBuilder, RoutingStrategy};
use azure_storage_blob::BlobContainerClient;
use std::collections::BTreeMap;
use tokio::sync::OnceCell;
use twin_functions::object_store::{ObjectInfo, ObjectStore};
use twin_functions_azure::blob_object_store::BlobAuth;
use twin_functions_azure::{BlobObjectStore, CosmosHotStore};

pub const DATABASE: &str = "twin";

static CLIENT: OnceCell<CosmosClient> = OnceCell::const_new();

/// One Cosmos client (and the database) for the whole test binary.
pub async fn cosmos_client() -> &'static CosmosClient {
    CLIENT
        .get_or_init(|| async {
            let cosmos = twin_testkit::azure::cosmos();
            eprintln!("cosmos emulator started in {:?}", cosmos.started_in);
            let endpoint = cosmos.endpoint.parse().expect("emulator endpoint");
            let account = AccountReference::with_authentication_key(endpoint, cosmos.key.clone());
            let client = CosmosClientBuilder::new()
                .build(account, RoutingStrategy::ProximityTo(Region::EAST_US))
                .await
                .expect("Cosmos client for the emulator");
            client
                .create_database(DATABASE, None)
                .await
                .expect("create database");
            client
        })
        .await
}

/// One test's resources: a hot container `<name>-hot`, blob containers `<name>-cold` and
/// `<name>-archive`.
pub struct AzureTwin {
    pub hot: String,
    pub cold: String,
    pub archive: String,
}

impl AzureTwin {
    pub async fn create(name: &str) -> Self {
        let twin = Self {
            hot: format!("{name}-hot"),
            cold: format!("{name}-cold"),
            archive: format!("{name}-archive"),
        };
        let db = cosmos_client().await.database_client(DATABASE);
        db.create_container(
            ContainerProperties::new(twin.hot.clone(), "/iotDeviceId".into()),
            None,
        )
        .await
        .expect("create hot container");
        let azurite = twin_testkit::azure::azurite();
        eprintln!("azurite started in {:?}", azurite.started_in);
        for c in [&twin.cold, &twin.archive] {
            let url = azurite.container_url(c).parse().expect("container url");
            BlobContainerClient::new(url, None, None)
                .expect("container client")
                .create(None)
                .await
                .expect("create blob container");
        }
        twin
    }

    pub async fn hot_store(&self) -> CosmosHotStore {
        let container = cosmos_client()
            .await
            .database_client(DATABASE)
            .container_client(self.hot.clone(), None)
            .await
            .expect("container client");
        CosmosHotStore::new(container, self.hot.clone())
    }

    pub fn object_store(&self) -> BlobObjectStore {
        let azurite = twin_testkit::azure::azurite();
        BlobObjectStore::new(
            azurite.blob_endpoint.clone(),
            BlobAuth::Sas(azurite.account_sas()),
        )
    }

    /// Every object of a container with its metadata as HEAD reports it.
    pub async fn objects(&self, bucket: &str) -> BTreeMap<String, ObjectInfo> {
        let store = self.object_store().with_list_page(7);
        let mut all = BTreeMap::new();
        let mut next = None;
        loop {
            let page = store.list_objects(bucket, "", next).await.expect("list");
            for o in page.objects {
                let head = store
                    .head_object(bucket, &o.key)
                    .await
                    .expect("head")
                    .expect("listed object exists");
                all.insert(o.key.clone(), head);
            }
            match page.next {
                Some(n) => next = Some(n),
                None => return all,
            }
        }
    }
}

/// A rule as twin-config loads it (references resolved): every `<entity>.<device>.<property>`
/// of `text` names the device `<device>` itself.
pub fn resolved_rule(
    key: &str,
    text: &str,
    fire: twin_events::Fire,
    action: twin_events::Action,
) -> twin_events::Rule {
    struct SameName;
    impl twin_events::Schema for SameName {
        fn resolve(
            &self,
            p: &twin_events::PropertyRef,
        ) -> Result<Option<twin_events::Resolved>, String> {
            Ok(Some(twin_events::Resolved {
                iot_device_id: p.device.clone(),
                value_type: twin_events::ValueType::Double,
            }))
        }
    }
    let mut condition = twin_events::Condition::parse(text).expect("condition parses");
    let errors = twin_events::check(&mut condition.expr, &SameName);
    assert!(errors.is_empty(), "{errors:?}");
    twin_events::Rule {
        key: key.into(),
        description: None,
        condition,
        action,
        fire,
    }
}
