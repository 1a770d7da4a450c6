//! `agent_runtime`: fires past `max` only, per agent too.

use crate::rules::test_kit::{busy_env, drive_15s as drive, engine, of_rule};

#[test]
fn agent_runtime_fires_past_max_only() {
    let mut en = engine("");
    let lines = drive(&mut en, 0, 30, busy_env);
    assert!(of_rule(&lines, "agent_runtime").is_empty());
    let lines = drive(&mut en, 45, 45, |s| {
        let mut e = busy_env(s);
        e.agents[0].runtime_s = Some(7201.0);
        e
    });
    let r = of_rule(&lines, "agent_runtime");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].value, Some(7201.0));
    assert_eq!(r[0].threshold, Some(7200.0));
}

#[test]
fn agent_runtime_per_agent_max() {
    let mut en = engine("[agent_runtime]\nper_agent = { dev = { max = \"1h\" } }\n");
    let lines = drive(&mut en, 0, 0, |s| {
        let mut e = busy_env(s);
        e.agents[0].runtime_s = Some(3700.0);
        e
    });
    let r = of_rule(&lines, "agent_runtime");
    assert_eq!(r.len(), 1, "{lines:?}");
    assert_eq!(r[0].threshold, Some(3600.0));
    assert!(r[0].summary.ends_with("(max 1h)"), "{}", r[0].summary);
}
