//! External tools the tests drive (`promtool`, `prometheus`,
//! `prometheus-alertmanager`, `amtool`, `systemd-analyze`).
//!
//! Where a tool is missing a developer gets a printed note and the test
//! returns; under `CI=true` a missing tool is a failure, never a silent skip
//! (CI installs them: see `.ci/run`).

use std::path::PathBuf;

/// Whether we run under CI (`CI=true` or `CI=1`).
pub fn in_ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true" | "1" | "yes"))
}

/// `$PATH` lookup.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The tool's path. When it is missing: under CI a panic (the test fails),
/// otherwise `None` after a note on stderr (the caller returns).
pub fn require(name: &str, hint: &str) -> Option<PathBuf> {
    match which(name) {
        Some(p) => Some(p),
        None if in_ci() => panic!("`{name}` is not installed but CI=true requires it ({hint})"),
        None => {
            eprintln!("note: `{name}` not found on PATH, skipping ({hint})");
            None
        }
    }
}

/// Like [`require`] but never fails under CI: for tools CI does not promise.
pub fn optional(name: &str, hint: &str) -> Option<PathBuf> {
    let found = which(name);
    if found.is_none() {
        eprintln!("note: `{name}` not found on PATH, skipping ({hint})");
    }
    found
}
