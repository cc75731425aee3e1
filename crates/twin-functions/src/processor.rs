//! The default processor (L2): checks and coerces each property to its dataType, fills a missing
//! time, and hands the record to the persister.
//!
//! One function serves every device without a processor of its own (the shared `<twin>-processor`);
//! with `DEVICE_ID` set it is a device's own function and serves that device only. Either way the
//! property types come from the device catalogue read at cold start (`catalogue.rs`).
//!
//! A message fits when: its device is in the catalogue (and is `DEVICE_ID`, when set); `time`, if present, is a timestamp; every
//! other key is a configured property or a reserved field; every present property's value fits
//! its dataType; and at least one configured property is present (devices may send partial
//! messages). Anything else is dropped with the reason.
//!
//! The persister is invoked asynchronously: the platform retries a failed persister invocation
//! and the persister is idempotent, so the processor need not wait for the write.

use crate::catalogue::DeviceCatalogue;
use crate::clock::Clock;
use crate::drops::{DropCounter, DropReason};
use crate::error::CloudError;
use crate::invoker::FunctionInvoker;
use crate::record::{
    FIELD_CORRELATION_ID, FIELD_DEVICE_ID, FIELD_TIME, FIELD_TOPIC_DEVICE_ID, RESERVED_FIELDS,
};
use crate::settings::ProcessorSettings;
use crate::timestamp::Timestamp;
use serde_json::{Map, Value};
use tracing::Instrument;

/// What the processor did with one message.
#[derive(Debug, Clone, PartialEq)]
pub enum ProcessOutcome {
    /// The record handed to the persister.
    Persisting(Map<String, Value>),
    /// Not processed, for this reason (already logged and counted).
    Dropped(DropReason),
}

/// The processor function's logic.
pub struct Processor<I, C> {
    only_device: Option<String>,
    catalogue: DeviceCatalogue,
    persister_function: String,
    invoker: I,
    clock: C,
    drops: DropCounter,
}

impl<I: FunctionInvoker, C: Clock> Processor<I, C> {
    /// A processor for the catalogue's devices (only `DEVICE_ID`'s, when set).
    pub fn new(
        settings: &ProcessorSettings,
        catalogue: DeviceCatalogue,
        invoker: I,
        clock: C,
    ) -> Self {
        Self {
            only_device: settings.device_id.clone(),
            catalogue,
            persister_function: settings.persister_function.clone(),
            invoker,
            clock,
            drops: DropCounter::default(),
        }
    }

    /// Turns a message into the record for the persister, or says why it does not fit.
    pub fn process(&self, event: Value) -> Result<Map<String, Value>, DropReason> {
        let Value::Object(mut message) = event else {
            return Err(DropReason::NotAnObject);
        };
        let device_id = match message.get(FIELD_DEVICE_ID) {
            Some(Value::String(d)) if !d.is_empty() => d.clone(),
            _ => return Err(DropReason::MissingDeviceId),
        };
        let served = self
            .only_device
            .as_ref()
            .is_none_or(|only| *only == device_id);
        let properties = match self.catalogue.device(&device_id) {
            Some(device) if served => &device.properties,
            _ => return Err(DropReason::UnknownDevice(device_id)),
        };
        message.remove(FIELD_TOPIC_DEVICE_ID);
        let time = match message.get(FIELD_TIME) {
            None | Some(Value::Null) => self.clock.now(),
            Some(Value::String(s)) if s.trim().is_empty() => self.clock.now(),
            Some(Value::String(s)) => {
                Timestamp::parse(s).map_err(|e| DropReason::BadTime(e.to_string()))?
            }
            Some(other) => {
                return Err(DropReason::BadTime(format!(
                    "{other} is not a timestamp text"
                )))
            }
        };

        let unknown: Vec<String> = message
            .keys()
            .filter(|k| {
                !RESERVED_FIELDS.contains(&k.as_str()) && !properties.iter().any(|p| p.name == **k)
            })
            .cloned()
            .collect();
        if !unknown.is_empty() {
            return Err(DropReason::UnknownProperties(unknown));
        }

        let mut record = Map::with_capacity(properties.len() + 3);
        record.insert(FIELD_DEVICE_ID.into(), Value::String(device_id.clone()));
        record.insert(FIELD_TIME.into(), Value::String(time.canonical()));
        if let Some(c) = message.get(FIELD_CORRELATION_ID).filter(|c| c.is_string()) {
            record.insert(FIELD_CORRELATION_ID.into(), c.clone());
        }
        let mut present = 0;
        for spec in properties {
            if let Some(value) = message.get(&spec.name) {
                let coerced = spec
                    .data_type
                    .coerce(value)
                    .map_err(|e| DropReason::BadProperty(format!("{}: {e}", spec.name)))?;
                record.insert(spec.name.clone(), coerced);
                present += 1;
            }
        }
        if present == 0 {
            return Err(DropReason::NoProperties);
        }
        Ok(record)
    }

    /// Handles one event: drops are acknowledged, a failed persister invocation is an error (the
    /// platform retries it).
    pub async fn handle(
        &self,
        event: Value,
        correlation_id: &str,
    ) -> Result<ProcessOutcome, CloudError> {
        let correlation = event
            .get(FIELD_CORRELATION_ID)
            .and_then(Value::as_str)
            .unwrap_or(correlation_id)
            .to_string();
        let device_id = event
            .get(FIELD_DEVICE_ID)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let span =
            tracing::info_span!("process", device_id = %device_id, correlation_id = %correlation);
        async {
            match self.process(event) {
                Err(reason) => {
                    self.drops.record("processor", &reason);
                    Ok(ProcessOutcome::Dropped(reason))
                }
                Ok(mut record) => {
                    record
                        .entry(FIELD_CORRELATION_ID)
                        .or_insert_with(|| Value::String(correlation.clone()));
                    let payload = serde_json::to_vec(&record).unwrap_or_default();
                    self.invoker
                        .invoke_async(&self.persister_function, payload)
                        .await?;
                    // One line per record at info: `deployer verify` times L2 from it.
                    tracing::info!(persister = %self.persister_function, "record processed");
                    Ok(ProcessOutcome::Persisting(record))
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Messages dropped by this instance so far.
    pub fn dropped(&self) -> u64 {
        self.drops.total()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FixedClock;
    use crate::settings::{CommonSettings, LogLevel};
    use crate::testing::RecordingInvoker;
    use serde_json::json;

    fn catalogue() -> DeviceCatalogue {
        serde_json::from_value(json!({
            "sharedProcessor": "twin-processor",
            "devices": {
                "s-1": {"properties": [
                    {"name": "temperature", "dataType": "DOUBLE"},
                    {"name": "count", "dataType": "INTEGER"},
                    {"name": "on", "dataType": "BOOLEAN"},
                ]},
                "s-3": {"properties": [{"name": "count", "dataType": "STRING"}]},
            }
        }))
        .unwrap()
    }

    fn processor_for(only: Option<&str>) -> Processor<RecordingInvoker, FixedClock> {
        let settings = ProcessorSettings {
            common: CommonSettings {
                twin_name: "twin".into(),
                log_level: LogLevel::Info,
            },
            device_id: only.map(str::to_string),
            catalogue: crate::catalogue::CatalogueLocation {
                bucket: "b".into(),
                key: "k".into(),
            },
            persister_function: "twin-persister".into(),
        };
        let clock = FixedClock::new(Timestamp::parse("2025-11-04T00:00:00Z").unwrap());
        Processor::new(&settings, catalogue(), RecordingInvoker::default(), clock)
    }

    fn processor() -> Processor<RecordingInvoker, FixedClock> {
        processor_for(None)
    }

    #[test]
    fn the_shared_processor_coerces_by_each_device_s_own_types() {
        let p = processor();
        let a = p.process(json!({"iotDeviceId":"s-1","count":"7"})).unwrap();
        assert_eq!(a["count"], json!(7));
        let b = p.process(json!({"iotDeviceId":"s-3","count":7})).unwrap();
        assert_eq!(b["count"], json!("7"));
    }

    #[test]
    fn a_device_s_own_processor_serves_that_device_only() {
        let p = processor_for(Some("s-1"));
        assert!(p.process(json!({"iotDeviceId":"s-1","count":1})).is_ok());
        let got = p.process(json!({"iotDeviceId":"s-3","count":"x"}));
        assert_eq!(got.map_err(|r| r.code()), Err("unknown_device"));
    }

    #[tokio::test]
    async fn coerces_fills_time_and_forwards_to_the_persister() {
        let p = processor();
        let out = p
            .handle(json!({"iotDeviceId":"s-1","temperature":"21.5","count":3.0,"on":1,"correlationId":"c"}), "r")
            .await
            .unwrap();
        let expected = json!({"iotDeviceId":"s-1","time":"2025-11-04T00:00:00.000Z","correlationId":"c","temperature":21.5,"count":3,"on":true});
        assert_eq!(
            out,
            ProcessOutcome::Persisting(expected.as_object().cloned().unwrap())
        );
        assert_eq!(
            p.invoker.calls(),
            vec![("twin-persister".to_string(), expected)]
        );
    }

    #[test]
    fn normalises_the_time() {
        let rec = processor()
            .process(
                json!({"iotDeviceId":"s-1","time":"2025-11-04T14:00:00+01:00","temperature":1}),
            )
            .unwrap();
        assert_eq!(rec["time"], "2025-11-04T13:00:00.000Z");
    }

    #[test]
    fn rejects_messages_that_do_not_fit() {
        let p = processor();
        let cases = [
            (json!([1]), "not_an_object"),
            (json!({"temperature": 1}), "missing_device_id"),
            (
                json!({"iotDeviceId":"s-2","temperature":1}),
                "unknown_device",
            ),
            (
                json!({"iotDeviceId":"s-1","time":"noon","temperature":1}),
                "bad_time",
            ),
            (
                json!({"iotDeviceId":"s-1","time":5,"temperature":1}),
                "bad_time",
            ),
            (
                json!({"iotDeviceId":"s-1","temperature":"hot"}),
                "bad_property",
            ),
            (json!({"iotDeviceId":"s-1","count":2.5}), "bad_property"),
            (
                json!({"iotDeviceId":"s-1","temperature":1,"humidity":3}),
                "unknown_properties",
            ),
            (json!({"iotDeviceId":"s-1"}), "no_properties"),
        ];
        for (event, code) in cases {
            let got = p.process(event.clone()).map(|_| ()).map_err(|r| r.code());
            assert_eq!(got, Err(code), "{event}");
        }
    }

    #[tokio::test]
    async fn drops_are_counted_and_not_forwarded() {
        let p = processor();
        let out = p
            .handle(json!({"iotDeviceId":"s-1","temperature":true}), "r")
            .await
            .unwrap();
        assert!(matches!(out, ProcessOutcome::Dropped(_)));
        assert_eq!(p.dropped(), 1);
        assert!(p.invoker.calls().is_empty());
    }
}
