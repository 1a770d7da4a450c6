//! `watchdog replay FILE`: a recording fed through the same engine, on the
//! envelopes' own clocks (and `received_at` where an emitter clock stood
//! still), printing the alert lines a live run would have written. No
//! sleeping, no sinks, no files written: deterministic, for tuning rules on
//! real data and for regression tests.
//!
//! The file is read as bytes, line by line: a line that cannot be decoded
//! (not JSON, cut inside a multibyte character, invalid UTF-8, not a record
//! line) is skipped with a warning naming its number, and the replay goes
//! on. An envelope line goes through the one reader, straight from the
//! line's own bytes; a failed-poll line replays as a failed poll, so
//! `target_down` replays too. Lines carry no `diagnosis`: the process a
//! live run would have looked at is long gone, so nothing is asked.

use std::io::{BufRead, Write};

use shared_schema::{RecordLine, Recorded};

use crate::engine::{Engine, Observation};

/// What a replay went through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Replayed {
    /// Record lines fed to the engine (failed polls included).
    pub records: usize,
    /// Lines that were not record lines (reported, skipped).
    pub skipped: usize,
    /// Alert lines printed.
    pub alerts: usize,
}

/// Replays every record line of `input` through `engine`, writing alert lines to `out`.
///
/// `Err` only for an I/O error reading `input` or writing `out`; a bad line
/// is never one.
pub fn replay(
    mut input: impl BufRead,
    engine: &mut Engine,
    out: &mut impl Write,
) -> std::io::Result<Replayed> {
    let mut stats = Replayed::default();
    let mut buf = Vec::new();
    let mut number = 0usize;
    loop {
        buf.clear();
        if input.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        number += 1;
        let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let record = match RecordLine::parse(line) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(line = number, error = %e, "not a record line; skipped");
                stats.skipped += 1;
                continue;
            }
        };
        let obs = match record.outcome() {
            Recorded::Envelope(body) => Observation::from_body(record.received_at, body),
            Recorded::Failed(why) => Observation::failed(record.received_at, why),
        };
        let received = crate::receipt::recorded(record.received_at);
        let eval = engine.observe_received(&record.target, &obs, received);
        for l in &eval.lines {
            writeln!(out, "{}", l.to_json_line())?;
        }
        stats.records += 1;
        stats.alerts += eval.lines.len();
    }
    out.flush()?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::rules::RuleSet;
    use shared_schema::{AlertEvent, AlertLine, Timestamp};
    use std::time::Duration;

    fn t(s: f64) -> Timestamp {
        Timestamp::parse("2026-11-22T10:00:00Z")
            .unwrap()
            .plus_seconds(s)
    }

    fn body(s: f64) -> String {
        format!(
            r#"{{"schema_version":1,"generated_at":"{}","clk_tck":100,"stages":[],"queue":null,"agents":[],"cost":null}}"#,
            t(s)
        )
    }

    fn run(input: &[u8]) -> (Replayed, Vec<AlertLine>) {
        let mut engine = Engine::new(RuleSet::defaults(), Duration::from_secs(4 * 3600));
        let mut out = Vec::new();
        let stats = replay(input, &mut engine, &mut out).unwrap();
        let lines = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (stats, lines)
    }

    /// Contract section 5 (page 2): failed polls are recorded and replayed,
    /// so `target_down` fires in a replay as it did live.
    #[test]
    fn failed_polls_replay_as_target_down() {
        let mut file = String::new();
        file.push_str(
            &RecordLine::polled("orch", t(0.0), body(0.0).as_bytes())
                .unwrap()
                .to_json_line(),
        );
        file.push('\n');
        for s in 1..=20 {
            file.push_str(
                &RecordLine::failed("orch", t(f64::from(s) * 15.0), "connection refused")
                    .to_json_line(),
            );
            file.push('\n');
        }
        let (stats, lines) = run(file.as_bytes());
        assert_eq!((stats.records, stats.skipped), (21, 0));
        let down: Vec<_> = lines.iter().filter(|l| l.rule == "target_down").collect();
        assert_eq!(down.len(), 1, "{lines:?}");
        assert_eq!(down[0].event, AlertEvent::Firing);
    }

    /// Issue 15 #14: a line cut inside a multibyte character (or any bytes
    /// that are not a record line) is skipped with its number; the lines
    /// after it are still replayed.
    #[test]
    fn undecodable_lines_are_skipped_and_the_replay_goes_on() {
        let good = RecordLine::polled("orch", t(0.0), body(0.0).as_bytes())
            .unwrap()
            .to_json_line();
        let mut file: Vec<u8> = Vec::new();
        let cut = "{\"target\":\"orch-é\"".as_bytes();
        file.extend_from_slice(&cut[..cut.len() - 2]); // inside `é`
        file.push(b'\n');
        file.extend_from_slice(b"\xff\xfe not utf-8\n");
        file.extend_from_slice(b"{\"target\":\"orch\",\"rec\n"); // cut in ASCII
        file.extend_from_slice(b"\n   \n");
        file.extend_from_slice(good.as_bytes());
        file.push(b'\n');
        file.extend_from_slice(good.replace("t\":\"orch", "t\":\"two").as_bytes()); // no final newline
        let (stats, _) = run(&file);
        assert_eq!((stats.records, stats.skipped), (2, 3));
    }
}
