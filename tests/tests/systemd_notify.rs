//! What the systemd units rely on, checked against the real binaries with
//! a fake notify socket (no systemd needed): `Type=notify` (both send
//! `READY=1` once they serve), `WatchdogSec=` (the watchdog pings
//! `WATCHDOG=1` at least every half `WATCHDOG_USEC`), `ExecReload=kill -HUP`
//! (the watchdog says `RELOADING=1` then `READY=1` and keeps serving) and a
//! clean stop on SIGTERM (`STOPPING=1`, exit 0).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e::lab::Lab;
use e2e::procs::Proc;
use e2e::stack::Emitter;
use e2e::{bins, net};

/// Collects notify messages until `done` says so or `timeout` passes.
fn receive_until(
    sock: &UnixDatagram,
    timeout: Duration,
    got: &mut Vec<String>,
    done: impl Fn(&[String]) -> bool,
) -> bool {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    while !done(got) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        sock.set_read_timeout(Some(left.min(Duration::from_millis(200))))
            .unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            got.extend(
                String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .map(str::to_owned),
            );
        }
    }
    true
}

fn count(got: &[String], what: &str) -> usize {
    got.iter().filter(|l| l.as_str() == what).count()
}

#[test]
fn watchdog_speaks_sd_notify_ready_watchdog_reloading_stopping() {
    let emitter_bin = bins::locate("emitter").unwrap();
    let watchdog_bin = bins::locate("watchdog").unwrap();
    let lab = Lab::start(&[], None).unwrap();
    let emitter = Emitter::start(&emitter_bin, &lab.db, lab.dir()).unwrap();
    let sock_path = lab.dir().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let listen = net::free_addr().unwrap();
    let config = lab.dir().join("watchdog.toml");
    std::fs::write(
        &config,
        format!(
            "interval = \"1s\"\nlisten = \"{listen}\"\n[[target]]\nname = \"sd\"\nurl = \"{}\"\n",
            emitter.url()
        ),
    )
    .unwrap();
    // systemd sets WATCHDOG_PID to the main pid along with WATCHDOG_USEC;
    // `exec` from a shell keeps the pid the shell had.
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg("WATCHDOG_PID=$$ exec \"$0\" \"$@\"")
        .arg(&watchdog_bin)
        .arg("run")
        .arg("--config")
        .arg(&config)
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "2000000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(lab.dir().join("watchdog.log")).unwrap(),
        ));
    let mut proc = Proc::spawn("watchdog", &mut cmd).unwrap();
    let log = || e2e::stack::tail(&lab.dir().join("watchdog.log"));

    let mut got = Vec::new();
    assert!(
        receive_until(&sock, Duration::from_secs(20), &mut got, |g| count(
            g, "READY=1"
        ) >= 1),
        "no READY=1: {got:?}\n{}",
        log()
    );
    // READY means serving: /metrics answers at once.
    let (status, _) = net::get(&format!("http://{listen}/metrics")).unwrap();
    assert_eq!(status, 200);
    // WatchdogSec=2s: pings at least every second; give it 4 s for 3.
    let start = Instant::now();
    assert!(
        receive_until(&sock, Duration::from_secs(4), &mut got, |g| count(
            g,
            "WATCHDOG=1"
        ) >= 3),
        "too few WATCHDOG=1 in {:?}: {got:?}",
        start.elapsed()
    );

    // systemctl reload = SIGHUP.
    got.clear();
    proc.signal(libc::SIGHUP).unwrap();
    assert!(
        receive_until(&sock, Duration::from_secs(10), &mut got, |g| {
            let r = g.iter().position(|l| l == "RELOADING=1");
            r.is_some_and(|r| g[r..].iter().any(|l| l == "READY=1"))
        }),
        "no RELOADING=1 then READY=1 after SIGHUP: {got:?}\n{}",
        log()
    );
    assert!(
        proc.try_wait().unwrap().is_none(),
        "the watchdog died on SIGHUP"
    );

    // systemctl stop = SIGTERM.
    got.clear();
    proc.signal(libc::SIGTERM).unwrap();
    assert!(
        receive_until(&sock, Duration::from_secs(10), &mut got, |g| count(
            g,
            "STOPPING=1"
        ) >= 1),
        "no STOPPING=1: {got:?}"
    );
    let status = net::wait_for(
        "the watchdog to exit",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || {
            proc.try_wait()
                .map_err(|e| e.to_string())?
                .ok_or("running".to_owned())
        },
    )
    .unwrap();
    assert!(status.success(), "exit on SIGTERM: {status}\n{}", log());
}

#[test]
fn emitter_says_ready_once_it_serves() {
    let emitter_bin = bins::locate("emitter").unwrap();
    let lab = Lab::start(&[], None).unwrap();
    let sock_path = lab.dir().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let listen = net::free_addr().unwrap();
    let mut cmd = Command::new(&emitter_bin);
    cmd.arg("serve")
        .arg("--db")
        .arg(&lab.db)
        .arg("--listen")
        .arg(listen.to_string())
        .env("NOTIFY_SOCKET", &sock_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut proc = Proc::spawn("emitter", &mut cmd).unwrap();
    let mut got = Vec::new();
    assert!(
        receive_until(&sock, Duration::from_secs(20), &mut got, |g| count(
            g, "READY=1"
        ) >= 1),
        "no READY=1: {got:?}"
    );
    let (status, body) = net::get(&format!("http://{listen}/metrics")).unwrap();
    assert_eq!(status, 200, "{body}");
    proc.signal(libc::SIGTERM).unwrap();
    let status = net::wait_for(
        "the emitter to exit",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || {
            proc.try_wait()
                .map_err(|e| e.to_string())?
                .ok_or("running".to_owned())
        },
    )
    .unwrap();
    assert!(status.success(), "exit on SIGTERM: {status}");
}
