//! ARM role assignments (`<scope>/providers/Microsoft.Authorization/roleAssignments/<name>`,
//! API 2022-04-01): the twin's managed identity gets a built-in role on one of the twin's own
//! resources, never on the subscription. The assignment's name is a UUID derived from scope,
//! role and principal, so a retry or a lost state finds the same assignment again.
//! Assignments are immutable: one that names another role or principal is deleted and made
//! again. Right after the identity is created ARM answers `PrincipalNotFound` for a while,
//! which is classified retryable (`arm::errors`), so the engine retries until it replicates.

use crate::arm::ArmClient;
use crate::context::{input, LayerContext};
use crate::{identity, provider};
use async_trait::async_trait;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use twin_config::{names, Layer};
use twin_engine::{CloudError, Observed, Outputs, ResourceDriver, ResourceId, ResourceSpec};

/// Driver kind of an ARM role assignment.
pub const KIND: &str = "azure_role_assignment";

/// API version (stable; specification/authorization/resource-manager/Microsoft.Authorization).
pub const API: &str = "2022-04-01";

/// ARM type of a role assignment.
pub const TYPE: &str = "Microsoft.Authorization/roleAssignments";

/// Inputs key of the ARM path of the scope the role is assigned on.
pub const SCOPE_KEY: &str = "scope";
/// Inputs key of the spec id of the identity whose `principal_id` output is the principal.
pub const PRINCIPAL_KEY: &str = "principal";
/// Inputs key of the role definition id as it is sent.
pub const ROLE_KEY: &str = "role_definition_id";

/// A built-in Azure role: its name (for labels) and its role definition GUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuiltinRole {
    /// Short name used in spec ids, e.g. `storage-blob-data-contributor`.
    pub key: &'static str,
    /// The role definition's GUID (the same in every subscription).
    pub guid: &'static str,
}

/// Storage Blob Data Owner.
pub const STORAGE_BLOB_DATA_OWNER: BuiltinRole = BuiltinRole {
    key: "storage-blob-data-owner",
    guid: "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
};
/// Storage Blob Data Contributor.
pub const STORAGE_BLOB_DATA_CONTRIBUTOR: BuiltinRole = BuiltinRole {
    key: "storage-blob-data-contributor",
    guid: "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
};
/// Storage Queue Data Contributor.
pub const STORAGE_QUEUE_DATA_CONTRIBUTOR: BuiltinRole = BuiltinRole {
    key: "storage-queue-data-contributor",
    guid: "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
};
/// Storage Table Data Contributor.
pub const STORAGE_TABLE_DATA_CONTRIBUTOR: BuiltinRole = BuiltinRole {
    key: "storage-table-data-contributor",
    guid: "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
};
/// IoT Hub Registry Contributor.
pub const IOT_HUB_REGISTRY_CONTRIBUTOR: BuiltinRole = BuiltinRole {
    key: "iot-hub-registry-contributor",
    guid: "4ea46cd5-c1b2-4a8e-910b-273211f9ce47",
};
/// Monitoring Metrics Publisher.
pub const MONITORING_METRICS_PUBLISHER: BuiltinRole = BuiltinRole {
    key: "monitoring-metrics-publisher",
    guid: "3913510d-42f4-4e42-8a64-420c390055eb",
};

/// Grafana Admin (the deployer's, on the twin's Azure Managed Grafana: it sets up the data
/// source, folder and dashboard through the Grafana API).
pub const GRAFANA_ADMIN: BuiltinRole = BuiltinRole {
    key: "grafana-admin",
    guid: "22926164-76b3-42b3-bc55-97df8dab3e41",
};

/// Azure Digital Twins Data Owner (full access to an instance's models, twins and
/// relationships; verified in the built-in roles list, Internet of Things category).
pub const DIGITAL_TWINS_DATA_OWNER: BuiltinRole = BuiltinRole {
    key: "digital-twins-data-owner",
    guid: "bcd981a7-7f74-457b-83e1-cceb9e632ffe",
};

/// IoT Hub Data Contributor (the hub's service data plane, e.g. direct methods: the persister
/// sends event-rule feedback to devices with it).
pub const IOT_HUB_DATA_CONTRIBUTOR: BuiltinRole = BuiltinRole {
    key: "iot-hub-data-contributor",
    guid: "4fc6c259-987e-4a07-842e-c321cc9d413f",
};

/// EventGrid Data Sender (publishing to a topic: the persister's event-rule notifications).
pub const EVENTGRID_DATA_SENDER: BuiltinRole = BuiltinRole {
    key: "eventgrid-data-sender",
    guid: "d5a91429-5739-47e2-a06b-3470a27159e7",
};

/// Every built-in role this provider assigns.
pub const BUILTIN: [BuiltinRole; 10] = [
    STORAGE_BLOB_DATA_OWNER,
    STORAGE_BLOB_DATA_CONTRIBUTOR,
    STORAGE_QUEUE_DATA_CONTRIBUTOR,
    STORAGE_TABLE_DATA_CONTRIBUTOR,
    IOT_HUB_REGISTRY_CONTRIBUTOR,
    MONITORING_METRICS_PUBLISHER,
    GRAFANA_ADMIN,
    DIGITAL_TWINS_DATA_OWNER,
    IOT_HUB_DATA_CONTRIBUTOR,
    EVENTGRID_DATA_SENDER,
];

/// The built-in role with this role definition GUID.
pub fn builtin(guid: &str) -> Option<BuiltinRole> {
    BUILTIN
        .into_iter()
        .find(|r| r.guid.eq_ignore_ascii_case(guid))
}

/// Inputs key of a principal id known at plan time (the deployer's own), used instead of an
/// identity's output.
pub const PRINCIPAL_ID_KEY: &str = "principal_id";

/// A resource of the twin a role is assigned on: its spec id (the assignment depends on it)
/// and its ARM path (the assignment's scope).
#[derive(Debug, Clone)]
pub struct RoleScope {
    /// Spec id of the scope resource.
    pub spec: ResourceId,
    /// ARM path of the scope resource, `/subscriptions/.../providers/<type>/<name>`.
    pub path: String,
}

/// The identity a role is given to: its spec id (its `principal_id` output is read at deploy
/// time) and its ARM path (known before it exists, so names derived from it are stable).
#[derive(Debug, Clone)]
pub struct Principal {
    /// Spec id of the identity.
    pub spec: ResourceId,
    /// ARM path of the identity.
    pub path: String,
}

/// The twin's managed identity as a principal (it lives in the provider's shared layer).
pub fn twin_principal(ctx: &LayerContext<'_>) -> Option<Principal> {
    let shared = provider::shared_layer(ctx.twin)?;
    Some(Principal {
        spec: crate::context::resource_id(shared, identity::KIND, "twin"),
        path: crate::context::resource_path(
            ctx.arm,
            &ctx.resource_group,
            identity::TYPE,
            &names::managed_identity_name(ctx.name()),
        ),
    })
}

/// `/subscriptions/<sub>/providers/Microsoft.Authorization/roleDefinitions/<guid>`.
pub fn role_definition_id(subscription_id: &str, role: &BuiltinRole) -> String {
    format!(
        "/subscriptions/{subscription_id}/providers/Microsoft.Authorization/roleDefinitions/{}",
        role.guid
    )
}

/// A name-based UUID of `parts` (compared case-insensitively, as ARM ids are): the first 16
/// bytes of SHA-256 over the parts joined by newlines, with the RFC 9562 version 8 and variant
/// bits set, written in the usual 8-4-4-4-12 form.
pub fn name_uuid(parts: &[&str]) -> String {
    let text = parts
        .iter()
        .map(|p| p.to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join("\n");
    let digest = Sha256::digest(text.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The assignment's name: a UUID of scope, role definition and principal. The principal is
/// named by its identity's ARM path, known before the identity exists, so the name is fixed at
/// plan time and `read` finds it without the identity's outputs; a re-created identity (new
/// principal id) makes the assignment drift and it is replaced under the same name.
pub fn assignment_name(scope_path: &str, role_definition_id: &str, principal_path: &str) -> String {
    name_uuid(&[scope_path, role_definition_id, principal_path])
}

/// The spec giving `principal` the built-in `role` on `scope`, in `layer`; other layers call
/// this for each role their functions need (e.g. IoT Hub Registry Contributor on the hub).
pub fn assignment_spec(
    ctx: &LayerContext<'_>,
    layer: Layer,
    scope: &RoleScope,
    role: &BuiltinRole,
    principal: &Principal,
) -> ResourceSpec {
    let definition = role_definition_id(ctx.arm.subscription_id(), role);
    let name = assignment_name(&scope.path, &definition, &principal.path);
    let mut spec = ctx
        .spec(layer, KIND, &format!("{}@{}", role.key, scope.spec), name)
        .desired(desired(&definition, &scope.path))
        .depends_on([scope.spec.clone(), principal.spec.clone()]);
    spec.inputs[SCOPE_KEY] = json!(scope.path);
    spec.inputs[PRINCIPAL_KEY] = json!(principal.spec.0);
    spec.inputs[ROLE_KEY] = json!(definition);
    spec
}

/// The spec giving the principal `principal_id` (known now: the deployer's own object id) the
/// built-in `role` on `scope`. Its type (a user or a service principal) is left to ARM.
pub fn principal_id_assignment_spec(
    ctx: &LayerContext<'_>,
    layer: Layer,
    scope: &RoleScope,
    role: &BuiltinRole,
    principal_id: &str,
) -> ResourceSpec {
    let definition = role_definition_id(ctx.arm.subscription_id(), role);
    let name = assignment_name(
        &scope.path,
        &definition,
        &format!("principal:{principal_id}"),
    );
    let mut desired = desired(&definition, &scope.path);
    if let Some(map) = desired.as_object_mut() {
        map.remove("principal_type");
    }
    let mut spec = ctx
        .spec(
            layer,
            KIND,
            &format!("{}@{}@deployer", role.key, scope.spec),
            name,
        )
        .desired(desired)
        .depends_on([scope.spec.clone()]);
    spec.inputs[SCOPE_KEY] = json!(scope.path);
    spec.inputs[PRINCIPAL_ID_KEY] = json!(principal_id);
    spec.inputs[ROLE_KEY] = json!(definition);
    spec
}

/// The desired settings of an assignment. `principal_current` is whether the assignment names
/// the principal the identity has now (compared in `read` against the dependency's output).
/// Ids are compared in lowercase: ARM ids are case-insensitive and ARM may answer with another
/// casing than the one sent.
pub fn desired(role_definition_id: &str, scope_path: &str) -> Value {
    json!({
        "role_definition_id": role_definition_id.to_ascii_lowercase(),
        "scope": scope_path.to_ascii_lowercase(),
        "principal_type": "ServicePrincipal",
        "principal_current": true,
    })
}

/// An ARM id as it is compared (lowercase); other values pass through.
pub fn lower(v: Option<Value>) -> Value {
    match v {
        Some(Value::String(s)) => Value::String(s.to_ascii_lowercase()),
        Some(other) => other,
        None => Value::Null,
    }
}

/// The principal id the spec names (the deployer's), else the one the identity it names
/// reports, or a `NotFound` error naming both.
pub fn principal_id(spec: &ResourceSpec, deps: &Outputs) -> Result<String, CloudError> {
    if let Some(id) = spec.inputs.get(PRINCIPAL_ID_KEY).and_then(Value::as_str) {
        return Ok(id.to_string());
    }
    let identity = ResourceId(input(spec, PRINCIPAL_KEY)?.to_string());
    deps.attr(&identity, "principal_id")
}

/// Whether `observed_principal` is the identity's current principal: `null` when the identity's
/// outputs are not at hand (a destroy), which reads as drift, never as a match.
pub fn principal_current(spec: &ResourceSpec, deps: &Outputs, observed: Option<&str>) -> Value {
    match (principal_id(spec, deps), observed) {
        (Ok(want), Some(have)) => json!(want == have),
        (Ok(_), None) => json!(false),
        (Err(_), _) => Value::Null,
    }
}

/// Creates, reads, replaces and deletes ARM role assignments.
pub struct RoleAssignmentDriver {
    arm: Arc<ArmClient>,
}

impl RoleAssignmentDriver {
    /// A driver on this client.
    pub fn new(arm: Arc<ArmClient>) -> Self {
        RoleAssignmentDriver { arm }
    }

    fn path(spec: &ResourceSpec) -> Result<String, CloudError> {
        Ok(format!(
            "{}/providers/{TYPE}/{}",
            input(spec, SCOPE_KEY)?,
            spec.name
        ))
    }
}

fn what(spec: &ResourceSpec) -> String {
    let role = spec
        .inputs
        .get(ROLE_KEY)
        .and_then(Value::as_str)
        .and_then(|d| d.rsplit('/').next())
        .unwrap_or("?");
    let scope = spec
        .inputs
        .get(SCOPE_KEY)
        .and_then(Value::as_str)
        .and_then(|s| s.rsplit('/').next())
        .unwrap_or("?");
    format!("role assignment {} (role {role} on {scope})", spec.name)
}

fn observe(body: &Value, spec: &ResourceSpec, deps: &Outputs) -> Result<Observed, CloudError> {
    let id = body.get("id").and_then(Value::as_str).ok_or_else(|| {
        CloudError::fatal(
            "MalformedResponse",
            format!("{}: ARM's answer has no `id`", what(spec)),
        )
    })?;
    let p = |k: &str| body.pointer(&format!("/properties/{k}")).cloned();
    let observed_principal = body
        .pointer("/properties/principalId")
        .and_then(Value::as_str);
    // Role assignments carry no tags: ownership follows from the scope, which is the twin's.
    Ok(Observed::new(
        id,
        json!({
            "id": id,
            "role_definition_id": lower(p("roleDefinitionId")),
            "scope": lower(p("scope")),
            "principal_type": p("principalType"),
            "principal_id": p("principalId"),
            "principal_current": principal_current(spec, deps, observed_principal),
        }),
    ))
}

#[async_trait]
impl ResourceDriver for RoleAssignmentDriver {
    async fn read(
        &self,
        spec: &ResourceSpec,
        deps: &Outputs,
    ) -> Result<Option<Observed>, CloudError> {
        match self.arm.get(&Self::path(spec)?, API, &what(spec)).await? {
            Some(b) => observe(&b, spec, deps).map(Some),
            None => Ok(None),
        }
    }

    async fn create(&self, spec: &ResourceSpec, deps: &Outputs) -> Result<Observed, CloudError> {
        let what = what(spec);
        let definition = input(spec, ROLE_KEY)?;
        let mut body = json!({"properties": {
            "roleDefinitionId": definition,
            "principalId": principal_id(spec, deps)?,
        }});
        // The twin's identity is a service principal; saying so spares ARM a directory lookup
        // that fails while a new identity replicates. The deployer may be a user: ARM looks.
        if spec.inputs.get(PRINCIPAL_ID_KEY).is_none() {
            body["properties"]["principalType"] = json!("ServicePrincipal");
        }
        let got = self.arm.put(&Self::path(spec)?, API, &body, &what).await?;
        observe(&got, spec, deps)
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        current: &Observed,
        deps: &Outputs,
    ) -> Result<Observed, CloudError> {
        // Immutable on ARM (`RoleAssignmentUpdateNotPermitted`): replaced under the same name.
        self.delete(spec, current).await?;
        self.create(spec, deps).await
    }

    async fn delete(&self, spec: &ResourceSpec, _: &Observed) -> Result<(), CloudError> {
        self.arm.delete(&Self::path(spec)?, API, &what(spec)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arm::errors::arm_error;

    #[test]
    fn name_uuids_are_deterministic_well_formed_and_distinct() {
        let a = name_uuid(&["/subscriptions/s/x", "role", "/p"]);
        assert_eq!(a, name_uuid(&["/subscriptions/s/x", "role", "/p"]));
        // ARM ids are case-insensitive: so is the name.
        assert_eq!(a, name_uuid(&["/SUBSCRIPTIONS/s/X", "ROLE", "/P"]));
        assert_ne!(a, name_uuid(&["/subscriptions/s/x", "role", "/q"]));
        // Joining does not blur part boundaries.
        assert_ne!(name_uuid(&["ab", "c"]), name_uuid(&["a", "bc"]));
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(a.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
        assert_eq!(&parts[2][..1], "8", "version 8 (name-based, SHA-256)");
        assert!(
            matches!(&parts[3][..1], "8" | "9" | "a" | "b"),
            "RFC variant"
        );
    }

    #[test]
    fn name_uuid_matches_an_independent_computation() {
        // `printf 'a\nb' | sha256sum` starts 7e18f737311b2dc3b2f269dd78396b03; byte 6 (2d)
        // becomes 8d (version 8), byte 8 (b2) keeps its 10xx variant bits.
        assert_eq!(
            name_uuid(&["a", "b"]),
            "7e18f737-311b-8dc3-b2f2-69dd78396b03"
        );
    }

    #[test]
    fn role_definition_ids_are_subscription_scoped() {
        assert_eq!(
            role_definition_id("sub-1", &STORAGE_BLOB_DATA_CONTRIBUTOR),
            "/subscriptions/sub-1/providers/Microsoft.Authorization/roleDefinitions/ba92f5b4-2d11-453d-a403-e96b0029c9fe"
        );
    }

    #[test]
    fn principal_not_found_is_retried() {
        let e = arm_error(
            "role assignment x",
            400,
            "PrincipalNotFound",
            "Principal p does not exist in the directory",
            None,
        );
        assert!(e.class.is_retryable(), "{e:?}");
    }

    #[test]
    fn principal_current_compares_with_the_identity_output() {
        let spec = ResourceSpec::new(
            ResourceId::from("l3c/azure_role_assignment/x"),
            Layer::L3Cold,
            twin_config::ProviderName::Azure,
            KIND,
            "n",
        )
        .inputs(json!({PRINCIPAL_KEY: "l3c/azure_managed_identity/twin"}));
        let mut deps = Outputs::default();
        assert_eq!(principal_current(&spec, &deps, Some("p1")), Value::Null);
        deps.0.insert(
            ResourceId::from("l3c/azure_managed_identity/twin"),
            Observed::new("id", json!({"principal_id": "p1"})),
        );
        assert_eq!(principal_current(&spec, &deps, Some("p1")), json!(true));
        assert_eq!(principal_current(&spec, &deps, Some("p2")), json!(false));
    }
}
