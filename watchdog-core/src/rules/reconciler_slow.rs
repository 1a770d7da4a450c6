//! `reconciler_slow`: the reconciler's last tick took longer than `max_ms`.

use serde::{Deserialize, Serialize};
use shared_schema::{Section, Severity};

use super::{finding, Ctx, Outcome, PerAgent, Rule};
use crate::dur::Dur;

#[cfg(test)]
mod tests;

/// `[rules.reconciler_slow]`'s own keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The longest acceptable tick, milliseconds.
    pub max_ms: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Self { max_ms: 500.0 }
    }
}

impl Rule for Settings {
    const NAME: &'static str = "reconciler_slow";
    const SEVERITY: Severity = Severity::Warning;
    const FOR: Dur = Dur::secs(60);
    type State = ();

    fn evaluate(&self, ctx: &Ctx<'_>, _: &mut (), _: &PerAgent<Self>) -> Outcome {
        let Some(env) = ctx.section(Section::Reconciler) else {
            return Outcome::Unknown;
        };
        let Some(rec) = &env.reconciler else {
            return Outcome::clear();
        };
        match rec.wall_clock_ms {
            None => Outcome::Unknown,
            Some(ms) if ms > self.max_ms => Outcome::firing(finding(
                format!(
                    "the reconciler on {} took {ms:.0} ms per tick (max {} ms)",
                    ctx.target, self.max_ms
                ),
                Some(ms),
                Some(self.max_ms),
            )),
            Some(_) => Outcome::clear(),
        }
    }
}
