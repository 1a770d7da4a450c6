//! `--record FILE`: each polled envelope appended as one `RecordLine`, the
//! input of `watchdog replay`. Recording is best effort: a failure is
//! reported once per streak and never stops polling.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

use shared_schema::{RecordLine, Timestamp};

/// The recording file.
#[derive(Debug)]
pub struct Recorder {
    path: PathBuf,
    file: Option<File>,
    failing: bool,
}

impl Recorder {
    /// Records to `path` (appending).
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            file: None,
            failing: false,
        }
    }

    /// Appends one body of `target`, when it is JSON.
    pub fn record(&mut self, target: &str, received_at: Timestamp, body: &[u8]) {
        let Ok(envelope) = serde_json::from_slice(body) else {
            return; // not an envelope: nothing a replay could read
        };
        let line = RecordLine {
            target: target.to_owned(),
            received_at,
            envelope,
        };
        let mut text = line.to_json_line();
        text.push('\n');
        let result = (|| {
            if self.file.is_none() {
                self.file = Some(
                    OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&self.path)?,
                );
            }
            match self.file.as_mut() {
                Some(f) => f.write_all(text.as_bytes()).and_then(|()| f.flush()),
                None => Ok(()),
            }
        })();
        match result {
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
}
