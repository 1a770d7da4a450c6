//! What the outputs see of one evaluated poll.
//!
//! The pure core (delta engine, rules, alert state) produces a [`PollView`]
//! after every poll of a target; the exporter turns it into gauges and the
//! `STATUS=` line reads it. Nothing here does I/O.

use std::time::Duration;

use shared_schema::{Envelope, Severity, Timestamp};

use crate::delta::AgentId;

/// How one poll of a target ended.
#[derive(Debug, Clone, PartialEq)]
pub enum PollOutcome {
    /// An enabled envelope was read.
    Ok,
    /// The emitter's kill-switch is off.
    Disabled,
    /// The envelope's `schema_version` is newer than this watchdog reads.
    SchemaIncompatible {
        /// The version found.
        found: u64,
    },
    /// Connect, timeout, HTTP >= 400, body too large or unparsable.
    Failed {
        /// Why, in words (never contains a secret).
        reason: String,
    },
}

impl PollOutcome {
    /// The `outcome` label of `watchdog_polls_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Disabled => "disabled",
            Self::SchemaIncompatible { .. } => "schema_incompatible",
            Self::Failed { .. } => "error",
        }
    }
}

/// The derived per-agent figures (the raw ones are in the envelope).
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSample {
    /// `agents[].agent`.
    pub agent: Option<String>,
    /// Which agent: the identity the deltas track it by.
    pub id: AgentId,
    /// CPU fraction over the last delta; `None` on the first sample or a reset.
    pub cpu_fraction: Option<f64>,
    /// `agents[].runtime_s`.
    pub runtime_s: Option<f64>,
    /// Seconds the agent has been idle (below `cpu_floor`, no I/O); `None` when not known.
    pub idle_s: Option<f64>,
}

/// Alerts currently firing for one target, by rule and severity.
#[derive(Debug, Clone, PartialEq)]
pub struct FiringCount {
    /// Rule name.
    pub rule: String,
    /// Severity configured for the rule.
    pub severity: Severity,
    /// How many alerts of this rule fire now.
    pub count: usize,
}

/// One evaluated poll of one target, borrowed for the outputs.
#[derive(Debug, Clone)]
pub struct PollView<'a> {
    /// The target's name.
    pub target: &'a str,
    /// How the poll ended.
    pub outcome: &'a PollOutcome,
    /// Wall time the poll took (request + read + evaluation).
    pub duration: Duration,
    /// The watchdog's clock when the poll ended.
    pub now: Timestamp,
    /// The `schema_version` seen, even when incompatible.
    pub schema_version: Option<u64>,
    /// The envelope, when the outcome is `Ok`.
    pub envelope: Option<&'a Envelope>,
    /// Derived figures per agent of that envelope (empty unless `Ok`).
    pub agents: &'a [AgentSample],
    /// Alerts of this target firing after this poll (every rule with count > 0).
    pub firing: &'a [FiringCount],
}
