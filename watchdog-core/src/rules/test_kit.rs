//! What the tests of each rule (next to the rule, `rules/<rule>/tests.rs`)
//! share: an engine built from TOML, envelopes (bare or with every section
//! present and calm), one agent, a poll loop.

use std::collections::BTreeMap;
use std::time::Duration;

use shared_schema::{
    Activity, Agent, AlertLine, Breaker, Cost, CostAggregate, Envelope, Errors, Queue, Reconciler,
    Timestamp,
};

use crate::engine::{Engine, Observation};
use crate::rules::RuleSet;
use crate::view::PollOutcome;

/// The target every test polls.
pub const T: &str = "orch-1";

/// 10:00:00 on the contract's example day.
pub fn t0() -> Timestamp {
    Timestamp::parse("2026-11-22T10:00:00Z").unwrap()
}

/// Rules from `[NAME]` tables, as an operator writes them under `[rules]`.
pub fn rules(toml_text: &str) -> RuleSet {
    let table: toml::Table = toml::from_str(toml_text).unwrap();
    let tables: BTreeMap<String, serde_json::Value> = table
        .into_iter()
        .map(|(k, v)| (k, serde_json::to_value(v).unwrap()))
        .collect();
    RuleSet::build(&tables).unwrap()
}

/// An engine of [`rules`] that repeats a firing alert every 4 h.
pub fn engine(toml_text: &str) -> Engine {
    Engine::new(rules(toml_text), Duration::from_secs(4 * 3600))
}

/// An envelope at `s` seconds after t0, monotonic in step, no agents.
pub fn env(s: f64) -> Envelope {
    let mut e = Envelope::new(t0().plus_seconds(s));
    e.monotonic_ms = Some(1_000_000 + (s * 1000.0) as u64);
    e.boot_id = Some("boot-a".into());
    e.clk_tck = Some(100);
    e
}

/// Agent dev, job 7, run 42, pid 1234, running for `runtime` s with `ticks` and `io`.
pub fn agent(runtime: f64, ticks: u64, io: u64) -> Agent {
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
        alive: Some(true),
        ..Agent::default()
    }
}

/// What an agent reported over OTLP, with the given counts.
pub fn activity(api_requests: u64, tool_calls: u64) -> Activity {
    Activity {
        source: "otlp".into(),
        service: Some("claude-code".into()),
        api_requests,
        tool_calls,
        ..Activity::default()
    }
}

/// One poll that read `e`.
pub fn obs(e: Envelope) -> Observation {
    Observation {
        now: e.generated_at,
        outcome: PollOutcome::Ok,
        envelope: Some(e),
    }
}

/// The lines of one poll.
pub fn run(engine: &mut Engine, e: Envelope) -> Vec<AlertLine> {
    engine.observe(T, &obs(e)).into_lines()
}

/// The lines of one rule.
pub fn of_rule<'a>(lines: &'a [AlertLine], rule: &str) -> Vec<&'a AlertLine> {
    lines.iter().filter(|l| l.rule == rule).collect()
}

/// Polls every `step` s from `from` to `to` (inclusive) with `make(s)`.
pub fn drive(
    engine: &mut Engine,
    from: f64,
    to: f64,
    step: f64,
    mut make: impl FnMut(f64) -> Envelope,
) -> Vec<AlertLine> {
    let mut out = Vec::new();
    let mut s = from;
    while s <= to + 1e-9 {
        out.extend(run(engine, make(s)));
        s += step;
    }
    out
}

/// Seconds after t0 of a line's `ts`.
pub fn at(line: &AlertLine) -> f64 {
    line.ts.seconds_since(&t0())
}

/// [`env`] with every section present and calm: one job running, the
/// breaker closed, $1 spent, a quick reconciler, no errors.
pub fn calm_env(s: f64) -> Envelope {
    let mut e = env(s);
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

/// [`agent`] as an emitter that does not report `alive` sends it.
pub fn agent_unprobed(runtime: f64, ticks: u64, io: u64) -> Agent {
    Agent {
        alive: None,
        ..agent(runtime, ticks, io)
    }
}

/// Polls every 15 s from `from` to `to` (inclusive) with `make(s)`.
pub fn drive_15s(
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

/// A calm envelope whose agent idles: 0.1% CPU (1 tick every 10 s at 100
/// ticks/s, rounded to whole ticks).
pub fn idle_env(s: f64) -> Envelope {
    let mut e = calm_env(s);
    e.agents = vec![agent_unprobed(600.0 + s, (s / 10.0) as u64, 1000)];
    e
}

/// A calm envelope whose agent uses half a CPU.
pub fn busy_env(s: f64) -> Envelope {
    let mut e = calm_env(s);
    e.agents = vec![agent_unprobed(600.0 + s, (s * 50.0) as u64, 1000)];
    e
}

/// A calm envelope with these queue counts (and `depth = queued`).
pub fn with_queue(s: f64, queued: u64, running: u64, done: u64) -> Envelope {
    let mut e = calm_env(s);
    if let Some(q) = e.queue.as_mut() {
        q.counts.insert("queued".into(), queued);
        q.counts.insert("running".into(), running);
        q.counts.insert("done".into(), done);
        q.depth = Some(queued);
    }
    e
}
