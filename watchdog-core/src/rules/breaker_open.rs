//! `breaker_open`: the worker's circuit breaker is open, so no job starts.

use serde::{Deserialize, Serialize};
use shared_schema::{BreakerState, Section, Severity};

use super::{finding, Ctx, Outcome, PerAgent, Rule};

#[cfg(test)]
mod tests;

/// `[rules.breaker_open]` has no keys of its own.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {}

impl Rule for Settings {
    const NAME: &'static str = "breaker_open";
    const SEVERITY: Severity = Severity::Critical;
    type State = ();

    fn evaluate(&self, ctx: &Ctx<'_>, _: &mut (), _: &PerAgent<Self>) -> Outcome {
        let Some(breaker) = ctx
            .section(Section::Queue)
            .and_then(|e| e.queue.as_ref())
            .and_then(|q| q.breaker.as_ref())
        else {
            return Outcome::Unknown;
        };
        match breaker.state() {
            None => Outcome::Unknown,
            Some(BreakerState::Open) => {
                let failures = breaker
                    .consecutive_failures
                    .map_or_else(String::new, |n| format!(" after {n} consecutive failures"));
                let since = breaker
                    .opened_at
                    .as_deref()
                    .map_or_else(String::new, |t| format!(" since {t}"));
                Outcome::firing(finding(
                    format!(
                        "the worker's circuit breaker on {} is open{failures}{since}",
                        ctx.target
                    ),
                    breaker.consecutive_failures.map(|n| n as f64),
                    None,
                ))
            }
            Some(_) => Outcome::clear(),
        }
    }
}
