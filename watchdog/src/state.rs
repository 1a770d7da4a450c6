//! The state file: the engine's baselines and pending/firing alerts, so a
//! restart neither re-announces a firing alert nor restarts a `for` timer.
//!
//! Written atomically (a temp file in the same directory, fsync, rename), so
//! a crash mid-write leaves the old file. A file that cannot be read is
//! logged and ignored: the watchdog starts fresh rather than not at all.

use std::fmt;
use std::path::{Path, PathBuf};

use shared_schema::{AlertLine, Timestamp};

use crate::engine::Engine;

/// A `state_file` that cannot be used: it is there but not a regular file
/// (a FIFO would block the start for good, a device or a directory is a
/// mistake). A missing or corrupt file is no error: the start is fresh.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateFileError {
    /// Not a regular file.
    #[error("state_file {}: is {kind}, not a regular file; give the path of a file (it is replaced atomically at each save)", .file.display())]
    NotRegular {
        /// The `state_file` path.
        file: PathBuf,
        /// What it is instead.
        kind: FileKind,
    },
}

/// What a `state_file` path is when it is not a regular file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A named pipe.
    Fifo,
    /// A directory.
    Directory,
    /// A Unix socket.
    Socket,
    /// A character or block device.
    Device,
    /// Anything else that is not a regular file.
    Other,
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Fifo => "a FIFO",
            Self::Directory => "a directory",
            Self::Socket => "a socket",
            Self::Device => "a device",
            Self::Other => "not a regular file",
        })
    }
}

/// Loads `path` into `engine`, as a reload would carry the running state
/// over: the firing alerts of targets `watched` does not name any more, or
/// of rules no longer enabled, end with the `resolved` lines returned (to
/// be written and notified). A missing or corrupt file leaves it fresh; a
/// path that is not a regular file (a FIFO would block the start for good,
/// a device or a directory is a mistake) is an error naming it.
pub fn load(
    engine: &mut Engine,
    path: &Path,
    watched: impl Fn(&str) -> bool,
    now: Timestamp,
) -> Result<Vec<AlertLine>, StateFileError> {
    match read(path) {
        Err(Refused(why)) => Err(why),
        Ok(read) => Ok(take(engine, path, read, watched, now)),
    }
}

/// A `state_file` path that is there but not a regular file.
struct Refused(StateFileError);

/// Checks that `path` is a regular file or not there yet, without
/// opening it (for a reload, which reads nothing).
pub fn check(path: &Path) -> Result<(), StateFileError> {
    match std::fs::metadata(path) {
        Ok(m) => regular(path, &m),
        Err(_) => Ok(()), // missing (or unreadable: said when it is read)
    }
}

fn regular(path: &Path, m: &std::fs::Metadata) -> Result<(), StateFileError> {
    use std::os::unix::fs::FileTypeExt as _;
    let t = m.file_type();
    let kind = if t.is_file() {
        return Ok(());
    } else if t.is_fifo() {
        FileKind::Fifo
    } else if t.is_dir() {
        FileKind::Directory
    } else if t.is_socket() {
        FileKind::Socket
    } else if t.is_char_device() || t.is_block_device() {
        FileKind::Device
    } else {
        FileKind::Other
    };
    Err(StateFileError::NotRegular {
        file: path.to_owned(),
        kind,
    })
}

/// Reads the file: opened non-blocking (a FIFO with no writer must not
/// hang the start) and checked to be a regular file before any read.
fn read(path: &Path) -> Result<std::io::Result<Vec<u8>>, Refused> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path);
    let mut file = match file {
        Ok(f) => f,
        Err(e) => return Ok(Err(e)),
    };
    match file.metadata() {
        Ok(m) => regular(path, &m).map_err(Refused)?,
        Err(e) => return Ok(Err(e)),
    }
    let mut bytes = Vec::new();
    Ok(file.read_to_end(&mut bytes).map(|_| bytes))
}

fn take(
    engine: &mut Engine,
    path: &Path,
    read: std::io::Result<Vec<u8>>,
    watched: impl Fn(&str) -> bool,
    now: Timestamp,
) -> Vec<AlertLine> {
    match read {
        Ok(bytes) => match engine.restore_for(&bytes, watched, now) {
            Ok(r) => {
                tracing::info!(path = %path.display(), alerts = r.alerts, resolved = r.resolved.len(),
                    "state restored");
                for line in &r.resolved {
                    tracing::info!(target = %line.target, rule = %line.rule, key = %line.key,
                        "saved alert of a target or rule no longer configured resolved");
                }
                return r.resolved;
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "state file unreadable; starting fresh")
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::info!(path = %path.display(), "no state file yet; starting fresh");
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the state file; starting fresh")
        }
    }
    Vec::new()
}

/// Writes the engine's state to `path` atomically.
pub fn save(engine: &Engine, path: &Path) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map_or_else(|| "state".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let result = (|| {
        // Streamed through a small buffer, never the whole body in memory.
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        serde_json::to_writer(&mut f, &engine.saved())?;
        let f = f
            .into_inner()
            .map_err(std::io::IntoInnerError::into_error)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::RuleSet;
    use std::time::Duration;

    #[test]
    fn a_corrupt_file_is_ignored_and_a_saved_one_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, b"\x00garbage").unwrap();
        let mut e = Engine::new(RuleSet::defaults(), Duration::from_secs(60));
        load(&mut e, &path, |_| true, Timestamp::now()).unwrap();
        assert_eq!(e.firing_total(), 0);
        save(&e, &path).unwrap();
        let mut again = Engine::new(RuleSet::defaults(), Duration::from_secs(60));
        load(&mut again, &path, |_| true, Timestamp::now()).unwrap();
        assert!(
            std::fs::read_dir(dir.path()).unwrap().count() == 1,
            "no temp file left behind"
        );
    }

    /// Issue 24: a FIFO as `state_file` used to block the start for good
    /// (the open waits for a writer); it is refused at once, by name, as
    /// are a directory and a device. A missing file is a fresh start.
    #[test]
    fn a_state_file_that_is_not_a_regular_file_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("state.fifo");
        let c = std::ffi::CString::new(fifo.to_string_lossy().as_bytes()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path for the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let (tx, rx) = std::sync::mpsc::channel();
        let path = fifo.clone();
        std::thread::spawn(move || {
            let mut e = Engine::new(RuleSet::defaults(), Duration::from_secs(60));
            let _ = tx.send(load(&mut e, &path, |_| true, Timestamp::now()));
        });
        let got = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("load returns instead of blocking on the FIFO");
        let err = got.unwrap_err();
        assert_eq!(
            err,
            StateFileError::NotRegular {
                file: fifo.clone(),
                kind: FileKind::Fifo
            }
        );
        assert_eq!(
            err.to_string(),
            format!("state_file {}: is a FIFO, not a regular file; give the path of a file (it is replaced atomically at each save)", fifo.display())
        );
        assert_eq!(check(&fifo), Err(err));
        let mut e = Engine::new(RuleSet::defaults(), Duration::from_secs(60));
        let err = load(&mut e, dir.path(), |_| true, Timestamp::now()).unwrap_err();
        assert!(err.to_string().contains("a directory"), "{err}");
        assert!(
            load(&mut e, Path::new("/dev/null"), |_| true, Timestamp::now())
                .unwrap_err()
                .to_string()
                .contains("a device")
        );
        let missing = dir.path().join("none.json");
        assert_eq!(
            load(&mut e, &missing, |_| true, Timestamp::now()),
            Ok(vec![])
        );
        assert_eq!(check(&missing), Ok(()));
    }
}
