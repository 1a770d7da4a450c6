//! The errors of the core, typed so a caller can tell them apart without
//! reading the text. Their messages are part of the interface: the config
//! check, the docs and the tests quote them word for word.

use thiserror::Error;

/// A `[rules]` table the rule set cannot be built from ([`crate::rules::RuleSet::build`]).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RuleConfigError {
    /// A `[rules.NAME]` table of no known rule.
    #[error("unknown rule `{name}` in [rules.{name}] (known rules: {})", known.join(", "))]
    UnknownRule {
        /// The name as written.
        name: String,
        /// Every rule there is, in registry order.
        known: Vec<&'static str>,
    },
    /// One rule's table is wrong.
    #[error("[rules.{rule}]: {problem}")]
    Rule {
        /// The rule whose table it is.
        rule: &'static str,
        /// What is wrong in it.
        problem: SettingError,
    },
}

impl RuleConfigError {
    /// The rule the error is about (the unknown name, for an unknown rule).
    pub fn rule(&self) -> &str {
        match self {
            Self::UnknownRule { name, .. } => name,
            Self::Rule { rule, .. } => rule,
        }
    }

    /// The key (dotted, as `per_agent.reviewer.for`) the error is about, if one.
    pub fn key(&self) -> Option<String> {
        match self {
            Self::UnknownRule { .. } => None,
            Self::Rule { problem, .. } => problem.key_name(),
        }
    }
}

/// What is wrong in one rule's `[rules.NAME]` table (or in one of its
/// `per_agent` tables); [`crate::rules::Rule::check`] returns it too.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SettingError {
    /// The table (or `per_agent`) is not a table.
    #[error("must be a table")]
    NotATable,
    /// `per_agent` is not a table keyed by agent name.
    #[error("key `per_agent`: must be a table keyed by agent name")]
    PerAgentNotATable,
    /// One key's value is wrong.
    #[error("key `{key}`: {reason}")]
    Key {
        /// The key as written (dotted under `per_agent`).
        key: String,
        /// Why, in the words of serde or of the rule's check.
        reason: String,
    },
    /// The rule's own keys did not deserialize; serde's message, with
    /// "unknown field" said as "unknown key".
    #[error("{0}")]
    Settings(String),
    /// Something in the `per_agent` table of one agent.
    #[error("key `per_agent.{agent}`: {problem}")]
    PerAgent {
        /// The agent's name.
        agent: String,
        /// What is wrong in its table.
        problem: Box<SettingError>,
    },
}

impl SettingError {
    /// Key `key` is wrong because of `reason`.
    pub fn key(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Key {
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// The key (dotted) the error names, if it names one.
    pub fn key_name(&self) -> Option<String> {
        match self {
            Self::NotATable | Self::Settings(_) => None,
            Self::PerAgentNotATable => Some("per_agent".into()),
            Self::Key { key, .. } => Some(key.clone()),
            Self::PerAgent { agent, problem } => Some(match problem.key_name() {
                Some(k) => format!("per_agent.{agent}.{k}"),
                None => format!("per_agent.{agent}"),
            }),
        }
    }
}

/// A saved state the engine cannot take over ([`crate::engine::Engine::restore`]).
#[derive(Debug, Error)]
pub enum StateError {
    /// Not the JSON of a saved state.
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    /// Written by a watchdog with another state layout.
    #[error("state file version {found} is not {expected}")]
    Version {
        /// The file's `version`.
        found: u32,
        /// The one this build reads.
        expected: u32,
    },
}
