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
use twin_config::{names, Layer};
use twin_engine::{CloudError, ResourceSpec};

/// Tier names of the cold and archive buckets.
pub const COLD: &str = "cold";
/// Tier name of the archive bucket.
pub const ARCHIVE: &str = "archive";

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
    let role = RoleSpec::new(mover, "lambda.amazonaws.com")
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
        )
        .allow(&["s3:PutObject", "s3:GetObject"], &[format!("{cold}/*")])
        .allow(&["s3:ListBucket"], &[cold]);
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
        function = function.depends_on([buckets::bucket_id(Layer::L3Cold, COLD)]);
    }
    specs.extend(mover_specs(ctx, layer, mover, role, function)?);
    Ok(specs)
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
