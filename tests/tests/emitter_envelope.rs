//! The real `emitter serve` on a real state database with real agent
//! processes: the envelope fits the contract, names every running job with
//! its pid, and its /proc readings tell the agents apart (busy ticks, idle
//! nothing, I/O bytes, the busy child's ticks in the tree only).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use e2e::agents::AgentKind;
use e2e::lab::Lab;
use e2e::stack::Emitter;
use e2e::{bins, net};
use shared_schema::{Envelope, Reading};

fn envelope(url: &str) -> Envelope {
    let (status, body) = net::get(url).unwrap();
    assert_eq!(status, 200, "{body}");
    let problems = shared_schema::validate(body.as_bytes());
    assert!(
        problems.is_empty(),
        "envelope does not fit the contract: {problems:?}\n{body}"
    );
    match shared_schema::read_envelope(body.as_bytes()).unwrap() {
        Reading::Enabled { envelope, problems } => {
            assert!(problems.is_empty(), "{problems:?}");
            envelope
        }
        Reading::Disabled => panic!("emitter is disabled: {body}"),
    }
}

#[test]
fn envelope_tells_busy_idle_io_and_busy_child_agents_apart() {
    let emitter_bin = bins::locate("emitter").unwrap();
    let lab = Lab::start(&AgentKind::ALL, None).unwrap();
    let emitter = Emitter::start(&emitter_bin, &lab.db, lab.dir()).unwrap();

    // Two snapshots at least 2 s apart, by the emitter's own monotonic clock.
    let first = envelope(&emitter.url());
    let second = net::wait_for(
        "2 s between snapshots",
        Duration::from_secs(10),
        Duration::from_millis(200),
        || {
            let e = envelope(&emitter.url());
            let dt = e
                .monotonic_ms
                .unwrap_or(0)
                .saturating_sub(first.monotonic_ms.unwrap_or(0));
            if dt >= 2000 {
                Ok(e)
            } else {
                Err(format!("only {dt} ms"))
            }
        },
    )
    .unwrap();
    assert!(
        second.degraded.is_empty(),
        "degraded: {:?}",
        second.degraded
    );
    let clk = second.clk_tck.expect("clk_tck") as f64;
    let dt = (second.monotonic_ms.unwrap() - first.monotonic_ms.unwrap()) as f64 / 1000.0;
    assert_eq!(
        second.agents.len(),
        AgentKind::ALL.len(),
        "{:?}",
        second.agents
    );

    for (agent, job) in &lab.agents {
        let find = |e: &Envelope| {
            e.agents
                .iter()
                .find(|a| a.job_id == job.job_id)
                .cloned()
                .unwrap()
        };
        let (a, b) = (find(&first), find(&second));
        assert_eq!(b.pid, Some(i64::from(agent.pid())), "{b:?}");
        assert_eq!(b.agent.as_deref(), Some(agent.kind.name()));
        assert_eq!(b.run_id, Some(job.run_id));
        assert_eq!(
            a.start_ticks, b.start_ticks,
            "same process, same start_ticks"
        );
        assert!(b.runtime_s.unwrap() >= 0.0);
        let own = (b.cpu_ticks.unwrap() - a.cpu_ticks.unwrap()) as f64 / clk / dt;
        let tree = (b.tree_cpu_ticks.unwrap() - a.tree_cpu_ticks.unwrap()) as f64 / clk / dt;
        let io = (b.io_rchar.unwrap() + b.io_wchar.unwrap())
            - (a.io_rchar.unwrap() + a.io_wchar.unwrap());
        let name = agent.kind.name();
        match agent.kind {
            AgentKind::Busy => assert!(own > 0.05 && tree >= own, "{name}: own {own} tree {tree}"),
            AgentKind::Idle => {
                assert_eq!(b.tree_cpu_ticks, a.tree_cpu_ticks, "{name}: {a:?} -> {b:?}");
                assert_eq!(io, 0, "{name}: {a:?} -> {b:?}");
            }
            AgentKind::Io => {
                assert!(io > 0, "{name}: no I/O: {a:?} -> {b:?}");
                assert!(own < 0.1, "{name}: own {own}");
            }
            AgentKind::BusyChild => {
                assert!(own < 0.02, "{name}: the waiting shell itself used {own}");
                assert!(tree > 0.05, "{name}: tree {tree}");
            }
        }
    }
}

#[test]
fn the_emitter_never_writes_the_database() {
    let emitter_bin = bins::locate("emitter").unwrap();
    let lab = Lab::start(&[AgentKind::Idle], None).unwrap();
    let before = std::fs::read(&lab.db).unwrap();
    let emitter = Emitter::start(&emitter_bin, &lab.db, lab.dir()).unwrap();
    for _ in 0..5 {
        envelope(&emitter.url());
    }
    assert_eq!(
        std::fs::read(&lab.db).unwrap(),
        before,
        "the database's bytes changed"
    );
}
