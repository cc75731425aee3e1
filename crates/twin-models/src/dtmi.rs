//! Valid DTMIs and DTDL names from config ids, which may contain `-`, `.`, start with a digit or
//! hold any character (entity ids are free text).
//!
//! The mapping, for one id (a DTMI segment or a DTDL `name`):
//! - an id that already is a valid segment (a letter, then letters, digits and single
//!   underscores, not ending in `_`), has no `__` and fits the length cap is kept as it is;
//! - any other id becomes its *escaped* form: every character that is not an ASCII letter or
//!   digit becomes `_`, runs of `_` shrink to one, an `x` goes in front when it does not start
//!   with a letter, the result is cut to leave room for the suffix, and `__` plus the first
//!   8 hex digits of the SHA-256 of the original id is appended.
//!
//! Kept ids never contain `__` and escaped ones always end in `__<hash>`, so a kept id never
//! equals an escaped one; two escaped ids are equal only when their hashes collide, which
//! [`check_unique`] catches for a whole twin (an error naming both ids, never a silent merge).
//! The mapping is a pure function of the id: adding a device never renames another.

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The DTDL v3 context every generated interface declares.
pub const DTDL_CONTEXT: &str = "dtmi:dtdl:context;3";

/// First segment of every generated DTMI: keeps the twin's name out of the segments DTDL
/// reserves (`dtmi:dtdl:…`, `dtmi:standard:…`) and names who made the model.
pub const NAMESPACE: &str = "deployer";

/// The version every generated interface carries (`;1`).
pub const VERSION: u32 = 1;

/// Longest segment kept as it is, so that `dtmi:deployer:<twin>:<kind>:<id>;1` stays under 128
/// characters: far inside DTDL's 2048, and short enough for any tool that still holds DTDL v2's
/// older, tighter limits.
pub const MAX_SEGMENT: usize = 40;

/// Longest DTDL `name` kept as it is (DTDL v2's limit, which v3 raised; ADT accepts both).
pub const MAX_NAME: usize = 64;

/// Length of the hash suffix's hex digits.
const HASH_HEX: usize = 8;

/// `id` as one DTMI path segment (see the module doc for the mapping).
pub fn segment(id: &str) -> String {
    escape(id, MAX_SEGMENT)
}

/// `id` as a DTDL content `name` (a property or relationship name), by the same mapping.
pub fn name(id: &str) -> String {
    escape(id, MAX_NAME)
}

/// The DTMI of a generated interface: `dtmi:deployer:<twin>:<kind>:<id>;1`, each part mapped
/// by [`segment`]; `kind` is one of the fixed words the generator uses (`device`, `entity`).
pub fn interface_id(twin: &str, kind: &str, id: &str) -> String {
    format!(
        "dtmi:{NAMESPACE}:{}:{}:{};{VERSION}",
        segment(twin),
        segment(kind),
        segment(id)
    )
}

/// The DTMI of a base interface of the twin: `dtmi:deployer:<twin>:<name>;1`.
pub fn base_id(twin: &str, base: &str) -> String {
    format!(
        "dtmi:{NAMESPACE}:{}:{};{VERSION}",
        segment(twin),
        segment(base)
    )
}

/// Whether `s` is a valid DTMI segment / DTDL name in DTDL v3: a letter, then letters,
/// digits and underscores, not ending in an underscore.
pub fn is_valid_segment(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() => {}
        _ => return false,
    }
    s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !s.ends_with('_')
}

/// Whether `dtmi` is a valid DTMI as generated here: `dtmi:`, segments, `;` and a version.
pub fn is_valid_dtmi(dtmi: &str) -> bool {
    let Some(rest) = dtmi.strip_prefix("dtmi:") else {
        return false;
    };
    let Some((path, version)) = rest.rsplit_once(';') else {
        return false;
    };
    let version_ok = !version.is_empty()
        && version.chars().all(|c| c.is_ascii_digit())
        && !version.starts_with('0');
    version_ok && path.split(':').all(is_valid_segment)
}

fn escape(id: &str, cap: usize) -> String {
    if id.chars().count() <= cap && is_valid_segment(id) && !id.contains("__") {
        return id.to_string();
    }
    let mut out = String::new();
    for c in id.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    if !out.starts_with(|c: char| c.is_ascii_alphabetic()) {
        out.insert(0, 'x');
    }
    // Room for `__` and the hash; all characters are ASCII here, so byte length is char count.
    out.truncate(cap - 2 - HASH_HEX);
    let trimmed = out.trim_end_matches('_').len();
    out.truncate(trimmed);
    let hash = hex::encode(Sha256::digest(id.as_bytes()));
    format!("{out}__{}", &hash[..HASH_HEX])
}

/// Two config ids that map to the same DTMI segment or DTDL name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {first:?} and {second:?} both map to {mapped:?} in DTDL; rename one of them")]
pub struct Collision {
    /// The config file the ids are in.
    pub file: String,
    /// What the ids are (`device id`, `property of device d-1`, …).
    pub what: String,
    /// The id seen first.
    pub first: String,
    /// The id seen second.
    pub second: String,
    /// What both map to.
    pub mapped: String,
}

/// Checks that `ids` (of `what`, in config file `file`) map to pairwise different results
/// under `map`; the first collision is an error naming both ids. Equal ids are one id.
pub fn check_unique<'a>(
    file: &str,
    what: &str,
    ids: impl IntoIterator<Item = &'a str>,
    map: impl Fn(&str) -> String,
) -> Result<(), Collision> {
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for id in ids {
        let mapped = map(id);
        match seen.get(&mapped) {
            Some(first) if *first != id => {
                return Err(Collision {
                    file: file.to_string(),
                    what: what.to_string(),
                    first: first.to_string(),
                    second: id.to_string(),
                    mapped,
                })
            }
            _ => {
                seen.insert(mapped, id);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_ids_are_kept() {
        for id in ["sensor", "room1", "Pressure_Sensor_2", "a"] {
            assert_eq!(segment(id), id);
            assert_eq!(name(id), id);
        }
    }

    #[test]
    fn hyphens_become_underscores_with_a_hash() {
        let s = segment("pressure-sensor-1");
        assert!(s.starts_with("pressure_sensor_1__"), "{s}");
        assert_eq!(s.len(), "pressure_sensor_1__".len() + HASH_HEX);
        assert!(is_valid_segment(&s));
        // Deterministic: the same id gives the same segment every time.
        assert_eq!(s, segment("pressure-sensor-1"));
    }

    #[test]
    fn dots_digits_first_and_other_characters_are_escaped() {
        for id in [
            "a.b",
            "1st-floor",
            "9",
            "_x",
            "x_",
            "a__b",
            "Raum ä/2",
            "-",
            "",
            "..",
        ] {
            let s = segment(id);
            assert!(is_valid_segment(&s), "{id:?} gave {s:?}");
            assert!(s.contains("__"), "{id:?} must be escaped: {s:?}");
        }
        assert!(segment("1st-floor").starts_with("x1st_floor__"));
        assert!(segment("a.b").starts_with("a_b__"));
    }

    #[test]
    fn ids_that_look_alike_do_not_collide() {
        let ids = [
            "a-b", "a_b", "a.b", "a b", "a--b", "A-b", "a-b-", "ab", "a__b",
        ];
        let mapped: std::collections::BTreeSet<String> = ids.iter().map(|i| segment(i)).collect();
        assert_eq!(mapped.len(), ids.len(), "{mapped:?}");
        assert_eq!(check_unique("f", "device id", ids, segment), Ok(()));
    }

    #[test]
    fn a_kept_id_never_equals_an_escaped_one() {
        // The escaped form of "a-b" ends in `__<hash>`; an id spelled like it contains `__`, so it
        // is escaped too and gets a different hash.
        let escaped = segment("a-b");
        assert_ne!(segment(&escaped), escaped);
    }

    #[test]
    fn long_ids_are_cut_and_hashed_within_the_cap() {
        let long = "d".repeat(60);
        let s = segment(&long);
        assert_eq!(s.len(), MAX_SEGMENT);
        assert!(is_valid_segment(&s));
        // Two long ids with the same prefix stay apart.
        assert_ne!(segment(&format!("{long}1")), segment(&format!("{long}2")));
        let n = name(&"p-".repeat(50));
        assert!(n.len() <= MAX_NAME && is_valid_segment(&n));
    }

    #[test]
    fn interface_ids_are_valid_dtmis_under_128_characters() {
        let id = interface_id(&"t".repeat(63), "device", &"9-x".repeat(40));
        assert!(is_valid_dtmi(&id), "{id}");
        assert!(id.len() <= 128, "{} chars", id.len());
        assert_eq!(
            interface_id("dt", "entity", "room1"),
            "dtmi:deployer:dt:entity:room1;1"
        );
        assert_eq!(base_id("my-twin", "Device").split(':').count(), 4);
        assert!(is_valid_dtmi(&base_id("my-twin", "Device")));
        assert!(!is_valid_dtmi("dtmi:a-b:c;1"));
        assert!(!is_valid_dtmi("dtmi:a:c"));
        assert!(!is_valid_dtmi("dtmi:a:c;0"));
    }

    #[test]
    fn a_collision_names_both_ids() {
        let err = check_unique("f", "device id", ["a", "b"], |_| "same".to_string());
        let err = err.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("\"a\"") && err.contains("\"b\"") && err.contains("rename"));
        assert_eq!(check_unique("f", "device id", ["a", "a"], segment), Ok(()));
    }
}
