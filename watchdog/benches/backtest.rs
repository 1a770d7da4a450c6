//! Issue 21 "Speed": a day of records at 15 s for 100 agents (5,760 polls,
//! synthesized into a record file on disk), backtested in two configs,
//! against one `replay` of the same file under one config. The goal: the
//! backtest takes at most 2x the replay (the records are read and parsed
//! once, each observation goes to both engines).
//!
//! A bench binary rather than criterion: runs of several seconds, taken in
//! turns (replay, backtest, replay, ...) so that the load of a shared
//! machine falls on both alike; the median of each and their ratio.
//!
//! `cargo bench -p watchdog --bench backtest` (`BACKTEST_ROUNDS=N`, default 5)

#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shared_schema::RecordLine;
use watchdog::backtest::{backtest, Side};
use watchdog::engine::Engine;
use watchdog::replay::replay_files;
use watchdog::rules::RuleSet;

mod common;
use common::{envelope, t0};

const AGENTS: usize = 100;
const INTERVAL_S: u64 = 15;
const DAY_S: u64 = 24 * 3600;
/// Agents `i % 10 == 5` go idle for the first 7 minutes of every 30: B
/// (`for` 5m) fires on them, A (`for` 10m) does not.
const CYCLE_S: u64 = 1800;
const IDLE_S: u64 = 420;

fn busy_seconds(s: u64) -> u64 {
    let cycles = s / CYCLE_S;
    cycles * (CYCLE_S - IDLE_S) + (s % CYCLE_S).saturating_sub(IDLE_S)
}

/// The bench's envelope at `s`: the shared one (one agent in ten idle all
/// day) with the part-time idlers.
fn body(s: u64) -> Vec<u8> {
    let mut env = envelope(AGENTS, s, 10);
    if let Some(agents) = env["agents"].as_array_mut() {
        for (i, a) in agents.iter_mut().enumerate() {
            if i % 10 == 5 {
                let ticks = busy_seconds(s) * 50 + i as u64;
                a["cpu_ticks"] = json!(ticks);
                a["tree_cpu_ticks"] = json!(ticks * 2);
                a["io_rchar"] = json!(busy_seconds(s) * 4096);
            }
        }
    }
    serde_json::to_vec(&env).unwrap()
}

fn write_day(path: &std::path::Path) -> (usize, u64) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut n = 0;
    for s in (0..DAY_S).step_by(INTERVAL_S as usize) {
        let at = t0().plus_seconds(s as f64 + 0.2);
        let line = RecordLine::polled("orch-1", at, &body(s)).unwrap();
        out.write_all(line.to_json_line().as_bytes()).unwrap();
        out.write_all(b"\n").unwrap();
        n += 1;
    }
    out.flush().unwrap();
    (n, std::fs::metadata(path).unwrap().len())
}

fn rules(tables: Value) -> RuleSet {
    let map: BTreeMap<String, Value> = serde_json::from_value(tables).unwrap();
    RuleSet::build(&map).unwrap()
}

fn rules_a() -> RuleSet {
    rules(json!({}))
}

fn rules_b() -> RuleSet {
    rules(json!({"stuck_agent": {"for": "5m", "cpu_floor": 0.05}, "agent_runtime": {"max": "3h"}}))
}

const REPEAT: Duration = Duration::from_secs(4 * 3600);

fn side(name: &str, rules: RuleSet) -> Side {
    Side {
        name: name.into(),
        rules,
        repeat_interval: REPEAT,
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not used here.
    let rounds: usize = std::env::var("BACKTEST_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rec.jsonl");
    let t = Instant::now();
    let (polls, bytes) = write_day(&path);
    println!(
        "synthesized {polls} polls of {AGENTS} agents ({:.0} MiB) in {:.1?}",
        bytes as f64 / f64::from(1 << 20),
        t.elapsed()
    );
    let files: Vec<PathBuf> = vec![path];

    let mut replays = Vec::new();
    let mut backtests = Vec::new();
    let mut last = None;
    for _ in 0..rounds {
        let t = Instant::now();
        let mut engine = Engine::new(rules_a(), REPEAT);
        let stats = replay_files(&files, &mut engine, &mut std::io::sink()).unwrap();
        replays.push(t.elapsed());
        assert_eq!(stats.records, polls);

        let t = Instant::now();
        let report = backtest(&files, side("a", rules_a()), Some(side("b", rules_b()))).unwrap();
        backtests.push(t.elapsed());
        assert_eq!(report.replayed.records, polls);
        last = Some(report);
    }
    let (r, b) = (median(replays.clone()), median(backtests.clone()));
    println!("replay, one config:     median {r:.2?} of {replays:.2?}");
    println!("backtest, two configs:  median {b:.2?} of {backtests:.2?}");
    println!(
        "ratio backtest / replay: {:.2} (goal: at most 2.00); per poll {:.0} us vs {:.0} us",
        b.as_secs_f64() / r.as_secs_f64(),
        b.as_secs_f64() * 1e6 / polls as f64,
        r.as_secs_f64() * 1e6 / polls as f64
    );
    if let Some(report) = last {
        let d = report.total.diff.clone().unwrap_or_default();
        println!(
            "report: A {} alerts, B {}; {} added ({} flaps), {} removed, {} shared ({} earlier, {} later)",
            report.a.alerts.len(),
            report.b.as_ref().map_or(0, |b| b.alerts.len()),
            d.added,
            d.added_flaps,
            d.removed,
            d.both,
            d.earlier,
            d.later
        );
        let t = Instant::now();
        let html = watchdog::backtest::html::render(&report);
        let text = watchdog::backtest::text::render(&report);
        let json = watchdog::backtest::json::render(&report);
        println!(
            "rendering: text {} KiB, json {} KiB, html {} KiB, all three in {:.1?}",
            text.len() / 1024,
            json.len() / 1024,
            html.len() / 1024,
            t.elapsed()
        );
    }
}
