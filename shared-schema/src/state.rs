//! The orchestrator state the emitter reads (CONTRACT.md section 2), as
//! SQL. An orchestrator that keeps these tables can be watched without code
//! changes; extra columns and tables are ignored. Tests, benchmarks and the
//! demo create their databases from these constants, so there is one copy.

/// Expands to the required tables' DDL (a literal, so it can be `concat!`ed).
macro_rules! required_tables {
    () => {
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, work_item_id TEXT, repo TEXT,
  stage TEXT NOT NULL, stage_entered_at TEXT NOT NULL);
CREATE TABLE jobs (id INTEGER PRIMARY KEY, task_id INTEGER, agent TEXT, repo TEXT,
  status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, pid INTEGER,
  model TEXT, effort TEXT, created_at TEXT, started_at TEXT, finished_at TEXT);
CREATE TABLE agent_runs (id INTEGER PRIMARY KEY, job_id INTEGER, agent TEXT,
  cost_usd REAL, input_tokens INTEGER, output_tokens INTEGER,
  cache_read_tokens INTEGER, cache_creation_tokens INTEGER,
  started_at TEXT, finished_at TEXT);
"
    };
}

/// Expands to the optional tables' DDL.
macro_rules! optional_tables {
    () => {
        "CREATE TABLE worker_state (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE error_events (id INTEGER PRIMARY KEY, subsystem TEXT NOT NULL,
  message TEXT, created_at TEXT NOT NULL, payload TEXT);
CREATE TABLE reconciler_ticks (id INTEGER PRIMARY KEY, at TEXT NOT NULL,
  wall_clock_ms REAL, events_drained INTEGER, actions_emitted INTEGER,
  actions_by_type TEXT, side_effects_attempted INTEGER,
  side_effects_succeeded INTEGER, side_effects_failed INTEGER,
  pending_event_count INTEGER, invariant_violations TEXT);
"
    };
}

/// `tasks`, `jobs`, `agent_runs`: without them the sections they feed are degraded.
pub const REQUIRED_TABLES_SQL: &str = required_tables!();

/// `worker_state`, `error_events`, `reconciler_ticks`: absent means `null`, not degraded.
pub const OPTIONAL_TABLES_SQL: &str = optional_tables!();

/// Every table of section 2.
pub const SCHEMA_SQL: &str = concat!(required_tables!(), optional_tables!());

/// Keys of `worker_state` the emitter reads.
pub const WORKER_STATE_KEYS: [&str; 5] = [
    "breaker_state",
    "breaker_failures",
    "breaker_opened_at",
    "max_concurrency",
    "poll_interval",
];
