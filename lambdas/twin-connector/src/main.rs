//! Lambda adapter of the TwinMaker data connector (logic: `twin_functions::twin_connector`).

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use twin_functions::settings::TwinConnectorSettings;
use twin_functions::twin_connector::TwinConnector;
use twin_functions_aws::{
    aws_sdk_config, dynamodb_client, start, twinmaker_client, DynamoHotStore, TwinMakerDirectory,
};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let settings = start(TwinConnectorSettings::from_lookup)?;
    let sdk = aws_sdk_config()?;
    let store = DynamoHotStore::new(dynamodb_client(&sdk), settings.hot_table);
    // By-component-type requests name no entity: TwinMaker says which entities carry the type.
    let connector =
        TwinConnector::new(store).with_directory(TwinMakerDirectory::new(twinmaker_client(&sdk)));
    let connector = &connector;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        Ok::<Value, Error>(connector.handle(event.payload).await?)
    }))
    .await
}
