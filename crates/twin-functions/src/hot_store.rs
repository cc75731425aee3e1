//! The hot tier: one table of records keyed by device and time.

use crate::error::CloudError;
use crate::record::HotItem;
use crate::timestamp::Timestamp;
use async_trait::async_trait;

/// Which sort keys (record times) a query covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeRange {
    /// Every record of the device.
    All,
    /// `from <= id <= to`.
    Between(Timestamp, Timestamp),
    /// `id >= from`.
    From(Timestamp),
    /// `id <= to`.
    Until(Timestamp),
    /// `id < cutoff` (the movers' "older than").
    Before(Timestamp),
}

impl TimeRange {
    /// Builds the range for optional inclusive bounds.
    pub fn inclusive(from: Option<Timestamp>, to: Option<Timestamp>) -> Self {
        match (from, to) {
            (Some(f), Some(t)) => TimeRange::Between(f, t),
            (Some(f), None) => TimeRange::From(f),
            (None, Some(t)) => TimeRange::Until(t),
            (None, None) => TimeRange::All,
        }
    }

    /// Whether `t` lies in the range.
    pub fn contains(&self, t: Timestamp) -> bool {
        match *self {
            TimeRange::All => true,
            TimeRange::Between(f, to) => f <= t && t <= to,
            TimeRange::From(f) => f <= t,
            TimeRange::Until(to) => t <= to,
            TimeRange::Before(c) => t < c,
        }
    }
}

/// The order a device query returns records in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Oldest first.
    Ascending,
    /// Newest first.
    Descending,
}

/// A query over one device's records.
#[derive(Debug, Clone)]
pub struct DeviceQuery {
    /// The device (partition key).
    pub device_id: String,
    /// Which times.
    pub range: TimeRange,
    /// Continue after this sort key (exclusive, in query order): a previous page's `next`.
    pub after: Option<String>,
    /// Sort order.
    pub order: Order,
    /// At most this many items in the page (the store may return fewer, e.g. at 1 MB).
    pub limit: Option<u32>,
}

/// One page of query results.
#[derive(Debug, Clone, Default)]
pub struct HotPage {
    /// The records, in query order.
    pub items: Vec<HotItem>,
    /// Where the next page starts; `None` when the range is exhausted.
    pub next: Option<String>,
}

/// Position in a table-wide scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanCursor {
    /// Partition key of the last evaluated item.
    pub device_id: String,
    /// Sort key of the last evaluated item.
    pub id: String,
}

/// One page of a table-wide scan for devices.
#[derive(Debug, Clone, Default)]
pub struct DevicePage {
    /// Devices seen on this page (may repeat across pages).
    pub device_ids: Vec<String>,
    /// Where the next page starts; `None` at the end of the table.
    pub next: Option<ScanCursor>,
}

/// The hot store. Implementations page the way the service does (DynamoDB: at most 1 MB per
/// page); callers loop on `next` until it is `None`.
#[async_trait]
pub trait HotStore: Send + Sync {
    /// Writes (or overwrites) one item: the same key written twice leaves one item.
    async fn put_item(&self, item: &HotItem) -> Result<(), CloudError>;

    /// One page of a device's records.
    async fn query_page(&self, query: &DeviceQuery) -> Result<HotPage, CloudError>;

    /// One page of a scan for devices that have records older than `cutoff`.
    async fn scan_devices_before(
        &self,
        cutoff: Timestamp,
        after: Option<ScanCursor>,
    ) -> Result<DevicePage, CloudError>;

    /// Deletes the given records of one device; deleting a missing record is not an error.
    async fn delete_items(&self, device_id: &str, ids: &[Timestamp]) -> Result<(), CloudError>;
}

#[async_trait]
impl<T: HotStore + ?Sized> HotStore for std::sync::Arc<T> {
    async fn put_item(&self, item: &HotItem) -> Result<(), CloudError> {
        (**self).put_item(item).await
    }
    async fn query_page(&self, query: &DeviceQuery) -> Result<HotPage, CloudError> {
        (**self).query_page(query).await
    }
    async fn scan_devices_before(
        &self,
        cutoff: Timestamp,
        after: Option<ScanCursor>,
    ) -> Result<DevicePage, CloudError> {
        (**self).scan_devices_before(cutoff, after).await
    }
    async fn delete_items(&self, device_id: &str, ids: &[Timestamp]) -> Result<(), CloudError> {
        (**self).delete_items(device_id, ids).await
    }
}
