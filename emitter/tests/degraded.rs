//! Failing and absent sources: degraded sections, absent tables, a missing
//! file, a locked database, and proof that the emitter never writes.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{assert_valid, snapshot, Db};
use emitter::Snapshotter;

#[test]
fn absent_optional_tables_are_null_and_not_degraded() {
    let db = Db::new(false);
    db.exec("INSERT INTO jobs (id, status, attempts) VALUES (1, 'running', 1);");
    let env = snapshot(db.source());
    let json = assert_valid(&env);
    assert_eq!(json["degraded"], serde_json::json!([]));
    assert_eq!(json["reconciler"], serde_json::Value::Null);
    assert_eq!(json["errors"], serde_json::Value::Null);
    assert_eq!(json["queue"]["breaker"], serde_json::Value::Null);
    assert_eq!(json["queue"]["max_concurrency"], serde_json::Value::Null);
    assert_eq!(json["queue"]["poll_interval"], serde_json::Value::Null);
    assert_eq!(json["queue"]["counts"]["running"], 1);
    // An empty agent_runs table sums to zeros, and the running job has no run yet.
    assert_eq!(
        json["cost"]["aggregate"],
        serde_json::json!({"runs": 0, "cost_usd": 0.0, "input_tokens": 0, "output_tokens": 0,
            "cache_read_tokens": 0, "cache_creation_tokens": 0})
    );
    assert_eq!(
        json["cost"]["running"][0]["run_id"],
        serde_json::Value::Null
    );
}

#[test]
fn empty_optional_tables() {
    let db = Db::new(true);
    let env = snapshot(db.source());
    let json = assert_valid(&env);
    assert_eq!(json["degraded"], serde_json::json!([]));
    assert_eq!(json["reconciler"], serde_json::Value::Null, "no tick yet");
    assert_eq!(
        json["errors"],
        serde_json::json!({"total": 0, "by_subsystem": []})
    );
    assert_eq!(
        json["queue"]["counts"],
        serde_json::json!({"queued": 0, "running": 0, "done": 0, "failed": 0, "cancelled": 0})
    );
    assert_eq!(json["queue"]["depth"], 0);
    assert_eq!(
        json["queue"]["retries"],
        serde_json::json!({"retried_jobs": 0, "total_retries": 0})
    );
}

#[test]
fn bad_json_in_a_tick_degrades_only_the_reconciler() {
    let db = Db::new(true);
    db.exec(
        "INSERT INTO reconciler_ticks (at, actions_by_type, invariant_violations)
         VALUES ('2026-11-22 10:00:00', '{not json', '[]');
         INSERT INTO error_events (subsystem, created_at) VALUES ('git', '2026-11-22 10:00:00');",
    );
    let env = snapshot(db.source());
    let json = assert_valid(&env);
    assert_eq!(json["degraded"], serde_json::json!(["reconciler"]));
    assert_eq!(json["reconciler"], serde_json::Value::Null);
    assert_eq!(json["errors"]["total"], 1);
    assert!(json["queue"].is_object() && json["cost"].is_object());
}

#[test]
fn a_missing_required_table_degrades_the_sections_that_need_it() {
    let db = Db::new(true);
    db.exec("DROP TABLE jobs; INSERT INTO tasks VALUES (1, 'a', NULL, 'dev', datetime('now'));");
    let env = snapshot(db.source());
    let json = assert_valid(&env);
    assert_eq!(
        json["degraded"],
        serde_json::json!(["queue", "agents", "cost"])
    );
    assert_eq!(json["queue"], serde_json::Value::Null);
    assert_eq!(json["agents"], serde_json::json!([]));
    assert_eq!(json["cost"], serde_json::Value::Null);
    assert_eq!(json["stages"][0]["stage"], "dev");
}

#[test]
fn a_missing_database_file_is_never_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.db");
    let source = Arc::new(emitter::SqliteSource::new(&path));
    let snap = Snapshotter::new(source, "/proc");
    for _ in 0..3 {
        let env = snap.take();
        let json = assert_valid(&env);
        assert_eq!(
            json["degraded"],
            serde_json::json!(["stages", "queue", "agents", "cost", "reconciler", "errors"])
        );
    }
    assert!(!path.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing created next to it"
    );

    // Once the orchestrator creates it, the same source picks it up.
    let db_conn = rusqlite::Connection::open(&path).unwrap();
    db_conn.execute_batch(common::REQUIRED_TABLES).unwrap();
    let env = snap.take();
    assert_eq!(env.degraded, Vec::<String>::new());
}

#[test]
fn the_database_bytes_never_change_and_no_journal_appears() {
    let db = Db::new(true);
    db.exec(
        "INSERT INTO tasks VALUES (1, 'a', NULL, 'dev', datetime('now'));
         INSERT INTO jobs (id, status, pid) VALUES (1, 'running', 1);
         INSERT INTO agent_runs (job_id, cost_usd) VALUES (1, 0.25);",
    );
    let bytes = common::sha(&db.path);
    let listing = db.dir_listing();
    let modified = std::fs::metadata(&db.path).unwrap().modified().unwrap();
    let snap = Snapshotter::new(Arc::new(db.source()), "/proc");
    for _ in 0..200 {
        assert!(snap.take().degraded.is_empty());
    }
    // Per-snapshot connections too.
    let snap = Snapshotter::new(Arc::new(db.source().with_kept_connection(false)), "/proc");
    for _ in 0..50 {
        assert!(snap.take().degraded.is_empty());
    }
    drop(snap);
    assert_eq!(common::sha(&db.path), bytes, "file bytes identical");
    assert_eq!(
        db.dir_listing(),
        listing,
        "no -journal, -wal or -shm created"
    );
    assert_eq!(
        std::fs::metadata(&db.path).unwrap().modified().unwrap(),
        modified
    );
}

#[test]
fn a_wal_database_with_a_live_writer_is_read_consistently() {
    let db = Db::new(true);
    let writer = db.writer();
    let mode: String = writer
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let snap = Snapshotter::new(Arc::new(db.source()), "/proc");
    for i in 1..=50 {
        writer
            .execute("INSERT INTO jobs (id, status) VALUES (?1, 'queued')", [i])
            .unwrap();
        let env = snap.take();
        let json = assert_valid(&env);
        assert_eq!(json["degraded"], serde_json::json!([]));
        assert_eq!(json["queue"]["depth"], i, "sees every committed write");
    }
    // A write transaction in progress does not block WAL readers, who see the last commit.
    writer
        .execute_batch("BEGIN IMMEDIATE; INSERT INTO jobs (status) VALUES ('queued');")
        .unwrap();
    let env = snap.take();
    assert!(env.degraded.is_empty());
    assert_eq!(env.queue.unwrap().depth, Some(50));
    writer.execute_batch("COMMIT").unwrap();
    assert_eq!(snap.take().queue.unwrap().depth, Some(51));
}

#[test]
fn a_wal_database_without_a_writer_is_read_without_creating_files() {
    let db = Db::new(true);
    {
        let writer = db.writer();
        writer
            .query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
            .unwrap();
        writer
            .execute_batch("INSERT INTO jobs (status) VALUES ('queued');")
            .unwrap();
    } // The last connection checkpoints and removes -wal and -shm.
    let listing = db.dir_listing();
    assert_eq!(listing, ["orch.db"]);
    let bytes = common::sha(&db.path);
    let snap = Snapshotter::new(Arc::new(db.source()), "/proc");
    for _ in 0..5 {
        let env = snap.take();
        assert!(env.degraded.is_empty(), "{:?}", env.degraded);
        assert_eq!(env.queue.unwrap().depth, Some(1));
    }
    assert_eq!(common::sha(&db.path), bytes);
    assert_eq!(
        db.dir_listing(),
        listing,
        "no -wal or -shm created by a reader"
    );

    // When a writer comes back, its new commits are seen (nothing stale is kept).
    let writer = db.writer();
    writer
        .execute_batch("INSERT INTO jobs (status) VALUES ('queued');")
        .unwrap();
    assert_eq!(snap.take().queue.unwrap().depth, Some(2));
    writer
        .execute_batch("INSERT INTO jobs (status) VALUES ('queued');")
        .unwrap();
    assert_eq!(snap.take().queue.unwrap().depth, Some(3));
}

#[test]
fn a_locked_database_degrades_within_a_bounded_time() {
    let db = Db::new(true);
    db.exec("INSERT INTO jobs (status) VALUES ('queued');");
    let snap = Snapshotter::new(Arc::new(db.source()), "/proc");
    assert!(snap.take().degraded.is_empty(), "warm connection first");
    let writer = db.writer();
    writer
        .execute_batch("BEGIN EXCLUSIVE; INSERT INTO jobs (status) VALUES ('queued');")
        .unwrap();
    let started = Instant::now();
    let env = snap.take();
    let took = started.elapsed();
    let json = assert_valid(&env);
    assert_eq!(
        json["degraded"],
        serde_json::json!(["stages", "queue", "agents", "cost", "reconciler", "errors"])
    );
    // One 250 ms wait per snapshot, not one per section (6 x 250 ms).
    assert!(took < Duration::from_millis(1200), "took {took:?}");
    writer.execute_batch("COMMIT").unwrap();
    let env = snap.take();
    assert!(env.degraded.is_empty(), "{:?}", env.degraded);
    assert_eq!(env.queue.unwrap().depth, Some(2));
}

#[test]
fn odd_values_are_unknown_not_zero() {
    let db = Db::new(true);
    db.exec(
        "INSERT INTO jobs (id, status, attempts, pid, started_at) VALUES (1, 'running', 1, -5, 'later');
         INSERT INTO jobs (id, status, attempts, pid) VALUES (2, 'running', 1, 0);
         INSERT INTO agent_runs (job_id, input_tokens, cost_usd) VALUES (1, -3, 'n/a');
         INSERT INTO worker_state VALUES ('breaker_state', 'tripped'), ('max_concurrency', 'many'),
           ('poll_interval', '');",
    );
    let env = snapshot(db.source());
    let json = assert_valid(&env);
    assert_eq!(json["degraded"], serde_json::json!([]));
    let a = &json["agents"][0];
    assert_eq!(a["pid"], -5);
    assert_eq!(a["runtime_s"], serde_json::Value::Null);
    assert_eq!(a["cpu_ticks"], serde_json::Value::Null);
    assert_eq!(json["agents"][1]["state"], serde_json::Value::Null);
    assert_eq!(
        json["cost"]["running"][0]["input_tokens"],
        serde_json::Value::Null
    );
    assert_eq!(
        json["cost"]["running"][0]["cost_usd"],
        serde_json::Value::Null
    );
    assert_eq!(json["queue"]["breaker"], serde_json::Value::Null);
    assert_eq!(json["queue"]["max_concurrency"], serde_json::Value::Null);
    assert_eq!(json["queue"]["poll_interval"], serde_json::Value::Null);
}
