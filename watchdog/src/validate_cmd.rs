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

async fn read(input: &str, token: Option<String>, timeout: Duration) -> Result<Vec<u8>, String> {
    if input == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| e.to_string())?;
        return Ok(buf);
    }
    if input.starts_with("http://") || input.starts_with("https://") {
        let url = poll_url(input).map_err(|e| e.to_string())?;
        let poller = Poller::for_url(&url, token, timeout).map_err(|e| e.to_string())?;
        return poller.fetch().await.map(|b| b.to_vec());
    }
    std::fs::read(input).map_err(|e| e.to_string())
}
