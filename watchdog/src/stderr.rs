//! Log lines on stderr without ever waiting for stderr's reader.
//!
//! Under systemd, stdout and stderr usually go to the same journald stream:
//! when journald stops reading, a blocking log write would freeze the
//! evaluation loop just as a blocking stdout write did (issue 15 item 1).
//! So `tracing` writes into a bounded queue drained by a thread of its own;
//! a full queue drops the log line, and the writer says how many it dropped
//! once stderr takes lines again. Alert lines never go through here (they
//! are a data product, see [`crate::stdout`]).

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Log lines that may wait for stderr before new ones are dropped.
pub const QUEUE_LINES: usize = 1024;

enum Msg {
    Bytes(Vec<u8>),
    /// Answered once everything queued before it was written.
    Barrier(Sender<()>),
}

/// A `tracing_subscriber` writer; cheap to clone, never blocks.
#[derive(Clone)]
pub struct StderrLog {
    tx: SyncSender<Msg>,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for StderrLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StderrLog")
            .field("dropped", &self.dropped.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl StderrLog {
    /// Starts the writer thread on the process's stderr.
    pub fn start() -> std::io::Result<Self> {
        Self::start_on(QUEUE_LINES, std::io::stderr())
    }

    /// Starts the writer thread on `out` with room for `capacity` lines.
    pub fn start_on(capacity: usize, out: impl Write + Send + 'static) -> std::io::Result<Self> {
        let (tx, rx) = sync_channel(capacity.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let d = dropped.clone();
        std::thread::Builder::new()
            .name("stderr-writer".into())
            .spawn(move || drain(rx, out, d))?;
        Ok(Self { tx, dropped })
    }

    /// Waits up to `limit` for the queued lines to be written (at exit).
    pub fn flush(&self, limit: Duration) -> bool {
        let deadline = Instant::now().checked_add(limit);
        let (ack, acked) = channel();
        let mut barrier = Msg::Barrier(ack);
        loop {
            match self.tx.try_send(barrier) {
                Ok(()) => break,
                Err(TrySendError::Full(b)) if deadline.is_some_and(|d| Instant::now() < d) => {
                    barrier = b;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return false,
            }
        }
        let left = deadline.map_or(limit, |d| d.saturating_duration_since(Instant::now()));
        acked.recv_timeout(left).is_ok()
    }
}

impl Write for StderrLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.tx.try_send(Msg::Bytes(buf.to_vec())).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for StderrLog {
    type Writer = StderrLog;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

fn drain(rx: Receiver<Msg>, mut out: impl Write, dropped: Arc<AtomicU64>) {
    while let Ok(msg) = rx.recv() {
        match msg {
            Msg::Bytes(bytes) => {
                let lost = dropped.swap(0, Ordering::Relaxed);
                if lost > 0 {
                    let _ = writeln!(
                        out,
                        "watchdog: {lost} log lines dropped: stderr was not read fast enough"
                    );
                }
                // Nothing to do about a closed stderr but go on.
                let _ = out.write_all(&bytes).and_then(|()| out.flush());
            }
            Msg::Barrier(ack) => {
                let _ = ack.send(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A stderr nobody reads: the first write never returns; `entered` says
    /// the writer thread is stuck in it.
    struct Blocked(Arc<std::sync::atomic::AtomicBool>);

    impl Write for Blocked {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            self.0.store(true, Ordering::SeqCst);
            loop {
                std::thread::park();
            }
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stuck_stderr_never_blocks_logging() {
        let entered = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut log = StderrLog::start_on(4, Blocked(entered.clone())).unwrap();
        // Wedge the writer thread first (it resets the drop count when it
        // reports drops, so drops before it is stuck would not all count).
        log.write_all(b"first\n").unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !entered.load(Ordering::SeqCst) && Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert!(entered.load(Ordering::SeqCst), "the writer never wrote");
        // A blocking writer would hang here for good.
        for _ in 0..1_000 {
            log.write_all(b"a log line\n").unwrap();
        }
        assert!(log.dropped.load(Ordering::Relaxed) >= 1_000 - 4);
        assert!(!log.flush(Duration::from_millis(20)));
    }

    #[test]
    fn lines_arrive_in_order_and_drops_are_said() {
        let got = Arc::new(Mutex::new(Vec::new()));
        let mut log = StderrLog::start_on(16, Shared(got.clone())).unwrap();
        log.dropped.store(3, Ordering::Relaxed);
        log.write_all(b"one\n").unwrap();
        log.write_all(b"two\n").unwrap();
        assert!(log.flush(Duration::from_secs(30)));
        let text = String::from_utf8(got.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            "watchdog: 3 log lines dropped: stderr was not read fast enough\none\ntwo\n"
        );
    }
}
