//! `stuck_agent`: an agent that has run long enough, used almost no CPU and
//! did no I/O for `for`. The one alert an orchestrator cannot raise itself:
//! a hung agent looks "running" in its own tables.
//!
//! The rule owns idleness: the delta engine reports neutral facts per agent
//! (ticks, Δt, I/O growth, why a delta could not be taken) and this rule
//! keeps an idle timer per agent identity. The condition of one poll is "the
//! last delta was idle"; the timer restarts (and the rule says "false") when
//! the process behind the pid changed, its counters went down or the host
//! rebooted. The first sample, a delta with an unknown counter, or an
//! emitter clock that did not advance is "not enough data". `per_agent`
//! overrides any key (and `for`) by agent name. A gone or zombie process is
//! never stuck (it is `agent_gone`'s).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use shared_schema::Severity;

use super::{
    agent_labels, agent_phrase, agent_subject, AgentFigures, Ctx, Outcome, PerAgent, Rule, Verdict,
};
use crate::alerts::Finding;
use crate::delta::{AgentId, AgentStatus, Reading, ResetReason};
use crate::dur::{human_secs, Dur};

/// `[rules.stuck_agent]`'s own keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Below this CPU fraction (CPU seconds per second) the agent is idle.
    pub cpu_floor: f64,
    /// Agents younger than this are never stuck.
    pub min_runtime: Dur,
    /// Prefer `tree_cpu_ticks` (the whole process tree) over `cpu_ticks`.
    pub use_tree: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            cpu_floor: 0.02,
            min_runtime: Dur::secs(120),
            use_tree: true,
        }
    }
}

impl Rule for Settings {
    const NAME: &'static str = "stuck_agent";
    const SEVERITY: Severity = Severity::Warning;
    const FOR: Dur = Dur::secs(600);
    const PER_AGENT: bool = true;
    const FIGURES: bool = true;
    const DIAGNOSE: bool = true;
    type State = Idle;

    fn check(&self) -> Result<(), String> {
        if !(self.cpu_floor.is_finite() && self.cpu_floor >= 0.0) {
            return Err("key `cpu_floor`: must be a non-negative number".into());
        }
        Ok(())
    }

    fn evaluate(&self, ctx: &Ctx<'_>, idle: &mut Self::State, per: &PerAgent<Self>) -> Outcome {
        let Some(_) = ctx.section("agents") else {
            return Outcome::Unknown;
        };
        let mut out = Vec::new();
        let mut next = HashMap::with_capacity(ctx.deltas.agents.len());
        for fact in &ctx.deltas.agents {
            let agent = fact.agent;
            let settings = per.get(self, agent);
            let reading = fact.status.reading(settings.use_tree);
            let timer = idle
                .by_agent
                .remove(&fact.id)
                .filter(|_| fact.status != AgentStatus::First)
                .unwrap_or_default()
                .advance(reading, settings.cpu_floor);
            next.insert(fact.id, timer);
            // A process that is gone or a zombie is not stuck: it is
            // `agent_gone`'s, whose summary says which (a zombie's counters
            // stand still and would read as 0% CPU here).
            if matches!(super::agent_gone::gone(agent), Some(Some(_))) {
                continue;
            }
            let verdict = match (reading, agent.runtime_s) {
                (_, None) | (Reading::Missing, _) => Some(Verdict::Unknown),
                (_, Some(r)) if r < settings.min_runtime.as_secs_f64() => None,
                // The emitter's clock stood still: nothing was measured, so
                // nothing is known (the idle timer restarts all the same).
                (Reading::Reset(ResetReason::ClockStill), _) => Some(Verdict::Unknown),
                // Another process, or another boot: the old one is not stuck.
                (Reading::Reset(_), _) => None,
                (
                    Reading::Fraction {
                        fraction, io_grew, ..
                    },
                    Some(_),
                ) => {
                    let is_idle = fraction < settings.cpu_floor && io_grew != Some(true);
                    is_idle.then(|| {
                        let mean = timer.mean_fraction().unwrap_or(fraction);
                        let io = if io_grew.is_some() {
                            " and did no I/O"
                        } else {
                            ""
                        };
                        Verdict::Firing(Finding {
                            labels: agent_labels(agent),
                            summary: format!(
                                "{} used {:.1}% CPU{io} for {}",
                                agent_phrase(agent),
                                mean * 100.0,
                                human_secs(timer.idle_s.unwrap_or(0.0))
                            ),
                            value: Some(round(mean)),
                            threshold: Some(settings.cpu_floor),
                            // The idle span began at the baseline, before this poll.
                            already_held_s: timer.idle_s,
                        })
                    })
                }
            };
            if let Some(v) = verdict {
                out.push((agent_subject(agent), v));
            }
        }
        // Agents that left the envelope are forgotten.
        idle.by_agent = next;
        Outcome::Subjects(out)
    }

    fn figures(&self, idle: &Self::State, id: &AgentId, out: &mut AgentFigures) {
        if let Some(t) = idle.by_agent.get(id) {
            out.idle_s = t.idle_s;
            out.cpu_fraction = t.fraction;
        }
    }
}

/// Each agent's idle timer, by identity (a reused pid is another agent).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Idle {
    #[serde(with = "crate::delta::as_pairs")]
    by_agent: HashMap<AgentId, IdleTimer>,
}

/// How long one agent has been idle, and how idle.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct IdleTimer {
    /// Seconds idle so far; `Some(0)` when busy; `None` when not running
    /// (first sample, after a reset).
    pub idle_s: Option<f64>,
    /// CPU seconds used over the idle span.
    pub idle_cpu_s: f64,
    /// The CPU fraction of the last delta (with this rule's `use_tree`).
    #[serde(default)]
    pub fraction: Option<f64>,
}

impl IdleTimer {
    /// The timer after one more reading.
    fn advance(self, reading: Reading, cpu_floor: f64) -> Self {
        match reading {
            // Unknown counters: the timer neither restarts nor advances.
            Reading::Missing => Self {
                fraction: None,
                ..self
            },
            Reading::Reset(_) => Self::default(),
            Reading::Fraction {
                fraction,
                dt_s,
                io_grew,
            } => {
                if fraction < cpu_floor && io_grew != Some(true) {
                    Self {
                        idle_s: Some(self.idle_s.unwrap_or(0.0) + dt_s),
                        idle_cpu_s: self.idle_cpu_s + fraction * dt_s,
                        fraction: Some(fraction),
                    }
                } else {
                    Self {
                        idle_s: Some(0.0),
                        idle_cpu_s: 0.0,
                        fraction: Some(fraction),
                    }
                }
            }
        }
    }

    /// The mean CPU fraction over the idle span.
    fn mean_fraction(&self) -> Option<f64> {
        match self.idle_s {
            Some(s) if s > 0.0 => Some(self.idle_cpu_s / s),
            _ => None,
        }
    }
}

/// Keeps the log readable: a fraction to 6 decimals.
fn round(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}
