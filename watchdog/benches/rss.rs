//! Resident memory of the real `watchdog run` at 100 targets x 100 agents
//! (issue 11: <= 25 MiB): one in-process HTTP server answers
//! `GET /t<i>/metrics` for every target with a fresh envelope (ticks and
//! clocks move, so deltas, idle timers and pending alerts exist), the
//! watchdog polls them every second, and VmHWM/VmRSS/Threads are read from
//! `/proc/<pid>/status` after a warm-up and after `RSS_SECONDS` more.
//!
//! `cargo bench -p watchdog --bench rss` (release binary); `RSS_TARGETS`,
//! `RSS_AGENTS`, `RSS_SECONDS` (default 100, 100, 15) change the load, and
//! the environment is passed on (e.g. `MALLOC_ARENA_MAX=8` to compare);
//! `RSS_WATCHDOG` names another binary or a wrapper (e.g. heaptrack's).

#![allow(clippy::unwrap_used, missing_docs)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn status(pid: u32) -> (u64, u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"), field("Threads:"))
}

/// Target `t`'s envelope `s` seconds after the start: agents busy except
/// one in ten, which is idle (a pending `stuck_agent` alert each).
fn body(t: usize, agents: usize, started: Instant) -> Vec<u8> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let s = started.elapsed().as_secs();
    let list: Vec<_> = (0..agents)
        .map(|i| {
            let ticks = if i % 10 == 0 { 100 } else { 100 + s * 30 };
            json!({
                "agent": format!("agent-{}", i % 7), "run_id": 1000 + i, "job_id": i, "repo": "app",
                "pid": 20_000 + i, "runtime_s": 300 + s, "model": "m", "effort": "high",
                "cpu_ticks": ticks, "start_ticks": 7 + i, "tree_cpu_ticks": ticks,
                "io_rchar": 4096, "io_wchar": 512, "state": "S"
            })
        })
        .collect();
    serde_json::to_vec(&json!({
        "schema_version": 1,
        "generated_at": shared_schema::Timestamp::from_unix_ms(now_ms).unwrap().to_string(),
        "monotonic_ms": started.elapsed().as_millis() as u64 + 1_000_000,
        "boot_id": "rss", "host": format!("host-{t}"), "clk_tck": 100, "degraded": [],
        "stages": [{"task_id": 1, "work_item": "WI", "stage": "build", "age_in_stage_s": 60.0, "repo": "app"}],
        "queue": {"counts": {"queued": 0, "running": agents, "done": s, "failed": 0, "cancelled": 0},
                  "depth": 0, "retries": null, "breaker": {"state": "closed", "consecutive_failures": 0, "opened_at": null},
                  "max_concurrency": null, "poll_interval": null},
        "agents": list,
        "cost": null, "reconciler": null,
        "errors": {"total": 5, "by_subsystem": [{"subsystem": "git", "total": 5, "last_at": null}]}
    }))
    .unwrap()
}

fn serve(conn: TcpStream, hits: &[AtomicU64], agents: usize, started: Instant) {
    let mut reader = BufReader::new(conn);
    let mut head = String::new();
    if reader.read_line(&mut head).is_err() {
        return;
    }
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) if line == "\r\n" => break,
            Ok(_) => {}
        }
    }
    let mut conn = reader.into_inner();
    let target: Option<usize> = head
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.strip_prefix("/t"))
        .and_then(|p| p.strip_suffix("/metrics"))
        .and_then(|p| p.parse().ok())
        .filter(|&t| t < hits.len());
    let Some(t) = target else {
        let _ = conn
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    };
    hits[t].fetch_add(1, Ordering::SeqCst);
    let b = body(t, agents, started);
    let _ = write!(
        conn,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        b.len()
    );
    let _ = conn.write_all(&b);
}

fn main() {
    let targets = env_or("RSS_TARGETS", 100) as usize;
    let agents = env_or("RSS_AGENTS", 100) as usize;
    let seconds = env_or("RSS_SECONDS", 15);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let hits: Arc<Vec<AtomicU64>> = Arc::new((0..targets).map(|_| AtomicU64::new(0)).collect());
    let started = Instant::now();
    {
        let hits = hits.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                serve(conn, &hits, agents, started);
            }
        });
    }
    let metrics = TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = metrics.local_addr().unwrap();
    drop(metrics);

    let dir = tempfile::tempdir().unwrap();
    let mut toml = format!("interval = \"1s\"\ntimeout = \"5s\"\nlisten = \"{listen}\"\n");
    for t in 0..targets {
        toml.push_str(&format!(
            "\n[[target]]\nname = \"t{t}\"\nurl = \"http://{addr}/t{t}/metrics\"\n"
        ));
    }
    let config = dir.path().join("watchdog.toml");
    std::fs::write(&config, toml).unwrap();
    // `RSS_WATCHDOG` runs another binary, or a wrapper (heaptrack).
    let watchdog = std::env::var_os("RSS_WATCHDOG").map_or_else(
        || env!("CARGO_BIN_EXE_watchdog").into(),
        std::path::PathBuf::from,
    );
    let mut child = Command::new(watchdog)
        .arg("run")
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let min = || {
        hits.iter()
            .map(|h| h.load(Ordering::SeqCst))
            .min()
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while min() < 2 {
        assert!(
            Instant::now() < deadline,
            "not every target was polled twice in 60 s"
        );
        assert!(child.try_wait().unwrap().is_none(), "watchdog exited");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (hwm0, rss0, threads0) = status(pid);
    let polls0: u64 = hits.iter().map(|h| h.load(Ordering::SeqCst)).sum();
    let mut peak_rss = rss0;
    let end = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(250));
        peak_rss = peak_rss.max(status(pid).1);
    }
    assert!(child.try_wait().unwrap().is_none(), "watchdog exited");
    let (hwm, rss, threads) = status(pid);
    let polls: u64 = hits.iter().map(|h| h.load(Ordering::SeqCst)).sum::<u64>() - polls0;
    let _ = child.kill();
    let _ = child.wait();
    let mib = |k: u64| k as f64 / 1024.0;
    println!(
        "rss: {targets} targets x {agents} agents, 1 s interval; after warm-up: VmHWM {:.1} MiB, VmRSS {:.1} MiB, {threads0} threads; \
         after {seconds} s more ({polls} polls, slowest target {} in all): VmHWM {:.1} MiB, VmRSS {:.1} MiB (peak sampled {:.1}), {threads} threads",
        mib(hwm0),
        mib(rss0),
        min(),
        mib(hwm),
        mib(rss),
        mib(peak_rss)
    );
}
