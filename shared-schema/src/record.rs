//! The record line of CONTRACT.md section 5 (`watchdog run --record FILE`).
//!
//! One per line, either a polled envelope
//! `{"target": NAME, "received_at": RFC3339, "envelope": {...}}`
//! or a failed poll (page 2) `{"target": NAME, "received_at": RFC3339, "error": "why"}`.
//! The envelope is kept as raw JSON, exactly as received and never parsed
//! into a tree, so that a replay reads it through the one reader as a live
//! poll did, and a failed poll replays as a failed poll (`target_down`).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::Timestamp;

/// One record line, owned (for writing, and for readers that keep lines).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordLine {
    /// The target's name.
    pub target: String,
    /// The watchdog's clock when the body arrived (or the poll failed).
    pub received_at: Timestamp,
    /// The body as received; `None` for a failed poll.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envelope: Option<Box<RawValue>>,
    /// Why the poll failed; `None` for a polled envelope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl PartialEq for RecordLine {
    fn eq(&self, other: &Self) -> bool {
        self.target == other.target
            && self.received_at == other.received_at
            && self.envelope.as_ref().map(|r| r.get()) == other.envelope.as_ref().map(|r| r.get())
            && self.error == other.error
    }
}

impl RecordLine {
    /// A polled body. `Err` when the body is not JSON (then nothing a replay
    /// could read as an envelope: record it as a failed poll instead).
    pub fn polled(
        target: &str,
        received_at: Timestamp,
        body: &[u8],
    ) -> Result<Self, serde_json::Error> {
        // Checked and kept as text: one scan, no tree.
        let raw: &RawValue = serde_json::from_slice(body)?;
        Ok(Self {
            target: target.to_owned(),
            received_at,
            envelope: Some(raw.to_owned()),
            error: None,
        })
    }

    /// A failed poll.
    pub fn failed(target: &str, received_at: Timestamp, error: impl Into<String>) -> Self {
        Self {
            target: target.to_owned(),
            received_at,
            envelope: None,
            error: Some(error.into()),
        }
    }

    /// The line as written, without the newline.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads one line (without its newline) borrowing from it: the envelope
    /// stays the raw text of the line.
    pub fn parse(line: &[u8]) -> Result<RecordRef<'_>, RecordError> {
        let text = std::str::from_utf8(line).map_err(|e| RecordError::NotUtf8(e.to_string()))?;
        let r: RecordRef<'_> =
            serde_json::from_str(text).map_err(|e| RecordError::NotJson(e.to_string()))?;
        if r.envelope.is_none() && r.error.is_none() {
            return Err(RecordError::Empty);
        }
        Ok(r)
    }
}

/// One record line, borrowed from the line's text (what `replay` reads).
#[derive(Debug, Deserialize)]
pub struct RecordRef<'a> {
    /// The target's name.
    #[serde(borrow)]
    pub target: Cow<'a, str>,
    /// The watchdog's clock when the body arrived (or the poll failed).
    pub received_at: Timestamp,
    /// The body as received; `None` for a failed poll.
    #[serde(borrow, default)]
    pub envelope: Option<&'a RawValue>,
    /// Why the poll failed.
    #[serde(borrow, default)]
    pub error: Option<Cow<'a, str>>,
}

impl RecordRef<'_> {
    /// What the line holds: a body when it has one, else the failure.
    pub fn outcome(&self) -> Recorded<'_> {
        match (&self.envelope, &self.error) {
            (Some(raw), _) => Recorded::Envelope(raw.get().as_bytes()),
            (None, Some(e)) => Recorded::Failed(e),
            (None, None) => Recorded::Failed("recorded without envelope or error"),
        }
    }
}

/// What one record line holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded<'a> {
    /// The body's bytes, for the reader.
    Envelope(&'a [u8]),
    /// A failed poll and why.
    Failed(&'a str),
}

/// Why a line is not a record line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Invalid UTF-8 (a line cut inside a multibyte character, binary junk).
    #[error("not UTF-8: {0}")]
    NotUtf8(String),
    /// Not JSON, or JSON without `target` and `received_at`.
    #[error("not a record line: {0}")]
    NotJson(String),
    /// Neither `envelope` nor `error`.
    #[error("a record line needs an envelope or an error")]
    Empty,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn t() -> Timestamp {
        Timestamp::parse("2026-11-22T10:00:00Z").unwrap()
    }

    #[test]
    fn a_polled_body_is_kept_byte_for_byte() {
        let body = br#"{"schema_version":1, "x": [1, 2.50]}"#;
        let line = RecordLine::polled("orch", t(), body)
            .unwrap()
            .to_json_line();
        assert_eq!(
            line,
            r#"{"target":"orch","received_at":"2026-11-22T10:00:00.000Z","envelope":{"schema_version":1, "x": [1, 2.50]}}"#
        );
        let r = RecordLine::parse(line.as_bytes()).unwrap();
        assert_eq!(r.outcome(), Recorded::Envelope(&body[..]));
        assert!(RecordLine::polled("orch", t(), b"<html>").is_err());
    }

    #[test]
    fn a_failed_poll_is_a_line_without_envelope() {
        let line = RecordLine::failed("orch", t(), "HTTP 500").to_json_line();
        assert_eq!(
            line,
            r#"{"target":"orch","received_at":"2026-11-22T10:00:00.000Z","error":"HTTP 500"}"#
        );
        let r = RecordLine::parse(line.as_bytes()).unwrap();
        assert_eq!(r.outcome(), Recorded::Failed("HTTP 500"));
        let owned: RecordLine = serde_json::from_str(&line).unwrap();
        assert_eq!(owned, RecordLine::failed("orch", t(), "HTTP 500"));
    }

    #[test]
    fn undecodable_lines_are_errors_not_panics() {
        let cut = "{\"target\":\"orch-é\"".as_bytes();
        let cut = &cut[..cut.len() - 2]; // inside the two bytes of `é`
        assert!(matches!(
            RecordLine::parse(cut),
            Err(RecordError::NotUtf8(_))
        ));
        assert!(matches!(
            RecordLine::parse(b"{\"target\":\"o\""),
            Err(RecordError::NotJson(_))
        ));
        assert_eq!(
            RecordLine::parse(br#"{"target":"o","received_at":"2026-11-22T10:00:00Z"}"#)
                .unwrap_err(),
            RecordError::Empty
        );
    }
}
