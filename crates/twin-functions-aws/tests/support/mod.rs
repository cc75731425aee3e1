//! Shared set-up for the tests against moto: clients, and a table and buckets per test.

#![allow(dead_code)]

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use std::collections::BTreeMap;
use twin_functions::object_store::{ObjectInfo, ObjectStore};
use twin_functions_aws::{dynamodb_client, s3_client, DynamoHotStore, S3ObjectStore};

/// One test's resources in moto.
pub struct MotoTwin {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub s3: aws_sdk_s3::Client,
    pub table: String,
    pub cold: String,
    pub archive: String,
}

impl MotoTwin {
    /// Creates `<name>-hot`, `<name>-cold` and `<name>-archive` in the shared moto server.
    pub async fn create(name: &str) -> Self {
        twin_testkit::aws_env_for_moto();
        let config = twin_functions_aws::aws_sdk_config().expect("AWS environment for moto");
        let twin = Self {
            dynamodb: dynamodb_client(&config),
            s3: s3_client(&config),
            table: format!("{name}-hot"),
            cold: format!("{name}-cold"),
            archive: format!("{name}-archive"),
        };
        twin.dynamodb
            .create_table()
            .table_name(&twin.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("iotDeviceId"))
            .attribute_definitions(attr("id"))
            .key_schema(key("iotDeviceId", KeyType::Hash))
            .key_schema(key("id", KeyType::Range))
            .send()
            .await
            .expect("create table in moto");
        for bucket in [&twin.cold, &twin.archive] {
            twin.s3
                .create_bucket()
                .bucket(bucket)
                .send()
                .await
                .expect("create bucket in moto");
        }
        twin
    }

    pub fn hot_store(&self) -> DynamoHotStore {
        DynamoHotStore::new(self.dynamodb.clone(), self.table.clone())
    }

    pub fn object_store(&self) -> S3ObjectStore {
        S3ObjectStore::new(self.s3.clone())
    }

    /// Every item in the hot table (a full scan).
    pub async fn hot_items(&self) -> Vec<serde_json::Map<String, serde_json::Value>> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .dynamodb
                .scan()
                .table_name(&self.table)
                .set_exclusive_start_key(start)
                .send()
                .await
                .expect("scan");
            items.extend(
                out.items()
                    .iter()
                    .map(twin_functions_aws::attribute_value::from_item),
            );
            match out.last_evaluated_key() {
                Some(k) => start = Some(k.clone()),
                None => return items,
            }
        }
    }

    /// Every object of a bucket with its metadata as HEAD reports it.
    pub async fn objects(&self, bucket: &str) -> BTreeMap<String, ObjectInfo> {
        let store = self.object_store();
        let mut all = BTreeMap::new();
        let mut next = None;
        loop {
            let page = store.list_objects(bucket, "", next).await.expect("list");
            for o in page.objects {
                let head = store
                    .head_object(bucket, &o.key)
                    .await
                    .expect("head")
                    .expect("listed object exists");
                all.insert(o.key.clone(), head);
            }
            match page.next {
                Some(n) => next = Some(n),
                None => return all,
            }
        }
    }
}

fn attr(name: &str) -> AttributeDefinition {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .expect("attribute definition")
}

fn key(name: &str, kind: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .expect("key schema")
}
