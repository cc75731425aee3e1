//! Layer 2: a processor function per device (the default code shared by every device that names
//! no crate of its own) and the persister.

use crate::iam::RoleSpec;
use crate::l3::table;
use crate::lambda_fn::{build_functions, function_arn, FunctionSpec};
use crate::LayerContext;
use serde_json::json;
use twin_config::{names, Layer};
use twin_engine::{CloudError, ResourceSpec};

/// Crate of the default processor.
pub const DEFAULT_PROCESSOR: &str = "processor";

/// Role shared by every processor: they all need exactly the same (invoke the persister).
pub const PROCESSOR_ROLE: &str = "processor";

/// The resources of L2.
pub fn specs(ctx: &LayerContext<'_>) -> Result<Vec<ResourceSpec>, CloudError> {
    let layer = Layer::L2;
    let twin = ctx.name();
    let persister_name = names::function_name(twin, "persister");
    let mut persister_role = RoleSpec::new("persister", "lambda.amazonaws.com")
        .allow_logs(ctx, std::slice::from_ref(&persister_name));
    let mut persister = FunctionSpec::new("persister", "persister", "persister")
        .env("HOT_TABLE", names::table_name(twin))
        .memory(256);
    if ctx.on_aws(Layer::L3Hot) {
        persister_role = persister_role.allow(&["dynamodb:PutItem"], &[table::table_arn(ctx)]);
        persister = persister.depends_on([table::table_id()]);
    }
    let persister_id = persister.id(layer);

    // One pattern instead of one ARN per device keeps the policy far below IAM's size limit
    // for any number of devices, and still names only this twin's processors.
    let processors_pattern = names::processor_function_name(twin, "*");
    let processor_role = RoleSpec::new(PROCESSOR_ROLE, "lambda.amazonaws.com")
        .allow_logs(ctx, &[processors_pattern])
        .allow(
            &["lambda:InvokeFunction"],
            &[function_arn(ctx, "persister")],
        );

    let mut functions = vec![persister];
    for d in &ctx.twin.devices {
        let properties: Vec<_> = d
            .properties
            .iter()
            .map(|p| json!({"name": p.name, "dataType": p.data_type.as_str()}))
            .collect();
        functions.push(
            FunctionSpec::new(
                &names::processor_local_name(&d.id),
                d.processor.as_deref().unwrap_or(DEFAULT_PROCESSOR),
                PROCESSOR_ROLE,
            )
            .env("DEVICE_ID", &d.id)
            .env(
                "DEVICE_PROPERTIES",
                serde_json::Value::Array(properties).to_string(),
            )
            .env("PERSISTER_FUNCTION", &persister_name)
            .depends_on([persister_id.clone()]),
        );
    }
    let mut specs = vec![
        persister_role.build(ctx, layer),
        processor_role.build(ctx, layer),
    ];
    specs.extend(build_functions(ctx, layer, functions)?);
    Ok(specs)
}
