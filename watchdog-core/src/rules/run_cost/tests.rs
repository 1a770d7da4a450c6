//! `run_cost` live (page 3): the database's cost when known, else the
//! agent's telemetry; `max_usd_per_hour` per run; `cost_budget`'s total
//! with the telemetry of runs the database has no cost for yet.

use shared_schema::{AlertEvent, Cost, CostAggregate, Envelope, RunningCost};

use crate::rules::test_kit::{activity, agent, drive, engine, env, of_rule, run};

/// The page-1 cases, on the calm envelope of `test_kit::calm_env`.
mod page1;

/// Job 7 / run 42 of agent `name`: `db` in cost.running, `telemetry` in its activity.
fn spending(s: f64, name: &str, db: Option<f64>, telemetry: Option<f64>) -> Envelope {
    let mut e = env(s);
    let mut a = agent(600.0 + s, (s * 30.0) as u64, 0);
    a.agent = Some(name.into());
    let mut act = activity(3, 2);
    act.cost_usd = telemetry;
    a.activity = Some(act);
    e.agents = vec![a];
    e.cost = Some(Cost {
        running: vec![RunningCost {
            run_id: Some(42),
            job_id: Some(7),
            agent: Some(name.into()),
            cost_usd: db,
            ..RunningCost::default()
        }],
        aggregate: Some(CostAggregate {
            cost_usd: Some(10.0),
            ..CostAggregate::default()
        }),
    });
    e
}

#[test]
fn a_null_database_cost_is_filled_in_by_telemetry_and_the_summary_says_so() {
    let mut en = engine("[run_cost]\nmax_usd = 5.0\n");
    let lines = run(&mut en, spending(0.0, "dev", None, Some(4.0)));
    assert!(of_rule(&lines, "run_cost").is_empty(), "{lines:?}");
    let lines = run(&mut en, spending(15.0, "dev", None, Some(5.5)));
    let r = of_rule(&lines, "run_cost");
    assert_eq!(r.len(), 1, "{lines:?}");
    assert_eq!(r[0].key, "run_cost|orch-1|job=7|run=42");
    assert_eq!(r[0].value, Some(5.5));
    assert_eq!(
        r[0].summary,
        "agent dev (job 7, run 42) has spent $5.50 in this run (max $5.00; from the agent's telemetry)"
    );
    // The database learns the cost: it wins (same alert, no new line).
    let lines = run(&mut en, spending(30.0, "dev", Some(5.6), Some(5.5)));
    assert!(of_rule(&lines, "run_cost").is_empty(), "{lines:?}");
    let (alert, _) = en
        .alerts_of("orch-1")
        .into_iter()
        .find(|(a, _)| a.rule == "run_cost")
        .unwrap();
    assert_eq!(
        alert.finding.summary,
        "agent dev (job 7, run 42) has spent $5.60 in this run (max $5.00)"
    );
    // Neither known: a gap, not a resolution.
    let lines = run(&mut en, spending(45.0, "dev", None, None));
    assert!(of_rule(&lines, "run_cost").is_empty(), "{lines:?}");
}

#[test]
fn a_degraded_cost_section_stays_a_gap_even_with_telemetry() {
    let mut en = engine("[run_cost]\nmax_usd = 5.0\n");
    run(&mut en, spending(0.0, "dev", Some(6.0), None));
    let lines = drive(&mut en, 15.0, 120.0, 15.0, |s| {
        let mut e = spending(s, "dev", None, Some(1.0));
        e.mark_degraded("cost");
        e
    });
    assert!(of_rule(&lines, "run_cost").is_empty(), "{lines:?}");
    let firing: Vec<_> = en
        .firing_alerts()
        .into_iter()
        .filter(|(a, _)| a.rule == "run_cost")
        .collect();
    assert_eq!(firing.len(), 1);
}

#[test]
fn an_agent_the_cost_section_does_not_list_is_judged_on_its_telemetry() {
    let mut en = engine("[run_cost]\nmax_usd = 1.0\n");
    let mut e = spending(0.0, "dev", None, Some(2.0));
    if let Some(c) = e.cost.as_mut() {
        c.running.clear();
    }
    let lines = run(&mut en, e);
    assert_eq!(of_rule(&lines, "run_cost").len(), 1, "{lines:?}");
}

#[test]
fn max_usd_per_hour_fires_on_one_runs_burn_rate() {
    let mut en = engine("[run_cost]\nmax_usd_per_hour = 6.0\nwindow = \"5m\"\n");
    // $0.01 a second is $36/h, from telemetry.
    let lines = drive(&mut en, 0.0, 300.0, 15.0, |s| {
        spending(s, "dev", None, Some(0.01 * s))
    });
    let r = of_rule(&lines, "run_cost");
    assert_eq!(r.len(), 1, "{lines:?}");
    assert_eq!(r[0].key, "run_cost|orch-1|job=7|run=42|budget=per_hour");
    assert_eq!(r[0].labels.get("budget"), Some("per_hour"));
    assert!(
        r[0].summary
            .starts_with("agent dev (job 7, run 42) burns $")
            && r[0].summary.contains("/h over 5m (max $6.00/h; $")
            && r[0]
                .summary
                .ends_with("so far; from the agent's telemetry)"),
        "{}",
        r[0].summary
    );
    // Over the whole window it is $36/h.
    let lines = drive(&mut en, 315.0, 600.0, 15.0, |s| {
        spending(s, "dev", None, Some(0.01 * s))
    });
    assert!(of_rule(&lines, "run_cost").is_empty(), "{lines:?}");
    let (alert, _) = en
        .alerts_of("orch-1")
        .into_iter()
        .find(|(a, _)| a.rule == "run_cost")
        .unwrap();
    assert_eq!(alert.finding.value, Some(36.0));
    // The spending stops: the rate falls below the max and it resolves.
    let lines = drive(&mut en, 615.0, 1000.0, 15.0, |s| {
        spending(s, "dev", None, Some(6.0))
    });
    let r = of_rule(&lines, "run_cost");
    assert_eq!(r.len(), 1, "{lines:?}");
    assert_eq!(r[0].event, AlertEvent::Resolved);
}

#[test]
fn per_agent_per_hour_for_one_agent_only() {
    let cfg = "[run_cost]\nper_agent = { reviewer = { max_usd_per_hour = 1.0 } }\n";
    let mut en = engine(cfg);
    let lines = drive(&mut en, 0.0, 900.0, 15.0, |s| {
        spending(s, "dev", Some(0.01 * s), None)
    });
    assert!(of_rule(&lines, "run_cost").is_empty(), "{lines:?}");
    let mut en = engine(cfg);
    let lines = drive(&mut en, 0.0, 900.0, 15.0, |s| {
        spending(s, "reviewer", Some(0.01 * s), None)
    });
    assert_eq!(of_rule(&lines, "run_cost").len(), 1, "{lines:?}");
}

#[test]
fn cost_budget_counts_the_telemetry_of_runs_the_database_has_no_cost_for() {
    let mut en = engine("[cost_budget]\nmax_usd = 12.0\n");
    // Aggregate $10 from the database, plus $2.50 the running agent reported.
    let lines = run(&mut en, spending(0.0, "dev", None, Some(2.5)));
    let c = of_rule(&lines, "cost_budget");
    assert_eq!(c.len(), 1, "{lines:?}");
    assert_eq!(
        c[0].summary,
        "orch-1 has spent $12.50 (budget $12.00; $2.50 of it from the telemetry of 1 running run)"
    );
    assert_eq!(c[0].value, Some(12.5));
    // Once the database has the run's cost, the aggregate holds it; telemetry adds nothing.
    let mut en = engine("[cost_budget]\nmax_usd = 12.0\n");
    let lines = run(&mut en, spending(0.0, "dev", Some(2.5), Some(2.5)));
    assert!(of_rule(&lines, "cost_budget").is_empty(), "{lines:?}");
}
