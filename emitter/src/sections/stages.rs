//! Section `stages`: tasks not in a terminal stage and how long they have been there.

use rusqlite::Connection;
use shared_schema::{Envelope, Stage, Timestamp};

use crate::sql::{int, seconds_since, text};
use crate::{SectionResult, Session};

/// Stages that are left out unless `--terminal-stage` replaces them.
pub const DEFAULT_TERMINAL: [&str; 2] = ["done", "cancelled"];

/// Fills `env.stages`, or leaves `[]` and marks it degraded.
pub(crate) fn collect(session: &mut dyn Session, now: &Timestamp, env: &mut Envelope) {
    match session.stages(now) {
        Ok(stages) => env.stages = stages,
        Err(err) => super::degrade(env, "stages", &err),
    }
}

/// Tasks whose stage is not in `terminal`, oldest id first.
pub fn read(conn: &Connection, terminal: &[String], now: &Timestamp) -> SectionResult<Vec<Stage>> {
    let mut sql = String::from("SELECT id, work_item_id, stage, stage_entered_at, repo FROM tasks");
    if !terminal.is_empty() {
        let marks = vec!["?"; terminal.len()].join(", ");
        sql.push_str(&format!(" WHERE stage NOT IN ({marks})"));
    }
    sql.push_str(" ORDER BY id");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(terminal), |row| {
        let Some(stage) = text(row, 2)? else {
            return Ok(None);
        };
        let entered = text(row, 3)?;
        Ok(Some(Stage {
            task_id: int(row, 0)?,
            work_item: text(row, 1)?,
            stage,
            age_in_stage_s: seconds_since(entered.as_deref(), now),
            repo: text(row, 4)?,
        }))
    })?;
    let mut out = Vec::new();
    for row in rows {
        // A task without a stage has nothing to report.
        if let Some(stage) = row? {
            out.push(stage);
        }
    }
    Ok(out)
}
