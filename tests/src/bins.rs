//! Finding the project's binaries: `$EMITTER_BIN` / `$WATCHDOG_BIN`, else
//! next to the running executable (the demo lives in the same target dir),
//! else one level up (a test executable lives in `target/<profile>/deps/`).

use std::path::{Path, PathBuf};

/// Where `name` is, or an error that says how to build it.
pub fn locate(name: &str) -> anyhow::Result<PathBuf> {
    let var = format!("{}_BIN", name.to_uppercase());
    if let Some(path) = std::env::var_os(&var) {
        let path = PathBuf::from(path);
        anyhow::ensure!(path.is_file(), "${var} = {} is not a file", path.display());
        return Ok(path);
    }
    let exe = std::env::current_exe()?;
    let mut tried = Vec::new();
    let mut dir = exe.parent();
    for _ in 0..2 {
        let Some(d) = dir else { break };
        let candidate = d.join(name);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
        tried.push(candidate.display().to_string());
        dir = d.parent();
    }
    anyhow::bail!(
        "the `{name}` binary was not found (looked at {}); build it first with \
         `cargo build -p {name}` (cargo test --workspace builds it), or set ${var}",
        tried.join(", ")
    )
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
