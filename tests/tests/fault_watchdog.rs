//! Fault matrix, watchdog side (issue 7; docs/RELIABILITY.md): the real
//! `watchdog` binary against a tiny scripted HTTP server in the test.
//!
//! | case | what must happen |
//! |---|---|
//! | emitter killed mid-response (half a body, then close) | failed poll: `check` exits 3, `run` marks the target down and keeps polling |
//! | response slower than `timeout` | same, within about `timeout` |
//! | truncated JSON | same |
//! | body over the watchdog's cap (33 MiB vs 32 MiB) | same, without holding the body in memory |
//! | body under the cap (30 MiB of valid envelope) | a successful poll |
//! | HTTP 500 | failed poll |
//! | `schema_version: 2` | its own condition (`schema_incompatible`), not "down" |
//! | alert log on a full disk (`/dev/full`) | stdout keeps every line, the process keeps polling |
//! | webhook down | polling goes on; the undelivered notification is a `dropped` line |
//! | state file corrupt | starts fresh, says so on stderr, keeps polling |
//! | restart with a target removed and a rule disabled (state file) | their saved firing alerts resolve: a line each, the webhook told |
//! | wall-clock step on an emitter without `monotonic_ms` | no delta over the step, no false `stuck_agent` |
//! | state file a FIFO | refused at start by name (exit 2), not a hang |
#![allow(clippy::unwrap_used)]

use e2e::harness::{
    bin, collect_lines, fake_envelope, free_port, wait_until, write_json, Guard, HttpStub,
    RawOptions, RawWatchdog,
};
use e2e::stack::config_head;
use std::io::Write;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

/// The watchdog's cap on a polled body (issue 4: 32 MiB).
const BODY_CAP: usize = 32 * 1024 * 1024;

/// What the scripted server answers to the next request.
#[derive(Clone, Debug)]
enum Reply {
    /// 200 with a fresh envelope; `breaker_open` sets the breaker open.
    Good { breaker_open: bool },
    /// 200 with `schema_version: 2`.
    SchemaTwo,
    /// 200 with the kill-switch body `{"schema_version":1,"enabled":false}`.
    Disabled,
    /// Headers promise the whole envelope; half of it is sent, then close.
    HalfBody,
    /// Nothing for this long, then a good envelope.
    Slow(Duration),
    /// 200 with the first half of a good envelope as the whole body.
    Truncated,
    /// 200 with a fresh valid envelope padded to this many bytes.
    Big(usize),
    /// HTTP 500.
    ServerError,
}

/// A reply of a valid envelope padded to exactly `size` bytes.
fn big(size: usize) -> Reply {
    Reply::Big(size)
}

/// A fresh envelope padded with an unknown key to exactly `size` bytes
/// (built by hand: serialising 30 MiB through serde_json in a debug build
/// is slower than the poll timeout).
fn big_body(size: usize, origin: Instant) -> Vec<u8> {
    let head = envelope(false, origin).to_string();
    let head = head.strip_suffix('}').unwrap();
    let mut body = Vec::with_capacity(size);
    body.extend_from_slice(head.as_bytes());
    body.extend_from_slice(br#","padding":""#);
    body.resize(size - 2, b'x');
    body.extend_from_slice(b"\"}");
    assert_eq!(body.len(), size);
    body
}

fn envelope(breaker_open: bool, origin: Instant) -> Value {
    let mut v = fake_envelope("fault-test-boot", origin, 1, breaker_open);
    v["cost"] = json!({"running": [], "aggregate": {"runs": 0, "cost_usd": 0.0, "input_tokens": 0,
             "output_tokens": 0, "cache_read_tokens": 0, "cache_creation_tokens": 0}});
    v
}

/// A scripted emitter on 127.0.0.1:0: every request gets the current `Reply`.
struct FakeTarget {
    stub: HttpStub,
    reply: Arc<Mutex<Reply>>,
}

impl FakeTarget {
    fn start(reply: Reply) -> Self {
        let reply = Arc::new(Mutex::new(reply));
        let origin = Instant::now();
        let stub = {
            let reply = reply.clone();
            HttpStub::start(move |_head, conn| {
                let reply = reply.lock().unwrap().clone();
                answer(conn, reply, origin);
            })
        };
        Self { stub, reply }
    }

    fn url(&self) -> String {
        self.stub.url("/metrics")
    }

    fn set(&self, reply: Reply) {
        *self.reply.lock().unwrap() = reply;
    }

    fn hits(&self) -> usize {
        self.stub.hits()
    }
}

fn answer(conn: &mut TcpStream, reply: Reply, origin: Instant) {
    match reply {
        Reply::Good { breaker_open } => {
            write_json(conn, envelope(breaker_open, origin).to_string().as_bytes())
        }
        Reply::SchemaTwo => {
            let mut v = envelope(false, origin);
            v["schema_version"] = json!(2);
            write_json(conn, v.to_string().as_bytes());
        }
        Reply::Disabled => write_json(conn, br#"{"schema_version":1,"enabled":false}"#),
        Reply::HalfBody => {
            let body = envelope(false, origin).to_string();
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(&body.as_bytes()[..body.len() / 2]);
            let _ = conn.flush();
            // Dropping the stream closes it: the emitter "died" mid-body.
        }
        Reply::Slow(delay) => {
            std::thread::sleep(delay);
            write_json(conn, envelope(false, origin).to_string().as_bytes());
        }
        Reply::Truncated => {
            let body = envelope(false, origin).to_string();
            write_json(conn, &body.as_bytes()[..body.len() / 2]);
        }
        Reply::Big(size) => write_json(conn, &big_body(size, origin)),
        Reply::ServerError => {
            let body = b"internal error\n";
            let _ = write!(
                conn,
                "HTTP/1.1 500 Internal Server Error\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(body);
        }
    }
}

/// A short name for messages (a `Big` body is not printed).
fn name(reply: &Reply) -> String {
    match reply {
        Reply::Big(n) => format!("Big({} MiB)", n >> 20),
        other => format!("{other:?}"),
    }
}

/// Alert lines (stdout or the alert log) as JSON values.
fn alerts(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("event").is_some() && v.get("rule").is_some())
        .collect()
}

fn has_alert(lines: &[String], event: &str, rule: &str) -> bool {
    alerts(lines)
        .iter()
        .any(|a| a["event"] == event && a["rule"] == rule)
}

/// The rules of [`start`]: both fire at once.
const DEFAULT_RULES: &str =
    "[rules.target_down]\nfor = \"0s\"\n\n[rules.breaker_open]\nfor = \"0s\"\n";

/// `watchdog run --config` with `extra_toml` after the basics (interval
/// 200ms, timeout 1s, target `orch` at `url`, target_down and
/// breaker_open with `for = "0s"`).
fn start(url: &str, extra_toml: &str) -> RawWatchdog {
    start_with_rules(url, extra_toml, DEFAULT_RULES)
}

/// Like [`start`] with `rules_toml` in place of [`DEFAULT_RULES`].
fn start_with_rules(url: &str, extra_toml: &str, rules_toml: &str) -> RawWatchdog {
    RawWatchdog::start(&RawOptions::default(), |_, listen| {
        let head = config_head("200ms", "1s", listen, extra_toml, "orch", url);
        format!("{head}\n{rules_toml}\n")
    })
}

/// SIGTERM, then a clean exit within 15 s.
fn stop(w: &mut RawWatchdog) {
    let exited = w.terminate(Duration::from_secs(15)).is_some();
    assert!(exited, "no exit after SIGTERM:\n{}", w.stderr_text());
}

/// `watchdog check --config` against `url` with a 1 s timeout: (exit code, output, time).
fn check(url: &str) -> (i32, String, Duration) {
    check_with_timeout(url, "1s")
}

fn check_with_timeout(url: &str, timeout: &str) -> (i32, String, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("check.toml");
    std::fs::write(&config, format!("timeout = \"{timeout}\"\n")).unwrap();
    let started = Instant::now();
    let out = Command::new(bin("watchdog"))
        .arg("check")
        .arg("--config")
        .arg(&config)
        .arg("--target")
        .arg(url)
        .arg("--interval")
        .arg("100ms")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let took = started.elapsed();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        took,
    )
}

/// Every broken response is UNKNOWN (exit 3) for `check`, in bounded time.
#[test]
fn fault_check_reports_each_broken_response_as_unknown() {
    let target = FakeTarget::start(Reply::Good {
        breaker_open: false,
    });
    let (code, out, _) = check(&target.url());
    assert_eq!(code, 0, "healthy target: {out}");

    for reply in [
        Reply::HalfBody,
        Reply::Slow(Duration::from_secs(4)),
        Reply::Truncated,
        Reply::ServerError,
        big(BODY_CAP + 1024 * 1024),
    ] {
        target.set(reply.clone());
        let (code, out, took) = check(&target.url());
        let what = name(&reply);
        eprintln!("check {what}: exit {code} in {} ms", took.as_millis());
        assert_eq!(code, 3, "{what} should be UNKNOWN; output:\n{out}");
        assert!(
            took < Duration::from_secs(10),
            "{what}: check took {took:?}"
        );
    }
}

#[test]
fn fault_check_takes_a_30_mib_body_under_the_cap() {
    let target = FakeTarget::start(big(30 * 1024 * 1024));
    // A generous timeout: this is about the cap, not the speed of a debug build.
    let (code, out, took) = check_with_timeout(&target.url(), "20s");
    eprintln!("check 30 MiB: exit {code} in {} ms", took.as_millis());
    assert_eq!(code, 0, "a 30 MiB envelope is under the 32 MiB cap: {out}");
}

#[test]
fn fault_check_schema_two_is_its_own_condition() {
    let target = FakeTarget::start(Reply::SchemaTwo);
    let (code, out, _) = check(&target.url());
    // CRITICAL, the schema_incompatible rule, named as what it is: never
    // "unreachable".
    assert_eq!(code, 2, "exit {code}: {out}");
    assert!(out.contains("CRITICAL schema_incompatible"), "{out}");
    assert!(!out.contains("unreachable"), "{out}");
}

/// `schema_version: 2` from a healthy start: `schema_incompatible` fires and
/// `target_down` does not (a newer emitter is not a dead one).
#[test]
fn fault_run_schema_two_is_not_target_down() {
    let target = FakeTarget::start(Reply::Good {
        breaker_open: false,
    });
    let mut w = start(&target.url(), "");
    target.set(Reply::SchemaTwo);
    w.wait_stdout("schema_incompatible firing", Duration::from_secs(10), |l| {
        has_alert(l, "firing", "schema_incompatible")
    });
    let hits = target.hits();
    assert!(wait_until(Duration::from_secs(5), || target.hits() >= hits + 3));
    assert!(
        !has_alert(&w.stdout(), "firing", "target_down"),
        "schema_version 2 reported as target_down:\n{}",
        w.stdout().join("\n")
    );
    target.set(Reply::Good {
        breaker_open: false,
    });
    w.wait_stdout(
        "schema_incompatible resolved",
        Duration::from_secs(10),
        |l| has_alert(l, "resolved", "schema_incompatible"),
    );
}

/// One `watchdog run` through every broken response and back: it never
/// exits, marks the target down (a `target_down` firing line), keeps
/// polling through each fault, and resolves once the target is healthy.
#[test]
fn fault_run_survives_every_broken_response_and_recovers() {
    let target = FakeTarget::start(Reply::Good {
        breaker_open: false,
    });
    let mut w = start(&target.url(), "");
    assert!(wait_until(Duration::from_secs(10), || w
        .gauge("watchdog_target_up{")
        == Some(1.0)));

    for reply in [
        Reply::HalfBody,
        Reply::Slow(Duration::from_secs(3)),
        Reply::Truncated,
        Reply::ServerError,
        big(BODY_CAP + 1024 * 1024),
        big(30 * 1024 * 1024),
        Reply::SchemaTwo,
    ] {
        target.set(reply.clone());
        let hits = target.hits();
        // At least two polls under this fault (the watchdog keeps polling).
        let polled = wait_until(Duration::from_secs(15), || target.hits() >= hits + 2);
        w.assert_alive();
        assert!(polled, "{}: the watchdog stopped polling", name(&reply));
        let up = w.gauge("watchdog_target_up{");
        eprintln!("run {}: target_up {up:?}", name(&reply));
        match reply {
            Reply::Big(n) if n < BODY_CAP => assert_eq!(up, Some(1.0), "{}", name(&reply)),
            Reply::SchemaTwo => {}
            _ => assert_eq!(up, Some(0.0), "{}", name(&reply)),
        }
    }
    w.wait_stdout("target_down firing", Duration::from_secs(5), |l| {
        has_alert(l, "firing", "target_down")
    });
    w.wait_stdout("schema_incompatible firing", Duration::from_secs(5), |l| {
        has_alert(l, "firing", "schema_incompatible")
    });

    target.set(Reply::Good {
        breaker_open: false,
    });
    assert!(wait_until(Duration::from_secs(10), || w
        .gauge("watchdog_target_up{")
        == Some(1.0)));
    w.wait_stdout("target_down resolved", Duration::from_secs(10), |l| {
        has_alert(l, "resolved", "target_down")
    });
    // Memory after two bodies of 30+ MiB: bounded (the over-cap one is not held).
    let rss = std::fs::read_to_string(format!("/proc/{}/status", w.pid()))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:").map(str::to_owned))
        .unwrap();
    let kib: u64 = rss.split_whitespace().next().unwrap().parse().unwrap();
    eprintln!("watchdog VmRSS after the big bodies: {kib} KiB");
    assert!(kib < 400 * 1024, "VmRSS {kib} KiB after big bodies");
}

/// The alert log on a full disk: stdout keeps every line, the process keeps
/// polling and says on stderr that the file cannot be written.
#[test]
fn fault_alert_log_on_a_full_disk_keeps_stdout() {
    let target = FakeTarget::start(Reply::Good { breaker_open: true });
    let mut w = start(&target.url(), "alert_log = \"/dev/full\"");
    w.wait_stdout(
        "breaker_open firing on stdout",
        Duration::from_secs(10),
        |l| has_alert(l, "firing", "breaker_open"),
    );
    let hits = target.hits();
    target.set(Reply::Good {
        breaker_open: false,
    });
    w.wait_stdout(
        "breaker_open resolved on stdout",
        Duration::from_secs(10),
        |l| has_alert(l, "resolved", "breaker_open"),
    );
    assert!(wait_until(Duration::from_secs(5), || target.hits() >= hits + 3));
    w.assert_alive();
    let err = w.stderr_text().to_lowercase();
    assert!(
        err.contains("alert")
            && (err.contains("no space") || err.contains("full") || err.contains("write")),
        "nothing on stderr about the unwritable alert log:\n{err}"
    );
}

/// A webhook that refuses connections: polling goes on and the notification
/// that could not be delivered is written as a `dropped` line naming the sink.
#[test]
fn fault_webhook_down_gives_dropped_lines_and_polling_goes_on() {
    let target = FakeTarget::start(Reply::Good { breaker_open: true });
    let dead = format!("http://127.0.0.1:{}/hook", free_port());
    let mut w = start(
        &target.url(),
        &format!("[[notify.webhook]]\nurl = \"{dead}\"\n"),
    );
    w.wait_stdout("breaker_open firing", Duration::from_secs(10), |l| {
        has_alert(l, "firing", "breaker_open")
    });
    w.wait_stdout("a dropped line", Duration::from_secs(60), |l| {
        alerts(l).iter().any(|a| {
            a["event"] == "dropped" && a["rule"] == "breaker_open" && a["sink"].is_string()
        })
    });
    let hits = target.hits();
    assert!(
        wait_until(Duration::from_secs(5), || target.hits() >= hits + 3),
        "polling stopped while the webhook was down"
    );
    w.assert_alive();
    assert!(w.metric_sum("watchdog_polls_total") > 0.0);
}

/// Garbage in the state file: the watchdog starts fresh, logs it, and works.
#[test]
fn fault_corrupt_state_file_starts_fresh() {
    let target = FakeTarget::start(Reply::Good { breaker_open: true });
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    std::fs::write(&state, b"\x00\xffnot json {{{ garbage").unwrap();
    let mut w = start(
        &target.url(),
        &format!("state_file = \"{}\"", state.display()),
    );
    // Fresh start: the firing alert is announced (nothing was restored).
    w.wait_stdout("breaker_open firing", Duration::from_secs(10), |l| {
        has_alert(l, "firing", "breaker_open")
    });
    w.assert_alive();
    let err = w.stderr_text().to_lowercase();
    assert!(
        err.contains("state"),
        "the corrupt state file was not reported on stderr:\n{err}"
    );
    let _ = &w.dir;
}

/// An alert log that cannot be written (its directory is missing) and then
/// can: the lines written meanwhile reach the file once it is writable, so
/// an outage of the log loses nothing.
#[test]
fn fault_alert_log_unwritable_then_writable_loses_nothing() {
    let target = FakeTarget::start(Reply::Good { breaker_open: true });
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("not-yet");
    let log = log_dir.join("alerts.jsonl");
    let mut w = start(&target.url(), &format!("alert_log = \"{}\"", log.display()));
    w.wait_stdout(
        "breaker_open firing on stdout",
        Duration::from_secs(10),
        |l| has_alert(l, "firing", "breaker_open"),
    );
    assert!(!log.exists());
    std::fs::create_dir(&log_dir).unwrap();
    // The firing line was written while the log was unwritable; it must
    // arrive with the next write (here: the resolution).
    target.set(Reply::Good {
        breaker_open: false,
    });
    let mut text = String::new();
    let arrived = wait_until(Duration::from_secs(10), || {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        has_alert(&lines, "firing", "breaker_open") && has_alert(&lines, "resolved", "breaker_open")
    });
    w.assert_alive();
    assert!(
        arrived,
        "the backlog never reached the alert log:\n{text}\nstdout:\n{}",
        w.stdout().join("\n")
    );
}

/// An emitter whose kill-switch is off: the watchdog shows it as disabled
/// (`watchdog_target_enabled 0`), does not call it down, and neither fires
/// nor resolves what it cannot see; switched back on, it reads it again.
#[test]
fn fault_run_kill_switch_is_disabled_not_down() {
    let target = FakeTarget::start(Reply::Good { breaker_open: true });
    let mut w = start(&target.url(), "");
    w.wait_stdout("breaker_open firing", Duration::from_secs(10), |l| {
        has_alert(l, "firing", "breaker_open")
    });
    target.set(Reply::Disabled);
    assert!(
        wait_until(Duration::from_secs(10), || w
            .gauge("watchdog_target_enabled{")
            == Some(0.0)),
        "watchdog_target_enabled never went to 0:\n{}",
        w.metrics().unwrap_or_default()
    );
    let hits = target.hits();
    assert!(wait_until(Duration::from_secs(5), || target.hits() >= hits + 3));
    let lines = w.stdout();
    assert!(
        !has_alert(&lines, "firing", "target_down"),
        "a disabled emitter was called down:\n{}",
        lines.join("\n")
    );
    assert!(
        !has_alert(&lines, "resolved", "breaker_open"),
        "an alert resolved while the emitter was disabled (unknown is not fine):\n{}",
        lines.join("\n")
    );
    target.set(Reply::Good {
        breaker_open: false,
    });
    w.wait_stdout("breaker_open resolved", Duration::from_secs(10), |l| {
        has_alert(l, "resolved", "breaker_open")
    });
    assert!(wait_until(Duration::from_secs(5), || w
        .gauge("watchdog_target_enabled{")
        == Some(1.0)));
}

/// Issue 24 item 6: a restart with a target removed and a rule disabled
/// ends the firing alerts restored from `state_file` for them with one
/// `resolved` line each, as SIGHUP with the same change does; the alerts
/// still configured stay firing without a second `firing` line.
#[test]
fn fault_restart_resolves_saved_alerts_of_a_removed_target_and_a_disabled_rule() {
    let target = FakeTarget::start(Reply::Good { breaker_open: true });
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let dead = format!("http://127.0.0.1:{}/metrics", free_port());
    let with_gone = format!(
        "state_file = \"{}\"\n\n[[target]]\nname = \"gone\"\nurl = \"{dead}\"\n",
        state.display()
    );
    let mut w = start(&target.url(), &with_gone);
    w.wait_stdout(
        "breaker_open on orch and target_down on gone firing",
        Duration::from_secs(15),
        |l| has_alert(l, "firing", "breaker_open") && has_alert(l, "firing", "target_down"),
    );
    // The state file is written after each burst of polls; one more poll
    // later it holds both alerts.
    let polls = w.metric_sum("watchdog_polls_total");
    assert!(wait_until(Duration::from_secs(10), || w
        .metric_sum("watchdog_polls_total")
        >= polls + 2.0));
    stop(&mut w);

    // Restart: `gone` removed, breaker_open disabled, target_down kept.
    let hook = e2e::am_cluster::Receiver::start();
    let mut again = start_with_rules(
        &target.url(),
        &format!(
            "state_file = \"{}\"\n\n[[notify.webhook]]\nurl = \"{}\"\n",
            state.display(),
            hook.url()
        ),
        "[rules.target_down]\nfor = \"0s\"\n\n[rules.breaker_open]\nenabled = false\n",
    );
    again.wait_stdout(
        "resolved lines for breaker_open and for gone's target_down",
        Duration::from_secs(15),
        |l| has_alert(l, "resolved", "breaker_open") && has_alert(l, "resolved", "target_down"),
    );
    let hits = target.hits();
    assert!(wait_until(Duration::from_secs(10), || target.hits() >= hits + 3));
    let lines = alerts(&again.stdout());
    let mut seen: Vec<(String, String, String)> = lines
        .iter()
        .map(|a| {
            (
                a["event"].as_str().unwrap_or("").to_owned(),
                a["rule"].as_str().unwrap_or("").to_owned(),
                a["target"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    seen.sort();
    let expect = |e: &str, r: &str, t: &str| (e.to_owned(), r.to_owned(), t.to_owned());
    assert_eq!(
        seen,
        [
            expect("resolved", "breaker_open", "orch"),
            expect("resolved", "target_down", "gone")
        ],
        "exactly one resolved line each, nothing fires again:\n{}",
        again.stdout().join("\n")
    );
    // The sinks hear of it too.
    let notified = wait_until(Duration::from_secs(10), || {
        let got: Vec<(String, String)> = hook
            .all()
            .iter()
            .map(|n| {
                (
                    n.body["event"].as_str().unwrap_or("").to_owned(),
                    n.body["rule"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        got.contains(&("resolved".into(), "breaker_open".into()))
            && got.contains(&("resolved".into(), "target_down".into()))
    });
    assert!(notified, "the webhook got {:?}", hook.all());
    let _ = &again.dir;
}

/// Issue 24 item 7: an emitter without `monotonic_ms` whose wall clock is
/// stepped an hour ahead. Its agent keeps burning half a core; the Δt of
/// `generated_at` (1 h) disagrees with the watchdog's own between the two
/// receipts (~200 ms), so no delta is made of it: no `stuck_agent`
/// ("used 0.0% CPU ... for 1h"), before or after the step.
#[test]
fn fault_wall_clock_step_without_monotonic_is_no_stuck_agent() {
    use std::sync::atomic::AtomicI64;
    let origin = Instant::now();
    let offset_ms = Arc::new(AtomicI64::new(0));
    let polls = Arc::new(AtomicUsize::new(0));
    let stub = {
        let (offset_ms, polls) = (offset_ms.clone(), polls.clone());
        HttpStub::start(move |head, conn| {
            if !head.starts_with("GET /metrics") {
                let _ = conn.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                return;
            }
            polls.fetch_add(1, Ordering::SeqCst);
            let wall = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64
                + offset_ms.load(Ordering::SeqCst);
            // Half a core at 100 Hz: 50 ticks a second of real time.
            let ticks = origin.elapsed().as_millis() as u64 / 20;
            let mut env = envelope(false, origin);
            let map = env.as_object_mut().unwrap();
            map.remove("monotonic_ms");
            map["generated_at"] = json!(shared_schema::Timestamp::from_unix_ms(wall)
                .unwrap()
                .to_string());
            map["agents"] = json!([{
                "agent": "dev", "job_id": 7, "run_id": 42, "pid": 4242, "repo": "app",
                "runtime_s": 3600.0, "cpu_ticks": ticks, "tree_cpu_ticks": ticks,
                "start_ticks": 1000, "io_rchar": 4096, "io_wchar": 0, "state": "R",
                "alive": true
            }]);
            write_json(conn, env.to_string().as_bytes());
        })
    };
    let url = format!("http://{}/metrics", stub.addr());
    let mut w = start_with_rules(&url, "", "[rules.stuck_agent]\nfor = \"0s\"\n");
    let stuck = |w: &RawWatchdog| has_alert(&w.stdout(), "firing", "stuck_agent");
    let at = polls.load(Ordering::SeqCst);
    assert!(wait_until(Duration::from_secs(15), || polls
        .load(Ordering::SeqCst)
        >= at + 5));
    w.assert_alive();
    assert!(
        !stuck(&w),
        "busy before the step:\n{}",
        w.stdout().join("\n")
    );
    let busy = w.gauge("watchdog_agent_cpu_fraction{").unwrap_or(0.0);
    assert!(busy > 0.2, "the agent reads busy: {busy}");

    offset_ms.store(3_600_000, Ordering::SeqCst);
    let at = polls.load(Ordering::SeqCst);
    assert!(wait_until(Duration::from_secs(15), || polls
        .load(Ordering::SeqCst)
        >= at + 10));
    w.assert_alive();
    assert!(
        !stuck(&w),
        "a wall-clock step made a busy agent stuck:\n{}",
        w.stdout().join("\n")
    );
    // After the step, deltas are made again from the new baseline.
    let busy = w.gauge("watchdog_agent_cpu_fraction{").unwrap_or(0.0);
    assert!(busy > 0.2, "the agent reads busy after the step: {busy}");
}

/// Issue 24: a `state_file` that is a FIFO used to hang the start (the
/// open waits for a writer: no listener, no polls). It is refused at once,
/// exit 2, with an error naming the file.
#[test]
fn fault_state_file_fifo_is_refused_at_start_not_a_hang() {
    let target = FakeTarget::start(Reply::Good {
        breaker_open: false,
    });
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("state.fifo");
    let c = std::ffi::CString::new(fifo.to_string_lossy().as_bytes()).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path for the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let config = dir.path().join("watchdog.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\nstate_file = \"{}\"\n[[target]]\nname = \"orch\"\nurl = \"{}\"\n",
            fifo.display(),
            target.url()
        ),
    )
    .unwrap();
    let child = Command::new(bin("watchdog"))
        .arg("run")
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = Guard(child);
    let stderr = collect_lines(guard.0.stderr.take().unwrap());
    let mut status = None;
    let exited = wait_until(Duration::from_secs(15), || {
        status = guard.0.try_wait().unwrap();
        status.is_some()
    });
    let err = stderr.lock().unwrap().join("\n");
    assert!(exited, "still running (hung on the FIFO?); stderr:\n{err}");
    assert_eq!(status.and_then(|s| s.code()), Some(2), "{err}");
    let collected = wait_until(Duration::from_secs(5), || {
        stderr.lock().unwrap().join("\n").contains("a FIFO")
    });
    let err = stderr.lock().unwrap().join("\n");
    assert!(
        collected && err.contains(&fifo.display().to_string()),
        "the error names the file and says why:\n{err}"
    );
}
