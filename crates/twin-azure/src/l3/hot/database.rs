//! The SQL database of the hot store (`.../databaseAccounts/<a>/sqlDatabases/<db>`). Serverless
//! accounts take no throughput options. It carries no tags: ownership follows from the account.

use crate::arm::ArmClient;
use crate::context::input;
use crate::l3::hot::{account_path, ACCOUNT_KEY, API};
use async_trait::async_trait;
use serde_json::{json, Value};
use std::sync::Arc;
use twin_engine::{CloudError, Observed, Outputs, ResourceDriver, ResourceSpec};

/// Driver kind of a SQL database.
pub const KIND: &str = "azure_cosmos_sql_database";

/// The desired settings of the database named `name`.
pub fn desired(name: &str) -> Value {
    json!({"resource_id": name})
}

/// Creates, reads and deletes SQL databases.
pub struct SqlDatabaseDriver {
    arm: Arc<ArmClient>,
}

impl SqlDatabaseDriver {
    /// A driver on this client.
    pub fn new(arm: Arc<ArmClient>) -> Self {
        SqlDatabaseDriver { arm }
    }

    fn path(&self, spec: &ResourceSpec) -> Result<String, CloudError> {
        Ok(format!(
            "{}/sqlDatabases/{}",
            account_path(&self.arm, spec)?,
            spec.name
        ))
    }

    async fn put(&self, spec: &ResourceSpec) -> Result<Observed, CloudError> {
        let what = what(spec);
        let body = json!({"properties": {"resource": {"id": spec.name}, "options": {}}});
        let got = self.arm.put(&self.path(spec)?, API, &body, &what).await?;
        observe(&got, &what)
    }
}

fn what(spec: &ResourceSpec) -> String {
    let account = input(spec, ACCOUNT_KEY).unwrap_or("?");
    format!("Cosmos DB database {account}/{}", spec.name)
}

fn observe(body: &Value, what: &str) -> Result<Observed, CloudError> {
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

#[async_trait]
impl ResourceDriver for SqlDatabaseDriver {
    async fn read(&self, spec: &ResourceSpec, _: &Outputs) -> Result<Option<Observed>, CloudError> {
        let what = what(spec);
        match self.arm.get(&self.path(spec)?, API, &what).await? {
            Some(b) => observe(&b, &what).map(Some),
            None => Ok(None),
        }
    }

    async fn create(&self, spec: &ResourceSpec, _: &Outputs) -> Result<Observed, CloudError> {
        self.put(spec).await
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        _: &Observed,
        _: &Outputs,
    ) -> Result<Observed, CloudError> {
        self.put(spec).await
    }

    async fn delete(&self, spec: &ResourceSpec, _: &Observed) -> Result<(), CloudError> {
        self.arm.delete(&self.path(spec)?, API, &what(spec)).await
    }
}
