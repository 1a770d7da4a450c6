//! `schema_incompatible`: the target speaks a newer `schema_version` than
//! this watchdog reads. Its own condition, distinct from `target_down`: the
//! target is fine, the watchdog needs an upgrade.

use serde::{Deserialize, Serialize};
use shared_schema::{Severity, SCHEMA_VERSION};

use super::{finding, Clock, Ctx, Outcome, PerAgent, Rule};
use crate::view::PollOutcome;

#[cfg(test)]
mod tests;

/// `[rules.schema_incompatible]` has no keys of its own.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {}

impl Rule for Settings {
    const NAME: &'static str = "schema_incompatible";
    const SEVERITY: Severity = Severity::Critical;
    const CLOCK: Clock = Clock::Watchdog;
    type State = ();

    fn evaluate(&self, ctx: &Ctx<'_>, _: &mut (), _: &PerAgent<Self>) -> Outcome {
        match ctx.outcome {
            PollOutcome::SchemaIncompatible { found } => Outcome::firing(finding(
                format!(
                    "target {} speaks schema_version {found}; this watchdog reads {SCHEMA_VERSION}: upgrade the watchdog",
                    ctx.target
                ),
                Some(*found as f64),
                Some(SCHEMA_VERSION as f64),
            )),
            PollOutcome::Failed { .. } => Outcome::Unknown,
            PollOutcome::Ok | PollOutcome::Disabled => Outcome::clear(),
        }
    }
}
