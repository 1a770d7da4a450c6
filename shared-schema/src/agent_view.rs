//! One agent up close: the body of the emitter's `GET /agents/{job_id}`
//! (CONTRACT.md section 1, "One agent up close", new in page 2).
//!
//! The raw material for a diagnosis: the agent's process and every live
//! descendant (the agent first), each with its state, the kernel function it
//! sleeps in, its open file descriptors and its TCP sockets. The emitter
//! writes it; the watchdog reads it (tolerantly: every key may be missing or
//! `null`, unknown keys are ignored) and turns it into one sentence.

use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// The whole body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentView {
    /// The contract major version, as in the envelope.
    pub schema_version: u64,
    /// The emitter's wall clock when the view was read.
    pub generated_at: Timestamp,
    /// `jobs.id`.
    pub job_id: i64,
    /// `jobs.pid`, when known.
    #[serde(default)]
    pub pid: Option<i64>,
    /// The agent's process first, then every live descendant.
    #[serde(default)]
    pub processes: Vec<ProcessView>,
}

/// One process of the agent's tree.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ProcessView {
    /// The process id.
    pub pid: i64,
    /// Its parent.
    #[serde(default)]
    pub ppid: Option<i64>,
    /// `/proc/<pid>/comm`.
    #[serde(default)]
    pub comm: Option<String>,
    /// The state letter (`R`, `S`, `D`, `Z`, `T`, `t`, ...).
    #[serde(default)]
    pub state: Option<String>,
    /// `/proc/<pid>/wchan`; `None` when unreadable, empty or `0`.
    #[serde(default)]
    pub wchan: Option<String>,
    /// utime + stime.
    #[serde(default)]
    pub cpu_ticks: Option<u64>,
    /// Seconds since the process started.
    #[serde(default)]
    pub age_s: Option<f64>,
    /// Number of threads.
    #[serde(default)]
    pub threads: Option<u64>,
    /// Open file descriptors (left out where `/proc/<pid>/fd` is unreadable),
    /// the lowest-numbered first, at most a cap (see `fds_omitted`).
    #[serde(default)]
    pub fds: Vec<FdView>,
    /// How many open fds were left out of `fds` past the cap (so that the
    /// body stays small however many a process holds); absent when none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub fds_omitted: u64,
    /// TCP sockets among the fds (IPv4 and IPv6).
    #[serde(default)]
    pub sockets: Vec<SocketView>,
}

/// What an fd points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FdKind {
    /// `pipe:[inode]`.
    Pipe,
    /// `socket:[inode]`.
    Socket,
    /// A path on a filesystem.
    File,
    /// A terminal (`/dev/pts/N`, `/dev/ttyN`, `/dev/tty`).
    Tty,
    /// `anon_inode:[...]` (eventfd, epoll, timerfd, ...).
    Anon,
    /// Anything else, including kinds a newer emitter adds.
    #[serde(other)]
    Other,
}

/// How an fd was opened (from `/proc/<pid>/fdinfo`'s `flags`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FdMode {
    /// `O_RDONLY`.
    #[serde(rename = "r")]
    Read,
    /// `O_WRONLY`.
    #[serde(rename = "w")]
    Write,
    /// `O_RDWR`.
    #[serde(rename = "rw")]
    ReadWrite,
}

/// One open file descriptor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FdView {
    /// The fd number.
    pub fd: i64,
    /// What it points at.
    pub kind: FdKind,
    /// The `readlink` of `/proc/<pid>/fd/<fd>`.
    #[serde(default)]
    pub target: Option<String>,
    /// `r`, `w` or `rw`; `None` where fdinfo is unreadable.
    #[serde(default)]
    pub mode: Option<FdMode>,
    /// Size in bytes, for regular files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Last modification, for regular files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtime: Option<Timestamp>,
}

/// One TCP socket among a process's fds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SocketView {
    /// The fd it is open on.
    pub fd: i64,
    /// `tcp` (IPv4 and IPv6 alike).
    pub proto: String,
    /// The kernel's state name: `ESTABLISHED`, `CLOSE_WAIT`, `SYN_SENT`, ...
    pub state: String,
    /// Local `address:port` (IPv6 as `[addr]:port`).
    pub local: String,
    /// Remote `address:port` (IPv6 as `[addr]:port`).
    pub remote: String,
    /// Seconds since data was last sent on it (`tcp_info`, page 3); `None`
    /// where the kernel does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_ago_s: Option<f64>,
    /// Seconds since data was last received (`tcp_info`, page 3); `None`
    /// where the kernel does not say or nothing was ever received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_ago_s: Option<f64>,
}

/// `fds_omitted` is left out of the body when nothing was.
fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The contract's own example, read back and written again.
    #[test]
    fn contract_example_round_trips() -> Result<(), serde_json::Error> {
        let body = r#"{"schema_version":1,"generated_at":"2026-11-22T10:10:00.123Z","job_id":7,"pid":1234,
 "processes":[
  {"pid":1234,"ppid":900,"comm":"node","state":"S","wchan":"do_epoll_wait",
   "cpu_ticks":5120,"age_s":3600.5,"threads":11,
   "fds":[{"fd":0,"kind":"pipe","target":"pipe:[105453]","mode":"r"},
          {"fd":1,"kind":"file","target":"/var/log/agents/7.jsonl","mode":"w","size":123456,"mtime":"2026-11-22T10:09:58.000Z"},
          {"fd":2,"kind":"tty","target":"/dev/pts/3","mode":"rw"}],
   "sockets":[{"fd":23,"proto":"tcp","state":"CLOSE_WAIT","local":"10.0.0.5:51234","remote":"93.184.216.34:443"}]}]}"#;
        let view: AgentView = serde_json::from_str(body)?;
        assert_eq!(view.processes.len(), 1);
        let p = &view.processes[0];
        assert_eq!(p.wchan.as_deref(), Some("do_epoll_wait"));
        assert_eq!(p.fds[0].kind, FdKind::Pipe);
        assert_eq!(p.fds[0].mode, Some(FdMode::Read));
        assert_eq!(p.fds[1].size, Some(123_456));
        assert_eq!(p.sockets[0].state, "CLOSE_WAIT");
        let again: AgentView = serde_json::from_str(&serde_json::to_string(&view)?)?;
        assert_eq!(again, view);
        Ok(())
    }

    #[test]
    fn unknown_fd_kind_is_other() -> Result<(), serde_json::Error> {
        let fd: FdView = serde_json::from_str(r#"{"fd":3,"kind":"memfd","new_key":1}"#)?;
        assert_eq!(fd.kind, FdKind::Other);
        assert_eq!(fd.target, None);
        Ok(())
    }
}
