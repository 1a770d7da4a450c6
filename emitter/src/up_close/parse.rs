//! Pure parsers for the up-close view: `fdinfo`, fd link targets and the
//! `/proc/net/tcp{,6}` tables. Each takes a `&str` and returns `None` (or
//! leaves the line out) for what it cannot read, so every one is tested
//! without a `/proc`. `stat` and `wchan` go through the one parser in
//! [`crate::procfs`], shared with the envelope.

use std::net::{Ipv4Addr, Ipv6Addr};

use shared_schema::{FdKind, FdMode};

/// The access mode from an fdinfo file's `flags:` line (octal; `O_ACCMODE`).
pub fn fd_mode(fdinfo: &str) -> Option<FdMode> {
    let flags = fdinfo
        .lines()
        .find_map(|line| line.strip_prefix("flags:"))?
        .trim();
    let flags = u64::from_str_radix(flags, 8).ok()?;
    match flags & 0o3 {
        0 => Some(FdMode::Read),
        1 => Some(FdMode::Write),
        2 => Some(FdMode::ReadWrite),
        _ => None,
    }
}

/// What an fd's link target names.
pub fn fd_kind(target: &str) -> FdKind {
    if target.starts_with("pipe:[") {
        FdKind::Pipe
    } else if target.starts_with("socket:[") {
        FdKind::Socket
    } else if target.starts_with("anon_inode:") {
        FdKind::Anon
    } else if target.starts_with("/dev/pts/")
        || target.starts_with("/dev/tty")
        || target == "/dev/console"
    {
        FdKind::Tty
    } else if target.starts_with('/') {
        FdKind::File
    } else {
        FdKind::Other
    }
}

/// The inode of a `socket:[N]` target.
pub fn socket_inode(target: &str) -> Option<u64> {
    target
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// One row of `/proc/net/tcp` or `tcp6`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpEntry {
    /// The socket's inode, as in `socket:[N]`.
    pub inode: u64,
    /// The kernel's state name.
    pub state: &'static str,
    /// `address:port` (IPv6 as `[addr]:port`).
    pub local: String,
    /// `address:port` (IPv6 as `[addr]:port`).
    pub remote: String,
}

/// The rows of one table; the header and lines that do not parse are left out.
pub fn tcp_table(text: &str) -> Vec<TcpEntry> {
    text.lines().skip(1).filter_map(tcp_line).collect()
}

/// One row: `sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...`.
pub fn tcp_line(line: &str) -> Option<TcpEntry> {
    let fields: Vec<&str> = line.split_ascii_whitespace().collect();
    let local = endpoint(fields.get(1)?)?;
    let remote = endpoint(fields.get(2)?)?;
    let state = tcp_state(u8::from_str_radix(fields.get(3)?, 16).ok()?);
    let inode = fields.get(9)?.parse().ok()?;
    Some(TcpEntry {
        inode,
        state,
        local,
        remote,
    })
}

/// The kernel's names (include/net/tcp_states.h).
pub fn tcp_state(code: u8) -> &'static str {
    match code {
        0x01 => "ESTABLISHED",
        0x02 => "SYN_SENT",
        0x03 => "SYN_RECV",
        0x04 => "FIN_WAIT1",
        0x05 => "FIN_WAIT2",
        0x06 => "TIME_WAIT",
        0x07 => "CLOSE",
        0x08 => "CLOSE_WAIT",
        0x09 => "LAST_ACK",
        0x0A => "LISTEN",
        0x0B => "CLOSING",
        0x0C => "NEW_SYN_RECV",
        _ => "UNKNOWN",
    }
}

/// `0100007F:1F90` -> `127.0.0.1:8080`; 32 hex digits -> `[addr]:port`.
///
/// The kernel prints each 32-bit word of the address as a number in the
/// host's byte order (little-endian here), so every word's bytes are
/// reversed back into network order; the port is a plain hex number.
fn endpoint(text: &str) -> Option<String> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let mut bytes = Vec::with_capacity(16);
    for word in addr.as_bytes().chunks(8) {
        let word = std::str::from_utf8(word).ok()?;
        if word.len() != 8 {
            return None;
        }
        bytes.extend(u32::from_str_radix(word, 16).ok()?.to_le_bytes());
    }
    match bytes.len() {
        4 => {
            let octets: [u8; 4] = bytes.try_into().ok()?;
            Some(format!("{}:{port}", Ipv4Addr::from(octets)))
        }
        16 => {
            let octets: [u8; 16] = bytes.try_into().ok()?;
            Some(format!("[{}]:{port}", Ipv6Addr::from(octets)))
        }
        _ => None,
    }
}

/// Seconds since boot, the first number of `/proc/uptime`.
pub fn uptime(text: &str) -> Option<f64> {
    let secs: f64 = text.split_ascii_whitespace().next()?.parse().ok()?;
    secs.is_finite().then_some(secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn modes_from_fdinfo_flags() {
        let info = |flags: &str| format!("pos:\t0\nflags:\t{flags}\nmnt_id:\t15\nino:\t1\n");
        assert_eq!(fd_mode(&info("0100000")), Some(FdMode::Read));
        assert_eq!(fd_mode(&info("02000001")), Some(FdMode::Write));
        assert_eq!(fd_mode(&info("0100002")), Some(FdMode::ReadWrite));
        assert_eq!(fd_mode(&info("0100003")), None);
        assert_eq!(fd_mode("pos:\t0\n"), None);
        assert_eq!(fd_mode("flags:\tzz\n"), None);
    }

    #[test]
    fn kinds_of_link_targets() {
        assert_eq!(fd_kind("pipe:[105453]"), FdKind::Pipe);
        assert_eq!(fd_kind("socket:[77]"), FdKind::Socket);
        assert_eq!(fd_kind("anon_inode:[eventpoll]"), FdKind::Anon);
        assert_eq!(fd_kind("anon_inode:inotify"), FdKind::Anon);
        assert_eq!(fd_kind("/dev/pts/3"), FdKind::Tty);
        assert_eq!(fd_kind("/dev/tty1"), FdKind::Tty);
        assert_eq!(fd_kind("/var/log/agents/7.jsonl"), FdKind::File);
        assert_eq!(fd_kind("/tmp/x (deleted)"), FdKind::File);
        assert_eq!(fd_kind("net:[4026531840]"), FdKind::Other);
        assert_eq!(socket_inode("socket:[77]"), Some(77));
        assert_eq!(socket_inode("pipe:[77]"), None);
    }

    #[test]
    fn tcp4_rows_are_little_endian_words() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 12345 1 0000000000000000 100 0 0 10 0\n   1: 0500000A:C822 22D8B85D:01BB 08 00000000:00000000 00:00000000 00000000  1000        0 67890 1 0000000000000000 20 4 30 10 -1\n garbage\n";
        let rows = tcp_table(table);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].local, "127.0.0.1:8080");
        assert_eq!(rows[0].state, "LISTEN");
        assert_eq!(rows[1].inode, 67890);
        assert_eq!(rows[1].state, "CLOSE_WAIT");
        assert_eq!(rows[1].local, "10.0.0.5:51234");
        assert_eq!(rows[1].remote, "93.184.216.34:443");
    }

    #[test]
    fn tcp6_rows_are_bracketed() {
        let line = "   0: 00000000000000000000000001000000:1F90 0000000000000000FFFF00000100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000000000000000 20 4 1 10 -1";
        let row = tcp_line(line).expect("parses");
        assert_eq!(row.local, "[::1]:8080");
        assert_eq!(row.remote, "[::ffff:127.0.0.1]:54321");
        assert_eq!(row.state, "ESTABLISHED");
        assert_eq!(row.inode, 4242);
    }

    #[test]
    fn uptime_first_number() {
        assert_eq!(uptime("350735.47 234388.90\n"), Some(350_735.47));
        assert_eq!(uptime("x"), None);
        assert_eq!(uptime(""), None);
    }

    proptest! {
        #[test]
        fn parsers_never_panic(s in ".*") {
            let _ = tcp_table(&s);
            let _ = fd_mode(&s);
            let _ = fd_kind(&s);
            let _ = uptime(&s);
        }

        #[test]
        fn tcp_lines_near_valid_never_panic(addr in "[0-9A-Fa-f]{0,40}", port in "[0-9A-F:]{0,6}") {
            let _ = tcp_line(&format!("0: {addr}:{port} {addr}:{port} 01 0:0 0:0 0 0 0 7"));
        }
    }
}
