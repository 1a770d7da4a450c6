//! One `sock_diag` dump of the TCP sockets of the emitter's network
//! namespace, with each socket's `tcp_info` (what `ss -ti` prints).
//!
//! The messages are the rust-netlink family's (`netlink-packet-sock-diag`
//! over `netlink-sys`): no hand-written structs for the request, the
//! netlink header or `inet_diag_msg`. The crate hands `INET_DIAG_INFO` over
//! as raw bytes (its typed `tcp_info` needs the 232 bytes of a 5.4+
//! kernel and would drop the whole socket on an older one), so the few
//! fields used here are read from those bytes by [`tcp_times`], every
//! offset checked against the length the kernel sent.
//!
//! The parser ([`parse_datagram`]) is pure: it is tested on hand-built,
//! truncated and garbage bytes. A message that does not parse loses that
//! socket only; a length that does not fit ends the datagram.

use std::net::SocketAddr;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP};
use netlink_packet_sock_diag::inet::nlas::Nla;
use netlink_packet_sock_diag::inet::{
    ExtensionFlags, InetRequest, InetResponse, SocketId, StateFlags,
};
use netlink_packet_sock_diag::SockDiagMessage;

/// `TCP_ESTABLISHED` (include/net/tcp_states.h).
pub const ESTABLISHED: u8 = 1;
/// `TCP_LISTEN`.
pub const LISTEN: u8 = 10;

/// One TCP socket of the dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpSocket {
    /// The inode of its `socket:[N]` link.
    pub inode: u64,
    /// The kernel's state number (`ESTABLISHED` is 1, `LISTEN` 10, ...).
    pub state: u8,
    /// This end.
    pub local: SocketAddr,
    /// The peer.
    pub remote: SocketAddr,
    /// From `tcp_info`; `None` when the kernel sent none (or too short).
    pub times: Option<TcpTimes>,
    /// `AF_INET` or `AF_INET6`.
    pub family: u8,
    /// The kernel's id of the socket (the addresses, interface and
    /// cookie), for a lookup of this one socket later.
    pub id: SocketId,
}

/// The `tcp_info` fields that tell whether a reply is awaited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpTimes {
    /// `tcpi_last_data_sent`: ms since data was last sent (`lastsnd`).
    pub last_data_sent_ms: u32,
    /// `tcpi_last_data_recv`: ms since data was last received (`lastrcv`).
    pub last_data_recv_ms: u32,
    /// Whether any data was ever sent; `None` when the kernel is too old to say.
    pub sent_any: Option<bool>,
    /// Whether any data was ever received; `None` when the kernel is too old to say.
    pub received_any: Option<bool>,
}

/// Reads a native-endian integer of `N` bytes at `at`, if the info is that long.
fn field<const N: usize>(info: &[u8], at: usize) -> Option<[u8; N]> {
    info.get(at..at.checked_add(N)?)?.try_into().ok()
}

fn u32_at(info: &[u8], at: usize) -> Option<u32> {
    field::<4>(info, at).map(u32::from_ne_bytes)
}

fn u64_at(info: &[u8], at: usize) -> Option<u64> {
    field::<8>(info, at).map(u64::from_ne_bytes)
}

/// Offsets in `struct tcp_info` (include/uapi/linux/tcp.h); each field is
/// only read when the kernel's struct is long enough to hold it.
mod offset {
    pub const UNACKED: usize = 24;
    pub const LAST_DATA_SENT: usize = 44;
    pub const LAST_DATA_RECV: usize = 52;
    /// Linux 4.1.
    pub const BYTES_ACKED: usize = 120;
    /// Linux 4.1.
    pub const BYTES_RECEIVED: usize = 128;
    /// Linux 4.6.
    pub const DATA_SEGS_IN: usize = 152;
    /// Linux 4.6.
    pub const DATA_SEGS_OUT: usize = 156;
    /// Linux 4.19.
    pub const BYTES_SENT: usize = 200;
}

/// The times of one `INET_DIAG_INFO` payload; `None` when it is too short
/// to hold them. "Ever sent" comes from the newest counter the kernel has
/// (`bytes_sent`, else `data_segs_out`, else `bytes_acked` or unacked
/// segments), "ever received" from `bytes_received` (else `data_segs_in`).
pub fn tcp_times(info: &[u8]) -> Option<TcpTimes> {
    let last_data_sent_ms = u32_at(info, offset::LAST_DATA_SENT)?;
    let last_data_recv_ms = u32_at(info, offset::LAST_DATA_RECV)?;
    let sent_any = u64_at(info, offset::BYTES_SENT)
        .map(|b| b > 0)
        .or_else(|| u32_at(info, offset::DATA_SEGS_OUT).map(|s| s > 0))
        .or_else(|| {
            let acked = u64_at(info, offset::BYTES_ACKED)?;
            let unacked = u32_at(info, offset::UNACKED)?;
            Some(acked > 0 || unacked > 0)
        });
    let received_any = u64_at(info, offset::BYTES_RECEIVED)
        .map(|b| b > 0)
        .or_else(|| u32_at(info, offset::DATA_SEGS_IN).map(|s| s > 0));
    Some(TcpTimes {
        last_data_sent_ms,
        last_data_recv_ms,
        sent_any,
        received_any,
    })
}

/// Why a dump gave nothing.
#[derive(Debug, thiserror::Error)]
pub enum DiagError {
    /// A socket call failed (no netlink, EPERM under a seccomp filter, ...).
    #[error("sock_diag socket: {0}")]
    Io(#[from] std::io::Error),
    /// The kernel answered the request with an error.
    #[error("sock_diag request refused by the kernel: {0}")]
    Refused(std::io::Error),
    /// A message's length does not fit the datagram.
    #[error("sock_diag answer malformed: {0}")]
    Malformed(&'static str),
    /// The kernel dropped messages (`NLMSG_OVERRUN`) or the datagram was cut.
    #[error("sock_diag answer incomplete: {0}")]
    Incomplete(&'static str),
}

/// Where the answer to one request stands after a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// More datagrams follow.
    More,
    /// `NLMSG_DONE` was seen.
    Done,
}

/// `struct nlmsghdr`.
const HEADER_LEN: usize = 16;

/// The request for a dump of `family` sockets in `states`, with `tcp_info`.
pub fn request(family: u8, states: StateFlags, sequence: u32) -> Vec<u8> {
    let socket_id = if family == AF_INET6 {
        SocketId::new_v6()
    } else {
        SocketId::new_v4()
    };
    message(
        family,
        states,
        socket_id,
        NLM_F_REQUEST | NLM_F_DUMP,
        sequence,
    )
}

/// The request for the one socket `id` (a hash lookup in the kernel, not
/// the walk of its whole table that a dump is), with `tcp_info`.
pub fn lookup_request(family: u8, id: &SocketId, sequence: u32) -> Vec<u8> {
    message(
        family,
        StateFlags::all(),
        id.clone(),
        NLM_F_REQUEST,
        sequence,
    )
}

fn message(
    family: u8,
    states: StateFlags,
    socket_id: SocketId,
    flags: u16,
    sequence: u32,
) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = sequence;
    let mut packet = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: IPPROTO_TCP,
            extensions: ExtensionFlags::INFO,
            states,
            socket_id,
        })
        .into(),
    );
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    // The buffer is exactly the length the message asks for.
    packet.serialize(&mut buf);
    buf
}

/// Calls `each` with every whole message of a datagram that parses (one
/// that does not is skipped: it loses that socket only); an error when a
/// length does not fit the datagram.
fn messages(
    bytes: &[u8],
    mut each: impl FnMut(NetlinkMessage<SockDiagMessage>) -> Result<bool, DiagError>,
) -> Result<bool, DiagError> {
    let mut rest = bytes;
    while !rest.is_empty() {
        let len = field::<4>(rest, 0)
            .map(u32::from_ne_bytes)
            .ok_or(DiagError::Malformed("a message header is cut"))?;
        let len = usize::try_from(len).map_err(|_| DiagError::Malformed("length"))?;
        if len < HEADER_LEN || len > rest.len() {
            return Err(DiagError::Malformed(
                "a message length does not fit the datagram",
            ));
        }
        let (message, after) = rest.split_at(len);
        // Messages are 4-byte aligned; the last one may omit its padding.
        let pad = (4 - len % 4) % 4;
        rest = after.get(pad..).unwrap_or(&[]);
        if let Ok(message) = NetlinkMessage::<SockDiagMessage>::deserialize(message) {
            if each(message)? {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

fn refused(code: i32) -> DiagError {
    DiagError::Refused(std::io::Error::from_raw_os_error(
        code.checked_neg().unwrap_or(code),
    ))
}

/// Appends the sockets of one datagram of the answer to `out`. Messages of
/// another sequence (left over from an aborted dump) are skipped.
pub fn parse_datagram(
    bytes: &[u8],
    sequence: u32,
    out: &mut Vec<TcpSocket>,
) -> Result<Part, DiagError> {
    let done = messages(bytes, |message| {
        if message.header.sequence_number != sequence {
            return Ok(false);
        }
        match message.payload {
            NetlinkPayload::Done(done) if done.code < 0 => Err(refused(done.code)),
            NetlinkPayload::Done(_) => Ok(true),
            NetlinkPayload::Error(error) => match error.code {
                Some(code) => Err(refused(code.get())),
                None => Ok(false),
            },
            NetlinkPayload::Overrun(_) => Err(DiagError::Incomplete("the kernel dropped messages")),
            NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(response)) => {
                out.push(socket(&response));
                Ok(false)
            }
            // Noop, other messages, and kinds of later versions of the crate.
            _ => Ok(false),
        }
    })?;
    Ok(if done { Part::Done } else { Part::More })
}

/// The answers in one datagram to lookups numbered `first..first + count`:
/// `(index, Some(socket))`, or `(index, None)` when the kernel no longer
/// has that socket (or refused that lookup).
pub fn parse_lookups(
    bytes: &[u8],
    first: u32,
    count: u32,
    out: &mut Vec<(u32, Option<TcpSocket>)>,
) -> Result<(), DiagError> {
    messages(bytes, |message| {
        let index = message.header.sequence_number.wrapping_sub(first);
        if index >= count {
            return Ok(false);
        }
        match message.payload {
            NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(response)) => {
                out.push((index, Some(socket(&response))));
            }
            NetlinkPayload::Error(error) if error.code.is_some() => out.push((index, None)),
            NetlinkPayload::Overrun(_) => {
                return Err(DiagError::Incomplete("the kernel dropped messages"))
            }
            _ => {}
        }
        Ok(false)
    })
    .map(|_| ())
}

fn socket(response: &InetResponse) -> TcpSocket {
    let id = &response.header.socket_id;
    let times = response.nlas.iter().find_map(|nla| match nla {
        Nla::TcpInfo(info) => tcp_times(info),
        _ => None,
    });
    TcpSocket {
        inode: u64::from(response.header.inode),
        state: response.header.state,
        local: SocketAddr::new(id.source_address, id.source_port),
        remote: SocketAddr::new(id.destination_address, id.destination_port),
        times,
        family: response.header.family,
        id: id.clone(),
    }
}

/// A netlink socket kept open between dumps.
#[derive(Debug)]
pub struct Dumper {
    socket: netlink_sys::Socket,
    sequence: u32,
    buf: Vec<u8>,
}

/// The largest datagram a dump sends is 32 KiB (`netlink_dump`); twice
/// that leaves room, and `MSG_TRUNC` tells if it ever is not enough.
const RECV_BUF: usize = 64 * 1024;

/// A dump that keeps giving datagrams without `NLMSG_DONE` is cut here
/// (about 30 sockets a datagram: 10^5 sockets).
const MAX_DATAGRAMS: usize = 4096;

/// Lookups sent at once: their answers (about 1 KiB each in the receive
/// buffer) must fit the default 208 KiB.
const LOOKUP_BATCH: usize = 64;

impl Dumper {
    /// Opens the socket; fails where the kernel or a sandbox refuses netlink.
    pub fn open() -> Result<Self, DiagError> {
        let mut socket = netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_SOCK_DIAG)?;
        socket.bind_auto()?;
        socket.connect(&netlink_sys::SocketAddr::new(0, 0))?;
        // The kernel writes each part of a dump before recv returns, so a
        // recv that would block means the answer is broken: never wait.
        socket.set_non_blocking(true)?;
        Ok(Self {
            socket,
            sequence: 0,
            buf: vec![0; RECV_BUF],
        })
    }

    /// Every TCP socket in `states` of both families, appended to `out`.
    pub fn dump(&mut self, states: StateFlags, out: &mut Vec<TcpSocket>) -> Result<(), DiagError> {
        for family in [AF_INET, AF_INET6] {
            self.dump_family(family, states.clone(), out)?;
        }
        Ok(())
    }

    /// A fresh copy of each of `sockets` (same index), `None` for one the
    /// kernel no longer has. Sent in batches the receive buffer holds.
    pub fn lookup(&mut self, sockets: &[&TcpSocket]) -> Result<Vec<Option<TcpSocket>>, DiagError> {
        let mut out: Vec<Option<TcpSocket>> = vec![None; sockets.len()];
        for (chunk_no, chunk) in sockets.chunks(LOOKUP_BATCH).enumerate() {
            let first = self.sequence.wrapping_add(1);
            let count = u32::try_from(chunk.len()).map_err(|_| DiagError::Malformed("batch"))?;
            let mut batch = Vec::with_capacity(chunk.len() * 72);
            for (i, s) in chunk.iter().enumerate() {
                let seq = first.wrapping_add(u32::try_from(i).unwrap_or(0));
                batch.extend(lookup_request(s.family, &s.id, seq));
            }
            self.sequence = first.wrapping_add(count);
            self.socket.send(&batch, 0)?;
            let mut answers = Vec::with_capacity(chunk.len());
            let mut answered = vec![false; chunk.len()];
            let mut left = chunk.len();
            while left > 0 {
                let mut window = &mut self.buf[..];
                let n = match self.socket.recv(&mut window, libc::MSG_TRUNC) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(DiagError::Io(e)),
                };
                let datagram = self
                    .buf
                    .get(..n)
                    .ok_or(DiagError::Incomplete("a datagram was cut"))?;
                answers.clear();
                parse_lookups(datagram, first, count, &mut answers)?;
                for (index, socket) in answers.drain(..) {
                    let index = index as usize;
                    if answered.get(index).copied() == Some(false) {
                        answered[index] = true;
                        left -= 1;
                        if let Some(slot) = out.get_mut(chunk_no * LOOKUP_BATCH + index) {
                            *slot = socket;
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    fn dump_family(
        &mut self,
        family: u8,
        states: StateFlags,
        out: &mut Vec<TcpSocket>,
    ) -> Result<(), DiagError> {
        self.sequence = self.sequence.wrapping_add(1);
        let request = request(family, states, self.sequence);
        self.socket.send(&request, 0)?;
        for _ in 0..MAX_DATAGRAMS {
            let mut window = &mut self.buf[..];
            let n = match self.socket.recv(&mut window, libc::MSG_TRUNC) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(DiagError::Io(e)),
            };
            let Some(datagram) = self.buf.get(..n) else {
                return Err(DiagError::Incomplete("a datagram was cut"));
            };
            if parse_datagram(datagram, self.sequence, out)? == Part::Done {
                return Ok(());
            }
        }
        Err(DiagError::Incomplete("no end after too many datagrams"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::{DoneMessage, ErrorMessage};
    use netlink_packet_sock_diag::inet::InetResponseHeader;
    use proptest::prelude::*;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    /// A `tcp_info` of `len` bytes with the given fields set.
    fn info(
        len: usize,
        sent_ms: u32,
        recv_ms: u32,
        bytes_sent: u64,
        bytes_received: u64,
    ) -> Vec<u8> {
        let mut b = vec![0u8; len];
        let mut put = |at: usize, v: &[u8]| {
            if let Some(dst) = b.get_mut(at..at + v.len()) {
                dst.copy_from_slice(v);
            }
        };
        put(offset::LAST_DATA_SENT, &sent_ms.to_ne_bytes());
        put(offset::LAST_DATA_RECV, &recv_ms.to_ne_bytes());
        put(offset::BYTES_SENT, &bytes_sent.to_ne_bytes());
        put(offset::BYTES_ACKED, &bytes_sent.to_ne_bytes());
        put(offset::BYTES_RECEIVED, &bytes_received.to_ne_bytes());
        put(
            offset::DATA_SEGS_OUT,
            &u32::from(bytes_sent > 0).to_ne_bytes(),
        );
        put(
            offset::DATA_SEGS_IN,
            &u32::from(bytes_received > 0).to_ne_bytes(),
        );
        b
    }

    fn response(inode: u32, state: u8, family: u8, tcp_info: Option<Vec<u8>>) -> InetResponse {
        let (src, dst) = if family == AF_INET6 {
            (
                IpAddr::V6(Ipv6Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
            )
        } else {
            (
                IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5)),
                IpAddr::V4(Ipv4Addr::new(93, 184, 216, 34)),
            )
        };
        let mut nlas = vec![Nla::Shutdown(0)];
        if let Some(i) = tcp_info {
            nlas.push(Nla::TcpInfo(i));
        }
        InetResponse {
            header: InetResponseHeader {
                family,
                state,
                timer: None,
                socket_id: SocketId {
                    source_port: 51234,
                    destination_port: 443,
                    source_address: src,
                    destination_address: dst,
                    interface_id: 0,
                    cookie: [0; 8],
                },
                recv_queue: 0,
                send_queue: 0,
                uid: 1000,
                inode,
            },
            nlas: nlas.into(),
        }
    }

    fn bytes_of(payload: NetlinkPayload<SockDiagMessage>, sequence: u32) -> Vec<u8> {
        let mut header = NetlinkHeader::default();
        header.sequence_number = sequence;
        header.flags = netlink_packet_core::NLM_F_MULTIPART;
        let mut m = NetlinkMessage::new(header, payload);
        m.finalize();
        let mut b = vec![0; m.buffer_len()];
        m.serialize(&mut b);
        b
    }

    fn inet(r: InetResponse, sequence: u32) -> Vec<u8> {
        bytes_of(
            NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(Box::new(r))),
            sequence,
        )
    }

    fn done(sequence: u32, code: i32) -> Vec<u8> {
        let mut d = DoneMessage::default();
        d.code = code;
        bytes_of(NetlinkPayload::Done(d), sequence)
    }

    #[test]
    fn reads_the_times_of_a_current_kernel() {
        let t = tcp_times(&info(248, 1200, 5300, 77, 0)).expect("long enough");
        assert_eq!(t.last_data_sent_ms, 1200);
        assert_eq!(t.last_data_recv_ms, 5300);
        assert_eq!(t.sent_any, Some(true));
        assert_eq!(t.received_any, Some(false));
    }

    #[test]
    fn older_kernels_fall_back_to_older_counters() {
        // 4.6-4.18: no bytes_sent, data_segs_out says.
        let t = tcp_times(&info(192, 1, 2, 9, 9)).expect("long enough");
        assert_eq!((t.sent_any, t.received_any), (Some(true), Some(true)));
        // 4.1-4.5: bytes_acked and bytes_received.
        let t = tcp_times(&info(136, 1, 2, 9, 0)).expect("long enough");
        assert_eq!((t.sent_any, t.received_any), (Some(true), Some(false)));
        // Older: the times only.
        let t = tcp_times(&info(104, 1, 2, 9, 9)).expect("long enough");
        assert_eq!((t.sent_any, t.received_any), (None, None));
        assert_eq!(t.last_data_recv_ms, 2);
        // Too short for the times themselves.
        assert_eq!(tcp_times(&info(55, 1, 2, 0, 0)), None);
        assert_eq!(tcp_times(&[]), None);
    }

    #[test]
    fn a_datagram_of_two_families_and_done() {
        let mut d = inet(
            response(77, ESTABLISHED, AF_INET, Some(info(248, 10, 20, 1, 1))),
            5,
        );
        d.extend(inet(response(78, LISTEN, AF_INET6, None), 5));
        d.extend(done(5, 0));
        let mut out = Vec::new();
        assert_eq!(parse_datagram(&d, 5, &mut out).expect("parses"), Part::Done);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].inode, 77);
        assert_eq!(out[0].state, ESTABLISHED);
        assert_eq!(out[0].local.to_string(), "10.0.0.5:51234");
        assert_eq!(out[0].remote.to_string(), "93.184.216.34:443");
        assert_eq!(out[0].times.map(|t| t.last_data_sent_ms), Some(10));
        assert_eq!(out[1].remote.to_string(), "[::1]:443");
        assert_eq!(out[1].times, None);
    }

    #[test]
    fn another_sequence_is_skipped_and_more_is_asked_for() {
        let mut d = inet(response(1, ESTABLISHED, AF_INET, None), 4);
        d.extend(done(4, 0));
        d.extend(inet(response(2, ESTABLISHED, AF_INET, None), 5));
        let mut out = Vec::new();
        assert_eq!(parse_datagram(&d, 5, &mut out).expect("parses"), Part::More);
        assert_eq!(out.iter().map(|s| s.inode).collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn the_kernels_refusal_is_an_error() {
        let mut e = ErrorMessage::default();
        e.code = std::num::NonZeroI32::new(-libc::EPERM);
        let d = bytes_of(NetlinkPayload::Error(e), 3);
        match parse_datagram(&d, 3, &mut Vec::new()) {
            Err(DiagError::Refused(err)) => assert_eq!(err.raw_os_error(), Some(libc::EPERM)),
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert!(matches!(
            parse_datagram(&done(3, -libc::EINTR), 3, &mut Vec::new()),
            Err(DiagError::Refused(_))
        ));
    }

    #[test]
    fn truncated_datagrams_are_errors_not_panics() {
        let mut d = inet(
            response(9, ESTABLISHED, AF_INET, Some(info(248, 1, 2, 3, 4))),
            1,
        );
        d.extend(done(1, 0));
        for cut in 0..d.len() {
            let mut out = Vec::new();
            let r = parse_datagram(&d[..cut], 1, &mut out);
            // Whatever was whole is kept; nothing past the cut is invented.
            assert!(out.len() <= 1);
            assert_ne!(r.ok(), Some(Part::Done), "cut at {cut} cannot be done");
        }
    }

    #[test]
    fn a_garbled_message_loses_that_socket_only() {
        let good = inet(response(5, ESTABLISHED, AF_INET, None), 2);
        let mut bad = inet(response(6, ESTABLISHED, AF_INET, None), 2);
        // An address family the crate cannot read.
        bad[HEADER_LEN] = 99;
        let mut d = bad;
        d.extend(good);
        d.extend(done(2, 0));
        let mut out = Vec::new();
        assert_eq!(parse_datagram(&d, 2, &mut out).expect("parses"), Part::Done);
        assert_eq!(out.iter().map(|s| s.inode).collect::<Vec<_>>(), vec![5]);
    }

    #[test]
    fn lengths_that_do_not_fit_are_malformed() {
        let mut d = inet(response(5, ESTABLISHED, AF_INET, None), 2);
        let too_long = d.len() as u32 + 1;
        d[..4].copy_from_slice(&too_long.to_ne_bytes());
        assert!(matches!(
            parse_datagram(&d, 2, &mut Vec::new()),
            Err(DiagError::Malformed(_))
        ));
        d[..4].copy_from_slice(&3u32.to_ne_bytes());
        assert!(matches!(
            parse_datagram(&d, 2, &mut Vec::new()),
            Err(DiagError::Malformed(_))
        ));
    }

    #[test]
    fn the_request_asks_for_a_dump_with_tcp_info() {
        let r = request(AF_INET6, StateFlags::ESTABLISHED, 42);
        // nlmsghdr + inet_diag_req_v2.
        assert_eq!(r.len(), 16 + 56);
        assert_eq!(u32::from_ne_bytes(r[..4].try_into().expect("4")), 72);
        assert_eq!(u32::from_ne_bytes(r[8..12].try_into().expect("4")), 42);
        assert_eq!(r[16], AF_INET6);
        assert_eq!(r[17], IPPROTO_TCP);
        assert_eq!(r[18], 1 << 1, "INET_DIAG_INFO");
        assert_eq!(
            u32::from_ne_bytes(r[20..24].try_into().expect("4")),
            1 << ESTABLISHED
        );
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600), seq in 0u32..3) {
            let _ = parse_datagram(&bytes, seq, &mut Vec::new());
            let _ = tcp_times(&bytes);
        }

        #[test]
        fn flipped_bytes_of_a_real_message_never_panic(at in 0usize..400, value in any::<u8>()) {
            let mut d = inet(response(9, ESTABLISHED, AF_INET, Some(info(248, 1, 2, 3, 4))), 1);
            d.extend(done(1, 0));
            let at = at % d.len();
            d[at] = value;
            let _ = parse_datagram(&d, 1, &mut Vec::new());
        }
    }
}
