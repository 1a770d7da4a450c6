//! `queue_stalled`: jobs wait, none runs and none finished, for `for`. The
//! worker is dead or wedged even though nothing looks wrong in any one row.

use serde::{Deserialize, Serialize};
use shared_schema::Severity;

use super::{finding, parse, to_table, Common, Ctx, Outcome, Rule, Verdict};
use crate::dur::Dur;

/// The rule's name.
pub const NAME: &str = "queue_stalled";

/// `[rules.queue_stalled]` has no keys of its own.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {}

/// The rule.
#[derive(Debug)]
pub struct QueueStalled {
    common: Common,
    settings: Settings,
}

/// Builds the rule from its table.
pub fn build(table: Option<&toml::Table>) -> Result<Box<dyn Rule>, String> {
    let (common, settings) = parse(table, Common::defaults(Severity::Critical, Dur::secs(600)))?;
    Ok(Box::new(QueueStalled { common, settings }))
}

impl Rule for QueueStalled {
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
        let Some(q) = ctx.section("queue").and_then(|e| e.queue.as_ref()) else {
            return Outcome::Unknown;
        };
        let (Some(depth), Some(running)) = (q.depth, q.counts.get("running").copied()) else {
            return Outcome::Unknown;
        };
        if depth == 0 || running > 0 {
            return Outcome::clear();
        }
        match ctx.deltas.jobs_finished {
            Some(true) => Outcome::clear(),
            None => Outcome::Subjects(vec![(String::new(), Verdict::Unknown)]),
            Some(false) => Outcome::firing(finding(
                format!(
                    "{depth} jobs queued on {}, none running and none finished",
                    ctx.target
                ),
                Some(depth as f64),
                None,
            )),
        }
    }
}
