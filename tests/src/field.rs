//! Agents as they fail in the field (issue 12), as real processes.
//!
//! Each spawner starts the failure for real and returns only once `/proc`
//! shows it (bounded by [`SETTLE`]): a dead pid, a zombie, a `cat` blocked
//! on a pipe nobody writes, a client whose loopback peer closed the
//! connection (`CLOSE_WAIT`), a shell waiting for its child and a process
//! stopped with `SIGSTOP`. The [`FieldProc`] guard kills the whole process
//! group on drop (through [`Proc`]), so a failing test leaves nothing
//! behind. The `/proc` readers here are what the tests assert with.
//!
//! Only `sh`, `sleep` and `cat` are needed; they are looked up with
//! [`crate::tools::require`], so under `CI=true` a missing one fails.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::procs::Proc;

/// How long a spawner waits for `/proc` to show the failure.
pub const SETTLE: Duration = Duration::from_secs(10);

/// One field failure, alive until dropped.
#[derive(Debug)]
pub struct FieldProc {
    what: &'static str,
    pid: u32,
    leader: Option<Proc>,
    /// The other processes of the case: the zombie's parent, the waiting
    /// shell's child.
    pub related: Option<u32>,
    /// `CLOSE_WAIT`: the peer the client was connected to.
    pub remote: Option<SocketAddr>,
    /// `CLOSE_WAIT`: the client's fd holding the socket.
    pub socket_fd: Option<u32>,
    /// The write end of the `cat`'s stdin, held open and never written.
    _stdin: Option<ChildStdin>,
}

impl FieldProc {
    /// The pid to record as the agent's (`jobs.pid`).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// What the case is, for messages.
    pub fn what(&self) -> &'static str {
        self.what
    }

    /// The process group leader the guard kills on drop (`None` for the
    /// dead pid, which has nothing left to kill).
    pub fn leader_pid(&self) -> Option<u32> {
        self.leader.as_ref().map(Proc::pid)
    }
}

/// Finds the tools the spawners use; `None` (after a note) outside CI when
/// one is missing, a panic under CI.
pub fn tools_present() -> bool {
    ["sh", "sleep", "cat"]
        .iter()
        .all(|t| crate::tools::require(t, "coreutils and a POSIX sh").is_some())
}

/// A pid that named a process a moment ago and names none now: `sleep 0`,
/// started and reaped. (The kernel could hand the pid out again; with pids
/// allocated in order that takes a full wrap of `pid_max`.)
pub fn dead_pid() -> Result<FieldProc> {
    let mut p = Proc::spawn("dead", Command::new("sleep").arg("0"))?;
    let pid = p.pid();
    p.kill()?;
    wait_for("the dead pid to vanish", || (!exists(pid)).then_some(()))?;
    Ok(FieldProc {
        what: "dead pid",
        pid,
        leader: None,
        related: None,
        remote: None,
        socket_fd: None,
        _stdin: None,
    })
}

/// A zombie: `sh` starts `sleep 1` in the background and execs into
/// `sleep 600`, which never waits, so the child stays `Z` once it exits.
/// (Exiting after the exec, not before, so no shell gets to reap it.)
pub fn zombie() -> Result<FieldProc> {
    let parent = Proc::spawn(
        "zombie parent",
        Command::new("sh").args(["-c", "sleep 1 & exec sleep 600"]),
    )?;
    let ppid = parent.pid();
    let pid = wait_for("the background child to become a zombie", || {
        children(ppid).into_iter().find(|&c| state(c) == Some('Z'))
    })?;
    Ok(FieldProc {
        what: "zombie",
        pid,
        leader: Some(parent),
        related: Some(ppid),
        remote: None,
        socket_fd: None,
        _stdin: None,
    })
}

/// `cat` whose stdin is a pipe nobody writes (the guard holds the write end).
pub fn stdin_pipe() -> Result<FieldProc> {
    let mut cat = Proc::spawn(
        "cat on a silent pipe",
        Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::null()),
    )?;
    let stdin = cat.child_mut().stdin.take();
    let pid = cat.pid();
    wait_for("cat to block reading its stdin pipe", || {
        wchan(pid).filter(|w| w.contains("pipe_read") || w.starts_with("pipe_wait"))
    })?;
    Ok(FieldProc {
        what: "stdin pipe",
        pid,
        leader: Some(cat),
        related: None,
        remote: None,
        socket_fd: None,
        _stdin: stdin,
    })
}

/// A client whose loopback peer closed the connection: `sleep 600`
/// inherits the connected socket and never reads or closes it, the server
/// (here) accepts and closes, so the client's side sits in `CLOSE_WAIT`.
pub fn close_wait() -> Result<FieldProc> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let remote = listener.local_addr()?;
    let stream = TcpStream::connect(remote)?;
    let raw = stream.as_raw_fd();
    let mut cmd = Command::new("sleep");
    cmd.arg("600");
    // The socket keeps its number in the child: clearing FD_CLOEXEC there
    // (not a dup2 onto a fixed number, which could hit the pipe `Command`
    // uses to report a failed exec) lets it survive the exec.
    // SAFETY: runs in the forked child before exec and only calls
    // fcntl(2), which is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(raw, libc::F_SETFD, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let client = Proc::spawn("CLOSE_WAIT client", &mut cmd)?;
    // Only the child holds the client side now.
    drop(stream);
    let (accepted, _) = listener.accept()?;
    drop(accepted);
    let pid = client.pid();
    let fd = u32::try_from(raw)?;
    wait_for("the client's socket to reach CLOSE_WAIT", || {
        (tcp_state(pid, fd).as_deref() == Some("08")).then_some(())
    })?;
    Ok(FieldProc {
        what: "CLOSE_WAIT",
        pid,
        leader: Some(client),
        related: None,
        remote: Some(remote),
        socket_fd: Some(fd),
        _stdin: None,
    })
}

/// `sh -c 'sleep 600; echo'`: the shell waits for its child.
pub fn waiting_for_child() -> Result<FieldProc> {
    let sh = Proc::spawn(
        "shell waiting for sleep",
        Command::new("sh").args(["-c", "sleep 600; echo"]),
    )?;
    let pid = sh.pid();
    let child = wait_for("sh to wait for its sleep", || {
        let waits = wchan(pid).is_some_and(|w| w == "do_wait" || w.contains("wait4"));
        // The child counts once it sleeps in the kernel (not while it is
        // still starting up), so its wchan is there to be read.
        let child = children(pid).into_iter().find(|&c| {
            comm(c).as_deref() == Some("sleep") && state(c) == Some('S') && wchan(c).is_some()
        })?;
        waits.then_some(child)
    })?;
    Ok(FieldProc {
        what: "waiting for child",
        pid,
        leader: Some(sh),
        related: Some(child),
        remote: None,
        socket_fd: None,
        _stdin: None,
    })
}

/// `sleep 600` stopped with `SIGSTOP`.
pub fn stopped() -> Result<FieldProc> {
    let p = Proc::spawn("stopped sleep", Command::new("sleep").arg("600"))?;
    p.signal(libc::SIGSTOP)?;
    let pid = p.pid();
    wait_for("sleep to stop", || (state(pid) == Some('T')).then_some(()))?;
    Ok(FieldProc {
        what: "stopped",
        pid,
        leader: Some(p),
        related: None,
        remote: None,
        socket_fd: None,
        _stdin: None,
    })
}

/// Polls `f` every 10 ms until it gives a value, for at most [`SETTLE`].
pub fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + SETTLE;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {SETTLE:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether `/proc/<pid>` exists (a zombie included).
pub fn exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Field 3 of `/proc/<pid>/stat`, read after the last `") "`.
pub fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

/// `/proc/<pid>/wchan`; `None` when unreadable, empty or `0`.
pub fn wchan(pid: u32) -> Option<String> {
    let w = std::fs::read_to_string(format!("/proc/{pid}/wchan")).ok()?;
    let w = w.trim();
    (!w.is_empty() && w != "0").then(|| w.to_owned())
}

/// `/proc/<pid>/comm`.
pub fn comm(pid: u32) -> Option<String> {
    let c = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(c.trim_end().to_owned())
}

/// The children of `pid`, by their `ppid` (a scan of `/proc`: kernels
/// built without `CONFIG_PROC_CHILDREN` have no `task/<tid>/children`).
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&c| ppid(c) == Some(pid))
        .collect()
}

/// Field 4 of `/proc/<pid>/stat`.
pub fn ppid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The `readlink` of `/proc/<pid>/fd/<fd>`.
pub fn fd_target(pid: u32, fd: u32) -> Option<String> {
    let t = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
    Some(t.to_string_lossy().into_owned())
}

/// The `flags` of `/proc/<pid>/fdinfo/<fd>` (octal in the file).
pub fn fd_flags(pid: u32, fd: u32) -> Option<u32> {
    let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).ok()?;
    let flags = info.lines().find_map(|l| l.strip_prefix("flags:"))?;
    u32::from_str_radix(flags.trim(), 8).ok()
}

/// The kernel's TCP state (two hex digits, `08` = `CLOSE_WAIT`) of the
/// socket on `fd` of `pid`, from the process's own `/proc/<pid>/net/tcp`.
pub fn tcp_state(pid: u32, fd: u32) -> Option<String> {
    let target = fd_target(pid, fd)?;
    let inode = target.strip_prefix("socket:[")?.strip_suffix(']')?;
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).ok()?;
    table.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        (cols.get(9) == Some(&inode)).then(|| cols.get(3).map(|s| (*s).to_owned()))?
    })
}

/// The remote `address:port` of an IPv4 `/proc/net/tcp` address column
/// (`0100007F:9B8A` -> `127.0.0.1:39818`).
pub fn tcp4_addr(column: &str) -> Result<SocketAddr> {
    let (ip, port) = column
        .split_once(':')
        .ok_or_else(|| anyhow!("no port in {column:?}"))?;
    let ip = u32::from_str_radix(ip, 16).with_context(|| format!("address {ip:?}"))?;
    let port = u16::from_str_radix(port, 16).with_context(|| format!("port {port:?}"))?;
    // The kernel prints the network-order bytes read as a native u32.
    let ip = std::net::Ipv4Addr::from(ip.to_ne_bytes());
    Ok(SocketAddr::from((ip, port)))
}

/// The remote address of the socket on `fd` of `pid` (IPv4).
pub fn tcp_remote(pid: u32, fd: u32) -> Option<SocketAddr> {
    let target = fd_target(pid, fd)?;
    let inode = target.strip_prefix("socket:[")?.strip_suffix(']')?;
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).ok()?;
    table.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.get(9) == Some(&inode) {
            tcp4_addr(cols.get(2)?).ok()
        } else {
            None
        }
    })
}
