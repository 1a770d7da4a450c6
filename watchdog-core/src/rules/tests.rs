//! What no single rule owns: the `[rules]` config as a whole, state across a
//! restart, repeat lines, the contract's example line and which lines want a
//! diagnosis.

use std::time::Duration;

use shared_schema::AlertEvent;

use crate::engine::Engine;
use crate::rules::test_kit::{
    agent_unprobed as agent, busy_env, calm_env as env, drive_15s as drive, engine, idle_env, obs,
    of_rule, rules, run, with_queue, T,
};
use crate::rules::RuleSet;

#[test]
fn unknown_rule_and_unknown_key_are_rejected_by_name() {
    let err = RuleSet::build(
        &[("stuck_agnt".to_owned(), serde_json::json!({}))]
            .into_iter()
            .collect(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("stuck_agnt"), "{err}");
    let t = serde_json::json!({"cpu_flor": 0.1});
    let err = RuleSet::build(&[("stuck_agent".to_owned(), t)].into_iter().collect())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cpu_flor") && err.contains("[rules.stuck_agent]"),
        "{err}"
    );
}

#[test]
fn per_agent_key_the_rule_does_not_have_is_an_error_naming_rule_agent_and_key() {
    let t = serde_json::json!({"per_agent": {"reviewer": {"cpu_flor": 0.1}}});
    let err = RuleSet::build(&[("stuck_agent".to_owned(), t)].into_iter().collect())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("[rules.stuck_agent]")
            && err.contains("per_agent.reviewer")
            && err.contains("cpu_flor"),
        "{err}"
    );
    // A rule that does not take per_agent rejects the key itself.
    let t = serde_json::json!({"per_agent": {"reviewer": {"max": 1}}});
    let err = RuleSet::build(&[("queue_depth".to_owned(), t)].into_iter().collect())
        .unwrap_err()
        .to_string();
    assert!(err.contains("per_agent"), "{err}");
}

#[test]
fn disabled_rule_never_fires() {
    let mut en = engine("[queue_depth]\nenabled = false\n");
    assert!(of_rule(
        &drive(&mut en, 0, 300, |s| with_queue(s, 51, 1, 0)),
        "queue_depth"
    )
    .is_empty());
}

#[test]
fn restart_with_saved_state_keeps_a_firing_alert_without_a_second_firing_line() {
    let mut en = engine("");
    let lines = drive(&mut en, 0, 630, idle_env);
    assert_eq!(of_rule(&lines, "stuck_agent").len(), 1);
    let saved = en.save();

    let mut again = engine("");
    assert_eq!(again.restore(&saved).unwrap(), 1);
    let lines = drive(&mut again, 645, 1200, idle_env);
    assert!(of_rule(&lines, "stuck_agent").is_empty(), "{lines:?}");
    let lines = drive(&mut again, 1215, 1215, busy_env);
    assert_eq!(
        of_rule(&lines, "stuck_agent")[0].event,
        AlertEvent::Resolved
    );

    let mut fresh = engine("");
    assert!(
        fresh.restore(b"{not json").is_err(),
        "a corrupt state file is an error to log, not a panic"
    );
}

#[test]
fn repeat_lines_come_every_repeat_interval() {
    let mut en = Engine::new(rules(""), Duration::from_secs(300));
    let lines = drive(&mut en, 0, 630 + 600, idle_env);
    let events: Vec<AlertEvent> = of_rule(&lines, "stuck_agent")
        .iter()
        .map(|l| l.event)
        .collect();
    assert_eq!(
        events,
        [AlertEvent::Firing, AlertEvent::Repeat, AlertEvent::Repeat]
    );
}

#[test]
fn the_contract_example_line_comes_out_byte_for_byte() {
    let mut en = engine("");
    let lines = drive(&mut en, 0, 600, |s| {
        let mut e = env(s);
        e.clk_tck = Some(1000);
        // 0.3% CPU: 3 ticks of 1/1000 s per second; no I/O.
        e.agents = vec![agent(600.0 + s, 3 * s as u64, 1000)];
        e
    });
    let stuck = of_rule(&lines, "stuck_agent");
    assert_eq!(stuck.len(), 1);
    let want = concat!(
        r#"{"ts":"2026-11-22T10:10:00.000Z","event":"firing","rule":"stuck_agent","severity":"warning","#,
        r#""target":"orch-1","key":"stuck_agent|orch-1|job=7|run=42|pid=1234","#,
        r#""labels":{"agent":"dev","job_id":"7","pid":"1234","repo":"app","run_id":"42"},"#,
        r#""summary":"agent dev (job 7, pid 1234) used 0.3% CPU and did no I/O for 10m","#,
        r#""value":0.003,"threshold":0.02,"since":"2026-11-22T10:00:00.000Z"}"#
    );
    assert_eq!(stuck[0].to_json_line(), want);
}

#[test]
fn firing_and_repeat_lines_of_agent_rules_want_a_diagnosis() {
    let mut en = Engine::new(
        rules("[agent_no_pid]\nfor = \"0s\"\n"),
        Duration::from_secs(300),
    );
    let mut wanted = Vec::new();
    let mut s = 0;
    while s <= 1230 {
        let mut e = idle_env(f64::from(s));
        // A pid-less job too: its alert is about an agent with nothing to look at.
        let mut no_pid = e.agents[0].clone();
        no_pid.job_id = 8;
        no_pid.pid = None;
        no_pid.cpu_ticks = None;
        no_pid.tree_cpu_ticks = None;
        e.agents.push(no_pid);
        let ev = en.observe(T, &obs(e));
        for e in &ev.emitted {
            if let Some(job_id) = e.diagnose {
                wanted.push((e.line.rule.clone(), e.line.event, job_id));
            }
        }
        s += 15;
    }
    assert_eq!(
        wanted,
        [
            ("stuck_agent".to_owned(), AlertEvent::Firing, 7),
            ("stuck_agent".to_owned(), AlertEvent::Repeat, 7),
            ("stuck_agent".to_owned(), AlertEvent::Repeat, 7),
        ]
    );
    // The engine keeps what the binary found, for the firing set re-sent to sinks.
    let key = "stuck_agent|orch-1|job=7|run=42|pid=1234";
    en.set_diagnosis(T, key, Some("sh (pid 1234) is stopped".into()));
    let firing = en.firing_lines();
    let line = firing.iter().find(|l| l.key == key).unwrap();
    assert_eq!(line.diagnosis.as_deref(), Some("sh (pid 1234) is stopped"));
    assert!(
        line.summary
            .ends_with("for 20m 30s: sh (pid 1234) is stopped")
            || line.summary.contains(": sh (pid 1234) is stopped"),
        "{}",
        line.summary
    );
    let (alert, _) = en
        .firing_alerts()
        .into_iter()
        .find(|(a, _)| a.key == key)
        .unwrap();
    assert_eq!(en.diagnosis_job(alert), Some(7));
}

#[test]
fn complete_appends_the_sentence_once() {
    let mut line = shared_schema::AlertLine {
        summary: "agent dev (job 7, pid 1) used 0.0% CPU for 10m".into(),
        ..run(&mut engine("[breaker_open]\nfor = \"0s\"\n"), {
            let mut e = env(0.0);
            if let Some(q) = e.queue.as_mut() {
                q.breaker = Some(shared_schema::Breaker {
                    state: Some("open".into()),
                    ..shared_schema::Breaker::default()
                });
            }
            e
        })
        .remove(0)
    };
    crate::diagnose::complete(
        &mut line,
        "cat (pid 1) is blocked reading stdin (pipe)".into(),
    );
    crate::diagnose::complete(&mut line, "cat (pid 1) is stopped".into());
    assert_eq!(
        line.summary,
        "agent dev (job 7, pid 1) used 0.0% CPU for 10m: cat (pid 1) is stopped"
    );
    assert_eq!(line.diagnosis.as_deref(), Some("cat (pid 1) is stopped"));
}

/// The typed errors keep the messages the config check printed as strings,
/// and name the rule and the key without parsing the text.
#[test]
fn config_errors_are_typed_and_keep_their_messages() {
    use crate::error::{RuleConfigError, SettingError};
    let build = |rule: &str, t: serde_json::Value| {
        RuleSet::build(&[(rule.to_owned(), t)].into_iter().collect()).unwrap_err()
    };
    let err = build("stuck_agent", serde_json::json!({"cpu_floor": -1.0}));
    assert_eq!(
        err.to_string(),
        "[rules.stuck_agent]: key `cpu_floor`: must be a non-negative number"
    );
    assert_eq!(
        err,
        RuleConfigError::Rule {
            rule: "stuck_agent",
            problem: SettingError::key("cpu_floor", "must be a non-negative number"),
        }
    );
    let err = build(
        "stuck_agent",
        serde_json::json!({"per_agent": {"reviewer": {"cpu_floor": -1.0}}}),
    );
    assert_eq!(
        err.to_string(),
        "[rules.stuck_agent]: key `per_agent.reviewer`: key `cpu_floor`: must be a non-negative number"
    );
    assert_eq!(
        (err.rule(), err.key().as_deref()),
        ("stuck_agent", Some("per_agent.reviewer.cpu_floor"))
    );
    let err = build(
        "stuck_agent",
        serde_json::json!({"per_agent": {"reviewer": 1}}),
    );
    assert_eq!(
        err.to_string(),
        "[rules.stuck_agent]: key `per_agent.reviewer`: must be a table"
    );
    let err = build("stuck_agent", serde_json::json!({"per_agent": 1}));
    assert_eq!(
        err.to_string(),
        "[rules.stuck_agent]: key `per_agent`: must be a table keyed by agent name"
    );
    let err = build("queue_depth", serde_json::json!(1));
    assert_eq!(err.to_string(), "[rules.queue_depth]: must be a table");
    assert_eq!(err.key(), None);
    let err = build("queue_depth", serde_json::json!({"severity": "loud"}));
    assert_eq!(
        err.to_string(),
        "[rules.queue_depth]: key `severity`: expected \"info\", \"warning\" or \"critical\""
    );
    let err = build("stuck_agnt", serde_json::json!({}));
    assert!(
        err.to_string()
            .starts_with("unknown rule `stuck_agnt` in [rules.stuck_agnt] (known rules: "),
        "{err}"
    );
    assert_eq!(err.rule(), "stuck_agnt");

    let mut en = engine("");
    let saved = en.save();
    let mut text = String::from_utf8(saved).unwrap();
    let version = format!("\"version\":{}", crate::engine::SAVED_VERSION);
    assert!(text.contains(&version), "{text}");
    text = text.replace(&version, "\"version\":999");
    let err = en.restore(text.as_bytes()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "state file version 999 is not {}",
            crate::engine::SAVED_VERSION
        )
    );
}

/// The message of every bad `[rules.NAME]` table, byte for byte: the common
/// keys, `per_agent` and the rule's own keys, one bad key or several (the
/// first in a fixed order is reported), nulls as in a serde tree.
#[test]
fn bad_rule_tables_say_what_is_wrong_byte_for_byte() {
    use serde_json::json;
    let cases = [
        (
            "stuck_agent",
            json!({"for": "abc"}),
            "[rules.stuck_agent]: key `for`: invalid duration \"abc\": expected number at 0 (write e.g. \"90s\", \"10m\", \"1h 30m\")",
        ),
        (
            "stuck_agent",
            json!({"for": 5}),
            "[rules.stuck_agent]: key `for`: invalid type: integer `5`, expected a string",
        ),
        (
            "stuck_agent",
            json!({"for": null}),
            "[rules.stuck_agent]: key `for`: invalid type: null, expected a string",
        ),
        (
            "stuck_agent",
            json!({"keep_firing_for": true}),
            "[rules.stuck_agent]: key `keep_firing_for`: invalid type: boolean `true`, expected a string",
        ),
        (
            "stuck_agent",
            json!({"enabled": "yes"}),
            "[rules.stuck_agent]: key `enabled`: invalid type: string \"yes\", expected a boolean",
        ),
        (
            "stuck_agent",
            json!({"enabled": null}),
            "[rules.stuck_agent]: key `enabled`: invalid type: null, expected a boolean",
        ),
        (
            "stuck_agent",
            json!({"severity": "loud"}),
            "[rules.stuck_agent]: key `severity`: expected \"info\", \"warning\" or \"critical\"",
        ),
        (
            "stuck_agent",
            json!({"severity": 3}),
            "[rules.stuck_agent]: key `severity`: expected \"info\", \"warning\" or \"critical\"",
        ),
        (
            "stuck_agent",
            json!({"severity": null}),
            "[rules.stuck_agent]: key `severity`: expected \"info\", \"warning\" or \"critical\"",
        ),
        (
            "stuck_agent",
            json!({"cpu_flor": 0.1}),
            "[rules.stuck_agent]: unknown key `cpu_flor`, expected one of `cpu_floor`, `io_floor`, `min_runtime`, `use_tree`",
        ),
        (
            "stuck_agent",
            json!({"per_agent": {"reviewer": {"for": "x"}}}),
            "[rules.stuck_agent]: key `per_agent.reviewer.for`: invalid duration \"x\": expected number at 0 (write e.g. \"90s\", \"10m\", \"1h 30m\")",
        ),
        (
            "stuck_agent",
            json!({"per_agent": {"reviewer": {"for": null}}}),
            "[rules.stuck_agent]: key `per_agent.reviewer.for`: invalid type: null, expected a string",
        ),
        (
            "stuck_agent",
            json!({"per_agent": {"reviewer": {"enabled": false}}}),
            "[rules.stuck_agent]: key `per_agent.reviewer`: unknown key `enabled`, expected one of `cpu_floor`, `io_floor`, `min_runtime`, `use_tree`",
        ),
        (
            "stuck_agent",
            json!({"per_agent": {"reviewer": {"cpu_flor": 1}}}),
            "[rules.stuck_agent]: key `per_agent.reviewer`: unknown key `cpu_flor`, expected one of `cpu_floor`, `io_floor`, `min_runtime`, `use_tree`",
        ),
        (
            "stuck_agent",
            json!({"per_agent": null}),
            "[rules.stuck_agent]: key `per_agent`: must be a table keyed by agent name",
        ),
        (
            "stuck_agent",
            json!({"severity": "loud", "for": "x", "enabled": 1}),
            "[rules.stuck_agent]: key `enabled`: invalid type: integer `1`, expected a boolean",
        ),
        (
            "stuck_agent",
            json!({"keep_firing_for": "x", "for": "y"}),
            "[rules.stuck_agent]: key `for`: invalid duration \"y\": expected number at 0 (write e.g. \"90s\", \"10m\", \"1h 30m\")",
        ),
        (
            "stuck_agent",
            json!({"severity": "loud", "for": "x"}),
            "[rules.stuck_agent]: key `severity`: expected \"info\", \"warning\" or \"critical\"",
        ),
        (
            "stuck_agent",
            json!({"keep_firing_for": "x", "severity": "loud"}),
            "[rules.stuck_agent]: key `severity`: expected \"info\", \"warning\" or \"critical\"",
        ),
        (
            "stuck_agent",
            json!({"for": "x", "cpu_flor": 1}),
            "[rules.stuck_agent]: key `for`: invalid duration \"x\": expected number at 0 (write e.g. \"90s\", \"10m\", \"1h 30m\")",
        ),
        (
            "stuck_agent",
            json!({"cpu_flor": 1, "per_agent": {"r": {"for": "x"}}}),
            "[rules.stuck_agent]: unknown key `cpu_flor`, expected one of `cpu_floor`, `io_floor`, `min_runtime`, `use_tree`",
        ),
        (
            "stuck_agent",
            json!({"cpu_floor": -1, "per_agent": {"r": {"for": "x"}}}),
            "[rules.stuck_agent]: key `cpu_floor`: must be a non-negative number",
        ),
        (
            "stuck_agent",
            json!({"per_agent": {"a": {"for": "x"}, "b": 1}}),
            "[rules.stuck_agent]: key `per_agent.a.for`: invalid duration \"x\": expected number at 0 (write e.g. \"90s\", \"10m\", \"1h 30m\")",
        ),
        (
            "stuck_agent",
            json!({"per_agent": {"a": {"cpu_flor": 1, "for": "x"}}}),
            "[rules.stuck_agent]: key `per_agent.a.for`: invalid duration \"x\": expected number at 0 (write e.g. \"90s\", \"10m\", \"1h 30m\")",
        ),
        (
            "queue_depth",
            json!({"per_agent": {}}),
            "[rules.queue_depth]: unknown key `per_agent`, expected `max`",
        ),
        (
            "queue_depth",
            json!({"for": "x", "per_agent": {"r": {"for": "x"}}}),
            "[rules.queue_depth]: key `for`: invalid duration \"x\": expected number at 0 (write e.g. \"90s\", \"10m\", \"1h 30m\")",
        ),
        (
            "queue_depth",
            json!({"per_agent": {"r": {}}, "max": "x"}),
            "[rules.queue_depth]: invalid type: string \"x\", expected u64",
        ),
    ];
    for (rule, t, want) in cases {
        let got = RuleSet::build(&[(rule.to_owned(), t.clone())].into_iter().collect())
            .map(|_| ())
            .unwrap_err();
        assert_eq!(got.to_string(), want, "{rule} {t}");
    }
}

/// A bad common key or `per_agent.NAME.for` is a `SettingError::Key` naming it.
#[test]
fn bad_common_and_per_agent_keys_are_key_errors() {
    use crate::error::{RuleConfigError, SettingError};
    use serde_json::json;
    let dur =
        "invalid duration \"x\": expected number at 0 (write e.g. \"90s\", \"10m\", \"1h 30m\")";
    let cases = [
        (json!({"for": "x"}), SettingError::key("for", dur)),
        (
            json!({"keep_firing_for": 1}),
            SettingError::key(
                "keep_firing_for",
                "invalid type: integer `1`, expected a string",
            ),
        ),
        (
            json!({"severity": "loud"}),
            SettingError::key("severity", "expected \"info\", \"warning\" or \"critical\""),
        ),
        (
            json!({"per_agent": {"reviewer": {"for": "x"}}}),
            SettingError::key("per_agent.reviewer.for", dur),
        ),
    ];
    for (t, problem) in cases {
        let err = RuleSet::build(&[("stuck_agent".to_owned(), t)].into_iter().collect())
            .map(|_| ())
            .unwrap_err();
        assert_eq!(
            err,
            RuleConfigError::Rule {
                rule: "stuck_agent",
                problem,
            }
        );
    }
}

#[test]
fn the_split_keys_are_the_structs_fields_in_their_order() {
    assert_eq!(
        super::field_names::<super::CommonKeys>(),
        ["enabled", "severity", "for", "keep_firing_for"]
    );
    assert_eq!(super::field_names::<super::AgentKeys>(), ["for"]);
}

#[test]
fn only_rules_with_state_keep_some_per_target_and_old_nulls_go() {
    let mut e = engine("");
    run(&mut e, env(0.0));
    run(&mut e, env(15.0));
    let saved = serde_json::to_value(e.saved()).unwrap();
    let kept = saved["targets"][T]["rules"].as_object().unwrap().clone();
    assert!(kept.contains_key("error_rate"), "{kept:?}");
    for stateless in ["target_down", "queue_depth", "breaker_open", "stage_age"] {
        assert!(!kept.contains_key(stateless), "{stateless}: {kept:?}");
    }
    assert!(kept.values().all(|v| !v.is_null()), "{kept:?}");

    // A file of an earlier build, with a `null` for each stateless rule,
    // restores, and the nulls are not written back.
    let mut old = saved.clone();
    old["targets"][T]["rules"]["target_down"] = serde_json::Value::Null;
    let mut restored = engine("");
    restored
        .restore(&serde_json::to_vec(&old).unwrap())
        .unwrap();
    let again = serde_json::to_value(restored.saved()).unwrap();
    assert_eq!(again["targets"][T]["rules"], saved["targets"][T]["rules"]);
}
