//! `watchdog replay FILE...`: a recording fed through the same engine, on
//! the envelopes' own clocks (and `received_at` where an emitter clock stood
//! still), printing the alert lines a live run would have written. No
//! sleeping, no sinks, no files written: deterministic, for tuning rules on
//! real data and for regression tests. `watchdog backtest` reads its input
//! through the same [`for_each_record`].
//!
//! The file is read as bytes, line by line: a line that cannot be decoded
//! (not JSON, cut inside a multibyte character, invalid UTF-8, not a record
//! line) is skipped with a warning naming its file and number, and the
//! replay goes on. An envelope line goes through the one reader, straight
//! from the line's own bytes; a failed-poll line replays as a failed poll,
//! so `target_down` replays too. Lines carry no `diagnosis`: the process a
//! live run would have looked at is long gone, so nothing is asked.
//!
//! Input files ([`inputs`]): each argument is a file or a pattern (`*` and
//! `?` in its last path component). A file brings its rotated siblings
//! (`FILE.1`, `FILE.2`, ... written by `--record-max-bytes`) along, and the
//! files of one recording are read oldest first: `FILE.3`, `FILE.2`,
//! `FILE.1`, `FILE`.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use shared_schema::{RecordLine, Recorded};

use crate::engine::{Engine, Observation};
use crate::record::rotation_number;
use watchdog_core::delta::Receipt;

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

/// The files that `args` name, in the order to read them. `Err` names an
/// argument that is no file, a pattern that matches none, or a directory
/// that cannot be listed.
pub fn inputs(args: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut found: Vec<PathBuf> = Vec::new();
    for arg in args {
        let text = arg.to_string_lossy();
        let (dir, name) = split(arg);
        let listing = || -> Result<Vec<String>, String> {
            let entries = std::fs::read_dir(&dir)
                .map_err(|e| format!("{}: cannot list the directory: {e}", dir.display()))?;
            Ok(entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| !t.is_dir()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect())
        };
        if name.contains(['*', '?']) {
            if dir.to_string_lossy().contains(['*', '?']) {
                return Err(format!(
                    "{text}: only the last path component may hold `*` or `?`"
                ));
            }
            let mut matched: Vec<String> = listing()?
                .into_iter()
                .filter(|n| crate::targets::wildcard(&name, n))
                .collect();
            matched.sort();
            if matched.is_empty() {
                return Err(format!("{text}: no file matches"));
            }
            found.extend(matched.into_iter().map(|n| join(arg, &n)));
        } else {
            match std::fs::metadata(arg) {
                Ok(m) if m.is_file() => {}
                Ok(_) => return Err(format!("{text}: not a regular file")),
                Err(e) => return Err(format!("cannot open {text}: {e}")),
            }
            found.push(arg.clone());
            let siblings = listing().unwrap_or_default();
            found.extend(
                siblings
                    .into_iter()
                    .filter(|n| rotation_number(&name, n).is_some())
                    .map(|n| join(arg, &n)),
            );
        }
    }
    Ok(in_order(found))
}

/// The directory and file name of an argument (`.` for a bare name).
fn split(arg: &Path) -> (PathBuf, String) {
    let name = arg
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = match arg.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    (dir, name)
}

/// `name` in the directory of `arg`, spelt as the user spelt that directory.
fn join(arg: &Path, name: &str) -> PathBuf {
    match arg.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.join(name),
        _ => PathBuf::from(name),
    }
}

/// Files without duplicates; the files of one recording (`FILE`,
/// `FILE.n`) together where the first of them came, oldest (highest `n`)
/// first and `FILE` last.
pub fn in_order(files: Vec<PathBuf>) -> Vec<PathBuf> {
    // (recording, rotation number: None for the live file)
    let key = |p: &Path| -> (PathBuf, Option<u32>) {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some((base, _)) = name.rsplit_once('.') {
            if let Some(n) = rotation_number(base, &name) {
                return (p.with_file_name(base), Some(n));
            }
        }
        (p.to_owned(), None)
    };
    // (recording, its files with their rotation numbers)
    type Group = (PathBuf, Vec<(Option<u32>, PathBuf)>);
    let mut groups: Vec<Group> = Vec::new();
    for file in files {
        let (base, n) = key(&file);
        let group = match groups.iter_mut().position(|(b, _)| *b == base) {
            Some(i) => &mut groups[i].1,
            None => {
                groups.push((base, Vec::new()));
                let last = groups.len() - 1;
                &mut groups[last].1
            }
        };
        if !group.iter().any(|(_, p)| *p == file) {
            group.push((n, file));
        }
    }
    let mut out = Vec::new();
    for (_, mut group) in groups {
        // Highest rotation number first; the live file (None) last.
        group.sort_by(|(a, _), (b, _)| match (a, b) {
            (None, None) => std::cmp::Ordering::Equal,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(_), None) => std::cmp::Ordering::Less,
            (Some(x), Some(y)) => y.cmp(x),
        });
        out.extend(group.into_iter().map(|(_, p)| p));
    }
    out
}

/// Calls `each(target, observation, receipt)` for every record line of `input`
/// (`file` names it in warnings), in order; counts records and skipped
/// lines into `stats`. `Err` for an I/O error reading `input` or one that
/// `each` returns; a bad line is never one.
pub fn for_each_record(
    mut input: impl BufRead,
    file: &str,
    stats: &mut Replayed,
    mut each: impl FnMut(&str, &Observation, Option<Receipt>) -> std::io::Result<()>,
) -> std::io::Result<()> {
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
                tracing::warn!(file, line = number, error = %e, "not a record line; skipped");
                stats.skipped += 1;
                continue;
            }
        };
        let obs = match record.outcome() {
            Recorded::Envelope(body) => Observation::from_body(record.received_at, body),
            Recorded::Failed(why) => Observation::failed(record.received_at, why),
        };
        let received = crate::receipt::recorded(record.received_at);
        each(&record.target, &obs, received)?;
        stats.records += 1;
    }
    Ok(())
}

/// Replays every record line of `input` through `engine`, writing alert lines to `out`.
///
/// `Err` only for an I/O error reading `input` or writing `out`; a bad line
/// is never one.
pub fn replay(
    input: impl BufRead,
    engine: &mut Engine,
    out: &mut impl Write,
) -> std::io::Result<Replayed> {
    let mut stats = Replayed::default();
    replay_into(input, "-", engine, out, &mut stats)?;
    out.flush()?;
    Ok(stats)
}

/// [`replay`] of several files, in order, through one engine.
///
/// `Err` names the file that could not be read.
pub fn replay_files(
    files: &[PathBuf],
    engine: &mut Engine,
    out: &mut impl Write,
) -> Result<Replayed, (PathBuf, std::io::Error)> {
    let mut stats = Replayed::default();
    for path in files {
        let file = std::fs::File::open(path).map_err(|e| (path.clone(), e))?;
        let name = path.display().to_string();
        replay_into(
            std::io::BufReader::new(file),
            &name,
            engine,
            out,
            &mut stats,
        )
        .map_err(|e| (path.clone(), e))?;
    }
    out.flush()
        .map_err(|e| (PathBuf::from("standard output"), e))?;
    Ok(stats)
}

fn replay_into(
    input: impl BufRead,
    file: &str,
    engine: &mut Engine,
    out: &mut impl Write,
    stats: &mut Replayed,
) -> std::io::Result<()> {
    let mut alerts = 0;
    for_each_record(input, file, stats, |target, obs, received| {
        let eval = engine.observe_received(target, obs, received);
        for l in eval.lines() {
            writeln!(out, "{}", l.to_json_line())?;
        }
        alerts += eval.emitted.len();
        Ok(())
    })?;
    stats.alerts += alerts;
    Ok(())
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

    /// Issue 21: a file brings its rotated siblings, a pattern its matches;
    /// each recording is read oldest first (`.10` before `.2`), duplicates once.
    #[test]
    fn rotated_files_are_read_oldest_first_and_patterns_expand() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for name in [
            "rec.jsonl",
            "rec.jsonl.1",
            "rec.jsonl.2",
            "rec.jsonl.10",
            "rec.jsonl.x",
            "a.jsonl",
        ] {
            std::fs::write(d.join(name), "").unwrap();
        }
        let rec = ["rec.jsonl.10", "rec.jsonl.2", "rec.jsonl.1", "rec.jsonl"].map(|n| d.join(n));
        assert_eq!(inputs(&[d.join("rec.jsonl")]).unwrap(), rec);
        assert_eq!(
            inputs(&[d.join("rec.jsonl.1"), d.join("rec.jsonl*")]).unwrap()[..4],
            rec
        );
        let all = inputs(&[d.join("*.jsonl*")]).unwrap();
        assert_eq!(all[0], d.join("a.jsonl"));
        assert_eq!(all[1..5], rec);
        assert_eq!(all[5], d.join("rec.jsonl.x"));
        assert!(inputs(&[d.join("nope*")])
            .unwrap_err()
            .contains("no file matches"));
        assert!(inputs(&[d.join("missing")])
            .unwrap_err()
            .contains("missing"));
        assert!(inputs(&[d.to_owned()])
            .unwrap_err()
            .contains("not a regular file"));
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
