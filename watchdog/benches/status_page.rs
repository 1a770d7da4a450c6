//! The status page and the alerts API at fleet size (issue 13): 100
//! targets x 100 agents, 10 firing and 5 pending alerts per target. What a
//! request costs (snapshot of the board + render) and how big the answer
//! is; and what the evaluation loop pays per poll to put a target's card up
//! (100 agents), which is all a page adds to a poll.
//!
//! `cargo bench -p watchdog --bench status_page`
//! (the page and body sizes are printed once, before the timings).

#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use shared_schema::{Agent, Envelope, Severity, Timestamp};
use watchdog::delta::AgentId;
use watchdog::view::{AgentSample, PollOutcome};
use watchdog::web::{api, status, AlertRow, AlertState, Board, TargetCard};

const TARGETS: usize = 100;
const AGENTS: usize = 100;

fn t0() -> Timestamp {
    Timestamp::parse("2026-11-22T10:00:00Z").unwrap()
}

fn envelope(t: usize) -> (Envelope, Vec<AgentSample>) {
    let mut e = Envelope::new(t0());
    e.agents = (0..AGENTS)
        .map(|i| Agent {
            job_id: (t * AGENTS + i) as i64,
            run_id: Some((t * AGENTS + i) as i64 + 10_000),
            agent: Some(format!("agent-{}", i % 7)),
            pid: Some(20_000 + i as i64),
            runtime_s: Some(600.0 + i as f64),
            state: Some("S".into()),
            alive: Some(true),
            ..Agent::default()
        })
        .collect();
    let samples = e
        .agents
        .iter()
        .map(|a| AgentSample {
            agent: a.agent.clone(),
            id: AgentId::of(a),
            cpu_fraction: Some(0.25),
            runtime_s: a.runtime_s,
            idle_s: Some((a.job_id % 700) as f64),
        })
        .collect();
    (e, samples)
}

fn alerts(t: usize) -> Vec<AlertRow> {
    (0..15)
        .map(|i| {
            let job = t * AGENTS + i;
            AlertRow {
                rule: "stuck_agent".into(),
                severity: Severity::Warning,
                state: if i < 10 {
                    AlertState::Firing
                } else {
                    AlertState::Pending
                },
                target: format!("orch-{t}"),
                key: format!(
                    "stuck_agent|orch-{t}|job={job}|run={}|pid={}",
                    job + 10_000,
                    20_000 + i
                ),
                labels: BTreeMap::from([
                    ("agent".to_owned(), format!("agent-{}", i % 7)),
                    ("job_id".to_owned(), job.to_string()),
                    ("pid".to_owned(), (20_000 + i).to_string()),
                    ("repo".to_owned(), "app".to_owned()),
                    ("run_id".to_owned(), (job + 10_000).to_string()),
                ])
                .into(),
                summary: format!(
                    "agent agent-{} (job {job}, pid {}) used 0.3% CPU and did no I/O for 10m",
                    i % 7,
                    20_000 + i
                ),
                value: Some(0.003),
                since: t0(),
                diagnosis: None,
            }
        })
        .collect()
}

fn board() -> Board {
    let board = Board::default();
    board.set_interval(Duration::from_secs(15));
    for t in 0..TARGETS {
        let (e, samples) = envelope(t);
        let card = TargetCard::after_poll(
            None,
            &format!("orch-{t}"),
            t0(),
            &PollOutcome::Ok,
            Some(&e),
            &samples,
            alerts(t),
        );
        board.put(card);
    }
    board
}

fn bench(c: &mut Criterion) {
    let board = board();
    let now = t0().plus_seconds(700.0);
    let page = status::render(&board.snapshot(), now);
    let body = api::render(&board.snapshot());
    eprintln!(
        "status_page: {TARGETS} targets x {AGENTS} agents, {} alerts: page {} bytes ({} agent rows), api {} bytes",
        TARGETS * 15,
        page.len(),
        page.matches("<tr data-job=").count(),
        body.len()
    );
    let mut g = c.benchmark_group("status_page");
    g.sample_size(30);
    g.bench_function("page_100x100", |b| {
        b.iter(|| black_box(status::render(&board.snapshot(), now)))
    });
    g.bench_function("api_100x100", |b| {
        b.iter(|| black_box(api::render(&board.snapshot())))
    });
    // The loop's share per poll: the target's new card, built and swapped in.
    let (e, samples) = envelope(7);
    let rows = alerts(7);
    g.bench_function("card_per_poll_100_agents", |b| {
        b.iter(|| {
            let prev = board.card("orch-7");
            let card = TargetCard::after_poll(
                prev.as_deref(),
                "orch-7",
                now,
                &PollOutcome::Ok,
                Some(&e),
                &samples,
                rows.clone(),
            );
            board.put(black_box(card));
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
