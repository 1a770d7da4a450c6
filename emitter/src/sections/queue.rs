//! Section `queue`: job counts per status, retries and the worker's own state.

use std::collections::{BTreeMap, HashMap};

use rusqlite::Connection;
use shared_schema::{Breaker, Envelope, Queue, Retries, REQUIRED_JOB_STATUSES};

use crate::sql::{int, normalise_time, parse_uint, table_exists, text};
use crate::{SectionResult, Session};

/// Fills `env.queue`, or leaves `null` and marks it degraded.
pub(crate) fn collect(session: &mut dyn Session, env: &mut Envelope) {
    match session.queue() {
        Ok(queue) => env.queue = Some(queue),
        Err(err) => super::degrade(env, "queue", &err),
    }
}

/// Counts and retries from `jobs`, the rest from the optional `worker_state`.
pub fn read(conn: &Connection) -> SectionResult<Queue> {
    let mut counts: BTreeMap<String, u64> = REQUIRED_JOB_STATUSES
        .iter()
        .map(|s| ((*s).to_owned(), 0))
        .collect();
    let mut retries = Retries {
        retried_jobs: Some(0),
        total_retries: Some(0),
    };
    let mut stmt = conn.prepare_cached(
        "SELECT status, COUNT(*), SUM(attempts > 1), SUM(MAX(attempts - 1, 0))
         FROM jobs GROUP BY status",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let n = int(row, 1)?
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0);
        if let Some(status) = text(row, 0)? {
            *counts.entry(status).or_insert(0) += n;
        }
        let add = |total: &mut Option<u64>, v: Option<i64>| {
            *total = total.map(|t| t + v.and_then(|v| u64::try_from(v).ok()).unwrap_or(0));
        };
        add(&mut retries.retried_jobs, int(row, 2)?);
        add(&mut retries.total_retries, int(row, 3)?);
    }
    let state = worker_state(conn)?;
    Ok(assemble(counts, retries, &state))
}

/// The section from job counts, retries and `worker_state`.
pub fn assemble(
    counts: BTreeMap<String, u64>,
    retries: Retries,
    state: &HashMap<String, Option<String>>,
) -> Queue {
    let get = |key: &str| state.get(key).cloned().flatten();
    Queue {
        depth: counts.get("queued").copied(),
        counts,
        retries: Some(retries),
        breaker: breaker(
            get("breaker_state"),
            get("breaker_failures"),
            get("breaker_opened_at"),
        ),
        max_concurrency: get("max_concurrency").as_deref().and_then(parse_uint),
        poll_interval: get("poll_interval")
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite()),
    }
}

/// `worker_state` as key → value; empty when the table is absent.
pub fn worker_state(conn: &Connection) -> SectionResult<HashMap<String, Option<String>>> {
    if !table_exists(conn, "worker_state")? {
        return Ok(HashMap::new());
    }
    let mut stmt = conn.prepare_cached("SELECT key, value FROM worker_state")?;
    let mut rows = stmt.query([])?;
    let mut out = HashMap::new();
    while let Some(row) = rows.next()? {
        if let Some(key) = text(row, 0)? {
            out.insert(key, text(row, 1)?);
        }
    }
    Ok(out)
}

/// The breaker, or `None` when its state is unknown.
fn breaker(
    state: Option<String>,
    failures: Option<String>,
    opened_at: Option<String>,
) -> Option<Breaker> {
    let raw = state?;
    let state = raw.trim().to_ascii_lowercase().replace(['-', ' '], "_");
    if !matches!(state.as_str(), "closed" | "open" | "half_open") {
        // Not a state the contract knows: unknown, and said so.
        tracing::warn!(breaker_state = %raw, "unknown breaker state, reported as null");
        return None;
    }
    Some(Breaker {
        state: Some(state),
        consecutive_failures: failures.as_deref().and_then(parse_uint),
        opened_at: normalise_time(opened_at).filter(|t| !t.trim().is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_states_are_normalised_or_unknown() {
        let b = breaker(
            Some("Half-Open".into()),
            Some("3".into()),
            Some("2026-11-22 10:00:00".into()),
        )
        .expect("known state");
        assert_eq!(b.state.as_deref(), Some("half_open"));
        assert_eq!(b.consecutive_failures, Some(3));
        assert_eq!(b.opened_at.as_deref(), Some("2026-11-22T10:00:00.000Z"));
        assert_eq!(breaker(Some("tripped".into()), None, None), None);
        assert_eq!(breaker(None, Some("3".into()), None), None);
        let closed = breaker(Some("closed".into()), None, Some(String::new())).expect("closed");
        assert_eq!(
            (closed.consecutive_failures, closed.opened_at),
            (None, None)
        );
    }
}
