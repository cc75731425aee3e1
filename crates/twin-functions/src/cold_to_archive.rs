//! The cold-to-archive mover (daily): cold objects whose records are all older than
//! `cold_storage_size_in_days` are copied to the archive tier, verified, then deleted from cold.
//!
//! An object's age is read from its key: every record in a window is older than the window's end
//! (the cut-off of the run that wrote it). The archive key equals the cold key, so a re-run after a
//! crash between copy and delete copies onto the same key again and then deletes: no duplicate.

use crate::clock::Clock;
use crate::cold_key::ColdObjectKey;
use crate::lease::{
    run_under_lease, BucketLease, HeldLease, LeaseHeld, COLD_TO_ARCHIVE_LEASE, LEASE_PARTITION,
};
use crate::mover_error::MoverError;
use crate::object_store::{ObjectInfo, ObjectStore, StorageTier};
use crate::settings::ColdToArchiveSettings;
use crate::timestamp::Timestamp;
use tracing::Instrument;

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColdToArchiveReport {
    /// Objects whose window ends at or before this were archived.
    pub cutoff: Option<Timestamp>,
    /// Objects copied, verified and deleted from cold.
    pub objects_archived: u64,
    /// Bytes archived.
    pub bytes_archived: u64,
    /// Objects still too young.
    pub objects_kept: u64,
    /// Objects whose key this pipeline did not write (left alone).
    pub objects_foreign: u64,
    /// Set when another run held the mover's lease: this run did nothing.
    pub lease_held: Option<LeaseHeld>,
}

/// The cold-to-archive mover's logic.
pub struct ColdToArchiveMover<O, C> {
    objects: O,
    cold_bucket: String,
    archive_bucket: String,
    cold_storage_days: u32,
    clock: C,
    lease_seconds: u32,
}

impl<O: ObjectStore, C: Clock> ColdToArchiveMover<O, C> {
    /// A mover between the configured buckets of `objects`.
    pub fn new(settings: &ColdToArchiveSettings, objects: O, clock: C) -> Self {
        Self {
            objects,
            cold_bucket: settings.cold_bucket.clone(),
            archive_bucket: settings.archive_bucket.clone(),
            cold_storage_days: settings.cold_storage_days,
            clock,
            lease_seconds: settings.lease_seconds,
        }
    }

    /// One run over every cold object, under the `cold-to-archive-mover` lease kept in the cold
    /// bucket (`#lease/cold-to-archive-mover`). When another run holds it, nothing is done and the
    /// report says so in `lease_held`.
    pub async fn run(&self) -> Result<ColdToArchiveReport, MoverError> {
        self.run_until(None).await
    }

    /// A run with the cut-off given instead of `now - days` (`deployer verify --movers` makes its
    /// readings due this way); a cut-off later than now is refused.
    pub async fn run_until(
        &self,
        cutoff: Option<Timestamp>,
    ) -> Result<ColdToArchiveReport, MoverError> {
        let now = self.clock.now();
        if let Some(c) = cutoff.filter(|c| *c > now) {
            return Err(MoverError::CutoffInFuture {
                cutoff: c.canonical(),
                now: now.canonical(),
            });
        }
        let cutoff = cutoff.unwrap_or_else(|| now.minus_days(self.cold_storage_days));
        self.run_leased_until(cutoff).await
    }

    async fn run_leased_until(&self, cutoff: Timestamp) -> Result<ColdToArchiveReport, MoverError> {
        let leases = BucketLease::new(&self.objects, &self.cold_bucket);
        let outcome = run_under_lease(
            &leases,
            &self.clock,
            COLD_TO_ARCHIVE_LEASE,
            self.lease_seconds,
            |lease| self.run_leased(lease, cutoff),
        )
        .await?;
        Ok(outcome.unwrap_or_else(|held| ColdToArchiveReport {
            lease_held: Some(held),
            ..Default::default()
        }))
    }

    async fn run_leased(
        &self,
        lease: HeldLease,
        cutoff: Timestamp,
    ) -> Result<ColdToArchiveReport, MoverError> {
        let lease_prefix = format!("{LEASE_PARTITION}/");
        let mut report = ColdToArchiveReport {
            cutoff: Some(cutoff),
            ..Default::default()
        };
        tracing::info!(cutoff = %cutoff, "moving cold objects to the archive");
        let mut continuation = None;
        loop {
            let listing = self
                .objects
                .list_objects(&self.cold_bucket, "", continuation)
                .await?;
            for object in listing.objects {
                if object.key.starts_with(&lease_prefix) {
                    continue;
                }
                match ColdObjectKey::parse(&object.key) {
                    None => {
                        report.objects_foreign += 1;
                        tracing::warn!(key = %object.key, "leaving an object this pipeline did not write");
                    }
                    Some(key) if key.window.end <= cutoff => {
                        MoverError::check_lease(&lease, self.clock.now())?;
                        let span =
                            tracing::info_span!("archive", device_id = %key.window.device_id);
                        self.archive(&object).instrument(span).await?;
                        report.objects_archived += 1;
                        report.bytes_archived += object.size;
                    }
                    Some(_) => report.objects_kept += 1,
                }
            }
            match listing.next {
                Some(next) => continuation = Some(next),
                None => break,
            }
        }
        tracing::info!(
            archived = report.objects_archived,
            kept = report.objects_kept,
            "cold-to-archive run finished"
        );
        Ok(report)
    }

    /// Copy, verify, delete one object.
    async fn archive(&self, object: &ObjectInfo) -> Result<(), MoverError> {
        let key = &object.key;
        self.objects
            .copy_object(
                &self.cold_bucket,
                key,
                &self.archive_bucket,
                StorageTier::Archive,
            )
            .await?;
        let not_confirmed = |detail: String| MoverError::NotConfirmed {
            bucket: self.archive_bucket.clone(),
            key: key.clone(),
            detail,
        };
        match self.objects.head_object(&self.archive_bucket, key).await? {
            None => return Err(not_confirmed("the copy is not there".into())),
            Some(copy) if copy.tier != StorageTier::Archive => {
                return Err(not_confirmed(format!(
                    "the copy is in {:?}, not the archive tier",
                    copy.tier
                )))
            }
            Some(copy) if copy.size != object.size => {
                return Err(not_confirmed(format!(
                    "the copy has {} bytes, the original {}",
                    copy.size, object.size
                )))
            }
            Some(copy)
                if copy.etag.is_some() && object.etag.is_some() && copy.etag != object.etag =>
            {
                return Err(not_confirmed(format!(
                    "the copy's ETag {:?} differs from {:?}",
                    copy.etag, object.etag
                )))
            }
            Some(_) => {}
        }
        self.objects.delete_object(&self.cold_bucket, key).await?;
        tracing::debug!(key = %key, bytes = object.size, "archived");
        Ok(())
    }
}
