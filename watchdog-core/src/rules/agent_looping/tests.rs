//! `agent_looping` from `activity.tool_repeat`: fires at `max_repeats`,
//! names the tool, the count, the streak's length and the spend.

use shared_schema::{AlertEvent, Cost, Envelope, RunningCost};

use crate::rules::test_kit::{activity, agent, drive, engine, env, of_rule, run, t0};

/// Agent dev calling `tool` with `repeat` in a row, its last call at `s`.
fn looping(s: f64, tool: &str, repeat: u64, cost: Option<f64>) -> Envelope {
    let mut e = env(s);
    let mut a = agent(600.0 + s, (s * 30.0) as u64, 1000 + (s as u64) * 10_000);
    let mut act = activity(3, 10 + repeat);
    act.last_tool = Some(tool.into());
    act.last_tool_at = Some(t0().plus_seconds(s));
    act.tool_repeat = repeat;
    act.cost_usd = cost;
    a.activity = Some(act);
    e.agents = vec![a];
    e
}

#[test]
fn fires_at_max_repeats_with_tool_count_duration_and_spend() {
    let mut en = engine("");
    // 1, 2, 3, 4 in a row: not yet.
    let mut lines = Vec::new();
    for (i, s) in [0.0, 2.0, 4.0, 6.0].into_iter().enumerate() {
        lines.extend(run(&mut en, looping(s, "Bash", i as u64 + 1, Some(1.2))));
    }
    assert!(of_rule(&lines, "agent_looping").is_empty(), "{lines:?}");
    // The fifth at 8 s fires at once (for = 0s).
    let lines = run(&mut en, looping(8.0, "Bash", 5, Some(1.25)));
    let l = of_rule(&lines, "agent_looping");
    assert_eq!(l.len(), 1, "{lines:?}");
    assert_eq!(l[0].event, AlertEvent::Firing);
    assert_eq!(l[0].key, "agent_looping|orch-1|job=7|run=42|pid=1234");
    assert_eq!(
        l[0].summary,
        "agent dev (job 7, pid 1234) made the same Bash call 5 times in a row over 8s ($1.25 so far)"
    );
    assert_eq!((l[0].value, l[0].threshold), (Some(5.0), Some(5.0)));
    // It goes on: no new line, the summary follows the count.
    let lines = run(&mut en, looping(12.0, "Bash", 37, Some(1.39)));
    assert!(of_rule(&lines, "agent_looping").is_empty(), "{lines:?}");
    let (alert, _) = en
        .alerts_of("orch-1")
        .into_iter()
        .find(|(a, _)| a.rule == "agent_looping")
        .unwrap();
    assert_eq!(
        alert.finding.summary,
        "agent dev (job 7, pid 1234) made the same Bash call 37 times in a row over 12s ($1.39 so far)"
    );
    // A different call: the streak is over, the alert resolves.
    let lines = run(&mut en, looping(14.0, "Read", 1, Some(1.40)));
    let l = of_rule(&lines, "agent_looping");
    assert_eq!(l.len(), 1, "{lines:?}");
    assert_eq!(l[0].event, AlertEvent::Resolved);
}

#[test]
fn the_database_cost_wins_and_unknown_spend_is_left_out() {
    let mut en = engine("");
    let mut e = looping(0.0, "ls", 9, Some(0.5));
    e.cost = Some(Cost {
        running: vec![RunningCost {
            job_id: Some(7),
            run_id: Some(42),
            cost_usd: Some(2.0),
            ..RunningCost::default()
        }],
        aggregate: None,
    });
    let lines = run(&mut en, e);
    let l = of_rule(&lines, "agent_looping");
    assert_eq!(
        l[0].summary,
        "agent dev (job 7, pid 1234) made the same ls call 9 times in a row ($2.00 so far)"
    );
    let mut en = engine("");
    let lines = run(&mut en, looping(0.0, "ls", 9, None));
    assert_eq!(
        of_rule(&lines, "agent_looping")[0].summary,
        "agent dev (job 7, pid 1234) made the same ls call 9 times in a row"
    );
}

#[test]
fn a_working_session_with_different_calls_never_fires() {
    let mut en = engine("");
    let lines = drive(&mut en, 0.0, 600.0, 2.0, |s| {
        // Never more than 2 alike in a row.
        looping(s, "Read", 1 + (s as u64 / 2) % 2, Some(0.1))
    });
    assert!(of_rule(&lines, "agent_looping").is_empty(), "{lines:?}");
    // And an agent without telemetry is never looping.
    let mut en = engine("");
    let lines = drive(&mut en, 0.0, 60.0, 2.0, |s| {
        let mut e = env(s);
        e.agents = vec![agent(600.0 + s, 0, 0)];
        e
    });
    assert!(of_rule(&lines, "agent_looping").is_empty(), "{lines:?}");
}

#[test]
fn per_agent_max_repeats_and_a_degraded_section_is_a_gap() {
    let mut en = engine("[agent_looping]\nper_agent = { dev = { max_repeats = 50 } }\n");
    let lines = run(&mut en, looping(0.0, "Bash", 37, None));
    assert!(of_rule(&lines, "agent_looping").is_empty(), "{lines:?}");
    let lines = run(&mut en, looping(2.0, "Bash", 50, None));
    assert_eq!(of_rule(&lines, "agent_looping").len(), 1, "{lines:?}");
    let lines = drive(&mut en, 4.0, 60.0, 2.0, |s| {
        let mut e = looping(s, "Read", 1, None);
        e.mark_degraded("agents");
        e
    });
    assert!(
        of_rule(&lines, "agent_looping").is_empty(),
        "resolved while agents was degraded: {lines:?}"
    );
    let err = crate::rules::RuleSet::build(
        &[(
            "agent_looping".to_owned(),
            serde_json::json!({"max_repeats": 1}),
        )]
        .into_iter()
        .collect(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("max_repeats"), "{err}");
}
