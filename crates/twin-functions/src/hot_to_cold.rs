//! The hot-to-cold mover (daily): records older than `hot_storage_size_in_days` go to cold objects
//! of at most 1 MB, and are deleted from the hot store only once their object is confirmed.
//!
//! Crash safety. For each device the mover streams the records older than the cut-off (computed
//! from the clock on every run), oldest first, page by page, and for each full chunk: writes the
//! object, reads its metadata back, then deletes exactly that chunk's records. A crash leaves
//! some records both in an object and in the hot store. The next run finds them: every object key
//! names its window (`<device>/<oldest>-<cut-off>/chunk-<i>.json`), and a record that falls inside
//! an existing window is looked up in that window's objects. Found: it is deleted, not written
//! again. Not found: it is written like any other record. New objects never overwrite existing
//! ones (an existing window gets further chunk indices), so a re-run neither loses nor duplicates.

use crate::chunk::{ChunkBuilder, MAX_CHUNK_BYTES};
use crate::clock::Clock;
use crate::cold_key::{ColdObjectKey, ColdWindow};
use crate::hot_store::{DeviceQuery, HotStore, Order, TimeRange};
use crate::lease::{run_under_lease, HeldLease, LeaseHeld, LeaseStore, HOT_TO_COLD_LEASE};
use crate::mover_error::MoverError;
use crate::object_store::{ObjectStore, StorageTier};
use crate::record::HotItem;
use crate::settings::HotToColdSettings;
use crate::timestamp::Timestamp;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use tracing::Instrument;

/// Deleting records already found in cold happens in batches of this many.
const CONFIRMED_DELETE_BATCH: usize = 500;

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HotToColdReport {
    /// The cut-off used: records strictly older were moved.
    pub cutoff: Option<Timestamp>,
    /// Devices that had records to move.
    pub devices: usize,
    /// Records written to cold and deleted from hot.
    pub records_moved: u64,
    /// Records an earlier run had already written, now deleted from hot.
    pub records_already_in_cold: u64,
    /// Objects written.
    pub objects_written: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Set when another run held the mover's lease: this run did nothing.
    pub lease_held: Option<LeaseHeld>,
}

/// The hot-to-cold mover's logic.
pub struct HotToColdMover<H, O, C> {
    hot: H,
    objects: O,
    cold_bucket: String,
    hot_storage_days: u32,
    clock: C,
    chunk_limit: usize,
    lease_seconds: u32,
}

/// Objects an earlier run wrote for a device, by window, with their chunk indices and keys.
type Windows = BTreeMap<ColdWindow, BTreeMap<u32, String>>;

/// Where this run writes a device's chunks.
struct OpenWindow {
    window: ColdWindow,
    next_index: u32,
}

impl<H: HotStore + LeaseStore, O: ObjectStore, C: Clock> HotToColdMover<H, O, C> {
    /// A mover from `hot` to the cold bucket in `objects`.
    pub fn new(settings: &HotToColdSettings, hot: H, objects: O, clock: C) -> Self {
        Self {
            hot,
            objects,
            cold_bucket: settings.cold_bucket.clone(),
            hot_storage_days: settings.hot_storage_days,
            clock,
            chunk_limit: MAX_CHUNK_BYTES,
            lease_seconds: settings.lease_seconds,
        }
    }

    /// Uses a smaller chunk limit (tests use it to get many chunks from few records).
    pub fn with_chunk_limit(mut self, bytes: usize) -> Self {
        self.chunk_limit = bytes.max(2);
        self
    }

    /// One run: every device, every record older than now minus the hot storage days, under the
    /// `hot-to-cold-mover` lease kept in the hot store. When another run holds it, nothing is done
    /// and the report says so in `lease_held`.
    pub async fn run(&self) -> Result<HotToColdReport, MoverError> {
        self.run_until(None).await
    }

    /// A run with the cut-off given instead of `now - days` (`deployer verify --movers` makes its
    /// readings due this way); a cut-off later than now is refused.
    pub async fn run_until(
        &self,
        cutoff: Option<Timestamp>,
    ) -> Result<HotToColdReport, MoverError> {
        let now = self.clock.now();
        if let Some(c) = cutoff.filter(|c| *c > now) {
            return Err(MoverError::CutoffInFuture {
                cutoff: c.canonical(),
                now: now.canonical(),
            });
        }
        let cutoff = cutoff.unwrap_or_else(|| now.minus_days(self.hot_storage_days));
        self.run_leased_until(cutoff).await
    }

    async fn run_leased_until(&self, cutoff: Timestamp) -> Result<HotToColdReport, MoverError> {
        let outcome = run_under_lease(
            &self.hot,
            &self.clock,
            HOT_TO_COLD_LEASE,
            self.lease_seconds,
            |lease| self.run_leased(lease, cutoff),
        )
        .await?;
        Ok(outcome.unwrap_or_else(|held| HotToColdReport {
            lease_held: Some(held),
            ..Default::default()
        }))
    }

    async fn run_leased(
        &self,
        lease: HeldLease,
        cutoff: Timestamp,
    ) -> Result<HotToColdReport, MoverError> {
        let mut report = HotToColdReport {
            cutoff: Some(cutoff),
            ..Default::default()
        };
        let devices = self.devices_with_records_before(cutoff).await?;
        report.devices = devices.len();
        tracing::info!(cutoff = %cutoff, devices = devices.len(), "moving hot records to cold");
        for device in devices {
            let span = tracing::info_span!("move_device", device_id = %device);
            self.move_device(&device, cutoff, &lease, &mut report)
                .instrument(span)
                .await?;
        }
        tracing::info!(
            moved = report.records_moved,
            already_in_cold = report.records_already_in_cold,
            objects = report.objects_written,
            "hot-to-cold run finished"
        );
        Ok(report)
    }

    async fn devices_with_records_before(
        &self,
        cutoff: Timestamp,
    ) -> Result<BTreeSet<String>, MoverError> {
        let mut devices = BTreeSet::new();
        let mut after = None;
        loop {
            let page = self.hot.scan_devices_before(cutoff, after).await?;
            devices.extend(page.device_ids);
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(devices),
            }
        }
    }

    async fn move_device(
        &self,
        device: &str,
        cutoff: Timestamp,
        lease: &HeldLease,
        report: &mut HotToColdReport,
    ) -> Result<(), MoverError> {
        MoverError::check_lease(lease, self.clock.now())?;
        let windows = self.existing_windows(device).await?;
        let mut stored: HashMap<ColdWindow, HashSet<Timestamp>> = HashMap::new();
        let mut confirmed: Vec<Timestamp> = Vec::new();
        let mut open: Option<OpenWindow> = None;
        let mut chunk = ChunkBuilder::new(self.chunk_limit);
        let mut after = None;
        loop {
            let query = DeviceQuery {
                device_id: device.to_string(),
                range: TimeRange::Before(cutoff),
                after: after.take(),
                order: Order::Ascending,
                limit: None,
            };
            let page = self.hot.query_page(&query).await?;
            for item in page.items {
                if self.already_in_cold(&windows, &mut stored, &item).await? {
                    confirmed.push(item.id);
                    continue;
                }
                let json = Value::Object(item.to_json()).to_string().into_bytes();
                if !chunk.fits(&json) {
                    self.flush(device, &mut open, &mut chunk, lease, report)
                        .await?;
                }
                if open.is_none() {
                    open = Some(self.open_window(&windows, device, item.id, cutoff));
                }
                chunk.push(item.id, &json);
            }
            if confirmed.len() >= CONFIRMED_DELETE_BATCH {
                self.delete_confirmed(device, &mut confirmed, report)
                    .await?;
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        if !chunk.is_empty() {
            self.flush(device, &mut open, &mut chunk, lease, report)
                .await?;
        }
        self.delete_confirmed(device, &mut confirmed, report).await
    }

    /// Lists the objects earlier runs wrote for `device`, grouped by window.
    async fn existing_windows(&self, device: &str) -> Result<Windows, MoverError> {
        let mut windows = Windows::new();
        let prefix = format!("{device}/");
        let mut continuation = None;
        loop {
            let listing = self
                .objects
                .list_objects(&self.cold_bucket, &prefix, continuation)
                .await?;
            for object in listing.objects {
                match ColdObjectKey::parse(&object.key) {
                    Some(key) if key.window.device_id == device => {
                        windows
                            .entry(key.window)
                            .or_default()
                            .insert(key.index, object.key);
                    }
                    _ => {
                        tracing::warn!(key = %object.key, "ignoring an object this pipeline did not write")
                    }
                }
            }
            match listing.next {
                Some(next) => continuation = Some(next),
                None => return Ok(windows),
            }
        }
    }

    /// Whether an earlier run already wrote this record (found in an object of a window that
    /// covers its time). Windows are read lazily, at most once per run.
    async fn already_in_cold(
        &self,
        windows: &Windows,
        stored: &mut HashMap<ColdWindow, HashSet<Timestamp>>,
        item: &HotItem,
    ) -> Result<bool, MoverError> {
        for (window, chunks) in windows.iter().filter(|(w, _)| w.contains(item.id)) {
            if !stored.contains_key(window) {
                let ids = self.ids_in_window(chunks).await?;
                stored.insert(window.clone(), ids);
            }
            if stored.get(window).is_some_and(|ids| ids.contains(&item.id)) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn ids_in_window(
        &self,
        chunks: &BTreeMap<u32, String>,
    ) -> Result<HashSet<Timestamp>, MoverError> {
        let mut ids = HashSet::new();
        for key in chunks.values() {
            let body = self.objects.get_object(&self.cold_bucket, key).await?;
            let unreadable = |detail: String| MoverError::UnreadableChunk {
                bucket: self.cold_bucket.clone(),
                key: key.clone(),
                detail,
            };
            let records: Vec<serde_json::Map<String, Value>> =
                serde_json::from_slice(&body).map_err(|e| unreadable(e.to_string()))?;
            for record in records {
                let item = HotItem::from_json(record).map_err(|e| unreadable(e.to_string()))?;
                ids.insert(item.id);
            }
        }
        tracing::debug!(
            objects = chunks.len(),
            records = ids.len(),
            "read an earlier run's window to verify"
        );
        Ok(ids)
    }

    /// The window this run writes into: named after its oldest record and the cut-off. If an
    /// earlier run used the same name, chunk indices continue after its last one.
    fn open_window(
        &self,
        windows: &Windows,
        device: &str,
        start: Timestamp,
        cutoff: Timestamp,
    ) -> OpenWindow {
        let window = ColdWindow {
            device_id: device.to_string(),
            start,
            end: cutoff,
        };
        let next_index = windows
            .get(&window)
            .and_then(|chunks| chunks.keys().next_back())
            .map_or(0, |last| last + 1);
        OpenWindow { window, next_index }
    }

    /// Writes the chunk, confirms it, then deletes its records from hot.
    async fn flush(
        &self,
        device: &str,
        open: &mut Option<OpenWindow>,
        chunk: &mut ChunkBuilder,
        lease: &HeldLease,
        report: &mut HotToColdReport,
    ) -> Result<(), MoverError> {
        let Some(open) = open.as_mut() else {
            return Ok(());
        };
        MoverError::check_lease(lease, self.clock.now())?;
        let key = ColdObjectKey {
            window: open.window.clone(),
            index: open.next_index,
        }
        .to_string();
        let done = chunk.take();
        let size = done.body.len() as u64;
        self.objects
            .put_object(&self.cold_bucket, &key, done.body, StorageTier::Cold)
            .await?;
        let not_confirmed = |detail: String| MoverError::NotConfirmed {
            bucket: self.cold_bucket.clone(),
            key: key.clone(),
            detail,
        };
        match self.objects.head_object(&self.cold_bucket, &key).await? {
            Some(info) if info.size == size && info.tier == StorageTier::Cold => {}
            Some(info) => {
                return Err(not_confirmed(format!(
                    "read back {} bytes in {:?}, wrote {size} bytes in {:?}",
                    info.size,
                    info.tier,
                    StorageTier::Cold
                )))
            }
            None => return Err(not_confirmed("the object is not there".into())),
        }
        open.next_index += 1;
        report.objects_written += 1;
        report.bytes_written += size;
        tracing::debug!(key = %key, records = done.ids.len(), bytes = size, "chunk written and confirmed");
        self.hot.delete_items(device, &done.ids).await?;
        report.records_moved += done.ids.len() as u64;
        Ok(())
    }

    async fn delete_confirmed(
        &self,
        device: &str,
        confirmed: &mut Vec<Timestamp>,
        report: &mut HotToColdReport,
    ) -> Result<(), MoverError> {
        if confirmed.is_empty() {
            return Ok(());
        }
        self.hot.delete_items(device, confirmed).await?;
        report.records_already_in_cold += confirmed.len() as u64;
        tracing::info!(
            records = confirmed.len(),
            "deleted records an earlier run had already moved"
        );
        confirmed.clear();
        Ok(())
    }
}
