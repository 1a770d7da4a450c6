//! Real agent processes with known CPU and I/O behaviour, so the watchdog's
//! verdicts can be asserted: only the idle one may ever be stuck.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::procs::Proc;

/// How an agent process behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentKind {
    /// Burns one core: `while :; do :; done`.
    Busy,
    /// Waits on a child `sleep` with no CPU and no I/O, until it gets
    /// `SIGUSR1` ([`Agent::wake`]): then it burns one core.
    Idle,
    /// Almost no CPU, but writes and reads a file every 200 ms: I/O
    /// counters grow, so it is not stuck.
    Io,
    /// The shell itself only `wait`s; its child burns the core. Idle by
    /// its own ticks, busy by its tree's (`use_tree`).
    BusyChild,
}

impl AgentKind {
    /// Every kind, in the demo's order.
    pub const ALL: [AgentKind; 4] = [
        AgentKind::Busy,
        AgentKind::Idle,
        AgentKind::Io,
        AgentKind::BusyChild,
    ];

    /// The agent's name in `jobs.agent`.
    pub fn name(self) -> &'static str {
        match self {
            AgentKind::Busy => "busy",
            AgentKind::Idle => "idle",
            AgentKind::Io => "io",
            AgentKind::BusyChild => "busy-child",
        }
    }

    /// The `sh -c` script.
    pub fn script(self) -> &'static str {
        match self {
            AgentKind::Busy => "while :; do :; done",
            // `wait` returns when a trapped signal arrives; the trap then
            // spins forever. The sleeping child keeps the shell at 0 ticks
            // and 0 bytes of I/O until then.
            AgentKind::Idle => {
                "trap 'while :; do :; done' USR1; sleep 1000000 & wait; while :; do :; done"
            }
            AgentKind::Io => {
                "while :; do echo tick > io.dat; read -r line < io.dat; sleep 0.2; done"
            }
            AgentKind::BusyChild => "sh -c 'while :; do :; done' & wait",
        }
    }
}

/// A running agent process.
#[derive(Debug)]
pub struct Agent {
    /// How it behaves.
    pub kind: AgentKind,
    /// The process (its group is killed on drop).
    pub proc: Proc,
}

impl Agent {
    /// Starts an agent of `kind` with `dir` as its working directory.
    pub fn spawn(kind: AgentKind, dir: &Path) -> std::io::Result<Self> {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(kind.script())
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let proc = Proc::spawn(&format!("agent {}", kind.name()), &mut cmd)?;
        Ok(Self { kind, proc })
    }

    /// The pid recorded in `jobs.pid`.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Makes an [`AgentKind::Idle`] agent start working (same pid, same
    /// process: no pid reuse involved).
    pub fn wake(&self) -> std::io::Result<()> {
        self.proc.signal(libc::SIGUSR1)
    }
}
