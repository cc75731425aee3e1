//! The nonce ledger of the twin's AWS-hosted boundary ingresses: an on-demand DynamoDB table
//! `<twin>-boundary-nonces`, partition key `hop` (S), sort key `nonce` (S), with time to live
//! on `expiresAt` so claims vanish once their window has closed (the ingress's conditional write
//! treats an expired claim as free before TTL gets to it; see
//! `twin_functions_aws::DynamoNonceLedger`).

use crate::errors::{cloud, gone_is_ok, not_found_is_none};
use crate::AwsClients;
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus,
    Tag, TimeToLiveSpecification, TimeToLiveStatus,
};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use twin_engine::wait::poll_until;
use twin_engine::{CloudError, ErrorClass, Observed, Outputs, ResourceDriver, ResourceSpec};

/// Driver kind of the nonce table.
pub const KIND: &str = "dynamodb_boundary_nonce_table";

/// The attribute DynamoDB's time to live reads (Unix seconds).
pub const TTL_ATTRIBUTE: &str = "expiresAt";

/// The table's name: `<twin>-boundary-nonces`.
pub fn table_name(twin: &str) -> String {
    format!("{twin}-boundary-nonces")
}

/// The settings compared for drift.
pub fn desired() -> Value {
    json!({
        "billing_mode": "PAY_PER_REQUEST",
        "keys": "hop:S HASH, nonce:S RANGE",
        "ttl_attribute": TTL_ATTRIBUTE,
    })
}

/// Creates, reads, updates (time to live) and deletes the nonce table.
pub struct NonceTableDriver {
    clients: Arc<AwsClients>,
}

impl NonceTableDriver {
    /// A driver using these clients.
    pub fn new(clients: Arc<AwsClients>) -> Self {
        NonceTableDriver { clients }
    }

    async fn describe(
        &self,
        name: &str,
    ) -> Result<Option<aws_sdk_dynamodb::types::TableDescription>, CloudError> {
        Ok(not_found_is_none(
            self.clients
                .dynamodb
                .describe_table()
                .table_name(name)
                .send()
                .await,
        )?
        .and_then(|o| o.table))
    }

    /// The attribute time to live is enabled on, if it is (enabling counts: it takes effect).
    async fn ttl_attribute(&self, name: &str) -> Result<Option<String>, CloudError> {
        let out = self
            .clients
            .dynamodb
            .describe_time_to_live()
            .table_name(name)
            .send()
            .await
            .map_err(cloud)?;
        Ok(out.time_to_live_description().and_then(|d| {
            matches!(
                d.time_to_live_status(),
                Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
            )
            .then(|| d.attribute_name().map(str::to_string))
            .flatten()
        }))
    }

    async fn enable_ttl(&self, name: &str) -> Result<(), CloudError> {
        let spec = TimeToLiveSpecification::builder()
            .enabled(true)
            .attribute_name(TTL_ATTRIBUTE)
            .build()
            .map_err(|e| CloudError::fatal("RequestInvalid", e.to_string()))?;
        self.clients
            .dynamodb
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(spec)
            .send()
            .await
            .map_err(cloud)?;
        Ok(())
    }

    async fn observe(
        &self,
        t: &aws_sdk_dynamodb::types::TableDescription,
    ) -> Result<Observed, CloudError> {
        let name = t.table_name().unwrap_or_default().to_string();
        let arn = t
            .table_arn()
            .ok_or_else(|| {
                CloudError::new(
                    ErrorClass::Transient,
                    "IncompleteResponse",
                    format!("DynamoDB DescribeTable for table {name} returned no ARN"),
                )
            })?
            .to_string();
        let billing = t
            .billing_mode_summary()
            .and_then(|b| b.billing_mode())
            .map(|m| m.as_str().to_string())
            .unwrap_or_else(|| "PROVISIONED".into());
        let types: std::collections::HashMap<&str, &str> = t
            .attribute_definitions()
            .iter()
            .map(|a| (a.attribute_name(), a.attribute_type().as_str()))
            .collect();
        let keys: Vec<String> = t
            .key_schema()
            .iter()
            .map(|k| {
                format!(
                    "{}:{} {}",
                    k.attribute_name(),
                    types.get(k.attribute_name()).copied().unwrap_or("?"),
                    k.key_type().as_str()
                )
            })
            .collect();
        Ok(Observed::new(
            arn.clone(),
            json!({
                "arn": arn,
                "name": name,
                "billing_mode": billing,
                "keys": keys.join(", "),
                "ttl_attribute": self.ttl_attribute(&name).await?,
            }),
        ))
    }
}

fn attr(name: &str) -> Result<AttributeDefinition, CloudError> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .map_err(|e| CloudError::fatal("RequestInvalid", e.to_string()))
}

fn key(name: &str, t: KeyType) -> Result<KeySchemaElement, CloudError> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(t)
        .build()
        .map_err(|e| CloudError::fatal("RequestInvalid", e.to_string()))
}

#[async_trait]
impl ResourceDriver for NonceTableDriver {
    async fn read(&self, spec: &ResourceSpec, _: &Outputs) -> Result<Option<Observed>, CloudError> {
        let Some(table) = self.describe(&spec.name).await? else {
            return Ok(None);
        };
        let observed = self.observe(&table).await?;
        let tags = not_found_is_none(
            self.clients
                .dynamodb
                .list_tags_of_resource()
                .resource_arn(&observed.cloud_id)
                .send()
                .await,
        )?;
        let owner = crate::context::owner_from_tags(
            tags.iter()
                .flat_map(|t| t.tags())
                .map(|t| (t.key(), t.value())),
        );
        Ok(Some(observed.owned_by(owner)))
    }

    async fn create(&self, spec: &ResourceSpec, deps: &Outputs) -> Result<Observed, CloudError> {
        let tag = Tag::builder()
            .key(twin_config::names::TAG_KEY)
            .value(crate::context::twin_tag(spec))
            .build()
            .map_err(|e| CloudError::fatal("RequestInvalid", e.to_string()))?;
        self.clients
            .dynamodb
            .create_table()
            .table_name(&spec.name)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("hop")?)
            .attribute_definitions(attr("nonce")?)
            .key_schema(key("hop", KeyType::Hash)?)
            .key_schema(key("nonce", KeyType::Range)?)
            .tags(tag)
            .send()
            .await
            .map_err(cloud)?;
        poll_until(
            &format!("table {} ACTIVE", spec.name),
            Duration::from_millis(200),
            Duration::from_secs(5),
            Duration::from_secs(600),
            || async {
                Ok(self
                    .describe(&spec.name)
                    .await?
                    .filter(|t| t.table_status() == Some(&TableStatus::Active))
                    .map(|_| ()))
            },
        )
        .await?;
        // Time to live can only be set on an existing table.
        self.enable_ttl(&spec.name).await?;
        crate::errors::reread(
            self.read(spec, deps).await?,
            "ResourceNotFoundException",
            &format!("table {}", spec.name),
        )
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        current: &Observed,
        deps: &Outputs,
    ) -> Result<Observed, CloudError> {
        // The key schema cannot drift in place; billing and time to live can be set back.
        if current.attributes.get("billing_mode") != spec.desired.get("billing_mode") {
            self.clients
                .dynamodb
                .update_table()
                .table_name(&spec.name)
                .billing_mode(BillingMode::PayPerRequest)
                .send()
                .await
                .map_err(cloud)?;
        }
        if current.attributes.get("ttl_attribute") != spec.desired.get("ttl_attribute") {
            self.enable_ttl(&spec.name).await?;
        }
        crate::errors::reread(
            self.read(spec, deps).await?,
            "ResourceNotFoundException",
            &format!("table {}", spec.name),
        )
    }

    async fn delete(&self, spec: &ResourceSpec, _: &Observed) -> Result<(), CloudError> {
        gone_is_ok(
            self.clients
                .dynamodb
                .delete_table()
                .table_name(&spec.name)
                .send()
                .await,
        )?;
        poll_until(
            &format!("table {} deleted", spec.name),
            Duration::from_millis(200),
            Duration::from_secs(5),
            Duration::from_secs(600),
            || async { Ok(self.describe(&spec.name).await?.is_none().then_some(())) },
        )
        .await
    }
}
