//! Record timestamps: UTC, millisecond precision, written `YYYY-MM-DDTHH:mm:ss.SSSZ` so that text
//! order is time order (the hot store's sort key relies on it).

use chrono::{DateTime, NaiveDate, SecondsFormat, TimeZone, Utc};
use std::fmt;

/// The earliest accepted instant (1970-01-01): older dates are certainly a device clock fault.
const MIN_MILLIS: i64 = 0;
/// The latest accepted instant (9999-12-31T23:59:59.999Z): later years break the fixed width.
const MAX_MILLIS: i64 = 253_402_300_799_999;

/// A UTC instant with millisecond precision.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

/// A text that is not a timestamp this pipeline accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a timestamp like 2025-11-04T13:23:11.203Z (UTC, years 1970-9999)")]
pub struct TimestampError {
    /// The rejected text.
    pub input: String,
}

/// Which end of a range a date-only bound (`2025-11-04`) stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeEnd {
    /// The first millisecond of the day.
    Start,
    /// The last millisecond of the day.
    End,
}

impl Timestamp {
    /// The current instant.
    pub fn now() -> Self {
        Self(Utc::now().timestamp_millis().clamp(MIN_MILLIS, MAX_MILLIS))
    }

    /// The instant `millis` after the Unix epoch.
    pub fn from_millis(millis: i64) -> Result<Self, TimestampError> {
        if (MIN_MILLIS..=MAX_MILLIS).contains(&millis) {
            Ok(Self(millis))
        } else {
            Err(TimestampError {
                input: format!("{millis} ms since the epoch"),
            })
        }
    }

    /// Milliseconds since the Unix epoch.
    pub fn millis(self) -> i64 {
        self.0
    }

    /// Parses any RFC 3339 instant (any offset, any sub-second precision) and normalises it to UTC
    /// milliseconds; devices do not all write the canonical form.
    pub fn parse(input: &str) -> Result<Self, TimestampError> {
        let err = || TimestampError {
            input: input.to_string(),
        };
        let parsed = DateTime::parse_from_rfc3339(input.trim()).map_err(|_| err())?;
        Self::from_millis(parsed.with_timezone(&Utc).timestamp_millis()).map_err(|_| err())
    }

    /// Like [`Timestamp::parse`], but also accepts a bare date, read as the start or end of that day
    /// (so `endDate=2025-11-04` includes the whole day).
    pub fn parse_bound(input: &str, end: RangeEnd) -> Result<Self, TimestampError> {
        if let Ok(day) = NaiveDate::parse_from_str(input.trim(), "%Y-%m-%d") {
            let err = || TimestampError {
                input: input.to_string(),
            };
            let start = day.and_hms_opt(0, 0, 0).ok_or_else(err)?;
            let start = Utc.from_utc_datetime(&start).timestamp_millis();
            let millis = match end {
                RangeEnd::Start => start,
                RangeEnd::End => start + 86_400_000 - 1,
            };
            return Self::from_millis(millis).map_err(|_| err());
        }
        Self::parse(input)
    }

    /// The canonical text form, `YYYY-MM-DDTHH:mm:ss.SSSZ`.
    pub fn canonical(self) -> String {
        self.datetime().to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    /// The compact form used inside object keys, `YYYYMMDDTHHmmssSSSZ`: no `-` or `:`, so a key's
    /// `<start>-<end>` segment splits unambiguously and needs no URL escaping.
    pub fn compact(self) -> String {
        self.datetime().format("%Y%m%dT%H%M%S%3fZ").to_string()
    }

    /// Parses the compact form written by [`Timestamp::compact`].
    pub fn parse_compact(input: &str) -> Result<Self, TimestampError> {
        let err = || TimestampError {
            input: input.to_string(),
        };
        let body = input.strip_suffix('Z').ok_or_else(err)?;
        if body.len() != 18 || !body.is_ascii() {
            return Err(err());
        }
        let (secs, millis) = body.split_at(15);
        let naive =
            chrono::NaiveDateTime::parse_from_str(secs, "%Y%m%dT%H%M%S").map_err(|_| err())?;
        let millis: i64 = millis.parse().map_err(|_| err())?;
        Self::from_millis(Utc.from_utc_datetime(&naive).timestamp_millis() + millis)
            .map_err(|_| err())
    }

    /// This instant minus whole days (saturating at the epoch).
    pub fn minus_days(self, days: u32) -> Self {
        Self((self.0 - i64::from(days) * 86_400_000).max(MIN_MILLIS))
    }

    /// This instant plus whole days (saturating at the latest accepted instant).
    pub fn plus_days(self, days: u32) -> Self {
        Self((self.0 + i64::from(days) * 86_400_000).min(MAX_MILLIS))
    }

    fn datetime(self) -> DateTime<Utc> {
        // The constructor keeps the value inside chrono's range, so this cannot fall back.
        Utc.timestamp_millis_opt(self.0)
            .single()
            .unwrap_or_default()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical())
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({})", self.canonical())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_round_trip() {
        let t = Timestamp::parse("2025-11-04T13:23:11.203Z").unwrap();
        assert_eq!(t.canonical(), "2025-11-04T13:23:11.203Z");
    }

    #[test]
    fn normalises_offsets_and_precision() {
        let t = Timestamp::parse("2025-11-04T14:23:11.2034567+01:00").unwrap();
        assert_eq!(t.canonical(), "2025-11-04T13:23:11.203Z");
        let t = Timestamp::parse("2025-11-04T13:23:11Z").unwrap();
        assert_eq!(t.canonical(), "2025-11-04T13:23:11.000Z");
    }

    #[test]
    fn rejects_non_timestamps() {
        for bad in [
            "",
            "yesterday",
            "2025-13-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
            "12345",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn date_only_bounds_cover_the_whole_day() {
        let s = Timestamp::parse_bound("2025-11-04", RangeEnd::Start).unwrap();
        let e = Timestamp::parse_bound("2025-11-04", RangeEnd::End).unwrap();
        assert_eq!(s.canonical(), "2025-11-04T00:00:00.000Z");
        assert_eq!(e.canonical(), "2025-11-04T23:59:59.999Z");
    }

    #[test]
    fn text_order_is_time_order() {
        let mut ts: Vec<Timestamp> = [
            "2025-11-04T13:23:11.203Z",
            "2024-01-01T00:00:00Z",
            "2025-11-04T13:23:11.2Z",
            "2025-11-04T13:23:11.21Z",
            "2025-11-04T09:00:00-05:00",
        ]
        .iter()
        .map(|s| Timestamp::parse(s).unwrap())
        .collect();
        ts.sort();
        let texts: Vec<String> = ts.iter().map(|t| t.canonical()).collect();
        let mut sorted_texts = texts.clone();
        sorted_texts.sort();
        assert_eq!(texts, sorted_texts);
        assert_eq!(texts[0], "2024-01-01T00:00:00.000Z");
        assert_eq!(texts[4], "2025-11-04T14:00:00.000Z");
    }

    #[test]
    fn compact_round_trip() {
        let t = Timestamp::parse("2025-11-04T13:23:11.203Z").unwrap();
        assert_eq!(t.compact(), "20251104T132311203Z");
        assert_eq!(Timestamp::parse_compact("20251104T132311203Z").unwrap(), t);
        assert!(Timestamp::parse_compact("2025-11-04T13:23:11.203Z").is_err());
    }

    #[test]
    fn day_arithmetic() {
        let t = Timestamp::parse("2025-11-04T13:23:11.203Z").unwrap();
        assert_eq!(t.minus_days(30).canonical(), "2025-10-05T13:23:11.203Z");
        assert_eq!(t.plus_days(1).canonical(), "2025-11-05T13:23:11.203Z");
    }
}
