//! The hot store: an on-demand DynamoDB table, partition key `iotDeviceId` (S), sort key `id`
//! (S, the timestamp).

use crate::context::LayerContext;
use crate::errors::{cloud, gone_is_ok, not_found_is_none};
use crate::AwsClients;
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus,
    Tag,
};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use twin_config::{names, Layer};
use twin_engine::wait::poll_until;
use twin_engine::{CloudError, Observed, Outputs, ResourceDriver, ResourceId, ResourceSpec};

/// Driver kind of the table.
pub const KIND: &str = "dynamodb_table";

/// The id of the hot table.
pub fn table_id() -> ResourceId {
    crate::context::resource_id(Layer::L3Hot, KIND, "hot")
}

/// The ARN of the hot table.
pub fn table_arn(ctx: &LayerContext<'_>) -> String {
    ctx.clients.arn(
        "dynamodb",
        &format!("table/{}", names::table_name(ctx.name())),
    )
}

/// The hot table's spec.
pub fn table_spec(ctx: &LayerContext<'_>) -> ResourceSpec {
    ctx.spec(Layer::L3Hot, KIND, "hot", names::table_name(ctx.name()))
        .desired(json!({
            "billing_mode": "PAY_PER_REQUEST",
            "keys": "iotDeviceId:S HASH, id:S RANGE",
        }))
}

/// Creates, reads and deletes the table, waiting for ACTIVE and for deletion to finish.
pub struct TableDriver {
    clients: Arc<AwsClients>,
}

impl TableDriver {
    /// A driver using these clients.
    pub fn new(clients: Arc<AwsClients>) -> Self {
        TableDriver { clients }
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
}

fn observe(t: &aws_sdk_dynamodb::types::TableDescription) -> Observed {
    let arn = t.table_arn().unwrap_or_default().to_string();
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
    Observed::new(
        arn.clone(),
        json!({
            "arn": arn,
            "name": t.table_name(),
            "status": t.table_status().map(|s| s.as_str()),
            "billing_mode": billing,
            "keys": keys.join(", "),
        }),
    )
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
impl ResourceDriver for TableDriver {
    async fn read(&self, spec: &ResourceSpec, _: &Outputs) -> Result<Option<Observed>, CloudError> {
        let Some(table) = self.describe(&spec.name).await? else {
            return Ok(None);
        };
        let tags = not_found_is_none(
            self.clients
                .dynamodb
                .list_tags_of_resource()
                .resource_arn(table.table_arn().unwrap_or_default())
                .send()
                .await,
        )?;
        let owner = crate::context::owner_from_tags(
            tags.iter()
                .flat_map(|t| t.tags())
                .map(|t| (t.key(), t.value())),
        );
        Ok(Some(observe(&table).owned_by(owner)))
    }

    async fn create(&self, spec: &ResourceSpec, _: &Outputs) -> Result<Observed, CloudError> {
        let tag = Tag::builder()
            .key(names::TAG_KEY)
            .value(crate::context::twin_tag(spec))
            .build()
            .map_err(|e| CloudError::fatal("RequestInvalid", e.to_string()))?;
        self.clients
            .dynamodb
            .create_table()
            .table_name(&spec.name)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("iotDeviceId")?)
            .attribute_definitions(attr("id")?)
            .key_schema(key("iotDeviceId", KeyType::Hash)?)
            .key_schema(key("id", KeyType::Range)?)
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
                    .map(|t| observe(&t)))
            },
        )
        .await
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        _: &Observed,
        deps: &Outputs,
    ) -> Result<Observed, CloudError> {
        // Only the billing mode can change in place; the key schema never drifts by itself.
        self.clients
            .dynamodb
            .update_table()
            .table_name(&spec.name)
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
            .map_err(cloud)?;
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
