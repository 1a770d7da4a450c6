//! One watchdog for a fleet, through an incident storm (issue 22's table):
//! the release `watchdog run` is measured as a black box, so the bench works
//! before and after the evaluation is made parallel.
//!
//! One in-process hyper server (one port, keep-alive) plays N emitters at
//! `/t/<i>/metrics`, each with A agents whose `cpu_ticks` and io counters
//! advance like working agents; at the storm instant 90 % of the agents go
//! idle at once (counters frozen: the model API is down). The same server
//! receives the webhook and plays an Alertmanager; the watchdog keeps a
//! `state_file`, as deployed (docs/DEPLOYMENT.md). The bench tails the alert log and reads
//! `/proc/<pid>/{stat,status}` of the watchdog.
//!
//! "All stuck alerts fired after" is given twice: when the last `firing`
//! line appeared in the file (what an on-call engineer sees; it includes
//! the watchdog's backlog) and by the lines' own `ts` (the envelope's clock,
//! i.e. the poll that decided it). "On time" is a poll within interval +
//! 10 % of that target's previous one.
//!
//! `cargo bench -p watchdog --bench fleet`; `FLEET_SIZES` (default
//! `50x10@1s,200x10@1s,1000x10@15s`, `targets x agents @ interval`),
//! `FLEET_SECONDS` (default 30: the steady third, then the storm; the storm
//! window is stretched to at least `for` + 3 intervals), `FLEET_WATCHDOG`
//! (another binary to measure). The bench and the watchdog share the
//! machine's cores: the bench's own CPU is printed next to the watchdog's.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::convert::Infallible;
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use serde_json::{json, Value};

/// `stuck_agent`'s `for` in every run.
const FOR_S: u64 = 5;
/// A busy agent's CPU: 50 ticks a second at `clk_tck` 100 (half a core).
const BUSY_TICKS_PER_S: u64 = 50;

/// One line of `FLEET_SIZES`.
#[derive(Debug, Clone, Copy)]
struct Size {
    targets: usize,
    agents: usize,
    interval_s: u64,
}

fn bad<T>(s: &str) -> T {
    panic!("FLEET_SIZES: {s:?} is not TARGETSxAGENTS@INTERVALs")
}

fn parse_sizes(text: &str) -> Vec<Size> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let (fleet, interval) = s.split_once('@').unwrap_or_else(|| bad(s));
            let (t, a) = fleet.split_once('x').unwrap_or_else(|| bad(s));
            Size {
                targets: t.parse().unwrap_or_else(|_| bad(s)),
                agents: a.parse().unwrap_or_else(|_| bad(s)),
                interval_s: interval
                    .strip_suffix('s')
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| bad(s)),
            }
        })
        .collect()
}

/// What the fake emitters and the webhook receiver count.
struct Fleet {
    size: Size,
    started: Instant,
    /// Bench ms (since `started`) of the storm; `u64::MAX` before it.
    storm_at_ms: AtomicU64,
    /// Per target: bench ms of its last poll (0: none yet), poll count.
    last_poll_ms: Vec<AtomicU64>,
    polls: Vec<AtomicU64>,
    measuring: AtomicBool,
    window_polls: AtomicU64,
    window_on_time: AtomicU64,
    webhook_msgs: AtomicU64,
    /// Posts to the fake Alertmanager (`/am/api/v2/alerts`).
    am_posts: AtomicU64,
    webhook_storm_msgs: AtomicU64,
    webhook_storm_bytes: AtomicU64,
    agent_fetches: AtomicU64,
    /// Bench ms of the newest `/agents/{job}` fetch.
    agent_fetch_last_ms: AtomicU64,
}

impl Fleet {
    fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Agent `i`'s active seconds at bench ms `now`: it stops at the storm
    /// unless it is one of the 10 % that keep working.
    fn active_ms(&self, i: usize, now: u64) -> u64 {
        let storm = self.storm_at_ms.load(Ordering::SeqCst);
        if i % 10 == 0 {
            now
        } else {
            now.min(storm)
        }
    }

    fn envelope(&self, t: usize, now: u64) -> Value {
        let now_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let agents: Vec<Value> = (0..self.size.agents)
            .map(|i| {
                let active = self.active_ms(i, now);
                let ticks = 1_000 + active * BUSY_TICKS_PER_S / 1000 + i as u64;
                let idle = active < now;
                json!({
                    "agent": format!("agent-{}", i % 7), "run_id": 10_000 + i, "job_id": i, "repo": "app",
                    "pid": 20_000 + i, "runtime_s": 600.0 + now as f64 / 1000.0, "model": "m", "effort": "high",
                    "cpu_ticks": ticks, "start_ticks": 777 + i, "tree_cpu_ticks": ticks * 2,
                    "io_rchar": 1_000_000 + active * 4, "io_wchar": 512 + active, "state": "S",
                    "alive": true, "wchan": if idle { "do_epoll_wait" } else { "0" }
                })
            })
            .collect();
        json!({
            "schema_version": 1,
            "generated_at": shared_schema::Timestamp::from_unix_ms(now_unix_ms).unwrap().to_string(),
            "monotonic_ms": 5_000_000 + now,
            "boot_id": "fleet", "host": format!("host-{t}"), "clk_tck": 100, "degraded": [],
            "stages": [{"task_id": 1, "work_item": "WI", "stage": "build", "age_in_stage_s": 60.0, "repo": "app"}],
            "queue": {"counts": {"queued": 0, "running": self.size.agents, "done": now / 1000, "failed": 0, "cancelled": 0},
                      "depth": 0, "retries": {"retried_jobs": 0, "total_retries": 0},
                      "breaker": {"state": "closed", "consecutive_failures": 0, "opened_at": null},
                      "max_concurrency": self.size.agents, "poll_interval": 1.0},
            "agents": agents,
            "cost": null, "reconciler": null,
            "errors": {"total": 5, "by_subsystem": [{"subsystem": "git", "total": 5, "last_at": null}]}
        })
    }

    /// Counts a poll of target `t`: on time when within interval + 10 %
    /// of that target's previous poll.
    fn polled(&self, t: usize, now: u64) {
        self.polls[t].fetch_add(1, Ordering::SeqCst);
        let prev = self.last_poll_ms[t].swap(now.max(1), Ordering::SeqCst);
        if self.measuring.load(Ordering::SeqCst) && prev > 0 {
            self.window_polls.fetch_add(1, Ordering::SeqCst);
            if now - prev <= self.size.interval_s * 1100 {
                self.window_on_time.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    async fn handle(
        self: Arc<Self>,
        req: Request<hyper::body::Incoming>,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        let path = req.uri().path().to_owned();
        // An Alertmanager that accepts everything and knows no alert yet
        // (the sink's lookup before a first post gets `[]`).
        if path == "/am/api/v2/alerts" {
            let post = req.method() == hyper::Method::POST;
            let _ = req.into_body().collect().await;
            if post {
                self.am_posts.fetch_add(1, Ordering::SeqCst);
            }
            let body = if post { "" } else { "[]" };
            return Ok(Response::builder()
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from_static(body.as_bytes())))
                .unwrap());
        }
        if path == "/hook" {
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            self.webhook_msgs.fetch_add(1, Ordering::SeqCst);
            if self.storm_at_ms.load(Ordering::SeqCst) != u64::MAX {
                self.webhook_storm_msgs.fetch_add(1, Ordering::SeqCst);
                self.webhook_storm_bytes
                    .fetch_add(body.len() as u64, Ordering::SeqCst);
            }
            return Ok(Response::new(Full::new(Bytes::new())));
        }
        let mut parts = path.trim_start_matches("/t/").splitn(2, '/');
        let target = parts
            .next()
            .and_then(|t| t.parse::<usize>().ok())
            .filter(|&t| t < self.size.targets);
        let rest = parts.next().unwrap_or("");
        let resp = match target {
            Some(t) if rest == "metrics" => {
                let now = self.elapsed_ms();
                self.polled(t, now);
                let body = serde_json::to_vec(&self.envelope(t, now)).unwrap();
                Response::builder()
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body)))
                    .unwrap()
            }
            // The up-close fetch of a stuck agent: answered at once, as an
            // emitter older than page 2 would (the line goes out without a
            // diagnosis), so the bench measures the watchdog, not the hold.
            Some(_) if rest.starts_with("agents/") => {
                self.agent_fetches.fetch_add(1, Ordering::SeqCst);
                self.agent_fetch_last_ms
                    .store(self.elapsed_ms(), Ordering::SeqCst);
                Response::builder()
                    .status(404)
                    .body(Full::new(Bytes::new()))
                    .unwrap()
            }
            _ => Response::builder()
                .status(404)
                .body(Full::new(Bytes::new()))
                .unwrap(),
        };
        Ok(resp)
    }
}

/// Serves `fleet` on a port of its own, on one runtime thread (the
/// emitters' side of the machine).
fn serve(fleet: Arc<Fleet>) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let fleet = fleet.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| fleet.clone().handle(req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
    });
    rx.recv().unwrap()
}

fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if v > 0 {
        v as f64
    } else {
        100.0
    }
}

/// utime + stime of `pid`, in ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = s.rsplit_once(") ").map_or("", |(_, r)| r);
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    // Fields 14 and 15 of the line are 12 and 13 after the `) `.
    f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
}

/// This process's own CPU (the fake emitters and the receiver), seconds.
fn self_cpu_s() -> f64 {
    // SAFETY: getrusage writes into a local struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// (VmRSS, VmHWM) of `pid` in KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Reads the alert log from where the last call stopped.
struct Tail {
    path: PathBuf,
    offset: u64,
    partial: String,
}

impl Tail {
    fn lines(&mut self) -> Vec<String> {
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return Vec::new();
        };
        if f.seek(SeekFrom::Start(self.offset)).is_err() {
            return Vec::new();
        }
        let mut buf = String::new();
        let n = f.read_to_string(&mut buf).unwrap_or(0);
        self.offset += n as u64;
        self.partial.push_str(&buf);
        let Some(cut) = self.partial.rfind('\n') else {
            return Vec::new();
        };
        let whole: String = self.partial.drain(..=cut).collect();
        whole.lines().map(str::to_owned).collect()
    }
}

/// The firing `stuck_agent` lines: key → `ts` in unix ms.
#[derive(Default)]
struct Firing {
    ts: std::collections::HashMap<String, i64>,
    /// Bench ms when the newest new key was seen in the file.
    last_seen_ms: u64,
    other_firing: u64,
}

impl Firing {
    fn take(&mut self, lines: Vec<String>, now: u64) {
        for line in lines {
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if v["event"] != "firing" {
                continue;
            }
            if v["rule"] != "stuck_agent" {
                self.other_firing += 1;
                continue;
            }
            let ts = v["ts"]
                .as_str()
                .and_then(|t| shared_schema::Timestamp::parse_lenient(t).ok())
                .map_or(0, |t| t.unix_ms());
            let key = v["key"].as_str().unwrap_or("").to_owned();
            if self.ts.insert(key, ts).is_none() {
                self.last_seen_ms = now;
            }
        }
    }
}

struct Row {
    size: Size,
    polls_per_s: f64,
    due_per_s: f64,
    on_time_pct: f64,
    expected: usize,
    fired: usize,
    fired_before_storm: usize,
    all_fired_ts_s: Option<f64>,
    all_fired_seen_s: Option<f64>,
    cpu_cores: f64,
    bench_cores: f64,
    rss_kib: u64,
    hwm_kib: u64,
    webhook_storm: u64,
    webhook_storm_kib: f64,
    agent_fetches: u64,
    last_fetch_s: f64,
    other_firing: u64,
    am_posts: u64,
}

fn check_envelope(watchdog: &Path, dir: &Path, fleet: &Fleet) {
    let file = dir.join("envelope.json");
    std::fs::write(&file, serde_json::to_vec(&fleet.envelope(0, 1000)).unwrap()).unwrap();
    let out = Command::new(watchdog)
        .arg("validate")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "watchdog validate rejects the bench's envelope: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn run(size: Size, seconds: u64, watchdog: &Path) -> Row {
    let fleet = Arc::new(Fleet {
        size,
        started: Instant::now(),
        storm_at_ms: AtomicU64::new(u64::MAX),
        last_poll_ms: (0..size.targets).map(|_| AtomicU64::new(0)).collect(),
        polls: (0..size.targets).map(|_| AtomicU64::new(0)).collect(),
        measuring: AtomicBool::new(false),
        window_polls: AtomicU64::new(0),
        window_on_time: AtomicU64::new(0),
        webhook_msgs: AtomicU64::new(0),
        am_posts: AtomicU64::new(0),
        webhook_storm_msgs: AtomicU64::new(0),
        webhook_storm_bytes: AtomicU64::new(0),
        agent_fetches: AtomicU64::new(0),
        agent_fetch_last_ms: AtomicU64::new(0),
    });
    let addr = serve(fleet.clone());
    let dir = tempfile::tempdir().unwrap();
    check_envelope(watchdog, dir.path(), &fleet);

    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = probe.local_addr().unwrap();
    drop(probe);
    let interval = size.interval_s;
    let mut toml = format!(
        "interval = \"{interval}s\"\ntimeout = \"{}s\"\nlisten = \"{listen}\"\n\n\
         [rules.stuck_agent]\nfor = \"{FOR_S}s\"\nmin_runtime = \"1s\"\n\n\
         [[notify.webhook]]\nurl = \"http://{addr}/hook\"\nrate = \"100000/s\"\nqueue = 100000\n\
         group_wait = \"1s\"\ngroup_interval = \"5m\"\n\n\
         [notify.alertmanager]\nurl = \"http://{addr}/am\"\n",
        interval.min(5)
    );
    // The production shape (docs/DEPLOYMENT.md): alerts and baselines
    // survive a restart, and Alertmanager follows the firing set.
    toml.insert_str(
        0,
        &format!(
            "state_file = \"{}\"\n",
            dir.path().join("state.json").display()
        ),
    );
    for t in 0..size.targets {
        toml.push_str(&format!(
            "\n[[target]]\nname = \"t{t}\"\nurl = \"http://{addr}/t/{t}/metrics\"\n"
        ));
    }
    let config = dir.path().join("watchdog.toml");
    std::fs::write(&config, toml).unwrap();
    let alert_log = dir.path().join("alerts.jsonl");
    let stderr = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
    let mut child = Command::new(watchdog)
        .arg("run")
        .arg("--config")
        .arg(&config)
        .arg("--alert-log")
        .arg(&alert_log)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut tail = Tail {
        path: alert_log,
        offset: 0,
        partial: String::new(),
    };
    let mut firing = Firing::default();

    // Warm-up: every target polled twice (baselines exist).
    let deadline = Instant::now() + Duration::from_secs(60 + 3 * interval);
    while fleet.polls.iter().any(|p| p.load(Ordering::SeqCst) < 2) {
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let err = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default();
            panic!("{size:?}: not every target was polled twice (stderr: {err})");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    firing.take(tail.lines(), fleet.elapsed_ms());

    // Whole intervals, so that a watchdog polling in bursts has exactly
    // as many rounds in the window as are due.
    let whole = |s: u64| s.div_ceil(interval) * interval;
    let steady = Duration::from_secs(whole((seconds / 3).max(2 * interval)));
    let storm_window = Duration::from_secs(whole(
        seconds
            .saturating_sub(seconds / 3)
            .max(FOR_S + 3 * interval + 2),
    ));
    let cpu0 = cpu_ticks(pid);
    let self0 = self_cpu_s();
    let t0 = Instant::now();
    fleet.measuring.store(true, Ordering::SeqCst);
    let mut peak_rss = 0;
    let mut sample = |firing: &mut Firing, tail: &mut Tail, until: Instant| {
        while Instant::now() < until {
            std::thread::sleep(Duration::from_millis(100));
            firing.take(tail.lines(), fleet.elapsed_ms());
            peak_rss = peak_rss.max(rss_kib(pid).0);
        }
    };
    sample(&mut firing, &mut tail, t0 + steady);
    let fired_before_storm = firing.ts.len();
    let storm_ms = fleet.elapsed_ms();
    let storm_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    fleet.storm_at_ms.store(storm_ms, Ordering::SeqCst);
    sample(&mut firing, &mut tail, t0 + steady + storm_window);
    fleet.measuring.store(false, Ordering::SeqCst);
    let window = t0.elapsed().as_secs_f64();
    let cpu = (cpu_ticks(pid) - cpu0) as f64 / clk_tck();
    let bench_cpu = self_cpu_s() - self0;
    let (rss, hwm) = rss_kib(pid);
    assert!(
        child.try_wait().unwrap().is_none(),
        "{size:?}: the watchdog exited"
    );
    let expected = size.targets * (size.agents - size.agents.div_ceil(10));
    // A watchdog that fell behind is given more time (past the measured
    // window) so that the table says how late the last alert was.
    let late_deadline = Instant::now() + Duration::from_secs(120.max(10 * interval));
    while firing.ts.len() - fired_before_storm < expected && Instant::now() < late_deadline {
        std::thread::sleep(Duration::from_millis(100));
        firing.take(tail.lines(), fleet.elapsed_ms());
    }
    let _ = child.kill();
    let _ = child.wait();
    firing.take(tail.lines(), fleet.elapsed_ms());
    let webhook_storm = fleet.webhook_storm_msgs.load(Ordering::SeqCst);
    let webhook_storm_bytes = fleet.webhook_storm_bytes.load(Ordering::SeqCst);

    let fired = firing.ts.len() - fired_before_storm;
    let all = fired >= expected && expected > 0;
    let max_ts = firing.ts.values().copied().max().unwrap_or(0);
    Row {
        size,
        polls_per_s: fleet.window_polls.load(Ordering::SeqCst) as f64 / window,
        due_per_s: size.targets as f64 / interval as f64,
        on_time_pct: 100.0 * fleet.window_on_time.load(Ordering::SeqCst) as f64
            / fleet.window_polls.load(Ordering::SeqCst).max(1) as f64,
        expected,
        fired,
        fired_before_storm,
        all_fired_ts_s: all.then(|| (max_ts - storm_unix_ms) as f64 / 1000.0),
        all_fired_seen_s: all.then(|| firing.last_seen_ms.saturating_sub(storm_ms) as f64 / 1000.0),
        cpu_cores: cpu / window,
        bench_cores: bench_cpu / window,
        rss_kib: rss.max(peak_rss),
        hwm_kib: hwm,
        webhook_storm,
        webhook_storm_kib: webhook_storm_bytes as f64 / 1024.0,
        agent_fetches: fleet.agent_fetches.load(Ordering::SeqCst),
        am_posts: fleet.am_posts.load(Ordering::SeqCst),
        last_fetch_s: fleet
            .agent_fetch_last_ms
            .load(Ordering::SeqCst)
            .saturating_sub(storm_ms) as f64
            / 1000.0,
        other_firing: firing.other_firing,
    }
}

fn print(row: &Row) {
    let s = row.size;
    let agents = s.targets * s.agents;
    let secs = |v: Option<f64>| v.map_or("not all".to_owned(), |v| format!("{v:.1} s"));
    println!(
        "| {} targets × {} agents @ {}s ({} alerts) | {:.1} / {:.1} per s, {:.1} % on time | {} in the file, {} by `ts` ({} of {}; goal ≤ {} s) | {:.2} core (bench {:.2}) | {:.1} MiB peak VmRSS, {:.2} KiB/agent (VmHWM {:.1} MiB) | {} ({:.0} KiB) |",
        s.targets,
        s.agents,
        s.interval_s,
        row.expected,
        row.polls_per_s,
        row.due_per_s,
        row.on_time_pct,
        secs(row.all_fired_seen_s),
        secs(row.all_fired_ts_s),
        row.fired,
        row.expected,
        FOR_S + 2 * s.interval_s,
        row.cpu_cores,
        row.bench_cores,
        row.rss_kib as f64 / 1024.0,
        row.rss_kib as f64 / agents as f64,
        row.hwm_kib as f64 / 1024.0,
        row.webhook_storm,
        row.webhook_storm_kib,
    );
    eprintln!(
        "  {}x{}@{}s: {} stuck lines before it (false positives); {} other firing lines; {} /agents fetches, the last {:.1} s after the storm; {} Alertmanager posts",
        s.targets,
        s.agents,
        s.interval_s,
        row.fired_before_storm,
        row.other_firing,
        row.agent_fetches,
        row.last_fetch_s,
        row.am_posts
    );
}

fn main() {
    raise_fd_limit();
    let sizes = parse_sizes(
        &std::env::var("FLEET_SIZES").unwrap_or_else(|_| "50x10@1s,200x10@1s,1000x10@15s".into()),
    );
    let seconds = std::env::var("FLEET_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let watchdog = std::env::var_os("FLEET_WATCHDOG").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_watchdog")),
        PathBuf::from,
    );
    println!(
        "fleet: {} (FLEET_SECONDS={seconds}, `for` = {FOR_S}s, 90 % of agents idle at the storm)",
        watchdog.display()
    );
    println!("| fleet | polls done / due | all stuck alerts fired after | watchdog CPU | RSS | webhook messages in the storm |");
    println!("|---|---|---|---|---|---|");
    for size in sizes {
        let row = run(size, seconds, &watchdog);
        print(&row);
    }
}
