//! `reconciler_slow` and `reconciler_backlog` (one scenario drives both).

use crate::rules::test_kit::{calm_env as env, drive_15s as drive, engine, of_rule, t0};

#[test]
fn reconciler_slow_and_backlog_fire_after_for() {
    let mut en = engine("");
    let lines = drive(&mut en, 0, 200, |s| {
        let mut e = env(s);
        if let Some(r) = e.reconciler.as_mut() {
            r.wall_clock_ms = Some(900.0);
            r.pending_event_count = Some(51);
        }
        e
    });
    assert_eq!(
        of_rule(&lines, "reconciler_slow")[0].ts,
        t0().plus_seconds(60.0)
    );
    assert_eq!(
        of_rule(&lines, "reconciler_backlog")[0].ts,
        t0().plus_seconds(120.0)
    );
    let mut en = engine("");
    let lines = drive(&mut en, 0, 200, env);
    assert!(of_rule(&lines, "reconciler_slow").is_empty());
    assert!(of_rule(&lines, "reconciler_backlog").is_empty());
}
