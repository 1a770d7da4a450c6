//! `error_rate`: per subsystem, over the window.

use shared_schema::{Envelope, Errors, SubsystemErrors};

use crate::rules::test_kit::{calm_env as env, drive_15s as drive, engine, of_rule};

fn with_errors(s: f64, n: u64) -> Envelope {
    let mut e = env(s);
    e.errors = Some(Errors {
        total: Some(n),
        by_subsystem: vec![SubsystemErrors {
            subsystem: "git".into(),
            total: Some(n),
            last_at: None,
        }],
    });
    e
}

#[test]
fn error_rate_fires_per_subsystem_over_window() {
    let mut en = engine("");
    // 20 errors per minute.
    let lines = drive(&mut en, 0, 600, |s| with_errors(s, (s / 3.0) as u64));
    let r = of_rule(&lines, "error_rate");
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].key, "error_rate|orch-1|subsystem=git");
    let mut en = engine("");
    // 4 per minute.
    assert!(of_rule(
        &drive(&mut en, 0, 600, |s| with_errors(s, (s / 15.0) as u64)),
        "error_rate"
    )
    .is_empty());
}
