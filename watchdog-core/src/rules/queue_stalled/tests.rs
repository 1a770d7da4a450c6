//! `queue_stalled`: fires only when nothing moves.

use crate::rules::test_kit::{drive_15s as drive, engine, of_rule, with_queue};

#[test]
fn queue_stalled_fires_only_when_nothing_moves() {
    let mut en = engine("");
    let lines = drive(&mut en, 0, 700, |s| with_queue(s, 3, 0, 10));
    let q = of_rule(&lines, "queue_stalled");
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].severity, shared_schema::Severity::Critical);
    // Jobs keep finishing: not stalled.
    let mut en = engine("");
    assert!(of_rule(
        &drive(&mut en, 0, 700, |s| with_queue(s, 3, 0, s as u64)),
        "queue_stalled"
    )
    .is_empty());
}
