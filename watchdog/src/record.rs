//! `--record FILE`: each poll appended as one `RecordLine`, the input of
//! `watchdog replay` and `watchdog backtest`: a body as its raw JSON (never
//! parsed into a tree), a failed poll as its reason (contract page 2), so a
//! replay sees the very polls the live run saw. Recording is best effort: a
//! failure is reported once per streak and never stops polling.
//!
//! Records are kept without filling the disk (issue 21): with
//! `record_max_bytes` set, a line that would take the file past the cap
//! first rotates it: `FILE` becomes `FILE.1`, older ones shift to `.2`, ...
//! up to `record_keep`, the oldest is deleted, and a new `FILE` is started.
//! The files never pass the cap (but for a single line larger than it), so
//! the recording takes at most `(record_keep + 1) * record_max_bytes`.
//! A line is never split across two files. The path is checked before each
//! line, so a file renamed or removed by someone else (logrotate) is
//! followed: a new one is started at the path.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use shared_schema::RecordLine;

use crate::engine::Observation;
use crate::view::PollOutcome;

/// The default `record_keep`: rotated files kept besides the current one.
pub const DEFAULT_KEEP: u32 = 5;
/// The most rotated files `record_keep` may ask for.
pub const MAX_KEEP: u32 = 1000;

/// A size in bytes, written as a number (`1048576`) or with a unit
/// (`"512KiB"`, `"64MiB"`, `"1GiB"`, `"10MB"`, `"1G"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (digits, unit) = t.split_at(split);
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("{text:?} is not a size (e.g. 1048576, \"64MiB\", \"1GiB\")"))?;
        let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1_000,
            "kib" => 1 << 10,
            "m" | "mb" => 1_000_000,
            "mib" => 1 << 20,
            "g" | "gb" => 1_000_000_000,
            "gib" => 1 << 30,
            "t" | "tb" => 1_000_000_000_000,
            "tib" => 1 << 40,
            other => {
                return Err(format!(
                    "{text:?}: unknown unit {other:?} (B, KB, KiB, MB, MiB, GB, GiB, TB, TiB)"
                ))
            }
        };
        n.checked_mul(factor)
            .map(ByteSize)
            .ok_or_else(|| format!("{text:?} is too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(ByteSize(n)),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

/// When the recording rotates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// The cap of one file; `None`: the file grows without bound.
    pub max_bytes: Option<u64>,
    /// Rotated files kept (`FILE.1` ... `FILE.keep`); 0 keeps none.
    pub keep: u32,
}

impl Default for Rotation {
    fn default() -> Self {
        Self {
            max_bytes: None,
            keep: DEFAULT_KEEP,
        }
    }
}

/// `FILE.n`, the `n`-th rotated file of `path`.
pub fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// The number `n` of a file named `<base>.n`.
pub fn rotation_number(base: &str, name: &str) -> Option<u32> {
    let digits = name.strip_prefix(base)?.strip_prefix('.')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The recording file.
#[derive(Debug)]
pub struct Recorder {
    path: PathBuf,
    rotation: Rotation,
    file: Option<Open>,
    failing: bool,
}

#[derive(Debug)]
struct Open {
    file: File,
    size: u64,
    id: (u64, u64),
}

impl Recorder {
    /// Records to `path` (appending), never rotating.
    pub fn new(path: PathBuf) -> Self {
        Self::rotating(path, Rotation::default())
    }

    /// Records to `path` (appending), rotating as `rotation` says.
    pub fn rotating(path: PathBuf, rotation: Rotation) -> Self {
        Self {
            path,
            rotation,
            file: None,
            failing: false,
        }
    }

    /// The recorder of a config's `--record` (none without one).
    pub fn from_config(config: &crate::config::Config) -> Option<Self> {
        let rotation = config.record_rotation();
        config.record.clone().map(|p| Self::rotating(p, rotation))
    }

    /// New rotation settings (a reloaded config); the file stays open.
    pub fn set_rotation(&mut self, rotation: Rotation) {
        self.rotation = rotation;
    }

    /// Appends one poll of `target`: its body when it was JSON, else the
    /// failure the engine saw.
    pub fn record(&mut self, target: &str, obs: &Observation, body: Option<&[u8]>) {
        let line = match body.map(|b| RecordLine::polled(target, obs.now, b)) {
            Some(Ok(line)) => line,
            // A body that is not JSON was a failed poll for the engine.
            Some(Err(_)) | None => match &obs.outcome {
                PollOutcome::Failed { reason } => RecordLine::failed(target, obs.now, reason),
                _ => return, // no body and no failure: nothing to replay
            },
        };
        let mut text = line.to_json_line();
        text.push('\n');
        match self.write(text.as_bytes()) {
            Ok(()) => self.failing = false,
            Err(e) => {
                self.file = None;
                if !self.failing {
                    tracing::error!(path = %self.path.display(), error = %e, "cannot write the recording");
                }
                self.failing = true;
            }
        }
    }

    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        // Someone else moved or removed the file: start one at the path.
        let moved = match (&self.file, std::fs::metadata(&self.path)) {
            (Some(open), Ok(m)) => (m.dev(), m.ino()) != open.id,
            (Some(_), Err(_)) => true,
            (None, _) => false,
        };
        if moved {
            self.file = None;
        }
        if self.file.is_none() {
            self.file = Some(self.open()?);
        }
        let len = bytes.len() as u64;
        let full = match (&self.file, self.rotation.max_bytes) {
            (Some(open), Some(max)) => open.size > 0 && open.size.saturating_add(len) > max,
            _ => false,
        };
        if full {
            self.file = None;
            if let Err(e) = self.rotate() {
                // Keep recording into the old file rather than lose polls;
                // the next line tries again.
                tracing::error!(path = %self.path.display(), error = %e, "cannot rotate the recording");
            }
            self.file = Some(self.open()?);
        }
        match self.file.as_mut() {
            Some(open) => {
                open.file.write_all(bytes)?;
                open.file.flush()?;
                open.size += len;
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn open(&self) -> std::io::Result<Open> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        let m = file.metadata()?;
        Ok(Open {
            file,
            size: m.len(),
            id: (m.dev(), m.ino()),
        })
    }

    /// `FILE.keep` deleted, `FILE.n` renamed `FILE.n+1`, `FILE` renamed
    /// `FILE.1`; rotated files past `keep` (left by a larger `keep`) deleted.
    fn rotate(&self) -> std::io::Result<()> {
        let keep = self.rotation.keep;
        let gone_ok = |r: std::io::Result<()>| match r {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
        if keep == 0 {
            return gone_ok(std::fs::remove_file(&self.path));
        }
        gone_ok(std::fs::remove_file(rotated(&self.path, keep)))?;
        for n in (1..keep).rev() {
            gone_ok(std::fs::rename(
                rotated(&self.path, n),
                rotated(&self.path, n + 1),
            ))?;
        }
        std::fs::rename(&self.path, rotated(&self.path, 1))?;
        self.remove_beyond(keep);
        Ok(())
    }

    fn remove_beyond(&self, keep: u32) {
        let (Some(dir), Some(base)) = (self.path.parent(), self.path.file_name()) else {
            return;
        };
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let base = base.to_string_lossy();
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if rotation_number(&base, &name.to_string_lossy()).is_some_and(|n| n > keep) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use shared_schema::{Recorded, Timestamp};

    /// Contract section 5 (page 2): a failed poll is recorded as
    /// `{"target","received_at","error"}`, a body as its raw JSON, and a body
    /// that is not JSON as the failure the engine saw.
    #[test]
    fn failed_polls_are_recorded_with_their_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rec.jsonl");
        let mut rec = Recorder::new(path.clone());
        let t = Timestamp::parse("2026-11-22T10:00:00Z").unwrap();
        let body = br#"{"schema_version":1,"generated_at":"2026-11-22T10:00:00Z","agents":[]}"#;
        rec.record("orch", &Observation::from_body(t, body), Some(body));
        rec.record("orch", &Observation::failed(t, "HTTP 503"), None);
        let junk = b"<html>";
        rec.record("orch", &Observation::from_body(t, junk), Some(junk));
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        let first = RecordLine::parse(lines[0].as_bytes()).unwrap();
        assert_eq!(first.outcome(), Recorded::Envelope(&body[..]));
        assert_eq!(
            lines[1],
            r#"{"target":"orch","received_at":"2026-11-22T10:00:00.000Z","error":"HTTP 503"}"#
        );
        let third = RecordLine::parse(lines[2].as_bytes()).unwrap();
        assert!(
            matches!(third.outcome(), Recorded::Failed(why) if why.starts_with("unparsable body")),
            "{}",
            lines[2]
        );
    }

    fn t(s: u32) -> Timestamp {
        Timestamp::parse("2026-11-22T10:00:00Z")
            .unwrap()
            .plus_seconds(f64::from(s))
    }

    /// The `received_at` seconds of every line of `path`, in order.
    fn seconds(path: &Path) -> Vec<i64> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| {
                let r = RecordLine::parse(l.as_bytes()).unwrap();
                (r.received_at.unix_ms() - t(0).unix_ms()) / 1000
            })
            .collect()
    }

    /// Issue 21: past the cap the file is renamed `.1`, older ones shift,
    /// the oldest beyond `keep` is deleted; no file passes the cap and no
    /// line is split; read oldest first, the kept lines are the latest ones
    /// in order.
    #[test]
    fn the_recording_rotates_at_the_cap_and_keeps_the_newest_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rec.jsonl");
        // A leftover of an earlier run with a larger `keep`.
        std::fs::write(rotated(&path, 7), "old\n").unwrap();
        let line_len = RecordLine::failed("orch", t(0), "HTTP 503")
            .to_json_line()
            .len() as u64
            + 1;
        let rotation = Rotation {
            max_bytes: Some(line_len * 3),
            keep: 2,
        };
        let mut rec = Recorder::rotating(path.clone(), rotation);
        for s in 0..10 {
            rec.record("orch", &Observation::failed(t(s), "HTTP 503"), None);
        }
        // 10 lines, 3 a file: [0 1 2] [3 4 5] [6 7 8] [9]; two rotated kept.
        assert_eq!(seconds(&rotated(&path, 2)), [3, 4, 5]);
        assert_eq!(seconds(&rotated(&path, 1)), [6, 7, 8]);
        assert_eq!(seconds(&path), [9]);
        assert!(!rotated(&path, 3).exists());
        assert!(!rotated(&path, 7).exists(), "beyond keep: deleted");
        for p in [rotated(&path, 2), rotated(&path, 1), path.clone()] {
            assert!(std::fs::metadata(&p).unwrap().len() <= line_len * 3);
        }
    }

    /// A recorder that restarts on a file near its cap rotates at once; with
    /// `keep = 0` nothing is kept; a file moved away (logrotate) is followed.
    #[test]
    fn an_existing_file_counts_keep_zero_keeps_none_and_a_moved_file_is_followed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rec.jsonl");
        std::fs::write(&path, "x".repeat(100) + "\n").unwrap();
        let rotation = Rotation {
            max_bytes: Some(120),
            keep: 0,
        };
        let mut rec = Recorder::rotating(path.clone(), rotation);
        rec.record("orch", &Observation::failed(t(1), "HTTP 503"), None);
        assert_eq!(seconds(&path), [1]);
        assert!(!rotated(&path, 1).exists());

        let moved = dir.path().join("moved.jsonl");
        std::fs::rename(&path, &moved).unwrap();
        rec.record("orch", &Observation::failed(t(2), "HTTP 503"), None);
        assert_eq!(seconds(&moved), [1]);
        assert_eq!(seconds(&path), [2]);
    }

    #[test]
    fn sizes_read_as_numbers_or_with_units() {
        assert_eq!("1048576".parse::<ByteSize>().unwrap(), ByteSize(1 << 20));
        assert_eq!("64MiB".parse::<ByteSize>().unwrap(), ByteSize(64 << 20));
        assert_eq!("10 MB".parse::<ByteSize>().unwrap(), ByteSize(10_000_000));
        assert_eq!("1g".parse::<ByteSize>().unwrap(), ByteSize(1_000_000_000));
        assert!("ten"
            .parse::<ByteSize>()
            .unwrap_err()
            .contains("not a size"));
        assert!("5 parsecs"
            .parse::<ByteSize>()
            .unwrap_err()
            .contains("unit"));
        assert!("99999999999TiB"
            .parse::<ByteSize>()
            .unwrap_err()
            .contains("too large"));
        assert_eq!(rotation_number("rec.jsonl", "rec.jsonl.12"), Some(12));
        assert_eq!(rotation_number("rec.jsonl", "rec.jsonl.1x"), None);
        assert_eq!(rotation_number("rec.jsonl", "rec.jsonl"), None);
    }
}
