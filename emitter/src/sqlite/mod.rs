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
mod refresh;
pub mod scan;
mod session;
pub mod tally;
mod tx;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::Duration;

use rusqlite::Connection;
use shared_schema::Reconciler;

use crate::sections::stages;
use crate::{Session, Source};
use open::{FileId, Mode};
use recount::{recount_loop, Recount};
use session::SqliteSession;
use tally::State;
use tx::needs_reopen;

pub use open::open_read_only;

/// How long a read waits for a writer's lock before degrading.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_millis(250);

/// A read transaction is committed and a new one begun once it is this old.
pub const SLICE: Duration = Duration::from_millis(5);

/// A whole recount pass takes at most this long.
pub const RECOUNT_PASS: Duration = Duration::from_secs(240);

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
