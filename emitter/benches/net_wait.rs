//! What `net_wait` costs a snapshot: CPU per snapshot (getrusage, through
//! criterion's `iter_custom`) at 100 running agents, each on its own live
//! `sleep`, with `net_wait` off and on:
//! - `off` / `on`: no agent has a connection;
//! - `on_10_waiting`: 10 of the agents each hold a request that a loopback
//!   server read and never answered (so holders are looked up);
//! - `on_1000_host_conns`: 1,000 more idle loopback connections on the host
//!   (held by the bench, in no agent's tree) that the dump walks too;
//! - `waits_alone_*`: `NetWatch::waits` over the same trees, no SQLite:
//!   between two whole-table dumps (single-socket lookups of the 10
//!   tracked connections), and with a whole-table dump every call.
//!
//! The whole table is dumped at most every `FULL_EVERY` (5 s), so
//! back-to-back snapshots measure the lookup path; what a dump adds to one
//! poll is `waits_alone_full_dump` × poll interval / 5 s.
//!
//! `cargo bench -p emitter --bench net_wait`; `EMITTER_NET_WAIT_AGENTS`
//! changes the 100.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion};
use emitter::net_wait::NetWatch;
use emitter::procfs::ProcCache;
use emitter::{Snapshotter, SqliteSource};

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

/// `n` running jobs on live `sleep`s; the first `waiting` hold a hung request.
struct Fixture {
    _dir: tempfile::TempDir,
    db: PathBuf,
    sleeps: Vec<Child>,
    /// The server ends of the hung requests, kept open.
    _held: Vec<TcpStream>,
    _listener: TcpListener,
}

impl Fixture {
    fn new(n: usize, waiting: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("orch.db");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut held = Vec::new();
        let mut sleeps = Vec::with_capacity(n);
        for i in 0..n {
            let stdin = if i < waiting {
                let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
                client
                    .write_all(b"POST /v1/messages HTTP/1.1\r\nHost: api\r\n\r\n")
                    .unwrap();
                let (mut server, _) = listener.accept().unwrap();
                let mut buf = [0u8; 256];
                let _ = server.read(&mut buf).unwrap();
                held.push(server);
                Stdio::from(OwnedFd::from(client))
            } else {
                Stdio::null()
            };
            sleeps.push(
                Command::new("sleep")
                    .arg("3600")
                    .stdin(stdin)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            );
        }
        let mut conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(shared_schema::state::SCHEMA_SQL)
            .unwrap();
        let tx = conn.transaction().unwrap();
        for (i, child) in sleeps.iter().enumerate() {
            tx.execute(
                "INSERT INTO jobs (id, agent, status, attempts, pid, started_at)
                 VALUES (?1, 'dev', 'running', 1, ?2, datetime('now', '-120 seconds'))",
                rusqlite::params![i as i64 + 1, i64::from(child.id())],
            )
            .unwrap();
        }
        tx.commit().unwrap();
        Self {
            _dir: dir,
            db,
            sleeps,
            _held: held,
            _listener: listener,
        }
    }

    fn snapshotter(&self, net_wait: bool) -> Snapshotter {
        Snapshotter::new(Arc::new(SqliteSource::new(&self.db)), "/proc").with_net_wait(net_wait)
    }

    fn pids(&self) -> Vec<Option<i64>> {
        self.sleeps
            .iter()
            .map(|c| Some(i64::from(c.id())))
            .collect()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for child in &mut self.sleeps {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `n` idle loopback connections (both ends held here).
fn host_connections(n: usize) -> (TcpListener, Vec<TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut ends = Vec::with_capacity(2 * n);
    for _ in 0..n {
        ends.push(TcpStream::connect(listener.local_addr().unwrap()).unwrap());
        ends.push(listener.accept().unwrap().0);
    }
    (listener, ends)
}

/// CPU of `iters` snapshots.
fn snapshots(snap: &Snapshotter, iters: u64) -> Duration {
    let start = cpu();
    for _ in 0..iters {
        std::hint::black_box(snap.take());
    }
    cpu() - start
}

fn main() {
    let n: usize = std::env::var("EMITTER_NET_WAIT_AGENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    let mut g = c.benchmark_group("net_wait_snapshot_cpu");
    {
        let fx = Fixture::new(n, 0);
        for on in [false, true] {
            let snap = fx.snapshotter(on);
            let name = if on { "on" } else { "off" };
            g.bench_function(BenchmarkId::new(name, n), |b| {
                b.iter_custom(|iters| snapshots(&snap, iters))
            });
        }
        let (_l, _conns) = host_connections(1000);
        let snap = fx.snapshotter(true);
        g.bench_function(BenchmarkId::new("on_1000_host_conns", n), |b| {
            b.iter_custom(|iters| snapshots(&snap, iters))
        });
        let snap = fx.snapshotter(false);
        g.bench_function(BenchmarkId::new("off_1000_host_conns", n), |b| {
            b.iter_custom(|iters| snapshots(&snap, iters))
        });
    }
    {
        let fx = Fixture::new(n, 10);
        let snap = fx.snapshotter(true);
        let env = snap.take();
        let named = env.agents.iter().filter(|a| a.net_wait.is_some()).count();
        assert_eq!(named, 10, "the ten hung requests are seen");
        g.bench_function(BenchmarkId::new("on_10_waiting", n), |b| {
            b.iter_custom(|iters| snapshots(&snap, iters))
        });
        let mut cache = ProcCache::new("/proc");
        let pids = fx.pids();
        let trees: Vec<Vec<i64>> = cache
            .agents(&pids)
            .into_iter()
            .map(|p| p.map(|p| p.tree).unwrap_or_default())
            .collect();
        for (name, every) in [
            (
                "waits_alone_lookups_10_waiting",
                emitter::net_wait::FULL_EVERY,
            ),
            ("waits_alone_full_dump_10_waiting", Duration::ZERO),
        ] {
            let mut net = NetWatch::new("/proc");
            net.set_full_every(every);
            assert_eq!(net.waits(&trees).iter().flatten().count(), 10);
            g.bench_function(BenchmarkId::new(name, n), |b| {
                b.iter_custom(|iters| {
                    let start = cpu();
                    for _ in 0..iters {
                        std::hint::black_box(net.waits(&trees));
                    }
                    cpu() - start
                })
            });
        }
    }
    g.finish();
    c.final_summary();
}
