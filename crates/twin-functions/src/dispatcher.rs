//! The dispatcher (L1 → L2): checks each telemetry message and hands it to its device's processor.
//!
//! The IoT topic rule (`SELECT *, topic(3) AS topicDeviceId FROM '<twin>/iot-data/+'`) adds the
//! device segment of the topic as `topicDeviceId`. When it is present the payload's `iotDeviceId`
//! must match it. When it is absent the event did not come through the topic rule (a direct
//! invocation such as `deployer lambda_invoke dispatcher '{...}'`), so no topic check is possible
//! and only the configured-device check applies.
//!
//! Which devices are configured, and which processor serves each (its own function or the
//! shared one), comes from the device catalogue read at cold start (`catalogue.rs`).

use crate::catalogue::DeviceCatalogue;
use crate::drops::{DropCounter, DropReason};
use crate::error::CloudError;
use crate::invoker::FunctionInvoker;
use crate::record::{FIELD_CORRELATION_ID, FIELD_DEVICE_ID, FIELD_TOPIC_DEVICE_ID};
use crate::settings::DispatcherSettings;
use serde_json::{Map, Value};
use tracing::Instrument;

/// What the dispatcher did with one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DispatchOutcome {
    /// Handed to the processor function named.
    Forwarded {
        /// The device.
        device_id: String,
        /// The processor function invoked.
        processor: String,
    },
    /// Not forwarded, for this reason (already logged and counted).
    Dropped(DropReason),
}

/// The dispatcher function's logic.
pub struct Dispatcher<I> {
    catalogue: DeviceCatalogue,
    invoker: I,
    drops: DropCounter,
}

impl<I: FunctionInvoker> Dispatcher<I> {
    /// A dispatcher for the catalogue's devices, invoking processors through `invoker`.
    pub fn new(_settings: &DispatcherSettings, catalogue: DeviceCatalogue, invoker: I) -> Self {
        Self {
            catalogue,
            invoker,
            drops: DropCounter::default(),
        }
    }

    /// The processor function of a configured device: its own function
    /// (`<twin>--<device>-processor`) when it has one, else the shared `<twin>-processor`, as
    /// the catalogue says (the deployer writes both names from `twin_config::names`).
    pub fn processor_name(&self, device_id: &str) -> Option<&str> {
        self.catalogue.processor_of(device_id)
    }

    /// Checks one message: the device's id and the payload (topic field removed, correlation id
    /// added) to forward, or why it must be dropped.
    pub fn check(
        &self,
        event: Value,
        correlation_id: &str,
    ) -> Result<(String, Map<String, Value>), DropReason> {
        let Value::Object(mut message) = event else {
            return Err(DropReason::NotAnObject);
        };
        let device_id = match message.get(FIELD_DEVICE_ID) {
            Some(Value::String(d)) if !d.trim().is_empty() => d.clone(),
            _ => return Err(DropReason::MissingDeviceId),
        };
        if self.catalogue.device(&device_id).is_none() {
            return Err(DropReason::UnknownDevice(device_id));
        }
        match message.remove(FIELD_TOPIC_DEVICE_ID) {
            Some(Value::String(topic)) if topic == device_id => {}
            Some(other) => {
                let topic = other
                    .as_str()
                    .map_or_else(|| other.to_string(), str::to_string);
                return Err(DropReason::TopicMismatch {
                    payload: device_id,
                    topic,
                });
            }
            None => {
                tracing::debug!("no topicDeviceId: direct invocation, topic check not possible")
            }
        }
        message
            .entry(FIELD_CORRELATION_ID)
            .or_insert_with(|| Value::String(correlation_id.to_string()));
        Ok((device_id, message))
    }

    /// Handles one event. Drops are acknowledged (`Ok`) so the platform does not retry them;
    /// only a failed invocation is an error, which the platform's retry can fix.
    pub async fn handle(
        &self,
        event: Value,
        correlation_id: &str,
    ) -> Result<DispatchOutcome, CloudError> {
        let (device_id, message) = match self.check(event, correlation_id) {
            Ok(ok) => ok,
            Err(reason) => {
                let span = tracing::info_span!("dispatch", correlation_id);
                span.in_scope(|| self.drops.record("dispatcher", &reason));
                return Ok(DispatchOutcome::Dropped(reason));
            }
        };
        let correlation = message
            .get(FIELD_CORRELATION_ID)
            .and_then(Value::as_str)
            .unwrap_or(correlation_id)
            .to_string();
        let span =
            tracing::info_span!("dispatch", device_id = %device_id, correlation_id = %correlation);
        async {
            let Some(processor) = self.processor_name(&device_id).map(str::to_string) else {
                // `check` refused devices the catalogue does not list.
                let reason = DropReason::UnknownDevice(device_id);
                self.drops.record("dispatcher", &reason);
                return Ok(DispatchOutcome::Dropped(reason));
            };
            let payload = Value::Object(message).to_string().into_bytes();
            self.invoker.invoke_async(&processor, payload).await?;
            tracing::debug!(processor = %processor, "forwarded to processor");
            Ok(DispatchOutcome::Forwarded {
                device_id,
                processor,
            })
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
    use crate::settings::{CommonSettings, LogLevel};
    use crate::testing::RecordingInvoker;
    use serde_json::json;

    fn dispatcher() -> Dispatcher<RecordingInvoker> {
        let settings = DispatcherSettings {
            common: CommonSettings {
                twin_name: "twin".into(),
                log_level: LogLevel::Info,
            },
            catalogue: crate::catalogue::CatalogueLocation {
                bucket: "b".into(),
                key: "k".into(),
            },
            remote_processor: None,
        };
        let catalogue: DeviceCatalogue = serde_json::from_value(json!({
            "sharedProcessor": "twin-processor",
            "devices": {
                "s-1": {"properties": [{"name": "t", "dataType": "DOUBLE"}]},
                "own": {"properties": [{"name": "t", "dataType": "DOUBLE"}],
                        "processor": "twin--own-processor"},
            }
        }))
        .unwrap();
        Dispatcher::new(&settings, catalogue, RecordingInvoker::default())
    }

    #[tokio::test]
    async fn forwards_to_the_shared_processor_with_a_correlation_id() {
        let d = dispatcher();
        let out = d
            .handle(json!({"iotDeviceId":"s-1","time":"2025-11-04T13:23:11.203Z","t":1,"topicDeviceId":"s-1"}), "req-1")
            .await
            .unwrap();
        assert_eq!(
            out,
            DispatchOutcome::Forwarded {
                device_id: "s-1".into(),
                processor: "twin-processor".into()
            }
        );
        let calls = d.invoker.calls();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].0, "twin-processor");
        assert_eq!(
            calls[0].1,
            json!({"iotDeviceId":"s-1","time":"2025-11-04T13:23:11.203Z","t":1,"correlationId":"req-1"})
        );
    }

    #[tokio::test]
    async fn drops_unknown_mismatched_and_malformed_messages() {
        let d = dispatcher();
        let cases = [
            (json!("text"), "not_an_object"),
            (json!({"t": 1}), "missing_device_id"),
            (json!({"iotDeviceId": ""}), "missing_device_id"),
            (json!({"iotDeviceId": "s-9"}), "unknown_device"),
            (
                json!({"iotDeviceId": "s-1", "topicDeviceId": "s-2"}),
                "topic_mismatch",
            ),
        ];
        for (event, code) in cases {
            match d.handle(event.clone(), "r").await.unwrap() {
                DispatchOutcome::Dropped(reason) => assert_eq!(reason.code(), code, "{event}"),
                other => panic!("{event} was {other:?}"),
            }
        }
        assert_eq!(d.dropped(), 5);
        assert!(d.invoker.calls().is_empty());
    }

    #[tokio::test]
    async fn forwards_a_device_with_its_own_processor_there() {
        let d = dispatcher();
        let out = d
            .handle(
                json!({"iotDeviceId":"own","t":1,"topicDeviceId":"own"}),
                "r",
            )
            .await
            .unwrap();
        assert_eq!(
            out,
            DispatchOutcome::Forwarded {
                device_id: "own".into(),
                processor: "twin--own-processor".into()
            }
        );
        assert_eq!(d.processor_name("nope"), None);
    }

    #[tokio::test]
    async fn keeps_an_existing_correlation_id() {
        let d = dispatcher();
        d.handle(json!({"iotDeviceId":"s-1","correlationId":"c-0"}), "r")
            .await
            .unwrap();
        assert_eq!(d.invoker.calls()[0].1["correlationId"], "c-0");
    }
}
