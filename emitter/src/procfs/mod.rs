//! Per-process CPU, state and I/O figures from `/proc`, for the `agents` section.
//!
//! The contract asks for one pass over `/proc` per snapshot, not one per
//! agent: [`ProcTable::scan`] reads every `/proc/<pid>/stat` once and builds
//! the parent → children map, then [`ProcTable::agent`] answers each agent's
//! pid from that table, reading `/proc/<p>/io` only for the processes of
//! that agent's tree. The parsers are pure functions over `&str` so they are
//! tested without I/O, and the root is a path so tests can point the table
//! at a fake directory.
//!
//! Snapshots use [`ProcCache`] (in [`cache`]), which keeps what it learnt
//! between snapshots; [`ProcTable`] is the one-pass table, kept for
//! one-off readers.
//!
//! Nothing here fails: a process that vanished between two reads, a pid of
//! another user or a missing `/proc` just leaves the figures unknown.

pub mod cache;

pub use cache::{ProcCache, Walk};

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The fields of one `/proc/<pid>/stat` line that the envelope needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// Field 1.
    pub pid: i64,
    /// Field 2 without its parentheses.
    pub comm: String,
    /// Field 3, the state letter.
    pub state: char,
    /// Field 4.
    pub ppid: i64,
    /// Field 14, user-mode ticks.
    pub utime: u64,
    /// Field 15, kernel-mode ticks.
    pub stime: u64,
    /// Field 16, user-mode ticks of reaped children.
    pub cutime: u64,
    /// Field 17, kernel-mode ticks of reaped children.
    pub cstime: u64,
    /// Field 20, the number of threads.
    pub threads: u64,
    /// Field 22, ticks after boot when the process started.
    pub starttime: u64,
}

/// Parses one `/proc/<pid>/stat` line; `None` when it is not one.
///
/// The name (field 2) may hold spaces and parentheses, so the fields after
/// it are taken after the LAST `") "`, never by splitting the whole line.
pub fn parse_stat(line: &str) -> Option<Stat> {
    let open = line.find(" (")?;
    let close = line.rfind(") ")?;
    if close < open {
        return None;
    }
    let pid = line.get(..open)?.trim().parse().ok()?;
    let comm = line.get(open + 2..close)?.to_owned();
    // Walked once, without collecting: this runs for every process read.
    let mut rest = line.get(close + 2..)?.split_ascii_whitespace();
    let mut state_chars = rest.next()?.chars(); // field 3
    let state = state_chars.next()?;
    if state_chars.next().is_some() {
        return None;
    }
    let ppid = rest.next()?.parse().ok()?; // field 4
                                           // cutime and cstime are signed in the kernel; a negative one is garbage.
    let mut ticks = |skip: usize| rest.nth(skip)?.parse::<u64>().ok();
    let utime = ticks(14 - 5)?;
    let stime = ticks(0)?;
    let cutime = ticks(0)?;
    let cstime = ticks(0)?;
    let threads = ticks(20 - 18)?;
    let starttime = ticks(22 - 21)?;
    Some(Stat {
        pid,
        comm,
        state,
        ppid,
        utime,
        stime,
        cutime,
        cstime,
        threads,
        starttime,
    })
}

/// `/proc/<pid>/wchan`: `None` when empty or `0` (running, or hidden).
pub fn parse_wchan(text: &str) -> Option<String> {
    let t = text.trim();
    (!t.is_empty() && t != "0").then(|| t.to_owned())
}

/// The state to report for a process whose stat says `Z` while it still
/// has other threads: its main thread called `pthread_exit` and the rest
/// run on, so it is not "exited, not reaped". The state of its most active
/// live thread (`R` before `D` before `S` before any other) from
/// `<root>/<pid>/task/*/stat`; `None` when no thread is live (a real
/// zombie) or the threads cannot be read.
pub fn live_thread_state(root: &Path, own: &Stat) -> Option<char> {
    if own.state != 'Z' || own.threads <= 1 {
        return None;
    }
    let rank = |c: char| match c {
        'R' => 0,
        'D' => 1,
        'S' => 2,
        _ => 3,
    };
    let tasks = std::fs::read_dir(root.join(own.pid.to_string()).join("task")).ok()?;
    tasks
        .flatten()
        .filter_map(|t| read_file(&t.path().join("stat")).ok())
        .filter_map(|b| parse_stat(&String::from_utf8_lossy(&b)).map(|s| s.state))
        .filter(|c| !matches!(c, 'Z' | 'X' | 'x'))
        .min_by_key(|c| rank(*c))
}

/// Whether a stat line is a thread's that is not its group's leader: the
/// kernel gives such a task `exit_signal` (field 38) -1. `/proc/<tid>/stat`
/// answers for any thread id although only leaders are listed in `/proc`.
pub fn is_thread(line: &str) -> bool {
    line.rfind(") ")
        .and_then(|close| line.get(close + 2..))
        .and_then(|rest| rest.split_ascii_whitespace().nth(38 - 3))
        == Some("-1")
}

/// The two counters of `/proc/<pid>/io` the envelope carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Io {
    /// Bytes read, including from the page cache and pipes.
    pub rchar: u64,
    /// Bytes written.
    pub wchar: u64,
}

/// Parses `/proc/<pid>/io`; `None` unless both `rchar` and `wchar` are there.
pub fn parse_io(text: &str) -> Option<Io> {
    let mut rchar = None;
    let mut wchar = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim().parse::<u64>().ok();
        match key.trim() {
            "rchar" => rchar = value,
            "wchar" => wchar = value,
            _ => {}
        }
        // The kernel prints them first: the other five lines are not parsed.
        if rchar.is_some() && wchar.is_some() {
            break;
        }
    }
    Some(Io {
        rchar: rchar?,
        wchar: wchar?,
    })
}

/// What `/proc` says about one agent's pid and its process tree.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AgentProc {
    /// utime + stime of the pid.
    pub cpu_ticks: Option<u64>,
    /// starttime of the pid.
    pub start_ticks: Option<u64>,
    /// Own ticks and reaped children's, plus utime + stime of live descendants.
    pub tree_cpu_ticks: Option<u64>,
    /// rchar summed over the tree; `None` when the pid's own io is unreadable.
    pub io_rchar: Option<u64>,
    /// wchar summed over the tree; `None` when the pid's own io is unreadable.
    pub io_wchar: Option<u64>,
    /// The state letter.
    pub state: Option<String>,
    /// Whether the process exists (a zombie does); `None` when `/proc` cannot tell.
    pub alive: Option<bool>,
    /// The kernel function it sleeps in; `None` when unreadable, empty or `0`.
    pub wchan: Option<String>,
    /// The pid and its live descendants, the pid first (for `net_wait`).
    pub tree: Vec<i64>,
}

/// One pass over `/proc`: every process's stat line and the children map.
#[derive(Debug, Default)]
pub struct ProcTable {
    root: PathBuf,
    stats: HashMap<i64, Stat>,
    children: HashMap<i64, Vec<i64>>,
}

impl ProcTable {
    /// Reads every `<root>/<pid>/stat`. A missing root gives an empty table.
    pub fn scan(root: &Path) -> Self {
        let mut table = Self {
            root: root.to_owned(),
            ..Self::default()
        };
        let entries = match std::fs::read_dir(root) {
            Ok(entries) => entries,
            Err(err) => {
                tracing::debug!(root = %root.display(), error = %err, "no process table");
                return table;
            }
        };
        let pids: Vec<i64> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
            .collect();
        for stat in in_parallel(&pids, |chunk| read_stats(root, chunk)) {
            table.insert(stat);
        }
        table
    }

    /// Builds a table from stat lines already read (fake trees in tests).
    pub fn from_stats(root: &Path, stats: impl IntoIterator<Item = Stat>) -> Self {
        let mut table = Self {
            root: root.to_owned(),
            ..Self::default()
        };
        for stat in stats {
            table.insert(stat);
        }
        table
    }

    fn insert(&mut self, stat: Stat) {
        self.children.entry(stat.ppid).or_default().push(stat.pid);
        self.stats.insert(stat.pid, stat);
    }

    /// How many processes the pass saw.
    pub fn len(&self) -> usize {
        self.stats.len()
    }

    /// Whether the pass saw no process at all (no `/proc`).
    pub fn is_empty(&self) -> bool {
        self.stats.is_empty()
    }

    /// The stat line of `pid`, if it was alive during the pass.
    pub fn stat(&self, pid: i64) -> Option<&Stat> {
        self.stats.get(&pid)
    }

    /// Every live descendant of `pid` (not `pid` itself), parents first.
    pub fn descendants(&self, pid: i64) -> Vec<i64> {
        let mut out = Vec::new();
        // The pass is not atomic: a reused pid can make the map cyclic.
        let mut seen = HashSet::from([pid]);
        let mut next = 0;
        let mut frontier = vec![pid];
        while let Some(parent) = frontier.get(next).copied() {
            next += 1;
            for &child in self.children.get(&parent).map(Vec::as_slice).unwrap_or(&[]) {
                if seen.insert(child) {
                    frontier.push(child);
                    out.push(child);
                }
            }
        }
        out
    }

    /// The figures of one agent's pid; all `None` when it is not alive.
    pub fn agent(&self, pid: i64) -> AgentProc {
        let Some(own) = self.stats.get(&pid) else {
            return AgentProc::default();
        };
        let descendants = self.descendants(pid);
        let tree = descendants.iter().filter_map(|p| self.stats.get(p));
        let mut buf = Vec::with_capacity(1024);
        let mut figures = tree_figures(own, tree, |p| self.read_io(p, &mut buf), None);
        if let Some(live) = live_thread_state(&self.root, own) {
            figures.state = Some(live.to_string());
        }
        figures
    }

    fn read_io(&self, pid: i64, buf: &mut Vec<u8>) -> Option<Io> {
        let path = self.root.join(pid.to_string()).join("io");
        read_small(&path, buf).then(|| parse_io(&String::from_utf8_lossy(buf)))?
    }
}

/// Below this many items a second thread costs more than it saves.
const PARALLEL_MIN: usize = 64;

/// Runs `work` over `items`, split across the machine's cores when there
/// are many: each `/proc` read costs tens of microseconds of kernel time,
/// and a snapshot of thousands of processes should not be bound to one core.
pub fn in_parallel<T: Sync, R: Send>(items: &[T], work: impl Fn(&[T]) -> Vec<R> + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    if threads < 2 || items.len() < PARALLEL_MIN {
        return work(items);
    }
    let chunk = items.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let mut chunks = items.chunks(chunk);
        let first = chunks.next().unwrap_or(&[]);
        let handles: Vec<_> = chunks.map(|c| scope.spawn(|| work(c))).collect();
        let mut out = work(first);
        for handle in handles {
            // A panicking reader loses its chunk (those figures stay unknown), not the snapshot.
            out.extend(handle.join().unwrap_or_default());
        }
        out
    })
}

/// The stat lines of `pids`; a process that exited since the listing is skipped.
fn read_stats(root: &Path, pids: &[i64]) -> Vec<Stat> {
    let mut buf = Vec::with_capacity(1024);
    let mut path = root.to_path_buf();
    let mut out = Vec::with_capacity(pids.len());
    for &pid in pids {
        path.push(pid.to_string());
        path.push("stat");
        // The name may hold any bytes: read lossily rather than drop the process.
        if read_small(&path, &mut buf) {
            if let Some(stat) = parse_stat(&String::from_utf8_lossy(&buf)).filter(|s| s.pid == pid)
            {
                out.push(stat);
            }
        }
        path.pop();
        path.pop();
    }
    out
}

/// One agent's figures from its own `stat` and its live descendants'
/// (section 1): tree ticks are its own utime + stime + cutime + cstime plus
/// utime + stime of each descendant; io is summed over the tree, a
/// descendant whose io is unreadable (gone, another user) adding nothing.
pub(crate) fn tree_figures<'a>(
    own: &Stat,
    tree: impl Iterator<Item = &'a Stat> + Clone,
    mut io_of: impl FnMut(i64) -> Option<Io>,
    wchan: Option<String>,
) -> AgentProc {
    let tree_cpu_ticks = tree.clone().fold(
        own.utime
            .saturating_add(own.stime)
            .saturating_add(own.cutime)
            .saturating_add(own.cstime),
        |sum, s| sum.saturating_add(s.utime).saturating_add(s.stime),
    );
    let pids = std::iter::once(own.pid)
        .chain(tree.clone().map(|s| s.pid))
        .collect();
    let io = io_of(own.pid).map(|own_io| {
        tree.filter_map(|s| io_of(s.pid))
            .fold(own_io, |sum, io| Io {
                rchar: sum.rchar.saturating_add(io.rchar),
                wchar: sum.wchar.saturating_add(io.wchar),
            })
    });
    AgentProc {
        cpu_ticks: Some(own.utime.saturating_add(own.stime)),
        start_ticks: Some(own.starttime),
        tree_cpu_ticks: Some(tree_cpu_ticks),
        io_rchar: io.map(|io| io.rchar),
        io_wchar: io.map(|io| io.wchar),
        state: Some(own.state.to_string()),
        alive: Some(true),
        wchan,
        tree: pids,
    }
}

/// Reads a small `/proc` file whole; the error says why not (ENOENT: gone).
pub(crate) fn read_file(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut file = std::fs::File::open(path)?;
    let mut buf = Vec::new();
    let len = read_all(&mut file, &mut buf)?;
    buf.truncate(len);
    Ok(buf)
}

/// Reads an open `/proc` file from its start into `buf` (grown when it is
/// too small, never shrunk); the length read.
pub(crate) fn read_all(file: &mut std::fs::File, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    if buf.len() < 1024 {
        buf.resize(1024, 0);
    }
    let mut len = 0;
    loop {
        match file.read(&mut buf[len..]) {
            Ok(0) => return Ok(len),
            Ok(n) => {
                len += n;
                if len < buf.len() {
                    // procfs returns the whole file in one read when it fits.
                    return Ok(len);
                }
                buf.resize(buf.len() * 2, 0);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Reads a small `/proc` file into `buf`: one read(2) when it fits, since
/// each call regenerates the file in the kernel. False when unreadable.
fn read_small(path: &Path, buf: &mut Vec<u8>) -> bool {
    let Ok(mut file) = std::fs::File::open(path) else {
        buf.clear();
        return false;
    };
    match read_all(&mut file, buf) {
        Ok(len) => {
            buf.truncate(len);
            true
        }
        Err(_) => {
            buf.clear();
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SLEEP: &str = "4242 (sleep) S 4000 4242 4000 0 -1 4194304 90 0 0 0 3 5 7 11 20 0 1 0 987654 8515584 196 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";

    #[test]
    fn parses_a_plain_stat_line() {
        let s = parse_stat(SLEEP).expect("valid line");
        assert_eq!(s.pid, 4242);
        assert_eq!(s.comm, "sleep");
        assert_eq!(s.state, 'S');
        assert_eq!(s.ppid, 4000);
        assert_eq!((s.utime, s.stime, s.cutime, s.cstime), (3, 5, 7, 11));
        assert_eq!(s.starttime, 987654);
    }

    #[test]
    fn a_name_with_spaces_and_parentheses_does_not_shift_fields() {
        let line = SLEEP.replace("(sleep)", "(my agent) x (R) 1 2)");
        let s = parse_stat(&line).expect("valid line");
        assert_eq!(s.comm, "my agent) x (R) 1 2");
        assert_eq!(s.state, 'S');
        assert_eq!(s.ppid, 4000);
        assert_eq!(s.utime, 3);
        assert_eq!(s.starttime, 987654);
    }

    #[test]
    fn rejects_truncated_and_garbage_lines() {
        assert_eq!(parse_stat(""), None);
        assert_eq!(parse_stat("4242 (sleep) S 4000"), None);
        assert_eq!(parse_stat("x (sleep) S 1 2 3"), None);
        assert_eq!(
            parse_stat(&SLEEP.replace(" 3 5 7 11 ", " 3 5 -7 11 ")),
            None
        );
    }

    #[test]
    fn a_thread_is_told_from_a_process_by_its_exit_signal() {
        assert!(!is_thread(SLEEP));
        let fields: Vec<&str> = SLEEP.split(' ').collect();
        let mut thread = fields.clone();
        thread[37] = "-1";
        assert!(is_thread(&thread.join(" ")));
        assert!(!is_thread("4242 (sleep) S 4000"));
    }

    #[test]
    fn parses_io_and_requires_both_counters() {
        let io = "rchar: 1000\nwchar: 20\nsyscr: 5\nsyscw: 2\nread_bytes: 0\n";
        assert_eq!(
            parse_io(io),
            Some(Io {
                rchar: 1000,
                wchar: 20
            })
        );
        assert_eq!(parse_io("rchar: 1\n"), None);
        assert_eq!(parse_io(""), None);
    }

    fn stat(pid: i64, ppid: i64, ticks: [u64; 4]) -> Stat {
        Stat {
            pid,
            comm: format!("p{pid}"),
            state: 'S',
            ppid,
            utime: ticks[0],
            stime: ticks[1],
            cutime: ticks[2],
            cstime: ticks[3],
            threads: 1,
            starttime: 100 + pid as u64,
        }
    }

    #[test]
    fn tree_ticks_add_reaped_children_of_the_root_only() {
        let table = ProcTable::from_stats(
            Path::new("/nonexistent"),
            [
                stat(10, 1, [1, 2, 100, 200]),
                stat(11, 10, [3, 4, 1000, 1000]),
                stat(12, 11, [5, 6, 0, 0]),
                stat(13, 1, [7, 7, 0, 0]),
            ],
        );
        let a = table.agent(10);
        assert_eq!(a.cpu_ticks, Some(3));
        assert_eq!(a.tree_cpu_ticks, Some(1 + 2 + 100 + 200 + 3 + 4 + 5 + 6));
        assert_eq!(a.start_ticks, Some(110));
        assert_eq!(a.state.as_deref(), Some("S"));
        assert_eq!(a.io_rchar, None, "no io file under the fake root");
        assert_eq!(table.agent(99), AgentProc::default());
    }

    #[test]
    fn a_cyclic_parent_map_terminates() {
        let table = ProcTable::from_stats(
            Path::new("/nonexistent"),
            [stat(20, 21, [1, 0, 0, 0]), stat(21, 20, [1, 0, 0, 0])],
        );
        assert_eq!(table.descendants(20), vec![21]);
        assert_eq!(table.agent(20).tree_cpu_ticks, Some(2));
    }

    #[test]
    fn scans_a_fake_proc_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |pid: &str, file: &str, text: &str| {
            let d = dir.path().join(pid);
            std::fs::create_dir_all(&d).expect("mkdir");
            std::fs::write(d.join(file), text).expect("write");
        };
        write(
            "30",
            "stat",
            &SLEEP.replace("4242 (sleep) S 4000", "30 (a) R 1"),
        );
        write("30", "io", "rchar: 10\nwchar: 1\n");
        write(
            "31",
            "stat",
            &SLEEP.replace("4242 (sleep) S 4000", "31 (b) S 30"),
        );
        write("31", "io", "rchar: 5\nwchar: 2\n");
        // A child whose io is unreadable adds nothing; its CPU still counts.
        write(
            "32",
            "stat",
            &SLEEP.replace("4242 (sleep) S 4000", "32 (c) S 30"),
        );
        // A directory whose stat names another pid is ignored.
        write("33", "stat", SLEEP);
        write("self", "stat", SLEEP);
        let table = ProcTable::scan(dir.path());
        assert_eq!(table.len(), 3);
        let a = table.agent(30);
        assert_eq!(a.state.as_deref(), Some("R"));
        assert_eq!(a.io_rchar, Some(15));
        assert_eq!(a.io_wchar, Some(3));
        assert_eq!(a.tree_cpu_ticks, Some(3 + 5 + 7 + 11 + 2 * (3 + 5)));
        // The child's own io is unreadable: unknown, not zero.
        let c = table.agent(32);
        assert_eq!((c.io_rchar, c.io_wchar), (None, None));
        assert_eq!(c.cpu_ticks, Some(8));
    }

    #[test]
    fn parallel_work_keeps_the_order() {
        let items: Vec<u32> = (0..1000).collect();
        let out = in_parallel(&items, |chunk| chunk.iter().map(|i| i * 2).collect());
        assert_eq!(out, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        assert_eq!(
            in_parallel(&[] as &[u32], |c| c.to_vec()),
            Vec::<u32>::new()
        );
    }

    #[test]
    fn a_name_that_is_not_utf8_keeps_the_process() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().join("40");
        std::fs::create_dir_all(&d).expect("mkdir");
        let mut line = b"40 (bad\xff name) S 1".to_vec();
        line.extend_from_slice(SLEEP.split_once(" S 4000").expect("fixture").1.as_bytes());
        std::fs::write(d.join("stat"), line).expect("write");
        let table = ProcTable::scan(dir.path());
        assert_eq!(table.agent(40).state.as_deref(), Some("S"));
    }

    #[test]
    fn a_missing_root_gives_an_empty_table() {
        let table = ProcTable::scan(Path::new("/nonexistent/proc"));
        assert!(table.is_empty());
        assert_eq!(table.agent(1), AgentProc::default());
    }

    proptest! {
        #[test]
        fn stat_parser_never_panics(s in ".*") {
            let _ = parse_stat(&s);
        }

        #[test]
        fn stat_parser_never_panics_near_valid_lines(prefix in "[0-9 ()a-zR]{0,12}", cut in 0usize..200) {
            let line = format!("{prefix}{SLEEP}");
            let end = cut.min(line.len());
            let _ = parse_stat(&line[..end]);
        }

        #[test]
        fn io_parser_never_panics(s in ".*") {
            let _ = parse_io(&s);
        }

        #[test]
        fn io_parser_reads_what_was_written(r in any::<u64>(), w in any::<u64>()) {
            let text = format!("rchar: {r}\nwchar: {w}\nsyscr: 1\n");
            prop_assert_eq!(parse_io(&text), Some(Io { rchar: r, wchar: w }));
        }
    }
}
