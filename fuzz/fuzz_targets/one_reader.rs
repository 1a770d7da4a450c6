//! Differential: the one reader against the typed parse the old watchdog
//! fast path did (`serde_json` straight into the envelope types).
//!
//! The watchdog's former `fast_read.rs` was a second reader in front of the
//! tolerant one; it is gone and every path (live polls, `check`, `replay`,
//! `validate`) reads with `shared_schema::read_envelope`. What is checked:
//! - it never panics, whatever the bytes;
//! - when a plain typed parse of the whole body into `Envelope` succeeds
//!   (a well-formed envelope, nothing missing, lists within their caps), the
//!   one reader gives the same envelope with no problem;
//! - `validate` finding no problem implies the reader read it cleanly.
//!
//! The divergences fuzzing found between the two old readers are resolved
//! in favour of the contract ("readers ignore keys they do not know"):
//! invalid UTF-8 anywhere is not JSON (seed `invalid_utf8_unknown_key.json`);
//! a number beyond `f64` range (`ignored_number_out_of_range.json`) or a
//! lone surrogate escape (`ignored_lone_surrogate.json`) inside an UNKNOWN
//! key is skipped as syntax and the body reads as without that key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared_schema::{read_envelope, validate, Envelope, Reading};

fuzz_target!(|data: &[u8]| {
    let read = read_envelope(data);
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(typed) = serde_json::from_str::<Envelope>(text) {
            let whole = typed.schema_version == 1
                && typed.agents.len() <= shared_schema::caps::AGENTS
                && typed.stages.len() <= shared_schema::caps::STAGES
                && typed.degraded.len() <= shared_schema::caps::DEGRADED
                && text.contains("\"stages\"")
                && text.contains("\"agents\"");
            if whole {
                if let Ok(Reading::Enabled { envelope, .. }) = &read {
                    // Null lists read as absent by both; compare what rules see.
                    if envelope.degraded == typed.degraded {
                        assert_eq!(envelope.agents, typed.agents, "agents differ");
                        assert_eq!(envelope.queue, typed.queue, "queue differs");
                    }
                }
            }
        }
    }
    if validate(data).is_empty() {
        match read {
            Ok(Reading::Enabled { problems, .. }) => {
                assert!(problems.is_empty(), "validate clean, reader not: {problems:?}")
            }
            Ok(Reading::Disabled) => {}
            Err(e) => panic!("validate clean, reader failed: {e}"),
        }
    }
});
