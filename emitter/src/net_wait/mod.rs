//! `agents[i].net_wait`: the agent tree's TCP connection that has waited
//! longest for a reply (CONTRACT.md section 1, "net_wait", page 3), and the
//! per-socket times of the up-close view.
//!
//! One `sock_diag` dump per snapshot for all agents ([`diag`]): the
//! `ESTABLISHED` and `LISTEN` TCP sockets of both families with their
//! `tcp_info`. A connection is **waiting** when it is `ESTABLISHED`, data
//! was sent on it, and nothing was received since (`lastsnd < lastrcv`, or
//! nothing ever received). Not waiting, although the times would say so:
//! - the accepting end of a connection (its local port is one a `LISTEN`
//!   socket serves): a server that answered is idle, not awaiting a reply;
//! - a connection to one of the emitter's own listeners ([`own_listener`]):
//!   an agent's OTLP export to the emitter, or a watchdog's poll, waits on
//!   the emitter itself, and the emitter must not report itself as the
//!   thing an agent is stuck on.
//!
//! Loopback connections count (a local model proxy is a real wait). Only
//! waiting connections are looked up in the trees' fds ([`owners`]), so a
//! snapshot where nothing waits costs the dump alone.
//!
//! The dump sees the emitter's own network namespace: an agent in another
//! one (a container with its own network) has no `net_wait`. Where the
//! kernel refuses (no netlink, a seccomp filter, EPERM) every `net_wait` is
//! `null`, logged once.

pub mod diag;
pub mod owners;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use netlink_packet_sock_diag::inet::StateFlags;
use shared_schema::NetWait;

pub use diag::{DiagError, Dumper, TcpSocket, TcpTimes, ESTABLISHED, LISTEN};
pub use owners::Owners;

/// The emitter's own listening addresses, process-wide.
static OWN: Mutex<Vec<(u64, SocketAddr)>> = Mutex::new(Vec::new());
static NEXT_OWN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Keeps an address among the emitter's own listeners until dropped.
#[derive(Debug)]
pub struct OwnListener(u64);

impl Drop for OwnListener {
    fn drop(&mut self) {
        OWN.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(id, _)| *id != self.0);
    }
}

/// Marks `addr` as a listener of this emitter while the guard lives:
/// connections to it are never an agent's `net_wait`.
pub fn own_listener(addr: SocketAddr) -> OwnListener {
    let id = NEXT_OWN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    OWN.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push((id, addr));
    OwnListener(id)
}

fn own_listeners() -> Vec<SocketAddr> {
    OWN.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .map(|(_, a)| *a)
        .collect()
}

/// The local addresses that `LISTEN` sockets serve.
#[derive(Debug, Default)]
pub struct Listening(HashSet<(IpAddr, u16)>);

impl Listening {
    /// From the `LISTEN` sockets of a dump.
    pub fn of(sockets: &[TcpSocket]) -> Self {
        Self(
            sockets
                .iter()
                .filter(|s| s.state == LISTEN)
                .map(|s| (s.local.ip().to_canonical(), s.local.port()))
                .collect(),
        )
    }

    /// Whether `s` is the accepting end of a connection to one of them.
    pub fn serves(&self, s: &TcpSocket) -> bool {
        let port = s.local.port();
        [
            s.local.ip().to_canonical(),
            IpAddr::from([0u8; 4]),
            IpAddr::from([0u16; 8]),
        ]
        .iter()
        .any(|ip| self.0.contains(&(*ip, port)))
    }
}

/// Whether `s` goes to one of `own` (a wildcard listener matches a peer on
/// this host: loopback, or the connection's own local address).
fn to_own(s: &TcpSocket, own: &[SocketAddr]) -> bool {
    let remote = s.remote.ip().to_canonical();
    own.iter().any(|l| {
        let ip = l.ip().to_canonical();
        l.port() == s.remote.port()
            && (ip == remote
                || (ip.is_unspecified()
                    && (remote.is_loopback() || remote == s.local.ip().to_canonical())))
    })
}

/// How long one connection has waited.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Wait {
    /// Seconds since data was last sent.
    pub sent_ago_s: f64,
    /// Seconds since data was last received; `None` when nothing ever was.
    pub received_ago_s: Option<f64>,
}

fn seconds(ms: u32) -> f64 {
    f64::from(ms) / 1000.0
}

/// Whether `s` waits for a reply (see the module's rule), and since when.
pub fn waiting(s: &TcpSocket, listening: &Listening, own: &[SocketAddr]) -> Option<Wait> {
    if s.state != ESTABLISHED {
        return None;
    }
    let t = s.times?;
    if t.sent_any == Some(false) || listening.serves(s) || to_own(s, own) {
        return None;
    }
    // A kernel too old to say whether anything came counts the times only.
    let received = (t.received_any != Some(false)).then_some(t.last_data_recv_ms);
    if received.is_some_and(|r| t.last_data_sent_ms >= r) {
        return None;
    }
    Some(Wait {
        sent_ago_s: seconds(t.last_data_sent_ms),
        received_ago_s: received.map(seconds),
    })
}

/// `(sent_ago_s, received_ago_s)` of one socket for the up-close view:
/// `None` for a listener, and for a direction where nothing ever went.
pub fn ages(s: &TcpSocket) -> (Option<f64>, Option<f64>) {
    let Some(t) = s.times.filter(|_| s.state != LISTEN) else {
        return (None, None);
    };
    let sent = (t.sent_any != Some(false)).then(|| seconds(t.last_data_sent_ms));
    let received = (t.received_any != Some(false)).then(|| seconds(t.last_data_recv_ms));
    (sent, received)
}

/// One dump of every TCP socket (all states) by inode, for the up-close
/// view; `None` where the kernel refuses.
pub fn sockets_by_inode() -> Option<HashMap<u64, TcpSocket>> {
    let mut out = Vec::new();
    let dumped = Dumper::open().and_then(|mut d| d.dump(StateFlags::all(), &mut out));
    match dumped {
        Ok(()) => Some(out.into_iter().map(|s| (s.inode, s)).collect()),
        Err(err) => {
            tracing::debug!(error = %err, "no tcp_info for the up-close view");
            None
        }
    }
}

/// The whole TCP table is dumped at most this often. A dump walks every
/// bucket of the kernel's hash table whatever the number of sockets (1.1 ms
/// of kernel time per family for the 262,144 buckets of a 24 GiB machine),
/// twice the rest of a snapshot at 100 agents; between two dumps only the
/// connections the last dump found in the agents' trees are looked up, one
/// hash lookup each, so a connection opened since is seen at the next dump.
pub const FULL_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// While the namespace's TCP socket counts (`/proc/net/sockstat`) stay the
/// same, no connection was opened, and the dump waits up to this long.
pub const FULL_QUIET: std::time::Duration = std::time::Duration::from_secs(30);

/// `inuse` and `alloc` of the `TCP:` line of `/proc/net/sockstat`.
pub fn parse_sockstat(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find_map(|l| l.strip_prefix("TCP:"))?;
    let mut words = line.split_ascii_whitespace();
    let mut inuse = None;
    let mut alloc = None;
    while let (Some(key), Some(value)) = (words.next(), words.next()) {
        match key {
            "inuse" => inuse = value.parse().ok(),
            "alloc" => alloc = value.parse().ok(),
            _ => {}
        }
    }
    Some((inuse?, alloc?))
}

/// What `net_wait` keeps between snapshots: the netlink socket, what is
/// known of socket holders, and the agents' connections of the last dump.
#[derive(Debug)]
pub struct NetWatch {
    enabled: bool,
    dumper: Option<Dumper>,
    owners: Owners,
    sockets: Vec<TcpSocket>,
    listening: Listening,
    /// The agents' `ESTABLISHED` connections and the process holding each.
    tracked: Vec<(TcpSocket, i64)>,
    last_full: Option<std::time::Instant>,
    full_every: std::time::Duration,
    /// `<proc>/net/sockstat`, and its TCP counts at the last dump.
    sockstat: PathBuf,
    counts: Option<(u64, u64)>,
    /// The last failure was logged; cleared by a dump that works.
    warned: bool,
    /// Whole-table dumps in the last call (0 or 1; tests and benchmarks).
    pub dumps: usize,
    /// Single-socket lookups in the last call.
    pub lookups: usize,
}

impl NetWatch {
    /// Looks fds up under `proc_root` (normally `/proc`).
    pub fn new(proc_root: impl Into<PathBuf>) -> Self {
        let proc_root = proc_root.into();
        Self {
            enabled: true,
            dumper: None,
            sockstat: proc_root.join("net/sockstat"),
            counts: None,
            owners: Owners::new(proc_root),
            sockets: Vec::new(),
            listening: Listening::default(),
            tracked: Vec::new(),
            last_full: None,
            full_every: FULL_EVERY,
            warned: false,
            dumps: 0,
            lookups: 0,
        }
    }

    /// Turns the reading off (every `net_wait` then stays `null`) or on.
    pub fn set_enabled(&mut self, on: bool) {
        self.enabled = on;
    }

    /// Dumps the whole table at most this often ([`FULL_EVERY`] unless set;
    /// zero dumps at every call; [`FULL_QUIET`] while no socket was opened).
    pub fn set_full_every(&mut self, every: std::time::Duration) {
        self.full_every = every;
    }

    /// fd directories read in the last call.
    pub fn scans(&self) -> usize {
        self.owners.scans
    }

    /// The `net_wait` of each agent, given its tree (its pid first, then
    /// its live descendants; empty when not alive).
    pub fn waits(&mut self, trees: &[Vec<i64>]) -> Vec<Option<NetWait>> {
        self.dumps = 0;
        self.lookups = 0;
        let mut out = vec![None; trees.len()];
        if !self.enabled || trees.iter().all(Vec::is_empty) {
            return out;
        }
        let mut agents_of: HashMap<i64, Vec<usize>> = HashMap::new();
        let mut members = Vec::new();
        for (agent, tree) in trees.iter().enumerate() {
            for &pid in tree {
                let list = agents_of.entry(pid).or_default();
                if list.is_empty() {
                    members.push(pid);
                }
                list.push(agent);
            }
        }
        let counts = std::fs::read_to_string(&self.sockstat)
            .ok()
            .and_then(|t| parse_sockstat(&t));
        // Unchanged counts (and readable ones) let the dump wait longer.
        let quiet = counts.is_some() && counts == self.counts;
        let every = if quiet && !self.full_every.is_zero() {
            self.full_every.max(FULL_QUIET)
        } else {
            self.full_every
        };
        let full = self.last_full.is_none_or_elapsed(every);
        if full {
            self.counts = counts;
        }
        let read = if full {
            self.full(&members)
        } else {
            self.refresh()
        };
        if let Err(err) = read {
            if !self.warned {
                tracing::warn!(error = %err, "no net_wait: the kernel's TCP table cannot be read");
                self.warned = true;
            }
            // A socket left mid-answer would confuse the next dump.
            self.dumper = None;
            self.tracked.clear();
            self.last_full = None;
            return out;
        }
        self.warned = false;
        let own = own_listeners();
        for (s, pid) in &self.tracked {
            let Some(wait) = waiting(s, &self.listening, &own) else {
                continue;
            };
            for &agent in agents_of.get(pid).map(Vec::as_slice).unwrap_or(&[]) {
                let slot = &mut out[agent];
                if slot
                    .as_ref()
                    .is_some_and(|w| w.sent_ago_s >= wait.sent_ago_s)
                {
                    continue;
                }
                *slot = Some(NetWait {
                    remote: s.remote.to_string(),
                    sent_ago_s: wait.sent_ago_s,
                    received_ago_s: wait.received_ago_s,
                    pid: Some(*pid),
                });
            }
        }
        out
    }

    fn dumper(&mut self) -> Result<&mut Dumper, DiagError> {
        if self.dumper.is_none() {
            self.dumper = Some(Dumper::open()?);
        }
        self.dumper
            .as_mut()
            .ok_or(DiagError::Malformed("no netlink socket"))
    }

    /// One dump of the whole table; the agents' connections in it become
    /// the tracked ones.
    fn full(&mut self, members: &[i64]) -> Result<(), DiagError> {
        self.sockets.clear();
        let mut sockets = std::mem::take(&mut self.sockets);
        let dumped = self
            .dumper()
            .and_then(|d| d.dump(StateFlags::ESTABLISHED | StateFlags::LISTEN, &mut sockets));
        self.sockets = sockets;
        dumped?;
        self.dumps = 1;
        self.last_full = Some(std::time::Instant::now());
        self.listening = Listening::of(&self.sockets);
        let own = own_listeners();
        // Every connection that could wait, not only those waiting now: a
        // kept-alive connection idle at this dump may carry the next request.
        let could: Vec<&TcpSocket> = self
            .sockets
            .iter()
            .filter(|s| s.state == ESTABLISHED && !self.listening.serves(s) && !to_own(s, &own))
            .collect();
        let wanted: Vec<u64> = could.iter().map(|s| s.inode).collect();
        let live: HashSet<u64> = self.sockets.iter().map(|s| s.inode).collect();
        let holders = self.owners.resolve(&wanted, members, &live);
        self.tracked = could
            .into_iter()
            .filter_map(|s| holders.get(&s.inode).map(|&pid| (s.clone(), pid)))
            .collect();
        Ok(())
    }

    /// Fresh times of the tracked connections; closed ones are dropped.
    fn refresh(&mut self) -> Result<(), DiagError> {
        if self.tracked.is_empty() {
            return Ok(());
        }
        let tracked = std::mem::take(&mut self.tracked);
        let refs: Vec<&TcpSocket> = tracked.iter().map(|(s, _)| s).collect();
        self.lookups = refs.len();
        let fresh = self.dumper()?.lookup(&refs)?;
        self.tracked = tracked
            .into_iter()
            .zip(fresh)
            .filter_map(|((old, pid), new)| {
                let new = new.filter(|n| n.state == ESTABLISHED && n.inode == old.inode)?;
                Some((new, pid))
            })
            .collect();
        Ok(())
    }
}

/// Whether a moment is unset or at least `every` ago.
trait Due {
    fn is_none_or_elapsed(&self, every: std::time::Duration) -> bool;
}

impl Due for Option<std::time::Instant> {
    fn is_none_or_elapsed(&self, every: std::time::Duration) -> bool {
        self.map_or(true, |t| t.elapsed() >= every)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sock(state: u8, local: &str, remote: &str, times: Option<TcpTimes>) -> TcpSocket {
        TcpSocket {
            inode: 1,
            state,
            local: local.parse().expect("addr"),
            remote: remote.parse().expect("addr"),
            times,
            family: netlink_packet_sock_diag::constants::AF_INET,
            id: netlink_packet_sock_diag::inet::SocketId::new_v4(),
        }
    }

    fn times(sent_ms: u32, recv_ms: u32, sent: bool, received: bool) -> Option<TcpTimes> {
        Some(TcpTimes {
            last_data_sent_ms: sent_ms,
            last_data_recv_ms: recv_ms,
            sent_any: Some(sent),
            received_any: Some(received),
        })
    }

    const CLIENT: &str = "10.0.0.5:51234";
    const API: &str = "160.79.104.10:443";

    #[test]
    fn a_request_with_no_answer_waits() {
        let s = sock(ESTABLISHED, CLIENT, API, times(2500, 9000, true, false));
        let w = waiting(&s, &Listening::default(), &[]).expect("waits");
        assert_eq!(w.sent_ago_s, 2.5);
        assert_eq!(w.received_ago_s, None);
        // Something came back earlier (an older answer on a kept-alive connection).
        let s = sock(ESTABLISHED, CLIENT, API, times(2500, 9000, true, true));
        let w = waiting(&s, &Listening::default(), &[]).expect("waits");
        assert_eq!(w.received_ago_s, Some(9.0));
    }

    #[test]
    fn answered_idle_and_silent_connections_do_not_wait() {
        let none = Listening::default();
        // Answered: last receive after last send.
        let s = sock(ESTABLISHED, CLIENT, API, times(9000, 8000, true, true));
        assert_eq!(waiting(&s, &none, &[]), None);
        // The same jiffy: not after.
        let s = sock(ESTABLISHED, CLIENT, API, times(8000, 8000, true, true));
        assert_eq!(waiting(&s, &none, &[]), None);
        // Connected, nothing sent.
        let s = sock(ESTABLISHED, CLIENT, API, times(100, 100, false, false));
        assert_eq!(waiting(&s, &none, &[]), None);
        // The peer closed (CLOSE_WAIT) after our request.
        let s = sock(8, CLIENT, API, times(100, 900, true, false));
        assert_eq!(waiting(&s, &none, &[]), None);
        // No tcp_info.
        assert_eq!(
            waiting(&sock(ESTABLISHED, CLIENT, API, None), &none, &[]),
            None
        );
    }

    #[test]
    fn an_old_kernel_without_counters_compares_the_times() {
        let t = TcpTimes {
            last_data_sent_ms: 10,
            last_data_recv_ms: 20,
            sent_any: None,
            received_any: None,
        };
        let s = sock(ESTABLISHED, CLIENT, API, Some(t));
        let w = waiting(&s, &Listening::default(), &[]).expect("waits");
        assert_eq!(w.received_ago_s, Some(0.02));
    }

    #[test]
    fn the_accepting_end_does_not_wait() {
        let listeners = [
            sock(LISTEN, "0.0.0.0:8080", "0.0.0.0:0", None),
            sock(LISTEN, "127.0.0.1:9000", "0.0.0.0:0", None),
            sock(LISTEN, "[::]:7000", "[::]:0", None),
        ];
        let l = Listening::of(&listeners);
        let answered = times(100, 900, true, true);
        for local in [
            "10.0.0.5:8080",
            "127.0.0.1:9000",
            "[::ffff:10.0.0.5]:7000",
            "[::1]:7000",
        ] {
            let s = sock(ESTABLISHED, local, "10.0.0.9:40000", answered);
            assert_eq!(waiting(&s, &l, &[]), None, "{local}");
        }
        // A client from another port still waits.
        let s = sock(ESTABLISHED, "127.0.0.1:9001", "127.0.0.1:5000", answered);
        assert!(waiting(&s, &l, &[]).is_some());
    }

    #[test]
    fn connections_to_the_emitters_own_listeners_do_not_wait() {
        let t = times(100, 900, true, false);
        let own: Vec<SocketAddr> = vec![
            "127.0.0.1:4318".parse().expect("addr"),
            "0.0.0.0:9464".parse().expect("addr"),
        ];
        let l = Listening::default();
        assert_eq!(
            waiting(
                &sock(ESTABLISHED, "127.0.0.1:5000", "127.0.0.1:4318", t),
                &l,
                &own
            ),
            None
        );
        assert_eq!(
            waiting(
                &sock(ESTABLISHED, "127.0.0.1:5000", "127.0.0.1:9464", t),
                &l,
                &own
            ),
            None
        );
        assert_eq!(
            waiting(
                &sock(ESTABLISHED, "10.0.0.5:5000", "10.0.0.5:9464", t),
                &l,
                &own
            ),
            None
        );
        // The same port on another host is someone else's.
        assert!(waiting(
            &sock(ESTABLISHED, "10.0.0.5:5000", "10.0.0.9:9464", t),
            &l,
            &own
        )
        .is_some());
        assert!(waiting(
            &sock(ESTABLISHED, "127.0.0.1:5000", "127.0.0.1:4319", t),
            &l,
            &own
        )
        .is_some());
    }

    #[test]
    fn own_listeners_are_forgotten_with_their_guard() {
        let addr: SocketAddr = "127.0.0.1:1".parse().expect("addr");
        let guard = own_listener(addr);
        assert!(own_listeners().contains(&addr));
        drop(guard);
        assert!(!own_listeners().contains(&addr));
    }

    #[test]
    fn up_close_ages() {
        let s = sock(ESTABLISHED, CLIENT, API, times(1500, 300, true, true));
        assert_eq!(ages(&s), (Some(1.5), Some(0.3)));
        let s = sock(ESTABLISHED, CLIENT, API, times(1500, 300, true, false));
        assert_eq!(ages(&s), (Some(1.5), None));
        let s = sock(LISTEN, CLIENT, API, times(1500, 300, true, true));
        assert_eq!(ages(&s), (None, None));
    }

    #[test]
    fn between_dumps_the_agents_connections_are_looked_up() {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (_server, _) = listener.accept().expect("accept");
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").expect("write");
        let me = i64::from(std::process::id());
        let mut w = NetWatch::new("/proc");
        w.set_full_every(std::time::Duration::from_secs(3600));
        let first = w.waits(&[vec![me]]);
        assert_eq!(w.dumps, 1);
        let mine = |n: &Option<NetWait>| n.as_ref().map(|n| n.remote.clone());
        assert!(w
            .tracked
            .iter()
            .any(|(s, pid)| *pid == me && s.local == client.local_addr().expect("addr")));
        assert!(
            first[0].is_some(),
            "this process waits on its own request: {first:?}"
        );
        let again = w.waits(&[vec![me]]);
        assert_eq!((w.dumps, w.lookups > 0), (0, true));
        assert!(mine(&again[0]).is_some());
        // Closed: gone from the lookups, and nothing waits any more.
        drop(client);
        drop(_server);
        let closed = w.waits(&[vec![me]]);
        assert_eq!(w.dumps, 0);
        assert!(
            !w.tracked
                .iter()
                .any(|(s, _)| s.remote == listener.local_addr().expect("addr")),
            "{closed:?}"
        );
    }

    #[test]
    fn sockstat_counts() {
        let text =
            "sockets: used 290\nTCP: inuse 5 orphan 0 tw 2 alloc 7 mem 1\nUDP: inuse 1 mem 0\n";
        assert_eq!(parse_sockstat(text), Some((5, 7)));
        assert_eq!(parse_sockstat("TCP: inuse 5\n"), None);
        assert_eq!(parse_sockstat(""), None);
    }

    #[test]
    fn no_trees_no_dump() {
        let mut w = NetWatch::new("/proc");
        assert_eq!(w.waits(&[vec![], vec![]]), vec![None, None]);
        assert_eq!(w.dumps, 0);
        w.set_enabled(false);
        assert_eq!(w.waits(&[vec![1]]), vec![None]);
        assert_eq!(w.dumps, 0);
    }
}
