//! What verify needs to see of a deployed data plane, whichever cloud runs each layer.

use async_trait::async_trait;
use serde_json::Value;
use std::time::SystemTime;

/// A pipeline stage whose functions log one line per record (`record processed`, `record stored`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// L2: the processor handed the record to the persister.
    Processed,
    /// L3 hot: the persister stored it.
    Stored,
}

/// One of the two movers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mover {
    /// L3 hot → cold.
    HotToCold,
    /// L3 cold → archive.
    ColdToArchive,
}

/// The object tiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// L3 cold.
    Cold,
    /// L3 archive.
    Archive,
}

/// A record as read back from a store or an API: its time (the sort key) and verify's mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenRecord {
    /// The record's time as stored (canonical form).
    pub id: String,
    /// The verify run that sent it, if any.
    pub verify_run: Option<String>,
}

/// A stored object of a tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierObject {
    /// Its key.
    pub key: String,
    /// The cloud's storage class as it names it (`STANDARD_IA`, `DEEP_ARCHIVE`, `Cool`, ...).
    pub storage_class: String,
    /// Whether that class is the one the tier is configured for.
    pub class_expected: bool,
    /// Its size in bytes.
    pub size: u64,
    /// Its records, when the tier lets them be read without a restore.
    pub records: Option<Vec<SeenRecord>>,
}

/// A log line of a stage that names a verify reading.
#[derive(Debug, Clone, PartialEq)]
pub struct StageMark {
    /// The reading number from its correlation id.
    pub reading: u64,
    /// When the function logged it.
    pub at: SystemTime,
    /// The log event's id, so overlapping polls count it once.
    pub event_id: String,
}

/// Failure of one probe call, with what to do about it.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {message}")]
pub struct ProbeError {
    /// What was being read.
    pub what: String,
    /// The cloud's answer or the local failure.
    pub message: String,
    /// Whether waiting and asking again may help.
    pub transient: bool,
}

/// A deployed twin's data plane, read from outside as a user could.
#[async_trait]
pub trait DataPlaneProbe: Send + Sync {
    /// The log lines of `stage` naming a reading of `run`, logged at or after `since`.
    async fn stage_marks(
        &self,
        stage: Stage,
        run: &str,
        since: SystemTime,
    ) -> Result<Vec<StageMark>, ProbeError>;

    /// The hot store's records of `device` between two times (inclusive).
    async fn hot_records(
        &self,
        device: &str,
        from: &str,
        to: &str,
    ) -> Result<Vec<SeenRecord>, ProbeError>;

    /// The records the hot-reader API returns for `device` between two times, every page.
    async fn api_records(
        &self,
        device: &str,
        from: &str,
        to: &str,
    ) -> Result<Vec<SeenRecord>, ProbeError>;

    /// The times of the values the twin (L4) gives for `device`'s first property between two
    /// times, as a user of the twin service would read them; `None` when the device has no
    /// component in the twin (or L4 is not deployed).
    async fn twin_values(
        &self,
        device: &str,
        from: &str,
        to: &str,
    ) -> Result<Option<Vec<String>>, ProbeError>;

    /// Runs a mover to completion with the given cut-off; its report.
    async fn run_mover(&self, mover: Mover, cutoff: &str) -> Result<Value, ProbeError>;

    /// The objects of `tier` holding records of `device`.
    async fn tier_objects(&self, tier: Tier, device: &str) -> Result<Vec<TierObject>, ProbeError>;

    /// Deletes these hot records of `device`; how many were deleted.
    async fn delete_hot(&self, device: &str, ids: &[String]) -> Result<u64, ProbeError>;

    /// Deletes one object of a tier.
    async fn delete_object(&self, tier: Tier, key: &str) -> Result<(), ProbeError>;
}
