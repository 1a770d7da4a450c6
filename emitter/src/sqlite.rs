//! The default [`Source`]: the orchestrator's SQLite file, opened read-only.
//!
//! The emitter must never change the database: the file is opened with
//! `mode=ro` and read-only flags (so a missing file is never created) and
//! `query_only` on top. Each snapshot reads inside one deferred read
//! transaction, so every section sees the same state.
//!
//! A writer holding a lock must not stall a scrape: the busy timeout is
//! short, and once one section has waited it out the rest of that snapshot
//! does not wait again (each still tries once), so a locked database costs
//! one timeout per snapshot, not one per section.
//!
//! The connection is kept between snapshots (opening and reading the schema
//! costs more than the queries at 100 agents) and reopened when the file
//! is replaced (another inode) or a query fails for a reason other than a
//! lock.
//!
//! One case needs care: a WAL-mode file whose writer has closed (no `-wal`
//! next to it). SQLite would create `-wal` and `-shm` even for a read-only
//! connection, and we must create nothing. The main file then holds every
//! commit, so that snapshot reads it with `immutable=1` on a connection of
//! its own, never kept (an immutable connection never notices changes).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags};
use shared_schema::{Agent, Cost, Errors, Queue, Reconciler, Stage, Timestamp};

use crate::sections::{agents, cost, errors, queue, reconciler, stages};
use crate::{SectionError, SectionResult, Session, Source};

/// How long a section waits for a writer's lock before degrading.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_millis(250);

/// Reads the contract's tables from one SQLite file.
#[derive(Debug)]
pub struct SqliteSource {
    path: PathBuf,
    terminal_stages: Vec<String>,
    busy_timeout: Duration,
    keep_connection: bool,
    cached: Mutex<Option<Cached>>,
}

#[derive(Debug)]
struct Cached {
    conn: Connection,
    /// (device, inode) of the file when opened: another value means it was replaced.
    file: (u64, u64),
    /// Opened with `immutable=1`: good for one snapshot only.
    immutable: bool,
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
            cached: Mutex::new(None),
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

    /// Whether to keep the connection between snapshots (default) or open one per snapshot.
    pub fn with_kept_connection(mut self, keep: bool) -> Self {
        self.keep_connection = keep;
        self
    }

    /// The database path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes sure `slot` holds a connection to the file as it is now.
    fn connect(&self, slot: &mut Option<Cached>) -> Result<(), String> {
        let meta = match std::fs::metadata(&self.path) {
            Ok(meta) => meta,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                *slot = None;
                return Err(format!(
                    "database file {} does not exist (the emitter never creates it)",
                    self.path.display()
                ));
            }
            Err(err) => {
                *slot = None;
                return Err(format!("cannot stat {}: {err}", self.path.display()));
            }
        };
        let file = (meta.dev(), meta.ino());
        if slot
            .as_ref()
            .is_some_and(|c| c.file == file && !c.immutable)
        {
            return Ok(());
        }
        *slot = None;
        let immutable = wal_without_writer(&self.path);
        let conn = open(&self.path, self.busy_timeout, immutable)
            .map_err(|e| format!("cannot open {} read-only: {e}", self.path.display()))?;
        *slot = Some(Cached {
            conn,
            file,
            immutable,
        });
        Ok(())
    }
}

/// Opens `path` read-only; nothing is created, not even the file itself
/// (see [`wal_without_writer`] for the one case SQLite would).
pub fn open_read_only(path: &Path, busy_timeout: Duration) -> rusqlite::Result<Connection> {
    open(path, busy_timeout, wal_without_writer(path))
}

fn open(path: &Path, busy_timeout: Duration, immutable: bool) -> rusqlite::Result<Connection> {
    let extra = if immutable { "&immutable=1" } else { "" };
    let uri = format!("file:{}?mode=ro{extra}", uri_path(path));
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(uri, flags)?;
    conn.busy_timeout(busy_timeout)?;
    conn.execute_batch("PRAGMA query_only = ON; PRAGMA cache_size = -1024;")?;
    Ok(conn)
}

/// Whether `path` is a WAL-mode database with no `-wal` file beside it, the
/// state in which opening it (even read-only) would create `-wal` and `-shm`.
pub fn wal_without_writer(path: &Path) -> bool {
    use std::io::Read;
    let mut header = [0u8; 20];
    let is_wal = std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut header))
        .map(|()| header.starts_with(b"SQLite format 3\0") && (header[18] == 2 || header[19] == 2))
        .unwrap_or(false);
    if !is_wal {
        return false;
    }
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    !Path::new(&wal).exists()
}

/// Escapes the characters that mean something in a `file:` URI.
fn uri_path(path: &Path) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        match c {
            '%' => out.push_str("%25"),
            '?' => out.push_str("%3f"),
            '#' => out.push_str("%23"),
            c => out.push(c),
        }
    }
    out
}

fn is_lock(err: &SectionError) -> bool {
    matches!(
        err,
        SectionError::Query(rusqlite::Error::SqliteFailure(e, _))
            if matches!(e.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// A failure that a fresh connection might not have (I/O, a replaced or
/// corrupt file); not a plain SQL error such as a missing table.
fn needs_reopen(err: &SectionError) -> bool {
    match err {
        SectionError::Query(rusqlite::Error::SqliteFailure(e, _)) => e.code != ErrorCode::Unknown,
        SectionError::Query(_) => false,
        SectionError::Unavailable(_) | SectionError::Data(_) => false,
    }
}

impl Source for SqliteSource {
    fn session(&self) -> Box<dyn Session + '_> {
        // A panic in an earlier snapshot cannot leave the slot half-written.
        let mut slot = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        let unavailable = self.connect(&mut slot).err();
        if let Some(conn) = slot.as_ref().map(|c| &c.conn) {
            // One read transaction: every section sees the same state. If the
            // BEGIN itself fails, each section still reads on its own.
            if let Err(err) = conn.execute_batch("BEGIN DEFERRED") {
                tracing::debug!(error = %err, "no read transaction for this snapshot");
            }
        }
        Box::new(SqliteSession {
            source: self,
            slot,
            unavailable,
            waited: false,
            broken: false,
        })
    }
}

struct SqliteSession<'a> {
    source: &'a SqliteSource,
    slot: MutexGuard<'a, Option<Cached>>,
    unavailable: Option<String>,
    /// A section already waited out the busy timeout in this snapshot.
    waited: bool,
    /// A query failed for a reason other than a lock: reopen next time.
    broken: bool,
}

impl SqliteSession<'_> {
    fn run<T>(&mut self, read: impl FnOnce(&Connection) -> SectionResult<T>) -> SectionResult<T> {
        let Some(cached) = self.slot.as_ref() else {
            let why = self
                .unavailable
                .clone()
                .unwrap_or_else(|| "no connection".into());
            return Err(SectionError::Unavailable(why));
        };
        let result = read(&cached.conn);
        if let Err(err) = &result {
            if is_lock(err) {
                if !self.waited {
                    self.waited = true;
                    let _ = cached.conn.busy_timeout(Duration::ZERO);
                }
            } else if needs_reopen(err) {
                self.broken = true;
            }
        }
        result
    }
}

impl Session for SqliteSession<'_> {
    fn stages(&mut self, now: &Timestamp) -> SectionResult<Vec<Stage>> {
        let terminal = &self.source.terminal_stages;
        self.run(|conn| stages::read(conn, terminal, now))
    }

    fn queue(&mut self) -> SectionResult<Queue> {
        self.run(queue::read)
    }

    fn agents(&mut self, now: &Timestamp) -> SectionResult<Vec<Agent>> {
        self.run(|conn| agents::read(conn, now))
    }

    fn cost(&mut self) -> SectionResult<Cost> {
        self.run(cost::read)
    }

    fn reconciler(&mut self) -> SectionResult<Option<Reconciler>> {
        self.run(reconciler::read)
    }

    fn errors(&mut self) -> SectionResult<Option<Errors>> {
        self.run(errors::read)
    }
}

impl Drop for SqliteSession<'_> {
    fn drop(&mut self) {
        let Some(cached) = self.slot.as_ref() else {
            return;
        };
        if !cached.conn.is_autocommit() {
            // Ending the read transaction releases the lock / WAL snapshot.
            if let Err(err) = cached.conn.execute_batch("ROLLBACK") {
                tracing::debug!(error = %err, "ending the read transaction");
                self.broken = true;
            }
        }
        if self.waited {
            let _ = cached.conn.busy_timeout(self.source.busy_timeout);
        }
        if self.broken || cached.immutable || !self.source.keep_connection {
            *self.slot = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_escapes_query_and_fragment_characters() {
        assert_eq!(uri_path(Path::new("/tmp/a?b#c%d")), "/tmp/a%3fb%23c%25d");
        assert_eq!(uri_path(Path::new("/tmp/my db")), "/tmp/my db");
    }

    #[test]
    fn a_missing_file_is_not_created() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("absent.db");
        let source = SqliteSource::new(&path);
        let mut session = source.session();
        let err = session.queue().expect_err("no database");
        assert!(err.to_string().contains("does not exist"), "{err}");
        drop(session);
        assert!(!path.exists());
        assert!(open_read_only(&path, DEFAULT_BUSY_TIMEOUT).is_err());
        assert!(!path.exists());
    }
}
