//! Alert lines on stdout without ever waiting for stdout's reader.
//!
//! stdout is often a pipe (journald, `| tee`, a supervisor). When its reader
//! stops reading, a plain `write` blocks as soon as the pipe is full (64 KiB,
//! a few hundred lines), and with it polling, the alert log file, the gauges
//! and the notifications. So the evaluation loop only hands lines to a
//! bounded queue ([`QUEUE_LINES`]); one thread of its own drains the queue
//! into stdout and is the only thing that can block on it. A full queue (or
//! a stdout that is closed) drops the line, counts it in
//! `watchdog_stdout_dropped_lines_total` and says so on stderr once per
//! streak of drops, not once per line. The alert log file is written apart
//! from this and never loses a line to a slow stdout.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::{IntCounter, Registry};

/// Lines that may wait for stdout before new ones are dropped.
pub const QUEUE_LINES: usize = 4096;

/// Lines written to stdout by the writer thread in one `write` call at most.
const BATCH_LINES: usize = 256;

/// The name of the counter of dropped lines (CONTRACT section 4).
pub const DROPPED_METRIC: &str = "watchdog_stdout_dropped_lines_total";

/// Writes the whole output of a one-shot command (`check`, `validate`,
/// `run --print-config`) to stdout and flushes it. A stdout that is closed
/// (`| head -0`: EPIPE) or full (`>/dev/full`: ENOSPC) is an error for the
/// caller to turn into an exit code, never a panic (`println!` panics).
pub fn print_all(text: &str) -> std::io::Result<()> {
    write_all_to(&mut std::io::stdout().lock(), text)
}

/// [`print_all`] on any writer.
pub fn write_all_to(out: &mut impl Write, text: &str) -> std::io::Result<()> {
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// Says on stderr that stdout could not be written (ignoring a stderr that
/// cannot be written either: there is nobody left to tell).
pub fn note_unwritable(error: &std::io::Error) {
    let _ = writeln!(
        std::io::stderr(),
        "watchdog: cannot write to stdout: {error}"
    );
}

/// What the writer thread gets.
#[derive(Debug)]
enum Msg {
    Line(String),
    /// Answered once everything queued before it was written.
    Barrier(Sender<()>),
}

/// The sending side: cheap to clone, never blocks.
#[derive(Debug, Clone)]
pub struct StdoutLines {
    tx: SyncSender<Msg>,
    dropped: IntCounter,
    /// True while lines are being dropped (one stderr line per streak).
    streak: Arc<AtomicBool>,
}

impl StdoutLines {
    /// Starts the writer thread on the process's stdout and registers the
    /// dropped-lines counter in `registry`.
    pub fn start(registry: &Registry) -> std::io::Result<Self> {
        Self::start_on(registry, QUEUE_LINES, std::io::stdout())
    }

    /// Starts the writer thread on `out` with a queue of `capacity` lines
    /// (tests pass a writer that blocks).
    pub fn start_on(
        registry: &Registry,
        capacity: usize,
        out: impl Write + Send + 'static,
    ) -> std::io::Result<Self> {
        let dropped = IntCounter::new(
            DROPPED_METRIC,
            "Alert lines not written to stdout because its reader did not keep up or it was closed.",
        )
        .map_err(std::io::Error::other)?;
        if let Err(err) = registry.register(Box::new(dropped.clone())) {
            // Only a second writer in one process gets here; counting goes on unregistered.
            tracing::warn!(error = %err, "stdout dropped-lines counter not registered");
        }
        let (tx, rx) = sync_channel(capacity.max(1));
        let streak = Arc::new(AtomicBool::new(false));
        let writer = Writer {
            rx,
            out,
            dropped: dropped.clone(),
            streak: streak.clone(),
        };
        std::thread::Builder::new()
            .name("stdout-writer".into())
            .spawn(move || writer.run())?;
        Ok(Self {
            tx,
            dropped,
            streak,
        })
    }

    /// Queues one line (without its newline); drops and counts it when the
    /// queue is full or the writer has stopped.
    pub fn send(&self, line: String) {
        match self.tx.try_send(Msg::Line(line)) {
            Ok(()) => {
                if self.streak.swap(false, Ordering::Relaxed) {
                    tracing::info!(
                        dropped_total = self.dropped.get(),
                        "stdout is read again; alert lines go to stdout again"
                    );
                }
            }
            Err(TrySendError::Full(_)) => self.drop_one("nobody reads stdout fast enough"),
            Err(TrySendError::Disconnected(_)) => self.drop_one("the stdout writer stopped"),
        }
    }

    fn drop_one(&self, why: &str) {
        note_drop(&self.dropped, &self.streak, why);
    }

    /// Waits up to `limit` for the lines queued so far to be written (at
    /// exit, so the last lines are not lost with the process); false when
    /// stdout did not take them in time.
    pub fn flush(&self, limit: Duration) -> bool {
        let deadline = Instant::now().checked_add(limit);
        let before = |d: Option<Instant>| match d {
            Some(d) => Instant::now() < d,
            None => true,
        };
        let (ack, acked) = channel();
        let mut barrier = Msg::Barrier(ack);
        loop {
            match self.tx.try_send(barrier) {
                Ok(()) => break,
                Err(TrySendError::Full(b)) if before(deadline) => {
                    barrier = b;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return false,
            }
        }
        let left = deadline.map_or(limit, |d| d.saturating_duration_since(Instant::now()));
        acked.recv_timeout(left).is_ok()
    }

    /// Lines dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }
}

/// Counts one dropped line; the first of a streak is said on stderr.
fn note_drop(dropped: &IntCounter, streak: &AtomicBool, why: &str) {
    dropped.inc();
    if !streak.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            reason = why,
            "alert lines dropped from stdout (counted in {DROPPED_METRIC}); the alert log file, gauges and notifications go on"
        );
    }
}

/// The thread that owns stdout.
struct Writer<W> {
    rx: Receiver<Msg>,
    out: W,
    dropped: IntCounter,
    streak: Arc<AtomicBool>,
}

impl<W: Write> Writer<W> {
    fn run(mut self) {
        let mut buf = Vec::new();
        // Ends when every sender is gone (the process is exiting).
        while let Ok(first) = self.rx.recv() {
            buf.clear();
            let mut n = 0;
            let mut acks = Vec::new();
            let mut next = Some(first);
            while let Some(msg) = next.take() {
                match msg {
                    Msg::Line(line) => {
                        push_line(&mut buf, &line);
                        n += 1;
                    }
                    Msg::Barrier(ack) => acks.push(ack),
                }
                if n < BATCH_LINES {
                    next = self.rx.try_recv().ok();
                }
            }
            // A closed stdout (EPIPE) loses these lines, counted; the
            // thread keeps draining so senders never see a full queue for it.
            if let Err(err) = self.out.write_all(&buf).and_then(|()| self.out.flush()) {
                for _ in 0..n {
                    note_drop(&self.dropped, &self.streak, "writing stdout failed");
                }
                tracing::debug!(error = %err, "stdout write failed");
            }
            for ack in acks {
                let _ = ack.send(());
            }
        }
    }
}

fn push_line(buf: &mut Vec<u8>, line: &str) {
    buf.extend_from_slice(line.as_bytes());
    buf.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Condvar, Mutex};
    use std::time::{Duration, Instant};

    /// A stdout whose reader never reads: every write blocks until released.
    #[derive(Clone, Default)]
    struct Stuck {
        open: Arc<(Mutex<bool>, Condvar)>,
        got: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Stuck {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let (lock, cv) = &*self.open;
            let mut open = lock.lock().unwrap();
            while !*open {
                open = cv.wait(open).unwrap();
            }
            self.got.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stuck_stdout_never_blocks_the_sender_and_drops_are_counted() {
        let registry = Registry::new();
        let stuck = Stuck::default();
        let lines = StdoutLines::start_on(&registry, 8, stuck.clone()).unwrap();
        // A send that waited for the reader would never return here.
        for i in 0..2_000 {
            lines.send(format!("line {i}"));
        }
        // At most the queue (8) and the one batch the writer took before it
        // got stuck (it keeps taking lines while the sender refills the
        // queue, up to BATCH_LINES) got through.
        assert!(
            lines.dropped() >= (2_000 - 8 - BATCH_LINES) as u64,
            "dropped {}",
            lines.dropped()
        );
        let text = String::from_utf8(
            prometheus::TextEncoder::new()
                .encode_to_string(&registry.gather())
                .unwrap()
                .into_bytes(),
        )
        .unwrap();
        assert!(
            text.contains(&format!("{DROPPED_METRIC} {}", lines.dropped())),
            "{text}"
        );
        // Released, the reader gets whole lines and new lines go through again.
        {
            let (lock, cv) = &*stuck.open;
            *lock.lock().unwrap() = true;
            cv.notify_all();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut sent_after = false;
        while Instant::now() < deadline {
            let before = lines.dropped();
            lines.send("after".into());
            if lines.dropped() == before {
                sent_after = true;
                break;
            }
            std::thread::yield_now();
        }
        assert!(sent_after, "the queue never drained");
        assert!(wait(
            || String::from_utf8_lossy(&stuck.got.lock().unwrap()).contains("after\n")
        ));
        let got = String::from_utf8(stuck.got.lock().unwrap().clone()).unwrap();
        assert!(
            got.lines().all(|l| l == "after" || l.starts_with("line ")),
            "{got}"
        );
    }

    #[test]
    fn flush_waits_for_the_queued_lines_and_gives_up_on_a_stuck_stdout() {
        let registry = Registry::new();
        let got = Arc::new(Mutex::new(Vec::new()));
        let lines = StdoutLines::start_on(&registry, 64, Shared(got.clone())).unwrap();
        for i in 0..50 {
            lines.send(format!("line {i}"));
        }
        assert!(lines.flush(Duration::from_secs(30)));
        assert_eq!(
            String::from_utf8(got.lock().unwrap().clone())
                .unwrap()
                .lines()
                .count(),
            50
        );

        let stuck = StdoutLines::start_on(&Registry::new(), 4, Stuck::default()).unwrap();
        for i in 0..10 {
            stuck.send(format!("line {i}"));
        }
        assert!(!stuck.flush(Duration::from_millis(50)));
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

    fn wait(mut cond: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if cond() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }
}
