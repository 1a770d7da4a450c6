//! What the tests of each rule (next to the rule, `rules/<rule>/tests.rs`)
//! share: an engine built from TOML, calm envelopes, one agent, a poll loop.

use std::collections::BTreeMap;
use std::time::Duration;

use shared_schema::{Activity, Agent, AlertLine, Envelope, Timestamp};

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
pub fn engine(toml_text: &str) -> Engine {
    let table: toml::Table = toml::from_str(toml_text).unwrap();
    let tables: BTreeMap<String, serde_json::Value> = table
        .into_iter()
        .map(|(k, v)| (k, serde_json::to_value(v).unwrap()))
        .collect();
    Engine::new(
        RuleSet::build(&tables).unwrap(),
        Duration::from_secs(4 * 3600),
    )
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
    engine.observe(T, &obs(e)).lines
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
