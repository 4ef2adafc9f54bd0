use filter_common::rng::Rng;
use pcap_parser::{BOM_MAGIC, EPB_MAGIC, IDB_MAGIC, OptionCode, SPB_MAGIC};

use super::pcapng::TsResol;
use super::*;

/// Classic pcap magic, microsecond timestamps.
const PCAP_MAGIC_USEC: u32 = 0xa1b2_c3d4;
/// Classic pcap magic, nanosecond timestamps.
const PCAP_MAGIC_NSEC: u32 = 0xa1b2_3c4d;
/// IDB option `if_tsresol`.
const OPT_IF_TSRESOL: u16 = OptionCode::IfTsresol.0;
/// IDB option `if_tsoffset`.
const OPT_IF_TSOFFSET: u16 = OptionCode::IfTsoffset.0;

// -- builders ----------------------------------------------------------

/// A minimal IPv4 header (20 bytes) followed by `extra` payload bytes.
fn ipv4(extra: usize) -> Vec<u8> {
    let mut p = vec![
        0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];
    p.extend((0..extra).map(|i| i as u8));
    p
}

/// A minimal IPv6 header (40 bytes).
fn ipv6() -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0, 0, 0, 17, 64];
    p.extend([0u8; 32]);
    p
}

/// An Ethernet frame carrying `payload` with `ethertype`.
fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![
        0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb,
    ];
    f.extend(ethertype.to_be_bytes());
    f.extend(payload);
    f
}

/// The frame expected after synthesising an Ethernet header.
fn synth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = SYNTH_DST_MAC.to_vec();
    f.extend(SYNTH_SRC_MAC);
    f.extend(ethertype.to_be_bytes());
    f.extend(payload);
    f
}

/// One classic pcap record.
struct Rec<'a> {
    sec: u32,
    frac: u32,
    data: &'a [u8],
    orig: u32,
}

fn rec(sec: u32, frac: u32, data: &[u8]) -> Rec<'_> {
    Rec {
        sec,
        frac,
        data,
        orig: data.len() as u32,
    }
}

/// A classic pcap file.
fn pcap(be: bool, nsec: bool, linktype: u32, recs: &[Rec<'_>]) -> Vec<u8> {
    let w32 = |v: u32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
    let w16 = |v: u16| if be { v.to_be_bytes() } else { v.to_le_bytes() };
    let mut out = Vec::new();
    out.extend(w32(if nsec {
        PCAP_MAGIC_NSEC
    } else {
        PCAP_MAGIC_USEC
    }));
    out.extend(w16(2));
    out.extend(w16(4));
    out.extend(w32(0));
    out.extend(w32(0));
    out.extend(w32(65535));
    out.extend(w32(linktype));
    for r in recs {
        out.extend(w32(r.sec));
        out.extend(w32(r.frac));
        out.extend(w32(r.data.len() as u32));
        out.extend(w32(r.orig));
        out.extend(r.data);
    }
    out
}

/// A pcapng writer.
struct Ng {
    be: bool,
    out: Vec<u8>,
}

impl Ng {
    /// A new file starting with a section header.
    fn new(be: bool) -> Self {
        let mut ng = Ng {
            be,
            out: Vec::new(),
        };
        ng.shb(be);
        ng
    }

    fn w16(&self, v: u16) -> [u8; 2] {
        if self.be {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }

    fn w32(&self, v: u32) -> [u8; 4] {
        if self.be {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }

    /// Appends a block with `body` padded to 32 bits; returns its offset.
    fn block(&mut self, ty: u32, body: &[u8]) -> usize {
        let off = self.out.len();
        let padded = body.len().next_multiple_of(4);
        let len = (12 + padded) as u32;
        let (t, l) = (self.w32(ty), self.w32(len));
        self.out.extend(t);
        self.out.extend(l);
        self.out.extend(body);
        self.out.resize(self.out.len() + padded - body.len(), 0);
        self.out.extend(l);
        off
    }

    /// Appends a section header block (switching byte order).
    fn shb(&mut self, be: bool) -> usize {
        self.be = be;
        let mut body = self.w32(BOM_MAGIC).to_vec();
        body.extend(self.w16(1));
        body.extend(self.w16(0));
        body.extend([0xff; 8]);
        // SHB type is a palindrome, so the byte order does not matter.
        self.block(0x0A0D_0D0A, &body)
    }

    /// Appends an interface description block with options.
    fn idb(&mut self, linktype: u16, snaplen: u32, opts: &[(u16, &[u8])]) -> usize {
        let mut body = self.w16(linktype).to_vec();
        body.extend([0, 0]);
        body.extend(self.w32(snaplen));
        for (code, val) in opts {
            body.extend(self.w16(*code));
            body.extend(self.w16(val.len() as u16));
            body.extend(*val);
            body.resize(body.len().next_multiple_of(4), 0);
        }
        if !opts.is_empty() {
            body.extend([0, 0, 0, 0]);
        }
        self.block(IDB_MAGIC, &body)
    }

    /// Appends an enhanced packet block.
    fn epb(&mut self, ifid: u32, ts: u64, data: &[u8]) -> usize {
        let mut body = self.w32(ifid).to_vec();
        body.extend(self.w32((ts >> 32) as u32));
        body.extend(self.w32(ts as u32));
        body.extend(self.w32(data.len() as u32));
        body.extend(self.w32(data.len() as u32 + 100));
        body.extend(data);
        self.block(EPB_MAGIC, &body)
    }

    /// Appends an obsolete packet block.
    fn pb(&mut self, ifid: u16, ts: u64, data: &[u8]) -> usize {
        let mut body = self.w16(ifid).to_vec();
        body.extend(self.w16(0));
        body.extend(self.w32((ts >> 32) as u32));
        body.extend(self.w32(ts as u32));
        body.extend(self.w32(data.len() as u32));
        body.extend(self.w32(data.len() as u32));
        body.extend(data);
        self.block(BLOCK_PB, &body)
    }

    /// Appends a simple packet block.
    fn spb(&mut self, orig: u32, data: &[u8]) -> usize {
        let mut body = self.w32(orig).to_vec();
        body.extend(data);
        self.block(SPB_MAGIC, &body)
    }
}

fn parse(bytes: &[u8]) -> Result<Vec<Frame>, CaptureError> {
    parse_capture("test.pcap", bytes)
}

/// The offset of a `Corrupt` error (panics on any other result).
fn corrupt_offset(r: Result<Vec<Frame>, CaptureError>) -> u64 {
    match r {
        Err(CaptureError::Corrupt { offset, what, .. }) => {
            assert!(!what.is_empty());
            offset
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

/// Asserts a `Corrupt` error at `offset` whose message contains `text`.
fn assert_corrupt(r: Result<Vec<Frame>, CaptureError>, offset: usize, text: &str) {
    let err = r.unwrap_err();
    assert!(err.to_string().contains(text), "{err}");
    assert_eq!(corrupt_offset(Err(err)), offset as u64);
}

// -- classic pcap ------------------------------------------------------

#[test]
fn pcap_le_usec() {
    let f1 = eth(0x0800, &ipv4(3));
    let f2 = eth(0x86DD, &ipv6());
    let bytes = pcap(
        false,
        false,
        1,
        &[
            rec(1_700_000_000, 123_456, &f1),
            rec(1_700_000_001, 999_999, &f2),
        ],
    );
    let frames = parse(&bytes).unwrap();
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[0].data, f1);
    assert_eq!(frames[0].ts_ns, 1_700_000_000_123_456_000);
    assert_eq!(frames[0].orig_len, f1.len() as u32);
    assert_eq!(frames[1].data, f2);
    assert_eq!(frames[1].ts_ns, 1_700_000_001_999_999_000);
}

#[test]
fn pcap_be_nsec() {
    let f1 = eth(0x0800, &ipv4(0));
    let bytes = pcap(true, true, 1, &[rec(1_700_000_000, 123_456_789, &f1)]);
    assert_eq!(&bytes[..4], &[0xa1, 0xb2, 0x3c, 0x4d]);
    let frames = parse(&bytes).unwrap();
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].data, f1);
    assert_eq!(frames[0].ts_ns, 1_700_000_000_123_456_789);
}

#[test]
fn pcap_le_nsec_and_be_usec() {
    let f1 = eth(0x0800, &ipv4(0));
    let frames = parse(&pcap(false, true, 1, &[rec(5, 7, &f1)])).unwrap();
    assert_eq!(frames[0].ts_ns, 5_000_000_007);
    let frames = parse(&pcap(true, false, 1, &[rec(5, 7, &f1)])).unwrap();
    assert_eq!(frames[0].ts_ns, 5_000_007_000);
}

#[test]
fn pcap_no_records() {
    assert_eq!(parse(&pcap(false, false, 1, &[])).unwrap(), vec![]);
    // Unsupported link type is reported at the first packet only.
    assert_eq!(parse(&pcap(false, false, 105, &[])).unwrap(), vec![]);
}

#[test]
fn pcap_snaplen_truncated_record_is_fine() {
    let full = eth(0x0800, &ipv4(100));
    let cut = &full[..40];
    let bytes = pcap(
        false,
        false,
        1,
        &[Rec {
            sec: 1,
            frac: 0,
            data: cut,
            orig: full.len() as u32,
        }],
    );
    let frames = parse(&bytes).unwrap();
    assert_eq!(frames[0].data, cut);
    assert_eq!(frames[0].orig_len, full.len() as u32);
}

#[test]
fn pcap_fcs_bits_in_linktype_are_ignored() {
    let f1 = eth(0x0800, &ipv4(0));
    // FCS present, length 2 (16-bit words) in the top bits.
    let bytes = pcap(false, false, 0x2400_0001, &[rec(1, 0, &f1)]);
    assert_eq!(parse(&bytes).unwrap()[0].data, f1);
    // Reserved bits set: not a link type we know.
    let bytes = pcap(false, false, 0x0001_0001, &[rec(1, 0, &f1)]);
    assert!(matches!(
        parse(&bytes),
        Err(CaptureError::UnsupportedLinkType {
            linktype: 0x0001_0001,
            ..
        })
    ));
}

// -- link types --------------------------------------------------------

#[test]
fn linux_sll() {
    let ip = ipv4(4);
    let mut sll = vec![0, 0, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x08, 0x00];
    sll.extend(&ip);
    // Unknown protocol 0x0004 (802.2 LLC) is kept as EtherType.
    let mut llc = vec![0, 4, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x00, 0x04];
    llc.extend([0xaa, 0xaa, 0x03]);
    let mut bytes = pcap(false, false, 113, &[rec(1, 0, &sll), rec(2, 0, &llc)]);
    let frames = parse(&bytes).unwrap();
    assert_eq!(frames[0].data, synth(0x0800, &ip));
    assert_eq!(frames[0].orig_len, (ip.len() + 14) as u32);
    assert_eq!(frames[1].data, synth(0x0004, &[0xaa, 0xaa, 0x03]));

    // A 15-byte SLL frame is too short: Corrupt at the packet data.
    bytes = pcap(false, false, 113, &[rec(1, 0, &sll[..15])]);
    assert_eq!(corrupt_offset(parse(&bytes)), 24 + 16);
}

#[test]
fn linux_sll2() {
    let ip = ipv6();
    let mut sll2 = vec![
        0x86, 0xDD, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0,
    ];
    sll2.extend(&ip);
    let bytes = pcap(true, false, 276, &[rec(1, 0, &sll2)]);
    let frames = parse(&bytes).unwrap();
    assert_eq!(frames[0].data, synth(0x86DD, &ip));
    assert_eq!(frames[0].orig_len, (ip.len() + 14) as u32);

    let bytes = pcap(true, false, 276, &[rec(1, 0, &sll2[..19])]);
    assert_eq!(corrupt_offset(parse(&bytes)), 24 + 16);
}

#[test]
fn raw_ip() {
    let v4 = ipv4(2);
    let v6 = ipv6();
    for lt in [101, 12] {
        let bytes = pcap(false, false, lt, &[rec(1, 0, &v4), rec(2, 0, &v6)]);
        let frames = parse(&bytes).unwrap();
        assert_eq!(frames[0].data, synth(0x0800, &v4));
        assert_eq!(frames[0].orig_len, (v4.len() + 14) as u32);
        assert_eq!(frames[1].data, synth(0x86DD, &v6));
    }
    let frames = parse(&pcap(false, false, 228, &[rec(1, 0, &v4)])).unwrap();
    assert_eq!(frames[0].data, synth(0x0800, &v4));
    let frames = parse(&pcap(false, false, 229, &[rec(1, 0, &v6)])).unwrap();
    assert_eq!(frames[0].data, synth(0x86DD, &v6));

    // Empty raw IP packet and a bad version are corrupt.
    assert_eq!(
        corrupt_offset(parse(&pcap(false, false, 101, &[rec(1, 0, &[])]))),
        40
    );
    assert_eq!(
        corrupt_offset(parse(&pcap(false, false, 101, &[rec(1, 0, &[0x55, 0])]))),
        40
    );
}

#[test]
fn bsd_loopback() {
    let v4 = ipv4(1);
    let v6 = ipv6();
    let mut recs_data = Vec::new();
    // Host byte order of the capturing machine: try both.
    for (af, le, payload) in [
        (2u32, true, &v4),
        (2, false, &v4),
        (24, true, &v6),
        (28, false, &v6),
        (30, true, &v6),
        (30, false, &v6),
    ] {
        let mut d = if le {
            af.to_le_bytes()
        } else {
            af.to_be_bytes()
        }
        .to_vec();
        d.extend(payload.iter());
        recs_data.push(d);
    }
    let recs: Vec<Rec<'_>> = recs_data.iter().map(|d| rec(9, 0, d)).collect();
    let frames = parse(&pcap(false, false, 0, &recs)).unwrap();
    assert_eq!(frames.len(), 6);
    assert_eq!(frames[0].data, synth(0x0800, &v4));
    assert_eq!(frames[0].orig_len, (v4.len() + 14) as u32);
    assert_eq!(frames[1].data, synth(0x0800, &v4));
    for f in &frames[2..] {
        assert_eq!(f.data, synth(0x86DD, &v6));
    }

    // Too short, and an unknown family.
    assert_eq!(
        corrupt_offset(parse(&pcap(false, false, 0, &[rec(1, 0, &[2, 0, 0])]))),
        40
    );
    assert_eq!(
        corrupt_offset(parse(&pcap(
            false,
            false,
            0,
            &[rec(1, 0, &[7, 0, 0, 0, 0x45])]
        ))),
        40
    );
}

#[test]
fn short_ethernet_is_corrupt() {
    let f1 = eth(0x0800, &ipv4(0));
    let bytes = pcap(false, false, 1, &[rec(1, 0, &f1), rec(1, 0, &f1[..13])]);
    let second_data = 24 + 16 + f1.len() + 16;
    assert_eq!(corrupt_offset(parse(&bytes)), second_data as u64);
}

// -- pcapng ------------------------------------------------------------

#[test]
fn pcapng_two_interfaces_and_tsresol() {
    let f_eth = eth(0x0800, &ipv4(5));
    let v6 = ipv6();
    let mut ng = Ng::new(false);
    // Interface 0: Ethernet, default microseconds.
    ng.idb(1, 0, &[]);
    // Interface 1: raw IP, nanoseconds, with an unrelated option first.
    ng.idb(101, 0, &[(2, b"eth1"), (OPT_IF_TSRESOL, &[9])]);
    // Interface 2: Ethernet, 2^-10 seconds, offset of 100 s.
    ng.idb(
        1,
        0,
        &[
            (OPT_IF_TSRESOL, &[0x8A]), // 0x80 | 10
            (OPT_IF_TSOFFSET, &100u64.to_le_bytes()),
        ],
    );
    // Unknown block types are skipped (NRB, ISB, custom).
    ng.block(4, &[0, 0, 0, 0]);
    ng.epb(0, 1_700_000_000_123_456, &f_eth);
    ng.block(5, &[0; 16]);
    ng.epb(1, 1_700_000_000_123_456_789, &v6);
    ng.block(0x0000_0BAD, &[1, 2, 3]);
    ng.epb(2, 3 * 1024 + 512, &f_eth);
    let frames = parse(&ng.out).unwrap();
    assert_eq!(frames.len(), 3);
    assert_eq!(frames[0].data, f_eth);
    assert_eq!(frames[0].ts_ns, 1_700_000_000_123_456_000);
    assert_eq!(frames[0].orig_len, f_eth.len() as u32 + 100);
    assert_eq!(frames[1].data, synth(0x86DD, &v6));
    assert_eq!(frames[1].ts_ns, 1_700_000_000_123_456_789);
    assert_eq!(frames[1].orig_len, v6.len() as u32 + 100 + 14);
    assert_eq!(frames[2].ts_ns, 103_500_000_000);
}

#[test]
fn pcapng_big_endian_and_several_sections() {
    let f_eth = eth(0x0806, &[0; 28]);
    let v4 = ipv4(0);
    let mut ng = Ng::new(true);
    ng.idb(1, 0, &[(OPT_IF_TSRESOL, &[3])]);
    ng.epb(0, 42, &f_eth);
    // New section, little endian: interfaces start again.
    ng.shb(false);
    ng.idb(228, 0, &[]);
    ng.epb(0, 7, &v4);
    // And back to big endian with a millisecond SLL interface.
    ng.shb(true);
    ng.idb(113, 0, &[(OPT_IF_TSRESOL, &[3])]);
    let mut sll = vec![0, 0, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x08, 0x00];
    sll.extend(&v4);
    ng.pb(0, 5, &sll);
    let frames = parse(&ng.out).unwrap();
    assert_eq!(frames.len(), 3);
    assert_eq!(frames[0].data, f_eth);
    assert_eq!(frames[0].ts_ns, 42_000_000);
    assert_eq!(frames[1].data, synth(0x0800, &v4));
    assert_eq!(frames[1].ts_ns, 7_000);
    assert_eq!(frames[2].data, synth(0x0800, &v4));
    assert_eq!(frames[2].ts_ns, 5_000_000);

    // Interfaces of an earlier section are gone in the next one.
    let mut ng = Ng::new(false);
    ng.idb(1, 0, &[]);
    ng.shb(true);
    let epb = ng.epb(0, 1, &f_eth);
    assert_eq!(corrupt_offset(parse(&ng.out)), epb as u64);
}

#[test]
fn pcapng_simple_packet_block() {
    let f1 = eth(0x0800, &ipv4(30));
    let mut ng = Ng::new(false);
    ng.idb(1, 40, &[]);
    ng.epb(0, 77, &f1[..40]);
    // Snap length 40 caps the captured length of the SPB.
    ng.spb(f1.len() as u32, &f1);
    // Original length shorter than the block: the block is padded.
    ng.spb(30, &f1[..30]);
    let frames = parse(&ng.out).unwrap();
    assert_eq!(frames.len(), 3);
    assert_eq!(frames[1].data, &f1[..40]);
    assert_eq!(frames[1].orig_len, f1.len() as u32);
    // No timestamp: the previous frame's is used.
    assert_eq!(frames[1].ts_ns, 77_000);
    assert_eq!(frames[2].data, &f1[..30]);
    assert_eq!(frames[2].ts_ns, 77_000);

    // SPB without any interface is corrupt.
    let mut ng = Ng::new(false);
    let spb = ng.spb(f1.len() as u32, &f1);
    assert_eq!(corrupt_offset(parse(&ng.out)), spb as u64);
}

#[test]
fn tsresol_conversions() {
    assert_eq!(TsResol::Pow10(6).to_ns(1), Some(1_000));
    assert_eq!(TsResol::Pow10(0).to_ns(2), Some(2_000_000_000));
    assert_eq!(TsResol::Pow10(12).to_ns(5_000), Some(5));
    assert_eq!(TsResol::Pow10(127).to_ns(u64::MAX), Some(0));
    assert_eq!(TsResol::Pow10(0).to_ns(u64::MAX), None);
    assert_eq!(TsResol::Pow2(0).to_ns(3), Some(3_000_000_000));
    assert_eq!(TsResol::Pow2(1).to_ns(3), Some(1_500_000_000));
    assert_eq!(TsResol::Pow2(127).to_ns(u64::MAX), Some(0));
    assert_eq!(TsResol::from_option(0x8A), TsResol::Pow2(10));
    assert_eq!(TsResol::from_option(9), TsResol::Pow10(9));
}

// -- errors --------------------------------------------------------------

#[test]
fn empty_and_short_files() {
    assert_eq!(corrupt_offset(parse(&[])), 0);
    assert_eq!(corrupt_offset(parse(&[0xd4, 0xc3])), 0);
    // Magic but truncated file header.
    let bytes = pcap(false, false, 1, &[]);
    assert_eq!(corrupt_offset(parse(&bytes[..20])), 0);
}

#[test]
fn unknown_magic() {
    match parse(b"GIF89a......") {
        Err(
            e @ CaptureError::UnknownFormat {
                magic: 0x4749_4638, ..
            },
        ) => {
            assert_eq!(
                e.to_string(),
                "test.pcap: not a pcap or pcapng file (magic 47494638)"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn pcap_record_past_end() {
    let f1 = eth(0x0800, &ipv4(10));
    let bytes = pcap(false, false, 1, &[rec(1, 0, &f1), rec(2, 0, &f1)]);
    let second = 24 + 16 + f1.len();
    // Data of the second record cut short.
    let err = parse(&bytes[..bytes.len() - 1]).unwrap_err();
    assert!(
        err.to_string().contains(&format!("at byte {second}")),
        "{err}"
    );
    assert!(matches!(err, CaptureError::Corrupt { offset, .. } if offset == second as u64));
    // Record header cut short.
    assert_eq!(corrupt_offset(parse(&bytes[..second + 10])), second as u64);
    // Huge incl_len.
    let mut bytes = bytes;
    bytes[second + 8..second + 12].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(corrupt_offset(parse(&bytes)), second as u64);
}

#[test]
fn pcapng_block_length_errors() {
    let f1 = eth(0x0800, &ipv4(0));
    let mut ng = Ng::new(false);
    ng.idb(1, 0, &[]);
    let epb = ng.epb(0, 1, &f1);
    let good = ng.out.clone();
    assert_eq!(parse(&good).unwrap().len(), 1);

    // Length not a multiple of 4.
    let mut bad = good.clone();
    bad[epb + 4] += 1;
    assert_eq!(corrupt_offset(parse(&bad)), epb as u64);
    // Length less than 12.
    let mut bad = good.clone();
    bad[epb + 4..epb + 8].copy_from_slice(&8u32.to_le_bytes());
    assert_eq!(corrupt_offset(parse(&bad)), epb as u64);
    // Length past the end of the file.
    let mut bad = good.clone();
    bad[epb + 4..epb + 8].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    assert_eq!(corrupt_offset(parse(&bad)), epb as u64);
    // Trailing length differs from the leading one.
    let mut bad = good.clone();
    let n = bad.len();
    bad[n - 4] ^= 4;
    assert_corrupt(parse(&bad), epb, "trailing length");
    // Captured length larger than the block.
    let mut bad = good.clone();
    bad[epb + 20..epb + 24].copy_from_slice(&1000u32.to_le_bytes());
    assert_eq!(corrupt_offset(parse(&bad)), epb as u64);
    // Truncated block header at the end.
    let mut bad = good.clone();
    bad.extend([1, 0, 0, 0, 12, 0]);
    assert_eq!(corrupt_offset(parse(&bad)), good.len() as u64);
    // Bad byte-order magic in a second section header.
    let mut bad = good.clone();
    let shb2 = bad.len();
    bad.extend(&good[..28]);
    bad[shb2 + 8] = 0x99;
    assert_eq!(corrupt_offset(parse(&bad)), (shb2 + 8) as u64);
    // Bad major version.
    let mut bad = good;
    bad[12] = 2;
    assert_eq!(corrupt_offset(parse(&bad)), 0);
}

#[test]
fn pcapng_bad_options() {
    let mut ng = Ng::new(false);
    let idb = ng.idb(1, 0, &[(OPT_IF_TSRESOL, &[6, 6])]);
    // Option starts after 8 header bytes and 8 fixed IDB bytes.
    assert_eq!(corrupt_offset(parse(&ng.out)), (idb + 16) as u64);

    let mut ng = Ng::new(false);
    let idb = ng.idb(1, 0, &[(2, b"abcd")]);
    // Make the option length run past the block.
    ng.out[idb + 18] = 200;
    assert_eq!(corrupt_offset(parse(&ng.out)), (idb + 16) as u64);
}

#[test]
fn pcapng_missing_interface() {
    let f1 = eth(0x0800, &ipv4(0));
    let mut ng = Ng::new(false);
    ng.idb(1, 0, &[]);
    ng.epb(0, 1, &f1);
    let epb = ng.epb(1, 2, &f1);
    let err = parse(&ng.out).unwrap_err();
    assert!(err.to_string().contains("interface 1"), "{err}");
    assert_eq!(corrupt_offset(Err(err)), epb as u64);

    // Obsolete packet block as well.
    let mut ng = Ng::new(true);
    let pb = ng.pb(0, 1, &f1);
    assert_eq!(corrupt_offset(parse(&ng.out)), pb as u64);
}

#[test]
fn unsupported_link_type() {
    let f1 = eth(0x0800, &ipv4(0));
    match parse(&pcap(false, false, 105, &[rec(1, 0, &f1)])) {
        Err(e @ CaptureError::UnsupportedLinkType { linktype: 105, .. }) => {
            assert!(e.to_string().contains("link type 105 is not supported"));
        }
        other => panic!("{other:?}"),
    }
    // pcapng: an unused 802.11 interface is fine, a packet on it is not.
    let mut ng = Ng::new(false);
    ng.idb(1, 0, &[]);
    ng.idb(127, 0, &[]);
    ng.epb(0, 1, &f1);
    assert_eq!(parse(&ng.out).unwrap().len(), 1);
    ng.epb(1, 1, &f1);
    assert!(matches!(
        parse(&ng.out),
        Err(CaptureError::UnsupportedLinkType { linktype: 127, .. })
    ));
}

/// What pcap-parser leaves to its caller, each checked here.
#[test]
fn checks_pcap_parser_leaves_out() {
    let f1 = eth(0x0800, &ipv4(0));
    // if_tsoffset of a big-endian section is big-endian (the crate reads
    // it little-endian).
    let mut ng = Ng::new(true);
    ng.idb(1, 0, &[(OPT_IF_TSOFFSET, &100u64.to_be_bytes())]);
    ng.epb(0, 5, &f1);
    assert_eq!(parse(&ng.out).unwrap()[0].ts_ns, 100_000_005_000);

    // opt_endofopt ends the list whatever its length says (the crate stops
    // at it as at an unreadable option).
    let mut ng = Ng::new(false);
    let idb = ng.idb(1, 0, &[(OPT_IF_TSRESOL, &[9])]);
    // The option takes idb+16..idb+24; opt_endofopt's length is at idb+26.
    ng.out[idb + 26] = 0xff;
    ng.epb(0, 7, &f1);
    assert_eq!(parse(&ng.out).unwrap()[0].ts_ns, 7);

    // Lengths of a block the crate only frames (here a Name Resolution
    // Block): the trailing copy, a multiple of 4.
    let mut ng = Ng::new(false);
    let nrb = ng.block(4, &[0; 4]);
    let good = ng.out.clone();
    let mut bad = good.clone();
    let n = bad.len();
    bad[n - 4] ^= 4;
    assert_corrupt(parse(&bad), nrb, "trailing length");
    let mut bad = good;
    bad[nrb + 4] -= 2;
    assert_corrupt(parse(&bad), nrb, "not a multiple of 4");

    // The "modified" pcap format, which the crate reads, is refused.
    let mut bytes = pcap(false, false, 1, &[rec(1, 0, &f1)]);
    bytes[..4].copy_from_slice(&0xa1b2_cd34u32.to_le_bytes());
    assert!(matches!(
        parse(&bytes),
        Err(CaptureError::UnknownFormat {
            magic: 0x34cd_b2a1,
            ..
        })
    ));
}

#[test]
fn read_capture_io_error() {
    let err = read_capture(Path::new("/nonexistent/dir/x.pcap")).unwrap_err();
    assert!(matches!(err, CaptureError::Io { .. }));
    assert!(err.to_string().starts_with("/nonexistent/dir/x.pcap: "));
}

// -- robustness ------------------------------------------------------------

/// Small valid captures exercising every code path.
fn samples() -> Vec<Vec<u8>> {
    let f1 = eth(0x0800, &ipv4(7));
    let mut sll = vec![0, 0, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x08, 0x00];
    sll.extend(ipv4(1));
    let mut null = 2u32.to_le_bytes().to_vec();
    null.extend(ipv4(0));
    let mut out = vec![
        pcap(false, false, 1, &[rec(1, 2, &f1), rec(3, 4, &f1)]),
        pcap(true, true, 113, &[rec(1, 2, &sll), rec(3, 4, &sll)]),
        pcap(false, false, 0, &[rec(1, 2, &null)]),
    ];
    let mut ng = Ng::new(false);
    ng.idb(
        1,
        0,
        &[
            (OPT_IF_TSRESOL, &[9]),
            (OPT_IF_TSOFFSET, &5u64.to_le_bytes()),
        ],
    );
    ng.idb(101, 0, &[]);
    ng.epb(0, 1, &f1);
    ng.epb(1, 2, &ipv6());
    ng.spb(f1.len() as u32, &f1);
    ng.block(5, &[0; 8]);
    ng.shb(true);
    ng.idb(113, 64, &[(OPT_IF_TSRESOL, &[0x83])]);
    ng.pb(0, 3, &sll);
    ng.epb(0, 4, &sll);
    out.push(ng.out);
    out
}

#[test]
fn every_truncation_never_panics() {
    for sample in samples() {
        assert!(parse(&sample).is_ok());
        for n in 0..=sample.len() {
            let r = std::panic::catch_unwind(|| parse(&sample[..n]));
            assert!(r.is_ok(), "panic at truncation {n} of a sample");
        }
    }
}

#[test]
fn random_corruption_never_panics() {
    let mut rng = Rng::new(0x9E37_79B9_7F4A_7C15);
    for sample in samples() {
        for _ in 0..2_000 {
            let mut bytes = sample.clone();
            for _ in 0..=rng.below(4u8) {
                let i = rng.below(bytes.len());
                bytes[i] = rng.byte();
            }
            let cut = bytes.len() - rng.below(8usize);
            let r = std::panic::catch_unwind(|| parse(&bytes[..cut]));
            assert!(r.is_ok(), "panic on corrupted input {bytes:02x?}");
        }
    }
}

// -- real captures -----------------------------------------------------------

/// EtherType of the network layer: skips VLAN tags (802.1Q/802.1ad)
/// and looks inside PPPoE sessions and MPLS label stacks.
fn network_ethertype(frame: &[u8]) -> Option<u16> {
    let be16 = |off: usize| Some(u16::from_be_bytes(*frame.get(off..)?.first_chunk::<2>()?));
    let mut off = 12;
    loop {
        match be16(off)? {
            0x8100 | 0x88A8 | 0x9100 => off += 4,
            // PPPoE session: 6-byte header, then the PPP protocol.
            0x8864 => {
                return match be16(off + 8)? {
                    0x0021 => Some(0x0800),
                    0x0057 => Some(0x86DD),
                    p => Some(p),
                };
            }
            // MPLS: labels up to bottom of stack, then the IP version.
            0x8847 | 0x8848 => {
                off += 2;
                while frame.get(off + 2)? & 1 == 0 {
                    off += 4;
                }
                return match frame.get(off + 4)? >> 4 {
                    4 => Some(0x0800),
                    6 => Some(0x86DD),
                    _ => Some(0x8847),
                };
            }
            t => return Some(t),
        }
    }
}

#[test]
fn real_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/pcap");
    if !dir.is_dir() {
        println!("skipped: ../shared/corpus not found");
        return;
    }
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for path in &files {
        let frames = read_capture(path).unwrap_or_else(|e| panic!("{e}"));
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        println!("{name}: {} frames", frames.len());
        assert!(!frames.is_empty(), "{name}: no frames");
        for (i, f) in frames.iter().enumerate() {
            let t =
                network_ethertype(&f.data).unwrap_or_else(|| panic!("{name}: frame {i} too short"));
            // A plausible EtherType (IPv4, IPv6, ARP ... all are at
            // least 0x0600), not an 802.3 length field or garbage.
            assert!(t >= 0x0600, "{name}: frame {i} has EtherType {t:#06x}");
            assert!(
                f.data.len() <= f.orig_len as usize || f.orig_len == 0,
                "{name}: frame {i}"
            );
            if name == "dns.pcap" {
                assert!(
                    matches!(t, 0x0800 | 0x86DD),
                    "{name}: frame {i} is {t:#06x}"
                );
            }
        }
        if name == "telegram.pcap" {
            assert!(frames.len() > 1000, "{name}: {} frames", frames.len());
        }
    }
}
