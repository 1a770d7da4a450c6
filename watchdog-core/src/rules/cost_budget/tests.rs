//! `cost_budget`: off by default, fires when set.

use crate::rules::test_kit::{calm_env as env, drive_15s as drive, engine, of_rule};

#[test]
fn cost_budget_is_off_by_default_and_fires_when_set() {
    let spend = |s: f64| {
        let mut e = env(s);
        if let Some(a) = e.cost.as_mut().and_then(|c| c.aggregate.as_mut()) {
            a.cost_usd = Some(100.0 + s / 36.0); // $100/h
        }
        e
    };
    let mut en = engine("");
    assert!(of_rule(&drive(&mut en, 0, 1800, spend), "cost_budget").is_empty());
    let mut en = engine("[cost_budget]\nmax_usd = 110.0\nmax_usd_per_hour = 50.0\n");
    let lines = drive(&mut en, 0, 1800, spend);
    let keys: Vec<&str> = of_rule(&lines, "cost_budget")
        .iter()
        .map(|l| l.key.as_str())
        .collect();
    assert!(
        keys.contains(&"cost_budget|orch-1|budget=per_hour"),
        "{keys:?}"
    );
    assert!(
        keys.contains(&"cost_budget|orch-1|budget=total"),
        "{keys:?}"
    );
}
