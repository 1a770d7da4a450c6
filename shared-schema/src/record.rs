//! The record line of CONTRACT.md section 5 (`watchdog run --record FILE`).
//!
//! `{"target": NAME, "received_at": RFC3339, "envelope": {...}}`, one per
//! line. The envelope is kept as raw JSON, exactly as received, so that a
//! replay reads it through the same tolerant reader as a live poll did.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Timestamp;

/// One polled envelope, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordLine {
    /// The target's name.
    pub target: String,
    /// The watchdog's clock when the body arrived.
    pub received_at: Timestamp,
    /// The body as received.
    pub envelope: Value,
}

impl RecordLine {
    /// The line as written, without the newline.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}
