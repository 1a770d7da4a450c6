//! Request rates as written on a command line or in a config file: `N/s`,
//! `N/min` or `N/h` (a bare `N` means per second), one type for every flag
//! and key so the emitter's `--rate-limit` and a webhook's `rate` read alike.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `count` events per `per`; `count` is also the burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// How many per period (also the burst).
    pub count: NonZeroU32,
    /// The period.
    pub per: Per,
}

/// The period of a [`Rate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Per {
    /// `/s`
    Second,
    /// `/min`
    Minute,
    /// `/h`
    Hour,
}

impl Per {
    /// The period as a duration.
    pub fn duration(self) -> Duration {
        match self {
            Self::Second => Duration::from_secs(1),
            Self::Minute => Duration::from_secs(60),
            Self::Hour => Duration::from_secs(3600),
        }
    }
}

impl Rate {
    /// `count` per second.
    pub fn per_second(count: NonZeroU32) -> Self {
        Self {
            count,
            per: Per::Second,
        }
    }

    /// How many per period (also the burst).
    pub fn count(&self) -> u32 {
        self.count.get()
    }

    /// The period the count is over.
    pub fn period(&self) -> Duration {
        self.per.duration()
    }

    /// The time between two events at the steady rate (`per / count`).
    pub fn interval(&self) -> Duration {
        self.per.duration() / self.count.get()
    }
}

impl FromStr for Rate {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("invalid rate {text:?}: write N/s, N/min or N/h, e.g. \"10/min\"");
        let t = text.trim();
        let (n, unit) = t.split_once('/').unwrap_or((t, "s"));
        let count = n.trim().parse::<NonZeroU32>().map_err(|_| bad())?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => Per::Second,
            "m" | "min" | "minute" => Per::Minute,
            "h" | "hour" => Per::Hour,
            _ => return Err(bad()),
        };
        Ok(Self { count, per })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per {
            Per::Second => "s",
            Per::Minute => "min",
            Per::Hour => "h",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_writes_and_refuses() -> Result<(), String> {
        let r: Rate = "10/min".parse()?;
        assert_eq!(r.to_string(), "10/min");
        assert_eq!(r.interval(), Duration::from_secs(6));
        assert_eq!("20".parse::<Rate>()?.to_string(), "20/s");
        assert_eq!("20/s".parse::<Rate>()?.per, Per::Second);
        assert!("0/s".parse::<Rate>().is_err());
        assert!("10/week".parse::<Rate>().is_err());
        assert!("ten/s".parse::<Rate>().is_err());
        let m: Rate = "120/m".parse()?;
        assert_eq!((m.count(), m.period()), (120, Duration::from_secs(60)));
        assert_eq!(m.to_string(), "120/min");
        assert_eq!(" 90/h ".parse::<Rate>()?.to_string(), "90/h");
        Ok(())
    }

    #[test]
    fn serde_uses_the_written_form() -> Result<(), serde::de::value::Error> {
        use serde::de::value::{Error, StrDeserializer};
        let r = Rate::deserialize(StrDeserializer::<Error>::new("20/s"))?;
        assert_eq!(
            r,
            Rate::per_second(NonZeroU32::new(20).unwrap_or(NonZeroU32::MIN))
        );
        assert!(Rate::deserialize(StrDeserializer::<Error>::new("fast")).is_err());
        Ok(())
    }
}
