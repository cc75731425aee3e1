//! The Cosmos DB account (`Microsoft.DocumentDB/databaseAccounts`): NoSQL, serverless
//! (capability `EnableServerless`), Entra-only (`disableLocalAuth: true`), Session consistency,
//! TLS 1.2, one region. Its `documentEndpoint` as ARM returns it is the handler's
//! COSMOS_ENDPOINT. Provisioning takes minutes; the engine keeps other resources moving.

use crate::arm::ArmClient;
use crate::arm_resource::{group_resource_path, ArmDriver, ArmResource};
use crate::context::{input, owner_from, settled_state, LOCATION_KEY};
use crate::l3::hot::API;
use serde_json::{json, Value};
use twin_engine::{CloudError, Observed, Outputs, ResourceSpec};

/// Driver kind of the account.
pub const KIND: &str = "azure_cosmos_account";

/// ARM type of the account.
pub const TYPE: &str = "Microsoft.DocumentDB/databaseAccounts";

/// The capability that makes an account serverless.
const SERVERLESS: &str = "EnableServerless";

/// A region in the form ARM takes it (`westeurope`): Cosmos DB answers with the display name
/// (`West Europe`), which must not read as drift.
fn region(location: &str) -> String {
    location
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase()
}

/// The desired settings of the account (the keys `read` reports).
pub fn desired(location: &str) -> Value {
    json!({
        "location": region(location),
        "kind": "GlobalDocumentDB",
        "serverless": true,
        "disable_local_auth": true,
        "consistency": "Session",
        // The functions reach it over the internet with an Entra token (no private network).
        "public_network_access": "Enabled",
        "minimal_tls_version": "Tls12",
        "provisioning_state": "Succeeded",
    })
}

/// The account as an [`ArmResource`]. PUT is create-or-update for accounts, so create and
/// update share it; deleting the account deletes its databases, containers and role assignments.
pub struct CosmosAccount;

/// Creates, reads, updates and deletes the account.
pub type CosmosAccountDriver = ArmDriver<CosmosAccount>;

impl ArmResource for CosmosAccount {
    const API: &'static str = API;

    fn what(spec: &ResourceSpec) -> String {
        format!("Cosmos DB account {}", spec.name)
    }

    fn path(arm: &ArmClient, spec: &ResourceSpec) -> Result<String, CloudError> {
        group_resource_path(arm, spec, TYPE)
    }

    fn body(
        _: &ArmClient,
        spec: &ResourceSpec,
        tags: Value,
        _: &Outputs,
    ) -> Result<Value, CloudError> {
        let location = input(spec, LOCATION_KEY)?;
        Ok(json!({
            "location": location,
            "kind": "GlobalDocumentDB",
            "tags": tags,
            "properties": {
                "databaseAccountOfferType": "Standard",
                "createMode": "Default",
                "locations": [{"locationName": location, "failoverPriority": 0, "isZoneRedundant": false}],
                "capabilities": [{"name": SERVERLESS}],
                "disableLocalAuth": true,
                "consistencyPolicy": {"defaultConsistencyLevel": "Session"},
                "publicNetworkAccess": "Enabled",
                "minimalTlsVersion": "Tls12",
            },
        }))
    }

    fn observe(
        body: &Value,
        what: &str,
        _: &ResourceSpec,
        _: &Outputs,
    ) -> Result<Observed, CloudError> {
        observe(body, what)
    }
}

/// The observation of an account as ARM returned it (`what` names it in errors).
fn observe(body: &Value, what: &str) -> Result<Observed, CloudError> {
    let state = settled_state(body, what)?;
    let missing = |k: &str| {
        CloudError::fatal(
            "MalformedResponse",
            format!("{what}: ARM's answer has no `{k}`"),
        )
        .with_hint("run deploy again; if it persists, the Microsoft.DocumentDB API changed")
    };
    let id = body
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| missing("id"))?;
    // The data-plane endpoint as ARM reports it, never rebuilt from the name (SPEC §9).
    let endpoint = body
        .pointer("/properties/documentEndpoint")
        .and_then(Value::as_str)
        .ok_or_else(|| missing("properties.documentEndpoint"))?;
    let p = |k: &str| body.pointer(&format!("/properties/{k}")).cloned();
    let serverless = body
        .pointer("/properties/capabilities")
        .and_then(Value::as_array)
        .map(|caps| {
            caps.iter()
                .any(|c| c.get("name").and_then(Value::as_str) == Some(SERVERLESS))
        });
    Ok(Observed::new(
        id,
        json!({
            "id": id,
            "location": body.get("location").and_then(Value::as_str).map(region),
            "kind": body.get("kind"),
            "serverless": serverless,
            "disable_local_auth": p("disableLocalAuth"),
            "consistency": body.pointer("/properties/consistencyPolicy/defaultConsistencyLevel"),
            "public_network_access": p("publicNetworkAccess"),
            "minimal_tls_version": p("minimalTlsVersion"),
            "provisioning_state": state,
            "document_endpoint": endpoint,
        }),
    )
    .owned_by(owner_from(body.get("tags"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observe_needs_the_document_endpoint() {
        // Cosmos DB reports the region's display name.
        let body = json!({"id": "/x", "location": "West Europe", "kind": "GlobalDocumentDB",
            "properties": {"provisioningState": "Succeeded", "disableLocalAuth": true,
                "capabilities": [{"name": "EnableServerless"}],
                "consistencyPolicy": {"defaultConsistencyLevel": "Session"},
                "publicNetworkAccess": "Enabled", "minimalTlsVersion": "Tls12",
                "documentEndpoint": "https://a.documents.azure.com:443/"}});
        let o = observe(&body, "Cosmos DB account a").expect("observed");
        assert!(o.drift(&desired("westeurope")).is_empty(), "{o:?}");
        assert_eq!(
            o.attr("document_endpoint"),
            Some("https://a.documents.azure.com:443/")
        );
        let mut no_endpoint = body.clone();
        no_endpoint["properties"]
            .as_object_mut()
            .expect("object")
            .remove("documentEndpoint");
        let e = observe(&no_endpoint, "Cosmos DB account a").expect_err("must fail");
        assert!(
            e.message.contains("Cosmos DB account a") && e.message.contains("documentEndpoint")
        );
    }

    #[test]
    fn local_auth_and_provisioned_throughput_are_drift() {
        let body = json!({"id": "/x", "location": "westeurope", "kind": "GlobalDocumentDB",
            "properties": {"provisioningState": "Succeeded", "disableLocalAuth": false,
                "capabilities": [],
                "consistencyPolicy": {"defaultConsistencyLevel": "Session"},
                "publicNetworkAccess": "Enabled", "minimalTlsVersion": "Tls12",
                "documentEndpoint": "https://a/"}});
        let o = observe(&body, "a").expect("observed");
        assert_eq!(
            o.drift(&desired("westeurope")),
            vec!["disable_local_auth", "serverless"]
        );
    }
}
