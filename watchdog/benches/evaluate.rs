//! How long one poll's evaluation takes (the one reader, deltas, every rule,
//! alert state) at 10, 1,000 and 10,000 agents, next to a bare
//! `serde_json::from_slice::<Value>` of the same bytes; and a `replay` of 200
//! recorded snapshots of 1,000 agents next to a `Value` parse of its lines.
//!
//! `cargo bench -p watchdog --bench evaluate`

#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use serde_json::{json, Value};
use shared_schema::{RecordLine, Timestamp};
use watchdog::engine::{Engine, Observation};
use watchdog::rules::RuleSet;

fn t0() -> Timestamp {
    Timestamp::parse("2026-11-22T10:00:00Z").unwrap()
}

/// An envelope of `n` agents at `s` seconds; one in `idle_every` is idle
/// (so stuck after `for`), the others busy.
fn envelope(n: usize, s: u64, idle_every: usize) -> Value {
    let agents: Vec<Value> = (0..n)
        .map(|i| {
            let busy = i % idle_every != 0;
            let ticks = if busy { s * 50 } else { s / 20 } + i as u64;
            json!({
                "agent": format!("agent-{}", i % 7), "run_id": 10_000 + i, "job_id": i, "repo": "app",
                "pid": 20_000 + i, "runtime_s": 600 + s, "model": "m", "effort": "high",
                "cpu_ticks": ticks, "start_ticks": 777 + i, "tree_cpu_ticks": ticks * 2,
                "io_rchar": if busy { s * 4096 } else { 1_000_000 }, "io_wchar": 512, "state": "S"
            })
        })
        .collect();
    json!({
        "schema_version": 1,
        "generated_at": t0().plus_seconds(s as f64).to_string(),
        "monotonic_ms": 5_000_000 + s * 1000,
        "boot_id": "boot", "host": "h", "clk_tck": 100, "degraded": [],
        "stages": (0..n / 10).map(|i| json!({"task_id": i, "work_item": "WI", "stage": "build", "age_in_stage_s": 60.0, "repo": "app"})).collect::<Vec<_>>(),
        "queue": {"counts": {"queued": 3, "running": n, "done": s, "failed": 0, "cancelled": 0}, "depth": 3,
                  "retries": {"retried_jobs": 0, "total_retries": 0},
                  "breaker": {"state": "closed", "consecutive_failures": 0, "opened_at": null},
                  "max_concurrency": n, "poll_interval": 1.0},
        "agents": agents,
        "cost": {"running": [], "aggregate": {"runs": n, "cost_usd": 1.0 + s as f64 / 1000.0, "input_tokens": 1,
                 "output_tokens": 1, "cache_read_tokens": 0, "cache_creation_tokens": 0}},
        "reconciler": {"ticks_total": s, "last_tick_at": "2026-11-22T10:00:00Z", "wall_clock_ms": 12.0, "events_drained": 1,
                       "actions_emitted": 1, "actions_by_type": {}, "side_effects": null, "pending_event_count": 0,
                       "invariant_violations": []},
        "errors": {"total": 5, "by_subsystem": [{"subsystem": "git", "total": 5, "last_at": null}]}
    })
}

fn engine() -> Engine {
    Engine::new(RuleSet::defaults(), Duration::from_secs(4 * 3600))
}

fn evaluate(c: &mut Criterion) {
    let mut group = c.benchmark_group("evaluate");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    for n in [10usize, 1_000, 10_000] {
        // A steady state: the history holds two polls (so pending alerts
        // exist for the idle agents), the measured poll is the third.
        let first = serde_json::to_vec(&envelope(n, 600, 10)).unwrap();
        let second = serde_json::to_vec(&envelope(n, 615, 10)).unwrap();
        let third = serde_json::to_vec(&envelope(n, 630, 10)).unwrap();
        group.throughput(Throughput::Bytes(third.len() as u64));
        group.bench_with_input(BenchmarkId::new("value_parse", n), &third, |b, bytes| {
            b.iter(|| black_box(serde_json::from_slice::<Value>(black_box(bytes)).unwrap()));
        });
        // For reference: one plain typed pass into the envelope types, what
        // the former `fast_read` did for a well-formed body (no tolerance).
        group.bench_with_input(BenchmarkId::new("typed_parse", n), &third, |b, bytes| {
            b.iter(|| {
                black_box(
                    serde_json::from_slice::<shared_schema::Envelope>(black_box(bytes)).unwrap(),
                )
            });
        });
        group.bench_with_input(BenchmarkId::new("read_envelope", n), &third, |b, bytes| {
            b.iter(|| black_box(shared_schema::read_envelope(black_box(bytes)).unwrap()));
        });
        // One poll against a primed history: parse + deltas + rules + alert state.
        group.bench_with_input(BenchmarkId::new("poll", n), &third, |b, bytes| {
            b.iter_batched(
                || {
                    let mut e = engine();
                    e.observe("orch", &Observation::from_body(t0(), &first));
                    e.observe(
                        "orch",
                        &Observation::from_body(t0().plus_seconds(15.0), &second),
                    );
                    e
                },
                |mut e| {
                    let obs = Observation::from_body(t0().plus_seconds(30.0), black_box(bytes));
                    black_box(e.observe("orch", &obs));
                    e
                },
                BatchSize::LargeInput,
            );
        });
        // The engine alone (deltas + rules + alert state), the read done in setup.
        group.bench_with_input(BenchmarkId::new("engine_only", n), &third, |b, bytes| {
            b.iter_batched(
                || {
                    let mut e = engine();
                    e.observe("orch", &Observation::from_body(t0(), &first));
                    e.observe(
                        "orch",
                        &Observation::from_body(t0().plus_seconds(15.0), &second),
                    );
                    (e, Observation::from_body(t0().plus_seconds(30.0), bytes))
                },
                |(mut e, obs)| {
                    black_box(e.observe("orch", &obs));
                    (e, obs)
                },
                BatchSize::LargeInput,
            );
        });
    }
    group.finish();
}

fn replay(c: &mut Criterion) {
    // Issue 11's replay goal: 200 snapshots x 1,000 agents, next to a bare
    // `Value` parse of the very same lines.
    let mut text = String::new();
    for i in 0..200u64 {
        let body = serde_json::to_vec(&envelope(1_000, 15 * i, 10)).unwrap();
        let line = RecordLine::polled("orch", t0().plus_seconds(15.0 * i as f64), &body).unwrap();
        text.push_str(&line.to_json_line());
        text.push('\n');
    }
    let mut group = c.benchmark_group("replay");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function("value_parse_200x1000", |b| {
        b.iter(|| {
            for line in text.lines() {
                black_box(serde_json::from_slice::<Value>(black_box(line.as_bytes())).unwrap());
            }
        });
    });
    group.bench_function("replay_200x1000", |b| {
        b.iter(|| {
            let mut e = engine();
            let mut out = Vec::new();
            let stats =
                watchdog::replay::replay(std::io::Cursor::new(text.as_bytes()), &mut e, &mut out)
                    .unwrap();
            assert_eq!(stats.records, 200);
            black_box(out)
        });
    });
    group.finish();
}

criterion_group!(benches, evaluate, replay);
criterion_main!(benches);
