//! `breaker_open`: the worker's circuit breaker is open, so no job starts.

use serde::{Deserialize, Serialize};
use shared_schema::Severity;

use super::{finding, parse, to_table, Common, Ctx, Outcome, Rule};
use crate::dur::Dur;

/// The rule's name.
pub const NAME: &str = "breaker_open";

/// `[rules.breaker_open]` has no keys of its own.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {}

/// The rule.
#[derive(Debug)]
pub struct BreakerOpen {
    common: Common,
    settings: Settings,
}

/// Builds the rule from its table.
pub fn build(table: Option<&toml::Table>) -> Result<Box<dyn Rule>, String> {
    let (common, settings) = parse(table, Common::defaults(Severity::Critical, Dur::secs(0)))?;
    Ok(Box::new(BreakerOpen { common, settings }))
}

impl Rule for BreakerOpen {
    fn name(&self) -> &'static str {
        NAME
    }

    fn common(&self) -> &Common {
        &self.common
    }

    fn own_settings(&self) -> toml::Table {
        to_table(&self.settings)
    }

    fn evaluate(&self, ctx: &Ctx<'_>) -> Outcome {
        let Some(breaker) = ctx
            .section("queue")
            .and_then(|e| e.queue.as_ref())
            .and_then(|q| q.breaker.as_ref())
        else {
            return Outcome::Unknown;
        };
        match breaker.state.as_deref() {
            None => Outcome::Unknown,
            Some("open") => {
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
