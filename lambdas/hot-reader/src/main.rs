//! Lambda adapter of the hot reader (logic: `twin_functions::hot_reader`).

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use twin_functions::hot_reader::HotReader;
use twin_functions::settings::HotReaderSettings;
use twin_functions_aws::{aws_sdk_config, dynamodb_client, start, DynamoHotStore};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let settings = start(HotReaderSettings::from_lookup)?;
    let store = DynamoHotStore::new(
        dynamodb_client(&aws_sdk_config()?),
        settings.hot_table.clone(),
    );
    let reader = HotReader::new(store, settings.max_response_bytes);
    let reader = &reader;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        Ok::<Value, Error>(reader.handle(event.payload).await?)
    }))
    .await
}
