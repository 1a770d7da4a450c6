//! `target_stale`: fires when the emitter's clock stops.

use crate::rules::test_kit::{
    calm_env as env, drive_15s as drive, engine, obs, of_rule, run, t0, T,
};

#[test]
fn target_stale_fires_when_the_clock_stops() {
    let mut en = engine("");
    run(&mut en, env(0.0));
    let mut lines = Vec::new();
    for s in (15..=120).step_by(15) {
        let mut o = obs(env(0.0));
        o.now = t0().plus_seconds(f64::from(s));
        lines.extend(en.observe(T, &o).into_lines());
    }
    let st = of_rule(&lines, "target_stale");
    assert_eq!(st.len(), 1, "{lines:?}");
    assert_eq!(st[0].ts, t0().plus_seconds(75.0));
    let mut en = engine("");
    assert!(of_rule(&drive(&mut en, 0, 300, env), "target_stale").is_empty());
}
