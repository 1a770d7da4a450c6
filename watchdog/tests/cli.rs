//! End-to-end runs of the real `watchdog` binary against a scripted HTTP
//! server on 127.0.0.1:0: exit codes of `check` and `validate`, config
//! errors naming key and file, the live loop's alert log, the state file
//! across a restart, SIGHUP reload, `--record` and `replay`.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shared_schema::{AlertEvent, AlertLine};

const BIN: &str = env!("CARGO_BIN_EXE_watchdog");

/// What the scripted server answers.
#[derive(Debug, Clone)]
enum Reply {
    /// This envelope, its clocks (`generated_at`, `monotonic_ms`) set to now.
    Json(Value),
    /// This envelope exactly (a frozen emitter).
    Frozen(Value),
    Status(u16),
    Garbage,
    Endless,
}

#[derive(Debug, Clone)]
struct Server {
    addr: SocketAddr,
    reply: Arc<Mutex<Reply>>,
    hits: Arc<AtomicUsize>,
    started: Instant,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start(reply: Reply) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server = Self {
            addr: listener.local_addr().unwrap(),
            reply: Arc::new(Mutex::new(reply)),
            hits: Arc::new(AtomicUsize::new(0)),
            started: Instant::now(),
            heads: Arc::new(Mutex::new(Vec::new())),
        };
        let s = server.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let s = s.clone();
                std::thread::spawn(move || s.answer(conn));
            }
        });
        server
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn set(&self, reply: Reply) {
        *self.reply.lock().unwrap() = reply;
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn answer(&self, mut conn: TcpStream) {
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            match conn.read(&mut byte) {
                Ok(1) => buf.push(byte[0]),
                _ => return,
            }
        }
        self.heads
            .lock()
            .unwrap()
            .push(String::from_utf8_lossy(&buf).into_owned());
        self.hits.fetch_add(1, Ordering::SeqCst);
        let reply = self.reply.lock().unwrap().clone();
        let _ = match reply {
            Reply::Json(mut v) => {
                if v.get("generated_at").is_some() {
                    v["generated_at"] = json!(now_rfc3339());
                    v["monotonic_ms"] = json!(self.started.elapsed().as_millis() as u64 + 1000);
                }
                respond(&mut conn, 200, v.to_string().as_bytes())
            }
            Reply::Frozen(v) => respond(&mut conn, 200, v.to_string().as_bytes()),
            Reply::Status(code) => respond(&mut conn, code, b"{\"error\":\"boom\"}"),
            Reply::Garbage => respond(&mut conn, 200, b"<html>not json"),
            Reply::Endless => {
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n";
                let chunk = vec![b' '; 64 * 1024];
                let mut r = conn.write_all(head.as_bytes());
                while r.is_ok() {
                    r = conn.write_all(&chunk);
                }
                r
            }
        };
    }
}

fn respond(conn: &mut TcpStream, code: u16, body: &[u8]) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes())?;
    conn.write_all(body)
}

/// A calm envelope that fits the contract; `breaker` sets the breaker state.
fn envelope(generated_at: &str, breaker: &str, queued: u64) -> Value {
    json!({
        "schema_version": 1,
        "generated_at": generated_at,
        "monotonic_ms": 1000,
        "boot_id": "b",
        "host": "h",
        "clk_tck": 100,
        "degraded": [],
        "stages": [],
        "queue": {
            "counts": {"queued": queued, "running": 1, "done": 0, "failed": 0, "cancelled": 0},
            "depth": queued,
            "retries": null,
            "breaker": {"state": breaker, "consecutive_failures": 3, "opened_at": null},
            "max_concurrency": 2,
            "poll_interval": 1.0
        },
        "agents": [],
        "cost": null,
        "reconciler": null,
        "errors": null
    })
}

fn now_rfc3339() -> String {
    shared_schema::Timestamp::now().to_string()
}

fn watchdog(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

// ---- check ----

#[test]
fn check_exit_codes_follow_the_worst_alert() {
    let s = Server::start(Reply::Json(envelope(&now_rfc3339(), "closed", 0)));
    let ok = watchdog(&["check", "--target", &s.url(), "--interval", "50ms"]);
    assert_eq!(ok.status.code(), Some(0), "{}", stdout(&ok));
    assert!(
        stdout(&ok).starts_with("OK: 0 critical, 0 warning on 127.0.0.1:"),
        "{}",
        stdout(&ok)
    );
    assert!(
        stdout(&ok).contains("| critical=0 warning=0 agents=0 queue_depth=0"),
        "{}",
        stdout(&ok)
    );

    s.set(Reply::Json(envelope(&now_rfc3339(), "closed", 80)));
    let warn = watchdog(&["check", "--target", &s.url(), "--interval", "50ms"]);
    assert_eq!(warn.status.code(), Some(1), "{}", stdout(&warn));
    assert!(
        stdout(&warn).contains("WARNING queue_depth"),
        "{}",
        stdout(&warn)
    );

    s.set(Reply::Json(envelope(&now_rfc3339(), "open", 0)));
    let crit = watchdog(&["check", "--target", &s.url(), "--interval", "50ms"]);
    assert_eq!(crit.status.code(), Some(2), "{}", stdout(&crit));
    assert!(
        stdout(&crit).contains("CRITICAL breaker_open"),
        "{}",
        stdout(&crit)
    );

    s.set(Reply::Frozen(envelope(&now_rfc3339(), "closed", 0)));
    let stale = watchdog(&["check", "--target", &s.url(), "--interval", "50ms"]);
    assert_eq!(stale.status.code(), Some(1), "{}", stdout(&stale));
    assert!(
        stdout(&stale).contains("WARNING target_stale"),
        "{}",
        stdout(&stale)
    );
}

#[test]
fn check_reports_a_newer_schema_as_critical_schema_incompatible() {
    let s = Server::start(Reply::Json(
        json!({"schema_version": 2, "generated_at": now_rfc3339()}),
    ));
    let o = watchdog(&["check", "--target", &s.url(), "--interval", "10ms"]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    // The plugin status line first (CONTRACT.md section 5), then the alert.
    let out = stdout(&o);
    let mut lines = out.lines();
    let first = lines.next().unwrap_or_default();
    assert!(
        first.starts_with("CRITICAL: 1 critical, 0 warning on 127.0.0.1:")
            && first.ends_with("| critical=1 warning=0 agents=0"),
        "{out}"
    );
    assert!(
        lines
            .next()
            .unwrap_or_default()
            .starts_with("CRITICAL schema_incompatible: "),
        "{out}"
    );
    assert!(out.contains("schema_version 2"), "{out}");
}

#[test]
fn check_is_unknown_when_unreachable_or_invalid() {
    let s = Server::start(Reply::Status(500));
    for (reply, what) in [
        (Reply::Status(500), "500"),
        (Reply::Garbage, "unparsable"),
        (Reply::Endless, "larger than 32 MiB"),
    ] {
        s.set(reply);
        let o = watchdog(&[
            "check",
            "--target",
            &s.url(),
            "--interval",
            "10ms",
            "--timeout",
            "20s",
        ]);
        assert_eq!(o.status.code(), Some(3), "{what}: {}", stdout(&o));
        assert!(stdout(&o).contains(what), "{what}: {}", stdout(&o));
    }
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let o = watchdog(&[
        "check",
        "--target",
        &format!("http://{dead}"),
        "--interval",
        "10ms",
    ]);
    assert_eq!(o.status.code(), Some(3));
    assert!(stdout(&o).starts_with("UNKNOWN"), "{}", stdout(&o));
}

// ---- validate ----

#[test]
fn validate_lists_every_problem_and_sets_the_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.json");
    std::fs::write(&good, envelope(&now_rfc3339(), "closed", 0).to_string()).unwrap();
    let o = watchdog(&["validate", good.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert_eq!(stdout(&o), "");

    let mut bad = envelope(&now_rfc3339(), "ajar", 0);
    bad["clk_tck"] = json!("100");
    let path = dir.path().join("bad.json");
    std::fs::write(&path, bad.to_string()).unwrap();
    let o = watchdog(&["validate", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(out.lines().any(|l| l.starts_with("clk_tck: ")), "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("queue.breaker.state: ")),
        "{out}"
    );

    let s = Server::start(Reply::Json(envelope(&now_rfc3339(), "closed", 0)));
    assert_eq!(watchdog(&["validate", &s.url()]).status.code(), Some(0));
    s.set(Reply::Status(503));
    let o = watchdog(&["validate", &s.url()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("503"), "{}", stdout(&o));
    let o = watchdog(&[
        "validate",
        dir.path().join("missing.json").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("cannot read"), "{}", stdout(&o));

    let mut child = Command::new(BIN)
        .args(["validate", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"[1,2]").unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).starts_with("$: "), "{}", stdout(&o));
}

// ---- config ----

#[test]
fn config_errors_name_the_key_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    for (text, key) in [
        ("intervall = \"15s\"\n", "intervall"),
        ("[rules.stuck_agent]\ncpu_flor = 0.1\n", "cpu_flor"),
        ("[rules.no_such_rule]\n", "no_such_rule"),
        ("[[target]]\nurl = \"http://x:1\"\nnmae = \"a\"\n", "nmae"),
        ("interval = \"fast\"\n", "interval"),
    ] {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, text).unwrap();
        let o = watchdog(&["run", "--config", path.to_str().unwrap(), "--print-config"]);
        assert_eq!(o.status.code(), Some(2), "{text}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(key) && err.contains(path.to_str().unwrap()),
            "{text}: {err}"
        );
    }
}

/// Issue 11 item 6, issue 15 #10 and #13: the whole config, `[notify]`
/// included, is checked at load; every error exits 2 in `run`,
/// `--print-config` and `replay`, names the file and the key, and never
/// shows a password.
#[test]
fn every_config_error_exits_2_in_every_command_naming_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("empty.jsonl");
    std::fs::write(&record, "").unwrap();
    for (text, key) in [
        // [notify] used to pass --print-config and make `run` exit 1.
        (
            "[[notify.webhook]]\nurl = \"ftp://hooks.example/x\"\n",
            "notify.webhook",
        ),
        (
            "[[notify.webhook]]\nurl = \"http://h:1/\"\nrate = \"10/week\"\n",
            "rate",
        ),
        (
            "[notify.alertmanager]\nurl = \"http://am:99999\"\n",
            "notify.alertmanager",
        ),
        ("[notify]\nrepeat_interval = \"400days\"\n", "30 days"),
        // An absurd duration used to be accepted and panic at shutdown.
        ("timeout = \"300000000000y\"\n", "timeout"),
        ("interval = \"31days\"\n", "interval"),
        ("[rules.stuck_agent]\nfor = \"90days\"\n", "for"),
        (
            "[rules.stuck_agent]\nper_agent = { reviewer = { cpu_flor = 0.1 } }\n",
            "cpu_flor",
        ),
        // Target URLs are checked at load, and shown redacted.
        (
            "[[target]]\nurl = \"http://admin:hunter2@h:99999/metrics\"\n",
            "url",
        ),
        (
            "[[target]]\nurl = \"http://admin:hunter2@/metrics\"\n",
            "url",
        ),
        (
            "[[target]]\nurl = \"http://h:1\"\ntoken_file = \"/dev/zero\"\n",
            "token_file",
        ),
        // A TOML error quotes its line; the password in it is masked.
        (
            "[[target]]\nurl = \"http://admin:hunter2@h:1\" junk\n",
            "bad.toml",
        ),
    ] {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, text).unwrap();
        let p = path.to_str().unwrap();
        for args in [
            vec!["run", "--config", p, "--print-config"],
            vec!["run", "--config", p, "--listen", "127.0.0.1:0"],
            vec!["replay", record.to_str().unwrap(), "--config", p],
        ] {
            let started = std::time::Instant::now();
            let o = watchdog(&args);
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(2), "{args:?} {text}: {err}");
            assert!(
                err.contains(key) && err.contains(p),
                "{args:?} {text}: {err}"
            );
            assert!(!err.contains("hunter2"), "{args:?} leaks: {err}");
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{args:?} {text}"
            );
        }
    }
}

#[test]
fn a_bad_target_flag_never_shows_its_password() {
    // `run` exits 2 with the error; `check` says UNKNOWN (exit 3) on stdout.
    for spec in [
        "ftp://u:hunter2@h:1/metrics",
        "orch=http://u:hunter2@h:0/metrics",
        "http://u:hunter2@h:99999",
    ] {
        for (args, code) in [
            (vec!["run", "--target", spec, "--print-config"], 2),
            (vec!["run", "--target", spec, "--listen", "127.0.0.1:0"], 2),
            (vec!["check", "--target", spec], 3),
        ] {
            let o = watchdog(&args);
            let said = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            assert_eq!(o.status.code(), Some(code), "{args:?}: {said}");
            assert!(
                said.contains("--target ") && said.contains("***@h:"),
                "{args:?}: {said}"
            );
            assert!(!said.contains("hunter2"), "{args:?} leaks: {said}");
        }
    }
}

#[test]
fn print_config_shows_effective_values_and_never_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "very-secret-token\n").unwrap();
    let path = dir.path().join("w.toml");
    std::fs::write(
        &path,
        format!(
            "interval = \"30s\"\n[[target]]\nname = \"orch-1\"\nurl = \"http://127.0.0.1:9464\"\ntoken_file = \"{}\"\n[rules.stuck_agent]\nfor = \"15m\"\n",
            token.display()
        ),
    )
    .unwrap();
    let o = watchdog(&[
        "run",
        "--config",
        path.to_str().unwrap(),
        "--interval",
        "5s",
        "--print-config",
    ]);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    assert!(!out.contains("very-secret-token"), "{out}");
    assert!(
        out.contains("interval = \"5s\""),
        "flag overrides file: {out}"
    );
    assert!(
        out.contains("url = \"http://127.0.0.1:9464/metrics\""),
        "{out}"
    );
    let parsed: toml::Table = toml::from_str(&out).unwrap();
    assert_eq!(parsed["rules"]["stuck_agent"]["for"].as_str(), Some("15m"));
    assert_eq!(
        parsed["rules"]["stuck_agent"]["cpu_floor"].as_float(),
        Some(0.02)
    );
}

// ---- run ----

/// A running `watchdog run` whose stdout lines are collected.
struct Running {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Running {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                l.lock().unwrap().push(line);
            }
        });
        Self { child, lines }
    }

    fn alerts(&self) -> Vec<AlertLine> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    fn stop(mut self) -> i32 {
        self.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "watchdog did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn events(alerts: &[AlertLine], rule: &str) -> Vec<AlertEvent> {
    alerts
        .iter()
        .filter(|a| a.rule == rule)
        .map(|a| a.event)
        .collect()
}

fn file_alerts(path: &Path) -> Vec<AlertLine> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn run_writes_the_alert_log_and_keeps_a_firing_alert_across_a_restart() {
    let s = Server::start(Reply::Json(envelope(&now_rfc3339(), "open", 0)));
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("alerts.jsonl");
    let state = dir.path().join("state.json");
    let record = dir.path().join("record.jsonl");
    let target = format!("orch-1={}", s.url());
    let args = [
        "run",
        "--target",
        &target,
        "--interval",
        "100ms",
        "--listen",
        "127.0.0.1:0",
        "--alert-log",
        log.to_str().unwrap(),
        "--state-file",
        state.to_str().unwrap(),
        "--record",
        record.to_str().unwrap(),
    ];
    let w = Running::start(&args);
    wait_for("breaker_open firing on stdout", || {
        events(&w.alerts(), "breaker_open") == [AlertEvent::Firing]
    });
    let line = w
        .alerts()
        .into_iter()
        .find(|a| a.rule == "breaker_open")
        .unwrap();
    assert_eq!(line.key, "breaker_open|orch-1");
    assert_eq!(line.target, "orch-1");
    // stdout is written first, the file right after: wait for both to agree.
    wait_for("the file to hold what stdout shows", || {
        file_alerts(&log) == w.alerts()
    });
    wait_for("a few more polls", || s.hits() >= 4);
    assert_eq!(w.stop(), 0);
    assert!(state.exists(), "state file written on shutdown");
    let recorded = std::fs::read_to_string(&record).unwrap();
    let first: shared_schema::RecordLine =
        serde_json::from_str(recorded.lines().next().unwrap()).unwrap();
    assert_eq!(first.target, "orch-1");

    // Restart: the alert is still firing, so no second `firing` line.
    let hits = s.hits();
    let w = Running::start(&args);
    wait_for("polls after the restart", || s.hits() >= hits + 4);
    // The breaker closes: the one alert resolves.
    s.set(Reply::Json(envelope(&now_rfc3339(), "closed", 0)));
    wait_for("breaker_open resolved", || {
        events(&w.alerts(), "breaker_open") == [AlertEvent::Resolved]
    });
    assert_eq!(w.stop(), 0);
    assert_eq!(
        events(&file_alerts(&log), "breaker_open"),
        [AlertEvent::Firing, AlertEvent::Resolved],
        "one firing line over both runs"
    );

    // The recording replays to the same firing line, deterministically.
    let a = watchdog(&["replay", record.to_str().unwrap()]);
    let b = watchdog(&["replay", record.to_str().unwrap()]);
    assert_eq!(a.status.code(), Some(0));
    assert_eq!(stdout(&a), stdout(&b));
    let replayed: Vec<AlertLine> = stdout(&a)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events(&replayed, "breaker_open")[0], AlertEvent::Firing);
}

#[test]
fn a_failing_target_fires_target_down_and_never_delays_another() {
    let dead = Server::start(Reply::Status(500));
    let slow = Server::start(Reply::Endless);
    let good = Server::start(Reply::Json(envelope(&now_rfc3339(), "closed", 0)));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("w.toml");
    std::fs::write(
        &config,
        format!(
            "interval = \"100ms\"\ntimeout = \"5s\"\nlisten = \"127.0.0.1:0\"\n\
             [[target]]\nname = \"dead\"\nurl = \"{}\"\n\
             [[target]]\nname = \"slow\"\nurl = \"{}\"\n\
             [[target]]\nname = \"good\"\nurl = \"{}\"\n\
             [rules.target_down]\nfor = \"0s\"\n",
            dead.url(),
            slow.url(),
            good.url()
        ),
    )
    .unwrap();
    let w = Running::start(&["run", "--config", config.to_str().unwrap()]);
    wait_for("target_down for dead", || {
        w.alerts()
            .iter()
            .any(|a| a.rule == "target_down" && a.target == "dead")
    });
    // While `slow` streams an endless body, `good` keeps being polled.
    let before = good.hits();
    wait_for("good polled again", || good.hits() >= before + 5);
    let down = w.alerts().into_iter().find(|a| a.target == "dead").unwrap();
    assert!(down.summary.contains("500"), "{}", down.summary);
    assert!(
        w.alerts().iter().all(|a| a.target != "good"),
        "{:?}",
        w.alerts()
    );
    assert_eq!(w.stop(), 0);
}

#[test]
fn sighup_reloads_rules_and_rejects_a_bad_config() {
    let s = Server::start(Reply::Json(envelope(&now_rfc3339(), "open", 0)));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("w.toml");
    let base = format!(
        "interval = \"100ms\"\nlisten = \"127.0.0.1:0\"\n[[target]]\nname = \"o\"\nurl = \"{}\"\n",
        s.url()
    );
    std::fs::write(&config, &base).unwrap();
    let w = Running::start(&["run", "--config", config.to_str().unwrap()]);
    wait_for("breaker_open firing", || {
        events(&w.alerts(), "breaker_open") == [AlertEvent::Firing]
    });

    // A bad config is rejected and the old one keeps running.
    std::fs::write(&config, format!("{base}[rules.nope]\n")).unwrap();
    w.signal("HUP");
    let hits = s.hits();
    wait_for("polling goes on", || s.hits() >= hits + 5);
    assert_eq!(events(&w.alerts(), "breaker_open"), [AlertEvent::Firing]);

    // Turning the rule off resolves its alert; queue_depth at 0s now fires.
    std::fs::write(
        &config,
        format!("{base}[rules.breaker_open]\nenabled = false\n"),
    )
    .unwrap();
    w.signal("HUP");
    wait_for("breaker_open resolved by the reload", || {
        events(&w.alerts(), "breaker_open") == [AlertEvent::Firing, AlertEvent::Resolved]
    });
    assert_eq!(w.stop(), 0);
}

#[test]
fn systemd_hears_ready_status_and_watchdog_pings() {
    use std::os::unix::net::UnixDatagram;
    let s = Server::start(Reply::Json(envelope(&now_rfc3339(), "closed", 0)));
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut child = Command::new(BIN)
        .args([
            "run",
            "--target",
            &s.url(),
            "--interval",
            "100ms",
            "--listen",
            "127.0.0.1:0",
        ])
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "400000")
        .env_remove("WATCHDOG_PID")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut heard = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 4096];
    while !(heard.contains("READY=1")
        && heard.contains("WATCHDOG=1")
        && heard.contains("STATUS=1/1 targets up"))
    {
        assert!(Instant::now() < deadline, "heard only: {heard}");
        if let Ok(n) = sock.recv(&mut buf) {
            heard.push_str(&String::from_utf8_lossy(&buf[..n]));
            heard.push('\n');
        }
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn the_bearer_token_is_sent_and_never_logged() {
    let s = Server::start(Reply::Json(envelope(&now_rfc3339(), "closed", 0)));
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "tok-123-secret\n").unwrap();
    let config = dir.path().join("w.toml");
    std::fs::write(
        &config,
        format!(
            "interval = \"100ms\"\nlisten = \"127.0.0.1:0\"\n[[target]]\nname = \"o\"\nurl = \"{}\"\ntoken_file = \"{}\"\n",
            s.url(),
            token.display()
        ),
    )
    .unwrap();
    let err_path = dir.path().join("stderr.log");
    let mut child = Command::new(BIN)
        .args(["run", "--config", config.to_str().unwrap()])
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    wait_for("two polls", || s.hits() >= 2);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let heads = s.heads.lock().unwrap().clone();
    assert!(heads[0].starts_with("GET /metrics "), "{}", heads[0]);
    assert!(
        heads[0]
            .to_ascii_lowercase()
            .contains("authorization: bearer tok-123-secret\r\n"),
        "{}",
        heads[0]
    );
    let logged = std::fs::read_to_string(&err_path).unwrap();
    assert!(logged.contains("polling"), "{logged}");
    assert!(!logged.contains("tok-123-secret"), "{logged}");
}

#[test]
fn lines_a_sink_gives_up_on_come_back_as_dropped_lines_in_the_log() {
    let s = Server::start(Reply::Json(envelope(&now_rfc3339(), "open", 0)));
    let dead_sink = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("alerts.jsonl");
    let config = dir.path().join("w.toml");
    std::fs::write(
        &config,
        format!(
            "interval = \"100ms\"\nlisten = \"127.0.0.1:0\"\nalert_log = \"{}\"\n\
             [[target]]\nname = \"o\"\nurl = \"{}\"\n\
             [[notify.webhook]]\nurl = \"http://{dead_sink}/hook\"\nmax_retries = 0\n",
            log.display(),
            s.url()
        ),
    )
    .unwrap();
    let w = Running::start(&["run", "--config", config.to_str().unwrap()]);
    wait_for("a dropped line for the firing alert", || {
        file_alerts(&log)
            .iter()
            .any(|a| a.event == AlertEvent::Dropped)
    });
    let lines = file_alerts(&log);
    let dropped = lines
        .iter()
        .find(|a| a.event == AlertEvent::Dropped)
        .unwrap();
    assert_eq!(dropped.key, "breaker_open|o");
    assert_eq!(dropped.sink.as_deref(), Some("webhook[0]"));
    wait_for("the dropped line on stdout too", || {
        w.alerts().iter().any(|a| a.event == AlertEvent::Dropped)
    });
    assert_eq!(w.stop(), 0);
}

#[test]
fn sighup_swaps_targets_without_a_restart() {
    let a = Server::start(Reply::Json(envelope(&now_rfc3339(), "closed", 0)));
    let b = Server::start(Reply::Json(envelope(&now_rfc3339(), "open", 0)));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("w.toml");
    let head = "interval = \"100ms\"\nlisten = \"127.0.0.1:0\"\n";
    std::fs::write(
        &config,
        format!("{head}[[target]]\nname = \"a\"\nurl = \"{}\"\n", a.url()),
    )
    .unwrap();
    let w = Running::start(&["run", "--config", config.to_str().unwrap()]);
    wait_for("a polled", || a.hits() >= 2);
    assert_eq!(b.hits(), 0);

    std::fs::write(
        &config,
        format!("{head}[[target]]\nname = \"b\"\nurl = \"{}\"\n", b.url()),
    )
    .unwrap();
    w.signal("HUP");
    wait_for("b polled and alerting", || {
        w.alerts()
            .iter()
            .any(|l| l.target == "b" && l.rule == "breaker_open")
    });
    let a_hits = a.hits();
    let b_hits = b.hits();
    wait_for("b polled more", || b.hits() >= b_hits + 5);
    assert!(
        a.hits() <= a_hits + 1,
        "a is no longer polled ({} -> {})",
        a_hits,
        a.hits()
    );
    assert_eq!(w.stop(), 0);
}
