//! `watchdog::run::run` in-process: a listener on port 0, fake emitters on
//! tokio sockets, a reload through the channel and a shutdown future, with
//! the alert log read back from its file.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use watchdog::config::{Config, Overrides};

/// An emitter that is down: every request gets a 503. Counts requests.
struct DeadEmitter {
    url: String,
    hits: Arc<AtomicUsize>,
}

async fn dead_emitter() -> DeadEmitter {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/metrics", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                counted.fetch_add(1, Ordering::SeqCst);
                let _ = sock
                    .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    DeadEmitter { url, hits }
}

fn write_config(path: &Path, log: &Path, targets: &[(&str, &str)]) {
    let mut toml = format!(
        "interval = \"100ms\"\ntimeout = \"1s\"\nalert_log = \"{}\"\n\n",
        log.display()
    );
    for (name, url) in targets {
        toml.push_str(&format!(
            "[[target]]\nname = \"{name}\"\nurl = \"{url}\"\n\n"
        ));
    }
    toml.push_str("[rules.target_down]\nfor = \"0s\"\n");
    std::fs::write(path, toml).unwrap();
}

fn log_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn has(lines: &[Value], event: &str, rule: &str, target: &str) -> bool {
    lines
        .iter()
        .any(|l| l["event"] == event && l["rule"] == rule && l["target"] == target)
}

/// Waits (with a deadline) until `cond` holds, else fails with `what`.
async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Running {
    reload: mpsc::Sender<()>,
    stop: oneshot::Sender<()>,
    done: tokio::task::JoinHandle<anyhow::Result<()>>,
    metrics: std::net::SocketAddr,
}

async fn start(config: PathBuf) -> Running {
    let over = Overrides {
        config: Some(config),
        ..Overrides::default()
    };
    let loaded = Config::load(&over).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics = listener.local_addr().unwrap();
    let (reload, reload_rx) = mpsc::channel(1);
    let (stop, stop_rx) = oneshot::channel::<()>();
    let done = tokio::spawn(watchdog::run::run(
        over,
        loaded,
        listener,
        reload_rx,
        async {
            let _ = stop_rx.await;
        },
    ));
    Running {
        reload,
        stop,
        done,
        metrics,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_target_fires_a_reload_swaps_the_loops_and_shutdown_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let (config, log) = (dir.path().join("w.toml"), dir.path().join("alerts.jsonl"));
    let (a, b) = (dead_emitter().await, dead_emitter().await);
    write_config(&config, &log, &[("a", &a.url)]);
    let w = start(config.clone()).await;

    wait_for("target_down firing for a", || {
        has(&log_lines(&log), "firing", "target_down", "a")
    })
    .await;
    // The metrics server answers on the listener it was given.
    assert!(tokio::net::TcpStream::connect(w.metrics).await.is_ok());
    assert_eq!(b.hits.load(Ordering::SeqCst), 0, "b is not a target yet");

    // Reload: a goes (its alert resolves), b comes (its loop starts).
    write_config(&config, &log, &[("b", &b.url)]);
    w.reload.send(()).await.unwrap();
    wait_for("a resolved by the reload and b firing", || {
        let lines = log_lines(&log);
        has(&lines, "resolved", "target_down", "a") && has(&lines, "firing", "target_down", "b")
    })
    .await;
    // a's loop is stopped: b is polled several times more, a at most once
    // (a poll in flight when the reload came is finished).
    let a_then = a.hits.load(Ordering::SeqCst);
    let b_then = b.hits.load(Ordering::SeqCst);
    wait_for("three more polls of b", || {
        b.hits.load(Ordering::SeqCst) >= b_then + 3
    })
    .await;
    assert!(
        a.hits.load(Ordering::SeqCst) <= a_then + 1,
        "a is still polled after the reload removed it"
    );

    let _ = w.stop.send(());
    let ended = tokio::time::timeout(Duration::from_secs(10), w.done)
        .await
        .expect("run ends within 10 s of the shutdown")
        .expect("run's task does not panic");
    assert!(ended.is_ok(), "run ended with {ended:?}");
    // Everything is on disk once run returns; exactly one firing per target.
    let lines = log_lines(&log);
    let firing = |t: &str| {
        lines
            .iter()
            .filter(|l| l["event"] == "firing" && l["target"] == t)
            .count()
    };
    assert_eq!((firing("a"), firing("b")), (1, 1), "{lines:?}");
}

#[tokio::test]
async fn a_bad_reload_keeps_the_old_loops() {
    let dir = tempfile::tempdir().unwrap();
    let (config, log) = (dir.path().join("w.toml"), dir.path().join("alerts.jsonl"));
    let a = dead_emitter().await;
    write_config(&config, &log, &[("a", &a.url)]);
    let w = start(config.clone()).await;
    wait_for("a polled", || a.hits.load(Ordering::SeqCst) >= 1).await;
    std::fs::write(&config, "interval = [not toml").unwrap();
    w.reload.send(()).await.unwrap();
    let then = a.hits.load(Ordering::SeqCst);
    wait_for("a still polled after the refused reload", || {
        a.hits.load(Ordering::SeqCst) >= then + 3
    })
    .await;
    let _ = w.stop.send(());
    let ended = tokio::time::timeout(Duration::from_secs(10), w.done)
        .await
        .expect("run ends after the shutdown")
        .expect("no panic");
    assert!(ended.is_ok(), "{ended:?}");
    assert!(has(&log_lines(&log), "firing", "target_down", "a"));
}
