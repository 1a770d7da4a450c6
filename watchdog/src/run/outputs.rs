//! Where alert lines and poll results go: the alert log (flushed, and
//! stdout through its writer), the `--record` file, the notification sinks,
//! the gauges and the status page. [`Outputs::emit`] is the one place lines
//! leave the watchdog; the engine stays with the runner.

use std::sync::Arc;
use std::time::Duration;

use shared_schema::AlertLine;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::alert_log::AlertLog;
use crate::engine::Observation;
use crate::exporter::Exporter;
use crate::notify::Notifier;
use crate::record::Recorder;
use crate::view::PollView;
use crate::web::{AlertRow, Board, TargetCard};

/// How long queued notifications get at shutdown or when a reload replaces the notifier.
const NOTIFY_DRAIN: Duration = Duration::from_secs(5);

/// Every output of `watchdog run`.
pub struct Outputs {
    pub(super) log: AlertLog,
    pub(super) recorder: Option<Recorder>,
    pub(super) exporter: Exporter,
    notifier: Option<Notifier>,
    /// Notifiers replaced by a reload, still draining; awaited at shutdown so
    /// what they hold is delivered or written as `dropped`, never lost.
    retiring: Vec<JoinHandle<()>>,
    /// What `GET /` and `/api/v1/alerts` render.
    pub(super) board: Board,
    /// Lines went out since the sinks were last given the firing set.
    firing_stale: bool,
}

impl std::fmt::Debug for Outputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outputs")
            .field("alert_log", &self.log.path())
            .finish_non_exhaustive()
    }
}

impl Outputs {
    /// The outputs over these parts.
    pub fn new(
        log: AlertLog,
        recorder: Option<Recorder>,
        exporter: Exporter,
        notifier: Notifier,
        board: Board,
    ) -> Self {
        Self {
            log,
            recorder,
            exporter,
            notifier: Some(notifier),
            retiring: Vec::new(),
            board,
            firing_stale: false,
        }
    }

    /// Writes `lines` to the alert log, hands them to the sinks and the
    /// page. The firing set the sinks follow is re-sent later, by
    /// [`Outputs::sync_firing`]: it is every firing alert, so once per
    /// burst of lines it cost the square of a storm.
    pub fn emit(&mut self, lines: &[AlertLine]) {
        if lines.is_empty() {
            return;
        }
        self.log.write(lines);
        if let Some(n) = &self.notifier {
            for line in lines {
                n.publish(line);
            }
            self.firing_stale = true;
        }
        self.board.note_lines(lines);
    }

    /// If lines went out since the last time, gives the sinks that re-send
    /// state (Alertmanager) `firing`: what the engine has firing and already
    /// written, so an alert whose `resolved` was dropped on a full queue is
    /// not re-sent as firing forever.
    pub fn sync_firing(&mut self, firing: impl FnOnce() -> Vec<Arc<AlertLine>>) {
        if !std::mem::take(&mut self.firing_stale) {
            return;
        }
        if let Some(n) = self.notifier.as_ref().filter(|n| n.follows_firing()) {
            n.sync_firing(&firing());
        }
    }

    /// A line a sink gave up on: the log says so (`dropped`).
    pub fn write_dropped(&mut self, line: AlertLine) {
        self.log.write(&[line]);
    }

    /// Appends a poll to the `--record` file.
    pub fn record(&mut self, target: &str, obs: &Observation, body: Option<&[u8]>) {
        if let Some(rec) = self.recorder.as_mut() {
            rec.record(target, obs, body);
        }
    }

    /// A poll's gauges and its card on the page.
    pub fn observe(&self, view: &PollView<'_>, alerts: Vec<AlertRow>) {
        self.exporter.observe(view);
        // The card is built here, outside the board's lock.
        let card = TargetCard::after_poll(
            self.board.card(view.target).as_deref(),
            view.target,
            view.now,
            view.outcome,
            view.envelope,
            view.agents,
            alerts,
        );
        self.board.put(card);
    }

    /// A target no longer watched: its series and card go.
    pub fn forget_target(&self, name: &str) {
        self.exporter.forget_target(name);
        self.board.remove_target(name);
    }

    /// Puts a reload's notifier in place. `resolved` (the lines the reload
    /// ended, already passed through the outbox) are written and go to the
    /// old sinks, which then drain in the background.
    pub fn swap_notifier(
        &mut self,
        notifier: Notifier,
        resolved: &[AlertLine],
        firing: &[Arc<AlertLine>],
    ) {
        self.log.write(resolved);
        if let Some(old) = self.notifier.replace(notifier) {
            for line in resolved {
                old.publish(line);
            }
            self.retiring.retain(|h| !h.is_finished());
            self.retiring.push(tokio::spawn(old.shutdown(NOTIFY_DRAIN)));
        }
        if let Some(n) = &self.notifier {
            n.sync_firing(firing);
        }
        self.firing_stale = false;
    }

    /// The last act: the current notifier and those a reload replaced drain
    /// side by side, the lines they dropped are logged, and the stdout
    /// writer is given its queue's worth of time.
    pub async fn finish(mut self, dropped: &mut mpsc::UnboundedReceiver<AlertLine>) {
        let current = self
            .notifier
            .take()
            .map(|n| tokio::spawn(n.shutdown(NOTIFY_DRAIN)));
        for handle in self.retiring.drain(..).chain(current) {
            if let Err(err) = handle.await {
                tracing::error!(error = %err, "notifier drain failed");
            }
        }
        while let Ok(line) = dropped.try_recv() {
            self.log.write(&[line]);
        }
        // The writer thread must not be cut off with the last lines still queued.
        let log = self.log;
        let _ = tokio::task::spawn_blocking(move || log.flush_stdout(Duration::from_secs(2))).await;
    }
}
