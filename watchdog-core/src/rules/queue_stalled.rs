//! `queue_stalled`: jobs wait, none runs and none finished, for `for`. The
//! worker is dead or wedged even though nothing looks wrong in any one row.

use serde::{Deserialize, Serialize};
use shared_schema::{Section, Severity};

use super::{finding, Ctx, Outcome, PerAgent, Rule, Verdict};
use crate::dur::Dur;

#[cfg(test)]
mod tests;

/// `[rules.queue_stalled]` has no keys of its own.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {}

impl Rule for Settings {
    const NAME: &'static str = "queue_stalled";
    const SEVERITY: Severity = Severity::Critical;
    const FOR: Dur = Dur::secs(600);
    type State = ();

    fn evaluate(&self, ctx: &Ctx<'_>, _: &mut (), _: &PerAgent<Self>) -> Outcome {
        let Some(q) = ctx.section(Section::Queue).and_then(|e| e.queue.as_ref()) else {
            return Outcome::Unknown;
        };
        let (Some(depth), Some(running)) = (q.depth, q.counts.get("running").copied()) else {
            return Outcome::Unknown;
        };
        if depth == 0 || running > 0 {
            return Outcome::clear();
        }
        match ctx.deltas.jobs_finished {
            Some(true) => Outcome::clear(),
            None => Outcome::Subjects(vec![(String::new(), Verdict::Unknown)]),
            Some(false) => Outcome::firing(finding(
                format!(
                    "{depth} jobs queued on {}, none running and none finished",
                    ctx.target
                ),
                Some(depth as f64),
                None,
            )),
        }
    }
}
