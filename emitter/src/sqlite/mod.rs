//! The default [`Source`]: the orchestrator's SQLite file, read
//! incrementally so that a snapshot costs what the live state costs.
//!
//! # What is read when
//! The source remembers what it read ([`tally::State`]) and, per snapshot:
//! 1. checks identity: the file (device, inode; see [`open`]), `PRAGMA
//!    schema_version` (any change: everything is discarded and rebuilt) and
//!    `PRAGMA data_version` (unchanged: nothing was committed since the last
//!    snapshot and no table is read at all);
//! 2. per table, `MIN(rowid)` and `MAX(rowid)` (two rowid seeks): a `MIN`
//!    that went down (rows inserted below) rebuilds the table; a `MIN` that
//!    went up (pruned history) drops the blocks below it and re-reads the
//!    one it falls in; a `MAX` below the fold boundary lowers it;
//! 3. the anchor (the newest folded finished row, see [`tally`]) by rowid:
//!    when it is gone or its fingerprint differs, ids were handed out again
//!    below the recent window, and everything above the newest intact block
//!    top is forgotten and read again;
//! 4. every row above the anchor by one rowid range (the recent window of
//!    [`tally::WINDOW`] rows, new rows, and any row given a reused id), then
//!    every other live row by primary key;
//! 5. reads `worker_state` (a handful of keys), the newest tick, and the
//!    newest run of each running job by primary key.
//!
//! Finished rows that change anyway (a re-opened job, a deleted finished
//! run) are caught by the recount: a background thread re-reads one page
//! of rows at a time (keyset: the next 256 rows above where it stopped,
//! completed to the end of their block, so empty id ranges cost nothing
//! however wide), each in its own transaction, paced so that a whole pass
//! takes at most [`RECOUNT_PASS`] (4 minutes; the contract allows 5).
//!
//! # Short transactions, different instants
//! No read transaction lasts longer than about [`SLICE`] plus one batch
//! (a 128-row batch, 32 live rows or one recount page): when a slice is used up the transaction
//! is committed and a new one begun, so an orchestrator's write never
//! waits long, in rollback-journal or WAL mode, the first snapshot (which
//! reads the whole history) included. A small snapshot fits in one
//! transaction; a large one does not, and then tables read in different
//! transactions may be from slightly different instants: e.g. a job that
//! finished between the `jobs` read and the `agent_runs` read shows as
//! running with its run already finished, or a new run is counted in
//! `cost.aggregate` while its job is not yet in `agents`. Within one table
//! every row is read once per snapshot, so counts are never doubled.
//!
//! # Newest run of a job
//! With an index whose first column is `agent_runs.job_id` the newest run
//! of each running job is one correlated `MAX(id) ... WHERE job_id = ?`.
//! Without one, the source keeps the run ids of every live job from the
//! rows it reads; a job that becomes live again after it finished gets its
//! older runs back at the next recount of their blocks.
//!
//! # Locks
//! A writer holding a lock must not stall a scrape: the busy timeout is
//! short, and once one read has waited it out the rest of that snapshot
//! does not wait again, so a locked database costs one timeout per
//! snapshot. A table whose read failed degrades the sections built on it.

pub mod open;
mod recount;
pub mod scan;
pub mod tally;
mod tx;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::Duration;

use rusqlite::Connection;
use shared_schema::{Agent, Cost, Errors, Queue, Reconciler, Stage, Timestamp};

use crate::sections::{queue, reconciler, stages};
use crate::{SectionError, SectionResult, Session, Source};
use open::{FileId, Mode};
use recount::recount_loop;
use scan::Kind;
use tally::{block_of, block_range, Entry, State, Table, Tally};
use tx::{is_lock, needs_reopen, Tx};

pub use open::open_read_only;

/// How long a read waits for a writer's lock before degrading.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_millis(250);

/// A read transaction is committed and a new one begun once it is this old.
pub const SLICE: Duration = Duration::from_millis(5);

/// A whole recount pass takes at most this long.
pub const RECOUNT_PASS: Duration = Duration::from_secs(240);

/// Rows per query when reading above the high-water mark.
const BATCH: usize = 128;

/// Reads the contract's tables from one SQLite file.
#[derive(Debug)]
pub struct SqliteSource {
    path: PathBuf,
    terminal_stages: Vec<String>,
    busy_timeout: Duration,
    keep_connection: bool,
    background: bool,
    inner: Arc<Mutex<Inner>>,
    recount_thread: OnceLock<()>,
}

/// Figures about the reads, for benchmarks and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Read transactions begun.
    pub transactions: u64,
    /// The longest time one held the read lock (from its first read to its end).
    pub longest: Duration,
    /// Full rebuilds of the state (start, file replaced, schema changed).
    pub rebuilds: u64,
    /// Recount passes completed.
    pub recount_passes: u64,
}

#[derive(Debug, Default)]
struct Inner {
    conn: Option<Cached>,
    built: Option<Built>,
    recount: Recount,
    stats: ReadStats,
}

#[derive(Debug)]
struct Cached {
    conn: Connection,
    file: FileId,
    mode: Mode,
}

/// The state and what it was read at.
#[derive(Debug)]
struct Built {
    state: State,
    schema_version: i64,
    /// `None` until a refresh read every table without an error.
    data_version: Option<i64>,
    worker_exists: bool,
    worker: Result<HashMap<String, Option<String>>, String>,
    reconciler: Result<Option<Reconciler>, String>,
    has_job_index: bool,
    /// Tables whose last read failed, with the reason.
    failed: BTreeMap<&'static str, String>,
}

impl Default for Built {
    fn default() -> Self {
        Self {
            state: State::default(),
            schema_version: 0,
            data_version: None,
            worker_exists: false,
            worker: Ok(HashMap::new()),
            reconciler: Ok(None),
            has_job_index: false,
            failed: BTreeMap::new(),
        }
    }
}

/// Where the recount is: a table (0..5), the last rowid re-read in it,
/// and how many steps the passes took (for the pacing).
#[derive(Debug, Default)]
struct Recount {
    table: usize,
    cursor: Option<i64>,
    steps: u64,
    last_pass_steps: u64,
}

impl SqliteSource {
    /// A source over `path` with the default terminal stages.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            terminal_stages: stages::DEFAULT_TERMINAL
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
            keep_connection: true,
            background: true,
            inner: Arc::new(Mutex::new(Inner::default())),
            recount_thread: OnceLock::new(),
        }
    }

    /// Replaces the set of stages left out of `stages`.
    pub fn with_terminal_stages(mut self, stages: Vec<String>) -> Self {
        self.terminal_stages = stages;
        self
    }

    /// How long one query waits for a lock.
    pub fn with_busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Whether to keep the connection and state between snapshots (default)
    /// or read everything again each time.
    pub fn with_kept_connection(mut self, keep: bool) -> Self {
        self.keep_connection = keep;
        self
    }

    /// Whether a background thread runs the recount (default); without it,
    /// [`SqliteSource::recount`] is the only way finished rows are re-read.
    pub fn with_background_recount(mut self, on: bool) -> Self {
        self.background = on;
        self
    }

    /// The database path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Figures about the reads so far.
    pub fn stats(&self) -> ReadStats {
        self.lock().stats
    }

    /// Runs one whole recount pass now (tests, or a caller that knows rows changed).
    pub fn recount(&self) {
        let mut inner = self.lock();
        let passes = inner.stats.recount_passes;
        while inner.stats.recount_passes == passes {
            if !inner.recount_step(&self.terminal_stages) {
                break;
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic in an earlier snapshot cannot leave the state half-written
        // in a way that matters: the next identity check or recount fixes it.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn start_recount_thread(&self) {
        if !self.background || !self.keep_connection {
            return;
        }
        self.recount_thread.get_or_init(|| {
            let weak: Weak<Mutex<Inner>> = Arc::downgrade(&self.inner);
            let terminal = self.terminal_stages.clone();
            let spawned = std::thread::Builder::new()
                .name("emitter-recount".into())
                .spawn(move || recount_loop(&weak, &terminal));
            if let Err(err) = spawned {
                tracing::warn!(error = %err, "no background recount: finished rows that change are not seen");
            }
        });
    }
}

const TABLES: [&str; 5] = [
    "jobs",
    "agent_runs",
    "tasks",
    "error_events",
    "reconciler_ticks",
];

impl Inner {
    /// Makes sure a connection to the file as it is now is open; a new
    /// file or mode discards the state.
    fn connect(&mut self, path: &Path, busy: Duration) -> Result<(), String> {
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
    fn refresh(&mut self, terminal: &[String], busy: Duration) -> Result<(), rusqlite::Error> {
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
fn note_run(
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

impl Source for SqliteSource {
    fn session(&self) -> Box<dyn Session + '_> {
        self.start_recount_thread();
        let mut inner = self.lock();
        if !self.keep_connection {
            inner.conn = None;
            inner.built = None;
        }
        let mut unavailable = inner.connect(&self.path, self.busy_timeout).err();
        if unavailable.is_none() {
            if let Err(err) = inner.refresh(&self.terminal_stages, self.busy_timeout) {
                if needs_reopen(&err) {
                    inner.conn = None;
                    inner.built = None;
                } else if let Some(b) = inner.built.as_mut() {
                    b.data_version = None;
                }
                unavailable = Some(err.to_string());
            }
        }
        Box::new(SqliteSession { inner, unavailable })
    }
}

struct SqliteSession<'a> {
    inner: MutexGuard<'a, Inner>,
    /// Nothing could be read, and why.
    unavailable: Option<String>,
}

impl SqliteSession<'_> {
    /// The state, or the reason one of `tables` could not be read.
    fn state(&mut self, tables: &[&str]) -> SectionResult<&mut Built> {
        if let Some(why) = &self.unavailable {
            return Err(SectionError::Unavailable(why.clone()));
        }
        let built = self
            .inner
            .built
            .as_mut()
            .ok_or_else(|| SectionError::Unavailable("no connection".into()))?;
        for t in tables {
            if let Some(why) = built.failed.get(t) {
                return Err(SectionError::Read(format!("reading {t}: {why}")));
            }
        }
        Ok(built)
    }
}

impl Session for SqliteSession<'_> {
    fn stages(&mut self, now: &Timestamp) -> SectionResult<Vec<Stage>> {
        Ok(self.state(&["tasks"])?.state.stages(now))
    }

    fn queue(&mut self) -> SectionResult<Queue> {
        let built = self.state(&["jobs"])?;
        let worker = built
            .worker
            .as_ref()
            .map_err(|e| SectionError::Read(e.clone()))?
            .clone();
        let (counts, retries) = built.state.queue_counts();
        Ok(queue::assemble(counts, retries, &worker))
    }

    fn agents(&mut self, now: &Timestamp) -> SectionResult<Vec<Agent>> {
        Ok(self.state(&["jobs", "agent_runs"])?.state.agents(now))
    }

    fn cost(&mut self) -> SectionResult<Cost> {
        Ok(self.state(&["jobs", "agent_runs"])?.state.cost())
    }

    fn reconciler(&mut self) -> SectionResult<Option<Reconciler>> {
        let built = self.state(&["reconciler_ticks"])?;
        built.reconciler.clone().map_err(SectionError::Data)
    }

    fn errors(&mut self) -> SectionResult<Option<Errors>> {
        Ok(self.state(&["error_events"])?.state.errors())
    }
}
