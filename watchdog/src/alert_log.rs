//! The alert log: every [`AlertLine`] on stdout and, when `alert_log` is
//! set, appended to that file and flushed to disk before the next poll.
//!
//! The file failing must not silence the alerts: stdout keeps going, the
//! failure is reported once per failure streak (not once per line), and the
//! lines the file missed are kept (bounded) and written when it works again.
//!
//! The file holds (CONTRACT section 3): before each batch the open file is
//! compared (device, inode) with what the path names now, so a log rotated
//! by `mv` or removed is reopened at its path instead of feeding a renamed
//! or deleted inode; SIGHUP reopens too ([`AlertLog::reopen`]). A line is
//! written whole or not at all: after a short write (full disk, quota,
//! `RLIMIT_FSIZE`) the file is cut back to the end of its last whole line
//! and only the lines not yet written stay in the backlog. stdout goes
//! through [`StdoutLines`], which never waits for its reader.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use shared_schema::AlertLine;

use crate::stdout::StdoutLines;

/// Lines kept for the file while it cannot be written.
const BACKLOG_CAP: usize = 100_000;

/// The open file and which file it is.
#[derive(Debug)]
struct Opened {
    file: File,
    dev: u64,
    ino: u64,
    /// The file ended inside a line when opened (a crash mid-write, or a
    /// cut that never succeeded): a newline goes first so our lines stay whole.
    torn: bool,
}

/// Where alert lines go.
#[derive(Debug)]
pub struct AlertLog {
    path: Option<PathBuf>,
    file: Option<Opened>,
    /// Lines (without newline) the file has not taken yet, oldest first.
    backlog: VecDeque<String>,
    /// A length the file must be cut back to before anything else is written
    /// (a cut after a short write that itself failed).
    cut_to: Option<u64>,
    failing: bool,
    stdout: Option<StdoutLines>,
}

impl AlertLog {
    /// A log on `stdout` (when given), and appended to `path` when given.
    pub fn new(path: Option<PathBuf>, stdout: Option<StdoutLines>) -> Self {
        Self {
            path,
            file: None,
            backlog: VecDeque::new(),
            cut_to: None,
            failing: false,
            stdout,
        }
    }

    /// A log that writes the file only (for tests).
    pub fn file_only(path: PathBuf) -> Self {
        Self::new(Some(path), None)
    }

    /// The file, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Lines waiting for the file.
    pub fn backlog_len(&self) -> usize {
        self.backlog.len()
    }

    /// At exit: gives stdout up to `limit` to take the lines queued for it.
    pub fn flush_stdout(&self, limit: std::time::Duration) {
        if let Some(out) = &self.stdout {
            if !out.flush(limit) {
                tracing::warn!("stdout did not take the last alert lines before exit");
            }
        }
    }

    /// Closes the file; the next write opens the path afresh (SIGHUP).
    pub fn reopen(&mut self) {
        self.file = None;
    }

    /// Moves the log to `path` (a reload changed `alert_log`). Lines the old
    /// path still owed go to the new one; without a new path they stay only
    /// on stdout, where they already went.
    pub fn retarget(&mut self, path: Option<PathBuf>) {
        if path.is_none() && !self.backlog.is_empty() {
            tracing::warn!(
                lines = self.backlog.len(),
                "alert_log unset by a reload; lines the old file missed were only on stdout"
            );
            self.backlog.clear();
        }
        self.path = path;
        self.file = None;
        self.cut_to = None;
        if !self.backlog.is_empty() {
            self.flush_file();
        }
    }

    /// Writes `lines` everywhere and flushes the file.
    pub fn write(&mut self, lines: &[AlertLine]) {
        if lines.is_empty() {
            return;
        }
        let texts: Vec<String> = lines.iter().map(AlertLine::to_json_line).collect();
        if let Some(out) = &self.stdout {
            for t in &texts {
                out.send(t.clone());
            }
        }
        if self.path.is_some() {
            self.backlog.extend(texts);
            let over = self.backlog.len().saturating_sub(BACKLOG_CAP);
            if over > 0 {
                self.backlog.drain(..over);
                tracing::warn!(
                    lines = over,
                    "alert log backlog full; the oldest lines went to stdout only"
                );
            }
            self.flush_file();
        }
    }

    fn flush_file(&mut self) {
        let Some(path) = self.path.clone() else {
            return;
        };
        match self.try_write(&path) {
            Ok(()) => {
                if self.failing {
                    tracing::info!(path = %path.display(), "alert log writable again; backlog written");
                }
                self.failing = false;
            }
            Err(e) => {
                self.file = None; // reopen next time (the file may have been rotated or fixed)
                if !self.failing {
                    tracing::error!(path = %path.display(), error = %e, pending = self.backlog.len(),
                        "cannot write the alert log; lines still go to stdout and will be retried");
                }
                self.failing = true;
            }
        }
    }

    /// Closes the file when the path no longer names it (rotated, removed).
    fn check_identity(&mut self, path: &Path) {
        let Some(open) = &self.file else {
            return;
        };
        let same = match std::fs::metadata(path) {
            Ok(m) => m.dev() == open.dev && m.ino() == open.ino,
            Err(_) => false,
        };
        if !same {
            tracing::info!(path = %path.display(), "alert log was renamed or removed; reopening its path");
            self.file = None;
            self.cut_to = None; // the cut belonged to the old file
        }
    }

    fn open(path: &Path) -> std::io::Result<Opened> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let m = file.metadata()?;
        let mut last = [0u8; 1];
        let torn = m.is_file()
            && m.len() > 0
            // A handle of its own: ours is write-only, and opening a
            // non-file (a FIFO) for reading could block.
            && File::open(path).and_then(|f| f.read_at(&mut last, m.len() - 1)).ok() == Some(1)
            && last[0] != b'\n';
        Ok(Opened {
            file,
            dev: m.dev(),
            ino: m.ino(),
            torn,
        })
    }

    fn try_write(&mut self, path: &Path) -> std::io::Result<()> {
        self.check_identity(path);
        if self.file.is_none() {
            self.file = Some(Self::open(path)?);
        }
        let Some(open) = self.file.as_mut() else {
            return Ok(());
        };
        if let Some(len) = self.cut_to {
            open.file.set_len(len)?;
            self.cut_to = None;
            open.torn = false; // cut back to the end of a whole line
        }
        if self.backlog.is_empty() {
            return Ok(());
        }
        if open.torn {
            open.file.write_all(b"\n")?;
            open.torn = false;
        }
        let mut buf = Vec::new();
        for t in &self.backlog {
            buf.extend_from_slice(t.as_bytes());
            buf.push(b'\n');
        }
        // O_APPEND: the bytes land at the end, which is here.
        let start = open.file.metadata()?.len();
        let (written, result) = write_some(&mut open.file, &buf);
        let whole = buf[..written]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let done_lines = buf[..whole].iter().filter(|&&b| b == b'\n').count();
        self.backlog.drain(..done_lines.min(self.backlog.len()));
        if let Err(e) = result {
            if written > whole {
                // Half a line is on disk: cut it off so the retry writes it whole once.
                let keep = start.saturating_add(whole as u64);
                if let Err(cut) = open.file.set_len(keep) {
                    tracing::error!(path = %path.display(), error = %cut,
                        "cannot cut a partly written line off the alert log; will retry before the next write");
                    self.cut_to = Some(keep);
                }
            }
            return Err(e);
        }
        // The lines are in the file; a failing flush or sync is reported but
        // must not make them be written twice.
        if let Err(e) = open.file.flush().and_then(|()| open.file.sync_data()) {
            tracing::warn!(path = %path.display(), error = %e, "alert log not synced to disk");
        }
        Ok(())
    }
}

/// Writes as much of `buf` as the file takes: how much, and the error that
/// stopped it.
fn write_some(file: &mut File, buf: &[u8]) -> (usize, std::io::Result<()>) {
    let mut done = 0;
    while done < buf.len() {
        match file.write(&buf[done..]) {
            Ok(0) => return (done, Err(ErrorKind::WriteZero.into())),
            Ok(n) => done += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return (done, Err(e)),
        }
    }
    (done, Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared_schema::{AlertEvent, Severity, Timestamp};

    fn line(key: &str) -> AlertLine {
        let ts = Timestamp::parse("2026-11-22T10:00:00Z").unwrap();
        AlertLine {
            ts,
            event: AlertEvent::Firing,
            rule: "r".into(),
            severity: Severity::Warning,
            target: "t".into(),
            key: key.into(),
            labels: Default::default(),
            summary: "s".into(),
            value: None,
            threshold: None,
            since: ts,
            diagnosis: None,
            sink: None,
        }
    }

    #[test]
    fn lines_missed_while_the_file_failed_are_written_later() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("alerts.jsonl");
        let mut log = AlertLog::file_only(path.clone());
        log.write(&[line("a")]); // the directory does not exist yet
        assert!(log.failing);
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        log.write(&[line("b")]);
        let text = std::fs::read_to_string(&path).unwrap();
        let keys: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<AlertLine>(l).unwrap().key)
            .collect();
        assert_eq!(keys, ["a", "b"]);
    }

    fn keys(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<AlertLine>(l).unwrap().key)
            .collect()
    }

    #[test]
    fn a_log_renamed_away_is_reopened_at_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.jsonl");
        let rotated = dir.path().join("alerts.jsonl.1");
        let mut log = AlertLog::file_only(path.clone());
        log.write(&[line("a")]);
        std::fs::rename(&path, &rotated).unwrap(); // logrotate's default
        log.write(&[line("b")]);
        assert_eq!(keys(&rotated), ["a"]);
        assert_eq!(keys(&path), ["b"]);
    }

    #[test]
    fn a_log_removed_is_recreated_and_nothing_goes_to_the_deleted_inode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.jsonl");
        let mut log = AlertLog::file_only(path.clone());
        log.write(&[line("a")]);
        std::fs::remove_file(&path).unwrap();
        log.write(&[line("b")]);
        assert_eq!(keys(&path), ["b"]);
    }

    #[test]
    fn reopen_opens_the_path_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.jsonl");
        let mut log = AlertLog::file_only(path.clone());
        log.write(&[line("a")]);
        let first = log.file.as_ref().map(|o| o.ino);
        log.reopen();
        assert!(log.file.is_none());
        log.write(&[line("b")]);
        assert_eq!(
            log.file.as_ref().map(|o| o.ino),
            first,
            "same file, new handle"
        );
        assert_eq!(keys(&path), ["a", "b"]);
    }

    #[test]
    fn a_reload_that_moves_the_log_carries_the_backlog_over() {
        let dir = tempfile::tempdir().unwrap();
        let broken = dir.path().join("missing-dir").join("alerts.jsonl");
        let fixed = dir.path().join("alerts.jsonl");
        let mut log = AlertLog::file_only(broken);
        log.write(&[line("a"), line("b")]);
        assert_eq!(log.backlog_len(), 2);
        log.retarget(Some(fixed.clone()));
        assert_eq!(log.backlog_len(), 0);
        log.write(&[line("c")]);
        assert_eq!(keys(&fixed), ["a", "b", "c"]);
    }

    #[test]
    fn a_file_that_ends_inside_a_line_gets_a_newline_before_ours() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.jsonl");
        std::fs::write(&path, "{\"half a line").unwrap();
        let mut log = AlertLog::file_only(path.clone());
        log.write(&[line("a")]);
        let text = std::fs::read_to_string(&path).unwrap();
        let last = text.lines().last().unwrap();
        assert_eq!(serde_json::from_str::<AlertLine>(last).unwrap().key, "a");
        assert_eq!(text.lines().count(), 2);
    }
}
