//! `stuck_agent`: an agent that has run long enough, used almost no CPU and
//! did no I/O for `for`. The one alert an orchestrator cannot raise itself:
//! a hung agent looks "running" in its own tables.
//!
//! The condition of one poll is "the last delta was idle"; the delta engine
//! restarts the idle timer (and this rule says "false") when the process
//! behind the pid changed, its counters went down or the host rebooted. The
//! first sample, a delta with an unknown counter, or an emitter clock that
//! did not advance is "not enough data".

use serde::{Deserialize, Serialize};
use shared_schema::Severity;

use super::{
    agent_labels, agent_phrase, agent_subject, parse, to_table, Common, Ctx, Outcome, Rule, Verdict,
};
use crate::alerts::Finding;
use crate::delta::{AgentStatus, DeltaConfig, ResetReason};
use crate::dur::{human_secs, Dur};

/// The rule's name.
pub const NAME: &str = "stuck_agent";

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

/// The rule.
#[derive(Debug)]
pub struct StuckAgent {
    common: Common,
    settings: Settings,
}

/// Builds the rule from its table.
pub fn build(table: Option<&toml::Table>) -> Result<Box<dyn Rule>, String> {
    let (common, settings): (Common, Settings) =
        parse(table, Common::defaults(Severity::Warning, Dur::secs(600)))?;
    if !(settings.cpu_floor.is_finite() && settings.cpu_floor >= 0.0) {
        return Err("key `cpu_floor`: must be a non-negative number".into());
    }
    Ok(Box::new(StuckAgent { common, settings }))
}

impl Rule for StuckAgent {
    fn name(&self) -> &'static str {
        NAME
    }

    fn common(&self) -> &Common {
        &self.common
    }

    fn own_settings(&self) -> toml::Table {
        to_table(&self.settings)
    }

    fn tune(&self, delta: &mut DeltaConfig) {
        delta.cpu_floor = self.settings.cpu_floor;
        delta.use_tree = self.settings.use_tree;
    }

    fn evaluate(&self, ctx: &Ctx<'_>) -> Outcome {
        let Some(env) = ctx.section("agents") else {
            return Outcome::Unknown;
        };
        let min_runtime = self.settings.min_runtime.as_secs_f64();
        let mut out = Vec::new();
        for d in &ctx.deltas.agents {
            let Some(agent) = env.agents.get(d.index) else {
                continue;
            };
            let verdict = match (d.status, agent.runtime_s) {
                (_, None) | (AgentStatus::First | AgentStatus::Missing, _) => {
                    Some(Verdict::Unknown)
                }
                (_, Some(r)) if r < min_runtime => None,
                // The emitter's clock stood still: nothing was measured, so
                // nothing is known (the idle timer restarts all the same).
                (AgentStatus::Reset(ResetReason::ClockStill), _) => Some(Verdict::Unknown),
                // Another process, or another boot: the old one is not stuck.
                (AgentStatus::Reset(_), _) => None,
                (AgentStatus::Sample { fraction, io_grew }, Some(_)) => {
                    let idle = fraction < self.settings.cpu_floor && io_grew != Some(true);
                    idle.then(|| {
                        let mean = d.idle_fraction.unwrap_or(fraction);
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
                                human_secs(d.idle_s.unwrap_or(0.0))
                            ),
                            value: Some(round(mean)),
                            threshold: Some(self.settings.cpu_floor),
                            // The idle span began at the baseline, before this poll.
                            already_held_s: d.idle_s,
                        })
                    })
                }
            };
            if let Some(v) = verdict {
                out.push((agent_subject(agent), v));
            }
        }
        Outcome::Subjects(out)
    }
}

/// Keeps the log readable: a fraction to 6 decimals.
fn round(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}
