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
use serde_json::Value;
use shared_schema::RecordLine;
use watchdog::engine::{Engine, Observation};
use watchdog::rules::RuleSet;

mod common;
use common::{envelope, t0};

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
