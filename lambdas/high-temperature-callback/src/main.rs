//! The example event rule function of `config_events.json`'s `high-temperature-callback`: what
//! a rule's own crate looks like. It logs one line per firing (the device, the reading's time and
//! the values the rule saw); the rule's `feedback` to the device is sent by the evaluator after
//! the function was started, so the crate holds only what is particular to the alarm.

use async_trait::async_trait;
use serde_json::Value;
use twin_functions::event_function::EventFunction;

/// Logs each firing; refuses an event that names no device (a rule event always does).
struct HighTemperatureCallback;

#[async_trait]
impl EventFunction for HighTemperatureCallback {
    async fn handle(&self, event: Value) -> Result<(), String> {
        let device = event
            .get("iotDeviceId")
            .and_then(Value::as_str)
            .ok_or("the event names no iotDeviceId")?;
        let rule = event.get("rule").and_then(Value::as_str).unwrap_or("?");
        let time = event.get("time").and_then(Value::as_str).unwrap_or("?");
        let values = event.get("values").cloned().unwrap_or(Value::Null);
        // stdout is the function's log on both clouds (CloudWatch Logs, the handler's log).
        println!("high temperature: rule {rule} fired for {device} at {time}, values {values}");
        Ok(())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    twin_functions_aws::run_event_function(HighTemperatureCallback).await
}
