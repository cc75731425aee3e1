//! The functions' output: every line is appended to `.deployer/local/logs/<function>.log` and
//! shipped to the emulator's CloudWatch Logs (group `/aws/lambda/<function>`, which deploy
//! creates; one stream per instance start), in batches, with bounded memory.

use aws_sdk_cloudwatchlogs::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Lines waiting to be shipped at most; beyond, lines are still written to the file but not
/// shipped (and the drop is counted and reported in the stream).
pub const QUEUE_LINES: usize = 10_000;

/// Events per PutLogEvents call at most (CloudWatch allows 10 000; smaller keeps latency low).
const BATCH_EVENTS: usize = 500;

/// How often buffered lines are shipped.
const FLUSH_EVERY: Duration = Duration::from_millis(500);

/// One captured line.
#[derive(Debug, Clone)]
pub struct LogLine {
    /// The function.
    pub function: String,
    /// The log stream (one per instance start).
    pub stream: String,
    /// When it was read (ms since the epoch).
    pub timestamp_ms: i64,
    /// The text (lossy UTF-8, without the line end).
    pub message: String,
}

impl LogLine {
    /// A line read now.
    pub fn now(function: &str, stream: &str, message: String) -> LogLine {
        LogLine {
            function: function.to_string(),
            stream: stream.to_string(),
            timestamp_ms: now_ms(),
            message,
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A Lambda-like stream name for one instance start: `YYYY/MM/DD/[$LATEST]<random hex>`.
pub fn stream_name(index: usize) -> String {
    let now = chrono::Utc::now();
    let nonce = {
        use sha2::Digest;
        let seed = format!(
            "{}-{}-{index}-{:?}",
            std::process::id(),
            now.timestamp_nanos_opt().unwrap_or_default(),
            std::thread::current().id()
        );
        hex::encode(&sha2::Sha256::digest(seed.as_bytes())[..16])
    };
    format!("{}/[$LATEST]{nonce}", now.format("%Y/%m/%d"))
}

/// Where lines go: the function's file right away, the shipper through a bounded queue.
#[derive(Clone)]
pub struct LogSink {
    dir: PathBuf,
    files: Arc<Mutex<BTreeMap<String, std::fs::File>>>,
    tx: mpsc::Sender<LogLine>,
    dropped: Arc<AtomicU64>,
}

impl LogSink {
    /// Writes the line to its function's file and queues it for shipping (dropped from
    /// shipping, never from the file, when the queue is full).
    pub fn send(&self, line: LogLine) {
        self.append(&line);
        if self.tx.try_send(line).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The file of `function`'s lines.
    pub fn file_of(dir: &Path, function: &str) -> PathBuf {
        dir.join(format!("{function}.log"))
    }

    fn append(&self, line: &LogLine) {
        let mut files = crate::runtime::lock(&self.files);
        if !files.contains_key(&line.function) {
            let path = Self::file_of(&self.dir, &line.function);
            match std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
            {
                Ok(f) => {
                    files.insert(line.function.clone(), f);
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot write the function log");
                    return;
                }
            }
        }
        if let Some(f) = files.get_mut(&line.function) {
            let _ = writeln!(f, "{}", line.message);
        }
    }
}

/// Creates the sink writing into `dir` and the shipper task, which runs until `cancel` and
/// then ships what is left (one last attempt).
pub fn start(
    dir: &Path,
    logs: aws_sdk_cloudwatchlogs::Client,
    cancel: CancellationToken,
) -> Result<(LogSink, tokio::task::JoinHandle<()>), crate::LocalError> {
    std::fs::create_dir_all(dir).map_err(|e| crate::LocalError::Io {
        path: dir.to_path_buf(),
        message: e.to_string(),
    })?;
    let (tx, rx) = mpsc::channel(QUEUE_LINES);
    let dropped = Arc::new(AtomicU64::new(0));
    let sink = LogSink {
        dir: dir.to_path_buf(),
        files: Arc::new(Mutex::new(BTreeMap::new())),
        tx,
        dropped: dropped.clone(),
    };
    let task = tokio::spawn(ship(rx, logs, cancel, dropped));
    Ok((sink, task))
}

async fn ship(
    mut rx: mpsc::Receiver<LogLine>,
    logs: aws_sdk_cloudwatchlogs::Client,
    cancel: CancellationToken,
    dropped: Arc<AtomicU64>,
) {
    let mut shipper = Shipper {
        logs,
        streams: HashSet::new(),
    };
    let mut pending: Vec<LogLine> = Vec::new();
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            got = rx.recv() => match got {
                Some(line) => {
                    pending.push(line);
                    if pending.len() < BATCH_EVENTS {
                        continue;
                    }
                }
                None => break,
            },
            _ = tick.tick() => {}
        }
        let lost = dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            if let Some(last) = pending.last().cloned() {
                pending.push(LogLine::now(
                    &last.function,
                    &last.stream,
                    format!("[runner] {lost} line(s) not shipped: the shipping queue was full (they are in the local log file)"),
                ));
            }
        }
        shipper.flush(std::mem::take(&mut pending)).await;
    }
    while let Ok(line) = rx.try_recv() {
        pending.push(line);
    }
    shipper.flush(pending).await;
}

struct Shipper {
    logs: aws_sdk_cloudwatchlogs::Client,
    streams: HashSet<(String, String)>,
}

impl Shipper {
    /// Ships lines grouped by (group, stream), in time order; a failed batch is logged and
    /// dropped (the lines stay in the local file), so memory stays bounded.
    async fn flush(&mut self, lines: Vec<LogLine>) {
        let mut by_stream: BTreeMap<(String, String), Vec<LogLine>> = BTreeMap::new();
        for l in lines {
            by_stream
                .entry((format!("/aws/lambda/{}", l.function), l.stream.clone()))
                .or_default()
                .push(l);
        }
        for ((group, stream), mut lines) in by_stream {
            lines.sort_by_key(|l| l.timestamp_ms);
            if let Err(e) = self.ensure_stream(&group, &stream).await {
                tracing::warn!(%group, %stream, error = %e, "cannot create the log stream; lines kept only locally");
                continue;
            }
            for chunk in lines.chunks(BATCH_EVENTS) {
                let events: Vec<InputLogEvent> = chunk
                    .iter()
                    .filter_map(|l| {
                        InputLogEvent::builder()
                            .timestamp(l.timestamp_ms)
                            // CloudWatch refuses empty messages.
                            .message(if l.message.is_empty() {
                                " "
                            } else {
                                &l.message
                            })
                            .build()
                            .ok()
                    })
                    .collect();
                if let Err(e) = self
                    .logs
                    .put_log_events()
                    .log_group_name(&group)
                    .log_stream_name(&stream)
                    .set_log_events(Some(events))
                    .send()
                    .await
                {
                    tracing::warn!(%group, %stream, error = %DisplayErrorContext(&e), "PutLogEvents failed; lines kept only locally");
                }
            }
        }
    }

    async fn ensure_stream(&mut self, group: &str, stream: &str) -> Result<(), String> {
        let key = (group.to_string(), stream.to_string());
        if self.streams.contains(&key) {
            return Ok(());
        }
        match self
            .logs
            .create_log_stream()
            .log_group_name(group)
            .log_stream_name(stream)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e)
                if e.as_service_error().and_then(|s| s.code())
                    == Some("ResourceAlreadyExistsException") => {}
            Err(e) => return Err(DisplayErrorContext(&e).to_string()),
        }
        self.streams.insert(key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_look_like_lambdas_and_differ() {
        let a = stream_name(0);
        let b = stream_name(1);
        assert!(a.contains("/[$LATEST]"), "{a}");
        assert_ne!(a, b);
    }
}
