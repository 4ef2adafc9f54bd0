//! Arbitrary bytes as an Ethernet frame: the parser, the classifier on the
//! UDP payload, and the per-flow decision, as the XDP program chains them.
//!
//! The twelve MAC address bytes never influence parsing, so they carry the
//! flow state and policy the decision runs with (flags, categories, RTP
//! history, action, scope, percent, the random number): the fuzzer mutates
//! them like any other byte.
//!
//! Invariants: nothing panics (overflow checks are on); an IP packet's UDP
//! (TCP, later fragment's) payload lies inside the frame; the parser reading through a 512-byte
//! offset limit (the XDP program's direct-read bound) gives the same answer
//! or `Truncated`; an app category only comes with a WhatsApp or Telegram
//! label; `observe` only adds flags and `verdict` drops only when the policy
//! says so.
#![no_main]

mod common;

use filter_common::classify::{Class, HEAD_LEN, LABEL_RTP, LABEL_WHATSAPP_MEDIA, Strength};
use filter_common::decide::{Verdict, caller_fate, endpoint_bit, observe, verdict};
use filter_common::parse::{
    Fragment, Malformed, PROTO_TCP, PROTO_UDP, Packet, Parsed, XdpReach, flow_key, parse_frame,
};
use filter_common::{
    ACTION_DROP, ACTION_FLOWS, ACTION_LOSS, ACTION_MONITOR, ENDPOINT_BITS_WORDS, FATE_SPARED,
    FATE_STOPPED, FLOW_CALL, FLOW_SEEN_A, FLOW_SEEN_B, FlowSlot, Policy, SCOPE_UDP,
};
use libfuzzer_sys::fuzz_target;


fuzz_target!(|data: &[u8]| {
    let parsed = parse_frame(data);
    let bounded = parse_frame(&XdpReach(data));
    // The bound can only cut the parse short: truncated, or (IPv6) the
    // transport hidden behind headers out of reach (with the same addresses
    // when the whole frame parses).
    let cut_short = match (bounded, parsed) {
        (Parsed::Malformed(Malformed::Truncated), _) => true,
        (Parsed::Hidden(h), Parsed::Ip(p) | Parsed::Hidden(p)) => (h.src, h.dst) == (p.src, p.dst),
        // What lies beyond the reach may be malformed too.
        (Parsed::Hidden(_), Parsed::Malformed(_)) => true,
        _ => false,
    };
    assert!(
        bounded == parsed || cut_short,
        "offset-bounded parse {bounded:?} differs from {parsed:?}"
    );
    for p in [parsed, bounded] {
        if let Parsed::Hidden(h) = p {
            assert!(h.is_v6, "only IPv6 hides its transport");
            assert_eq!(
                (h.proto, h.sport, h.dport, h.payload_off, h.payload_len),
                (0, 0, 0, 0, 0),
                "a hidden packet carries addresses only"
            );
        }
    }
    let Parsed::Ip(pkt) = parsed else {
        return;
    };
    check_packet(&pkt, data.len());
    if pkt.proto != PROTO_UDP || matches!(pkt.frag, Fragment::Later { .. }) {
        return;
    }
    let mut head = [0u8; HEAD_LEN];
    let n = pkt.payload_len.min(HEAD_LEN);
    head[..n].copy_from_slice(&data[pkt.payload_off..pkt.payload_off + n]);
    let class = common::classify_checked(&head, pkt.payload_len, pkt.sport, pkt.dport);
    let (_, from_a) = pkt.flow_key();
    let mac: [u8; 12] = data[..12]
        .try_into()
        .expect("an IP packet has an Ethernet header");
    decide(&class, from_a, &mac, &pkt.src);
});

fn check_packet(pkt: &Packet, frame_len: usize) {
    let (v4, v6) = if pkt.proto == PROTO_UDP && !matches!(pkt.frag, Fragment::Later { .. }) {
        (Some((14 + 20 + 8, "payload")), 14 + 40 + 8)
    } else if matches!(pkt.frag, Fragment::Later { .. }) {
        // A later fragment's data, whatever the protocol, inside the frame.
        (Some((14 + 20, "fragment data")), 14 + 40 + 8)
    } else if pkt.proto == PROTO_TCP && pkt.payload_off != 0 {
        // A TCP payload (the fallback framings are read from it) lies
        // behind a whole TCP header, inside the frame.
        (Some((14 + 20 + 20, "TCP payload")), 14 + 40 + 20)
    } else {
        (None, 0)
    };
    if let Some((v4_off, what)) = v4 {
        let min_off = if pkt.is_v6 { v6 } else { v4_off };
        assert!(pkt.payload_off >= min_off, "{what} at {}", pkt.payload_off);
        assert!(
            pkt.payload_off + pkt.payload_len <= frame_len,
            "{what} {}+{} beyond the frame's {frame_len} bytes",
            pkt.payload_off,
            pkt.payload_len
        );
    } else {
        assert_eq!((pkt.payload_off, pkt.payload_len), (0, 0));
    }
    if matches!(pkt.frag, Fragment::Later { .. }) {
        assert_eq!((pkt.sport, pkt.dport), (0, 0), "ports of a later fragment");
    }
    if !pkt.is_v6 {
        assert_eq!(&pkt.src[..12], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
        assert_eq!(&pkt.dst[..12], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
    }
    // Both directions of a flow share one key.
    let (k1, a1) = flow_key(&pkt.src, pkt.sport, &pkt.dst, pkt.dport, pkt.proto);
    let (k2, a2) = flow_key(&pkt.dst, pkt.dport, &pkt.src, pkt.sport, pkt.proto);
    assert_eq!(k1, k2);
    if (pkt.src, pkt.sport) != (pkt.dst, pkt.dport) {
        assert_ne!(a1, a2);
    }
    for (addr, port) in [(&pkt.src, pkt.sport), (&pkt.dst, pkt.dport)] {
        let (word, bit) = endpoint_bit(addr, port);
        assert!(word < ENDPOINT_BITS_WORDS && bit.is_power_of_two());
    }
}

/// `observe` and `verdict` on a flow whose state comes from the MAC bytes.
fn decide(class: &Class, from_a: bool, m: &[u8; 12], caller: &[u8; 16]) {
    let d = usize::from(!from_a);
    let mut flow = FlowSlot {
        flags: m[0],
        sig_category: m[1],
        label: m[2],
        fate: m[3],
        rtp_hits: [m[4], m[5]],
        // A step of m[6] to this packet's sequence number, in both directions.
        rtp_seq: [class.seq.wrapping_sub(u16::from(m[6])); 2],
        rtp_ssrc: if m[7] & 1 == 0 {
            [class.ssrc; 2]
        } else {
            [u32::from(m[7]) << 24; 2]
        },
        ..FlowSlot::default()
    };
    let before = flow;
    let is_call = observe(&mut flow, class, from_a);
    assert_eq!(is_call, flow.flags & FLOW_CALL != 0);
    assert_eq!(
        flow.flags & before.flags,
        before.flags,
        "observe cleared a flag"
    );
    let seen = if from_a { FLOW_SEEN_A } else { FLOW_SEEN_B };
    assert_ne!(flow.flags & seen, 0, "direction not recorded");
    if class.app != 0 {
        assert!(is_call);
        assert_eq!(flow.sig_category, class.app);
        // Media already seen on this app's flow keeps its label.
        let keeps = before.label == LABEL_WHATSAPP_MEDIA && before.sig_category == class.app;
        assert_eq!(flow.label, if keeps { before.label } else { class.label });
    }
    if class.strength == Strength::Signal {
        assert!(is_call, "a signal makes a call flow");
    }
    if class.strength == Strength::None {
        let mut expect = before;
        expect.flags |= seen;
        assert_eq!(flow, expect, "nothing recognised, yet the flow changed");
    }
    if class.label == LABEL_RTP {
        assert!(flow.rtp_hits[d] >= 1);
        assert_eq!(flow.rtp_seq[d], class.seq);
        assert_eq!(flow.rtp_ssrc[d], class.ssrc);
        assert_eq!(
            flow.rtp_hits[1 - d],
            before.rtp_hits[1 - d],
            "other direction"
        );
    } else {
        assert_eq!(
            (flow.rtp_hits, flow.rtp_seq, flow.rtp_ssrc),
            (before.rtp_hits, before.rtp_seq, before.rtp_ssrc)
        );
    }

    let policy = Policy {
        action: m[8],
        scope: m[9],
        percent: m[10],
        _pad: 0,
    };
    let rand = u32::from_be_bytes([m[11], m[10], m[9], m[8]]);
    let v = verdict(&policy, is_call, flow.fate, rand);
    let in_scope = is_call || policy.scope == SCOPE_UDP;
    if !in_scope {
        assert_eq!(v, Verdict::Pass, "out of scope");
    }
    match v {
        Verdict::Drop => assert!(
            policy.action == ACTION_DROP
                || (policy.action == ACTION_FLOWS && flow.fate == FATE_STOPPED)
                || (policy.action == ACTION_LOSS && rand % 100 < u32::from(policy.percent)),
            "dropped under {policy:?}, fate {}",
            flow.fate
        ),
        Verdict::Monitor => assert_eq!(policy.action, ACTION_MONITOR),
        Verdict::Pass => assert!(
            !in_scope || (policy.action != ACTION_DROP && policy.action != ACTION_MONITOR),
            "passed under {policy:?}"
        ),
    }
    let fate = caller_fate(
        caller,
        u64::from_be_bytes([m[0], m[1], m[2], m[3], m[4], m[5], m[6], m[7]]),
        m[10],
    );
    assert!(fate == FATE_SPARED || fate == FATE_STOPPED);
    if m[10] >= 100 {
        assert_eq!(fate, FATE_STOPPED);
    }
    if m[10] == 0 {
        assert_eq!(fate, FATE_SPARED);
    }
}
