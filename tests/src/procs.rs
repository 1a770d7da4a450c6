//! Child processes that cannot outlive their owner.
//!
//! Every process the tests and the demo start goes through [`Proc::spawn`]:
//! it gets its own process group (so the whole tree, grandchildren
//! included, is killed with one `kill(-pgid)`), `PR_SET_PDEATHSIG` so it dies
//! with us even if we are `SIGKILL`ed, and a [`Drop`] that kills the group
//! and reaps the child. A failing test therefore never leaves a busy loop
//! behind.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// A started process (the leader of its own process group), killed with
/// its whole group on drop.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Child,
    reaped: bool,
}

impl Proc {
    /// Starts `cmd` as the leader of a new process group.
    pub fn spawn(name: &str, cmd: &mut Command) -> io::Result<Self> {
        cmd.process_group(0);
        // SAFETY: the closure runs in the forked child before exec and only
        // calls prctl(2), which is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("starting {name}: {e}")))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            reaped: false,
        })
    }

    /// The process id (also the process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the process is called in messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The underlying child, e.g. to take its stdout.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Sends `sig` to the process only (not its group).
    pub fn signal(&self, sig: libc::c_int) -> io::Result<()> {
        send(self.pid() as libc::pid_t, sig)
    }

    /// `Some(status)` once the process has exited.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        let status = self.child.try_wait()?;
        if status.is_some() {
            self.reaped = true;
        }
        Ok(status)
    }

    /// Sends `SIGTERM` to the group and waits up to `grace` for the leader
    /// to exit, then `SIGKILL`s the group. Returns the leader's status.
    pub fn stop(&mut self, grace: Duration) -> io::Result<ExitStatus> {
        let _ = send(-(self.pid() as libc::pid_t), libc::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = self.try_wait()? {
                // The leader is gone; its children may not be.
                let _ = send(-(self.pid() as libc::pid_t), libc::SIGKILL);
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill()
    }

    /// `SIGKILL`s the whole group and reaps the leader.
    pub fn kill(&mut self) -> io::Result<ExitStatus> {
        let _ = send(-(self.pid() as libc::pid_t), libc::SIGKILL);
        let status = self.child.wait()?;
        self.reaped = true;
        Ok(status)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Kill the group even when the leader was reaped already: a
        // grandchild (an agent's busy child) may still run.
        let _ = send(-(self.pid() as libc::pid_t), libc::SIGKILL);
        if !self.reaped {
            let _ = self.child.wait();
        }
    }
}

fn send(pid: libc::pid_t, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: kill(2) has no memory-safety preconditions.
    let rc = unsafe { libc::kill(pid, sig) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether a process with this pid exists and is not a zombie (a killed
/// orphan may wait a moment for its reaper).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}
