//! `GET /agents/{job_id}` against real processes: a `cat` blocked on a pipe
//! nobody writes, a `sleep`, a shell waiting for its child, a client whose
//! loopback peer closed (CLOSE_WAIT), a file open for writing.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::{wait_until, Children, Db, Server};
use emitter::ServeOptions;
use serde_json::Value;
use shared_schema::{AgentView, FdKind, FdMode};

/// Spawns `cmd` as its own process group leader, killed with `children`.
fn spawn(children: &mut Children, cmd: &mut Command) -> i64 {
    let child = cmd.process_group(0).spawn().unwrap();
    let pid = i64::from(child.id());
    children.0.push(child);
    pid
}

fn wchan(pid: i64) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default()
}

fn state(pid: i64) -> Option<String> {
    common::stat_field(pid, 3)
}

/// One running job per (id, pid).
fn db_with(jobs: &[(i64, Option<i64>)]) -> Db {
    let db = Db::new(true);
    for (id, pid) in jobs {
        let pid = pid.map_or("NULL".to_owned(), |p| p.to_string());
        db.exec(&format!(
            "INSERT INTO jobs (id, status, pid, agent) VALUES ({id}, 'running', {pid}, 'dev');"
        ));
    }
    db.exec("INSERT INTO jobs (id, status, pid) VALUES (99, 'queued', 1);");
    db
}

async fn view(server: &Server, job: i64) -> (AgentView, Value) {
    let resp = reqwest::get(server.url(&format!("/agents/{job}")))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let bytes = resp.bytes().await.unwrap();
    let typed: AgentView = serde_json::from_slice(&bytes).unwrap();
    (typed, serde_json::from_slice(&bytes).unwrap())
}

fn require(program: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "{program} is missing under CI"
        );
        eprintln!("skipped: {program} not found");
    }
    found
}

#[tokio::test]
async fn cat_blocked_on_a_pipe_nobody_writes() {
    if !require("cat") {
        return;
    }
    let mut children = Children::default();
    let pid = spawn(
        &mut children,
        Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    wait_until(Duration::from_secs(10), "cat to block reading", || {
        state(pid).as_deref() == Some("S") && wchan(pid).contains("pipe_read")
    });
    let db = db_with(&[(7, Some(pid))]);
    let server = Server::start(db.source(), ServeOptions::default()).await;
    let (view, raw) = view(&server, 7).await;
    assert_eq!(view.job_id, 7);
    assert_eq!(view.pid, Some(pid));
    assert_eq!(view.schema_version, 1);
    assert_eq!(view.processes.len(), 1, "{raw}");
    let cat = &view.processes[0];
    assert_eq!(cat.pid, pid);
    assert_eq!(cat.ppid, Some(i64::from(std::process::id())));
    assert_eq!(cat.comm.as_deref(), Some("cat"));
    assert_eq!(cat.state.as_deref(), Some("S"));
    assert!(cat.wchan.as_deref().unwrap().contains("pipe_read"), "{raw}");
    assert_eq!(cat.threads, Some(1));
    assert!(
        cat.age_s.is_some_and(|a| (0.0..600.0).contains(&a)),
        "{raw}"
    );
    assert!(cat.cpu_ticks.is_some());
    let stdin = &cat.fds[0];
    assert_eq!(
        (stdin.fd, stdin.kind, stdin.mode),
        (0, FdKind::Pipe, Some(FdMode::Read))
    );
    assert!(stdin.target.as_deref().unwrap().starts_with("pipe:["));
    assert_eq!(raw["processes"][0]["fds"][0]["mode"], "r");
    assert_eq!(raw["processes"][0]["fds"][0]["kind"], "pipe");
    assert!(
        raw["processes"][0]["fds"][0].get("size").is_none(),
        "no size for a pipe"
    );
    assert!(cat.sockets.is_empty());
}

#[tokio::test]
async fn a_shell_waiting_for_its_sleeping_child() {
    if !require("sh") || !require("sleep") {
        return;
    }
    let mut children = Children::default();
    let sh = spawn(
        &mut children,
        Command::new("sh")
            .args(["-c", "sleep 600; echo"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let mut sleeper = 0;
    wait_until(Duration::from_secs(10), "sh to wait for its sleep", || {
        let kids = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i64>().ok())
            .find(|p| common::stat_field(*p, 4).as_deref() == Some(&sh.to_string()));
        if let Some(k) = kids {
            sleeper = k;
        }
        sleeper != 0 && wchan(sh).contains("wait") && state(sleeper).as_deref() == Some("S")
    });
    let db = db_with(&[(8, Some(sh))]);
    let server = Server::start(db.source(), ServeOptions::default()).await;
    let (view, raw) = view(&server, 8).await;
    let pids: Vec<i64> = view.processes.iter().map(|p| p.pid).collect();
    assert_eq!(
        pids,
        vec![sh, sleeper],
        "the agent first, then its child: {raw}"
    );
    let (shell, sleep) = (&view.processes[0], &view.processes[1]);
    assert_eq!(shell.comm.as_deref(), Some("sh"));
    assert_eq!(shell.state.as_deref(), Some("S"));
    let w = shell.wchan.as_deref().unwrap();
    assert!(w.contains("do_wait") || w.contains("kernel_wait4"), "{w}");
    assert_eq!(sleep.comm.as_deref(), Some("sleep"));
    assert_eq!(sleep.ppid, Some(sh));
    assert_eq!(sleep.state.as_deref(), Some("S"));
    assert!(
        sleep.wchan.as_deref().is_some_and(|w| w.contains("sleep")),
        "{raw}"
    );
    // stdin of both is /dev/null: a file path, opened for reading.
    assert_eq!(sleep.fds[0].kind, FdKind::File);
    assert_eq!(sleep.fds[0].target.as_deref(), Some("/dev/null"));
    assert_eq!(sleep.fds[0].mode, Some(FdMode::Read));
    assert_eq!(sleep.fds[0].size, None, "not a regular file");
}

#[tokio::test]
async fn a_client_whose_loopback_peer_closed_is_close_wait() {
    if !require("sleep") {
        return;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server_addr = listener.local_addr().unwrap();
    let client = std::net::TcpStream::connect(server_addr).unwrap();
    let client_addr = client.local_addr().unwrap();
    let (accepted, _) = listener.accept().unwrap();
    let mut children = Children::default();
    // The agent holds the client socket as its stdin.
    let pid = spawn(
        &mut children,
        Command::new("sleep")
            .arg("600")
            .stdin(Stdio::from(OwnedFd::from(client)))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    drop(accepted);
    drop(listener);
    wait_until(
        Duration::from_secs(10),
        "the client socket to reach CLOSE_WAIT",
        || {
            std::fs::read_to_string("/proc/net/tcp")
                .unwrap()
                .lines()
                .any(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    f.get(1)
                        .is_some_and(|a| a.ends_with(&format!(":{:04X}", client_addr.port())))
                        && f.get(3) == Some(&"08")
                })
        },
    );
    let db = db_with(&[(9, Some(pid))]);
    let server = Server::start(db.source(), ServeOptions::default()).await;
    let (view, raw) = view(&server, 9).await;
    let sleep = &view.processes[0];
    assert_eq!(sleep.fds[0].kind, FdKind::Socket, "{raw}");
    assert_eq!(sleep.fds[0].mode, Some(FdMode::ReadWrite));
    assert_eq!(sleep.sockets.len(), 1, "{raw}");
    let s = &sleep.sockets[0];
    assert_eq!(s.fd, 0);
    assert_eq!(s.proto, "tcp");
    assert_eq!(s.state, "CLOSE_WAIT");
    assert_eq!(s.local, client_addr.to_string());
    assert_eq!(s.remote, server_addr.to_string());
}

#[tokio::test]
async fn an_ipv6_connection_is_bracketed() {
    let Ok(listener) = std::net::TcpListener::bind("[::1]:0") else {
        eprintln!("skipped: no IPv6 loopback");
        return;
    };
    if !require("sleep") {
        return;
    }
    let server_addr = listener.local_addr().unwrap();
    let client = std::net::TcpStream::connect(server_addr).unwrap();
    let client_addr = client.local_addr().unwrap();
    let (_accepted, _) = listener.accept().unwrap();
    let mut children = Children::default();
    let pid = spawn(
        &mut children,
        Command::new("sleep")
            .arg("600")
            .stdin(Stdio::from(OwnedFd::from(client)))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    wait_until(Duration::from_secs(10), "sleep to start", || {
        state(pid).as_deref() == Some("S")
    });
    let db = db_with(&[(10, Some(pid))]);
    let server = Server::start(db.source(), ServeOptions::default()).await;
    let (view, raw) = view(&server, 10).await;
    let s = &view.processes[0].sockets;
    assert_eq!(s.len(), 1, "{raw}");
    assert_eq!(s[0].state, "ESTABLISHED");
    assert_eq!(s[0].local, format!("[::1]:{}", client_addr.port()));
    assert_eq!(s[0].remote, format!("[::1]:{}", server_addr.port()));
}

#[tokio::test]
async fn a_regular_file_has_size_and_mtime() {
    if !require("sleep") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("7.jsonl");
    std::fs::write(&path, b"{\"line\":1}\n").unwrap();
    let out = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    let mut children = Children::default();
    let pid = spawn(
        &mut children,
        Command::new("sleep")
            .arg("600")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::null()),
    );
    wait_until(Duration::from_secs(10), "sleep to start", || {
        state(pid).as_deref() == Some("S")
    });
    let db = db_with(&[(11, Some(pid))]);
    let server = Server::start(db.source(), ServeOptions::default()).await;
    let (view, raw) = view(&server, 11).await;
    let stdout = &view.processes[0].fds[1];
    assert_eq!(stdout.kind, FdKind::File, "{raw}");
    assert_eq!(stdout.target.as_deref(), Some(path.to_str().unwrap()));
    assert_eq!(stdout.mode, Some(FdMode::Write));
    assert_eq!(stdout.size, Some(11));
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    assert_eq!(
        raw["processes"][0]["fds"][1]["mtime"],
        shared_schema::Timestamp::from(mtime).to_string()
    );
}

#[tokio::test]
async fn not_running_is_404_and_a_gone_or_unknown_pid_has_no_processes() {
    let db = db_with(&[(1, None), (2, Some(2_000_000_000))]);
    let server = Server::start(db.source(), ServeOptions::default()).await;
    for path in ["/agents/99", "/agents/12345", "/agents/x", "/agents/-1"] {
        let resp = reqwest::get(server.url(path)).await.unwrap();
        assert_eq!(resp.status(), 404, "{path}");
        let text = resp.text().await.unwrap();
        assert!(!text.contains('\n'), "one line: {text}");
        let json: Value = serde_json::from_str(&text).unwrap();
        assert!(
            json["error"].as_str().unwrap().contains("running job"),
            "{json}"
        );
    }
    let (no_pid, raw) = view(&server, 1).await;
    assert_eq!(no_pid.pid, None);
    assert!(no_pid.processes.is_empty());
    assert_eq!(raw["pid"], Value::Null);
    let (dead, _) = view(&server, 2).await;
    assert_eq!(dead.pid, Some(2_000_000_000));
    assert!(dead.processes.is_empty());
    let resp = reqwest::Client::new()
        .post(server.url("/agents/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
}

#[tokio::test]
async fn a_missing_database_is_503_and_never_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.db");
    let server = Server::start(emitter::SqliteSource::new(&path), ServeOptions::default()).await;
    let resp = reqwest::get(server.url("/agents/1")).await.unwrap();
    assert_eq!(resp.status(), 503);
    let json: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert!(
        json["error"].as_str().unwrap().contains("does not exist"),
        "{json}"
    );
    assert!(!path.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// Serves on all interfaces (not loopback) and returns a loopback URL base.
async fn serve_beyond_loopback(
    db: &Db,
    token: Option<&str>,
) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let options = ServeOptions {
        token: token.map(str::to_owned),
        ..ServeOptions::default()
    };
    tokio::spawn(emitter::serve(
        listener,
        Arc::new(db.source()),
        options,
        async move {
            let _ = rx.await;
        },
    ));
    (format!("http://127.0.0.1:{port}"), tx)
}

#[tokio::test]
async fn beyond_loopback_without_a_token_the_view_is_403() {
    let db = db_with(&[(1, Some(i64::from(std::process::id())))]);
    let (base, _stop) = serve_beyond_loopback(&db, None).await;
    let resp = reqwest::get(format!("{base}/agents/1")).await.unwrap();
    assert_eq!(resp.status(), 403);
    let json: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert!(
        json["error"].as_str().unwrap().contains("--token-file"),
        "{json}"
    );
    // The envelope itself is still served.
    assert_eq!(
        reqwest::get(format!("{base}/metrics"))
            .await
            .unwrap()
            .status(),
        200
    );

    let (base, _stop) = serve_beyond_loopback(&db, Some("tok")).await;
    let client = reqwest::Client::new();
    let url = format!("{base}/agents/1");
    assert_eq!(client.get(&url).send().await.unwrap().status(), 401);
    let resp = client.get(&url).bearer_auth("tok").send().await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn the_view_shares_the_rate_limit_of_metrics() {
    let db = db_with(&[(1, None)]);
    let options = ServeOptions {
        rate_limit: Some("2/min".parse().unwrap()),
        ..ServeOptions::default()
    };
    let server = Server::start(db.source(), options).await;
    assert_eq!(
        reqwest::get(server.url("/metrics")).await.unwrap().status(),
        200
    );
    assert_eq!(
        reqwest::get(server.url("/agents/1"))
            .await
            .unwrap()
            .status(),
        200
    );
    let third = reqwest::get(server.url("/agents/1")).await.unwrap();
    assert_eq!(third.status(), 429);
    assert!(third.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn a_stopped_agent_and_its_unreaped_child() {
    if !require("sh") || !require("sleep") {
        return;
    }
    let mut children = Children::default();
    // The shell forks a child that exits at once, then becomes a sleep that never reaps it.
    let pid = spawn(
        &mut children,
        Command::new("sh")
            .args(["-c", "true & exec sleep 600"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let mut zombie = 0;
    wait_until(
        Duration::from_secs(10),
        "the unreaped child to be a zombie",
        || {
            if let Some(z) = std::fs::read_dir("/proc")
                .unwrap()
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<i64>().ok())
                .find(|p| common::stat_field(*p, 4).as_deref() == Some(&pid.to_string()))
            {
                zombie = z;
            }
            zombie != 0
                && state(zombie).as_deref() == Some("Z")
                && std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|c| c.trim() == "sleep")
        },
    );
    // SAFETY: a plain signal to our own child.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGSTOP) }, 0);
    wait_until(Duration::from_secs(10), "the agent to be stopped", || {
        state(pid).as_deref() == Some("T")
    });
    let db = db_with(&[(12, Some(pid))]);
    let server = Server::start(db.source(), ServeOptions::default()).await;
    let (view, raw) = view(&server, 12).await;
    let pids: Vec<i64> = view.processes.iter().map(|p| p.pid).collect();
    assert_eq!(pids, vec![pid, zombie], "{raw}");
    assert_eq!(view.processes[0].state.as_deref(), Some("T"));
    assert_eq!(view.processes[1].state.as_deref(), Some("Z"));
    assert!(
        view.processes[1].fds.is_empty(),
        "a zombie has no fds: {raw}"
    );
}

/// Issue 24 #8: an agent holding 1,500 fds. The view lists the first
/// 1,000 and says how many were left out, so the body stays small (19,500
/// fds gave 1.14 MB, over the watchdog's 1 MiB cap).
#[tokio::test]
async fn a_process_with_many_fds_lists_a_capped_number_and_counts_the_rest() {
    if !require("bash") {
        return;
    }
    let mut children = Children::default();
    let pid = spawn(
        &mut children,
        Command::new("bash")
            .args([
                "-c",
                "ulimit -n 2048 || exit 1; for ((i = 3; i < 1503; i++)); do eval \"exec $i</dev/null\"; done; exec sleep 600",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    wait_until(
        Duration::from_secs(20),
        "bash to open its fds and sleep",
        || {
            std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count) >= 1503
                && std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|c| c.trim() == "sleep")
        },
    );
    let db = db_with(&[(12, Some(pid))]);
    let server = Server::start(db.source(), ServeOptions::default()).await;
    let (view, raw) = view(&server, 12).await;
    let p = &view.processes[0];
    assert_eq!(p.fds.len(), 1000);
    assert_eq!(p.fds_omitted, 1503 - 1000);
    assert_eq!(raw["processes"][0]["fds_omitted"], 503);
    assert_eq!(p.fds[0].fd, 0);
    assert_eq!(p.fds[999].fd, 999);
}
