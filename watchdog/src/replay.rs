//! `watchdog replay FILE`: a recording fed through the same engine, on the
//! envelopes' own clocks (and `received_at` where an emitter clock stood
//! still), printing the alert lines a live run would have written. No
//! sleeping, no sinks, no files written: deterministic, for tuning rules on
//! real data and for regression tests.

use std::io::{BufRead, Write};

use shared_schema::RecordLine;

use crate::engine::{Engine, Observation};

/// What a replay went through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Replayed {
    /// Record lines fed to the engine.
    pub records: usize,
    /// Lines that were not record lines (reported, skipped).
    pub skipped: usize,
    /// Alert lines printed.
    pub alerts: usize,
}

/// Replays every record line of `input` through `engine`, writing alert lines to `out`.
pub fn replay(
    input: impl BufRead,
    engine: &mut Engine,
    out: &mut impl Write,
) -> std::io::Result<Replayed> {
    let mut stats = Replayed::default();
    for (i, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let record: RecordLine = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(line = i + 1, error = %e, "not a record line; skipped");
                stats.skipped += 1;
                continue;
            }
        };
        let obs = Observation::from_value(record.received_at, record.envelope);
        let eval = engine.observe(&record.target, &obs);
        for l in &eval.lines {
            writeln!(out, "{}", l.to_json_line())?;
        }
        stats.records += 1;
        stats.alerts += eval.lines.len();
    }
    out.flush()?;
    Ok(stats)
}
