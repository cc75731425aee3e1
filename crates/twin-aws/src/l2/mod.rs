//! Layer 2: the processors and the persister. Devices that name no processor crate of their own
//! share one function, `<twin>-processor`; a device with its own crate (or every device, with
//! `aws.processor_per_device`) gets `<twin>--<device>-processor`. Every processor reads the
//! devices' property types from the catalogue object ([`crate::catalogue`]), so neither their
//! environment nor their role grows with the number of devices.

pub mod events;
pub mod events_topic;

use crate::catalogue::{self, LayerCatalogue};
use crate::dead_letters;
use crate::iam::RoleSpec;
use crate::l3::table;
use crate::lambda_fn::{build_functions, function_arn, FunctionSpec};
use crate::LayerContext;
use twin_config::{names, Layer};
use twin_engine::{CloudError, ResourceSpec};

/// Crate of the default processor.
pub const DEFAULT_PROCESSOR: &str = twin_config::DEFAULT_PROCESSOR_CRATE;

/// Role shared by every processor: they all need exactly the same (invoke the persister).
pub const PROCESSOR_ROLE: &str = "processor";

/// The resources of L2; `iot_data_endpoint` (the account's `iot:Data-ATS` URL) is needed when
/// an event rule sends feedback ([`events::sends_feedback`]).
pub fn specs(
    ctx: &LayerContext<'_>,
    iot_data_endpoint: Option<&str>,
) -> Result<Vec<ResourceSpec>, CloudError> {
    let layer = Layer::L2;
    let twin = ctx.name();
    let persister_name = names::function_name(twin, "persister");
    let persister_role = RoleSpec::new("persister", "lambda.amazonaws.com")
        .allow_logs(ctx, std::slice::from_ref(&persister_name));
    let mut persister_role = dead_letters::allow_send(persister_role, ctx, layer);
    let mut persister = FunctionSpec::new("persister", "persister", "persister")
        .env("HOT_TABLE", names::table_name(twin))
        .memory(256)
        .async_with_dead_letters();
    if ctx.on_aws(Layer::L3Hot) {
        persister_role = persister_role.allow(&["dynamodb:PutItem"], &[table::table_arn(ctx)]);
        persister = persister.depends_on([table::table_id()]);
    }
    let wiring = events::wire(ctx, layer, persister, persister_role, iot_data_endpoint)?;
    let (persister, persister_role) = (wiring.persister, wiring.persister_role);
    let persister_id = persister.id(layer);

    let catalogue = LayerCatalogue::new(ctx, layer)?;
    // The shared processor's name and one pattern for the devices' own processors instead of one
    // ARN per device keep the policy far below IAM's size limit for any number of devices, and
    // still name only this twin's processors.
    let processor_logs = [
        names::shared_processor_function_name(twin),
        names::processor_function_name(twin, "*"),
    ];
    let processor_role = RoleSpec::new(PROCESSOR_ROLE, "lambda.amazonaws.com")
        .allow_logs(ctx, &processor_logs)
        .allow(
            &["lambda:InvokeFunction"],
            &[function_arn(ctx, "persister")],
        )
        .allow(&["s3:GetObject"], &[catalogue::read_arn(ctx, layer)]);
    let processor_role = dead_letters::allow_send(processor_role, ctx, layer);

    let processor = |local: &str, crate_name: &str| {
        catalogue.pass_to(
            FunctionSpec::new(local, crate_name, PROCESSOR_ROLE)
                .env("PERSISTER_FUNCTION", &persister_name)
                .depends_on([persister_id.clone()])
                .async_with_dead_letters(),
        )
    };
    let mut functions = vec![persister];
    if ctx
        .twin
        .devices
        .iter()
        .any(|d| !ctx.twin.has_own_processor(d))
    {
        functions.push(processor(names::SHARED_PROCESSOR, DEFAULT_PROCESSOR));
    }
    for d in ctx
        .twin
        .devices
        .iter()
        .filter(|d| ctx.twin.has_own_processor(d))
    {
        functions.push(
            processor(
                &names::processor_local_name(&d.id),
                ctx.twin.processor_crate(d),
            )
            .env("DEVICE_ID", &d.id),
        );
    }
    functions.extend(wiring.functions);
    let mut specs = vec![
        dead_letters::queue_spec(ctx, layer),
        persister_role.build(ctx, layer),
        processor_role.build(ctx, layer),
        catalogue.spec,
    ];
    specs.extend(wiring.specs);
    specs.extend(build_functions(ctx, layer, functions)?);
    Ok(specs)
}
