//! The alert log: every [`AlertLine`] on stdout and, when `alert_log` is
//! set, appended to that file and flushed to disk before the next poll.
//!
//! The file failing must not silence the alerts: stdout keeps going, the
//! failure is reported once per failure streak (not once per line), and the
//! lines the file missed are kept (bounded) and written when it works again.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use shared_schema::AlertLine;

/// Lines kept for the file while it cannot be written.
const BACKLOG_CAP: usize = 100_000;

/// Where alert lines go.
#[derive(Debug)]
pub struct AlertLog {
    path: Option<PathBuf>,
    file: Option<File>,
    backlog: VecDeque<String>,
    failing: bool,
    to_stdout: bool,
}

impl AlertLog {
    /// A log on stdout, and appended to `path` when given.
    pub fn new(path: Option<PathBuf>) -> Self {
        Self {
            path,
            file: None,
            backlog: VecDeque::new(),
            failing: false,
            to_stdout: true,
        }
    }

    /// A log that writes the file only (for tests).
    pub fn file_only(path: PathBuf) -> Self {
        Self {
            to_stdout: false,
            ..Self::new(Some(path))
        }
    }

    /// The file, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Writes `lines` everywhere and flushes.
    pub fn write(&mut self, lines: &[AlertLine]) {
        if lines.is_empty() {
            return;
        }
        let texts: Vec<String> = lines.iter().map(AlertLine::to_json_line).collect();
        if self.to_stdout {
            let mut out = std::io::stdout().lock();
            for t in &texts {
                // A closed stdout must not stop the file or the loop.
                let _ = writeln!(out, "{t}");
            }
            let _ = out.flush();
        }
        if self.path.is_some() {
            self.backlog.extend(texts);
            while self.backlog.len() > BACKLOG_CAP {
                self.backlog.pop_front();
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
                self.backlog.clear();
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

    fn try_write(&mut self, path: &Path) -> std::io::Result<()> {
        if self.file.is_none() {
            self.file = Some(OpenOptions::new().create(true).append(true).open(path)?);
        }
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        let mut buf = String::new();
        for t in &self.backlog {
            buf.push_str(t);
            buf.push('\n');
        }
        file.write_all(buf.as_bytes())?;
        file.flush()?;
        file.sync_data()
    }
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
}
