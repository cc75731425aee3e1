//! verify's bookkeeping against an in-memory data plane: what counts as arrived at each layer,
//! what makes a run incomplete, and what cleanup removes and leaves.

use async_trait::async_trait;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};
use tokio_util::sync::CancellationToken;
use twin_verify::probe::{
    DataPlaneProbe, Mover, ProbeError, SeenRecord, Stage, StageMark, Tier, TierObject,
};
use twin_verify::publish::{Published, Sent};
use twin_verify::{follow_published, VerifyOptions};

const RUN: &str = "0badc0de";

#[derive(Default)]
struct Plane {
    /// device → records in the hot store.
    hot: HashMap<String, Vec<SeenRecord>>,
    /// Records the API leaves out (by id).
    api_hides: Vec<String>,
    marks: Vec<(Stage, StageMark)>,
    /// tier → (key, class_expected, records).
    objects: Vec<(Tier, String, bool, Vec<SeenRecord>)>,
    /// Records of other runs the hot-to-cold mover puts into the same objects.
    mixed_in: Option<String>,
    deleted_objects: Vec<String>,
    archive_class_wrong: bool,
    /// Devices with a component in the twin (L4).
    twin_devices: Vec<String>,
}

struct FakeProbe(Mutex<Plane>);

fn ours(id: &str) -> SeenRecord {
    SeenRecord {
        id: id.into(),
        verify_run: Some(RUN.into()),
    }
}

#[async_trait]
impl DataPlaneProbe for FakeProbe {
    async fn stage_marks(
        &self,
        stage: Stage,
        _run: &str,
        _since: SystemTime,
    ) -> Result<Vec<StageMark>, ProbeError> {
        let p = self.0.lock().unwrap();
        Ok(p.marks
            .iter()
            .filter(|(s, _)| *s == stage)
            .map(|(_, m)| m.clone())
            .collect())
    }
    async fn hot_records(
        &self,
        device: &str,
        _from: &str,
        _to: &str,
    ) -> Result<Vec<SeenRecord>, ProbeError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .hot
            .get(device)
            .cloned()
            .unwrap_or_default())
    }
    async fn api_records(
        &self,
        device: &str,
        _from: &str,
        _to: &str,
    ) -> Result<Vec<SeenRecord>, ProbeError> {
        let p = self.0.lock().unwrap();
        Ok(p.hot
            .get(device)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|r| !p.api_hides.contains(&r.id))
            .collect())
    }
    async fn twin_values(
        &self,
        device: &str,
        _from: &str,
        _to: &str,
    ) -> Result<Option<Vec<String>>, ProbeError> {
        let p = self.0.lock().unwrap();
        if !p.twin_devices.iter().any(|d| d == device) {
            return Ok(None);
        }
        Ok(Some(
            p.hot
                .get(device)
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|r| r.id)
                .collect(),
        ))
    }
    async fn run_mover(&self, mover: Mover, cutoff: &str) -> Result<Value, ProbeError> {
        let mut p = self.0.lock().unwrap();
        match mover {
            Mover::HotToCold => {
                let hot = std::mem::take(&mut p.hot);
                for (device, mut records) in hot {
                    if let Some(other) = p.mixed_in.clone() {
                        if device == "d-1" {
                            records.push(SeenRecord {
                                id: other,
                                verify_run: None,
                            });
                        }
                    }
                    p.objects.push((
                        Tier::Cold,
                        format!("{device}/w/chunk-0.json"),
                        true,
                        records,
                    ));
                }
            }
            Mover::ColdToArchive => {
                let wrong = p.archive_class_wrong;
                for o in p.objects.iter_mut().filter(|o| o.0 == Tier::Cold) {
                    o.0 = Tier::Archive;
                    o.2 = !wrong;
                }
            }
        }
        Ok(json!({ "cutoff": cutoff }))
    }
    async fn tier_objects(&self, tier: Tier, device: &str) -> Result<Vec<TierObject>, ProbeError> {
        let p = self.0.lock().unwrap();
        Ok(p.objects
            .iter()
            .filter(|o| o.0 == tier && o.1.starts_with(&format!("{device}/")))
            .map(|o| TierObject {
                key: o.1.clone(),
                storage_class: if o.2 { "RIGHT".into() } else { "WRONG".into() },
                class_expected: o.2,
                size: o.3.len() as u64,
                // Archive objects cannot be read on a real cloud: verify must use the cold copy.
                records: (tier == Tier::Cold).then(|| o.3.clone()),
            })
            .collect())
    }
    async fn delete_hot(&self, device: &str, ids: &[String]) -> Result<u64, ProbeError> {
        let mut p = self.0.lock().unwrap();
        let records = p.hot.entry(device.into()).or_default();
        let before = records.len();
        records.retain(|r| !ids.contains(&r.id));
        Ok((before - records.len()) as u64)
    }
    async fn delete_object(&self, tier: Tier, key: &str) -> Result<(), ProbeError> {
        let mut p = self.0.lock().unwrap();
        p.objects.retain(|o| !(o.0 == tier && o.1 == key));
        p.deleted_objects.push(key.into());
        Ok(())
    }
}

/// Two devices × `n` readings published and acknowledged; the plane holds what `arrive` lets
/// through (by reading number).
fn setup(n: u64, arrive: impl Fn(u64) -> bool) -> (Published, FakeProbe) {
    let t0 = SystemTime::now();
    let mut sent = HashMap::new();
    let mut plane = Plane::default();
    for i in 0..n * 2 {
        let device = format!("d-{}", i % 2);
        let time = format!("2026-12-01T10:00:{:02}.{:03}Z", i / 1000, i % 1000);
        let at = t0 + Duration::from_millis(i);
        sent.insert(
            i,
            Sent {
                device: device.clone(),
                time: time.clone(),
                at,
            },
        );
        if arrive(i) {
            for (stage, delay) in [(Stage::Processed, 40), (Stage::Stored, 90)] {
                plane.marks.push((
                    stage,
                    StageMark {
                        reading: i,
                        at: at + Duration::from_millis(delay),
                        event_id: format!("{stage:?}-{i}"),
                    },
                ));
            }
            plane.hot.entry(device).or_default().push(ours(&time));
        }
    }
    // A record of someone else in the same window is never counted.
    plane.hot.entry("d-0".into()).or_default().push(SeenRecord {
        id: "2026-12-01T10:00:00.500Z".into(),
        verify_run: Some("another".into()),
    });
    let published = Published {
        sent,
        acknowledged: n * 2,
        ack_latencies_ms: vec![5.0; (n * 2) as usize],
        failures: vec![],
    };
    (published, FakeProbe(Mutex::new(plane)))
}

fn options(movers: bool) -> VerifyOptions {
    VerifyOptions {
        messages: 0,
        movers,
        keep: false,
        timeout: Duration::from_secs(1),
    }
}

async fn follow(
    published: &Published,
    probe: &FakeProbe,
    expected: u64,
    options: &VerifyOptions,
) -> twin_verify::VerifyReport {
    follow_published(
        RUN,
        published,
        expected,
        probe,
        options,
        &|_| {},
        &CancellationToken::new(),
        Instant::now() + options.timeout,
    )
    .await
    .unwrap()
}

fn row<'a>(r: &'a twin_verify::VerifyReport, layer: &str) -> &'a twin_verify::LayerRow {
    r.layers.iter().find(|l| l.layer == layer).unwrap()
}

#[tokio::test]
async fn every_reading_seen_everywhere_is_ok_with_latencies_from_publish_and_is_cleaned_up() {
    let (published, probe) = setup(10, |_| true);
    let report = follow(&published, &probe, 20, &options(false)).await;
    assert!(report.ok, "{report:?}");
    for l in &report.layers {
        assert_eq!((l.expected, l.arrived), (20, 20), "{l:?}");
    }
    assert_eq!(row(&report, "L2 processed").p50_ms, Some(40.0));
    assert_eq!(row(&report, "L3 hot stored").p95_ms, Some(90.0));
    assert_eq!(report.cleanup.hot_records, 20);
    let left = probe.0.lock().unwrap().hot.clone();
    assert_eq!(left["d-0"].len(), 1, "only the other run's record is left");
    assert!(left["d-1"].is_empty());
}

#[tokio::test]
async fn a_lost_reading_or_one_the_api_does_not_return_makes_the_run_incomplete() {
    let (published, probe) = setup(10, |i| i != 7);
    probe
        .0
        .lock()
        .unwrap()
        .api_hides
        .push("2026-12-01T10:00:00.002Z".into());
    let report = follow(&published, &probe, 20, &options(false)).await;
    assert!(!report.ok);
    assert_eq!(row(&report, "L1 accepted").arrived, 20);
    assert_eq!(row(&report, "L2 processed").arrived, 19);
    assert_eq!(row(&report, "L3 hot stored").arrived, 19);
    assert_eq!(row(&report, "L3 hot reader API").arrived, 18);
    let text = twin_verify::render_table(&report);
    assert!(
        text.contains("INCOMPLETE") && text.contains("NOT every reading"),
        "{text}"
    );
}

#[tokio::test]
async fn movers_count_tiers_by_storage_class_and_cleanup_leaves_objects_holding_other_records() {
    let (published, probe) = setup(5, |_| true);
    {
        let mut p = probe.0.lock().unwrap();
        // d-0 holds only this run's readings, d-1 also an older record of the device's own.
        p.hot
            .values_mut()
            .for_each(|r| r.retain(|r| r.verify_run.as_deref() == Some(RUN)));
        p.mixed_in = Some("2026-11-30T00:00:00.000Z".into());
    }
    let report = follow(&published, &probe, 10, &options(true)).await;
    assert!(report.ok, "{report:?}");
    assert_eq!(row(&report, "L3 cold").arrived, 10);
    assert_eq!(
        row(&report, "L3 archive").arrived,
        10,
        "counted from the cold copies"
    );
    assert_eq!(report.cleanup.objects, 1);
    assert_eq!(
        report.cleanup.objects_left,
        vec!["d-1/w/chunk-0.json".to_string()]
    );
    let p = probe.0.lock().unwrap();
    assert_eq!(p.deleted_objects, vec!["d-0/w/chunk-0.json".to_string()]);
}

#[tokio::test]
async fn an_archive_in_the_wrong_storage_class_is_not_counted() {
    let (published, probe) = setup(5, |_| true);
    probe.0.lock().unwrap().archive_class_wrong = true;
    let report = follow(&published, &probe, 10, &options(true)).await;
    assert!(!report.ok);
    let archive = row(&report, "L3 archive");
    assert_eq!(archive.arrived, 0);
    assert!(
        archive
            .note
            .as_deref()
            .unwrap_or_default()
            .contains("WRONG"),
        "{archive:?}"
    );
}

#[tokio::test]
async fn the_twin_row_counts_the_devices_placed_in_the_twin_only() {
    let (published, probe) = setup(5, |i| i != 4);
    assert!(
        follow(&published, &probe, 10, &options(false))
            .await
            .layers
            .iter()
            .all(|l| l.layer != "L4 twin"),
        "no L4 row without a twin"
    );
    let (published, probe) = setup(5, |i| i != 4);
    probe.0.lock().unwrap().twin_devices = vec!["d-0".into()];
    let report = follow(&published, &probe, 10, &options(false)).await;
    let twin = row(&report, "L4 twin");
    assert_eq!((twin.expected, twin.arrived), (5, 4), "{twin:?}");
}
