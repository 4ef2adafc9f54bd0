//! A small NETLINK_ROUTE client: what the kernel says about an interface
//! (its index and the XDP programs on it) and the link events of a network
//! namespace (`RTMGRP_LINK`: created, deleted, renamed, changed).
//!
//! Hand-written on purpose, reading only the `ifinfomsg` header and the
//! `IFLA_IFNAME` and `IFLA_XDP` attributes and skipping everything else:
//! the crates that parse whole link messages (netlink-packet-route) reject
//! a message when one attribute of it is new to them (a VxLAN or bridge
//! attribute of a newer kernel, a stats block of an older one), and a link
//! message that cannot be read would make an interface look missing.
//!
//! A socket belongs to the network namespace it was created in:
//! [`Rtnl::open_in`] creates it on a thread that entered the namespace
//! (the caller's thread stays where it is).

use std::fs::File;
use std::io;
use std::os::fd::{AsFd as _, AsRawFd, FromRawFd as _, OwnedFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use libc::{RTEXT_FILTER_SKIP_STATS, RTM_DELLINK, RTM_GETLINK, RTM_NEWLINK};

const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_OVERRUN: u16 = 4;
const NLM_F_REQUEST: u16 = 1;
const IFINFOMSG_LEN: usize = 16;
const IFLA_IFNAME: u16 = 3;
const IFLA_XDP: u16 = 43;
const IFLA_EXT_MASK: u16 = 29;
const IFLA_XDP_ATTACHED: u16 = 2;
const IFLA_XDP_PROG_ID: u16 = 4;
const IFLA_XDP_DRV_PROG_ID: u16 = 5;
const IFLA_XDP_SKB_PROG_ID: u16 = 6;
const IFLA_XDP_HW_PROG_ID: u16 = 7;
/// `XDP_ATTACHED_*` of `IFLA_XDP_ATTACHED`.
const XDP_ATTACHED_DRV: u8 = 1;
const XDP_ATTACHED_SKB: u8 = 2;
const XDP_ATTACHED_HW: u8 = 3;
const NLA_TYPE_MASK: u16 = 0x3fff;
/// `RTMGRP_LINK`.
const RTMGRP_LINK: u32 = 1;
/// Receive buffer: link messages without stats are a few KiB; a bigger one
/// is reported as truncated rather than misread.
const RECV_BUF: usize = 64 * 1024;
/// How long a query waits for the kernel's answer.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// An XDP program on an interface, as the kernel reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XdpProg {
    /// Program id.
    pub id: u32,
    /// `driver`, `skb` or `hw`.
    pub mode: &'static str,
}

/// One interface as the kernel reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkInfo {
    /// Interface index (in its namespace).
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// The XDP programs attached to it, one per mode.
    pub xdp: Vec<XdpProg>,
}

impl LinkInfo {
    /// Whether program `id` runs on the interface (in any mode).
    pub fn runs(&self, id: u32) -> bool {
        self.xdp.iter().any(|p| p.id == id)
    }
}

/// What a link event said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkEvent {
    /// `RTM_NEWLINK`: created, renamed or changed.
    New(LinkInfo),
    /// `RTM_DELLINK`: deleted (or moved to another namespace).
    Del(LinkInfo),
    /// The kernel dropped events (`ENOBUFS`): anything may have changed.
    Overrun,
}

/// Errors of the netlink client.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// A socket call failed.
    #[error("rtnetlink: {what}: {source}")]
    Io {
        /// What was done.
        what: &'static str,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The network namespace could not be entered.
    #[error("network namespace {name}: {source}")]
    Netns {
        /// Its name (`/run/netns/NAME`).
        name: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The kernel answered with an error.
    #[error("rtnetlink: the kernel answered {what}: {source}")]
    Kernel {
        /// The request.
        what: String,
        /// The errno.
        #[source]
        source: io::Error,
    },
    /// The answer could not be read.
    #[error("rtnetlink: {0}")]
    Malformed(String),
}

fn io_err(what: &'static str) -> impl FnOnce(io::Error) -> NetlinkError {
    move |source| NetlinkError::Io { what, source }
}

/// A NETLINK_ROUTE socket.
#[derive(Debug)]
pub struct Rtnl {
    fd: OwnedFd,
    seq: AtomicU32,
}

/// `setsockopt(fd, SOL_SOCKET, name, value)`; its return value.
fn set_socket_option<T>(fd: &OwnedFd, name: libc::c_int, value: &T) -> libc::c_int {
    // SAFETY: `value` points to a `T` of the size given; the option's type is
    // the caller's to match.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            name,
            std::ptr::from_ref(value).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    }
}

impl AsRawFd for Rtnl {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl Rtnl {
    /// A socket in this thread's network namespace: for queries
    /// (`subscribe` false: blocking, with a timeout) or for link events
    /// (`subscribe` true: non-blocking, member of `RTMGRP_LINK`).
    pub fn open(subscribe: bool) -> Result<Rtnl, NetlinkError> {
        let mut flags = libc::SOCK_RAW | libc::SOCK_CLOEXEC;
        if subscribe {
            flags |= libc::SOCK_NONBLOCK;
        }
        // SAFETY: plain socket(2).
        let raw = unsafe { libc::socket(libc::AF_NETLINK, flags, libc::NETLINK_ROUTE) };
        if raw < 0 {
            return Err(io_err("socket")(io::Error::last_os_error()));
        }
        // SAFETY: a descriptor socket(2) just returned, owned from here.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: zeroed sockaddr_nl is valid.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups = if subscribe { RTMGRP_LINK } else { 0 };
        // SAFETY: addr is a valid sockaddr_nl of the given size.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const addr).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(io_err("bind")(io::Error::last_os_error()));
        }
        if subscribe {
            // Room for bursts (a bond rebuilt, many VLANs): an overrun is
            // handled, but costs a full check.
            let size: libc::c_int = 1 << 20;
            set_socket_option(&fd, libc::SO_RCVBUF, &size);
        } else {
            let tv = libc::timeval {
                tv_sec: QUERY_TIMEOUT.as_secs() as libc::time_t,
                tv_usec: 0,
            };
            if set_socket_option(&fd, libc::SO_RCVTIMEO, &tv) != 0 {
                return Err(io_err("setsockopt")(io::Error::last_os_error()));
            }
        }
        Ok(Rtnl {
            fd,
            seq: AtomicU32::new(1),
        })
    }

    /// [`Rtnl::open`] in network namespace `netns` (`/run/netns/NAME`), or
    /// in this thread's when `None`. The calling thread does not move.
    pub fn open_in(netns: Option<&str>, subscribe: bool) -> Result<Rtnl, NetlinkError> {
        let Some(name) = netns else {
            return Rtnl::open(subscribe);
        };
        let ns_err = |source| NetlinkError::Netns {
            name: name.to_owned(),
            source,
        };
        let file = File::open(Path::new("/run/netns").join(name)).map_err(ns_err)?;
        std::thread::scope(|s| {
            s.spawn(|| {
                // Only this short-lived thread changes namespace.
                let net = Some(rustix::thread::LinkNameSpaceType::Network);
                rustix::thread::move_into_link_name_space(file.as_fd(), net)
                    .map_err(|e| ns_err(e.into()))?;
                Rtnl::open(subscribe)
            })
            .join()
            .unwrap_or_else(|_| {
                Err(NetlinkError::Malformed(
                    "the namespace thread panicked".into(),
                ))
            })
        })
    }

    /// The interface named `name`, or `None` when there is none.
    pub fn link(&self, name: &str) -> Result<Option<LinkInfo>, NetlinkError> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let req = getlink_request(name, seq);
        // SAFETY: a valid buffer of the given length.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) };
        if n < 0 {
            return Err(io_err("send")(io::Error::last_os_error()));
        }
        let mut buf = vec![0u8; RECV_BUF];
        loop {
            let len = self.recv(&mut buf)?;
            for msg in messages(&buf[..len])? {
                if msg.seq != seq {
                    continue;
                }
                match msg.kind {
                    RTM_NEWLINK => return parse_link(msg.payload).map(Some),
                    NLMSG_ERROR => {
                        let errno = error_code(msg.payload)?;
                        if errno == libc::ENODEV {
                            return Ok(None);
                        }
                        return Err(NetlinkError::Kernel {
                            what: format!("RTM_GETLINK {name}"),
                            source: io::Error::from_raw_os_error(errno),
                        });
                    }
                    _ => {}
                }
            }
        }
    }

    /// Every link event queued on a subscribed socket (none when nothing
    /// is queued).
    pub fn events(&self) -> Result<Vec<LinkEvent>, NetlinkError> {
        let mut out = Vec::new();
        loop {
            match self.next_events() {
                Ok(evs) => out.extend(evs),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(out),
                Err(source) => {
                    return Err(NetlinkError::Io {
                        what: "recv",
                        source,
                    });
                }
            }
        }
    }

    /// The events of the next datagram of a subscribed socket;
    /// `WouldBlock` when none is queued. Lost events (`ENOBUFS`) and a
    /// datagram that cannot be read come as [`LinkEvent::Overrun`].
    pub fn next_events(&self) -> io::Result<Vec<LinkEvent>> {
        let mut buf = vec![0u8; RECV_BUF];
        let len = match self.recv(&mut buf) {
            Ok(n) => n,
            Err(NetlinkError::Io { source, .. }) => {
                if source.raw_os_error() == Some(libc::ENOBUFS) {
                    return Ok(vec![LinkEvent::Overrun]);
                }
                return Err(source);
            }
            Err(e) => {
                log::warn!("{e}; checking every interface");
                return Ok(vec![LinkEvent::Overrun]);
            }
        };
        let Ok(msgs) = messages(&buf[..len]) else {
            return Ok(vec![LinkEvent::Overrun]);
        };
        let mut out = Vec::new();
        for msg in msgs {
            match msg.kind {
                RTM_NEWLINK | RTM_DELLINK => match parse_link(msg.payload) {
                    Ok(l) if msg.kind == RTM_NEWLINK => out.push(LinkEvent::New(l)),
                    Ok(l) => out.push(LinkEvent::Del(l)),
                    Err(_) => out.push(LinkEvent::Overrun),
                },
                NLMSG_OVERRUN => out.push(LinkEvent::Overrun),
                _ => {}
            }
        }
        Ok(out)
    }

    /// One datagram; truncation is an error.
    fn recv(&self, buf: &mut [u8]) -> Result<usize, NetlinkError> {
        loop {
            // SAFETY: a valid buffer of the given length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_TRUNC,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(io_err("recv")(e));
            }
            let n = n as usize;
            if n > buf.len() {
                return Err(NetlinkError::Malformed(format!(
                    "a message of {n} bytes does not fit the {}-byte buffer",
                    buf.len()
                )));
            }
            return Ok(n);
        }
    }
}

/// An `RTM_GETLINK` request for `name` (stats skipped).
fn getlink_request(name: &str, seq: u32) -> Vec<u8> {
    let mut attrs = Vec::new();
    let mut ifname = name.as_bytes().to_vec();
    ifname.push(0);
    push_attr(&mut attrs, IFLA_IFNAME, &ifname);
    push_attr(
        &mut attrs,
        IFLA_EXT_MASK,
        &RTEXT_FILTER_SKIP_STATS.to_ne_bytes(),
    );
    let len = NLMSG_HDRLEN + IFINFOMSG_LEN + attrs.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&RTM_GETLINK.to_ne_bytes());
    m.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    // ifinfomsg: AF_UNSPEC, index 0 (the name selects).
    m.extend_from_slice(&[0u8; IFINFOMSG_LEN]);
    m.extend_from_slice(&attrs);
    m
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn push_attr(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = 4 + value.len();
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    out.resize(out.len() + align4(len) - len, 0);
}

/// One netlink message of a datagram.
struct Message<'a> {
    kind: u16,
    seq: u32,
    payload: &'a [u8],
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Split a datagram into messages.
fn messages(mut b: &[u8]) -> Result<Vec<Message<'_>>, NetlinkError> {
    let mut out = Vec::new();
    while b.len() >= NLMSG_HDRLEN {
        let bad = || NetlinkError::Malformed("a message header overruns the datagram".into());
        let len = u32_at(b, 0).ok_or_else(bad)? as usize;
        if len < NLMSG_HDRLEN || len > b.len() {
            return Err(bad());
        }
        let kind = u16_at(b, 4).ok_or_else(bad)?;
        let seq = u32_at(b, 8).ok_or_else(bad)?;
        out.push(Message {
            kind,
            seq,
            payload: &b[NLMSG_HDRLEN..len],
        });
        if kind == NLMSG_DONE {
            break;
        }
        b = &b[align4(len).min(b.len())..];
    }
    Ok(out)
}

/// The (positive) errno of an `NLMSG_ERROR` payload.
fn error_code(payload: &[u8]) -> Result<i32, NetlinkError> {
    let raw =
        u32_at(payload, 0).ok_or_else(|| NetlinkError::Malformed("a short NLMSG_ERROR".into()))?;
    Ok((raw as i32).saturating_neg())
}

/// Attributes of a block: (type, value).
fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = usize::from(u16_at(b, 0)?);
        let kind = u16_at(b, 2)? & NLA_TYPE_MASK;
        if len < 4 || len > b.len() {
            return None;
        }
        let value = &b[4..len];
        b = &b[align4(len).min(b.len())..];
        Some((kind, value))
    })
}

/// An `ifinfomsg` with its attributes: index, name, XDP programs.
fn parse_link(payload: &[u8]) -> Result<LinkInfo, NetlinkError> {
    if payload.len() < IFINFOMSG_LEN {
        return Err(NetlinkError::Malformed("a short link message".into()));
    }
    let index = u32_at(payload, 4).unwrap_or(0);
    let mut link = LinkInfo {
        index,
        ..LinkInfo::default()
    };
    let mut attached = 0u8;
    let mut single = None;
    for (kind, value) in attrs(&payload[IFINFOMSG_LEN..]) {
        match kind {
            IFLA_IFNAME => {
                let end = value.iter().position(|&c| c == 0).unwrap_or(value.len());
                link.name = String::from_utf8_lossy(&value[..end]).into_owned();
            }
            IFLA_XDP => {
                for (k, v) in attrs(value) {
                    let id = u32_at(v, 0).unwrap_or(0);
                    let mode = match k {
                        IFLA_XDP_ATTACHED => {
                            attached = v.first().copied().unwrap_or(0);
                            continue;
                        }
                        IFLA_XDP_PROG_ID => {
                            single = Some(id);
                            continue;
                        }
                        IFLA_XDP_DRV_PROG_ID => "driver",
                        IFLA_XDP_SKB_PROG_ID => "skb",
                        IFLA_XDP_HW_PROG_ID => "hw",
                        _ => continue,
                    };
                    if id != 0 {
                        link.xdp.push(XdpProg { id, mode });
                    }
                }
            }
            _ => {}
        }
    }
    // Kernels that report only IFLA_XDP_PROG_ID with the mode in
    // IFLA_XDP_ATTACHED.
    if let Some(id) = single
        && id != 0
        && !link.runs(id)
    {
        let mode = match attached {
            XDP_ATTACHED_DRV => "driver",
            XDP_ATTACHED_SKB => "skb",
            XDP_ATTACHED_HW => "hw",
            _ => "unknown",
        };
        link.xdp.push(XdpProg { id, mode });
    }
    Ok(link)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A link message as the kernel sends it, with attributes the parser
    /// does not know around the ones it reads.
    fn link_message(kind: u16, seq: u32, index: u32, name: &str, xdp: &[(u16, u32)]) -> Vec<u8> {
        let mut attrs = Vec::new();
        push_attr(&mut attrs, 4, &1500u32.to_ne_bytes()); // IFLA_MTU
        let mut n = name.as_bytes().to_vec();
        n.push(0);
        push_attr(&mut attrs, IFLA_IFNAME, &n);
        push_attr(&mut attrs, 0x8000 | 0xc8, &[1, 2, 3]); // unknown, nested flag
        let mut inner = Vec::new();
        for &(k, v) in xdp {
            if k == IFLA_XDP_ATTACHED {
                push_attr(&mut inner, k, &[v as u8]);
            } else {
                push_attr(&mut inner, k, &v.to_ne_bytes());
            }
        }
        push_attr(&mut attrs, IFLA_XDP | 0x8000, &inner);
        let len = NLMSG_HDRLEN + IFINFOMSG_LEN + attrs.len();
        let mut m = Vec::new();
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        let mut ifi = [0u8; IFINFOMSG_LEN];
        ifi[4..8].copy_from_slice(&index.to_ne_bytes());
        m.extend_from_slice(&ifi);
        m.extend_from_slice(&attrs);
        m
    }

    #[test]
    fn parses_name_index_and_xdp_programs() {
        let m = link_message(
            RTM_NEWLINK,
            7,
            12,
            "veth-a",
            &[
                (IFLA_XDP_ATTACHED, u32::from(XDP_ATTACHED_SKB)),
                (IFLA_XDP_SKB_PROG_ID, 99),
                (IFLA_XDP_PROG_ID, 99),
            ],
        );
        let msgs = messages(&m).unwrap();
        assert_eq!(msgs.len(), 1);
        assert_eq!((msgs[0].kind, msgs[0].seq), (RTM_NEWLINK, 7));
        let l = parse_link(msgs[0].payload).unwrap();
        assert_eq!(l.index, 12);
        assert_eq!(l.name, "veth-a");
        assert_eq!(
            l.xdp,
            [XdpProg {
                id: 99,
                mode: "skb"
            }]
        );
        assert!(l.runs(99) && !l.runs(98));
        // Only the single-program form: the mode comes from ATTACHED.
        let m = link_message(
            RTM_NEWLINK,
            1,
            3,
            "eth0",
            &[
                (IFLA_XDP_ATTACHED, u32::from(XDP_ATTACHED_DRV)),
                (IFLA_XDP_PROG_ID, 5),
            ],
        );
        let l = parse_link(messages(&m).unwrap()[0].payload).unwrap();
        assert_eq!(
            l.xdp,
            [XdpProg {
                id: 5,
                mode: "driver"
            }]
        );
        // No program.
        let m = link_message(RTM_DELLINK, 1, 3, "eth0", &[(IFLA_XDP_ATTACHED, 0)]);
        assert!(
            parse_link(messages(&m).unwrap()[0].payload)
                .unwrap()
                .xdp
                .is_empty()
        );
    }

    #[test]
    fn splits_datagrams_and_reads_errors() {
        let mut d = link_message(RTM_NEWLINK, 1, 2, "a", &[]);
        d.extend(link_message(RTM_DELLINK, 2, 3, "b", &[]));
        let mut err = Vec::new();
        err.extend_from_slice(&36u32.to_ne_bytes());
        err.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        err.extend_from_slice(&[0; 2]);
        err.extend_from_slice(&3u32.to_ne_bytes());
        err.extend_from_slice(&[0; 4]);
        err.extend_from_slice(&(-libc::ENODEV).to_ne_bytes());
        err.extend_from_slice(&[0; 16]);
        d.extend(&err);
        let msgs = messages(&d).unwrap();
        let kinds: Vec<(u16, u32)> = msgs.iter().map(|m| (m.kind, m.seq)).collect();
        assert_eq!(
            kinds,
            [(RTM_NEWLINK, 1), (RTM_DELLINK, 2), (NLMSG_ERROR, 3)]
        );
        assert_eq!(error_code(msgs[2].payload).unwrap(), libc::ENODEV);
        // A length past the end is refused, not read.
        let mut bad = link_message(RTM_NEWLINK, 1, 2, "a", &[]);
        bad[0] = 0xff;
        assert!(messages(&bad).is_err());
        // Attributes that overrun their block end the walk.
        assert_eq!(attrs(&[8, 0, 3, 0, b'x']).count(), 0);
    }

    #[test]
    fn request_names_the_interface() {
        let r = getlink_request("eth1", 42);
        assert_eq!(u32_at(&r, 0).unwrap() as usize, r.len());
        assert_eq!(u16_at(&r, 4), Some(RTM_GETLINK));
        assert_eq!(u32_at(&r, 8), Some(42));
        let a: Vec<(u16, Vec<u8>)> = attrs(&r[NLMSG_HDRLEN + IFINFOMSG_LEN..])
            .map(|(k, v)| (k, v.to_vec()))
            .collect();
        assert_eq!(a[0], (IFLA_IFNAME, b"eth1\0".to_vec()));
        assert_eq!(a[1].0, IFLA_EXT_MASK);
    }

    #[test]
    fn the_kernel_answers_for_loopback() {
        // Every network namespace has `lo`, index 1; an unknown name is None.
        let r = Rtnl::open(false).unwrap();
        let lo = r.link("lo").unwrap().expect("lo");
        assert_eq!((lo.index, lo.name.as_str()), (1, "lo"));
        assert_eq!(r.link("ff-no-such-if0").unwrap(), None);
        // A subscribed socket with nothing queued.
        let s = Rtnl::open(true).unwrap();
        assert!(s.events().unwrap().is_empty());
    }
}
