//! `agent_gone`: a `running` job whose process is gone (`alive == false`:
//! OOM-killed, crashed, killed with the orchestrator never told) or has
//! exited and was never reaped (`state == "Z"`). The summary says which:
//! "no such process" or "exited, not reaped (zombie)".
//!
//! Without this rule a dead agent is only "not enough data" for
//! `stuck_agent` (no counters to read) and a zombie looks like a stuck
//! agent at 0% CPU, which sends on-call to the wrong place; `stuck_agent`
//! leaves both to this rule. An agent with no pid is `agent_no_pid`'s; an
//! `alive` of null (an emitter older than page 2, or `/proc` cannot tell)
//! is "not enough data", never "gone".

use serde::{Deserialize, Serialize};
use shared_schema::{Agent, Section, Severity};

use super::{agent_phrase, agent_subject, Ctx, Outcome, PerAgent, Rule, Verdict};
use crate::alerts::Finding;
use crate::dur::Dur;

#[cfg(test)]
mod tests;

/// `[rules.agent_gone]` has no keys of its own (only the common ones and
/// `per_agent`, whose only use here is `for`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {}

/// Why the agent's process is not there to run the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gone {
    /// No process has that pid.
    NoSuchProcess,
    /// It exited and its parent never reaped it.
    Zombie,
}

impl Gone {
    /// The words of the summary (CONTRACT.md section 3).
    pub fn phrase(self) -> &'static str {
        match self {
            Self::NoSuchProcess => "no such process",
            Self::Zombie => "exited, not reaped (zombie)",
        }
    }
}

/// Whether the agent's process is gone: `Some(Some(why))` gone,
/// `Some(None)` there, `None` not known. A pid-less agent is "there" for
/// this rule (nothing to look at; `agent_no_pid` speaks for it).
pub fn gone(agent: &Agent) -> Option<Option<Gone>> {
    if agent.pid.is_none() {
        return Some(None);
    }
    // A zombie still exists (`alive` is true), so the state decides first.
    if agent.state.as_deref() == Some("Z") {
        return Some(Some(Gone::Zombie));
    }
    match agent.alive {
        Some(false) => Some(Some(Gone::NoSuchProcess)),
        Some(true) => Some(None),
        None => None,
    }
}

impl Rule for Settings {
    const NAME: &'static str = "agent_gone";
    const SEVERITY: Severity = Severity::Critical;
    const FOR: Dur = Dur::secs(60);
    const PER_AGENT: bool = true;
    const DIAGNOSE: bool = true;
    type State = ();

    fn evaluate(&self, ctx: &Ctx<'_>, _: &mut (), per: &PerAgent<Self>) -> Outcome {
        let Some(env) = ctx.section(Section::Agents) else {
            return Outcome::Unknown;
        };
        let mut out = Vec::new();
        for agent in &env.agents {
            match gone(agent) {
                None => out.push((agent_subject(agent), Verdict::Unknown)),
                Some(None) => {}
                Some(Some(why)) => out.push((
                    agent_subject(agent),
                    Verdict::Firing(Finding {
                        summary: format!(
                            "{} {}{}, but job {} is still running",
                            agent_phrase(agent),
                            if why == Gone::Zombie { "" } else { "is gone: " },
                            why.phrase(),
                            agent.job_id
                        ),
                        value: None,
                        threshold: None,
                        already_held_s: None,
                        ..per.about(agent)
                    }),
                )),
            }
        }
        Outcome::Subjects(out)
    }
}
