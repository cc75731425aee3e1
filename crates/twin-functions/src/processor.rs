//! The default processor (L2): checks and coerces each property to its dataType, fills a missing
//! time, and hands the record to the persister.
//!
//! One function serves every device without a processor of its own (the shared `<twin>-processor`);
//! with `DEVICE_ID` set it is a device's own function and serves that device only. Either way the
//! property types come from the device catalogue read at cold start (`catalogue.rs`). A device's
//! own processor runs its crate's logic first ([`crate::device_logic`]) and then the same checks.
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
use crate::device_logic::{LogicStep, StepOutcome};
use crate::drops::{DropCounter, DropReason};
use crate::error::CloudError;
use crate::invoker::FunctionInvoker;
use crate::record::{
    FIELD_CORRELATION_ID, FIELD_DEVICE_ID, FIELD_TIME, FIELD_TOPIC_DEVICE_ID, RESERVED_FIELDS,
};
use crate::settings::ProcessorSettings;
use crate::timestamp::Timestamp;
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::sync::Arc;
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
    only_devices: Option<BTreeSet<String>>,
    logic: Option<Arc<dyn LogicStep>>,
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
            only_devices: settings.device_id.clone().map(|d| BTreeSet::from([d])),
            logic: None,
            catalogue,
            persister_function: settings.persister_function.clone(),
            invoker,
            clock,
            drops: DropCounter::default(),
        }
    }

    /// The same processor running `logic` before its checks (a device's own processor).
    pub fn with_logic(mut self, logic: Arc<dyn LogicStep>) -> Self {
        self.logic = Some(logic);
        self
    }

    /// The same processor serving only `devices` (those whose own processor it is).
    pub fn serving(mut self, devices: BTreeSet<String>) -> Self {
        self.only_devices = Some(devices);
        self
    }

    /// The message's device, if it is one this processor serves.
    fn served_device(&self, message: &Map<String, Value>) -> Result<String, DropReason> {
        let device_id = match message.get(FIELD_DEVICE_ID) {
            Some(Value::String(d)) if !d.is_empty() => d.clone(),
            _ => return Err(DropReason::MissingDeviceId),
        };
        let served = self
            .only_devices
            .as_ref()
            .is_none_or(|only| only.contains(&device_id));
        match self.catalogue.device(&device_id) {
            Some(_) if served => Ok(device_id),
            _ => Err(DropReason::UnknownDevice(device_id)),
        }
    }

    /// Runs the device's logic (if any) and then the checks: the record for the persister, or
    /// why the message does not fit. An `Err` is a failure to run the logic, not the message's.
    pub async fn process_with_logic(
        &self,
        event: Value,
    ) -> Result<Result<Map<String, Value>, DropReason>, CloudError> {
        let Some(logic) = &self.logic else {
            return Ok(self.process(event));
        };
        let Value::Object(message) = event else {
            return Ok(Err(DropReason::NotAnObject));
        };
        let device_id = match self.served_device(&message) {
            Ok(d) => d,
            Err(reason) => return Ok(Err(reason)),
        };
        let correlation = message.get(FIELD_CORRELATION_ID).cloned();
        let mut transformed = match logic.apply(message).await? {
            StepOutcome::Message(m) => m,
            StepOutcome::Rejected(why) => return Ok(Err(DropReason::RejectedByDeviceLogic(why))),
        };
        if transformed.get(FIELD_DEVICE_ID).and_then(Value::as_str) != Some(device_id.as_str()) {
            return Ok(Err(DropReason::RejectedByDeviceLogic(format!(
                "the logic changed or removed iotDeviceId `{device_id}`"
            ))));
        }
        // The correlation id is the platform's, not the logic's to drop.
        if let Some(c) = correlation {
            transformed.entry(FIELD_CORRELATION_ID).or_insert(c);
        }
        Ok(self.process(Value::Object(transformed)))
    }

    /// Checks a message (no device logic) and turns it into the record for the persister, or
    /// says why it does not fit.
    pub fn process(&self, event: Value) -> Result<Map<String, Value>, DropReason> {
        let Value::Object(mut message) = event else {
            return Err(DropReason::NotAnObject);
        };
        let device_id = self.served_device(&message)?;
        let properties = match self.catalogue.device(&device_id) {
            Some(device) => &device.properties,
            None => return Err(DropReason::UnknownDevice(device_id)),
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
            match self.process_with_logic(event).await? {
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

    /// Sends tenths of a degree as `deciC`; refuses readings below absolute zero.
    struct Tenths;
    impl crate::device_logic::DeviceLogic for Tenths {
        fn transform(&self, mut m: Map<String, Value>) -> Result<Map<String, Value>, String> {
            let deci = m
                .remove("deciC")
                .and_then(|v| v.as_f64())
                .ok_or("no deciC")?;
            if deci < -2731.5 {
                return Err(format!("{deci} is below absolute zero"));
            }
            m.insert("temperature".into(), json!(deci / 10.0));
            Ok(m)
        }
    }

    struct Renamer;
    impl crate::device_logic::DeviceLogic for Renamer {
        fn transform(&self, mut m: Map<String, Value>) -> Result<Map<String, Value>, String> {
            m.insert("iotDeviceId".into(), json!("s-3"));
            Ok(m)
        }
    }

    fn own(
        logic: impl crate::device_logic::DeviceLogic + 'static,
    ) -> Processor<RecordingInvoker, FixedClock> {
        processor_for(None)
            .with_logic(Arc::new(crate::device_logic::InProcess(logic)))
            .serving(BTreeSet::from(["s-1".to_string()]))
    }

    #[tokio::test]
    async fn a_device_s_logic_runs_before_the_checks_and_its_result_is_checked() {
        let p = own(Tenths);
        let out = p
            .handle(
                json!({"iotDeviceId":"s-1","deciC":215,"correlationId":"c"}),
                "r",
            )
            .await
            .unwrap();
        let expected = json!({"iotDeviceId":"s-1","time":"2025-11-04T00:00:00.000Z","correlationId":"c","temperature":21.5});
        assert_eq!(
            out,
            ProcessOutcome::Persisting(expected.as_object().cloned().unwrap())
        );
        // Refused by the logic: dropped with its reason, nothing persisted.
        let out = p
            .handle(json!({"iotDeviceId":"s-1","deciC":-3000}), "r")
            .await
            .unwrap();
        assert!(
            matches!(&out, ProcessOutcome::Dropped(DropReason::RejectedByDeviceLogic(why)) if why.contains("absolute zero")),
            "{out:?}"
        );
        assert_eq!(p.invoker.calls().len(), 1);
        // The logic's output still meets the device's types: an unconfigured key is dropped.
        let out = p
            .handle(json!({"iotDeviceId":"s-1","deciC":1,"extra":1}), "r")
            .await
            .unwrap();
        assert!(
            matches!(&out, ProcessOutcome::Dropped(DropReason::UnknownProperties(k)) if k == &vec!["extra".to_string()]),
            "{out:?}"
        );
    }

    #[tokio::test]
    async fn a_device_s_logic_serves_its_devices_only_and_cannot_change_the_device() {
        let p = own(Tenths);
        let got = p
            .process_with_logic(json!({"iotDeviceId":"s-3","deciC":1}))
            .await
            .unwrap();
        assert_eq!(got.map_err(|r| r.code()), Err("unknown_device"));
        let p = own(Renamer);
        let got = p
            .process_with_logic(json!({"iotDeviceId":"s-1","temperature":1}))
            .await
            .unwrap();
        assert!(
            matches!(&got, Err(DropReason::RejectedByDeviceLogic(why)) if why.contains("iotDeviceId")),
            "{got:?}"
        );
    }
}
