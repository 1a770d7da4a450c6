//! Which process of the agents' trees holds a socket, from the
//! `socket:[N]` links in `/proc/<pid>/fd`.
//!
//! Reading every fd of every tree process each snapshot would cost more
//! than the rest of the snapshot (a `readlink` per fd), so fds are read
//! only to place a waiting connection not placed yet, and each process at
//! most once per socket generation: a process whose fds were read after a
//! socket first appeared in the dump cannot hold that socket (barring an
//! fd passed over a unix socket), so only processes read before that, or
//! never, are read for it. A connection held by no agent therefore costs
//! one pass over the trees when it appears and then nothing, except a
//! read of each process that joins a tree while it lasts.

use std::collections::{HashMap, HashSet};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// What is known of socket holders, kept between snapshots.
#[derive(Debug)]
pub struct Owners {
    root: PathBuf,
    /// The current call; a generation counter, not a clock.
    generation: u64,
    /// Socket inode -> when it was first seen in the dump.
    seen: HashMap<u64, u64>,
    /// Socket inode -> the process whose fds held it when last read.
    holder: HashMap<u64, i64>,
    /// Tree process -> when its fds were last read.
    scanned: HashMap<i64, u64>,
    /// fd directories read in the last call (tests and benchmarks).
    pub scans: usize,
}

impl Owners {
    /// Holders looked up under `root` (normally `/proc`).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            generation: 0,
            seen: HashMap::new(),
            holder: HashMap::new(),
            scanned: HashMap::new(),
            scans: 0,
        }
    }

    /// The holder of each of `wanted` among `members` (every process of
    /// every tree, each once, in the order to search them); `live` is
    /// every socket inode of this dump.
    pub fn resolve(
        &mut self,
        wanted: &[u64],
        members: &[i64],
        live: &HashSet<u64>,
    ) -> HashMap<u64, i64> {
        self.scans = 0;
        self.generation += 1;
        let now = self.generation;
        self.seen.retain(|inode, _| live.contains(inode));
        self.holder.retain(|inode, _| live.contains(inode));
        for &inode in live {
            self.seen.entry(inode).or_insert(now);
        }
        let in_tree: HashSet<i64> = members.iter().copied().collect();
        self.scanned.retain(|pid, _| in_tree.contains(pid));

        let mut found = HashMap::new();
        let mut open: Vec<u64> = Vec::new();
        for &inode in wanted {
            match self.holder.get(&inode) {
                Some(pid) if in_tree.contains(pid) => {
                    found.insert(inode, *pid);
                }
                _ => open.push(inode),
            }
        }
        for &pid in members {
            if open.is_empty() {
                break;
            }
            let read_at = self.scanned.get(&pid).copied();
            // Read after every open socket appeared: it holds none of them.
            let stale = open
                .iter()
                .any(|i| read_at.map_or(true, |at| at < self.seen.get(i).copied().unwrap_or(now)));
            if !stale {
                continue;
            }
            self.scan(pid, live);
            open.retain(|inode| match self.holder.get(inode) {
                Some(&holder) if holder == pid => {
                    found.insert(*inode, pid);
                    false
                }
                _ => true,
            });
        }
        found
    }

    /// Reads the fds of `pid`, remembering it as the holder of each live socket.
    fn scan(&mut self, pid: i64, live: &HashSet<u64>) {
        self.scans += 1;
        self.scanned.insert(pid, self.generation);
        let dir = self.root.join(pid.to_string()).join("fd");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        for entry in entries.flatten() {
            let Ok(target) = std::fs::read_link(entry.path()) else {
                continue;
            };
            if let Some(inode) = socket_inode(target.as_os_str().as_bytes()) {
                if live.contains(&inode) {
                    self.holder.insert(inode, pid);
                }
            }
        }
    }
}

/// The inode of a `socket:[N]` link target.
pub fn socket_inode(target: &[u8]) -> Option<u64> {
    let digits = target.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn fake(root: &Path, pid: i64, links: &[&str]) {
        let dir = root.join(pid.to_string()).join("fd");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        for (fd, target) in links.iter().enumerate() {
            std::os::unix::fs::symlink(target, dir.join(fd.to_string())).expect("symlink");
        }
    }

    fn live(inodes: &[u64]) -> HashSet<u64> {
        inodes.iter().copied().collect()
    }

    #[test]
    fn socket_links() {
        assert_eq!(socket_inode(b"socket:[77]"), Some(77));
        assert_eq!(socket_inode(b"pipe:[77]"), None);
        assert_eq!(socket_inode(b"socket:[]"), None);
        assert_eq!(socket_inode(b"socket:[7x]"), None);
    }

    #[test]
    fn fds_are_read_once_per_new_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        fake(dir.path(), 10, &["/dev/null", "socket:[100]"]);
        fake(dir.path(), 11, &["socket:[200]", "pipe:[5]"]);
        let mut owners = Owners::new(dir.path());
        let all = live(&[100, 200, 300]);
        let got = owners.resolve(&[200], &[10, 11], &all);
        assert_eq!(got.get(&200), Some(&11));
        assert_eq!(owners.scans, 2);
        // Known now: no fd is read again.
        let got = owners.resolve(&[100, 200], &[10, 11], &all);
        assert_eq!((got.get(&100), got.get(&200)), (Some(&10), Some(&11)));
        assert_eq!(owners.scans, 0);
        // 300 is no agent's: one more look at processes read before it... none.
        let got = owners.resolve(&[300], &[10, 11], &all);
        assert!(got.is_empty());
        assert_eq!(owners.scans, 0, "both were read after 300 appeared");
        // A socket that appears later is looked for again.
        let all = live(&[100, 200, 300, 400]);
        fake(dir.path(), 11, &["socket:[200]", "socket:[400]"]);
        let got = owners.resolve(&[400, 300], &[10, 11], &all);
        assert_eq!(got.get(&400), Some(&11));
        assert_eq!(owners.scans, 2);
        // Nothing new: nothing read, 300 still nobody's.
        let got = owners.resolve(&[400, 300], &[10, 11], &all);
        assert_eq!(owners.scans, 0);
        assert_eq!(got.len(), 1);
    }

    #[test]
    fn a_process_that_joins_a_tree_is_read_for_old_sockets() {
        let dir = tempfile::tempdir().expect("tempdir");
        fake(dir.path(), 10, &["/dev/null"]);
        fake(dir.path(), 12, &["socket:[500]"]);
        let mut owners = Owners::new(dir.path());
        let all = live(&[500]);
        assert!(owners.resolve(&[500], &[10], &all).is_empty());
        assert_eq!(owners.scans, 1);
        // 12 joins (a job marked running after its agent connected).
        let got = owners.resolve(&[500], &[10, 12], &all);
        assert_eq!(got.get(&500), Some(&12));
        assert_eq!(owners.scans, 1, "only the newcomer is read");
    }

    #[test]
    fn a_holder_that_left_the_trees_is_not_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        fake(dir.path(), 10, &["socket:[600]"]);
        fake(dir.path(), 11, &["/dev/null"]);
        let mut owners = Owners::new(dir.path());
        let all = live(&[600]);
        assert_eq!(owners.resolve(&[600], &[10, 11], &all).get(&600), Some(&10));
        assert!(owners.resolve(&[600], &[11], &all).is_empty());
        // Gone from the dump: forgotten.
        owners.resolve(&[], &[11], &live(&[]));
        assert!(owners.holder.is_empty() && owners.seen.is_empty());
    }

    #[test]
    fn unreadable_fds_hold_nothing() {
        let mut owners = Owners::new("/nonexistent/proc");
        assert!(owners.resolve(&[1], &[1, 2], &live(&[1])).is_empty());
        assert_eq!(owners.scans, 2);
    }
}
