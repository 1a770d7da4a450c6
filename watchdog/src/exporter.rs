//! The watchdog's own `GET /metrics`: the gauges of CONTRACT.md section 4
//! in an owned `prometheus::Registry` (no global), with series of agents,
//! stages, statuses, subsystems and alerts that are gone removed in the same
//! poll, so the number of series follows what is live.
//!
//! How each poll outcome moves the series of its target:
//! - `Ok`: every envelope-derived series is replaced by what this envelope
//!   says. A `null` (unknown) value means the series is absent, never 0.
//!   A section listed in `degraded` is unknown, not empty: its series keep
//!   their last value, like a failed poll.
//! - `Failed` and `SchemaIncompatible`: `watchdog_target_up` is 0, the poll is
//!   counted and timed, and the envelope-derived series are kept as last seen.
//!   A missed poll is "unknown", not "gone"; `watchdog_target_up` and
//!   `watchdog_last_success_timestamp_seconds` say how old they are.
//! - `Disabled`: the emitter answered, so `watchdog_target_up` is 1 and
//!   `watchdog_target_enabled` is 0. The kill-switch is a deliberate "nothing
//!   to report", so the envelope-derived series are removed.
//!
//! `watchdog_alerts_firing` follows `PollView::firing` on every outcome: the
//! alert state is known even when the target is not.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};
use shared_schema::{Envelope, Timestamp, SECTIONS};

use crate::view::{PollOutcome, PollView};

/// Buckets of `watchdog_poll_duration_seconds`: a local poll takes
/// milliseconds, a timing-out one the configured timeout (seconds).
const POLL_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Outcomes of `watchdog_notifications_total` created at 0 for every sink,
/// so `rate()` works before the first failure.
pub const NOTIFICATION_OUTCOMES: [&str; 3] = ["delivered", "retried", "dropped"];

/// Cheap to clone; every clone updates the same registry.
#[derive(Debug, Clone)]
pub struct Exporter {
    inner: Arc<Inner>,
}

impl Default for Exporter {
    fn default() -> Self {
        Self::new()
    }
}

/// A gauge family whose first label is `target`, remembering which label
/// sets it set per target so stale ones can be removed.
#[derive(Debug)]
struct Family {
    vec: GaugeVec,
    live: Mutex<HashMap<String, HashSet<Vec<String>>>>,
}

impl Family {
    fn new(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> Self {
        let mut all = vec!["target"];
        all.extend_from_slice(labels);
        let vec = gauge_vec(registry, name, help, &all);
        Self {
            vec,
            live: Mutex::new(HashMap::new()),
        }
    }

    /// Makes `rows` (label values after `target`, value) the only series of
    /// `target` in this family.
    fn replace(&self, target: &str, rows: impl IntoIterator<Item = (Vec<String>, f64)>) {
        let mut fresh = HashSet::new();
        for (rest, value) in rows {
            let mut labels = Vec::with_capacity(rest.len() + 1);
            labels.push(target.to_owned());
            labels.extend(rest);
            match self.vec.get_metric_with_label_values(&labels) {
                Ok(gauge) => gauge.set(value),
                Err(err) => tracing::warn!(target, error = %err, "gauge not set"),
            }
            fresh.insert(labels);
        }
        let mut live = lock(&self.live);
        if let Some(old) = live.get(target) {
            for labels in old.difference(&fresh) {
                // Removing a series that is already gone is harmless.
                let _ = self.vec.remove_label_values(labels);
            }
        }
        if fresh.is_empty() {
            live.remove(target);
        } else {
            live.insert(target.to_owned(), fresh);
        }
    }

    /// Sets the one series of a family without further labels, or removes it.
    fn scalar(&self, target: &str, value: Option<f64>) {
        self.replace(target, value.map(|v| (Vec::new(), v)));
    }

    fn forget(&self, target: &str) {
        self.replace(target, std::iter::empty());
    }
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    target_up: Family,
    target_enabled: Family,
    target_schema_version: Family,
    last_success: Family,
    section_degraded: Family,
    agent_cpu: Family,
    agent_runtime: Family,
    agent_idle: Family,
    agents_running: Family,
    stage_tasks: Family,
    stage_oldest_age: Family,
    queue_jobs: Family,
    queue_depth: Family,
    queue_max_concurrency: Family,
    breaker_open: Family,
    reconciler_wall_clock: Family,
    reconciler_pending: Family,
    reconciler_violations: Family,
    error_events: Family,
    cost_usd: Family,
    tokens: Family,
    alerts_firing: Family,
    poll_duration: HistogramVec,
    polls_total: IntCounterVec,
    /// Outcome labels of `polls_total` seen per target, for `forget_target`.
    poll_outcomes: Mutex<HashMap<String, HashSet<&'static str>>>,
    notifications_total: IntCounterVec,
    notify_queue_depth: GaugeVec,
    config_success: GaugeVec,
    config_timestamp: GaugeVec,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not take the metrics endpoint down with it.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn register<C: prometheus::core::Collector + Clone + 'static>(registry: &Registry, c: &C) {
    if let Err(err) = registry.register(Box::new(c.clone())) {
        tracing::error!(error = %err, "metric not registered");
    }
}

/// Builds and registers a gauge family. The names and labels are constants
/// of this file, so failing here is a bug caught by the unit tests.
fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    #[allow(clippy::expect_used)]
    let vec = GaugeVec::new(Opts::new(name, help), labels).expect("valid gauge definition");
    register(registry, &vec);
    vec
}

impl Exporter {
    /// A fresh registry with every gauge registered and `watchdog_build_info` set.
    pub fn new() -> Self {
        let r = Registry::new();
        let fam = |name: &str, help: &str, labels: &[&str]| Family::new(&r, name, help, labels);
        let agent = ["agent", "job_id", "run_id", "pid"];
        #[allow(clippy::expect_used)]
        let poll_duration = HistogramVec::new(
            HistogramOpts::new(
                "watchdog_poll_duration_seconds",
                "Wall time of one poll of a target: request, read and evaluation.",
            )
            .buckets(POLL_BUCKETS.to_vec()),
            &["target"],
        )
        .expect("valid histogram definition");
        register(&r, &poll_duration);
        #[allow(clippy::expect_used)]
        let polls_total = IntCounterVec::new(
            Opts::new(
                "watchdog_polls_total",
                "Polls of a target by how they ended.",
            ),
            &["target", "outcome"],
        )
        .expect("valid counter definition");
        register(&r, &polls_total);
        #[allow(clippy::expect_used)]
        let notifications_total = IntCounterVec::new(
            Opts::new(
                "watchdog_notifications_total",
                "Notifications by sink and result: delivered, retried, dropped; Alertmanager re-sends: resent, resend_failed.",
            ),
            &["sink", "outcome"],
        )
        .expect("valid counter definition");
        register(&r, &notifications_total);
        let build_info = gauge_vec(
            &r,
            "watchdog_build_info",
            "Always 1; the version label names the running build.",
            &["version"],
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1.0);

        let inner = Inner {
            target_up: fam(
                "watchdog_target_up",
                "1 when the last poll of the target got an answer it could read (enabled or disabled), else 0.",
                &[],
            ),
            target_enabled: fam(
                "watchdog_target_enabled",
                "1 when the target's emitter is enabled, 0 when its kill-switch is off.",
                &[],
            ),
            target_schema_version: fam(
                "watchdog_target_schema_version",
                "schema_version of the target's last envelope, even when incompatible.",
                &[],
            ),
            last_success: fam(
                "watchdog_last_success_timestamp_seconds",
                "Unix time of the last poll that read an enabled envelope.",
                &[],
            ),
            section_degraded: fam(
                "watchdog_section_degraded",
                "1 when the section is listed in the envelope's degraded list, else 0.",
                &["section"],
            ),
            agent_cpu: fam(
                "watchdog_agent_cpu_fraction",
                "CPU used by the agent over the last poll interval, in cores (absent until two samples).",
                &agent,
            ),
            agent_runtime: fam(
                "watchdog_agent_runtime_seconds",
                "Seconds since the agent's job started.",
                &agent,
            ),
            agent_idle: fam(
                "watchdog_agent_idle_seconds",
                "Seconds the agent has stayed below the CPU floor without I/O.",
                &agent,
            ),
            agents_running: fam(
                "watchdog_agents_running",
                "Agents (running jobs) in the last envelope.",
                &[],
            ),
            stage_tasks: fam(
                "watchdog_stage_tasks",
                "Active tasks per stage.",
                &["stage"],
            ),
            stage_oldest_age: fam(
                "watchdog_stage_oldest_age_seconds",
                "Age in stage of the oldest task of the stage.",
                &["stage"],
            ),
            queue_jobs: fam(
                "watchdog_queue_jobs",
                "Jobs per status.",
                &["status"],
            ),
            queue_depth: fam("watchdog_queue_depth", "Queued jobs.", &[]),
            queue_max_concurrency: fam(
                "watchdog_queue_max_concurrency",
                "The worker's configured maximum of concurrent jobs.",
                &[],
            ),
            breaker_open: fam(
                "watchdog_breaker_open",
                "1 when the worker's circuit breaker is open, 0 when closed or half-open.",
                &[],
            ),
            reconciler_wall_clock: fam(
                "watchdog_reconciler_wall_clock_seconds",
                "Wall time of the newest reconciler tick.",
                &[],
            ),
            reconciler_pending: fam(
                "watchdog_reconciler_pending_events",
                "Events still pending after the newest reconciler tick.",
                &[],
            ),
            reconciler_violations: fam(
                "watchdog_reconciler_invariant_violations",
                "Invariant violations reported by the newest reconciler tick.",
                &[],
            ),
            error_events: fam(
                "watchdog_error_events",
                "Cumulative error events per subsystem, as counted by the orchestrator.",
                &["subsystem"],
            ),
            cost_usd: fam(
                "watchdog_cost_usd",
                "Total cost over all agent runs, in US dollars.",
                &[],
            ),
            tokens: fam(
                "watchdog_tokens",
                "Total tokens over all agent runs, by kind.",
                &["kind"],
            ),
            alerts_firing: fam(
                "watchdog_alerts_firing",
                "Alerts firing now, by rule and severity.",
                &["rule", "severity"],
            ),
            poll_duration,
            polls_total,
            poll_outcomes: Mutex::new(HashMap::new()),
            notifications_total,
            notify_queue_depth: gauge_vec(
                &r,
                "watchdog_notification_queue_depth",
                "Events waiting in a sink's queue.",
                &["sink"],
            ),
            config_success: gauge_vec(
                &r,
                "watchdog_config_last_load_successful",
                "1 when the last config (re)load was accepted, else 0.",
                &[],
            ),
            config_timestamp: gauge_vec(
                &r,
                "watchdog_config_last_load_success_timestamp_seconds",
                "Unix time of the last accepted config (re)load.",
                &[],
            ),
            registry: r,
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Updates every gauge of `view.target` from one evaluated poll.
    pub fn observe(&self, view: &PollView<'_>) {
        let m = &*self.inner;
        let target = view.target;
        let outcome = view.outcome.label();
        if let Ok(c) = m
            .polls_total
            .get_metric_with_label_values(&[target, outcome])
        {
            c.inc();
        }
        lock(&m.poll_outcomes)
            .entry(target.to_owned())
            .or_default()
            .insert(outcome);
        if let Ok(h) = m.poll_duration.get_metric_with_label_values(&[target]) {
            h.observe(view.duration.as_secs_f64());
        }

        let schema = view
            .schema_version
            .or(view.envelope.map(|e| e.schema_version));
        if let Some(version) = schema {
            m.target_schema_version.scalar(target, Some(version as f64));
        }
        m.alerts_firing.replace(
            target,
            view.firing.iter().filter(|f| f.count > 0).map(|f| {
                (
                    vec![f.rule.clone(), f.severity.as_str().to_owned()],
                    f.count as f64,
                )
            }),
        );

        match (view.outcome, view.envelope) {
            (PollOutcome::Ok, Some(envelope)) => {
                m.target_up.scalar(target, Some(1.0));
                m.target_enabled.scalar(target, Some(1.0));
                m.last_success
                    .scalar(target, Some(view.now.unix_seconds_f64()));
                self.envelope_series(view, envelope);
            }
            (PollOutcome::Disabled, _) => {
                m.target_up.scalar(target, Some(1.0));
                m.target_enabled.scalar(target, Some(0.0));
                for family in m.envelope_families() {
                    family.forget(target);
                }
            }
            // An `Ok` without an envelope is a caller bug; treat it as unknown.
            _ => m.target_up.scalar(target, Some(0.0)),
        }
    }

    fn envelope_series(&self, view: &PollView<'_>, e: &Envelope) {
        let m = &*self.inner;
        let target = view.target;
        let known = |section: &str| !e.is_degraded(section);
        m.section_degraded.replace(
            target,
            SECTIONS.iter().map(|s| {
                let v = if e.is_degraded(s) { 1.0 } else { 0.0 };
                (vec![(*s).to_owned()], v)
            }),
        );

        if known("agents") {
            let rows = |pick: fn(&crate::view::AgentSample) -> Option<f64>| {
                view.agents
                    .iter()
                    .filter_map(move |a| pick(a).map(|v| (agent_labels(a), v)))
                    .collect::<Vec<_>>()
            };
            m.agent_cpu.replace(target, rows(|a| a.cpu_fraction));
            m.agent_runtime.replace(target, rows(|a| a.runtime_s));
            m.agent_idle.replace(target, rows(|a| a.idle_s));
            m.agents_running.scalar(target, Some(e.agents.len() as f64));
        }

        if known("stages") {
            let mut by_stage: BTreeMap<&str, (usize, Option<f64>)> = BTreeMap::new();
            for s in &e.stages {
                let entry = by_stage.entry(s.stage.as_str()).or_default();
                entry.0 += 1;
                if let Some(age) = s.age_in_stage_s {
                    entry.1 = Some(entry.1.map_or(age, |old: f64| old.max(age)));
                }
            }
            m.stage_tasks.replace(
                target,
                by_stage
                    .iter()
                    .map(|(stage, (n, _))| (vec![(*stage).to_owned()], *n as f64)),
            );
            m.stage_oldest_age.replace(
                target,
                by_stage
                    .iter()
                    .filter_map(|(stage, (_, age))| age.map(|a| (vec![(*stage).to_owned()], a))),
            );
        }

        if known("queue") {
            let q = e.queue.as_ref();
            m.queue_jobs.replace(
                target,
                q.into_iter()
                    .flat_map(|q| q.counts.iter())
                    .map(|(status, n)| (vec![status.clone()], *n as f64)),
            );
            m.queue_depth
                .scalar(target, q.and_then(|q| q.depth).map(|d| d as f64));
            m.queue_max_concurrency
                .scalar(target, q.and_then(|q| q.max_concurrency).map(|d| d as f64));
            let breaker = q
                .and_then(|q| q.breaker.as_ref())
                .and_then(|b| b.state.as_deref())
                .and_then(|state| match state {
                    "open" => Some(1.0),
                    "closed" | "half_open" => Some(0.0),
                    // A state this build does not know is unknown, not closed.
                    _ => None,
                });
            m.breaker_open.scalar(target, breaker);
        }

        if known("reconciler") {
            let r = e.reconciler.as_ref();
            m.reconciler_wall_clock.scalar(
                target,
                r.and_then(|r| r.wall_clock_ms).map(|ms| ms / 1000.0),
            );
            m.reconciler_pending.scalar(
                target,
                r.and_then(|r| r.pending_event_count).map(|n| n as f64),
            );
            m.reconciler_violations
                .scalar(target, r.map(|r| r.invariant_violations.len() as f64));
        }

        if known("errors") {
            m.error_events.replace(
                target,
                e.errors
                    .iter()
                    .flat_map(|errs| errs.by_subsystem.iter())
                    .filter_map(|s| s.total.map(|t| (vec![s.subsystem.clone()], t as f64))),
            );
        }

        if known("cost") {
            let agg = e.cost.as_ref().and_then(|c| c.aggregate.as_ref());
            m.cost_usd.scalar(target, agg.and_then(|a| a.cost_usd));
            let kinds = agg.map(|a| {
                [
                    ("input", a.input_tokens),
                    ("output", a.output_tokens),
                    ("cache_read", a.cache_read_tokens),
                    ("cache_creation", a.cache_creation_tokens),
                ]
            });
            m.tokens.replace(
                target,
                kinds
                    .into_iter()
                    .flatten()
                    .filter_map(|(kind, n)| n.map(|n| (vec![kind.to_owned()], n as f64))),
            );
        }
    }

    /// Removes every series of a target that is no longer configured.
    pub fn forget_target(&self, target: &str) {
        let m = &*self.inner;
        for family in m.envelope_families() {
            family.forget(target);
        }
        for family in [
            &m.target_up,
            &m.target_enabled,
            &m.target_schema_version,
            &m.last_success,
            &m.alerts_firing,
        ] {
            family.forget(target);
        }
        let _ = m.poll_duration.remove_label_values(&[target]);
        if let Some(outcomes) = lock(&m.poll_outcomes).remove(target) {
            for outcome in outcomes {
                let _ = m.polls_total.remove_label_values(&[target, outcome]);
            }
        }
    }

    /// Creates a sink's notification counters at 0 so dashboards see the sink
    /// before its first event.
    pub fn register_sink(&self, sink: &str) {
        for outcome in NOTIFICATION_OUTCOMES {
            let _ = self
                .inner
                .notifications_total
                .get_metric_with_label_values(&[sink, outcome]);
        }
        self.sink_queue_depth(sink, 0);
    }

    /// Counts one notification attempt's result (`delivered`, `retried`, `dropped`, ...).
    pub fn notification(&self, sink: &str, outcome: &str) {
        self.notifications(sink, outcome, 1);
    }

    /// Counts `n` notifications with the same result.
    pub fn notifications(&self, sink: &str, outcome: &str, n: u64) {
        if let Ok(c) = self
            .inner
            .notifications_total
            .get_metric_with_label_values(&[sink, outcome])
        {
            c.inc_by(n);
        }
    }

    /// Sets the queue depth of a sink.
    pub fn sink_queue_depth(&self, sink: &str, depth: usize) {
        if let Ok(g) = self
            .inner
            .notify_queue_depth
            .get_metric_with_label_values(&[sink])
        {
            g.set(depth as f64);
        }
    }

    /// Records a config (re)load: whether it was accepted, and when.
    pub fn config_loaded(&self, success: bool, at: Timestamp) {
        let none: [&str; 0] = [];
        if let Ok(g) = self
            .inner
            .config_success
            .get_metric_with_label_values(&none)
        {
            g.set(if success { 1.0 } else { 0.0 });
        }
        if success {
            if let Ok(g) = self
                .inner
                .config_timestamp
                .get_metric_with_label_values(&none)
            {
                g.set(at.unix_seconds_f64());
            }
        }
    }

    /// The registry itself, for metrics owned elsewhere (the stdout
    /// writer's `watchdog_stdout_dropped_lines_total`).
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The registry in Prometheus text format.
    pub fn encode(&self) -> String {
        let families = self.inner.registry.gather();
        let mut buf = Vec::new();
        if let Err(err) = TextEncoder::new().encode(&families, &mut buf) {
            tracing::error!(error = %err, "metrics not encoded");
        }
        String::from_utf8(buf)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }
}

impl Inner {
    /// The families whose series come from an envelope's sections.
    fn envelope_families(&self) -> [&Family; 17] {
        [
            &self.section_degraded,
            &self.agent_cpu,
            &self.agent_runtime,
            &self.agent_idle,
            &self.agents_running,
            &self.stage_tasks,
            &self.stage_oldest_age,
            &self.queue_jobs,
            &self.queue_depth,
            &self.queue_max_concurrency,
            &self.breaker_open,
            &self.reconciler_wall_clock,
            &self.reconciler_pending,
            &self.reconciler_violations,
            &self.error_events,
            &self.cost_usd,
            &self.tokens,
        ]
    }
}

/// `agent, job_id, run_id, pid` with an empty string where unknown.
fn agent_labels(a: &crate::view::AgentSample) -> Vec<String> {
    let opt = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
    vec![
        a.agent.clone().unwrap_or_default(),
        a.job_id.to_string(),
        opt(a.run_id),
        opt(a.pid),
    ]
}
