//! Lambda adapter of the hot-to-cold mover (logic: `twin_functions::hot_to_cold`). The
//! schedule's event carries no cut-off, so it comes from the clock; `{"cutoff": ...}` (sent by
//! `deployer verify --movers`) overrides it, never later than now.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};
use twin_functions::hot_to_cold::HotToColdMover;
use twin_functions::mover_event::requested_cutoff;
use twin_functions::settings::HotToColdSettings;
use twin_functions::SystemClock;
use twin_functions_aws::{
    aws_sdk_config, dynamodb_client, s3_client, start, DynamoHotStore, S3ObjectStore,
};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let settings = start(HotToColdSettings::from_lookup)?;
    let config = aws_sdk_config()?;
    let hot = DynamoHotStore::new(dynamodb_client(&config), settings.hot_table.clone());
    let mover = HotToColdMover::new(
        &settings,
        hot,
        S3ObjectStore::new(s3_client(&config)),
        SystemClock,
    );
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
