//! Layer 4 on Azure: an Azure Digital Twins instance (ARM) with the twin's DTDL models, a twin
//! per device and per hierarchy entity and a `contains` relationship per hierarchy edge (data
//! plane), and the role Azure Digital Twins Data Owner on the instance for the twin's identity
//! (the persister patches twins) and for the deployer (it writes models and twins).
//!
//! Granularity, chosen so that a re-deploy of a 200-device twin reads a few pages and sends
//! nothing: one resource for the whole model set ([`models`]), one for the whole twin graph
//! ([`graph`]) and one that deletes model versions nothing uses any more ([`retire`]). Each
//! compares a hash of what the config asks for with what the service holds.
//!
//! Order: instance → roles → models → graph → retire, so destroy (the reverse) removes
//! relationships and twins, then models, then the roles and the instance.

pub mod client;
pub mod graph;
pub mod instance;
pub mod models;
pub mod retire;

use crate::arm::ArmClient;
use crate::context::{input, resource_id, resource_path, LayerContext, GROUP_KEY};
use crate::roles::{self, RoleScope};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use twin_config::{names, Layer};
use twin_engine::{CloudError, ErrorClass, Outputs, ResourceId, ResourceSpec};

/// Inputs key: the spec id of the instance (its outputs carry the host name).
pub const INSTANCE_KEY: &str = "instance";
/// Inputs key: the instance's name (to find it in ARM when the outputs do not have it).
pub const INSTANCE_NAME_KEY: &str = "instance_name";
/// Inputs key: the spec id of the model set (its outputs carry the resolved DTMIs).
pub const MODELS_KEY: &str = "models_spec";
/// Inputs key: the DTMI prefix of the twin's models (`dtmi:deployer:<twin>:`).
pub const PREFIX_KEY: &str = "dtmi_prefix";
/// Observed attribute: the data-plane host, kept so that delete (which gets no outputs)
/// reaches the same instance.
pub const HOST_KEY: &str = "adt_host_name";

/// The id of the instance's spec.
pub fn instance_spec_id() -> ResourceId {
    resource_id(Layer::L4, instance::KIND, "twin")
}

/// The instance's name: unique per subscription and twin, as its host name is global.
pub fn instance_name(twin: &str, subscription_id: &str) -> String {
    names::azure_unique_name(twin, "adt", subscription_id)
}

/// SHA-256 of a JSON value's text, hex: what a desired setting compares for a large set.
pub fn content_hash(v: &Value) -> String {
    hex::encode(Sha256::digest(v.to_string().as_bytes()))
}

/// The data-plane host of the instance a spec works in: from the outputs, else from ARM (a
/// destroy without a state file reads before anything else); `None` when there is no
/// instance, so nothing in it either.
pub async fn instance_host(
    arm: &ArmClient,
    spec: &ResourceSpec,
    deps: &Outputs,
) -> Result<Option<String>, CloudError> {
    let id = ResourceId(input(spec, INSTANCE_KEY)?.to_string());
    if let Some(o) = deps.get(&id) {
        return o
            .attr(instance::HOST_NAME)
            .map(|h| Some(h.to_string()))
            .ok_or_else(|| {
                CloudError::new(
                    ErrorClass::EventualConsistency,
                    "InstanceNotReady",
                    format!(
                        "{}: the Azure Digital Twins instance reports no host name yet",
                        spec.label()
                    ),
                )
            });
    }
    let name = input(spec, INSTANCE_NAME_KEY)?;
    let path = resource_path(arm, input(spec, GROUP_KEY)?, instance::TYPE, name);
    let what = format!("Azure Digital Twins instance {name}");
    match arm.get(&path, instance::API, &what).await? {
        Some(body) => Ok(instance::observe(&body, &what)?
            .attr(instance::HOST_NAME)
            .map(str::to_string)),
        None => Ok(None),
    }
}

/// The error of a data-plane resource whose instance is not deployed.
pub fn no_instance(what: &str) -> CloudError {
    CloudError::new(
        ErrorClass::NotFound,
        "DependencyMissing",
        format!("{what}: its Azure Digital Twins instance is not deployed"),
    )
}

/// The resources of L4 (the instance depending on the resource group `group`); `deployer` is
/// the deployer's principal id, given the data role next to the twin's identity.
pub fn specs(
    ctx: &LayerContext<'_>,
    group: &ResourceId,
    deployer: Option<&str>,
) -> Result<Vec<ResourceSpec>, CloudError> {
    let layer = Layer::L4;
    let twin = ctx.twin;
    let name = instance_name(ctx.name(), ctx.arm.subscription_id());
    let instance = ctx
        .spec(layer, instance::KIND, "twin", name.clone())
        .desired(instance::desired(ctx.location))
        .depends_on([group.clone()]);
    let scope = RoleScope {
        spec: instance.id.clone(),
        path: resource_path(ctx.arm, &ctx.resource_group, instance::TYPE, &name),
    };
    let mut specs = vec![instance];
    let mut data_roles = Vec::new();
    if let Some(principal) = roles::twin_principal(ctx) {
        let a = roles::assignment_spec(
            ctx,
            layer,
            &scope,
            &roles::DIGITAL_TWINS_DATA_OWNER,
            &principal,
        );
        data_roles.push(a.id.clone());
        specs.push(a);
    }
    if let Some(d) = deployer {
        let a = roles::principal_id_assignment_spec(
            ctx,
            layer,
            &scope,
            &roles::DIGITAL_TWINS_DATA_OWNER,
            d,
        );
        data_roles.push(a.id.clone());
        specs.push(a);
    }
    let bad = |e: twin_models::ModelError| {
        CloudError::fatal("InvalidModels", format!("the twin's DTDL models: {e}"))
            .with_hint("fix the ids named in config_iot_devices.json / config_hierarchy.json")
    };
    let interfaces = twin_models::dtdl::interfaces(twin).map_err(|e| bad(e.into()))?;
    let graph = twin_models::graph::twin_graph(twin).map_err(bad)?;
    let prefix = twin_models::versions::twin_prefix(ctx.name());
    let with_instance = |mut s: ResourceSpec| {
        s.inputs[INSTANCE_KEY] = json!(scope.spec.0);
        s.inputs[INSTANCE_NAME_KEY] = json!(name);
        s.inputs[PREFIX_KEY] = json!(prefix);
        s
    };

    let models_json = json!(interfaces);
    let mut models = with_instance(
        ctx.spec(layer, models::KIND, "models", format!("{name}/models"))
            .desired(models::desired(&models_json))
            .depends_on(std::iter::once(scope.spec.clone()).chain(data_roles.iter().cloned())),
    );
    models.inputs[models::MODELS_INPUT] = models_json;
    let models_id = models.id.clone();

    let graph_input = graph::graph_input(twin, &graph, &interfaces);
    let mut twins = with_instance(
        ctx.spec(layer, graph::KIND, "graph", format!("{name}/twins"))
            .desired(graph::desired(&graph_input))
            .depends_on([scope.spec.clone(), models_id.clone()]),
    );
    twins.inputs[graph::GRAPH_INPUT] = graph_input;
    twins.inputs[MODELS_KEY] = json!(models_id.0);
    let twins_id = twins.id.clone();

    let mut retire = with_instance(
        ctx.spec(
            layer,
            retire::KIND,
            "old-models",
            format!("{name}/old-models"),
        )
        .desired(retire::desired())
        .depends_on([scope.spec.clone(), models_id.clone(), twins_id]),
    );
    retire.inputs[MODELS_KEY] = json!(models_id.0);
    specs.extend([models, twins, retire]);
    Ok(specs)
}
