//! The one reader of bearer-token files, for every binary and every flag
//! (CONTRACT.md section 5): surrounding whitespace and the final newline are
//! not part of the token; a file that is empty, larger than 64 KiB or not a
//! readable regular file is an error that names it. The token itself is
//! never part of an error.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The largest token file read.
pub const MAX_BYTES: u64 = 64 * 1024;

/// Why a token file cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
#[error("token file {}: {reason}", .path.display())]
pub struct TokenFileError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub reason: TokenFileReason,
}

/// What is wrong with a token file ([`TokenFileError`]). A cause is a
/// field, not a [`std::error::Error::source`]: the message quotes it, and a
/// chain printed with `{:#}` would say it twice. `Clone` as the error was
/// before: the I/O error is held in an [`Arc`].
#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenFileReason {
    /// Its metadata, or the file itself, cannot be read.
    #[error("cannot read it: {error}")]
    Read {
        /// Why.
        error: Arc<std::io::Error>,
    },
    /// A directory, a FIFO, a device...
    #[error("is not a regular file")]
    NotRegular,
    /// Larger than [`MAX_BYTES`].
    #[error("is larger than {limit} bytes")]
    TooLarge {
        /// [`MAX_BYTES`].
        limit: u64,
    },
    /// Its bytes are not UTF-8 (never quoted: they may be the token).
    #[error("is not UTF-8 text")]
    NotUtf8,
    /// Nothing but whitespace.
    #[error("is empty")]
    Empty,
}

/// Reads the one token in `path`.
pub fn read(path: &Path) -> Result<String, TokenFileError> {
    let fail = |reason: TokenFileReason| TokenFileError {
        path: path.to_owned(),
        reason,
    };
    let unreadable = |error: std::io::Error| {
        fail(TokenFileReason::Read {
            error: Arc::new(error),
        })
    };
    // Check the type before opening: opening a FIFO for reading blocks until
    // a writer appears, and /dev/zero never ends.
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    if !meta.is_file() {
        return Err(fail(TokenFileReason::NotRegular));
    }
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let mut bytes = Vec::new();
    file.take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(fail(TokenFileReason::TooLarge { limit: MAX_BYTES }));
    }
    let text = String::from_utf8(bytes).map_err(|_| fail(TokenFileReason::NotUtf8))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(fail(TokenFileReason::Empty));
    }
    Ok(token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, content).expect("write");
        path
    }

    #[test]
    fn surrounding_whitespace_is_not_part_of_the_token() {
        let dir = std::env::temp_dir().join(format!("edges-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let p = write(&dir, "t", b" s3cret-tok \n");
        assert_eq!(read(&p).ok().as_deref(), Some("s3cret-tok"));
        let empty = write(&dir, "e", b" \n\n");
        assert!(read(&empty).is_err_and(|e| e.to_string().contains("is empty")));
        assert!(read(&empty).is_err_and(|e| matches!(e.reason, TokenFileReason::Empty)));
        let big = write(&dir, "b", &vec![b'a'; 64 * 1024 + 1]);
        assert!(read(&big).is_err_and(|e| e.to_string().contains("larger")));
        assert!(read(&dir).is_err_and(|e| e.to_string().contains("not a regular file")));
        assert!(read(&dir.join("absent")).is_err_and(|e| e.to_string().contains("absent")));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_endless_device_is_refused_at_once() {
        // Bounded: a reader without the cap would never come back.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(read(Path::new("/dev/zero")));
        });
        let result = rx
            .recv_timeout(std::time::Duration::from_secs(1))
            .expect("/dev/zero is refused within a second");
        assert!(result.is_err_and(|e| e.to_string().contains("/dev/zero")));
    }

    #[test]
    fn a_fifo_is_refused_without_waiting_for_a_writer() {
        let dir = std::env::temp_dir().join(format!("edges-fifo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let fifo = dir.join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        match made {
            Ok(status) => assert!(status.success(), "mkfifo failed"),
            Err(err) => {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "mkfifo missing under CI: {err}"
                );
                eprintln!("skipped: no mkfifo ({err})");
                return;
            }
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let path = fifo.clone();
        std::thread::spawn(move || {
            let _ = tx.send(read(&path));
        });
        let result = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("a FIFO is refused without blocking");
        assert!(result.is_err_and(
            |e| e.to_string().contains("not a regular file") && e.to_string().contains("fifo")
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_token_never_appears_in_an_error() {
        let dir = std::env::temp_dir().join(format!("edges-token-leak-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let big = write(
            &dir,
            "b",
            format!("hunter2{}", " ".repeat(70_000)).as_bytes(),
        );
        let err = read(&big).expect_err("too big");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
