//! `queue_depth`: fires after `for`.

use crate::rules::test_kit::{drive_15s as drive, engine, of_rule, t0, with_queue};

#[test]
fn queue_depth_fires_after_for() {
    let mut en = engine("");
    let lines = drive(&mut en, 0, 300, |s| with_queue(s, 51, 1, 0));
    let q = of_rule(&lines, "queue_depth");
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].ts, t0().plus_seconds(120.0));
    assert_eq!(q[0].key, "queue_depth|orch-1");
    let mut en = engine("");
    assert!(of_rule(
        &drive(&mut en, 0, 300, |s| with_queue(s, 50, 1, 0)),
        "queue_depth"
    )
    .is_empty());
}
