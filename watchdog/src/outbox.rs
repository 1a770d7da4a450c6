//! The alert lines of each target on their way out, completed with a
//! diagnosis where the core asks for one (CONTRACT.md section 3).
//!
//! The core marks the `firing`/`repeat` lines of rules about an agent
//! ([`Emitted::diagnose`]); here each such batch of lines waits while one
//! task asks the target's emitter for `GET /agents/{job_id}`, builds the
//! sentences ([`diagnose`]) and hands them back to the run loop, which
//! completes the lines and writes them. The task has one deadline, the
//! batch's arrival plus the fetcher's bound ([`crate::up_close::DEADLINE`],
//! 2 s): whatever it has not found by then is "no diagnosis". So a line is
//! held at most about 2 s and never suppressed: a fetch that fails or times
//! out, or an emitter older than page 2 (404), leaves the line as it was.
//!
//! The emitters and the watchdog are spared a storm (10,000 agents stuck at
//! once across a fleet, a short `repeat_interval`): one task per target
//! fetches at a time, at most [`CONCURRENCY`] views of one target at once,
//! and a [`Budget`] shared by all targets bounds the views in flight
//! ([`GLOBAL_IN_FLIGHT`]) and started per second ([`FETCHES_PER_SECOND`]).
//! A view that finds the budget spent is not asked at all, rather than
//! waited for: in a storm the first views of each second are fetched and
//! the other lines go out at once without a diagnosis, instead of all of
//! them sitting out the hold (measured: 9,000 stuck alerts over 1,000
//! targets reached the file 2.5 s after their poll when they waited, under
//! 0.5 s now). The wait for the target's turn is inside the batch's
//! deadline, so the budget can only cost diagnoses, never lateness.
//!
//! Order is kept per target: a batch waits behind the one before it (so a
//! `resolved` never overtakes its own `firing`), while other targets' lines
//! go out at once: a slow emitter delays only its own alerts.

use std::collections::{BTreeMap, HashSet, VecDeque};

use shared_schema::AlertLine;
use std::sync::Arc;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::config::Target;
use crate::diagnose::{complete, diagnose};
use crate::engine::{Emitted, Engine, Evaluation};
use crate::up_close::UpClose;

/// The most views asked of one emitter at once (the emitter reads 8 at
/// once, its `UP_CLOSE_READS`; half leaves room for the second watchdog
/// of an HA pair).
pub const CONCURRENCY: usize = 4;

/// The most views in flight over all targets at once.
pub const GLOBAL_IN_FLIGHT: usize = 64;

/// The most views started per second over all targets (burst the same).
pub const FETCHES_PER_SECOND: u32 = 200;

/// What all targets' diagnosis fetches share: permits for views in flight
/// and a rate of starts. Cloning shares it.
#[derive(Debug, Clone)]
pub struct Budget {
    in_flight: Arc<Semaphore>,
    rate: Arc<DefaultDirectRateLimiter>,
}

impl Budget {
    /// At most `in_flight` views at once and `per_second` started a second.
    pub fn new(in_flight: usize, per_second: u32) -> Self {
        let per_second = std::num::NonZeroU32::new(per_second).unwrap_or(std::num::NonZeroU32::MIN);
        Self {
            in_flight: Arc::new(Semaphore::new(in_flight.max(1))),
            rate: Arc::new(RateLimiter::direct(Quota::per_second(per_second))),
        }
    }
}

impl Default for Budget {
    fn default() -> Self {
        Self::new(GLOBAL_IN_FLIGHT, FETCHES_PER_SECOND)
    }
}

/// The diagnoses found for one held batch.
#[derive(Debug)]
pub struct Found {
    target: String,
    batch: u64,
    /// Per job asked: the sentence, or `None` (no view, or nothing to say).
    by_job: BTreeMap<i64, Option<String>>,
}

/// One poll's lines of one target, each with the job it waits on.
#[derive(Debug)]
struct Batch {
    id: u64,
    lines: Vec<Emitted>,
    /// Still waiting for its diagnoses.
    held: bool,
}

/// The held batches of every target.
#[derive(Debug)]
pub struct Outbox {
    up_close: UpClose,
    queues: BTreeMap<String, VecDeque<Batch>>,
    /// One fetching task at a time per target (dropped with its queue).
    turns: BTreeMap<String, Arc<Semaphore>>,
    found_tx: mpsc::UnboundedSender<Found>,
    next_id: u64,
    budget: Budget,
}

impl Outbox {
    /// An outbox whose fetch tasks report on `found_tx` (the run loop
    /// passes what arrives to [`Outbox::complete`]).
    pub fn new(up_close: UpClose, found_tx: mpsc::UnboundedSender<Found>) -> Self {
        Self::with_budget(up_close, found_tx, Budget::default())
    }

    /// [`Outbox::new`] with a budget other than the default one.
    pub fn with_budget(
        up_close: UpClose,
        found_tx: mpsc::UnboundedSender<Found>,
        budget: Budget,
    ) -> Self {
        Self {
            up_close,
            queues: BTreeMap::new(),
            turns: BTreeMap::new(),
            found_tx,
            next_id: 0,
            budget,
        }
    }

    /// Takes one evaluation's lines for `target` (whose emitter is
    /// `source`, when still configured) and returns those that can go out
    /// now; the rest follow from [`Outbox::complete`].
    pub fn push(
        &mut self,
        target: &str,
        source: Option<&Target>,
        eval: &Evaluation,
    ) -> Vec<AlertLine> {
        // A target a reload removed has no emitter to ask.
        let jobs: Vec<i64> = match source {
            Some(_) => eval.emitted.iter().filter_map(|e| e.diagnose).collect(),
            None => Vec::new(),
        };
        let queued = self.queues.get(target).is_some_and(|q| !q.is_empty());
        if jobs.is_empty() && !queued {
            return eval.lines().cloned().collect();
        }
        if eval.emitted.is_empty() {
            return Vec::new();
        }
        let queue = self.queues.entry(target.to_owned()).or_default();
        let id = self.next_id;
        self.next_id += 1;
        let held = !jobs.is_empty();
        if let (true, Some(t)) = (held, source) {
            let turn = self
                .turns
                .entry(target.to_owned())
                .or_insert_with(|| Arc::new(Semaphore::new(1)))
                .clone();
            tokio::spawn(fetch(
                Ask {
                    up_close: self.up_close.for_target(t),
                    target: t.name.clone(),
                    url: t.url.clone(),
                    token: t.token.clone(),
                    batch: id,
                    deadline: Instant::now() + self.up_close.deadline(),
                    budget: self.budget.clone(),
                },
                turn,
                jobs,
                self.found_tx.clone(),
            ));
        }
        let mut lines = eval.emitted.clone();
        if !held {
            // Queued behind a held batch only for order: nothing to ask.
            lines.iter_mut().for_each(|e| e.diagnose = None);
        }
        queue.push_back(Batch { id, lines, held });
        Vec::new()
    }

    /// Completes the batch `found` is for (and tells the engine, so the
    /// firing set re-sent to sinks carries the diagnosis); returns the
    /// lines of `found`'s target that can go out now, in order.
    pub fn complete(&mut self, found: Found, engine: &mut Engine) -> Vec<AlertLine> {
        let Some(queue) = self.queues.get_mut(&found.target) else {
            return Vec::new();
        };
        if let Some(batch) = queue.iter_mut().find(|b| b.id == found.batch) {
            for e in &mut batch.lines {
                let Some(job) = e.diagnose.take() else {
                    continue;
                };
                let sentence = found.by_job.get(&job).cloned().flatten();
                engine.set_diagnosis(&found.target, &e.line.key, sentence.clone());
                if let Some(s) = sentence {
                    complete(&mut e.line, s);
                }
            }
            batch.held = false;
        }
        let mut out = Vec::new();
        while queue.front().is_some_and(|b| !b.held) {
            if let Some(b) = queue.pop_front() {
                out.extend(b.lines.into_iter().map(|e| e.line));
            }
        }
        if queue.is_empty() {
            // Every task of this target has reported: none holds its turn.
            self.queues.remove(&found.target);
            self.turns.remove(&found.target);
        }
        out
    }

    /// Lines made outside a poll (a reload resolving alerts): those of a
    /// target with held lines queue behind them; the rest go out now.
    pub fn pass(&mut self, lines: Vec<AlertLine>) -> Vec<AlertLine> {
        let mut now = Vec::new();
        for line in lines {
            match self.queues.get_mut(&line.target) {
                Some(queue) => {
                    let id = self.next_id;
                    self.next_id += 1;
                    queue.push_back(Batch {
                        id,
                        lines: vec![Emitted::ready(line)],
                        held: false,
                    });
                }
                None => now.push(line),
            }
        }
        now
    }

    /// The engine's firing set without the alerts whose first `firing`
    /// line is still held: a sink that re-sends state must not announce
    /// them before the line (and without its diagnosis).
    pub fn firing_now(&self, engine: &Engine) -> Vec<Arc<AlertLine>> {
        let mut firing = engine.firing_lines();
        if self.is_holding() {
            let held = self.held_keys();
            firing.retain(|l| !held.contains(l.key.as_str()));
        }
        firing
    }

    /// Whether any batch is still held.
    pub fn is_holding(&self) -> bool {
        !self.queues.is_empty()
    }

    /// Keys of the alerts whose lines are held (not yet announced).
    pub fn held_keys(&self) -> HashSet<&str> {
        self.queues
            .values()
            .flatten()
            .flat_map(|b| b.lines.iter().map(|e| e.line.key.as_str()))
            .collect()
    }

    /// Every held line, as it is (for a shutdown whose fetches ran out of time).
    pub fn release_all(&mut self) -> Vec<AlertLine> {
        self.turns.clear();
        std::mem::take(&mut self.queues)
            .into_values()
            .flatten()
            .flat_map(|b| b.lines.into_iter().map(|e| e.line))
            .collect()
    }
}

/// What one fetching task asks, of whom, and until when.
#[derive(Debug)]
struct Ask {
    up_close: UpClose,
    target: String,
    url: String,
    token: Option<String>,
    batch: u64,
    /// The batch's arrival plus the fetcher's bound: the line goes out then.
    deadline: Instant,
    budget: Budget,
}

/// Waits for the target's turn, then [`sentences`] until the batch's
/// deadline, and sends them back.
async fn fetch(ask: Ask, turn: Arc<Semaphore>, jobs: Vec<i64>, tx: mpsc::UnboundedSender<Found>) {
    let work = async {
        // The semaphore is never closed; were it, there is no turn to wait for.
        let _turn = turn.acquire_owned().await.ok();
        sentences_within(
            &ask.up_close,
            &ask.url,
            ask.token.as_deref(),
            jobs,
            ask.deadline,
            &ask.budget,
        )
        .await
    };
    let by_job = tokio::time::timeout_at(ask.deadline, work)
        .await
        .unwrap_or_default();
    // The loop may be gone (shutdown): the lines are then released as they are.
    let _ = tx.send(Found {
        target: ask.target,
        batch: ask.batch,
        by_job,
    });
}

/// The diagnosis of each of `jobs` from the emitter whose `/metrics` is
/// `url`: at most [`CONCURRENCY`] views asked at once, and what is not
/// found by `deadline` is `None` (so is a job whose view says nothing).
pub async fn sentences(
    up_close: &UpClose,
    url: &str,
    token: Option<&str>,
    jobs: Vec<i64>,
    deadline: Instant,
) -> BTreeMap<i64, Option<String>> {
    sentences_within(up_close, url, token, jobs, deadline, &Budget::default()).await
}

/// [`sentences`] under `budget`: each view takes a permit and a start
/// from it before it is asked (none left: not asked) and gives the permit
/// back when answered.
pub async fn sentences_within(
    up_close: &UpClose,
    url: &str,
    token: Option<&str>,
    mut jobs: Vec<i64>,
    deadline: Instant,
    budget: &Budget,
) -> BTreeMap<i64, Option<String>> {
    jobs.sort_unstable();
    jobs.dedup();
    let mut by_job: BTreeMap<i64, Option<String>> = jobs.iter().map(|j| (*j, None)).collect();
    let work = async {
        let mut todo = jobs.into_iter();
        let mut set = JoinSet::new();
        loop {
            while set.len() < CONCURRENCY {
                let Some(job) = todo.next() else { break };
                let (up_close, url, token) =
                    (up_close.clone(), url.to_owned(), token.map(str::to_owned));
                let budget = budget.clone();
                set.spawn(async move {
                    // The budget spent (a storm): this view is not asked,
                    // so the line is not held for it.
                    let Ok(_permit) = budget.in_flight.try_acquire_owned() else {
                        return (job, None);
                    };
                    if budget.rate.check().is_err() {
                        return (job, None);
                    }
                    let view = up_close.fetch(&url, token.as_deref(), job).await;
                    (job, view.as_ref().and_then(diagnose))
                });
            }
            match set.join_next().await {
                Some(Ok((job, sentence))) => {
                    by_job.insert(job, sentence);
                }
                Some(Err(e)) => tracing::warn!(error = %e, "diagnosis task failed"),
                None => return,
            }
        }
    };
    // Past the deadline the set is dropped, which aborts what is in flight.
    if tokio::time::timeout_at(deadline, work).await.is_err() {
        tracing::debug!("diagnoses cut at the deadline");
    }
    by_job
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use shared_schema::{AlertEvent, Severity, Timestamp};

    fn line(key: &str, event: AlertEvent) -> AlertLine {
        let ts = Timestamp::parse("2026-11-22T10:00:00Z").unwrap();
        AlertLine {
            ts,
            event,
            rule: "stuck_agent".into(),
            severity: Severity::Warning,
            target: "t".into(),
            key: key.into(),
            labels: Default::default(),
            summary: "agent dev (job 7, pid 1) used 0.0% CPU for 10m".into(),
            value: None,
            threshold: None,
            since: ts,
            diagnosis: None,
            sink: None,
        }
    }

    /// A line that wants the diagnosis of `job_id`.
    fn wanting(line: AlertLine, job_id: i64) -> Emitted {
        Emitted {
            diagnose: Some(job_id),
            ..Emitted::ready(line)
        }
    }

    fn target(url: &str) -> Target {
        Target {
            name: "t".into(),
            url: url.into(),
            token_file: None,
            token: None,
            tls: None,
        }
    }

    fn engine() -> Engine {
        Engine::new(crate::rules::RuleSet::defaults(), Duration::from_secs(60))
    }

    #[tokio::test]
    async fn lines_without_a_wish_go_out_at_once_and_in_order_behind_a_held_batch() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        // Nothing listens on port 9 of loopback: the fetch fails fast.
        let mut out = Outbox::new(UpClose::new().unwrap(), tx);
        let t = target("http://127.0.0.1:9/metrics");
        let plain = Evaluation {
            emitted: vec![Emitted::ready(line("a", AlertEvent::Firing))],
            ..Evaluation::default()
        };
        assert_eq!(out.push("t", Some(&t), &plain).len(), 1);
        let wants = Evaluation {
            emitted: vec![wanting(line("b", AlertEvent::Firing), 7)],
            ..Evaluation::default()
        };
        assert!(out.push("t", Some(&t), &wants).is_empty());
        // Behind the held batch, even without a wish of its own.
        let after = Evaluation {
            emitted: vec![Emitted::ready(line("b", AlertEvent::Resolved))],
            ..Evaluation::default()
        };
        assert!(out.push("t", Some(&t), &after).is_empty());
        // Another target is not held up.
        assert_eq!(out.push("u", Some(&t), &plain).len(), 1);
        assert!(out.held_keys().contains("b"));
        let found = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        let lines = out.complete(found, &mut engine());
        let events: Vec<_> = lines.iter().map(|l| (l.key.as_str(), l.event)).collect();
        assert_eq!(
            events,
            [("b", AlertEvent::Firing), ("b", AlertEvent::Resolved)]
        );
        assert_eq!(lines[0].diagnosis, None, "no emitter: no diagnosis");
        assert_eq!(lines[0].summary, line("b", AlertEvent::Firing).summary);
        assert!(!out.is_holding());
    }

    #[tokio::test]
    async fn an_emitter_that_never_answers_holds_lines_only_up_to_the_deadline_and_is_not_stormed()
    {
        // Accepts, never answers: the deadline ends the wait. Counts the
        // connections it was asked to hold.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (count_tx, mut count_rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                held.push(conn);
                let _ = count_tx.send(held.len());
            }
        });
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut out = Outbox::new(
            UpClose::with_deadline(Duration::from_millis(300)).unwrap(),
            tx,
        );
        let t = target(&format!("http://{addr}/metrics"));
        // Two polls' worth of 30 stuck agents each.
        let batch = |key: &str| Evaluation {
            emitted: (0..30)
                .map(|i| wanting(line(key, AlertEvent::Repeat), i))
                .collect(),
            ..Evaluation::default()
        };
        assert!(out.push("t", Some(&t), &batch("a")).is_empty());
        assert!(out.push("t", Some(&t), &batch("b")).is_empty());
        let mut lines = Vec::new();
        for _ in 0..2 {
            let found = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("each batch ends at its deadline")
                .unwrap();
            lines.extend(out.complete(found, &mut engine()));
        }
        assert_eq!(lines.len(), 60, "never suppressed");
        assert!(lines.iter().all(|l| l.diagnosis.is_none()));
        assert_eq!(lines[0].key, "a", "in order");
        let mut most = 0;
        while let Ok(n) = count_rx.try_recv() {
            most = n;
        }
        assert!(
            (1..=CONCURRENCY).contains(&most),
            "{most} connections held at once: one task per target, {CONCURRENCY} views at most"
        );
        assert!(!out.is_holding());
    }

    /// An `/agents` server that answers 404 after `delay`, counting the
    /// requests it holds at once (the most so far) and in all.
    async fn slow_agents_server(
        delay: Duration,
    ) -> (
        std::net::SocketAddr,
        Arc<std::sync::atomic::AtomicUsize>,
        Arc<std::sync::atomic::AtomicUsize>,
    ) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (now, most, total) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
        );
        let (m, t) = (Arc::clone(&most), Arc::clone(&total));
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let (now, most, total) = (Arc::clone(&now), Arc::clone(&m), Arc::clone(&t));
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    total.fetch_add(1, Ordering::SeqCst);
                    let held = now.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(held, Ordering::SeqCst);
                    tokio::time::sleep(delay).await;
                    now.fetch_sub(1, Ordering::SeqCst);
                    let _ = conn
                        .write_all(
                            b"HTTP/1.1 404 X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await;
                });
            }
        });
        (addr, most, total)
    }

    fn stuck(n: usize) -> Evaluation {
        Evaluation {
            emitted: (0..n)
                .map(|i| wanting(line(&format!("k{i}"), AlertEvent::Firing), i as i64))
                .collect(),
            ..Evaluation::default()
        }
    }

    #[tokio::test]
    async fn five_hundred_alerts_of_one_target_leave_within_the_hold_with_four_fetches_at_most() {
        use std::sync::atomic::Ordering;
        let (addr, most, total) = slow_agents_server(Duration::from_millis(200)).await;
        let hold = Duration::from_millis(800);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut out = Outbox::new(UpClose::with_deadline(hold).unwrap(), tx);
        let t = target(&format!("http://{addr}/metrics"));
        let started = Instant::now();
        assert!(out.push("t", Some(&t), &stuck(500)).is_empty());
        let found = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap();
        let lines = out.complete(found, &mut engine());
        let took = started.elapsed();
        assert_eq!(lines.len(), 500, "never suppressed");
        assert!(
            took < hold + Duration::from_millis(300),
            "lines left {took:?} after arrival; the hold is {hold:?}"
        );
        let most = most.load(Ordering::SeqCst);
        assert!(
            (1..=CONCURRENCY).contains(&most),
            "{most} fetches at once; at most {CONCURRENCY}"
        );
        // 4 at a time for 800 ms at 200 ms each: about 16, never all 500.
        assert!(total.load(Ordering::SeqCst) <= 4 * CONCURRENCY + CONCURRENCY);
        assert!(!out.is_holding());
    }

    #[tokio::test]
    async fn a_storm_over_many_targets_keeps_to_the_global_budget() {
        use std::sync::atomic::Ordering;
        let (addr, most, total) = slow_agents_server(Duration::from_millis(200)).await;
        let hold = Duration::from_millis(800);
        let (tx, mut rx) = mpsc::unbounded_channel();
        // 6 in flight over 20 targets that would ask 4 each (80); 20 starts a second.
        let mut out = Outbox::with_budget(
            UpClose::with_deadline(hold).unwrap(),
            tx,
            Budget::new(6, 20),
        );
        let started = Instant::now();
        for i in 0..20 {
            let mut t = target(&format!("http://{addr}/metrics"));
            t.name = format!("t{i}");
            assert!(out.push(&t.name, Some(&t), &stuck(50)).is_empty());
        }
        let mut lines = 0;
        let mut early = 0;
        for _ in 0..20 {
            let found = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .unwrap()
                .unwrap();
            if started.elapsed() < Duration::from_millis(150) {
                early += 1;
            }
            lines += out.complete(found, &mut engine()).len();
        }
        let took = started.elapsed();
        assert_eq!(lines, 1000, "never suppressed");
        // At most 6 targets hold a permit (each view takes 200 ms); the
        // others find the budget spent and go out at once, not at the hold.
        assert!(early >= 14, "{early} of 20 targets out before 150 ms");
        assert!(
            took < hold + Duration::from_millis(300),
            "lines left {took:?} after arrival; the hold is {hold:?}"
        );
        let most = most.load(Ordering::SeqCst);
        assert!((1..=6).contains(&most), "{most} fetches at once; budget 6");
        // The rate: a burst of 20, then 20/s for 0.8 s.
        let total = total.load(Ordering::SeqCst);
        assert!((1..=20 + 17).contains(&total), "{total} fetches started");
        assert!(!out.is_holding());
    }

    #[tokio::test]
    async fn a_found_sentence_completes_the_line() {
        let (tx, _rx) = mpsc::unbounded_channel();
        let mut out = Outbox::new(UpClose::new().unwrap(), tx);
        // A target no longer configured: no fetch, the line goes out as it is.
        let wants = Evaluation {
            emitted: vec![wanting(line("b", AlertEvent::Firing), 7)],
            ..Evaluation::default()
        };
        assert_eq!(out.push("gone", None, &wants).len(), 1);
        // A held batch completed by hand.
        out.queues.entry("t".into()).or_default().push_back(Batch {
            id: 41,
            lines: vec![wanting(line("b", AlertEvent::Repeat), 7)],
            held: true,
        });
        let found = Found {
            target: "t".into(),
            batch: 41,
            by_job: [(
                7,
                Some("cat (pid 1) is blocked reading stdin (pipe)".into()),
            )]
            .into_iter()
            .collect(),
        };
        let lines = out.complete(found, &mut engine());
        assert_eq!(
            lines[0].diagnosis.as_deref(),
            Some("cat (pid 1) is blocked reading stdin (pipe)")
        );
        assert!(lines[0]
            .summary
            .ends_with("for 10m: cat (pid 1) is blocked reading stdin (pipe)"));
        assert!(out.release_all().is_empty());
    }
}
