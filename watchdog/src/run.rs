//! `watchdog run`: one poll loop per target, one evaluation loop for all.
//!
//! Each target has its own task (poll every `interval`, bounded by
//! `timeout`), so a slow or dead target never delays another. Polls come
//! back over a channel to a single loop that owns the engine, the alert log,
//! the exporter, the notifier and the state file: evaluation is serialised
//! (it takes microseconds to milliseconds), lines never interleave, and the
//! log is flushed before that target's next poll. SIGHUP reloads the config
//! keeping every baseline and alert; SIGTERM/SIGINT finish the polls in
//! flight, flush the log and the state file and drain the notifier.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use shared_schema::{AlertLine, Timestamp};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::alert_log::AlertLog;
use crate::config::{Config, Overrides, Target};
use crate::engine::Engine;
use crate::exporter::Exporter;
use crate::http::{self, Health};
use crate::notify::Notifier;
use crate::outbox::{Found, Outbox};
use crate::poll::{Polled, Poller};
use crate::record::Recorder;
use crate::rules::RuleSet;
use crate::stdout::StdoutLines;
use crate::targets::TargetFiles;
use crate::up_close::{self, UpClose};
use crate::view::{PollOutcome, PollView};
use crate::web::{AlertRow, Board, TargetCard};
use crate::{sd, state};

/// How long queued notifications get at shutdown or when a reload replaces the notifier.
const NOTIFY_DRAIN: Duration = Duration::from_secs(5);

/// One poll, on its way to the evaluation loop.
#[derive(Debug)]
struct Msg {
    target: String,
    polled: Polled,
    /// The watchdog's monotonic clock when the poll ended.
    received: Option<watchdog_core::delta::Receipt>,
}

/// A running poll loop.
#[derive(Debug)]
struct TargetLoop {
    spec: (Target, Duration, Duration),
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
    started: Instant,
    last_report: Option<Instant>,
    up: bool,
}

fn spawn_loop(
    target: &Target,
    interval: Duration,
    timeout: Duration,
    tx: &mpsc::Sender<Msg>,
    record: bool,
) -> anyhow::Result<TargetLoop> {
    let poller = Poller::new(target, timeout)?.keeping_body(record);
    let (stop, stop_rx) = watch::channel(false);
    let handle = tokio::spawn(poll_loop(
        target.name.clone(),
        poller,
        interval,
        tx.clone(),
        stop_rx,
    ));
    tracing::info!(target = %target.name, url = %crate::config::redact_userinfo(&target.url), interval = %humantime::format_duration(interval), "polling");
    Ok(TargetLoop {
        spec: (target.clone(), interval, timeout),
        stop,
        handle,
        started: Instant::now(),
        last_report: None,
        up: false,
    })
}

async fn poll_loop(
    name: String,
    poller: Poller,
    interval: Duration,
    tx: mpsc::Sender<Msg>,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            _ = ticker.tick() => {}
        }
        if *stop.borrow() {
            break;
        }
        // A poll in flight is finished even when a stop arrives meanwhile.
        let polled = poller.poll().await;
        let received = crate::receipt::now();
        if tx
            .send(Msg {
                target: name.clone(),
                polled,
                received,
            })
            .await
            .is_err()
        {
            break;
        }
    }
}

/// Everything the evaluation loop owns.
struct Runner {
    over: Overrides,
    engine: Engine,
    log: AlertLog,
    recorder: Option<Recorder>,
    exporter: Exporter,
    notifier: Option<Notifier>,
    /// Lines held for a diagnosis (at most [`up_close::DEADLINE`]), per target.
    outbox: Outbox,
    /// Notifiers replaced by a reload, still draining; awaited at shutdown so
    /// what they hold is delivered or written as `dropped`, never lost.
    retiring: Vec<JoinHandle<()>>,
    health: Health,
    dropped_tx: mpsc::UnboundedSender<AlertLine>,
    poll_tx: mpsc::Sender<Msg>,
    loops: BTreeMap<String, TargetLoop>,
    interval: Duration,
    timeout: Duration,
    state_file: Option<std::path::PathBuf>,
    listen: std::net::SocketAddr,
    state_dirty: bool,
    /// What `GET /` and `/api/v1/alerts` render.
    board: Board,
    /// `target_files` and what each gave.
    files: TargetFiles,
    /// The targets of `[[target]]`/`--target` (the files' come on top).
    fixed: Vec<Target>,
    /// `shard`: only its targets are polled.
    shard: Option<crate::shard::Shard>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("targets", &self.loops.keys())
            .finish_non_exhaustive()
    }
}

/// Runs until SIGTERM/SIGINT.
pub async fn run(over: Overrides) -> anyhow::Result<()> {
    let mut config = Config::load(&over)?;
    if config.targets.is_empty() && config.target_files.is_empty() {
        return Err(crate::config::ConfigError(
            "no target: give --target URL, a [[target]] table or target_files in --config".into(),
        )
        .into());
    }
    let exporter = Exporter::new();
    // The files are read once before anything starts: a name given twice
    // is a config error now (later, only that file is refused).
    let mut files = TargetFiles::new(config.target_files.clone(), Some(exporter.registry()));
    let (_, errors) = files.scan(&names(&config.targets));
    if let Some(dup) = errors.iter().find(|e| e.duplicate) {
        return Err(
            crate::config::ConfigError(format!("{}: {}", dup.file.display(), dup.error)).into(),
        );
    }
    let all = std::mem::take(&mut config.targets);
    config.targets = config.my_share(all);
    let fixed = config.targets.clone();
    config.targets.extend(config.my_share(files.targets()));
    exporter.config_loaded(true, Timestamp::now());
    let stdout = StdoutLines::start(exporter.registry()).context("starting the stdout writer")?;
    // Past RLIMIT_FSIZE a write must fail (EFBIG, handled like a full disk),
    // not kill the process: a handler replaces SIGXFSZ's default action.
    let _xfsz =
        signal(SignalKind::from_raw(libc::SIGXFSZ)).context("installing the SIGXFSZ handler")?;

    let rules = std::mem::replace(&mut config.rules, RuleSet::defaults());
    let mut engine = Engine::new(rules, config.repeat_interval());
    // A target or rule dropped from the config while we were down ends its
    // saved alerts as a reload would: with `resolved` lines, sent below.
    let restored_resolved = match &config.state_file {
        Some(path) => {
            let watched = |t: &str| config.targets.iter().any(|c| c.name == t);
            state::load(&mut engine, path, watched, Timestamp::now())
                .map_err(crate::config::ConfigError)?
        }
        None => Vec::new(),
    };
    let (dropped_tx, mut dropped_rx) = mpsc::unbounded_channel();
    let notifier = Notifier::start(&config.notify, exporter.clone(), dropped_tx.clone())
        .context("starting notification sinks")?;
    notifier.sync_firing(&engine.firing_lines());
    let (found_tx, mut found_rx) = mpsc::unbounded_channel::<Found>();
    let outbox = Outbox::new(
        UpClose::new().context("building the up-close client")?,
        found_tx,
    );

    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding the metrics server to {}", config.listen))?;
    tracing::info!(listen = %listener.local_addr().unwrap_or(config.listen), "metrics server listening");
    let health = Health::default();
    let board = Board::default();
    board.set_interval(config.interval);
    let (server_stop, mut server_stop_rx) = watch::channel(false);
    let server = tokio::spawn(http::serve_with_board(
        listener,
        exporter.clone(),
        health.clone(),
        board.clone(),
        async move {
            let _ = server_stop_rx.wait_for(|s| *s).await;
        },
    ));

    let (poll_tx, mut poll_rx) = mpsc::channel::<Msg>(64);
    let mut runner = Runner {
        over,
        engine,
        log: AlertLog::new(config.alert_log.clone(), Some(stdout)),
        recorder: Recorder::from_config(&config),
        exporter,
        notifier: Some(notifier),
        outbox,
        retiring: Vec::new(),
        health: health.clone(),
        dropped_tx,
        poll_tx,
        loops: BTreeMap::new(),
        interval: config.interval,
        timeout: config.timeout,
        state_file: config.state_file.clone(),
        listen: config.listen,
        state_dirty: false,
        board,
        files,
        fixed,
        shard: config.shard,
    };
    for t in &config.targets {
        let l = spawn_loop(
            t,
            config.interval,
            config.timeout,
            &runner.poll_tx,
            runner.recorder.is_some(),
        )?;
        runner.loops.insert(t.name.clone(), l);
        runner.board.add_target(&t.name);
    }
    // Alerts kept by the state file show before the first poll.
    let saved: Vec<String> = runner.engine.targets().map(str::to_owned).collect();
    for name in saved {
        runner.refresh_alerts(&name);
    }
    if !restored_resolved.is_empty() {
        runner.send(&restored_resolved);
        runner.state_dirty = true;
        runner.settle();
    }
    health.set_max_age(stuck_after(runner.interval));
    health.set(true);
    sd::ready(&runner.status_line());

    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let ping_every = sd::watchdog_interval();
    let mut ping = tokio::time::interval(ping_every.unwrap_or(Duration::from_secs(3600)));
    // The loop turns at least once per interval, so /healthz can tell a stuck one.
    let mut beat = tokio::time::interval(runner.interval);
    // Targets files are looked at every few seconds (a stat per file).
    let mut rescan = tokio::time::interval(rescan_every(runner.interval));
    rescan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        runner.health.beat();
        tokio::select! {
            _ = beat.tick() => {}
            Some(msg) = poll_rx.recv() => {
                runner.handle(msg);
                if poll_rx.is_empty() {
                    runner.settle();
                }
            }
            Some(found) = found_rx.recv() => {
                let lines = runner.outbox.complete(found, &mut runner.engine);
                runner.send(&lines);
                runner.settle();
            }
            Some(line) = dropped_rx.recv() => runner.log.write(&[line]),
            _ = hup.recv() => runner.reload(),
            _ = rescan.tick(), if !runner.files.is_empty() => runner.rescan(),
            _ = term.recv() => { tracing::info!(signal = "SIGTERM", "shutting down"); break; }
            _ = int.recv() => { tracing::info!(signal = "SIGINT", "shutting down"); break; }
            _ = ping.tick(), if ping_every.is_some() => {
                if runner.healthy() {
                    sd::watchdog_ping();
                } else {
                    tracing::warn!("poll loops are behind; withholding the systemd watchdog ping");
                }
            }
        }
    }

    sd::stopping();
    health.set(false);
    for l in runner.loops.values() {
        let _ = l.stop.send(true);
    }
    // Drop our sender so the channel closes once every loop has finished its poll in flight.
    runner.poll_tx = mpsc::channel(1).0;
    let deadline = later(runner.timeout.saturating_add(Duration::from_secs(2)));
    while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, poll_rx.recv()).await {
        runner.handle(msg);
    }
    // Lines held for a diagnosis get their fetch's own bound, then go out
    // with or without one: never lost.
    let deadline = later(up_close::DEADLINE.saturating_add(Duration::from_millis(500)));
    while runner.outbox.is_holding() {
        match tokio::time::timeout_at(deadline, found_rx.recv()).await {
            Ok(Some(found)) => {
                let lines = runner.outbox.complete(found, &mut runner.engine);
                runner.send(&lines);
            }
            _ => break,
        }
    }
    let rest = runner.outbox.release_all();
    runner.send(&rest);
    runner.state_dirty = true;
    runner.settle();
    // The current notifier and those a reload replaced drain side by side;
    // each ends delivered or with `dropped` lines in the channel below.
    let current = runner
        .notifier
        .take()
        .map(|n| tokio::spawn(n.shutdown(NOTIFY_DRAIN)));
    for handle in runner.retiring.drain(..).chain(current) {
        if let Err(err) = handle.await {
            tracing::error!(error = %err, "notifier drain failed");
        }
    }
    while let Ok(line) = dropped_rx.try_recv() {
        runner.log.write(&[line]);
    }
    // The writer thread must not be cut off with the last lines still queued.
    let log = runner.log;
    let _ = tokio::task::spawn_blocking(move || log.flush_stdout(Duration::from_secs(2))).await;
    let _ = server_stop.send(true);
    if let Ok(Ok(Err(e))) = tokio::time::timeout(Duration::from_secs(2), server).await {
        tracing::warn!(error = %e, "metrics server ended with an error");
    }
    tracing::info!("stopped");
    Ok(())
}

impl Runner {
    fn handle(&mut self, msg: Msg) {
        let Some(l) = self.loops.get_mut(&msg.target) else {
            return; // a target removed by a reload; its last poll is moot
        };
        let started = Instant::now();
        let obs = &msg.polled.observation;
        if let Some(rec) = self.recorder.as_mut() {
            rec.record(&msg.target, obs, msg.polled.body.as_deref());
        }
        let eval = self.engine.observe_received(&msg.target, obs, msg.received);
        // Lines that want a diagnosis wait for it (bounded) in the outbox.
        let ready = self.outbox.push(&msg.target, Some(&l.spec.0), &eval);
        send(
            &mut self.log,
            self.notifier.as_ref(),
            &self.engine,
            &self.outbox,
            &ready,
        );
        self.board.note_lines(&ready);
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
        self.exporter.observe(&view);
        // The page's card is built here, outside the board's lock.
        let card = TargetCard::after_poll(
            self.board.card(&msg.target).as_deref(),
            &msg.target,
            obs.now,
            &obs.outcome,
            obs.envelope.as_ref(),
            &eval.agents,
            self.alert_rows(&msg.target),
        );
        self.board.put(card);
        tracing::debug!(target = %msg.target, outcome = obs.outcome.label(), lines = eval.lines.len(),
            agents = eval.agents.len(), eval_us = started.elapsed().as_micros() as u64, "polled");
        self.state_dirty = true;
    }

    /// Writes and notifies lines that are ready to go out.
    fn send(&mut self, lines: &[AlertLine]) {
        send(
            &mut self.log,
            self.notifier.as_ref(),
            &self.engine,
            &self.outbox,
            lines,
        );
        self.board.note_lines(lines);
    }

    /// After a burst of polls: the state file and the systemd status.
    fn settle(&mut self) {
        // Not while lines are held: the state file must not say an alert
        // fired whose line is not written yet (a crash would lose it).
        if self.state_dirty && !self.outbox.is_holding() {
            if let Some(path) = &self.state_file {
                if let Err(e) = state::save(&self.engine, path) {
                    tracing::error!(path = %path.display(), error = %e, "cannot write the state file");
                }
            }
            self.state_dirty = false;
        }
        sd::status(&self.status_line());
    }

    fn status_line(&self) -> String {
        let up = self.loops.values().filter(|l| l.up).count();
        format!(
            "{up}/{} targets up, {} alerts firing",
            self.loops.len(),
            self.engine.firing_total()
        )
    }

    /// Every loop reported recently enough (or has just started).
    fn healthy(&self) -> bool {
        let grace = self
            .interval
            .saturating_mul(2)
            .saturating_add(self.timeout)
            .saturating_add(Duration::from_secs(5));
        self.loops.values().all(|l| {
            !l.handle.is_finished() && l.last_report.unwrap_or(l.started).elapsed() <= grace
        })
    }

    fn reload(&mut self) {
        sd::reloading();
        // SIGHUP is also "reopen your log files" (after a rotation without rename).
        self.log.reopen();
        let now = Timestamp::now();
        match self.try_reload(now) {
            Ok(()) => {
                tracing::info!(targets = self.loops.len(), "config reloaded");
                self.exporter.config_loaded(true, now);
            }
            Err(e) => {
                tracing::error!(error = %edges::redact::in_text(&format!("{e:#}")), "config reload rejected; the previous config keeps running");
                self.exporter.config_loaded(false, now);
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
            state::check(path).map_err(anyhow::Error::msg)?;
        }
        self.files.set_patterns(config.target_files.clone());
        let (_, errors) = self.files.scan(&names(&config.targets));
        if let Some(dup) = errors.iter().find(|e| e.duplicate) {
            // Only that file is refused: the rest of the config holds.
            tracing::warn!(file = %dup.file.display(), error = %dup.error, "targets file refused");
        }
        let all = std::mem::take(&mut config.targets);
        config.targets = config.my_share(all);
        self.fixed = config.targets.clone();
        config.targets.extend(config.my_share(self.files.targets()));
        self.shard = config.shard;
        // Everything that can fail is built before anything changes.
        let notifier = Notifier::start(
            &config.notify,
            self.exporter.clone(),
            self.dropped_tx.clone(),
        )
        .context("starting notification sinks")?;
        let mut fresh = BTreeMap::new();
        for t in &config.targets {
            let spec = (t.clone(), config.interval, config.timeout);
            let unchanged = self
                .loops
                .get(&t.name)
                .is_some_and(|l| l.spec == spec && !l.handle.is_finished());
            if !unchanged {
                fresh.insert(
                    t.name.clone(),
                    spawn_loop(
                        t,
                        config.interval,
                        config.timeout,
                        &self.poll_tx,
                        self.recorder.is_some(),
                    )?,
                );
            }
        }
        if config.listen != self.listen {
            tracing::warn!(old = %self.listen, new = %config.listen, "`listen` changes only on restart");
        }

        let rules = std::mem::replace(&mut config.rules, RuleSet::defaults());
        let mut resolved = self
            .engine
            .reconfigure(rules, config.repeat_interval(), now);
        let keep: Vec<String> = config.targets.iter().map(|t| t.name.clone()).collect();
        let gone: Vec<String> = self
            .loops
            .keys()
            .filter(|k| !keep.contains(k))
            .cloned()
            .collect();
        for name in gone {
            resolved.extend(self.retire(&name, now));
        }
        for (name, l) in fresh {
            self.board.add_target(&name);
            if let Some(old) = self.loops.insert(name, l) {
                let _ = old.stop.send(true);
            }
        }
        self.board.set_interval(config.interval);
        self.board.note_lines(&resolved);
        let names: Vec<String> = self.loops.keys().cloned().collect();
        for name in names {
            self.refresh_alerts(&name);
        }
        if config.alert_log.as_deref() != self.log.path() {
            self.log.retarget(config.alert_log.clone());
        }
        self.state_file = config.state_file.clone();
        if let Some(rec) = self.recorder.as_mut() {
            rec.set_rotation(config.record_rotation());
        }
        self.interval = config.interval;
        self.health.set_max_age(stuck_after(config.interval));
        self.timeout = config.timeout;

        let resolved = self.outbox.pass(resolved);
        self.log.write(&resolved);
        if let Some(old) = self.notifier.replace(notifier) {
            for line in &resolved {
                old.publish(line);
            }
            self.retiring.retain(|h| !h.is_finished());
            self.retiring.push(tokio::spawn(old.shutdown(NOTIFY_DRAIN)));
        }
        if let Some(n) = &self.notifier {
            n.sync_firing(&self.outbox.firing_now(&self.engine));
        }
        self.state_dirty = true;
        self.settle();
        Ok(())
    }
}

impl Runner {
    /// Pending and firing alerts of `target`, as the page shows them.
    fn alert_rows(&self, target: &str) -> Vec<AlertRow> {
        self.engine
            .alerts_of(target)
            .into_iter()
            .map(|(a, severity)| AlertRow::of(a, severity))
            .collect()
    }

    fn refresh_alerts(&self, target: &str) {
        self.board.set_alerts(target, self.alert_rows(target));
    }

    /// Stops watching `name`: its loop stops, its series and card go, and
    /// its firing alerts end with the `resolved` lines returned.
    fn retire(&mut self, name: &str, now: Timestamp) -> Vec<AlertLine> {
        if let Some(l) = self.loops.remove(name) {
            let _ = l.stop.send(true);
        }
        let resolved = self.engine.retire_target(name, now);
        self.exporter.forget_target(name);
        self.board.remove_target(name);
        tracing::info!(target = %name, resolved = resolved.len(), "target removed");
        resolved
    }

    /// Looks at the targets files; starts and stops poll loops for what changed.
    fn rescan(&mut self) {
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
        let gone: Vec<String> = self
            .loops
            .keys()
            .filter(|k| !desired.iter().any(|t| t.name == **k))
            .cloned()
            .collect();
        let mut resolved = Vec::new();
        for name in gone {
            resolved.extend(self.retire(&name, now));
        }
        for t in &desired {
            let spec = (t.clone(), self.interval, self.timeout);
            let unchanged = self
                .loops
                .get(&t.name)
                .is_some_and(|l| l.spec == spec && !l.handle.is_finished());
            if unchanged {
                continue;
            }
            let record = self.recorder.is_some();
            match spawn_loop(t, self.interval, self.timeout, &self.poll_tx, record) {
                Ok(l) => {
                    if let Some(old) = self.loops.insert(t.name.clone(), l) {
                        let _ = old.stop.send(true);
                    }
                    self.board.add_target(&t.name);
                }
                Err(e) => {
                    tracing::error!(target = %t.name, error = %e, "cannot poll the target");
                }
            }
        }
        // Behind any line of the same target still held for a diagnosis.
        let resolved = self.outbox.pass(resolved);
        self.send(&resolved);
        self.state_dirty = true;
        self.settle();
    }
}

fn names(targets: &[Target]) -> std::collections::BTreeSet<String> {
    targets.iter().map(|t| t.name.clone()).collect()
}

/// How often the targets files are looked at: every poll interval, at
/// least every 5 s.
fn rescan_every(interval: Duration) -> Duration {
    interval.min(Duration::from_secs(5))
}

/// Writes `lines` to the alert log and hands them to the sinks.
fn send(
    log: &mut AlertLog,
    notifier: Option<&Notifier>,
    engine: &Engine,
    outbox: &Outbox,
    lines: &[AlertLine],
) {
    if lines.is_empty() {
        return;
    }
    log.write(lines);
    if let Some(n) = notifier {
        for line in lines {
            n.publish(line);
        }
        // Sinks that re-send state (Alertmanager) follow the engine's
        // firing set, so an alert whose `resolved` was dropped on a full
        // queue is not re-sent as firing forever.
        n.sync_firing(&outbox.firing_now(engine));
    }
}

/// `/healthz` fails when the evaluation loop has not turned for this long.
fn stuck_after(interval: Duration) -> Duration {
    interval.saturating_mul(3)
}

/// `now + d`, or a far future when that overflows (a huge configured timeout
/// must not panic at shutdown).
fn later(d: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(d)
        .or_else(|| now.checked_add(FAR_FUTURE))
        .unwrap_or(now)
}

/// A deadline that never comes in practice (about 30 years).
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_timeout_gives_a_far_deadline_not_a_panic() {
        let now = tokio::time::Instant::now();
        assert!(later(Duration::MAX) > now);
        assert!(later(Duration::from_secs(1)) > now);
        assert_eq!(stuck_after(Duration::MAX), Duration::MAX);
    }
}
