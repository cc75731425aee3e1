//! The hot store on Cosmos DB for NoSQL: one container with partition key `/iotDeviceId`, each
//! record a document whose `id` is the record's canonical timestamp (so one device's `id`s sort
//! as times, and writing a record twice overwrites it). Leases are documents in the reserved
//! partition `#lease`, taken and given up with optimistic concurrency on their ETag; so are the
//! event rules' firing states ([`RuleStateStore`], ids `event-rule:<rule>`).

use crate::error_map::cosmos_error;
use async_trait::async_trait;
use azure_core::http::{Etag, StatusCode};
use azure_data_cosmos::clients::ContainerClient;
use azure_data_cosmos::options::{ItemWriteOptions, Precondition};
use azure_data_cosmos::{CosmosError, FeedScope, Query};
use futures::{StreamExt, TryStreamExt};
use serde_json::{json, Map, Value};
use twin_functions::event_evaluator::{RuleState, RuleStateStore};
use twin_functions::hot_store::{
    DevicePage, DeviceQuery, HotPage, HotStore, Order, ScanCursor, TimeRange,
};
use twin_functions::lease::{LeaseHeld, LeaseOutcome, LeaseStore, LEASE_PARTITION};
use twin_functions::record::{HotItem, FIELD_DEVICE_ID, FIELD_ID};
use twin_functions::{CloudError, CloudErrorKind, Timestamp};

/// Records per query page unless the query asks for fewer: Cosmos pages by count (and 4 MB),
/// and 1,000 records of a few hundred bytes stay well under a function's memory.
pub const DEFAULT_PAGE_ITEMS: u32 = 1_000;
/// Deletes in flight at once for one device (each is its own request on Cosmos).
const DELETE_CONCURRENCY: usize = 16;
/// How often a lease write that lost a race with another writer is re-read and retried (each
/// loss means someone else just wrote the lease).
const LEASE_ATTEMPTS: u32 = 4;
/// The properties Cosmos adds to every document; they are nobody's record fields.
const SYSTEM_PROPERTIES: [&str; 5] = ["_rid", "_self", "_etag", "_attachments", "_ts"];
/// The lease document's holder property.
const LEASE_HOLDER: &str = "holder";
/// The lease document's expiry property (a canonical timestamp; they sort as strings).
const LEASE_UNTIL: &str = "until";

/// The hot container. Leases ([`LeaseStore`]) are documents `{id: <name>, iotDeviceId: "#lease",
/// holder, until}`, which no device id can collide with; every read and write of records refuses
/// or skips that partition.
#[derive(Clone)]
pub struct CosmosHotStore {
    container: ContainerClient,
    name: String,
    page_items: u32,
}

impl std::fmt::Debug for CosmosHotStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CosmosHotStore")
            .field("container", &self.name)
            .field("page_items", &self.page_items)
            .finish()
    }
}

impl CosmosHotStore {
    /// The store over `container` (named `name` in errors and logs).
    pub fn new(container: ContainerClient, name: impl Into<String>) -> Self {
        Self {
            container,
            name: name.into(),
            page_items: DEFAULT_PAGE_ITEMS,
        }
    }

    /// Pages of at most `items` records (tests use small pages to exercise paging).
    pub fn with_page_items(mut self, items: u32) -> Self {
        self.page_items = items.max(1);
        self
    }

    fn resource(&self) -> String {
        format!("Cosmos container {}", self.name)
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

    fn query_error(&self, e: &CosmosError) -> CloudError {
        cosmos_error("QueryItems", self.resource(), e)
    }

    /// Runs `query` in `scope` and collects every result (callers bound it with `TOP`).
    async fn collect<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        query: Query,
        scope: FeedScope,
    ) -> Result<Vec<T>, CloudError> {
        let stream = self
            .container
            .query_items::<T>(query, scope, None)
            .await
            .map_err(|e| self.query_error(&e))?;
        stream
            .try_collect()
            .await
            .map_err(|e: CosmosError| self.query_error(&e))
    }

    /// Reads a document back as a record; documents that are not records (written by hand) are
    /// skipped and logged, so one bad document cannot block a reader or a mover.
    fn record(mut doc: Map<String, Value>) -> Option<HotItem> {
        for p in SYSTEM_PROPERTIES {
            doc.remove(p);
        }
        match HotItem::from_json(doc) {
            Ok(record) => Some(record),
            Err(e) => {
                tracing::warn!(error = %e, "skipping a hot document that is not a record");
                None
            }
        }
    }
}

fn param(query: Query, name: &str, value: impl serde::Serialize) -> Result<Query, CloudError> {
    query.with_parameter(name, value).map_err(|e| {
        CloudError::new(
            "QueryItems",
            "a query parameter",
            "Serialization",
            e.to_string(),
            CloudErrorKind::Rejected,
        )
    })
}

#[async_trait]
impl HotStore for CosmosHotStore {
    async fn put_item(&self, item: &HotItem) -> Result<(), CloudError> {
        if item.device_id == LEASE_PARTITION {
            return Err(self.reserved("UpsertItem"));
        }
        // Upsert keyed by (device, timestamp): a redelivered record overwrites itself.
        self.container
            .upsert_item(
                item.device_id.clone(),
                &item.id.canonical(),
                Value::Object(item.to_json()),
                None,
            )
            .await
            .map_err(|e| cosmos_error("UpsertItem", self.resource(), &e))?;
        Ok(())
    }

    async fn query_page(&self, query: &DeviceQuery) -> Result<HotPage, CloudError> {
        if query.device_id == LEASE_PARTITION {
            // Not a device: the lease documents are nobody's records.
            return Ok(HotPage::default());
        }
        let take = query
            .limit
            .unwrap_or(self.page_items)
            .clamp(1, self.page_items);
        let (direction, after_op) = match query.order {
            Order::Ascending => ("ASC", ">"),
            Order::Descending => ("DESC", "<"),
        };
        let mut conditions = vec![format!("c.{FIELD_DEVICE_ID} = @d")];
        let mut binds: Vec<(&str, String)> = vec![("@d", query.device_id.clone())];
        let mut bind = |cond: &str, name: &'static str, t: Timestamp| {
            conditions.push(cond.to_string());
            binds.push((name, t.canonical()));
        };
        match query.range {
            TimeRange::All => {}
            TimeRange::Between(from, to) => {
                bind("c.id >= @from", "@from", from);
                bind("c.id <= @to", "@to", to);
            }
            TimeRange::From(from) => bind("c.id >= @from", "@from", from),
            TimeRange::Until(to) => bind("c.id <= @to", "@to", to),
            TimeRange::Before(cutoff) => bind("c.id < @cutoff", "@cutoff", cutoff),
        }
        if let Some(after) = &query.after {
            conditions.push(format!("c.id {after_op} @after"));
            binds.push(("@after", after.clone()));
        }
        // Paging by key (TOP n, then "after the last id") rather than by continuation token:
        // the page boundary is then exactly what `DeviceQuery::after` means, in either order.
        // The device is in the WHERE clause as well as the scope (the emulator ignores the
        // partition-key header).
        let mut sql = Query::from(format!(
            "SELECT TOP {take} * FROM c WHERE {} ORDER BY c.id {direction}",
            conditions.join(" AND ")
        ));
        for (name, value) in binds {
            sql = param(sql, name, value)?;
        }
        let docs: Vec<Map<String, Value>> = self
            .collect(sql, FeedScope::partition(query.device_id.clone()))
            .await?;
        let full = docs.len() as u32 >= take;
        let items: Vec<HotItem> = docs.into_iter().filter_map(Self::record).collect();
        let next = if full {
            items.last().map(|i| i.id.canonical())
        } else {
            None
        };
        Ok(HotPage { items, next })
    }

    /// One device per page, by skip-scan: the smallest device id after the cursor that has a
    /// record older than `cutoff`. Each page is one indexed `ORDER BY` on the partition key
    /// across partitions instead of a read of the whole container.
    async fn scan_devices_before(
        &self,
        cutoff: Timestamp,
        after: Option<ScanCursor>,
    ) -> Result<DevicePage, CloudError> {
        let mut sql = Query::from(format!(
            "SELECT TOP 1 VALUE c.{FIELD_DEVICE_ID} FROM c WHERE c.id < @cutoff \
             AND c.{FIELD_DEVICE_ID} != @lease AND c.{FIELD_DEVICE_ID} > @after \
             ORDER BY c.{FIELD_DEVICE_ID} ASC"
        ));
        sql = param(sql, "@cutoff", cutoff.canonical())?;
        sql = param(sql, "@lease", LEASE_PARTITION)?;
        sql = param(
            sql,
            "@after",
            after.map(|c| c.device_id).unwrap_or_default(),
        )?;
        let devices: Vec<String> = self.collect(sql, FeedScope::full_container()).await?;
        let device_ids: Vec<String> = devices
            .into_iter()
            .filter(|d| d != LEASE_PARTITION)
            .take(1)
            .collect();
        let next = device_ids.last().map(|d| ScanCursor {
            device_id: d.clone(),
            id: String::new(),
        });
        Ok(DevicePage { device_ids, next })
    }

    async fn delete_items(&self, device_id: &str, ids: &[Timestamp]) -> Result<(), CloudError> {
        if device_id == LEASE_PARTITION {
            return Err(self.reserved("DeleteItem"));
        }
        // The futures are built first so the stream holds no closure over borrowed data (an
        // async_trait future must be Send for every lifetime).
        let deletes: Vec<_> = ids
            .iter()
            .map(|id| self.delete_one(device_id, *id))
            .collect();
        futures::stream::iter(deletes)
            .buffer_unordered(DELETE_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }
}

impl CosmosHotStore {
    async fn delete_one(&self, device_id: &str, id: Timestamp) -> Result<(), CloudError> {
        match self
            .container
            .delete_item(device_id.to_string(), &id.canonical(), None)
            .await
        {
            Ok(_) => Ok(()),
            // Already gone (a retried run): the contract says that is not an error.
            Err(e) if e.status().status_code() == StatusCode::NotFound => Ok(()),
            Err(e) => Err(cosmos_error(
                "DeleteItem",
                format!("record {device_id}/{id} in {}", self.resource()),
                &e,
            )),
        }
    }
}

/// A lease document as read, with its ETag.
struct StoredLease {
    holder: String,
    until: Option<Timestamp>,
    etag: Etag,
}

impl CosmosHotStore {
    fn lease_resource(&self, name: &str) -> String {
        format!("lease {name} in {}", self.resource())
    }

    fn lease_doc(name: &str, holder: &str, until: Timestamp) -> Value {
        json!({
            FIELD_ID: name,
            FIELD_DEVICE_ID: LEASE_PARTITION,
            LEASE_HOLDER: holder,
            LEASE_UNTIL: until.canonical(),
        })
    }

    /// The lease document, or `None` when there is none. Read by a query on the reserved
    /// partition rather than a point read: the emulator answers a point read of a missing
    /// document with HTTP 500 instead of 404, and a lease is read once per mover run, so the
    /// query's slightly higher cost does not matter.
    async fn read_lease(&self, name: &str) -> Result<Option<StoredLease>, CloudError> {
        let mut sql = Query::from(format!(
            "SELECT * FROM c WHERE c.{FIELD_DEVICE_ID} = @lease AND c.id = @name"
        ));
        sql = param(sql, "@lease", LEASE_PARTITION)?;
        sql = param(sql, "@name", name)?;
        let docs: Vec<Map<String, Value>> = self
            .collect(sql, FeedScope::partition(LEASE_PARTITION.to_string()))
            .await?;
        let Some(doc) = docs.into_iter().next() else {
            return Ok(None);
        };
        let etag = doc
            .get("_etag")
            .and_then(Value::as_str)
            .map(|e| Etag::from(e.to_string()))
            .ok_or_else(|| {
                CloudError::new(
                    "ReadItem",
                    self.lease_resource(name),
                    "MissingETag",
                    "the lease document came back without an ETag, so no conditional write can follow",
                    CloudErrorKind::Rejected,
                )
            })?;
        let text = |field: &str| doc.get(field).and_then(Value::as_str).map(str::to_string);
        Ok(Some(StoredLease {
            holder: text(LEASE_HOLDER).unwrap_or_default(),
            // An unreadable expiry counts as expired: it can only be taken over.
            until: text(LEASE_UNTIL).and_then(|u| Timestamp::parse(&u).ok()),
            etag,
        }))
    }
}

fn if_match(etag: Etag) -> Option<ItemWriteOptions> {
    Some(ItemWriteOptions::default().with_precondition(Precondition::IfMatch(etag)))
}

fn lost_race(e: &CosmosError) -> bool {
    // 412: the ETag changed under us; 409: someone created the document first; 404: it was
    // deleted between our read and our conditional write.
    matches!(
        e.status().status_code(),
        StatusCode::PreconditionFailed | StatusCode::Conflict | StatusCode::NotFound
    )
}

fn contention(operation: &'static str, resource: String) -> CloudError {
    CloudError::new(
        operation,
        resource,
        "LeaseContention",
        format!("the lease changed under every one of {LEASE_ATTEMPTS} conditional writes"),
        CloudErrorKind::Transient,
    )
}

#[async_trait]
impl LeaseStore for CosmosHotStore {
    /// Read, then one conditional write: create when absent (a concurrent create gets 409), or
    /// replace with `If-Match: <etag read>` when expired or ours (a concurrent write gets 412).
    /// A lost race re-reads and decides again.
    async fn try_acquire_lease(
        &self,
        name: &str,
        holder: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<LeaseOutcome, CloudError> {
        let doc = Self::lease_doc(name, holder, until);
        for _ in 0..LEASE_ATTEMPTS {
            let result = match self.read_lease(name).await? {
                None => {
                    self.container
                        .create_item(LEASE_PARTITION.to_string(), name, &doc, None)
                        .await
                }
                Some(current) => {
                    let live = current.until.is_some_and(|u| u >= now);
                    if live && current.holder != holder {
                        return Ok(LeaseOutcome::Held(LeaseHeld {
                            name: name.to_string(),
                            holder: current.holder,
                            until: current.until.unwrap_or(until),
                        }));
                    }
                    self.container
                        .replace_item(
                            LEASE_PARTITION.to_string(),
                            name,
                            &doc,
                            if_match(current.etag),
                        )
                        .await
                }
            };
            match result {
                Ok(_) => return Ok(LeaseOutcome::Acquired),
                Err(e) if lost_race(&e) => continue,
                Err(e) => return Err(cosmos_error("WriteItem", self.lease_resource(name), &e)),
            }
        }
        Err(contention("WriteItem", self.lease_resource(name)))
    }

    /// Read, then a DELETE with `If-Match: <etag read>` when `holder` holds it.
    async fn release_lease(&self, name: &str, holder: &str) -> Result<bool, CloudError> {
        for _ in 0..LEASE_ATTEMPTS {
            let Some(current) = self.read_lease(name).await? else {
                return Ok(false);
            };
            if current.holder != holder {
                return Ok(false);
            }
            match self
                .container
                .delete_item(LEASE_PARTITION.to_string(), name, if_match(current.etag))
                .await
            {
                Ok(_) => return Ok(true),
                Err(e) if lost_race(&e) => continue,
                Err(e) => return Err(cosmos_error("DeleteItem", self.lease_resource(name), &e)),
            }
        }
        Err(contention("DeleteItem", self.lease_resource(name)))
    }
}

/// Rule states share the leases' reserved partition (as on AWS): every reader and mover of the
/// hot container already skips it, and the prefix keeps them apart from the movers' lease names.
pub const RULE_STATE_PREFIX: &str = "event-rule:";
/// The rule state's "condition held" property.
const RULE_ACTIVE: &str = "active";
/// The rule state's write counter, the value `compare_and_set` expects.
const RULE_VERSION: &str = "version";
/// The time (UTC ms) of the reading the rule state was decided on.
const RULE_AT: &str = "decidedAt";

/// A rule state document as read, with the ETag its conditional replace must match.
#[derive(Debug, Clone)]
pub struct StoredRuleState {
    /// The state.
    pub state: RuleState,
    /// The document's ETag when read.
    pub etag: Etag,
}

impl CosmosHotStore {
    fn rule_resource(&self, rule: &str) -> String {
        format!("event rule {rule} state in {}", self.resource())
    }

    fn rule_doc(rule: &str, state: RuleState) -> Value {
        json!({
            FIELD_ID: format!("{RULE_STATE_PREFIX}{rule}"),
            FIELD_DEVICE_ID: LEASE_PARTITION,
            RULE_ACTIVE: state.active,
            RULE_VERSION: state.version,
            RULE_AT: state.at,
        })
    }

    /// The rule's state document and its ETag, `None` for a rule never evaluated. A query on
    /// the reserved partition, not a point read, for the same reason as [`Self::read_lease`]
    /// (the emulator answers a point read of a missing document with 500).
    pub async fn read_rule_state(&self, rule: &str) -> Result<Option<StoredRuleState>, CloudError> {
        let mut sql = Query::from(format!(
            "SELECT * FROM c WHERE c.{FIELD_DEVICE_ID} = @lease AND c.id = @name"
        ));
        sql = param(sql, "@lease", LEASE_PARTITION)?;
        sql = param(sql, "@name", format!("{RULE_STATE_PREFIX}{rule}"))?;
        let docs: Vec<Map<String, Value>> = self
            .collect(sql, FeedScope::partition(LEASE_PARTITION.to_string()))
            .await?;
        let Some(doc) = docs.into_iter().next() else {
            return Ok(None);
        };
        let malformed = |what: &str| {
            CloudError::new(
                "ReadItem",
                self.rule_resource(rule),
                "MalformedRuleState",
                format!("the document has no {what}; delete it and the rule starts afresh"),
                CloudErrorKind::Rejected,
            )
        };
        let etag = doc
            .get("_etag")
            .and_then(Value::as_str)
            .map(|e| Etag::from(e.to_string()))
            .ok_or_else(|| malformed("`_etag`"))?;
        let active = doc
            .get(RULE_ACTIVE)
            .and_then(Value::as_bool)
            .ok_or_else(|| malformed("boolean `active`"))?;
        let version = doc
            .get(RULE_VERSION)
            .and_then(Value::as_u64)
            .ok_or_else(|| malformed("whole number `version`"))?;
        // Absent (or null) in a state an older version wrote; present, it must be a number.
        let at = match doc.get(RULE_AT) {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_i64()
                    .ok_or_else(|| malformed("whole number `decidedAt`"))?,
            ),
        };
        Ok(Some(StoredRuleState {
            state: RuleState {
                active,
                version,
                at,
            },
            etag,
        }))
    }

    /// Creates the rule's first state with a create-only call: `Ok(false)` when another
    /// persister created it first (409).
    pub async fn create_rule_state(&self, rule: &str, next: RuleState) -> Result<bool, CloudError> {
        let id = format!("{RULE_STATE_PREFIX}{rule}");
        match self
            .container
            .create_item(
                LEASE_PARTITION.to_string(),
                &id,
                &Self::rule_doc(rule, next),
                None,
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.status().status_code() == StatusCode::Conflict => Ok(false),
            Err(e) => Err(cosmos_error("CreateItem", self.rule_resource(rule), &e)),
        }
    }

    /// Replaces the rule's state only while its ETag is still `etag` (`If-Match`): `Ok(false)`
    /// when another persister wrote it since (412) or it was deleted (404).
    pub async fn replace_rule_state(
        &self,
        rule: &str,
        etag: Etag,
        next: RuleState,
    ) -> Result<bool, CloudError> {
        let id = format!("{RULE_STATE_PREFIX}{rule}");
        match self
            .container
            .replace_item(
                LEASE_PARTITION.to_string(),
                &id,
                &Self::rule_doc(rule, next),
                if_match(etag),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if lost_race(&e) => Ok(false),
            Err(e) => Err(cosmos_error("ReplaceItem", self.rule_resource(rule), &e)),
        }
    }
}

#[async_trait]
impl RuleStateStore for CosmosHotStore {
    async fn get(&self, rule: &str) -> Result<Option<RuleState>, CloudError> {
        Ok(self.read_rule_state(rule).await?.map(|s| s.state))
    }

    /// Absent expected: one create-only call. Otherwise the document is read, its version
    /// compared, and replaced under `If-Match` with the ETag of that read, so a write landing
    /// between the read and the replace makes the replace fail (412) instead of being lost.
    async fn compare_and_set(
        &self,
        rule: &str,
        expected: Option<RuleState>,
        next: RuleState,
    ) -> Result<bool, CloudError> {
        let Some(expected) = expected else {
            return self.create_rule_state(rule, next).await;
        };
        match self.read_rule_state(rule).await? {
            Some(stored) if stored.state == expected => {
                self.replace_rule_state(rule, stored.etag, next).await
            }
            _ => Ok(false),
        }
    }
}
