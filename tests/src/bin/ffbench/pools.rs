//! The frames sent at a prefix set: flows, the live frame pools by traffic
//! kind, and the frames of the in-kernel (BPF_PROG_TEST_RUN) measurement.
//!
//! Live traffic kinds:
//! - `match` / `nomatch` ("fair"): established calls, both directions. Each
//!   flow opens with a STUN Binding request (client → server, sent once:
//!   the pool's first pass), then media rounds: RTP (a fixed SSRC per
//!   direction, sequence numbers +1, payloads 60–250 bytes drawn per
//!   packet) alternating direction round by round, and about 0.5% STUN
//!   consent checks (a Binding request one way, its success response the
//!   other way, in the next round). `match` goes to targets inside the set,
//!   `nomatch` to near misses (see `sets`).
//! - `flood`: STUN Binding requests to targets inside the set, a new
//!   5-tuple every packet (the generator writes a running sequence number
//!   over the UDP ports), UDP checksum 0.
//! - `junk`: to near misses: 10% of the flows spoofed three-packet "calls"
//!   of WhatsApp private STUN messages (type 0x0801, magic cookie, exact
//!   length) from a random source socket, the other 90% random payloads
//!   (48..240 bytes, multiples of 16) from other sockets to the same
//!   destination sockets as the spoofed calls: flowfilter drops the
//!   signature frames, and should it learn the spoofed calls' endpoints it
//!   would drop the random ones too.
//!
//! Consecutive frames of a pool always belong to different flows.

use anyhow::{Result, bail};
use filter_common::pktbuild::{self, rtp, stun, stun_raw, xor_address_v4, xor_address_v6};

use crate::sets::{PrefixSet, Rng, mix, near_miss, near_miss6, outside, outside6};
use crate::traffic::Pool;

/// Which traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Traffic {
    Match,
    NoMatch,
    Flood,
    Junk,
}

impl Traffic {
    pub fn name(self) -> &'static str {
        match self {
            Traffic::Match => "match",
            Traffic::NoMatch => "nomatch",
            Traffic::Flood => "flood",
            Traffic::Junk => "junk",
        }
    }

    pub fn parse(s: &str) -> Result<Traffic> {
        Ok(match s {
            "match" => Traffic::Match,
            "nomatch" => Traffic::NoMatch,
            "flood" => Traffic::Flood,
            "junk" => Traffic::Junk,
            _ => bail!("unknown traffic `{s}` (match, nomatch, flood, junk)"),
        })
    }
}

/// An address of either family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ip {
    V4(u32),
    V6(u128),
}

/// A UDP frame between two addresses of one family.
pub fn udp(src: Ip, sport: u16, dst: Ip, dport: u16, payload: &[u8]) -> Vec<u8> {
    match (src, dst) {
        (Ip::V4(s), Ip::V4(d)) => {
            pktbuild::udp4(s.to_be_bytes(), sport, d.to_be_bytes(), dport, payload)
        }
        (Ip::V6(s), Ip::V6(d)) => {
            pktbuild::udp6(s.to_be_bytes(), sport, d.to_be_bytes(), dport, payload)
        }
        _ => panic!("mixed address families"),
    }
}

/// One UDP flow between a client and a server.
#[derive(Clone, Copy, Debug)]
pub struct Flow {
    pub client: Ip,
    pub cport: u16,
    pub server: Ip,
    pub sport: u16,
    pub id: u32,
    /// Per-flow randomness (SSRCs, first sequence numbers, transaction ids).
    pub key: u64,
}

/// Which way a frame goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    ToServer,
    ToClient,
}

impl Flow {
    pub fn frame(&self, dir: Dir, payload: &[u8]) -> Vec<u8> {
        match dir {
            Dir::ToServer => udp(self.client, self.cport, self.server, self.sport, payload),
            Dir::ToClient => udp(self.server, self.sport, self.client, self.cport, payload),
        }
    }

    fn txid(&self, n: u32) -> [u8; 12] {
        let mut t = [0u8; 12];
        t[..4].copy_from_slice(&self.id.to_be_bytes());
        t[4..8].copy_from_slice(&n.to_be_bytes());
        t[8..].copy_from_slice(&(self.key as u32).to_be_bytes());
        t
    }

    /// STUN Binding request (ICE connectivity check or consent): USERNAME,
    /// PRIORITY, ICE-CONTROLLING, MESSAGE-INTEGRITY, FINGERPRINT.
    pub fn stun_request(&self, dir: Dir, n: u32) -> Vec<u8> {
        let user = format!("{:08x}:{:08x}", self.key as u32, (self.key >> 32) as u32);
        let prio = 0x6e7f_1eff_u32.to_be_bytes();
        let tie = self.key.to_be_bytes();
        let integrity = pktbuild::filler(20, self.id as u8);
        let fp = (mix(self.key ^ u64::from(n)) as u32).to_be_bytes();
        let msg = stun(
            0x0001,
            self.txid(n),
            &[
                (0x0006, user.as_bytes()),
                (0x0024, &prio),
                (0x802a, &tie),
                (0x0008, &integrity),
                (0x8028, &fp),
            ],
        );
        self.frame(dir, &msg)
    }

    /// STUN Binding success response: XOR-MAPPED-ADDRESS of the requester,
    /// MESSAGE-INTEGRITY, FINGERPRINT.
    pub fn stun_response(&self, dir: Dir, n: u32) -> Vec<u8> {
        let txid = self.txid(n);
        let (addr, port) = match dir {
            Dir::ToClient => (self.client, self.cport),
            Dir::ToServer => (self.server, self.sport),
        };
        let xor = match addr {
            Ip::V4(a) => xor_address_v4(a.to_be_bytes(), port).to_vec(),
            Ip::V6(a) => xor_address_v6(a.to_be_bytes(), port, txid).to_vec(),
        };
        let integrity = pktbuild::filler(20, !self.id as u8);
        let fp = (mix(!self.key ^ u64::from(n)) as u32).to_be_bytes();
        let msg = stun(
            0x0101,
            txid,
            &[(0x0020, &xor), (0x0008, &integrity), (0x8028, &fp)],
        );
        self.frame(dir, &msg)
    }

    fn ssrc(&self, dir: Dir) -> u32 {
        (self.key >> if dir == Dir::ToServer { 0 } else { 32 }) as u32
    }

    /// RTP packet `seq` (counted from the flow's first sequence number of
    /// that direction): Opus-like, PT 111, `payload` bytes.
    pub fn rtp(&self, dir: Dir, seq: u16, payload: usize) -> Vec<u8> {
        let first = (self.key >> if dir == Dir::ToServer { 16 } else { 48 }) as u16;
        let s = first.wrapping_add(seq);
        let p = rtp(
            111,
            s,
            u32::from(s).wrapping_mul(960),
            self.ssrc(dir),
            payload,
        );
        self.frame(dir, &p)
    }
}

/// The server port of every flow (STUN/TURN's).
const SERVER_PORT: u16 = 3478;

/// `count` flows of `traffic`: clients outside the set; servers at the
/// set's targets (`match`, `flood`) or near misses (`nomatch`, `junk`).
/// `salt` gives another family of flows for the same set.
pub fn flows(set: &PrefixSet, seed: u64, traffic: Traffic, count: usize, salt: u64) -> Vec<Flow> {
    // Each traffic kind has its own clients: flowfilter learns the endpoints
    // (address, port) of calls, and non-matching traffic from a caller's
    // socket would rightly be taken for the same call.
    let kind = match traffic {
        Traffic::Match => 0,
        Traffic::NoMatch => 1u64 << 40,
        Traffic::Flood => 2u64 << 40,
        Traffic::Junk => 3u64 << 40,
    };
    let mut rng = Rng::new(mix(seed ^ 0xf10e ^ kind ^ salt.wrapping_mul(0x9e37)));
    let v6 = set.family() == 6;
    (0..count)
        .map(|j| {
            let client = if v6 {
                Ip::V6(outside6(set, &mut rng))
            } else {
                Ip::V4(outside(set, &mut rng))
            };
            let server = match (traffic, v6) {
                (Traffic::Match | Traffic::Flood, false) => {
                    Ip::V4(set.target(rng.below(set.prefixes.len() as u64) as usize, seed))
                }
                (Traffic::Match | Traffic::Flood, true) => {
                    Ip::V6(set.target6(rng.below(set.v6.len() as u64) as usize, seed))
                }
                (_, false) => Ip::V4(near_miss(set, &mut rng)),
                (_, true) => Ip::V6(near_miss6(set, &mut rng)),
            };
            let sport = if traffic == Traffic::Junk {
                1024 + rng.below(64_000u64) as u16
            } else {
                SERVER_PORT
            };
            Flow {
                client,
                cport: 1024 + rng.below(64_000u64) as u16,
                server,
                sport,
                id: j as u32,
                key: rng.next_u64(),
            }
        })
        .collect()
}

/// Media rounds per flow in a fair pool (after its opening STUN request).
pub const MEDIA_ROUNDS: usize = 4;
/// One flow in this many has a consent check (request + response) in the
/// media rounds (see [`fair_pool`]).
const CONSENT_ONE_IN: u64 = 100;

/// The pool of one traffic kind, and how many of its first frames open a
/// flow (to prime flowfilter with: the calls are established).
pub fn live_pool(
    set: &PrefixSet,
    seed: u64,
    traffic: Traffic,
    count: usize,
) -> Result<(Pool, usize)> {
    Ok(match traffic {
        Traffic::Match | Traffic::NoMatch => (fair_pool(set, seed, traffic, count), count),
        Traffic::Flood => (flood_pool(set, seed, count)?, 0),
        Traffic::Junk => (junk_pool(set, seed, count), 0),
    })
}

/// Direction of media round `r` of flow `f`: alternating, half the flows
/// start each way.
fn dir_of(f: usize, r: usize) -> Dir {
    if (f + r).is_multiple_of(2) {
        Dir::ToServer
    } else {
        Dir::ToClient
    }
}

/// A fair pool: round 0 the STUN request of every flow (sent once), then
/// [`MEDIA_ROUNDS`] rounds sent round and round. One flow in
/// [`CONSENT_ONE_IN`] has a consent check: a request in round 0 or 2 and
/// its response the other way in the next round, so the media rounds hold
/// 2 / (4 × 100) = 0.5% STUN.
pub fn fair_pool(set: &PrefixSet, seed: u64, traffic: Traffic, count: usize) -> Pool {
    let fl = flows(set, seed, traffic, count, 0);
    let mut rng = Rng::new(mix(seed ^ 0x900f ^ traffic as u64));
    let mut frames = Vec::with_capacity(fl.len() * (1 + MEDIA_ROUNDS));
    frames.extend(fl.iter().map(|f| f.stun_request(Dir::ToServer, 0)));
    // Next RTP sequence number per flow and direction.
    let mut seq = vec![[0u16; 2]; fl.len()];
    let consent: Vec<Option<usize>> = fl
        .iter()
        .map(|f| {
            mix(f.key)
                .is_multiple_of(CONSENT_ONE_IN)
                .then_some(2 * (f.key as usize >> 7 & 1))
        })
        .collect();
    for r in 0..MEDIA_ROUNDS {
        for (i, f) in fl.iter().enumerate() {
            let dir = dir_of(i, r);
            frames.push(match consent[i] {
                Some(at) if r == at => f.stun_request(dir, 1),
                Some(at) if r == at + 1 => f.stun_response(dir, 1),
                _ => {
                    let s = &mut seq[i][usize::from(dir == Dir::ToClient)];
                    *s += 1;
                    f.rtp(dir, *s, rng.range(60u64, 250) as usize)
                }
            });
        }
    }
    Pool {
        frames,
        loop_start: fl.len(),
        seq_ports: false,
    }
}

/// A flood pool: one STUN Binding request per flow to a target; the
/// generator gives every frame sent new ports. IPv4 only.
pub fn flood_pool(set: &PrefixSet, seed: u64, count: usize) -> Result<Pool> {
    if set.family() != 4 {
        bail!("the flood traffic is IPv4 only");
    }
    let frames = flows(set, seed, Traffic::Flood, count, 0)
        .iter()
        .map(|f| {
            let mut frame = f.stun_request(Dir::ToServer, 0);
            // UDP checksum 0 (none): the ports change in flight.
            frame[40..42].fill(0);
            frame
        })
        .collect();
    Ok(Pool {
        frames,
        loop_start: 0,
        seq_ports: true,
    })
}

/// Flows of the junk pool that are spoofed WhatsApp calls: one in this many.
pub const SPOOF_ONE_IN: usize = 10;

/// Share of a pool's looped frames a filter should pass: all of nomatch;
/// junk less its WhatsApp-signature frames; none of match and flood.
pub fn expect_passed(traffic: Traffic) -> f64 {
    match traffic {
        Traffic::Match | Traffic::Flood => 0.0,
        Traffic::NoMatch => 1.0,
        Traffic::Junk => 1.0 - 1.0 / SPOOF_ONE_IN as f64,
    }
}

/// A junk pool: three rounds; in each, one frame per flow. Flow `i` that is
/// not a spoofed call goes to the destination socket of the spoofed call
/// `i - i % SPOOF_ONE_IN`.
pub fn junk_pool(set: &PrefixSet, seed: u64, count: usize) -> Pool {
    let mut fl = flows(set, seed, Traffic::Junk, count, 0);
    for i in 0..fl.len() {
        let spoof = fl[i - i % SPOOF_ONE_IN];
        fl[i].server = spoof.server;
        fl[i].sport = spoof.sport;
    }
    let mut rng = Rng::new(mix(seed ^ 0x7a9c));
    let mut frames = Vec::with_capacity(3 * fl.len());
    for round in 0..3u32 {
        for (i, f) in fl.iter().enumerate() {
            let payload = if i % SPOOF_ONE_IN == 0 {
                let body: Vec<u8> = (0..rng.range(8u64, 120))
                    .map(|_| rng.next_u64() as u8)
                    .collect();
                stun_raw(0x0801, f.txid(round), &body)
            } else {
                (0..16 * rng.range(3u64, 15))
                    .map(|_| rng.next_u64() as u8)
                    .collect()
            };
            frames.push(f.frame(Dir::ToServer, &payload));
        }
    }
    Pool {
        frames,
        loop_start: 0,
        seq_ports: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sets::SetKind;

    fn udp_payload(f: &[u8]) -> &[u8] {
        let ip = if f[12..14] == [0x86, 0xdd] { 40 } else { 20 };
        &f[14 + ip + 8..]
    }

    fn is_stun(p: &[u8]) -> bool {
        p.len() >= 20 && p[4..8] == 0x2112_a442_u32.to_be_bytes()
    }

    #[test]
    fn fair_pools_are_established_calls_both_ways() {
        for kind in [SetKind::Random, SetKind::V6] {
            let set = PrefixSet::generate(kind, 500, 1).unwrap();
            for t in [Traffic::Match, Traffic::NoMatch] {
                let n = 4000;
                let pool = fair_pool(&set, 1, t, n);
                assert_eq!(pool.frames.len(), n * (1 + MEDIA_ROUNDS));
                assert_eq!(pool.loop_start, n);
                assert!(pool.frames[..n].iter().all(|f| is_stun(udp_payload(f))));
                let looped = &pool.frames[n..];
                let stun = looped.iter().filter(|f| is_stun(udp_payload(f))).count();
                let share = stun as f64 / looped.len() as f64;
                assert!((0.003..0.008).contains(&share), "STUN share {share}");
                let rtp: Vec<usize> = looped
                    .iter()
                    .map(|f| udp_payload(f))
                    .filter(|p| !is_stun(p))
                    .map(|p| p.len() - 12)
                    .collect();
                assert!(rtp.iter().all(|l| (60..=250).contains(l)));
                assert!(rtp.iter().any(|&l| l < 80) && rtp.iter().any(|&l| l > 230));
                // Consecutive frames: different flows (different address pairs).
                let hdr = |f: &[u8]| f[14..14 + if kind == SetKind::V6 { 40 } else { 20 }].to_vec();
                for w in pool.frames.windows(2) {
                    assert_ne!(hdr(&w[0])[8..], hdr(&w[1])[8..]);
                }
                // Both directions occur in the media rounds.
                let from_client = |f: &[u8]| {
                    let p = u16::from_be_bytes([
                        f[f.len() - udp_payload(f).len() - 6],
                        f[f.len() - udp_payload(f).len() - 5],
                    ]);
                    p == SERVER_PORT
                };
                let to_server = looped.iter().filter(|f| from_client(f)).count();
                assert!((to_server as f64 / looped.len() as f64 - 0.5).abs() < 0.02);
            }
        }
    }

    #[test]
    fn fair_flows_hit_the_set_or_miss_it() {
        let set = PrefixSet::generate(SetKind::Mix, 2000, 2).unwrap();
        for f in flows(&set, 2, Traffic::Match, 500, 0) {
            let (Ip::V4(c), Ip::V4(s)) = (f.client, f.server) else {
                panic!()
            };
            assert!(set.contains(s) && !set.contains(c));
        }
        for f in flows(&set, 2, Traffic::NoMatch, 500, 0) {
            let (Ip::V4(c), Ip::V4(s)) = (f.client, f.server) else {
                panic!()
            };
            assert!(!set.contains(s) && !set.contains(c));
        }
    }

    #[test]
    fn rtp_is_realistic() {
        let set = PrefixSet::generate(SetKind::Random, 50, 1).unwrap();
        let f = flows(&set, 1, Traffic::Match, 1, 0)[0];
        let a = f.rtp(Dir::ToServer, 1, 100);
        let b = f.rtp(Dir::ToServer, 2, 200);
        let c = f.rtp(Dir::ToClient, 1, 100);
        let (pa, pb, pc) = (udp_payload(&a), udp_payload(&b), udp_payload(&c));
        assert_eq!(pa[0], 0x80);
        assert_eq!(pa[8..12], pb[8..12], "one SSRC per direction");
        assert_ne!(pa[8..12], pc[8..12]);
        let seq = |p: &[u8]| u16::from_be_bytes([p[2], p[3]]);
        assert_eq!(seq(pb), seq(pa).wrapping_add(1));
    }

    #[test]
    fn flood_and_junk() {
        let set = PrefixSet::generate(SetKind::Random, 100, 1).unwrap();
        let p = flood_pool(&set, 1, 64).unwrap();
        assert!(
            p.seq_ports
                && p.frames
                    .iter()
                    .all(|f| f[40..42] == [0, 0] && is_stun(udp_payload(f)))
        );
        let v6 = PrefixSet::generate(SetKind::V6, 100, 1).unwrap();
        assert!(flood_pool(&v6, 1, 64).is_err());
        let j = junk_pool(&set, 1, 1000);
        assert_eq!(j.frames.len(), 3000);
        let mut spoofed = 0;
        for f in &j.frames {
            let p = udp_payload(f);
            if is_stun(p) {
                spoofed += 1;
                assert_eq!(p[..2], [0x08, 0x01]);
                assert_eq!(usize::from(u16::from_be_bytes([p[2], p[3]])), p.len() - 20);
                let Some(src) = f.get(34..36) else { panic!() };
                assert!(u16::from_be_bytes([src[0], src[1]]) >= 1024);
            } else {
                assert!(p.len().is_multiple_of(16) && (48..=240).contains(&p.len()));
            }
        }
        assert_eq!(spoofed, 300);
        // Every flow goes to the destination socket of a spoofed call.
        let dst = |f: &[u8]| f[30..38].to_vec();
        for (i, f) in j.frames[..1000].iter().enumerate() {
            assert_eq!(dst(f)[..4], dst(&j.frames[i - i % SPOOF_ONE_IN])[..4]);
            assert_eq!(dst(f)[6..8], dst(&j.frames[i - i % SPOOF_ONE_IN])[6..8]);
        }
    }
}
