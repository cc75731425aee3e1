//! `deployer verify`: publishes synthetic readings with each device's own credentials, as the
//! device would, and follows them layer by layer: accepted by the broker (L1), processed (L2),
//! stored in the hot tier (L3) and returned by the hot-reader API; with `movers`, moved to cold
//! and then to the archive with their storage classes. The readings are marked (`verifyRun`) and
//! removed afterwards unless `keep`. Only the probe knows the cloud: the same steps run against
//! the local emulator and a real account.

pub mod aws;
pub mod latency;
pub mod probe;
pub mod publish;
pub mod readings;

use probe::{DataPlaneProbe, Mover, ProbeError, SeenRecord, Stage, Tier, TierObject};
use publish::Sent;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;
use twin_config::Device;
use twin_functions::Timestamp;

/// The longest pause between two looks at the pipeline.
const MAX_POLL: Duration = Duration::from_secs(2);
/// Give up early when nothing new arrived at any layer for this long.
const STALL: Duration = Duration::from_secs(30);

/// What to send and how long to wait.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Readings per device.
    pub messages: u64,
    /// Also run both movers with a cut-off that makes the readings due, and check cold and archive.
    pub movers: bool,
    /// Leave the readings in the stores afterwards.
    pub keep: bool,
    /// How long to wait for the readings at every layer.
    pub timeout: Duration,
}

/// The deployed twin verify talks to.
#[derive(Debug, Clone)]
pub struct VerifyTarget {
    /// The twin's name.
    pub twin: String,
    /// Its devices (ids and properties, from the config).
    pub devices: Vec<Device>,
    /// The simulator config `deploy` wrote (broker endpoint, CA, device credential folders).
    pub simulator_config: PathBuf,
}

/// One layer's outcome.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LayerRow {
    /// Which layer and step.
    pub layer: String,
    /// Readings expected there.
    pub expected: u64,
    /// Readings seen there.
    pub arrived: u64,
    /// Median latency from publish, in milliseconds.
    pub p50_ms: Option<f64>,
    /// 95th percentile latency from publish, in milliseconds.
    pub p95_ms: Option<f64>,
    /// 99th percentile latency from publish, in milliseconds.
    pub p99_ms: Option<f64>,
    /// Readings per second through this step: those that arrived over the time from the first
    /// publish to the last arrival (the pipeline's sustained rate when verify sends a burst).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_second: Option<f64>,
    /// What else a reader should know (a missing storage class, a mover's duration).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl LayerRow {
    fn new(layer: &str, expected: u64, arrived: u64, latencies: &[f64]) -> Self {
        Self {
            layer: layer.into(),
            expected,
            arrived,
            p50_ms: latency::percentile(latencies, 0.5).map(round_ms),
            p95_ms: latency::percentile(latencies, 0.95).map(round_ms),
            p99_ms: latency::percentile(latencies, 0.99).map(round_ms),
            per_second: None,
            note: None,
        }
    }

    /// Whether every expected reading arrived.
    pub fn complete(&self) -> bool {
        self.arrived == self.expected
    }
}

/// What was removed afterwards.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Cleanup {
    /// Whether cleanup ran (not with `keep`).
    pub ran: bool,
    /// Hot records deleted.
    pub hot_records: u64,
    /// Cold and archive objects deleted (they held only this run's readings).
    pub objects: u64,
    /// Objects left because they also hold other records.
    pub objects_left: Vec<String>,
}

/// The whole outcome.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// The run's id (the `verifyRun` mark on its records).
    pub run: String,
    /// One row per layer.
    pub layers: Vec<LayerRow>,
    /// Whether every reading arrived at every layer.
    pub ok: bool,
    /// What was removed afterwards.
    pub cleanup: Cleanup,
    /// Connection failures and probe errors met on the way.
    pub problems: Vec<String>,
}

/// Why verify could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Something local is missing or wrong (simulator config, credentials).
    #[error("{0}")]
    Setup(String),
    /// Reading the deployed twin failed for good.
    #[error(transparent)]
    Probe(#[from] ProbeError),
    /// Interrupted.
    #[error("interrupted")]
    Cancelled,
}

/// A fresh run id: 8 lowercase hex digits.
pub fn new_run_id() -> String {
    format!("{:08x}", rand::random::<u32>())
}

/// Runs verify end to end; `progress` gets one line per step.
pub async fn verify(
    target: &VerifyTarget,
    probe: &dyn DataPlaneProbe,
    options: &VerifyOptions,
    progress: &(dyn Fn(&str) + Sync),
    cancel: &CancellationToken,
) -> Result<VerifyReport, VerifyError> {
    if target.devices.is_empty() {
        return Err(VerifyError::Setup("the twin has no devices".into()));
    }
    let run = new_run_id();
    let deadline = Instant::now() + options.timeout;
    progress(&format!(
        "verify run {run}: publishing {} reading(s) for each of {} device(s)",
        options.messages,
        target.devices.len()
    ));
    let published = publish::publish(
        &target.simulator_config,
        &target.devices,
        &run,
        options.messages,
        options.timeout,
    )
    .await?;
    let expected = options.messages * target.devices.len() as u64;
    follow_published(
        &run, &published, expected, probe, options, progress, cancel, deadline,
    )
    .await
}

/// Follows readings already published (`expected` in all) through the probe and reports.
#[allow(clippy::too_many_arguments)]
pub async fn follow_published(
    run: &str,
    published: &publish::Published,
    expected: u64,
    probe: &dyn DataPlaneProbe,
    options: &VerifyOptions,
    progress: &(dyn Fn(&str) + Sync),
    cancel: &CancellationToken,
    deadline: Instant,
) -> Result<VerifyReport, VerifyError> {
    let run = run.to_string();
    let mut problems = published.failures.clone();
    let mut layers = vec![LayerRow::new(
        "L1 accepted",
        expected,
        published.acknowledged,
        &published.ack_latencies_ms,
    )];

    let sent = &published.sent;
    let index: HashMap<(&str, &str), u64> = sent
        .iter()
        .map(|(n, s)| ((s.device.as_str(), s.time.as_str()), *n))
        .collect();
    let windows = device_windows(sent);
    progress("following the readings through L2 and L3");
    let mut follow = Follow::new(&run, sent, &index);
    follow
        .run(probe, &windows, expected, deadline, cancel, &mut problems)
        .await?;
    let mut processed = LayerRow::new(
        "L2 processed",
        expected,
        follow.processed.len() as u64,
        &follow.latencies(&follow.processed),
    );
    processed.per_second = follow.rate(&follow.processed);
    layers.push(processed);
    let mut stored = LayerRow::new(
        "L3 hot stored",
        expected,
        follow.in_hot.len() as u64,
        &follow.latencies(&follow.stored),
    );
    stored.per_second = follow.rate(&follow.stored);
    layers.push(stored);
    layers.push(LayerRow::new(
        "L3 hot reader API",
        expected,
        follow.from_api.len() as u64,
        &follow.latencies(&follow.from_api),
    ));
    if let Some(row) = twin_row(probe, published, &windows, &mut problems).await? {
        layers.push(row);
    }

    let mut tier_records: BTreeMap<String, (Tier, Vec<SeenRecord>)> = BTreeMap::new();
    if options.movers {
        let (cold_row, archive_row) =
            run_movers(probe, &run, &windows, sent, &mut tier_records, progress).await?;
        layers.push(cold_row);
        layers.push(archive_row);
    }

    let ok = layers.iter().all(LayerRow::complete);
    let cleanup = if options.keep {
        Cleanup::default()
    } else {
        progress("removing the verify readings");
        clean_up(probe, &run, &windows, &tier_records, &mut problems).await
    };
    Ok(VerifyReport {
        run,
        layers,
        ok,
        cleanup,
        problems,
    })
}

/// Per device, the first and last reading time: the window the stores are asked about.
fn device_windows(sent: &HashMap<u64, Sent>) -> BTreeMap<String, (String, String)> {
    let mut w: BTreeMap<String, (String, String)> = BTreeMap::new();
    for s in sent.values() {
        let e = w
            .entry(s.device.clone())
            .or_insert_with(|| (s.time.clone(), s.time.clone()));
        // Canonical times compare as text.
        if s.time < e.0 {
            e.0 = s.time.clone();
        }
        if s.time > e.1 {
            e.1 = s.time.clone();
        }
    }
    w
}

fn round_ms(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn ms_between(from: SystemTime, to: SystemTime) -> f64 {
    match to.duration_since(from) {
        Ok(d) => d.as_secs_f64() * 1000.0,
        // A cloud clock slightly behind ours: count it as no delay rather than a negative one.
        Err(_) => 0.0,
    }
}

/// What has been seen so far at each L2/L3 step: reading number → when.
struct Follow<'a> {
    run: &'a str,
    sent: &'a HashMap<u64, Sent>,
    index: &'a HashMap<(&'a str, &'a str), u64>,
    processed: HashMap<u64, SystemTime>,
    stored: HashMap<u64, SystemTime>,
    in_hot: HashSet<u64>,
    from_api: HashMap<u64, SystemTime>,
    seen_events: HashSet<String>,
}

impl<'a> Follow<'a> {
    fn new(
        run: &'a str,
        sent: &'a HashMap<u64, Sent>,
        index: &'a HashMap<(&'a str, &'a str), u64>,
    ) -> Self {
        Self {
            run,
            sent,
            index,
            processed: HashMap::new(),
            stored: HashMap::new(),
            in_hot: HashSet::new(),
            from_api: HashMap::new(),
            seen_events: HashSet::new(),
        }
    }

    fn latencies(&self, seen: &HashMap<u64, SystemTime>) -> Vec<f64> {
        seen.iter()
            .filter_map(|(n, at)| self.sent.get(n).map(|s| ms_between(s.at, *at)))
            .collect()
    }

    /// Arrivals per second from the first publish to the last arrival.
    fn rate(&self, seen: &HashMap<u64, SystemTime>) -> Option<f64> {
        let first = self.sent.values().map(|s| s.at).min()?;
        let last = seen.values().max()?;
        let secs = last.duration_since(first).ok()?.as_secs_f64();
        (secs > 0.0).then(|| round_ms(seen.len() as f64 / secs))
    }

    fn progress(&self) -> usize {
        self.processed.len() + self.stored.len() + self.in_hot.len() + self.from_api.len()
    }

    /// Looks again until every reading is seen at every step, nothing moves for [`STALL`], or
    /// the deadline passes.
    async fn run(
        &mut self,
        probe: &dyn DataPlaneProbe,
        windows: &BTreeMap<String, (String, String)>,
        expected: u64,
        deadline: Instant,
        cancel: &CancellationToken,
        problems: &mut Vec<String>,
    ) -> Result<(), VerifyError> {
        let first_publish = self
            .sent
            .values()
            .map(|s| s.at)
            .min()
            .unwrap_or_else(SystemTime::now);
        // Log timestamps come from another clock: look a little earlier than the first publish.
        let since = first_publish
            .checked_sub(Duration::from_secs(5))
            .unwrap_or(UNIX_EPOCH);
        let mut pause = Duration::from_millis(200);
        let mut last_change = Instant::now();
        let mut last_progress = 0;
        loop {
            let last_error = match self.look(probe, windows, since, expected).await {
                Ok(()) => None,
                Err(e) if e.transient => Some(e.to_string()),
                Err(e) => return Err(e.into()),
            };
            let all = self.processed.len() as u64 == expected
                && self.in_hot.len() as u64 == expected
                && self.from_api.len() as u64 == expected;
            if all {
                return Ok(());
            }
            if self.progress() != last_progress {
                last_progress = self.progress();
                last_change = Instant::now();
            }
            let now = Instant::now();
            if now >= deadline || now.duration_since(last_change) >= STALL {
                if let Some(e) = last_error {
                    problems.push(e);
                }
                return Ok(());
            }
            tokio::select! {
                _ = cancel.cancelled() => return Err(VerifyError::Cancelled),
                _ = tokio::time::sleep(pause.min(deadline - now)) => {}
            }
            pause = (pause * 2).min(MAX_POLL);
        }
    }

    async fn look(
        &mut self,
        probe: &dyn DataPlaneProbe,
        windows: &BTreeMap<String, (String, String)>,
        since: SystemTime,
        expected: u64,
    ) -> Result<(), ProbeError> {
        for stage in [Stage::Processed, Stage::Stored] {
            let done = match stage {
                Stage::Processed => self.processed.len() as u64 == expected,
                Stage::Stored => self.stored.len() as u64 == expected,
            };
            if done {
                continue;
            }
            for mark in probe.stage_marks(stage, self.run, since).await? {
                if !self.sent.contains_key(&mark.reading)
                    || !self.seen_events.insert(mark.event_id.clone())
                {
                    continue;
                }
                let seen = match stage {
                    Stage::Processed => &mut self.processed,
                    Stage::Stored => &mut self.stored,
                };
                let at = seen.entry(mark.reading).or_insert(mark.at);
                *at = (*at).min(mark.at);
            }
        }
        if (self.in_hot.len() as u64) < expected {
            for (device, (from, to)) in windows {
                for r in probe.hot_records(device, from, to).await? {
                    if let Some(n) = self.ours(device, &r) {
                        self.in_hot.insert(n);
                    }
                }
            }
        }
        // The API is asked once the store has something new for it, not on every look.
        if (self.from_api.len() as u64) < expected && !self.in_hot.is_empty() {
            for (device, (from, to)) in windows {
                let now = SystemTime::now();
                for r in probe.api_records(device, from, to).await? {
                    if let Some(n) = self.ours(device, &r) {
                        self.from_api.entry(n).or_insert(now);
                    }
                }
            }
        }
        Ok(())
    }

    fn ours(&self, device: &str, r: &SeenRecord) -> Option<u64> {
        if r.verify_run.as_deref() != Some(self.run) {
            return None;
        }
        self.index.get(&(device, r.id.as_str())).copied()
    }
}

/// L4: the readings of the devices that have a component in the twin, as the twin service
/// returns them (on AWS, TwinMaker's property history served by the connector). `None` when no
/// device has a component (L4 not deployed).
async fn twin_row(
    probe: &dyn DataPlaneProbe,
    published: &publish::Published,
    windows: &BTreeMap<String, (String, String)>,
    problems: &mut Vec<String>,
) -> Result<Option<LayerRow>, VerifyError> {
    let mut expected = 0;
    let mut arrived = 0;
    let mut latencies = Vec::new();
    let mut any = false;
    for (device, (from, to)) in windows {
        let values = match probe.twin_values(device, from, to).await {
            Ok(Some(v)) => v,
            Ok(None) => continue,
            Err(e) if e.transient => {
                problems.push(e.to_string());
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        any = true;
        let now = SystemTime::now();
        let ours: HashMap<&str, &Sent> = published
            .sent
            .values()
            .filter(|s| s.device == *device)
            .map(|s| (s.time.as_str(), s))
            .collect();
        expected += ours.len() as u64;
        let seen: HashSet<&str> = values.iter().map(String::as_str).collect();
        for (time, s) in &ours {
            if seen.contains(time) {
                arrived += 1;
                latencies.push(ms_between(s.at, now));
            }
        }
    }
    Ok(any.then(|| {
        let mut row = LayerRow::new("L4 twin", expected, arrived, &latencies);
        row.note = Some(
            "read once after L3 (latency = when verify read the twin), for the devices the hierarchy places in the twin".into(),
        );
        row
    }))
}

/// Runs hot→cold then cold→archive with a cut-off just after the last reading, and counts this
/// run's readings in each tier's objects of the expected storage class.
async fn run_movers(
    probe: &dyn DataPlaneProbe,
    run: &str,
    windows: &BTreeMap<String, (String, String)>,
    sent: &HashMap<u64, Sent>,
    tier_records: &mut BTreeMap<String, (Tier, Vec<SeenRecord>)>,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<(LayerRow, LayerRow), VerifyError> {
    let expected = sent.len() as u64;
    let last = windows.values().map(|(_, to)| to.clone()).max();
    let cutoff = cutoff_after(last.as_deref()).await?;
    progress(&format!(
        "running the hot-to-cold mover with cut-off {cutoff}"
    ));
    let started = Instant::now();
    let report = probe.run_mover(Mover::HotToCold, &cutoff).await?;
    let hot_to_cold_ms = started.elapsed().as_secs_f64() * 1000.0;
    let (cold, cold_objects, cold_wrong) = count_tier(probe, Tier::Cold, run, windows).await?;
    for o in &cold_objects {
        if let Some(records) = &o.records {
            tier_records.insert(o.key.clone(), (Tier::Cold, records.clone()));
        }
    }
    let mut cold_row = LayerRow::new("L3 cold", expected, cold, &[]);
    cold_row.note = Some(tier_note(
        "hot-to-cold mover",
        hot_to_cold_ms,
        &report,
        &cold_wrong,
    ));

    progress(&format!(
        "running the cold-to-archive mover with cut-off {cutoff}"
    ));
    let started = Instant::now();
    let report = probe.run_mover(Mover::ColdToArchive, &cutoff).await?;
    let archive_ms = started.elapsed().as_secs_f64() * 1000.0;
    let mut archived = 0;
    let mut wrong = Vec::new();
    for device in windows.keys() {
        for o in probe.tier_objects(Tier::Archive, device).await? {
            // An archive object cannot be read without a restore on a real cloud; its records
            // are those of the cold object it was copied from (same key, same size).
            let records = o.records.clone().or_else(|| {
                cold_objects
                    .iter()
                    .find(|c| c.key == o.key && c.size == o.size)
                    .and_then(|c| c.records.clone())
            });
            let Some(records) = records else { continue };
            let ours = records
                .iter()
                .filter(|r| r.verify_run.as_deref() == Some(run))
                .count() as u64;
            if ours == 0 {
                continue;
            }
            tier_records.insert(o.key.clone(), (Tier::Archive, records));
            if o.class_expected {
                archived += ours;
            } else {
                wrong.push(format!("{} is {}", o.key, o.storage_class));
            }
        }
    }
    let mut archive_row = LayerRow::new("L3 archive", expected, archived, &[]);
    archive_row.note = Some(tier_note(
        "cold-to-archive mover",
        archive_ms,
        &report,
        &wrong,
    ));
    Ok((cold_row, archive_row))
}

/// A cut-off later than every reading (windows end before it) and not later than now.
async fn cutoff_after(last: Option<&str>) -> Result<String, VerifyError> {
    let last_ms = match last {
        Some(t) => Timestamp::parse(t)
            .map_err(|e| VerifyError::Setup(format!("reading time {t}: {e}")))?
            .millis(),
        None => 0,
    };
    let want = last_ms + 1;
    loop {
        let now = Timestamp::now();
        if now.millis() >= want {
            return Ok(now.canonical());
        }
        // At most a millisecond or two: the last reading was stamped just now.
        tokio::time::sleep(Duration::from_millis((want - now.millis()).max(1) as u64)).await;
    }
}

async fn count_tier(
    probe: &dyn DataPlaneProbe,
    tier: Tier,
    run: &str,
    windows: &BTreeMap<String, (String, String)>,
) -> Result<(u64, Vec<TierObject>, Vec<String>), VerifyError> {
    let mut count = 0;
    let mut objects = Vec::new();
    let mut wrong = Vec::new();
    for device in windows.keys() {
        for o in probe.tier_objects(tier, device).await? {
            let ours = o
                .records
                .iter()
                .flatten()
                .filter(|r| r.verify_run.as_deref() == Some(run))
                .count() as u64;
            if ours > 0 && !o.class_expected {
                wrong.push(format!("{} is {}", o.key, o.storage_class));
            } else {
                count += ours;
            }
            objects.push(o);
        }
    }
    Ok((count, objects, wrong))
}

fn tier_note(mover: &str, ms: f64, report: &serde_json::Value, wrong: &[String]) -> String {
    let mut note = format!("{mover} ran in {:.0} ms: {report}", ms);
    if !wrong.is_empty() {
        note.push_str(&format!(
            "; not counted, wrong storage class: {}",
            wrong.join(", ")
        ));
    }
    note
}

/// Removes this run's hot records and the tier objects that hold nothing else.
async fn clean_up(
    probe: &dyn DataPlaneProbe,
    run: &str,
    windows: &BTreeMap<String, (String, String)>,
    tier_records: &BTreeMap<String, (Tier, Vec<SeenRecord>)>,
    problems: &mut Vec<String>,
) -> Cleanup {
    let mut cleanup = Cleanup {
        ran: true,
        ..Default::default()
    };
    for (device, (from, to)) in windows {
        let ids: Vec<String> = match probe.hot_records(device, from, to).await {
            Ok(records) => records
                .into_iter()
                .filter(|r| r.verify_run.as_deref() == Some(run))
                .map(|r| r.id)
                .collect(),
            Err(e) => {
                problems.push(format!("cleanup: {e}"));
                continue;
            }
        };
        if ids.is_empty() {
            continue;
        }
        match probe.delete_hot(device, &ids).await {
            Ok(n) => cleanup.hot_records += n,
            Err(e) => problems.push(format!("cleanup: {e}")),
        }
    }
    for (key, (tier, records)) in tier_records {
        let only_ours = records.iter().all(|r| r.verify_run.as_deref() == Some(run));
        if !only_ours {
            cleanup.objects_left.push(key.clone());
            continue;
        }
        match probe.delete_object(*tier, key).await {
            Ok(()) => cleanup.objects += 1,
            Err(e) => problems.push(format!("cleanup: {e}")),
        }
    }
    cleanup
}

/// The report as the table `verify` prints.
pub fn render_table(report: &VerifyReport) -> String {
    let mut out = format!(
        "{:<20} {:>9} {:>9} {:>9} {:>9}\n",
        "layer", "arrived", "expected", "p50 ms", "p95 ms"
    );
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.1}"));
    for row in &report.layers {
        out.push_str(&format!(
            "{:<20} {:>9} {:>9} {:>9} {:>9}{}\n",
            row.layer,
            row.arrived,
            row.expected,
            ms(row.p50_ms),
            ms(row.p95_ms),
            if row.complete() { "" } else { "  INCOMPLETE" }
        ));
    }
    for row in &report.layers {
        if let Some(note) = &row.note {
            out.push_str(&format!("{}: {note}\n", row.layer));
        }
    }
    for p in &report.problems {
        out.push_str(&format!("problem: {p}\n"));
    }
    let c = &report.cleanup;
    if c.ran {
        out.push_str(&format!(
            "removed {} hot record(s) and {} object(s) of run {}",
            c.hot_records, c.objects, report.run
        ));
        if !c.objects_left.is_empty() {
            out.push_str(&format!(
                "; left {} object(s) that also hold other records: {}",
                c.objects_left.len(),
                c.objects_left.join(", ")
            ));
        }
        out.push('\n');
    } else {
        out.push_str(&format!(
            "kept the readings of run {} (they carry verifyRun = {})\n",
            report.run, report.run
        ));
    }
    out.push_str(if report.ok {
        "every reading arrived at every layer\n"
    } else {
        "NOT every reading arrived: see the rows marked INCOMPLETE\n"
    });
    out
}
