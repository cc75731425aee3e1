//! L3 hot on Azure: a serverless Cosmos DB for NoSQL account (Entra-only: `disableLocalAuth`),
//! one SQL database with one container partitioned on `/iotDeviceId`, and the data-plane role
//! assignment giving the twin's identity the built-in Data Contributor role on the account.
//! All on Microsoft.DocumentDB API [`API`].

pub mod account;
pub mod container;
pub mod data_role;
pub mod database;

use crate::arm::ArmClient;
use crate::context::{input, resource_path, GROUP_KEY};
use twin_config::names;
use twin_engine::{CloudError, ResourceSpec};

/// API version of Microsoft.DocumentDB (stable; specification/cosmos-db/resource-manager/
/// Microsoft.DocumentDB/DocumentDB/stable/2025-04-15).
pub const API: &str = "2025-04-15";

/// Inputs key of the Cosmos DB account a database, container or role assignment is in.
pub const ACCOUNT_KEY: &str = "account";
/// Inputs key of the SQL database a container is in.
pub const DATABASE_KEY: &str = "database";

/// The Cosmos DB account name (3-44 lowercase letters, digits and hyphens, globally unique):
/// `<twin stem>-cosmos-<subscription+twin hash>`.
pub fn account_name(twin: &str, subscription_id: &str) -> String {
    names::azure_unique_name(twin, "cosmos", subscription_id)
}

/// The SQL database of the hot store: the twin's name.
pub fn database_name(twin: &str) -> String {
    twin.to_string()
}

/// The hot container (the handler's hot store): `hot`.
pub const CONTAINER_NAME: &str = "hot";

/// The ARM path of the account a spec names in its `account` input.
pub(crate) fn account_path(arm: &ArmClient, spec: &ResourceSpec) -> Result<String, CloudError> {
    Ok(resource_path(
        arm,
        input(spec, GROUP_KEY)?,
        account::TYPE,
        input(spec, ACCOUNT_KEY)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_names_are_valid_global_names() {
        for twin in [
            "digital-twin",
            "A",
            "Very-Long_Twin-Name-With-Many-Parts-123",
        ] {
            let n = account_name(twin, "sub-1");
            assert!((3..=44).contains(&n.len()), "{n}");
            assert!(
                n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{n}"
            );
            assert!(!n.starts_with('-') && !n.ends_with('-'), "{n}");
            assert_eq!(n, account_name(twin, "sub-1"));
            assert_ne!(n, account_name(twin, "sub-2"));
        }
    }
}
