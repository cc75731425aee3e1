//! Lambda adapter of the hot-to-cold mover (logic: `twin_functions::hot_to_cold`). The
//! schedule's event carries no cut-off, so it comes from the clock; `{"cutoff": ...}` (sent by
//! `deployer verify --movers`) overrides it, never later than now.
//!
//! When L3 cold is on another cloud, `BOUNDARY_INGRESS_URL` and `BOUNDARY_SECRET_NAME` are set:
//! the same mover then writes through `RemoteObjectStore` to that cloud's cold ingress, signing
//! with the boundary secret from Secrets Manager. What it cannot deliver stays in hot.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};
use twin_functions::boundary::{
    BoundarySender, ObjectSenderSettings, RemoteObjectStore, RetryPolicy,
};
use twin_functions::hot_to_cold::HotToColdMover;
use twin_functions::mover_event::requested_cutoff;
use twin_functions::object_store::ObjectStore;
use twin_functions::settings::HotToColdSettings;
use twin_functions::SystemClock;
use twin_functions_aws::boundary_sender::{
    HttpsTransport, LeftAtSource, SecretsManagerRefresh, TokioPause,
};
use twin_functions_aws::{
    aws_sdk_config, dynamodb_client, s3_client, secrets_client, start, DynamoHotStore,
    S3ObjectStore,
};

/// The hop the mover sends across, as the receiver checks it.
const HOP: &str = "hot-to-cold";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let settings = start(HotToColdSettings::from_lookup)?;
    let remote = ObjectSenderSettings::from_lookup(&|k| std::env::var(k).ok())?;
    let config = aws_sdk_config()?;
    let hot = DynamoHotStore::new(dynamodb_client(&config), settings.hot_table.clone());
    let Some(remote) = remote else {
        let cold = S3ObjectStore::new(s3_client(&config));
        return serve(HotToColdMover::new(&settings, hot, cold, SystemClock)).await;
    };
    let transport = HttpsTransport::new(remote.ingress_url.clone())?;
    let refresh = SecretsManagerRefresh::new(secrets_client(&config), remote.secret_name.clone());
    let secret = refresh.current().await?;
    let kept = LeftAtSource { source: "hot" };
    let cold = RemoteObjectStore {
        sender: BoundarySender {
            hop: HOP.into(),
            secret,
            transport: &transport,
            retry: RetryPolicy::default(),
            pause: &TokioPause,
            clock: &SystemClock,
            dead_letters: &kept,
            refresh: Some(&refresh),
        },
        bucket: settings.cold_bucket.clone(),
    };
    serve(HotToColdMover::new(&settings, hot, cold, SystemClock)).await
}

async fn serve<O: ObjectStore>(
    mover: HotToColdMover<DynamoHotStore, O, SystemClock>,
) -> Result<(), Error> {
    let mover = &mover;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let cutoff = requested_cutoff(&event.payload)?;
        let r = mover.run_until(cutoff).await?;
        Ok::<Value, Error>(json!({
            "cutoff": r.cutoff.map(|c| c.canonical()),
            "devices": r.devices,
            "recordsMoved": r.records_moved,
            "recordsAlreadyInCold": r.records_already_in_cold,
            "objectsWritten": r.objects_written,
            "bytesWritten": r.bytes_written,
            "leaseHeld": r.lease_held.map(|h| json!({
                "holder": h.holder,
                "until": h.until.canonical(),
                "message": h.to_string(),
            })),
        }))
    }))
    .await
}
