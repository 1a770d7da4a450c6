//! Every key and value of CONTRACT.md section 1 from a full database and real processes.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::{assert_valid, snapshot, stat_field, wait_until, Children, Db};
use shared_schema::{Agent, Envelope, InvariantId, Timestamp};

fn full_db(pids: &Pids) -> Db {
    let db = Db::new(true);
    db.exec(&format!(
        "
        INSERT INTO tasks VALUES (1, 'WI-1', 'app', 'dev', datetime('now', '-90 seconds'));
        INSERT INTO tasks VALUES (2, 'WI-2', 'app', 'review', strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-3600 seconds'));
        INSERT INTO tasks VALUES (3, 'WI-3', 'lib', 'done', datetime('now'));
        INSERT INTO tasks VALUES (4, 'WI-4', 'lib', 'cancelled', datetime('now'));
        INSERT INTO tasks VALUES (5, NULL, NULL, 'qa', 'garbage');

        INSERT INTO jobs (id, task_id, agent, repo, status, attempts, pid, model, effort, started_at) VALUES
          (1, 1, 'dev', 'app', 'running', 1, {idle}, 'opus', 'high', datetime('now', '-120 seconds')),
          (2, 2, 'busy', 'app', 'running', 3, {busy}, 'sonnet', 'low', strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-60 seconds')),
          (3, 2, 'weird', 'app', 'running', 2, {weird}, NULL, NULL, datetime('now')),
          (4, 5, 'tree', 'lib', 'running', 1, {parent}, NULL, NULL, datetime('now')),
          (5, 5, 'ghost', 'lib', 'running', 1, {dead}, NULL, NULL, datetime('now')),
          (6, 5, 'nopid', NULL, 'running', 0, NULL, NULL, NULL, NULL),
          (7, 1, 'dev', 'app', 'done', 1, NULL, NULL, NULL, NULL),
          (8, 1, 'dev', 'app', 'queued', 0, NULL, NULL, NULL, NULL),
          (9, 1, 'dev', 'app', 'queued', 0, NULL, NULL, NULL, NULL),
          (10, 1, 'dev', 'app', 'failed', 4, NULL, NULL, NULL, NULL),
          (11, 1, 'dev', 'app', 'paused', 1, NULL, NULL, NULL, NULL);

        INSERT INTO agent_runs (id, job_id, agent, cost_usd, input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens) VALUES
          (1, 1, 'dev', 1.0, NULL, NULL, NULL, NULL),
          (2, 1, 'dev', 0.5, 100, 200, 300, 400),
          (3, 2, 'busy', NULL, NULL, NULL, NULL, NULL),
          (4, 7, 'dev', 2.0, 10, NULL, NULL, NULL);

        INSERT INTO worker_state VALUES ('breaker_state', 'open'), ('breaker_failures', '5'),
          ('breaker_opened_at', '2026-11-22 10:00:00'), ('max_concurrency', '4'), ('poll_interval', '2.5');

        INSERT INTO reconciler_ticks VALUES
          (1, '2026-11-22 10:04:00', 99, 1, 1, '{{}}', 0, 0, 0, 0, '[]'),
          (2, '2026-11-22 10:05:00', 12.5, 7, 3, '{{\"spawn\": 2, \"kill\": 1}}', 3, 2, 1, 4,
           '[{{\"invariant\": 3, \"message\": \"two running jobs\", \"subject\": \"task 7\"}},
             {{\"invariant\": \"no_orphans\", \"message\": \"orphan\"}}]');

        INSERT INTO error_events (subsystem, message, created_at) VALUES
          ('git', 'a', '2026-11-22 09:00:00'), ('git', 'b', '2026-11-22T09:30:00Z'),
          ('llm', 'c', '2026-11-22 08:00:00');
        ",
        idle = pids.idle,
        busy = pids.busy,
        weird = pids.weird,
        parent = pids.parent,
        dead = pids.dead,
    ));
    db
}

struct Pids {
    idle: i64,
    busy: i64,
    weird: i64,
    parent: i64,
    dead: i64,
}

fn spawn_agents(children: &mut Children, dir: &std::path::Path) -> Pids {
    let weird_exe = dir.join("my agent) x");
    std::fs::copy("/bin/sleep", &weird_exe).unwrap();
    let mut dead_child = Command::new("true").spawn().unwrap();
    let dead = i64::from(dead_child.id());
    dead_child.wait().unwrap();
    Pids {
        idle: children.spawn(Command::new("sleep").arg("300")),
        busy: children.sh("while :; do :; done"),
        weird: children.spawn(Command::new(&weird_exe).arg("300")),
        parent: children.sh("sh -c 'while :; do :; done' & wait"),
        dead,
    }
}

fn agent(env: &Envelope, job: i64) -> &Agent {
    env.agents.iter().find(|a| a.job_id == job).unwrap()
}

#[test]
fn a_full_database_gives_every_key_and_value() {
    let mut children = Children::default();
    let tmp = tempfile::tempdir().unwrap();
    let pids = spawn_agents(&mut children, tmp.path());
    let db = full_db(&pids);
    let source = std::sync::Arc::new(db.source());

    // Wait (with a deadline) until the busy processes have measurable CPU.
    let take = || emitter::Snapshotter::new(source.clone(), "/proc").take();
    let mut env = take();
    wait_until(
        Duration::from_secs(20),
        "busy agents to accumulate CPU ticks",
        || {
            env = take();
            let busy = agent(&env, 2).cpu_ticks.unwrap_or(0);
            let tree = agent(&env, 4);
            busy >= 3 && tree.tree_cpu_ticks.unwrap_or(0) >= tree.cpu_ticks.unwrap_or(0) + 3
        },
    );
    let json = assert_valid(&env);
    let before = Timestamp::now();

    // Header.
    assert_eq!(json["schema_version"], 1);
    assert_eq!(json["enabled"], true);
    let generated = env.generated_at;
    assert!(before.seconds_since(&generated).abs() < 30.0);
    assert!(json["generated_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        json["generated_at"].as_str().unwrap().len(),
        24,
        "milliseconds"
    );
    assert!(env.monotonic_ms.is_some_and(|m| m > 0));
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    assert_eq!(env.boot_id.as_deref(), Some(boot.trim()));
    assert!(env.host.as_deref().is_some_and(|h| !h.is_empty()));
    assert_eq!(env.clk_tck, Some(100));
    assert_eq!(json["degraded"], serde_json::json!([]));

    // Stages: terminal ones left out, both timestamp forms aged, garbage is null.
    let stages: Vec<_> = env
        .stages
        .iter()
        .map(|s| (s.task_id, s.stage.as_str()))
        .collect();
    assert_eq!(
        stages,
        [(Some(1), "dev"), (Some(2), "review"), (Some(5), "qa")]
    );
    let age = |i: usize| env.stages[i].age_in_stage_s;
    assert!(
        age(0).is_some_and(|a| (85.0..130.0).contains(&a)),
        "{:?}",
        age(0)
    );
    assert!(
        age(1).is_some_and(|a| (3595.0..3640.0).contains(&a)),
        "{:?}",
        age(1)
    );
    assert_eq!(age(2), None);
    assert_eq!(env.stages[0].work_item.as_deref(), Some("WI-1"));
    assert_eq!(env.stages[0].repo.as_deref(), Some("app"));
    assert_eq!(json["stages"][2]["work_item"], serde_json::Value::Null);
    assert_eq!(json["stages"][2]["repo"], serde_json::Value::Null);

    // Queue.
    let q = &json["queue"];
    assert_eq!(
        q["counts"],
        serde_json::json!({"queued": 2, "running": 6, "done": 1, "failed": 1, "cancelled": 0, "paused": 1})
    );
    assert_eq!(q["depth"], 2);
    // attempts: 1,3,2,1,1,0,1,0,0,4,1 -> retried 3 jobs, 2+1+3 retries.
    assert_eq!(
        q["retries"],
        serde_json::json!({"retried_jobs": 3, "total_retries": 6})
    );
    assert_eq!(
        q["breaker"],
        serde_json::json!({"state": "open", "consecutive_failures": 5, "opened_at": "2026-11-22T10:00:00.000Z"})
    );
    assert_eq!(q["max_concurrency"], 4);
    assert_eq!(q["poll_interval"], 2.5);

    // Agents: one per running job, oldest first.
    let jobs: Vec<i64> = env.agents.iter().map(|a| a.job_id).collect();
    assert_eq!(jobs, [1, 2, 3, 4, 5, 6]);
    let idle = agent(&env, 1);
    assert_eq!(idle.agent.as_deref(), Some("dev"));
    assert_eq!(idle.run_id, Some(2), "newest run of the job");
    assert_eq!(idle.repo.as_deref(), Some("app"));
    assert_eq!(idle.pid, Some(pids.idle));
    assert!(
        idle.runtime_s.is_some_and(|r| (115.0..160.0).contains(&r)),
        "{:?}",
        idle.runtime_s
    );
    assert_eq!(idle.model.as_deref(), Some("opus"));
    assert_eq!(idle.effort.as_deref(), Some("high"));
    assert_eq!(idle.state.as_deref(), Some("S"));
    assert!(
        idle.cpu_ticks.is_some_and(|t| t <= 10),
        "{:?}",
        idle.cpu_ticks
    );
    assert_eq!(
        idle.start_ticks,
        stat_field(pids.idle, 22).map(|s| s.parse().unwrap())
    );
    assert!(idle.tree_cpu_ticks >= idle.cpu_ticks);
    assert!(
        idle.io_rchar.is_some() && idle.io_wchar.is_some(),
        "own io is readable"
    );

    let busy = agent(&env, 2);
    assert_eq!(busy.run_id, Some(3));
    assert!(
        busy.runtime_s.is_some_and(|r| (55.0..100.0).contains(&r)),
        "{:?}",
        busy.runtime_s
    );
    assert_eq!(busy.state.as_deref(), Some("R"));
    assert!(busy.cpu_ticks.is_some_and(|t| t >= 3));

    // A name with a space and a ')' does not shift the fields.
    let weird = agent(&env, 3);
    assert_eq!(weird.state.as_deref(), Some("S"));
    assert_eq!(
        weird.start_ticks,
        stat_field(pids.weird, 22).map(|s| s.parse().unwrap())
    );
    assert!(weird.cpu_ticks.is_some_and(|t| t <= 10));
    assert_eq!(weird.run_id, None);

    // The parent waits; its busy child does the work.
    let tree = agent(&env, 4);
    assert_eq!(tree.state.as_deref(), Some("S"));
    assert!(tree.tree_cpu_ticks.unwrap() >= tree.cpu_ticks.unwrap() + 3);
    assert!(tree.io_rchar.unwrap() >= idle.io_rchar.unwrap_or(0) / 4);

    // A dead pid and no pid: every process figure unknown, never zero.
    for job in [5, 6] {
        let a = agent(&env, job);
        assert_eq!(
            (
                a.cpu_ticks,
                a.start_ticks,
                a.tree_cpu_ticks,
                a.io_rchar,
                a.io_wchar,
                a.state.as_deref()
            ),
            (None, None, None, None, None, None),
            "job {job}"
        );
    }
    assert_eq!(agent(&env, 6).pid, None);
    assert_eq!(agent(&env, 6).runtime_s, None);
    let nopid = &json["agents"][5];
    for key in [
        "cpu_ticks",
        "start_ticks",
        "tree_cpu_ticks",
        "io_rchar",
        "io_wchar",
        "state",
        "pid",
        "runtime_s",
        "repo",
    ] {
        assert_eq!(
            nopid[key],
            serde_json::Value::Null,
            "{key} present and null"
        );
    }

    // Cost.
    let cost = &json["cost"];
    assert_eq!(cost["running"].as_array().unwrap().len(), 6);
    assert_eq!(
        cost["running"][0],
        serde_json::json!({"run_id": 2, "job_id": 1, "agent": "dev", "cost_usd": 0.5, "input_tokens": 100,
            "output_tokens": 200, "cache_read_tokens": 300, "cache_creation_tokens": 400})
    );
    assert_eq!(
        cost["running"][1],
        serde_json::json!({"run_id": 3, "job_id": 2, "agent": "busy", "cost_usd": null, "input_tokens": null,
            "output_tokens": null, "cache_read_tokens": null, "cache_creation_tokens": null})
    );
    assert_eq!(cost["running"][2]["run_id"], serde_json::Value::Null);
    assert_eq!(cost["running"][2]["job_id"], 3);
    assert_eq!(
        cost["aggregate"],
        serde_json::json!({"runs": 4, "cost_usd": 3.5, "input_tokens": 110, "output_tokens": 200,
            "cache_read_tokens": 300, "cache_creation_tokens": 400})
    );

    // Reconciler: newest row, JSON columns parsed.
    let r = env.reconciler.as_ref().unwrap();
    assert_eq!(r.ticks_total, Some(2));
    assert_eq!(r.last_tick_at.as_deref(), Some("2026-11-22T10:05:00.000Z"));
    assert_eq!(r.wall_clock_ms, Some(12.5));
    assert_eq!(
        (r.events_drained, r.actions_emitted, r.pending_event_count),
        (Some(7), Some(3), Some(4))
    );
    assert_eq!(
        json["reconciler"]["actions_by_type"],
        serde_json::json!({"spawn": 2, "kill": 1})
    );
    assert_eq!(
        json["reconciler"]["side_effects"],
        serde_json::json!({"attempted": 3, "succeeded": 2, "failed": 1})
    );
    assert_eq!(r.invariant_violations.len(), 2);
    assert_eq!(r.invariant_violations[0].invariant, InvariantId::Number(3));
    assert_eq!(r.invariant_violations[0].message, "two running jobs");
    assert_eq!(r.invariant_violations[0].subject.as_deref(), Some("task 7"));
    assert_eq!(
        r.invariant_violations[1].invariant,
        InvariantId::Name("no_orphans".into())
    );

    // Errors: totals per subsystem, last_at normalised whatever the stored form.
    assert_eq!(
        json["errors"],
        serde_json::json!({"total": 3, "by_subsystem": [
            {"subsystem": "git", "total": 2, "last_at": "2026-11-22T09:30:00.000Z"},
            {"subsystem": "llm", "total": 1, "last_at": "2026-11-22T08:00:00.000Z"}]})
    );
}

#[test]
fn terminal_stages_can_be_replaced() {
    let db = Db::new(false);
    db.exec(
        "INSERT INTO tasks VALUES (1, 'a', NULL, 'done', datetime('now'));
         INSERT INTO tasks VALUES (2, 'b', NULL, 'merged', datetime('now'));
         INSERT INTO tasks VALUES (3, 'c', NULL, 'dev', datetime('now'));",
    );
    let env = snapshot(db.source().with_terminal_stages(vec!["merged".into()]));
    assert_valid(&env);
    let stages: Vec<&str> = env.stages.iter().map(|s| s.stage.as_str()).collect();
    assert_eq!(stages, ["done", "dev"]);
    let env = snapshot(db.source().with_terminal_stages(Vec::new()));
    assert_eq!(env.stages.len(), 3);
}

#[test]
fn the_snapshot_binary_prints_one_valid_envelope() {
    let db = Db::new(true);
    db.exec("INSERT INTO jobs (id, status) VALUES (1, 'queued');");
    let out = Command::new(env!("CARGO_BIN_EXE_emitter"))
        .args(["snapshot", "--db"])
        .arg(&db.path)
        .env_remove("ORCH_METRICS_ENABLED")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = common::assert_valid_bytes(&out.stdout);
    assert_eq!(json["queue"]["depth"], 1);
    assert_eq!(json["degraded"], serde_json::json!([]));
}
