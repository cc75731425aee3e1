//! The nonce ledger of an AWS-hosted boundary ingress (`twin_functions::boundary::NonceLedger`)
//! in a DynamoDB table of its own: partition key `hop` (S), sort key `nonce` (S), and
//! `expiresAt` (N, Unix seconds), the table's TTL attribute. One conditional PutItem claims a
//! nonce, so two instances of the ingress can never both accept the same request.

use crate::error_map::cloud_error;
use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use twin_functions::boundary::NonceLedger;
use twin_functions::CloudError;

/// Partition key: the boundary's hop.
pub const FIELD_HOP: &str = "hop";
/// Sort key: the request's nonce.
pub const FIELD_NONCE: &str = "nonce";
/// When the claim may be forgotten (Unix seconds); the table's TTL attribute.
pub const FIELD_EXPIRES_AT: &str = "expiresAt";

/// A nonce ledger in DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoNonceLedger {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoNonceLedger {
    /// The ledger in `table`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

#[async_trait]
impl NonceLedger for DynamoNonceLedger {
    async fn claim(
        &self,
        hop: &str,
        nonce: &str,
        expires_at_secs: i64,
    ) -> Result<bool, CloudError> {
        let now = chrono::Utc::now().timestamp();
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(FIELD_HOP, AttributeValue::S(hop.into()))
            .item(FIELD_NONCE, AttributeValue::S(nonce.into()))
            .item(
                FIELD_EXPIRES_AT,
                AttributeValue::N(expires_at_secs.to_string()),
            )
            // TTL deletion runs late (up to days): an expired claim is free to take again.
            .condition_expression("attribute_not_exists(#n) OR #e < :now")
            .expression_attribute_names("#n", FIELD_NONCE)
            .expression_attribute_names("#e", FIELD_EXPIRES_AT)
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) => match e.as_service_error() {
                Some(
                    aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(_),
                ) => Ok(false),
                _ => Err(cloud_error(
                    "PutItem",
                    format!("nonce ledger table {}", self.table),
                    e,
                )),
            },
        }
    }
}
