//! The traffic generators behind `ffgen`: the client side of every scenario
//! (real UDP/TCP sockets, a fixed number of packets at a fixed rate) and the
//! responder (`ffgen serve`) that answers them.
//!
//! Counting, per flow (one 5-tuple):
//!
//! * UDP: `sent_*` / `recv_*` are datagrams and their payload bytes. The
//!   responder answers every datagram it receives with exactly one datagram,
//!   so an untouched flow has `server recv == client sent` and
//!   `client recv == server sent == client sent`.
//! * TCP: packets are TLS-like records, bytes are record bytes. The client
//!   sends its records, half-closes, and reads until the server closes.
//!
//! Everything is bounded: every send is followed by one pacing interval in
//! which answers are read; after the last send the client waits at most
//! `linger` for missing answers. Nothing retransmits.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use filter_common::pktbuild::{rtcp, stun_attr, stun_type};
use serde::{Deserialize, Serialize};

use crate::harness::plan::{self, Kind};
use crate::harness::wire::{self, Rng};

/// One flow as one side saw it: a JSON line of `ffgen run` / `ffgen serve`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowLine {
    /// `client` or `server`.
    pub role: String,
    /// Scenario name (client lines), empty on server lines.
    pub scenario: String,
    /// Flow name within the scenario (`relay`, `p2p`, ...); on server lines
    /// the service kind.
    pub flow: String,
    /// `udp` or `tcp`.
    pub proto: String,
    /// This side's address.
    pub local: SocketAddr,
    /// The other side's address.
    pub remote: SocketAddr,
    /// Datagrams (UDP) or records (TCP) sent.
    pub sent_pkts: u64,
    /// Payload bytes sent.
    pub sent_bytes: u64,
    /// Datagrams or records received.
    pub recv_pkts: u64,
    /// Payload bytes received.
    pub recv_bytes: u64,
}

impl FlowLine {
    fn new(
        role: &str,
        scenario: &str,
        flow: &str,
        proto: &str,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Self {
        FlowLine {
            role: role.to_string(),
            scenario: scenario.to_string(),
            flow: flow.to_string(),
            proto: proto.to_string(),
            local,
            remote,
            sent_pkts: 0,
            sent_bytes: 0,
            recv_pkts: 0,
            recv_bytes: 0,
        }
    }

    /// The line as JSON (no newline).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// How a client scenario runs.
#[derive(Clone, Debug)]
pub struct RunOpts {
    /// Time between two sends.
    pub interval: Duration,
    /// Media packets per call leg (messages, queries, frames: derived from it).
    pub packets: u32,
    /// Longest wait for missing answers after the last send.
    pub linger: Duration,
    /// Longest wait for an answer the scenario needs (TURN nonce, QUIC cid).
    pub step_timeout: Duration,
    /// Seed of every random byte.
    pub seed: u64,
    /// Use the IPv6 plan.
    pub v6: bool,
    /// Local address to bind (default: the plan's client address).
    pub bind: Option<IpAddr>,
    /// Role → address overrides (default: the plan's services).
    pub targets: BTreeMap<String, SocketAddr>,
    /// Set by the caller to end a serving phase (`whatsapp-callee`).
    pub stop: Option<Arc<AtomicBool>>,
}

impl Default for RunOpts {
    fn default() -> Self {
        RunOpts {
            interval: Duration::from_millis(20),
            packets: 30,
            linger: Duration::from_millis(400),
            step_timeout: Duration::from_millis(150),
            seed: 1,
            v6: false,
            bind: None,
            targets: BTreeMap::new(),
            stop: None,
        }
    }
}

impl RunOpts {
    fn target(&self, role: &str) -> io::Result<SocketAddr> {
        if let Some(a) = self.targets.get(role) {
            return Ok(*a);
        }
        plan::service(role)
            .map(|s| s.addr(self.v6))
            .ok_or_else(|| io::Error::other(format!("no address for role `{role}`")))
    }

    fn local_ip(&self) -> IpAddr {
        self.bind.unwrap_or_else(|| plan::client_ip(self.v6))
    }
}

// ---------------------------------------------------------------------------
// UDP client leg
// ---------------------------------------------------------------------------

/// One local UDP socket talking to one or more remotes, paced.
struct UdpLeg {
    sock: UdpSocket,
    local: SocketAddr,
    scenario: &'static str,
    flows: Vec<FlowLine>,
    inbox: Vec<(SocketAddr, Vec<u8>)>,
    interval: Duration,
    next: Instant,
}

impl UdpLeg {
    fn new(opts: &RunOpts, scenario: &'static str) -> io::Result<UdpLeg> {
        let sock = UdpSocket::bind(SocketAddr::new(opts.local_ip(), 0))?;
        let local = sock.local_addr()?;
        Ok(UdpLeg {
            sock,
            local,
            scenario,
            flows: Vec::new(),
            inbox: Vec::new(),
            interval: opts.interval,
            next: Instant::now(),
        })
    }

    fn flow_mut(&mut self, remote: SocketAddr, name: &str) -> &mut FlowLine {
        let i = if let Some(i) = self.flows.iter().position(|f| f.remote == remote) {
            i
        } else {
            let f = FlowLine::new("client", self.scenario, name, "udp", self.local, remote);
            self.flows.push(f);
            self.flows.len() - 1
        };
        &mut self.flows[i]
    }

    /// Send one datagram of flow `name`, then read answers for one interval.
    fn send(&mut self, name: &str, to: SocketAddr, bytes: &[u8]) -> io::Result<()> {
        self.sock.send_to(bytes, to)?;
        let f = self.flow_mut(to, name);
        f.sent_pkts += 1;
        f.sent_bytes += bytes.len() as u64;
        let now = Instant::now();
        self.next = if self.next + self.interval < now {
            now + self.interval
        } else {
            self.next + self.interval
        };
        let until = self.next;
        self.recv_until(until, |_| false)
    }

    /// Read answers until `deadline` or until `done` says so.
    fn recv_until(&mut self, deadline: Instant, done: impl Fn(&UdpLeg) -> bool) -> io::Result<()> {
        let mut buf = vec![0u8; 65_536];
        loop {
            if done(self) {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(());
            }
            self.sock.set_read_timeout(Some(deadline - now))?;
            match self.sock.recv_from(&mut buf) {
                Ok((n, from)) => {
                    let f = self.flow_mut(from, "unexpected");
                    f.recv_pkts += 1;
                    f.recv_bytes += n as u64;
                    self.inbox.push((from, buf[..n].to_vec()));
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::ConnectionRefused
                    ) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Send a request whose answer the scenario needs; wait for it at most
    /// `timeout` (after the pacing interval).
    fn request(
        &mut self,
        name: &str,
        to: SocketAddr,
        bytes: &[u8],
        timeout: Duration,
    ) -> io::Result<Option<Vec<u8>>> {
        self.inbox.retain(|(from, _)| *from != to);
        self.send(name, to, bytes)?;
        let deadline = Instant::now() + timeout;
        self.recv_until(deadline, |l| l.inbox.iter().any(|(f, _)| *f == to))?;
        Ok(self
            .inbox
            .iter()
            .rev()
            .find(|(f, _)| *f == to)
            .map(|(_, b)| b.clone()))
    }

    fn all_answered(&self) -> bool {
        self.flows.iter().all(|f| f.recv_pkts >= f.sent_pkts)
    }

    /// Wait for missing answers until `deadline`.
    fn linger(&mut self, deadline: Instant) -> io::Result<()> {
        self.recv_until(deadline, UdpLeg::all_answered)
    }
}

// ---------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------

/// Run scenario `name`; returns one line per flow.
pub fn run(name: &str, opts: &RunOpts) -> io::Result<Vec<FlowLine>> {
    run_with_events(name, opts, &mut |_| {})
}

/// [`run`], passing what the scenario announces while it runs (the
/// `listening` address of `whatsapp-callee`) to `events`.
pub fn run_with_events(
    name: &str,
    opts: &RunOpts,
    events: &mut dyn FnMut(&serde_json::Value),
) -> io::Result<Vec<FlowLine>> {
    let Some(sc) = plan::scenario(name) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "unknown scenario `{name}` (known: {})",
                plan::SCENARIOS
                    .iter()
                    .map(|s| s.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    };
    let mut rng = Rng::new(opts.seed ^ u64::from(name.len() as u32) << 32);
    match sc.name {
        "whatsapp" => whatsapp(opts, &mut rng, sc.name, false),
        "whatsapp-inherit" => whatsapp(opts, &mut rng, sc.name, true),
        "whatsapp-callee" => whatsapp_callee(opts, &mut rng, events),
        "wa-p2p-peer" => wa_p2p_peer(opts, &mut rng),
        "telegram" => telegram(opts, &mut rng),
        "tgcalls" => tgcalls(opts, &mut rng),
        "webrtc" => webrtc(opts, &mut rng),
        "messaging" => messaging(opts, &mut rng),
        "dns" => dns(opts),
        "quic" => quic(opts, &mut rng),
        "game" => game(opts, &mut rng),
        other => Err(io::Error::other(format!(
            "scenario `{other}` has no generator"
        ))),
    }
}

fn finish(mut leg: UdpLeg, opts: &RunOpts) -> io::Result<Vec<FlowLine>> {
    leg.linger(Instant::now() + opts.linger)?;
    Ok(leg.flows)
}

struct RtpStream {
    pt: u8,
    ssrc: u32,
    seq: u16,
    ts: u32,
    ts_step: u32,
}

impl RtpStream {
    fn new(pt: u8, ts_step: u32, rng: &mut Rng) -> RtpStream {
        RtpStream {
            pt,
            ssrc: rng.next_u64() as u32,
            seq: rng.next_u64() as u16,
            ts: rng.next_u64() as u32,
            ts_step,
        }
    }

    fn next(&mut self, len: usize, rng: &mut Rng) -> Vec<u8> {
        let p = wire::srtp(self.pt, self.seq, self.ts, self.ssrc, len, rng);
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(self.ts_step);
        p
    }
}

/// WhatsApp relay leg: private pings, Allocate, ICE checks, RTP PT 120
/// with `health` keepalives. Returns the audio stream to continue.
fn wa_relay_leg(
    leg: &mut UdpLeg,
    relay: SocketAddr,
    opts: &RunOpts,
    rng: &mut Rng,
) -> io::Result<RtpStream> {
    for _ in 0..3 {
        leg.send("relay", relay, &wire::wa_ping(rng.array()))?;
    }
    leg.send("relay", relay, &wire::wa_allocate(rng.array(), rng.array()))?;
    for _ in 0..2 {
        let ice = wire::wa_ice_check(stun_type::BINDING_REQUEST, rng.array(), rng.array());
        leg.send("relay", relay, &ice)?;
    }
    let mut audio = RtpStream::new(wire::WA_AUDIO_PT, 320, rng);
    for i in 0..opts.packets {
        if i % 15 == 7 {
            leg.send("relay", relay, wire::WA_HEALTH)?;
        }
        let len = rng.range(40, 90);
        let p = audio.next(len, rng);
        leg.send("relay", relay, &p)?;
    }
    Ok(audio)
}

/// WhatsApp peer-to-peer media to `to` as flow `name`: two 44-byte ICE
/// checks (unless `inherit`), then RTP.
fn wa_p2p_leg(
    leg: &mut UdpLeg,
    name: &str,
    to: SocketAddr,
    audio: &mut RtpStream,
    inherit: bool,
    opts: &RunOpts,
    rng: &mut Rng,
) -> io::Result<()> {
    if !inherit {
        for _ in 0..2 {
            let ice = wire::wa_ice_check(stun_type::BINDING_REQUEST, rng.array(), rng.array());
            leg.send(name, to, &ice)?;
        }
    }
    for _ in 0..opts.packets {
        let len = rng.range(40, 90);
        let p = audio.next(len, rng);
        leg.send(name, to, &p)?;
    }
    Ok(())
}

/// WhatsApp: relay leg, then peer to peer from the same socket.
fn whatsapp(
    opts: &RunOpts,
    rng: &mut Rng,
    scenario: &'static str,
    inherit: bool,
) -> io::Result<Vec<FlowLine>> {
    let relay = opts.target("wa-relay")?;
    let peer = opts.target("wa-peer")?;
    let mut leg = UdpLeg::new(opts, scenario)?;
    let mut audio = wa_relay_leg(&mut leg, relay, opts, rng)?;
    wa_p2p_leg(&mut leg, "p2p", peer, &mut audio, inherit, opts, rng)?;
    finish(leg, opts)
}

/// WhatsApp, called: the relay leg, then the same socket answers a peer
/// that calls it from outside (`wa-p2p-peer`, run in `net`). Announces
/// `{"event":"listening","local":ADDR}` once the relay leg is done and
/// answers until `opts.stop` is set or a bounded window ends. The answered
/// flow is reported with role `server`.
fn whatsapp_callee(
    opts: &RunOpts,
    rng: &mut Rng,
    events: &mut dyn FnMut(&serde_json::Value),
) -> io::Result<Vec<FlowLine>> {
    let relay = opts.target("wa-relay")?;
    let mut leg = UdpLeg::new(opts, "whatsapp-callee")?;
    wa_relay_leg(&mut leg, relay, opts, rng)?;
    leg.linger(Instant::now() + opts.linger)?;
    events(&serde_json::json!({"event": "listening", "local": leg.local.to_string()}));
    let end =
        Instant::now() + opts.interval * (opts.packets + 4) + opts.linger + Duration::from_secs(10);
    let mut served: BTreeMap<SocketAddr, (wire::PeerState, FlowLine)> = BTreeMap::new();
    let mut buf = vec![0u8; 65_536];
    leg.sock.set_read_timeout(Some(Duration::from_millis(20)))?;
    while Instant::now() < end
        && !opts
            .stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::Relaxed))
    {
        let (n, from) = match leg.sock.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) => return Err(e),
        };
        if from == relay {
            let f = leg.flow_mut(from, "relay");
            f.recv_pkts += 1;
            f.recv_bytes += n as u64;
            continue;
        }
        let local = leg.local;
        let (st, line) = served.entry(from).or_insert_with(|| {
            (
                wire::PeerState::new(opts.seed ^ u64::from(from.port())),
                FlowLine::new("server", "", "p2p-in", "udp", local, from),
            )
        });
        line.recv_pkts += 1;
        line.recv_bytes += n as u64;
        let reply = wire::answer(Kind::Peer, st, &buf[..n], from, local);
        leg.sock.send_to(&reply, from)?;
        line.sent_pkts += 1;
        line.sent_bytes += reply.len() as u64;
    }
    let mut out = leg.flows;
    out.extend(served.into_values().map(|(_, l)| l));
    Ok(out)
}

/// The peer of `whatsapp-callee` (run in `net` with `--bind` a peer
/// address): ICE checks and RTP to role `callee`.
fn wa_p2p_peer(opts: &RunOpts, rng: &mut Rng) -> io::Result<Vec<FlowLine>> {
    let callee = opts.target("callee")?;
    let mut leg = UdpLeg::new(opts, "whatsapp-callee")?;
    let mut audio = RtpStream::new(wire::WA_AUDIO_PT, 320, rng);
    wa_p2p_leg(&mut leg, "p2p-in", callee, &mut audio, false, opts, rng)?;
    finish(leg, opts)
}

/// Telegram libtgvoip: reflector control to two reflectors, data via the first.
fn telegram(opts: &RunOpts, rng: &mut Rng) -> io::Result<Vec<FlowLine>> {
    let r1 = opts.target("tg-reflector")?;
    let r2 = opts.target("tg-reflector2")?;
    let tag: [u8; 16] = rng.array();
    let mut leg = UdpLeg::new(opts, "telegram")?;
    leg.send("reflector", r1, &wire::tg_endpoints_request(tag))?;
    let mut query = rng.next_u64();
    for _ in 0..2 {
        for (name, r) in [("reflector", r1), ("reflector2", r2)] {
            query += 1;
            leg.send(name, r, &wire::tg_ping(tag, query))?;
        }
    }
    for i in 0..opts.packets {
        if i % 4 == 2 {
            query += 1;
            leg.send("reflector2", r2, &wire::tg_ping(tag, query))?;
        }
        let blocks = rng.range(3, 6);
        leg.send("reflector", r1, &wire::tg_data(tag, blocks, rng))?;
    }
    finish(leg, opts)
}

/// tgcalls: TURN on 1400 (401 with REALM, authenticated Allocate,
/// CreatePermission, ChannelBind, ChannelData), then peer to peer.
fn tgcalls(opts: &RunOpts, rng: &mut Rng) -> io::Result<Vec<FlowLine>> {
    let turn = opts.target("tg-turn")?;
    let peer = opts.target("tg-peer")?;
    let mut leg = UdpLeg::new(opts, "tgcalls")?;
    let answer = leg.request(
        "turn",
        turn,
        &wire::turn_allocate(rng.array()),
        opts.step_timeout,
    )?;
    let nonce = answer
        .as_deref()
        .and_then(|a| {
            wire::stun_attrs_of(a)
                .into_iter()
                .find(|(t, _)| *t == stun_attr::NONCE)
                .map(|(_, v)| v.to_vec())
        })
        .unwrap_or_else(|| b"0000000000000000".to_vec());
    let tx = rng.array();
    let alloc = wire::turn_authenticated(
        stun_type::ALLOCATE,
        tx,
        &[(stun_attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0])],
        &nonce,
        rng.array(),
    );
    leg.send("turn", turn, &alloc)?;
    let tx = rng.array();
    let xpeer = wire::xor_address(peer, tx);
    let perm = wire::turn_authenticated(
        stun_type::CREATE_PERMISSION,
        tx,
        &[(stun_attr::XOR_PEER_ADDRESS, &xpeer)],
        &nonce,
        rng.array(),
    );
    leg.send("turn", turn, &perm)?;
    let tx = rng.array();
    let xpeer = wire::xor_address(peer, tx);
    let channel = wire::TG_CHANNEL.to_be_bytes();
    let bind = wire::turn_authenticated(
        stun_type::CHANNEL_BIND,
        tx,
        &[
            (stun_attr::CHANNEL_NUMBER, &[channel[0], channel[1], 0, 0]),
            (stun_attr::XOR_PEER_ADDRESS, &xpeer),
        ],
        &nonce,
        rng.array(),
    );
    leg.send("turn", turn, &bind)?;
    let mut audio = RtpStream::new(wire::OPUS_PT, 960, rng);
    for _ in 0..opts.packets / 2 {
        let len = rng.range(50, 110);
        let media = audio.next(len, rng);
        leg.send(
            "turn",
            turn,
            &filter_common::pktbuild::channel_data(wire::TG_CHANNEL, &media),
        )?;
    }
    // Direct path: tgcalls v1 transport, encrypted from the first byte.
    for _ in 0..opts.packets {
        let len = rng.range(96, 160);
        let b = rng.bytes(len);
        leg.send("p2p", peer, &b)?;
    }
    finish(leg, opts)
}

/// Generic WebRTC call to an unlisted SFU.
fn webrtc(opts: &RunOpts, rng: &mut Rng) -> io::Result<Vec<FlowLine>> {
    use filter_common::pktbuild::dtls_version::{DTLS_1_0, DTLS_1_2};
    let sfu = opts.target("sfu")?;
    let mut leg = UdpLeg::new(opts, "webrtc")?;
    for _ in 0..2 {
        leg.send(
            "media",
            sfu,
            &wire::webrtc_binding(rng.array(), rng.array(), rng.array()),
        )?;
    }
    let ch = wire::dtls_handshake(DTLS_1_0, 0, 0, wire::hs::CLIENT_HELLO, 0, 150, rng);
    leg.send("media", sfu, &ch)?;
    let ch2 = wire::dtls_handshake(DTLS_1_0, 0, 1, wire::hs::CLIENT_HELLO, 1, 182, rng);
    leg.send("media", sfu, &ch2)?;
    let mut flight =
        wire::dtls_handshake(DTLS_1_2, 0, 2, wire::hs::CLIENT_KEY_EXCHANGE, 2, 66, rng);
    flight.extend_from_slice(&wire::dtls_raw(20, DTLS_1_2, 0, 3, &[1]));
    flight.extend_from_slice(&wire::dtls_handshake(
        DTLS_1_2,
        1,
        0,
        wire::hs::FINISHED,
        3,
        40,
        rng,
    ));
    leg.send("media", sfu, &flight)?;
    let mut audio = RtpStream::new(wire::OPUS_PT, 960, rng);
    for i in 0..opts.packets {
        if i % 20 == 10 {
            let info = rng.bytes(20);
            leg.send("media", sfu, &rtcp(200, 0, audio.ssrc, &info))?;
        }
        let len = rng.range(60, 120);
        let p = audio.next(len, rng);
        leg.send("media", sfu, &p)?;
    }
    finish(leg, opts)
}

/// DNS: one socket per query, like a stub resolver with random ports.
fn dns(opts: &RunOpts) -> io::Result<Vec<FlowLine>> {
    const NAMES: [&str; 4] = [
        "www.example.com",
        "mail.example.org",
        "chat.example.net",
        "cdn.example.com",
    ];
    let resolver = opts.target("dns")?;
    let queries = (opts.packets / 4).max(4);
    let mut legs = Vec::new();
    for i in 0..queries {
        let mut leg = UdpLeg::new(opts, "dns")?;
        let qtype = if i % 2 == 0 { 1 } else { 28 };
        let q = wire::dns_query(
            (0x1000 + i * 0x0101) as u16,
            NAMES[i as usize % NAMES.len()],
            qtype,
        );
        leg.send(&format!("query{i}"), resolver, &q)?;
        legs.push(leg);
    }
    let deadline = Instant::now() + opts.linger;
    let mut out = Vec::new();
    for mut leg in legs {
        leg.linger(deadline)?;
        out.extend(leg.flows);
    }
    Ok(out)
}

/// QUIC-like: Initial, Handshake, then short headers.
fn quic(opts: &RunOpts, rng: &mut Rng) -> io::Result<Vec<FlowLine>> {
    let server = opts.target("quic")?;
    let mut leg = UdpLeg::new(opts, "quic")?;
    let dcid: [u8; 8] = rng.array();
    let scid: [u8; 8] = rng.array();
    let initial = wire::quic_long(0, &dcid, &scid, 1200, rng);
    let answer = leg.request("quic", server, &initial, opts.step_timeout)?;
    let server_cid = answer
        .as_deref()
        .and_then(wire::quic_cids)
        .map_or_else(|| dcid.to_vec(), |(_, s)| s);
    leg.send(
        "quic",
        server,
        &wire::quic_long(2, &server_cid, &scid, 90, rng),
    )?;
    for pn in 0..opts.packets {
        let len = rng.range(30, 1100);
        leg.send(
            "quic",
            server,
            &wire::quic_short(&server_cid, pn as u16 + 2, len, rng),
        )?;
    }
    finish(leg, opts)
}

/// First frame-set number of the game stream: a session already under way
/// (a filter sees long game sessions at every sequence number), so a short
/// run crosses the low bytes 200..=207, where a frame set `84 C8 00 00 ...`
/// also reads as an RTCP header with a valid length.
pub const GAME_SEQ_START: u32 = 190;

/// RakNet-like game stream.
fn game(opts: &RunOpts, rng: &mut Rng) -> io::Result<Vec<FlowLine>> {
    let server = opts.target("game")?;
    let mut leg = UdpLeg::new(opts, "game")?;
    leg.send("game", server, &wire::raknet_ping(1_000, rng.next_u64()))?;
    for i in 0..opts.packets {
        let seq = GAME_SEQ_START + i;
        let len = rng.range(20, 120);
        leg.send("game", server, &wire::raknet_frame_set(seq, i, len, rng))?;
    }
    finish(leg, opts)
}

// ---------------------------------------------------------------------------
// TCP messaging
// ---------------------------------------------------------------------------

/// Read whole TLS-like records from `s` until EOF, `stop`, or a read error;
/// calls `on_record` for each.
fn read_records(
    s: &mut TcpStream,
    deadline: Option<Instant>,
    stop: Option<&AtomicBool>,
    mut on_record: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<()> {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 16_384];
    loop {
        while buf.len() >= 5 {
            let len = 5 + u16::from_be_bytes([buf[3], buf[4]]) as usize;
            if buf.len() < len {
                break;
            }
            let rec: Vec<u8> = buf.drain(..len).collect();
            on_record(&rec)?;
        }
        if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
            return Ok(());
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(());
        }
        match s.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e),
        }
    }
}

fn messaging(opts: &RunOpts, rng: &mut Rng) -> io::Result<Vec<FlowLine>> {
    let mut out = Vec::new();
    for (role, flow) in [("wa-chat", "whatsapp-chat"), ("tg-chat", "telegram-chat")] {
        let to = opts.target(role)?;
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(2))?;
        s.set_nodelay(true)?;
        let local = s.local_addr()?;
        let line = Arc::new(Mutex::new(FlowLine::new(
            "client",
            "messaging",
            flow,
            "tcp",
            local,
            to,
        )));
        let mut reader = s.try_clone()?;
        reader.set_read_timeout(Some(Duration::from_millis(50)))?;
        let rline = Arc::clone(&line);
        // Bounded: the reader stops at EOF or at this deadline.
        let deadline = Instant::now()
            + opts.interval * (opts.packets + 8)
            + opts.linger
            + Duration::from_secs(2);
        let handle = thread::spawn(move || {
            read_records(&mut reader, Some(deadline), None, |r| {
                let mut l = rline
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                l.recv_pkts += 1;
                l.recv_bytes += r.len() as u64;
                Ok(())
            })
        });
        let mut records = vec![
            wire::tls_client_hello(rng),
            wire::tls_record(20, 0x0303, &[1]),
        ];
        records.push(wire::tls_app_data(53, rng));
        for _ in 0..opts.packets / 2 {
            let len = rng.range(30, 300);
            records.push(wire::tls_app_data(len, rng));
        }
        for r in &records {
            s.write_all(r)?;
            {
                let mut l = line
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                l.sent_pkts += 1;
                l.sent_bytes += r.len() as u64;
            }
            thread::sleep(opts.interval);
        }
        s.shutdown(Shutdown::Write)?;
        handle
            .join()
            .map_err(|_| io::Error::other("TCP reader thread panicked"))??;
        let l = line
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        out.push(l);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Responder
// ---------------------------------------------------------------------------

/// A responder socket to open: what it answers and where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceSpec {
    /// What it answers.
    pub kind: Kind,
    /// Address and port to bind.
    pub addr: SocketAddr,
}

impl std::str::FromStr for ServiceSpec {
    type Err = String;

    /// `KIND@ADDR:PORT`, e.g. `wa-relay@198.51.100.10:3478`, `dns@[2001:db8:5a::12]:53`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (k, a) = s
            .split_once('@')
            .ok_or_else(|| format!("`{s}`: expected KIND@ADDR:PORT"))?;
        let kind = Kind::from_name(k).ok_or_else(|| format!("`{s}`: unknown kind `{k}`"))?;
        let addr = a.parse().map_err(|e| format!("`{s}`: {e}"))?;
        Ok(ServiceSpec { kind, addr })
    }
}

impl std::fmt::Display for ServiceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.kind.name(), self.addr)
    }
}

/// Every service of the plan, in both families.
pub fn plan_services() -> Vec<ServiceSpec> {
    let mut v = Vec::new();
    for v6 in [false, true] {
        for s in plan::SERVICES {
            v.push(ServiceSpec {
                kind: s.kind,
                addr: s.addr(v6),
            });
        }
    }
    v
}

/// Sockets bound by [`Responder::bind`], served by [`Responder::serve`].
pub struct Responder {
    udp: Vec<(Kind, UdpSocket)>,
    tcp: Vec<TcpListener>,
    seed: u64,
}

type Lines = Arc<Mutex<Vec<FlowLine>>>;

fn push(lines: &Lines, l: FlowLine) {
    lines
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(l);
}

impl Responder {
    /// Bind every socket (so a client may start once this returns).
    pub fn bind(specs: &[ServiceSpec], seed: u64) -> io::Result<Responder> {
        let mut udp = Vec::new();
        let mut tcp = Vec::new();
        for s in specs {
            let ctx = |e: io::Error| io::Error::new(e.kind(), format!("binding {s}: {e}"));
            if s.kind.is_tcp() {
                let l = TcpListener::bind(s.addr).map_err(ctx)?;
                l.set_nonblocking(true)?;
                tcp.push(l);
            } else {
                let u = UdpSocket::bind(s.addr).map_err(ctx)?;
                u.set_read_timeout(Some(Duration::from_millis(50)))?;
                udp.push((s.kind, u));
            }
        }
        Ok(Responder { udp, tcp, seed })
    }

    /// The bound addresses, in the order of the specs given to `bind`.
    pub fn local_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        let mut v = Vec::new();
        for (_, u) in &self.udp {
            v.push(u.local_addr()?);
        }
        for t in &self.tcp {
            v.push(t.local_addr()?);
        }
        Ok(v)
    }

    /// Answer until `stop` is set; then one line per flow seen.
    pub fn serve(self, stop: &Arc<AtomicBool>) -> Vec<FlowLine> {
        let lines: Lines = Arc::new(Mutex::new(Vec::new()));
        let mut handles = Vec::new();
        for (kind, sock) in self.udp {
            let (stop, lines, seed) = (Arc::clone(stop), Arc::clone(&lines), self.seed);
            handles.push(thread::spawn(move || {
                serve_udp(kind, &sock, &stop, &lines, seed);
            }));
        }
        for l in self.tcp {
            let (stop, lines, seed) = (Arc::clone(stop), Arc::clone(&lines), self.seed);
            handles.push(thread::spawn(move || serve_tcp(&l, &stop, &lines, seed)));
        }
        for h in handles {
            let _ = h.join();
        }
        let mut v = std::mem::take(
            &mut *lines
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        v.sort_by_key(|l| (l.local, l.remote));
        v
    }
}

fn serve_udp(kind: Kind, sock: &UdpSocket, stop: &AtomicBool, lines: &Lines, seed: u64) {
    let Ok(local) = sock.local_addr() else { return };
    let mut peers: BTreeMap<SocketAddr, (wire::PeerState, FlowLine)> = BTreeMap::new();
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(_) => {
                thread::sleep(Duration::from_millis(5));
                continue;
            }
        };
        let (st, line) = peers.entry(from).or_insert_with(|| {
            (
                wire::PeerState::new(seed ^ u64::from(from.port())),
                FlowLine::new("server", "", kind.name(), "udp", local, from),
            )
        });
        line.recv_pkts += 1;
        line.recv_bytes += n as u64;
        let reply = wire::answer(kind, st, &buf[..n], from, local);
        if sock.send_to(&reply, from).is_ok() {
            line.sent_pkts += 1;
            line.sent_bytes += reply.len() as u64;
        }
    }
    for (_, (_, l)) in peers {
        push(lines, l);
    }
}

fn serve_tcp(listener: &TcpListener, stop: &Arc<AtomicBool>, lines: &Lines, seed: u64) {
    let Ok(local) = listener.local_addr() else {
        return;
    };
    let mut conns = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((s, from)) => {
                let (stop, lines) = (Arc::clone(stop), Arc::clone(lines));
                conns.push(thread::spawn(move || {
                    serve_conn(s, local, from, &stop, &lines, seed);
                }));
            }
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
    for c in conns {
        let _ = c.join();
    }
}

fn serve_conn(
    mut s: TcpStream,
    local: SocketAddr,
    from: SocketAddr,
    stop: &AtomicBool,
    lines: &Lines,
    seed: u64,
) {
    let mut line = FlowLine::new("server", "", Kind::Chat.name(), "tcp", local, from);
    let mut rng = Rng::new(seed ^ u64::from(from.port()));
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
    let _ = s.set_nodelay(true);
    let Ok(mut w) = s.try_clone() else { return };
    let _ = read_records(&mut s, None, Some(stop), |r| {
        line.recv_pkts += 1;
        line.recv_bytes += r.len() as u64;
        for a in wire::ChatServer::answer(r, &mut rng) {
            w.write_all(&a)?;
            line.sent_pkts += 1;
            line.sent_bytes += a.len() as u64;
        }
        Ok(())
    });
    let _ = w.shutdown(Shutdown::Both);
    push(lines, line);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every scenario over loopback (no namespaces, no root): both sides
    /// count every packet and every byte, and the answers are 1:1.
    #[test]
    fn every_scenario_over_loopback_is_counted_in_full() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let specs: Vec<ServiceSpec> = plan::SERVICES
            .iter()
            .map(|s| ServiceSpec {
                kind: s.kind,
                addr: SocketAddr::new(lo, 0),
            })
            .collect();
        let responder = Responder::bind(&specs, 7).expect("binding on loopback");
        // UDP sockets first, then TCP listeners, each in spec order.
        let (udp, tcp): (Vec<&plan::Service>, Vec<&plan::Service>) =
            plan::SERVICES.iter().partition(|s| !s.kind.is_tcp());
        let addrs = responder.local_addrs().unwrap();
        let targets: BTreeMap<String, SocketAddr> = udp
            .iter()
            .chain(tcp.iter())
            .zip(addrs)
            .map(|(s, a)| (s.role.to_string(), a))
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let serving = thread::spawn(move || responder.serve(&stop2));
        let opts = RunOpts {
            interval: Duration::from_millis(1),
            packets: 12,
            linger: Duration::from_millis(500),
            bind: Some(lo),
            targets,
            ..RunOpts::default()
        };
        let mut client = Vec::new();
        // whatsapp-callee needs a second generator calling in (e2e covers it).
        for sc in plan::SCENARIOS
            .iter()
            .filter(|s| s.standalone && s.name != "whatsapp-callee")
        {
            let lines = run(sc.name, &opts).unwrap_or_else(|e| panic!("{}: {e}", sc.name));
            assert!(!lines.is_empty(), "{}: no flows", sc.name);
            client.extend(lines);
        }
        stop.store(true, Ordering::Relaxed);
        let server = serving.join().unwrap();
        let results = crate::harness::merge(&client, &server);
        for r in &results {
            assert!(r.untouched(), "{}", r.summary());
            if r.proto == "udp" {
                assert_eq!(r.answered_pkts, r.delivered_pkts, "{}", r.summary());
            }
        }
        let flows: Vec<String> = results
            .iter()
            .map(|r| format!("{}/{}", r.scenario, r.flow))
            .collect();
        for f in [
            "whatsapp/relay",
            "whatsapp/p2p",
            "telegram/reflector2",
            "tgcalls/p2p",
            "messaging/telegram-chat",
        ] {
            assert!(flows.iter().any(|x| x == f), "no flow {f} in {flows:?}");
        }
    }
}
