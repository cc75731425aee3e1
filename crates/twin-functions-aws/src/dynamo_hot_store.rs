//! The hot store on DynamoDB: table with partition key `iotDeviceId` (S) and sort key `id` (S).

use crate::attribute_value::{from_item, to_item};
use crate::error_map::cloud_error;
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    AttributeValue, DeleteRequest, ReturnValuesOnConditionCheckFailure, WriteRequest,
};
use aws_sdk_dynamodb::Client;
use std::collections::HashMap;
use std::time::Duration;
use twin_functions::event_evaluator::{RuleState, RuleStateStore};
use twin_functions::hot_store::{
    DevicePage, DeviceQuery, HotPage, HotStore, Order, ScanCursor, TimeRange,
};
use twin_functions::lease::{LeaseHeld, LeaseOutcome, LeaseStore, LEASE_PARTITION};
use twin_functions::record::{HotItem, FIELD_DEVICE_ID, FIELD_ID};
use twin_functions::{CloudError, CloudErrorKind, Timestamp};

/// BatchWriteItem takes at most 25 requests.
const BATCH_LIMIT: usize = 25;
/// How often unprocessed deletes (throttling) are resubmitted before giving up.
const UNPROCESSED_ATTEMPTS: u32 = 8;
/// The lease item's holder attribute.
const LEASE_HOLDER: &str = "holder";
/// The lease item's expiry attribute (a canonical timestamp; they sort as strings).
const LEASE_UNTIL: &str = "until";

/// The hot table. Leases ([`LeaseStore`]) are items in the reserved partition
/// `iotDeviceId = "#lease"` (sort key = the lease's name), which no device id can take; every
/// read and write of records refuses or skips that partition.
#[derive(Debug, Clone)]
pub struct DynamoHotStore {
    client: Client,
    table: String,
}

impl DynamoHotStore {
    /// The store for `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    fn resource(&self) -> String {
        format!("table {}", self.table)
    }

    fn reserved(&self, operation: &'static str) -> CloudError {
        CloudError::new(
            operation,
            self.resource(),
            "ReservedPartition",
            format!("{LEASE_PARTITION} is reserved for the movers' leases, not a device id"),
            CloudErrorKind::Rejected,
        )
    }

    fn key(device_id: &str, id: &str) -> HashMap<String, AttributeValue> {
        HashMap::from([
            (
                FIELD_DEVICE_ID.to_string(),
                AttributeValue::S(device_id.to_string()),
            ),
            (FIELD_ID.to_string(), AttributeValue::S(id.to_string())),
        ])
    }

    /// Reads an item back; items that are not records (written by hand) are skipped and logged,
    /// so one bad item cannot block a reader or a mover.
    fn record(item: &HashMap<String, AttributeValue>) -> Option<HotItem> {
        match HotItem::from_json(from_item(item)) {
            Ok(record) => Some(record),
            Err(e) => {
                tracing::warn!(error = %e, "skipping a hot item that is not a record");
                None
            }
        }
    }
}

fn sort_key(item: Option<&HashMap<String, AttributeValue>>, field: &str) -> Option<String> {
    item.and_then(|k| k.get(field))
        .and_then(|v| v.as_s().ok())
        .cloned()
}

#[async_trait]
impl HotStore for DynamoHotStore {
    async fn put_item(&self, item: &HotItem) -> Result<(), CloudError> {
        if item.device_id == LEASE_PARTITION {
            return Err(self.reserved("PutItem"));
        }
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(&item.to_json())))
            .send()
            .await
            .map_err(|e| cloud_error("PutItem", self.resource(), e))?;
        Ok(())
    }

    async fn query_page(&self, query: &DeviceQuery) -> Result<HotPage, CloudError> {
        if query.device_id == LEASE_PARTITION {
            // Not a device: the lease items are nobody's records.
            return Ok(HotPage::default());
        }
        let mut values =
            HashMap::from([(":d".to_string(), AttributeValue::S(query.device_id.clone()))]);
        let mut bind = |name: &str, t: Timestamp| {
            values.insert(name.to_string(), AttributeValue::S(t.canonical()));
        };
        let sort_condition = match query.range {
            TimeRange::All => None,
            TimeRange::Between(from, to) => {
                bind(":from", from);
                bind(":to", to);
                Some("#id BETWEEN :from AND :to")
            }
            TimeRange::From(from) => {
                bind(":from", from);
                Some("#id >= :from")
            }
            TimeRange::Until(to) => {
                bind(":to", to);
                Some("#id <= :to")
            }
            TimeRange::Before(cutoff) => {
                bind(":cutoff", cutoff);
                Some("#id < :cutoff")
            }
        };
        let mut condition = "#d = :d".to_string();
        let mut names = HashMap::from([("#d".to_string(), FIELD_DEVICE_ID.to_string())]);
        if let Some(c) = sort_condition {
            condition.push_str(" AND ");
            condition.push_str(c);
            names.insert("#id".to_string(), FIELD_ID.to_string());
        }
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression(condition)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .scan_index_forward(query.order == Order::Ascending)
            .set_limit(query.limit.map(|l| l.min(i32::MAX as u32) as i32))
            .set_exclusive_start_key(
                query
                    .after
                    .as_deref()
                    .map(|a| Self::key(&query.device_id, a)),
            )
            .send()
            .await
            .map_err(|e| cloud_error("Query", self.resource(), e))?;
        let items = out.items().iter().filter_map(Self::record).collect();
        let next = sort_key(out.last_evaluated_key(), FIELD_ID);
        Ok(HotPage { items, next })
    }

    async fn scan_devices_before(
        &self,
        cutoff: Timestamp,
        after: Option<ScanCursor>,
    ) -> Result<DevicePage, CloudError> {
        let out = self
            .client
            .scan()
            .table_name(&self.table)
            .projection_expression("#d")
            .filter_expression("#id < :cutoff AND #d <> :lease")
            .expression_attribute_names("#d", FIELD_DEVICE_ID)
            .expression_attribute_names("#id", FIELD_ID)
            .expression_attribute_values(":cutoff", AttributeValue::S(cutoff.canonical()))
            .expression_attribute_values(":lease", AttributeValue::S(LEASE_PARTITION.into()))
            .set_exclusive_start_key(after.map(|c| Self::key(&c.device_id, &c.id)))
            .send()
            .await
            .map_err(|e| cloud_error("Scan", self.resource(), e))?;
        let device_ids = out
            .items()
            .iter()
            .filter_map(|i| sort_key(Some(i), FIELD_DEVICE_ID))
            .filter(|d| d != LEASE_PARTITION)
            .collect();
        let next = match (
            sort_key(out.last_evaluated_key(), FIELD_DEVICE_ID),
            sort_key(out.last_evaluated_key(), FIELD_ID),
        ) {
            (Some(device_id), Some(id)) => Some(ScanCursor { device_id, id }),
            _ => None,
        };
        Ok(DevicePage { device_ids, next })
    }

    async fn delete_items(&self, device_id: &str, ids: &[Timestamp]) -> Result<(), CloudError> {
        if device_id == LEASE_PARTITION {
            return Err(self.reserved("BatchWriteItem"));
        }
        for batch in ids.chunks(BATCH_LIMIT) {
            let mut requests: Vec<WriteRequest> = batch
                .iter()
                .map(|id| {
                    let delete = DeleteRequest::builder()
                        .set_key(Some(Self::key(device_id, &id.canonical())))
                        .build()
                        .map_err(|e| {
                            CloudError::new(
                                "BatchWriteItem",
                                self.resource(),
                                "ConstructionFailure",
                                e.to_string(),
                                CloudErrorKind::Rejected,
                            )
                        })?;
                    Ok(WriteRequest::builder().delete_request(delete).build())
                })
                .collect::<Result<_, CloudError>>()?;
            let mut delay = Duration::from_millis(50);
            for attempt in 1..=UNPROCESSED_ATTEMPTS {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, requests)
                    .send()
                    .await
                    .map_err(|e| cloud_error("BatchWriteItem", self.resource(), e))?;
                requests = out
                    .unprocessed_items()
                    .and_then(|u| u.get(&self.table))
                    .cloned()
                    .unwrap_or_default();
                if requests.is_empty() {
                    break;
                }
                if attempt == UNPROCESSED_ATTEMPTS {
                    return Err(CloudError::new(
                        "BatchWriteItem",
                        self.resource(),
                        "UnprocessedItems",
                        format!(
                            "{} deletes still unprocessed after {attempt} attempts",
                            requests.len()
                        ),
                        CloudErrorKind::Throttled,
                    ));
                }
                // DynamoDB returns unprocessed items when throttled: back off before resubmitting.
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
        Ok(())
    }
}

/// The holder and expiry of a lease item, if it has them.
fn lease_of(name: &str, item: &HashMap<String, AttributeValue>) -> Option<LeaseHeld> {
    let holder = item.get(LEASE_HOLDER)?.as_s().ok()?.clone();
    let until = Timestamp::parse(item.get(LEASE_UNTIL)?.as_s().ok()?).ok()?;
    Some(LeaseHeld {
        name: name.to_string(),
        holder,
        until,
    })
}

#[async_trait]
impl LeaseStore for DynamoHotStore {
    /// One conditional PutItem of `{iotDeviceId: "#lease", id: name, holder, until}` under
    /// `attribute_not_exists(iotDeviceId) OR until < :now OR holder = :me`.
    async fn try_acquire_lease(
        &self,
        name: &str,
        holder: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<LeaseOutcome, CloudError> {
        let mut item = Self::key(LEASE_PARTITION, name);
        item.insert(LEASE_HOLDER.into(), AttributeValue::S(holder.into()));
        item.insert(LEASE_UNTIL.into(), AttributeValue::S(until.canonical()));
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#d) OR #until < :now OR #holder = :me")
            .expression_attribute_names("#d", FIELD_DEVICE_ID)
            .expression_attribute_names("#until", LEASE_UNTIL)
            .expression_attribute_names("#holder", LEASE_HOLDER)
            .expression_attribute_values(":now", AttributeValue::S(now.canonical()))
            .expression_attribute_values(":me", AttributeValue::S(holder.into()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(LeaseOutcome::Acquired),
            Err(e) => match e.as_service_error() {
                Some(
                    aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(
                        failed,
                    ),
                ) => {
                    let held = failed.item().and_then(|i| lease_of(name, i)).unwrap_or(LeaseHeld {
                        // The condition failed, so a live lease of someone else exists; only its
                        // details are unknown.
                        name: name.to_string(),
                        holder: "another run".to_string(),
                        until,
                    });
                    Ok(LeaseOutcome::Held(held))
                }
                _ => Err(cloud_error(
                    "PutItem",
                    format!("lease {name} in {}", self.resource()),
                    e,
                )),
            },
        }
    }

    /// One conditional DeleteItem of the lease item under `holder = :me`.
    async fn release_lease(&self, name: &str, holder: &str) -> Result<bool, CloudError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(LEASE_PARTITION, name)))
            .condition_expression("#holder = :me")
            .expression_attribute_names("#holder", LEASE_HOLDER)
            .expression_attribute_values(":me", AttributeValue::S(holder.into()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(cloud_error(
                "DeleteItem",
                format!("lease {name} in {}", self.resource()),
                e,
            )),
        }
    }
}

/// Rule states share the leases' reserved partition: every reader and mover of the hot table
/// already skips it, so no record query, scan or move can see them; the prefix keeps them apart
/// from the movers' lease names.
const RULE_STATE_PREFIX: &str = "event-rule:";
/// The rule state's "condition held" attribute.
const RULE_ACTIVE: &str = "active";
/// The rule state's write counter, the conditional write's expected value.
const RULE_VERSION: &str = "version";
/// The time (UTC ms) of the reading the rule state was decided on.
const RULE_AT: &str = "decidedAt";

impl DynamoHotStore {
    fn rule_resource(&self, rule: &str) -> String {
        format!("event rule {rule} state in {}", self.resource())
    }

    fn rule_state(
        &self,
        rule: &str,
        item: &HashMap<String, AttributeValue>,
    ) -> Result<RuleState, CloudError> {
        let missing = |what: &str| {
            CloudError::new(
                "GetItem",
                self.rule_resource(rule),
                "MalformedRuleState",
                format!("the item has no {what}; delete it and the rule starts afresh"),
                CloudErrorKind::Rejected,
            )
        };
        let active = item
            .get(RULE_ACTIVE)
            .and_then(|v| v.as_bool().ok())
            .copied()
            .ok_or_else(|| missing("boolean `active`"))?;
        let version = item
            .get(RULE_VERSION)
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or_else(|| missing("whole number `version`"))?;
        // Absent in a state an older version wrote; present, it must be a number.
        let at = match item.get(RULE_AT) {
            None => None,
            Some(v) => Some(
                v.as_n()
                    .ok()
                    .and_then(|n| n.parse::<i64>().ok())
                    .ok_or_else(|| missing("whole number `decidedAt`"))?,
            ),
        };
        Ok(RuleState {
            active,
            version,
            at,
        })
    }
}

#[async_trait]
impl RuleStateStore for DynamoHotStore {
    /// A strongly consistent GetItem, so a state just written by another persister is seen.
    async fn get(&self, rule: &str) -> Result<Option<RuleState>, CloudError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(
                LEASE_PARTITION,
                &format!("{RULE_STATE_PREFIX}{rule}"),
            )))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| cloud_error("GetItem", self.rule_resource(rule), e))?;
        out.item().map(|i| self.rule_state(rule, i)).transpose()
    }

    /// One PutItem under `attribute_not_exists(iotDeviceId)` (no state yet) or
    /// `version = :expected`.
    async fn compare_and_set(
        &self,
        rule: &str,
        expected: Option<RuleState>,
        next: RuleState,
    ) -> Result<bool, CloudError> {
        let mut item = Self::key(LEASE_PARTITION, &format!("{RULE_STATE_PREFIX}{rule}"));
        item.insert(RULE_ACTIVE.into(), AttributeValue::Bool(next.active));
        item.insert(
            RULE_VERSION.into(),
            AttributeValue::N(next.version.to_string()),
        );
        if let Some(at) = next.at {
            item.insert(RULE_AT.into(), AttributeValue::N(at.to_string()));
        }
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item));
        let put = match expected {
            None => put
                .condition_expression("attribute_not_exists(#d)")
                .expression_attribute_names("#d", FIELD_DEVICE_ID),
            Some(old) => put
                .condition_expression("#v = :v")
                .expression_attribute_names("#v", RULE_VERSION)
                .expression_attribute_values(":v", AttributeValue::N(old.version.to_string())),
        };
        match put.send().await {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(cloud_error("PutItem", self.rule_resource(rule), e)),
        }
    }
}
