//! `agent_runtime`: an agent that has been running longer than `max`.
//! Long runs are where cost and stuck loops hide, even when the CPU is busy.

use serde::{Deserialize, Serialize};
use shared_schema::Severity;

use super::{
    agent_labels, agent_phrase, agent_subject, parse, to_table, Common, Ctx, Outcome, Rule, Verdict,
};
use crate::alerts::Finding;
use crate::dur::{human_secs, Dur};

/// The rule's name.
pub const NAME: &str = "agent_runtime";

/// `[rules.agent_runtime]`'s own keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The longest acceptable run.
    pub max: Dur,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max: Dur::secs(7200),
        }
    }
}

/// The rule.
#[derive(Debug)]
pub struct AgentRuntime {
    common: Common,
    settings: Settings,
}

/// Builds the rule from its table.
pub fn build(table: Option<&toml::Table>) -> Result<Box<dyn Rule>, String> {
    let (common, settings) = parse(table, Common::defaults(Severity::Warning, Dur::secs(0)))?;
    Ok(Box::new(AgentRuntime { common, settings }))
}

impl Rule for AgentRuntime {
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
        let Some(env) = ctx.section("agents") else {
            return Outcome::Unknown;
        };
        let max = self.settings.max.as_secs_f64();
        let mut out = Vec::new();
        for agent in &env.agents {
            match agent.runtime_s {
                None => out.push((agent_subject(agent), Verdict::Unknown)),
                Some(r) if r > max => out.push((
                    agent_subject(agent),
                    Verdict::Firing(Finding {
                        labels: agent_labels(agent),
                        summary: format!(
                            "{} has been running for {} (max {})",
                            agent_phrase(agent),
                            human_secs(r),
                            self.settings.max
                        ),
                        value: Some(r),
                        threshold: Some(max),
                        already_held_s: None,
                    }),
                )),
                Some(_) => {}
            }
        }
        Outcome::Subjects(out)
    }
}
