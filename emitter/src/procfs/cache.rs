//! The process table kept across snapshots, so that `/proc` cost follows
//! the agents' trees and not the host.
//!
//! Finding an agent's descendants needs each process's parent. Two ways:
//! - where the kernel has `/proc/<pid>/task/<tid>/children`
//!   (`CONFIG_PROC_CHILDREN`), the tree is walked from the agent down,
//!   reading only the tree's own files;
//! - otherwise [`ProcCache`] remembers `pid -> (start_ticks, ppid)` across
//!   snapshots: each snapshot lists the `/proc` directory (names only) and
//!   reads the `stat` of pids it has not seen before, so a host with
//!   thousands of idle processes costs one directory listing, not thousands
//!   of reads.
//!
//! A remembered parent goes stale only when a process is reparented, which
//! happens when its parent exits: it moves to the nearest subreaper
//! (`PR_SET_CHILD_SUBREAPER`) or to init. That can bring a process INTO an
//! agent's tree only when the agent (or a descendant) is a subreaper, so
//! every process whose remembered parent has vanished is read again at the
//! next snapshot; and because a tree's own processes are read each snapshot
//! (for their CPU figures), one that left the tree is seen at once. A pid
//! reused between two snapshots (the pid space wrapped within one poll) is
//! caught by a small rotating re-read of [`SWEEP`] remembered pids per
//! snapshot.
//!
//! When `loadavg` names the newest pid, only the pids handed out since the
//! last update are read; `/proc/stat`'s fork count says whether that range
//! can hold them all (a counter that went round `pid_max` and ended just
//! above where it started cannot), and `/proc` is listed when it cannot.
//!
//! Within one snapshot every process is read at most once, however many
//! agents share it (agents with the same pid, trees that overlap).

use std::collections::{HashMap, HashSet};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::{
    in_parallel, is_thread, parse_io, parse_stat, parse_wchan, read_all, read_file, AgentProc, Io,
    Stat,
};

/// Remembered processes re-read per snapshot in case their pid was reused.
pub const SWEEP: usize = 16;

/// How descendants are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Walk {
    /// `task/<tid>/children` files.
    ChildrenFiles,
    /// The remembered parent map.
    Remembered,
}

#[derive(Debug, Clone, Copy)]
struct Known {
    start: u64,
    ppid: i64,
}

/// The process table kept between snapshots.
#[derive(Debug)]
pub struct ProcCache {
    root: PathBuf,
    walk: Walk,
    known: HashMap<i64, Known>,
    sweep: usize,
    /// `stat`, `io` and `wchan` of the processes read last snapshot, kept
    /// open and re-read with `pread` (3.9× cheaper than open + read +
    /// close, see docs/PERFORMANCE.md). An fd stays bound to its process:
    /// once that process is gone a read fails and the path is opened again,
    /// so a reused pid is never read through an old fd.
    kept: HashMap<(i64, &'static str), std::fs::File>,
    /// At most this many files kept open (a quarter of the fd limit).
    keep_max: usize,
    /// Files read in the last snapshot (for tests and benchmarks).
    pub reads: usize,
    /// `/proc` listings in the last snapshot (for tests and benchmarks).
    pub listings: usize,
    /// The newest pid `<root>/loadavg` named at the last update.
    last_pid: Option<i64>,
    /// `processes` of `<root>/stat` (forks since boot) at the last update.
    forks: Option<u64>,
    /// Updates since `/proc` was last listed.
    since_listing: u32,
    /// How many processes the last listing found.
    listed_len: usize,
    /// Reused for every file read.
    buf: Vec<u8>,
    /// `<root>/loadavg`, kept open.
    loadavg: Option<std::fs::File>,
    /// `root` is the `/proc` of our pid namespace (checked once).
    same_namespace: bool,
    /// Parent -> children of `known`; `None` when `known` changed since.
    children: Option<HashMap<i64, Vec<i64>>>,
}

/// What one snapshot read, so that no process is read twice.
#[derive(Default)]
struct Memo {
    stats: HashMap<i64, Result<Stat, Option<bool>>>,
    io: HashMap<i64, Option<Io>>,
    /// `known` changed during the walk: the children map is stale.
    changed: bool,
}

impl ProcCache {
    /// A table over `root` (normally `/proc`). The remembered walk when
    /// `loadavg` names the new pids (it reads only those and the trees: at
    /// 100 agents 0.97 ms against 2.47 ms for children files, which cost a
    /// `task` listing and a `children` file per agent and thread), else
    /// children files when the kernel has them, else the remembered walk
    /// listing `/proc`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let walk = if own_namespace(&root) && root.join("loadavg").exists() {
            Walk::Remembered
        } else if has_children_files(&root) {
            Walk::ChildrenFiles
        } else {
            Walk::Remembered
        };
        Self::with_walk(root, walk)
    }

    /// A table that walks the given way.
    pub fn with_walk(root: impl Into<PathBuf>, walk: Walk) -> Self {
        let root = root.into();
        Self {
            same_namespace: own_namespace(&root),
            loadavg: None,
            children: None,
            root,
            walk,
            known: HashMap::new(),
            sweep: 0,
            kept: HashMap::new(),
            keep_max: fd_budget(),
            reads: 0,
            listings: 0,
            last_pid: None,
            forks: None,
            since_listing: 0,
            listed_len: 0,
            buf: vec![0; 4096],
        }
    }

    /// Seconds since a process with this `starttime` (clock ticks after
    /// boot) began, on `<root>/uptime`; `None` where either is unknown.
    pub fn age_s(&self, start_ticks: u64) -> Option<f64> {
        // SAFETY: sysconf has no memory effects.
        let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let tck = u32::try_from(tck).ok().filter(|&t| t > 0)?;
        let uptime: f64 = std::fs::read_to_string(self.root.join("uptime"))
            .ok()?
            .split_ascii_whitespace()
            .next()?
            .parse()
            .ok()?;
        let age = uptime - start_ticks as f64 / f64::from(tck);
        (age.is_finite() && age >= 0.0).then_some(age)
    }

    /// How descendants are found.
    pub fn walk(&self) -> Walk {
        self.walk
    }

    /// The figures of each pid (`None` for a missing pid), reading each
    /// process once however many agents name it.
    pub fn agents(&mut self, pids: &[Option<i64>]) -> Vec<Option<AgentProc>> {
        self.reads = 0;
        self.listings = 0;
        if !pids.iter().any(|p| p.is_some_and(|p| p > 0)) {
            return pids
                .iter()
                .map(|p| p.map(|_| AgentProc::default()))
                .collect();
        }
        if self.walk == Walk::Remembered {
            self.update();
        }
        // Kept while `known` is unchanged: on a quiet host it is built once.
        let children = match self.walk {
            Walk::Remembered => Some(self.children.take().unwrap_or_else(|| self.children_map())),
            Walk::ChildrenFiles => None,
        };
        let mut memo = Memo::default();
        let mut per_pid: HashMap<i64, AgentProc> = HashMap::new();
        let out = pids
            .iter()
            .map(|pid| {
                let pid = (*pid)?;
                if pid <= 0 {
                    return Some(AgentProc::default());
                }
                if let Some(done) = per_pid.get(&pid) {
                    return Some(done.clone());
                }
                let p = self.agent(pid, children.as_ref(), &mut memo);
                per_pid.insert(pid, p.clone());
                Some(p)
            })
            .collect();
        // Files of processes not read this time are closed.
        self.kept.retain(|(pid, _), _| memo.stats.contains_key(pid));
        if self.children.is_none() && !memo.changed {
            self.children = children;
        }
        out
    }

    /// Reads `<root>/<pid>/<file>` through a kept fd when there is one, into
    /// `self.buf` (no allocation per read); the text is `&self.buf[..n]`.
    fn read(&mut self, pid: i64, file: &'static str) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        self.reads += 1;
        if let Some(f) = self.kept.get(&(pid, file)) {
            match f.read_at(&mut self.buf, 0) {
                Ok(n) if n < self.buf.len() => return Ok(n),
                // Too long for one read, or the process is gone: by path.
                _ => {
                    self.kept.remove(&(pid, file));
                }
            }
        }
        let path = self.root.join(pid.to_string()).join(file);
        let mut f = std::fs::File::open(&path)?;
        let n = read_all(&mut f, &mut self.buf)?;
        if self.kept.len() < self.keep_max {
            self.kept.insert((pid, file), f);
        }
        Ok(n)
    }

    /// The text read by [`Self::read`]; lossy only when it is not UTF-8.
    fn text(&self, n: usize) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.buf[..n])
    }

    fn agent(
        &mut self,
        pid: i64,
        children: Option<&HashMap<i64, Vec<i64>>>,
        memo: &mut Memo,
    ) -> AgentProc {
        let own = match self.stat(pid, memo) {
            Ok(s) => s,
            Err(alive) => {
                return AgentProc {
                    alive,
                    ..AgentProc::default()
                }
            }
        };
        // Descendants, parents first; each verified by a fresh read of its stat.
        let mut tree: Vec<Stat> = Vec::new();
        let mut seen = HashSet::from([pid]);
        // Verified members (their fresh stat names a parent in the tree).
        let mut inside = HashSet::from([pid]);
        let mut frontier = vec![pid];
        while let Some(parent) = frontier.pop() {
            let kids = match children {
                Some(map) => map.get(&parent).cloned().unwrap_or_default(),
                None => self.children_files(parent),
            };
            for kid in kids {
                if !seen.insert(kid) {
                    continue;
                }
                match self.stat(kid, memo) {
                    Ok(s) if s.ppid == parent => {
                        frontier.push(kid);
                        inside.insert(kid);
                        tree.push(s);
                    }
                    Ok(_) => {}
                    Err(Some(false)) => {
                        // Gone since the map was made: its children were
                        // reparented, into this tree when an ancestor in it
                        // is a subreaper. Their fresh parent tells.
                        let orphans = children.and_then(|m| m.get(&kid)).cloned();
                        for orphan in orphans.unwrap_or_default() {
                            if seen.contains(&orphan) {
                                continue;
                            }
                            if let Ok(s) = self.stat(orphan, memo) {
                                if inside.contains(&s.ppid) {
                                    seen.insert(orphan);
                                    frontier.push(orphan);
                                    inside.insert(orphan);
                                    tree.push(s);
                                }
                            }
                        }
                    }
                    Err(_) => {}
                }
            }
        }
        let wchan = self.wchan(pid);
        let mut figures = super::tree_figures(&own, tree.iter(), |p| self.io(p, memo), wchan);
        if let Some(live) = super::live_thread_state(&self.root, &own) {
            figures.state = Some(live.to_string());
        }
        figures
    }

    /// A fresh stat of `pid`, once per snapshot; `Err(alive)` when unreadable.
    fn stat(&mut self, pid: i64, memo: &mut Memo) -> Result<Stat, Option<bool>> {
        if let Some(done) = memo.stats.get(&pid) {
            return done.clone();
        }
        let result = match self.read(pid, "stat") {
            Ok(n) => parse_stat(&self.text(n))
                .filter(|s| s.pid == pid)
                .ok_or(None),
            Err(err) => Err(gone(&err)),
        };
        let before = self.known.get(&pid).map(|k| k.ppid);
        match &result {
            Ok(s) => self.remember(pid, s.starttime, s.ppid),
            Err(Some(false)) => self.forget(pid),
            Err(_) => {}
        }
        if self.known.get(&pid).map(|k| k.ppid) != before {
            memo.changed = true;
        }
        memo.stats.insert(pid, result.clone());
        result
    }

    fn io(&mut self, pid: i64, memo: &mut Memo) -> Option<Io> {
        if let Some(done) = memo.io.get(&pid) {
            return *done;
        }
        let io = self
            .read(pid, "io")
            .ok()
            .and_then(|n| parse_io(&self.text(n)));
        memo.io.insert(pid, io);
        io
    }

    fn wchan(&mut self, pid: i64) -> Option<String> {
        let n = self.read(pid, "wchan").ok()?;
        parse_wchan(&self.text(n))
    }

    /// The children of every thread of `pid`.
    fn children_files(&mut self, pid: i64) -> Vec<i64> {
        let task = self.root.join(pid.to_string()).join("task");
        let Ok(threads) = std::fs::read_dir(&task) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for t in threads.flatten() {
            self.reads += 1;
            if let Ok(text) = read_file(&t.path().join("children")) {
                out.extend(
                    String::from_utf8_lossy(&text)
                        .split_ascii_whitespace()
                        .filter_map(|p| p.parse::<i64>().ok()),
                );
            }
        }
        out
    }

    /// Brings the remembered table up to date: only the pids created since
    /// the last update are read when the kernel says which they are (see
    /// [`new_pids`]); otherwise, and every [`RELIST`] updates,
    /// `/proc` is listed.
    fn update(&mut self) {
        // Read before anything else: a process created after this read is
        // above `now` and is read at the next update.
        let forks = self.read_forks();
        let now = self.read_last_pid();
        // Without listings, processes outside every tree are only forgotten
        // at the next listing: list early when they pile up.
        let bounded = self.known.len() <= 2 * self.listed_len + PROBE_MAX as usize;
        let range = match (self.last_pid, now) {
            (Some(before), Some(now)) if self.since_listing < RELIST && bounded => {
                new_pids(before, now).filter(|r| covers_forks(r, self.forks, forks))
            }
            _ => None,
        };
        match range {
            Some(range) => {
                self.since_listing += 1;
                self.probe(range);
            }
            None => {
                self.since_listing = 0;
                self.list();
            }
        }
        // Only set once the update is done: a failed listing is retried.
        self.last_pid = now;
        self.forks = forks;
    }

    /// `processes` of `<root>/stat`: every fork and clone since boot, host
    /// wide. `None` when unreadable (then only `loadavg` is trusted).
    fn read_forks(&mut self) -> Option<u64> {
        if !self.same_namespace {
            return None;
        }
        let mut f = std::fs::File::open(self.root.join("stat")).ok()?;
        let n = read_all(&mut f, &mut self.buf).ok()?;
        parse_forks(&String::from_utf8_lossy(self.buf.get(..n)?))
    }

    /// The newest pid given out in `root`'s pid namespace (`/proc/loadavg`'s
    /// last field), or `None` when `root` is not the `/proc` of our own pid
    /// namespace (then `loadavg` would name pids of another one).
    fn read_last_pid(&mut self) -> Option<i64> {
        if !self.same_namespace {
            return None;
        }
        let f = match &self.loadavg {
            Some(f) => f,
            None => {
                let f = std::fs::File::open(self.root.join("loadavg")).ok()?;
                self.loadavg.insert(f)
            }
        };
        use std::os::unix::fs::FileExt;
        let mut buf = [0u8; 128];
        let n = f.read_at(&mut buf, 0).ok()?;
        parse_last_pid(std::str::from_utf8(buf.get(..n)?).ok()?)
    }

    /// Reads the stat of each pid in `range` (the pids given out since the
    /// last update); a thread's id is skipped, a pid with no process is forgotten.
    fn probe(&mut self, range: std::ops::RangeInclusive<i64>) {
        let mut path = self.root.clone();
        for pid in range {
            self.reads += 1;
            path.push(pid.to_string());
            path.push("stat");
            let read = std::fs::File::open(&path).and_then(|mut f| read_all(&mut f, &mut self.buf));
            path.pop();
            path.pop();
            let stat = match read {
                Ok(n) => {
                    let text = String::from_utf8_lossy(&self.buf[..n]);
                    if is_thread(&text) {
                        None
                    } else {
                        parse_stat(&text).filter(|s| s.pid == pid)
                    }
                }
                Err(_) => None,
            };
            match stat {
                Some(s) => self.remember(pid, s.starttime, s.ppid),
                None => self.forget(pid),
            }
        }
    }

    /// Lists `/proc`, forgets vanished pids and reads new ones (and those
    /// whose parent vanished, and a few old ones in turn).
    fn list(&mut self) {
        self.listings += 1;
        self.children = None;
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            self.known.clear();
            return;
        };
        let listed: HashSet<i64> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
            .collect();
        self.known.retain(|pid, _| listed.contains(pid));
        let mut read: Vec<i64> = listed
            .iter()
            .filter(|pid| !self.known.contains_key(pid))
            .copied()
            .collect();
        // Reparented: the remembered parent is gone.
        read.extend(
            self.known
                .iter()
                .filter(|(_, k)| k.ppid > 1 && !self.known.contains_key(&k.ppid))
                .map(|(pid, _)| *pid),
        );
        // Reused pids: a few remembered ones in turn.
        let mut old: Vec<i64> = self.known.keys().copied().collect();
        old.sort_unstable();
        if !old.is_empty() {
            for i in 0..SWEEP.min(old.len()) {
                read.push(old[(self.sweep + i) % old.len()]);
            }
            self.sweep = (self.sweep + SWEEP) % old.len();
        }
        self.reads += read.len();
        let root = self.root.clone();
        let stats = in_parallel(&read, |chunk| {
            chunk
                .iter()
                .map(|&pid| {
                    let path = root.join(pid.to_string()).join("stat");
                    let stat = read_file(&path)
                        .ok()
                        .and_then(|b| parse_stat(&String::from_utf8_lossy(&b)))
                        .filter(|s| s.pid == pid);
                    (pid, stat)
                })
                .collect()
        });
        for (pid, stat) in stats {
            match stat {
                Some(s) => self.remember(pid, s.starttime, s.ppid),
                None => self.forget(pid),
            }
        }
        self.listed_len = self.known.len();
    }

    /// Records a process; the children map is rebuilt only when this changed it.
    fn remember(&mut self, pid: i64, start: u64, ppid: i64) {
        let new = Known { start, ppid };
        let old = self.known.insert(pid, new);
        if old.map(|k| k.ppid) != Some(ppid) {
            self.children = None;
        }
    }

    fn forget(&mut self, pid: i64) {
        if self.known.remove(&pid).is_some() {
            self.children = None;
        }
    }

    fn children_map(&self) -> HashMap<i64, Vec<i64>> {
        let mut map: HashMap<i64, Vec<i64>> = HashMap::new();
        for (pid, k) in &self.known {
            let _ = k.start;
            map.entry(k.ppid).or_default().push(*pid);
        }
        map
    }
}

/// Updates between two listings of `/proc` when `loadavg` says which pids
/// are new: a safety net for a pid space that wrapped whole between two
/// updates, and what prunes vanished processes outside every agent's tree.
pub const RELIST: u32 = 300;

/// Above this many new pids since the last update, listing is cheaper.
pub const PROBE_MAX: i64 = 1024;

/// The pids given out after `before` up to `now`, when that is a short
/// forward range. Pids are handed out in increasing order and wrap to a low
/// number at `pid_max`: `now < before` (wrapped) is answered by a listing.
pub fn new_pids(before: i64, now: i64) -> Option<std::ops::RangeInclusive<i64>> {
    (now >= before && now - before <= PROBE_MAX).then_some(before + 1..=now)
}

/// Whether the forward pid range `range` can hold every pid handed out
/// between two updates: each fork or clone takes one pid, so more forks
/// than the range is wide means the pid counter went round `pid_max` (a
/// wrap that ended just above where it started looks like a short range)
/// and the new pids are not all in it. Forks in other pid namespaces count
/// too, which can only make this answer "list" more often, never miss one.
pub fn covers_forks(
    range: &std::ops::RangeInclusive<i64>,
    before: Option<u64>,
    now: Option<u64>,
) -> bool {
    match (before, now) {
        (Some(before), Some(now)) => {
            let width = u64::try_from(range.end() - range.start() + 1).unwrap_or(0);
            now.checked_sub(before).is_some_and(|forks| forks <= width)
        }
        _ => true,
    }
}

/// The `processes` line of `/proc/stat`: forks since boot.
pub fn parse_forks(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("processes "))
        .and_then(|v| v.trim().parse().ok())
}

/// The last field of `/proc/loadavg`: the newest pid given out.
pub fn parse_last_pid(text: &str) -> Option<i64> {
    text.split_ascii_whitespace().nth(4)?.parse().ok()
}

/// Whether `root/self` names this process, i.e. `root` is the `/proc` of
/// our own pid namespace.
fn own_namespace(root: &Path) -> bool {
    std::fs::read_link(root.join("self"))
        .ok()
        .and_then(|p| p.to_str()?.parse::<u32>().ok())
        == Some(std::process::id())
}

impl ProcCache {}

/// A quarter of the soft fd limit, so kept files never starve the server.
fn fd_budget() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct it is given.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
    if ok {
        usize::try_from(lim.rlim_cur / 4).unwrap_or(256).min(16_384)
    } else {
        256
    }
}

/// `true`/`false` when the error says whether the process exists.
fn gone(err: &std::io::Error) -> Option<bool> {
    if err.kind() == ErrorKind::NotFound || err.raw_os_error() == Some(libc::ESRCH) {
        Some(false)
    } else {
        None
    }
}

/// Whether this kernel has `task/<tid>/children` (`CONFIG_PROC_CHILDREN`).
fn has_children_files(root: &Path) -> bool {
    let me = std::process::id();
    root.join(me.to_string())
        .join("task")
        .join(me.to_string())
        .join("children")
        .exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = "0 (p) S 0 1 1 0 -1 4194304 90 0 0 0 3 5 7 11 20 0 1 0 500 8515584 196 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";

    fn fake(dir: &Path, pid: i64, ppid: i64) {
        let d = dir.join(pid.to_string());
        std::fs::create_dir_all(&d).expect("mkdir");
        let line = LINE.replacen("0 (p) S 0", &format!("{pid} (p{pid}) S {ppid}"), 1);
        std::fs::write(d.join("stat"), line).expect("stat");
        std::fs::write(d.join("io"), "rchar: 10\nwchar: 1\n").expect("io");
        std::fs::write(d.join("wchan"), "do_wait").expect("wchan");
    }

    #[test]
    fn shared_pids_and_overlapping_trees_are_read_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (pid, ppid) in [(10, 1), (11, 10), (12, 11), (13, 11)] {
            fake(dir.path(), pid, ppid);
        }
        let mut cache = ProcCache::with_walk(dir.path(), Walk::Remembered);
        // Warm: the first snapshot reads every new pid once.
        cache.agents(&[Some(10)]);
        let one = cache.agents(&[Some(10)]);
        let reads_one = cache.reads;
        // Twenty agents on the same pid, and one on a pid inside that tree.
        let mut many = vec![Some(10); 20];
        many.push(Some(11));
        let all = cache.agents(&many);
        assert_eq!(all[0], one[0]);
        assert_eq!(all[0].as_ref().and_then(|a| a.io_rchar), Some(40));
        assert_eq!(all[20].as_ref().and_then(|a| a.io_rchar), Some(30));
        // 4 stats + 4 io + 2 wchan (+ the sweep), not 21 trees' worth.
        assert_eq!(cache.reads, reads_one + 1, "{} vs {reads_one}", cache.reads);
    }

    #[test]
    fn only_new_processes_are_read_after_the_first_snapshot() {
        let dir = tempfile::tempdir().expect("tempdir");
        fake(dir.path(), 10, 1);
        for pid in 100..400 {
            fake(dir.path(), pid, 1);
        }
        let mut cache = ProcCache::with_walk(dir.path(), Walk::Remembered);
        cache.agents(&[Some(10)]);
        assert!(cache.reads > 300);
        cache.agents(&[Some(10)]);
        // Own stat, io, wchan and the rotating sweep.
        assert_eq!(cache.reads, 3 + SWEEP);
        fake(dir.path(), 20, 10);
        let a = cache.agents(&[Some(10)]);
        assert_eq!(
            a[0].as_ref().and_then(|a| a.io_rchar),
            Some(20),
            "the new child is found"
        );
    }

    /// A fake `/proc` of our own namespace with a `loadavg` naming `last`.
    fn fake_ns(dir: &Path, last: i64) {
        let me = dir.join("self");
        if me.symlink_metadata().is_err() {
            std::os::unix::fs::symlink(std::process::id().to_string(), me).expect("self");
        }
        std::fs::write(dir.join("loadavg"), format!("0.00 0.01 0.05 1/99 {last}\n"))
            .expect("loadavg");
    }

    fn rchar(a: &[Option<AgentProc>]) -> Option<u64> {
        a[0].as_ref().and_then(|a| a.io_rchar)
    }

    #[test]
    fn new_pids_are_probed_from_loadavg_instead_of_listing() {
        let dir = tempfile::tempdir().expect("tempdir");
        fake(dir.path(), 10, 1);
        for pid in 100..400 {
            fake(dir.path(), pid, 1);
        }
        fake_ns(dir.path(), 400);
        let mut cache = ProcCache::with_walk(dir.path(), Walk::Remembered);
        cache.agents(&[Some(10)]);
        assert_eq!(cache.listings, 1);
        // Nothing created: no listing, no sweep, only the agent's own files.
        let a = cache.agents(&[Some(10)]);
        assert_eq!((cache.listings, cache.reads), (0, 3));
        assert_eq!(rchar(&a), Some(10));
        // Two new pids: a child process and a thread of it (exit_signal -1).
        fake(dir.path(), 401, 10);
        fake(dir.path(), 402, 10);
        let line = std::fs::read_to_string(dir.path().join("402/stat")).expect("stat");
        std::fs::write(
            dir.path().join("402/stat"),
            line.replace(" 17 1 0 0 0 0 0", " -1 1 0 0 0 0 0"),
        )
        .expect("thread");
        fake_ns(dir.path(), 402);
        let a = cache.agents(&[Some(10)]);
        assert_eq!(cache.listings, 0);
        assert_eq!(rchar(&a), Some(20), "the child counts, the thread does not");
        // Pids wrapped: listed again.
        fake_ns(dir.path(), 300);
        cache.agents(&[Some(10)]);
        assert_eq!(cache.listings, 1);
    }

    /// Issue 24 #3: the agent forked until the pid counter wrapped and
    /// started a busy child part-way (pid 50, below the last pid seen);
    /// `loadavg` now names a pid just above the old one, but `/proc/stat`
    /// counted 32,773 forks: the short range cannot hold them, so `/proc`
    /// is listed and the child is found.
    #[test]
    fn a_wrapped_pid_space_is_listed_when_the_fork_count_outruns_the_range() {
        let dir = tempfile::tempdir().expect("tempdir");
        fake(dir.path(), 10, 1);
        for pid in 100..400 {
            fake(dir.path(), pid, 1);
        }
        fake_ns(dir.path(), 400);
        std::fs::write(dir.path().join("stat"), "cpu 1 2 3\nprocesses 5000\n").expect("stat");
        let mut cache = ProcCache::with_walk(dir.path(), Walk::Remembered);
        cache.agents(&[Some(10)]);
        // Three forks, three new pids: probed, not listed.
        std::fs::write(dir.path().join("stat"), "cpu 1 2 3\nprocesses 5003\n").expect("stat");
        fake_ns(dir.path(), 403);
        cache.agents(&[Some(10)]);
        assert_eq!(cache.listings, 0);
        fake(dir.path(), 50, 10);
        fake_ns(dir.path(), 405);
        std::fs::write(dir.path().join("stat"), "cpu 1 2 3\nprocesses 37776\n").expect("stat");
        let a = cache.agents(&[Some(10)]);
        assert_eq!(cache.listings, 1);
        assert_eq!(
            rchar(&a),
            Some(20),
            "the child born during the wrap is in the tree"
        );
    }

    /// Issue 24 #5: the main thread called `pthread_exit`, a worker runs
    /// on: the leader's stat says `Z` with 2 threads. Not a zombie: the
    /// state of the live thread, and alive.
    #[test]
    fn a_leader_that_exited_with_threads_running_is_not_a_zombie() {
        let dir = tempfile::tempdir().expect("tempdir");
        let zombie_leader = |pid: i64, threads: u32| {
            LINE.replacen("0 (p) S 0", &format!("{pid} (p{pid}) Z 1"), 1)
                .replacen(" 20 0 1 0 500 ", &format!(" 20 0 {threads} 0 500 "), 1)
        };
        fake(dir.path(), 10, 1);
        std::fs::write(dir.path().join("10/stat"), zombie_leader(10, 2)).expect("stat");
        let task = dir.path().join("10/task");
        for (tid, state) in [(10, "Z"), (11, "R")] {
            std::fs::create_dir_all(task.join(tid.to_string())).expect("task");
            let line = LINE.replacen("0 (p) S 0", &format!("{tid} (p) {state} 1"), 1);
            std::fs::write(task.join(format!("{tid}/stat")), line).expect("task stat");
        }
        // A real zombie: one thread.
        fake(dir.path(), 20, 1);
        std::fs::write(dir.path().join("20/stat"), zombie_leader(20, 1)).expect("stat");
        let mut cache = ProcCache::with_walk(dir.path(), Walk::Remembered);
        let a = cache.agents(&[Some(10), Some(20)]);
        let state = |i: usize| a[i].as_ref().and_then(|a| a.state.clone());
        assert_eq!(state(0).as_deref(), Some("R"));
        assert_eq!(a[0].as_ref().and_then(|a| a.alive), Some(true));
        assert_eq!(state(1).as_deref(), Some("Z"));
    }

    #[test]
    fn fork_counts_bound_the_pid_range() {
        assert!(covers_forks(&(101..=105), Some(10), Some(15)));
        assert!(!covers_forks(&(101..=105), Some(10), Some(16)));
        assert!(covers_forks(&(101..=105), None, Some(16)));
        // The counter went backwards (another boot?): list.
        assert!(!covers_forks(&(101..=105), Some(10), Some(9)));
        assert_eq!(
            parse_forks("cpu 1 2\nintr 5\nprocesses 20010\nprocs_running 1\n"),
            Some(20010)
        );
        assert_eq!(parse_forks("cpu 1 2\n"), None);
    }

    #[test]
    fn a_child_reparented_to_a_subreaper_agent_stays_in_its_tree() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (pid, ppid) in [(10, 1), (20, 10), (30, 20)] {
            fake(dir.path(), pid, ppid);
        }
        fake_ns(dir.path(), 30);
        let mut cache = ProcCache::with_walk(dir.path(), Walk::Remembered);
        // A kept fd of a deleted plain file still reads; one of /proc would not.
        cache.keep_max = 0;
        assert_eq!(rchar(&cache.agents(&[Some(10)])), Some(30));
        // 20 exits; the agent (a subreaper) adopts 30; no pid was created.
        std::fs::remove_dir_all(dir.path().join("20")).expect("rm");
        fake(dir.path(), 30, 10);
        let a = cache.agents(&[Some(10)]);
        assert_eq!(cache.listings, 0);
        assert_eq!(rchar(&a), Some(20));
        // And the next snapshot walks it from the updated map.
        assert_eq!(rchar(&cache.agents(&[Some(10)])), Some(20));
    }

    #[test]
    fn new_pid_ranges() {
        assert_eq!(new_pids(100, 100).map(|r| r.count()), Some(0));
        assert_eq!(new_pids(100, 105), Some(101..=105));
        assert_eq!(new_pids(100, 99), None);
        assert_eq!(new_pids(100, 100 + PROBE_MAX + 1), None);
        assert_eq!(parse_last_pid("3.40 3.51 5.39 6/119 20010\n"), Some(20010));
        assert_eq!(parse_last_pid("3.40 3.51"), None);
    }

    #[test]
    fn alive_tells_gone_from_unknown() {
        let dir = tempfile::tempdir().expect("tempdir");
        fake(dir.path(), 10, 1);
        let mut cache = ProcCache::with_walk(dir.path(), Walk::Remembered);
        let a = cache.agents(&[Some(10), Some(99), None, Some(0)]);
        assert_eq!(a[0].as_ref().and_then(|a| a.alive), Some(true));
        assert_eq!(
            a[0].as_ref().and_then(|a| a.wchan.clone()).as_deref(),
            Some("do_wait")
        );
        assert_eq!(a[1].as_ref().and_then(|a| a.alive), Some(false));
        assert_eq!(a[2], None);
        assert_eq!(a[3].as_ref().and_then(|a| a.alive), None);
    }

    #[test]
    fn kept_files_follow_their_process_and_a_gone_one_is_reopened() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let pid = i64::from(child.id());
        let mut cache = ProcCache::with_walk("/proc", Walk::Remembered);
        let first = cache.agents(&[Some(pid)]);
        assert!(cache.kept.contains_key(&(pid, "stat")));
        let again = cache.agents(&[Some(pid)]);
        assert_eq!(
            first[0].as_ref().and_then(|a| a.start_ticks),
            again[0].as_ref().and_then(|a| a.start_ticks)
        );
        let _ = child.kill();
        let _ = child.wait();
        let gone = cache.agents(&[Some(pid)]);
        assert_eq!(gone[0].as_ref().and_then(|a| a.alive), Some(false));
        assert!(!cache.kept.contains_key(&(pid, "stat")));
    }

    #[test]
    fn wchan_zero_or_empty_is_unknown() {
        assert_eq!(parse_wchan("0"), None);
        assert_eq!(parse_wchan(""), None);
        assert_eq!(parse_wchan("do_epoll_wait"), Some("do_epoll_wait".into()));
    }

    #[test]
    fn the_real_proc_finds_a_child_either_way() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let me = i64::from(std::process::id());
        let kid = i64::from(child.id());
        for walk in [Walk::Remembered, Walk::ChildrenFiles] {
            let mut cache = ProcCache::with_walk("/proc", walk);
            if walk == Walk::ChildrenFiles && !has_children_files(Path::new("/proc")) {
                continue;
            }
            let mut memo = Memo::default();
            let children = (walk == Walk::Remembered).then(|| {
                cache.update();
                cache.children_map()
            });
            let a = cache.agent(me, children.as_ref(), &mut memo);
            assert_eq!(a.alive, Some(true));
            assert!(memo.stats.contains_key(&kid), "{walk:?} found the child");
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}
