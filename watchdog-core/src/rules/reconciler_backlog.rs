//! `reconciler_backlog`: more events waiting after a tick than `max`: the
//! reconciler falls behind.

use serde::{Deserialize, Serialize};
use shared_schema::{Section, Severity};

use super::{finding, Ctx, Outcome, PerAgent, Rule};
use crate::dur::Dur;

/// `[rules.reconciler_backlog]`'s own keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The most events acceptable after a tick.
    pub max: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self { max: 50 }
    }
}

impl Rule for Settings {
    const NAME: &'static str = "reconciler_backlog";
    const SEVERITY: Severity = Severity::Warning;
    const FOR: Dur = Dur::secs(120);
    type State = ();

    fn evaluate(&self, ctx: &Ctx<'_>, _: &mut (), _: &PerAgent<Self>) -> Outcome {
        let Some(env) = ctx.section(Section::Reconciler) else {
            return Outcome::Unknown;
        };
        let Some(rec) = &env.reconciler else {
            return Outcome::clear();
        };
        match rec.pending_event_count {
            None => Outcome::Unknown,
            Some(n) if n > self.max => Outcome::firing(finding(
                format!(
                    "{n} reconciler events pending on {} (max {})",
                    ctx.target, self.max
                ),
                Some(n as f64),
                Some(self.max as f64),
            )),
            Some(_) => Outcome::clear(),
        }
    }
}
