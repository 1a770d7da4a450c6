//! Catching up with the file: a snapshot reads only what changed since the
//! last one (and checks that the file and schema are the ones it read), so
//! that its cost follows the live state, not the history. The steps are in
//! the [module doc](super).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

use super::open::{self, Mode};
use super::recount::Recount;
use super::scan::{self, Kind};
use super::tally::{self, block_of, block_range, Entry, State, Table, Tally};
use super::tx::{is_lock, Tx};
use super::{Built, Cached, Inner};
use crate::sections::{queue, reconciler};

/// Rows per query when reading above the high-water mark.
const BATCH: usize = 128;

impl Inner {
    /// Makes sure a connection to the file as it is now is open; a new
    /// file or mode discards the state.
    pub(super) fn connect(&mut self, path: &Path, busy: Duration) -> Result<(), String> {
        let (file, mode) = match open::inspect(path) {
            Ok(found) => found,
            Err(why) => {
                self.conn = None;
                self.built = None;
                return Err(why);
            }
        };
        let keep = self.conn.as_ref().is_some_and(|c| {
            c.mode == mode
                && (c.file.dev, c.file.ino) == (file.dev, file.ino)
                && (mode == Mode::Normal || c.file == file)
        });
        if keep {
            return Ok(());
        }
        self.conn = None;
        self.built = None;
        self.recount = Recount::default();
        let conn = open::open(path, busy, mode)
            .map_err(|e| format!("cannot open {} read-only: {e}", path.display()))?;
        self.conn = Some(Cached { conn, file, mode });
        Ok(())
    }

    /// Brings the state up to date. An `Err` means nothing could be read.
    pub(super) fn refresh(
        &mut self,
        terminal: &[String],
        busy: Duration,
    ) -> Result<(), rusqlite::Error> {
        let Some(cached) = self.conn.as_ref() else {
            return Ok(());
        };
        let conn = &cached.conn;
        let mut tx = Tx::begin(conn, &mut self.stats)?;
        let (schema, data) = scan::versions(conn)?;
        let rebuild = self
            .built
            .as_ref()
            .map_or(true, |b| b.schema_version != schema);
        if rebuild {
            tx.stats.rebuilds += 1;
            self.recount = Recount::default();
            let mut built = Built {
                schema_version: schema,
                ..Built::default()
            };
            let exists = |t: &str| crate::sql::table_exists(conn, t);
            built.worker_exists = exists("worker_state")?;
            if exists("error_events")? {
                built.state.errors = Some(Table::default());
            }
            if exists("reconciler_ticks")? {
                built.state.ticks = Some(Table::default());
            }
            built.has_job_index = scan::has_job_index(conn).unwrap_or(false);
            if built.has_job_index {
                built.state.newest_by_index = Some(HashMap::new());
            }
            self.built = Some(built);
        }
        let Some(built) = self.built.as_mut() else {
            return Ok(());
        };
        if built.data_version == Some(data) {
            return tx.finish();
        }
        let mut failed = BTreeMap::new();
        let mut waited = false;
        let mut note = |table: &'static str, result: rusqlite::Result<()>, waited: &mut bool| {
            if let Err(err) = result {
                if is_lock(&err) && !*waited {
                    *waited = true;
                    let _ = conn.busy_timeout(Duration::ZERO);
                }
                failed.insert(table, err.to_string());
            }
        };
        let state = &mut built.state;
        let r = refresh_table(&mut tx, &scan::Jobs, &mut state.jobs, |_, _| {});
        note("jobs", r, &mut waited);
        state.sync_job_runs();
        {
            let State { runs, job_runs, .. } = state;
            let r = refresh_table(&mut tx, &scan::Runs, runs, |id, entry| {
                note_run(job_runs, id, entry);
            });
            note("agent_runs", r, &mut waited);
        }
        let r = refresh_table(
            &mut tx,
            &scan::Tasks { terminal },
            &mut state.tasks,
            |_, _| {},
        );
        note("tasks", r, &mut waited);
        if let Some(t) = &mut state.errors {
            let r = refresh_table(&mut tx, &scan::ErrorEvents, t, |_, _| {});
            note("error_events", r, &mut waited);
        }
        if let Some(t) = &mut state.ticks {
            let r = refresh_table(&mut tx, &scan::Ticks, t, |_, _| {});
            note("reconciler_ticks", r, &mut waited);
        }
        let r = running_details(tx.conn, state);
        note("agent_runs", r, &mut waited);
        if built.worker_exists {
            built.worker = queue::worker_state(tx.conn).map_err(|e| e.to_string());
        } else {
            built.worker = Ok(HashMap::new());
        }
        if let Some(total) = built.state.ticks_total() {
            built.reconciler = reconciler::newest(tx.conn, Some(total)).map_err(|e| e.to_string());
        } else {
            built.reconciler = Ok(None);
        }
        let finished = tx.finish();
        drop(tx);
        if waited {
            let _ = conn.busy_timeout(busy);
        }
        built.data_version = failed.is_empty().then_some(data);
        built.failed = failed;
        finished
    }
}

/// Keeps the run ids of live jobs: `entry` is `None` when the run was deleted.
pub(super) fn note_run(
    job_runs: &mut HashMap<i64, std::collections::BTreeSet<i64>>,
    id: i64,
    entry: Option<&Entry<tally::RunRow, tally::RunRow>>,
) {
    match entry {
        Some(Entry::Frozen(r) | Entry::Live(r)) => {
            if let Some(set) = r.job_id.and_then(|j| job_runs.get_mut(&j)) {
                set.insert(id);
            }
        }
        None => {
            for set in job_runs.values_mut() {
                set.remove(&id);
            }
        }
    }
}

/// Bounds check, identity check of the anchor, every row above the
/// anchor by one rowid range (the recent window and any row given a
/// reused id), then the folded live rows by id.
/// `seen` is told of every row read (and of a known row that is gone).
fn refresh_table<K: Kind, T: Tally<Row = K::Frozen>>(
    tx: &mut Tx<'_>,
    kind: &K,
    table: &mut Table<T, K::Live>,
    mut seen: impl FnMut(i64, Option<&Entry<K::Frozen, K::Live>>),
) -> rusqlite::Result<()>
where
    K::Live: Clone,
{
    let conn = tx.conn;
    let (min, max) = scan::bounds(conn, kind.table())?;
    match (table.min, min) {
        (Some(old), Some(new)) if new < old => *table = Table::default(),
        (Some(_), None) => *table = Table::default(),
        (Some(old), Some(new)) if new > old => {
            // Pruned history: the blocks below are gone, the folded part of
            // the one it starts in is re-read.
            table.drop_blocks_below(new);
            if let Some(folded) = table.folded.filter(|f| *f >= new) {
                let (lo, hi) = block_range(block_of(new));
                let rows = scan::range(conn, kind, lo, hi.min(folded))?;
                for (id, _, entry) in &rows {
                    seen(*id, Some(entry));
                }
                table.replace_range(lo, hi.min(folded), rows);
            }
        }
        _ => {}
    }
    table.min = min;
    if let Some((id, fp)) = table.anchor() {
        let now = scan::by_ids(conn, kind, &[id])?;
        if !now.first().is_some_and(|r| r.0 == id && r.1 == fp) {
            // The newest folded finished row is gone or is another row: ids
            // below the window were handed out again. Everything above the
            // newest block top still intact is read again.
            let intact = newest_intact_top(tx, kind, table)?;
            table.unfold_above(intact);
        }
    }
    if let Some(max) = max {
        // The newest rows were deleted: their ids may be given out again.
        table.lower_fold(max);
    }
    let start = table.anchor().map(|(id, _)| id);
    // Only the rows known before are tracked (the window and the live
    // ones, a few hundred): a set of every row read would grow to the whole
    // history on the first snapshot, and its rehashes alone held one read
    // transaction for 20 ms at 10^6 rows.
    let mut unseen: std::collections::BTreeSet<i64> =
        table.known_above(start).into_iter().collect();
    let mut cursor = start;
    loop {
        let rows = scan::after(conn, kind, cursor, BATCH)?;
        let n = rows.len();
        for (id, fp, entry) in rows {
            seen(id, Some(&entry));
            unseen.remove(&id);
            table.put(id, fp, entry);
            cursor = Some(id);
        }
        table.fold_excess();
        if n < BATCH {
            break;
        }
        tx.slice()?;
    }
    for id in unseen {
        seen(id, None);
        table.forget(id);
    }
    let live: Vec<i64> = match start {
        Some(s) => table.live.range(..=s).map(|(id, _)| *id).collect(),
        None => Vec::new(),
    };
    for chunk in live.chunks(scan::IN_MAX) {
        // Both in rowid order: a chunk's id missing from the rows was deleted.
        let mut rows = scan::by_ids(conn, kind, chunk)?.into_iter().peekable();
        for &id in chunk {
            let found = rows.next_if(|(r, _, _)| *r == id).map(|(_, fp, e)| (fp, e));
            seen(id, found.as_ref().map(|(_, e)| e));
            table.update_live(id, found);
        }
        tx.slice()?;
    }
    Ok(())
}

/// The newest block top whose row is still the one folded, walking down
/// [`IN_MAX`](scan::IN_MAX) tops per lookup; `None` when none is.
fn newest_intact_top<K: Kind, T: Tally<Row = K::Frozen>>(
    tx: &mut Tx<'_>,
    kind: &K,
    table: &Table<T, K::Live>,
) -> rusqlite::Result<Option<i64>>
where
    K::Live: Clone,
{
    let tops: Vec<(i64, u64)> = table.tops.values().rev().copied().collect();
    for chunk in tops.chunks(scan::IN_MAX) {
        let mut ids: Vec<i64> = chunk.iter().map(|(id, _)| *id).collect();
        ids.sort_unstable();
        let now: HashMap<i64, u64> = scan::by_ids(tx.conn, kind, &ids)?
            .into_iter()
            .map(|(id, fp, _)| (id, fp))
            .collect();
        if let Some((id, _)) = chunk.iter().find(|(id, fp)| now.get(id) == Some(fp)) {
            return Ok(Some(*id));
        }
        tx.slice()?;
    }
    Ok(None)
}

/// The newest run of each running job, and that run's figures: batched
/// lookups by primary key (and by the `job_id` index when there is one).
fn running_details(conn: &Connection, state: &mut State) -> rusqlite::Result<()> {
    let running: Vec<i64> = state.running().map(|(id, _)| id).collect();
    if let Some(map) = &mut state.newest_by_index {
        map.clear();
        for chunk in running.chunks(scan::IN_MAX) {
            for &job in chunk {
                map.insert(job, None);
            }
            for (job, run) in scan::newest_runs(conn, chunk)? {
                map.insert(job, Some(run));
            }
        }
    }
    state.run_details.clear();
    // The remembered newest runs are re-read by id, 32 at a time; one that
    // was deleted (or moved to another job) since is forgotten and the next
    // newest run of the job is tried, so a running job never shows a run
    // that is no longer its own.
    let pairs: Vec<(i64, i64)> = running
        .iter()
        .filter_map(|&job| Some((job, state.newest_run(job)?)))
        .collect();
    let mut missing = Vec::new();
    for chunk in pairs.chunks(scan::IN_MAX) {
        let ids: Vec<i64> = chunk.iter().map(|&(_, run)| run).collect();
        let mut found: HashMap<i64, (Option<i64>, tally::RunDetail)> =
            scan::run_details(conn, &ids)?
                .into_iter()
                .map(|(run, job, d)| (run, (job, d)))
                .collect();
        for &(job, run) in chunk {
            match found.remove(&run) {
                Some((Some(j), d)) if j == job => {
                    state.run_details.insert(run, d);
                }
                _ => missing.push((job, run)),
            }
        }
    }
    for (job, run) in missing {
        if !state.forget_run_of(job, run) {
            continue;
        }
        while let Some(run) = state.newest_run(job) {
            if let Some(d) = scan::run_detail(conn, run, job)? {
                state.run_details.insert(run, d);
                break;
            }
            if !state.forget_run_of(job, run) {
                break;
            }
        }
    }
    Ok(())
}
