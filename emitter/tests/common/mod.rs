//! Test fixtures: a real SQLite file with the contract's schema, real child
//! processes that are always killed, and a spawned server on a loopback port.
#![allow(dead_code, clippy::unwrap_used)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use emitter::{ServeOptions, Snapshotter, Source, SqliteSource};
use rusqlite::Connection;
use shared_schema::Envelope;

pub const REQUIRED_TABLES: &str = shared_schema::state::REQUIRED_TABLES_SQL;

pub const OPTIONAL_TABLES: &str = shared_schema::state::OPTIONAL_TABLES_SQL;

/// A database file in its own temporary directory.
pub struct Db {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl Db {
    /// The required tables, plus the optional ones when `optional`.
    pub fn new(optional: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orch.db");
        let db = Self { dir, path };
        let conn = db.writer();
        conn.execute_batch(REQUIRED_TABLES).unwrap();
        if optional {
            conn.execute_batch(OPTIONAL_TABLES).unwrap();
        }
        db
    }

    /// A read-write connection, as the orchestrator would hold.
    pub fn writer(&self) -> Connection {
        Connection::open(&self.path).unwrap()
    }

    pub fn exec(&self, sql: &str) {
        self.writer().execute_batch(sql).unwrap();
    }

    pub fn source(&self) -> SqliteSource {
        SqliteSource::new(&self.path)
    }

    /// Names of the files next to the database (journals would show up here).
    pub fn dir_listing(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

/// One snapshot of `source` with the real `/proc`.
pub fn snapshot(source: impl Source + 'static) -> Envelope {
    Snapshotter::new(Arc::new(source), "/proc").take()
}

/// Serialises and checks the envelope against the contract: zero problems.
pub fn assert_valid(env: &Envelope) -> serde_json::Value {
    let bytes = serde_json::to_vec(env).unwrap();
    assert_valid_bytes(&bytes)
}

pub fn assert_valid_bytes(bytes: &[u8]) -> serde_json::Value {
    let problems = shared_schema::validate(bytes);
    assert!(
        problems.is_empty(),
        "contract problems: {problems:?}\nin {}",
        String::from_utf8_lossy(bytes)
    );
    serde_json::from_slice(bytes).unwrap()
}

/// Child processes killed and reaped when dropped, even when a test fails.
#[derive(Default)]
pub struct Children(pub Vec<Child>);

impl Children {
    pub fn spawn(&mut self, cmd: &mut Command) -> i64 {
        use std::os::unix::process::CommandExt;
        // Each child leads its own process group, so Drop can also kill the
        // grandchildren a shell started (a busy loop must never outlive the test).
        let child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = i64::from(child.id());
        self.0.push(child);
        pid
    }

    pub fn sh(&mut self, script: &str) -> i64 {
        self.spawn(Command::new("sh").arg("-c").arg(script))
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            if let Ok(pgid) = i32::try_from(child.id()) {
                // SAFETY: a plain signal to the process group this child leads.
                unsafe { libc::kill(-pgid, libc::SIGKILL) };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls `cond` until it holds or `limit` passes.
pub fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Independent reading of `/proc/<pid>/stat` fields (1-based field numbers).
pub fn stat_field(pid: i64, field: usize) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &text[text.rfind(')')? + 2..];
    after.split_whitespace().nth(field - 3).map(str::to_owned)
}

/// A running server on a loopback port, stopped when the handle is dropped.
pub struct Server {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Server {
    pub async fn start(source: impl Source + 'static, options: ServeOptions) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async move {
            let _ = rx.await;
        };
        let task = tokio::spawn(emitter::serve(
            listener,
            Arc::new(source),
            options,
            shutdown,
        ));
        Self {
            addr,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Signals shutdown and waits for `serve` to return.
    pub fn stop(&mut self) -> impl Future<Output = ()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let task = self.task.take();
        async move {
            if let Some(task) = task {
                tokio::time::timeout(Duration::from_secs(10), task)
                    .await
                    .expect("serve returns after shutdown")
                    .unwrap()
                    .unwrap();
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

pub fn sha(path: &Path) -> Vec<u8> {
    // Byte equality is what matters; keep the whole content.
    std::fs::read(path).unwrap()
}
