//! The few helpers every fault, load and soak test needs: find a binary,
//! a free loopback port, wait on a condition with a deadline, and a child
//! that is killed and reaped when the test ends, pass or fail.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

/// [`crate::net::free_port`], for tests where a bind failing is the failure.
pub fn free_port() -> u16 {
    crate::net::free_port().unwrap_or_else(|e| panic!("binding 127.0.0.1:0: {e}"))
}

/// [`crate::net::wait_for`] every 20 ms, as a yes or no: whether `cond`
/// held before `limit` passed.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    crate::net::wait_for("the condition", limit, Duration::from_millis(20), || {
        cond().then_some(()).ok_or_else(String::new)
    })
    .is_ok()
}

/// A loopback HTTP/1.1 server for tests that need a scripted emitter: one
/// thread per connection reads the request head and hands it, with the
/// connection, to `respond`, which writes whatever the case needs (a body,
/// half a body, nothing at all). Stopped and joined on drop.
#[derive(Debug)]
pub struct HttpStub {
    addr: std::net::SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpStub {
    /// Binds 127.0.0.1:0 and serves until dropped.
    pub fn start<F>(respond: F) -> Self
    where
        F: Fn(&str, &mut std::net::TcpStream) + Send + Sync + 'static,
    {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;

        let listener =
            TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("binding 127.0.0.1:0: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("local_addr: {e}"));
        let stop = Arc::new(AtomicBool::new(false));
        let respond = Arc::new(respond);
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(mut conn) = conn else { continue };
                    let (respond, stop) = (respond.clone(), stop.clone());
                    std::thread::spawn(move || {
                        let Some(head) = read_head(&mut conn) else {
                            return;
                        };
                        if !stop.load(Ordering::SeqCst) {
                            respond(&head, &mut conn);
                        }
                    });
                }
            })
        };
        Self {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }
}

impl Drop for HttpStub {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake the accept loop so it sees `stop`.
        let _ = std::net::TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The request head (up to the blank line), or `None` if the client went away.
fn read_head(conn: &mut std::net::TcpStream) -> Option<String> {
    use std::io::Read;
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// Writes a complete `200` JSON response and closes the exchange.
pub fn write_json(conn: &mut std::net::TcpStream, body: &[u8]) {
    use std::io::Write;
    let _ = write!(
        conn,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = conn.write_all(body);
}

/// Now, as the envelope writes its `now` (RFC 3339, milliseconds, `Z`).
pub fn now_rfc3339() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    shared_schema::Timestamp::from_unix_ms(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// A child's pipe read line by line on its own thread, into the vector
/// returned (so a test can look at what was printed so far).
pub fn collect_lines(pipe: impl Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let out = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            out.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(line);
        }
    });
    lines
}
