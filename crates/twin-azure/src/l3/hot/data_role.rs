//! The Cosmos DB data-plane role assignment (`.../databaseAccounts/<a>/sqlRoleAssignments/
//! <uuid>`): the twin's identity gets the built-in Data Contributor role
//! (`sqlRoleDefinitions/00000000-0000-0000-0000-000000000002`) scoped to the account, since
//! the account accepts Entra tokens only. Named like ARM role assignments (a UUID of scope,
//! role and principal); `PrincipalNotFound` right after the identity is made is retried.

use crate::arm::ArmClient;
use crate::arm_resource::{ArmDriver, ArmResource};
use crate::l3::hot::{account_path, API};
use crate::roles::{self, lower, Principal, PRINCIPAL_KEY};
use serde_json::{json, Value};
use twin_engine::{CloudError, Observed, Outputs, ResourceSpec};

/// Driver kind of a Cosmos DB SQL role assignment.
pub const KIND: &str = "azure_cosmos_sql_role_assignment";

/// The built-in Cosmos DB Built-in Data Contributor role definition's name.
pub const DATA_CONTRIBUTOR: &str = "00000000-0000-0000-0000-000000000002";

/// The role definition id of the Data Contributor role on an account.
pub fn data_contributor_id(account_path: &str) -> String {
    format!("{account_path}/sqlRoleDefinitions/{DATA_CONTRIBUTOR}")
}

/// The assignment's name for a principal on an account.
pub fn assignment_name(account_path: &str, principal: &Principal) -> String {
    roles::assignment_name(
        account_path,
        &data_contributor_id(account_path),
        &principal.path,
    )
}

/// The desired settings: Data Contributor, scoped to the whole account (ids in lowercase, as
/// ARM ids compare).
pub fn desired(account_path: &str) -> Value {
    json!({
        "role_definition_id": data_contributor_id(account_path).to_ascii_lowercase(),
        "scope": account_path.to_ascii_lowercase(),
        "principal_current": true,
    })
}

/// The assignment as an [`ArmResource`] (untagged). PUT creates or updates: Cosmos DB allows
/// changing a SQL role assignment in place.
pub struct SqlRoleAssignment;

/// Creates, reads, updates and deletes the assignment.
pub type SqlRoleAssignmentDriver = ArmDriver<SqlRoleAssignment>;

impl ArmResource for SqlRoleAssignment {
    const API: &'static str = API;
    const TAGGED: bool = false;

    fn what(spec: &ResourceSpec) -> String {
        let account = spec
            .inputs
            .get(crate::l3::hot::ACCOUNT_KEY)
            .and_then(Value::as_str)
            .unwrap_or("?");
        let principal = spec
            .inputs
            .get(PRINCIPAL_KEY)
            .and_then(Value::as_str)
            .unwrap_or("?");
        format!(
            "Cosmos DB data role assignment {} (Data Contributor on {account} for {principal})",
            spec.name
        )
    }

    fn path(arm: &ArmClient, spec: &ResourceSpec) -> Result<String, CloudError> {
        Ok(format!(
            "{}/sqlRoleAssignments/{}",
            account_path(arm, spec)?,
            spec.name
        ))
    }

    fn body(
        arm: &ArmClient,
        spec: &ResourceSpec,
        _: Value,
        deps: &Outputs,
    ) -> Result<Value, CloudError> {
        let account = account_path(arm, spec)?;
        Ok(json!({"properties": {
            "roleDefinitionId": data_contributor_id(&account),
            "scope": account,
            "principalId": roles::principal_id(spec, deps)?,
        }}))
    }

    fn observe(
        body: &Value,
        what: &str,
        spec: &ResourceSpec,
        deps: &Outputs,
    ) -> Result<Observed, CloudError> {
        let id = body.get("id").and_then(Value::as_str).ok_or_else(|| {
            CloudError::fatal(
                "MalformedResponse",
                format!("{what}: ARM's answer has no `id`"),
            )
        })?;
        let p = |k: &str| body.pointer(&format!("/properties/{k}")).cloned();
        let observed_principal = body
            .pointer("/properties/principalId")
            .and_then(Value::as_str);
        Ok(Observed::new(
            id,
            json!({
                "id": id,
                "role_definition_id": lower(p("roleDefinitionId")),
                "scope": lower(p("scope")),
                "principal_id": p("principalId"),
                "principal_current": roles::principal_current(spec, deps, observed_principal),
            }),
        ))
    }
}
