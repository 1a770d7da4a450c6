//! A real orchestrator state database, per CONTRACT.md section 2: every
//! table (the optional ones too), written the way an orchestrator would.

use std::path::Path;

use rusqlite::{params, Connection};

/// The schema of CONTRACT.md section 2, every table.
pub const SCHEMA: &str = shared_schema::state::SCHEMA_SQL;

/// One running agent's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunningJob {
    /// `tasks.id`.
    pub task_id: i64,
    /// `jobs.id`.
    pub job_id: i64,
    /// `agent_runs.id`.
    pub run_id: i64,
}

/// Creates the database at `path` (WAL, so the emitter's read-only
/// connection never waits on our writes) with every table.
pub fn create(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.execute_batch(SCHEMA)?;
    let mut ws = conn.prepare("INSERT INTO worker_state (key, value) VALUES (?1, ?2)")?;
    for (k, v) in [
        ("breaker_state", "closed"),
        ("breaker_failures", "0"),
        ("max_concurrency", "4"),
        ("poll_interval", "2.0"),
    ] {
        ws.execute(params![k, v])?;
    }
    drop(ws);
    Ok(conn)
}

/// Opens an existing database for writing.
pub fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

/// Records a running agent: a task in `stage`, a `running` job with `pid`
/// started now, and its first agent run.
pub fn insert_running_job(
    conn: &Connection,
    agent: &str,
    pid: u32,
    repo: &str,
    stage: &str,
) -> rusqlite::Result<RunningJob> {
    let tx = conn.unchecked_transaction()?;
    tx.execute(
        "INSERT INTO tasks (work_item_id, repo, stage, stage_entered_at) VALUES (?1, ?2, ?3, datetime('now'))",
        params![format!("WI-agent-{agent}"), repo, stage],
    )?;
    let task_id = tx.last_insert_rowid();
    tx.execute(
        "INSERT INTO jobs (task_id, agent, repo, status, attempts, pid, model, effort, created_at, started_at)
         VALUES (?1, ?2, ?3, 'running', 1, ?4, 'sonnet', 'medium', datetime('now'), datetime('now'))",
        params![task_id, agent, repo, pid],
    )?;
    let job_id = tx.last_insert_rowid();
    tx.execute(
        "INSERT INTO agent_runs (job_id, agent, cost_usd, input_tokens, output_tokens,
           cache_read_tokens, cache_creation_tokens, started_at)
         VALUES (?1, ?2, 0.0, 0, 0, 0, 0, datetime('now'))",
        params![job_id, agent],
    )?;
    let run_id = tx.last_insert_rowid();
    tx.commit()?;
    Ok(RunningJob {
        task_id,
        job_id,
        run_id,
    })
}

/// Marks a job finished (`done` or `failed`) now.
pub fn finish_job(conn: &Connection, job_id: i64, status: &str) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE jobs SET status = ?2, finished_at = datetime('now') WHERE id = ?1",
        params![job_id, status],
    )?;
    conn.execute(
        "UPDATE agent_runs SET finished_at = datetime('now') WHERE job_id = ?1 AND finished_at IS NULL",
        params![job_id],
    )?;
    Ok(())
}

/// Sets one `worker_state` key.
pub fn set_worker_state(conn: &Connection, key: &str, value: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO worker_state (key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}
