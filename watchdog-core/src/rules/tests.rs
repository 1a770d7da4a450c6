//! Scenario tests of every rule through the whole pure engine: synthetic
//! envelopes in, alert lines out, no sockets and no clocks.

use std::collections::BTreeMap;
use std::time::Duration;

use shared_schema::{
    Agent, AlertEvent, AlertLine, Breaker, Cost, CostAggregate, Envelope, Errors, InvariantId,
    InvariantViolation, Queue, Reconciler, Stage, SubsystemErrors, Timestamp,
};

use crate::engine::{Engine, Observation};
use crate::rules::RuleSet;
use crate::view::PollOutcome;

const T: &str = "orch-1";

fn t0() -> Timestamp {
    Timestamp::parse("2026-11-22T10:00:00Z").unwrap()
}

fn rules(toml_text: &str) -> RuleSet {
    let table: toml::Table = toml::from_str(toml_text).unwrap();
    let tables: BTreeMap<String, serde_json::Value> = table
        .into_iter()
        .map(|(k, v)| (k, serde_json::to_value(v).unwrap()))
        .collect();
    RuleSet::build(&tables).unwrap()
}

fn engine(toml_text: &str) -> Engine {
    Engine::new(rules(toml_text), Duration::from_secs(4 * 3600))
}

/// An envelope at `s` seconds after t0, monotonic in step, all sections present and calm.
fn env(s: f64) -> Envelope {
    let mut e = Envelope::new(t0().plus_seconds(s));
    e.monotonic_ms = Some(1_000_000 + (s * 1000.0) as u64);
    e.boot_id = Some("boot-a".into());
    e.clk_tck = Some(100);
    e.queue = Some(Queue {
        counts: [
            ("queued", 0),
            ("running", 1),
            ("done", 0),
            ("failed", 0),
            ("cancelled", 0),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect(),
        depth: Some(0),
        breaker: Some(Breaker {
            state: Some("closed".into()),
            ..Breaker::default()
        }),
        ..Queue::default()
    });
    e.cost = Some(Cost {
        running: vec![],
        aggregate: Some(CostAggregate {
            cost_usd: Some(1.0),
            ..CostAggregate::default()
        }),
    });
    e.reconciler = Some(Reconciler {
        wall_clock_ms: Some(10.0),
        pending_event_count: Some(0),
        ..Reconciler::default()
    });
    e.errors = Some(Errors {
        total: Some(0),
        by_subsystem: vec![],
    });
    e
}

/// Agent dev, job 7, run 42, pid 1234, running for `runtime` s with `ticks` and `io`.
fn agent(runtime: f64, ticks: u64, io: u64) -> Agent {
    Agent {
        agent: Some("dev".into()),
        run_id: Some(42),
        job_id: 7,
        repo: Some("app".into()),
        pid: Some(1234),
        runtime_s: Some(runtime),
        cpu_ticks: Some(ticks),
        start_ticks: Some(555),
        tree_cpu_ticks: Some(ticks),
        io_rchar: Some(io),
        io_wchar: Some(0),
        state: Some("S".into()),
        ..Agent::default()
    }
}

fn obs(e: Envelope) -> Observation {
    Observation {
        now: e.generated_at,
        outcome: PollOutcome::Ok,
        envelope: Some(e),
    }
}

fn run(engine: &mut Engine, e: Envelope) -> Vec<AlertLine> {
    engine.observe(T, &obs(e)).lines
}

fn of_rule<'a>(lines: &'a [AlertLine], rule: &str) -> Vec<&'a AlertLine> {
    lines.iter().filter(|l| l.rule == rule).collect()
}

/// Polls every 15 s from `from` to `to` (inclusive) with `make(s)`, collecting the lines.
fn drive(
    engine: &mut Engine,
    from: u32,
    to: u32,
    make: impl Fn(f64) -> Envelope,
) -> Vec<AlertLine> {
    let mut out = Vec::new();
    let mut s = from;
    while s <= to {
        out.extend(run(engine, make(f64::from(s))));
        s += 15;
    }
    out
}

fn idle_env(s: f64) -> Envelope {
    let mut e = env(s);
    // 0.1% CPU: 1 tick every 10 s at 100 ticks/s... rounded to whole ticks.
    e.agents = vec![agent(600.0 + s, (s / 10.0) as u64, 1000)];
    e
}

fn busy_env(s: f64) -> Envelope {
    let mut e = env(s);
    e.agents = vec![agent(600.0 + s, (s * 50.0) as u64, 1000)];
    e
}

// ---- stuck_agent ----

#[test]
fn idle_agent_fires_once_after_for_and_resolves_when_busy() {
    let mut en = engine("");
    let lines = drive(&mut en, 0, 1200, idle_env);
    let stuck = of_rule(&lines, "stuck_agent");
    assert_eq!(stuck.len(), 1, "{stuck:?}");
    let l = stuck[0];
    assert_eq!(l.event, AlertEvent::Firing);
    assert_eq!(l.key, "stuck_agent|orch-1|job=7|run=42|pid=1234");
    // Idle from the first sample (0 s): `for` 10m later it fires, as in the
    // contract's example (since 10:00, ts 10:10, "for 10m").
    assert_eq!(l.ts, t0().plus_seconds(600.0));
    assert_eq!(l.since, t0());
    assert_eq!(l.labels.get("agent").map(String::as_str), Some("dev"));
    assert_eq!(l.labels.get("pid").map(String::as_str), Some("1234"));
    assert!(
        l.summary.starts_with("agent dev (job 7, pid 1234) used 0."),
        "{}",
        l.summary
    );
    assert!(
        l.summary.contains("% CPU and did no I/O for 10m"),
        "{}",
        l.summary
    );
    assert_eq!(l.threshold, Some(0.02));
    assert!(l.value.unwrap() < 0.02);

    let lines = drive(&mut en, 1215, 1215, busy_env);
    let stuck = of_rule(&lines, "stuck_agent");
    assert_eq!(stuck.len(), 1);
    assert_eq!(stuck[0].event, AlertEvent::Resolved);
    assert_eq!(stuck[0].key, l.key);
    // A resolution must not read as if the agent were still stuck.
    assert!(
        stuck[0]
            .summary
            .starts_with("resolved after 20m 15s; last seen: agent dev (job 7, pid 1234) used 0."),
        "{}",
        stuck[0].summary
    );
}

#[test]
fn busy_agent_never_fires() {
    let mut en = engine("");
    assert!(of_rule(&drive(&mut en, 0, 3600, busy_env), "stuck_agent").is_empty());
}

#[test]
fn flat_cpu_with_growing_io_never_fires() {
    let mut en = engine("");
    let lines = drive(&mut en, 0, 3600, |s| {
        let mut e = env(s);
        // 100 KiB every 15 s: above the default io_floor of 64 KiB/min
        // (growth below the floor is an idle event loop, see stuck_agent's tests).
        e.agents = vec![agent(600.0 + s, 0, 1000 + (s as u64 / 15) * 102_400)];
        e
    });
    assert!(of_rule(&lines, "stuck_agent").is_empty());
}

#[test]
fn young_agent_is_not_stuck() {
    let mut en = engine("");
    let lines = drive(&mut en, 0, 1200, |s| {
        let mut e = env(s);
        e.agents = vec![agent(s.min(100.0), 0, 0)];
        e
    });
    assert!(of_rule(&lines, "stuck_agent").is_empty());
}

#[test]
fn pid_reuse_restarts_the_idle_timer() {
    let mut en = engine("");
    let mut lines = drive(&mut en, 0, 450, idle_env);
    // At 465 s the pid names another process: no delta, the timer restarts.
    lines.extend(drive(&mut en, 465, 1050, |s| {
        let mut e = idle_env(s);
        e.agents[0].start_ticks = Some(999);
        e
    }));
    assert!(
        of_rule(&lines, "stuck_agent").is_empty(),
        "fired across a pid reuse"
    );
    let lines = drive(&mut en, 1065, 1095, |s| {
        let mut e = idle_env(s);
        e.agents[0].start_ticks = Some(999);
        e
    });
    // The new process's first sample is at 465: idle from there, 600 s later.
    let stuck = of_rule(&lines, "stuck_agent");
    assert_eq!(stuck.len(), 1);
    assert_eq!(stuck[0].ts, t0().plus_seconds(1065.0));
}

#[test]
fn clock_step_back_with_steady_monotonic_keeps_counting() {
    let mut en = engine("");
    let lines = drive(&mut en, 0, 900, |s| {
        let mut e = idle_env(s);
        if s >= 300.0 {
            // The wall clock jumped an hour back at 300 s; monotonic did not.
            e.generated_at = t0().plus_seconds(s - 3600.0);
        }
        e
    });
    let stuck = of_rule(&lines, "stuck_agent");
    assert_eq!(stuck.len(), 1, "{stuck:?}");
    assert_eq!(
        stuck[0].ts,
        t0().plus_seconds(600.0 - 3600.0),
        "ts on the emitter's clock"
    );
    assert!(of_rule(&lines, "target_stale").is_empty());
}

#[test]
fn reboot_restarts_the_idle_timer_and_is_no_delta() {
    let mut en = engine("");
    let mut lines = drive(&mut en, 0, 450, idle_env);
    lines.extend(drive(&mut en, 465, 1050, |s| {
        let mut e = idle_env(s);
        e.boot_id = Some("boot-b".into());
        e.monotonic_ms = Some((s * 1000.0) as u64 - 400_000);
        e
    }));
    assert!(of_rule(&lines, "stuck_agent").is_empty());
}

#[test]
fn a_frozen_emitter_neither_resolves_a_stuck_agent_nor_fires_target_down() {
    let mut en = engine("");
    let lines = drive(&mut en, 0, 630, idle_env);
    assert_eq!(of_rule(&lines, "stuck_agent").len(), 1);
    let mut lines = Vec::new();
    for s in (645..=900).step_by(15) {
        let mut o = obs(idle_env(630.0));
        o.now = t0().plus_seconds(f64::from(s));
        lines.extend(en.observe(T, &o).lines);
    }
    assert!(of_rule(&lines, "stuck_agent").is_empty(), "{lines:?}");
    assert_eq!(of_rule(&lines, "target_stale").len(), 1);
    assert!(of_rule(&lines, "target_down").is_empty());
}

#[test]
fn missed_polls_do_not_count_towards_for() {
    let mut en = engine("");
    let mut lines = drive(&mut en, 0, 300, idle_env);
    // Down from 315 to 600: unknown, not idle.
    for s in (315..=600).step_by(15) {
        lines.extend(
            en.observe(
                T,
                &Observation::failed(t0().plus_seconds(f64::from(s)), "connection refused"),
            )
            .lines,
        );
    }
    lines.extend(drive(&mut en, 615, 900, idle_env));
    // Held 300 s before the gap and 285 s after it: not yet 600.
    assert!(
        of_rule(&lines, "stuck_agent").is_empty(),
        "the gap counted as idle"
    );
    // 300 s held before the gap (0..300); the first poll after it (615)
    // starts counting again, so 300 s more: it fires at 915.
    let more = drive(&mut en, 915, 960, idle_env);
    let stuck = of_rule(&more, "stuck_agent");
    assert_eq!(stuck.len(), 1);
    assert_eq!(stuck[0].ts, t0().plus_seconds(915.0));
    assert_eq!(stuck[0].since, t0(), "since survives the gap");
}

#[test]
fn degraded_agents_section_neither_fires_nor_resolves() {
    let mut en = engine("");
    let lines = drive(&mut en, 0, 630, idle_env);
    assert_eq!(of_rule(&lines, "stuck_agent").len(), 1);
    let lines = drive(&mut en, 645, 2000, |s| {
        let mut e = env(s);
        e.mark_degraded("agents");
        e
    });
    assert!(
        of_rule(&lines, "stuck_agent").is_empty(),
        "resolved during a degraded section"
    );
    assert_eq!(
        en.firing_alerts()
            .iter()
            .filter(|(a, _)| a.rule == "stuck_agent")
            .count(),
        1
    );
}

#[test]
fn duplicate_agents_never_fail_and_alert_once() {
    let mut en = engine("");
    let lines = drive(&mut en, 0, 700, |s| {
        let mut e = idle_env(s);
        let dup = e.agents[0].clone();
        e.agents.push(dup);
        let mut other = e.agents[0].clone();
        other.job_id = 8; // another job, same pid: a distinct agent
        e.agents.push(other);
        e
    });
    let stuck = of_rule(&lines, "stuck_agent");
    assert_eq!(stuck.len(), 2, "{stuck:?}");
    assert_ne!(stuck[0].key, stuck[1].key);
}

#[test]
fn keep_firing_for_damps_a_flapping_agent() {
    let mut en = engine("[stuck_agent]\nkeep_firing_for = \"2m\"\n");
    let mut lines = drive(&mut en, 0, 630, idle_env);
    // Busy for 30 s, idle for 30 s, over and over.
    lines.extend(drive(&mut en, 645, 1500, |s| {
        if (s as u64 / 30) % 2 == 0 {
            busy_env(s)
        } else {
            idle_env(s)
        }
    }));
    let stuck = of_rule(&lines, "stuck_agent");
    assert_eq!(stuck.len(), 1, "{stuck:?}");
    assert_eq!(stuck[0].event, AlertEvent::Firing);
}

#[test]
fn unknown_keys_in_an_envelope_are_ignored() {
    let mut en = engine("");
    let body = br#"{"schema_version":1,"generated_at":"2026-11-22T10:00:00Z","clk_tck":100,"future_key":{"x":1},
        "stages":[],"queue":null,"agents":[{"job_id":1,"pid":2,"cpu_ticks":1,"new_field":true,"agent":"a","run_id":null,
        "repo":null,"runtime_s":1,"model":null,"effort":null,"state":"S"}],"cost":null}"#;
    let ev = en.observe(T, &Observation::from_body(t0(), body));
    assert!(ev.lines.is_empty(), "{:?}", ev.lines);
    assert_eq!(ev.agents.len(), 1);
}

// ---- agent_runtime ----

#[test]
fn agent_runtime_fires_past_max_only() {
    let mut en = engine("");
    let lines = drive(&mut en, 0, 30, busy_env);
    assert!(of_rule(&lines, "agent_runtime").is_empty());
    let lines = drive(&mut en, 45, 45, |s| {
        let mut e = busy_env(s);
        e.agents[0].runtime_s = Some(7201.0);
        e
    });
    let r = of_rule(&lines, "agent_runtime");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].value, Some(7201.0));
    assert_eq!(r[0].threshold, Some(7200.0));
}

// ---- stage_age ----

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

// ---- queue_depth / queue_stalled / breaker_open ----

fn with_queue(s: f64, queued: u64, running: u64, done: u64) -> Envelope {
    let mut e = env(s);
    if let Some(q) = e.queue.as_mut() {
        q.counts.insert("queued".into(), queued);
        q.counts.insert("running".into(), running);
        q.counts.insert("done".into(), done);
        q.depth = Some(queued);
    }
    e
}

#[test]
fn queue_depth_fires_after_for() {
    let mut en = engine("");
    let lines = drive(&mut en, 0, 300, |s| with_queue(s, 51, 1, 0));
    let q = of_rule(&lines, "queue_depth");
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].ts, t0().plus_seconds(120.0));
    assert_eq!(q[0].key, "queue_depth|orch-1");
    let mut en = engine("");
    assert!(of_rule(
        &drive(&mut en, 0, 300, |s| with_queue(s, 50, 1, 0)),
        "queue_depth"
    )
    .is_empty());
}

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

#[test]
fn breaker_open_fires_at_once_and_resolves() {
    let mut en = engine("");
    let mut e = env(0.0);
    if let Some(b) = e.queue.as_mut().and_then(|q| q.breaker.as_mut()) {
        b.state = Some("open".into());
        b.consecutive_failures = Some(5);
    }
    let lines = run(&mut en, e);
    assert_eq!(of_rule(&lines, "breaker_open").len(), 1);
    let lines = run(&mut en, env(15.0));
    let b = of_rule(&lines, "breaker_open");
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].event, AlertEvent::Resolved);
}

// ---- reconciler rules ----

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

#[test]
fn reconciler_slow_and_backlog_fire_after_for() {
    let mut en = engine("");
    let lines = drive(&mut en, 0, 200, |s| {
        let mut e = env(s);
        if let Some(r) = e.reconciler.as_mut() {
            r.wall_clock_ms = Some(900.0);
            r.pending_event_count = Some(51);
        }
        e
    });
    assert_eq!(
        of_rule(&lines, "reconciler_slow")[0].ts,
        t0().plus_seconds(60.0)
    );
    assert_eq!(
        of_rule(&lines, "reconciler_backlog")[0].ts,
        t0().plus_seconds(120.0)
    );
    let mut en = engine("");
    let lines = drive(&mut en, 0, 200, env);
    assert!(of_rule(&lines, "reconciler_slow").is_empty());
    assert!(of_rule(&lines, "reconciler_backlog").is_empty());
}

// ---- error_rate ----

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

// ---- cost_budget ----

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

// ---- target rules ----

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
            .lines,
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

#[test]
fn target_stale_fires_when_the_clock_stops() {
    let mut en = engine("");
    run(&mut en, env(0.0));
    let mut lines = Vec::new();
    for s in (15..=120).step_by(15) {
        let mut o = obs(env(0.0));
        o.now = t0().plus_seconds(f64::from(s));
        lines.extend(en.observe(T, &o).lines);
    }
    let st = of_rule(&lines, "target_stale");
    assert_eq!(st.len(), 1, "{lines:?}");
    assert_eq!(st[0].ts, t0().plus_seconds(75.0));
    let mut en = engine("");
    assert!(of_rule(&drive(&mut en, 0, 300, env), "target_stale").is_empty());
}

#[test]
fn schema_version_2_is_its_own_condition() {
    let mut en = engine("");
    let body = br#"{"schema_version":2,"generated_at":"2026-11-22T10:00:00Z","whatever":[]}"#;
    let ev = en.observe(T, &Observation::from_body(t0(), body));
    let s = of_rule(&ev.lines, "schema_incompatible");
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].value, Some(2.0));
    assert!(of_rule(&ev.lines, "target_down").is_empty());
    let lines = run(&mut en, env(15.0));
    assert_eq!(
        of_rule(&lines, "schema_incompatible")[0].event,
        AlertEvent::Resolved
    );
}

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

/// The idle time the outputs show is the one stuck_agent keeps (issue 11
/// item 3): it grows while the agent idles, is `None` on the first sample,
/// and is not made up when the rule is off.
#[test]
fn idle_seconds_in_the_view_come_from_stuck_agent() {
    let mut en = engine("");
    let first = en.observe(T, &obs(idle_env(0.0)));
    assert_eq!(first.agents[0].idle_s, None, "first sample: not known yet");
    en.observe(T, &obs(idle_env(15.0)));
    let third = en.observe(T, &obs(idle_env(30.0)));
    assert_eq!(third.agents[0].idle_s, Some(30.0));
    assert!(third.agents[0].cpu_fraction.is_some());
    // Busy: the timer is at 0.
    let busy = en.observe(T, &obs(busy_env(45.0)));
    assert_eq!(busy.agents[0].idle_s, Some(0.0));

    let mut off = engine("[stuck_agent]\nenabled = false\n");
    for s in [0.0, 15.0] {
        off.observe(T, &obs(idle_env(s)));
    }
    let ev = off.observe(T, &obs(idle_env(30.0)));
    assert_eq!(ev.agents[0].idle_s, None, "no owner, no idle time");
    assert!(
        ev.agents[0].cpu_fraction.is_some(),
        "the delta still gives a fraction"
    );
}

/// Idle timers survive a restart through the state file, by identity.
#[test]
fn idle_timers_are_saved_and_restored_with_the_state() {
    let mut en = engine("");
    for s in [0.0, 15.0, 30.0] {
        en.observe(T, &obs(idle_env(s)));
    }
    let saved = en.save();
    let mut again = engine("");
    again.restore(&saved).unwrap();
    let ev = again.observe(T, &obs(idle_env(45.0)));
    assert_eq!(ev.agents[0].idle_s, Some(45.0));
}

// ---- config of rules ----

#[test]
fn unknown_rule_and_unknown_key_are_rejected_by_name() {
    let err = RuleSet::build(
        &[("stuck_agnt".to_owned(), serde_json::json!({}))]
            .into_iter()
            .collect(),
    )
    .unwrap_err();
    assert!(err.contains("stuck_agnt"), "{err}");
    let t = serde_json::json!({"cpu_flor": 0.1});
    let err = RuleSet::build(&[("stuck_agent".to_owned(), t)].into_iter().collect()).unwrap_err();
    assert!(
        err.contains("cpu_flor") && err.contains("[rules.stuck_agent]"),
        "{err}"
    );
}

#[test]
fn per_agent_key_the_rule_does_not_have_is_an_error_naming_rule_agent_and_key() {
    let t = serde_json::json!({"per_agent": {"reviewer": {"cpu_flor": 0.1}}});
    let err = RuleSet::build(&[("stuck_agent".to_owned(), t)].into_iter().collect()).unwrap_err();
    assert!(
        err.contains("[rules.stuck_agent]")
            && err.contains("per_agent.reviewer")
            && err.contains("cpu_flor"),
        "{err}"
    );
    // A rule that does not take per_agent rejects the key itself.
    let t = serde_json::json!({"per_agent": {"reviewer": {"max": 1}}});
    let err = RuleSet::build(&[("queue_depth".to_owned(), t)].into_iter().collect()).unwrap_err();
    assert!(err.contains("per_agent"), "{err}");
}

#[test]
fn per_agent_overrides_cpu_floor_and_for_by_agent_name() {
    // reviewer: floor 0.5% and 30m; everyone else: the defaults (2%, 10m).
    let mut en =
        engine("[stuck_agent]\nper_agent = { reviewer = { cpu_floor = 0.005, for = \"30m\" } }\n");
    // The idle agent uses 1% CPU: idle for the default floor, busy for the reviewer's.
    let one_percent = |s: f64, name: &str| {
        let mut e = env(s);
        // 100 ticks/s: one tick a second is 1% of a CPU.
        e.agents = vec![Agent {
            agent: Some(name.to_owned()),
            ..agent(600.0 + s, s as u64, 1000)
        }];
        e
    };
    let lines = drive(&mut en, 0, 2400, |s| one_percent(s, "reviewer"));
    assert!(of_rule(&lines, "stuck_agent").is_empty(), "{lines:?}");
    let mut en =
        engine("[stuck_agent]\nper_agent = { reviewer = { cpu_floor = 0.05, for = \"30m\" } }\n");
    let lines = drive(&mut en, 0, 1500, |s| one_percent(s, "reviewer"));
    assert!(
        of_rule(&lines, "stuck_agent").is_empty(),
        "30m not reached: {lines:?}"
    );
    let lines = drive(&mut en, 1515, 2100, |s| one_percent(s, "reviewer"));
    assert_eq!(of_rule(&lines, "stuck_agent").len(), 1, "{lines:?}");
    let mut en =
        engine("[stuck_agent]\nper_agent = { reviewer = { cpu_floor = 0.05, for = \"30m\" } }\n");
    let lines = drive(&mut en, 0, 900, |s| one_percent(s, "dev"));
    assert_eq!(
        of_rule(&lines, "stuck_agent").len(),
        1,
        "dev keeps the 10m default: {lines:?}"
    );
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

// ---- state across a restart ----

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

// ---- agent_gone ----

/// Agent dev (job 7, pid 1234) as the emitter sends a process: alive, in `state`.
fn live_env(s: f64, alive: Option<bool>, state: Option<&str>) -> Envelope {
    let mut e = busy_env(s);
    e.agents[0].alive = alive;
    e.agents[0].state = state.map(str::to_owned);
    if alive == Some(false) {
        // What the emitter sends for a dead pid: nothing readable.
        let a = &mut e.agents[0];
        a.cpu_ticks = None;
        a.tree_cpu_ticks = None;
        a.start_ticks = None;
        a.io_rchar = None;
        a.io_wchar = None;
    }
    e
}

#[test]
fn agent_gone_fires_after_for_when_the_process_is_gone() {
    let mut en = engine("");
    let lines = drive(&mut en, 0, 45, |s| live_env(s, Some(false), None));
    assert!(
        of_rule(&lines, "agent_gone").is_empty(),
        "for 1m: {lines:?}"
    );
    let lines = drive(&mut en, 60, 60, |s| live_env(s, Some(false), None));
    let gone = of_rule(&lines, "agent_gone");
    assert_eq!(gone.len(), 1, "{lines:?}");
    assert_eq!(gone[0].event, AlertEvent::Firing);
    assert_eq!(gone[0].severity, shared_schema::Severity::Critical);
    assert_eq!(gone[0].key, "agent_gone|orch-1|job=7|run=42|pid=1234");
    assert_eq!(
        gone[0].summary,
        "agent dev (job 7, pid 1234) is gone: no such process, but job 7 is still running"
    );
    assert_eq!(gone[0].since, t0());
    // The job finishes (the agent leaves the envelope): resolved.
    let lines = drive(&mut en, 75, 75, env);
    assert_eq!(of_rule(&lines, "agent_gone")[0].event, AlertEvent::Resolved);
}

#[test]
fn agent_gone_says_zombie_and_stuck_agent_stays_quiet() {
    let mut en = engine("[agent_gone]\nfor = \"0s\"\n");
    // A zombie's counters stand still: 0% CPU, no I/O, for an hour.
    let lines = drive(&mut en, 0, 3600, |s| {
        let mut e = idle_env(s);
        e.agents[0].alive = Some(true);
        e.agents[0].state = Some("Z".into());
        e
    });
    let gone = of_rule(&lines, "agent_gone");
    assert_eq!(gone.len(), 1, "{lines:?}");
    assert!(
        gone[0].summary.contains("exited, not reaped (zombie)"),
        "{}",
        gone[0].summary
    );
    assert!(
        of_rule(&lines, "stuck_agent").is_empty(),
        "a zombie is not stuck: {lines:?}"
    );
}

#[test]
fn a_gone_process_is_not_stuck_and_a_stuck_alert_resolves_when_it_dies() {
    let mut en = engine("");
    let lines = drive(&mut en, 0, 630, idle_env);
    assert_eq!(of_rule(&lines, "stuck_agent").len(), 1);
    let lines = drive(&mut en, 645, 645, |s| live_env(s, Some(false), None));
    let stuck = of_rule(&lines, "stuck_agent");
    assert_eq!(stuck.len(), 1, "{lines:?}");
    assert_eq!(stuck[0].event, AlertEvent::Resolved);
}

#[test]
fn agent_gone_alive_null_is_not_enough_data() {
    let mut en = engine("[agent_gone]\nfor = \"30s\"\n");
    // An older emitter: no `alive`, no `state`: never gone.
    let lines = drive(&mut en, 0, 600, |s| live_env(s, None, None));
    assert!(of_rule(&lines, "agent_gone").is_empty(), "{lines:?}");
    // Gone for 15 s, then unknown for a while, then gone again: the unknown
    // polls neither fire, resolve nor count towards `for`.
    let lines = drive(&mut en, 615, 630, |s| live_env(s, Some(false), None));
    assert!(of_rule(&lines, "agent_gone").is_empty());
    let lines = drive(&mut en, 645, 900, |s| live_env(s, None, None));
    assert!(of_rule(&lines, "agent_gone").is_empty(), "{lines:?}");
    let lines = drive(&mut en, 915, 915, |s| live_env(s, Some(false), None));
    assert!(
        of_rule(&lines, "agent_gone").is_empty(),
        "15 s held plus a gap is not 30 s: {lines:?}"
    );
    let lines = drive(&mut en, 930, 930, |s| live_env(s, Some(false), None));
    assert_eq!(of_rule(&lines, "agent_gone").len(), 1, "{lines:?}");
    // A degraded agents section neither resolves it...
    let lines = drive(&mut en, 945, 1200, |s| {
        let mut e = live_env(s, Some(true), Some("S"));
        e.mark_degraded("agents");
        e
    });
    assert!(of_rule(&lines, "agent_gone").is_empty(), "{lines:?}");
    // ...nor does alive null; alive true does.
    let lines = drive(&mut en, 1215, 1230, |s| live_env(s, None, None));
    assert!(of_rule(&lines, "agent_gone").is_empty(), "{lines:?}");
    let lines = drive(&mut en, 1245, 1245, |s| live_env(s, Some(true), Some("S")));
    assert_eq!(of_rule(&lines, "agent_gone")[0].event, AlertEvent::Resolved);
}

#[test]
fn agent_gone_per_agent_for() {
    let mut en = engine("[agent_gone]\nper_agent = { dev = { for = \"10s\" } }\n");
    let lines = drive(&mut en, 0, 15, |s| live_env(s, Some(false), None));
    assert_eq!(of_rule(&lines, "agent_gone").len(), 1, "{lines:?}");
    let mut en = engine("[agent_gone]\nper_agent = { reviewer = { for = \"10s\" } }\n");
    let lines = drive(&mut en, 0, 45, |s| live_env(s, Some(false), None));
    assert!(
        of_rule(&lines, "agent_gone").is_empty(),
        "dev keeps 1m: {lines:?}"
    );
    let t = serde_json::json!({"per_agent": {"dev": {"max": "1m"}}});
    let err = RuleSet::build(&[("agent_gone".to_owned(), t)].into_iter().collect()).unwrap_err();
    assert!(
        err.contains("[rules.agent_gone]") && err.contains("per_agent.dev") && err.contains("max"),
        "{err}"
    );
}

// ---- agent_no_pid ----

#[test]
fn agent_no_pid_fires_after_2m_and_resolves_once_a_pid_is_recorded() {
    let no_pid = |s: f64| {
        let mut e = busy_env(s);
        let a = &mut e.agents[0];
        a.pid = None;
        a.cpu_ticks = None;
        a.tree_cpu_ticks = None;
        a.start_ticks = None;
        a.io_rchar = None;
        a.io_wchar = None;
        e
    };
    let mut en = engine("");
    let lines = drive(&mut en, 0, 105, no_pid);
    assert!(of_rule(&lines, "agent_no_pid").is_empty(), "{lines:?}");
    let lines = drive(&mut en, 120, 120, no_pid);
    let l = of_rule(&lines, "agent_no_pid");
    assert_eq!(l.len(), 1, "{lines:?}");
    assert_eq!(l[0].key, "agent_no_pid|orch-1|job=7|run=42|pid=none");
    assert_eq!(l[0].severity, shared_schema::Severity::Warning);
    assert!(l[0].summary.contains("no pid recorded"), "{}", l[0].summary);
    assert!(!l[0].labels.contains_key("pid"));
    // Neither stuck nor gone: nothing to look at.
    assert!(of_rule(&lines, "agent_gone").is_empty());
    let lines = drive(&mut en, 135, 135, busy_env);
    let l = of_rule(&lines, "agent_no_pid");
    assert_eq!(l[0].event, AlertEvent::Resolved, "{lines:?}");
    // A degraded section neither fires nor resolves.
    let mut en = engine("[agent_no_pid]\nfor = \"0s\"\n");
    assert_eq!(
        of_rule(&drive(&mut en, 0, 0, no_pid), "agent_no_pid").len(),
        1
    );
    let lines = drive(&mut en, 15, 300, |s| {
        let mut e = busy_env(s);
        e.mark_degraded("agents");
        e
    });
    assert!(of_rule(&lines, "agent_no_pid").is_empty(), "{lines:?}");
}

// ---- run_cost ----

fn with_run_cost(s: f64, agent: &str, cost: Option<f64>) -> Envelope {
    let mut e = busy_env(s);
    e.agents[0].agent = Some(agent.to_owned());
    if let Some(c) = e.cost.as_mut() {
        c.running = vec![shared_schema::RunningCost {
            run_id: Some(42),
            job_id: Some(7),
            agent: Some(agent.to_owned()),
            cost_usd: cost,
            ..shared_schema::RunningCost::default()
        }];
    }
    e
}

#[test]
fn run_cost_is_off_by_default_and_fires_past_max_usd() {
    let mut en = engine("");
    let lines = drive(&mut en, 0, 60, |s| with_run_cost(s, "dev", Some(1e6)));
    assert!(of_rule(&lines, "run_cost").is_empty());

    let mut en = engine("[run_cost]\nmax_usd = 5.0\n");
    let lines = drive(&mut en, 0, 0, |s| with_run_cost(s, "dev", Some(5.0)));
    assert!(
        of_rule(&lines, "run_cost").is_empty(),
        "at max is not past it"
    );
    let lines = drive(&mut en, 15, 15, |s| with_run_cost(s, "dev", Some(5.2)));
    let r = of_rule(&lines, "run_cost");
    assert_eq!(r.len(), 1, "{lines:?}");
    assert_eq!(r[0].key, "run_cost|orch-1|job=7|run=42");
    assert_eq!(r[0].value, Some(5.2));
    assert_eq!(r[0].threshold, Some(5.0));
    assert_eq!(
        r[0].summary,
        "agent dev (job 7, run 42) has spent $5.20 in this run (max $5.00)"
    );
    assert_eq!(r[0].labels.get("job_id").map(String::as_str), Some("7"));
    // Unknown cost, or a degraded section: neither fires nor resolves.
    let lines = drive(&mut en, 30, 60, |s| with_run_cost(s, "dev", None));
    assert!(of_rule(&lines, "run_cost").is_empty(), "{lines:?}");
    let lines = drive(&mut en, 75, 120, |s| {
        let mut e = with_run_cost(s, "dev", Some(0.0));
        e.mark_degraded("cost");
        e
    });
    assert!(of_rule(&lines, "run_cost").is_empty(), "{lines:?}");
    // The run ends (leaves cost.running): resolved.
    let lines = drive(&mut en, 135, 135, busy_env);
    assert_eq!(of_rule(&lines, "run_cost")[0].event, AlertEvent::Resolved);
}

#[test]
fn run_cost_per_agent_sets_max_for_one_agent_only() {
    let cfg = "[run_cost]\nper_agent = { reviewer = { max_usd = 1.0 } }\n";
    let mut en = engine(cfg);
    let lines = drive(&mut en, 0, 30, |s| with_run_cost(s, "dev", Some(50.0)));
    assert!(of_rule(&lines, "run_cost").is_empty(), "{lines:?}");
    let mut en = engine(cfg);
    let lines = drive(&mut en, 0, 0, |s| with_run_cost(s, "reviewer", Some(1.5)));
    assert_eq!(of_rule(&lines, "run_cost").len(), 1, "{lines:?}");
    let err = RuleSet::build(
        &[("run_cost".to_owned(), serde_json::json!({"max_usd": -1.0}))]
            .into_iter()
            .collect(),
    )
    .unwrap_err();
    assert!(err.contains("max_usd"), "{err}");
}

// ---- agent_runtime per_agent ----

#[test]
fn agent_runtime_per_agent_max() {
    let mut en = engine("[agent_runtime]\nper_agent = { dev = { max = \"1h\" } }\n");
    let lines = drive(&mut en, 0, 0, |s| {
        let mut e = busy_env(s);
        e.agents[0].runtime_s = Some(3700.0);
        e
    });
    let r = of_rule(&lines, "agent_runtime");
    assert_eq!(r.len(), 1, "{lines:?}");
    assert_eq!(r[0].threshold, Some(3600.0));
    assert!(r[0].summary.ends_with("(max 1h)"), "{}", r[0].summary);
}

// ---- which lines want a diagnosis ----

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
        for w in &ev.wanted {
            let l = &ev.lines[w.line];
            wanted.push((l.rule.clone(), l.event, w.job_id));
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
