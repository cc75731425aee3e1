//! Layer 1: per device a thing, a certificate and an IoT policy (attached to each other); the
//! topic rule on `<twin>/iot-data/+` invoking the dispatcher, with the dispatcher's permission for
//! IoT scoped to the rule, and its error action into the layer's dead-letter queue (which also
//! takes the dispatcher's failed events); and the simulator config for the deployed twin.

pub mod attachments;
pub mod certificate;
pub mod iot_policy;
pub mod rotation;
pub mod simulator_config;
pub mod thing;
pub mod topic_rule;

use crate::catalogue::{self, LayerCatalogue};
use crate::context::resource_id;
use crate::dead_letters;
use crate::iam::RoleSpec;
use crate::lambda_fn::{build_functions, function_arn, FunctionSpec};
use crate::permissions::permission_spec;
use crate::LayerContext;
use serde_json::json;
use twin_config::{names, Layer};
use twin_engine::{CloudError, ResourceSpec};

/// The resources of L1.
pub fn specs(ctx: &LayerContext<'_>) -> Result<Vec<ResourceSpec>, CloudError> {
    let layer = Layer::L1;
    let twin = ctx.name();
    let mut specs = Vec::new();
    let mut certificates = Vec::new();
    for d in &ctx.twin.devices {
        let thing_name = names::thing_name(twin, &d.id);
        let policy_name = names::iot_policy_name(twin, &d.id);
        let thing = ctx
            .spec(layer, thing::KIND, &d.id, &thing_name)
            .desired(json!({"twin": twin}));
        let dir = certificate::device_dir(&ctx.twin.dir, &d.id);
        let mut cert = ctx
            .spec(layer, certificate::KIND, &d.id, &thing_name)
            .desired(json!({"status": "ACTIVE"}));
        cert.inputs["thing"] = json!(thing_name);
        cert.inputs["dir"] = json!(dir.display().to_string());
        let policy = ctx
            .spec(layer, iot_policy::KIND, &d.id, &policy_name)
            .desired(json!({"document": iot_policy::policy_document(ctx, &d.id)}));
        let attach = ctx
            .spec(layer, attachments::KIND, &d.id, &thing_name)
            .depends_on([thing.id.clone(), cert.id.clone(), policy.id.clone()])
            .desired(json!({
                "certificate": cert.id.0,
                "thing": thing_name,
                "policy": policy_name,
                "thing_attached": true,
                "policy_attached": true,
                "other_principals": [],
            }));
        certificates.push(attach.id.clone());
        specs.extend([thing, cert, policy, attach]);
    }

    // The dispatcher learns the devices and their processors from the catalogue object: a
    // device list in its environment would pass Lambda's 4 KB limit near 200 devices.
    let catalogue = LayerCatalogue::new(ctx, layer)?;
    let dispatcher_name = names::function_name(twin, "dispatcher");
    // Two ARNs for any number of devices: the shared processor and the pattern of the devices'
    // own processors (`<twin>--*` cannot match another twin's functions).
    let processors = [
        ctx.clients.arn(
            "lambda",
            &format!("function:{}", names::shared_processor_function_name(twin)),
        ),
        ctx.clients.arn(
            "lambda",
            &format!("function:{}", names::processor_function_name(twin, "*")),
        ),
    ];
    let role = RoleSpec::new("dispatcher", "lambda.amazonaws.com")
        .allow_logs(ctx, std::slice::from_ref(&dispatcher_name))
        .allow(&["lambda:InvokeFunction"], &processors)
        .allow(&["s3:GetObject"], &[catalogue::read_arn(ctx, layer)]);
    let role = dead_letters::allow_send(role, ctx, layer);
    // IoT's Lambda action invokes the dispatcher asynchronously.
    let dispatcher = catalogue.pass_to(
        FunctionSpec::new("dispatcher", "dispatcher", "dispatcher")
            .memory(256)
            .async_with_dead_letters(),
    );
    let dispatcher_id = dispatcher.id(layer);
    // The rule's error action sends what the rule could not deliver to the same queue, as this
    // role (the only thing it may do).
    let rule_role = dead_letters::allow_send(
        RoleSpec::new(names::IOT_RULE_ROLE, "iot.amazonaws.com"),
        ctx,
        layer,
    );
    let rule_role_id = rule_role.id(layer);
    specs.push(dead_letters::queue_spec(ctx, layer));
    specs.push(rule_role.build(ctx, layer));
    specs.push(role.build(ctx, layer));
    specs.push(catalogue.spec);
    specs.extend(build_functions(ctx, layer, vec![dispatcher])?);
    let permission = permission_spec(
        ctx,
        layer,
        "dispatcher-iot",
        "dispatcher",
        dispatcher_id.clone(),
        "iot.amazonaws.com",
        &topic_rule::rule_arn(ctx),
    );
    let mut rule = ctx
        .spec(
            layer,
            topic_rule::KIND,
            "telemetry",
            names::topic_rule_name(twin),
        )
        .depends_on([
            dispatcher_id,
            permission.id.clone(),
            dead_letters::queue_id(layer),
            rule_role_id,
        ])
        .desired(json!({
            "sql": topic_rule::rule_sql(twin),
            "function_arn": function_arn(ctx, "dispatcher"),
            "enabled": true,
            "error_queue": dead_letters::queue_name(twin, layer),
            "error_role_arn": crate::iam::role_arn(ctx, names::IOT_RULE_ROLE),
        }));
    // The queue's URL (what the error action needs) is what SQS returns, read from the queue.
    rule.inputs["error_queue_id"] = json!(dead_letters::queue_id(layer).0);
    specs.push(permission);
    specs.push(rule);

    let sim_path = simulator_config::simulator_dir(&ctx.twin.dir).join("config.json");
    let mut sim_desired = json!({
        "path": sim_path.display().to_string(),
        "topic": format!("{twin}/iot-data"),
        "payload_file_path": "payloads.json",
        "auth_files_path": "../devices",
        "root_ca_cert_path": format!("../devices/{}", simulator_config::ROOT_CA_FILE),
        "root_ca_bundle": simulator_config::ROOT_CA_BUNDLE,
        "client_id_prefix": names::per_device_prefix(twin),
    });
    // Only when a rule sends feedback: a twin without such rules keeps the file it had.
    let feedback = simulator_config::feedback_topics(ctx.twin);
    if !feedback.is_empty() {
        sim_desired["feedback_topics"] = json!(feedback);
    }
    specs.push(
        ResourceSpec::new(
            resource_id(layer, simulator_config::KIND, "config"),
            layer,
            twin_config::ProviderName::Aws,
            simulator_config::KIND,
            sim_path.display().to_string(),
        )
        .depends_on(certificates)
        .desired(sim_desired)
        .inputs(json!({"example_payloads": ctx.twin.example_payloads()})),
    );
    Ok(specs)
}
