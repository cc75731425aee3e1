//! The hot container (`.../sqlDatabases/<db>/containers/<c>`): partition key `/iotDeviceId`
//! (kind Hash, version 2), the layout the hot store of twin-functions-azure reads and writes.
//! A partition key cannot change on Cosmos DB: a container with another one is not replaced
//! (that would delete the hot data) but reported with what the user can do.

use crate::arm::ArmClient;
use crate::arm_resource::{ArmDriver, ArmResource};
use crate::context::input;
use crate::l3::hot::{account_path, ACCOUNT_KEY, API, DATABASE_KEY};
use serde_json::{json, Value};
use twin_engine::{CloudError, Observed, Outputs, ResourceSpec};

/// Driver kind of a SQL container.
pub const KIND: &str = "azure_cosmos_sql_container";

/// The partition key path of the hot container (the readings' device id).
pub const PARTITION_KEY: &str = "/iotDeviceId";

/// The partition key definition.
fn partition_key() -> Value {
    json!({"paths": [PARTITION_KEY], "kind": "Hash", "version": 2})
}

/// The desired settings of the container named `name`.
pub fn desired(name: &str) -> Value {
    json!({"resource_id": name, "partition_key": partition_key()})
}

/// A SQL container as an [`ArmResource`] (untagged; its partition key is immutable).
pub struct SqlContainer;

/// Creates, reads, updates and deletes SQL containers.
pub type SqlContainerDriver = ArmDriver<SqlContainer>;

impl ArmResource for SqlContainer {
    const API: &'static str = API;
    const TAGGED: bool = false;

    fn what(spec: &ResourceSpec) -> String {
        let account = input(spec, ACCOUNT_KEY).unwrap_or("?");
        let database = input(spec, DATABASE_KEY).unwrap_or("?");
        format!("Cosmos DB container {account}/{database}/{}", spec.name)
    }

    fn path(arm: &ArmClient, spec: &ResourceSpec) -> Result<String, CloudError> {
        Ok(format!(
            "{}/sqlDatabases/{}/containers/{}",
            account_path(arm, spec)?,
            input(spec, DATABASE_KEY)?,
            spec.name
        ))
    }

    fn body(
        _: &ArmClient,
        spec: &ResourceSpec,
        _: Value,
        _: &Outputs,
    ) -> Result<Value, CloudError> {
        Ok(json!({"properties": {
            "resource": {"id": spec.name, "partitionKey": partition_key()},
            "options": {},
        }}))
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
        let r = |k: &str| body.pointer(&format!("/properties/resource/{k}")).cloned();
        Ok(Observed::new(
            id,
            json!({"id": id, "resource_id": r("id"), "partition_key": r("partitionKey")}),
        ))
    }

    fn check_update(spec: &ResourceSpec, current: &Observed) -> Result<(), CloudError> {
        let want = partition_key();
        if current
            .attributes
            .get("partition_key")
            .is_some_and(|have| !have.is_null() && !twin_engine::contains(have, &want))
        {
            return Err(CloudError::fatal(
                "PartitionKeyImmutable",
                format!(
                    "{}: its partition key is {}, the hot store needs {want}; Cosmos DB cannot change a container's partition key",
                    Self::what(spec),
                    current.attributes["partition_key"]
                ),
            )
            .with_hint(
                "the container holds the hot data, so deployer does not replace it: copy what you need, delete the container (or run `deployer destroy` for L3 hot), then deploy again",
            ));
        }
        Ok(())
    }
}
