//! The envelope of CONTRACT.md section 1, as flat serde types.
//!
//! The same types are written by the emitter and read by the watchdog.
//! Every key the contract allows to be unknown is an `Option`, and `None`
//! always means "not known", never zero. Serialising an [`Envelope`] gives
//! exactly the section 1 form: every key present, `null` where unknown.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// The names of the envelope's sections, in the order they are written.
pub const SECTIONS: [&str; 6] = ["stages", "queue", "agents", "cost", "reconciler", "errors"];

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

/// A list that is `null` is read as empty: inside a section that was read,
/// a `null` list carries no more than an empty one.
fn null_as_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
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

    /// Whether `section` is listed in `degraded` (by the emitter or the reader).
    pub fn is_degraded(&self, section: &str) -> bool {
        self.degraded.iter().any(|s| s == section)
    }

    /// Adds `section` to `degraded` once.
    pub fn mark_degraded(&mut self, section: &str) {
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
    #[serde(default)]
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
}

/// Cost and tokens (section `cost`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Cost {
    /// One entry per running job.
    #[serde(default, deserialize_with = "null_as_empty")]
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
    #[serde(default)]
    pub actions_by_type: Option<BTreeMap<String, u64>>,
    /// Side effects of the tick.
    #[serde(default)]
    pub side_effects: Option<SideEffects>,
    /// Events still waiting after the tick.
    #[serde(default)]
    pub pending_event_count: Option<u64>,
    /// Invariants the tick found broken.
    #[serde(default, deserialize_with = "null_as_empty")]
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
    #[serde(default, deserialize_with = "null_as_empty")]
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
