//! `target_down`: polls of the target fail (connect, timeout, HTTP >= 400,
//! a body too large or unparsable). A disabled emitter or a newer schema is
//! an answer, not a failure, so both clear this alert.

use serde::{Deserialize, Serialize};
use shared_schema::Severity;

use super::{finding, Clock, Ctx, Outcome, PerAgent, Rule};
use crate::dur::Dur;
use crate::view::PollOutcome;

#[cfg(test)]
mod tests;

/// `[rules.target_down]` has no keys of its own.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {}

impl Rule for Settings {
    const NAME: &'static str = "target_down";
    const SEVERITY: Severity = Severity::Critical;
    const FOR: Dur = Dur::secs(60);
    const CLOCK: Clock = Clock::Watchdog;
    type State = ();

    fn evaluate(&self, ctx: &Ctx<'_>, _: &mut (), _: &PerAgent<Self>) -> Outcome {
        match ctx.outcome {
            PollOutcome::Failed { reason } => Outcome::firing(finding(
                format!("target {} is down: {reason}", ctx.target),
                None,
                None,
            )),
            _ => Outcome::clear(),
        }
    }
}
