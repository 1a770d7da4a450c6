//! The synthetic envelopes the watchdog's benches share.

#![allow(dead_code, clippy::unwrap_used)]

use serde_json::{json, Value};
use shared_schema::Timestamp;

/// The benches' epoch.
pub fn t0() -> Timestamp {
    Timestamp::parse("2026-11-22T10:00:00Z").unwrap()
}

/// An envelope of `n` agents at `s` seconds; one in `idle_every` is idle
/// (so stuck after `for`), the others busy.
pub fn envelope(n: usize, s: u64, idle_every: usize) -> Value {
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

/// The three bodies of a steady state: two to prime the history (so
/// pending alerts exist for the idle agents), the third to measure.
pub fn three_polls(n: usize) -> [Vec<u8>; 3] {
    [600, 615, 630].map(|s| serde_json::to_vec(&envelope(n, s, 10)).unwrap())
}
