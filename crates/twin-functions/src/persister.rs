//! The persister (L2 → L3 hot): writes `{iotDeviceId, id: time, <properties>}` to the hot store.
//!
//! The item's key is (device, time), so a message delivered twice overwrites the same item: one
//! item, not two. `correlationId` is logged, not stored.

use crate::drops::{DropCounter, DropReason};
use crate::error::CloudError;
use crate::hot_store::HotStore;
use crate::record::{
    verify_run_of, HotItem, FIELD_CORRELATION_ID, FIELD_DEVICE_ID, FIELD_TIME,
    FIELD_TOPIC_DEVICE_ID, FIELD_VERIFY_RUN, RESERVED_FIELDS,
};
use crate::timestamp::Timestamp;
use serde_json::Value;
use tracing::Instrument;

/// What the persister did with one record.
#[derive(Debug, Clone, PartialEq)]
pub enum PersistOutcome {
    /// Written (or rewritten) in the hot store.
    Stored(HotItem),
    /// Not stored, for this reason (already logged and counted).
    Dropped(DropReason),
}

/// The persister function's logic.
pub struct Persister<S> {
    store: S,
    drops: DropCounter,
}

/// Turns a processed record into the hot item, or says why it is not one.
pub fn hot_item(event: Value) -> Result<HotItem, DropReason> {
    let Value::Object(mut record) = event else {
        return Err(DropReason::NotAnObject);
    };
    let device_id = match record.remove(FIELD_DEVICE_ID) {
        Some(Value::String(d)) if !d.trim().is_empty() => d,
        _ => return Err(DropReason::MissingDeviceId),
    };
    let id = match record.remove(FIELD_TIME) {
        Some(Value::String(t)) => {
            Timestamp::parse(&t).map_err(|e| DropReason::BadTime(e.to_string()))?
        }
        Some(other) => {
            return Err(DropReason::BadTime(format!(
                "{other} is not a timestamp text"
            )))
        }
        None => {
            return Err(DropReason::BadTime(
                "time is missing (the processor fills it)".into(),
            ))
        }
    };
    for field in RESERVED_FIELDS.iter().chain([&FIELD_TOPIC_DEVICE_ID]) {
        record.remove(*field);
    }
    if record.is_empty() {
        return Err(DropReason::NoProperties);
    }
    Ok(HotItem {
        device_id,
        id,
        properties: record,
    })
}

impl<S: HotStore> Persister<S> {
    /// A persister writing to `store`.
    pub fn new(store: S) -> Self {
        Self {
            store,
            drops: DropCounter::default(),
        }
    }

    /// Handles one record: drops are acknowledged, a failed write is an error (the platform
    /// retries it, and the write is idempotent).
    pub async fn handle(
        &self,
        event: Value,
        correlation_id: &str,
    ) -> Result<PersistOutcome, CloudError> {
        let correlation = event
            .get(FIELD_CORRELATION_ID)
            .and_then(Value::as_str)
            .unwrap_or(correlation_id)
            .to_string();
        let device = event
            .get(FIELD_DEVICE_ID)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let span =
            tracing::info_span!("persist", device_id = %device, correlation_id = %correlation);
        async {
            match hot_item(event) {
                Err(reason) => {
                    self.drops.record("persister", &reason);
                    Ok(PersistOutcome::Dropped(reason))
                }
                Ok(mut item) => {
                    if let Some(run) = verify_run_of(&correlation) {
                        item.properties
                            .insert(FIELD_VERIFY_RUN.into(), Value::String(run.into()));
                    }
                    self.store.put_item(&item).await?;
                    // One line per record at info: `deployer verify` times L3 from it.
                    tracing::info!(id = %item.id, "record stored");
                    Ok(PersistOutcome::Stored(item))
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Records dropped by this instance so far.
    pub fn dropped(&self) -> u64 {
        self.drops.total()
    }

    /// The store (for tests and the benchmark).
    pub fn store(&self) -> &S {
        &self.store
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::in_memory::InMemoryHotStore;
    use serde_json::json;

    #[tokio::test]
    async fn stores_the_record_under_device_and_time() {
        let p = Persister::new(InMemoryHotStore::new(100));
        let event = json!({"iotDeviceId":"s-1","time":"2025-11-04T13:23:11.203Z","correlationId":"c","temperature":21.5});
        let out = p.handle(event.clone(), "r").await.unwrap();
        assert!(matches!(out, PersistOutcome::Stored(_)));
        p.handle(event, "r2").await.unwrap();
        let all = p.store().all();
        assert_eq!(all.len(), 1, "the same message twice stores one item");
        assert_eq!(
            Value::Object(all[0].to_json()),
            json!({"iotDeviceId":"s-1","id":"2025-11-04T13:23:11.203Z","temperature":21.5})
        );
    }

    #[tokio::test]
    async fn marks_the_records_verify_sent_and_only_those() {
        let p = Persister::new(InMemoryHotStore::new(100));
        let verify = json!({"iotDeviceId":"s-1","time":"2025-11-04T13:23:11.203Z",
            "correlationId":"verify-9f3a-12","temperature":21.5});
        let device = json!({"iotDeviceId":"s-1","time":"2025-11-04T13:23:12.000Z",
            "correlationId":"verification-1","temperature":21.5});
        p.handle(verify, "r").await.unwrap();
        p.handle(device, "r2").await.unwrap();
        let all: Vec<Value> = p
            .store()
            .all()
            .iter()
            .map(|i| Value::Object(i.to_json()))
            .collect();
        assert_eq!(
            all,
            vec![
                json!({"iotDeviceId":"s-1","id":"2025-11-04T13:23:11.203Z","temperature":21.5,
                    "verifyRun":"9f3a"}),
                json!({"iotDeviceId":"s-1","id":"2025-11-04T13:23:12.000Z","temperature":21.5}),
            ]
        );
    }

    #[tokio::test]
    async fn drops_records_that_are_not_records() {
        let p = Persister::new(InMemoryHotStore::new(100));
        for event in [
            json!(null),
            json!({"time":"2025-11-04T13:23:11.203Z","t":1}),
            json!({"iotDeviceId":"s-1","t":1}),
            json!({"iotDeviceId":"s-1","time":"x","t":1}),
            json!({"iotDeviceId":"s-1","time":"2025-11-04T13:23:11.203Z"}),
        ] {
            assert!(matches!(
                p.handle(event, "r").await.unwrap(),
                PersistOutcome::Dropped(_)
            ));
        }
        assert_eq!(p.dropped(), 5);
        assert!(p.store().all().is_empty());
    }
}
