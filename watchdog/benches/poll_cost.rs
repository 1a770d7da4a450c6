//! One live poll at 10,000 agents, measured two ways side by side with a
//! bare `serde_json::from_slice::<Value>` of the same bytes: wall time
//! (median of `POLL_COST_REPS`, default 15) and, under callgrind,
//! instructions, which a loaded machine does not disturb. Each part is its
//! own non-inlined function so callgrind names it:
//!
//! ```sh
//! cargo bench -p watchdog --bench poll_cost                    # times
//! POLL_COST_REPS=1 valgrind --tool=callgrind --callgrind-out-file=cg.out \
//!   target/release/deps/poll_cost-*[^.d] --bench
//! callgrind_annotate --inclusive=yes cg.out | grep 'poll_cost::part_'
//! ```
//!
//! `POLL_COST_AGENTS` changes the size (default 10000).

#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use serde_json::Value;
use watchdog::engine::{Engine, Observation};
use watchdog::rules::RuleSet;

mod common;
use common::{t0, three_polls};

fn primed(bodies: &[Vec<u8>; 3]) -> Engine {
    let mut e = Engine::new(RuleSet::defaults(), Duration::from_secs(4 * 3600));
    e.observe("orch", &Observation::from_body(t0(), &bodies[0]));
    e.observe(
        "orch",
        &Observation::from_body(t0().plus_seconds(15.0), &bodies[1]),
    );
    e
}

#[inline(never)]
fn part_value_parse(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap()
}

#[inline(never)]
fn part_read_envelope(body: &[u8]) -> Observation {
    Observation::from_body(t0().plus_seconds(30.0), body)
}

#[inline(never)]
fn part_engine_only(e: &mut Engine, obs: &Observation) -> usize {
    e.observe("orch", obs).emitted.len()
}

#[inline(never)]
fn part_poll(e: &mut Engine, body: &[u8]) -> usize {
    let obs = Observation::from_body(t0().plus_seconds(30.0), body);
    e.observe("orch", &obs).emitted.len()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let n: usize = std::env::var("POLL_COST_AGENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let reps: usize = std::env::var("POLL_COST_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15)
        .max(1);
    let bodies = three_polls(n);
    let body = &bodies[2];
    let (mut value, mut read, mut engine, mut poll) = (vec![], vec![], vec![], vec![]);
    for _ in 0..reps {
        let t = Instant::now();
        black_box(part_value_parse(black_box(body)));
        value.push(t.elapsed());

        let t = Instant::now();
        black_box(part_read_envelope(black_box(body)));
        read.push(t.elapsed());

        let mut e = primed(&bodies);
        let obs = Observation::from_body(t0().plus_seconds(30.0), body);
        let t = Instant::now();
        black_box(part_engine_only(&mut e, &obs));
        engine.push(t.elapsed());
        drop((e, obs));

        let mut e = primed(&bodies);
        let t = Instant::now();
        black_box(part_poll(&mut e, black_box(body)));
        poll.push(t.elapsed());
    }
    let base = median(value.clone()).as_secs_f64();
    println!(
        "poll_cost: {n} agents, {} bytes, median of {reps}",
        body.len()
    );
    for (name, v) in [
        ("value_parse", value),
        ("read_envelope", read),
        ("engine_only", engine),
        ("poll", poll),
    ] {
        let m = median(v).as_secs_f64();
        println!(
            "  {name:<14} {:>9.3} ms  {:.2}x the Value parse",
            m * 1e3,
            m / base
        );
    }
}
