//! `reconciler_slow`: the reconciler's last tick took longer than `max_ms`.

use serde::{Deserialize, Serialize};
use shared_schema::Severity;

use super::{finding, parse, to_table, Common, Ctx, Outcome, Rule};
use crate::dur::Dur;

/// The rule's name.
pub const NAME: &str = "reconciler_slow";

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

/// The rule.
#[derive(Debug)]
pub struct ReconcilerSlow {
    common: Common,
    settings: Settings,
}

/// Builds the rule from its table.
pub fn build(table: Option<&toml::Table>) -> Result<Box<dyn Rule>, String> {
    let (common, settings) = parse(table, Common::defaults(Severity::Warning, Dur::secs(60)))?;
    Ok(Box::new(ReconcilerSlow { common, settings }))
}

impl Rule for ReconcilerSlow {
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
        let Some(env) = ctx.section("reconciler") else {
            return Outcome::Unknown;
        };
        let Some(rec) = &env.reconciler else {
            return Outcome::clear();
        };
        match rec.wall_clock_ms {
            None => Outcome::Unknown,
            Some(ms) if ms > self.settings.max_ms => Outcome::firing(finding(
                format!(
                    "the reconciler on {} took {ms:.0} ms per tick (max {} ms)",
                    ctx.target, self.settings.max_ms
                ),
                Some(ms),
                Some(self.settings.max_ms),
            )),
            Some(_) => Outcome::clear(),
        }
    }
}
