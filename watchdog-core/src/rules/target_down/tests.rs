//! `target_down`: after `for` on the watchdog's clock, and resolves.

use shared_schema::AlertEvent;

use crate::engine::Observation;
use crate::rules::test_kit::{calm_env as env, engine, of_rule, run, t0, T};

#[test]
fn target_down_fires_after_for_on_the_watchdog_clock_and_resolves() {
    let mut en = engine("");
    run(&mut en, env(0.0));
    let mut lines = Vec::new();
    for s in (15..=90).step_by(15) {
        lines.extend(
            en.observe(
                T,
                &Observation::failed(t0().plus_seconds(f64::from(s)), "HTTP 500"),
            )
            .into_lines(),
        );
    }
    let d = of_rule(&lines, "target_down");
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].ts, t0().plus_seconds(75.0));
    assert_eq!(d[0].since, t0().plus_seconds(15.0));
    assert!(d[0].summary.contains("HTTP 500"));
    assert!(
        lines.iter().all(|l| l.rule == "target_down"),
        "only target_down speaks while down: {lines:?}"
    );
    let lines = run(&mut en, env(105.0));
    assert_eq!(
        of_rule(&lines, "target_down")[0].event,
        AlertEvent::Resolved
    );
}
