//! The AWS sending side of the hot → cold boundary, deployed through the engine on moto: with
//! L3 cold on Azure, the twin's L3 hot gets the boundary secret (only its fingerprint in the
//! state), a mover that posts to the Azure Function App's `ingress-cold` (its URL taken from
//! the app's host name output, across providers) and may read exactly that secret; no cold
//! bucket on AWS; a second deploy changes nothing; destroy deletes the secret.

mod aws_support;

use async_trait::async_trait;
use aws_support::{clients, fast_retry, leftovers, setup, write_twin};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;
use twin_aws::artifacts::Artifacts;
use twin_aws::AwsProvider;
use twin_config::{Layer, ProviderName, TwinConfig};
use twin_engine::{
    CloudError, Engine, EngineOptions, NoEvents, Observed, Outputs, Provider, ResourceDriver,
    ResourceId, ResourceSpec, Scope,
};
use twin_functions::env_vars;

/// The host name the stand-in Function App reports.
const HOST: &str = "bsend-func-abc123.azurewebsites.net";

/// Stands in for the Azure provider: L3 cold holds one `azure_function_app` whose output is its
/// host name, as twin-azure's site reports it. Only what the AWS side reads of it matters here.
#[derive(Default)]
struct AzureStandIn {
    apps: Arc<Mutex<BTreeMap<String, Observed>>>,
}

struct AppDriver(Arc<Mutex<BTreeMap<String, Observed>>>);

#[async_trait]
impl ResourceDriver for AppDriver {
    async fn read(&self, spec: &ResourceSpec, _: &Outputs) -> Result<Option<Observed>, CloudError> {
        Ok(self.0.lock().unwrap().get(&spec.name).cloned())
    }
    async fn create(&self, spec: &ResourceSpec, _: &Outputs) -> Result<Observed, CloudError> {
        let o = Observed::new(
            format!("/sites/{}", spec.name),
            json!({"default_host_name": HOST}),
        );
        self.0.lock().unwrap().insert(spec.name.clone(), o.clone());
        Ok(o)
    }
    async fn update(
        &self,
        spec: &ResourceSpec,
        _: &Observed,
        deps: &Outputs,
    ) -> Result<Observed, CloudError> {
        self.create(spec, deps).await
    }
    async fn delete(&self, spec: &ResourceSpec, _: &Observed) -> Result<(), CloudError> {
        self.0.lock().unwrap().remove(&spec.name);
        Ok(())
    }
}

#[async_trait]
impl Provider for AzureStandIn {
    fn name(&self) -> ProviderName {
        ProviderName::Azure
    }
    fn scope(&self) -> Scope {
        Scope::from([("subscription".to_string(), "sub".to_string())])
    }
    async fn layer_resources(
        &self,
        layer: Layer,
        twin: &TwinConfig,
    ) -> Result<Vec<ResourceSpec>, CloudError> {
        Ok(match layer {
            Layer::L3Cold => vec![ResourceSpec::new(
                ResourceId::new(&["l3-cold", twin_aws::l3::AZURE_FUNCTION_APP_KIND, "twin"]),
                layer,
                ProviderName::Azure,
                twin_aws::l3::AZURE_FUNCTION_APP_KIND,
                format!("{}-func", twin.name()),
            )],
            _ => Vec::new(),
        })
    }
    fn driver(&self, kind: &str) -> Option<Arc<dyn ResourceDriver>> {
        (kind == twin_aws::l3::AZURE_FUNCTION_APP_KIND)
            .then(|| Arc::new(AppDriver(self.apps.clone())) as Arc<dyn ResourceDriver>)
    }
    async fn discover(&self, _: Layer, _: &TwinConfig) -> Result<Vec<ResourceSpec>, CloudError> {
        Ok(Vec::new())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mover_sends_to_the_azure_ingress_with_exactly_its_secret() {
    let moto = setup();
    let dir = tempfile::tempdir().expect("tempdir");
    let twin = "bsend-twin";
    write_twin(dir.path(), twin, 1);
    let providers = dir.path().join("config_providers.json");
    let mut p: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&providers).expect("read")).expect("json");
    p["layer_3_cold_provider"] = json!("azure");
    p["layer_3_archive_provider"] = json!("azure");
    p["azure"] = json!({"location": "westeurope"});
    std::fs::write(&providers, p.to_string()).expect("write");
    let config = Arc::new(twin_config::load_dir(dir.path()).expect("valid twin config"));
    let c = clients(&moto.endpoint).await;
    let artifacts = Arc::new(Artifacts::new(None, config.providers.aws.architecture));
    let azure = Arc::new(AzureStandIn::default());
    let engine = Engine::new(
        config.clone(),
        vec![
            Arc::new(AwsProvider::with_clients(c.clone(), artifacts)) as Arc<dyn Provider>,
            azure.clone(),
        ],
        EngineOptions {
            concurrency: 16,
            retry: fast_retry(),
        },
        Arc::new(NoEvents),
        CancellationToken::new(),
    );

    // A plan before anything exists shows the URL as still to come, and changes nothing.
    let plan = engine.plan(None).await.expect("plan");
    assert!(!plan.items.is_empty());

    let report = engine.deploy(None).await.expect("first deploy");
    assert!(report.created > 10, "{report:?}");
    let secret_name = twin_config::boundary_secret_name(twin, twin_config::Hop::HotToCold);

    // The secret exists; the state holds its name and fingerprint, never the value.
    let described = c
        .secrets
        .describe_secret()
        .secret_id(&secret_name)
        .send()
        .await
        .expect("the boundary secret exists");
    let secret_arn = described.arn().expect("arn").to_string();
    let value = twin_aws::boundary_secret::current(&c, &secret_name)
        .await
        .expect("a current value for the sync to hand over");
    let state = std::fs::read_to_string(dir.path().join(".deployer").join(format!("{twin}.json")))
        .expect("state");
    assert!(state.contains(&secret_name));
    assert!(
        !state.contains(&value.encoded()),
        "the state holds the secret"
    );

    // The mover posts to the Function App's ingress-cold and signs with that secret.
    let mover = format!("{twin}-hot-to-cold-mover");
    let conf = c
        .lambda
        .get_function_configuration()
        .function_name(&mover)
        .send()
        .await
        .expect("mover");
    let env = conf.environment().and_then(|e| e.variables()).expect("env");
    assert_eq!(
        env.get(env_vars::BOUNDARY_INGRESS_URL).map(String::as_str),
        Some(format!("https://{HOST}/api/ingress-cold").as_str())
    );
    assert_eq!(env.get(env_vars::BOUNDARY_SECRET_NAME), Some(&secret_name));

    // Its role may read exactly that secret (the ARN with Secrets Manager's suffix), and no
    // bucket: cold is not on AWS.
    let policy = c
        .iam
        .get_role_policy()
        .role_name(&mover)
        .policy_name(twin_aws::iam::INLINE_POLICY)
        .send()
        .await
        .expect("policy");
    let doc = twin_aws::iam::parse_policy_document(policy.policy_document());
    let statements = doc["Statement"].as_array().expect("statements");
    let reads: Vec<_> = statements
        .iter()
        .filter(|s| s["Action"].to_string().contains("secretsmanager"))
        .collect();
    assert_eq!(reads.len(), 1, "{doc}");
    assert_eq!(reads[0]["Action"], json!(["secretsmanager:GetSecretValue"]));
    assert_eq!(reads[0]["Resource"], json!([secret_arn]));
    assert!(!doc.to_string().contains("s3:"), "{doc}");
    let buckets = c.s3.list_buckets().send().await.expect("buckets");
    assert!(
        !buckets
            .buckets()
            .iter()
            .filter_map(|b| b.name())
            .any(|n| n.starts_with(twin) && (n.contains("-cold") || n.contains("-archive"))),
        "{buckets:?}"
    );

    // A second deploy changes nothing (the resolved URL and ARN are no drift).
    let again = engine.deploy(None).await.expect("second deploy");
    assert_eq!((again.created, again.updated), (0, 0), "{again:?}");

    // Destroy deletes the secret at once (no recovery window) with everything else.
    engine.destroy(None).await.expect("destroy");
    let gone = c
        .secrets
        .describe_secret()
        .secret_id(&secret_name)
        .send()
        .await;
    assert!(gone.is_err(), "the secret is left: {gone:?}");
    assert_eq!(leftovers(&c, twin).await, Vec::<String>::new());
    assert!(azure.apps.lock().unwrap().is_empty());
}
