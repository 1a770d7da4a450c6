//! `agent_api_errors`: an agent's failed model requests
//! (`agents[i].activity.api_errors`, page 3, its own retries included) grow
//! by more than `max` within `window`: rate limits, an overloaded API, a
//! bad key. The agent retries and looks alive to every process figure, so
//! only its telemetry says it is getting nowhere.
//!
//! The count is cumulative; the growth comes from the rule's own window per
//! agent ([`CounterWindow`]), and a count that went down (the emitter
//! restarted) restarts it. Errors the agent reported before this watchdog
//! first saw it count when the emitter first heard of the agent within the
//! window (`first_seen_at`): a burst at start-up is not lost to "first sample".

use serde::{Deserialize, Serialize};
use shared_schema::{Section, Severity};

use super::{agent_phrase, agent_subject, Ctx, Outcome, PerAgent, Rule, Verdict};
use crate::alerts::Finding;
use crate::delta::{AgentId, AgentMap, CounterWindow, Growth};
use crate::dur::{human_secs, Dur};
use crate::error::SettingError;

#[cfg(test)]
mod tests;

/// `[rules.agent_api_errors]`'s own keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// More failed requests than this within `window` fire.
    pub max: u64,
    /// The window the growth is taken over.
    pub window: Dur,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max: 10,
            window: Dur::secs(300),
        }
    }
}

/// Each agent's window of `api_errors`, by identity.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Windows {
    #[serde(with = "crate::delta::as_pairs")]
    by_agent: AgentMap<CounterWindow>,
}

impl Rule for Settings {
    const NAME: &'static str = "agent_api_errors";
    const SEVERITY: Severity = Severity::Warning;
    const PER_AGENT: bool = true;
    type State = Windows;

    fn check(&self) -> Result<(), SettingError> {
        if self.window.0.is_zero() {
            return Err(SettingError::key("window", "must be longer than 0s"));
        }
        Ok(())
    }

    fn evaluate(&self, ctx: &Ctx<'_>, state: &mut Windows, per: &PerAgent<Self>) -> Outcome {
        let Some(env) = ctx.section(Section::Agents) else {
            return Outcome::Unknown;
        };
        let mut out = Vec::new();
        // Sized to the agents that report telemetry: without any (agents
        // that export no OpenTelemetry) the map allocates nothing.
        let mut next: Vec<(AgentId, CounterWindow)> =
            Vec::with_capacity(ctx.deltas.with_activity().count());
        for (fact, act) in ctx.deltas.with_activity() {
            let agent = fact.agent;
            let settings = per.get(self, agent);
            let window_s = settings.window.as_secs_f64();
            let mut w = match state.by_agent.remove(&fact.id) {
                Some(w) => w,
                None => {
                    let mut w = CounterWindow::default();
                    // Heard of within the window: its errors so far are growth from 0.
                    if let Some(first) = act.first_seen_at {
                        let ago = env.generated_at.seconds_since(&first);
                        if ago > 0.0 && ago <= window_s {
                            w.points.push_back((ctx.clock_s - ago, 0.0));
                        }
                    }
                    w
                }
            };
            let growth = w.push(ctx.clock_s, act.api_errors as f64, window_s);
            next.push((fact.id, w));
            let subject = agent_subject(agent);
            match growth {
                Growth::Unknown => out.push((subject, Verdict::Unknown)),
                Growth::Known { increase, span_s } if increase > settings.max as f64 => {
                    out.push((
                        subject,
                        Verdict::Firing(Finding {
                            summary: format!(
                                "{} had {increase:.0} failed model requests in {} (max {})",
                                agent_phrase(agent),
                                human_secs(span_s.min(window_s)),
                                settings.max
                            ),
                            value: Some(increase),
                            threshold: Some(settings.max as f64),
                            already_held_s: None,
                            ..per.about(agent)
                        }),
                    ));
                }
                Growth::Known { .. } => {}
            }
        }
        state.by_agent = AgentMap::from_unsorted(next);
        Outcome::Subjects(out)
    }
}
