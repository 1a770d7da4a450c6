//! An Alertmanager HA cluster on loopback: peers of Debian's
//! `prometheus-alertmanager` gossiping with each other (fast `--cluster.*`
//! timings so a test sees failover in seconds), and the webhook receiver
//! behind them that records every notification it gets.
//!
//! Alertmanager's HA contract: every client sends every alert to every
//! peer; the peers gossip their notification log, so a group is notified by
//! one peer (the first in cluster order; the others wait
//! `--cluster.peer-timeout` per position and find it already sent).

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::ext::ServerDir;
use crate::harness::HttpStub;
use crate::net;
use crate::procs::Proc;
use crate::stack::tail;

/// `--cluster.peer-timeout`: how long the second peer waits for the first
/// one's notification to be gossiped before sending itself. Keep the
/// route's `group_interval` above it, or both peers notify.
pub const PEER_TIMEOUT: &str = "1s";

/// One webhook notification as the receiver got it.
#[derive(Debug, Clone)]
pub struct Notification {
    /// When it arrived.
    pub at: Instant,
    /// The parsed body (Alertmanager's webhook payload, version 4).
    pub body: Value,
}

impl Notification {
    /// `groupKey`: one per notification group.
    pub fn group_key(&self) -> &str {
        self.body["groupKey"].as_str().unwrap_or_default()
    }

    /// `status`: `firing` or `resolved`.
    pub fn status(&self) -> &str {
        self.body["status"].as_str().unwrap_or_default()
    }

    /// `externalURL`: which peer sent it.
    pub fn sender(&self) -> &str {
        self.body["externalURL"].as_str().unwrap_or_default()
    }

    /// The alerts it carries.
    pub fn alerts(&self) -> Vec<Value> {
        self.body["alerts"].as_array().cloned().unwrap_or_default()
    }
}

/// A webhook receiver on 127.0.0.1:0 that answers 200 and keeps every
/// notification.
#[derive(Debug)]
pub struct Receiver {
    stub: HttpStub,
    got: Arc<Mutex<Vec<Notification>>>,
}

impl Receiver {
    /// Starts it.
    pub fn start() -> Self {
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&got);
        let stub = HttpStub::start(move |head, conn| {
            let body = read_body(head, conn);
            let parsed = serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null);
            if let Ok(mut all) = sink.lock() {
                all.push(Notification {
                    at: Instant::now(),
                    body: parsed,
                });
            }
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        });
        Self { stub, got }
    }

    /// `http://<addr>/hook`.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.stub.addr())
    }

    /// Every notification so far.
    pub fn all(&self) -> Vec<Notification> {
        self.got.lock().map(|g| g.clone()).unwrap_or_default()
    }
}

/// The body after `head`, by its `Content-Length`.
fn read_body(head: &str, conn: &mut std::net::TcpStream) -> Vec<u8> {
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())
                .flatten()
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len.min(16 << 20)];
    if conn.read_exact(&mut body).is_err() {
        body.clear();
    }
    body
}

/// One running Alertmanager peer.
#[derive(Debug)]
pub struct Peer {
    /// The process.
    pub proc: Proc,
    /// Its HTTP API.
    pub addr: SocketAddr,
    /// Its gossip address.
    pub cluster: SocketAddr,
    /// Its stdout + stderr.
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Peer {
    /// `http://<addr>`: also its `--web.external-url`, so a notification's
    /// `externalURL` names the peer that sent it.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The last lines of its log.
    pub fn log_tail(&self) -> String {
        tail(&self.log)
    }

    /// `GET /api/v2/status`: cluster status and peer count.
    pub fn cluster_status(&self) -> Result<(String, usize), String> {
        let body = net::get_json(&format!("{}/api/v2/status", self.base()))?;
        let status = body["cluster"]["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let peers = body["cluster"]["peers"].as_array().map_or(0, Vec::len);
        Ok((status, peers))
    }

    /// The alerts it holds (active, silenced and inhibited alike).
    pub fn alerts(&self) -> Result<Vec<Value>, String> {
        let body = net::get_json(&format!(
            "{}/api/v2/alerts?active=true&silenced=true&inhibited=true",
            self.base()
        ))?;
        Ok(body.as_array().cloned().unwrap_or_default())
    }
}

/// Starts `n` peers of one cluster, all with `config` (YAML), and waits
/// until every peer sees all `n` members and reports `ready`.
pub fn start(bin: &Path, config: &str, n: usize) -> anyhow::Result<Vec<Peer>> {
    let clusters = (0..n)
        .map(|_| net::free_addr())
        .collect::<std::io::Result<Vec<_>>>()?;
    let mut peers = Vec::new();
    for (i, cluster) in clusters.iter().enumerate() {
        let server_dir = ServerDir::new(&format!("e2e-am-peer{i}-"), config)?;
        let addr = server_dir.addr;
        let mut cmd = Command::new(bin);
        cmd.arg(format!(
            "--config.file={}",
            server_dir.path("config.yml").display()
        ))
        .arg(format!(
            "--storage.path={}",
            server_dir.path("data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .arg(format!("--web.external-url=http://{addr}"))
        .arg(format!("--cluster.listen-address={cluster}"))
        .arg(format!("--cluster.advertise-address={cluster}"))
        .args(
            clusters
                .iter()
                .filter(|c| *c != cluster)
                .map(|c| format!("--cluster.peer={c}")),
        )
        .args([
            format!("--cluster.peer-timeout={PEER_TIMEOUT}"),
            "--cluster.gossip-interval=50ms".into(),
            "--cluster.pushpull-interval=1s".into(),
            "--cluster.probe-interval=200ms".into(),
            "--cluster.probe-timeout=200ms".into(),
            "--cluster.reconnect-interval=1s".into(),
            "--cluster.settle-timeout=5s".into(),
            "--log.level=info".into(),
        ]);
        let proc = server_dir.spawn(&format!("alertmanager peer {i}"), &mut cmd)?;
        let ServerDir { dir, log, .. } = server_dir;
        peers.push(Peer {
            proc,
            addr,
            cluster: *cluster,
            log,
            _dir: dir,
        });
    }
    for peer in &mut peers {
        let waited = net::wait_for(
            "the Alertmanager cluster to form",
            Duration::from_secs(60),
            Duration::from_millis(200),
            || {
                if let Ok(Some(status)) = peer.proc.try_wait() {
                    return Err(format!("exited with {status}"));
                }
                match peer.cluster_status()? {
                    (status, count) if status == "ready" && count == n => Ok(()),
                    (status, count) => Err(format!("{status} with {count} peers")),
                }
            },
        );
        if let Err(e) = waited {
            anyhow::bail!("{e}\n{} log:\n{}", peer.proc.name(), peer.log_tail());
        }
    }
    Ok(peers)
}
