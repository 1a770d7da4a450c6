//! `invariant_violation`: one alert per invariant.

use shared_schema::{InvariantId, InvariantViolation};

use crate::rules::test_kit::{calm_env as env, engine, of_rule, run};

#[test]
fn invariant_violation_is_one_alert_per_invariant() {
    let mut en = engine("");
    let mut e = env(0.0);
    if let Some(r) = e.reconciler.as_mut() {
        let v = |id: InvariantId, subject: &str| InvariantViolation {
            invariant: id,
            message: "two running jobs".into(),
            subject: Some(subject.into()),
        };
        r.invariant_violations = vec![
            v(InvariantId::Number(3), "task 1"),
            v(InvariantId::Number(3), "task 2"),
            v(InvariantId::Name("x".into()), "task 9"),
        ];
    }
    let lines = run(&mut en, e);
    let keys: Vec<&str> = of_rule(&lines, "invariant_violation")
        .iter()
        .map(|l| l.key.as_str())
        .collect();
    assert_eq!(
        keys,
        [
            "invariant_violation|orch-1|invariant=3",
            "invariant_violation|orch-1|invariant=x"
        ]
    );
    let lines = run(&mut en, env(15.0));
    assert_eq!(
        of_rule(&lines, "invariant_violation").len(),
        2,
        "both resolve"
    );
}
