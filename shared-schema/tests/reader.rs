//! The tolerant reader, `validate` and the writer, against the golden
//! fixtures in `tests/fixtures/`.

use serde_json::{json, Value};
use shared_schema::{
    read_envelope, read_value, validate, validate_value, Envelope, InvariantId, ReadError, Reading,
    SECTIONS,
};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

fn enabled(bytes: &[u8]) -> (Envelope, Vec<shared_schema::Problem>) {
    match read_envelope(bytes).expect("readable") {
        Reading::Enabled { envelope, problems } => (envelope, problems),
        Reading::Disabled => panic!("expected an enabled envelope"),
    }
}

#[test]
fn full_envelope_reads_every_key() {
    let (env, problems) = enabled(&fixture("full.json"));
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(env.schema_version, 1);
    assert_eq!(env.generated_at.to_string(), "2026-11-22T10:00:00.123Z");
    assert_eq!(env.monotonic_ms, Some(864_000_123));
    assert_eq!(
        env.boot_id.as_deref(),
        Some("6f1c2a52-7c4e-4d2e-9d4b-3f0e8c1a2b3c")
    );
    assert_eq!(env.host.as_deref(), Some("orch-1"));
    assert_eq!(env.clk_tck, Some(100));
    assert!(env.degraded.is_empty());

    assert_eq!(env.stages.len(), 2);
    assert_eq!(env.stages[0].stage, "implement");
    assert_eq!(env.stages[0].age_in_stage_s, Some(754.5));
    assert_eq!(env.stages[1].work_item, None);

    let queue = env.queue.as_ref().expect("queue");
    assert_eq!(queue.counts.get("waiting_approval"), Some(&1));
    assert_eq!(queue.depth, Some(3));
    assert_eq!(
        queue.retries.as_ref().and_then(|r| r.total_retries),
        Some(3)
    );
    let breaker = queue.breaker.as_ref().expect("breaker");
    assert_eq!(breaker.state.as_deref(), Some("closed"));
    assert_eq!(breaker.opened_at, None);
    assert_eq!(queue.poll_interval, Some(2.5));

    let dev = &env.agents[0];
    assert_eq!((dev.job_id, dev.run_id, dev.pid), (7, Some(42), Some(1234)));
    assert_eq!(dev.cpu_ticks, Some(5120));
    assert_eq!(dev.start_ticks, Some(86_400_000));
    assert_eq!(dev.tree_cpu_ticks, Some(9000));
    assert_eq!(
        (dev.io_rchar, dev.io_wchar),
        (Some(1_048_576), Some(65_536))
    );
    assert_eq!(dev.state.as_deref(), Some("S"));
    let unknown = &env.agents[1];
    assert_eq!(unknown.job_id, 8);
    assert_eq!(
        (unknown.pid, unknown.cpu_ticks, unknown.runtime_s),
        (None, None, None)
    );

    let cost = env.cost.as_ref().expect("cost");
    assert_eq!(cost.running[0].cost_usd, Some(1.25));
    assert_eq!(cost.running[1].cost_usd, None, "null stays unknown, not 0");
    assert_eq!(cost.aggregate.as_ref().and_then(|a| a.runs), Some(45));

    let rec = env.reconciler.as_ref().expect("reconciler");
    assert_eq!(rec.ticks_total, Some(5000));
    assert_eq!(rec.wall_clock_ms, Some(42.5));
    assert_eq!(
        rec.actions_by_type
            .as_ref()
            .and_then(|m| m.get("start_job")),
        Some(&1)
    );
    assert_eq!(rec.side_effects.as_ref().and_then(|s| s.succeeded), Some(2));
    assert_eq!(
        rec.invariant_violations[0].invariant,
        InvariantId::Number(3)
    );
    assert_eq!(
        rec.invariant_violations[1].invariant,
        InvariantId::Name("stage_has_owner".into())
    );
    assert_eq!(
        rec.invariant_violations[0].subject.as_deref(),
        Some("task:11")
    );

    let errors = env.errors.as_ref().expect("errors");
    assert_eq!(errors.total, Some(17));
    assert_eq!(errors.by_subsystem[1].subsystem, "llm");
    assert_eq!(errors.by_subsystem[1].last_at, None);
}

#[test]
fn full_envelope_round_trips_to_the_same_json() {
    let original: Value = serde_json::from_slice(&fixture("full.json")).expect("json");
    let (env, _) = enabled(&fixture("full.json"));
    let written = serde_json::to_value(&env).expect("serialise");
    assert_eq!(
        written, original,
        "the writer must produce exactly the section 1 form"
    );
    assert!(validate_value(&written).is_empty());
}

#[test]
fn writer_puts_every_key_and_null_for_unknown() {
    let env = Envelope::new(shared_schema::Timestamp::parse("2026-11-22T10:00:00Z").expect("ts"));
    let text = serde_json::to_string(&env).expect("serialise");
    assert!(
        text.contains(r#""generated_at":"2026-11-22T10:00:00.000Z""#),
        "{text}"
    );
    let v: Value = serde_json::from_str(&text).expect("json");
    for key in [
        "monotonic_ms",
        "boot_id",
        "host",
        "clk_tck",
        "queue",
        "cost",
        "reconciler",
        "errors",
    ] {
        assert_eq!(v[key], Value::Null, "{key} is written as null when unknown");
    }
    for key in ["stages", "agents", "degraded"] {
        assert_eq!(v[key], json!([]), "{key}");
    }
}

#[test]
fn seed_style_envelope_reads_with_additive_keys_unknown() {
    let bytes = fixture("seed.json");
    let (env, problems) = enabled(&bytes);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(env.generated_at.to_string(), "2026-11-22T10:00:00.000Z");
    assert_eq!((env.monotonic_ms, env.boot_id.as_deref()), (None, None));
    assert!(
        env.degraded.is_empty(),
        "absent optional sections are not degraded"
    );
    assert_eq!(
        (env.reconciler.is_none(), env.errors.is_none()),
        (true, true)
    );
    let agent = &env.agents[0];
    assert_eq!(agent.cpu_ticks, Some(250));
    assert_eq!(
        (agent.start_ticks, agent.tree_cpu_ticks, agent.io_rchar),
        (None, None, None)
    );
    assert_eq!(
        env.stages[0].age_in_stage_s,
        Some(12.0),
        "an integer where a number is expected"
    );
    // The seed form fits the contract: the additive keys are optional.
    assert_eq!(validate(&bytes), vec![]);
}

#[test]
fn disabled_is_its_own_variant() {
    assert_eq!(
        read_envelope(&fixture("disabled.json")),
        Ok(Reading::Disabled)
    );
    assert_eq!(
        shared_schema::disabled_body(),
        r#"{"schema_version":1,"enabled":false}"#
    );
    assert!(validate(&fixture("disabled.json")).is_empty());
}

#[test]
fn degraded_sections_are_listed_and_defaulted() {
    let (env, problems) = enabled(&fixture("degraded.json"));
    assert!(problems.is_empty());
    assert!(env.is_degraded("agents") && env.is_degraded("queue"));
    assert!(!env.is_degraded("stages"));
    assert!(env.agents.is_empty() && env.queue.is_none());
    assert!(validate(&fixture("degraded.json")).is_empty());
}

#[test]
fn newer_major_version_is_reported_as_such() {
    assert_eq!(
        read_envelope(&fixture("v2.json")),
        Err(ReadError::NewerVersion {
            found: 2,
            supported: 1
        })
    );
    let problems = validate(&fixture("v2.json"));
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].path, "schema_version");
}

#[test]
fn unknown_keys_are_ignored_at_every_level() {
    let bytes = fixture("unknown_keys.json");
    let (env, problems) = enabled(&bytes);
    assert!(problems.is_empty(), "{problems:?}");
    assert!(env.degraded.is_empty());
    assert_eq!(env.agents[0].pid, Some(99));
    assert_eq!(
        env.queue
            .as_ref()
            .and_then(|q| q.breaker.as_ref())
            .and_then(|b| b.state.as_deref()),
        Some("half_open")
    );
    assert_eq!(
        env.generated_at.to_string(),
        "2026-11-22T08:00:00.000Z",
        "offset normalised to UTC"
    );
    assert_eq!(validate(&bytes), vec![], "unknown keys are not problems");
}

/// Each section set to a value of the wrong type: that section alone is
/// degraded with a problem at its path; every other section stays usable.
#[test]
fn a_section_of_the_wrong_type_degrades_only_itself() {
    let full: Value = serde_json::from_slice(&fixture("full.json")).expect("json");
    for section in SECTIONS {
        for bad in [json!("oops"), json!(42), json!({"x": 1}), json!([1, 2])] {
            // `[1, 2]` is wrong for an array section too (its items are not
            // objects); an object with only unknown keys is a valid object section.
            let is_wrong = match section {
                "stages" | "agents" => true,
                _ => !bad.is_object(),
            };
            if !is_wrong {
                continue;
            }
            let mut v = full.clone();
            v[section] = bad.clone();
            let Ok(Reading::Enabled { envelope, problems }) = read_value(v.clone()) else {
                panic!("{section} = {bad}: the envelope must stay readable");
            };
            assert!(envelope.is_degraded(section), "{section} = {bad}");
            assert_eq!(envelope.degraded.len(), 1, "{section} = {bad}: only itself");
            assert!(
                problems.iter().any(|p| p.path.starts_with(section)),
                "{section} = {bad}: {problems:?}"
            );
            assert_eq!(envelope.agents.is_empty(), section == "agents");
            assert_eq!(envelope.queue.is_none(), section == "queue");
            assert!(
                !validate_value(&v).is_empty(),
                "validate flags {section} = {bad}"
            );
        }
    }
}

#[test]
fn a_bad_value_deep_inside_is_named_by_its_path() {
    let mut v: Value = serde_json::from_slice(&fixture("full.json")).expect("json");
    v["agents"][1]["cpu_ticks"] = json!("many");
    v["queue"]["counts"]["queued"] = json!(-1);
    let Ok(Reading::Enabled { envelope, problems }) = read_value(v.clone()) else {
        panic!("readable");
    };
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, vec!["agents[1].cpu_ticks", "queue.counts.queued"]);
    assert!(envelope.is_degraded("agents") && envelope.is_degraded("queue"));
    assert_eq!(envelope.stages.len(), 2, "stages unaffected");

    let all = validate_value(&v);
    let paths: Vec<&str> = all.iter().map(|p| p.path.as_str()).collect();
    assert!(paths.contains(&"agents[1].cpu_ticks"), "{paths:?}");
    assert!(paths.contains(&"queue.counts.queued"), "{paths:?}");

    let mut mismatch: Value = serde_json::from_slice(&fixture("full.json")).expect("json");
    mismatch["queue"]["depth"] = json!(9);
    let all = validate_value(&mismatch);
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].path, "queue.depth");
    assert_eq!(all[0].message, "9 differs from counts.queued 3");
}

#[test]
fn validate_lists_every_problem_not_just_the_first() {
    let body = json!({
        "schema_version": 1,
        "generated_at": "yesterday",
        "clk_tck": "100",
        "stages": [{"stage": 5}],
        "queue": {"counts": {"queued": 0}, "depth": 0, "retries": null,
                  "breaker": {"state": "ajar", "consecutive_failures": null, "opened_at": null},
                  "max_concurrency": null, "poll_interval": null},
        "agents": [{"job_id": null}],
        "cost": null,
        "degraded": ["agents", "gpu"]
    });
    let problems = validate_value(&body);
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    for want in [
        "generated_at",
        "clk_tck",
        "stages[0].task_id",
        "stages[0].stage",
        "queue.breaker.state",
        "queue.counts.running",
        "agents[0].job_id",
        "agents[0].pid",
        "degraded[1]",
    ] {
        assert!(paths.contains(&want), "missing {want} in {paths:?}");
    }
}

#[test]
fn fatal_errors_are_distinct() {
    assert!(matches!(
        read_envelope(b"<html>"),
        Err(ReadError::NotJson(_))
    ));
    assert!(matches!(
        read_envelope(b"[1]"),
        Err(ReadError::NotAnObject(_))
    ));
    assert_eq!(read_envelope(b"{}"), Err(ReadError::MissingSchemaVersion));
    assert!(matches!(
        read_envelope(br#"{"schema_version":"1"}"#),
        Err(ReadError::InvalidSchemaVersion(_))
    ));
    assert!(matches!(
        read_envelope(br#"{"schema_version":1}"#),
        Err(ReadError::Invalid { path, .. }) if path == "generated_at"
    ));
    assert!(matches!(
        read_envelope(br#"{"schema_version":1,"generated_at":"noon"}"#),
        Err(ReadError::Invalid { path, .. }) if path == "generated_at"
    ));
}

#[test]
fn nulls_are_unknown_never_zero() {
    let body = json!({
        "schema_version": 1, "generated_at": "2026-11-22T10:00:00Z", "clk_tck": null,
        "stages": null, "agents": [{"job_id": 1, "cpu_ticks": null}],
        "queue": {"counts": {}, "depth": null},
        "cost": {"running": null, "aggregate": null},
        "reconciler": {"invariant_violations": null}, "errors": {"by_subsystem": null}
    });
    let Ok(Reading::Enabled { envelope, problems }) = read_value(body) else {
        panic!("readable");
    };
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(envelope.clk_tck, None);
    assert!(
        envelope.is_degraded("stages"),
        "a null required array is unknown, not empty"
    );
    assert_eq!(envelope.agents[0].cpu_ticks, None);
    assert_eq!(envelope.queue.as_ref().and_then(|q| q.depth), None);
}

/// Issue 15 #8: a body of many small agents is capped, the rest skipped,
/// with a clear problem; the agents kept stand and nothing is degraded.
#[test]
fn agents_past_the_cap_are_truncated_with_a_problem() {
    let cap = shared_schema::caps::AGENTS;
    let mut body = String::from(
        r#"{"schema_version":1,"generated_at":"2026-11-22T10:00:00Z","stages":[],"agents":["#,
    );
    for i in 0..cap + 500 {
        if i > 0 {
            body.push(',');
        }
        // Items past the cap are skipped unread: even a wrong one is no problem.
        if i == cap + 10 {
            body.push_str(r#"{"job_id":"not a number"}"#);
        } else {
            body.push_str(&format!(r#"{{"job_id":{i},"cpu_ticks":1}}"#));
        }
    }
    body.push_str(r#"],"cost":{"running":["#);
    for i in 0..shared_schema::caps::COST_RUNNING + 1 {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&format!(r#"{{"job_id":{i}}}"#));
    }
    body.push_str("]}}");
    let (env, problems) = enabled(body.as_bytes());
    assert_eq!(env.agents.len(), cap);
    assert_eq!(env.agents[cap - 1].job_id, (cap - 1) as i64);
    assert_eq!(env.cost.as_ref().map(|c| c.running.len()), Some(cap));
    assert!(env.degraded.is_empty(), "{:?}", env.degraded);
    let said: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        said,
        vec![
            format!("agents: agents truncated at {cap}: the rest is not read"),
            format!(
                "cost.running: cost.running truncated at {}: the rest is not read",
                shared_schema::caps::COST_RUNNING
            ),
        ]
    );
    // validate says it too: a clean validate means a clean read.
    let strict = validate(body.as_bytes());
    assert!(
        strict
            .iter()
            .any(|p| p.path == "agents" && p.message.contains("truncated at")),
        "validate lists the truncation ({} problems)",
        strict.len()
    );
}

#[test]
fn section_names_are_typed_and_round_trip() {
    use shared_schema::Section;
    let names: Vec<&str> = Section::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(names, SECTIONS);
    for s in Section::ALL {
        assert_eq!(s.as_str().parse::<Section>(), Ok(s));
        assert_eq!(s.to_string(), s.as_str());
    }
    assert!("gpu".parse::<Section>().is_err());
    let (env, _) = enabled(&fixture("degraded.json"));
    assert!(env.is_degraded(Section::Agents) && env.is_degraded("agents"));
    assert!(!env.is_degraded(Section::Stages));
}

#[test]
fn breaker_state_is_typed_and_keeps_what_it_does_not_know() {
    use shared_schema::{Breaker, BreakerState};
    let of = |s: Option<&str>| {
        Breaker {
            state: s.map(str::to_owned),
            ..Breaker::default()
        }
        .state()
    };
    assert_eq!(of(Some("closed")), Some(BreakerState::Closed));
    assert_eq!(of(Some("open")), Some(BreakerState::Open));
    assert_eq!(of(Some("half_open")), Some(BreakerState::HalfOpen));
    assert_eq!(
        of(Some("tripped")),
        Some(BreakerState::Unknown("tripped".into()))
    );
    assert_eq!(of(None), None);
    assert_eq!(BreakerState::HalfOpen.to_string(), "half_open");
}

/// The three divergences fuzzing found between the old typed fast path and
/// the tolerant reader, resolved in favour of the contract ("readers ignore
/// keys they do not know"), plus repeated keys (the last one wins).
#[test]
fn unknown_keys_are_skipped_as_syntax_only() {
    let head = r#"{"schema_version":1,"generated_at":"2026-11-22T10:00:00Z","stages":[],"agents":[{"job_id":1}],"#;
    for unknown in [
        r#""futur":2e400"#,
        r#""futur":"\ud944hhh""#,
        r#""futur":{"x":[1e999]}"#,
    ] {
        let body = format!("{head}{unknown}}}");
        let (env, problems) = enabled(body.as_bytes());
        assert!(problems.is_empty(), "{unknown}: {problems:?}");
        assert_eq!(env.agents[0].job_id, 1, "{unknown}");
    }
    // Invalid UTF-8 anywhere, even in an unknown key, is not JSON.
    let mut bad = head.as_bytes().to_vec();
    bad.extend_from_slice(b"\"futur\":{\"q\xff\xff\":1}}");
    assert!(matches!(read_envelope(&bad), Err(ReadError::NotJson(_))));
    // The same oddity inside a known section is that section's problem.
    let body = format!(r#"{head}"errors":{{"total":1e999}}}}"#);
    let (env, problems) = enabled(body.as_bytes());
    assert!(env.is_degraded("errors"), "{problems:?}");
    assert_eq!(env.agents[0].job_id, 1);
    // A repeated key: the last one wins.
    let body = format!(r#"{head}"agents":[{{"job_id":2}}]}}"#);
    let (env, _) = enabled(body.as_bytes());
    assert_eq!(env.agents[0].job_id, 2);
}
