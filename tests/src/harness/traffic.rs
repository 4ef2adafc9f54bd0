//! The traffic generators behind `ffgen`: the client side of every scenario
//! (real UDP/TCP sockets, a fixed number of packets at a fixed rate) and the
//! responder (`ffgen serve`) that answers them.
//!
//! Counting, per flow (one 5-tuple):
//!
//! * UDP: `sent_*` / `recv_*` are datagrams and their payload bytes. The
//!   responder answers every datagram it receives with exactly one datagram,
//!   so an untouched flow has `server recv == client sent` and
//!   `client recv == server sent == client sent`. A datagram sent as IP
//!   fragments (`--evasion frag8|tiny|reorder|overlap`) counts once, as the
//!   server gets it reassembled. Decoys (`--evasion decoys`) are counted
//!   apart (`decoys`) and never answered.
//! * TCP: packets are records, bytes are record bytes, cut by each
//!   protocol's framing (`wire::Framing`): TLS records, WhatsApp Noise or
//!   MTProto frames (messaging); RFC 4571 frames, Telegram reflector frames
//!   or STUN/ChannelData messages (calls fallen back to TCP under
//!   `--evasion tcp`). The client sends its records, half-closes, and reads
//!   until the server closes (a blocked connection: until a bounded wait
//!   ends).
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

use crate::harness::evasion::{self, DECOY_EVERY, Evasion, RawSocket};
use crate::harness::plan::{self, Kind};
use crate::harness::wire::{self, Framing, Rng};

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
    /// Decoys (`--evasion decoys`) sent (client: the junk ones, which can
    /// arrive) or received (server), apart from the counts above.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub decoys: u64,
}

#[expect(clippy::trivially_copy_pass_by_ref, reason = "serde's signature")]
fn is_zero(n: &u64) -> bool {
    *n == 0
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
            decoys: 0,
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
    /// What the call scenarios do to evade the filter.
    pub evasion: Evasion,
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
            evasion: Evasion::None,
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

/// One local UDP socket talking to one or more remotes, paced. Under a
/// fragment or decoy mode it also holds a raw socket sending the datagrams
/// (or decoys) it builds with the UDP socket's address; the UDP socket
/// still receives every answer.
struct UdpLeg {
    sock: UdpSocket,
    local: SocketAddr,
    scenario: &'static str,
    flows: Vec<FlowLine>,
    inbox: Vec<(SocketAddr, Vec<u8>)>,
    interval: Duration,
    next: Instant,
    evasion: Evasion,
    raw: Option<RawSocket>,
    /// IP identification of the next datagram sent raw.
    ip_id: u32,
    /// Decoys' random bytes (apart from the scenario's, which stay the
    /// same under every mode).
    decoy_rng: Rng,
    marker: [u8; 8],
}

impl UdpLeg {
    fn new(opts: &RunOpts, scenario: &'static str) -> io::Result<UdpLeg> {
        let sock = UdpSocket::bind(SocketAddr::new(opts.local_ip(), 0))?;
        let local = sock.local_addr()?;
        let evasion = if opts.evasion.applies_to(scenario) {
            opts.evasion
        } else {
            Evasion::None
        };
        let raw = if evasion.fragments() || evasion == Evasion::Decoys {
            Some(RawSocket::open(local.is_ipv6())?)
        } else {
            None
        };
        let mut decoy_rng = Rng::new(opts.seed ^ u64::from(local.port()) << 16);
        Ok(UdpLeg {
            sock,
            local,
            scenario,
            flows: Vec::new(),
            inbox: Vec::new(),
            interval: opts.interval,
            next: Instant::now(),
            evasion,
            raw,
            ip_id: decoy_rng.next_u64() as u32 | 1,
            decoy_rng,
            marker: wire::decoy_marker(opts.seed),
        })
    }

    fn raw(&self) -> io::Result<&RawSocket> {
        self.raw
            .as_ref()
            .ok_or_else(|| io::Error::other("no raw socket for this mode"))
    }

    fn next_id(&mut self) -> u32 {
        self.ip_id = self.ip_id.wrapping_add(1).max(1);
        self.ip_id
    }

    /// Put one datagram of the call on the wire as the mode wants it.
    fn transmit(&mut self, to: SocketAddr, bytes: &[u8]) -> io::Result<()> {
        if !self.evasion.fragments() {
            self.sock.send_to(bytes, to)?;
            return Ok(());
        }
        let id = self.next_id();
        for p in evasion::fragments(self.evasion, self.local, to, bytes, id) {
            self.raw()?.send(&p, to.ip())?;
        }
        Ok(())
    }

    /// One round of decoys to `to` (see `evasion`): three junk datagrams
    /// from the socket, then one with a wrong UDP checksum and one with
    /// TTL / hop limit 1, raw. Counts the junk (what can arrive).
    fn send_decoys(&mut self, name: &str, to: SocketAddr) -> io::Result<()> {
        for _ in 0..3 {
            let d = wire::decoy(self.marker, &mut self.decoy_rng);
            self.sock.send_to(&d, to)?;
            self.flow_mut(to, name).decoys += 1;
        }
        for (ttl, bad) in [(64, true), (1, false)] {
            let d = wire::decoy(self.marker, &mut self.decoy_rng);
            let id = self.next_id();
            let p = evasion::whole(self.local, to, &d, ttl, bad, id);
            self.raw()?.send(&p, to.ip())?;
        }
        Ok(())
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
        if self.evasion == Evasion::Decoys
            && self
                .flow_mut(to, name)
                .sent_pkts
                .is_multiple_of(DECOY_EVERY)
        {
            self.send_decoys(name, to)?;
        }
        self.transmit(to, bytes)?;
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
            format!("unknown scenario `{name}` (known: {})", plan::names()),
        ));
    };
    if !opts.evasion.allowed_for(sc.name) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "scenario `{name}` has no form under --evasion {}",
                opts.evasion
            ),
        ));
    }
    let mut rng = Rng::new(opts.seed ^ u64::from(name.len() as u32) << 32);
    if opts.evasion == Evasion::Tcp && opts.evasion.applies_to(sc.name) {
        return match sc.name {
            "whatsapp" => whatsapp_tcp(opts, &mut rng),
            "telegram" => telegram_tcp(opts, &mut rng),
            _ => tgcalls_tcp(opts, &mut rng),
        };
    }
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
        "dns-big" => dns_big(opts),
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
/// answers until `opts.stop` is set or a bounded window ends (under a
/// fragment mode the answers are fragmented too; decoys go only before
/// what the client starts). The answered flow is reported with role
/// `server`.
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
            Err(e) if timed_out(&e) => continue,
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
        if buf[..n].starts_with(&leg.marker) {
            line.decoys += 1;
            continue;
        }
        line.recv_pkts += 1;
        line.recv_bytes += n as u64;
        let reply = wire::answer(Kind::Peer, st, &buf[..n], from, local);
        leg.transmit(from, &reply)?;
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

/// After the TURN server's 401 `answer` (its NONCE; a made-up one when
/// absent): the authenticated Allocate, the CreatePermission for `peer` and
/// the ChannelBind of [`wire::TG_CHANNEL`] to it.
fn turn_setup(answer: Option<&[u8]>, peer: SocketAddr, rng: &mut Rng) -> [Vec<u8>; 3] {
    let nonce = answer
        .and_then(|a| {
            wire::stun_attrs_of(a)
                .into_iter()
                .find(|(t, _)| *t == stun_attr::NONCE)
                .map(|(_, v)| v.to_vec())
        })
        .unwrap_or_else(|| b"0000000000000000".to_vec());
    let alloc = wire::turn_authenticated(
        stun_type::ALLOCATE,
        rng.array(),
        &[(stun_attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0])],
        &nonce,
        rng.array(),
    );
    let tx = rng.array();
    let xpeer = wire::xor_address(peer, tx);
    let perm = wire::turn_authenticated(
        stun_type::CREATE_PERMISSION,
        tx,
        &[(stun_attr::XOR_PEER_ADDRESS, &xpeer)],
        &nonce,
        rng.array(),
    );
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
    [alloc, perm, bind]
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
    for msg in turn_setup(answer.as_deref(), peer, rng) {
        leg.send("turn", turn, &msg)?;
    }
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
    let ch = wire::dtls_handshake(DTLS_1_0, 0, 0, wire::Hs::ClientHello, 0, 150, rng);
    leg.send("media", sfu, &ch)?;
    let ch2 = wire::dtls_handshake(DTLS_1_0, 0, 1, wire::Hs::ClientHello, 1, 182, rng);
    leg.send("media", sfu, &ch2)?;
    let mut flight = wire::dtls_handshake(DTLS_1_2, 0, 2, wire::Hs::ClientKeyExchange, 2, 66, rng);
    flight.extend_from_slice(&wire::dtls_raw(20, DTLS_1_2, 0, 3, &[1]));
    flight.extend_from_slice(&wire::dtls_handshake(
        DTLS_1_2,
        1,
        0,
        wire::Hs::Finished,
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
    linger_all(legs, opts)
}

/// A socket read that timed out (nothing came), not an error.
fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Let every leg linger until one deadline (`opts.linger` from now); all
/// their flows.
fn linger_all(legs: Vec<UdpLeg>, opts: &RunOpts) -> io::Result<Vec<FlowLine>> {
    let deadline = Instant::now() + opts.linger;
    let mut out = Vec::new();
    for mut leg in legs {
        leg.linger(deadline)?;
        out.extend(leg.flows);
    }
    Ok(out)
}

/// DNS with big answers: TXT queries, one socket each, answered with
/// [`wire::DNS_BIG_ANSWER`] bytes each (fragmented by the server's kernel).
fn dns_big(opts: &RunOpts) -> io::Result<Vec<FlowLine>> {
    let resolver = opts.target("dns")?;
    let queries = (opts.packets / 10).max(2);
    let mut legs = Vec::new();
    for i in 0..queries {
        let mut leg = UdpLeg::new(opts, "dns-big")?;
        let q = wire::dns_big_query((0x2000 + i * 0x0101) as u16, "big.example.com");
        leg.send(&format!("big{i}"), resolver, &q)?;
        legs.push(leg);
    }
    linger_all(legs, opts)
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
// TCP: messaging, and calls that fell back to TCP
// ---------------------------------------------------------------------------

/// Read whole records (cut by `framing`; [`Framing::Chat`] is told by the
/// stream's first bytes) from `s` until EOF, `stop`, the deadline, or a
/// read error; calls `on_record` for each, with whether it is the stream's
/// first and the framing it was cut by.
fn read_records(
    s: &mut TcpStream,
    mut framing: Framing,
    deadline: Option<Instant>,
    stop: Option<&AtomicBool>,
    mut on_record: impl FnMut(&[u8], bool, Framing) -> io::Result<()>,
) -> io::Result<()> {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 16_384];
    let mut first = true;
    loop {
        if framing == Framing::Chat
            && let Some(f) = Framing::sniff(&buf)
        {
            framing = f;
        }
        while let Some(len) = framing.record_len(&buf, first) {
            if buf.len() < len {
                break;
            }
            let rec: Vec<u8> = buf.drain(..len).collect();
            on_record(&rec, first, framing)?;
            first = false;
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
            Err(e) if timed_out(&e) => {}
            Err(e) => return Err(e),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One client TCP connection: records written one per pacing interval, a
/// reader thread counting (and keeping) the records that come back.
struct TcpLeg {
    s: TcpStream,
    line: Arc<Mutex<FlowLine>>,
    inbox: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
    reader: thread::JoinHandle<io::Result<()>>,
    interval: Duration,
}

impl TcpLeg {
    /// Connect to `to`; `framing` cuts what the server sends.
    fn connect(
        opts: &RunOpts,
        scenario: &str,
        flow: &str,
        to: SocketAddr,
        framing: Framing,
    ) -> io::Result<TcpLeg> {
        let s = connect_from(opts.local_ip(), to)?;
        s.set_nodelay(true)?;
        let local = s.local_addr()?;
        let line = Arc::new(Mutex::new(FlowLine::new(
            "client", scenario, flow, "tcp", local, to,
        )));
        let inbox = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut reader = s.try_clone()?;
        reader.set_read_timeout(Some(Duration::from_millis(20)))?;
        let (rline, rinbox, rstop) = (Arc::clone(&line), Arc::clone(&inbox), Arc::clone(&stop));
        // Bounded: it stops at EOF, or when `finish` says so.
        let reader = thread::spawn(move || {
            read_records(&mut reader, framing, None, Some(&rstop), |r, _, _| {
                let mut l = lock(&rline);
                l.recv_pkts += 1;
                l.recv_bytes += r.len() as u64;
                lock(&rinbox).push(r.to_vec());
                Ok(())
            })
        });
        Ok(TcpLeg {
            s,
            line,
            inbox,
            stop,
            reader,
            interval: opts.interval,
        })
    }

    /// Write one record, count it, wait one interval.
    fn send(&mut self, record: &[u8]) -> io::Result<()> {
        self.s.write_all(record)?;
        {
            let mut l = lock(&self.line);
            l.sent_pkts += 1;
            l.sent_bytes += record.len() as u64;
        }
        thread::sleep(self.interval);
        Ok(())
    }

    /// Write `record`, then wait at most `timeout` for the next record the
    /// other side sends.
    fn request(&mut self, record: &[u8], timeout: Duration) -> io::Result<Option<Vec<u8>>> {
        let before = lock(&self.inbox).len();
        self.send(record)?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(r) = lock(&self.inbox).get(before) {
                return Ok(Some(r.clone()));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// Half-close, wait at most `wait` for the other side to close, stop
    /// reading; the flow's line.
    fn finish(self, wait: Duration) -> io::Result<FlowLine> {
        self.s.shutdown(Shutdown::Write)?;
        let deadline = Instant::now() + wait;
        while !self.reader.is_finished() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        self.stop.store(true, Ordering::Relaxed);
        self.reader
            .join()
            .map_err(|_| io::Error::other("TCP reader thread panicked"))??;
        Ok(lock(&self.line).clone())
    }
}

/// A TCP connection to `to` from address `ip` (any port; the kernel would
/// pick the newest IPv6 address of the client's veth, a further caller's),
/// given at most 2 s.
fn connect_from(ip: IpAddr, to: SocketAddr) -> io::Result<TcpStream> {
    use std::os::fd::FromRawFd;
    let (family, sa, sa_len) = sockaddr(SocketAddr::new(ip, 0));
    // SAFETY: socket(2) with constant arguments.
    let fd = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor we own; TcpStream closes it.
    let s = unsafe { TcpStream::from_raw_fd(fd) };
    // A blocking connect gives up after the send timeout.
    s.set_write_timeout(Some(Duration::from_secs(2)))?;
    // SAFETY: a valid sockaddr of that length.
    if unsafe { libc::bind(fd, std::ptr::from_ref(&sa).cast(), sa_len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let (_, sa, sa_len) = sockaddr(to);
    // SAFETY: a valid sockaddr of that length; blocking connect.
    if unsafe { libc::connect(fd, std::ptr::from_ref(&sa).cast(), sa_len) } != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("connecting to {to}: {e}")));
    }
    s.set_write_timeout(None)?;
    Ok(s)
}

/// `addr` as a sockaddr_storage, its family and length.
fn sockaddr(addr: SocketAddr) -> (libc::c_int, libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough.
            let sin = unsafe { &mut *std::ptr::from_mut(&mut ss).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
            (
                libc::AF_INET,
                ss,
                size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough.
            let sin6 = unsafe { &mut *std::ptr::from_mut(&mut ss).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            (
                libc::AF_INET6,
                ss,
                size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            )
        }
    }
}

/// How long a TCP client waits for the server to close after its last
/// record: generous, as the server closes as soon as it has read them.
fn tcp_wait(opts: &RunOpts) -> Duration {
    opts.linger + Duration::from_secs(2)
}

/// TCP messaging to the chat servers: TLS records to both; WhatsApp's Noise
/// transport (`WA` header, 24-bit frames) to the WhatsApp one; MTProto's
/// abridged, intermediate and padded intermediate transports to the
/// Telegram one.
fn messaging(opts: &RunOpts, rng: &mut Rng) -> io::Result<Vec<FlowLine>> {
    let mut out = tls_messaging(opts, rng)?;
    let wa = opts.target("wa-chat")?;
    let mut leg = TcpLeg::connect(opts, "messaging", "whatsapp-noise", wa, Framing::WaFrames)?;
    leg.send(&wire::wa_noise_hello(rng))?;
    // ClientFinish, then encrypted frames.
    leg.send(&wire::wa_frame(&rng.bytes(120)))?;
    for _ in 0..opts.packets / 4 {
        let len = rng.range(20, 400);
        leg.send(&wire::wa_frame(&rng.bytes(len)))?;
    }
    out.push(leg.finish(tcp_wait(opts))?);
    let tg = opts.target("tg-chat")?;
    for (t, flow) in [
        (wire::Mtproto::Abridged, "telegram-abridged"),
        (wire::Mtproto::Intermediate, "telegram-intermediate"),
        (wire::Mtproto::Padded, "telegram-padded"),
    ] {
        let mut leg = TcpLeg::connect(opts, "messaging", flow, tg, t.framing().answers())?;
        let mut first = t.tag().to_vec();
        first.extend_from_slice(&t.frame(&wire::mtproto_req_pq(rng), rng));
        leg.send(&first)?;
        for _ in 0..opts.packets / 4 {
            let blocks = rng.range(2, 40);
            leg.send(&t.frame(&wire::mtproto_encrypted(blocks, rng), rng))?;
        }
        out.push(leg.finish(tcp_wait(opts))?);
    }
    Ok(out)
}

fn tls_messaging(opts: &RunOpts, rng: &mut Rng) -> io::Result<Vec<FlowLine>> {
    let mut out = Vec::new();
    for (role, flow) in [("wa-chat", "whatsapp-chat"), ("tg-chat", "telegram-chat")] {
        let to = opts.target(role)?;
        let mut leg = TcpLeg::connect(opts, "messaging", flow, to, Framing::Tls)?;
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
            leg.send(r)?;
        }
        out.push(leg.finish(tcp_wait(opts))?);
    }
    Ok(out)
}

/// How long a call over TCP waits for the server to close: a blocked
/// connection never closes, so this is what each blocked one costs.
fn tcp_call_wait(opts: &RunOpts) -> Duration {
    opts.linger + Duration::from_millis(700)
}

/// WhatsApp over TCP (`--evasion tcp`): TURN with RFC 4571 framing to the
/// relay's address: a framed Allocate, then framed RTP (PT 120) with
/// framed `health` keepalives.
fn whatsapp_tcp(opts: &RunOpts, rng: &mut Rng) -> io::Result<Vec<FlowLine>> {
    let relay = opts.target("wa-relay-tcp")?;
    let mut leg = TcpLeg::connect(opts, "whatsapp", "relay", relay, Framing::Rfc4571)?;
    leg.request(
        &wire::frame_4571(&wire::wa_allocate(rng.array(), rng.array())),
        opts.step_timeout,
    )?;
    let mut audio = RtpStream::new(wire::WA_AUDIO_PT, 320, rng);
    for i in 0..opts.packets {
        if i % 15 == 7 {
            leg.send(&wire::frame_4571(wire::WA_HEALTH))?;
        }
        let len = rng.range(40, 90);
        let p = audio.next(len, rng);
        leg.send(&wire::frame_4571(&p))?;
    }
    Ok(vec![leg.finish(tcp_call_wait(opts))?])
}

/// Telegram over TCP (`--evasion tcp`): a TCP reflector connection whose
/// first payload is the peer tag and four zero bytes, then reflector
/// packets (endpoint request, pings, data) each after a 32-bit
/// little-endian length.
fn telegram_tcp(opts: &RunOpts, rng: &mut Rng) -> io::Result<Vec<FlowLine>> {
    let r1 = opts.target("tg-reflector-tcp")?;
    let tag: [u8; 16] = rng.array();
    let mut leg = TcpLeg::connect(opts, "telegram", "reflector", r1, Framing::TgTcp.answers())?;
    leg.send(&wire::tg_tcp_hello(tag))?;
    leg.send(&wire::frame_tg(&wire::tg_endpoints_request(tag)))?;
    let mut query = rng.next_u64();
    for _ in 0..2 {
        query += 1;
        leg.send(&wire::frame_tg(&wire::tg_ping(tag, query)))?;
    }
    for i in 0..opts.packets {
        if i % 4 == 2 {
            query += 1;
            leg.send(&wire::frame_tg(&wire::tg_ping(tag, query)))?;
        }
        let blocks = rng.range(3, 6);
        leg.send(&wire::frame_tg(&wire::tg_data(tag, blocks, rng)))?;
    }
    Ok(vec![leg.finish(tcp_call_wait(opts))?])
}

/// tgcalls over TCP (`--evasion tcp`): TURN over TCP to the TURN server's
/// address with no framing (RFC 6062: the STUN header with the cookie at
/// the stream's start): Allocate (401 with REALM), authenticated Allocate,
/// CreatePermission, ChannelBind, then ChannelData padded to 4.
fn tgcalls_tcp(opts: &RunOpts, rng: &mut Rng) -> io::Result<Vec<FlowLine>> {
    let turn = opts.target("tg-turn-tcp")?;
    let peer = opts.target("tg-peer")?;
    let mut leg = TcpLeg::connect(opts, "tgcalls", "turn", turn, Framing::Stun)?;
    let answer = leg.request(&wire::turn_allocate(rng.array()), opts.step_timeout)?;
    for msg in turn_setup(answer.as_deref(), peer, rng) {
        leg.send(&msg)?;
    }
    let mut audio = RtpStream::new(wire::OPUS_PT, 960, rng);
    for _ in 0..opts.packets {
        let len = rng.range(50, 110);
        let media = audio.next(len, rng);
        leg.send(&filter_common::pktbuild::channel_data_padded(
            wire::TG_CHANNEL,
            &media,
        ))?;
    }
    Ok(vec![leg.finish(tcp_call_wait(opts))?])
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
    tcp: Vec<(Kind, TcpListener)>,
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
                tcp.push((s.kind, l));
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
        for (_, t) in &self.tcp {
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
        for (kind, l) in self.tcp {
            let (stop, lines, seed) = (Arc::clone(stop), Arc::clone(&lines), self.seed);
            handles.push(thread::spawn(move || {
                serve_tcp(kind, &l, &stop, &lines, seed);
            }));
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
    let marker = wire::decoy_marker(seed);
    let mut peers: BTreeMap<SocketAddr, (wire::PeerState, FlowLine)> = BTreeMap::new();
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e) if timed_out(&e) => continue,
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
        if buf[..n].starts_with(&marker) {
            line.decoys += 1;
            continue;
        }
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

fn serve_tcp(kind: Kind, listener: &TcpListener, stop: &Arc<AtomicBool>, lines: &Lines, seed: u64) {
    let Ok(local) = listener.local_addr() else {
        return;
    };
    let mut conns = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((s, from)) => {
                let (stop, lines) = (Arc::clone(stop), Arc::clone(lines));
                conns.push(thread::spawn(move || {
                    serve_conn(kind, s, local, from, &stop, &lines, seed);
                }));
            }
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
    for c in conns {
        let _ = c.join();
    }
}

/// One accepted connection of a `kind` TCP service: records cut by the
/// kind's framing, answered by [`wire::answer_tcp`], until the client closes
/// or the responder stops.
fn serve_conn(
    kind: Kind,
    mut s: TcpStream,
    local: SocketAddr,
    from: SocketAddr,
    stop: &AtomicBool,
    lines: &Lines,
    seed: u64,
) {
    let mut line = FlowLine::new("server", "", kind.name(), "tcp", local, from);
    let mut st = wire::PeerState::new(seed ^ u64::from(from.port()));
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
    let _ = s.set_nodelay(true);
    let Ok(mut w) = s.try_clone() else { return };
    let _ = read_records(
        &mut s,
        wire::framing_of(kind),
        None,
        Some(stop),
        |r, first, f| {
            line.recv_pkts += 1;
            line.recv_bytes += r.len() as u64;
            for a in wire::answer_tcp(kind, &mut st, r, first, f, from, local) {
                w.write_all(&a)?;
                line.sent_pkts += 1;
                line.sent_bytes += a.len() as u64;
            }
            Ok(())
        },
    );
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
        // The calls that fall back to TCP (the raw-socket modes need root:
        // e2e covers them).
        let tcp = RunOpts {
            evasion: Evasion::Tcp,
            ..opts.clone()
        };
        for sc in ["whatsapp", "telegram", "tgcalls"] {
            let lines = run(sc, &tcp).unwrap_or_else(|e| panic!("{sc} over TCP: {e}"));
            assert_eq!(lines.len(), 1, "{sc} over TCP: {lines:?}");
            assert_eq!(lines[0].proto, "tcp");
            client.extend(lines);
        }
        assert!(run("whatsapp-inherit", &tcp).is_err(), "no TCP form");
        stop.store(true, Ordering::Relaxed);
        let server = serving.join().unwrap();
        let results = crate::harness::merge(&client, &server);
        for r in &results {
            assert!(r.untouched(), "{}", r.summary());
            if r.proto == "udp" {
                assert_eq!(r.answered_pkts, r.delivered_pkts, "{}", r.summary());
            } else if r.scenario != "messaging" {
                // The call servers answer every record but the Telegram hello.
                let hello = u64::from(r.scenario == "telegram");
                assert_eq!(r.answered_pkts + hello, r.delivered_pkts, "{}", r.summary());
            }
        }
        let flows: Vec<String> = results
            .iter()
            .map(|r| format!("{}/{}/{}", r.scenario, r.flow, r.proto))
            .collect();
        for f in [
            "whatsapp/relay/udp",
            "whatsapp/p2p/udp",
            "telegram/reflector2/udp",
            "tgcalls/p2p/udp",
            "messaging/telegram-chat/tcp",
            "messaging/whatsapp-noise/tcp",
            "messaging/telegram-abridged/tcp",
            "messaging/telegram-intermediate/tcp",
            "messaging/telegram-padded/tcp",
            "dns-big/big0/udp",
            "whatsapp/relay/tcp",
            "telegram/reflector/tcp",
            "tgcalls/turn/tcp",
        ] {
            assert!(flows.iter().any(|x| x == f), "no flow {f} in {flows:?}");
        }
        let big = results.iter().find(|r| r.flow == "big0").unwrap();
        assert_eq!(big.recv_bytes, wire::DNS_BIG_ANSWER as u64);
    }
}
