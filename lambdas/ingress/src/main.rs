//! Lambda adapter of a storage boundary's ingress (logic: `twin_functions::boundary`): a
//! function URL with auth NONE, because the boundary's HMAC is checked here before anything.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use twin_functions::boundary::{
    function_url_request, function_url_response, ObjectIngress, ObjectIngressSettings,
    ReceiverPolicy, DEFAULT_WINDOW_SECS,
};
use twin_functions_aws::boundary_secret::accepted_secrets;
use twin_functions_aws::{
    aws_sdk_config, dynamodb_client, s3_client, secrets_client, start, DynamoNonceLedger,
    S3ObjectStore,
};

/// How often a bad signature may make this instance read its secrets again: a rotation's
/// staged secret is picked up within a request, and nobody can make it call Secrets Manager
/// more often than this by sending garbage.
const REREAD_AT_MOST_EVERY: Duration = Duration::from_secs(60);

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let settings = start(ObjectIngressSettings::from_lookup)?;
    let config = aws_sdk_config()?;
    let secrets_client = secrets_client(&config);
    let policy = Mutex::new((
        ReceiverPolicy {
            hop: settings.hop.clone(),
            secrets: accepted_secrets(&secrets_client, &settings.secret_name).await?,
            window_secs: DEFAULT_WINDOW_SECS,
        },
        Instant::now(),
    ));
    let ledger = DynamoNonceLedger::new(dynamodb_client(&config), &settings.nonce_table);
    let store = S3ObjectStore::new(s3_client(&config));
    let (policy, ledger, store, settings) = (&policy, &ledger, &store, &settings);
    let secrets_client = &secrets_client;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let Ok((headers, body)) = function_url_request(&event.payload) else {
            return Ok::<Value, Error>(
                json!({"statusCode": 400, "body": "{\"error\":\"bad_request\"}"}),
            );
        };
        let handle = |p: ReceiverPolicy| {
            let (headers, body) = (&headers, &body);
            async move {
                let ingress = ObjectIngress {
                    policy: &p,
                    ledger,
                    store,
                    bucket: &settings.target_bucket,
                };
                ingress
                    .handle(headers, body, chrono::Utc::now().timestamp())
                    .await
            }
        };
        let current = policy.lock().map_err(|_| "policy lock poisoned")?.0.clone();
        let mut reply = handle(current).await;
        let due = policy
            .lock()
            .map_err(|_| "policy lock poisoned")?
            .1
            .elapsed()
            > REREAD_AT_MOST_EVERY;
        if reply.is_bad_signature() && due {
            let secrets = accepted_secrets(secrets_client, &settings.secret_name).await?;
            let fresh = {
                let mut guard = policy.lock().map_err(|_| "policy lock poisoned")?;
                guard.0.secrets = secrets;
                guard.1 = Instant::now();
                guard.0.clone()
            };
            reply = handle(fresh).await;
        }
        Ok(function_url_response(&reply))
    }))
    .await
}
