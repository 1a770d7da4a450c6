//! Hostile input against the real binaries (issue 7, security notes in
//! docs/RELIABILITY.md): oversized headers, a client that never finishes its
//! headers, a large request body, wrong tokens; and no secret in logs or in
//! `watchdog run --print-config`.
#![allow(clippy::unwrap_used)]

use e2e::harness::{bin, free_port, wait_until, Guard};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Sends `request` raw and returns the status (None: closed without one).
fn raw(addr: SocketAddr, request: &[u8]) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(15))).ok()?;
    // The server may answer (and close) before the whole request is written.
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
}

fn get(addr: SocketAddr, extra_headers: &str) -> Option<u16> {
    raw(
        addr,
        format!("GET /metrics HTTP/1.1\r\nHost: x\r\n{extra_headers}Connection: close\r\n\r\n")
            .as_bytes(),
    )
}

const TOKEN: &str = "tok-3f9a-SECRET-do-not-log";

struct Emitter {
    guard: Guard,
    addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

fn start_emitter() -> Emitter {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("orch.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(shared_schema::state::REQUIRED_TABLES_SQL)
        .unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut child = Command::new(bin("emitter"))
        .arg("serve")
        .arg("--db")
        .arg(&db)
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--token-file")
        .arg(&token_file)
        .env("RUST_LOG", "debug")
        .env_remove("ORCH_METRICS_ENABLED")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = Arc::new(Mutex::new(String::new()));
    for pipe in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let out = stderr.clone();
        std::thread::spawn(move || {
            let mut pipe = pipe;
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                out.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
    }
    let auth = format!("Authorization: Bearer {TOKEN}\r\n");
    let guard = Guard(child);
    assert!(
        wait_until(Duration::from_secs(15), || get(addr, &auth) == Some(200)),
        "emitter did not come up"
    );
    Emitter {
        guard,
        addr,
        stderr,
        _dir: dir,
    }
}

#[test]
fn fault_hostile_requests_to_the_emitter() {
    let mut em = start_emitter();
    let addr = em.addr;
    let auth = format!("Authorization: Bearer {TOKEN}\r\n");

    // The bearer token: missing, wrong, wrong scheme, a prefix of the right one.
    assert_eq!(get(addr, ""), Some(401));
    assert_eq!(get(addr, "Authorization: Bearer nope\r\n"), Some(401));
    assert_eq!(
        get(addr, &format!("Authorization: Basic {TOKEN}\r\n")),
        Some(401)
    );
    assert_eq!(
        get(addr, &format!("Authorization: Bearer {}\r\n", &TOKEN[..10])),
        Some(401)
    );
    assert_eq!(get(addr, &auth), Some(200));

    // A 1 MiB header: refused (431/400) or the connection is closed; never served.
    let huge = format!("X-Junk: {}\r\n{auth}", "a".repeat(1 << 20));
    let status = get(addr, &huge);
    eprintln!("1 MiB header: {status:?}");
    assert!(
        matches!(status, None | Some(400) | Some(431)),
        "1 MiB header answered {status:?}"
    );

    // A request body on a GET-only server, other methods and paths.
    let body = "x".repeat(4 << 20);
    let post = format!(
        "POST /metrics HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let status = raw(addr, post.as_bytes());
    eprintln!("4 MiB POST: {status:?}");
    assert!(
        matches!(status, None | Some(405) | Some(413)),
        "POST answered {status:?}"
    );
    assert_eq!(
        raw(
            addr,
            format!("GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n")
                .as_bytes()
        ),
        Some(404)
    );
    // Garbage instead of HTTP.
    let status = raw(addr, b"\x00\x01\x02 not http at all\r\n\r\n");
    eprintln!("garbage: {status:?}");
    assert!(
        matches!(status, None | Some(400)),
        "garbage answered {status:?}"
    );

    // A client that never finishes its headers is cut off (header-read
    // timeout), and does not block others meanwhile.
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    assert_eq!(get(addr, &auth), Some(200), "a slow client blocked others");
    let started = Instant::now();
    let mut sink = Vec::new();
    let _ = slow.read_to_end(&mut sink);
    let held = started.elapsed();
    eprintln!("slow client cut off after {} ms", held.as_millis());
    assert!(
        held < Duration::from_secs(20),
        "a client that never finished its headers was held {held:?}"
    );

    // Still serving, and the token never reached the logs.
    assert_eq!(get(addr, &auth), Some(200));
    assert!(em.guard.0.try_wait().unwrap().is_none(), "emitter exited");
    let logs = em.stderr.lock().unwrap().clone();
    assert!(
        !logs.contains(TOKEN),
        "the token appears in the emitter's logs"
    );
    assert!(
        !logs.contains(&TOKEN[..10]),
        "part of the token appears in the logs"
    );
}

#[test]
fn fault_hostile_no_secret_in_watchdog_print_config_or_logs() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let config = dir.path().join("watchdog.toml");
    let listen = format!("127.0.0.1:{}", free_port());
    std::fs::write(
        &config,
        format!(
            "interval = \"200ms\"\nlisten = \"{listen}\"\n\n[[target]]\nname = \"orch\"\nurl = \"http://user:hunter2pw@127.0.0.1:{}/metrics\"\ntoken_file = \"{}\"\n",
            free_port(),
            token_file.display()
        ),
    )
    .unwrap();
    let out = Command::new(bin("watchdog"))
        .args(["run", "--print-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{printed}");
    assert!(printed.contains("[[target]]"), "{printed}");
    assert!(
        !printed.contains(TOKEN),
        "token in --print-config:\n{printed}"
    );
    assert!(
        !printed.contains("hunter2pw"),
        "URL password in --print-config:\n{printed}"
    );

    // A run against a dead target with debug logs: the target is down,
    // polled and logged, and neither secret appears.
    let child = Command::new(bin("watchdog"))
        .arg("run")
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = Guard(child);
    let mut err = guard.0.stderr.take().unwrap();
    let mut stdout = guard.0.stdout.take().unwrap();
    let logs = Arc::new(Mutex::new(String::new()));
    {
        let logs = logs.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                logs.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
    }
    let out = Arc::new(Mutex::new(String::new()));
    {
        let out = out.clone();
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stdout.read_to_string(&mut s);
            out.lock().unwrap().push_str(&s);
        });
    }
    // Several failed polls logged.
    let polled = wait_until(Duration::from_secs(15), || {
        logs.lock().unwrap().matches("orch").count() >= 3
    });
    assert!(guard.0.try_wait().unwrap().is_none(), "watchdog exited");
    drop(guard);
    let logs = logs.lock().unwrap().clone() + &out.lock().unwrap();
    assert!(polled, "no poll of the dead target was logged:\n{logs}");
    assert!(!logs.contains(TOKEN), "token in the watchdog's output");
    assert!(
        !logs.contains("hunter2pw"),
        "URL password in the watchdog's output"
    );
}
