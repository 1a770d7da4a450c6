//! The few helpers every fault, load and soak test needs: find a binary,
//! a free loopback port, wait on a condition with a deadline, and a child
//! that is killed and reaped when the test ends, pass or fail.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

/// A started process, killed and reaped when dropped.
#[derive(Debug)]
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A workspace binary: `$LOAD_BIN_DIR/<name>` when set (e.g. `target/release`,
/// relative to the workspace root, for release figures), else where
/// [`crate::bins::locate`] finds it. Panics with how to build it.
pub fn bin(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("LOAD_BIN_DIR") {
        let dir = PathBuf::from(dir);
        let dir = if dir.is_absolute() {
            dir
        } else {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(dir)
        };
        let path = dir.join(name);
        assert!(
            path.exists(),
            "{} is missing: build it first",
            path.display()
        );
        return path;
    }
    crate::bins::locate(name).unwrap_or_else(|e| panic!("{e:#}"))
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("binding 127.0.0.1:0: {e}"))
}

/// Polls `cond` every 20 ms until it holds or `limit` passes; whether it held.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
