//! The SQL database of the hot store (`.../databaseAccounts/<a>/sqlDatabases/<db>`). Serverless
//! accounts take no throughput options. It carries no tags: ownership follows from the account.

use crate::arm::ArmClient;
use crate::arm_resource::{ArmDriver, ArmResource};
use crate::context::input;
use crate::l3::hot::{account_path, ACCOUNT_KEY, API};
use serde_json::{json, Value};
use twin_engine::{CloudError, Observed, Outputs, ResourceSpec};

/// Driver kind of a SQL database.
pub const KIND: &str = "azure_cosmos_sql_database";

/// The desired settings of the database named `name`.
pub fn desired(name: &str) -> Value {
    json!({"resource_id": name})
}

/// A SQL database as an [`ArmResource`] (untagged).
pub struct SqlDatabase;

/// Creates, reads, updates and deletes SQL databases.
pub type SqlDatabaseDriver = ArmDriver<SqlDatabase>;

impl ArmResource for SqlDatabase {
    const API: &'static str = API;
    const TAGGED: bool = false;

    fn what(spec: &ResourceSpec) -> String {
        let account = input(spec, ACCOUNT_KEY).unwrap_or("?");
        format!("Cosmos DB database {account}/{}", spec.name)
    }

    fn path(arm: &ArmClient, spec: &ResourceSpec) -> Result<String, CloudError> {
        Ok(format!(
            "{}/sqlDatabases/{}",
            account_path(arm, spec)?,
            spec.name
        ))
    }

    fn body(
        _: &ArmClient,
        spec: &ResourceSpec,
        _: Value,
        _: &Outputs,
    ) -> Result<Value, CloudError> {
        Ok(json!({"properties": {"resource": {"id": spec.name}, "options": {}}}))
    }

    fn observe(
        body: &Value,
        what: &str,
        _: &ResourceSpec,
        _: &Outputs,
    ) -> Result<Observed, CloudError> {
        let id = body.get("id").and_then(Value::as_str).ok_or_else(|| {
            CloudError::fatal(
                "MalformedResponse",
                format!("{what}: ARM's answer has no `id`"),
            )
        })?;
        Ok(Observed::new(
            id,
            json!({"id": id, "resource_id": body.pointer("/properties/resource/id")}),
        ))
    }
}
