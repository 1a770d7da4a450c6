//! The watchdog's own `GET /metrics`: the gauges of CONTRACT.md section 4,
//! rendered at scrape time by a [`prometheus::core::Collector`] from what
//! each target's last polls said, so a series that is gone is not rendered
//! (no list of series to clean up by hand) and a scrape cannot fail.
//! The per-target counters and histogram accumulate beside them
//! (`collector/polls.rs`); the notification counters stay registered metrics of the
//! same owned `Registry` (no global).
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

mod polls;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Gauge, Metric, MetricFamily, MetricType};
use prometheus::{Encoder, GaugeVec, IntCounterVec, Opts, Registry, TextEncoder};
use shared_schema::{
    Agent, BreakerState, Envelope, Section, Timestamp, REQUIRED_JOB_STATUSES, SECTIONS,
};

use crate::delta::AgentId;
use crate::rules::spend::{self, Source};
use crate::view::{AgentSample, PollOutcome, PollView};

/// Outcomes of `watchdog_notifications_total` created at 0 for every sink,
/// so `rate()` works before the first failure.
pub const NOTIFICATION_OUTCOMES: [&str; 3] = ["delivered", "retried", "dropped"];

const AGENT: &[&str] = &["agent", "job_id", "run_id", "pid"];
const AGENT_SOURCE: &[&str] = &["agent", "job_id", "run_id", "pid", "source"];

/// One per-target gauge family: its name, help, labels after `target`, and
/// the envelope section it comes from (`None`: from the poll itself).
#[derive(Debug)]
struct Def {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    section: Option<&'static str>,
}

const fn def(
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    section: Option<&'static str>,
) -> Def {
    Def {
        name,
        help,
        labels,
        section,
    }
}

/// Every per-target gauge of CONTRACT.md section 4 (plus
/// `watchdog_section_degraded`), rendered at scrape time.
const GAUGES: &[Def] = &[
    def("watchdog_target_up", "1 when the last poll of the target got an answer it could read (enabled or disabled), else 0.", &[], None),
    def("watchdog_target_enabled", "1 when the target's emitter is enabled, 0 when its kill-switch is off.", &[], None),
    def("watchdog_target_schema_version", "schema_version of the target's last envelope, even when incompatible.", &[], None),
    def("watchdog_last_success_timestamp_seconds", "Unix time of the last poll that read an enabled envelope.", &[], None),
    def("watchdog_alerts_firing", "Alerts firing now, by rule and severity.", &["rule", "severity"], None),
    def("watchdog_section_degraded", "1 when the section is listed in the envelope's degraded list, else 0.", &["section"], Some("")),
    def("watchdog_agent_cpu_fraction", "CPU used by the agent over the last poll interval, in cores (absent until two samples).", AGENT, Some("agents")),
    def("watchdog_agent_runtime_seconds", "Seconds since the agent's job started.", AGENT, Some("agents")),
    def("watchdog_agent_idle_seconds", "Seconds the agent has been idle as stuck_agent counts them: CPU below cpu_floor and I/O below io_floor over its for window, no reported request or tool call.", AGENT, Some("agents")),
    def("watchdog_agents_running", "Agents (running jobs) in the last envelope.", &[], Some("agents")),
    def("watchdog_agent_cost_usd", "What the agent's run has spent so far, USD: the orchestrator's cost_usd when known, else the agent's own telemetry (see watchdog_agent_cost_source).", AGENT, Some("agents")),
    def("watchdog_agent_cost_source", "1 for the source of watchdog_agent_cost_usd: db (agent_runs.cost_usd) or telemetry (the agent's OTLP cost records).", AGENT_SOURCE, Some("agents")),
    def("watchdog_agent_api_requests_total", "Model API requests the agent reported as completed (its OTLP telemetry).", AGENT, Some("agents")),
    def("watchdog_agent_tool_calls_total", "Tool calls the agent reported as completed (its OTLP telemetry).", AGENT, Some("agents")),
    def("watchdog_agent_tool_repeat", "Consecutive identical tool calls, ending with the newest (as agent_looping reads it).", AGENT, Some("agents")),
    def("watchdog_agent_net_wait_seconds", "Seconds the agent's longest-waiting TCP connection has waited for a reply since its request (absent when none waits).", AGENT, Some("agents")),
    def("watchdog_stage_tasks", "Active tasks per stage.", &["stage"], Some("stages")),
    def("watchdog_stage_oldest_age_seconds", "Age in stage of the oldest task of the stage.", &["stage"], Some("stages")),
    def("watchdog_queue_jobs", "Jobs per status.", &["status"], Some("queue")),
    def("watchdog_queue_depth", "Queued jobs.", &[], Some("queue")),
    def("watchdog_queue_max_concurrency", "The worker's configured maximum of concurrent jobs.", &[], Some("queue")),
    def("watchdog_breaker_open", "1 when the worker's circuit breaker is open, 0 when closed or half-open.", &[], Some("queue")),
    def("watchdog_reconciler_wall_clock_seconds", "Wall time of the newest reconciler tick.", &[], Some("reconciler")),
    def("watchdog_reconciler_pending_events", "Events still pending after the newest reconciler tick.", &[], Some("reconciler")),
    def("watchdog_reconciler_invariant_violations", "Invariant violations reported by the newest reconciler tick.", &[], Some("reconciler")),
    def("watchdog_error_events", "Cumulative error events per subsystem, as counted by the orchestrator.", &["subsystem"], Some("errors")),
    def("watchdog_cost_usd", "Total cost over all agent runs, in US dollars.", &[], Some("cost")),
    def("watchdog_cost_by_source_usd", "The spend cost_budget judges, by source: db (cost.aggregate) and telemetry (running runs whose database cost is still null).", &["source"], Some("cost")),
    def("watchdog_tokens", "Total tokens over all agent runs, by kind.", &["kind"], Some("cost")),
];

/// The label values of one series after `target`, in one allocation: the
/// values joined by NUL (a NUL inside a value, which no sane name holds,
/// is shown as U+FFFD). Shared: the per-agent families hold one allocation
/// per agent between them. (Four `String`s in an `Arc<[String]>` were five
/// allocations per agent, 256 bytes; this is one of about 40.)
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Labels(Arc<str>);

impl Labels {
    /// The values, in the family's label order; the empty set has none
    /// (a family's label names say how many to take).
    fn values(&self) -> std::str::Split<'_, char> {
        self.0.split('\0')
    }
}

impl Labels {
    /// A label set of a bounded vocabulary (section names, sources, token
    /// kinds, the contract's job statuses, a rule and a severity), one
    /// allocation shared by every target instead of one per target and
    /// family. Never for values an envelope makes up: the set is kept for
    /// the life of the process.
    fn shared<'a>(values: impl IntoIterator<Item = &'a str>) -> Self {
        static ALL: Mutex<Vec<Labels>> = Mutex::new(Vec::new());
        let wanted: Labels = values.into_iter().collect();
        let mut all = lock(&ALL);
        match all.iter().find(|l| **l == wanted) {
            Some(held) => held.clone(),
            None => {
                all.push(wanted.clone());
                wanted
            }
        }
    }
}

impl<S: AsRef<str>> FromIterator<S> for Labels {
    fn from_iter<I: IntoIterator<Item = S>>(values: I) -> Self {
        let mut joined = String::new();
        for (i, v) in values.into_iter().enumerate() {
            if i > 0 {
                joined.push('\0');
            }
            joined.push_str(&v.as_ref().replace('\0', "\u{FFFD}"));
        }
        Self(Arc::from(joined))
    }
}

impl From<Vec<String>> for Labels {
    fn from(values: Vec<String>) -> Self {
        values.into_iter().collect()
    }
}

/// Series of one family: label values after `target` and value, sorted by
/// labels, one series per label set: of duplicate rows (two agents with one
/// identity), the last wins. A `Vec` sized to its rows, not a `BTreeMap`:
/// most families have one row, and a map node holds eleven.
type Rows = Vec<(Labels, f64)>;

/// How many families have no label beside `target` (scalars).
const SCALARS: usize = {
    let (mut i, mut n) = (0, 0);
    while i < GAUGES.len() {
        if GAUGES[i].labels.is_empty() {
            n += 1;
        }
        i += 1;
    }
    n
};

/// The place of a scalar family among the scalars, in [`GAUGES`] order.
fn scalar_slot(family: &str) -> Option<usize> {
    GAUGES
        .iter()
        .filter(|d| d.labels.is_empty())
        .position(|d| d.name == family)
}

/// The label set of a scalar: empty, one for all (an `Arc<str>` of nothing
/// still allocates its counts).
fn no_labels() -> &'static Labels {
    static NONE: std::sync::LazyLock<Labels> =
        std::sync::LazyLock::new(|| Labels::from_iter([""; 0]));
    &NONE
}

/// What the last polls of one target said, per gauge family: the state the
/// collector renders. Replacing a family's rows drops the series that are
/// gone; a family with no rows renders nothing. Scalars are plain values
/// (`None`: no series): a row list and a map entry each were a kilobyte
/// per target.
#[derive(Debug, Default, Clone, PartialEq)]
struct TargetSeries {
    rows: BTreeMap<&'static str, Rows>,
    scalars: [Option<f64>; SCALARS],
    /// Its polls, by outcome and duration (not from the envelope: kept
    /// through every outcome).
    polls: polls::PollStats,
}

impl TargetSeries {
    fn set<L: Into<Labels>>(
        &mut self,
        family: &'static str,
        rows: impl IntoIterator<Item = (L, f64)>,
    ) {
        let mut rows: Rows = rows.into_iter().map(|(l, v)| (l.into(), v)).collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0)); // stable: duplicates keep their order
        rows.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                kept.1 = later.1;
            }
            same
        });
        rows.shrink_to_fit();
        if rows.is_empty() {
            self.rows.remove(family);
        } else {
            self.rows.insert(family, rows);
        }
    }

    fn scalar(&mut self, family: &'static str, value: Option<f64>) {
        match scalar_slot(family) {
            Some(i) => self.scalars[i] = value,
            None => debug_assert!(false, "{family} is not a scalar family"),
        }
    }

    /// The series of family `d` (whose place among the scalars is `slot`,
    /// when it is one): its rows, or its one scalar.
    fn series<'a>(
        &'a self,
        d: &Def,
        slot: Option<usize>,
    ) -> impl Iterator<Item = (&'a Labels, f64)> + 'a {
        let scalar = slot.and_then(|i| self.scalars[i]).map(|v| (no_labels(), v));
        let rows = slot.is_none().then(|| self.rows.get(d.name)).flatten();
        scalar
            .into_iter()
            .chain(rows.into_iter().flatten().map(|(l, v)| (l, *v)))
    }

    /// Forgets every family that comes from the envelope.
    fn clear_envelope(&mut self) {
        let from_poll = |name: &str| GAUGES.iter().any(|d| d.name == name && d.section.is_none());
        self.rows.retain(|name, _| from_poll(name));
        for (d, value) in GAUGES
            .iter()
            .filter(|d| d.labels.is_empty())
            .zip(&mut self.scalars)
        {
            if !from_poll(d.name) {
                *value = None;
            }
        }
    }

    /// Takes in one evaluated poll (see the module doc for each outcome).
    fn observe(&mut self, view: &PollView<'_>) {
        let schema = view
            .schema_version
            .or(view.envelope.map(|e| e.schema_version));
        if let Some(version) = schema {
            self.scalar("watchdog_target_schema_version", Some(version as f64));
        }
        self.set(
            "watchdog_alerts_firing",
            view.firing.iter().filter(|f| f.count > 0).map(|f| {
                (
                    Labels::shared([f.rule.as_str(), f.severity.as_str()]),
                    f.count as f64,
                )
            }),
        );
        match (view.outcome, view.envelope) {
            (PollOutcome::Ok, Some(envelope)) => {
                self.scalar("watchdog_target_up", Some(1.0));
                self.scalar("watchdog_target_enabled", Some(1.0));
                self.scalar(
                    "watchdog_last_success_timestamp_seconds",
                    Some(view.now.unix_seconds_f64()),
                );
                self.envelope(view.agents, envelope);
            }
            (PollOutcome::Disabled, _) => {
                self.scalar("watchdog_target_up", Some(1.0));
                self.scalar("watchdog_target_enabled", Some(0.0));
                self.clear_envelope();
            }
            // An `Ok` without an envelope is a caller bug; treat it as unknown.
            _ => self.scalar("watchdog_target_up", Some(0.0)),
        }
    }

    fn envelope(&mut self, agents: &[AgentSample], e: &Envelope) {
        let known = |section: Section| !e.is_degraded(section);
        self.set(
            "watchdog_section_degraded",
            SECTIONS.iter().map(|s| {
                let v = if e.is_degraded(s) { 1.0 } else { 0.0 };
                (Labels::shared([*s]), v)
            }),
        );

        if known(Section::Agents) {
            let labels: Vec<Labels> = agents
                .iter()
                .map(|a| gauge_label_values(a).into())
                .collect();
            let rows = |pick: fn(&AgentSample) -> Option<f64>| {
                agents
                    .iter()
                    .zip(&labels)
                    .filter_map(move |(a, l)| pick(a).map(|v| (l.clone(), v)))
                    .collect::<Vec<_>>()
            };
            self.set("watchdog_agent_cpu_fraction", rows(|a| a.cpu_fraction));
            self.set("watchdog_agent_runtime_seconds", rows(|a| a.runtime_s));
            self.set("watchdog_agent_idle_seconds", rows(|a| a.idle_s));
            self.scalar("watchdog_agents_running", Some(e.agents.len() as f64));
            self.agent_telemetry(agents, &labels, e);
        }

        if known(Section::Stages) {
            let mut by_stage: BTreeMap<&str, (usize, Option<f64>)> = BTreeMap::new();
            for s in &e.stages {
                let entry = by_stage.entry(s.stage.as_str()).or_default();
                entry.0 += 1;
                if let Some(age) = s.age_in_stage_s {
                    entry.1 = Some(entry.1.map_or(age, |old: f64| old.max(age)));
                }
            }
            self.set(
                "watchdog_stage_tasks",
                by_stage
                    .iter()
                    .map(|(stage, (n, _))| (vec![(*stage).to_owned()], *n as f64)),
            );
            self.set(
                "watchdog_stage_oldest_age_seconds",
                by_stage
                    .iter()
                    .filter_map(|(stage, (_, age))| age.map(|a| (vec![(*stage).to_owned()], a))),
            );
        }

        if known(Section::Queue) {
            let q = e.queue.as_ref();
            self.set(
                "watchdog_queue_jobs",
                q.into_iter()
                    .flat_map(|q| q.counts.iter())
                    .map(|(status, n)| {
                        let labels = if REQUIRED_JOB_STATUSES.contains(&status.as_str()) {
                            Labels::shared([status.as_str()])
                        } else {
                            Labels::from_iter([status])
                        };
                        (labels, *n as f64)
                    }),
            );
            self.scalar(
                "watchdog_queue_depth",
                q.and_then(|q| q.depth).map(|d| d as f64),
            );
            self.scalar(
                "watchdog_queue_max_concurrency",
                q.and_then(|q| q.max_concurrency).map(|d| d as f64),
            );
            let breaker = q
                .and_then(|q| q.breaker.as_ref())
                .and_then(shared_schema::Breaker::state)
                .and_then(|state| match state {
                    BreakerState::Open => Some(1.0),
                    BreakerState::Closed | BreakerState::HalfOpen => Some(0.0),
                    // A state this build does not know is unknown, not closed.
                    BreakerState::Unknown(_) => None,
                });
            self.scalar("watchdog_breaker_open", breaker);
        }

        if known(Section::Reconciler) {
            let r = e.reconciler.as_ref();
            self.scalar(
                "watchdog_reconciler_wall_clock_seconds",
                r.and_then(|r| r.wall_clock_ms).map(|ms| ms / 1000.0),
            );
            self.scalar(
                "watchdog_reconciler_pending_events",
                r.and_then(|r| r.pending_event_count).map(|n| n as f64),
            );
            self.scalar(
                "watchdog_reconciler_invariant_violations",
                r.map(|r| r.invariant_violations.len() as f64),
            );
        }

        if known(Section::Errors) {
            self.set(
                "watchdog_error_events",
                e.errors
                    .iter()
                    .flat_map(|errs| errs.by_subsystem.iter())
                    .filter_map(|s| s.total.map(|t| (vec![s.subsystem.clone()], t as f64))),
            );
        }

        if known(Section::Cost) {
            let agg = e.cost.as_ref().and_then(|c| c.aggregate.as_ref());
            self.scalar("watchdog_cost_usd", agg.and_then(|a| a.cost_usd));
            let db = agg.and_then(|a| a.cost_usd);
            let (live, _) = spend::telemetry_not_in_db(e);
            self.set(
                "watchdog_cost_by_source_usd",
                db.map(|db| {
                    [
                        (Labels::shared([Source::Db.as_str()]), db),
                        (Labels::shared([Source::Telemetry.as_str()]), live),
                    ]
                })
                .into_iter()
                .flatten(),
            );
            let kinds = agg.map(|a| {
                [
                    ("input", a.input_tokens),
                    ("output", a.output_tokens),
                    ("cache_read", a.cache_read_tokens),
                    ("cache_creation", a.cache_creation_tokens),
                ]
            });
            self.set(
                "watchdog_tokens",
                kinds
                    .into_iter()
                    .flatten()
                    .filter_map(|(kind, n)| n.map(|n| (Labels::shared([kind]), n as f64))),
            );
        }
    }
}

impl TargetSeries {
    /// The page-3 per-agent families: spend, and what the agent reported of
    /// itself (`activity`) or the kernel of its connections (`net_wait`).
    /// Rows come from the envelope, labelled as the delta's agents are (the
    /// same shared label values); a missing value means no series.
    fn agent_telemetry(&mut self, agents: &[AgentSample], labels: &[Labels], e: &Envelope) {
        let by_id: HashMap<AgentId, &Labels> = agents
            .iter()
            .zip(labels)
            .map(|(a, l)| (a.id.slot(), l))
            .collect();
        let rows = |pick: &dyn Fn(&Agent) -> Option<f64>| {
            e.agents
                .iter()
                .filter_map(|a| {
                    let l = by_id.get(&AgentId::of(a).slot())?;
                    pick(a).map(|v| (Labels::clone(l), v))
                })
                .collect::<Vec<_>>()
        };
        let act = |a: &Agent, f: fn(&shared_schema::Activity) -> u64| {
            a.activity.as_ref().map(|x| f(x) as f64)
        };
        self.set(
            "watchdog_agent_cost_usd",
            rows(&|a| spend::of_agent(e, a).map(|s| s.usd)),
        );
        self.set(
            "watchdog_agent_api_requests_total",
            rows(&|a| act(a, |x| x.api_requests)),
        );
        self.set(
            "watchdog_agent_tool_calls_total",
            rows(&|a| act(a, |x| x.tool_calls)),
        );
        self.set(
            "watchdog_agent_tool_repeat",
            rows(&|a| act(a, |x| x.tool_repeat)),
        );
        self.set(
            "watchdog_agent_net_wait_seconds",
            rows(&|a| {
                a.net_wait
                    .as_ref()
                    .map(|w| w.sent_ago_s)
                    .filter(|s| s.is_finite())
            }),
        );
        let sources: Vec<(Labels, f64)> = e
            .agents
            .iter()
            .filter_map(|a| {
                let l = by_id.get(&AgentId::of(a).slot())?;
                let s = spend::of_agent(e, a)?;
                let values = l.values().chain([s.source.as_str()]);
                Some((values.collect::<Labels>(), 1.0))
            })
            .collect();
        self.set("watchdog_agent_cost_source", sources);
    }
}

/// The per-target gauges, rendered at scrape time from every target's
/// [`TargetSeries`]. `collect` cannot fail: it only reads owned data.
#[derive(Debug)]
struct Gauges {
    descs: Vec<Desc>,
    targets: Arc<Mutex<BTreeMap<String, TargetSeries>>>,
}

impl Gauges {
    fn new(targets: Arc<Mutex<BTreeMap<String, TargetSeries>>>) -> Self {
        let descs = GAUGES
            .iter()
            .filter_map(|d| {
                let mut labels = vec!["target".to_owned()];
                labels.extend(d.labels.iter().map(|l| (*l).to_owned()));
                Desc::new(d.name.into(), d.help.into(), labels, HashMap::new()).ok()
            })
            .collect();
        Self { descs, targets }
    }
}

impl Collector for Gauges {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let targets = lock(&self.targets);
        GAUGES
            .iter()
            .map(|d| {
                let mut metrics = Vec::new();
                let slot = scalar_slot(d.name);
                for (target, series) in targets.iter() {
                    for (values, value) in series.series(d, slot) {
                        metrics.push(gauge(d, target, values, value));
                    }
                }
                polls::family(d.name, d.help, MetricType::GAUGE, metrics)
            })
            .collect()
    }
}

/// One gauge sample with `target` and the family's labels, sorted by name
/// as the registered metrics have theirs.
fn gauge(d: &Def, target: &str, values: &Labels, value: f64) -> Metric {
    let pairs = polls::label_pairs(
        std::iter::once(("target", target)).chain(d.labels.iter().copied().zip(values.values())),
    );
    let mut g = Gauge::default();
    g.set_value(value);
    let mut m = Metric::from_gauge(g);
    m.set_label(pairs);
    m
}

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

#[derive(Debug)]
struct Inner {
    registry: Registry,
    /// What the gauge collector renders.
    targets: Arc<Mutex<BTreeMap<String, TargetSeries>>>,
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

/// The families `Exporter::new` registers itself (the rest are [`GAUGES`]).
const NOTIFICATIONS_TOTAL: &str = "watchdog_notifications_total";
const BUILD_INFO: &str = "watchdog_build_info";

impl Exporter {
    /// A fresh registry with every gauge registered and `watchdog_build_info` set.
    pub fn new() -> Self {
        let r = Registry::new();
        let targets = Arc::new(Mutex::new(BTreeMap::new()));
        if let Err(err) = r.register(Box::new(Gauges::new(targets.clone()))) {
            tracing::error!(error = %err, "gauge collector not registered");
        }
        if let Err(err) = r.register(Box::new(polls::PollCounters::new(targets.clone()))) {
            tracing::error!(error = %err, "poll counters not registered");
        }
        #[allow(clippy::expect_used)]
        let notifications_total = IntCounterVec::new(
            Opts::new(
                NOTIFICATIONS_TOTAL,
                "Notifications by sink and result: delivered, retried, dropped; Alertmanager re-sends: resent, resend_failed.",
            ),
            &["sink", "outcome"],
        )
        .expect("valid counter definition");
        register(&r, &notifications_total);
        let build_info = gauge_vec(
            &r,
            BUILD_INFO,
            "Always 1; the version label names the running build.",
            &["version"],
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1.0);

        let inner = Inner {
            targets,
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

    /// Takes in one evaluated poll of `view.target`: counts and times it, and
    /// keeps what the gauges render at the next scrape.
    pub fn observe(&self, view: &PollView<'_>) {
        let m = &*self.inner;
        let mut targets = lock(&m.targets);
        // Looked up first: `entry` would allocate the name on every poll.
        if !targets.contains_key(view.target) {
            targets.insert(view.target.to_owned(), TargetSeries::default());
        }
        if let Some(series) = targets.get_mut(view.target) {
            series
                .polls
                .observe(view.outcome, view.duration.as_secs_f64());
            series.observe(view);
        }
    }

    /// Removes every series of a target that is no longer configured.
    pub fn forget_target(&self, target: &str) {
        lock(&self.inner.targets).remove(target);
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

/// The agent gauges' label values, `agent, job_id, run_id, pid`, with an
/// empty string where unknown (a gauge has a fixed label set; the alert
/// labels, `rules::agent_labels`, leave an unknown one out).
fn gauge_label_values(a: &AgentSample) -> Vec<String> {
    let opt = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
    vec![
        a.agent.clone().unwrap_or_default(),
        a.id.job_id.to_string(),
        opt(a.id.run_id),
        opt(a.id.pid),
    ]
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use shared_schema::{Agent, Breaker, Queue, Severity};

    use super::*;
    use crate::view::FiringCount;

    #[test]
    fn rows_are_sorted_and_of_two_with_one_label_set_the_last_wins() {
        let mut series = TargetSeries::default();
        let row = |v: &str, x: f64| (vec![v.to_owned()], x);
        series.set(
            "watchdog_stage_tasks",
            [row("b", 1.0), row("a", 2.0), row("b", 3.0)],
        );
        let rows = &series.rows["watchdog_stage_tasks"];
        let got: Vec<(String, f64)> = rows
            .iter()
            .map(|(l, v)| (l.values().next().unwrap().to_owned(), *v))
            .collect();
        assert_eq!(got, [("a".to_owned(), 2.0), ("b".to_owned(), 3.0)]);
        series.set("watchdog_stage_tasks", Vec::<(Vec<String>, f64)>::new());
        assert!(!series.rows.contains_key("watchdog_stage_tasks"));
    }

    #[test]
    fn label_sets_keep_their_values_and_their_order() {
        let set = |v: &[&str]| v.iter().collect::<Labels>();
        let agent = set(&["agent-1", "7", "", "4242"]);
        assert_eq!(
            agent.values().collect::<Vec<_>>(),
            ["agent-1", "7", "", "4242"]
        );
        // Sorted as the lists of values would be: a value that is a prefix
        // of another comes first.
        let mut sets = vec![set(&["ab", "1"]), set(&["a", "2"]), set(&["a", "1"])];
        sets.sort();
        assert_eq!(
            sets,
            [set(&["a", "1"]), set(&["a", "2"]), set(&["ab", "1"])]
        );
        // A NUL cannot split a value.
        let odd = set(&["x\0y", "1"]);
        assert_eq!(odd.values().collect::<Vec<_>>(), ["x\u{FFFD}y", "1"]);
        // The empty set renders no label beside `target`.
        let d = &GAUGES[0];
        assert!(d.labels.is_empty());
        let m = gauge(d, "t", &set(&[]), 1.0);
        assert_eq!(m.get_label().len(), 1);
        let m = gauge(&GAUGES[6], "t", &agent, 0.5);
        let pairs: Vec<(&str, &str)> = m
            .get_label()
            .iter()
            .map(|p| (p.name(), p.value()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("agent", "agent-1"),
                ("job_id", "7"),
                ("pid", "4242"),
                ("run_id", ""),
                ("target", "t")
            ]
        );
    }

    fn envelope(agents: &[(i64, &str)]) -> Envelope {
        let mut e = Envelope::new(Timestamp::parse("2026-11-22T10:00:00Z").unwrap());
        e.agents = agents
            .iter()
            .map(|(job, name)| Agent {
                job_id: *job,
                agent: Some((*name).to_owned()),
                pid: Some(100 + job),
                ..Agent::default()
            })
            .collect();
        e.queue = Some(Queue {
            depth: Some(3),
            breaker: Some(Breaker {
                state: Some("open".into()),
                ..Breaker::default()
            }),
            ..Queue::default()
        });
        e
    }

    fn samples(e: &Envelope) -> Vec<AgentSample> {
        e.agents
            .iter()
            .map(|a| AgentSample {
                agent: a.agent.clone(),
                id: AgentId::of(a),
                cpu_fraction: Some(0.25),
                runtime_s: None,
                idle_s: Some(30.0),
            })
            .collect()
    }

    fn observe(x: &Exporter, target: &str, outcome: &PollOutcome, e: Option<&Envelope>) {
        let agents = e.map(samples).unwrap_or_default();
        let firing = [FiringCount {
            rule: "breaker_open".into(),
            severity: Severity::Critical,
            count: 1,
        }];
        x.observe(&PollView {
            target,
            outcome,
            duration: Duration::from_millis(5),
            now: Timestamp::parse("2026-11-22T10:00:01Z").unwrap(),
            schema_version: e.map(|e| e.schema_version),
            envelope: e,
            agents: &agents,
            firing: &firing,
        });
    }

    fn lines(text: &str, name: &str) -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn targets_share_the_label_sets_of_a_bounded_vocabulary() {
        let x = Exporter::new();
        let mut e = envelope(&[(7, "dev")]);
        if let Some(q) = e.queue.as_mut() {
            q.counts.insert("running".into(), 1);
        }
        observe(&x, "t1", &PollOutcome::Ok, Some(&e));
        observe(&x, "t2", &PollOutcome::Ok, Some(&e));
        let targets = lock(&x.inner.targets);
        let first = |t: &str, family: &str| targets[t].rows[family][0].0.clone();
        for family in [
            "watchdog_section_degraded",
            "watchdog_alerts_firing",
            "watchdog_queue_jobs",
        ] {
            let (a, b) = (first("t1", family), first("t2", family));
            assert_eq!(a, b, "{family}");
            assert!(
                Arc::ptr_eq(&a.0, &b.0),
                "{family}: one allocation for both targets"
            );
        }
        // An agent's labels are its target's own.
        let (a, b) = (
            first("t1", "watchdog_agent_idle_seconds"),
            first("t2", "watchdog_agent_idle_seconds"),
        );
        assert_eq!(a, b);
        assert!(!Arc::ptr_eq(&a.0, &b.0));
    }

    #[test]
    fn a_view_renders_as_exposition_text() {
        let x = Exporter::new();
        observe(&x, "t1", &PollOutcome::Ok, Some(&envelope(&[(7, "dev")])));
        let text = x.encode();
        assert_eq!(
            lines(&text, "watchdog_target_up"),
            ["watchdog_target_up{target=\"t1\"} 1"]
        );
        assert_eq!(
            lines(&text, "watchdog_agent_idle_seconds"),
            ["watchdog_agent_idle_seconds{agent=\"dev\",job_id=\"7\",pid=\"107\",run_id=\"\",target=\"t1\"} 30"]
        );
        assert_eq!(
            lines(&text, "watchdog_agent_cpu_fraction"),
            ["watchdog_agent_cpu_fraction{agent=\"dev\",job_id=\"7\",pid=\"107\",run_id=\"\",target=\"t1\"} 0.25"]
        );
        // runtime_s is null: no series, never 0.
        assert!(
            lines(&text, "watchdog_agent_runtime_seconds").is_empty(),
            "{text}"
        );
        assert_eq!(
            lines(&text, "watchdog_breaker_open"),
            ["watchdog_breaker_open{target=\"t1\"} 1"]
        );
        assert_eq!(
            lines(&text, "watchdog_queue_depth"),
            ["watchdog_queue_depth{target=\"t1\"} 3"]
        );
        assert_eq!(
            lines(&text, "watchdog_alerts_firing"),
            ["watchdog_alerts_firing{rule=\"breaker_open\",severity=\"critical\",target=\"t1\"} 1"]
        );
        assert!(
            text.contains("# TYPE watchdog_agent_idle_seconds gauge"),
            "{text}"
        );
        assert!(
            text.contains("watchdog_polls_total{outcome=\"ok\",target=\"t1\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn gone_series_disappear_and_a_failed_poll_keeps_the_last_ones() {
        let x = Exporter::new();
        observe(
            &x,
            "t1",
            &PollOutcome::Ok,
            Some(&envelope(&[(7, "dev"), (8, "rev")])),
        );
        observe(&x, "t2", &PollOutcome::Ok, Some(&envelope(&[(9, "dev")])));
        assert_eq!(lines(&x.encode(), "watchdog_agent_idle_seconds").len(), 3);
        // Agent 8 left: its series is gone with the next view.
        observe(&x, "t1", &PollOutcome::Ok, Some(&envelope(&[(7, "dev")])));
        let text = x.encode();
        assert_eq!(
            lines(&text, "watchdog_agent_idle_seconds").len(),
            2,
            "{text}"
        );
        assert!(!text.contains("job_id=\"8\""), "{text}");
        // A failed poll: up is 0, the last seen series stay.
        let failed = PollOutcome::Failed {
            reason: "refused".into(),
        };
        observe(&x, "t1", &failed, None);
        let text = x.encode();
        assert_eq!(
            lines(&text, "watchdog_target_up"),
            [
                "watchdog_target_up{target=\"t1\"} 0",
                "watchdog_target_up{target=\"t2\"} 1",
            ]
        );
        assert_eq!(
            lines(&text, "watchdog_agent_idle_seconds").len(),
            2,
            "{text}"
        );
        // Disabled: the envelope's series go, the target's stay.
        observe(&x, "t1", &PollOutcome::Disabled, None);
        let text = x.encode();
        assert_eq!(
            lines(&text, "watchdog_agent_idle_seconds").len(),
            1,
            "{text}"
        );
        assert_eq!(
            lines(&text, "watchdog_target_enabled"),
            [
                "watchdog_target_enabled{target=\"t1\"} 0",
                "watchdog_target_enabled{target=\"t2\"} 1",
            ]
        );
        // A target that is forgotten renders nothing at all.
        x.forget_target("t2");
        let text = x.encode();
        assert!(!text.contains("target=\"t2\""), "{text}");
    }

    /// The page-3 families: telemetry and net_wait per agent, spend by source.
    #[test]
    fn agent_telemetry_gauges_follow_the_envelope_and_go_with_the_agent() {
        let x = Exporter::new();
        let mut e = envelope(&[(7, "dev"), (8, "rev")]);
        e.agents[0].activity = Some(shared_schema::Activity {
            api_requests: 12,
            tool_calls: 40,
            tool_repeat: 37,
            cost_usd: Some(1.39),
            ..shared_schema::Activity::default()
        });
        e.agents[0].net_wait = Some(shared_schema::NetWait {
            remote: "160.79.104.10:443".into(),
            sent_ago_s: 252.3,
            received_ago_s: Some(260.1),
            pid: Some(107),
        });
        e.cost = Some(shared_schema::Cost {
            running: vec![shared_schema::RunningCost {
                job_id: Some(8),
                cost_usd: Some(2.5),
                ..shared_schema::RunningCost::default()
            }],
            aggregate: Some(shared_schema::CostAggregate {
                cost_usd: Some(10.0),
                ..shared_schema::CostAggregate::default()
            }),
        });
        observe(&x, "t1", &PollOutcome::Ok, Some(&e));
        let text = x.encode();
        let dev = "agent=\"dev\",job_id=\"7\",pid=\"107\",run_id=\"\",target=\"t1\"";
        let rev = "agent=\"rev\",job_id=\"8\",pid=\"108\",run_id=\"\",target=\"t1\"";
        assert_eq!(
            lines(&text, "watchdog_agent_cost_usd"),
            [
                format!("watchdog_agent_cost_usd{{{dev}}} 1.39"),
                format!("watchdog_agent_cost_usd{{{rev}}} 2.5"),
            ]
        );
        assert_eq!(
            lines(&text, "watchdog_agent_cost_source"),
            [
                "watchdog_agent_cost_source{agent=\"dev\",job_id=\"7\",pid=\"107\",run_id=\"\",source=\"telemetry\",target=\"t1\"} 1",
                "watchdog_agent_cost_source{agent=\"rev\",job_id=\"8\",pid=\"108\",run_id=\"\",source=\"db\",target=\"t1\"} 1",
            ]
        );
        // Telemetry only where the agent reported some: no series for rev.
        for (name, v) in [
            ("watchdog_agent_api_requests_total", "12"),
            ("watchdog_agent_tool_calls_total", "40"),
            ("watchdog_agent_tool_repeat", "37"),
            ("watchdog_agent_net_wait_seconds", "252.3"),
        ] {
            assert_eq!(
                lines(&text, name),
                [format!("{name}{{{dev}}} {v}")],
                "{text}"
            );
        }
        assert_eq!(
            lines(&text, "watchdog_cost_by_source_usd"),
            [
                "watchdog_cost_by_source_usd{source=\"db\",target=\"t1\"} 10",
                "watchdog_cost_by_source_usd{source=\"telemetry\",target=\"t1\"} 1.39",
            ]
        );
        // dev leaves: every one of its series goes.
        let mut e2 = e.clone();
        e2.agents.remove(0);
        observe(&x, "t1", &PollOutcome::Ok, Some(&e2));
        let text = x.encode();
        assert!(!text.contains("job_id=\"7\""), "{text}");
        assert!(
            lines(&text, "watchdog_agent_tool_repeat").is_empty(),
            "{text}"
        );
        assert_eq!(lines(&text, "watchdog_agent_cost_usd").len(), 1, "{text}");
    }

    #[test]
    fn every_gauge_is_rendered_with_its_contract_name() {
        // CONTRACT.md section 4 names; the collector knows each one.
        for &name in shared_schema::metrics::FAMILIES {
            if [
                polls::POLL_DURATION,
                polls::POLLS_TOTAL,
                NOTIFICATIONS_TOTAL,
                BUILD_INFO,
            ]
            .contains(&name)
            {
                continue; // registered by `Exporter::new` under these names
            }
            assert!(GAUGES.iter().any(|d| d.name == name), "{name}");
        }
        let g = Gauges::new(Arc::default());
        assert_eq!(g.desc().len(), GAUGES.len(), "every definition is valid");
    }
}
