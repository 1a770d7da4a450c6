//! `reconciler_backlog`: more events waiting after a tick than `max`: the
//! reconciler falls behind.

use serde::{Deserialize, Serialize};
use shared_schema::Severity;

use super::{finding, parse, to_table, Common, Ctx, Outcome, Rule};
use crate::dur::Dur;

/// The rule's name.
pub const NAME: &str = "reconciler_backlog";

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

/// The rule.
#[derive(Debug)]
pub struct ReconcilerBacklog {
    common: Common,
    settings: Settings,
}

/// Builds the rule from its table.
pub fn build(table: Option<&toml::Table>) -> Result<Box<dyn Rule>, String> {
    let (common, settings) = parse(table, Common::defaults(Severity::Warning, Dur::secs(120)))?;
    Ok(Box::new(ReconcilerBacklog { common, settings }))
}

impl Rule for ReconcilerBacklog {
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
        match rec.pending_event_count {
            None => Outcome::Unknown,
            Some(n) if n > self.settings.max => Outcome::firing(finding(
                format!(
                    "{n} reconciler events pending on {} (max {})",
                    ctx.target, self.settings.max
                ),
                Some(n as f64),
                Some(self.settings.max as f64),
            )),
            Some(_) => Outcome::clear(),
        }
    }
}
