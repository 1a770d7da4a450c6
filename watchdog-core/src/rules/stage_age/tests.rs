//! `stage_age`: `max` and the per-stage overrides.

use shared_schema::Stage;

use crate::rules::test_kit::{calm_env as env, engine, of_rule, run};

fn stage(task: i64, name: &str, age: f64) -> Stage {
    Stage {
        task_id: Some(task),
        work_item: Some("WI-1".into()),
        stage: name.into(),
        age_in_stage_s: Some(age),
        repo: Some("app".into()),
    }
}

#[test]
fn stage_age_uses_max_and_per_stage_overrides() {
    let mut en = engine("[stage_age]\nper_stage = { review = \"4h\" }\n");
    let mut e = env(0.0);
    e.stages = vec![
        stage(1, "review", 7200.0),
        stage(2, "build", 3601.0),
        stage(3, "build", 60.0),
    ];
    let lines = run(&mut en, e);
    let r = of_rule(&lines, "stage_age");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].key, "stage_age|orch-1|task=2|stage=build");
}
