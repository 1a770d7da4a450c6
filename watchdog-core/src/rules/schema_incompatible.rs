//! `schema_incompatible`: the target speaks a newer `schema_version` than
//! this watchdog reads. Its own condition, distinct from `target_down`: the
//! target is fine, the watchdog needs an upgrade.

use serde::{Deserialize, Serialize};
use shared_schema::{Severity, SCHEMA_VERSION};

use super::{finding, parse, to_table, Clock, Common, Ctx, Outcome, Rule};
use crate::dur::Dur;
use crate::view::PollOutcome;

/// The rule's name.
pub const NAME: &str = "schema_incompatible";

/// `[rules.schema_incompatible]` has no keys of its own.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {}

/// The rule.
#[derive(Debug)]
pub struct SchemaIncompatible {
    common: Common,
    settings: Settings,
}

/// Builds the rule from its table.
pub fn build(table: Option<&toml::Table>) -> Result<Box<dyn Rule>, String> {
    let (common, settings) = parse(table, Common::defaults(Severity::Critical, Dur::secs(0)))?;
    Ok(Box::new(SchemaIncompatible { common, settings }))
}

impl Rule for SchemaIncompatible {
    fn name(&self) -> &'static str {
        NAME
    }

    fn common(&self) -> &Common {
        &self.common
    }

    fn own_settings(&self) -> toml::Table {
        to_table(&self.settings)
    }

    fn clock(&self) -> Clock {
        Clock::Watchdog
    }

    fn evaluate(&self, ctx: &Ctx<'_>) -> Outcome {
        match ctx.outcome {
            PollOutcome::SchemaIncompatible { found } => Outcome::firing(finding(
                format!(
                    "target {} speaks schema_version {found}; this watchdog reads {SCHEMA_VERSION}: upgrade the watchdog",
                    ctx.target
                ),
                Some(*found as f64),
                Some(SCHEMA_VERSION as f64),
            )),
            PollOutcome::Failed { .. } => Outcome::Unknown,
            PollOutcome::Ok | PollOutcome::Disabled => Outcome::clear(),
        }
    }
}
