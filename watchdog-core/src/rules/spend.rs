//! What one run has spent so far, and where the figure comes from: the
//! orchestrator's `agent_runs.cost_usd` (section `cost.running`) when it is
//! known, else the sum the agent itself reported over OTLP
//! (`agents[i].activity.cost_usd`, page 3). Many orchestrators write the
//! cost only when a run ends; the agent's own telemetry is what shows a
//! runaway run while it still runs. Shared by `run_cost`, `cost_budget`,
//! `agent_looping`'s summary and the watchdog's gauges.

use shared_schema::{Agent, Envelope, RunningCost};

/// Where a spend figure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// `agent_runs.cost_usd`, read by the emitter from the orchestrator's database.
    Db,
    /// The agent's own OTLP cost records.
    Telemetry,
}

impl Source {
    /// `db` or `telemetry`: the `source` label and the summaries' word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Db => "db",
            Self::Telemetry => "telemetry",
        }
    }
}

/// One run's spend so far.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spend {
    /// US dollars.
    pub usd: f64,
    /// Where it came from.
    pub source: Source,
}

impl Spend {
    /// `; from the agent's telemetry` for a telemetry figure, else nothing:
    /// the summaries say so (inside their parentheses) when the database did not know.
    pub fn note(&self) -> &'static str {
        match self.source {
            Source::Db => "",
            Source::Telemetry => "; from the agent's telemetry",
        }
    }
}

fn same_run(a: Option<i64>, b: Option<i64>) -> bool {
    a.is_none() || b.is_none() || a == b
}

/// The `cost.running` row of a job's run, when the section can be trusted.
pub fn running_row(env: &Envelope, job_id: i64, run_id: Option<i64>) -> Option<&RunningCost> {
    if env.is_degraded(shared_schema::Section::Cost) {
        return None;
    }
    env.cost
        .as_ref()?
        .running
        .iter()
        .find(|r| r.job_id == Some(job_id) && same_run(r.run_id, run_id))
}

/// The `agents` row of a job's run, when the section can be trusted.
pub fn agent_row(env: &Envelope, job_id: i64, run_id: Option<i64>) -> Option<&Agent> {
    if env.is_degraded("agents") {
        return None;
    }
    env.agents
        .iter()
        .find(|a| a.job_id == job_id && same_run(a.run_id, run_id))
}

/// The spend of `agent`'s run: the database's figure, else its telemetry's.
pub fn of_agent(env: &Envelope, agent: &Agent) -> Option<Spend> {
    let db = running_row(env, agent.job_id, agent.run_id).and_then(|r| r.cost_usd);
    pick(db, agent.activity.as_ref().and_then(|a| a.cost_usd))
}

/// The spend of a job's run, from whichever sections can be trusted.
pub fn of_run(env: &Envelope, job_id: i64, run_id: Option<i64>) -> Option<Spend> {
    let db = running_row(env, job_id, run_id).and_then(|r| r.cost_usd);
    let telemetry = agent_row(env, job_id, run_id)
        .and_then(|a| a.activity.as_ref())
        .and_then(|a| a.cost_usd);
    pick(db, telemetry)
}

fn pick(db: Option<f64>, telemetry: Option<f64>) -> Option<Spend> {
    let finite = |v: Option<f64>| v.filter(|x| x.is_finite() && *x >= 0.0);
    match (finite(db), finite(telemetry)) {
        (Some(usd), _) => Some(Spend {
            usd,
            source: Source::Db,
        }),
        (None, Some(usd)) => Some(Spend {
            usd,
            source: Source::Telemetry,
        }),
        (None, None) => None,
    }
}

/// What the running runs' telemetry adds to `cost.aggregate.cost_usd`: the
/// sum over running runs whose database cost is still null (the aggregate
/// counts those as 0), and how many runs that is.
pub fn telemetry_not_in_db(env: &Envelope) -> (f64, usize) {
    if env.is_degraded("agents") {
        return (0.0, 0);
    }
    let mut sum = 0.0;
    let mut runs = 0;
    let mut seen: Vec<(i64, Option<i64>)> = Vec::new();
    for a in &env.agents {
        if seen.contains(&(a.job_id, a.run_id)) {
            continue; // a duplicate row counts once
        }
        seen.push((a.job_id, a.run_id));
        if let Some(Spend {
            usd,
            source: Source::Telemetry,
        }) = of_agent(env, a)
        {
            sum += usd;
            runs += 1;
        }
    }
    (sum, runs)
}

#[cfg(test)]
mod tests {
    use shared_schema::{Activity, Cost, Timestamp};

    use super::*;

    fn env(db: Option<f64>, telemetry: Option<f64>) -> Envelope {
        let mut e = Envelope::new(Timestamp::parse("2026-11-22T10:00:00Z").unwrap());
        e.agents = vec![Agent {
            job_id: 7,
            run_id: Some(42),
            activity: Some(Activity {
                cost_usd: telemetry,
                ..Activity::default()
            }),
            ..Agent::default()
        }];
        e.cost = Some(Cost {
            running: vec![RunningCost {
                job_id: Some(7),
                run_id: Some(42),
                cost_usd: db,
                ..RunningCost::default()
            }],
            aggregate: None,
        });
        e
    }

    #[test]
    fn the_database_wins_and_telemetry_fills_in_for_null() {
        let s = of_run(&env(Some(2.0), Some(1.5)), 7, Some(42)).unwrap();
        assert_eq!((s.usd, s.source), (2.0, Source::Db));
        let s = of_run(&env(None, Some(1.5)), 7, Some(42)).unwrap();
        assert_eq!((s.usd, s.source), (1.5, Source::Telemetry));
        assert_eq!(of_run(&env(None, None), 7, Some(42)), None);
        assert_eq!(of_run(&env(None, Some(f64::NAN)), 7, Some(42)), None);
        assert_eq!(telemetry_not_in_db(&env(None, Some(1.5))), (1.5, 1));
        assert_eq!(telemetry_not_in_db(&env(Some(2.0), Some(1.5))), (0.0, 0));
        let mut degraded = env(Some(2.0), Some(1.5));
        degraded.mark_degraded("cost");
        let s = of_run(&degraded, 7, Some(42)).unwrap();
        assert_eq!(s.source, Source::Telemetry);
    }
}
