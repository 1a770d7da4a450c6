//! Real Prometheus and Alertmanager servers (Debian's `prometheus` and
//! `prometheus-alertmanager`), each in its own temporary directory, on a
//! free loopback port, killed on drop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::net;
use crate::procs::Proc;
use crate::stack::tail;

/// A running server with its directory.
#[derive(Debug)]
pub struct Server {
    /// The process.
    pub proc: Proc,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its stdout + stderr.
    pub log: PathBuf,
    dir: tempfile::TempDir,
}

impl Server {
    /// `http://<addr>`.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Its temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The last lines of its log.
    pub fn log_tail(&self) -> String {
        tail(&self.log)
    }
}

/// A server's own temporary directory holding its `config.yml`, a free
/// address and its log file: where every external server here starts.
#[derive(Debug)]
pub struct ServerDir {
    /// The directory (removed on drop).
    pub dir: tempfile::TempDir,
    /// Where the server is to listen.
    pub addr: SocketAddr,
    /// Its stdout + stderr.
    pub log: PathBuf,
}

impl ServerDir {
    /// A directory named `prefix...` with `config` (YAML) as `config.yml`.
    pub fn new(prefix: &str, config: &str) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix(prefix).tempdir()?;
        std::fs::write(dir.path().join("config.yml"), config)?;
        let addr = net::free_addr()?;
        let log = dir.path().join("server.log");
        Ok(Self { dir, addr, log })
    }

    /// `<dir>/<name>`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts `cmd` in the directory with stdin null and stdout and stderr
    /// into the log.
    pub fn spawn(&self, name: &str, cmd: &mut Command) -> anyhow::Result<Proc> {
        let file = std::fs::File::create(&self.log)?;
        cmd.current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(file.try_clone()?))
            .stderr(Stdio::from(file));
        Ok(Proc::spawn(name, cmd)?)
    }
}

fn start(
    name: &str,
    bin: &Path,
    config: &str,
    args: impl Fn(&Path, SocketAddr) -> Vec<String>,
) -> anyhow::Result<Server> {
    let server_dir = ServerDir::new(&format!("e2e-{name}-"), config)?;
    let mut cmd = Command::new(bin);
    cmd.args(args(server_dir.dir.path(), server_dir.addr));
    let mut proc = server_dir.spawn(name, &mut cmd)?;
    let ServerDir { dir, addr, log } = server_dir;
    let ready = format!("http://{addr}/-/ready");
    let waited = net::wait_for(
        &format!("{name} to be ready"),
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            if let Ok(Some(status)) = proc.try_wait() {
                return Err(format!("{name} exited with {status}"));
            }
            match net::get(&ready)? {
                (200, _) => Ok(()),
                (status, body) => Err(format!("HTTP {status}: {body}")),
            }
        },
    );
    if let Err(e) = waited {
        anyhow::bail!("{e}\n{name} log:\n{}", tail(&log));
    }
    Ok(Server {
        proc,
        addr,
        log,
        dir,
    })
}

/// Starts `prometheus` with `config` (YAML) as its config file. Relative
/// `rule_files` are resolved against the temporary directory, so pass
/// absolute paths.
pub fn prometheus(bin: &Path, config: &str) -> anyhow::Result<Server> {
    start("prometheus", bin, config, |dir, addr| {
        vec![
            format!("--config.file={}", dir.join("config.yml").display()),
            format!("--storage.tsdb.path={}", dir.join("data").display()),
            format!("--web.listen-address={addr}"),
            "--log.level=warn".into(),
        ]
    })
}

/// Starts `prometheus-alertmanager` with `config` (YAML), clustering off.
pub fn alertmanager(bin: &Path, config: &str) -> anyhow::Result<Server> {
    start("alertmanager", bin, config, |dir, addr| {
        vec![
            format!("--config.file={}", dir.join("config.yml").display()),
            format!("--storage.path={}", dir.join("data").display()),
            format!("--web.listen-address={addr}"),
            "--cluster.listen-address=".into(),
            "--log.level=warn".into(),
        ]
    })
}

/// Runs an instant PromQL query; the result vector's `(labels, value)` pairs.
pub fn query(prom: &Server, promql: &str) -> Result<Vec<(serde_json::Value, f64)>, String> {
    let resp = net::client()
        .get(format!("{}/api/v1/query", prom.base()))
        .query(&[("query", promql)])
        .send()
        .map_err(|e| e.to_string())?;
    let text = resp.text().map_err(|e| e.to_string())?;
    let body: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
    if body["status"] != "success" {
        return Err(format!("query {promql:?}: {body}"));
    }
    let result = body["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    Ok(result
        .into_iter()
        .filter_map(|r| {
            let value = r["value"][1].as_str()?.parse().ok()?;
            Some((r["metric"].clone(), value))
        })
        .collect())
}
