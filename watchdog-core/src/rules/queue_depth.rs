//! `queue_depth`: more jobs queued than `max` for `for`: the workers do not
//! keep up.

use serde::{Deserialize, Serialize};
use shared_schema::{Section, Severity};

use super::{finding, Ctx, Outcome, PerAgent, Rule};
use crate::dur::Dur;

#[cfg(test)]
mod tests;

/// `[rules.queue_depth]`'s own keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The deepest acceptable queue.
    pub max: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self { max: 50 }
    }
}

impl Rule for Settings {
    const NAME: &'static str = "queue_depth";
    const SEVERITY: Severity = Severity::Warning;
    const FOR: Dur = Dur::secs(120);
    type State = ();

    fn evaluate(&self, ctx: &Ctx<'_>, _: &mut (), _: &PerAgent<Self>) -> Outcome {
        let Some(depth) = ctx
            .section(Section::Queue)
            .and_then(|e| e.queue.as_ref())
            .and_then(|q| q.depth)
        else {
            return Outcome::Unknown;
        };
        if depth <= self.max {
            return Outcome::clear();
        }
        Outcome::firing(finding(
            format!("{depth} jobs queued on {} (max {})", ctx.target, self.max),
            Some(depth as f64),
            Some(self.max as f64),
        ))
    }
}
