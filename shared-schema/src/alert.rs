//! The alert-log line of CONTRACT.md section 3.
//!
//! One JSON object per line. The field order of [`AlertLine`] is the order
//! on the wire, so the log reads the same as the contract's example. `value`
//! and `threshold` are always present (`null` where a rule has none);
//! `diagnosis` appears only when there is one, `sink` only on `dropped` lines.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Labels, Timestamp};

/// What happened to an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertEvent {
    /// The condition held for the rule's `for`.
    Firing,
    /// The condition stopped holding (for `keep_firing_for`).
    Resolved,
    /// Still firing, reminder every `repeat_interval`.
    Repeat,
    /// A sink could not deliver a notification (rate limit, retries spent).
    Dropped,
}

impl AlertEvent {
    /// The word on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Firing => "firing",
            Self::Resolved => "resolved",
            Self::Repeat => "repeat",
            Self::Dropped => "dropped",
        }
    }
}

impl fmt::Display for AlertEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How urgent an alert is; ordered so that `Critical > Warning > Info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// For dashboards; never pages.
    Info,
    /// Look during working hours.
    Warning,
    /// Wake someone up.
    Critical,
}

impl Severity {
    /// The word on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of the alert log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertLine {
    /// When the event happened (emitter's clock where it comes from an envelope).
    pub ts: Timestamp,
    /// What happened.
    pub event: AlertEvent,
    /// The rule's stable name, e.g. `stuck_agent`.
    pub rule: String,
    /// The rule's configured severity.
    pub severity: Severity,
    /// The target's name.
    pub target: String,
    /// Identity of the alert: same condition on the same subject, same key.
    pub key: String,
    /// The subject's identifying labels (never values).
    #[serde(default)]
    pub labels: Labels,
    /// One sentence for a human at 3 a.m.
    pub summary: String,
    /// The measured value, where the rule has one.
    #[serde(default)]
    pub value: Option<f64>,
    /// The threshold it was compared with, where the rule has one.
    #[serde(default)]
    pub threshold: Option<f64>,
    /// When the condition first held.
    pub since: Timestamp,
    /// On alerts about an agent (new in page 2): one sentence saying what
    /// its process is waiting on, from the emitter's `GET /agents/{job_id}`;
    /// the summary then ends with `: ` and the same sentence. Left out when
    /// there is none (older emitter, no answer within 2 s, nothing found).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnosis: Option<String>,
    /// On `dropped` lines: the sink the notification was going to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink: Option<String>,
}

impl AlertLine {
    /// The line as written to the log, without the newline.
    pub fn to_json_line(&self) -> String {
        // Serialising a struct of strings, numbers and maps cannot fail;
        // non-finite floats become null rather than an error.
        serde_json::to_string(self).unwrap_or_else(|e| {
            format!(
                r#"{{"event":"{}","key":{:?},"error":{:?}}}"#,
                self.event,
                self.key,
                e.to_string()
            )
        })
    }

    /// Sets `diagnosis` and the summary's suffix with it (CONTRACT.md
    /// section 3: the summary ends with `: ` and the same sentence): the
    /// sentence the line carried before comes off the summary first, so a
    /// new one replaces it and `None` leaves the bare summary.
    pub fn set_diagnosis(&mut self, diagnosis: Option<String>) {
        self.summary = diagnosed_summary(
            &self.summary,
            self.diagnosis.as_deref(),
            diagnosis.as_deref(),
        );
        self.diagnosis = diagnosis;
    }

    /// The same alert as a `dropped` line for `sink`.
    pub fn dropped(&self, sink: &str, ts: Timestamp) -> Self {
        Self {
            ts,
            event: AlertEvent::Dropped,
            sink: Some(sink.to_owned()),
            ..self.clone()
        }
    }
}

/// `summary` as an alert line with diagnosis `new` says it: `old` (the
/// sentence it carries now, if any) taken off its end with its `: `, then
/// `: ` and `new` put on. Every output that shows a summary with a
/// diagnosis (the log, the page, the API, the sinks) writes it with this.
pub fn diagnosed_summary(summary: &str, old: Option<&str>, new: Option<&str>) -> String {
    let base = old
        .and_then(|old| summary.strip_suffix(old))
        .map_or(summary, |b| b.strip_suffix(": ").unwrap_or(b));
    match new {
        Some(d) => format!("{base}: {d}"),
        None => base.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> AlertLine {
        AlertLine {
            ts: Timestamp::parse("2026-11-22T10:10:00Z").expect("valid"),
            event: AlertEvent::Firing,
            rule: "stuck_agent".into(),
            severity: Severity::Warning,
            target: "orch-1".into(),
            key: "stuck_agent|orch-1|job=7|run=42|pid=1234".into(),
            labels: [
                ("agent", "dev"),
                ("job_id", "7"),
                ("run_id", "42"),
                ("pid", "1234"),
                ("repo", "app"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            summary: "agent dev (job 7, pid 1234) used 0.3% CPU and did no I/O for 10m".into(),
            value: Some(0.003),
            threshold: Some(0.02),
            since: Timestamp::parse("2026-11-22T10:00:00Z").expect("valid"),
            diagnosis: None,
            sink: None,
        }
    }

    #[test]
    fn writes_the_contract_example_byte_for_byte() {
        let want = concat!(
            r#"{"ts":"2026-11-22T10:10:00.000Z","event":"firing","rule":"stuck_agent","severity":"warning","#,
            r#""target":"orch-1","key":"stuck_agent|orch-1|job=7|run=42|pid=1234","#,
            r#""labels":{"agent":"dev","job_id":"7","pid":"1234","repo":"app","run_id":"42"},"#,
            r#""summary":"agent dev (job 7, pid 1234) used 0.3% CPU and did no I/O for 10m","#,
            r#""value":0.003,"threshold":0.02,"since":"2026-11-22T10:00:00.000Z"}"#
        );
        assert_eq!(example().to_json_line(), want);
    }

    #[test]
    fn diagnosis_follows_since_and_is_read_back() {
        let mut line = example();
        line.diagnosis = Some("cat (pid 1234) is blocked reading stdin (pipe)".into());
        let text = line.to_json_line();
        assert!(
            text.ends_with(
                r#""since":"2026-11-22T10:00:00.000Z","diagnosis":"cat (pid 1234) is blocked reading stdin (pipe)"}"#
            ),
            "{text}"
        );
        let back: AlertLine = serde_json::from_str(&text).expect("round trip");
        assert_eq!(back, line);
    }

    #[test]
    fn set_diagnosis_writes_the_suffix_once_and_replaces_it() {
        let mut line = example();
        let bare = line.summary.clone();
        line.set_diagnosis(Some(
            "cat (pid 1234) is blocked reading stdin (pipe)".into(),
        ));
        assert_eq!(
            line.summary,
            format!("{bare}: cat (pid 1234) is blocked reading stdin (pipe)")
        );
        line.set_diagnosis(Some("cat (pid 1234) is stopped".into()));
        assert_eq!(line.summary, format!("{bare}: cat (pid 1234) is stopped"));
        assert_eq!(line.diagnosis.as_deref(), Some("cat (pid 1234) is stopped"));
        line.set_diagnosis(None);
        assert_eq!(
            (line.summary.as_str(), line.diagnosis),
            (bare.as_str(), None)
        );
    }

    #[test]
    fn a_summary_that_does_not_end_with_the_old_sentence_keeps_its_text() {
        assert_eq!(
            diagnosed_summary("edited by hand", Some("gone"), Some("stopped")),
            "edited by hand: stopped"
        );
        assert_eq!(diagnosed_summary("s", None, None), "s");
    }

    #[test]
    fn a_line_without_diagnosis_reads_as_none() {
        let back: AlertLine =
            serde_json::from_str(&example().to_json_line()).expect("page-1 line reads");
        assert_eq!(back.diagnosis, None);
        assert_eq!(back, example());
    }

    #[test]
    fn dropped_line_names_the_sink_and_keeps_the_key() {
        let line = example().dropped(
            "webhook[0]",
            Timestamp::parse("2026-11-22T10:11:00Z").expect("valid"),
        );
        let back: AlertLine = serde_json::from_str(&line.to_json_line()).expect("round trip");
        assert_eq!(back.event, AlertEvent::Dropped);
        assert_eq!(back.sink.as_deref(), Some("webhook[0]"));
        assert_eq!(back.key, example().key);
        assert_eq!(back.labels, example().labels);
    }
}
