//! Which running agent sent a request, from its loopback connection: the
//! client socket's inode from `/proc/net/tcp` (or `tcp6`), then the process
//! of an agent's tree that holds that inode among its fds.
//!
//! Only the trees of running agents are read (agent pid and every live
//! descendant), never every process of the host, and one pass maps every
//! socket those trees hold, so one pass answers all connections opened
//! before it.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use crate::procfs::ProcTable;

/// The inode of the TCP socket whose local end is `client` and whose remote
/// end has `server_port`: the sender's side of our connection.
pub fn client_inode(proc_root: &Path, client: SocketAddr, server_port: u16) -> Option<u64> {
    let client = canonical(client);
    ["net/tcp", "net/tcp6"].iter().find_map(|table| {
        let text = std::fs::read_to_string(proc_root.join(table)).ok()?;
        text.lines().skip(1).find_map(|line| {
            let (local, remote, inode) = parse_line(line)?;
            (local == client && remote.port() == server_port && inode != 0).then_some(inode)
        })
    })
}

/// Every socket inode held by a process of the given trees, mapped to the
/// tree's job; `agents` is `(job_id, pid)`.
pub fn held_sockets(proc_root: &Path, agents: &[(i64, i64)]) -> HashMap<u64, i64> {
    let mut out = HashMap::new();
    if agents.is_empty() {
        return out;
    }
    let table = ProcTable::scan(proc_root);
    for &(job, pid) in agents {
        if table.stat(pid).is_none() {
            continue;
        }
        for p in std::iter::once(pid).chain(table.descendants(pid)) {
            let Ok(fds) = std::fs::read_dir(proc_root.join(p.to_string()).join("fd")) else {
                continue;
            };
            for fd in fds.flatten() {
                let Ok(target) = std::fs::read_link(fd.path()) else {
                    continue;
                };
                if let Some(inode) = target.to_str().and_then(socket_inode) {
                    out.entry(inode).or_insert(job);
                }
            }
        }
    }
    out
}

/// `socket:[12345]` → 12345.
pub fn socket_inode(target: &str) -> Option<u64> {
    target
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// One row of `/proc/net/tcp{,6}`: local and remote address, inode.
fn parse_line(line: &str) -> Option<(SocketAddr, SocketAddr, u64)> {
    let mut fields = line.split_whitespace();
    let _slot = fields.next()?;
    let local = endpoint(fields.next()?)?;
    let remote = endpoint(fields.next()?)?;
    // st, tx:rx, tr:when, retrnsmt, uid, timeout, then the inode.
    let inode = fields.nth(6)?.parse().ok()?;
    Some((local, remote, inode))
}

/// `0100007F:1F90` (the kernel prints each 32-bit word in host order).
fn endpoint(text: &str) -> Option<SocketAddr> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| {
        addr.get(i * 8..i * 8 + 8)
            .and_then(|w| u32::from_str_radix(w, 16).ok())
            .map(u32::to_ne_bytes)
    };
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(canonical(SocketAddr::new(ip, port)))
}

/// IPv4-mapped IPv6 addresses as plain IPv4, so both tables compare alike.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_v4_and_mapped_v6_rows() {
        let v4 = "   1: 0100007F:D431 0100007F:10E1 01 00000000:00000000 00:00000000 00000000     0        0 123456 1 0000000000000000 20 4 30 10 -1";
        let (l, r, inode) = parse_line(v4).unwrap_or_else(|| panic!("unparsed"));
        assert_eq!(l.to_string(), "127.0.0.1:54321");
        assert_eq!(r.to_string(), "127.0.0.1:4321");
        assert_eq!(inode, 123_456);
        let v6 = "   0: 0000000000000000FFFF00000100007F:D431 0000000000000000FFFF00000100007F:10E1 01 00000000:00000000 00:00000000 00000000     0        0 777 1";
        let (l, _, inode) = parse_line(v6).unwrap_or_else(|| panic!("unparsed"));
        assert_eq!(l.to_string(), "127.0.0.1:54321");
        assert_eq!(inode, 777);
        let lo6 = "   0: 00000000000000000000000001000000:D431 00000000000000000000000001000000:10E1 01 00000000:00000000 00:00000000 00000000     0        0 9 1";
        let (l, _, _) = parse_line(lo6).unwrap_or_else(|| panic!("unparsed"));
        assert_eq!(l.to_string(), "[::1]:54321");
        assert_eq!(parse_line("garbage"), None);
        assert_eq!(parse_line("  sl  local_address rem_address"), None);
    }

    #[test]
    fn socket_targets() {
        assert_eq!(socket_inode("socket:[42]"), Some(42));
        assert_eq!(socket_inode("pipe:[42]"), None);
        assert_eq!(socket_inode("socket:[x]"), None);
    }

    #[test]
    fn finds_our_own_connection_and_that_we_hold_it() {
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let port = server.local_addr().map(|a| a.port()).unwrap_or(0);
        let client =
            std::net::TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("{e}"));
        let local = client.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let inode = client_inode(Path::new("/proc"), local, port);
        let Some(inode) = inode else {
            panic!("no inode for {local}");
        };
        let me = i64::from(std::process::id());
        let held = held_sockets(Path::new("/proc"), &[(7, me)]);
        assert_eq!(held.get(&inode), Some(&7));
    }
}
