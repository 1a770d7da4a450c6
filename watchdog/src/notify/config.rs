//! The `[notify]` table of the config file (CONTRACT.md section 5).
//!
//! STUB: filled in by the notifications work (issue 5). Keep `Default`,
//! `Deserialize` with `deny_unknown_fields`, and `Serialize` (for
//! `--print-config`, which must never show a secret).

use serde::{Deserialize, Serialize};

/// `[notify]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// How often a firing alert is repeated in the log and to sinks.
    #[serde(default, with = "humantime_serde_opt")]
    pub repeat_interval: Option<std::time::Duration>,
}

mod humantime_serde_opt {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        text.map(|t| humantime::parse_duration(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}
