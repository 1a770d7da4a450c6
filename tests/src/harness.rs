//! The few helpers every fault, load and soak test needs: find a binary,
//! a free loopback port, wait on a condition with a deadline, and a child
//! that is killed and reaped when the test ends, pass or fail.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A started process, killed and reaped when dropped.
#[derive(Debug)]
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A workspace binary: `$LOAD_BIN_DIR/<name>` when set (e.g. `target/release`,
/// relative to the workspace root, for release figures), else where
/// [`crate::bins::locate`] finds it. Panics with how to build it.
pub fn bin(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("LOAD_BIN_DIR") {
        let dir = PathBuf::from(dir);
        let dir = if dir.is_absolute() {
            dir
        } else {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(dir)
        };
        let path = dir.join(name);
        assert!(
            path.exists(),
            "{} is missing: build it first",
            path.display()
        );
        return path;
    }
    crate::bins::locate(name).unwrap_or_else(|e| panic!("{e:#}"))
}

/// [`crate::net::free_port`], for tests where a bind failing is the failure.
pub fn free_port() -> u16 {
    crate::net::free_port().unwrap_or_else(|e| panic!("binding 127.0.0.1:0: {e}"))
}

/// [`crate::net::wait_for`] every 20 ms, as a yes or no: whether `cond`
/// held before `limit` passed.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    crate::net::wait_for("the condition", limit, Duration::from_millis(20), || {
        cond().then_some(()).ok_or_else(String::new)
    })
    .is_ok()
}

/// A loopback HTTP/1.1 server for tests that need a scripted emitter: one
/// thread per connection reads the request head and hands it, with the
/// connection, to `respond`, which writes whatever the case needs (a body,
/// half a body, nothing at all). Stopped and joined on drop.
#[derive(Debug)]
pub struct HttpStub {
    addr: std::net::SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpStub {
    /// Binds 127.0.0.1:0 and serves until dropped.
    pub fn start<F>(respond: F) -> Self
    where
        F: Fn(&str, &mut std::net::TcpStream) + Send + Sync + 'static,
    {
        Self::counted(move |_, head, conn| respond(head, conn))
    }

    /// Like [`HttpStub::start`], `respond` also getting the request's
    /// number (0 for the first): for scripted emitters whose answer
    /// depends on how far the polling has got.
    pub fn counted<F>(respond: F) -> Self
    where
        F: Fn(usize, &str, &mut std::net::TcpStream) + Send + Sync + 'static,
    {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::Arc;

        let listener =
            TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("binding 127.0.0.1:0: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("local_addr: {e}"));
        let stop = Arc::new(AtomicBool::new(false));
        let hits = Arc::new(AtomicUsize::new(0));
        let respond = Arc::new(respond);
        let thread = {
            let (stop, hits) = (stop.clone(), hits.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(mut conn) = conn else { continue };
                    let (respond, stop, hits) = (respond.clone(), stop.clone(), hits.clone());
                    std::thread::spawn(move || {
                        let Some(head) = read_head(&mut conn) else {
                            return;
                        };
                        if !stop.load(Ordering::SeqCst) {
                            respond(hits.fetch_add(1, Ordering::SeqCst), &head, &mut conn);
                        }
                    });
                }
            })
        };
        Self {
            addr,
            stop,
            hits,
            thread: Some(thread),
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// How many requests it has answered (or is answering).
    pub fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for HttpStub {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake the accept loop so it sees `stop`.
        let _ = std::net::TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The request head (up to the blank line), or `None` if the client went away.
fn read_head(conn: &mut std::net::TcpStream) -> Option<String> {
    use std::io::Read;
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// Writes a complete `200` JSON response and closes the exchange.
pub fn write_json(conn: &mut std::net::TcpStream, body: &[u8]) {
    use std::io::Write;
    let _ = write!(
        conn,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = conn.write_all(body);
}

/// Now, as the envelope writes its `now` (RFC 3339, milliseconds, `Z`).
pub fn now_rfc3339() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    shared_schema::Timestamp::from_unix_ms(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// The envelope a scripted emitter serves: schema 1, `generated_at` now,
/// `monotonic_ms` counted from `origin`, `running` jobs counted, the
/// breaker open or closed, and no agents, cost, reconciler or errors; one
/// shape, so that each fault test sets only what its case is about.
pub fn fake_envelope(
    boot_id: &str,
    origin: std::time::Instant,
    running: usize,
    breaker_open: bool,
) -> serde_json::Value {
    serde_json::json!({
        "schema_version": 1,
        "generated_at": now_rfc3339(),
        "monotonic_ms": origin.elapsed().as_millis() as u64 + 1_000_000,
        "boot_id": boot_id,
        "host": "fake",
        "clk_tck": 100,
        "degraded": [],
        "stages": [],
        "queue": {
            "counts": {"queued": 0, "running": running, "done": 3, "failed": 0, "cancelled": 0},
            "depth": 0,
            "retries": {"retried_jobs": 0, "total_retries": 0},
            "breaker": {"state": if breaker_open { "open" } else { "closed" },
                        "consecutive_failures": 0, "opened_at": null},
            "max_concurrency": 4,
            "poll_interval": 1.0
        },
        "agents": [],
        "cost": null,
        "reconciler": null,
        "errors": null
    })
}

/// A child's pipe read line by line on its own thread, into the vector
/// returned (so a test can look at what was printed so far).
pub fn collect_lines(pipe: impl Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let out = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            out.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(line);
        }
    });
    lines
}

/// What becomes of a [`RawWatchdog`]'s stdout and stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pipes {
    /// Both read line by line ([`RawWatchdog::stdout`], [`RawWatchdog::stderr_text`]).
    Collected,
    /// stdout a pipe kept open and never read; stderr collected.
    StdoutUnread,
    /// stdout and stderr both on pipes nobody reads (one stuck journald).
    BothUnread,
}

/// How a [`RawWatchdog`] is started.
#[derive(Debug, Clone)]
pub struct RawOptions {
    /// `RUST_LOG`.
    pub rust_log: &'static str,
    /// Its stdout and stderr.
    pub pipes: Pipes,
    /// `RLIMIT_FSIZE` for the child, if any.
    pub fsize_limit: Option<u64>,
}

impl Default for RawOptions {
    fn default() -> Self {
        Self {
            rust_log: "info",
            pipes: Pipes::Collected,
            fsize_limit: None,
        }
    }
}

/// A `watchdog run --config` on a config of the test's own, in a temporary
/// directory, with its output lines collected: the one launcher of the
/// fault and soak tests, which talk to the raw process (its pipes,
/// signals and `/metrics`) rather than to parsed alert lines
/// ([`crate::stack::Watchdog`]).
#[derive(Debug)]
pub struct RawWatchdog {
    /// The process.
    pub proc: crate::procs::Proc,
    /// Its directory (the config, and whatever the test puts there).
    pub dir: tempfile::TempDir,
    /// Where its `/metrics` listens.
    pub listen: std::net::SocketAddr,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    _unread: Option<std::process::ChildStdout>,
    _unread_err: Option<std::process::ChildStderr>,
}

impl RawWatchdog {
    /// Writes `config(dir, listen)` to `dir/watchdog.toml`, starts the
    /// watchdog on it and waits up to 15 s for its `/metrics` (a panic with
    /// its stderr otherwise).
    pub fn start(
        options: &RawOptions,
        config: impl FnOnce(&std::path::Path, std::net::SocketAddr) -> String,
    ) -> Self {
        use std::os::unix::process::CommandExt;
        use std::process::Stdio;

        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let listen = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
        let path = dir.path().join("watchdog.toml");
        std::fs::write(&path, config(dir.path(), listen))
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        let mut cmd = crate::stack::run_command(&bin("watchdog"), &path, options.rust_log);
        cmd.stderr(Stdio::piped());
        if let Some(limit) = options.fsize_limit {
            // SAFETY: runs in the forked child before exec; setrlimit(2) is
            // async-signal-safe and touches no memory of ours.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut proc =
            crate::procs::Proc::spawn("watchdog", &mut cmd).unwrap_or_else(|e| panic!("{e}"));
        let child = proc.child_mut();
        let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
            panic!("the watchdog's pipes");
        };
        let nothing = || Arc::new(Mutex::new(Vec::new()));
        let (stdout, unread, stderr, unread_err) = match options.pipes {
            Pipes::Collected => (collect_lines(out), None, collect_lines(err), None),
            Pipes::StdoutUnread => (nothing(), Some(out), collect_lines(err), None),
            Pipes::BothUnread => (nothing(), Some(out), nothing(), Some(err)),
        };
        let mut w = Self {
            proc,
            dir,
            listen,
            stdout,
            stderr,
            _unread: unread,
            _unread_err: unread_err,
        };
        let up = wait_until(Duration::from_secs(15), || w.metrics().is_some());
        if !up {
            let status = w.proc.try_wait().ok().flatten();
            panic!(
                "watchdog did not serve /metrics within 15 s (exit {status:?}); stderr:\n{}",
                w.stderr_text()
            );
        }
        w.assert_alive();
        w
    }

    /// A path in its directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The pid.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// (status, body) of `GET path` on its listener, or `None` when there
    /// is no answer in 5 s.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        use std::io::Write;
        let mut s =
            std::net::TcpStream::connect_timeout(&self.listen, Duration::from_secs(2)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut raw = String::new();
        s.read_to_string(&mut raw).ok()?;
        let status = raw.get(9..12)?.parse().ok()?;
        let body = raw.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
        Some((status, body))
    }

    /// The `/metrics` page, when it answers 200.
    pub fn metrics(&self) -> Option<String> {
        self.get("/metrics")
            .and_then(|(status, body)| (status == 200).then_some(body))
    }

    /// The sum of the samples whose line starts with `prefix` (0 without a page).
    pub fn metric_sum(&self, prefix: &str) -> f64 {
        self.metrics()
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// The value of the first sample whose line starts with `prefix`.
    pub fn gauge(&self, prefix: &str) -> Option<f64> {
        self.metrics()?
            .lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    /// Every stdout line so far.
    pub fn stdout(&self) -> Vec<String> {
        self.stdout
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Its stderr so far.
    pub fn stderr_text(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .join("\n")
    }

    /// Panics (with its stderr) if it has exited.
    pub fn assert_alive(&mut self) {
        if let Ok(Some(status)) = self.proc.try_wait() {
            panic!(
                "watchdog exited ({status}); stderr:\n{}",
                self.stderr_text()
            );
        }
    }

    /// Waits until `cond` holds over the stdout lines; panics with both
    /// pipes' text if it does not within `limit` or the watchdog died.
    pub fn wait_stdout(&mut self, what: &str, limit: Duration, cond: impl Fn(&[String]) -> bool) {
        let ok = wait_until(limit, || cond(&self.stdout()));
        self.assert_alive();
        assert!(
            ok,
            "no {what} within {limit:?}; stdout:\n{}\nstderr:\n{}",
            self.stdout().join("\n"),
            self.stderr_text()
        );
    }

    /// SIGHUP.
    pub fn reload(&self) {
        self.proc
            .signal(libc::SIGHUP)
            .unwrap_or_else(|e| panic!("SIGHUP: {e}"));
    }

    /// SIGTERM, then the exit status within `limit` (`None`: still running).
    pub fn terminate(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        self.proc
            .signal(libc::SIGTERM)
            .unwrap_or_else(|e| panic!("SIGTERM: {e}"));
        let mut status = None;
        wait_until(limit, || {
            status = self.proc.try_wait().ok().flatten();
            status.is_some()
        });
        status
    }
}
