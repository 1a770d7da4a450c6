//! `run_cost`: one running run has spent more than `max_usd` (section
//! `cost.running`). The per-task guard agent runners use, next to
//! `cost_budget`'s aggregate: one runaway run shows here long before it
//! moves the total. Off unless `max_usd` is set, for the rule or, through
//! `per_agent`, for some agents only.

use serde::{Deserialize, Serialize};
use shared_schema::{RunningCost, Severity};

use super::{labels, Ctx, Outcome, PerAgent, Rule, Verdict};
use crate::alerts::Finding;

/// `[rules.run_cost]`'s own keys.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The most one run may spend, USD; unset: no limit.
    pub max_usd: Option<f64>,
}

impl Rule for Settings {
    const NAME: &'static str = "run_cost";
    const SEVERITY: Severity = Severity::Warning;
    const PER_AGENT: bool = true;
    const DIAGNOSE: bool = true;
    type State = ();

    fn check(&self) -> Result<(), String> {
        match self.max_usd {
            Some(m) if !(m.is_finite() && m >= 0.0) => {
                Err("key `max_usd`: must be a non-negative number".into())
            }
            _ => Ok(()),
        }
    }

    fn evaluate(&self, ctx: &Ctx<'_>, _: &mut (), per: &PerAgent<Self>) -> Outcome {
        if self.max_usd.is_none() && per.all().all(|s| s.max_usd.is_none()) {
            return Outcome::clear();
        }
        let Some(env) = ctx.section("cost") else {
            return Outcome::Unknown;
        };
        let Some(cost) = env.cost.as_ref() else {
            return Outcome::Unknown;
        };
        let mut out = Vec::new();
        for run in &cost.running {
            let Some(max) = per.get_by_name(self, run.agent.as_deref()).max_usd else {
                continue;
            };
            let Some(job_id) = run.job_id else {
                continue; // no subject to name (a row the emitter could not read)
            };
            let subject = format!(
                "job={job_id}|run={}",
                run.run_id
                    .map_or_else(|| "none".to_owned(), |r| r.to_string())
            );
            match run.cost_usd {
                None => out.push((subject, Verdict::Unknown)),
                Some(spent) if spent > max => out.push((
                    subject,
                    Verdict::Firing(Finding {
                        labels: run_labels(run, job_id),
                        summary: format!(
                            "agent {} (job {job_id}{}) has spent ${spent:.2} in this run (max ${max:.2})",
                            run.agent.as_deref().unwrap_or("?"),
                            run.run_id.map(|r| format!(", run {r}")).unwrap_or_default(),
                        ),
                        value: Some(spent),
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

/// Identity only, from the cost entry itself (not the agents section, so
/// the labels stay the same when that section is degraded).
fn run_labels(run: &RunningCost, job_id: i64) -> std::collections::BTreeMap<String, String> {
    let mut l = labels([("job_id", job_id.to_string())]);
    if let Some(name) = &run.agent {
        l.insert("agent".into(), name.clone());
    }
    if let Some(r) = run.run_id {
        l.insert("run_id".into(), r.to_string());
    }
    l
}
