//! One bounded queue and one worker task per sink.
//!
//! [`SinkQueue::push`] never waits: a full queue (or a worker that died)
//! turns the event into a `dropped` line at once, so polling never blocks
//! on a slow sink and one sink never blocks another. The worker hands
//! batches to its [`Sink`], counts what was delivered and turns what was
//! not into `dropped` lines: nothing is lost silently.
//!
//! Shutdown closes the queue and lets the worker drain it; past the
//! deadline the worker is told to abandon, and the batch in flight plus
//! everything still queued become `dropped` lines.

use std::future::pending;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use shared_schema::{AlertLine, Timestamp};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::group::{Group, Grouper, Grouping};
use super::sink::Sink;
use crate::exporter::Exporter;

/// Counting and reporting for one sink, shared by its queue and worker.
#[derive(Debug, Clone)]
struct Reporter {
    sink: String,
    exporter: Exporter,
    dropped: mpsc::UnboundedSender<AlertLine>,
}

impl Reporter {
    fn dropped(&self, line: &AlertLine, reason: &str) {
        tracing::warn!(sink = %self.sink, key = %line.key, event = %line.event, reason, "notification dropped");
        self.exporter.notification(&self.sink, "dropped");
        if self
            .dropped
            .send(line.dropped(&self.sink, Timestamp::now()))
            .is_err()
        {
            tracing::error!(sink = %self.sink, key = %line.key, "dropped line lost: the alert log is gone");
        }
    }
}

/// A sink's groups, shared by its publishing side (which adds events at
/// once, so a storm of ten thousand alerts costs one entry per alert, not
/// a queue slot per event) and its worker (which sends what is due).
#[derive(Debug)]
struct Groups {
    grouper: Mutex<Grouper>,
    changed: Notify,
}

impl Groups {
    fn lock(&self) -> MutexGuard<'_, Grouper> {
        // The grouper holds plain data; a panic elsewhere leaves it usable.
        self.grouper.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The publishing side of one sink's queue.
#[derive(Debug)]
pub struct SinkQueue {
    events: mpsc::Sender<AlertLine>,
    groups: Option<Arc<Groups>>,
    firing: mpsc::UnboundedSender<Vec<Arc<AlertLine>>>,
    /// [`Sink::follows_firing`], asked once.
    follows_firing: bool,
    abandon: watch::Sender<bool>,
    worker: JoinHandle<()>,
    reporter: Reporter,
}

impl SinkQueue {
    /// Spawns the worker of `sink` with a queue of `capacity` events,
    /// grouping its messages when `grouping` is on.
    pub fn spawn(
        name: &str,
        sink: Box<dyn Sink>,
        capacity: usize,
        grouping: Option<&Grouping>,
        exporter: Exporter,
        dropped: mpsc::UnboundedSender<AlertLine>,
    ) -> Self {
        let reporter = Reporter {
            sink: name.to_owned(),
            exporter,
            dropped,
        };
        reporter.exporter.register_sink(name);
        let (events, events_rx) = mpsc::channel(capacity.max(1));
        let (firing, firing_rx) = mpsc::unbounded_channel();
        let follows_firing = sink.follows_firing();
        let (abandon, abandon_rx) = watch::channel(false);
        let groups = grouping.filter(|g| g.is_on()).map(|g| {
            Arc::new(Groups {
                grouper: Mutex::new(Grouper::new(g.clone())),
                changed: Notify::new(),
            })
        });
        let worker = tokio::spawn(
            Worker {
                sink,
                groups: groups.clone(),
                events: events_rx,
                firing: firing_rx,
                abandon: abandon_rx,
                reporter: reporter.clone(),
            }
            .run(),
        );
        Self {
            events,
            groups,
            firing,
            follows_firing,
            abandon,
            worker,
            reporter,
        }
    }

    /// The sink's name.
    pub fn name(&self) -> &str {
        &self.reporter.sink
    }

    /// Queues one event without waiting; a full queue drops it (reported).
    pub fn push(&self, line: &AlertLine) {
        if let Some(groups) = &self.groups {
            if self.events.is_closed() {
                return self.reporter.dropped(line, "sink worker stopped");
            }
            groups.lock().add(vec![line.clone()], Instant::now());
            groups.changed.notify_one();
            return;
        }
        match self.events.try_send(line.clone()) {
            Ok(()) => self.report_depth(),
            Err(mpsc::error::TrySendError::Full(line)) => {
                self.reporter.dropped(&line, "queue full")
            }
            Err(mpsc::error::TrySendError::Closed(line)) => {
                self.reporter.dropped(&line, "sink worker stopped")
            }
        }
    }

    /// Whether the sink wants [`SinkQueue::sync_firing`].
    pub fn follows_firing(&self) -> bool {
        self.follows_firing
    }

    /// Hands the sink the full set of firing alerts (if it follows it).
    pub fn sync_firing(&self, firing: &[Arc<AlertLine>]) {
        if self.follows_firing {
            let _ = self.firing.send(firing.to_vec());
        }
    }

    fn report_depth(&self) {
        let depth = self.events.max_capacity() - self.events.capacity();
        self.reporter
            .exporter
            .sink_queue_depth(&self.reporter.sink, depth);
    }

    /// Closes the queue, lets the worker drain it until `deadline`, then
    /// makes it drop whatever is left.
    pub async fn shutdown(self, deadline: Instant) {
        let Self {
            events,
            groups: _,
            firing,
            follows_firing: _,
            abandon,
            mut worker,
            reporter,
        } = self;
        drop(events);
        drop(firing);
        if tokio::time::timeout_at(deadline, &mut worker)
            .await
            .is_err()
        {
            tracing::warn!(sink = %reporter.sink, "shutdown deadline passed; dropping what is left");
            let _ = abandon.send(true);
            if let Err(err) = worker.await {
                tracing::error!(sink = %reporter.sink, error = %err, "sink worker failed");
            }
        }
        reporter.exporter.sink_queue_depth(&reporter.sink, 0);
    }
}

struct Worker {
    sink: Box<dyn Sink>,
    /// Holds events for grouped messages; `None`: one message per event.
    groups: Option<Arc<Groups>>,
    events: mpsc::Receiver<AlertLine>,
    firing: mpsc::UnboundedReceiver<Vec<Arc<AlertLine>>>,
    abandon: watch::Receiver<bool>,
    reporter: Reporter,
}

enum Step {
    Events(Vec<AlertLine>),
    Regroup,
    Firing(Vec<Arc<AlertLine>>),
    Tick,
    Closed,
    Abandon,
}

/// Completes when an event joined a group; never for an ungrouped sink.
async fn changed(groups: Option<&Groups>) {
    match groups {
        Some(g) => g.changed.notified().await,
        None => pending::<()>().await,
    }
}

/// Completes when the owner says to abandon; never when it just went away.
async fn abandoned(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|a| *a).await.is_err() {
        pending::<()>().await;
    }
}

impl Worker {
    async fn run(mut self) {
        loop {
            let groups_due = self.groups.as_ref().and_then(|g| g.lock().next_due());
            let tick = match (self.sink.next_tick(), groups_due) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            // A far deadline stands in for "no tick" (the branch is disabled anyway).
            let tick_at =
                tick.unwrap_or_else(|| Instant::now() + std::time::Duration::from_secs(86_400));
            let step = tokio::select! {
                biased;
                _ = abandoned(&mut self.abandon) => Step::Abandon,
                Some(firing) = self.firing.recv() => Step::Firing(firing),
                _ = changed(self.groups.as_deref()) => Step::Regroup,
                line = self.events.recv() => match line {
                    Some(first) => Step::Events(self.batch(first)),
                    None => Step::Closed,
                },
                _ = tokio::time::sleep_until(tick_at), if tick.is_some() => Step::Tick,
            };
            match step {
                Step::Events(batch) => {
                    self.report_depth();
                    if let Some(groups) = &self.groups {
                        groups.lock().add(batch, Instant::now());
                    } else if !self.deliver(batch).await {
                        return self.drain_as_dropped();
                    }
                }
                Step::Firing(firing) => self.sink.sync_firing(firing),
                // A new group may be due sooner: the loop recomputes when.
                Step::Regroup => {}
                Step::Tick => {
                    let now = Instant::now();
                    let due = self.groups.as_ref().map(|g| g.lock().take_due(now));
                    if !self.deliver_groups(due.unwrap_or_default()).await {
                        return self.drain_as_dropped();
                    }
                    if self.sink.next_tick().is_some_and(|t| t <= now) {
                        let Self { sink, abandon, .. } = &mut self;
                        tokio::select! {
                            biased;
                            _ = abandoned(abandon) => return self.drain_as_dropped(),
                            _ = sink.tick() => {}
                        }
                    }
                }
                Step::Closed => {
                    // The queue is closed: what the groups hold goes out now.
                    let rest = self
                        .groups
                        .as_ref()
                        .map(|g| g.lock().take_all(Instant::now()));
                    if !self.deliver_groups(rest.unwrap_or_default()).await {
                        self.drain_as_dropped();
                    }
                    return;
                }
                Step::Abandon => return self.drain_as_dropped(),
            }
        }
    }

    fn batch(&mut self, first: AlertLine) -> Vec<AlertLine> {
        let mut batch = vec![first];
        while batch.len() < self.sink.max_batch() {
            match self.events.try_recv() {
                Ok(line) => batch.push(line),
                Err(_) => break,
            }
        }
        batch
    }

    /// Delivers one batch; false when told to abandon midway (the batch is
    /// then reported as dropped).
    async fn deliver(&mut self, batch: Vec<AlertLine>) -> bool {
        let total = batch.len();
        let copy = batch.clone();
        let Self {
            sink,
            abandon,
            reporter,
            ..
        } = self;
        let undelivered = tokio::select! {
            biased;
            _ = abandoned(abandon) => {
                for line in &copy {
                    reporter.dropped(line, "shutdown deadline");
                }
                return false;
            }
            undelivered = sink.deliver(batch) => undelivered,
        };
        let delivered = total.saturating_sub(undelivered.len());
        if delivered > 0 {
            reporter
                .exporter
                .notifications(&reporter.sink, "delivered", delivered as u64);
        }
        for line in &undelivered {
            reporter.dropped(line, "not delivered");
        }
        true
    }

    /// Delivers grouped messages; false when told to abandon midway (the
    /// rest is then reported as dropped).
    async fn deliver_groups(&mut self, groups: Vec<Group>) -> bool {
        let mut groups = groups.into_iter();
        while let Some(group) = groups.next() {
            let total = group.lines.len();
            let copy = group.lines.clone();
            let Self {
                sink,
                abandon,
                reporter,
                ..
            } = self;
            let undelivered = tokio::select! {
                biased;
                _ = abandoned(abandon) => {
                    for line in copy.iter().chain(groups.flat_map(|g| g.lines).collect::<Vec<_>>().iter()) {
                        reporter.dropped(line, "shutdown deadline");
                    }
                    return false;
                }
                undelivered = sink.deliver_group(group) => undelivered,
            };
            let delivered = total.saturating_sub(undelivered.len());
            if delivered > 0 {
                reporter
                    .exporter
                    .notifications(&reporter.sink, "delivered", delivered as u64);
            }
            for line in &undelivered {
                reporter.dropped(line, "not delivered");
            }
        }
        true
    }

    fn drain_as_dropped(mut self) {
        let left = self
            .groups
            .as_ref()
            .map(|g| g.lock().take_all(Instant::now()));
        {
            for group in left.unwrap_or_default() {
                for line in &group.lines {
                    self.reporter.dropped(line, "shutdown deadline");
                }
            }
        }
        self.events.close();
        while let Ok(line) = self.events.try_recv() {
            self.reporter.dropped(&line, "shutdown deadline");
        }
        self.report_depth();
    }

    fn report_depth(&self) {
        self.reporter
            .exporter
            .sink_queue_depth(&self.reporter.sink, self.events.len());
    }
}
