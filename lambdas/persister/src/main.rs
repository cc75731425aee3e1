//! Lambda adapter of the persister (logic: `twin_functions::persister`).

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};
use twin_functions::persister::{PersistOutcome, Persister};
use twin_functions::settings::PersisterSettings;
use twin_functions_aws::{aws_sdk_config, dynamodb_client, start, DynamoHotStore};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let settings = start(PersisterSettings::from_lookup)?;
    let store = DynamoHotStore::new(dynamodb_client(&aws_sdk_config()?), settings.hot_table);
    let persister = Persister::new(store);
    let persister = &persister;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let outcome = match persister.handle(event.payload, &event.context.request_id).await? {
            PersistOutcome::Stored(item) => json!({"outcome": "stored", "iotDeviceId": item.device_id, "id": item.id.canonical()}),
            PersistOutcome::Dropped(reason) => json!({"outcome": "dropped", "reason": reason.code()}),
        };
        Ok::<Value, Error>(outcome)
    }))
    .await
}
