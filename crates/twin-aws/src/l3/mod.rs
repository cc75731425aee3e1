//! Layer 3: hot (DynamoDB table, hot reader behind an HTTP API, daily hot-to-cold mover), cold
//! (bucket, daily cold-to-archive mover) and archive (bucket).

pub mod buckets;
pub mod http_api;
pub mod schedules;
pub mod table;

use crate::iam::RoleSpec;
use crate::lambda_fn::{build_functions, FunctionSpec};
use crate::permissions::permission_spec;
use crate::LayerContext;
use twin_config::{names, Boundary, Hop, Layer, ProviderName};
use twin_engine::{CloudError, OutputRef, ResourceSpec};

/// Tier names of the cold and archive buckets.
pub const COLD: &str = "cold";
/// Tier name of the archive bucket.
pub const ARCHIVE: &str = "archive";

/// The kind of the Azure Function App that serves the hot → cold ingress (twin-azure's
/// `l2::site::KIND`; the deployer's tests check the two agree). The sender finds it by kind
/// because the Azure provider decides which of its layers hosts the app.
pub const AZURE_FUNCTION_APP_KIND: &str = "azure_function_app";

/// The Function App's output holding its host name as ARM reports it (`defaultHostName`).
pub const AZURE_HOST_ATTR: &str = "default_host_name";

/// Where the Function App serves the hot → cold ingress (`ingress-cold`, HTTP trigger).
pub const AZURE_COLD_INGRESS_URL: &str = "https://{}/api/ingress-cold";

/// The URL of the hot → cold ingress on `receiver`, as a reference the engine resolves; `None`
/// when this version has no ingress there.
pub fn cold_ingress_url(receiver: ProviderName) -> Option<OutputRef> {
    match receiver {
        ProviderName::Azure => Some(
            OutputRef::of_kind(
                ProviderName::Azure,
                AZURE_FUNCTION_APP_KIND,
                AZURE_HOST_ATTR,
            )
            .within(AZURE_COLD_INGRESS_URL),
        ),
        _ => None,
    }
}

/// The resources of one of the three L3 layers.
pub fn specs(ctx: &LayerContext<'_>, layer: Layer) -> Result<Vec<ResourceSpec>, CloudError> {
    match layer {
        Layer::L3Archive => Ok(vec![buckets::bucket_spec(ctx, layer, ARCHIVE)]),
        Layer::L3Cold => cold(ctx),
        Layer::L3Hot => hot(ctx),
        _ => Ok(Vec::new()),
    }
}

fn bucket_arn(ctx: &LayerContext<'_>, tier: &str) -> String {
    format!(
        "arn:{}:s3:::{}",
        ctx.clients.partition,
        buckets::bucket_name(ctx, tier)
    )
}

fn cold(ctx: &LayerContext<'_>) -> Result<Vec<ResourceSpec>, CloudError> {
    let layer = Layer::L3Cold;
    let mover = "cold-to-archive-mover";
    let fn_name = names::function_name(ctx.name(), mover);
    let (cold, archive) = (bucket_arn(ctx, COLD), bucket_arn(ctx, ARCHIVE));
    let role = RoleSpec::new(mover, "lambda.amazonaws.com")
        .allow_logs(ctx, std::slice::from_ref(&fn_name))
        .allow(&["s3:ListBucket"], std::slice::from_ref(&cold))
        .allow(&["s3:GetObject", "s3:DeleteObject"], &[format!("{cold}/*")])
        // The run lease: one object written with a conditional PUT (two runs never overlap).
        .allow(&["s3:PutObject"], &[format!("{cold}/#lease/*")])
        .allow(&["s3:PutObject", "s3:GetObject"], &[format!("{archive}/*")]);
    let mut specs = vec![buckets::bucket_spec(ctx, layer, COLD)];
    let mut function = FunctionSpec::new(mover, mover, mover)
        .env("COLD_BUCKET", buckets::bucket_name(ctx, COLD))
        .env("ARCHIVE_BUCKET", buckets::bucket_name(ctx, ARCHIVE))
        .env(
            "COLD_STORAGE_DAYS",
            ctx.twin.twin.cold_storage_size_in_days.to_string(),
        )
        .timeout(900)
        .memory(512)
        .depends_on([buckets::bucket_id(layer, COLD)]);
    if ctx.on_aws(Layer::L3Archive) {
        function = function.depends_on([buckets::bucket_id(Layer::L3Archive, ARCHIVE)]);
    }
    specs.extend(mover_specs(ctx, layer, mover, role, function)?);
    Ok(specs)
}

fn hot(ctx: &LayerContext<'_>) -> Result<Vec<ResourceSpec>, CloudError> {
    let layer = Layer::L3Hot;
    let table_arn = table::table_arn(ctx);
    let table_name = names::table_name(ctx.name());
    let mut specs = vec![table::table_spec(ctx)];

    let reader_name = names::function_name(ctx.name(), "hot-reader");
    let reader_role = RoleSpec::new("hot-reader", "lambda.amazonaws.com")
        .allow_logs(ctx, std::slice::from_ref(&reader_name))
        .allow(&["dynamodb:Query"], std::slice::from_ref(&table_arn));
    let reader = FunctionSpec::new("hot-reader", "hot-reader", "hot-reader")
        .env("HOT_TABLE", &table_name)
        .memory(256)
        .depends_on([table::table_id()]);
    let reader_id = reader.id(layer);
    specs.push(reader_role.build(ctx, layer));
    specs.extend(build_functions(ctx, layer, vec![reader])?);
    specs.push(http_api::http_api_spec(ctx, reader_id));

    let mover = "hot-to-cold-mover";
    let mover_name = names::function_name(ctx.name(), mover);
    let cold = bucket_arn(ctx, COLD);
    let mut role = RoleSpec::new(mover, "lambda.amazonaws.com")
        .allow_logs(ctx, std::slice::from_ref(&mover_name))
        .allow(
            &[
                "dynamodb:Query",
                "dynamodb:Scan",
                "dynamodb:DeleteItem",
                "dynamodb:BatchWriteItem",
                // The run lease: one item written with a conditional PutItem.
                "dynamodb:PutItem",
            ],
            &[table_arn],
        );
    let mut function = FunctionSpec::new(mover, mover, mover)
        .env("HOT_TABLE", &table_name)
        .env("COLD_BUCKET", buckets::bucket_name(ctx, COLD))
        .env(
            "HOT_STORAGE_DAYS",
            ctx.twin.twin.hot_storage_size_in_days.to_string(),
        )
        .timeout(900)
        .memory(512)
        .depends_on([table::table_id()]);
    if ctx.on_aws(Layer::L3Cold) {
        role = role
            .allow(&["s3:PutObject", "s3:GetObject"], &[format!("{cold}/*")])
            .allow(&["s3:ListBucket"], &[cold]);
        function = function.depends_on([buckets::bucket_id(Layer::L3Cold, COLD)]);
    } else if let Some(b) = Boundary::of(ctx.name(), &ctx.twin.providers, Hop::HotToCold) {
        let (secret, r, f) = remote_cold(ctx, &b, role, function)?;
        specs.push(secret);
        (role, function) = (r, f);
    }
    specs.extend(mover_specs(ctx, layer, mover, role, function)?);
    Ok(specs)
}

/// The mover's sending side of the hot → cold boundary `b`: the boundary's secret (its value
/// is put by the deployer's sync after apply, never by a spec), the role allowed to read
/// exactly that secret, and the env that makes the mover post to the remote ingress.
fn remote_cold(
    ctx: &LayerContext<'_>,
    b: &Boundary,
    role: RoleSpec,
    function: FunctionSpec,
) -> Result<(ResourceSpec, RoleSpec, FunctionSpec), CloudError> {
    let url = cold_ingress_url(b.receiver.provider).ok_or_else(|| {
        CloudError::fatal(
            "UnsupportedBoundary",
            format!(
                "boundary {}: this version has no hot → cold ingress on {}",
                b.hop.slug(),
                b.receiver.provider
            ),
        )
        .with_hint("place L3 cold on AWS or Azure")
    })?;
    let secret = crate::boundary_secret::secret_spec(ctx, b);
    let arn = OutputRef::of(secret.id.clone(), "arn");
    let role = role.allow_ref(&["secretsmanager:GetSecretValue"], &arn);
    let function = function
        .env(twin_functions::env_vars::BOUNDARY_SECRET_NAME, &b.secret)
        .env_ref(twin_functions::env_vars::BOUNDARY_INGRESS_URL, url)
        .depends_on([secret.id.clone()]);
    Ok((secret, role, function))
}

/// A mover's role, function, invoke permission for EventBridge and daily rule, and the layer's
/// dead-letter queue its failed runs go to.
fn mover_specs(
    ctx: &LayerContext<'_>,
    layer: Layer,
    mover: &str,
    role: RoleSpec,
    function: FunctionSpec,
) -> Result<Vec<ResourceSpec>, CloudError> {
    let fn_id = function.id(layer);
    // EventBridge invokes the mover asynchronously: a failed run goes to the layer's queue.
    let role = crate::dead_letters::allow_send(role, ctx, layer);
    let function = function.async_with_dead_letters();
    let mut specs = vec![
        crate::dead_letters::queue_spec(ctx, layer),
        role.build(ctx, layer),
    ];
    specs.extend(build_functions(ctx, layer, vec![function])?);
    let permission = permission_spec(
        ctx,
        layer,
        &format!("{mover}-schedule"),
        mover,
        fn_id.clone(),
        "events.amazonaws.com",
        &schedules::rule_arn(ctx, mover),
    );
    let rule = schedules::schedule_spec(ctx, layer, mover, vec![fn_id, permission.id.clone()]);
    specs.push(permission);
    specs.push(rule);
    Ok(specs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use twin_config::{Providers, TwinConfig};
    use twin_functions::env_vars;

    fn twin(cold: ProviderName) -> TwinConfig {
        let mut providers = Providers::all(ProviderName::Aws);
        providers.set(Layer::L3Cold, cold);
        providers.set(Layer::L3Archive, cold);
        TwinConfig {
            dir: std::env::temp_dir(),
            twin: serde_json::from_value(json!({
                "digital_twin_name": "t", "hot_storage_size_in_days": 1,
                "cold_storage_size_in_days": 2
            }))
            .expect("twin"),
            devices: serde_json::from_value(json!([{
                "id": "s-1", "properties": [{"name": "temperature", "dataType": "DOUBLE"}]
            }]))
            .expect("devices"),
            providers,
            hierarchy: None,
            events: Default::default(),
            warnings: Vec::new(),
        }
    }

    fn hot(config: &TwinConfig) -> Vec<ResourceSpec> {
        let (clients, artifacts) = crate::testing::offline_clients_and_artifacts();
        let ctx = LayerContext {
            twin: config,
            clients: &clients,
            artifacts: &artifacts,
        };
        specs(&ctx, Layer::L3Hot).expect("specs")
    }

    fn named<'a>(specs: &'a [ResourceSpec], kind: &str, name: &str) -> &'a ResourceSpec {
        specs
            .iter()
            .find(|s| s.kind == kind && s.name == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    }

    #[test]
    fn cold_on_azure_gives_the_mover_the_boundary_secret_and_the_remote_ingress() {
        let specs = hot(&twin(ProviderName::Azure));
        let secret = named(
            &specs,
            crate::boundary_secret::KIND,
            "t-boundary-hot-to-cold",
        );
        assert_eq!(secret.layer, Layer::L3Hot);
        assert_eq!(
            secret.id,
            crate::boundary_secret::secret_id(Layer::L3Hot, Hop::HotToCold)
        );
        let mover = named(&specs, crate::lambda_fn::KIND, "t-hot-to-cold-mover");
        let env = &mover.desired["env"];
        assert_eq!(
            env[env_vars::BOUNDARY_SECRET_NAME],
            "t-boundary-hot-to-cold"
        );
        let url = OutputRef::from_value(&env[env_vars::BOUNDARY_INGRESS_URL]).expect("a reference");
        assert_eq!(
            url,
            OutputRef::of_kind(
                ProviderName::Azure,
                "azure_function_app",
                "default_host_name"
            )
            .within("https://{}/api/ingress-cold")
        );
        assert!(mover.depends_on.contains(&secret.id));
        // The role reads exactly that secret, by its ARN output; no S3 right at all.
        let role = named(&specs, crate::iam::KIND, "t-hot-to-cold-mover");
        let statements = role.desired["policy"]["Statement"]
            .as_array()
            .expect("statements");
        let reads: Vec<&Value> = statements
            .iter()
            .filter(|s| s["Action"].to_string().contains("secretsmanager"))
            .collect();
        assert_eq!(reads.len(), 1, "{statements:?}");
        assert_eq!(reads[0]["Action"], json!(["secretsmanager:GetSecretValue"]));
        assert_eq!(
            reads[0]["Resource"],
            json!([OutputRef::of(secret.id.clone(), "arn").to_value()])
        );
        assert!(
            !role.desired.to_string().contains("s3:"),
            "{}",
            role.desired
        );
    }

    #[test]
    fn cold_on_aws_keeps_the_in_cloud_mover() {
        let specs = hot(&twin(ProviderName::Aws));
        assert!(!specs.iter().any(|s| s.kind == crate::boundary_secret::KIND));
        let mover = named(&specs, crate::lambda_fn::KIND, "t-hot-to-cold-mover");
        let env = mover.desired["env"].as_object().expect("env");
        assert!(!env.contains_key(env_vars::BOUNDARY_INGRESS_URL));
        assert!(!env.contains_key(env_vars::BOUNDARY_SECRET_NAME));
        let role = named(&specs, crate::iam::KIND, "t-hot-to-cold-mover");
        let text = role.desired.to_string();
        assert!(text.contains("s3:PutObject"), "{text}");
        assert!(!text.contains("secretsmanager"), "{text}");
        // No reference anywhere: the in-cloud mover is what it was.
        assert!(!serde_json::to_string(&specs)
            .expect("json")
            .contains("$output"));
    }
}
