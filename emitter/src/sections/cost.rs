//! Section `cost`: spend of each running job and totals over every run.
//!
//! [`read`] is the from-scratch computation (whole-table queries); the
//! default source keeps the same figures incrementally and is tested
//! against it.

use std::sync::LazyLock;

use rusqlite::Connection;
use shared_schema::{Cost, CostAggregate, Envelope, RunningCost};

use crate::sql::{int, real, text, uint};
use crate::{SectionResult, Session};

/// Fills `env.cost`, or leaves `null` and marks it degraded.
pub(crate) fn collect(session: &mut dyn Session, env: &mut Envelope) {
    match session.cost() {
        Ok(cost) => env.cost = Some(cost),
        Err(err) => super::degrade(env, "cost", &err),
    }
}

/// The newest run of each running job, and sums over all of `agent_runs`.
pub fn read(conn: &Connection) -> SectionResult<Cost> {
    Ok(Cost {
        running: running(conn)?,
        aggregate: Some(aggregate(conn)?),
    })
}

fn running(conn: &Connection) -> SectionResult<Vec<RunningCost>> {
    let mut stmt = conn.prepare_cached(
        "SELECT j.id, COALESCE(j.agent, a.agent), a.id, a.cost_usd, a.input_tokens,
                a.output_tokens, a.cache_read_tokens, a.cache_creation_tokens
         FROM jobs AS j
         LEFT JOIN (SELECT job_id, MAX(id) AS run_id FROM agent_runs GROUP BY job_id) AS r
           ON r.job_id = j.id
         LEFT JOIN agent_runs AS a ON a.id = r.run_id
         WHERE j.status = 'running'
         ORDER BY j.id",
    )?;
    let rows = stmt.query_map([], |row| {
        Ok(RunningCost {
            job_id: int(row, 0)?,
            agent: text(row, 1)?,
            run_id: int(row, 2)?,
            cost_usd: real(row, 3)?,
            input_tokens: uint(row, 4)?,
            output_tokens: uint(row, 5)?,
            cache_read_tokens: uint(row, 6)?,
            cache_creation_tokens: uint(row, 7)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Nulls count as 0, and so do values that are not non-negative numbers:
/// one garbage cell must not hide the spend of every other run.
static AGGREGATE_SQL: LazyLock<String> = LazyLock::new(|| {
    let sum = |col: &str| {
        format!(
            "TOTAL(CASE WHEN typeof({col}) IN ('integer', 'real') AND {col} > 0 THEN {col} END)"
        )
    };
    format!(
        "SELECT COUNT(*), {}, {}, {}, {}, {} FROM agent_runs",
        sum("cost_usd"),
        sum("input_tokens"),
        sum("output_tokens"),
        sum("cache_read_tokens"),
        sum("cache_creation_tokens"),
    )
});

fn aggregate(conn: &Connection) -> SectionResult<CostAggregate> {
    let mut stmt = conn.prepare_cached(&AGGREGATE_SQL)?;
    let sums = stmt.query_row([], |row| {
        Ok([
            real(row, 0)?,
            real(row, 1)?,
            real(row, 2)?,
            real(row, 3)?,
            real(row, 4)?,
            real(row, 5)?,
        ])
    })?;
    // TOTAL() never overflows (it is a float) and is 0.0 on an empty table; a
    // sum that is not finite (an infinite cost) is unknown, never 0.
    let count = |i: usize| -> Option<u64> {
        sums[i]
            .filter(|v| (0.0..1.8e19).contains(v))
            .map(|v| v.round() as u64)
    };
    Ok(CostAggregate {
        runs: count(0),
        cost_usd: sums[1],
        input_tokens: count(2),
        output_tokens: count(3),
        cache_read_tokens: count(4),
        cache_creation_tokens: count(5),
    })
}
