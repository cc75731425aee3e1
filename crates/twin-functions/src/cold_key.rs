//! Cold object keys: `<device>/<window-start>-<window-end>/chunk-<index>.json` (SPEC §6).
//!
//! A window is what one hot-to-cold run moved for one device: from its oldest record (inclusive)
//! to the run's cut-off (exclusive). Times are in [`Timestamp::compact`] form, so the key holds
//! no `:` and the `-` between start and end is unambiguous. The keys are derived from the data and
//! the cut-off, so the movers can find (and verify) what an earlier, crashed run wrote.

use crate::timestamp::Timestamp;
use std::fmt;

/// The window part of a key: which records of which device an object set covers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ColdWindow {
    /// The device.
    pub device_id: String,
    /// The window's oldest record time (inclusive).
    pub start: Timestamp,
    /// The run's cut-off (exclusive): every record in the window is older.
    pub end: Timestamp,
}

/// A parsed cold object key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ColdObjectKey {
    /// The window.
    pub window: ColdWindow,
    /// The chunk's index inside the window, from 0.
    pub index: u32,
}

impl ColdWindow {
    /// Whether a record time falls inside the window.
    pub fn contains(&self, t: Timestamp) -> bool {
        self.start <= t && t < self.end
    }

    /// The key prefix of every object of the window (`<device>/<start>-<end>/`).
    pub fn prefix(&self) -> String {
        format!(
            "{}/{}-{}/",
            self.device_id,
            self.start.compact(),
            self.end.compact()
        )
    }
}

impl ColdObjectKey {
    /// Parses a key; `None` for objects this pipeline did not write.
    pub fn parse(key: &str) -> Option<Self> {
        let mut parts = key.rsplitn(3, '/');
        let file = parts.next()?;
        let window = parts.next()?;
        let device_id = parts.next()?;
        if device_id.is_empty() {
            return None;
        }
        let index = file.strip_prefix("chunk-")?.strip_suffix(".json")?;
        if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let index = index.parse().ok()?;
        let (start, end) = window.split_once('-')?;
        let window = ColdWindow {
            device_id: device_id.to_string(),
            start: Timestamp::parse_compact(start).ok()?,
            end: Timestamp::parse_compact(end).ok()?,
        };
        Some(Self { window, index })
    }
}

impl fmt::Display for ColdObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}chunk-{}.json", self.window.prefix(), self.index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_naming_follows_the_spec() {
        let key = ColdObjectKey {
            window: ColdWindow {
                device_id: "temperature-sensor-1".into(),
                start: Timestamp::parse("2025-10-01T00:00:00.250Z").unwrap(),
                end: Timestamp::parse("2025-10-05T13:23:11.203Z").unwrap(),
            },
            index: 12,
        };
        let text = key.to_string();
        assert_eq!(
            text,
            "temperature-sensor-1/20251001T000000250Z-20251005T132311203Z/chunk-12.json"
        );
        assert_eq!(ColdObjectKey::parse(&text), Some(key));
    }

    #[test]
    fn foreign_keys_are_not_parsed() {
        for k in [
            "readme.txt",
            "dev/x-y/chunk-1.json",
            "dev/20251001T000000250Z-20251005T132311203Z/chunk-.json",
            "dev/20251001T000000250Z-20251005T132311203Z/chunk-1.csv",
            "/20251001T000000250Z-20251005T132311203Z/chunk-1.json",
            "dev/20251001T000000250Z-20251005T132311203Z/chunk-+1.json",
        ] {
            assert_eq!(ColdObjectKey::parse(k), None, "{k}");
        }
    }

    #[test]
    fn window_is_start_inclusive_end_exclusive() {
        let w = ColdWindow {
            device_id: "d".into(),
            start: Timestamp::from_millis(10).unwrap(),
            end: Timestamp::from_millis(20).unwrap(),
        };
        assert!(w.contains(Timestamp::from_millis(10).unwrap()));
        assert!(w.contains(Timestamp::from_millis(19).unwrap()));
        assert!(!w.contains(Timestamp::from_millis(20).unwrap()));
        assert!(!w.contains(Timestamp::from_millis(9).unwrap()));
    }
}
