//! `section_degraded`: per section, and it gates the rules that read it.

use crate::rules::test_kit::{calm_env as env, drive_15s as drive, engine, of_rule, with_queue};

#[test]
fn section_degraded_fires_per_section_and_gates_dependent_rules() {
    let mut en = engine("");
    let lines = drive(&mut en, 0, 120, |s| {
        let mut e = with_queue(s, 500, 0, 0);
        e.queue = None;
        e.mark_degraded("queue");
        e
    });
    let d = of_rule(&lines, "section_degraded");
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].key, "section_degraded|orch-1|section=queue");
    assert!(of_rule(&lines, "queue_depth").is_empty());
    assert!(of_rule(&lines, "queue_stalled").is_empty());
    let mut en = engine("");
    assert!(of_rule(&drive(&mut en, 0, 120, env), "section_degraded").is_empty());
}
