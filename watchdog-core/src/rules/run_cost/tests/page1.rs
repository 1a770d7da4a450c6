//! `run_cost` on page 1: off by default, `max_usd`, and `per_agent`.

use shared_schema::{AlertEvent, Envelope};

use crate::rules::test_kit::{busy_env, drive_15s as drive, engine, of_rule};
use crate::rules::RuleSet;

fn with_run_cost(s: f64, agent: &str, cost: Option<f64>) -> Envelope {
    let mut e = busy_env(s);
    e.agents[0].agent = Some(agent.to_owned());
    if let Some(c) = e.cost.as_mut() {
        c.running = vec![shared_schema::RunningCost {
            run_id: Some(42),
            job_id: Some(7),
            agent: Some(agent.to_owned()),
            cost_usd: cost,
            ..shared_schema::RunningCost::default()
        }];
    }
    e
}

#[test]
fn run_cost_is_off_by_default_and_fires_past_max_usd() {
    let mut en = engine("");
    let lines = drive(&mut en, 0, 60, |s| with_run_cost(s, "dev", Some(1e6)));
    assert!(of_rule(&lines, "run_cost").is_empty());

    let mut en = engine("[run_cost]\nmax_usd = 5.0\n");
    let lines = drive(&mut en, 0, 0, |s| with_run_cost(s, "dev", Some(5.0)));
    assert!(
        of_rule(&lines, "run_cost").is_empty(),
        "at max is not past it"
    );
    let lines = drive(&mut en, 15, 15, |s| with_run_cost(s, "dev", Some(5.2)));
    let r = of_rule(&lines, "run_cost");
    assert_eq!(r.len(), 1, "{lines:?}");
    assert_eq!(r[0].key, "run_cost|orch-1|job=7|run=42");
    assert_eq!(r[0].value, Some(5.2));
    assert_eq!(r[0].threshold, Some(5.0));
    assert_eq!(
        r[0].summary,
        "agent dev (job 7, run 42) has spent $5.20 in this run (max $5.00)"
    );
    assert_eq!(r[0].labels.get("job_id"), Some("7"));
    // Unknown cost, or a degraded section: neither fires nor resolves.
    let lines = drive(&mut en, 30, 60, |s| with_run_cost(s, "dev", None));
    assert!(of_rule(&lines, "run_cost").is_empty(), "{lines:?}");
    let lines = drive(&mut en, 75, 120, |s| {
        let mut e = with_run_cost(s, "dev", Some(0.0));
        e.mark_degraded("cost");
        e
    });
    assert!(of_rule(&lines, "run_cost").is_empty(), "{lines:?}");
    // The run ends (leaves cost.running): resolved.
    let lines = drive(&mut en, 135, 135, busy_env);
    assert_eq!(of_rule(&lines, "run_cost")[0].event, AlertEvent::Resolved);
}

#[test]
fn run_cost_per_agent_sets_max_for_one_agent_only() {
    let cfg = "[run_cost]\nper_agent = { reviewer = { max_usd = 1.0 } }\n";
    let mut en = engine(cfg);
    let lines = drive(&mut en, 0, 30, |s| with_run_cost(s, "dev", Some(50.0)));
    assert!(of_rule(&lines, "run_cost").is_empty(), "{lines:?}");
    let mut en = engine(cfg);
    let lines = drive(&mut en, 0, 0, |s| with_run_cost(s, "reviewer", Some(1.5)));
    assert_eq!(of_rule(&lines, "run_cost").len(), 1, "{lines:?}");
    let err = RuleSet::build(
        &[("run_cost".to_owned(), serde_json::json!({"max_usd": -1.0}))]
            .into_iter()
            .collect(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("max_usd"), "{err}");
}
