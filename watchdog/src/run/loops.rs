//! The poll loops: one task per target, and [`Loops::reconcile`], the one
//! place that starts, stops and restarts them (at start-up, on a reload and
//! when the targets files change).
//!
//! Each loop polls every `interval` (bounded by `timeout`) and sends what it
//! read to the evaluation loop over one channel, so a slow or dead target
//! never delays another.
//!
//! A loop polls within its first second, then in its target's own slot of
//! the interval ([`first_polls`]), as Prometheus spreads its scrapes:
//! loops started together (every target at start-up) would otherwise poll
//! in the same instant every interval, each with a connection and its
//! buffers open, and hand the evaluation one burst of 1,000 envelopes a
//! second instead of a steady stream.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::Target;
use crate::poll::{Polled, Poller};
use crate::tls::TlsConfig;

/// One poll, on its way to the evaluation loop.
#[derive(Debug)]
pub struct Msg {
    /// The target's name.
    pub target: String,
    /// What the poll read; boxed, so the message (and the loop's task,
    /// which holds one while it waits for room in the channel) stays small.
    pub polled: Box<Polled>,
    /// The watchdog's monotonic clock when the poll ended.
    pub received: Option<watchdog_core::delta::Receipt>,
}

/// What a loop was started with: a change in any of it restarts the loop.
#[derive(Debug, Clone, PartialEq)]
struct Spec {
    target: Target,
    interval: Duration,
    timeout: Duration,
}

/// A running poll loop and what the evaluation loop knows of it.
#[derive(Debug)]
pub struct TargetLoop {
    spec: Spec,
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
    started: Instant,
    /// When its last poll was evaluated.
    pub last_report: Option<Instant>,
    /// Whether its last poll was answered.
    pub up: bool,
}

impl TargetLoop {
    /// The target it polls.
    pub fn target(&self) -> &Target {
        &self.spec.target
    }

    fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

/// What to do with a target whose poller cannot be built (a bad TLS file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Change nothing and return the error (a reload is refused whole).
    Refuse,
    /// Log it and leave that target as it was (one bad entry in a targets
    /// file must not hold back the others).
    Skip,
}

/// What a reconcile changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Targets that got a new loop (new ones and restarted ones).
    pub started: Vec<String>,
    /// Targets no longer watched: their loops are stopped.
    pub stopped: Vec<String>,
}

/// Every poll loop, by target name.
#[derive(Debug)]
pub struct Loops {
    loops: BTreeMap<String, TargetLoop>,
    tx: mpsc::Sender<Msg>,
    /// Whether polls keep the raw body (only `--record` needs it).
    keep_body: bool,
}

impl Loops {
    /// No loop yet; their polls will arrive on `tx`.
    pub fn new(tx: mpsc::Sender<Msg>, keep_body: bool) -> Self {
        Self {
            loops: BTreeMap::new(),
            tx,
            keep_body,
        }
    }

    /// Makes the running loops exactly `desired` at this pace: new targets
    /// start, missing ones stop, changed ones (or loops that ended) restart,
    /// and unchanged ones keep their timers.
    pub fn reconcile(
        &mut self,
        desired: Vec<Target>,
        interval: Duration,
        timeout: Duration,
        on_error: OnError,
    ) -> anyhow::Result<Reconciled> {
        // Everything that can fail is built before anything changes.
        let mut fresh = Vec::new();
        // One client per `tls_config` among the loops this call starts.
        let mut clients: HashMap<Option<&TlsConfig>, reqwest::Client> = HashMap::new();
        for target in &desired {
            let spec = Spec {
                target: target.clone(),
                interval,
                timeout,
            };
            let unchanged = self
                .loops
                .get(&target.name)
                .is_some_and(|l| l.spec == spec && !l.handle.is_finished());
            if unchanged {
                continue;
            }
            let client = match clients.entry(target.tls.as_ref()) {
                Entry::Occupied(e) => Ok(e.get().clone()),
                Entry::Vacant(e) => Poller::client(target.tls.as_ref(), &target.name, timeout)
                    .map(|c| e.insert(c).clone()),
            };
            match client.map(|c| Poller::with_client(target, c, timeout)) {
                Ok(p) => fresh.push((spec, p.keeping_body(self.keep_body))),
                Err(e) if on_error == OnError::Refuse => return Err(e),
                Err(e) => {
                    tracing::error!(target = %target.name, error = %e, "cannot poll the target");
                }
            }
        }
        let stopped: Vec<String> = self
            .loops
            .keys()
            .filter(|k| !desired.iter().any(|t| t.name == **k))
            .cloned()
            .collect();
        for name in &stopped {
            if let Some(l) = self.loops.remove(name) {
                l.stop();
            }
        }
        let mut started = Vec::new();
        for (spec, poller) in fresh {
            let name = spec.target.name.clone();
            let l = self.spawn(spec, poller);
            if let Some(old) = self.loops.insert(name.clone(), l) {
                old.stop();
            }
            started.push(name);
        }
        Ok(Reconciled { started, stopped })
    }

    fn spawn(&self, spec: Spec, poller: Poller) -> TargetLoop {
        let (stop, stop_rx) = watch::channel(false);
        let handle = tokio::spawn(poll_loop(
            spec.target.name.clone(),
            poller,
            spec.interval,
            self.tx.clone(),
            stop_rx,
        ));
        tracing::info!(target = %spec.target.name, url = %crate::config::redact_userinfo(&spec.target.url), interval = %humantime::format_duration(spec.interval), "polling");
        TargetLoop {
            spec,
            stop,
            handle,
            started: Instant::now(),
            last_report: None,
            up: false,
        }
    }

    /// The loop of `name`, if it is watched.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut TargetLoop> {
        self.loops.get_mut(name)
    }

    /// The watched targets' names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.loops.keys().map(String::as_str)
    }

    /// How many targets are watched.
    pub fn len(&self) -> usize {
        self.loops.len()
    }

    /// Whether no target is watched.
    pub fn is_empty(&self) -> bool {
        self.loops.is_empty()
    }

    /// How many answered their last poll.
    pub fn up(&self) -> usize {
        self.loops.values().filter(|l| l.up).count()
    }

    /// Every loop is running and reported within `grace` (or started within it).
    pub fn healthy(&self, grace: Duration) -> bool {
        self.loops.values().all(|l| {
            !l.handle.is_finished() && l.last_report.unwrap_or(l.started).elapsed() <= grace
        })
    }

    /// Stops every loop (a poll in flight is finished and sent) and drops
    /// our sender, so the channel closes once the last of them is done.
    pub fn stop_all(&mut self) {
        for l in self.loops.values() {
            l.stop();
        }
        self.tx = mpsc::channel(1).0;
    }
}

/// When a loop polls, counted from its start: the first poll within the
/// first second (spread by the target's name, so 1,000 loops started
/// together do not open 1,000 connections in one instant), then at its
/// target's slot of the interval (the hash of its name, Prometheus'
/// `hashmod`), the first of those at least half an interval after the
/// first poll, so the first delta spans a real stretch of the agents' CPU.
fn first_polls(name: &str, interval: Duration) -> (Duration, Duration) {
    let ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
    if ms < 2 {
        return (Duration::ZERO, interval);
    }
    let first = Duration::from_millis(crate::shard::hashmod(name, ms.min(1_000)));
    let mut second = Duration::from_millis(crate::shard::hashmod(name, ms));
    while second < first + interval / 2 {
        second += interval;
    }
    (first, second)
}

async fn poll_loop(
    name: String,
    poller: Poller,
    interval: Duration,
    tx: mpsc::Sender<Msg>,
    mut stop: watch::Receiver<bool>,
) {
    let start = tokio::time::Instant::now();
    let (first, second) = first_polls(&name, interval);
    // One timer for both: the first tick at `first`, then reset to the
    // slot. (A `Sleep` of its own made every idle loop's task larger.)
    let mut ticker = tokio::time::interval_at(start + first, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut first_tick = true;
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            _ = ticker.tick() => {}
        }
        if std::mem::take(&mut first_tick) {
            ticker.reset_at(start + second);
        }
        if *stop.borrow() {
            break;
        }
        // A poll in flight is finished even when a stop arrives meanwhile.
        // Boxed for the same reason: the request's state lives only while
        // it runs, not in every idle task.
        let polled = Box::new(Box::pin(poller.poll()).await);
        let received = crate::receipt::now();
        // Room first, then the message: the task never holds a message
        // while it waits.
        let Ok(permit) = tx.reserve().await else {
            break;
        };
        permit.send(Msg {
            target: name.clone(),
            polled,
            received,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_get_slots_spread_over_the_interval() {
        let interval = Duration::from_secs(15);
        let polls: Vec<(Duration, Duration)> = (0..1000)
            .map(|i| first_polls(&format!("orch-{i}"), interval))
            .collect();
        for (first, second) in &polls {
            // The first within a second; the second half an interval or
            // more after it, and no later than needed to reach its slot.
            assert!(*first < Duration::from_secs(1), "{first:?}");
            assert!(*second >= *first + interval / 2, "{first:?} {second:?}");
            assert!(*second < *first + interval * 3 / 2, "{first:?} {second:?}");
        }
        // Both spread about evenly: per tenth of the second, of the interval.
        let mut firsts = [0usize; 10];
        let mut slots = [0usize; 10];
        for (first, second) in &polls {
            firsts[(first.as_millis() / 100) as usize] += 1;
            slots[(second.as_millis() % 15_000 / 1_500) as usize] += 1;
        }
        assert!(firsts.iter().all(|n| (60..=140).contains(n)), "{firsts:?}");
        assert!(slots.iter().all(|n| (60..=140).contains(n)), "{slots:?}");
        // The same name gets the same times (replicas, restarts).
        assert_eq!(
            first_polls("orch-7", interval),
            first_polls("orch-7", interval)
        );
        assert_eq!(
            first_polls("x", Duration::from_millis(1)),
            (Duration::ZERO, Duration::from_millis(1))
        );
    }

    /// An idle loop is a task per target for the life of the watchdog: at
    /// 1,000 targets each KiB of it is a MiB. It was 2,400 bytes with the
    /// poll's state, a message and a `Sleep` inline.
    #[test]
    fn an_idle_loop_is_a_small_task() {
        let target =
            crate::target::Target::new(Some("t".into()), "http://127.0.0.1:1", None).unwrap();
        let poller = Poller::new(&target, Duration::from_secs(1)).unwrap();
        let (tx, _rx) = mpsc::channel(1);
        let (_stop, stop_rx) = watch::channel(false);
        let task = poll_loop("t".into(), poller, Duration::from_secs(1), tx, stop_rx);
        let size = std::mem::size_of_val(&task);
        assert!(size <= 768, "poll_loop's future is {size} bytes");
        assert!(
            std::mem::size_of::<Msg>() <= 64,
            "{}",
            std::mem::size_of::<Msg>()
        );
    }
}
