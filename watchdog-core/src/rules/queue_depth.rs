//! `queue_depth`: more jobs queued than `max` for `for`: the workers do not
//! keep up.

use serde::{Deserialize, Serialize};
use shared_schema::Severity;

use super::{finding, parse, to_table, Common, Ctx, Outcome, Rule};
use crate::dur::Dur;

/// The rule's name.
pub const NAME: &str = "queue_depth";

/// `[rules.queue_depth]`'s own keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The deepest acceptable queue.
    pub max: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self { max: 50 }
    }
}

/// The rule.
#[derive(Debug)]
pub struct QueueDepth {
    common: Common,
    settings: Settings,
}

/// Builds the rule from its table.
pub fn build(table: Option<&toml::Table>) -> Result<Box<dyn Rule>, String> {
    let (common, settings) = parse(table, Common::defaults(Severity::Warning, Dur::secs(120)))?;
    Ok(Box::new(QueueDepth { common, settings }))
}

impl Rule for QueueDepth {
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
        let Some(depth) = ctx
            .section("queue")
            .and_then(|e| e.queue.as_ref())
            .and_then(|q| q.depth)
        else {
            return Outcome::Unknown;
        };
        if depth <= self.settings.max {
            return Outcome::clear();
        }
        Outcome::firing(finding(
            format!(
                "{depth} jobs queued on {} (max {})",
                ctx.target, self.settings.max
            ),
            Some(depth as f64),
            Some(self.settings.max as f64),
        ))
    }
}
