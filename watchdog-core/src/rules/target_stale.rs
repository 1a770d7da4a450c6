//! `target_stale`: the target answers, but the clock in its envelope stopped
//! advancing (a cached or frozen emitter serves the same snapshot forever).
//! `monotonic_ms` decides when it is comparable (same boot), else `generated_at`.

use serde::{Deserialize, Serialize};
use shared_schema::Severity;

use super::{finding, Clock, Ctx, Outcome, PerAgent, Rule, Verdict};
use crate::dur::Dur;

#[cfg(test)]
mod tests;

/// `[rules.target_stale]` has no keys of its own.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {}

impl Rule for Settings {
    const NAME: &'static str = "target_stale";
    const SEVERITY: Severity = Severity::Warning;
    const FOR: Dur = Dur::secs(60);
    const CLOCK: Clock = Clock::Watchdog;
    type State = ();

    // The emitter's clock is the thing that is wrong; say when on ours.
    fn evaluate(&self, ctx: &Ctx<'_>, _: &mut (), _: &PerAgent<Self>) -> Outcome {
        let Some(env) = ctx.envelope else {
            return Outcome::Unknown;
        };
        match ctx.deltas.clock_advanced {
            None => Outcome::Subjects(vec![(String::new(), Verdict::Unknown)]),
            Some(true) => Outcome::clear(),
            Some(false) => Outcome::firing(finding(
                format!(
                    "target {}'s envelope clock stopped at {}",
                    ctx.target, env.generated_at
                ),
                None,
                None,
            )),
        }
    }
}
