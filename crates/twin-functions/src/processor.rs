//! The default per-device processor (L2): checks and coerces each property to its dataType, fills
//! a missing time, and hands the record to the persister.
//!
//! A message fits when: it is this processor's device; `time`, if present, is a timestamp; every
//! other key is a configured property or a reserved field; every present property's value fits
//! its dataType; and at least one configured property is present (devices may send partial
//! messages). Anything else is dropped with the reason.
//!
//! The persister is invoked asynchronously: the platform retries a failed persister invocation
//! and the persister is idempotent, so the processor need not wait for the write.

use crate::clock::Clock;
use crate::data_type::PropertySpec;
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
    device_id: String,
    properties: Vec<PropertySpec>,
    persister_function: String,
    invoker: I,
    clock: C,
    drops: DropCounter,
}

impl<I: FunctionInvoker, C: Clock> Processor<I, C> {
    /// A processor for one device.
    pub fn new(settings: &ProcessorSettings, invoker: I, clock: C) -> Self {
        Self {
            device_id: settings.device_id.clone(),
            properties: settings.properties.clone(),
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
        match message.get(FIELD_DEVICE_ID) {
            Some(Value::String(d)) if *d == self.device_id => {}
            Some(Value::String(d)) if !d.is_empty() => {
                return Err(DropReason::UnknownDevice(d.clone()))
            }
            _ => return Err(DropReason::MissingDeviceId),
        }
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
                !RESERVED_FIELDS.contains(&k.as_str())
                    && !self.properties.iter().any(|p| p.name == **k)
            })
            .cloned()
            .collect();
        if !unknown.is_empty() {
            return Err(DropReason::UnknownProperties(unknown));
        }

        let mut record = Map::with_capacity(self.properties.len() + 3);
        record.insert(
            FIELD_DEVICE_ID.into(),
            Value::String(self.device_id.clone()),
        );
        record.insert(FIELD_TIME.into(), Value::String(time.canonical()));
        if let Some(c) = message.get(FIELD_CORRELATION_ID).filter(|c| c.is_string()) {
            record.insert(FIELD_CORRELATION_ID.into(), c.clone());
        }
        let mut present = 0;
        for spec in &self.properties {
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
        let span = tracing::info_span!("process", device_id = %self.device_id, correlation_id = %correlation);
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
                    self.invoker.invoke_async(&self.persister_function, payload).await?;
                    tracing::debug!(persister = %self.persister_function, "record handed to the persister");
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
    use crate::data_type::DataType;
    use crate::settings::{CommonSettings, LogLevel};
    use crate::testing::RecordingInvoker;
    use serde_json::json;

    fn processor() -> Processor<RecordingInvoker, FixedClock> {
        let settings = ProcessorSettings {
            common: CommonSettings {
                twin_name: "twin".into(),
                log_level: LogLevel::Info,
            },
            device_id: "s-1".into(),
            properties: vec![
                PropertySpec {
                    name: "temperature".into(),
                    data_type: DataType::Double,
                },
                PropertySpec {
                    name: "count".into(),
                    data_type: DataType::Integer,
                },
                PropertySpec {
                    name: "on".into(),
                    data_type: DataType::Boolean,
                },
            ],
            persister_function: "twin-persister".into(),
        };
        let clock = FixedClock::new(Timestamp::parse("2025-11-04T00:00:00Z").unwrap());
        Processor::new(&settings, RecordingInvoker::default(), clock)
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
