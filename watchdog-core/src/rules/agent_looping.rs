//! `agent_looping`: an agent keeps making the same tool call. Its own
//! telemetry counts how many completed tool calls in a row had the same
//! fingerprint (`agents[i].activity.tool_repeat`, page 3); at `max_repeats`
//! the agent is going round in circles, burning tokens while every process
//! figure looks busy and healthy, so no other rule sees it. Seen in the
//! field: a real Claude Code repeating one `ls` 315 times in 12 s.
//!
//! The summary says which tool, how many times, since when (the streak's
//! start as this watchdog saw it: the first poll that showed it, dated by
//! the agent's `last_tool_at` where it reports one) and the run's spend so
//! far ([`super::spend`]), e.g. `agent dev (job 7, pid 1234) made the same
//! Bash call 37 times in a row over 12s ($1.39 so far)`.

use serde::{Deserialize, Serialize};
use shared_schema::{Section, Severity, Timestamp};

use super::{agent_phrase, agent_subject, spend, Ctx, Outcome, PerAgent, Rule, Verdict};
use crate::alerts::Finding;
use crate::delta::{AgentId, AgentMap};
use crate::dur::human_secs;
use crate::error::SettingError;

#[cfg(test)]
mod tests;

/// `[rules.agent_looping]`'s own keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The same tool call this many times in a row is a loop.
    pub max_repeats: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self { max_repeats: 5 }
    }
}

/// One agent's current streak of identical tool calls.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Streak {
    /// `tool_repeat` as last seen.
    pub repeat: u64,
    /// When the streak was first seen (emitter clock).
    pub began: Timestamp,
}

/// Each agent's streak, by identity.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Streaks {
    #[serde(with = "crate::delta::as_pairs")]
    by_agent: AgentMap<Streak>,
}

impl Rule for Settings {
    const NAME: &'static str = "agent_looping";
    const SEVERITY: Severity = Severity::Warning;
    const PER_AGENT: bool = true;
    type State = Streaks;

    fn check(&self) -> Result<(), SettingError> {
        if self.max_repeats < 2 {
            return Err(SettingError::key(
                "max_repeats",
                "must be at least 2 (1 is every tool call)",
            ));
        }
        Ok(())
    }

    fn evaluate(&self, ctx: &Ctx<'_>, state: &mut Streaks, per: &PerAgent<Self>) -> Outcome {
        let Some(env) = ctx.section(Section::Agents) else {
            return Outcome::Unknown;
        };
        let mut out = Vec::new();
        // Sized to the agents that report telemetry: without any (agents
        // that export no OpenTelemetry) the map allocates nothing.
        let mut next: Vec<(AgentId, Streak)> =
            Vec::with_capacity(ctx.deltas.with_activity().count());
        for (fact, act) in ctx.deltas.with_activity() {
            let agent = fact.agent;
            let seen_at = act.last_tool_at.unwrap_or(env.generated_at);
            // A count that did not go down continues the streak; one that did
            // (or a first sight) starts a new one.
            let streak = match state.by_agent.remove(&fact.id) {
                Some(s) if act.tool_repeat >= s.repeat && s.repeat > 0 => Streak {
                    repeat: act.tool_repeat,
                    began: s.began,
                },
                _ => Streak {
                    repeat: act.tool_repeat,
                    began: seen_at,
                },
            };
            next.push((fact.id, streak));
            let max = per.get(self, agent).max_repeats;
            if act.tool_repeat < max {
                continue;
            }
            let tool = act.last_tool.as_deref().unwrap_or("tool");
            let over = seen_at.seconds_since(&streak.began);
            let over = if over > 0.0 {
                format!(" over {}", human_secs(over).replace(' ', ""))
            } else {
                String::new()
            };
            let spent = spend::of_agent(env, agent)
                .map(|s| format!(" (${:.2} so far)", s.usd))
                .unwrap_or_default();
            out.push((
                agent_subject(agent),
                Verdict::Firing(Finding {
                    summary: format!(
                        "{} made the same {tool} call {} times in a row{over}{spent}",
                        agent_phrase(agent),
                        act.tool_repeat
                    ),
                    value: Some(act.tool_repeat as f64),
                    threshold: Some(max as f64),
                    already_held_s: None,
                    ..per.about(agent)
                }),
            ));
        }
        // Agents that left the envelope (or stopped reporting) are forgotten.
        state.by_agent = AgentMap::from_unsorted(next);
        Outcome::Subjects(out)
    }
}
