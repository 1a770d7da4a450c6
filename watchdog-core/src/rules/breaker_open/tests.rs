//! `breaker_open`: fires at once and resolves.

use shared_schema::AlertEvent;

use crate::rules::test_kit::{calm_env as env, engine, of_rule, run};

#[test]
fn breaker_open_fires_at_once_and_resolves() {
    let mut en = engine("");
    let mut e = env(0.0);
    if let Some(b) = e.queue.as_mut().and_then(|q| q.breaker.as_mut()) {
        b.state = Some("open".into());
        b.consecutive_failures = Some(5);
    }
    let lines = run(&mut en, e);
    assert_eq!(of_rule(&lines, "breaker_open").len(), 1);
    let lines = run(&mut en, env(15.0));
    let b = of_rule(&lines, "breaker_open");
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].event, AlertEvent::Resolved);
}
