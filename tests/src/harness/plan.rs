//! The harness's address plan: every address, port and listed range, all
//! from the documentation prefixes (RFC 5737, RFC 3849).
//!
//! ```text
//!  client ns                gw ns (forwarding, XDP on both veths)            net ns
//!  c0 192.0.2.2/24  <-> gw-c 192.0.2.1/24      gw-n 203.0.113.1/24 <-> n0 203.0.113.2/24
//!     2001:db8:c1::2/64      2001:db8:c1::1/64      2001:db8:e1::1/64      2001:db8:e1::2/64
//!                                                                          lo: the services
//! ```
//!
//! `client` also holds [`CALLERS`]` - 1` further host addresses on `c0`
//! (192.0.2.3 ..., 2001:db8:c1::3 ...; [`caller_ip`]): a `flows=P%` policy
//! picks each caller's fate by address, so a run that spreads its calls over
//! several callers shows the split.
//!
//! The services live on `net`'s loopback as host addresses:
//!
//! | role | IPv4 | IPv6 | port | listed |
//! |---|---|---|---|---|
//! | WhatsApp relay | 198.51.100.10 | 2001:db8:5a::10 | UDP 3478 | whatsapp |
//! | WhatsApp chat | 198.51.100.11 | 2001:db8:5a::11 | TCP 443 | whatsapp |
//! | DNS resolver | 198.51.100.12 | 2001:db8:5a::12 | UDP 53 | whatsapp |
//! | QUIC server | 198.51.100.13 | 2001:db8:5a::13 | UDP 443 | whatsapp |
//! | Telegram reflector 1 | 198.51.100.20 | 2001:db8:7e::20 | UDP 533 | telegram |
//! | Telegram TURN | 198.51.100.21 | 2001:db8:7e::21 | UDP 1400 | telegram |
//! | Telegram chat | 198.51.100.22 | 2001:db8:7e::22 | TCP 443 | telegram |
//! | game server | 198.51.100.23 | 2001:db8:7e::23 | UDP 19132 | telegram |
//! | Telegram reflector 2 | 198.51.100.24 | 2001:db8:7e::24 | UDP 533 | telegram |
//! | WhatsApp relay, TCP | 198.51.100.10 | 2001:db8:5a::10 | TCP 3478 | whatsapp |
//! | Telegram reflector 1, TCP | 198.51.100.20 | 2001:db8:7e::20 | TCP 533 | telegram |
//! | Telegram TURN, TCP | 198.51.100.21 | 2001:db8:7e::21 | TCP 1400 | telegram |
//! | WebRTC SFU | 198.51.100.100 | 2001:db8:99::100 | UDP 10000 | no |
//! | WhatsApp peer | 198.51.100.200 | 2001:db8:99::200 | UDP 45000 | no |
//! | tgcalls peer | 198.51.100.201 | 2001:db8:99::201 | UDP 46000 | no |
//!
//! The DNS, QUIC and game servers sit inside the listed ranges on purpose:
//! a `scope=media` policy must let non-call UDP to a listed range through,
//! so that is the case worth testing. The peers are outside every list: a
//! peer-to-peer leg is a call only through what the filter learned from the
//! relay leg. The TCP services share their address with the UDP service of
//! the same role: the calls fall back to them under `--evasion tcp`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// `whatsapp.txt` of the harness lists.
pub const WHATSAPP_LIST: &str = "# flowfilter harness: stand-in WhatsApp ranges (documentation prefixes)\n198.51.100.0/28\n2001:db8:5a::/48\n";
/// `telegram.txt` of the harness lists.
pub const TELEGRAM_LIST: &str = "# flowfilter harness: stand-in Telegram ranges (documentation prefixes)\n198.51.100.16/28\n2001:db8:7e::/48\n";

/// The client side's interface (in `client`).
pub const CLIENT_IF: &str = "c0";
/// The gateway's interface towards `client`.
pub const GW_CLIENT_IF: &str = "gw-c";
/// The gateway's interface towards `net`.
pub const GW_NET_IF: &str = "gw-n";
/// The far side's interface (in `net`).
pub const NET_IF: &str = "n0";

/// Client address, IPv4.
pub const CLIENT4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// Gateway address on the client link, IPv4.
pub const GW_CLIENT4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// Gateway address on the net link, IPv4.
pub const GW_NET4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// Net's link address, IPv4.
pub const NET4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
/// Client address, IPv6.
pub const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xc1, 0, 0, 0, 0, 2);
/// Gateway address on the client link, IPv6.
pub const GW_CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xc1, 0, 0, 0, 0, 1);
/// Gateway address on the net link, IPv6.
pub const GW_NET6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xe1, 0, 0, 0, 0, 1);
/// Net's link address, IPv6.
pub const NET6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xe1, 0, 0, 0, 0, 2);

/// Prefixes behind `net` (routed by client and gw towards it), IPv4.
pub const NET_ROUTES4: &[&str] = &["198.51.100.0/24"];
/// Prefixes behind `net`, IPv6.
pub const NET_ROUTES6: &[&str] = &["2001:db8:5a::/48", "2001:db8:7e::/48", "2001:db8:99::/48"];
/// Addresses used on the net link, routed by `client` through gw.
pub const TRANSIT_ROUTES4: &[&str] = &["203.0.113.0/24"];
/// Addresses used on the net link, IPv6.
pub const TRANSIT_ROUTES6: &[&str] = &["2001:db8:e1::/64"];
/// The client prefixes, routed by `net` back through gw.
pub const CLIENT_ROUTES4: &[&str] = &["192.0.2.0/24"];
/// The client prefixes, IPv6.
pub const CLIENT_ROUTES6: &[&str] = &["2001:db8:c1::/64"];

/// What a service socket answers (see `wire::Responder`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// WhatsApp relay: private STUN, Allocate, ICE checks, RTP, keepalives.
    WaRelay,
    /// Telegram libtgvoip reflector: control and data packets.
    TgReflector,
    /// Telegram TURN (REALM telegram.org), ChannelData.
    TgTurn,
    /// WebRTC SFU: STUN, DTLS, SRTP/SRTCP.
    Sfu,
    /// A peer-to-peer endpoint: ICE checks, STUN, RTP, otherwise opaque bytes.
    Peer,
    /// DNS resolver.
    Dns,
    /// QUIC-like server.
    Quic,
    /// Game server (RakNet-like).
    Game,
    /// TLS-like TCP messaging server.
    Chat,
    /// WhatsApp relay over TCP: TURN with RFC 4571 framing (`--evasion tcp`).
    WaRelayTcp,
    /// Telegram reflector over TCP: hello, then length-prefixed packets.
    TgReflectorTcp,
    /// Telegram TURN over TCP: STUN and ChannelData, no framing (RFC 6062).
    TgTurnTcp,
}

impl Kind {
    /// Name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::WaRelay => "wa-relay",
            Kind::TgReflector => "tg-reflector",
            Kind::TgTurn => "tg-turn",
            Kind::Sfu => "sfu",
            Kind::Peer => "peer",
            Kind::Dns => "dns",
            Kind::Quic => "quic",
            Kind::Game => "game",
            Kind::Chat => "chat",
            Kind::WaRelayTcp => "wa-relay-tcp",
            Kind::TgReflectorTcp => "tg-reflector-tcp",
            Kind::TgTurnTcp => "tg-turn-tcp",
        }
    }

    /// Inverse of [`Kind::name`].
    pub fn from_name(s: &str) -> Option<Kind> {
        ALL_KINDS.iter().copied().find(|k| k.name() == s)
    }

    /// TCP (else UDP).
    pub fn is_tcp(self) -> bool {
        matches!(
            self,
            Kind::Chat | Kind::WaRelayTcp | Kind::TgReflectorTcp | Kind::TgTurnTcp
        )
    }
}

const ALL_KINDS: &[Kind] = &[
    Kind::WaRelay,
    Kind::TgReflector,
    Kind::TgTurn,
    Kind::Sfu,
    Kind::Peer,
    Kind::Dns,
    Kind::Quic,
    Kind::Game,
    Kind::Chat,
    Kind::WaRelayTcp,
    Kind::TgReflectorTcp,
    Kind::TgTurnTcp,
];

/// A named service in `net`.
#[derive(Clone, Copy, Debug)]
pub struct Service {
    /// Role name (`--to ROLE=ADDR:PORT` on the generator).
    pub role: &'static str,
    /// What it answers.
    pub kind: Kind,
    /// Last byte of the IPv4 address in 198.51.100.0/24.
    pub v4_host: u8,
    /// IPv6 address.
    pub v6: Ipv6Addr,
    /// Port.
    pub port: u16,
}

impl Service {
    /// The service's address in the given family.
    pub fn addr(&self, v6: bool) -> SocketAddr {
        let ip = if v6 {
            IpAddr::V6(self.v6)
        } else {
            IpAddr::V4(Ipv4Addr::new(198, 51, 100, self.v4_host))
        };
        SocketAddr::new(ip, self.port)
    }
}

const fn v6(net: u16, host: u16) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, net, 0, 0, 0, 0, host)
}

/// Every service of `net`.
pub const SERVICES: &[Service] = &[
    Service {
        role: "wa-relay",
        kind: Kind::WaRelay,
        v4_host: 10,
        v6: v6(0x5a, 0x10),
        port: 3478,
    },
    Service {
        role: "wa-chat",
        kind: Kind::Chat,
        v4_host: 11,
        v6: v6(0x5a, 0x11),
        port: 443,
    },
    Service {
        role: "dns",
        kind: Kind::Dns,
        v4_host: 12,
        v6: v6(0x5a, 0x12),
        port: 53,
    },
    Service {
        role: "quic",
        kind: Kind::Quic,
        v4_host: 13,
        v6: v6(0x5a, 0x13),
        port: 443,
    },
    Service {
        role: "tg-reflector",
        kind: Kind::TgReflector,
        v4_host: 20,
        v6: v6(0x7e, 0x20),
        port: 533,
    },
    Service {
        role: "tg-turn",
        kind: Kind::TgTurn,
        v4_host: 21,
        v6: v6(0x7e, 0x21),
        port: 1400,
    },
    Service {
        role: "tg-chat",
        kind: Kind::Chat,
        v4_host: 22,
        v6: v6(0x7e, 0x22),
        port: 443,
    },
    Service {
        role: "game",
        kind: Kind::Game,
        v4_host: 23,
        v6: v6(0x7e, 0x23),
        port: 19132,
    },
    Service {
        role: "tg-reflector2",
        kind: Kind::TgReflector,
        v4_host: 24,
        v6: v6(0x7e, 0x24),
        port: 533,
    },
    Service {
        role: "wa-relay-tcp",
        kind: Kind::WaRelayTcp,
        v4_host: 10,
        v6: v6(0x5a, 0x10),
        port: 3478,
    },
    Service {
        role: "tg-reflector-tcp",
        kind: Kind::TgReflectorTcp,
        v4_host: 20,
        v6: v6(0x7e, 0x20),
        port: 533,
    },
    Service {
        role: "tg-turn-tcp",
        kind: Kind::TgTurnTcp,
        v4_host: 21,
        v6: v6(0x7e, 0x21),
        port: 1400,
    },
    Service {
        role: "sfu",
        kind: Kind::Sfu,
        v4_host: 100,
        v6: v6(0x99, 0x100),
        port: 10000,
    },
    Service {
        role: "wa-peer",
        kind: Kind::Peer,
        v4_host: 200,
        v6: v6(0x99, 0x200),
        port: 45000,
    },
    Service {
        role: "tg-peer",
        kind: Kind::Peer,
        v4_host: 201,
        v6: v6(0x99, 0x201),
        port: 46000,
    },
];

/// The service playing `role`.
pub fn service(role: &str) -> Option<&'static Service> {
    SERVICES.iter().find(|s| s.role == role)
}

/// The client's address in the given family.
pub fn client_ip(v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(CLIENT6)
    } else {
        IpAddr::V4(CLIENT4)
    }
}

/// Client addresses: the plan's client address and the further callers
/// beside it on `c0`.
pub const CALLERS: u8 = 8;

/// Caller `n` (0 is [`client_ip`]): 192.0.2.(2+n), 2001:db8:c1::(2+n).
/// `None` for `n >= CALLERS`.
pub fn caller_ip(v6: bool, n: u8) -> Option<IpAddr> {
    if n >= CALLERS {
        return None;
    }
    let host = 2 + n;
    Some(if v6 {
        IpAddr::V6(Ipv6Addr::new(
            0x2001,
            0xdb8,
            0xc1,
            0,
            0,
            0,
            0,
            u16::from(host),
        ))
    } else {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, host))
    })
}

/// A generator scenario.
#[derive(Clone, Copy, Debug)]
pub struct Scenario {
    /// Name (`ffgen run NAME`, `cargo xtask harness run NAME`).
    pub name: &'static str,
    /// A messenger call: with `drop` on whatsapp and telegram its receiving
    /// sides get at most a handful of packets. Otherwise (non-call traffic,
    /// other providers' calls) it must pass untouched in every mode.
    pub blocked: bool,
    /// Roles it talks to.
    pub roles: &'static [&'static str],
    /// One line for `--help` and the docs.
    pub about: &'static str,
    /// Runs on its own from `client` (false: a helper another scenario
    /// starts, e.g. `wa-p2p-peer`).
    pub standalone: bool,
}

/// Every scenario, in the order `all` runs them.
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "whatsapp",
        blocked: true,
        roles: &["wa-relay", "wa-peer"],
        about: "WhatsApp call: relay leg on UDP 3478 (private STUN, Allocate 0x4000, ICE checks, RTP PT 120, health/OK), then peer to peer from the same local port (ICE checks, RTP)",
        standalone: true,
    },
    Scenario {
        name: "whatsapp-inherit",
        blocked: true,
        roles: &["wa-relay", "wa-peer"],
        about: "like whatsapp, but the peer-to-peer leg carries RTP only (no ICE check): recognisable only by the local port it shares with the relay leg",
        standalone: true,
    },
    Scenario {
        name: "whatsapp-callee",
        blocked: true,
        roles: &["wa-relay", "wa-peer"],
        about: "WhatsApp relay leg, then the peer calls the same local port from net (ICE checks, RTP): the peer-to-peer flow's first packet comes from outside; the client answers (server mode in client)",
        standalone: true,
    },
    Scenario {
        name: "wa-p2p-peer",
        blocked: true,
        roles: &["callee"],
        about: "helper of whatsapp-callee, run in net with --bind PEER --to callee=ADDR: ICE checks and RTP to the callee",
        standalone: false,
    },
    Scenario {
        name: "telegram",
        blocked: true,
        roles: &["tg-reflector", "tg-reflector2"],
        about: "Telegram libtgvoip call: tagged reflector control (32/40-byte requests, 64/48-byte answers) to two reflectors on UDP 533, then tag + msg_key + ciphertext data via the first",
        standalone: true,
    },
    Scenario {
        name: "tgcalls",
        blocked: true,
        roles: &["tg-turn", "tg-peer"],
        about: "Telegram tgcalls call: TURN on UDP 1400 (REALM telegram.org, CreatePermission/ChannelBind with XOR-PEER-ADDRESS first, ChannelData), then peer to peer to that peer address (opaque encrypted datagrams)",
        standalone: true,
    },
    Scenario {
        name: "webrtc",
        blocked: false,
        roles: &["sfu"],
        about: "generic WebRTC call to an unlisted SFU: STUN binding with USERNAME/MESSAGE-INTEGRITY/FINGERPRINT, DTLS handshake, SRTP PT 111, SRTCP",
        standalone: true,
    },
    Scenario {
        name: "messaging",
        blocked: false,
        roles: &["wa-chat", "tg-chat"],
        about: "TCP messaging to the stand-in WhatsApp and Telegram chat servers: TLS-like records (handshake, then application data echoed)",
        standalone: true,
    },
    Scenario {
        name: "dns",
        blocked: false,
        roles: &["dns"],
        about: "DNS queries (A/AAAA with EDNS), one socket per query, to a resolver inside a listed range",
        standalone: true,
    },
    Scenario {
        name: "dns-big",
        blocked: false,
        roles: &["dns"],
        about: "DNS TXT queries (EDNS, 4096-byte buffer), one socket per query, answered with 4000 bytes from inside a listed range: the server's kernel fragments each answer on the 1500-byte MTU",
        standalone: true,
    },
    Scenario {
        name: "quic",
        blocked: false,
        roles: &["quic"],
        about: "QUIC-like: 1200-byte Initial (version 1), Handshake, then short-header packets, to a server inside a listed range",
        standalone: true,
    },
    Scenario {
        name: "game",
        blocked: false,
        roles: &["game"],
        about: "RakNet-like game stream: unconnected ping/pong, then 0x84 frame sets both ways (passes the loose per-packet RTP check), to a server inside a listed range",
        standalone: true,
    },
];

/// The scenarios' names, comma-separated (for error messages).
pub fn names() -> String {
    SCENARIOS
        .iter()
        .map(|s| s.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The scenario called `name`.
pub fn scenario(name: &str) -> Option<&'static Scenario> {
    SCENARIOS.iter().find(|s| s.name == name)
}
