//! `agent_runtime`: an agent that has been running longer than `max`.
//! Long runs are where cost and stuck loops hide, even when the CPU is busy.

use serde::{Deserialize, Serialize};
use shared_schema::{Section, Severity};

use super::{agent_phrase, agent_subject, Ctx, Outcome, PerAgent, Rule, Verdict};
use crate::alerts::Finding;
use crate::dur::{human_secs, Dur};

#[cfg(test)]
mod tests;

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

impl Rule for Settings {
    const NAME: &'static str = "agent_runtime";
    const SEVERITY: Severity = Severity::Warning;
    const PER_AGENT: bool = true;
    const DIAGNOSE: bool = true;
    type State = ();

    fn evaluate(&self, ctx: &Ctx<'_>, _: &mut (), per: &PerAgent<Self>) -> Outcome {
        let Some(env) = ctx.section(Section::Agents) else {
            return Outcome::Unknown;
        };
        let mut out = Vec::new();
        for agent in &env.agents {
            let settings = per.get(self, agent);
            let max = settings.max.as_secs_f64();
            match agent.runtime_s {
                None => out.push((agent_subject(agent), Verdict::Unknown)),
                Some(r) if r > max => out.push((
                    agent_subject(agent),
                    Verdict::Firing(Finding {
                        summary: format!(
                            "{} has been running for {} (max {})",
                            agent_phrase(agent),
                            human_secs(r),
                            settings.max
                        ),
                        value: Some(r),
                        threshold: Some(max),
                        already_held_s: None,
                        ..per.about(agent)
                    }),
                )),
                Some(_) => {}
            }
        }
        Outcome::Subjects(out)
    }
}
