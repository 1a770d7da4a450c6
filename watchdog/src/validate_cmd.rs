//! `watchdog validate URL|FILE|-`: every way an envelope departs from the
//! contract, one `path: message` line each, exit 0 when none and 1 otherwise
//! (also 1, with the reason, when the input cannot be read at all). The
//! body goes through the one reader's own top-level pass and everything the
//! reader sets aside is listed too (`shared_schema::validate`), so a clean
//! `validate` means a clean live poll.

use std::io::{Read, Write};
use std::time::Duration;

use crate::config::poll_url;
use crate::poll::Poller;
use crate::target::UrlError;

/// Why the input cannot be read at all. It is shown after `$: cannot read
/// INPUT: `, so no variant names the input again.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    /// `-`: stdin cannot be read.
    #[error("{error}")]
    Stdin {
        /// Why.
        error: std::io::Error,
    },
    /// An http(s) input is not a URL to poll.
    #[error("{error}")]
    Url {
        /// Why.
        error: UrlError,
    },
    /// No client for the URL (its TLS settings).
    #[error("{error}")]
    Poller {
        /// Why (shown with `{}`: the outermost message only).
        error: anyhow::Error,
    },
    /// The poll of the URL failed.
    #[error("{summary}")]
    Fetch {
        /// The failed poll's summary (as `target_down` says it).
        summary: String,
    },
    /// A file cannot be read.
    #[error("{error}")]
    File {
        /// Why.
        error: std::io::Error,
    },
}

/// Validates `input`; prints the problems and returns the exit code. A
/// stdout that cannot be written (closed, full) exits 1 too: the verdict
/// did not get out.
pub async fn validate(input: &str, token: Option<String>, timeout: Duration) -> i32 {
    let bytes = match read(input, token, timeout).await {
        Ok(b) => b,
        Err(e) => {
            print(&format!("$: cannot read {input}: {e}\n"));
            return 1;
        }
    };
    let problems = shared_schema::validate(&bytes);
    let text: String = problems.iter().map(|p| format!("{p}\n")).collect();
    if !print(&text) {
        return 1;
    }
    // The summary is for people; a stderr nobody reads does not change the verdict.
    let mut err = std::io::stderr();
    if problems.is_empty() {
        let _ = writeln!(err, "{input}: the envelope fits the contract");
        0
    } else {
        let _ = writeln!(err, "{input}: {} problem(s)", problems.len());
        1
    }
}

/// Prints `text` on stdout; false (and said on stderr) when it could not.
pub fn print(text: &str) -> bool {
    match crate::stdout::print_all(text) {
        Ok(()) => true,
        Err(e) => {
            crate::stdout::note_unwritable(&e);
            false
        }
    }
}

async fn read(input: &str, token: Option<String>, timeout: Duration) -> Result<Vec<u8>, ReadError> {
    if input == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|error| ReadError::Stdin { error })?;
        return Ok(buf);
    }
    if input.starts_with("http://") || input.starts_with("https://") {
        let url = poll_url(input).map_err(|error| ReadError::Url { error })?;
        let poller =
            Poller::for_url(&url, token, timeout).map_err(|error| ReadError::Poller { error })?;
        return poller
            .fetch()
            .await
            .map(|b| b.to_vec())
            .map_err(|summary| ReadError::Fetch { summary });
    }
    std::fs::read(input).map_err(|error| ReadError::File { error })
}
