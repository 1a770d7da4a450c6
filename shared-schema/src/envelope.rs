//! The envelope of CONTRACT.md section 1, as flat serde types.
//!
//! The same types are written by the emitter and read by the watchdog.
//! Every key the contract allows to be unknown is an `Option`, and `None`
//! always means "not known", never zero. Serialising an [`Envelope`] gives
//! exactly the section 1 form: every key present, `null` where unknown.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::Timestamp;

/// The names of the envelope's sections, in the order they are written.
pub const SECTIONS: [&str; 6] = ["stages", "queue", "agents", "cost", "reconciler", "errors"];

/// One of the envelope's sections, by its JSON key.
///
/// The wire keeps names as text (`Envelope::degraded` holds names this
/// reader may not know yet); this is the typed name for code that means one
/// of the six it does know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Section {
    /// `stages`
    Stages,
    /// `queue`
    Queue,
    /// `agents`
    Agents,
    /// `cost`
    Cost,
    /// `reconciler`
    Reconciler,
    /// `errors`
    Errors,
}

impl Section {
    /// Every section, in the order they are written (as [`SECTIONS`]).
    pub const ALL: [Section; 6] = [
        Section::Stages,
        Section::Queue,
        Section::Agents,
        Section::Cost,
        Section::Reconciler,
        Section::Errors,
    ];

    /// The section's JSON key.
    pub const fn as_str(self) -> &'static str {
        match self {
            Section::Stages => "stages",
            Section::Queue => "queue",
            Section::Agents => "agents",
            Section::Cost => "cost",
            Section::Reconciler => "reconciler",
            Section::Errors => "errors",
        }
    }
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AsRef<str> for Section {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

/// A section name this reader does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown section {0:?}")]
pub struct UnknownSection(pub String);

impl FromStr for Section {
    type Err = UnknownSection;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Section::ALL
            .into_iter()
            .find(|sec| sec.as_str() == s)
            .ok_or_else(|| UnknownSection(s.to_owned()))
    }
}

/// The state of the worker's circuit breaker, typed.
///
/// The wire keeps it as text ([`Breaker::state`]) so a state a newer
/// orchestrator invents is not an error; it reads here as `Unknown`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// `closed`: work flows.
    Closed,
    /// `open`: the worker refuses work.
    Open,
    /// `half_open`: the worker is trying one job.
    HalfOpen,
    /// Any other text, kept as sent.
    Unknown(String),
}

impl BreakerState {
    /// The wire text.
    pub fn as_str(&self) -> &str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
            BreakerState::Unknown(s) => s,
        }
    }
}

impl From<&str> for BreakerState {
    fn from(s: &str) -> Self {
        match s {
            "closed" => BreakerState::Closed,
            "open" => BreakerState::Open,
            "half_open" => BreakerState::HalfOpen,
            other => BreakerState::Unknown(other.to_owned()),
        }
    }
}

impl FromStr for BreakerState {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(BreakerState::from(s))
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How many items of each list one envelope may bring: a body under the
/// 32 MiB cap could otherwise hold millions of entries and cost gigabytes
/// once typed (issue 15 #8). The reader keeps the first `N`, skips the rest
/// without allocating and reports "`path` truncated at N".
pub mod caps {
    /// `agents`: far above any real orchestrator's concurrency.
    pub const AGENTS: usize = 20_000;
    /// `stages`: active tasks.
    pub const STAGES: usize = 20_000;
    /// `cost.running`: one per running job, like `agents`.
    pub const COST_RUNNING: usize = 20_000;
    /// `errors.by_subsystem`.
    pub const BY_SUBSYSTEM: usize = 1_000;
    /// `reconciler.invariant_violations`.
    pub const INVARIANT_VIOLATIONS: usize = 1_000;
    /// `queue.counts` and `reconciler.actions_by_type` (distinct keys).
    pub const MAP_ENTRIES: usize = 1_000;
    /// `degraded`.
    pub const DEGRADED: usize = 64;
}

/// A sequence read into at most `cap + 1` items; the rest are skipped
/// without allocating. The one item past the cap tells the reader the list
/// was cut (it then truncates to `cap` and says so).
struct CappedSeq<T> {
    cap: usize,
    null_as_empty: bool,
    item: PhantomData<T>,
}

/// The longest list [`CappedSeq`] gives back at its exact length.
const SHRINK_UP_TO: usize = 1024;

impl<'de, T: Deserialize<'de>> Visitor<'de> for CappedSeq<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a sequence")
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Vec<T>, E> {
        if self.null_as_empty {
            Ok(Vec::new())
        } else {
            Err(E::invalid_type(serde::de::Unexpected::Unit, &self))
        }
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Vec<T>, E> {
        self.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Vec<T>, D::Error> {
        d.deserialize_seq(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        // The hint is the sender's word: bound it before reserving.
        let hint = seq.size_hint().unwrap_or(0).min(self.cap + 1).min(1024);
        let mut out = Vec::with_capacity(hint);
        while out.len() <= self.cap {
            match seq.next_element()? {
                Some(item) => out.push(item),
                None => {
                    // An envelope waits in the poll channel while the
                    // evaluation is behind (a storm: one per target); the
                    // spare half of a doubled list was a third of it. Only
                    // short lists: shrinking a 10,000-agent one made the
                    // poll 8 % slower (`poll_cost`), for one envelope.
                    if out.len() <= SHRINK_UP_TO {
                        out.shrink_to_fit();
                    }
                    return Ok(out);
                }
            }
        }
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(out)
    }
}

/// A list of at most `cap + 1` items (see [`CappedSeq`]).
pub(crate) fn capped_vec<'de, D, T>(d: D, cap: usize) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    d.deserialize_seq(CappedSeq {
        cap,
        null_as_empty: false,
        item: PhantomData,
    })
}

/// As [`capped_vec`], `null` read as empty: inside a section that was read,
/// a `null` list carries no more than an empty one.
fn capped_vec_or_null<'de, D, T>(d: D, cap: usize) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    d.deserialize_option(CappedSeq {
        cap,
        null_as_empty: true,
        item: PhantomData,
    })
}

/// An object of string keys read into at most `cap + 1` entries.
struct CappedMap<V> {
    cap: usize,
    value: PhantomData<V>,
}

impl<'de, V: Deserialize<'de>> Visitor<'de> for CappedMap<V> {
    type Value = BTreeMap<String, V>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = BTreeMap::new();
        while out.len() <= self.cap {
            match map.next_entry::<String, V>()? {
                Some((k, v)) => {
                    out.insert(k, v);
                }
                None => return Ok(out),
            }
        }
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(out)
    }
}

fn capped_map<'de, D, V>(d: D) -> Result<BTreeMap<String, V>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    d.deserialize_map(CappedMap {
        cap: caps::MAP_ENTRIES,
        value: PhantomData,
    })
}

fn capped_map_or_null<'de, D, V>(d: D) -> Result<Option<BTreeMap<String, V>>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct Opt<V>(PhantomData<V>);
    impl<'de, V: Deserialize<'de>> Visitor<'de> for Opt<V> {
        type Value = Option<BTreeMap<String, V>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a map or null")
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            capped_map(d).map(Some)
        }
    }
    d.deserialize_option(Opt(PhantomData))
}

fn running_cap<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<RunningCost>, D::Error> {
    capped_vec_or_null(d, caps::COST_RUNNING)
}

fn violations_cap<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<InvariantViolation>, D::Error> {
    capped_vec_or_null(d, caps::INVARIANT_VIOLATIONS)
}

fn by_subsystem_cap<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SubsystemErrors>, D::Error> {
    capped_vec_or_null(d, caps::BY_SUBSYSTEM)
}

/// Job statuses that `queue.counts` always carries, 0 where none.
pub const REQUIRED_JOB_STATUSES: [&str; 5] = ["queued", "running", "done", "failed", "cancelled"];

/// One snapshot of an orchestrator, as served by `GET /metrics` when enabled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Contract major version; [`crate::SCHEMA_VERSION`] when written by us.
    pub schema_version: u64,
    /// Always `true` here; a disabled emitter is [`crate::Reading::Disabled`].
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The emitter's wall clock when the snapshot was taken.
    pub generated_at: Timestamp,
    /// The emitter host's `CLOCK_MONOTONIC` at the same instant, in ms.
    #[serde(default)]
    pub monotonic_ms: Option<u64>,
    /// `/proc/sys/kernel/random/boot_id`; changes when the host reboots.
    #[serde(default)]
    pub boot_id: Option<String>,
    /// Hostname of the emitter.
    #[serde(default)]
    pub host: Option<String>,
    /// `sysconf(_SC_CLK_TCK)`: how many CPU ticks make one second.
    #[serde(default)]
    pub clk_tck: Option<u64>,
    /// Sections whose collection failed in this snapshot. The reader also
    /// adds the sections it could not read.
    #[serde(default)]
    pub degraded: Vec<String>,
    /// Active (non-terminal) task stages.
    #[serde(default)]
    pub stages: Vec<Stage>,
    /// The job queue, or `None` where unknown.
    #[serde(default)]
    pub queue: Option<Queue>,
    /// One entry per running job.
    #[serde(default)]
    pub agents: Vec<Agent>,
    /// Cost and tokens, or `None` where unknown.
    #[serde(default)]
    pub cost: Option<Cost>,
    /// The newest reconciler tick; `None` when absent or unknown.
    #[serde(default)]
    pub reconciler: Option<Reconciler>,
    /// Cumulative error counts; `None` when absent or unknown.
    #[serde(default)]
    pub errors: Option<Errors>,
}

fn yes() -> bool {
    true
}

impl Envelope {
    /// An enabled envelope with every section empty or unknown.
    pub fn new(generated_at: Timestamp) -> Self {
        Self {
            schema_version: crate::SCHEMA_VERSION,
            enabled: true,
            generated_at,
            monotonic_ms: None,
            boot_id: None,
            host: None,
            clk_tck: None,
            degraded: Vec::new(),
            stages: Vec::new(),
            queue: None,
            agents: Vec::new(),
            cost: None,
            reconciler: None,
            errors: None,
        }
    }

    /// Whether `section` (a [`Section`] or any name) is listed in
    /// `degraded` (by the emitter or the reader).
    pub fn is_degraded(&self, section: impl AsRef<str>) -> bool {
        let section = section.as_ref();
        self.degraded.iter().any(|s| s == section)
    }

    /// Adds `section` (a [`Section`] or any name) to `degraded` once.
    pub fn mark_degraded(&mut self, section: impl AsRef<str>) {
        let section = section.as_ref();
        if !self.is_degraded(section) {
            self.degraded.push(section.to_owned());
        }
    }
}

/// The body of a disabled emitter: exactly `{"schema_version":1,"enabled":false}`.
pub fn disabled_body() -> String {
    format!(
        r#"{{"schema_version":{},"enabled":false}}"#,
        crate::SCHEMA_VERSION
    )
}

/// One active task (section `stages`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    /// `tasks.id`.
    #[serde(default)]
    pub task_id: Option<i64>,
    /// `tasks.work_item_id`.
    #[serde(default)]
    pub work_item: Option<String>,
    /// `tasks.stage`.
    pub stage: String,
    /// Seconds since the task entered its stage, on the emitter's clock.
    #[serde(default)]
    pub age_in_stage_s: Option<f64>,
    /// `tasks.repo`.
    #[serde(default)]
    pub repo: Option<String>,
}

/// The job queue (section `queue`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Queue {
    /// Jobs per status; always carries [`REQUIRED_JOB_STATUSES`].
    #[serde(default, deserialize_with = "capped_map")]
    pub counts: BTreeMap<String, u64>,
    /// `counts.queued`.
    #[serde(default)]
    pub depth: Option<u64>,
    /// Retry totals.
    #[serde(default)]
    pub retries: Option<Retries>,
    /// The worker's circuit breaker, from `worker_state`.
    #[serde(default)]
    pub breaker: Option<Breaker>,
    /// From `worker_state`.
    #[serde(default)]
    pub max_concurrency: Option<u64>,
    /// Seconds, from `worker_state`.
    #[serde(default)]
    pub poll_interval: Option<f64>,
}

/// Retry totals over all jobs.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Retries {
    /// Jobs with `attempts > 1`.
    #[serde(default)]
    pub retried_jobs: Option<u64>,
    /// Σ max(attempts − 1, 0).
    #[serde(default)]
    pub total_retries: Option<u64>,
}

/// The worker's circuit breaker.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Breaker {
    /// `closed`, `open` or `half_open` (kept as text so a new state is not an error).
    #[serde(default)]
    pub state: Option<String>,
    /// Failures since the breaker last closed.
    #[serde(default)]
    pub consecutive_failures: Option<u64>,
    /// When the breaker opened (text as stored).
    #[serde(default)]
    pub opened_at: Option<String>,
}

impl Breaker {
    /// The state, typed; `None` where unknown (`state` null or missing).
    pub fn state(&self) -> Option<BreakerState> {
        self.state.as_deref().map(BreakerState::from)
    }
}

/// One running agent (section `agents`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Agent {
    /// `jobs.agent`.
    #[serde(default)]
    pub agent: Option<String>,
    /// Newest `agent_runs.id` for the job.
    #[serde(default)]
    pub run_id: Option<i64>,
    /// `jobs.id`.
    pub job_id: i64,
    /// `jobs.repo`.
    #[serde(default)]
    pub repo: Option<String>,
    /// `jobs.pid`.
    #[serde(default)]
    pub pid: Option<i64>,
    /// Seconds since `jobs.started_at`.
    #[serde(default)]
    pub runtime_s: Option<f64>,
    /// `jobs.model`.
    #[serde(default)]
    pub model: Option<String>,
    /// `jobs.effort`.
    #[serde(default)]
    pub effort: Option<String>,
    /// utime + stime of `pid`.
    #[serde(default)]
    pub cpu_ticks: Option<u64>,
    /// starttime of `pid`: with `pid` it names one process.
    #[serde(default)]
    pub start_ticks: Option<u64>,
    /// CPU ticks of the whole process tree (own, reaped children, live descendants).
    #[serde(default)]
    pub tree_cpu_ticks: Option<u64>,
    /// Bytes read over the process tree.
    #[serde(default)]
    pub io_rchar: Option<u64>,
    /// Bytes written over the process tree.
    #[serde(default)]
    pub io_wchar: Option<u64>,
    /// The process state letter.
    #[serde(default)]
    pub state: Option<String>,
    /// `true` while a process with that pid exists (a zombie included),
    /// `false` once none does; `None` when `pid` is null or `/proc` cannot tell.
    #[serde(default)]
    pub alive: Option<bool>,
    /// `/proc/<pid>/wchan`: the kernel function the process sleeps in.
    #[serde(default)]
    pub wchan: Option<String>,
    /// What the agent itself reported over OTLP (page 3); `None` while no
    /// telemetry has been attributed to this job.
    #[serde(default)]
    pub activity: Option<Activity>,
    /// The tree's TCP connection that has waited longest for a reply
    /// (page 3); `None` when none is waiting.
    #[serde(default)]
    pub net_wait: Option<NetWait>,
}

/// `agents[i].activity`: cumulative counts the agent reported over OTLP
/// since the emitter first attributed a record to this job (CONTRACT.md
/// section 1, "activity", page 3). Raw counts only; readers derive rates.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Activity {
    /// `"otlp"`.
    #[serde(default = "otlp")]
    pub source: String,
    /// `service.name` of the newest record (`claude-code`, `codex_exec`, ...).
    #[serde(default)]
    pub service: Option<String>,
    /// `session.id` (or `conversation.id`) of the newest record.
    #[serde(default)]
    pub session_id: Option<String>,
    /// First attributed record, on the emitter's clock.
    #[serde(default)]
    pub first_seen_at: Option<Timestamp>,
    /// Newest attributed record, on the emitter's clock.
    #[serde(default)]
    pub last_seen_at: Option<Timestamp>,
    /// Model API requests that completed.
    #[serde(default)]
    pub api_requests: u64,
    /// Model API requests that failed (the agent's own retries included).
    #[serde(default)]
    pub api_errors: u64,
    /// When the newest completed request was reported.
    #[serde(default)]
    pub last_api_at: Option<Timestamp>,
    /// Sum of input tokens over the requests.
    #[serde(default)]
    pub input_tokens: u64,
    /// Sum of output tokens.
    #[serde(default)]
    pub output_tokens: u64,
    /// Sum of cache-read tokens.
    #[serde(default)]
    pub cache_read_tokens: u64,
    /// Sum of cache-creation tokens.
    #[serde(default)]
    pub cache_creation_tokens: u64,
    /// Sum of the costs the agent reported; `None` when no record carried one.
    #[serde(default)]
    pub cost_usd: Option<f64>,
    /// Tool calls that completed.
    #[serde(default)]
    pub tool_calls: u64,
    /// Of those, the ones reported as failed.
    #[serde(default)]
    pub tool_failures: u64,
    /// Name of the newest completed tool call.
    #[serde(default)]
    pub last_tool: Option<String>,
    /// When it was reported.
    #[serde(default)]
    pub last_tool_at: Option<Timestamp>,
    /// Consecutive completed tool calls, ending with the newest, with the
    /// same fingerprint; `1` when the newest differs from the one before,
    /// `0` before any.
    #[serde(default)]
    pub tool_repeat: u64,
}

fn otlp() -> String {
    "otlp".to_owned()
}

/// `agents[i].net_wait`: the connection of the agent's tree that has
/// waited longest for a reply (ESTABLISHED, data sent after anything was
/// last received), from the kernel's `tcp_info`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct NetWait {
    /// The peer, `address:port` (IPv6 as `[addr]:port`).
    pub remote: String,
    /// Seconds since data was last sent on it.
    pub sent_ago_s: f64,
    /// Seconds since data was last received; `None` when nothing ever was.
    #[serde(default)]
    pub received_ago_s: Option<f64>,
    /// The process holding the socket.
    #[serde(default)]
    pub pid: Option<i64>,
}

/// Cost and tokens (section `cost`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Cost {
    /// One entry per running job.
    #[serde(default, deserialize_with = "running_cap")]
    pub running: Vec<RunningCost>,
    /// Sums over all `agent_runs`.
    #[serde(default)]
    pub aggregate: Option<CostAggregate>,
}

/// Cost of one running job.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RunningCost {
    /// `agent_runs.id`.
    #[serde(default)]
    pub run_id: Option<i64>,
    /// `jobs.id`.
    #[serde(default)]
    pub job_id: Option<i64>,
    /// `jobs.agent`.
    #[serde(default)]
    pub agent: Option<String>,
    /// USD spent so far.
    #[serde(default)]
    pub cost_usd: Option<f64>,
    /// Input tokens.
    #[serde(default)]
    pub input_tokens: Option<u64>,
    /// Output tokens.
    #[serde(default)]
    pub output_tokens: Option<u64>,
    /// Tokens read from the prompt cache.
    #[serde(default)]
    pub cache_read_tokens: Option<u64>,
    /// Tokens written to the prompt cache.
    #[serde(default)]
    pub cache_creation_tokens: Option<u64>,
}

/// Sums over all `agent_runs` (nulls count as 0).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CostAggregate {
    /// Number of runs.
    #[serde(default)]
    pub runs: Option<u64>,
    /// Total USD.
    #[serde(default)]
    pub cost_usd: Option<f64>,
    /// Input tokens.
    #[serde(default)]
    pub input_tokens: Option<u64>,
    /// Output tokens.
    #[serde(default)]
    pub output_tokens: Option<u64>,
    /// Tokens read from the prompt cache.
    #[serde(default)]
    pub cache_read_tokens: Option<u64>,
    /// Tokens written to the prompt cache.
    #[serde(default)]
    pub cache_creation_tokens: Option<u64>,
}

/// The newest reconciler tick (section `reconciler`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Reconciler {
    /// Rows in `reconciler_ticks`.
    #[serde(default)]
    pub ticks_total: Option<u64>,
    /// When the newest tick ran (text as the emitter wrote it).
    #[serde(default)]
    pub last_tick_at: Option<String>,
    /// How long the tick took.
    #[serde(default)]
    pub wall_clock_ms: Option<f64>,
    /// Events the tick consumed.
    #[serde(default)]
    pub events_drained: Option<u64>,
    /// Actions the tick decided.
    #[serde(default)]
    pub actions_emitted: Option<u64>,
    /// Actions by type.
    #[serde(default, deserialize_with = "capped_map_or_null")]
    pub actions_by_type: Option<BTreeMap<String, u64>>,
    /// Side effects of the tick.
    #[serde(default)]
    pub side_effects: Option<SideEffects>,
    /// Events still waiting after the tick.
    #[serde(default)]
    pub pending_event_count: Option<u64>,
    /// Invariants the tick found broken.
    #[serde(default, deserialize_with = "violations_cap")]
    pub invariant_violations: Vec<InvariantViolation>,
}

/// Side effects attempted by one reconciler tick.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SideEffects {
    /// Side effects tried.
    #[serde(default)]
    pub attempted: Option<u64>,
    /// Side effects that worked.
    #[serde(default)]
    pub succeeded: Option<u64>,
    /// Side effects that failed.
    #[serde(default)]
    pub failed: Option<u64>,
}

/// One broken invariant reported by a reconciler tick.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvariantViolation {
    /// The invariant's number or name.
    pub invariant: InvariantId,
    /// What is wrong.
    #[serde(default)]
    pub message: String,
    /// What it is wrong about, when known.
    #[serde(default)]
    pub subject: Option<String>,
}

/// An invariant is named by a number or a string.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum InvariantId {
    /// `"invariant": 3`
    Number(i64),
    /// `"invariant": "one_running_job_per_task"`
    Name(String),
}

impl fmt::Display for InvariantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Number(n) => write!(f, "{n}"),
            Self::Name(s) => f.write_str(s),
        }
    }
}

/// Cumulative error events (section `errors`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Errors {
    /// All events.
    #[serde(default)]
    pub total: Option<u64>,
    /// Events per subsystem.
    #[serde(default, deserialize_with = "by_subsystem_cap")]
    pub by_subsystem: Vec<SubsystemErrors>,
}

/// Error events of one subsystem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubsystemErrors {
    /// `error_events.subsystem`.
    pub subsystem: String,
    /// Events so far.
    #[serde(default)]
    pub total: Option<u64>,
    /// The newest event's time (text as the emitter wrote it).
    #[serde(default)]
    pub last_at: Option<String>,
}

#[cfg(test)]
mod page3_tests {
    use super::*;

    const ACTIVITY: &str = r#"{"source":"otlp","service":"claude-code","session_id":"s1",
        "first_seen_at":"2026-11-22T10:00:00.000Z","last_seen_at":"2026-11-22T10:04:00.000Z",
        "api_requests":12,"api_errors":1,"last_api_at":"2026-11-22T10:03:59.000Z",
        "input_tokens":1000,"output_tokens":200,"cache_read_tokens":30,"cache_creation_tokens":4,
        "cost_usd":1.39,"tool_calls":37,"tool_failures":0,"last_tool":"Bash",
        "last_tool_at":"2026-11-22T10:04:00.000Z","tool_repeat":37}"#;

    fn agent(extra: &str) -> Result<Agent, serde_json::Error> {
        serde_json::from_str(&format!(r#"{{"job_id":7,"cpu_ticks":null{extra}}}"#))
    }

    #[test]
    fn activity_and_net_wait_read_back() -> Result<(), serde_json::Error> {
        let a = agent(&format!(
            r#","activity":{ACTIVITY},"net_wait":{{"remote":"160.79.104.10:443","sent_ago_s":252.3,"received_ago_s":null,"pid":1234}}"#
        ))?;
        let act = a
            .activity
            .as_ref()
            .map(|x| (x.tool_repeat, x.cost_usd, x.last_tool.clone()));
        assert_eq!(act, Some((37, Some(1.39), Some("Bash".to_owned()))));
        let nw = a
            .net_wait
            .as_ref()
            .map(|n| (n.remote.as_str(), n.sent_ago_s, n.received_ago_s, n.pid));
        assert_eq!(nw, Some(("160.79.104.10:443", 252.3, None, Some(1234))));
        Ok(())
    }

    #[test]
    fn an_old_agent_without_page3_keys_reads_as_unknown() -> Result<(), serde_json::Error> {
        let old = agent("")?;
        assert_eq!((old.activity, old.net_wait), (None, None));
        assert!(agent(r#","activity":{"api_requests":"many"}"#).is_err());
        Ok(())
    }

    #[test]
    fn validate_knows_the_page3_keys() {
        let env = |extra: &str| {
            format!(
                r#"{{"schema_version":1,"generated_at":"2026-11-22T10:00:00.000Z","clk_tck":100,
                "stages":[],"queue":null,"cost":null,"agents":[{{"agent":null,"run_id":null,"job_id":7,
                "repo":null,"pid":null,"runtime_s":null,"model":null,"effort":null,"cpu_ticks":null{extra}}}]}}"#
            )
        };
        let good =
            crate::validate(env(&format!(r#","activity":{ACTIVITY},"net_wait":null"#)).as_bytes());
        assert_eq!(good, vec![]);
        let bad = crate::validate(
            env(r#","activity":{"api_requests":-1},"net_wait":{"remote":7}"#).as_bytes(),
        );
        let paths: Vec<&str> = bad.iter().map(|p| p.path.as_str()).collect();
        assert!(
            paths.contains(&"agents[0].activity.api_requests"),
            "{paths:?}"
        );
        assert!(paths.contains(&"agents[0].net_wait.remote"), "{paths:?}");
    }
}
