//! `agent_no_pid`: a `running` job with no pid recorded (the launcher
//! failed before it wrote one, or never does). Nothing about such an agent
//! can be watched: no CPU, no I/O, no liveness, so every other agent rule
//! is blind to it; this rule says so instead of staying silent.

use serde::{Deserialize, Serialize};
use shared_schema::{Section, Severity};

use super::{agent_labels, agent_phrase, agent_subject, Ctx, Outcome, PerAgent, Rule, Verdict};
use crate::alerts::Finding;
use crate::dur::{human_secs, Dur};

#[cfg(test)]
mod tests;

/// `[rules.agent_no_pid]` has no keys of its own.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {}

impl Rule for Settings {
    const NAME: &'static str = "agent_no_pid";
    const SEVERITY: Severity = Severity::Warning;
    const FOR: Dur = Dur::secs(120);
    type State = ();

    fn evaluate(&self, ctx: &Ctx<'_>, _: &mut (), _: &PerAgent<Self>) -> Outcome {
        let Some(env) = ctx.section(Section::Agents) else {
            return Outcome::Unknown;
        };
        let out = env
            .agents
            .iter()
            .filter(|a| a.pid.is_none())
            .map(|agent| {
                let running = agent
                    .runtime_s
                    .map(|r| format!(" for {}", human_secs(r)))
                    .unwrap_or_default();
                (
                    agent_subject(agent),
                    Verdict::Firing(Finding {
                        labels: agent_labels(agent),
                        summary: format!(
                            "{} has been running{running} with no pid recorded: it cannot be watched",
                            agent_phrase(agent)
                        ),
                        value: agent.runtime_s,
                        threshold: None,
                        already_held_s: None,
                        ..Finding::default()
                    }),
                )
            })
            .collect();
        Outcome::Subjects(out)
    }
}
