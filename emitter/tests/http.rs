//! The HTTP face: status codes, headers, host protection, concurrency, the kill-switch.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{assert_valid_bytes, wait_until, Children, Db, Server};
use emitter::{ServeOptions, Session, Source};

fn db_with_a_job() -> Db {
    let db = Db::new(true);
    db.exec("INSERT INTO jobs (id, status, pid) VALUES (1, 'running', 1), (2, 'queued', NULL);");
    db
}

async fn get(client: &reqwest::Client, url: &str) -> reqwest::Response {
    client.get(url).send().await.unwrap()
}

#[tokio::test]
async fn serves_a_valid_envelope_as_json() {
    let db = db_with_a_job();
    let mut server = Server::start(db.source(), ServeOptions::default()).await;
    let client = reqwest::Client::new();
    let resp = get(&client, &server.url("/metrics")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let json = assert_valid_bytes(&resp.bytes().await.unwrap());
    assert_eq!(json["queue"]["depth"], 1);
    assert_eq!(json["agents"][0]["job_id"], 1);
    server.stop().await;
}

#[tokio::test]
async fn other_paths_are_404_and_other_methods_405() {
    let db = db_with_a_job();
    let server = Server::start(db.source(), ServeOptions::default()).await;
    let client = reqwest::Client::new();
    for path in [
        "/",
        "/metrics/",
        "/healthz",
        "/metrics2",
        "/agents",
        "/agents/",
    ] {
        assert_eq!(
            get(&client, &server.url(path)).await.status(),
            404,
            "{path}"
        );
    }
    for method in [
        reqwest::Method::POST,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        let resp = client
            .request(method.clone(), server.url("/metrics"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 405, "{method}");
        assert_eq!(resp.headers()["allow"], "GET, HEAD");
    }
}

#[tokio::test]
async fn a_token_is_required_when_configured() {
    let db = db_with_a_job();
    let options = ServeOptions {
        token: Some("s3cret-token".into()),
        ..ServeOptions::default()
    };
    let server = Server::start(db.source(), options).await;
    let client = reqwest::Client::new();
    let url = server.url("/metrics");
    let none = get(&client, &url).await;
    assert_eq!(none.status(), 401);
    assert_eq!(none.headers()["www-authenticate"], "Bearer");
    for wrong in [
        "Bearer wrong",
        "Bearer s3cret-toke",
        "Bearer s3cret-token2",
        "Basic s3cret-token",
        "s3cret-token",
    ] {
        let resp = client
            .get(&url)
            .header("authorization", wrong)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{wrong}");
        assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    }
    let ok = client
        .get(&url)
        .bearer_auth("s3cret-token")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_valid_bytes(&ok.bytes().await.unwrap());
}

#[tokio::test]
async fn past_the_rate_limit_requests_get_429_with_retry_after() {
    let db = db_with_a_job();
    let options = ServeOptions {
        rate_limit: Some("3/s".parse().unwrap()),
        ..ServeOptions::default()
    };
    let server = Server::start(db.source(), options).await;
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..10 {
        let resp = get(&client, &server.url("/metrics")).await;
        if resp.status() == 429 {
            retry_after = resp
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
        }
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(
        &statuses[..3],
        [200, 200, 200],
        "the burst passes: {statuses:?}"
    );
    assert!(statuses.contains(&429), "{statuses:?}");
    let secs: u64 = retry_after.expect("Retry-After header").parse().unwrap();
    assert!((1..=2).contains(&secs), "{secs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_concurrent_requests_all_succeed() {
    let db = db_with_a_job();
    let server = Server::start(db.source(), ServeOptions::default()).await;
    let client = reqwest::Client::new();
    let url = server.url("/metrics");
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let client = client.clone();
            let url = url.clone();
            tokio::spawn(async move {
                let resp = client.get(&url).send().await.unwrap();
                (resp.status().as_u16(), resp.bytes().await.unwrap())
            })
        })
        .collect();
    for task in tasks {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, 200);
        let json = assert_valid_bytes(&body);
        assert_eq!(json["degraded"], serde_json::json!([]));
    }
}

#[tokio::test]
async fn a_missing_database_still_answers_200_with_every_section_degraded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.db");
    let server = Server::start(emitter::SqliteSource::new(&path), ServeOptions::default()).await;
    let resp = get(&reqwest::Client::new(), &server.url("/metrics")).await;
    assert_eq!(resp.status(), 200);
    let json = assert_valid_bytes(&resp.bytes().await.unwrap());
    assert_eq!(json["degraded"].as_array().unwrap().len(), 6);
    assert!(!path.exists());
}

#[tokio::test]
async fn shutdown_stops_accepting_and_serve_returns() {
    let db = db_with_a_job();
    let mut server = Server::start(db.source(), ServeOptions::default()).await;
    let client = reqwest::Client::new();
    assert_eq!(get(&client, &server.url("/metrics")).await.status(), 200);
    let url = server.url("/metrics");
    server.stop().await;
    assert!(
        client.get(&url).send().await.is_err(),
        "no longer listening"
    );
}

/// The real binary, on a port it picks, with the environment given.
fn spawn_binary(children: &mut Children, db: &Db, env: &[(&str, &str)], extra: &[&str]) -> String {
    spawn_on(children, &db.path, env, extra)
}

/// The real binary over the database at `db` (any path, a FIFO included).
fn spawn_on(children: &mut Children, db: &Path, env: &[(&str, &str)], extra: &[&str]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_emitter"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--db"])
        .arg(db)
        .args(extra)
        .env_remove("ORCH_METRICS_ENABLED")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    children.0.push(child);
    // The startup line names the bound address; keep draining stderr after it.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.split("listen=").nth(1) {
                let _ = tx.send(
                    rest.split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned(),
                );
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the emitter logs its address within 30 s");
    format!("http://{addr}/metrics")
}

#[test]
fn the_kill_switch_gives_exactly_the_disabled_body() {
    let db = db_with_a_job();
    let mut children = Children::default();
    for off in ["false", "0", "NO", "Off"] {
        let url = spawn_binary(&mut children, &db, &[("ORCH_METRICS_ENABLED", off)], &[]);
        let resp = reqwest::blocking_get(&url);
        assert_eq!(resp.0, 200);
        assert_eq!(resp.1, r#"{"schema_version":1,"enabled":false}"#, "{off}");
    }
    let url = spawn_binary(&mut children, &db, &[("ORCH_METRICS_ENABLED", "true")], &[]);
    let (status, body) = reqwest::blocking_get(&url);
    assert_eq!(status, 200);
    assert_valid_bytes(body.as_bytes());

    let out = Command::new(env!("CARGO_BIN_EXE_emitter"))
        .args(["snapshot", "--db"])
        .arg(&db.path)
        .env("ORCH_METRICS_ENABLED", "off")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"{"schema_version":1,"enabled":false}"#
    );
}

#[test]
fn the_binary_reads_its_token_from_a_file_and_stops_on_sigterm() {
    let db = db_with_a_job();
    let token = db.dir.path().join("token");
    std::fs::write(&token, "file-token\n").unwrap();
    let mut children = Children::default();
    let url = spawn_binary(
        &mut children,
        &db,
        &[],
        &[
            "--token-file",
            token.to_str().unwrap(),
            "--rate-limit",
            "100/s",
            "--terminal-stage",
            "x",
        ],
    );
    assert_eq!(reqwest::blocking_get(&url).0, 401);
    assert_eq!(reqwest::blocking_get_with_token(&url, "file-token").0, 200);
    let pid = children.0[0].id() as i32;
    // SAFETY: plain signal to our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let child = &mut children.0[0];
    let mut status = None;
    wait_until(
        Duration::from_secs(10),
        "the emitter to exit after SIGTERM",
        || {
            status = child.try_wait().unwrap();
            status.is_some()
        },
    );
    assert!(status.unwrap().success(), "clean exit: {status:?}");
}

/// Tiny blocking helpers on top of the async client (no blocking feature here).
mod reqwest {
    pub use ::reqwest::*;

    pub fn blocking_get(url: &str) -> (u16, String) {
        run(url, None)
    }

    pub fn blocking_get_with_token(url: &str, token: &str) -> (u16, String) {
        run(url, Some(token))
    }

    fn run(url: &str, token: Option<&str>) -> (u16, String) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut req = Client::new().get(url);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        })
    }
}

#[tokio::test]
async fn a_young_snapshot_is_served_again_only_when_asked() {
    let db = db_with_a_job();
    let client = reqwest::Client::new();
    let generated = |body: &[u8]| {
        assert_valid_bytes(body)["generated_at"]
            .as_str()
            .unwrap()
            .to_owned()
    };

    let options = ServeOptions {
        reuse_snapshot: Duration::from_secs(60),
        ..ServeOptions::default()
    };
    let server = Server::start(db.source(), options).await;
    let first = get(&client, &server.url("/metrics"))
        .await
        .bytes()
        .await
        .unwrap();
    db.exec("INSERT INTO jobs (status) VALUES ('queued');");
    let second = get(&client, &server.url("/metrics"))
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(first, second, "reused within the window");

    // By default every request takes (or joins) a snapshot of its own time.
    let server = Server::start(db.source(), ServeOptions::default()).await;
    let a = get(&client, &server.url("/metrics"))
        .await
        .bytes()
        .await
        .unwrap();
    db.exec("INSERT INTO jobs (status) VALUES ('queued');");
    let b = get(&client, &server.url("/metrics"))
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(assert_valid_bytes(&a)["queue"]["depth"], 2);
    assert_eq!(assert_valid_bytes(&b)["queue"]["depth"], 3);
    assert!(generated(&b) >= generated(&a));
}

/// Issue 15 #6: with `--token-file` and `--rate-limit 20/s`, a client without
/// the token sending ~90 requests/s must not make the authorised polls 429.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unauthorised_flood_does_not_spend_the_authorised_budget() {
    let db = db_with_a_job();
    let options = ServeOptions {
        token: Some("s3cret-tok".into()),
        rate_limit: Some("20/s".parse().unwrap()),
        ..ServeOptions::default()
    };
    let server = Server::start(db.source(), options).await;
    let url = server.url("/metrics");
    let client = reqwest::Client::new();
    let flood = {
        let (client, url) = (client.clone(), url.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(11));
            let mut sent = Vec::new();
            for _ in 0..270 {
                tick.tick().await;
                let (client, url) = (client.clone(), url.clone());
                sent.push(tokio::spawn(async move {
                    client.get(&url).send().await.unwrap().status().as_u16()
                }));
            }
            let mut statuses = Vec::new();
            for s in sent {
                statuses.push(s.await.unwrap());
            }
            statuses
        })
    };
    let mut polls = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    for _ in 0..12 {
        tick.tick().await;
        let resp = client
            .get(&url)
            .bearer_auth("s3cret-tok")
            .send()
            .await
            .unwrap();
        polls.push(resp.status().as_u16());
    }
    let flood = flood.await.unwrap();
    assert_eq!(polls, vec![200; 12], "authorised polls during the flood");
    assert_eq!(flood.len(), 270);
    assert!(flood.iter().all(|s| *s == 401 || *s == 429), "{flood:?}");
    assert!(flood.contains(&401), "the flood sees its 401s");
    assert!(
        flood.iter().filter(|s| **s == 429).count() > 100,
        "the flood is held by its own small bucket: {flood:?}"
    );
}

/// A source whose snapshots never return (an open that blocks for good).
struct Wedged {
    entered: Mutex<std::sync::mpsc::Sender<()>>,
    release: Mutex<std::sync::mpsc::Receiver<()>>,
}

impl Source for Wedged {
    fn session(&self) -> Box<dyn Session + '_> {
        let _ = self.entered.lock().unwrap().send(());
        // Blocks until the test drops the sender.
        let _ = self.release.lock().unwrap().recv();
        panic!("released only when the test is over");
    }
}

/// Issue 15 #7 (exit): a snapshot stuck in the blocking pool must not keep
/// `serve` nor the runtime of `emitter::run` (the binary's) alive.
#[test]
fn a_wedged_snapshot_does_not_keep_the_server_alive() {
    let (entered_tx, entered_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let source = Wedged {
        entered: Mutex::new(entered_tx),
        release: Mutex::new(release_rx),
    };
    let entered_rx = Arc::new(Mutex::new(entered_rx));
    let server = std::thread::spawn(move || {
        emitter::run(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}/metrics", listener.local_addr().unwrap());
            let options = ServeOptions {
                shutdown_grace: Duration::from_millis(300),
                ..ServeOptions::default()
            };
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            let server = tokio::spawn(emitter::serve(
                listener,
                Arc::new(source),
                options,
                async move {
                    let _ = stop_rx.await;
                },
            ));
            let _client = tokio::spawn(async move { reqwest::get(&url).await });
            tokio::task::spawn_blocking(move || {
                entered_rx
                    .lock()
                    .unwrap()
                    .recv_timeout(Duration::from_secs(10))
                    .expect("the snapshot starts")
            })
            .await
            .unwrap();
            stop_tx.send(()).unwrap();
            server.await.unwrap()
        })
    });
    wait_until(
        Duration::from_secs(10),
        "serve and the runtime to return despite the wedged snapshot",
        || server.is_finished(),
    );
    server.join().unwrap().unwrap().unwrap();
    drop(release_tx);
}

/// Issue 15 #7 (exit), with the real binary: `--db` on a FIFO wedges the
/// snapshot in its open; SIGTERM still ends the process within the grace.
#[test]
fn sigterm_exits_within_the_grace_period_while_a_snapshot_is_wedged() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("orch.db");
    match Command::new("mkfifo").arg(&fifo).status() {
        Ok(status) => assert!(status.success()),
        Err(err) => {
            assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "mkfifo: {err}");
            eprintln!("skipped: no mkfifo ({err})");
            return;
        }
    }
    let mut children = Children::default();
    let url = spawn_on(&mut children, &fifo, &[], &["--shutdown-grace", "1s"]);
    let pid = children.0[0].id();
    let request = std::thread::spawn(move || reqwest::blocking_get(&url));
    // Either the snapshot blocks in the FIFO's open (this is the wedge), or
    // a source that refuses FIFOs answers at once: both must exit on SIGTERM.
    let in_fifo_open = || {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|t| {
                std::fs::read_to_string(t.path().join("wchan"))
                    .is_ok_and(|w| w.contains("wait_for_partner") || w.contains("fifo"))
            })
    };
    wait_until(
        Duration::from_secs(10),
        "the snapshot to block on the FIFO (or the request to be answered)",
        || in_fifo_open() || request.is_finished(),
    );
    // SAFETY: plain signal to our own child.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGTERM) }, 0);
    let child = &mut children.0[0];
    let mut status = None;
    wait_until(
        Duration::from_secs(8),
        "the emitter to exit within its 1 s grace after SIGTERM",
        || {
            status = child.try_wait().unwrap();
            status.is_some()
        },
    );
    assert!(status.unwrap().success(), "clean exit: {status:?}");
    // Unblock the leftover open so nothing lingers.
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo);
}

/// Issue 15 #9: `s3cret-tok \n` is the token `s3cret-tok`, as in the watchdog.
#[test]
fn the_token_file_is_trimmed_like_the_watchdogs() {
    let db = db_with_a_job();
    let token = db.dir.path().join("token");
    std::fs::write(&token, "s3cret-tok \n").unwrap();
    let mut children = Children::default();
    let url = spawn_binary(
        &mut children,
        &db,
        &[],
        &["--token-file", token.to_str().unwrap()],
    );
    assert_eq!(reqwest::blocking_get_with_token(&url, "s3cret-tok").0, 200);
    assert_eq!(reqwest::blocking_get(&url).0, 401);
}

/// A token file that is endless, empty or not a file stops the start with
/// a line naming it, at once (never reads /dev/zero without end).
#[test]
fn a_bad_token_file_is_an_error_at_start_that_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("orch.db");
    let empty = dir.path().join("empty-token");
    std::fs::write(&empty, " \n").unwrap();
    for (file, why) in [
        (Path::new("/dev/zero"), "not a regular file"),
        (empty.as_path(), "is empty"),
        (dir.path(), "not a regular file"),
        (Path::new("/nonexistent/token"), "cannot read"),
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_emitter"))
            .args(["serve", "--listen", "127.0.0.1:0", "--db"])
            .arg(&db)
            .arg("--token-file")
            .arg(file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut status = None;
        wait_until(
            Duration::from_secs(10),
            "the emitter to refuse the token file",
            || {
                status = child.try_wait().unwrap();
                status.is_some()
            },
        );
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        assert!(!status.unwrap().success(), "{file:?}");
        assert!(
            err.contains(&file.display().to_string()) && err.contains(why),
            "{file:?}: {err}"
        );
        assert!(!db.exists(), "nothing created");
    }
}

/// A source whose sessions take 200 ms, counting how many run at once.
struct Slow {
    inner: emitter::SqliteSource,
    active: Arc<std::sync::atomic::AtomicUsize>,
    most: Arc<std::sync::atomic::AtomicUsize>,
}

impl Source for Slow {
    fn session(&self) -> Box<dyn Session + '_> {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.active.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(now, SeqCst);
        std::thread::sleep(Duration::from_millis(200));
        self.active.fetch_sub(1, SeqCst);
        self.inner.session()
    }
}

/// Issue 24 #8: 120 up-close requests at once (60 for one job, one each
/// for 60 others) while `/metrics` is polled. Reads of one job are shared,
/// at most `UP_CLOSE_READS` distinct ones run, the rest get 503 with
/// `Retry-After: 1` at once instead of piling up, and every `/metrics`
/// poll during the storm is a 200 within its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_up_close_requests_never_makes_metrics_fail() {
    let mut children = Children::default();
    let sleeper = children.spawn(Command::new("sleep").arg("600"));
    let db = Db::new(true);
    for id in 1..=61 {
        db.exec(&format!(
            "INSERT INTO jobs (id, status, pid, agent) VALUES ({id}, 'running', {sleeper}, 'dev');"
        ));
    }
    let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let slow = Slow {
        inner: db.source(),
        active: Arc::default(),
        most: Arc::clone(&most),
    };
    let server = Arc::new(Server::start(slow, ServeOptions::default()).await);
    let client = reqwest::Client::new();
    let mut storm = Vec::new();
    for i in 0..120 {
        let job = if i % 2 == 0 { 1 } else { 2 + i / 2 };
        let (client, url) = (client.clone(), server.url(&format!("/agents/{job}")));
        storm.push(tokio::spawn(async move {
            let resp = client.get(url).send().await.unwrap();
            let retry = resp
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            (resp.status().as_u16(), retry)
        }));
    }
    for _ in 0..5 {
        let resp = tokio::time::timeout(
            Duration::from_secs(5),
            client.get(server.url("/metrics")).send(),
        )
        .await
        .expect("/metrics answered within 5 s during the storm")
        .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let mut ok = 0;
    for task in storm {
        let (status, retry) = task.await.unwrap();
        match status {
            200 => ok += 1,
            503 => assert_eq!(retry.as_deref(), Some("1")),
            other => panic!("up-close answered {other}"),
        }
    }
    assert!(ok >= 1, "at least the first read was answered");
    // Two up-close reads and one snapshot at most, not one per request.
    let most = most.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        most <= emitter::http::UP_CLOSE_READS + 1,
        "{most} sessions at once"
    );
    // The storm is over: a single request is served again.
    let resp = client.get(server.url("/agents/30")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}
