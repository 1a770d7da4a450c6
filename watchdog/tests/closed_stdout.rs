//! Issue 24 item 9: the one-shot commands whose output is their result
//! (`check`, `validate`, `run --print-config`) on a stdout that is closed
//! (`| head -0`: EPIPE) or full (`>/dev/full`: ENOSPC) exit with a code of
//! their own convention and a line on stderr, never a panic (101). `check`
//! says UNKNOWN (3): the monitoring system never got the result.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::FromRawFd;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_watchdog");

/// Where stdout goes.
#[derive(Debug, Clone, Copy)]
enum Out {
    /// A pipe whose reading end is closed before the command starts.
    Closed,
    /// `/dev/full`.
    Full,
    /// A pipe the test reads (the control).
    Read,
}

fn stdout_for(out: Out) -> Stdio {
    match out {
        Out::Closed => {
            let mut fds = [0; 2];
            // SAFETY: `fds` has room for the two descriptors pipe(2) writes.
            assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
            // SAFETY: both descriptors were just made by pipe(2) and are
            // owned here alone: the read end is closed, the write end given away.
            unsafe {
                libc::close(fds[0]);
                Stdio::from(std::fs::File::from_raw_fd(fds[1]))
            }
        }
        Out::Full => Stdio::from(
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap(),
        ),
        Out::Read => Stdio::piped(),
    }
}

fn watchdog(args: &[&str], out: Out) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout_for(out))
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

/// Serves a calm, valid envelope to every request.
fn emitter() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            std::thread::spawn(move || answer(conn));
        }
    });
    format!("http://{addr}")
}

fn answer(mut conn: TcpStream) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let body = serde_json::json!({
        "schema_version": 1,
        "generated_at": shared_schema::Timestamp::now().to_string(),
        "boot_id": "b", "host": "h", "clk_tck": 100, "degraded": [], "stages": [],
        "queue": {
            "counts": {"queued": 0, "running": 0, "done": 0, "failed": 0, "cancelled": 0},
            "depth": 0, "retries": null,
            "breaker": {"state": "open", "consecutive_failures": 3, "opened_at": null},
            "max_concurrency": 2, "poll_interval": 1.0
        },
        "agents": [], "cost": null, "reconciler": null, "errors": null
    })
    .to_string();
    let _ = write!(
        conn,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn assert_told(o: &Output, code: i32, what: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(code), "{what}: {err}");
    assert!(
        err.contains("cannot write to stdout") && !err.contains("panicked"),
        "{what}: {err}"
    );
}

#[test]
fn check_on_a_closed_or_full_stdout_is_unknown_not_a_panic() {
    let url = emitter();
    let args = ["check", "--target", &url, "--interval", "100ms"];
    // The control: the breaker is open, a critical alert.
    let o = watchdog(&args, Out::Read);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("CRITICAL: 1 critical"));
    assert_told(&watchdog(&args, Out::Closed), 3, "closed");
    assert_told(&watchdog(&args, Out::Full), 3, "full");
}

#[test]
fn validate_on_a_closed_or_full_stdout_exits_1_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, br#"{"schema_version": 1, "queue": 5}"#).unwrap();
    let bad = bad.to_string_lossy().into_owned();
    let o = watchdog(&["validate", &bad], Out::Read);
    assert_eq!(o.status.code(), Some(1));
    assert!(!o.stdout.is_empty(), "the control lists problems");
    assert_told(&watchdog(&["validate", &bad], Out::Closed), 1, "closed");
    assert_told(&watchdog(&["validate", &bad], Out::Full), 1, "full");
    // The input cannot be read: that line cannot be written either.
    let gone = dir.path().join("gone.json").to_string_lossy().into_owned();
    assert_told(&watchdog(&["validate", &gone], Out::Full), 1, "unreadable");
    // A missing token file: the same.
    let args = ["validate", &bad, "--token-file", &gone];
    assert_told(&watchdog(&args, Out::Full), 1, "token file");
}

#[test]
fn print_config_on_a_closed_or_full_stdout_exits_1_not_a_panic() {
    let args = ["run", "--target", "http://127.0.0.1:9", "--print-config"];
    let o = watchdog(&args, Out::Read);
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).contains("interval"));
    assert_told(&watchdog(&args, Out::Closed), 1, "closed");
    assert_told(&watchdog(&args, Out::Full), 1, "full");
}
