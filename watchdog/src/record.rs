//! `--record FILE`: each poll appended as one `RecordLine`, the input of
//! `watchdog replay`: a body as its raw JSON (never parsed into a tree), a
//! failed poll as its reason (contract page 2), so a replay sees the very
//! polls the live run saw. Recording is best effort: a failure is reported
//! once per streak and never stops polling.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

use shared_schema::RecordLine;

use crate::engine::Observation;
use crate::view::PollOutcome;

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
