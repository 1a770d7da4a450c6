//! What a real agent CLI's process tree does, read from `/proc` the way the
//! emitter's contract sums it: CPU ticks (`utime + stime + cutime + cstime`
//! of the agent plus `utime + stime` of every live descendant) and
//! `rchar + wchar` over the same tree. The idle probe
//! (`src/bin/agent_idle_probe.rs`) samples it to measure an agent hung on
//! a model call against one that works.

use std::collections::HashMap;

/// One reading of a process tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TreeSample {
    /// Tree CPU ticks, as `tree_cpu_ticks`.
    pub ticks: u64,
    /// Σ `rchar` over the tree.
    pub rchar: u64,
    /// Σ `wchar` over the tree.
    pub wchar: u64,
    /// Processes in the tree (the agent included).
    pub processes: usize,
}

/// The fields of `/proc/<pid>/stat` the sums need.
#[derive(Debug, Clone, Copy)]
struct Stat {
    ppid: u32,
    own: u64,
    children: u64,
}

fn read_stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name may hold spaces and parentheses: fields start after the last ") ".
    let rest = &text[text.rfind(") ")? + 2..];
    let f: Vec<&str> = rest.split_ascii_whitespace().collect();
    // rest[0] is field 3 (state): field n is f[n - 3].
    let num = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    Some(Stat {
        ppid: u32::try_from(num(4)?).ok()?,
        own: num(14)? + num(15)?,
        children: num(16)? + num(17)?,
    })
}

fn read_io(pid: u32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    Some((field("rchar:")?, field("wchar:")?))
}

/// The live descendants of `root` (not `root` itself), found by one pass
/// over `/proc` (this kernel has no `task/<tid>/children`).
pub fn descendants(root: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut parent: HashMap<u32, u32> = HashMap::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(st) = read_stat(pid) {
            parent.insert(pid, st.ppid);
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for (&child, &pp) in &parent {
            if pp == p && child != root {
                out.push(child);
                frontier.push(child);
            }
        }
    }
    out
}

/// Reads the tree of `root` now; `None` when `root` is gone.
pub fn sample_tree(root: u32) -> Option<TreeSample> {
    let st = read_stat(root)?;
    let (r, w) = read_io(root).unwrap_or((0, 0));
    let mut s = TreeSample {
        ticks: st.own + st.children,
        rchar: r,
        wchar: w,
        processes: 1,
    };
    for pid in descendants(root) {
        if let Some(d) = read_stat(pid) {
            s.ticks += d.own;
            s.processes += 1;
            if let Some((r, w)) = read_io(pid) {
                s.rchar += r;
                s.wchar += w;
            }
        }
    }
    Some(s)
}

/// `/proc/<pid>/wchan`, when readable and not `0`.
pub fn wchan(pid: u32) -> Option<String> {
    let w = std::fs::read_to_string(format!("/proc/{pid}/wchan")).ok()?;
    let w = w.trim();
    (!w.is_empty() && w != "0").then(|| w.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_tree_is_readable_and_counts_this_process() {
        let me = std::process::id();
        let s = sample_tree(me).expect("our own /proc entry");
        assert!(s.processes >= 1);
        assert!(s.rchar > 0, "a test binary has read its own files: {s:?}");
    }

    #[test]
    fn a_child_is_a_descendant() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("sleep");
        let found = descendants(std::process::id()).contains(&child.id());
        let _ = child.kill();
        let _ = child.wait();
        assert!(found);
    }
}
