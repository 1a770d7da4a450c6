//! UTC instants as the contract writes and reads them.
//!
//! Writers produce one form only: RFC 3339 in UTC with milliseconds and `Z`
//! (`2026-11-22T10:00:00.123Z`). Readers accept any RFC 3339 form (with or
//! without a fraction, `Z` or an offset), because older emitters wrote whole
//! seconds. [`Timestamp::parse_lenient`] additionally accepts SQLite's
//! `datetime('now')` form, which is what orchestrators store in their tables.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

/// One instant in UTC, serialised as RFC 3339 with milliseconds and `Z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

/// The text was not a timestamp in any accepted form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an RFC 3339 timestamp: {0:?}")]
pub struct TimestampError(pub String);

impl Timestamp {
    /// The current wall clock.
    pub fn now() -> Self {
        Self(OffsetDateTime::now_utc())
    }

    /// Parses strict RFC 3339 (any fraction, `Z` or an offset).
    pub fn parse(text: &str) -> Result<Self, TimestampError> {
        OffsetDateTime::parse(text.trim(), &Rfc3339)
            .map(|t| Self(t.to_offset(UtcOffset::UTC)))
            .map_err(|_| TimestampError(text.to_owned()))
    }

    /// Parses RFC 3339 or SQLite's `YYYY-MM-DD HH:MM:SS[.fff]` (taken as UTC).
    pub fn parse_lenient(text: &str) -> Result<Self, TimestampError> {
        if let Ok(ts) = Self::parse(text) {
            return Ok(ts);
        }
        let sqlite = time::macros::format_description!(
            version = 2,
            "[year]-[month]-[day][first [T][ ]][hour]:[minute]:[second][optional [.[subsecond]]]"
        );
        PrimitiveDateTime::parse(text.trim(), &sqlite)
            .map(|t| Self(t.assume_utc()))
            .or_else(|_| {
                // A space-separated date with an explicit offset, e.g. "2026-11-22 10:00:00+00:00".
                Self::parse(&text.trim().replacen(' ', "T", 1)).map_err(|_| ())
            })
            .map_err(|_| TimestampError(text.to_owned()))
    }

    /// Builds an instant from Unix milliseconds; `None` when out of range.
    pub fn from_unix_ms(ms: i64) -> Option<Self> {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .ok()
            .map(Self)
    }

    /// Milliseconds since the Unix epoch (sub-millisecond digits truncated).
    pub fn unix_ms(&self) -> i64 {
        // Years stay within ±9999, so the quotient always fits.
        i64::try_from(self.0.unix_timestamp_nanos().div_euclid(1_000_000)).unwrap_or(i64::MAX)
    }

    /// Seconds since the Unix epoch, with fraction.
    pub fn unix_seconds_f64(&self) -> f64 {
        self.0.unix_timestamp_nanos() as f64 / 1e9
    }

    /// `self - earlier` in seconds (negative when `earlier` is later).
    pub fn seconds_since(&self, earlier: &Timestamp) -> f64 {
        (self.0 - earlier.0).as_seconds_f64()
    }

    /// This instant moved by `seconds` (saturating at the representable range).
    pub fn plus_seconds(&self, seconds: f64) -> Self {
        let delta = time::Duration::seconds_f64(seconds);
        Self(self.0.checked_add(delta).unwrap_or(self.0))
    }

    /// The underlying `time` value.
    pub fn as_offset_date_time(&self) -> OffsetDateTime {
        self.0
    }
}

impl From<OffsetDateTime> for Timestamp {
    fn from(t: OffsetDateTime) -> Self {
        Self(t.to_offset(UtcOffset::UTC))
    }
}

impl From<std::time::SystemTime> for Timestamp {
    fn from(t: std::time::SystemTime) -> Self {
        Self(OffsetDateTime::from(t))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.0;
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        )
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_milliseconds_and_z() {
        let ts = Timestamp::parse("2026-11-22T12:00:00.123456+02:00").expect("valid");
        assert_eq!(ts.to_string(), "2026-11-22T10:00:00.123Z");
    }

    #[test]
    fn reads_second_precision_and_offsets() {
        let a = Timestamp::parse("2026-11-22T10:00:00Z").expect("seconds");
        let b = Timestamp::parse("2026-11-22T11:00:00.000+01:00").expect("offset");
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "2026-11-22T10:00:00.000Z");
    }

    #[test]
    fn lenient_reads_sqlite_datetime() {
        let a = Timestamp::parse_lenient("2026-11-22 10:00:05").expect("sqlite form");
        assert_eq!(a.to_string(), "2026-11-22T10:00:05.000Z");
        let b = Timestamp::parse_lenient("2026-11-22 10:00:05.250").expect("fraction");
        assert_eq!(b.to_string(), "2026-11-22T10:00:05.250Z");
        assert!(
            Timestamp::parse("2026-11-22 10:00:05").is_err(),
            "strict form stays strict"
        );
        assert!(Timestamp::parse_lenient("yesterday").is_err());
    }

    #[test]
    fn arithmetic() {
        let a = Timestamp::parse("2026-11-22T10:00:00Z").expect("valid");
        let b = a.plus_seconds(90.5);
        assert_eq!(b.seconds_since(&a), 90.5);
        assert_eq!(Timestamp::from_unix_ms(a.unix_ms()), Some(a));
    }
}
