//! The evaluation loop's state: the engine, the outbox, the poll loops and
//! the outputs, and what it does with a poll, a reload and a rescan of the
//! targets files. Lines go out through [`Outputs`]; loops change through
//! [`Loops::reconcile`].

use std::time::{Duration, Instant};

use anyhow::Context as _;
use shared_schema::{AlertEvent, AlertLine, Timestamp};
use tokio::sync::mpsc;

use super::loops::{Loops, Msg, OnError};
use super::outputs::Outputs;
use crate::config::{Config, Overrides, Target};
use crate::engine::Engine;
use crate::http::Health;
use crate::notify::Notifier;
use crate::outbox::{Found, Outbox};
use crate::rules::RuleSet;
use crate::targets::TargetFiles;
use crate::view::{PollOutcome, PollView};
use crate::web::AlertRow;
use crate::{sd, state};

/// The most often the firing set is re-sent to the sinks and the state
/// file rewritten for baselines alone: both are every alert and baseline,
/// so doing them after every burst of polls made a storm's cost grow with
/// its square. A `firing` or `resolved` line has the state file written
/// sooner, as soon as [`SETTLE_SHARE`] allows (at once on a small fleet),
/// so a crash and restart does not send it twice.
pub(super) const SETTLE_EVERY: Duration = Duration::from_secs(1);

/// A settle (or a state write) may take at most 1/this of the loop: when one took longer
/// than `SETTLE_EVERY / SETTLE_SHARE` (90,000 alerts and 100,000 baselines
/// in a storm), the next waits `SETTLE_SHARE` times as long as it took, so
/// the polls keep the rest of the loop whatever the fleet's size.
const SETTLE_SHARE: u32 = 10;

/// Everything the evaluation loop owns.
pub(super) struct Runner {
    pub(super) over: Overrides,
    pub(super) engine: Engine,
    /// Lines held for a diagnosis (at most [`crate::up_close::DEADLINE`]), per target.
    pub(super) outbox: Outbox,
    pub(super) loops: Loops,
    pub(super) outputs: Outputs,
    pub(super) health: Health,
    pub(super) dropped_tx: mpsc::UnboundedSender<AlertLine>,
    pub(super) interval: Duration,
    pub(super) timeout: Duration,
    pub(super) state_file: Option<std::path::PathBuf>,
    pub(super) listen: std::net::SocketAddr,
    pub(super) state_dirty: bool,
    /// When [`Runner::settle`] last wrote the state and re-sent the firing set.
    pub(super) settled_at: Option<Instant>,
    /// How long that took.
    pub(super) settle_took: Duration,
    /// A `firing` or `resolved` line went out since the state file was
    /// last written: a restart now would send it again.
    pub(super) transitions: bool,
    /// When the state file was last written, and how long that took.
    pub(super) state_saved_at: Option<Instant>,
    pub(super) state_took: Duration,
    /// `target_files` and what each gave.
    pub(super) files: TargetFiles,
    /// The targets of `[[target]]`/`--target` (the files' come on top).
    pub(super) fixed: Vec<Target>,
    /// `shard`: only its targets are polled.
    pub(super) shard: Option<crate::shard::Shard>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("targets", &self.loops.names().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Runner {
    /// Evaluates one poll and sends out what it brought.
    pub(super) fn handle(&mut self, msg: Msg) {
        let ready = self.evaluate(msg);
        self.send(&ready);
    }

    /// Evaluates a burst of polls and sends their lines out together: one
    /// write and one sync of the alert log, and one re-sent firing set for
    /// the sinks, instead of one each per poll (the firing set is every
    /// alert firing, so per poll it grew with the square of a storm). A
    /// target polled twice in the burst has its first lines written before
    /// its second poll is evaluated, as one poll at a time would.
    pub(super) fn handle_batch(&mut self, msgs: Vec<Msg>) {
        let mut ready = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for msg in msgs {
            if !seen.insert(msg.target.clone()) {
                self.send(&std::mem::take(&mut ready));
                seen.clear();
                seen.insert(msg.target.clone());
            }
            ready.extend(self.evaluate(msg));
        }
        self.send(&ready);
    }

    /// Evaluates one poll: its gauges and card are updated, and the lines
    /// that can go out now (the rest wait in the outbox) are returned.
    fn evaluate(&mut self, msg: Msg) -> Vec<AlertLine> {
        let Some(l) = self.loops.get_mut(&msg.target) else {
            return Vec::new(); // a target removed by a reload; its last poll is moot
        };
        let started = Instant::now();
        let obs = &msg.polled.observation;
        self.outputs
            .record(&msg.target, obs, msg.polled.body.as_deref());
        let eval = self.engine.observe_received(&msg.target, obs, msg.received);
        // Lines that want a diagnosis wait for it (bounded) in the outbox.
        let ready = self.outbox.push(&msg.target, Some(l.target()), &eval);
        let up = obs.outcome == PollOutcome::Ok;
        match &obs.outcome {
            PollOutcome::Failed { reason } if l.up || l.last_report.is_none() => {
                tracing::warn!(target = %msg.target, reason = %reason, "poll failed");
            }
            PollOutcome::SchemaIncompatible { found } if l.up || l.last_report.is_none() => {
                tracing::warn!(target = %msg.target, found, "target speaks a newer schema_version");
            }
            PollOutcome::Ok if !l.up && l.last_report.is_some() => {
                tracing::info!(target = %msg.target, "target answers again");
            }
            _ => {}
        }
        l.up = up;
        l.last_report = Some(Instant::now());
        let schema_version = match &obs.outcome {
            PollOutcome::Ok => obs.envelope.as_ref().map(|e| e.schema_version),
            PollOutcome::SchemaIncompatible { found } => Some(*found),
            PollOutcome::Disabled => Some(shared_schema::SCHEMA_VERSION),
            PollOutcome::Failed { .. } => None,
        };
        let view = PollView {
            target: &msg.target,
            outcome: &obs.outcome,
            duration: msg.polled.duration + started.elapsed(),
            now: obs.now,
            schema_version,
            envelope: obs.envelope.as_ref(),
            agents: &eval.agents,
            firing: &eval.firing,
        };
        self.outputs.observe(&view, self.alert_rows(&msg.target));
        tracing::debug!(target = %msg.target, outcome = obs.outcome.label(), lines = eval.emitted.len(),
            agents = eval.agents.len(), eval_us = started.elapsed().as_micros() as u64, "polled");
        self.state_dirty = true;
        ready
    }

    /// A diagnosis came back (or timed out): the lines it held go out.
    pub(super) fn found(&mut self, found: Found) {
        self.found_batch(vec![found]);
    }

    /// Diagnoses that came back together: the lines they held go out in
    /// one write (each target's in its order: a target's batches complete
    /// in the order they were queued).
    pub(super) fn found_batch(&mut self, found: Vec<Found>) {
        let mut lines = Vec::new();
        for f in found {
            lines.extend(self.outbox.complete(f, &mut self.engine));
        }
        self.send(&lines);
    }

    /// Writes and notifies lines that are ready to go out.
    pub(super) fn send(&mut self, lines: &[AlertLine]) {
        self.transitions |= lines
            .iter()
            .any(|l| matches!(l.event, AlertEvent::Firing | AlertEvent::Resolved));
        self.outputs.emit(lines);
    }

    /// After a burst of polls: the state file, the firing set the sinks
    /// follow and the systemd status, at most every [`SETTLE_EVERY`] (the
    /// run loop calls it that often too, so nothing waits longer).
    pub(super) fn settle(&mut self) {
        let now = Instant::now();
        let due = |at: Option<Instant>, every: Duration| {
            at.map_or(true, |at| now.duration_since(at) >= every)
        };
        let every = SETTLE_EVERY.max(self.settle_took.saturating_mul(SETTLE_SHARE));
        if due(self.settled_at, every) {
            self.settle_now();
        } else if self.transitions
            && due(
                self.state_saved_at,
                self.state_took.saturating_mul(SETTLE_SHARE),
            )
        {
            // A line that fired or resolved is in the log: the state file
            // says so as soon as that is cheap (at once on a small fleet),
            // so a crash and restart does not send it a second time.
            self.save_state();
        }
    }

    /// The state file, when something changed and no line is held (the
    /// file must not say an alert fired whose line is not written yet: a
    /// crash would lose it).
    fn save_state(&mut self) {
        if !self.state_dirty || self.outbox.is_holding() {
            return;
        }
        let began = Instant::now();
        if let Some(path) = &self.state_file {
            if let Err(e) = state::save(&self.engine, path) {
                tracing::error!(path = %path.display(), error = %e, "cannot write the state file");
            }
        }
        self.state_dirty = false;
        self.transitions = false;
        let now = Instant::now();
        self.state_took = now.duration_since(began);
        self.state_saved_at = Some(now);
    }

    /// [`Runner::settle`] whenever it was last done: at start, after a
    /// reload, at shutdown.
    pub(super) fn settle_now(&mut self) {
        let began = Instant::now();
        let (engine, outbox) = (&self.engine, &self.outbox);
        self.outputs.sync_firing(|| outbox.firing_now(engine));
        self.save_state();
        sd::status(&self.status_line());
        let now = Instant::now();
        self.settle_took = now.duration_since(began);
        self.settled_at = Some(now);
        if self.settle_took > SETTLE_EVERY / SETTLE_SHARE {
            tracing::debug!(
                took_ms = self.settle_took.as_millis(),
                "settle is slow: spaced out"
            );
        }
    }

    pub(super) fn status_line(&self) -> String {
        format!(
            "{}/{} targets up, {} alerts firing",
            self.loops.up(),
            self.loops.len(),
            self.engine.firing_total()
        )
    }

    /// Every loop reported recently enough (or has just started).
    pub(super) fn healthy(&self) -> bool {
        let grace = self
            .interval
            .saturating_mul(2)
            .saturating_add(self.timeout)
            .saturating_add(Duration::from_secs(5));
        self.loops.healthy(grace)
    }

    /// SIGHUP (or a test's reload): the config again, keeping every
    /// baseline and alert; a bad config keeps the old one running.
    pub(super) fn reload(&mut self) {
        sd::reloading();
        // SIGHUP is also "reopen your log files" (after a rotation without rename).
        self.outputs.log.reopen();
        let now = Timestamp::now();
        match self.try_reload(now) {
            Ok(()) => {
                tracing::info!(targets = self.loops.len(), "config reloaded");
                self.outputs.exporter.config_loaded(true, now);
            }
            Err(e) => {
                tracing::error!(error = %edges::redact::in_text(&format!("{e:#}")), "config reload rejected; the previous config keeps running");
                self.outputs.exporter.config_loaded(false, now);
            }
        }
        sd::ready(&self.status_line());
    }

    fn try_reload(&mut self, now: Timestamp) -> anyhow::Result<()> {
        let mut config = Config::load(&self.over)?;
        if config.targets.is_empty() && config.target_files.is_empty() {
            anyhow::bail!("the new config has no target");
        }
        if let Some(path) = &config.state_file {
            state::check(path)?;
        }
        self.files.set_patterns(config.target_files.clone());
        let (_, errors) = self.files.scan(&names(&config.targets));
        if let Some(dup) = errors.iter().find(|e| e.error.is_duplicate()) {
            // Only that file is refused: the rest of the config holds.
            tracing::warn!(file = %dup.file.display(), error = %dup.error, "targets file refused");
        }
        let all = std::mem::take(&mut config.targets);
        config.targets = config.my_share(all);
        self.fixed = config.targets.clone();
        config.targets.extend(config.my_share(self.files.targets()));
        self.shard = config.shard;
        // Everything that can fail is built before anything changes: the
        // sinks here, the pollers inside `reconcile`.
        let notifier = Notifier::start(
            &config.notify,
            self.exporter_clone(),
            self.dropped_tx.clone(),
        )
        .context("starting notification sinks")?;
        let changed = self.loops.reconcile(
            config.targets.clone(),
            config.interval,
            config.timeout,
            OnError::Refuse,
        )?;
        if config.listen != self.listen {
            tracing::warn!(old = %self.listen, new = %config.listen, "`listen` changes only on restart");
        }

        let rules = std::mem::replace(&mut config.rules, RuleSet::defaults());
        let mut resolved = self
            .engine
            .reconfigure(rules, config.repeat_interval(), now);
        for name in &changed.stopped {
            resolved.extend(self.retire(name, now));
        }
        for name in &changed.started {
            self.outputs.board.add_target(name);
        }
        self.outputs.board.set_interval(config.interval);
        self.outputs.board.note_lines(&resolved);
        let names: Vec<String> = self.loops.names().map(str::to_owned).collect();
        for name in names {
            self.refresh_alerts(&name);
        }
        if config.alert_log.as_deref() != self.outputs.log.path() {
            self.outputs.log.retarget(config.alert_log.clone());
        }
        self.state_file = config.state_file.clone();
        if let Some(rec) = self.outputs.recorder.as_mut() {
            rec.set_rotation(config.record_rotation());
        }
        self.interval = config.interval;
        self.health.set_max_age(super::stuck_after(config.interval));
        self.timeout = config.timeout;

        let resolved = self.outbox.pass(resolved);
        let firing = self.outbox.firing_now(&self.engine);
        self.outputs.swap_notifier(notifier, &resolved, &firing);
        self.state_dirty = true;
        self.settle_now();
        Ok(())
    }

    fn exporter_clone(&self) -> crate::exporter::Exporter {
        self.outputs.exporter.clone()
    }

    /// Pending and firing alerts of `target`, as the page shows them.
    fn alert_rows(&self, target: &str) -> Vec<AlertRow> {
        self.engine
            .alerts_of(target)
            .into_iter()
            .map(|(a, severity)| AlertRow::of(a, severity))
            .collect()
    }

    pub(super) fn refresh_alerts(&self, target: &str) {
        self.outputs
            .board
            .set_alerts(target, self.alert_rows(target));
    }

    /// Stops watching `name` (its loop is already stopped): its series and
    /// card go, and its firing alerts end with the `resolved` lines returned.
    fn retire(&mut self, name: &str, now: Timestamp) -> Vec<AlertLine> {
        let resolved = self.engine.retire_target(name, now);
        self.outputs.forget_target(name);
        tracing::info!(target = %name, resolved = resolved.len(), "target removed");
        resolved
    }

    /// Looks at the targets files; starts and stops poll loops for what changed.
    pub(super) fn rescan(&mut self) {
        let (changed, _) = self.files.scan(&names(&self.fixed));
        if !changed {
            return;
        }
        let now = Timestamp::now();
        let mut desired = self.fixed.clone();
        let theirs = self.files.targets();
        desired.extend(match self.shard {
            Some(shard) => theirs.into_iter().filter(|t| shard.owns(&t.name)).collect(),
            None => theirs,
        });
        let changed =
            match self
                .loops
                .reconcile(desired, self.interval, self.timeout, OnError::Skip)
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "cannot apply the targets files");
                    return;
                }
            };
        let mut resolved = Vec::new();
        for name in &changed.stopped {
            resolved.extend(self.retire(name, now));
        }
        for name in &changed.started {
            self.outputs.board.add_target(name);
        }
        // Behind any line of the same target still held for a diagnosis.
        let resolved = self.outbox.pass(resolved);
        self.send(&resolved);
        self.state_dirty = true;
        self.settle_now();
    }
}

pub(super) fn names(targets: &[Target]) -> std::collections::BTreeSet<String> {
    targets.iter().map(|t| t.name.clone()).collect()
}
