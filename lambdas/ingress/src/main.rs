//! Lambda adapter of a storage boundary's ingress (logic: `twin_functions::boundary`): a
//! function URL with auth NONE, because the boundary's HMAC is checked here before anything.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};
use twin_functions::boundary::{
    function_url_request, function_url_response, ObjectIngress, ObjectIngressSettings,
    ReceiverPolicy, DEFAULT_WINDOW_SECS,
};
use twin_functions_aws::boundary_secret::accepted_secrets;
use twin_functions_aws::{
    aws_sdk_config, dynamodb_client, s3_client, secrets_client, start, DynamoNonceLedger,
    S3ObjectStore,
};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let settings = start(ObjectIngressSettings::from_lookup)?;
    let config = aws_sdk_config()?;
    // Read once per instance; a rotation stages the next secret before any sender uses it,
    // and instances started before the promote still accept the new one (it was AWSPENDING).
    let secrets = accepted_secrets(&secrets_client(&config), &settings.secret_name).await?;
    let policy = ReceiverPolicy {
        hop: settings.hop.clone(),
        secrets,
        window_secs: DEFAULT_WINDOW_SECS,
    };
    let ledger = DynamoNonceLedger::new(dynamodb_client(&config), &settings.nonce_table);
    let store = S3ObjectStore::new(s3_client(&config));
    let ingress = ObjectIngress {
        policy: &policy,
        ledger: &ledger,
        store: &store,
        bucket: &settings.target_bucket,
    };
    let ingress = &ingress;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let Ok((headers, body)) = function_url_request(&event.payload) else {
            return Ok::<Value, Error>(
                json!({"statusCode": 400, "body": "{\"error\":\"bad_request\"}"}),
            );
        };
        let reply = ingress
            .handle(&headers, &body, chrono::Utc::now().timestamp())
            .await;
        Ok(function_url_response(&reply))
    }))
    .await
}
