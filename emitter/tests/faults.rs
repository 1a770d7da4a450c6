//! Faults of issues 10, 12 and 15 on the emitter's data path, each with the
//! defect it guards named: a database that changes under the incremental
//! state, a FIFO, a WAL without its `-shm`, an infinite cost, and agents
//! whose process is gone, a zombie, or shared.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{mpsc, Arc};
use std::time::Duration;

use common::{assert_valid, wait_until, Children, Db};
use emitter::{Snapshotter, Source, SqliteSource};

const ALL: [&str; 6] = ["stages", "queue", "agents", "cost", "reconciler", "errors"];

/// A snapshot that must come back within `limit` (a FIFO must not wedge it).
fn take_within(snap: &Snapshotter, limit: Duration) -> shared_schema::Envelope {
    let (tx, rx) = mpsc::channel();
    let snap = snap.clone();
    std::thread::spawn(move || {
        let _ = tx.send(snap.take());
    });
    rx.recv_timeout(limit)
        .expect("the snapshot returned in time")
}

/// Issue 15 #7.
#[test]
fn a_fifo_as_the_database_degrades_with_its_cause_and_a_real_file_later_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orch.db");
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let source = Arc::new(SqliteSource::new(&path));
    let snap = Snapshotter::new(Arc::clone(&source) as Arc<dyn Source>, "/proc");
    for _ in 0..3 {
        let env = take_within(&snap, Duration::from_secs(5));
        assert_eq!(assert_valid(&env)["degraded"], serde_json::json!(ALL));
    }
    let err = source.session().queue().unwrap_err().to_string();
    assert!(err.contains("a FIFO"), "{err}");
    std::fs::remove_file(&path).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(common::REQUIRED_TABLES).unwrap();
    conn.execute_batch("INSERT INTO jobs (status) VALUES ('queued');")
        .unwrap();
    let env = take_within(&snap, Duration::from_secs(5));
    assert!(env.degraded.is_empty(), "{:?}", env.degraded);
    assert_eq!(env.queue.unwrap().depth, Some(1));
}

/// Issue 15 #11: a non-empty -wal without its -shm degrades with the cause and creates nothing.
#[test]
fn a_wal_without_its_shm_is_not_read_and_no_shm_is_created() {
    let db = Db::new(true);
    let writer = db.writer();
    writer
        .execute_batch("PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0;")
        .unwrap();
    writer
        .execute_batch("INSERT INTO jobs (status) VALUES ('queued');")
        .unwrap();
    // A crashed writer's files, restored without -shm.
    let copy = tempfile::tempdir().unwrap();
    let to = copy.path().join("orch.db");
    std::fs::copy(&db.path, &to).unwrap();
    let mut wal = db.path.clone().into_os_string();
    wal.push("-wal");
    let mut to_wal = to.clone().into_os_string();
    to_wal.push("-wal");
    std::fs::copy(&wal, &to_wal).unwrap();
    assert!(std::fs::metadata(&to_wal).unwrap().len() > 0);
    let source = SqliteSource::new(&to);
    let env = Snapshotter::new(Arc::new(SqliteSource::new(&to)), "/proc").take();
    assert_eq!(assert_valid(&env)["degraded"], serde_json::json!(ALL));
    let err = source.session().jobs_reason();
    assert!(err.contains("no -shm"), "{err}");
    let mut names: Vec<String> = std::fs::read_dir(copy.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["orch.db", "orch.db-wal"], "no -shm created");
}

trait Reason {
    fn jobs_reason(&mut self) -> String;
}

impl Reason for Box<dyn emitter::Session + '_> {
    fn jobs_reason(&mut self) -> String {
        self.queue().unwrap_err().to_string()
    }
}

/// Issue 15 #5: one infinite cost must not hide all spend behind a 0.
#[test]
fn an_infinite_cost_makes_the_sum_null_not_zero() {
    let db = Db::new(true);
    db.exec(
        "INSERT INTO jobs (id, status) VALUES (1, 'running');
         INSERT INTO agent_runs (job_id, cost_usd, finished_at) VALUES (1, 250, 'x');
         INSERT INTO agent_runs (job_id, cost_usd) VALUES (1, 9e999);",
    );
    let env = common::snapshot(db.source());
    let json = assert_valid(&env);
    assert_eq!(json["degraded"], serde_json::json!([]));
    assert_eq!(
        json["cost"]["aggregate"]["cost_usd"],
        serde_json::Value::Null
    );
    assert_eq!(json["cost"]["aggregate"]["runs"], 2);
    assert_eq!(
        json["cost"]["running"][0]["cost_usd"],
        serde_json::Value::Null
    );
}

fn depth_and_done(snap: &Snapshotter) -> (Option<u64>, u64) {
    let q = snap.take().queue.unwrap();
    (q.depth, q.counts["done"])
}

/// Issue 10: the incremental state is rebuilt when the database changes under it.
#[test]
fn a_recreated_table_a_replaced_file_and_pruned_history_give_right_values() {
    let db = Db::new(true);
    db.exec(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
         INSERT INTO jobs (id, status) SELECT i, CASE WHEN i % 3 = 0 THEN 'queued' ELSE 'done' END FROM n;",
    );
    let source = SqliteSource::new(&db.path).with_background_recount(false);
    let snap = Snapshotter::new(Arc::new(source), "/proc");
    assert_eq!(depth_and_done(&snap), (Some(1000), 2000));

    let exact = || -> (Option<u64>, u64) {
        db.writer()
            .query_row(
                "SELECT SUM(status = 'queued'), SUM(status = 'done') FROM jobs",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap()
    };
    // Pruned history: MIN(id) goes up, within a block and across blocks.
    db.exec("DELETE FROM jobs WHERE id <= 10;");
    assert_eq!(depth_and_done(&snap), exact());
    db.exec("DELETE FROM jobs WHERE id <= 2000;");
    assert_eq!(depth_and_done(&snap), exact());

    // The newest rows deleted and their ids given out again.
    db.exec(
        "DELETE FROM jobs WHERE id > 2990;
         INSERT INTO jobs (id, status) VALUES (2995, 'done'), (2996, 'done');",
    );
    assert_eq!(depth_and_done(&snap), exact());

    // A table dropped and recreated: schema_version changes, state rebuilt.
    db.exec(
        "DROP TABLE jobs;
         CREATE TABLE jobs (id INTEGER PRIMARY KEY, task_id INTEGER, agent TEXT, repo TEXT,
           status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, pid INTEGER,
           model TEXT, effort TEXT, created_at TEXT, started_at TEXT, finished_at TEXT);
         INSERT INTO jobs (id, status) VALUES (1, 'queued'), (2, 'done');",
    );
    assert_eq!(depth_and_done(&snap), (Some(1), 1));

    // VACUUM after deleting finished rows in the middle: right after a recount.
    db.exec(
        "WITH RECURSIVE n(i) AS (SELECT 3 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)
         INSERT INTO jobs (id, status) SELECT i, 'done' FROM n;",
    );
    assert_eq!(depth_and_done(&snap), (Some(1), 4999));
    db.exec("DELETE FROM jobs WHERE id BETWEEN 100 AND 199; VACUUM;");
    let _ = snap.take(); // never a panic; exact again after the recount (next test)

    // The file replaced by another (new inode): read from scratch.
    let other = db.dir.path().join("new.db");
    let conn = rusqlite::Connection::open(&other).unwrap();
    conn.execute_batch(common::REQUIRED_TABLES).unwrap();
    conn.execute_batch("INSERT INTO jobs (status) VALUES ('queued'), ('queued');")
        .unwrap();
    drop(conn);
    std::fs::rename(&other, &db.path).unwrap();
    assert_eq!(depth_and_done(&snap), (Some(2), 0));
}

/// Issue 10: a finished row changed in place (a re-opened job, a deleted
/// finished run) shows after one recount pass.
#[test]
fn a_reopened_job_and_vacuumed_history_show_after_a_recount() {
    let db = Db::new(true);
    db.exec(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
         INSERT INTO jobs (id, status) SELECT i, 'done' FROM n;",
    );
    let source = Arc::new(SqliteSource::new(&db.path).with_background_recount(false));
    let snap = Snapshotter::new(Arc::clone(&source) as Arc<dyn Source>, "/proc");
    assert_eq!(depth_and_done(&snap), (Some(0), 3000));
    db.exec("UPDATE jobs SET status = 'queued' WHERE id = 5; DELETE FROM jobs WHERE id BETWEEN 100 AND 199; VACUUM;");
    let _ = snap.take(); // no panic, values may still be the old ones
    source.recount();
    assert_eq!(depth_and_done(&snap), (Some(1), 2899));
    assert!(source.stats().recount_passes >= 1);
}

/// Issue 12: `alive` tells a dead pid from a live one, a zombie is alive with state Z.
#[test]
fn alive_and_wchan_for_live_dead_and_zombie_agents() {
    let mut children = Children::default();
    let sleeper = children.spawn(std::process::Command::new("sleep").arg("60"));
    let mut dead = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = i64::from(dead.id());
    dead.wait().unwrap();
    // Never waited for until the end: a zombie of this test process.
    let mut zombie = std::process::Command::new("true").spawn().unwrap();
    let zombie_pid = i64::from(zombie.id());
    wait_until(Duration::from_secs(10), "the zombie", || {
        common::stat_field(zombie_pid, 3).as_deref() == Some("Z")
    });
    wait_until(Duration::from_secs(10), "sleep to sleep", || {
        common::stat_field(sleeper, 3).as_deref() == Some("S")
    });
    let db = Db::new(true);
    db.exec(&format!(
        "INSERT INTO jobs (id, status, pid) VALUES (1, 'running', {sleeper}), (2, 'running', {dead_pid}),
           (3, 'running', {zombie_pid}), (4, 'running', NULL), (5, 'running', {sleeper});"
    ));
    let env = common::snapshot(db.source());
    let json = assert_valid(&env);
    let a = |i: usize| &json["agents"][i];
    assert_eq!(a(0)["alive"], true);
    assert!(
        a(0)["wchan"]
            .as_str()
            .is_some_and(|w| !w.is_empty() && w != "0"),
        "{}",
        a(0)
    );
    assert_eq!(a(1)["alive"], false);
    assert_eq!(a(1)["cpu_ticks"], serde_json::Value::Null);
    assert_eq!(a(2)["alive"], true);
    assert_eq!(a(2)["state"], "Z");
    assert_eq!(a(3)["alive"], serde_json::Value::Null);
    for key in [
        "cpu_ticks",
        "start_ticks",
        "io_rchar",
        "alive",
        "wchan",
        "state",
    ] {
        assert_eq!(a(4)[key], a(0)[key], "a shared pid gives the same {key}");
    }
    zombie.wait().unwrap();
}

/// `(running, done, agent job ids, cost.aggregate.runs)` of one session.
fn jobs_view(source: &SqliteSource) -> (u64, u64, Vec<i64>, Option<u64>) {
    let now = shared_schema::Timestamp::parse("2026-11-22T11:00:00Z").unwrap();
    let mut s = source.session();
    let q = s.queue().unwrap();
    let agents = s.agents(&now).unwrap();
    let cost = s.cost().unwrap();
    (
        q.counts["running"],
        q.counts["done"],
        agents.iter().map(|a| a.job_id).collect(),
        cost.aggregate.and_then(|a| a.runs),
    )
}

/// Issue 24 #1: the newest finished job and run deleted, a running job and
/// a live run inserted; SQLite hands out the same ids. The new agent shows
/// at the next snapshot, no recount needed.
#[test]
fn a_reused_id_shows_the_new_running_agent_at_once() {
    let db = Db::new(true);
    let w = db.writer();
    for _ in 0..10 {
        w.execute_batch(
            "INSERT INTO jobs (agent, status, pid, started_at) VALUES ('dev', 'done', 1, '2026-11-22 10:00:00');
             INSERT INTO agent_runs (job_id, agent, cost_usd, finished_at) VALUES (last_insert_rowid(), 'dev', 1.0, '2026-11-22 10:05:00');",
        )
        .unwrap();
    }
    let source = SqliteSource::new(&db.path).with_background_recount(false);
    assert_eq!(jobs_view(&source), (0, 10, vec![], Some(10)));
    w.execute_batch(
        "DELETE FROM jobs WHERE id = 10; DELETE FROM agent_runs WHERE id = 10;
         INSERT INTO jobs (agent, status, pid, started_at) VALUES ('dev', 'running', 2, '2026-11-22 10:30:00');
         INSERT INTO agent_runs (job_id, agent) VALUES (last_insert_rowid(), 'dev');",
    )
    .unwrap();
    let id: i64 = w
        .query_row("SELECT MAX(id) FROM jobs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(id, 10, "SQLite reused the id");
    assert_eq!(jobs_view(&source), (1, 9, vec![10], Some(10)));
}

/// Issue 24 #1, deeper: more rows than the recent window replaced at once;
/// the anchor (the newest folded finished row) is another row now, and the
/// walk down the block tops re-reads everything above the newest intact one.
#[test]
fn reused_ids_below_the_recent_window_are_found_by_the_anchor_check() {
    let db = Db::new(true);
    let w = db.writer();
    w.execute_batch(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
         INSERT INTO jobs (id, agent, status, pid) SELECT i, 'dev', 'done', i FROM n;",
    )
    .unwrap();
    let source = SqliteSource::new(&db.path).with_background_recount(false);
    assert_eq!(jobs_view(&source), (0, 3000, vec![], Some(0)));
    w.execute_batch(
        "DELETE FROM jobs WHERE id > 2500;
         INSERT INTO jobs (agent, status, pid) VALUES ('dev', 'running', 99999);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 499)
         INSERT INTO jobs (agent, status, pid) SELECT 'dev', 'failed', 100000 + i FROM n;",
    )
    .unwrap();
    let (running, done, agents, _) = jobs_view(&source);
    assert_eq!((running, done, agents), (1, 2500, vec![2501]));
    let failed = source.session().queue().unwrap().counts["failed"];
    assert_eq!(failed, 499);
}

/// Issue 24 #4: jobs 1 and 2^40; job 2^40 goes from done back to running.
/// One recount pass reads only the non-empty id ranges (a handful of
/// transactions, not 2^30 blocks), so it shows at once.
#[test]
fn sparse_ids_are_recounted_in_a_few_steps() {
    let db = Db::new(true);
    let w = db.writer();
    let far = 1i64 << 40;
    w.execute(
        "INSERT INTO jobs (id, status, pid) VALUES (1, 'done', 1), (?1, 'done', 2), (?2, 'done', 3)",
        [far, i64::MAX],
    )
    .unwrap();
    let source = Arc::new(SqliteSource::new(&db.path).with_background_recount(false));
    assert_eq!(jobs_view(&source).1, 3);
    w.execute("UPDATE jobs SET status = 'running' WHERE id = ?1", [far])
        .unwrap();
    let before = source.stats().transactions;
    let (tx, rx) = mpsc::channel();
    let recounting = Arc::clone(&source);
    std::thread::spawn(move || {
        recounting.recount();
        let _ = tx.send(());
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("a recount pass over sparse ids finished");
    let took = source.stats().transactions - before;
    assert!(took <= 10, "{took} transactions for one pass");
    assert_eq!(jobs_view(&source), (1, 2, vec![far], Some(0)));
}

/// Issue 24 #11: `started_at` in the forms orchestrators write gives a
/// runtime; NULL (or text that is no time) falls back to the age of the
/// process from `/proc` (starttime on the boot clock); with no process
/// either, `runtime_s` stays null.
#[test]
fn runtime_from_any_started_at_form_or_else_from_the_process_age() {
    let mut children = Children::default();
    let sleeper = children.spawn(std::process::Command::new("sleep").arg("60"));
    let db = Db::new(true);
    let an_hour_ago = shared_schema::Timestamp::now().unix_ms() / 1000 - 3600;
    db.exec(&format!(
        "INSERT INTO jobs (id, status, pid, started_at) VALUES
           (1, 'running', {sleeper}, '{an_hour_ago}'),
           (2, 'running', {sleeper}, {an_hour_ago}000),
           (3, 'running', {sleeper}, NULL),
           (4, 'running', {sleeper}, 'whenever'),
           (5, 'running', NULL, NULL);"
    ));
    let env = common::snapshot(db.source());
    let json = assert_valid(&env);
    let runtime = |i: usize| json["agents"][i]["runtime_s"].as_f64();
    for i in [0, 1] {
        let r = runtime(i).unwrap();
        assert!((3599.0..3700.0).contains(&r), "agent {i}: {r}");
    }
    for i in [2, 3] {
        let r = runtime(i).unwrap_or(-1.0);
        assert!(
            (0.0..60.0).contains(&r),
            "agent {i} from the process age: {r}"
        );
    }
    assert_eq!(json["agents"][4]["runtime_s"], serde_json::Value::Null);
}

/// Issue 24 #10: `id INT PRIMARY KEY` (not a rowid alias) holding a real,
/// a text, NULL and `i64::MIN`. Every row is counted in `queue` and
/// `cost`; agents are the running jobs whose id is an integer (the
/// contract's `job_id` is one); nothing is degraded.
#[test]
fn odd_ids_are_counted_and_only_integer_ids_become_agents() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orch.db");
    let w = rusqlite::Connection::open(&path).unwrap();
    w.execute_batch(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, work_item_id TEXT, repo TEXT,
           stage TEXT NOT NULL, stage_entered_at TEXT NOT NULL);
         CREATE TABLE jobs (id INT PRIMARY KEY, task_id INTEGER, agent TEXT, repo TEXT,
           status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, pid INTEGER,
           model TEXT, effort TEXT, created_at TEXT, started_at TEXT, finished_at TEXT);
         CREATE TABLE agent_runs (id INT PRIMARY KEY, job_id INTEGER, agent TEXT,
           cost_usd REAL, input_tokens INTEGER, output_tokens INTEGER,
           cache_read_tokens INTEGER, cache_creation_tokens INTEGER,
           started_at TEXT, finished_at TEXT);",
    )
    .unwrap();
    w.execute(
        "INSERT INTO jobs (id, status, agent) VALUES
           (3, 'running', 'a'), (1.5, 'done', 'b'), ('job-x', 'queued', 'c'),
           (NULL, 'running', 'd'), (?1, 'running', 'e'), (2.0, 'failed', 'f')",
        [i64::MIN],
    )
    .unwrap();
    w.execute_batch(
        "INSERT INTO agent_runs (id, job_id, agent, cost_usd, finished_at) VALUES
           (2.5, 3, 'a', 2.0, '2026-11-22 10:00:00'), (10, 3, 'a', 1.0, NULL),
           ('run-y', NULL, 'c', 4.0, '2026-11-22 10:00:00'), (NULL, NULL, 'd', 8.0, NULL);",
    )
    .unwrap();
    let source = SqliteSource::new(&path).with_background_recount(false);
    let now = shared_schema::Timestamp::parse("2026-11-22T11:00:00Z").unwrap();
    for round in 0..2 {
        let mut s = source.session();
        let q = s.queue().unwrap();
        assert_eq!(
            (
                q.counts["running"],
                q.counts["done"],
                q.counts["queued"],
                q.counts["failed"]
            ),
            (3, 1, 1, 1),
            "round {round}"
        );
        let agents = s.agents(&now).unwrap();
        let ids: Vec<i64> = agents.iter().map(|a| a.job_id).collect();
        assert_eq!(ids, vec![3, i64::MIN], "round {round}");
        // The newest run is the one inserted last (rowid order).
        assert_eq!(agents[0].run_id, Some(10));
        assert_eq!(agents[1].run_id, None);
        let cost = s.cost().unwrap();
        let agg = cost.aggregate.unwrap();
        assert_eq!(
            (agg.runs, agg.cost_usd),
            (Some(4), Some(15.0)),
            "round {round}"
        );
        assert_eq!(cost.running.len(), 2);
    }
}
