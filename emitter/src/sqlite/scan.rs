//! The reads behind the incremental state: rows above a rowid, one range,
//! rows by rowid, and a table's rowid bounds. Each query touches a rowid
//! range or a few keys, so its cost does not grow with the table.
//!
//! Rows are keyed by `rowid`, never by `id`: with `id INTEGER PRIMARY KEY`
//! the two are the same; with `id INT PRIMARY KEY` (no rowid alias) the id
//! may be a real, a text or NULL and is read as a column like any other.
//! Every row read carries a fingerprint of all the columns read, so that a
//! row given a reused rowid is told apart from the one before.

use std::hash::{Hash, Hasher};

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, Row};

use super::tally::{Entry, ErrorRow, JobRow, Never, RunDetail, RunRow, TaskRow};
use crate::sql::{int, real, text, uint};

/// How one table's rows are read and classified.
pub trait Kind {
    /// Frozen row.
    type Frozen;
    /// Live row.
    type Live: PartialEq;
    /// The table.
    fn table(&self) -> &'static str;
    /// `SELECT rowid, ... FROM table` (no WHERE).
    fn select(&self) -> &'static str;
    /// One row of [`Kind::select`] (column 0 is the rowid).
    fn entry(&self, row: &Row<'_>) -> rusqlite::Result<Entry<Self::Frozen, Self::Live>>;
}

/// `jobs`.
#[derive(Debug)]
pub struct Jobs;

impl Kind for Jobs {
    type Frozen = JobRow;
    type Live = JobRow;
    fn table(&self) -> &'static str {
        "jobs"
    }
    fn select(&self) -> &'static str {
        "SELECT rowid, status, agent, repo, pid, model, effort, started_at,
                attempts > 1, MAX(attempts - 1, 0), id FROM jobs"
    }
    fn entry(&self, row: &Row<'_>) -> rusqlite::Result<Entry<JobRow, JobRow>> {
        Ok(JobRow {
            id: integer_id(row, 10)?,
            status: text(row, 1)?,
            agent: text(row, 2)?,
            repo: text(row, 3)?,
            pid: int(row, 4)?,
            model: text(row, 5)?,
            effort: text(row, 6)?,
            started_at: text(row, 7)?,
            retried: int(row, 8)?,
            retries: int(row, 9)?,
        }
        .entry())
    }
}

/// `agent_runs`: live while `finished_at` is null.
#[derive(Debug)]
pub struct Runs;

/// Nulls and values that are not positive numbers count as 0 (as before page 2).
macro_rules! positive {
    ($col:literal) => {
        concat!(
            "CASE WHEN typeof(",
            $col,
            ") IN ('integer', 'real') AND ",
            $col,
            " > 0 THEN ",
            $col,
            " END"
        )
    };
}

impl Kind for Runs {
    type Frozen = RunRow;
    type Live = RunRow;
    fn table(&self) -> &'static str {
        "agent_runs"
    }
    fn select(&self) -> &'static str {
        concat!(
            "SELECT rowid, job_id, finished_at IS NULL, ",
            positive!("cost_usd"),
            ", ",
            positive!("input_tokens"),
            ", ",
            positive!("output_tokens"),
            ", ",
            positive!("cache_read_tokens"),
            ", ",
            positive!("cache_creation_tokens"),
            " FROM agent_runs"
        )
    }
    fn entry(&self, row: &Row<'_>) -> rusqlite::Result<Entry<RunRow, RunRow>> {
        // Here a sum may hold infinity: it must reach the aggregate as such.
        let num = |i: usize| -> rusqlite::Result<Option<f64>> {
            Ok(match row.get_ref(i)? {
                rusqlite::types::ValueRef::Integer(v) => Some(v as f64),
                rusqlite::types::ValueRef::Real(v) => Some(v),
                _ => None,
            })
        };
        let run = RunRow {
            job_id: int(row, 1)?,
            sums: [num(3)?, num(4)?, num(5)?, num(6)?, num(7)?],
        };
        let live: bool = int(row, 2)? == Some(1);
        Ok(if live {
            Entry::Live(run)
        } else {
            Entry::Frozen(run)
        })
    }
}

/// `tasks`: live while the stage is not terminal.
#[derive(Debug)]
pub struct Tasks<'a> {
    /// Stages left out of the section.
    pub terminal: &'a [String],
}

impl Kind for Tasks<'_> {
    type Frozen = ();
    type Live = TaskRow;
    fn table(&self) -> &'static str {
        "tasks"
    }
    fn select(&self) -> &'static str {
        "SELECT rowid, work_item_id, stage, stage_entered_at, repo, id FROM tasks"
    }
    fn entry(&self, row: &Row<'_>) -> rusqlite::Result<Entry<(), TaskRow>> {
        let stage = text(row, 2)?;
        if stage.as_ref().is_some_and(|s| self.terminal.contains(s)) {
            return Ok(Entry::Frozen(()));
        }
        Ok(Entry::Live(TaskRow {
            id: integer_id(row, 5)?,
            work_item: text(row, 1)?,
            stage,
            entered: text(row, 3)?,
            repo: text(row, 4)?,
        }))
    }
}

/// `error_events`: append-only.
#[derive(Debug)]
pub struct ErrorEvents;

impl Kind for ErrorEvents {
    type Frozen = ErrorRow;
    type Live = Never;
    fn table(&self) -> &'static str {
        "error_events"
    }
    fn select(&self) -> &'static str {
        // 'T' -> ' ' so text order is time order for both stored forms.
        "SELECT rowid, subsystem, replace(created_at, 'T', ' ') FROM error_events"
    }
    fn entry(&self, row: &Row<'_>) -> rusqlite::Result<Entry<ErrorRow, Never>> {
        Ok(Entry::Frozen(ErrorRow {
            subsystem: text(row, 1)?,
            at: text(row, 2)?,
        }))
    }
}

/// `reconciler_ticks`: append-only, only counted here.
#[derive(Debug)]
pub struct Ticks;

impl Kind for Ticks {
    type Frozen = ();
    type Live = Never;
    fn table(&self) -> &'static str {
        "reconciler_ticks"
    }
    fn select(&self) -> &'static str {
        "SELECT rowid FROM reconciler_ticks"
    }
    fn entry(&self, _: &Row<'_>) -> rusqlite::Result<Entry<(), Never>> {
        Ok(Entry::Frozen(()))
    }
}

/// A row as read: its rowid, fingerprint and entry.
pub type Read<K> = (i64, u64, Entry<<K as Kind>::Frozen, <K as Kind>::Live>);

/// An `id` column as the contract's integer: only an integer (or a real
/// or text that is exactly one); a real like `1.5`, other text and NULL
/// are `None`, the row itself is still read and counted.
fn integer_id(row: &Row<'_>, i: usize) -> rusqlite::Result<Option<i64>> {
    Ok(match row.get_ref(i)? {
        ValueRef::Integer(v) => Some(v),
        _ => int(row, i)?,
    })
}

/// A hash of every column of the row as stored (type and value).
fn fingerprint(row: &Row<'_>) -> rusqlite::Result<u64> {
    let mut h = std::hash::DefaultHasher::new();
    for i in 0..row.as_ref().column_count() {
        match row.get_ref(i)? {
            ValueRef::Null => 0u8.hash(&mut h),
            ValueRef::Integer(v) => (1u8, v).hash(&mut h),
            ValueRef::Real(v) => (2u8, v.to_bits()).hash(&mut h),
            ValueRef::Text(t) => (3u8, t).hash(&mut h),
            ValueRef::Blob(b) => (4u8, b).hash(&mut h),
        }
    }
    Ok(h.finish())
}

fn read<K: Kind>(kind: &K, row: &Row<'_>) -> rusqlite::Result<Read<K>> {
    Ok((row.get(0)?, fingerprint(row)?, kind.entry(row)?))
}

/// Up to `limit` rows with rowid above `after` (from the lowest when
/// `None`, `i64::MIN` included), by rowid.
pub fn after<K: Kind>(
    conn: &Connection,
    kind: &K,
    after: Option<i64>,
    limit: usize,
) -> rusqlite::Result<Vec<Read<K>>> {
    let (op, from) = match after {
        Some(a) => (">", a),
        None => (">=", i64::MIN),
    };
    let sql = format!(
        "{} WHERE rowid {op} ?1 ORDER BY rowid LIMIT ?2",
        kind.select()
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = stmt.query_map((from, limit), |row| read(kind, row))?;
    rows.collect()
}

/// Every row with `lo <= rowid <= hi`.
pub fn range<K: Kind>(
    conn: &Connection,
    kind: &K,
    lo: i64,
    hi: i64,
) -> rusqlite::Result<Vec<Read<K>>> {
    let sql = format!(
        "{} WHERE rowid >= ?1 AND rowid <= ?2 ORDER BY rowid",
        kind.select()
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map((lo, hi), |row| read(kind, row))?;
    rows.collect()
}

/// Ids per batched lookup (`WHERE id IN (?1, ..., ?32)`): one statement
/// step per row instead of one statement per row.
pub const IN_MAX: usize = 32;

/// `?1, ?2, ..., ?32`.
static PLACEHOLDERS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    (1..=IN_MAX)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ")
});

/// Up to [`IN_MAX`] ids as the parameters of an `IN` list, the last
/// repeated to fill it (a repeated value in `IN` changes nothing).
fn in_params(ids: &[i64]) -> [i64; IN_MAX] {
    let mut out = [0; IN_MAX];
    let last = ids.last().copied().unwrap_or(0);
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = ids.get(i).copied().unwrap_or(last);
    }
    out
}

/// The rows among `ids` (at most [`IN_MAX`] rowids) that exist, in rowid
/// order; a rowid without a row was deleted.
pub fn by_ids<K: Kind>(conn: &Connection, kind: &K, ids: &[i64]) -> rusqlite::Result<Vec<Read<K>>> {
    debug_assert!(ids.len() <= IN_MAX);
    let sql = format!(
        "{} WHERE rowid IN ({}) ORDER BY rowid",
        kind.select(),
        *PLACEHOLDERS
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(in_params(ids)), |row| {
        read(kind, row)
    })?;
    rows.collect()
}

/// The newest run (its rowid) of each of `jobs` (at most [`IN_MAX`]) that
/// has one, through the orchestrator's index on `job_id`.
pub fn newest_runs(conn: &Connection, jobs: &[i64]) -> rusqlite::Result<Vec<(i64, i64)>> {
    let sql = format!(
        "SELECT job_id, MAX(rowid) FROM agent_runs WHERE job_id IN ({}) GROUP BY job_id",
        *PLACEHOLDERS
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(in_params(jobs)), |row| {
        Ok((row.get(0)?, row.get(1)?))
    })?;
    rows.collect()
}

/// The job and the fields `cost.running` shows of each of `ids` (at most
/// [`IN_MAX`] rowids) that exists.
pub fn run_details(
    conn: &Connection,
    ids: &[i64],
) -> rusqlite::Result<Vec<(i64, Option<i64>, RunDetail)>> {
    let sql = format!(
        "SELECT rowid, job_id, agent, cost_usd, input_tokens, output_tokens, cache_read_tokens,
                cache_creation_tokens, id FROM agent_runs WHERE rowid IN ({})",
        *PLACEHOLDERS
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(in_params(ids)), |row| {
        Ok((
            row.get(0)?,
            int(row, 1)?,
            RunDetail {
                id: integer_id(row, 8)?,
                agent: text(row, 2)?,
                cost_usd: real(row, 3)?,
                tokens: [uint(row, 4)?, uint(row, 5)?, uint(row, 6)?, uint(row, 7)?],
            },
        ))
    })?;
    rows.collect()
}

/// `(MIN(rowid), MAX(rowid))`: two rowid seeks, not a scan.
pub fn bounds(conn: &Connection, table: &str) -> rusqlite::Result<(Option<i64>, Option<i64>)> {
    let sql = format!("SELECT (SELECT MIN(rowid) FROM {table}), (SELECT MAX(rowid) FROM {table})");
    conn.prepare_cached(&sql)?
        .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))
}

/// The newest run of one job through the orchestrator's index on `job_id`.
pub fn newest_run(conn: &Connection, job: i64) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT MAX(rowid) FROM agent_runs WHERE job_id = ?1")?
        .query_row([job], |row| row.get(0))
}

/// Whether `agent_runs` has an index whose first column is `job_id`.
pub fn has_job_index(conn: &Connection) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "SELECT 1 FROM pragma_index_list('agent_runs') AS il,
                       pragma_index_info(il.name) AS ii
         WHERE ii.seqno = 0 AND ii.name = 'job_id' LIMIT 1",
    )?
    .query_row([], |_| Ok(()))
    .optional()
    .map(|found| found.is_some())
}

/// The fields `cost.running` shows of one run.
pub fn run_detail(conn: &Connection, id: i64, job: i64) -> rusqlite::Result<Option<RunDetail>> {
    conn.prepare_cached(
        "SELECT agent, cost_usd, input_tokens, output_tokens, cache_read_tokens,
                cache_creation_tokens, id FROM agent_runs WHERE rowid = ?1 AND job_id = ?2",
    )?
    .query_row([id, job], |row| {
        Ok(RunDetail {
            id: integer_id(row, 6)?,
            agent: text(row, 0)?,
            cost_usd: real(row, 1)?,
            tokens: [uint(row, 2)?, uint(row, 3)?, uint(row, 4)?, uint(row, 5)?],
        })
    })
    .optional()
}

/// `PRAGMA schema_version` and `PRAGMA data_version`.
pub fn versions(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    let schema = conn.query_row("PRAGMA schema_version", [], |r| r.get(0))?;
    let data = conn.query_row("PRAGMA data_version", [], |r| r.get(0))?;
    Ok((schema, data))
}
