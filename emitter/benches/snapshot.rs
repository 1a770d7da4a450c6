//! Snapshot and HTTP cost at 10, 100, 1,000 and 10,000 running agents, each
//! with its own LIVE `sleep` process, plus a load run (8 keep-alive clients
//! against the real binary at 100 agents) and the server's resident memory
//! at 1,000 agents.
//!
//! `cargo bench -p emitter --bench snapshot`; `EMITTER_BENCH_SIZES=10,100`
//! limits the sizes, `EMITTER_BENCH_LOAD=0` skips the load and memory run.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};
use emitter::{ServeOptions, Snapshotter, SqliteSource};

/// A database with `n` running jobs, each on its own live `sleep`.
struct Fixture {
    _dir: tempfile::TempDir,
    db: PathBuf,
    sleeps: Vec<Child>,
}

impl Fixture {
    fn new(n: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("orch.db");
        let mut sleeps = Vec::with_capacity(n);
        for _ in 0..n {
            let child = Command::new("sleep")
                .arg("3600")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            sleeps.push(child);
        }
        let mut conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        let tx = conn.transaction().unwrap();
        {
            let mut task = tx
                .prepare("INSERT INTO tasks VALUES (?1, ?2, 'app', 'dev', datetime('now', '-60 seconds'))")
                .unwrap();
            let mut job = tx
                .prepare(
                    "INSERT INTO jobs (id, task_id, agent, repo, status, attempts, pid, model, effort, started_at)
                     VALUES (?1, ?1, 'dev', 'app', 'running', 1, ?2, 'opus', 'high', datetime('now', '-120 seconds'))",
                )
                .unwrap();
            let mut run = tx
                .prepare(
                    "INSERT INTO agent_runs (job_id, agent, cost_usd, input_tokens, output_tokens,
                       cache_read_tokens, cache_creation_tokens) VALUES (?1, 'dev', 0.25, 1000, 200, 50, 10)",
                )
                .unwrap();
            for (i, child) in sleeps.iter().enumerate() {
                let id = i as i64 + 1;
                task.execute(rusqlite::params![id, format!("WI-{id}")])
                    .unwrap();
                job.execute(rusqlite::params![id, i64::from(child.id())])
                    .unwrap();
                run.execute([id]).unwrap();
            }
        }
        tx.execute_batch(
            "INSERT INTO jobs (status) VALUES ('queued'), ('queued'), ('done'), ('failed');
             INSERT INTO worker_state VALUES ('breaker_state', 'closed'), ('max_concurrency', '8');
             INSERT INTO reconciler_ticks (at, wall_clock_ms, actions_by_type, invariant_violations)
               VALUES (datetime('now'), 3.5, '{\"spawn\": 1}', '[]');
             INSERT INTO error_events (subsystem, created_at) VALUES ('git', datetime('now'));",
        )
        .unwrap();
        tx.commit().unwrap();
        Self {
            _dir: dir,
            db,
            sleeps,
        }
    }

    fn snapshotter(&self, keep_connection: bool) -> Snapshotter {
        let source = SqliteSource::new(&self.db).with_kept_connection(keep_connection);
        Snapshotter::new(Arc::new(source), "/proc")
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for child in &mut self.sleeps {
            let _ = child.kill();
        }
        for child in &mut self.sleeps {
            let _ = child.wait();
        }
    }
}

const SCHEMA: &str = shared_schema::state::SCHEMA_SQL;

/// A minimal HTTP/1.1 keep-alive client: the load generator must cost far
/// less than the server it measures on a 2-core machine.
struct RawClient {
    conn: BufReader<TcpStream>,
}

impl RawClient {
    fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        Self {
            conn: BufReader::new(stream),
        }
    }

    /// One `GET /metrics`; the status and body length.
    fn get(&mut self) -> (u16, usize) {
        self.conn
            .get_mut()
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\n\r\n")
            .unwrap();
        let mut line = String::new();
        self.conn.read_line(&mut line).unwrap();
        let status: u16 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        let mut len = 0usize;
        loop {
            line.clear();
            self.conn.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; len];
        self.conn.read_exact(&mut body).unwrap();
        (status, len)
    }
}

/// The in-process server on a loopback port, on its own runtime thread.
struct InProcess {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl InProcess {
    fn start(db: &std::path::Path) -> Self {
        let source = Arc::new(SqliteSource::new(db));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let shutdown = async move {
                    let _ = stop_rx.await;
                };
                emitter::serve(listener, source, ServeOptions::default(), shutdown)
                    .await
                    .unwrap();
            });
        });
        Self {
            addr: addr_rx.recv().unwrap(),
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn sizes() -> Vec<usize> {
    std::env::var("EMITTER_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10, 100, 1_000, 10_000])
}

fn bench_sizes(c: &mut Criterion) {
    let mut group = c.benchmark_group("emitter");
    for n in sizes() {
        let fixture = Fixture::new(n);
        let snap = fixture.snapshotter(true);
        let env = snap.take();
        assert!(env.degraded.is_empty(), "{:?}", env.degraded);
        assert_eq!(env.agents.len(), n);
        let live = env.agents.iter().filter(|a| a.state.is_some()).count();
        assert_eq!(live, n, "every agent's pid is live");
        group.bench_with_input(BenchmarkId::new("snapshot", n), &n, |b, _| {
            b.iter(|| std::hint::black_box(snap.body()))
        });
        if n == 100 {
            let fresh = fixture.snapshotter(false);
            group.bench_with_input(
                BenchmarkId::new("snapshot_fresh_connection", n),
                &n,
                |b, _| b.iter(|| std::hint::black_box(fresh.body())),
            );
        }
        let (wall, user, sys) = cpu_per_snapshot(&snap, 20);
        println!(
            "cpu: {n} agents: wall {:.2} ms, user {:.2} ms, sys {:.2} ms per snapshot (mean of 20)",
            wall * 1e3,
            user * 1e3,
            sys * 1e3
        );
        let server = InProcess::start(&fixture.db);
        let mut client = RawClient::connect(server.addr);
        group.bench_with_input(BenchmarkId::new("http_get", n), &n, |b, _| {
            b.iter(|| {
                let (status, len) = client.get();
                assert_eq!(status, 200);
                std::hint::black_box(len)
            })
        });
        drop(client);
        drop(server);
        drop(fixture);
    }
    group.finish();
}

/// Mean wall, user and system seconds per snapshot: CPU time says what a
/// snapshot costs even when other work shares the cores.
fn cpu_per_snapshot(snap: &Snapshotter, reps: u32) -> (f64, f64, f64) {
    fn usage() -> (f64, f64) {
        // SAFETY: getrusage fills the zeroed struct it is given.
        let mut ru = unsafe { std::mem::zeroed::<libc::rusage>() };
        unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        (secs(ru.ru_utime), secs(ru.ru_stime))
    }
    let start = Instant::now();
    let (u0, s0) = usage();
    for _ in 0..reps {
        std::hint::black_box(snap.body());
    }
    let (u1, s1) = usage();
    let n = f64::from(reps);
    (
        start.elapsed().as_secs_f64() / n,
        (u1 - u0) / n,
        (s1 - s0) / n,
    )
}

/// The real binary, serving `db` on a port it picks.
fn spawn_binary(db: &std::path::Path, extra: &[&str]) -> (Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_emitter"))
        .args(["serve", "--listen", "127.0.0.1:0", "--db"])
        .arg(db)
        .args(extra)
        .env_remove("ORCH_METRICS_ENABLED")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.split("listen=").nth(1) {
                let _ = tx.send(
                    rest.split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned(),
                );
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap()
        .parse()
        .unwrap();
    (child, addr)
}

/// `clients` keep-alive clients hammering `addr` for `duration`; requests/s.
fn load(addr: SocketAddr, clients: usize, duration: Duration) -> f64 {
    let start = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            std::thread::spawn(move || {
                let mut client = RawClient::connect(addr);
                let mut n = 0u64;
                while start.elapsed() < duration {
                    assert_eq!(client.get().0, 200);
                    n += 1;
                }
                n
            })
        })
        .collect();
    let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    total as f64 / start.elapsed().as_secs_f64()
}

fn vm(pid: u32, key: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with(key))
        .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn load_and_memory() {
    if std::env::var("EMITTER_BENCH_LOAD").is_ok_and(|v| v == "0") {
        return;
    }
    for n in [100, 1_000] {
        let fixture = Fixture::new(n);
        let (mut child, addr) = spawn_binary(&fixture.db, &[]);
        let rate = load(addr, 8, Duration::from_secs(5));
        // Sequential, one client: every request takes its own snapshot.
        let single = load(addr, 1, Duration::from_secs(3));
        println!(
            "load: {n} agents: 8 keep-alive clients {rate:.0} req/s, 1 client {single:.0} req/s; \
             server VmRSS {} (peak VmHWM {})",
            vm(child.id(), "VmRSS:"),
            vm(child.id(), "VmHWM:")
        );
        let _ = child.kill();
        let _ = child.wait();
        let (mut child, addr) = spawn_binary(&fixture.db, &["--reuse-snapshot", "250ms"]);
        let rate = load(addr, 8, Duration::from_secs(5));
        println!(
            "load: {n} agents, --reuse-snapshot 250ms: 8 keep-alive clients {rate:.0} req/s; server VmRSS {}",
            vm(child.id(), "VmRSS:")
        );
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn main() {
    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    bench_sizes(&mut c);
    load_and_memory();
    c.final_summary();
}
