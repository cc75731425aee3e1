//! Why a mover stopped. A mover that stops has deleted only what it confirmed written, so the next
//! run picks up where this one ended.

use crate::error::CloudError;
use crate::timestamp::Timestamp;

/// A mover run that could not finish.
#[derive(Debug, thiserror::Error)]
pub enum MoverError {
    /// The invocation's event asks for something the mover does not understand.
    #[error("the mover's event is not valid: {0}")]
    BadEvent(String),
    /// A cut-off given in the invocation lies in the future: a window ending later than now could
    /// miss records that arrive after the run with older times.
    #[error("the cut-off {cutoff} given to the mover is later than now ({now}); give a time at or before now")]
    CutoffInFuture {
        /// The cut-off asked for.
        cutoff: String,
        /// The mover's clock.
        now: String,
    },
    /// A storage call failed.
    #[error(transparent)]
    Cloud(#[from] CloudError),
    /// An object was written but reading its metadata back did not show what was written, so the
    /// source was kept.
    #[error("{bucket}/{key} was written but not confirmed: {detail}; the source was kept and the next run retries")]
    NotConfirmed {
        /// The bucket.
        bucket: String,
        /// The object's key.
        key: String,
        /// What differed.
        detail: String,
    },
    /// An object written by an earlier run cannot be read as a chunk, so it is unknown which
    /// records it holds and none is deleted on its account.
    #[error("{bucket}/{key} is not a readable chunk ({detail}); inspect or remove it, then run the mover again")]
    UnreadableChunk {
        /// The bucket.
        bucket: String,
        /// The object's key.
        key: String,
        /// Why it could not be read.
        detail: String,
    },
    /// The run's lease ran out before the run ended, so another run may have taken over: this
    /// one stopped before its next write. Raise `MOVER_LEASE_SECONDS` above the function's timeout.
    #[error("the lease {name} expired at {until} before the run ended; stopped before the next write so that a run that took over is not disturbed (set MOVER_LEASE_SECONDS above the function's timeout)")]
    LeaseExpired {
        /// The lease's name.
        name: String,
        /// When it expired.
        until: Timestamp,
    },
}

impl MoverError {
    /// Fails with [`MoverError::LeaseExpired`] once `now` reaches the lease's end.
    pub fn check_lease(lease: &crate::lease::HeldLease, now: Timestamp) -> Result<(), Self> {
        if now >= lease.until {
            return Err(MoverError::LeaseExpired {
                name: lease.name.clone(),
                until: lease.until,
            });
        }
        Ok(())
    }
}
