//! The diagnosis: one sentence saying what a stuck agent is waiting on,
//! built from the body of the emitter's `GET /agents/{job_id}`
//! (CONTRACT.md section 3, the `diagnosis` key and its phrase table).
//!
//! Pure: a function of the body alone (no I/O, no clock), tested on bodies
//! recorded from real processes (`watchdog-core/tests/fixtures/agent_view/`).
//! The engine marks which alert lines want a diagnosis
//! ([`crate::engine::Emitted::diagnose`]); the binary fetches the body,
//! calls [`diagnose`] and completes the line with [`complete`].
//!
//! ## Order of precedence
//! One sentence can name one cause, so the causes are ranked by what an
//! on-call engineer needs to know first: the most certain, and the one that
//! explains the rest of the tree. First match wins, the agent before its
//! descendants on a tie:
//!
//! 0. the agent itself has exited and was not reaped (zombie);
//! 1. a process anywhere in the tree is **stopped** (`T`/`t`): nothing past
//!    it moves until it gets `SIGCONT`, whatever else it holds;
//! 2. a process anywhere is **uninterruptible** (`D`): stuck in the kernel,
//!    not even `SIGKILL` helps, so it is named with its `wchan`;
//! 3. the agent is **blocked reading stdin (pipe)** or **waiting for terminal
//!    input**: its own blocking read, seen in its `wchan`;
//! 4. a TCP socket anywhere in the tree is in **`CLOSE_WAIT`**: the peer
//!    closed the connection and the process never noticed (the field's
//!    "70 minutes in CLOSE_WAIT" hang);
//! 5. the agent is **waiting for a child** that does nothing named above
//!    (or only waits on network);
//! 6. a descendant (not one the agent waits for) is blocked reading stdin or
//!    a terminal;
//! 7. a descendant **waits for a child** of its own: an agent CLI (whose
//!    event loop sleeps in `epoll`, never in `do_wait`) running a tool, e.g.
//!    Claude Code's `bash -c 'sleep 20'`: the tool is what it waits on, not
//!    the model;
//! 8. a TCP connection is **waiting for a reply** (page 3): established,
//!    and data was sent after anything was last received (`sent_ago_s` <
//!    `received_ago_s`, or nothing ever received), the longest-waiting one
//!    named: `waiting 4m12s for a reply from 160.79.104.10:443 (request
//!    sent, nothing received since)`. An idle keep-alive connection
//!    (received after sent) is not waiting;
//! 9. established TCP sockets and nothing above: **waiting on network**.
//!
//! A wait for a child (`do_wait`, `kernel_wait4`) is never a cause by
//! itself: the sentence follows the child (recursively, a few levels deep,
//! the child that explains most first) and takes the child's rank, e.g.
//! "sh (pid 10) is waiting for child sleep (pid 11), which is stopped ...".
//! A process's own evidence is ranked in the same order (stopped, `D`, its
//! blocking read, its wait for a child, `CLOSE_WAIT`, network).
//!
//! `None` when the body shows none of the table's causes (a process
//! sleeping in `do_epoll_wait` with no TCP socket, an empty body): the alert
//! then goes out without a diagnosis rather than with a guess.
//!
//! Known ambiguity: `wchan` names the function, not the fd. A process whose
//! stdin is a pipe and that sleeps in `pipe_read` is reported as blocked on
//! stdin even if it is reading another pipe at that moment.

use std::collections::HashSet;

use shared_schema::{AgentView, AlertLine, FdKind, ProcessView, SocketView};

/// How deep a chain of waits for children is followed (the sentence stays
/// short); bodies come from the network, so a `ppid` cycle is cut too.
const MAX_CHAIN: usize = 6;

/// The one-sentence diagnosis of an agent's process tree, or `None` when
/// the body shows nothing from the contract's phrase table.
pub fn diagnose(view: &AgentView) -> Option<String> {
    let tree = Tree::new(&view.processes);
    let root = view.processes.first()?;
    let mut best: Option<(u8, String)> = None;
    let mut offer = |rank: u8, text: String| {
        if best.as_ref().map_or(true, |(r, _)| rank < *r) {
            best = Some((rank, text));
        }
    };
    // The agent first: its own state, its blocking read or the chain of
    // children it waits for.
    if let Some(found) = tree.explain(root, 0, &mut HashSet::new()) {
        offer(found.rank, format!("{} {}", who(root), found.text));
    }
    // Then every process for what the agent's own line may not show.
    for (i, p) in view.processes.iter().enumerate() {
        let is_root = i == 0;
        if let Some(cause) = cause(p) {
            let rank = match (&cause, is_root) {
                (Cause::Zombie, _) => continue, // the root's is above; a child's is harmless
                (Cause::StdinPipe | Cause::Tty(_), true) => continue, // above
                (Cause::StdinPipe | Cause::Tty(_), false) => 6,
                (c, _) => c.rank(),
            };
            let name = if is_root {
                who(p)
            } else {
                tree.who_with_parent(p)
            };
            offer(rank, format!("{name} {}", cause.text()));
        }
        // A descendant waiting for its own child: a tool the agent runs.
        if !is_root && waits_for_child(p) {
            let found = tree.follow_children(p, 1, &mut HashSet::from([p.pid]));
            offer(
                found.rank.max(7),
                format!("{} {}", tree.who_with_parent(p), found.text),
            );
        }
    }
    best.map(|(_, text)| text)
}

/// Puts `sentence` on `line`: in `diagnosis`, and at the end of the
/// summary after `: ` (CONTRACT.md section 3), through
/// [`AlertLine::set_diagnosis`]. A line that already carries one keeps its
/// summary and takes the new sentence.
pub fn complete(line: &mut AlertLine, sentence: String) {
    line.set_diagnosis(Some(sentence));
}

/// What one process shows by itself (without following its children).
#[derive(Debug, Clone, PartialEq)]
enum Cause {
    Zombie,
    Stopped { traced: bool },
    Uninterruptible(Option<String>),
    StdinPipe,
    Tty(Option<String>),
    CloseWait(Vec<String>),
    NetWait { remote: String, sent_ago_s: f64 },
    Network(Vec<String>),
}

impl Cause {
    /// Rank when the cause is the agent's own (see the module docs).
    fn rank(&self) -> u8 {
        match self {
            Self::Zombie => 0,
            Self::Stopped { .. } => 1,
            Self::Uninterruptible(_) => 2,
            Self::StdinPipe | Self::Tty(_) => 3,
            Self::CloseWait(_) => 4,
            Self::NetWait { .. } => 8,
            Self::Network(_) => 9,
        }
    }

    /// A verb phrase, to follow a process's name.
    fn text(&self) -> String {
        match self {
            Self::Zombie => "has exited and was not reaped (zombie)".to_owned(),
            Self::Stopped { traced: false } => {
                "is stopped (state T): it will not run until it gets SIGCONT".to_owned()
            }
            Self::Stopped { traced: true } => {
                "is stopped by a debugger or tracer (state t)".to_owned()
            }
            Self::Uninterruptible(Some(wchan)) => {
                format!("is in uninterruptible sleep (state D) in {wchan}")
            }
            Self::Uninterruptible(None) => "is in uninterruptible sleep (state D)".to_owned(),
            Self::StdinPipe => "is blocked reading stdin (pipe)".to_owned(),
            Self::Tty(Some(tty)) => format!("is waiting for terminal input on {tty}"),
            Self::Tty(None) => "is waiting for terminal input".to_owned(),
            Self::CloseWait(remotes) => format!(
                "has a connection in CLOSE_WAIT with {}: the peer closed it and this side never did{}",
                remotes[0],
                more(remotes.len(), "in CLOSE_WAIT")
            ),
            Self::NetWait { remote, sent_ago_s } => format!(
                "is waiting {} for a reply from {remote} (request sent, nothing received since)",
                crate::dur::human_secs(*sent_ago_s).replace(' ', "")
            ),
            Self::Network(remotes) => format!(
                "is waiting on network, connected to {}{}",
                remotes[0],
                more(remotes.len(), "connected")
            ),
        }
    }
}

/// What a process is waiting on, after following its children.
#[derive(Debug)]
struct Found {
    rank: u8,
    text: String,
}

/// The processes by parent, for following waits.
struct Tree<'a> {
    all: &'a [ProcessView],
}

impl<'a> Tree<'a> {
    fn new(all: &'a [ProcessView]) -> Self {
        Self { all }
    }

    fn children(&self, p: &ProcessView) -> impl Iterator<Item = &'a ProcessView> + '_ {
        let pid = p.pid;
        self.all
            .iter()
            .filter(move |c| c.ppid == Some(pid) && c.pid != pid)
    }

    /// `p`'s own cause, or the chain of children it waits for.
    fn explain(&self, p: &ProcessView, depth: usize, seen: &mut HashSet<i64>) -> Option<Found> {
        if depth > MAX_CHAIN || !seen.insert(p.pid) {
            return None;
        }
        let own = cause(p);
        if let Some(c) = &own {
            if c.rank() <= 3 {
                return Some(Found {
                    rank: c.rank(),
                    text: c.text(),
                });
            }
        }
        if waits_for_child(p) {
            return Some(self.follow_children(p, depth, seen));
        }
        own.map(|c| Found {
            rank: c.rank(),
            text: c.text(),
        })
    }

    /// "waiting for child X (pid N), which ...": the child that explains most.
    fn follow_children(&self, p: &ProcessView, depth: usize, seen: &mut HashSet<i64>) -> Found {
        let mut best: Option<(&ProcessView, Found)> = None;
        for child in self.children(p) {
            let mut found = self
                .explain(child, depth + 1, seen)
                .unwrap_or_else(|| Found {
                    rank: 5,
                    text: doing(child),
                });
            if cause(child) == Some(Cause::Zombie) {
                // The parent is about to reap it: not a cause of a hang.
                found.rank = 5;
            }
            if best.as_ref().map_or(true, |(_, b)| found.rank < b.rank) {
                best = Some((child, found));
            }
        }
        match best {
            Some((child, found)) => Found {
                // A child that merely sleeps or waits on network makes the
                // wait itself the finding (rank 5).
                rank: found.rank.min(5),
                text: format!("is waiting for child {}, which {}", who(child), found.text),
            },
            None => Found {
                rank: 5,
                text: "is waiting for child processes that are already gone".to_owned(),
            },
        }
    }

    /// "comm (pid N, child of comm pid M)".
    fn who_with_parent(&self, p: &ProcessView) -> String {
        let comm = p.comm.as_deref().unwrap_or("process");
        match p.ppid {
            Some(ppid) => match self.all.iter().find(|q| q.pid == ppid) {
                Some(parent) => format!(
                    "{comm} (pid {}, child of {} pid {ppid})",
                    p.pid,
                    parent.comm.as_deref().unwrap_or("process")
                ),
                None => format!("{comm} (pid {}, child of pid {ppid})", p.pid),
            },
            None => who(p),
        }
    }
}

/// "comm (pid N)".
fn who(p: &ProcessView) -> String {
    format!("{} (pid {})", p.comm.as_deref().unwrap_or("process"), p.pid)
}

/// What a process is doing when none of the causes apply, briefly.
fn doing(p: &ProcessView) -> String {
    match (p.state.as_deref(), p.wchan.as_deref()) {
        (Some("R"), _) => "is running".to_owned(),
        (Some("S" | "I"), Some(wchan)) => format!("is sleeping in {wchan}"),
        (Some("S" | "I"), None) => "is sleeping".to_owned(),
        (Some(state), _) => format!("is in state {state}"),
        (None, Some(wchan)) => format!("is in {wchan}"),
        (None, None) => "is in an unknown state".to_owned(),
    }
}

/// The first cause a process shows by itself, in the order of the module
/// docs (a wait for a child is handled by [`Tree::explain`]).
fn cause(p: &ProcessView) -> Option<Cause> {
    let state = p.state.as_deref().unwrap_or("");
    let wchan = p.wchan.as_deref().unwrap_or("");
    match state {
        "Z" => return Some(Cause::Zombie),
        "T" => return Some(Cause::Stopped { traced: false }),
        "t" => return Some(Cause::Stopped { traced: true }),
        "D" => return Some(Cause::Uninterruptible(p.wchan.clone())),
        _ => {}
    }
    let stdin = p.fds.iter().find(|fd| fd.fd == 0);
    let stdin_kind = stdin.map(|fd| fd.kind);
    if stdin_kind == Some(FdKind::Pipe) && reads_pipe(wchan) {
        return Some(Cause::StdinPipe);
    }
    if stdin_kind == Some(FdKind::Tty) && state == "S" && reads_tty(wchan, &p.sockets) {
        return Some(Cause::Tty(stdin.and_then(|fd| fd.target.clone())));
    }
    let close_wait = remotes(&p.sockets, "CLOSE_WAIT");
    if !close_wait.is_empty() {
        return Some(Cause::CloseWait(close_wait));
    }
    if let Some(w) = waiting_for_reply(&p.sockets) {
        return Some(Cause::NetWait {
            remote: w.remote.clone(),
            sent_ago_s: w.sent_ago_s.unwrap_or(0.0),
        });
    }
    let established = remotes(&p.sockets, "ESTABLISHED");
    if !established.is_empty() {
        return Some(Cause::Network(established));
    }
    None
}

/// The kernel's pipe read: `anon_pipe_read` (6.x), `pipe_read`, and the
/// older `pipe_wait_readable` / `pipe_wait`.
fn reads_pipe(wchan: &str) -> bool {
    wchan.contains("pipe_read") || wchan.starts_with("pipe_wait")
}

/// A read on a terminal sleeps in `wait_woken` (seen on 6.18 for `cat` on a
/// pty), `n_tty_read` or `tty_read`. A poll over fds (`do_epoll_wait`,
/// `do_select`, ...) with a terminal on stdin counts only when the process
/// has no TCP socket it could be polling instead; `wait_woken` alike, as
/// socket reads sleep there too.
fn reads_tty(wchan: &str, sockets: &[SocketView]) -> bool {
    if wchan.contains("n_tty_read") || wchan.contains("tty_read") {
        return true;
    }
    let polls = [
        "wait_woken",
        "do_epoll_wait",
        "ep_poll",
        "do_select",
        "do_sys_poll",
    ]
    .iter()
    .any(|f| wchan.contains(f));
    polls && sockets.is_empty()
}

/// A wait for a child: `do_wait` (seen on 6.18 for `sh` running a
/// command), `kernel_wait4`, `kernel_waitid`.
fn waits_for_child(p: &ProcessView) -> bool {
    let wchan = p.wchan.as_deref().unwrap_or("");
    wchan == "do_wait" || wchan.contains("wait4") || wchan.contains("waitid")
}

/// The established connection that has waited longest for a reply: data
/// went out after anything last came in (or nothing ever came in).
fn waiting_for_reply(sockets: &[SocketView]) -> Option<&SocketView> {
    sockets
        .iter()
        .filter(|s| s.state == "ESTABLISHED")
        .filter(|s| match (s.sent_ago_s, s.received_ago_s) {
            (Some(sent), Some(received)) => sent.is_finite() && sent < received,
            (Some(sent), None) => sent.is_finite(),
            (None, _) => false,
        })
        .max_by(|a, b| {
            let key = |s: &SocketView| s.sent_ago_s.unwrap_or(0.0);
            key(a).total_cmp(&key(b))
        })
}

/// The distinct remote addresses of the sockets in `state`, in fd order.
fn remotes(sockets: &[SocketView], state: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in sockets.iter().filter(|s| s.state == state) {
        if !out.contains(&s.remote) {
            out.push(s.remote.clone());
        }
    }
    out
}

/// " (and N more ...)" when there is more than one.
fn more(count: usize, what: &str) -> String {
    if count > 1 {
        format!(" (and {} more {what})", count - 1)
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared_schema::{FdMode, FdView};

    /// A recorded body (see `tests/fixtures/agent_view/README.md`).
    fn fixture(name: &str) -> AgentView {
        let path = format!(
            "{}/tests/fixtures/agent_view/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn diagnosis(name: &str) -> String {
        diagnose(&fixture(name)).unwrap_or_else(|| panic!("{name}: no diagnosis"))
    }

    #[test]
    fn cat_on_a_pipe_nobody_writes_is_blocked_reading_stdin() {
        let d = diagnosis("stdin_pipe");
        assert!(d.starts_with("cat (pid "), "{d}");
        assert!(d.contains("blocked reading stdin (pipe)"), "{d}");
    }

    #[test]
    fn cat_on_a_pty_is_waiting_for_terminal_input() {
        let d = diagnosis("tty");
        assert!(d.contains("waiting for terminal input on /dev/pts/"), "{d}");
    }

    #[test]
    fn peer_closed_connection_is_close_wait_with_the_remote() {
        let view = fixture("close_wait");
        let remote = view.processes[0].sockets[0].remote.clone();
        let d = diagnose(&view).unwrap_or_default();
        assert!(d.contains("CLOSE_WAIT"), "{d}");
        assert!(d.contains(&remote), "{d} lacks {remote}");
        assert!(remote.starts_with("127.0.0.1:"), "{remote}");
    }

    #[test]
    fn shell_running_sleep_is_waiting_for_child_with_comm_pid_and_doing() {
        let view = fixture("wait_child");
        let child = view.processes[1].pid;
        let d = diagnose(&view).unwrap_or_default();
        assert_eq!(
            d,
            format!(
                "sh (pid {}) is waiting for child sleep (pid {child}), which is sleeping in hrtimer_nanosleep",
                view.processes[0].pid
            )
        );
    }

    #[test]
    fn a_stopped_child_is_named_through_the_wait() {
        let d = diagnosis("wait_child_stopped");
        assert!(d.contains("waiting for child sleep (pid "), "{d}");
        assert!(d.contains("which is stopped (state T)"), "{d}");
    }

    #[test]
    fn sigstop_is_stopped() {
        let d = diagnosis("stopped");
        assert!(d.starts_with("sleep (pid "), "{d}");
        assert!(d.contains("stopped"), "{d}");
        assert!(d.contains("SIGCONT"), "{d}");
    }

    #[test]
    fn vfork_parent_is_uninterruptible_with_its_wchan() {
        let d = diagnosis("uninterruptible");
        assert!(d.contains("uninterruptible"), "{d}");
        assert!(d.contains("kernel_clone"), "{d}");
        assert!(d.starts_with("perl (pid "), "{d}");
    }

    #[test]
    fn established_socket_and_nothing_else_is_waiting_on_network() {
        let view = fixture("network");
        let remote = view.processes[0].sockets[0].remote.clone();
        let d = diagnose(&view).unwrap_or_default();
        assert!(d.contains("waiting on network"), "{d}");
        assert!(d.contains(&remote), "{d}");
        // fd 0 and fd 3 are the same connection: named once.
        assert!(!d.contains("more"), "{d}");
    }

    #[test]
    fn zombie_agent_says_so() {
        let d = diagnosis("zombie");
        assert!(d.contains("not reaped (zombie)"), "{d}");
    }

    #[test]
    fn a_hung_descendant_beats_the_agent_waiting_on_network() {
        // Recorded: cat reading a socket (wait_woken) whose child bash waits
        // on `sleep 600 | cat`; the inner cat is the one that hangs.
        let view = fixture("descendant_stdin_pipe");
        let inner = view
            .processes
            .iter()
            .rev()
            .find(|p| p.comm.as_deref() == Some("cat"))
            .map(|p| (p.pid, p.ppid))
            .unwrap_or_default();
        let d = diagnose(&view).unwrap_or_default();
        assert_eq!(
            d,
            format!(
                "cat (pid {}, child of bash pid {}) is blocked reading stdin (pipe)",
                inner.0,
                inner.1.unwrap_or_default()
            )
        );
    }

    #[test]
    fn every_recorded_body_has_a_diagnosis() {
        let dir = format!("{}/tests/fixtures/agent_view", env!("CARGO_MANIFEST_DIR"));
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|n| n.strip_suffix(".json").map(str::to_owned))
            .collect();
        names.sort();
        assert!(names.len() >= 10, "{names:?}");
        for name in names {
            // Printed so `--nocapture` shows the sentences of this kernel's bodies.
            println!("{name}: {}", diagnosis(&name));
        }
    }

    fn process(pid: i64, ppid: i64, comm: &str, state: &str, wchan: &str) -> ProcessView {
        ProcessView {
            pid,
            ppid: Some(ppid),
            comm: Some(comm.into()),
            state: Some(state.into()),
            wchan: Some(wchan.into()),
            ..ProcessView::default()
        }
    }

    fn socket(fd: i64, state: &str, remote: &str) -> SocketView {
        SocketView {
            fd,
            proto: "tcp".into(),
            state: state.into(),
            local: "10.0.0.5:51234".into(),
            remote: remote.into(),
            sent_ago_s: None,
            received_ago_s: None,
        }
    }

    fn view(processes: Vec<ProcessView>) -> AgentView {
        let mut v = fixture("wait_child");
        v.processes = processes;
        v
    }

    #[test]
    fn close_wait_anywhere_beats_the_agent_waiting_on_network() {
        let mut agent = process(10, 1, "node", "S", "do_epoll_wait");
        agent.sockets = vec![socket(20, "ESTABLISHED", "1.2.3.4:443")];
        let mut helper = process(11, 10, "curl", "S", "do_poll");
        helper.sockets = vec![socket(5, "CLOSE_WAIT", "93.184.216.34:443")];
        let d = diagnose(&view(vec![agent, helper])).unwrap_or_default();
        assert!(d.starts_with("curl (pid 11, child of node pid 10) has a connection in CLOSE_WAIT with 93.184.216.34:443"), "{d}");
    }

    #[test]
    fn stopped_grandchild_through_two_waits() {
        let d = diagnose(&view(vec![
            process(10, 1, "bash", "S", "do_wait"),
            process(11, 10, "make", "S", "kernel_wait4"),
            process(12, 11, "cc", "T", "do_signal_stop"),
        ]))
        .unwrap_or_default();
        assert_eq!(
            d,
            "bash (pid 10) is waiting for child make (pid 11), which is waiting for child cc (pid 12), \
             which is stopped (state T): it will not run until it gets SIGCONT"
        );
    }

    #[test]
    fn waits_prefer_the_child_that_explains_most() {
        let d = diagnose(&view(vec![
            process(10, 1, "sh", "S", "do_wait"),
            process(11, 10, "sleep", "S", "hrtimer_nanosleep"),
            process(12, 10, "rsync", "D", "folio_wait_bit_common"),
        ]))
        .unwrap_or_default();
        assert!(d.contains("child rsync (pid 12), which is in uninterruptible sleep (state D) in folio_wait_bit_common"), "{d}");
    }

    #[test]
    fn close_wait_lists_one_remote_and_counts_the_rest() {
        let mut agent = process(10, 1, "node", "S", "do_epoll_wait");
        agent.sockets = vec![
            socket(20, "CLOSE_WAIT", "1.2.3.4:443"),
            socket(21, "CLOSE_WAIT", "[2001:db8::1]:443"),
            socket(22, "ESTABLISHED", "5.6.7.8:443"),
        ];
        let d = diagnose(&view(vec![agent])).unwrap_or_default();
        assert_eq!(
            d,
            "node (pid 10) has a connection in CLOSE_WAIT with 1.2.3.4:443: the peer closed it \
             and this side never did (and 1 more in CLOSE_WAIT)"
        );
    }

    #[test]
    fn tty_on_stdin_while_polling_sockets_is_not_terminal_input() {
        let mut agent = process(10, 1, "node", "S", "do_epoll_wait");
        agent.fds = vec![FdView {
            fd: 0,
            kind: FdKind::Tty,
            target: Some("/dev/pts/3".into()),
            mode: Some(FdMode::ReadWrite),
            size: None,
            mtime: None,
        }];
        agent.sockets = vec![socket(20, "ESTABLISHED", "1.2.3.4:443")];
        let d = diagnose(&view(vec![agent.clone()])).unwrap_or_default();
        assert!(d.contains("waiting on network"), "{d}");
        agent.sockets.clear();
        let d = diagnose(&view(vec![agent])).unwrap_or_default();
        assert!(
            d.contains("waiting for terminal input on /dev/pts/3"),
            "{d}"
        );
    }

    fn timed(remote: &str, sent: f64, received: Option<f64>) -> SocketView {
        SocketView {
            sent_ago_s: Some(sent),
            received_ago_s: received,
            ..socket(30, "ESTABLISHED", remote)
        }
    }

    #[test]
    fn a_request_with_no_reply_is_waiting_for_a_reply_and_beats_waiting_on_network() {
        let mut agent = process(10, 1, "claude", "S", "do_epoll_wait");
        agent.sockets = vec![
            // An idle keep-alive: the reply came after the request.
            timed("1.2.3.4:443", 300.0, Some(299.0)),
            timed("160.79.104.10:443", 252.3, Some(260.1)),
            timed("160.79.104.11:443", 10.0, None),
        ];
        let d = diagnose(&view(vec![agent.clone()])).unwrap_or_default();
        assert_eq!(
            d,
            "claude (pid 10) is waiting 4m12s for a reply from 160.79.104.10:443 \
             (request sent, nothing received since)"
        );
        // Only keep-alives: the generic phrase.
        agent.sockets = vec![timed("1.2.3.4:443", 300.0, Some(299.0))];
        let d = diagnose(&view(vec![agent.clone()])).unwrap_or_default();
        assert!(
            d.contains("waiting on network, connected to 1.2.3.4:443"),
            "{d}"
        );
        // An emitter without tcp_info times: the generic phrase too.
        agent.sockets = vec![socket(30, "ESTABLISHED", "160.79.104.10:443")];
        let d = diagnose(&view(vec![agent.clone()])).unwrap_or_default();
        assert!(d.contains("waiting on network"), "{d}");
        // CLOSE_WAIT is still the surer cause.
        agent.sockets = vec![
            timed("160.79.104.10:443", 252.3, None),
            socket(31, "CLOSE_WAIT", "93.184.216.34:443"),
        ];
        let d = diagnose(&view(vec![agent])).unwrap_or_default();
        assert!(d.contains("CLOSE_WAIT with 93.184.216.34:443"), "{d}");
    }

    #[test]
    fn an_agent_cli_running_a_tool_is_waiting_for_that_child_not_for_the_model() {
        // Claude Code running `sleep 20` through its Bash tool: node in
        // epoll, its shell in do_wait; a telemetry POST happens to be in flight.
        let mut agent = process(10, 1, "claude", "S", "do_epoll_wait");
        agent.sockets = vec![
            timed("160.79.104.10:443", 30.0, Some(29.0)),
            timed("127.0.0.1:4318", 0.2, Some(5.0)),
        ];
        let d = diagnose(&view(vec![
            agent,
            process(11, 10, "bash", "S", "do_wait"),
            process(12, 11, "sleep", "S", "hrtimer_nanosleep"),
        ]))
        .unwrap_or_default();
        assert_eq!(
            d,
            "bash (pid 11, child of claude pid 10) is waiting for child sleep (pid 12), \
             which is sleeping in hrtimer_nanosleep"
        );
    }

    #[test]
    fn a_child_waiting_for_a_reply_is_named_through_the_wait() {
        let mut curl = process(11, 10, "curl", "S", "do_poll");
        curl.sockets = vec![timed("10.0.0.9:8080", 61.0, None)];
        let d =
            diagnose(&view(vec![process(10, 1, "sh", "S", "do_wait"), curl])).unwrap_or_default();
        assert_eq!(
            d,
            "sh (pid 10) is waiting for child curl (pid 11), which is waiting 1m1s for a reply \
             from 10.0.0.9:8080 (request sent, nothing received since)"
        );
    }

    #[test]
    fn nothing_from_the_table_is_none() {
        assert_eq!(
            diagnose(&view(vec![process(10, 1, "node", "S", "do_epoll_wait")])),
            None
        );
        assert_eq!(diagnose(&view(vec![])), None);
    }

    #[test]
    fn a_stopped_child_among_many_is_found_through_the_wait() {
        let mut ps = vec![process(10, 1, "xargs", "S", "do_wait")];
        for pid in 11..30 {
            ps.push(process(pid, 10, "sleep", "S", "hrtimer_nanosleep"));
        }
        ps.push(process(30, 10, "grep", "T", "do_signal_stop"));
        let d = diagnose(&view(ps)).unwrap_or_default();
        assert!(
            d.starts_with("xargs (pid 10) is waiting for child grep (pid 30), which is stopped"),
            "{d}"
        );
    }

    #[test]
    fn a_long_chain_is_cut_short() {
        let mut ps = vec![process(10, 1, "sh", "S", "do_wait")];
        for pid in 11..40 {
            ps.push(process(pid, pid - 1, "sh", "S", "do_wait"));
        }
        let d = diagnose(&view(ps)).unwrap_or_default();
        assert_eq!(d.matches("waiting for child").count(), MAX_CHAIN + 1, "{d}");
    }

    #[test]
    fn a_ppid_cycle_terminates() {
        let d = diagnose(&view(vec![
            process(10, 11, "a", "S", "do_wait"),
            process(11, 10, "b", "S", "do_wait"),
        ]));
        assert!(d.is_some_and(|d| d.starts_with("a (pid 10) is waiting for child b (pid 11)")));
    }

    #[test]
    fn an_unknown_state_without_fds_is_none_not_a_panic() {
        let p = ProcessView {
            pid: 1,
            ..ProcessView::default()
        };
        assert_eq!(diagnose(&view(vec![p])), None);
    }
}
