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
}
