//! The recount: finished rows re-read one page at a time, each page in its
//! own transaction, paced so that a whole pass fits in
//! [`RECOUNT_PASS`]. It catches what the snapshots do
//! not look for: a re-opened job, a deleted finished run.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError, Weak};
use std::time::Duration;

use rusqlite::Connection;

use super::open::Mode;
use super::refresh::note_run;
use super::scan::{self, Kind};
use super::tally::{block_of, block_range, State, Table, Tally};
use super::tx::Tx;
use super::{Inner, ReadStats, DEFAULT_BUSY_TIMEOUT, RECOUNT_PASS};

/// Paces recount steps until the source is dropped.
pub(super) fn recount_loop(inner: &Weak<Mutex<Inner>>, terminal: &[String]) {
    loop {
        let pause = {
            let Some(inner) = inner.upgrade() else {
                return;
            };
            let mut inner = inner.lock().unwrap_or_else(PoisonError::into_inner);
            inner.recount_step(terminal);
            // Paced by the steps the last pass took (a step covers at least
            // one page of rows, so empty id ranges cost nothing); the first
            // pass goes at the fastest pace.
            let steps = u32::try_from(inner.recount.last_pass_steps.max(1)).unwrap_or(u32::MAX);
            let per_step = RECOUNT_PASS / steps;
            per_step.clamp(Duration::from_millis(20), Duration::from_secs(1))
        };
        std::thread::sleep(pause);
    }
}

impl Inner {
    /// Re-reads the next page of the next table; false when there is nothing to recount.
    pub(super) fn recount_step(&mut self, terminal: &[String]) -> bool {
        let (Some(cached), Some(built)) = (self.conn.as_ref(), self.built.as_mut()) else {
            return false;
        };
        if cached.mode == Mode::Immutable {
            return false;
        }
        let conn = &cached.conn;
        let _ = conn.busy_timeout(Duration::ZERO);
        let state = &mut built.state;
        let table = self.recount.table;
        let cursor = self.recount.cursor;
        self.recount.steps += 1;
        let mut done_to = None;
        let mut changed = false;
        let result = (|| -> rusqlite::Result<()> {
            let mut tx = Tx::begin(conn, &mut self.stats)?;
            match table {
                0 => {
                    (changed, done_to) =
                        recount_page(conn, &scan::Jobs, &mut state.jobs, cursor, |_, _| {})?;
                    state.sync_job_runs();
                }
                1 => {
                    let State { runs, job_runs, .. } = state;
                    (changed, done_to) =
                        recount_page(conn, &scan::Runs, runs, cursor, |range, rows| {
                            forget_runs(job_runs, range);
                            for (id, _, entry) in rows {
                                note_run(job_runs, *id, Some(entry));
                            }
                        })?;
                }
                2 => {
                    (changed, done_to) = recount_page(
                        conn,
                        &scan::Tasks { terminal },
                        &mut state.tasks,
                        cursor,
                        |_, _| {},
                    )?;
                }
                3 => {
                    if let Some(t) = &mut state.errors {
                        (changed, done_to) =
                            recount_page(conn, &scan::ErrorEvents, t, cursor, |_, _| {})?;
                    }
                }
                _ => {
                    if let Some(t) = &mut state.ticks {
                        (changed, done_to) =
                            recount_page(conn, &scan::Ticks, t, cursor, |_, _| {})?;
                    }
                }
            }
            tx.finish()
        })();
        let _ = conn.busy_timeout(DEFAULT_BUSY_TIMEOUT);
        if changed {
            // What is derived from the rows (newest runs, their figures, the
            // newest tick) is read again at the next snapshot.
            built.data_version = None;
        }
        match result {
            Ok(()) => {
                match done_to {
                    Some(to) => self.recount.cursor = Some(to),
                    None => self.recount.advance_table(&mut self.stats),
                }
                true
            }
            Err(err) => {
                // Busy: try the same page next time.
                tracing::debug!(error = %err, "recount step skipped");
                true
            }
        }
    }
}

/// Rows per recount page; the page is then completed to the end of the
/// block its last row is in, so that whole blocks are replaced.
const PAGE: usize = 256;

/// One recount step of one table: the next [`PAGE`] rows above `cursor`
/// (keyset: empty id ranges are skipped however wide), completed to the end
/// of their last block, replace what is known of the folded part between.
/// Gives whether anything changed and where the next step starts (`None`:
/// the table is done).
fn recount_page<K: Kind, T: Tally<Row = K::Frozen>>(
    conn: &Connection,
    kind: &K,
    table: &mut Table<T, K::Live>,
    cursor: Option<i64>,
    mut seen: impl FnMut((i64, i64), &[scan::Read<K>]),
) -> rusqlite::Result<(bool, Option<i64>)>
where
    K::Live: Clone,
{
    let Some(folded) = table.folded else {
        return Ok((false, None));
    };
    if cursor.is_some_and(|c| c >= folded) {
        return Ok((false, None));
    }
    let lo = cursor.map_or(i64::MIN, |c| c + 1);
    let mut rows = scan::after(conn, kind, cursor, PAGE)?;
    let full = rows.len() == PAGE;
    rows.retain(|(id, _, _)| *id <= folded);
    let hi = match rows.last() {
        Some(&(last, _, _)) if full && last < folded => {
            let (_, end) = block_range(block_of(last));
            let end = end.min(folded);
            if last < end {
                rows.extend(scan::range(conn, kind, last + 1, end)?);
            }
            end
        }
        _ => folded,
    };
    seen((lo, hi), &rows);
    let changed = table.replace_range(lo, hi, rows);
    Ok((changed, (hi < folded).then_some(hi)))
}

/// Forgets the run ids of a rowid range before it is re-read.
fn forget_runs(job_runs: &mut HashMap<i64, std::collections::BTreeSet<i64>>, (lo, hi): (i64, i64)) {
    for set in job_runs.values_mut() {
        let stale: Vec<i64> = set.range(lo..=hi).copied().collect();
        for id in stale {
            set.remove(&id);
        }
    }
}

const TABLES: [&str; 5] = [
    "jobs",
    "agent_runs",
    "tasks",
    "error_events",
    "reconciler_ticks",
];

/// Where the recount is: a table (0..5), the last rowid re-read in it,
/// and how many steps the passes took (for the pacing).
#[derive(Debug, Default)]
pub(super) struct Recount {
    table: usize,
    cursor: Option<i64>,
    steps: u64,
    last_pass_steps: u64,
}

impl Recount {
    fn advance_table(&mut self, stats: &mut ReadStats) {
        self.cursor = None;
        self.table += 1;
        if self.table >= TABLES.len() {
            self.table = 0;
            stats.recount_passes += 1;
            self.last_pass_steps = self.steps;
            self.steps = 0;
        }
    }
}
