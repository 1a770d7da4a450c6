//! Arbitrary bytes through the watchdog's tolerant reader and `validate`.
//!
//! Neither may panic, whatever the bytes, and they must agree:
//! - a body `validate` finds no problem in is one the reader accepts;
//! - an envelope the reader accepts serialises, and reading what was written
//!   is a fixed point after one round (the writer's form reads back as itself).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared_schema::{read_envelope, validate, Envelope, Reading};

fn round(env: &Envelope) -> Envelope {
    let bytes = serde_json::to_vec(env).expect("an envelope serialises");
    match read_envelope(&bytes) {
        Ok(Reading::Enabled { envelope, .. }) => envelope,
        other => panic!(
            "the writer's form does not read back: {other:?}\n{}",
            String::from_utf8_lossy(&bytes)
        ),
    }
}

fuzz_target!(|data: &[u8]| {
    let read = read_envelope(data);
    let problems = validate(data);
    if problems.is_empty() {
        assert!(
            read.is_ok(),
            "validate found no problem but read_envelope failed: {read:?}"
        );
    }
    if let Ok(Reading::Enabled { envelope, .. }) = read {
        let once = round(&envelope);
        let twice = round(&once);
        assert_eq!(once, twice, "reading the writer's form is not stable");
    }
});
