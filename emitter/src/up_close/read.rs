//! The I/O of the up-close view: one scan of `/proc` for the parent map,
//! then each process of the tree read on its own. Nothing here fails: what
//! cannot be read is `None` or left out, and a process that vanished while
//! it was read is left out.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};

use shared_schema::{FdKind, FdView, ProcessView, SocketView, Timestamp};

use super::parse::{self, TcpEntry};
use crate::procfs::{parse_stat, parse_wchan};

/// Reads `path` as text; `None` when it cannot be read (gone, denied, ...).
fn text(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// `pid` and its live descendants, `pid` first, then breadth first, from
/// one pass over `<root>/<pid>/stat` (this kernel has no `task/*/children`).
pub fn tree(root: &Path, pid: i64) -> Vec<i64> {
    let mut children: HashMap<i64, Vec<i64>> = HashMap::new();
    let mut alive = false;
    if let Ok(entries) = std::fs::read_dir(root) {
        for entry in entries.flatten() {
            let Some(p) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i64>().ok())
            else {
                continue;
            };
            let Some(stat) = text(&entry.path().join("stat")).and_then(|t| parse_stat(&t)) else {
                continue;
            };
            alive |= p == pid;
            children.entry(stat.ppid).or_default().push(p);
        }
    }
    if !alive {
        return Vec::new();
    }
    let mut order = vec![pid];
    let mut seen = HashSet::from([pid]);
    let mut queue = VecDeque::from([pid]);
    while let Some(p) = queue.pop_front() {
        let mut kids = children.remove(&p).unwrap_or_default();
        kids.sort_unstable();
        for kid in kids {
            // A pid seen twice (a reused pid between two reads) cannot loop.
            if seen.insert(kid) {
                order.push(kid);
                queue.push_back(kid);
            }
        }
    }
    order
}

/// What is the same for every process of one view.
pub struct Host {
    /// Normally `/proc`.
    pub root: PathBuf,
    /// Seconds since boot, for `age_s`.
    pub uptime_s: Option<f64>,
    /// `sysconf(_SC_CLK_TCK)`.
    pub clk_tck: Option<u64>,
    /// TCP tables already read, by network namespace.
    tables: HashMap<String, HashMap<u64, TcpEntry>>,
    /// Fds still to be listed in this view, over all its processes.
    fd_budget: usize,
    /// One `sock_diag` dump for the whole view (`tcp_info` times), read
    /// at the first socket; `Some(None)` when the kernel refused.
    tcp_info: Option<Option<HashMap<u64, crate::net_wait::TcpSocket>>>,
}

/// Fds listed per process at most; the rest are counted in `fds_omitted`.
pub const FDS_PER_PROCESS: usize = 1000;

/// Fds listed per view at most (about 120 bytes each: a body well under the
/// watchdog's 1 MiB cap however many fds the tree holds).
pub const FDS_PER_VIEW: usize = 4000;

impl Host {
    /// Reads the clocks now.
    pub fn new(root: &Path) -> Self {
        // SAFETY: sysconf has no memory effects.
        let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        Self {
            root: root.to_owned(),
            uptime_s: text(&root.join("uptime")).and_then(|t| parse::uptime(&t)),
            clk_tck: u64::try_from(tck).ok().filter(|&t| t > 0),
            tables: HashMap::new(),
            fd_budget: FDS_PER_VIEW,
            tcp_info: None,
        }
    }

    /// One process up close; `None` when it is gone (or went while read).
    pub fn process(&mut self, pid: i64) -> Option<ProcessView> {
        let dir = self.root.join(pid.to_string());
        let stat = parse_stat(&text(&dir.join("stat"))?)?;
        let cap = self.fd_budget.min(FDS_PER_PROCESS);
        let (fds, fds_omitted, inodes) = fds(&dir, cap);
        self.fd_budget -= fds.len();
        let sockets = if inodes.is_empty() {
            Vec::new()
        } else {
            self.sockets(&dir, &inodes)
        };
        let view = ProcessView {
            pid,
            ppid: Some(stat.ppid),
            comm: Some(stat.comm),
            state: Some(stat.state.to_string()),
            wchan: text(&dir.join("wchan")).and_then(|t| parse_wchan(&t)),
            cpu_ticks: stat.utime.checked_add(stat.stime),
            age_s: self.age_s(stat.starttime),
            threads: Some(stat.threads),
            fds,
            fds_omitted,
            sockets,
        };
        // Gone, or the pid now names another process: leave it out.
        let again = parse_stat(&text(&dir.join("stat"))?)?;
        (again.starttime == stat.starttime).then_some(view)
    }

    fn age_s(&self, starttime: u64) -> Option<f64> {
        let started = starttime as f64 / self.clk_tck? as f64;
        let age = self.uptime_s? - started;
        // Rounded to the tick: more digits would only be noise.
        Some((age.max(0.0) * 100.0).round() / 100.0)
    }

    /// The TCP sockets among `inodes` (fd number, inode), from the tables of
    /// the process's own network namespace, read once per namespace.
    fn sockets(&mut self, dir: &Path, inodes: &[(i64, u64)]) -> Vec<SocketView> {
        let ns = std::fs::read_link(dir.join("ns/net"))
            .map(|l| l.to_string_lossy().into_owned())
            .unwrap_or_else(|_| dir.to_string_lossy().into_owned());
        let table = self.tables.entry(ns).or_insert_with(|| {
            let mut rows = HashMap::new();
            for name in ["net/tcp", "net/tcp6"] {
                if let Some(t) = text(&dir.join(name)) {
                    rows.extend(parse::tcp_table(&t).into_iter().map(|e| (e.inode, e)));
                }
            }
            rows
        });
        let times = self
            .tcp_info
            .get_or_insert_with(crate::net_wait::sockets_by_inode);
        inodes
            .iter()
            .filter_map(|&(fd, inode)| {
                let row = table.get(&inode)?;
                let (sent_ago_s, received_ago_s) = times
                    .as_ref()
                    .and_then(|t| t.get(&inode))
                    .map_or((None, None), crate::net_wait::ages);
                Some(SocketView {
                    fd,
                    proto: "tcp".to_owned(),
                    state: row.state.to_owned(),
                    local: row.local.clone(),
                    remote: row.remote.clone(),
                    sent_ago_s,
                    received_ago_s,
                })
            })
            .collect()
    }
}

/// The first `cap` open fds of one process in fd order, how many more
/// there were, and the (fd, inode) of its sockets among all of them.
fn fds(dir: &Path, cap: usize) -> (Vec<FdView>, u64, Vec<(i64, u64)>) {
    let mut numbers: Vec<i64> = match std::fs::read_dir(dir.join("fd")) {
        Ok(entries) => entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect(),
        Err(_) => return (Vec::new(), 0, Vec::new()),
    };
    numbers.sort_unstable();
    let mut views = Vec::with_capacity(numbers.len().min(cap));
    let mut omitted = 0u64;
    let mut sockets = Vec::new();
    for fd in numbers {
        let link = dir.join("fd").join(fd.to_string());
        // Closed between the listing and now: leave it out.
        let Ok(target) = std::fs::read_link(&link) else {
            continue;
        };
        let target = target.to_string_lossy().into_owned();
        let kind = parse::fd_kind(&target);
        if let Some(inode) = parse::socket_inode(&target) {
            sockets.push((fd, inode));
        }
        if views.len() >= cap {
            omitted += 1;
            continue;
        }
        let mode = text(&dir.join("fdinfo").join(fd.to_string())).and_then(|t| parse::fd_mode(&t));
        // Size and mtime of the open file itself (the link is followed), for regular files only.
        let (size, mtime) = match kind {
            FdKind::File => match std::fs::metadata(&link) {
                Ok(meta) if meta.is_file() => {
                    (Some(meta.len()), meta.modified().ok().map(Timestamp::from))
                }
                _ => (None, None),
            },
            _ => (None, None),
        };
        views.push(FdView {
            fd,
            kind,
            target: Some(target),
            mode,
            size,
            mtime,
        });
    }
    (views, omitted, sockets)
}
