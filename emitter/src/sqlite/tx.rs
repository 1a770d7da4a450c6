//! One read transaction, cut into slices: committed and begun again once it
//! has held the read lock for [`SLICE`], so that an
//! orchestrator's write never waits long.

use std::time::Instant;

use rusqlite::{Connection, ErrorCode};

use super::{ReadStats, SLICE};

/// One read transaction, committed and begun again when its slice is used up.
pub(super) struct Tx<'c> {
    pub(super) conn: &'c Connection,
    pub(super) since: Instant,
    pub(super) open: bool,
    /// The read lock was taken (a wait for it is not counted as holding it).
    pub(super) holding: bool,
    pub(super) stats: &'c mut ReadStats,
}

impl<'c> Tx<'c> {
    pub(super) fn begin(conn: &'c Connection, stats: &'c mut ReadStats) -> rusqlite::Result<Self> {
        let mut tx = Self {
            conn,
            since: Instant::now(),
            open: false,
            holding: false,
            stats,
        };
        tx.start()?;
        Ok(tx)
    }

    fn start(&mut self) -> rusqlite::Result<()> {
        self.conn.execute_batch("BEGIN DEFERRED")?;
        self.open = true;
        // Take the read lock now (this is where a writer's lock is waited
        // for), so that the slice and `longest` count only time holding it.
        self.holding = false;
        self.conn
            .query_row("PRAGMA schema_version", [], |_| Ok(()))?;
        self.holding = true;
        self.since = Instant::now();
        self.stats.transactions += 1;
        Ok(())
    }

    pub(super) fn finish(&mut self) -> rusqlite::Result<()> {
        if self.open {
            self.open = false;
            if self.holding {
                let took = self.since.elapsed();
                self.stats.longest = self.stats.longest.max(took);
            }
            self.conn.execute_batch("COMMIT")?;
        }
        Ok(())
    }

    /// Ends the transaction and begins another when this one is old enough.
    pub(super) fn slice(&mut self) -> rusqlite::Result<()> {
        if self.since.elapsed() >= SLICE {
            self.finish()?;
            self.start()?;
        }
        Ok(())
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if self.open && !self.conn.is_autocommit() {
            if self.holding {
                let took = self.since.elapsed();
                self.stats.longest = self.stats.longest.max(took);
            }
            if let Err(err) = self.conn.execute_batch("ROLLBACK") {
                tracing::debug!(error = %err, "ending a read transaction");
            }
        }
    }
}

pub(super) fn is_lock(err: &rusqlite::Error) -> bool {
    matches!(err, rusqlite::Error::SqliteFailure(e, _)
        if matches!(e.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked))
}

/// A failure that a fresh connection might not have (I/O, a replaced or
/// corrupt file); not a plain SQL error such as a missing table.
pub(super) fn needs_reopen(err: &rusqlite::Error) -> bool {
    matches!(err, rusqlite::Error::SqliteFailure(e, _)
        if !matches!(e.code, ErrorCode::Unknown | ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked))
}
