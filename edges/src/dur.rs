//! Durations as humans write them (`90s`, `10m`, `1h 30m`), in config files
//! and in `--print-config`, through one serde newtype so every duration key
//! reads and writes the same way.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest duration any key or flag takes: longer is a typo (or an
/// attack on `Instant + duration`), never a plan.
pub const MAX: Duration = Duration::from_secs(30 * 24 * 3600);

/// A [`Duration`] that (de)serialises with humantime, at most [`MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Dur(pub Duration);

impl Dur {
    /// `secs` whole seconds.
    pub const fn secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    /// As fractional seconds, the unit of the pure core.
    pub fn as_secs_f64(self) -> f64 {
        self.0.as_secs_f64()
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_zero() {
            return f.write_str("0s");
        }
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl std::str::FromStr for Dur {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let d = humantime::parse_duration(s.trim()).map_err(|e| {
            format!("invalid duration {s:?}: {e} (write e.g. \"90s\", \"10m\", \"1h 30m\")")
        })?;
        if d > MAX {
            return Err(format!(
                "duration {s:?} is longer than 30 days, the longest accepted"
            ));
        }
        Ok(Self(d))
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Renders seconds the way the summaries say them: `10m`, `1h 5m`, `45s`.
pub fn human_secs(secs: f64) -> String {
    let whole = if secs.is_finite() && secs > 0.0 {
        secs.round() as u64
    } else {
        0
    };
    Dur::secs(whole).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_human_forms() {
        let d: Dur = "1h 30m".parse().unwrap();
        assert_eq!(d.0, Duration::from_secs(5400));
        assert_eq!(d.to_string(), "1h 30m");
        assert_eq!(Dur::secs(0).to_string(), "0s");
        assert!("ten minutes".parse::<Dur>().is_err());
        assert_eq!(human_secs(600.4), "10m");
    }

    #[test]
    fn more_than_30_days_is_refused_with_a_clear_error() {
        assert_eq!("30days".parse::<Dur>().unwrap().0, MAX);
        let err = "31days".parse::<Dur>().unwrap_err();
        assert!(err.contains("longer than 30 days"), "{err}");
        let err = "300000000000y".parse::<Dur>().unwrap_err();
        assert!(err.contains("300000000000y"), "{err}");
    }
}
