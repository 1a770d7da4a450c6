//! Section `errors`: cumulative error events per subsystem.
//!
//! Counts are totals since the table began, so a reader derives rates from
//! two snapshots; the table is optional and its absence is `null`.

use rusqlite::Connection;
use shared_schema::{Envelope, Errors, SubsystemErrors};

use crate::sql::{normalise_time, table_exists, text, uint};
use crate::{SectionResult, Session};

/// Fills `env.errors`, or leaves `null` and marks it degraded.
pub(crate) fn collect(session: &mut dyn Session, env: &mut Envelope) {
    match session.errors() {
        Ok(errors) => env.errors = errors,
        Err(err) => super::degrade(env, "errors", &err),
    }
}

/// Totals from `error_events`; `None` when the table is absent.
pub fn read(conn: &Connection) -> SectionResult<Option<Errors>> {
    if !table_exists(conn, "error_events")? {
        return Ok(None);
    }
    // 'T' → ' ' so SQLite's text MAX orders both stored forms alike.
    let mut stmt = conn.prepare_cached(
        "SELECT subsystem, COUNT(*), MAX(replace(created_at, 'T', ' '))
         FROM error_events GROUP BY subsystem ORDER BY subsystem",
    )?;
    let mut rows = stmt.query([])?;
    let mut out = Errors {
        total: Some(0),
        by_subsystem: Vec::new(),
    };
    while let Some(row) = rows.next()? {
        let n = uint(row, 1)?.unwrap_or(0);
        out.total = out.total.map(|t| t + n);
        if let Some(subsystem) = text(row, 0)? {
            out.by_subsystem.push(SubsystemErrors {
                subsystem,
                total: Some(n),
                last_at: normalise_time(text(row, 2)?),
            });
        }
    }
    Ok(Some(out))
}
