//! `target_down`: polls of the target fail (connect, timeout, HTTP >= 400,
//! a body too large or unparsable). A disabled emitter or a newer schema is
//! an answer, not a failure, so both clear this alert.

use serde::{Deserialize, Serialize};
use shared_schema::Severity;

use super::{finding, parse, to_table, Clock, Common, Ctx, Outcome, Rule};
use crate::dur::Dur;
use crate::view::PollOutcome;

/// The rule's name.
pub const NAME: &str = "target_down";

/// `[rules.target_down]` has no keys of its own.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {}

/// The rule.
#[derive(Debug)]
pub struct TargetDown {
    common: Common,
    settings: Settings,
}

/// Builds the rule from its table.
pub fn build(table: Option<&toml::Table>) -> Result<Box<dyn Rule>, String> {
    let (common, settings) = parse(table, Common::defaults(Severity::Critical, Dur::secs(60)))?;
    Ok(Box::new(TargetDown { common, settings }))
}

impl Rule for TargetDown {
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
            PollOutcome::Failed { reason } => Outcome::firing(finding(
                format!("target {} is down: {reason}", ctx.target),
                None,
                None,
            )),
            _ => Outcome::clear(),
        }
    }
}
