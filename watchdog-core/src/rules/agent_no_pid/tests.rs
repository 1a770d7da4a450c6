//! `agent_no_pid`: after 2m, resolves once a pid is recorded.

use shared_schema::AlertEvent;

use crate::rules::test_kit::{busy_env, drive_15s as drive, engine, of_rule};

#[test]
fn agent_no_pid_fires_after_2m_and_resolves_once_a_pid_is_recorded() {
    let no_pid = |s: f64| {
        let mut e = busy_env(s);
        let a = &mut e.agents[0];
        a.pid = None;
        a.cpu_ticks = None;
        a.tree_cpu_ticks = None;
        a.start_ticks = None;
        a.io_rchar = None;
        a.io_wchar = None;
        e
    };
    let mut en = engine("");
    let lines = drive(&mut en, 0, 105, no_pid);
    assert!(of_rule(&lines, "agent_no_pid").is_empty(), "{lines:?}");
    let lines = drive(&mut en, 120, 120, no_pid);
    let l = of_rule(&lines, "agent_no_pid");
    assert_eq!(l.len(), 1, "{lines:?}");
    assert_eq!(l[0].key, "agent_no_pid|orch-1|job=7|run=42|pid=none");
    assert_eq!(l[0].severity, shared_schema::Severity::Warning);
    assert!(l[0].summary.contains("no pid recorded"), "{}", l[0].summary);
    assert!(!l[0].labels.contains_key("pid"));
    // Neither stuck nor gone: nothing to look at.
    assert!(of_rule(&lines, "agent_gone").is_empty());
    let lines = drive(&mut en, 135, 135, busy_env);
    let l = of_rule(&lines, "agent_no_pid");
    assert_eq!(l[0].event, AlertEvent::Resolved, "{lines:?}");
    // A degraded section neither fires nor resolves.
    let mut en = engine("[agent_no_pid]\nfor = \"0s\"\n");
    assert_eq!(
        of_rule(&drive(&mut en, 0, 0, no_pid), "agent_no_pid").len(),
        1
    );
    let lines = drive(&mut en, 15, 300, |s| {
        let mut e = busy_env(s);
        e.mark_degraded("agents");
        e
    });
    assert!(of_rule(&lines, "agent_no_pid").is_empty(), "{lines:?}");
}
