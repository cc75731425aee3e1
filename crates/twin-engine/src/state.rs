//! The state file `.deployer/<twin>.json`: what this tool created, recorded as it happens.
//!
//! Each change is appended to a journal (`<twin>.journal`, one JSON line, cheap even for
//! thousands of resources) and folded into the snapshot, which is written atomically (temp
//! file + rename) at the end of every command and whenever a journal is found on open. A torn
//! last journal line (kill -9 mid-write) is ignored: the resource it described is found again
//! by its deterministic name.

use crate::error::EngineError;
use crate::resource::{Observed, ResourceId, ResourceSpec};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Where a recorded resource stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordStatus {
    /// A create or update call was sent and its result not yet recorded.
    Pending,
    /// Exists in the cloud with the recorded settings.
    Created,
}

/// One resource in the state file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceRecord {
    /// What was asked for.
    #[serde(flatten)]
    pub spec: ResourceSpec,
    /// Pending or created.
    pub status: RecordStatus,
    /// What the cloud reported after the last successful operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<Observed>,
}

/// The whole state of one twin.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StateFile {
    /// Format version.
    pub version: u32,
    /// Twin name.
    pub twin: String,
    /// A random id made when the state is first written; the twin's resources carry it as a
    /// tag, so a same-named twin deployed from another state file is told apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub twin_id: Option<String>,
    /// The cloud scope each provider's resources were made in (AWS partition, account and
    /// region; Azure tenant and subscription), by provider name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scopes: BTreeMap<String, Scope>,
    /// Every recorded resource by id.
    pub resources: BTreeMap<ResourceId, ResourceRecord>,
}

/// Where a provider's resources live, as named parts (`account`, `region`, ...).
pub type Scope = BTreeMap<String, String>;

const STATE_VERSION: u32 = 1;

impl StateFile {
    fn empty(twin: &str) -> StateFile {
        StateFile {
            version: STATE_VERSION,
            twin: twin.to_string(),
            twin_id: None,
            scopes: BTreeMap::new(),
            resources: BTreeMap::new(),
        }
    }

    /// Reads the state of `twin` under `dir/.deployer/` (with any journal folded in) without
    /// locking or writing, for commands that only look. No state yet reads as empty.
    pub fn peek(dir: &Path, twin: &str) -> Result<StateFile, EngineError> {
        let state_dir = dir.join(".deployer");
        let path = state_dir.join(format!("{twin}.json"));
        let err = |reason: String| EngineError::State {
            path: path.display().to_string(),
            reason,
        };
        let mut state = match fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str::<StateFile>(&text)
                .map_err(|e| err(format!("not a valid state file ({e})")))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => StateFile::empty(twin),
            Err(e) => return Err(err(e.to_string())),
        };
        replay(&state_dir.join(format!("{twin}.journal")), &mut state).map_err(err)?;
        Ok(state)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum JournalEntry {
    Put {
        record: Box<ResourceRecord>,
    },
    Remove {
        id: ResourceId,
    },
    Scope {
        provider: String,
        scope: Scope,
        #[serde(default)]
        twin_id: Option<String>,
    },
}

struct Inner {
    state: StateFile,
    journal: Option<File>,
}

/// The state file of one twin, opened exclusively by one command at a time.
pub struct StateStore {
    path: PathBuf,
    journal_path: PathBuf,
    inner: Mutex<Inner>,
    // Held for the store's lifetime: an advisory lock so two deployers never interleave.
    _lock: File,
}

impl StateStore {
    /// Opens (or starts) the state of `twin` under `dir/.deployer/`, replaying a journal left
    /// by an interrupted command. Fails if another command holds the twin's lock.
    pub fn open(dir: &Path, twin: &str) -> Result<StateStore, EngineError> {
        let state_dir = dir.join(".deployer");
        let path = state_dir.join(format!("{twin}.json"));
        let err = |reason: String| EngineError::State {
            path: path.display().to_string(),
            reason,
        };
        fs::create_dir_all(&state_dir)
            .map_err(|e| err(format!("cannot create {}: {e}", state_dir.display())))?;
        {
            use std::os::unix::fs::PermissionsExt;
            // The state names every resource and holds the devices' keys below it.
            fs::set_permissions(&state_dir, fs::Permissions::from_mode(0o700))
                .map_err(|e| err(format!("cannot restrict {}: {e}", state_dir.display())))?;
        }
        let lock_path = state_dir.join(format!("{twin}.lock"));
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| err(format!("cannot open lock {}: {e}", lock_path.display())))?;
        // SAFETY: flock on a file descriptor we own for the duration of the call.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(err(
                "another deployer command is running on this twin; wait for it to finish".into(),
            ));
        }
        let mut state = match fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str::<StateFile>(&text).map_err(|e| {
                err(format!(
                    "not a valid state file ({e}); move it away to start over (destroy still finds resources by name)"
                ))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => StateFile::empty(twin),
            Err(e) => return Err(err(e.to_string())),
        };
        if state.version != STATE_VERSION {
            return Err(err(format!(
                "state format version {} is not supported (expected {STATE_VERSION})",
                state.version
            )));
        }
        let journal_path = state_dir.join(format!("{twin}.journal"));
        let replayed = replay(&journal_path, &mut state).map_err(err)?;
        let store = StateStore {
            path,
            journal_path,
            inner: Mutex::new(Inner {
                state,
                journal: None,
            }),
            _lock: lock,
        };
        if replayed {
            store.flush()?;
        }
        Ok(store)
    }

    /// The state file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A copy of the current state.
    pub fn snapshot(&self) -> StateFile {
        self.lock().state.clone()
    }

    /// Records a resource (insert or replace), durably before returning.
    pub fn put(&self, record: ResourceRecord) -> Result<(), EngineError> {
        let mut inner = self.lock();
        let entry = JournalEntry::Put {
            record: Box::new(record.clone()),
        };
        self.append(&mut inner, &entry)?;
        inner.state.resources.insert(record.spec.id.clone(), record);
        Ok(())
    }

    /// Records the scope of `provider` (and the twin id, when the state has none yet).
    pub fn set_scope(
        &self,
        provider: &str,
        scope: Scope,
        twin_id: Option<String>,
    ) -> Result<(), EngineError> {
        let mut inner = self.lock();
        let twin_id = inner.state.twin_id.clone().or(twin_id);
        if inner.state.scopes.get(provider) == Some(&scope) && inner.state.twin_id == twin_id {
            return Ok(());
        }
        let entry = JournalEntry::Scope {
            provider: provider.to_string(),
            scope: scope.clone(),
            twin_id: twin_id.clone(),
        };
        self.append(&mut inner, &entry)?;
        inner.state.scopes.insert(provider.to_string(), scope);
        inner.state.twin_id = twin_id;
        Ok(())
    }

    /// Forgets a resource (after it was deleted).
    pub fn remove(&self, id: &ResourceId) -> Result<(), EngineError> {
        let mut inner = self.lock();
        if !inner.state.resources.contains_key(id) {
            return Ok(());
        }
        self.append(&mut inner, &JournalEntry::Remove { id: id.clone() })?;
        inner.state.resources.remove(id);
        Ok(())
    }

    /// Writes the snapshot atomically and empties the journal.
    pub fn flush(&self) -> Result<(), EngineError> {
        let mut inner = self.lock();
        let err = |reason: String| EngineError::State {
            path: self.path.display().to_string(),
            reason,
        };
        let text = serde_json::to_string_pretty(&inner.state).map_err(|e| err(e.to_string()))?;
        let tmp = self.path.with_extension("json.tmp");
        let write = || -> std::io::Result<()> {
            let mut f = private_file(&tmp, false)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, &self.path)
        };
        write().map_err(|e| err(format!("cannot write: {e}")))?;
        inner.journal = None;
        match fs::remove_file(&self.journal_path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(err(format!("cannot remove journal: {e}"))),
        }
    }

    fn append(&self, inner: &mut Inner, entry: &JournalEntry) -> Result<(), EngineError> {
        let err = |reason: String| EngineError::State {
            path: self.journal_path.display().to_string(),
            reason,
        };
        if inner.journal.is_none() {
            let f = private_file(&self.journal_path, true).map_err(|e| err(e.to_string()))?;
            inner.journal = Some(f);
        }
        let mut line = serde_json::to_vec(entry).map_err(|e| err(e.to_string()))?;
        line.push(b'\n');
        match inner.journal.as_mut() {
            // One write call per line: a kill -9 can tear at most the last line. The data is
            // synced before the call returns, so a recorded change survives a power cut too.
            Some(f) => f
                .write_all(&line)
                .and_then(|()| f.sync_data())
                .map_err(|e| err(e.to_string())),
            None => Err(err("journal not open".into())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the map half-updated (single insert or
        // remove), so a poisoned lock is still safe to use.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Opens a file only its owner can read and write (mode 0600): the state names every resource
/// and its cloud ids. Existing files are narrowed to 0600 too.
fn private_file(path: &Path, append: bool) -> std::io::Result<File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut o = OpenOptions::new();
    o.create(true).mode(0o600);
    if append {
        o.append(true);
    } else {
        o.write(true).truncate(true);
    }
    let f = o.open(path)?;
    f.set_permissions(fs::Permissions::from_mode(0o600))?;
    Ok(f)
}

/// Applies a journal to the state; true if there was one.
fn replay(journal: &Path, state: &mut StateFile) -> Result<bool, String> {
    let f = match File::open(journal) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(format!("cannot read journal {}: {e}", journal.display())),
    };
    let lines: Vec<String> = BufReader::new(f)
        .lines()
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot read journal {}: {e}", journal.display()))?;
    let last = lines.len().saturating_sub(1);
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<JournalEntry>(line) {
            Ok(JournalEntry::Put { record }) => {
                state.resources.insert(record.spec.id.clone(), *record);
            }
            Ok(JournalEntry::Remove { id }) => {
                state.resources.remove(&id);
            }
            Ok(JournalEntry::Scope {
                provider,
                scope,
                twin_id,
            }) => {
                state.scopes.insert(provider, scope);
                if state.twin_id.is_none() {
                    state.twin_id = twin_id;
                }
            }
            // A torn final line is what kill -9 mid-write leaves; anything earlier is damage.
            Err(_) if i == last => {}
            Err(e) => {
                return Err(format!(
                    "journal {} line {} is damaged: {e}",
                    journal.display(),
                    i + 1
                ))
            }
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use twin_config::{Layer, ProviderName};

    fn record(id: &str) -> ResourceRecord {
        ResourceRecord {
            spec: ResourceSpec::new(ResourceId(id.into()), Layer::L1, ProviderName::Aws, "k", id),
            status: RecordStatus::Created,
            observed: Some(Observed::new(format!("arn:{id}"), serde_json::json!({}))),
        }
    }

    #[test]
    fn survives_reopen_and_replays_journal_with_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = StateStore::open(dir.path(), "t").unwrap();
            s.put(record("a")).unwrap();
            s.put(record("b")).unwrap();
            s.remove(&ResourceId("a".into())).unwrap();
            // no flush: as if killed
        }
        let journal = dir.path().join(".deployer/t.journal");
        let mut f = OpenOptions::new().append(true).open(&journal).unwrap();
        f.write_all(b"{\"op\":\"put\",\"rec").unwrap();
        drop(f);
        let s = StateStore::open(dir.path(), "t").unwrap();
        let ids: Vec<_> = s.snapshot().resources.keys().cloned().collect();
        assert_eq!(ids, vec![ResourceId("b".into())]);
        assert!(!journal.exists(), "journal folded into the snapshot");
        assert!(dir.path().join(".deployer/t.json").exists());
    }

    #[test]
    fn state_files_are_private_and_journal_lines_are_synced() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let s = StateStore::open(dir.path(), "t").unwrap();
        s.put(record("a")).unwrap();
        let mode = |p: &str| {
            fs::metadata(dir.path().join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(".deployer/t.journal"), 0o600);
        s.flush().unwrap();
        assert_eq!(mode(".deployer/t.json"), 0o600);
        assert_eq!(mode(".deployer"), 0o700);
    }

    #[test]
    fn second_opener_is_refused_while_first_holds_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let _first = StateStore::open(dir.path(), "t").unwrap();
        let e = StateStore::open(dir.path(), "t").err().unwrap();
        assert!(e.to_string().contains("another deployer command"), "{e}");
    }

    #[test]
    fn damaged_snapshot_is_reported_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join(".deployer")).unwrap();
        fs::write(dir.path().join(".deployer/t.json"), "{not json").unwrap();
        let e = StateStore::open(dir.path(), "t").err().unwrap();
        assert!(e.to_string().contains("not a valid state file"), "{e}");
        assert_eq!(
            fs::read_to_string(dir.path().join(".deployer/t.json")).unwrap(),
            "{not json"
        );
    }
}
