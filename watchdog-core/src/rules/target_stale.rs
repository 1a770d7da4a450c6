//! `target_stale`: the target answers, but the clock in its envelope stopped
//! advancing (a cached or frozen emitter serves the same snapshot forever).
//! `monotonic_ms` decides when it is comparable (same boot), else `generated_at`.

use serde::{Deserialize, Serialize};
use shared_schema::Severity;

use super::{finding, parse, to_table, Clock, Common, Ctx, Outcome, Rule, Verdict};
use crate::dur::Dur;

/// The rule's name.
pub const NAME: &str = "target_stale";

/// `[rules.target_stale]` has no keys of its own.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {}

/// The rule.
#[derive(Debug)]
pub struct TargetStale {
    common: Common,
    settings: Settings,
}

/// Builds the rule from its table.
pub fn build(table: Option<&toml::Table>) -> Result<Box<dyn Rule>, String> {
    let (common, settings) = parse(table, Common::defaults(Severity::Warning, Dur::secs(60)))?;
    Ok(Box::new(TargetStale { common, settings }))
}

impl Rule for TargetStale {
    fn name(&self) -> &'static str {
        NAME
    }

    fn common(&self) -> &Common {
        &self.common
    }

    fn own_settings(&self) -> toml::Table {
        to_table(&self.settings)
    }

    // The emitter's clock is the thing that is wrong; say when on ours.
    fn clock(&self) -> Clock {
        Clock::Watchdog
    }

    fn evaluate(&self, ctx: &Ctx<'_>) -> Outcome {
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
