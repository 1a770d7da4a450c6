//! Opening the database without ever creating or blocking on anything.
//!
//! The emitter must never change the database: the file is opened with
//! `mode=ro` and read-only flags (so a missing file is never created) and
//! `query_only` on top. Before SQLite sees the path, [`inspect`] checks with
//! `stat` (which never blocks) that the file and any `-wal`/`-shm` beside it
//! are regular files: opening a FIFO would block until a writer appears,
//! which would wedge every later snapshot.
//!
//! Two WAL cases need care, because SQLite would create files even for a
//! read-only connection:
//! - a WAL-mode file with no `-wal` (or an empty one) and no `-shm` (the
//!   writer closed): the main file holds every commit, so it is read with
//!   `immutable=1` on a connection kept only while the file's size and
//!   mtime stay the same and no `-wal` appears;
//! - a non-empty `-wal` without its `-shm` (a writer crashed, a backup was
//!   restored without it): reading the WAL needs the `-shm`, and reading the
//!   main file alone would give stale values, so every section degrades with
//!   that cause until a writer opens the database again.

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// How the file can be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// An ordinary read-only connection.
    Normal,
    /// `immutable=1`: a WAL file whose writer is gone.
    Immutable,
}

/// The file as `stat` saw it: identity, and size and mtime for immutable reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
    pub len: u64,
    pub mtime_ns: i128,
}

/// Checks the path and its WAL companions without opening anything that
/// could block; says how to open it, or why it cannot be read.
pub fn inspect(path: &Path) -> Result<(FileId, Mode), String> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "database file {} does not exist (the emitter never creates it)",
                path.display()
            ))
        }
        Err(err) => return Err(format!("cannot stat {}: {err}", path.display())),
    };
    regular(path, &meta)?;
    let id = FileId {
        dev: meta.dev(),
        ino: meta.ino(),
        len: meta.len(),
        mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
    };
    if !is_wal_mode(path)? {
        return Ok((id, Mode::Normal));
    }
    let wal = companion(path, "-wal");
    let shm = companion(path, "-shm");
    let wal_len = match std::fs::metadata(&wal) {
        Ok(m) => {
            regular(&wal, &m)?;
            Some(m.len())
        }
        Err(_) => None,
    };
    let shm_exists = match std::fs::metadata(&shm) {
        Ok(m) => {
            regular(&shm, &m)?;
            true
        }
        Err(_) => false,
    };
    match (wal_len, shm_exists) {
        (None, _) | (Some(0), false) => Ok((id, Mode::Immutable)),
        (Some(_), false) => Err(format!(
            "{} has a non-empty -wal but no -shm (a writer crashed or a backup was restored \
             without it); reading it would create {}, so the sections are degraded until \
             a writer opens the database",
            path.display(),
            shm.display()
        )),
        (Some(_), true) => Ok((id, Mode::Normal)),
    }
}

fn regular(path: &Path, meta: &std::fs::Metadata) -> Result<(), String> {
    let ft = meta.file_type();
    if ft.is_file() {
        return Ok(());
    }
    let what = if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_dir() {
        "a directory"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_char_device() || ft.is_block_device() {
        "a device"
    } else {
        "not a regular file"
    };
    Err(format!(
        "{} is {what}, not a regular file: refusing to open it (an open could block forever)",
        path.display()
    ))
}

fn companion(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// Whether the header says WAL mode. Opened non-blocking: the path was a
/// regular file a moment ago, but it may have been swapped for a FIFO since.
fn is_wal_mode(path: &Path) -> Result<bool, String> {
    let mut header = [0u8; 20];
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot stat {}: {e}", path.display()))?;
    regular(path, &meta)?;
    Ok(match file.read_exact(&mut header) {
        Ok(()) => header.starts_with(b"SQLite format 3\0") && (header[18] == 2 || header[19] == 2),
        // Shorter than a header: an empty file, which SQLite reads as an empty database.
        Err(_) => false,
    })
}

/// Opens `path` read-only; nothing is created, not even the file itself.
pub fn open_read_only(path: &Path, busy_timeout: Duration) -> Result<Connection, String> {
    let (_, mode) = inspect(path)?;
    open(path, busy_timeout, mode)
        .map_err(|e| format!("cannot open {} read-only: {e}", path.display()))
}

/// Opens with the flags of `mode`.
pub fn open(path: &Path, busy_timeout: Duration, mode: Mode) -> rusqlite::Result<Connection> {
    let extra = if mode == Mode::Immutable {
        "&immutable=1"
    } else {
        ""
    };
    let uri = format!("file:{}?mode=ro{extra}", uri_path(path));
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(uri, flags)?;
    conn.busy_timeout(busy_timeout)?;
    // The incremental reads use about 25 distinct statements; rusqlite's
    // default cache holds 16, and a statement evicted each snapshot is
    // parsed again each snapshot (measured: 14% of a snapshot's instructions).
    conn.set_prepared_statement_cache_capacity(64);
    conn.execute_batch("PRAGMA query_only = ON; PRAGMA cache_size = -4096;")?;
    Ok(conn)
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
        let err = open_read_only(&path, Duration::from_millis(10)).expect_err("absent");
        assert!(err.contains("does not exist"), "{err}");
        assert!(!path.exists());
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("orch.db");
        let c = std::ffi::CString::new(path.to_string_lossy().as_bytes()).expect("path");
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = inspect(&path).expect_err("a FIFO");
        assert!(err.contains("a FIFO"), "{err}");
    }
}
