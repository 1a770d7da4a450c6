//! `agents[i].net_wait` and the up-close socket times against real
//! sockets: a child (bash's `/dev/tcp`) sends a request to a fake model API
//! on loopback that reads it and then never answers, answers and keeps the
//! connection alive, or closes it (CLOSE_WAIT); over IPv6 too; the socket
//! held by a descendant of the agent; a request to the emitter's own
//! listener. Every server binds port 0.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{wait_until, Children, Db, Server};
use emitter::{ServeOptions, Snapshotter};
use shared_schema::{AgentView, Envelope, NetWait};

const LIMIT: Duration = Duration::from_secs(20);

fn require(program: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(std::process::Stdio::null())
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

/// What the fake API does once it has read a request.
#[derive(Clone, Copy)]
enum Answer {
    /// Nothing, ever (the hung model call).
    Never,
    /// A whole HTTP response; the connection stays open (keep-alive).
    Reply,
    /// Closes its end: the client is left in CLOSE_WAIT.
    Close,
}

/// A one-connection fake model API on loopback.
struct FakeApi {
    addr: SocketAddr,
    /// The client's address, once its request was read.
    requests: mpsc::Receiver<SocketAddr>,
    /// Dropped to let the server thread go (it holds the connection till then).
    _stop: mpsc::Sender<()>,
}

impl FakeApi {
    fn start(bind: &str, answer: Answer) -> Option<Self> {
        let listener = TcpListener::bind(bind).ok()?;
        let addr = listener.local_addr().unwrap();
        let (req_tx, requests) = mpsc::channel();
        let (stop, stop_rx) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            let Ok((mut stream, peer)) = listener.accept() else {
                return;
            };
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while !got.windows(4).any(|w| w == b"\r\n\r\n") && got.len() < 65536 {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            match answer {
                Answer::Never => {}
                Answer::Reply => {
                    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                }
                Answer::Close => drop(stream.shutdown(std::net::Shutdown::Write)),
            }
            let _ = req_tx.send(peer);
            // Hold the connection (and the listener) until the test ends.
            let _ = stop_rx.recv();
            drop(stream);
            drop(listener);
        });
        Some(Self {
            addr,
            requests,
            _stop: stop,
        })
    }

    /// The client's address once its request was read (and answered).
    fn request(&self) -> SocketAddr {
        self.requests
            .recv_timeout(LIMIT)
            .expect("the client's request")
    }
}

/// The bash lines that connect to `api`, send a request and keep the socket
/// open (`exec sleep`, so the pid that holds it stays the same), writing
/// `$$` to `pidfile` and, with `read_reply`, the reply's status line to
/// `pidfile.reply`.
fn client_script(api: SocketAddr, pidfile: &Path, read_reply: bool) -> String {
    let host = api.ip().to_string();
    let port = api.port();
    let pidfile = pidfile.display();
    let reply = if read_reply {
        format!("read -r status <&3; echo \"$status\" > {pidfile}.reply.tmp; mv {pidfile}.reply.tmp {pidfile}.reply\n")
    } else {
        String::new()
    };
    format!(
        "exec 3<>/dev/tcp/{host}/{port}\n\
         printf 'POST /v1/messages HTTP/1.1\\r\\nHost: api\\r\\nContent-Length: 2\\r\\n\\r\\n{{}}' >&3\n\
         {reply}echo $$ > {pidfile}.tmp; mv {pidfile}.tmp {pidfile}\n\
         exec sleep 600\n"
    )
}

fn read_pid(path: &Path) -> i64 {
    let mut pid = None;
    wait_until(LIMIT, "the client to write its pid", || {
        pid = std::fs::read_to_string(path)
            .ok()
            .and_then(|t| t.trim().parse().ok());
        pid.is_some()
    });
    pid.unwrap()
}

/// One running job 7 with `pid`, and a snapshotter over it.
fn agent_db(pid: i64) -> (Db, Snapshotter) {
    let db = Db::new(true);
    db.exec(&format!(
        "INSERT INTO jobs (id, status, pid, agent) VALUES (7, 'running', {pid}, 'dev');"
    ));
    let snap = Snapshotter::new(Arc::new(db.source()), "/proc");
    (db, snap)
}

fn net_wait(snap: &Snapshotter) -> (Envelope, Option<NetWait>) {
    let env = snap.take();
    common::assert_valid(&env);
    assert_eq!(env.agents.len(), 1);
    let w = env.agents[0].net_wait.clone();
    (env, w)
}

/// The first snapshot where the agent waits.
fn first_wait(snap: &Snapshotter) -> NetWait {
    let mut found = None;
    wait_until(LIMIT, "net_wait to show the request", || {
        found = net_wait(snap).1;
        found.is_some()
    });
    found.unwrap()
}

/// `sent_ago_s` grows between snapshots while the request stays unanswered.
fn assert_it_grows(snap: &Snapshotter, first: &NetWait) {
    let deadline = Instant::now() + LIMIT;
    loop {
        let (_, w) = net_wait(snap);
        let w = w.expect("still waiting");
        assert_eq!(w.remote, first.remote);
        assert_eq!(w.pid, first.pid);
        if w.sent_ago_s > first.sent_ago_s {
            assert_eq!(w.received_ago_s, None);
            return;
        }
        assert!(
            Instant::now() < deadline,
            "sent_ago_s never grew past {}",
            first.sent_ago_s
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The up-close view of job 7 over HTTP.
async fn view(server: &Server) -> AgentView {
    let resp = reqwest::get(server.url("/agents/7")).await.unwrap();
    assert_eq!(resp.status(), 200);
    serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap()
}

/// The socket of `process` whose local address is `local`.
fn socket_of(view: &AgentView, local: SocketAddr) -> shared_schema::SocketView {
    view.processes
        .iter()
        .flat_map(|p| &p.sockets)
        .find(|s| s.local == local.to_string())
        .cloned()
        .unwrap_or_else(|| panic!("no socket {local} in {view:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_nobody_answers_is_named_and_its_wait_grows() {
    if !require("bash") {
        return;
    }
    let api = FakeApi::start("127.0.0.1:0", Answer::Never).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("client.pid");
    let mut children = Children::default();
    let pid = children.spawn(
        Command::new("bash")
            .arg("-c")
            .arg(client_script(api.addr, &pidfile, false)),
    );
    let client = api.request();
    assert_eq!(read_pid(&pidfile), pid);
    let (db, snap) = agent_db(pid);

    let first = first_wait(&snap);
    assert_eq!(first.remote, format!("127.0.0.1:{}", api.addr.port()));
    assert_eq!(first.pid, Some(pid));
    assert_eq!(first.received_ago_s, None);
    assert!(first.sent_ago_s >= 0.0 && first.sent_ago_s < LIMIT.as_secs_f64());
    assert_it_grows(&snap, &first);

    // The same through HTTP: /metrics carries it, the up-close view has the times.
    let server = Server::start(db.source(), ServeOptions::default()).await;
    let bytes = reqwest::get(server.url("/metrics"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let body = common::assert_valid_bytes(&bytes);
    let w = &body["agents"][0]["net_wait"];
    assert_eq!(w["remote"], first.remote, "{body}");
    assert_eq!(w["pid"], pid);
    assert!(w["received_ago_s"].is_null());
    assert!(w["sent_ago_s"].as_f64().unwrap() >= first.sent_ago_s);
    let s = socket_of(&view(&server).await, client);
    assert_eq!(s.state, "ESTABLISHED");
    assert!(s.sent_ago_s.unwrap() >= first.sent_ago_s);
    assert_eq!(s.received_ago_s, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answered_connection_kept_alive_is_not_waiting() {
    if !require("bash") {
        return;
    }
    let api = FakeApi::start("127.0.0.1:0", Answer::Reply).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("client.pid");
    let mut children = Children::default();
    let pid = children.spawn(
        Command::new("bash")
            .arg("-c")
            .arg(client_script(api.addr, &pidfile, true)),
    );
    let client = api.request();
    assert_eq!(read_pid(&pidfile), pid);
    let reply = std::fs::read_to_string(pidfile.with_extension("pid.reply")).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let (db, snap) = agent_db(pid);
    let server = Server::start(db.source(), ServeOptions::default()).await;
    // The connection is there and both ways carried data...
    let s = socket_of(&view(&server).await, client);
    assert_eq!(s.state, "ESTABLISHED");
    let (sent, received) = (s.sent_ago_s.unwrap(), s.received_ago_s.unwrap());
    assert!(received <= sent, "the reply came after the request: {s:?}");
    // ...and it is not waiting, snapshot after snapshot.
    for _ in 0..3 {
        assert_eq!(net_wait(&snap).1, None);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_the_peer_closed_is_not_waiting() {
    if !require("bash") {
        return;
    }
    let api = FakeApi::start("127.0.0.1:0", Answer::Close).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("client.pid");
    let mut children = Children::default();
    let pid = children.spawn(
        Command::new("bash")
            .arg("-c")
            .arg(client_script(api.addr, &pidfile, false)),
    );
    let client = api.request();
    assert_eq!(read_pid(&pidfile), pid);
    let (db, snap) = agent_db(pid);
    let server = Server::start(db.source(), ServeOptions::default()).await;
    let mut state = String::new();
    let deadline = Instant::now() + LIMIT;
    while state != "CLOSE_WAIT" {
        assert!(
            Instant::now() < deadline,
            "never reached CLOSE_WAIT: {state}"
        );
        state = socket_of(&view(&server).await, client).state;
    }
    // Sent and never answered, but the peer is gone: not a wait.
    assert_eq!(net_wait(&snap).1, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ipv6_request_nobody_answers_is_bracketed() {
    if !require("bash") {
        return;
    }
    let Some(api) = FakeApi::start("[::1]:0", Answer::Never) else {
        eprintln!("skipped: no IPv6 loopback");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("client.pid");
    let mut children = Children::default();
    let pid = children.spawn(
        Command::new("bash")
            .arg("-c")
            .arg(client_script(api.addr, &pidfile, false)),
    );
    api.request();
    assert_eq!(read_pid(&pidfile), pid);
    let (_db, snap) = agent_db(pid);
    let first = first_wait(&snap);
    assert_eq!(first.remote, format!("[::1]:{}", api.addr.port()));
    assert_eq!(first.pid, Some(pid));
    assert_it_grows(&snap, &first);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_descendant_holding_the_socket_is_the_pid() {
    if !require("bash") || !require("sh") {
        return;
    }
    let api = FakeApi::start("127.0.0.1:0", Answer::Never).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("client.pid");
    let script = dir.path().join("client.sh");
    std::fs::write(&script, client_script(api.addr, &pidfile, false)).unwrap();
    let mut children = Children::default();
    // The agent is the shell; the connection is its child's.
    let agent = children.sh(&format!("bash {} & wait", script.display()));
    api.request();
    let holder = read_pid(&pidfile);
    assert_ne!(holder, agent);
    assert_eq!(
        common::stat_field(holder, 4),
        Some(agent.to_string()),
        "a child of the agent"
    );
    let (_db, snap) = agent_db(agent);
    let first = first_wait(&snap);
    assert_eq!(first.pid, Some(holder));
    assert_eq!(first.remote, api.addr.to_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_to_the_emitter_itself_is_not_a_wait() {
    if !require("bash") {
        return;
    }
    let db = Db::new(true);
    let server = Server::start(db.source(), ServeOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("client.pid");
    // Headers never finished: the emitter cannot answer yet.
    let script = format!(
        "exec 3<>/dev/tcp/127.0.0.1/{}\nprintf 'GET /metrics HTTP/1.1\\r\\nHost: e\\r\\n' >&3\necho $$ > {p}.tmp; mv {p}.tmp {p}\nexec sleep 600\n",
        server.addr.port(),
        p = pidfile.display()
    );
    let mut children = Children::default();
    let pid = children.spawn(Command::new("bash").arg("-c").arg(script));
    assert_eq!(read_pid(&pidfile), pid);
    db.exec(&format!(
        "INSERT INTO jobs (id, status, pid, agent) VALUES (7, 'running', {pid}, 'dev');"
    ));
    // By the times alone it waits (sent, nothing back)...
    let mut raw = None;
    wait_until(LIMIT, "the request to be sent", || {
        let s = view_blocking(&server).processes[0].sockets.first().cloned();
        raw = s.filter(|s| s.sent_ago_s.is_some());
        raw.is_some()
    });
    let raw = raw.unwrap();
    assert_eq!(raw.remote, server.addr.to_string());
    assert_eq!(raw.received_ago_s, None);
    // ...but it waits on the emitter, which never names itself.
    let snap = Snapshotter::new(Arc::new(db.source()), "/proc");
    assert_eq!(net_wait(&snap).1, None);
}

/// The up-close view from a plain thread (the test's runtime keeps serving).
fn view_blocking(server: &Server) -> AgentView {
    let url = server.url("/agents/7");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let resp = reqwest::get(url).await.unwrap();
            assert_eq!(resp.status(), 200);
            serde_json::from_slice::<AgentView>(&resp.bytes().await.unwrap()).unwrap()
        })
    })
    .join()
    .unwrap()
}
