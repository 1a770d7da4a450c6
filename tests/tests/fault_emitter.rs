//! Fault matrix, emitter side (issue 7; docs/RELIABILITY.md): the real
//! `emitter serve` on a real SQLite file while its sources fail.
//!
//! | case | what must happen |
//! |---|---|
//! | kill-switch (`ORCH_METRICS_ENABLED=false`) | 200, exactly `{"schema_version":1,"enabled":false}` |
//! | database locked by a writer (`BEGIN EXCLUSIVE`) | 200 within a bound, DB sections degraded; whole again once released |
//! | database deleted while serving | 200, a readable envelope, the file is never recreated |
//! | database missing at start | 200, sections degraded, the file is never created |
//! | `/proc` entry vanishing (agent exits between polls) | 200, the agent's process figures become `null`, nothing degraded |
#![allow(clippy::unwrap_used)]

use e2e::harness::{bin, free_port, wait_until, Guard};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// One GET on a fresh connection: (status, body).
fn get(addr: SocketAddr) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    assert!(
        !head.contains("transfer-encoding: chunked"),
        "this client reads Content-Length bodies only"
    );
    Ok((status, raw[end + 4..].to_vec()))
}

fn get_json(addr: SocketAddr) -> Value {
    let (status, body) = get(addr).unwrap();
    assert_eq!(status, 200, "body: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

fn degraded(v: &Value) -> Vec<String> {
    v["degraded"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

const SEED: &str = "
INSERT INTO tasks (work_item_id, repo, stage, stage_entered_at)
  VALUES ('WI-1', 'app', 'implement', datetime('now','-5 minutes'));
";

/// A database with one running job whose pid is `pid`.
fn make_db(dir: &Path, pid: Option<u32>) -> PathBuf {
    let db = dir.join("orch.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(shared_schema::state::REQUIRED_TABLES_SQL)
        .unwrap();
    conn.execute_batch(SEED).unwrap();
    conn.execute(
        "INSERT INTO jobs (task_id, agent, repo, status, attempts, pid, started_at)
         VALUES (1, 'dev', 'app', 'running', 1, ?1, datetime('now','-3 minutes'))",
        [pid],
    )
    .unwrap();
    db
}

struct Emitter {
    _guard: Guard,
    addr: SocketAddr,
}

fn start_emitter(db: &Path, env: &[(&str, &str)]) -> Emitter {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut cmd = Command::new(bin("emitter"));
    cmd.arg("serve")
        .arg("--db")
        .arg(db)
        .arg("--listen")
        .arg(addr.to_string())
        .env_remove("ORCH_METRICS_ENABLED")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut guard = Guard(cmd.spawn().unwrap());
    let up = wait_until(Duration::from_secs(15), || {
        matches!(get(addr), Ok((200, _)))
    });
    if !up {
        panic!(
            "emitter did not answer on {addr} within 15 s (exit: {:?})",
            guard.0.try_wait().unwrap()
        );
    }
    Emitter {
        _guard: guard,
        addr,
    }
}

#[test]
fn fault_kill_switch_serves_exactly_the_disabled_body() {
    let dir = tempfile::tempdir().unwrap();
    let db = make_db(dir.path(), None);
    for off in ["false", "0", "no", "off"] {
        let em = start_emitter(&db, &[("ORCH_METRICS_ENABLED", off)]);
        let (status, body) = get(em.addr).unwrap();
        assert_eq!(status, 200);
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"schema_version":1,"enabled":false}"#,
            "ORCH_METRICS_ENABLED={off}"
        );
    }
    // And on: a full envelope.
    let em = start_emitter(&db, &[("ORCH_METRICS_ENABLED", "true")]);
    let v = get_json(em.addr);
    assert_eq!(v["agents"].as_array().unwrap().len(), 1);
}

#[test]
fn fault_database_locked_by_a_writer_degrades_within_a_bound() {
    let dir = tempfile::tempdir().unwrap();
    let db = make_db(dir.path(), None);
    let em = start_emitter(&db, &[]);
    let healthy = get_json(em.addr);
    assert_eq!(degraded(&healthy), Vec::<String>::new());

    let writer = rusqlite::Connection::open(&db).unwrap();
    writer.execute_batch("BEGIN EXCLUSIVE").unwrap();
    writer
        .execute("UPDATE jobs SET attempts = attempts + 1", [])
        .unwrap();

    let started = Instant::now();
    let locked = get_json(em.addr);
    let took = started.elapsed();
    eprintln!(
        "locked: answered in {} ms, degraded {:?}",
        took.as_millis(),
        degraded(&locked)
    );
    assert!(
        took < Duration::from_secs(3),
        "a locked database held the response for {took:?}"
    );
    let d = degraded(&locked);
    for section in ["stages", "queue", "agents", "cost"] {
        assert!(
            d.iter().any(|s| s == section),
            "{section} not degraded: {d:?}"
        );
    }
    assert_eq!(locked["agents"], Value::Array(vec![]));
    assert_eq!(locked["queue"], Value::Null);
    // The host-level keys are unaffected.
    assert!(locked["generated_at"].is_string());
    assert!(shared_schema::read_envelope(locked.to_string().as_bytes()).is_ok());

    writer.execute_batch("ROLLBACK").unwrap();
    let mut again = Value::Null;
    assert!(
        wait_until(Duration::from_secs(5), || {
            again = get_json(em.addr);
            degraded(&again).is_empty()
        }),
        "still degraded after the writer released the lock: {again}"
    );
    assert_eq!(again["agents"].as_array().unwrap().len(), 1);
}

#[test]
fn fault_database_deleted_while_serving_is_never_recreated() {
    let dir = tempfile::tempdir().unwrap();
    let db = make_db(dir.path(), None);
    let em = start_emitter(&db, &[]);
    assert!(degraded(&get_json(em.addr)).is_empty());

    std::fs::remove_file(&db).unwrap();
    for _ in 0..3 {
        let v = get_json(em.addr);
        let d = degraded(&v);
        assert!(
            shared_schema::read_envelope(v.to_string().as_bytes()).is_ok(),
            "unreadable envelope after the database was deleted: {v}"
        );
        // The emitter notices (the file's identity is checked per snapshot)
        // rather than serving the unlinked inode it still holds.
        for section in ["stages", "queue", "agents", "cost"] {
            assert!(
                d.iter().any(|s| s == section),
                "{section} not degraded: {d:?}"
            );
        }
        assert_eq!(v["agents"], Value::Array(vec![]));
    }
    assert!(!db.exists(), "the emitter recreated the deleted database");

    // The orchestrator recreates its database: the emitter reads the new file.
    make_db(dir.path(), None);
    let mut again = Value::Null;
    assert!(
        wait_until(Duration::from_secs(5), || {
            again = get_json(em.addr);
            degraded(&again).is_empty()
        }),
        "still degraded after the database came back: {again}"
    );
    assert_eq!(again["agents"].as_array().unwrap().len(), 1);
}

#[test]
fn fault_database_missing_at_start_degrades_and_is_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("nope.db");
    let em = start_emitter(&db, &[]);
    let v = get_json(em.addr);
    let d = degraded(&v);
    for section in ["stages", "queue", "agents", "cost"] {
        assert!(
            d.iter().any(|s| s == section),
            "{section} not degraded: {d:?}"
        );
    }
    assert!(!db.exists(), "the emitter created the database file");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "files appeared in the database directory"
    );
}

#[test]
fn fault_proc_entry_vanishing_between_polls_gives_nulls() {
    let dir = tempfile::tempdir().unwrap();
    let sleeper = Command::new("sleep")
        .arg("600")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let pid = sleeper.id();
    let mut sleeper = Guard(sleeper);
    let db = make_db(dir.path(), Some(pid));
    let em = start_emitter(&db, &[]);

    let alive = get_json(em.addr);
    let agent = &alive["agents"][0];
    assert_eq!(agent["pid"], pid);
    assert!(
        agent["cpu_ticks"].is_u64(),
        "live pid without ticks: {agent}"
    );
    assert!(agent["start_ticks"].is_u64());
    assert!(agent["state"].is_string());

    sleeper.0.kill().unwrap();
    sleeper.0.wait().unwrap();
    let gone = get_json(em.addr);
    assert!(
        degraded(&gone).is_empty(),
        "a dead pid degraded a section: {gone}"
    );
    let agent = &gone["agents"][0];
    assert_eq!(
        agent["pid"], pid,
        "the job is still running in the database"
    );
    for key in [
        "cpu_ticks",
        "start_ticks",
        "tree_cpu_ticks",
        "io_rchar",
        "io_wchar",
        "state",
    ] {
        assert!(
            agent[key].is_null(),
            "{key} of a dead pid is not null: {agent}"
        );
    }
    assert!(shared_schema::validate(gone.to_string().as_bytes()).is_empty());
}
