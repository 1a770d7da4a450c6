//! One agent up close: the body of `GET /agents/{job_id}` (CONTRACT.md
//! section 1, "One agent up close", new in page 2).
//!
//! Read on demand, never part of `/metrics`, so it is not on the hot path:
//! one scan of `/proc` for the parent map (this kernel has no
//! `task/<tid>/children`), then the agent's process and every live
//! descendant read on their own: stat, wchan, every fd with its kind,
//! target, mode, and size and mtime for regular files, and the TCP sockets
//! among them matched by inode against the process's own
//! `/proc/<pid>/net/tcp` and `tcp6`.
//!
//! The job is found through the same [`Source`] as the envelope (the
//! `agents` of one session: jobs with status `running`), so it is read
//! read-only and never creates a file, and an in-memory source works too.

mod parse;
mod read;

use std::path::Path;

use shared_schema::{AgentView, Timestamp};

use crate::Source;

/// What a lookup found.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// The job is running: its tree (empty when its pid is unknown or gone).
    View(AgentView),
    /// No job with that id is `running`.
    NotRunning,
    /// The running jobs could not be read (why).
    Unavailable(String),
}

/// Looks `job_id` up among the running jobs of `source` and reads its
/// process tree under `proc_root` (normally `/proc`).
pub fn look(source: &dyn Source, proc_root: &Path, job_id: i64) -> Lookup {
    look_until(source, proc_root, job_id, &|| false)
}

/// [`look`] that gives up (an empty tree) once `stop` says so: nobody is
/// waiting for the answer any more (the client closed its connection).
pub fn look_until(
    source: &dyn Source,
    proc_root: &Path,
    job_id: i64,
    stop: &dyn Fn() -> bool,
) -> Lookup {
    let now = Timestamp::now();
    // The session (and any read transaction) ends before /proc is read.
    let agents = source.session().agents(&now);
    let pid = match agents {
        Ok(agents) => match agents.into_iter().find(|a| a.job_id == job_id) {
            Some(agent) => agent.pid,
            None => return Lookup::NotRunning,
        },
        Err(err) => return Lookup::Unavailable(err.to_string()),
    };
    if stop() {
        return Lookup::View(view(proc_root, job_id, None));
    }
    Lookup::View(view_until(proc_root, job_id, pid, stop))
}

/// The view of `pid`'s tree for `job_id`; no processes when `pid` is
/// unknown or gone.
pub fn view(proc_root: &Path, job_id: i64, pid: Option<i64>) -> AgentView {
    view_until(proc_root, job_id, pid, &|| false)
}

/// [`view`] that stops reading processes once `stop` says so.
fn view_until(
    proc_root: &Path,
    job_id: i64,
    pid: Option<i64>,
    stop: &dyn Fn() -> bool,
) -> AgentView {
    let generated_at = Timestamp::now();
    let mut processes = Vec::new();
    if let Some(pid) = pid.filter(|&p| p > 0) {
        let mut host = read::Host::new(proc_root);
        processes = read::tree(proc_root, pid)
            .into_iter()
            .take_while(|_| !stop())
            .filter_map(|p| host.process(p))
            .collect();
        // The agent first: if it went while its children were read, say nothing about them.
        if !processes.first().is_some_and(|p| p.pid == pid) {
            processes.clear();
        }
    }
    AgentView {
        schema_version: shared_schema::SCHEMA_VERSION,
        generated_at,
        job_id,
        pid,
        processes,
    }
}
