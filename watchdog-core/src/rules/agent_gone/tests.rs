//! `agent_gone`: a gone or zombie process, and what `stuck_agent` does meanwhile.

use shared_schema::{AlertEvent, Envelope};

use crate::rules::test_kit::{
    busy_env, calm_env as env, drive_15s as drive, engine, idle_env, of_rule, t0,
};
use crate::rules::RuleSet;

/// Agent dev (job 7, pid 1234) as the emitter sends a process: alive, in `state`.
fn live_env(s: f64, alive: Option<bool>, state: Option<&str>) -> Envelope {
    let mut e = busy_env(s);
    e.agents[0].alive = alive;
    e.agents[0].state = state.map(str::to_owned);
    if alive == Some(false) {
        // What the emitter sends for a dead pid: nothing readable.
        let a = &mut e.agents[0];
        a.cpu_ticks = None;
        a.tree_cpu_ticks = None;
        a.start_ticks = None;
        a.io_rchar = None;
        a.io_wchar = None;
    }
    e
}

#[test]
fn agent_gone_fires_after_for_when_the_process_is_gone() {
    let mut en = engine("");
    let lines = drive(&mut en, 0, 45, |s| live_env(s, Some(false), None));
    assert!(
        of_rule(&lines, "agent_gone").is_empty(),
        "for 1m: {lines:?}"
    );
    let lines = drive(&mut en, 60, 60, |s| live_env(s, Some(false), None));
    let gone = of_rule(&lines, "agent_gone");
    assert_eq!(gone.len(), 1, "{lines:?}");
    assert_eq!(gone[0].event, AlertEvent::Firing);
    assert_eq!(gone[0].severity, shared_schema::Severity::Critical);
    assert_eq!(gone[0].key, "agent_gone|orch-1|job=7|run=42|pid=1234");
    assert_eq!(
        gone[0].summary,
        "agent dev (job 7, pid 1234) is gone: no such process, but job 7 is still running"
    );
    assert_eq!(gone[0].since, t0());
    // The job finishes (the agent leaves the envelope): resolved.
    let lines = drive(&mut en, 75, 75, env);
    assert_eq!(of_rule(&lines, "agent_gone")[0].event, AlertEvent::Resolved);
}

#[test]
fn agent_gone_says_zombie_and_stuck_agent_stays_quiet() {
    let mut en = engine("[agent_gone]\nfor = \"0s\"\n");
    // A zombie's counters stand still: 0% CPU, no I/O, for an hour.
    let lines = drive(&mut en, 0, 3600, |s| {
        let mut e = idle_env(s);
        e.agents[0].alive = Some(true);
        e.agents[0].state = Some("Z".into());
        e
    });
    let gone = of_rule(&lines, "agent_gone");
    assert_eq!(gone.len(), 1, "{lines:?}");
    assert!(
        gone[0].summary.contains("exited, not reaped (zombie)"),
        "{}",
        gone[0].summary
    );
    assert!(
        of_rule(&lines, "stuck_agent").is_empty(),
        "a zombie is not stuck: {lines:?}"
    );
}

#[test]
fn a_gone_process_is_not_stuck_and_a_stuck_alert_resolves_when_it_dies() {
    let mut en = engine("");
    let lines = drive(&mut en, 0, 630, idle_env);
    assert_eq!(of_rule(&lines, "stuck_agent").len(), 1);
    let lines = drive(&mut en, 645, 645, |s| live_env(s, Some(false), None));
    let stuck = of_rule(&lines, "stuck_agent");
    assert_eq!(stuck.len(), 1, "{lines:?}");
    assert_eq!(stuck[0].event, AlertEvent::Resolved);
}

#[test]
fn agent_gone_alive_null_is_not_enough_data() {
    let mut en = engine("[agent_gone]\nfor = \"30s\"\n");
    // An older emitter: no `alive`, no `state`: never gone.
    let lines = drive(&mut en, 0, 600, |s| live_env(s, None, None));
    assert!(of_rule(&lines, "agent_gone").is_empty(), "{lines:?}");
    // Gone for 15 s, then unknown for a while, then gone again: the unknown
    // polls neither fire, resolve nor count towards `for`.
    let lines = drive(&mut en, 615, 630, |s| live_env(s, Some(false), None));
    assert!(of_rule(&lines, "agent_gone").is_empty());
    let lines = drive(&mut en, 645, 900, |s| live_env(s, None, None));
    assert!(of_rule(&lines, "agent_gone").is_empty(), "{lines:?}");
    let lines = drive(&mut en, 915, 915, |s| live_env(s, Some(false), None));
    assert!(
        of_rule(&lines, "agent_gone").is_empty(),
        "15 s held plus a gap is not 30 s: {lines:?}"
    );
    let lines = drive(&mut en, 930, 930, |s| live_env(s, Some(false), None));
    assert_eq!(of_rule(&lines, "agent_gone").len(), 1, "{lines:?}");
    // A degraded agents section neither resolves it...
    let lines = drive(&mut en, 945, 1200, |s| {
        let mut e = live_env(s, Some(true), Some("S"));
        e.mark_degraded("agents");
        e
    });
    assert!(of_rule(&lines, "agent_gone").is_empty(), "{lines:?}");
    // ...nor does alive null; alive true does.
    let lines = drive(&mut en, 1215, 1230, |s| live_env(s, None, None));
    assert!(of_rule(&lines, "agent_gone").is_empty(), "{lines:?}");
    let lines = drive(&mut en, 1245, 1245, |s| live_env(s, Some(true), Some("S")));
    assert_eq!(of_rule(&lines, "agent_gone")[0].event, AlertEvent::Resolved);
}

#[test]
fn agent_gone_per_agent_for() {
    let mut en = engine("[agent_gone]\nper_agent = { dev = { for = \"10s\" } }\n");
    let lines = drive(&mut en, 0, 15, |s| live_env(s, Some(false), None));
    assert_eq!(of_rule(&lines, "agent_gone").len(), 1, "{lines:?}");
    let mut en = engine("[agent_gone]\nper_agent = { reviewer = { for = \"10s\" } }\n");
    let lines = drive(&mut en, 0, 45, |s| live_env(s, Some(false), None));
    assert!(
        of_rule(&lines, "agent_gone").is_empty(),
        "dev keeps 1m: {lines:?}"
    );
    let t = serde_json::json!({"per_agent": {"dev": {"max": "1m"}}});
    let err = RuleSet::build(&[("agent_gone".to_owned(), t)].into_iter().collect())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("[rules.agent_gone]") && err.contains("per_agent.dev") && err.contains("max"),
        "{err}"
    );
}
