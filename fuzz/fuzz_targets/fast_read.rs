//! Differential: the watchdog's one-pass typed reader against the tolerant
//! reader it stands in front of.
//!
//! `watchdog::fast_read::read` promises "the result is always the one the
//! tolerant reader gives" (it falls back to `shared_schema::read_envelope`
//! on any anomaly). Any byte string where the two differ, or either panics,
//! is a bug: the watchdog would see a different envelope than `validate`,
//! `replay` tooling and other readers do.
//!
//! Findings: (1) invalid UTF-8 inside an unknown key was accepted by the
//! typed pass (fixed in fast_read.rs, seed `invalid_utf8_unknown_key.json`);
//! (2) a number out of f64 range (`2e000000017104`) and (3) a broken
//! surrogate escape (`"\ud944hhh"`) inside an unknown key are skipped by
//! the typed pass but reject the whole body in the tolerant one (seeds
//! `ignored_number_out_of_range.json`, `ignored_lone_surrogate.json`).
//! (2) and (3) are reported, not fixed: serde_json does not check ignored
//! numbers' range nor ignored strings' `\u` escapes, and checking would
//! need a second parse; they are let through below so the fuzzer looks
//! further.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared_schema::ReadError;

fuzz_target!(|data: &[u8]| {
    let fast = watchdog::fast_read::read(data);
    let tolerant = shared_schema::read_envelope(data);
    if let (Ok(_), Err(ReadError::NotJson(msg))) = (&fast, &tolerant) {
        if msg.starts_with("number out of range") || msg.contains("hex escape") {
            return; // findings (2) and (3), known
        }
    }
    assert_eq!(fast, tolerant, "fast_read and read_envelope disagree");
});
