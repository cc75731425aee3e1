//! Lambda adapter of the cold-to-archive mover (logic: `twin_functions::cold_to_archive`). The
//! schedule's event carries no cut-off, so it comes from the clock; `{"cutoff": ...}` (sent by
//! `deployer verify --movers`) overrides it, never later than now.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};
use twin_functions::cold_to_archive::ColdToArchiveMover;
use twin_functions::mover_event::requested_cutoff;
use twin_functions::settings::ColdToArchiveSettings;
use twin_functions::SystemClock;
use twin_functions_aws::{aws_sdk_config, s3_client, start, S3ObjectStore};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let settings = start(ColdToArchiveSettings::from_lookup)?;
    let objects = S3ObjectStore::new(s3_client(&aws_sdk_config()?));
    let mover = ColdToArchiveMover::new(&settings, objects, SystemClock);
    let mover = &mover;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let cutoff = requested_cutoff(&event.payload)?;
        let r = mover.run_until(cutoff).await?;
        Ok::<Value, Error>(json!({
            "cutoff": r.cutoff.map(|c| c.canonical()),
            "objectsArchived": r.objects_archived,
            "bytesArchived": r.bytes_archived,
            "objectsKept": r.objects_kept,
            "objectsForeign": r.objects_foreign,
            "leaseHeld": r.lease_held.map(|h| json!({
                "holder": h.holder,
                "until": h.until.canonical(),
                "message": h.to_string(),
            })),
        }))
    }))
    .await
}
