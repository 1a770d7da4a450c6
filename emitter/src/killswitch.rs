//! The kill-switch: `ORCH_METRICS_ENABLED=false|0|no|off` turns the emitter off.
//!
//! It is read on every request, so an operator can flip it for a running
//! emitter's environment (e.g. in tests or under a supervisor that restarts
//! nothing) and the next scrape obeys. A disabled emitter still answers 200
//! with `{"schema_version":1,"enabled":false}` so a watchdog can tell
//! "switched off" from "down".

/// The environment variable.
pub const VAR: &str = "ORCH_METRICS_ENABLED";

/// Whether a value of [`VAR`] leaves the emitter on (unset means on).
pub fn enabled_by(value: Option<&str>) -> bool {
    match value {
        None => true,
        Some(v) => !matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "false" | "0" | "no" | "off"
        ),
    }
}

/// Reads [`VAR`] now.
pub fn enabled() -> bool {
    enabled_by(std::env::var(VAR).ok().as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_words_in_any_case() {
        for off in ["false", "0", "no", "off", "FALSE", "Off", " no\n"] {
            assert!(!enabled_by(Some(off)), "{off:?}");
        }
        for on in ["true", "1", "yes", "on", "", "whatever"] {
            assert!(enabled_by(Some(on)), "{on:?}");
        }
        assert!(enabled_by(None));
    }
}
