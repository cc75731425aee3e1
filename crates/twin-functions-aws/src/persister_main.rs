//! The persister on AWS: store the record in the hot table, then (when the twin has event rules)
//! evaluate the rules that read its device and run the actions of those that fire.

use crate::{
    aws_sdk_config, dynamodb_client, iot_data_client, lambda_client, sns_client, start,
    AwsActionSink, DynamoHotStore,
};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};
use twin_functions::event_evaluator::EventEvaluator;
use twin_functions::persister::{PersistOutcome, Persister};
use twin_functions::settings::PersisterSettings;
use twin_functions::CloudError;

/// The evaluator the AWS persister runs: state in the hot table, actions through AWS.
pub type AwsEventEvaluator = EventEvaluator<DynamoHotStore, AwsActionSink>;

/// The persister's work for one event.
pub struct PersisterFunction {
    persister: Persister<DynamoHotStore>,
    store: DynamoHotStore,
    events: Option<AwsEventEvaluator>,
}

impl PersisterFunction {
    /// A persister writing to `store`, evaluating `events` after each stored record.
    pub fn new(store: DynamoHotStore, events: Option<AwsEventEvaluator>) -> Self {
        Self {
            persister: Persister::new(store.clone()),
            store,
            events,
        }
    }

    /// The persister `settings` describe: no evaluator when the twin has no rules.
    pub fn from_settings(settings: &PersisterSettings, config: &aws_types::SdkConfig) -> Self {
        let store = DynamoHotStore::new(dynamodb_client(config), settings.hot_table.clone());
        let events = (!settings.event_rules.is_empty()).then(|| {
            let mut sink = AwsActionSink::new(
                settings.common.twin_name.clone(),
                &settings.event_rules,
                lambda_client(config),
            );
            if let Some(endpoint) = &settings.iot_data_endpoint {
                sink = sink.with_feedback(iot_data_client(config, endpoint));
            }
            if let Some(topic) = &settings.events_topic_arn {
                sink = sink.with_notifications(sns_client(config), topic.clone());
            }
            EventEvaluator::new(settings.event_rules.clone(), store.clone(), sink)
        });
        Self::new(store, events)
    }

    /// Stores the record, then evaluates the rules. A failed rule fails the invocation after
    /// the others ran, so Lambda's retry stores the record again (idempotent) and fires what
    /// did not fire (the evaluator put its state back).
    pub async fn handle(&self, event: Value, request_id: &str) -> Result<Value, CloudError> {
        match self.persister.handle(event, request_id).await? {
            PersistOutcome::Stored(item) => {
                let fired = match &self.events {
                    Some(events) => events.handle(&item, &self.store).await?,
                    None => Vec::new(),
                };
                let fired: Vec<&str> = fired.iter().map(|f| f.rule.as_str()).collect();
                Ok(json!({
                    "outcome": "stored",
                    "iotDeviceId": item.device_id,
                    "id": item.id.canonical(),
                    "fired": fired,
                }))
            }
            PersistOutcome::Dropped(reason) => {
                Ok(json!({"outcome": "dropped", "reason": reason.code()}))
            }
        }
    }
}

/// Runs the persister as a Lambda function.
pub async fn run_persister() -> Result<(), Error> {
    let settings = start(PersisterSettings::from_lookup)?;
    let function = PersisterFunction::from_settings(&settings, &aws_sdk_config()?);
    let function = &function;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        Ok::<Value, Error>(
            function
                .handle(event.payload, &event.context.request_id)
                .await?,
        )
    }))
    .await
}
