//! Issue 10's field-size benchmarks, as a plain binary (medians of CPU time,
//! not criterion: the quantities are CPU per snapshot and a writer's latency).
//!
//! `cargo bench -p emitter --bench field` runs all three parts:
//! - `history`: CPU per snapshot (steady state: one orchestrator write
//!   between snapshots) at 10^3..10^6 finished rows per table and 10 and
//!   100 running agents, incremental vs the whole-table queries; the
//!   first snapshot's wall time and longest read transaction;
//! - `host`: CPU per snapshot at 10 agents with 0 and 3,000 unrelated idle
//!   `sleep` processes, for both ways of walking the process tree;
//! - `writer`: an orchestrator writer's p50/p99 insert latency in
//!   rollback-journal and WAL mode, alone and while the emitter is polled
//!   10 times a second, with "database is locked" errors counted.
//!
//! - `pread`: open + read + close of `stat`/`io` against `pread` on kept fds;
//! - `agents`: CPU per snapshot at 100 and 1,000 agents, the SQLite session
//!   and the `/proc` walk alone, with each walk (the fallback is forced);
//! - `fastapi`: p50/p99 of one `GET /metrics` at 100 agents, ours against
//!   `benches/fastapi_emitter.py` (FastAPI + sqlite3, pip-installed into
//!   `target/fastapi-venv`) over the same database and `sleep` agents.
//!
//! - `gzip` (issue 22, not in the default set): the envelope of
//!   `EMITTER_FIELD_GZIP_AGENTS` (default 10,000) running agents on live
//!   sleeps, plain against gzip levels 1, 2, 3, 6: bytes and the CPU of one
//!   compression (median of `EMITTER_FIELD_ROUNDS`).
//!
//! `EMITTER_FIELD=history,host,writer,pread,agents,fastapi,gzip` picks parts; `EMITTER_FIELD_SIZES`
//! the history sizes (default `1000,10000,100000,1000000`). Databases are
//! generated once into `target/field-cache/` and copied for each run.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use emitter::procfs::{ProcCache, Walk};
use emitter::sections::{agents as agents_section, cost, errors, queue, reconciler, stages};
use emitter::{Snapshotter, SqliteSource};
use rusqlite::{params, Connection};
use shared_schema::Timestamp;

fn cpu() -> Duration {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given.
    let ru = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr());
        ru.assume_init()
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn cache_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("field-cache");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A database with `n` finished rows in each of jobs, agent_runs,
/// error_events and reconciler_ticks, generated once and cached.
fn history(n: u64) -> PathBuf {
    let path = cache_dir().join(format!("history-{n}.db"));
    if path.exists() {
        return path;
    }
    let started = Instant::now();
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let conn = Connection::open(&tmp).unwrap();
    conn.execute_batch(shared_schema::state::SCHEMA_SQL)
        .unwrap();
    conn.execute_batch("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;")
        .unwrap();
    conn.execute_batch(&format!(
        "BEGIN;
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n})
         INSERT INTO jobs (id, task_id, agent, repo, status, attempts, pid, started_at, finished_at)
           SELECT i, i, 'dev', 'app', CASE i % 10 WHEN 0 THEN 'failed' ELSE 'done' END, 1 + i % 3, 1000 + i,
                  '2026-01-01 00:00:00', '2026-01-01 00:10:00' FROM n;
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n})
         INSERT INTO agent_runs (id, job_id, agent, cost_usd, input_tokens, output_tokens,
             cache_read_tokens, cache_creation_tokens, started_at, finished_at)
           SELECT i, i, 'dev', 0.125, 1000, 200, 50, 10, '2026-01-01 00:00:00', '2026-01-01 00:10:00' FROM n;
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n})
         INSERT INTO error_events (id, subsystem, message, created_at)
           SELECT i, CASE i % 4 WHEN 0 THEN 'git' WHEN 1 THEN 'llm' WHEN 2 THEN 'db' ELSE 'net' END,
                  'boom', '2026-01-01 00:00:00' FROM n;
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n})
         INSERT INTO reconciler_ticks (id, at, wall_clock_ms, events_drained, actions_emitted,
             actions_by_type, invariant_violations)
           SELECT i, '2026-01-01 00:00:00', 3.5, 1, 1, '{{\"spawn\": 1}}', '[]' FROM n;
         COMMIT;"
    ))
    .unwrap();
    drop(conn);
    std::fs::rename(&tmp, &path).unwrap();
    eprintln!("generated {} in {:?}", path.display(), started.elapsed());
    path
}

struct Sleeps(Vec<Child>);

impl Sleeps {
    fn new(n: usize) -> Self {
        Self(
            (0..n)
                .map(|_| {
                    Command::new("sleep")
                        .arg("3600")
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn()
                        .unwrap()
                })
                .collect(),
        )
    }
}

impl Drop for Sleeps {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
        }
        for c in &mut self.0 {
            let _ = c.wait();
        }
    }
}

/// A copy of the history database plus `agents` running jobs on live sleeps.
struct Fixture {
    _dir: tempfile::TempDir,
    db: PathBuf,
    _sleeps: Sleeps,
}

impl Fixture {
    fn new(history_rows: u64, agents: usize) -> Self {
        let dir = tempfile::tempdir_in(cache_dir()).unwrap();
        let db = dir.path().join("orch.db");
        std::fs::copy(history(history_rows), &db).unwrap();
        let sleeps = Sleeps::new(agents);
        let conn = Connection::open(&db).unwrap();
        conn.execute_batch("PRAGMA journal_mode = DELETE; BEGIN;")
            .unwrap();
        for (i, child) in sleeps.0.iter().enumerate() {
            let id = history_rows as i64 + 1 + i as i64;
            conn.execute(
                "INSERT INTO tasks (id, work_item_id, repo, stage, stage_entered_at) VALUES (?1, 'W', 'app', 'dev', datetime('now'))",
                [id],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO jobs (id, task_id, agent, repo, status, attempts, pid, started_at)
                 VALUES (?1, ?1, 'dev', 'app', 'running', 1, ?2, datetime('now'))",
                params![id, i64::from(child.id())],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO agent_runs (job_id, agent, cost_usd, input_tokens) VALUES (?1, 'dev', 0.5, 10)",
                [id],
            )
            .unwrap();
        }
        conn.execute_batch("COMMIT;").unwrap();
        Self {
            _dir: dir,
            db,
            _sleeps: sleeps,
        }
    }
}

/// One orchestrator write, as between two polls.
fn one_write(conn: &Connection) {
    conn.execute_batch(
        "INSERT INTO reconciler_ticks (at, wall_clock_ms, actions_by_type, invariant_violations)
           VALUES (datetime('now'), 2.0, '{}', '[]');
         UPDATE agent_runs SET cost_usd = cost_usd + 0.01 WHERE id = (SELECT MAX(id) FROM agent_runs);",
    )
    .unwrap();
}

/// Every section from the whole-table queries (the pre-page-2 way), for comparison.
fn full_read(db: &Path) {
    let conn = emitter::sqlite::open_read_only(db, Duration::from_secs(1)).unwrap();
    let now = Timestamp::now();
    let terminal: Vec<String> = stages::DEFAULT_TERMINAL
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    conn.execute_batch("BEGIN").unwrap();
    let _ = stages::read(&conn, &terminal, &now);
    let _ = queue::read(&conn);
    let mut a = agents_section::read(&conn, &now).unwrap();
    let _ = cost::read(&conn);
    let _ = reconciler::read(&conn);
    let _ = errors::read(&conn);
    conn.execute_batch("COMMIT").unwrap();
    agents_section::fill_proc(&mut a, Path::new("/proc"));
}

fn part_history() {
    let sizes: Vec<u64> = std::env::var("EMITTER_FIELD_SIZES")
        .unwrap_or_else(|_| "1000,10000,100000,1000000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    println!("## history (CPU per snapshot, median; one write between snapshots)");
    println!("| finished rows/table | agents | incremental | whole-table (before) | first snapshot wall | longest read tx | txs in first |");
    println!("|---|---|---|---|---|---|---|");
    for &n in &sizes {
        for agents in [10usize, 100] {
            let fx = Fixture::new(n, agents);
            let source = Arc::new(SqliteSource::new(&fx.db).with_background_recount(false));
            let snap = Snapshotter::new(Arc::clone(&source) as Arc<dyn emitter::Source>, "/proc");
            let t = Instant::now();
            let _ = snap.take();
            let first = t.elapsed();
            let first_stats = source.stats();
            let writer = Connection::open(&fx.db).unwrap();
            let mut samples = Vec::new();
            for _ in 0..60 {
                one_write(&writer);
                let c = cpu();
                let env = snap.take();
                samples.push(cpu() - c);
                assert!(env.degraded.is_empty(), "{:?}", env.degraded);
            }
            let inc = median(samples);
            let rounds = if n >= 1_000_000 {
                3
            } else if n >= 100_000 {
                5
            } else {
                20
            };
            let mut full = Vec::new();
            for _ in 0..rounds {
                one_write(&writer);
                let c = cpu();
                full_read(&fx.db);
                full.push(cpu() - c);
            }
            println!(
                "| {n} | {agents} | {:.3} ms | {:.1} ms | {:.0} ms | {:.2} ms | {} |",
                inc.as_secs_f64() * 1e3,
                median(full).as_secs_f64() * 1e3,
                first.as_secs_f64() * 1e3,
                source.stats().longest.as_secs_f64() * 1e3,
                first_stats.transactions,
            );
        }
    }
}

fn snapshot_cpu(snap: &Snapshotter, writer: &Connection) -> Duration {
    let _ = snap.take();
    let mut samples = Vec::new();
    for _ in 0..60 {
        one_write(writer);
        let c = cpu();
        let _ = snap.take();
        samples.push(cpu() - c);
    }
    median(samples)
}

fn part_host() {
    println!("## host (10 agents, 10^3 history; CPU per snapshot, median)");
    println!("| unrelated idle processes | remembered parents: snapshot (walk alone) | children files: snapshot (walk alone) | one full /proc pass (before) |");
    println!("|---|---|---|---|");
    let fx = Fixture::new(1000, 10);
    let writer = Connection::open(&fx.db).unwrap();
    let pids: Vec<Option<i64>> = fx
        ._sleeps
        .0
        .iter()
        .map(|c| Some(i64::from(c.id())))
        .collect();
    let mut others = None;
    for extra in [0usize, 3000] {
        if extra > 0 {
            others = Some(Sleeps::new(extra));
        }
        let mut row = format!("| {extra} |");
        for walk in [Walk::Remembered, Walk::ChildrenFiles] {
            let snap =
                Snapshotter::new(Arc::new(SqliteSource::new(&fx.db)), "/proc").with_proc_walk(walk);
            let all = snapshot_cpu(&snap, &writer);
            let mut cache = ProcCache::with_walk("/proc", walk);
            cache.agents(&pids);
            let mut s = Vec::new();
            for _ in 0..60 {
                let c = cpu();
                cache.agents(&pids);
                s.push(cpu() - c);
            }
            row.push_str(&format!(
                " {:.3} ms (walk {:.3} ms) |",
                all.as_secs_f64() * 1e3,
                median(s).as_secs_f64() * 1e3
            ));
        }
        let mut one_pass = Vec::new();
        for _ in 0..20 {
            let c = cpu();
            let table = emitter::procfs::ProcTable::scan(Path::new("/proc"));
            for p in pids.iter().flatten() {
                let _ = table.agent(*p);
            }
            one_pass.push(cpu() - c);
        }
        row.push_str(&format!(
            " one full pass (before): {:.3} ms |",
            median(one_pass).as_secs_f64() * 1e3
        ));
        println!("{row}");
    }
    drop(others);
}

/// CPU per snapshot at 100 and 1,000 agents (issue 10: <= 1 ms and <= 10 ms),
/// the SQLite session alone and the whole snapshot, with each walk.
/// `EMITTER_FIELD_AGENTS` picks the sizes; `EMITTER_FIELD_ROUNDS` the samples.
fn part_agents() {
    let sizes: Vec<usize> = std::env::var("EMITTER_FIELD_AGENTS")
        .unwrap_or_else(|_| "100,1000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let rounds: usize = std::env::var("EMITTER_FIELD_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    println!("## agents (10^3 history; CPU per snapshot, median of {rounds}; one write between snapshots)");
    println!("| agents | walk | whole snapshot | SQLite session alone | /proc walk alone |");
    println!("|---|---|---|---|---|");
    for &n in &sizes {
        let fx = Fixture::new(1000, n);
        let writer = Connection::open(&fx.db).unwrap();
        let pids: Vec<Option<i64>> = fx
            ._sleeps
            .0
            .iter()
            .map(|c| Some(i64::from(c.id())))
            .collect();
        for walk in [Walk::ChildrenFiles, Walk::Remembered] {
            let me = std::process::id();
            let has_children = Path::new(&format!("/proc/{me}/task/{me}/children")).exists();
            if walk == Walk::ChildrenFiles && !has_children {
                continue;
            }
            let snap =
                Snapshotter::new(Arc::new(SqliteSource::new(&fx.db)), "/proc").with_proc_walk(walk);
            let _ = snap.take();
            let mut whole = Vec::new();
            for _ in 0..rounds {
                one_write(&writer);
                let c = cpu();
                let env = snap.take();
                whole.push(cpu() - c);
                assert_eq!(env.agents.len(), n);
            }
            let source = SqliteSource::new(&fx.db).with_background_recount(false);
            let now = Timestamp::now();
            let _ = emitter::Source::session(&source).agents(&now);
            let mut sql = Vec::new();
            for _ in 0..rounds {
                one_write(&writer);
                let c = cpu();
                let mut s = emitter::Source::session(&source);
                let _ = s.stages(&now);
                let _ = s.queue();
                let _ = s.agents(&now);
                let _ = s.cost();
                let _ = s.reconciler();
                let _ = s.errors();
                drop(s);
                sql.push(cpu() - c);
            }
            let mut cache = ProcCache::with_walk("/proc", walk);
            cache.agents(&pids);
            let mut procs = Vec::new();
            for _ in 0..rounds {
                let c = cpu();
                cache.agents(&pids);
                procs.push(cpu() - c);
            }
            println!(
                "| {n} | {walk:?} | {:.3} ms | {:.3} ms | {:.3} ms |",
                median(whole).as_secs_f64() * 1e3,
                median(sql).as_secs_f64() * 1e3,
                median(procs).as_secs_f64() * 1e3,
            );
        }
    }
}

/// One `GET /metrics`, `Connection: close`; the wall time, or why not.
fn get_metrics(port: u16) -> Result<Duration, String> {
    use std::io::{Read, Write};
    let t = Instant::now();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut body = Vec::new();
    s.read_to_end(&mut body).map_err(|e| e.to_string())?;
    let took = t.elapsed();
    if !body.starts_with(b"HTTP/1.1 200") {
        return Err(String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
    }
    Ok(took)
}

/// p50 / p99 of `n` sequential requests after 20 unmeasured ones.
fn latencies(port: u16, n: usize) -> (Duration, Duration) {
    for _ in 0..20 {
        get_metrics(port).unwrap();
    }
    let mut v: Vec<Duration> = (0..n).map(|_| get_metrics(port).unwrap()).collect();
    (pct(&mut v, 0.5), pct(&mut v, 0.99))
}

/// Ours against `benches/fastapi_emitter.py` (FastAPI + sqlite3, one
/// `/proc/<pid>/stat` per agent) over the same database and live agents.
/// FastAPI and uvicorn are installed from PyPI into `target/fastapi-venv`.
fn part_fastapi() {
    let agents: usize = std::env::var("EMITTER_FIELD_AGENTS")
        .ok()
        .and_then(|s| s.split(',').next()?.trim().parse().ok())
        .unwrap_or(100);
    let n = 300;
    println!("## fastapi ({agents} agents, 10^3 history; one `GET /metrics` at a time, new connection each, {n} requests)");
    let venv = cache_dir().parent().unwrap().join("fastapi-venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success())
            && Command::new(venv.join("bin/pip"))
                .args(["install", "-q", "fastapi", "uvicorn"])
                .status()
                .is_ok_and(|s| s.success());
        if !ok {
            println!("not run: python3 -m venv + pip install fastapi uvicorn failed (see above)");
            return;
        }
    }
    let fx = Fixture::new(1000, agents);
    // Ours, in-process, on the current code.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let ours = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let db = fx.db.clone();
    let server = std::thread::spawn(move || {
        emitter::run(async move {
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            let source = Arc::new(SqliteSource::new(&db));
            emitter::serve(l, source, emitter::ServeOptions::default(), async {
                let _ = stopped.await;
            })
            .await
        })
    });
    // Theirs.
    let theirs = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut py = Command::new(&python)
        .args([
            "-m",
            "uvicorn",
            "fastapi_emitter:app",
            "--log-level",
            "warning",
        ])
        .arg("--app-dir")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("benches"))
        .args(["--port", &theirs.to_string()])
        .env("FIELD_DB", &fx.db)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while get_metrics(theirs).is_err() {
        assert!(
            Instant::now() < deadline,
            "uvicorn did not answer within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (p50, p99) = latencies(ours, n);
    let (py50, py99) = latencies(theirs, n);
    let _ = py.kill();
    let _ = py.wait();
    let _ = stop.send(());
    let _ = server.join();
    println!("| emitter | p50 | p99 |\n|---|---|---|");
    println!(
        "| ours (Rust) | {:.3} ms | {:.3} ms |",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3
    );
    println!(
        "| FastAPI + sqlite3 | {:.3} ms | {:.3} ms |",
        py50.as_secs_f64() * 1e3,
        py99.as_secs_f64() * 1e3
    );
    println!(
        "| ratio at p50 | {:.1}x | |",
        py50.as_secs_f64() / p50.as_secs_f64()
    );
}

fn part_writer() {
    let n: u64 = std::env::var("EMITTER_FIELD_WRITER_ROWS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    println!("## writer ({n} finished rows/table, 10 agents; one insert every 20 ms for 15 s, busy timeout 5 s)");
    println!(
        "| journal mode | emitter | p50 | p99 | max | locked errors | emitter longest read tx |"
    );
    println!("|---|---|---|---|---|---|---|");
    for mode in ["DELETE", "WAL"] {
        for polled in [false, true] {
            let fx = Fixture::new(n, 10);
            let writer = Connection::open(&fx.db).unwrap();
            let _: String = writer
                .query_row(&format!("PRAGMA journal_mode = {mode}"), [], |r| r.get(0))
                .unwrap();
            writer.busy_timeout(Duration::from_secs(5)).unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let source = Arc::new(SqliteSource::new(&fx.db));
            let poller = polled.then(|| {
                let stop = Arc::clone(&stop);
                let snap =
                    Snapshotter::new(Arc::clone(&source) as Arc<dyn emitter::Source>, "/proc");
                // Steady state: the first snapshot (the whole history, in
                // slices) is taken before timing unless EMITTER_FIELD_COLD is set.
                if std::env::var_os("EMITTER_FIELD_COLD").is_none() {
                    let _ = snap.take();
                }
                std::thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        let t = Instant::now();
                        let _ = snap.take();
                        std::thread::sleep(Duration::from_millis(100).saturating_sub(t.elapsed()));
                    }
                })
            });
            let mut lat = Vec::new();
            let mut locked = 0;
            let end = Instant::now() + Duration::from_secs(15);
            while Instant::now() < end {
                let t = Instant::now();
                match writer.execute(
                    "INSERT INTO error_events (subsystem, message, created_at) VALUES ('git', 'x', datetime('now'))",
                    [],
                ) {
                    Ok(_) => lat.push(t.elapsed()),
                    Err(e) if e.to_string().contains("locked") => locked += 1,
                    Err(e) => panic!("{e}"),
                }
                std::thread::sleep(Duration::from_millis(20).saturating_sub(t.elapsed()));
            }
            stop.store(true, Ordering::SeqCst);
            if let Some(p) = poller {
                p.join().unwrap();
            }
            let longest = if polled {
                format!("{:.2} ms", source.stats().longest.as_secs_f64() * 1e3)
            } else {
                "-".into()
            };
            println!(
                "| {mode} | {} | {:.2} ms | {:.2} ms | {:.2} ms | {locked} | {longest} |",
                if polled { "polled 10/s" } else { "off" },
                pct(&mut lat, 0.5).as_secs_f64() * 1e3,
                pct(&mut lat, 0.99).as_secs_f64() * 1e3,
                pct(&mut lat, 1.0).as_secs_f64() * 1e3,
            );
        }
    }
}

/// Whether keeping `/proc/<pid>/{stat,io}` open and re-reading with `pread`
/// pays against open + read + close each time (issue 10 asks to measure it).
fn part_pread() {
    use std::os::unix::fs::FileExt;
    let sleeps = Sleeps::new(100);
    let pids: Vec<u32> = sleeps.0.iter().map(Child::id).collect();
    let mut buf = vec![0u8; 4096];
    let mut reopen = Vec::new();
    for _ in 0..200 {
        let c = cpu();
        for pid in &pids {
            for f in ["stat", "io"] {
                let _ = std::fs::read(format!("/proc/{pid}/{f}")).unwrap();
            }
        }
        reopen.push(cpu() - c);
    }
    let files: Vec<std::fs::File> = pids
        .iter()
        .flat_map(|pid| {
            ["stat", "io"].map(|f| std::fs::File::open(format!("/proc/{pid}/{f}")).unwrap())
        })
        .collect();
    let mut kept = Vec::new();
    for _ in 0..200 {
        let c = cpu();
        for f in &files {
            let _ = f.read_at(&mut buf, 0).unwrap();
        }
        kept.push(cpu() - c);
    }
    println!("## pread (100 pids, stat + io each; CPU per round, median)");
    println!(
        "| open + read + close | pread on kept fds |\n|---|---|\n| {:.3} ms | {:.3} ms |",
        median(reopen).as_secs_f64() * 1e3,
        median(kept).as_secs_f64() * 1e3
    );
}

fn part_gzip() {
    let n: usize = std::env::var("EMITTER_FIELD_GZIP_AGENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let rounds: usize = std::env::var("EMITTER_FIELD_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let fx = Fixture::new(1000, n);
    let snap = Snapshotter::new(Arc::new(SqliteSource::new(&fx.db)), "/proc");
    let _ = snap.body();
    let body = snap.body();
    println!("## gzip ({n} agents, 10^3 history; CPU of one compression, median of {rounds})");
    println!("| encoding | bytes | ratio | CPU to compress |");
    println!("|---|---|---|---|");
    println!("| plain | {} | 1.0x | - |", body.len());
    for level in [1u32, 2, 3, 6] {
        let mut times = Vec::new();
        let mut size = 0;
        for _ in 0..rounds {
            let c = cpu();
            let mut enc = flate2::write::GzEncoder::new(
                Vec::with_capacity(body.len() / 8),
                flate2::Compression::new(level),
            );
            std::io::Write::write_all(&mut enc, &body).unwrap();
            size = enc.finish().unwrap().len();
            times.push(cpu() - c);
        }
        let shipped = if level == emitter::http::GZIP_LEVEL {
            " (shipped)"
        } else {
            ""
        };
        println!(
            "| gzip level {level}{shipped} | {size} | {:.1}x | {:.2} ms |",
            body.len() as f64 / size as f64,
            median(times).as_secs_f64() * 1e3,
        );
    }
    // The shipped function itself, as the server calls it.
    let zipped = emitter::http::gzip(&body).unwrap();
    assert!(
        zipped.len() * 8 <= body.len(),
        "gzip only {}x",
        body.len() / zipped.len()
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing and must stay fast.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let parts = std::env::var("EMITTER_FIELD")
        .unwrap_or_else(|_| "history,host,writer,pread,agents,fastapi".into());
    for part in parts.split(',') {
        match part.trim() {
            "history" => part_history(),
            "host" => part_host(),
            "writer" => part_writer(),
            "pread" => part_pread(),
            "agents" => part_agents(),
            "fastapi" => part_fastapi(),
            "gzip" => part_gzip(),
            other => eprintln!("unknown part {other}"),
        }
    }
}
