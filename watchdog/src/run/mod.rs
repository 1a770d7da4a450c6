//! `watchdog run`: one poll loop per target, one evaluation loop for all.
//!
//! [`run`] takes a loaded config, a bound listener, a reload channel and a
//! shutdown future (the binary wires SIGHUP and SIGTERM/SIGINT to them;
//! tests drive them in-process). Each target has its own task
//! (`loops`), so a slow or dead target never delays another. Polls come
//! back over a channel to a single loop (`runner`) that owns the engine
//! and the state file and sends every line through `outputs`: evaluation
//! is serialised (it takes microseconds to milliseconds), lines never
//! interleave, and the log is flushed before that target's next poll.
//! Polls that arrive together are taken as one burst (up to `BURST`):
//! evaluated one after the other, then written with one write and one sync
//! of the log (group commit); a target twice in a burst has its first lines
//! written before its second poll is evaluated. What costs every alert (the
//! state file, the firing set re-sent to the sinks) is done at most once a
//! second (`runner::SETTLE_EVERY`), at once on reload and stop, and the
//! state file as soon as a line fired or resolved (within a tenth of the
//! loop's time). Measured (issue 22), the loop was not short of CPU
//! (one poll is ~10 µs of it at 10 agents) but did per-poll work that grew
//! with the fleet; docs/PERFORMANCE.md "Fleet" has the figures. A
//! reload keeps every baseline and alert; shutdown finishes the polls in
//! flight, flushes the log and the state file and drains the notifier.

mod loops;
mod outputs;
mod runner;

use std::future::Future;
use std::time::Duration;

use anyhow::Context as _;
use shared_schema::Timestamp;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

pub use loops::{Loops, Msg, OnError, Reconciled};
pub use outputs::Outputs;

use crate::alert_log::AlertLog;
use crate::config::{Config, ConfigError, Overrides};
use crate::engine::Engine;
use crate::exporter::Exporter;
use crate::http::{self, Health};
use crate::notify::Notifier;
use crate::outbox::{Found, Outbox};
use crate::record::Recorder;
use crate::rules::RuleSet;
use crate::stdout::StdoutLines;
use crate::targets::TargetFiles;
use crate::up_close::{self, UpClose};
use crate::web::Board;
use crate::{sd, state};
use runner::{names, Runner};

/// A config with nothing to poll is refused before anything starts (the
/// binary asks before it binds the listener, so that is exit 2).
pub fn check(config: &Config) -> Result<(), ConfigError> {
    if config.targets.is_empty() && config.target_files.is_empty() {
        return Err(ConfigError::NoTarget);
    }
    Ok(())
}

/// Runs until `shutdown` completes. `config` is `over` loaded (a reload
/// loads `over` again); the metrics server answers on `listener`; each
/// message on `reload` is a SIGHUP.
pub async fn run(
    over: Overrides,
    mut config: Config,
    listener: TcpListener,
    mut reload: mpsc::Receiver<()>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    check(&config)?;
    let exporter = Exporter::new();
    // The files are read once before anything starts: a name given twice
    // is a config error now (later, only that file is refused).
    let mut files = TargetFiles::new(config.target_files.clone(), Some(exporter.registry()));
    let (_, errors) = files.scan(&names(&config.targets));
    if let Some(dup) = errors.iter().find(|e| e.error.is_duplicate()) {
        return Err(ConfigError::TargetFile {
            file: dup.file.clone(),
            problem: dup.error.clone(),
        }
        .into());
    }
    let all = std::mem::take(&mut config.targets);
    config.targets = config.my_share(all);
    let fixed = config.targets.clone();
    config.targets.extend(config.my_share(files.targets()));
    exporter.config_loaded(true, Timestamp::now());
    let stdout = StdoutLines::start(exporter.registry()).context("starting the stdout writer")?;

    let rules = std::mem::replace(&mut config.rules, RuleSet::defaults());
    let mut engine = Engine::new(rules, config.repeat_interval());
    // A target or rule dropped from the config while we were down ends its
    // saved alerts as a reload would: with `resolved` lines, sent below.
    let restored_resolved = match &config.state_file {
        Some(path) => {
            let watched = |t: &str| config.targets.iter().any(|c| c.name == t);
            state::load(&mut engine, path, watched, Timestamp::now())
                .map_err(|error| ConfigError::StateFile { error })?
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

    let web = config
        .web_config_file
        .as_deref()
        .map(edges::web_config::WebConfig::load)
        .transpose()?;
    tracing::info!(
        listen = %listener.local_addr().unwrap_or(config.listen),
        tls = web.as_ref().is_some_and(edges::web_config::WebConfig::is_tls),
        basic_auth = web.as_ref().is_some_and(edges::web_config::WebConfig::has_users),
        "metrics server listening"
    );
    let health = Health::default();
    let board = Board::default();
    board.set_interval(config.interval);
    let (server_stop, mut server_stop_rx) = watch::channel(false);
    let server = tokio::spawn(http::serve_guarded(
        listener,
        exporter.clone(),
        health.clone(),
        board.clone(),
        web,
        async move {
            let _ = server_stop_rx.wait_for(|s| *s).await;
        },
    ));

    let (poll_tx, mut poll_rx) = mpsc::channel::<Msg>(BURST);
    let recorder = Recorder::from_config(&config);
    let loops = Loops::new(poll_tx, recorder.is_some());
    let mut runner = Runner {
        over,
        engine,
        outbox,
        loops,
        outputs: Outputs::new(
            AlertLog::new(config.alert_log.clone(), Some(stdout)),
            recorder,
            exporter,
            notifier,
            board,
        ),
        health: health.clone(),
        dropped_tx,
        interval: config.interval,
        timeout: config.timeout,
        state_file: config.state_file.clone(),
        listen: config.listen,
        state_dirty: false,
        settled_at: None,
        settle_took: Duration::ZERO,
        transitions: false,
        state_saved_at: None,
        state_took: Duration::ZERO,
        files,
        fixed,
        shard: config.shard,
    };
    let started = runner.loops.reconcile(
        config.targets.clone(),
        config.interval,
        config.timeout,
        OnError::Refuse,
    )?;
    for name in &started.started {
        runner.outputs.board.add_target(name);
    }
    // Alerts kept by the state file show before the first poll.
    let saved: Vec<String> = runner.engine.targets().map(str::to_owned).collect();
    for name in saved {
        runner.refresh_alerts(&name);
    }
    if !restored_resolved.is_empty() {
        runner.send(&restored_resolved);
        runner.state_dirty = true;
        runner.settle_now();
    }
    health.set_max_age(stuck_after(runner.interval));
    health.set(true);
    sd::ready(&runner.status_line());

    let ping_every = sd::watchdog_interval();
    let mut ping = tokio::time::interval(ping_every.unwrap_or(Duration::from_secs(3600)));
    // The loop turns at least once per interval, so /healthz can tell a stuck one.
    let mut beat = tokio::time::interval(runner.interval);
    // Targets files are looked at every few seconds (a stat per file).
    let mut rescan = tokio::time::interval(rescan_every(runner.interval));
    rescan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // What a burst left for later (state file, firing set) waits no longer.
    let mut settle = tokio::time::interval(runner::SETTLE_EVERY);
    settle.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reloads_open = true;
    tokio::pin!(shutdown);

    loop {
        runner.health.beat();
        tokio::select! {
            _ = beat.tick() => {}
            _ = settle.tick() => runner.settle(),
            Some(msg) = poll_rx.recv() => {
                runner.handle_batch(drain(msg, &mut poll_rx));
                if poll_rx.is_empty() {
                    runner.settle();
                }
            }
            Some(found) = found_rx.recv() => {
                let mut all = vec![found];
                while all.len() < BURST {
                    match found_rx.try_recv() {
                        Ok(f) => all.push(f),
                        Err(_) => break,
                    }
                }
                runner.found_batch(all);
                runner.settle();
            }
            Some(line) = dropped_rx.recv() => runner.outputs.write_dropped(line),
            r = reload.recv(), if reloads_open => match r {
                Some(()) => runner.reload(),
                None => reloads_open = false,
            },
            _ = rescan.tick(), if !runner.files.is_empty() => runner.rescan(),
            () = &mut shutdown => break,
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
    runner.loops.stop_all();
    let deadline = later(runner.timeout.saturating_add(Duration::from_secs(2)));
    while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, poll_rx.recv()).await {
        runner.handle(msg);
    }
    // Lines held for a diagnosis get their fetch's own bound, then go out
    // with or without one: never lost.
    let deadline = later(up_close::DEADLINE.saturating_add(Duration::from_millis(500)));
    while runner.outbox.is_holding() {
        match tokio::time::timeout_at(deadline, found_rx.recv()).await {
            Ok(Some(found)) => runner.found(found),
            _ => break,
        }
    }
    let rest = runner.outbox.release_all();
    runner.send(&rest);
    runner.state_dirty = true;
    runner.settle_now();
    runner.outputs.finish(&mut dropped_rx).await;
    let _ = server_stop.send(true);
    if let Ok(Ok(Err(e))) = tokio::time::timeout(Duration::from_secs(2), server).await {
        tracing::warn!(error = %e, "metrics server ended with an error");
    }
    tracing::info!("stopped");
    Ok(())
}

/// The most polls (or diagnoses) taken off their channel for one write of
/// the alert log: a burst is evaluated and written together (group commit).
const BURST: usize = 256;

/// `first` and the polls already waiting behind it, up to [`BURST`].
fn drain(first: Msg, rx: &mut mpsc::Receiver<Msg>) -> Vec<Msg> {
    let mut all = vec![first];
    while all.len() < BURST {
        match rx.try_recv() {
            Ok(m) => all.push(m),
            Err(_) => break,
        }
    }
    all
}

/// How often the targets files are looked at: every poll interval, at
/// least every 5 s.
fn rescan_every(interval: Duration) -> Duration {
    interval.min(Duration::from_secs(5))
}

/// `/healthz` fails when the evaluation loop has not turned for this long:
/// 3 intervals, but never under 2 s, so a short test interval on a loaded
/// host does not read one slow turn as a stuck loop.
fn stuck_after(interval: Duration) -> Duration {
    interval.saturating_mul(3).max(STUCK_AFTER_FLOOR)
}

const STUCK_AFTER_FLOOR: Duration = Duration::from_secs(2);

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

    #[test]
    fn the_loop_is_stuck_after_three_intervals_but_never_under_two_seconds() {
        assert_eq!(
            stuck_after(Duration::from_secs(15)),
            Duration::from_secs(45)
        );
        assert_eq!(
            stuck_after(Duration::from_millis(200)),
            Duration::from_secs(2)
        );
    }
}
