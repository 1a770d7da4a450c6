//! External tools the tests drive (`promtool`, `prometheus`,
//! `prometheus-alertmanager`, `amtool`, `systemd-analyze`, and the real
//! agent CLIs `claude` and `codex`).
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

/// Headless Chromium for the browser tests ([`require`]).
pub fn chromium() -> Option<PathBuf> {
    require("chromium", "apt-get install chromium")
}

/// Debian's `prometheus-alertmanager` ([`require`]).
pub fn alertmanager() -> Option<PathBuf> {
    require(
        "prometheus-alertmanager",
        "apt-get install prometheus-alertmanager",
    )
}

/// The pinned Claude Code version the tests and `.ci/run` use.
pub const CLAUDE_CODE_VERSION: &str = "2.1.328";
/// The pinned Codex CLI version.
pub const CODEX_VERSION: &str = "0.171.0";

/// The real Claude Code binary: `$CLAUDE_BIN`, else `claude` on PATH.
/// Missing: a failure under CI, else a note and `None`.
pub fn claude() -> Option<PathBuf> {
    agent_cli(
        "claude",
        "CLAUDE_BIN",
        &format!(
            "npm install @anthropic-ai/claude-code@{CLAUDE_CODE_VERSION}, then put \
             node_modules/@anthropic-ai/claude-code-linux-x64/claude on PATH or in $CLAUDE_BIN \
             (.ci/run does this)"
        ),
    )
}

/// The real Codex CLI binary: `$CODEX_BIN`, else `codex` on PATH.
/// Missing: a failure under CI, else a note and `None`.
pub fn codex() -> Option<PathBuf> {
    agent_cli(
        "codex",
        "CODEX_BIN",
        &format!(
            "npm install @openai/codex@{CODEX_VERSION}, then put the native \
             vendor/<target>/bin/codex of @openai/codex-linux-x64 on PATH or in $CODEX_BIN \
             (.ci/run does this)"
        ),
    )
}

/// An agent CLI from `$var` (which must then be a file) or PATH.
fn agent_cli(name: &str, var: &str, hint: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(var) {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Some(path);
        }
        if in_ci() {
            panic!("${var} = {} is not a file ({hint})", path.display());
        }
        eprintln!(
            "note: ${var} = {} is not a file, skipping ({hint})",
            path.display()
        );
        return None;
    }
    require(name, hint)
}
