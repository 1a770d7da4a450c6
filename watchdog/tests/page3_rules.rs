//! The page-3 rules through the real binary: `replay` of a record file
//! whose agents carry `activity` and `net_wait`, and `check` against an
//! HTTP server that answers `/metrics` and `/agents/{job}` as an emitter
//! does, with the `waiting ... for a reply from` diagnosis.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Instant;

use serde_json::{json, Value};
use shared_schema::{AlertEvent, AlertLine};

const BIN: &str = env!("CARGO_BIN_EXE_watchdog");

fn watchdog(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn firing<'a>(lines: &'a [AlertLine], rule: &str, job: &str) -> Vec<&'a AlertLine> {
    lines
        .iter()
        .filter(|l| {
            l.rule == rule && l.event == AlertEvent::Firing && l.labels.get("job_id") == Some(job)
        })
        .collect()
}

#[test]
fn replay_reads_activity_and_net_wait_and_fires_the_page_3_rules() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("w.toml");
    std::fs::write(
        &config,
        "[rules.stuck_agent]\nfor = \"30s\"\n\n[rules.run_cost]\nmax_usd = 1.0\n",
    )
    .unwrap();
    let record = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/page3_record.jsonl");
    let args = [
        "replay",
        record.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ];
    let out = watchdog(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<AlertLine> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();

    // dev (job 7): 2, 4, 6 ... in a row; fires at 6 (the third poll), its
    // spend from telemetry.
    let looping = firing(&lines, "agent_looping", "7");
    assert_eq!(looping.len(), 1, "{lines:?}");
    assert_eq!(looping[0].ts.to_string(), "2026-11-22T10:00:30.000Z");
    assert_eq!(
        looping[0].summary,
        "agent dev (job 7, pid 1234) made the same Bash call 6 times in a row over 30s ($2.70 so far)"
    );
    let cost = firing(&lines, "run_cost", "7");
    assert_eq!(cost.len(), 1, "{lines:?}");
    assert!(
        cost[0]
            .summary
            .ends_with("(max $1.00; from the agent's telemetry)"),
        "{}",
        cost[0].summary
    );
    assert!(firing(&lines, "stuck_agent", "7").is_empty(), "{lines:?}");

    // rev (job 8): hung on its model call; replay asks for no diagnosis.
    let stuck = firing(&lines, "stuck_agent", "8");
    assert_eq!(stuck.len(), 1, "{lines:?}");
    assert!(
        stuck[0]
            .summary
            .starts_with("agent rev (job 8, pid 1300) used 0.2% CPU and did only 2.3 KiB of I/O a minute for 30s; its last model reply or tool result was 50s ago"),
        "{}",
        stuck[0].summary
    );
    assert_eq!(stuck[0].diagnosis, None);

    // qa (job 9): 6 more failed requests a poll.
    let errors = firing(&lines, "agent_api_errors", "9");
    assert_eq!(errors.len(), 1, "{lines:?}");
    assert_eq!(errors[0].ts.to_string(), "2026-11-22T10:00:30.000Z");
    assert_eq!(errors[0].value, Some(12.0));

    // Deterministic: the same file gives the same lines.
    assert_eq!(stdout(&watchdog(&args)), stdout(&out));
}

/// An emitter stand-in: `/metrics` gives `envelope` with a fresh clock,
/// `/agents/8` the view of a CLI whose model request got no reply.
fn serve(listener: TcpListener, envelope: Value) {
    let started = Instant::now();
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match conn.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => break,
            }
        }
        let head = String::from_utf8_lossy(&head);
        let now = shared_schema::Timestamp::now().to_string();
        let (code, body) = if head.starts_with("GET /agents/8 ") {
            (
                200,
                json!({"schema_version": 1, "generated_at": now, "job_id": 8, "pid": 1300,
                  "processes": [{"pid": 1300, "ppid": 1, "comm": "claude", "state": "S",
                    "wchan": "do_epoll_wait", "fds": [],
                    "sockets": [
                      {"fd": 20, "proto": "tcp", "state": "ESTABLISHED", "local": "10.0.0.5:40000",
                       "remote": "160.79.104.10:443", "sent_ago_s": 252.3, "received_ago_s": 260.1},
                      {"fd": 21, "proto": "tcp", "state": "ESTABLISHED", "local": "127.0.0.1:40001",
                       "remote": "127.0.0.1:4318", "sent_ago_s": 5.0, "received_ago_s": 4.9}]}]}),
            )
        } else if head.starts_with("GET /agents/") {
            (404, json!({"error": "no such running job"}))
        } else {
            let mut e = envelope.clone();
            // Heard of 10 s ago: the errors so far all fall in the window.
            for a in e["agents"].as_array_mut().into_iter().flatten() {
                a["activity"]["first_seen_at"] = json!(shared_schema::Timestamp::now()
                    .plus_seconds(-10.0)
                    .to_string());
            }
            e["generated_at"] = json!(now);
            e["monotonic_ms"] = json!(started.elapsed().as_millis() as u64 + 1000);
            (200, e)
        };
        let _ = respond(&mut conn, code, body.to_string().as_bytes());
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

#[test]
fn check_reports_the_page_3_alerts_with_the_reply_diagnosis() {
    // The fixture's last poll, served live.
    let record = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/page3_record.jsonl");
    let text = std::fs::read_to_string(record).unwrap();
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    let mut envelope = last["envelope"].clone();
    // The CPU and I/O counters stand still between check's two polls.
    for a in envelope["agents"].as_array_mut().unwrap() {
        a["cpu_ticks"] = json!(5000);
        a["tree_cpu_ticks"] = json!(5000);
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || serve(listener, envelope));

    let out = watchdog(&["check", "--target", &url, "--interval", "50ms"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.starts_with("WARNING: 0 critical, "), "{text}");
    assert!(
        text.contains(
            "agent dev (job 7, pid 1234) made the same Bash call 12 times in a row ($3.00 so far)"
        ),
        "{text}"
    );
    assert!(
        text.contains("agent qa (job 9, pid 1400) had 30 failed model requests in "),
        "{text}"
    );
    assert!(
        text.contains(
            ": claude (pid 1300) is waiting 4m12s for a reply from 160.79.104.10:443 \
             (request sent, nothing received since)"
        ),
        "{text}"
    );
}
