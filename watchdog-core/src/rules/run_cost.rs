//! `run_cost`: one running run has spent more than `max_usd`, or spends
//! faster than `max_usd_per_hour` (over `window`). The per-task guard agent
//! runners use, next to `cost_budget`'s aggregate: one runaway run shows
//! here long before it moves the total. Off unless `max_usd` or
//! `max_usd_per_hour` is set, for the rule or, through `per_agent`, for
//! some agents only.
//!
//! The spend is the orchestrator's `cost.running[].cost_usd` when known,
//! else the agent's own telemetry (`agents[i].activity.cost_usd`, page 3):
//! many orchestrators write the cost only when a run ends, which is too
//! late for a run that burns money now ([`super::spend`]). The summary says
//! when the figure came from telemetry. The two conditions are two alerts
//! of one run: `job=7|run=42` (the total, the page-2 key) and
//! `job=7|run=42|budget=per_hour`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shared_schema::{Section, Severity};

use super::spend::{self, Spend};
use super::{Ctx, Outcome, PerAgent, Rule, Verdict};
use crate::alerts::Finding;
use crate::delta::CounterWindows;
use crate::dur::Dur;
use crate::error::SettingError;

#[cfg(test)]
mod tests;

/// `[rules.run_cost]`'s own keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The most one run may spend, USD; unset: no limit.
    pub max_usd: Option<f64>,
    /// The fastest one run may spend, USD per hour; unset: no limit.
    pub max_usd_per_hour: Option<f64>,
    /// The window the burn rate is taken over (as `cost_budget`'s).
    pub window: Dur,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_usd: None,
            max_usd_per_hour: None,
            window: Dur::secs(900),
        }
    }
}

impl Settings {
    fn off(&self) -> bool {
        self.max_usd.is_none() && self.max_usd_per_hour.is_none()
    }
}

/// One run as this rule names it.
struct Run<'e> {
    job_id: i64,
    run_id: Option<i64>,
    agent: Option<&'e str>,
}

impl Run<'_> {
    fn subject(&self) -> String {
        format!(
            "job={}|run={}",
            self.job_id,
            self.run_id
                .map_or_else(|| "none".to_owned(), |r| r.to_string())
        )
    }

    /// Identity only (job, run, agent name), the same whichever section
    /// named the run, so the labels stay put when a section is degraded.
    fn labels(&self) -> BTreeMap<String, String> {
        let mut l = BTreeMap::from([("job_id".to_owned(), self.job_id.to_string())]);
        if let Some(name) = self.agent {
            l.insert("agent".into(), name.to_owned());
        }
        if let Some(r) = self.run_id {
            l.insert("run_id".into(), r.to_string());
        }
        l
    }

    fn phrase(&self) -> String {
        format!(
            "agent {} (job {}{})",
            self.agent.unwrap_or("?"),
            self.job_id,
            self.run_id
                .map(|r| format!(", run {r}"))
                .unwrap_or_default(),
        )
    }
}

impl Rule for Settings {
    const NAME: &'static str = "run_cost";
    const SEVERITY: Severity = Severity::Warning;
    const PER_AGENT: bool = true;
    const DIAGNOSE: bool = true;
    /// Each run's spend over the window, by subject.
    type State = CounterWindows;

    fn check(&self) -> Result<(), SettingError> {
        for (key, v) in [
            ("max_usd", self.max_usd),
            ("max_usd_per_hour", self.max_usd_per_hour),
        ] {
            if let Some(m) = v {
                if !(m.is_finite() && m >= 0.0) {
                    return Err(SettingError::key(key, "must be a non-negative number"));
                }
            }
        }
        if self.window.0.is_zero() {
            return Err(SettingError::key("window", "must be longer than 0s"));
        }
        Ok(())
    }

    fn evaluate(&self, ctx: &Ctx<'_>, windows: &mut Self::State, per: &PerAgent<Self>) -> Outcome {
        if self.off() && per.all().all(Settings::off) {
            windows.clear();
            return Outcome::clear();
        }
        // The run list comes from `cost.running`; telemetry fills in a null
        // cost but never stands in for a section that cannot be trusted.
        let Some(env) = ctx.section(Section::Cost) else {
            return Outcome::Unknown;
        };
        let Some(cost) = env.cost.as_ref() else {
            return Outcome::Unknown;
        };
        let mut runs: Vec<Run<'_>> = cost
            .running
            .iter()
            .filter_map(|r| {
                Some(Run {
                    // No subject to name without a job (a row the emitter could not read).
                    job_id: r.job_id?,
                    run_id: r.run_id,
                    agent: r.agent.as_deref(),
                })
            })
            .collect();
        // A running agent the cost section does not list (yet) still has
        // its telemetry; without any, it is not a run of this section.
        if !env.is_degraded(Section::Agents) {
            for a in &env.agents {
                let reported = a.activity.as_ref().is_some_and(|x| x.cost_usd.is_some());
                if reported
                    && !runs
                        .iter()
                        .any(|r| r.job_id == a.job_id && r.run_id == a.run_id)
                {
                    runs.push(Run {
                        job_id: a.job_id,
                        run_id: a.run_id,
                        agent: a.agent.as_deref(),
                    });
                }
            }
        }
        let mut out = Vec::new();
        let mut seen: Vec<String> = Vec::with_capacity(runs.len());
        for run in &runs {
            let subject = run.subject();
            if seen.contains(&subject) {
                continue; // a duplicate row: the first one speaks for the run
            }
            seen.push(subject.clone());
            let s = per.get_by_name(self, run.agent);
            let spent = spend::of_run(env, run.job_id, run.run_id);
            if let Some(max) = s.max_usd {
                match spent {
                    None => out.push((subject.clone(), Verdict::Unknown)),
                    Some(sp) if sp.usd > max => out.push((
                        subject.clone(),
                        Verdict::Firing(Finding {
                            summary: format!(
                                "{} has spent ${:.2} in this run (max ${max:.2}{})",
                                run.phrase(),
                                sp.usd,
                                sp.note()
                            ),
                            value: Some(sp.usd),
                            threshold: Some(max),
                            already_held_s: None,
                            ..per.about_job(run.job_id, run.agent, run.labels().into())
                        }),
                    )),
                    Some(_) => {}
                }
            }
            let per_hour = format!("{subject}|budget=per_hour");
            match (s.max_usd_per_hour, spent) {
                (Some(max), Some(sp)) => {
                    let window_s = s.window.as_secs_f64();
                    let growth =
                        windows
                            .get_or_insert(&subject)
                            .push(ctx.clock_s, sp.usd, window_s);
                    match growth.per_second_over(window_s).map(|x| x * 3600.0) {
                        None => out.push((per_hour, Verdict::Unknown)),
                        Some(rate) if rate > max => {
                            out.push((per_hour, burn(run, per, sp, rate, max, s.window)))
                        }
                        Some(_) => {}
                    }
                }
                (Some(_), None) => out.push((per_hour, Verdict::Unknown)),
                (None, _) => {}
            }
        }
        // Runs that ended are forgotten.
        windows.retain(|k| seen.iter().any(|s| s == k));
        Outcome::Subjects(out)
    }
}

fn burn(
    run: &Run<'_>,
    per: &PerAgent<Settings>,
    sp: Spend,
    rate: f64,
    max: f64,
    window: Dur,
) -> Verdict {
    let mut labels = run.labels();
    labels.insert("budget".into(), "per_hour".into());
    Verdict::Firing(Finding {
        summary: format!(
            "{} burns ${rate:.2}/h over {window} (max ${max:.2}/h; ${:.2} so far{})",
            run.phrase(),
            sp.usd,
            sp.note()
        ),
        value: Some((rate * 1000.0).round() / 1000.0),
        threshold: Some(max),
        already_held_s: None,
        ..per.about_job(run.job_id, run.agent, labels.into())
    })
}
