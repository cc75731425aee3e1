//! Lambda adapter of the TwinMaker data connector (logic: `twin_functions::twin_connector`).

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use twin_functions::settings::TwinConnectorSettings;
use twin_functions::twin_connector::TwinConnector;
use twin_functions_aws::{aws_sdk_config, dynamodb_client, start, DynamoHotStore};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let settings = start(TwinConnectorSettings::from_lookup)?;
    let store = DynamoHotStore::new(dynamodb_client(&aws_sdk_config()?), settings.hot_table);
    let connector = TwinConnector::new(store);
    let connector = &connector;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        Ok::<Value, Error>(connector.handle(event.payload).await?)
    }))
    .await
}
