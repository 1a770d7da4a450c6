//! Soak of the watchdog on a time-compressed scenario (issue 7).
//!
//! A generated orchestrator where agents keep appearing and exiting: each
//! lives `LIFETIME` steps of 15 s (30 min); one in four is idle (no CPU, no
//! I/O) and must fire `stuck_agent` once and resolve once it is gone; the
//! others are busy (about 3% CPU and growing I/O) and must never fire.
//!
//! - `replay`: thousands of steps (hours of simulated time) written as a
//!   `--record` file and fed to `watchdog replay`; the alert lines are
//!   counted per agent and the replay's resident memory is sampled.
//! - `run`: the same scenario served over HTTP by a fake target whose clock
//!   advances 15 s per request, polled every 100 ms by `watchdog run`; its
//!   VmRSS and the number of series on its `/metrics` are sampled over time
//!   and must stay flat (bounded by what is live), not grow with history.
//!
//! Short variants run by default; the long ones (figures in
//! docs/RELIABILITY.md, on the release binary):
//! `cargo build --release -p watchdog && LOAD_BIN_DIR=target/release \
//!  cargo test -p e2e --test soak_watchdog -- --ignored --nocapture`
#![allow(clippy::unwrap_used)]

use e2e::harness::{bin, write_json, Guard, HttpStub, RawOptions, RawWatchdog};
use e2e::stack::config_head;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn vm_rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

// ---------------------------------------------------------------- scenario

/// Seconds of simulated time per step.
const STEP_S: i64 = 15;
/// Steps an agent lives: 30 minutes.
const LIFETIME: u64 = 120;
/// Simulated start: 2026-11-22T00:00:00Z.
const T0_MS: i64 = 1_795_305_600_000;

/// The generated orchestrator: about `live` agents alive at any step.
#[derive(Debug, Clone, Copy)]
struct Scenario {
    live: u64,
}

impl Scenario {
    /// A new agent every `stride` steps keeps about `live` alive.
    fn stride(&self) -> u64 {
        (LIFETIME / self.live).max(1)
    }

    fn born(&self, j: u64) -> u64 {
        j * self.stride()
    }

    fn idle(j: u64) -> bool {
        j % 4 == 0
    }

    /// Agents alive at `step`.
    fn alive(&self, step: u64) -> impl Iterator<Item = u64> + '_ {
        let first = (step.saturating_sub(LIFETIME - 1)).div_ceil(self.stride());
        (first..).take_while(move |&j| self.born(j) <= step)
    }

    fn envelope(&self, step: u64) -> Value {
        let ms = T0_MS + step as i64 * STEP_S * 1000;
        let generated_at = shared_schema::Timestamp::from_unix_ms(ms)
            .unwrap()
            .to_string();
        let agents: Vec<Value> = self
            .alive(step)
            .map(|j| {
                let age = step - self.born(j);
                // Busy: 50 ticks per 15 s at 100 Hz = 3.3% > the 2% floor.
                let ticks = if Self::idle(j) { 7 } else { 7 + 50 * age };
                let io = if Self::idle(j) {
                    4096
                } else {
                    4096 + 1000 * age
                };
                json!({
                    "agent": format!("dev-{}", j % 7),
                    "run_id": 100_000 + j,
                    "job_id": j,
                    "repo": "app",
                    "pid": 10_000 + j,
                    "runtime_s": 60 + age * STEP_S as u64,
                    "model": "opus",
                    "effort": "high",
                    "cpu_ticks": ticks,
                    "start_ticks": 1_000 + j,
                    "tree_cpu_ticks": ticks,
                    "io_rchar": io,
                    "io_wchar": io / 2,
                    "state": if Self::idle(j) { "S" } else { "R" },
                })
            })
            .collect();
        let running = agents.len();
        let finished = (step / self.stride()).saturating_sub(running as u64);
        json!({
            "schema_version": 1,
            "generated_at": generated_at,
            "monotonic_ms": 5_000_000 + step * STEP_S as u64 * 1000,
            "boot_id": "soak-boot",
            "host": "soak",
            "clk_tck": 100,
            "degraded": [],
            "stages": [{"task_id": 1, "work_item": "WI-1", "stage": "implement",
                        "age_in_stage_s": 120.0, "repo": "app"}],
            "queue": {
                "counts": {"queued": 0, "running": running, "done": finished,
                           "failed": 0, "cancelled": 0},
                "depth": 0,
                "retries": {"retried_jobs": 0, "total_retries": 0},
                "breaker": {"state": "closed", "consecutive_failures": 0, "opened_at": null},
                "max_concurrency": self.live + 5,
                "poll_interval": 1.0
            },
            "agents": agents,
            "cost": {"running": [], "aggregate": {"runs": step, "cost_usd": step as f64 * 0.01,
                     "input_tokens": step * 10, "output_tokens": step, "cache_read_tokens": 0,
                     "cache_creation_tokens": 0}},
            "reconciler": null,
            "errors": {"total": 0, "by_subsystem": []}
        })
    }
}

/// Writes `steps` record lines (`watchdog run --record` form) to `path`.
fn write_recording(s: Scenario, steps: u64, path: &Path) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for step in 0..steps {
        let env = s.envelope(step);
        let line = shared_schema::RecordLine::polled(
            "orch",
            shared_schema::Timestamp::parse(env["generated_at"].as_str().unwrap()).unwrap(),
            env.to_string().as_bytes(),
        )
        .unwrap();
        writeln!(out, "{}", line.to_json_line()).unwrap();
    }
    out.flush().unwrap();
}

// ------------------------------------------------------------------ replay

struct ReplayOutcome {
    lines: Vec<Value>,
    peak_rss_kib: u64,
    took: Duration,
}

fn replay(path: &Path) -> ReplayOutcome {
    let started = Instant::now();
    let mut child = Command::new(bin("watchdog"))
        .arg("replay")
        .arg(path)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map(|l| l.unwrap())
            .collect::<Vec<_>>()
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let mut guard = Guard(child);
    let mut peak = 0;
    let deadline = Instant::now() + Duration::from_secs(600);
    let status = loop {
        if let Some(status) = guard.0.try_wait().unwrap() {
            break status;
        }
        if let Some(rss) = vm_rss_kib(pid) {
            peak = peak.max(rss);
        }
        assert!(
            Instant::now() < deadline,
            "replay did not finish in 10 minutes"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let took = started.elapsed();
    let lines = reader.join().unwrap();
    let err = err_reader.join().unwrap();
    assert!(status.success(), "replay failed ({status}):\n{err}");
    let lines = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    ReplayOutcome {
        lines,
        peak_rss_kib: peak,
        took,
    }
}

/// Counts of `stuck_agent` events per job id.
fn stuck_events(lines: &[Value]) -> BTreeMap<u64, (usize, usize)> {
    let mut per_job: BTreeMap<u64, (usize, usize)> = BTreeMap::new();
    for l in lines.iter().filter(|l| l["rule"] == "stuck_agent") {
        let job: u64 = l["labels"]["job_id"].as_str().unwrap().parse().unwrap();
        let e = per_job.entry(job).or_default();
        match l["event"].as_str().unwrap() {
            "firing" => e.0 += 1,
            "resolved" => e.1 += 1,
            _ => {}
        }
    }
    per_job
}

fn soak_replay(live: u64, steps: u64) {
    let dir = tempfile::tempdir().unwrap();
    let s = Scenario { live };
    let small = dir.path().join("small.jsonl");
    let big = dir.path().join("big.jsonl");
    write_recording(s, steps / 4, &small);
    write_recording(s, steps, &big);

    let short = replay(&small);
    let long = replay(&big);
    let hours = steps as f64 * STEP_S as f64 / 3600.0;
    eprintln!(
        "soak replay: {live} live agents, {steps} steps ({hours:.1} h simulated): {} lines in {:.2} s; \
         peak VmRSS {} KiB (vs {} KiB for a quarter of the steps)",
        long.lines.len(),
        long.took.as_secs_f64(),
        long.peak_rss_kib,
        short.peak_rss_kib
    );

    // Every line is an alert line of the contract.
    for l in &long.lines {
        serde_json::from_value::<shared_schema::AlertLine>(l.clone())
            .unwrap_or_else(|e| panic!("not an alert line ({e}): {l}"));
    }
    let per_job = stuck_events(&long.lines);
    let mut expected_fired = BTreeSet::new();
    let mut j = 0;
    while s.born(j) < steps {
        let done = s.born(j) + LIFETIME < steps;
        let (fired, resolved) = per_job.get(&j).copied().unwrap_or_default();
        if Scenario::idle(j) {
            if done {
                // Idle from the start and gone before the end: once each.
                assert_eq!((fired, resolved), (1, 1), "idle agent (job {j})");
                expected_fired.insert(j);
            } else {
                assert!(
                    fired <= 1 && resolved <= fired,
                    "idle agent (job {j}): {fired}/{resolved}"
                );
            }
        } else {
            assert_eq!((fired, resolved), (0, 0), "busy agent (job {j}) fired");
        }
        j += 1;
    }
    assert!(expected_fired.len() as u64 >= steps / s.stride() / 4 / 2);
    // Flat memory: four times the history costs no more than a bounded extra.
    assert!(
        long.peak_rss_kib <= short.peak_rss_kib + 16 * 1024,
        "replay memory grows with history: {} KiB vs {} KiB",
        long.peak_rss_kib,
        short.peak_rss_kib
    );
}

#[test]
fn soak_replay_short() {
    // 2,000 steps of 15 s: 8.3 hours of simulated time, ~20 agents alive.
    soak_replay(20, 2_000);
}

#[test]
#[ignore = "long soak (several minutes on 2 cores); run with --ignored"]
fn soak_replay_long() {
    // 20,000 steps: 83 hours of simulated time, ~120 agents alive.
    soak_replay(120, 20_000);
}

// -------------------------------------------------------------- live `run`

/// Serves `Scenario::envelope(LIFETIME + n)` on the n-th request: a clock
/// that advances 15 s per poll, starting in the steady state (as many
/// agents appearing as exiting), so anything that grows is history kept.
fn fake_target(s: Scenario) -> HttpStub {
    HttpStub::counted(move |step, _head, conn| {
        write_json(
            conn,
            s.envelope(LIFETIME + step as u64).to_string().as_bytes(),
        );
    })
}

/// Series on the page: sample lines, not comments.
fn series(page: &str) -> usize {
    page.lines().filter(|l| l.starts_with("watchdog_")).count()
}

fn agent_series(page: &str) -> usize {
    page.lines()
        .filter(|l| l.starts_with("watchdog_agent_"))
        .count()
}

fn soak_run(live: u64, polls: u64) {
    let s = Scenario { live };
    let target = fake_target(s);
    let options = RawOptions {
        rust_log: "warn",
        ..RawOptions::default()
    };
    let mut w = RawWatchdog::start(&options, |_, listen| {
        config_head("100ms", "2s", listen, "", "orch", &target.url("/metrics"))
    });
    let pid = w.pid();

    // Sample (polls done, VmRSS, series, agent series) every ~1/10 of the run.
    let mut samples = Vec::new();
    let started = Instant::now();
    let limit = Duration::from_millis(polls * 100 * 4 + 20_000);
    let mut next = polls / 10;
    while (target.hits() as u64) < polls {
        assert!(started.elapsed() < limit, "the watchdog polled too slowly");
        w.assert_alive();
        let hits = target.hits() as u64;
        if hits >= next {
            if let Some(page) = w.metrics() {
                let rss = vm_rss_kib(pid).unwrap();
                samples.push((hits, rss, series(&page), agent_series(&page)));
            }
            next += polls / 10;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "soak run: {} live agents, {polls} polls in {:.1} s ({:.1} h simulated); samples (polls, VmRSS KiB, series, agent series):",
        s.alive(LIFETIME).count(),
        started.elapsed().as_secs_f64(),
        polls as f64 * STEP_S as f64 / 3600.0
    );
    for s in &samples {
        eprintln!("  {s:?}");
    }
    assert!(samples.len() >= 5, "too few samples: {samples:?}");
    // Agent series follow the live agents (≤ 3 gauges x (alive + 1 churning)).
    let alive = s.alive(LIFETIME).count();
    let max_agent_series = 3 * (alive + 2);
    for &(hits, _, _, agents) in &samples {
        assert!(
            agents <= max_agent_series,
            "{agents} agent series at poll {hits} for {alive} live agents: series of gone agents are kept"
        );
    }
    // Flat: the second half never exceeds the first half's maximum by much.
    let half = samples.len() / 2;
    let first_series = samples[..half].iter().map(|s| s.2).max().unwrap();
    let last_series = samples[half..].iter().map(|s| s.2).max().unwrap();
    assert!(
        last_series <= first_series + 3 * 3,
        "series grow over time: {first_series} -> {last_series}"
    );
    let first_rss = samples[..half].iter().map(|s| s.1).max().unwrap();
    let last_rss = samples[half..].iter().map(|s| s.1).max().unwrap();
    assert!(
        last_rss <= first_rss + 8 * 1024,
        "VmRSS grows over time: {first_rss} -> {last_rss} KiB"
    );
    // Idle agents were noticed along the way (the scenario is live, not empty).
    assert!(
        w.stdout()
            .iter()
            .any(|l| l.contains("\"stuck_agent\"") && l.contains("\"firing\"")),
        "no stuck_agent firing in {polls} polls"
    );
}

#[test]
fn soak_run_short() {
    // 200 polls at 100 ms: ~20 s wall, 50 minutes of simulated time.
    soak_run(20, 200);
}

#[test]
#[ignore = "long soak (about 10 minutes); run with --ignored"]
fn soak_run_long() {
    // 5,000 polls: ~21 hours simulated, ~100 agents alive.
    soak_run(100, 5_000);
}
