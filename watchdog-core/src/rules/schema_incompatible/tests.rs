//! `schema_incompatible`: schema_version 2 is its own condition.

use shared_schema::AlertEvent;

use crate::engine::Observation;
use crate::rules::test_kit::{calm_env as env, engine, of_rule, run, t0, T};

#[test]
fn schema_version_2_is_its_own_condition() {
    let mut en = engine("");
    let body = br#"{"schema_version":2,"generated_at":"2026-11-22T10:00:00Z","whatever":[]}"#;
    let lines = en
        .observe(T, &Observation::from_body(t0(), body))
        .into_lines();
    let s = of_rule(&lines, "schema_incompatible");
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].value, Some(2.0));
    assert!(of_rule(&lines, "target_down").is_empty());
    let lines = run(&mut en, env(15.0));
    assert_eq!(
        of_rule(&lines, "schema_incompatible")[0].event,
        AlertEvent::Resolved
    );
}
