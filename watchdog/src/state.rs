//! The state file: the engine's baselines and pending/firing alerts, so a
//! restart neither re-announces a firing alert nor restarts a `for` timer.
//!
//! Written atomically (a temp file in the same directory, fsync, rename), so
//! a crash mid-write leaves the old file. A file that cannot be read is
//! logged and ignored: the watchdog starts fresh rather than not at all.

use std::io::Write;
use std::path::Path;

use shared_schema::{AlertLine, Timestamp};

use crate::engine::Engine;

/// Loads `path` into `engine`, as a reload would carry the running state
/// over: the firing alerts of targets `watched` does not name any more, or
/// of rules no longer enabled, end with the `resolved` lines returned (to
/// be written and notified). A missing or corrupt file leaves it fresh.
pub fn load(
    engine: &mut Engine,
    path: &Path,
    watched: impl Fn(&str) -> bool,
    now: Timestamp,
) -> Vec<AlertLine> {
    match std::fs::read(path) {
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
    let bytes = engine.save();
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map_or_else(|| "state".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
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
        load(&mut e, &path, |_| true, Timestamp::now());
        assert_eq!(e.firing_total(), 0);
        save(&e, &path).unwrap();
        let mut again = Engine::new(RuleSet::defaults(), Duration::from_secs(60));
        load(&mut again, &path, |_| true, Timestamp::now());
        assert!(
            std::fs::read_dir(dir.path()).unwrap().count() == 1,
            "no temp file left behind"
        );
    }
}
