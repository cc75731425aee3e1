//! Layer 1 on Azure: the twin's IoT Hub, one X.509 device identity per configured device in
//! its registry, an Event Grid system topic on the hub with a subscription delivering device
//! telemetry to the dispatcher function, and the simulator's IoT Hub profile.

pub mod certificate;
pub mod devices;
pub mod event_grid;
pub mod hub;
pub mod registry;
pub mod simulator_config;

use crate::arm::auth::ARM_SCOPE;
use crate::arm::{ArmClient, Auth};
use crate::context::{resource_id, LayerContext};
use base64::Engine as _;
use serde_json::{json, Value};
use twin_config::{names, Layer, ProviderName};
use twin_engine::{CloudError, ErrorClass, ResourceId, ResourceSpec};

/// Driver kind of the spec whose outputs name the dispatcher function: L2's package (the
/// function exists once the package is deployed and the host lists it).
pub const DISPATCHER_FUNCTION_KIND: &str = crate::l2::package::KIND;

/// The output attribute of that spec holding the function's ARM id
/// (`<site id>/functions/dispatcher`).
pub const DISPATCHER_ATTR: &str = "dispatcher_function_id";

/// The id of the spec whose outputs carry the dispatcher function's ARM id: the dispatcher
/// runs in L2's Function App (it needs the processor in process), so the app layer is L2.
pub fn dispatcher_spec_id() -> ResourceId {
    crate::l2::package_id(Layer::L2)
}

/// The id of the hub's spec.
pub fn hub_spec_id() -> ResourceId {
    resource_id(Layer::L1, hub::KIND, "hub")
}

/// Built-in role "IoT Hub Registry Contributor" (full access to the device registry).
pub const IOT_HUB_REGISTRY_CONTRIBUTOR: &str = "4ea46cd5-c1b2-4a8e-910b-273211f9ce47";

/// Who a role assignment is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The identity the deployer runs as (the `oid` of its ARM token, see
    /// [`deployer_principal_id`]).
    Deployer,
}

/// A role L1 needs on one of its resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleNeed {
    /// The spec of the resource the assignment is scoped to.
    pub scope: ResourceId,
    /// The built-in role definition's GUID.
    pub role_definition: &'static str,
    /// The role's name, for messages.
    pub role_name: &'static str,
    /// Who gets it.
    pub principal: Principal,
    /// The specs that need the assignment before they run (they depend on it).
    pub needed_by: Vec<ResourceId>,
}

/// The role assignments L1 needs: the deployer writes the hub's device registry with an
/// Entra token (local auth is off), so it holds IoT Hub Registry Contributor on the hub.
pub fn role_needs(ctx: &LayerContext<'_>) -> Vec<RoleNeed> {
    if ctx.twin.providers.get(Layer::L1) != ProviderName::Azure {
        return Vec::new();
    }
    vec![RoleNeed {
        scope: hub_spec_id(),
        role_definition: IOT_HUB_REGISTRY_CONTRIBUTOR,
        role_name: "IoT Hub Registry Contributor",
        principal: Principal::Deployer,
        needed_by: ctx
            .twin
            .devices
            .iter()
            .map(|d| resource_id(Layer::L1, devices::KIND, &d.id))
            .collect(),
    }]
}

/// The object id (`oid` claim) of the principal a bearer token was issued to. The payload is
/// decoded, not verified: the deployer only learns who it is, it grants nothing on it.
pub fn token_object_id(token: &str) -> Result<String, CloudError> {
    let bad = |why: &str| {
        CloudError::fatal(
            "TokenNotAJwt",
            format!("the Azure token does not name its principal: {why}"),
        )
        .with_hint("sign in with `az login` (or a service principal) so the token carries an `oid`")
    };
    let payload = token.split('.').nth(1).ok_or_else(|| bad("not a JWT"))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| bad("its payload is not base64url"))?;
    let claims: Value =
        serde_json::from_slice(&bytes).map_err(|_| bad("its payload is not JSON"))?;
    claims
        .get("oid")
        .and_then(Value::as_str)
        .filter(|o| !o.is_empty())
        .map(str::to_string)
        .ok_or_else(|| bad("no `oid` claim"))
}

/// The object id of the identity the deployer runs as, from its ARM token.
pub async fn deployer_principal_id(arm: &ArmClient) -> Result<String, CloudError> {
    match arm.auth() {
        Auth::StaticToken(t) => token_object_id(t),
        Auth::Credential(c) => {
            let token = c.get_token(&[ARM_SCOPE], None).await.map_err(|e| {
                CloudError::new(
                    ErrorClass::Transient,
                    "NoToken",
                    format!("cannot get an Azure token to learn the deployer's identity: {e}"),
                )
            })?;
            token_object_id(token.token.secret())
        }
    }
}

/// The resources of L1 (all depending on the resource group `group`).
pub fn specs(ctx: &LayerContext<'_>, group: &ResourceId) -> Vec<ResourceSpec> {
    let layer = Layer::L1;
    let twin = ctx.name();
    let hub_id = hub_spec_id();
    let hub_name = names::azure_unique_name(twin, "iot", ctx.arm.subscription_id());
    let mut specs = vec![ctx
        .spec(layer, hub::KIND, "hub", hub_name.clone())
        .desired(hub::desired(ctx.location))
        .depends_on([group.clone()])];

    let mut device_ids = Vec::new();
    for d in &ctx.twin.devices {
        let dir = certificate::device_dir(&ctx.twin.dir, &d.id);
        let mut spec = ctx
            .spec(layer, devices::KIND, &d.id, d.id.clone())
            .desired(devices::desired())
            .depends_on([hub_id.clone()]);
        spec.inputs[devices::HUB_KEY] = json!(hub_id.0);
        spec.inputs[devices::HUB_NAME_KEY] = json!(hub_name);
        spec.inputs[devices::DIR_KEY] = json!(dir.display().to_string());
        device_ids.push(spec.id.clone());
        specs.push(spec);
    }

    let topic_name = format!("{twin}-hub-events");
    let mut topic = ctx
        .spec(
            layer,
            event_grid::TOPIC_KIND,
            "telemetry",
            topic_name.clone(),
        )
        .desired(event_grid::topic_desired(ctx.location))
        .depends_on([hub_id.clone()]);
    topic.inputs[event_grid::HUB_KEY] = json!(hub_id.0);
    let topic_id = topic.id.clone();
    specs.push(topic);

    // The dispatcher is an L2 function; with L2 on another cloud the hop needs the cross-cloud
    // ingress (SPEC §2), which this layer does not build yet.
    if ctx.twin.providers.get(Layer::L2) == ProviderName::Azure {
        let mut sub = ctx
            .spec(
                layer,
                event_grid::SUBSCRIPTION_KIND,
                "dispatcher",
                "telemetry-to-dispatcher",
            )
            .desired(event_grid::subscription_desired())
            .depends_on([topic_id.clone(), dispatcher_spec_id()]);
        sub.inputs[event_grid::TOPIC_KEY] = json!(topic_id.0);
        sub.inputs["topic_name"] = json!(topic_name);
        sub.inputs[event_grid::DISPATCHER_KEY] = json!(dispatcher_spec_id().0);
        specs.push(sub);
    }

    let sim_path = simulator_config::simulator_dir(&ctx.twin.dir).join("config.json");
    let mut sim_desired = simulator_config::desired(&sim_path);
    let feedback = simulator_config::direct_method_devices(ctx.twin);
    if !feedback.is_empty() {
        sim_desired[simulator_config::DIRECT_METHOD_DEVICES] = json!(feedback);
    }
    let mut sim = ResourceSpec::new(
        resource_id(layer, simulator_config::KIND, "config"),
        layer,
        ProviderName::Azure,
        simulator_config::KIND,
        sim_path.display().to_string(),
    )
    .depends_on(std::iter::once(hub_id.clone()).chain(device_ids))
    .desired(sim_desired);
    sim.inputs = json!({
        simulator_config::HUB_KEY: hub_id.0,
        simulator_config::EXAMPLES_KEY: ctx.twin.example_payloads(),
    });
    specs.push(sim);
    specs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &Value) -> String {
        let b = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        format!(
            "{}.{}.sig",
            b(br#"{"alg":"none"}"#),
            b(claims.to_string().as_bytes())
        )
    }

    #[test]
    fn the_object_id_comes_from_the_token_payload() {
        let t = jwt(&json!({"oid": "11111111-2222-3333-4444-555555555555", "tid": "t"}));
        assert_eq!(
            token_object_id(&t).expect("oid"),
            "11111111-2222-3333-4444-555555555555"
        );
        let e = token_object_id("fake-token").expect_err("not a JWT");
        assert_eq!(e.class, ErrorClass::Fatal);
        assert!(token_object_id(&jwt(&json!({"tid": "t"}))).is_err());
    }

    #[tokio::test]
    async fn a_static_token_names_the_deployer() {
        let t = jwt(&json!({"oid": "00000000-0000-0000-0000-00000000d3e1"}));
        let arm = ArmClient::new(
            "http://127.0.0.1:9",
            "sub",
            Auth::StaticToken(t),
            crate::arm::ArmOptions::default(),
        )
        .expect("client");
        assert_eq!(
            deployer_principal_id(&arm).await.expect("oid"),
            "00000000-0000-0000-0000-00000000d3e1"
        );
    }
}
