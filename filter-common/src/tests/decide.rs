//! `decide`: flow state updates, RTP confirmation, verdicts, `flows=P%`
//! caller fates and epoch seeds.

use std::vec::Vec;

use super::cls;
use crate::classify::{
    Class, LABEL_DTLS, LABEL_NONE, LABEL_P2P_INHERITED, LABEL_RTCP, LABEL_RTP, LABEL_STUN,
    LABEL_TELEGRAM_REFLECTOR, LABEL_TURN_CHANNEL, LABEL_WHATSAPP_KEEPALIVE, LABEL_WHATSAPP_MEDIA,
    LABEL_WHATSAPP_STUN, Strength,
};
use crate::consts::{
    CAT_TELEGRAM, CAT_WHATSAPP, ENDPOINT_BITS_WORDS, ENDPOINT_TTL_NS, LEARN_MIN_PORT, TAG_TTL_NS,
};
use crate::decide::{
    RTP_CONFIRM_PACKETS, RTP_MAX_STEP, Verdict, caller_fate, endpoint_bit, endpoint_fresh,
    endpoints_to_learn, epoch_seed, hidden_verdict, learnable_port, may_teach, observe, tag_fresh,
    verdict,
};
use crate::pktbuild::{
    Rtp, channel_data, dtls_content, dtls_record, dtls_version, rtcp, rtp, stun, stun_type,
    v4_mapped,
};
use crate::types::{
    ACTION_DROP, ACTION_FLOWS, ACTION_LOSS, ACTION_MONITOR, ACTION_OFF, EndpointValue, FATE_SPARED,
    FATE_STOPPED, FATE_UNDECIDED, FLOW_CALL, FLOW_FIRST_FROM_B, FLOW_INHERITED, FLOW_LISTED,
    FLOW_SEEN_A, FLOW_SEEN_B, FLOW_TURN, FlowSlot, ORIGIN_CALL, ORIGIN_TURN_PEER, Policy,
    SCOPE_MEDIA, SCOPE_UDP, TagValue,
};

const TXID: [u8; 12] = [9; 12];
const SSRC_A: u32 = 0x1111_2222;
const SSRC_B: u32 = 0x3333_4444;

fn binding() -> Class {
    cls(&stun(stun_type::BINDING_REQUEST, TXID, &[]))
}

fn allocate() -> Class {
    let c = cls(&stun(stun_type::ALLOCATE, TXID, &[]));
    assert!(c.turn);
    c
}

fn chan() -> Class {
    let c = cls(&channel_data(0x4001, &[0xab; 100]));
    assert_eq!(
        (c.label, c.strength),
        (LABEL_TURN_CHANNEL, Strength::Candidate)
    );
    c
}

fn rtp_class(seq: u16, ssrc: u32) -> Class {
    let c = cls(&rtp(111, seq, u32::from(seq) * 960, ssrc, 60));
    assert_eq!(
        (c.label, c.strength, c.seq, c.ssrc),
        (LABEL_RTP, Strength::Candidate, seq, ssrc)
    );
    c
}

/// Feed `(seq, ssrc, from_a)` RTP packets; the `observe` results.
fn feed(flow: &mut FlowSlot, pkts: &[(u16, u32, bool)]) -> Vec<bool> {
    pkts.iter()
        .map(|&(seq, ssrc, from_a)| observe(flow, &rtp_class(seq, ssrc), from_a))
        .collect()
}

/// A [`feed`] packet of `SSRC_A` from side a.
fn at_a(seq: u16) -> (u16, u32, bool) {
    (seq, SSRC_A, true)
}

/// A [`feed`] packet of `SSRC_B` from side b.
fn at_b(seq: u16) -> (u16, u32, bool) {
    (seq, SSRC_B, false)
}

// --- Signals -----------------------------------------------------------------------

#[test]
fn signals_mark_the_flow_and_set_the_label() {
    let cases = [
        (binding(), LABEL_STUN),
        (
            cls(&dtls_record(
                dtls_content::HANDSHAKE,
                dtls_version::DTLS_1_2,
                100,
            )),
            LABEL_DTLS,
        ),
    ];
    for (class, label) in cases {
        assert_eq!(class.strength, Strength::Signal);
        for from_a in [true, false] {
            let mut flow = FlowSlot::default();
            assert!(observe(&mut flow, &class, from_a));
            assert_eq!(call_view(&flow).flags, FLOW_CALL, "label {label}");
            assert_eq!(flow.label, label);
        }
    }
}

#[test]
fn turn_sets_flow_turn() {
    let mut flow = FlowSlot::default();
    assert!(observe(&mut flow, &allocate(), true));
    assert_eq!(call_view(&flow).flags, FLOW_CALL | FLOW_TURN);
    assert_eq!(flow.label, LABEL_STUN);
    // A plain binding does not.
    let mut flow = FlowSlot::default();
    observe(&mut flow, &binding(), true);
    assert_eq!(flow.flags & FLOW_TURN, 0);
}

#[test]
fn the_first_call_label_sticks() {
    let mut flow = FlowSlot::default();
    observe(&mut flow, &binding(), true);
    let dtls = cls(&dtls_record(
        dtls_content::APPLICATION_DATA,
        dtls_version::DTLS_1_2,
        40,
    ));
    assert!(observe(&mut flow, &dtls, false));
    assert_eq!(flow.label, LABEL_STUN);
}

#[test]
fn an_app_signature_marks_and_overrides_the_label() {
    let mut flow = FlowSlot::default();
    observe(&mut flow, &binding(), true);
    let app = Class {
        label: LABEL_DTLS,
        app: 1,
        strength: Strength::None,
        ..Class::NONE
    };
    assert!(observe(&mut flow, &app, true));
    assert_eq!((flow.label, flow.sig_category), (LABEL_DTLS, 1));
    let mut fresh = FlowSlot::default();
    assert!(observe(&mut fresh, &app, false));
    assert_eq!(
        (call_view(&fresh).flags, fresh.label, fresh.sig_category),
        (FLOW_CALL, LABEL_DTLS, 1)
    );
}

#[test]
fn nothing_recognised_changes_nothing() {
    let mut flow = FlowSlot::default();
    assert!(!observe(&mut flow, &Class::NONE, true));
    // Only the direction is noted.
    assert_eq!(
        flow,
        FlowSlot {
            flags: FLOW_SEEN_A,
            ..FlowSlot::default()
        }
    );
    // On a call flow it says "call" and leaves the flow alone but for the direction.
    observe(&mut flow, &binding(), true);
    let before = flow;
    assert!(observe(&mut flow, &Class::NONE, false));
    assert_eq!(
        flow,
        FlowSlot {
            flags: before.flags | FLOW_SEEN_B,
            ..before
        }
    );
}

#[test]
fn observe_keeps_unrelated_fields() {
    let mut flow = FlowSlot {
        flags: FLOW_LISTED | FLOW_FIRST_FROM_B,
        category: 7,
        fate: FATE_STOPPED,
        packets: 10,
        bytes: 1000,
        ..FlowSlot::default()
    };
    observe(&mut flow, &allocate(), true);
    assert_eq!(
        flow.flags,
        FLOW_LISTED | FLOW_FIRST_FROM_B | FLOW_CALL | FLOW_TURN | FLOW_SEEN_A
    );
    assert_eq!(flow.sig_category, 0, "no app signature");
    assert_eq!(
        (flow.category, flow.fate, flow.packets, flow.bytes),
        (7, FATE_STOPPED, 10, 1000)
    );
}

// --- TURN ChannelData ----------------------------------------------------------------

#[test]
fn channel_data_without_turn_does_not_mark() {
    let mut flow = FlowSlot::default();
    for i in 0..50 {
        assert!(!observe(&mut flow, &chan(), i % 2 == 0));
    }
    assert_eq!(call_view(&flow), FlowSlot::default());
}

#[test]
fn channel_data_on_a_turn_flow_marks() {
    let mut flow = FlowSlot {
        flags: FLOW_TURN,
        ..FlowSlot::default()
    };
    assert!(observe(&mut flow, &chan(), false));
    assert_eq!(call_view(&flow).flags, FLOW_TURN | FLOW_CALL);
    assert_eq!(flow.label, LABEL_TURN_CHANNEL);
    // After a real Allocate the label stays STUN.
    let mut flow = FlowSlot::default();
    observe(&mut flow, &allocate(), true);
    assert!(observe(&mut flow, &chan(), true));
    assert_eq!(flow.label, LABEL_STUN);
}

#[test]
fn channel_data_on_a_non_turn_call_flow() {
    // A call flow (ICE binding) without TURN: ChannelData neither adds TURN
    // nor changes the label, and the packet belongs to the call.
    let mut flow = FlowSlot::default();
    observe(&mut flow, &binding(), true);
    assert!(observe(&mut flow, &chan(), true));
    assert_eq!(
        (call_view(&flow).flags, flow.label),
        (FLOW_CALL, LABEL_STUN)
    );
}

// --- RTP confirmation --------------------------------------------------------------

#[test]
fn rtp_confirms_after_enough_packets_for_every_step() {
    assert_eq!(RTP_CONFIRM_PACKETS, 3);
    assert_eq!(RTP_MAX_STEP, 16);
    for step in 1..=RTP_MAX_STEP {
        for from_a in [true, false] {
            let mut flow = FlowSlot::default();
            for i in 0..u16::from(RTP_CONFIRM_PACKETS) {
                let seq = 1000u16.wrapping_add(i * step);
                let call = observe(&mut flow, &rtp_class(seq, SSRC_A), from_a);
                let confirmed = i + 1 >= u16::from(RTP_CONFIRM_PACKETS);
                assert_eq!(call, confirmed, "step {step}, packet {i}");
                assert_eq!(flow.label, if confirmed { LABEL_RTP } else { LABEL_NONE });
            }
            assert_eq!(call_view(&flow).flags, FLOW_CALL);
            let d = usize::from(!from_a);
            assert_eq!(flow.rtp_hits[d], RTP_CONFIRM_PACKETS);
            assert_eq!(flow.rtp_ssrc[d], SSRC_A);
            assert_eq!(flow.rtp_hits[1 - d], 0, "the other direction is untouched");
        }
    }
}

#[test]
fn rtp_bad_steps_never_confirm() {
    // Step 0 (duplicate), 17, a large jump, and backwards by one.
    for step in [0u16, RTP_MAX_STEP + 1, 1000, 0xffff] {
        let mut flow = FlowSlot::default();
        let pkts: Vec<(u16, u32, bool)> = (0..10u16)
            .map(|i| at_a(500u16.wrapping_add(i.wrapping_mul(step))))
            .collect();
        assert!(feed(&mut flow, &pkts).iter().all(|c| !c), "step {step}");
        assert_eq!(call_view(&flow).flags, 0);
        assert_eq!(flow.rtp_hits[0], 1, "every packet restarts the count");
    }
}

#[test]
fn rtp_one_bad_step_restarts_the_count() {
    let mut flow = FlowSlot::default();
    let got = feed(&mut flow, &[at_a(10), at_a(11), at_a(11), at_a(12)]);
    assert_eq!(got, [false, false, false, false]);
    assert_eq!(flow.rtp_hits[0], 2);
    assert!(feed(&mut flow, &[at_a(13)])[0]);
}

#[test]
fn rtp_sequence_wraps() {
    let mut flow = FlowSlot::default();
    let got = feed(&mut flow, &[at_a(65534), at_a(65535), at_a(0)]);
    assert_eq!(got, [false, false, true]);
    let mut flow = FlowSlot::default();
    let got = feed(
        &mut flow,
        &[
            (65530, SSRC_A, false),
            (4, SSRC_A, false),
            (20, SSRC_A, false),
        ],
    );
    assert_eq!(got, [false, false, true], "steps 10 and 16 across the wrap");
}

#[test]
fn rtp_ssrc_change_restarts_the_count() {
    let mut flow = FlowSlot::default();
    let got = feed(
        &mut flow,
        &[at_a(1), at_a(2), (3, SSRC_B, true), (4, SSRC_B, true)],
    );
    assert_eq!(got, [false, false, false, false]);
    assert_eq!((flow.rtp_ssrc[0], flow.rtp_hits[0]), (SSRC_B, 2));
    assert!(feed(&mut flow, &[(5, SSRC_B, true)])[0]);
}

#[test]
fn rtp_directions_confirm_independently() {
    // Interleaved directions: each keeps its own count; neither resets the other.
    let mut flow = FlowSlot::default();
    let got = feed(&mut flow, &[at_a(10), at_b(500), at_a(11), at_b(9999)]);
    assert_eq!(got, [false; 4]);
    assert_eq!(
        (flow.rtp_hits, flow.rtp_seq, flow.rtp_ssrc),
        ([2, 1], [11, 9999], [SSRC_A, SSRC_B])
    );
    assert!(feed(&mut flow, &[at_a(12)])[0], "a's third packet confirms");

    // A single stray packet one way does not keep the other way from confirming.
    let mut flow = FlowSlot::default();
    let got = feed(&mut flow, &[at_a(10), at_b(7), at_b(8), at_b(9)]);
    assert_eq!(got, [false, false, false, true]);

    // Packets of one SSRC split across directions do not add up.
    let mut flow = FlowSlot::default();
    let got = feed(&mut flow, &[at_a(10), (11, SSRC_A, false), at_a(12)]);
    assert_eq!(got, [false; 3]);
    assert_eq!(flow.rtp_hits, [2, 1]);
}

#[test]
fn rtp_hits_saturate() {
    let mut flow = FlowSlot::default();
    let pkts: Vec<(u16, u32, bool)> = (0..400u16).map(at_a).collect();
    let got = feed(&mut flow, &pkts);
    assert!(
        got[usize::from(RTP_CONFIRM_PACKETS) - 1..]
            .iter()
            .all(|&c| c)
    );
    assert_eq!(flow.rtp_hits[0], u8::MAX);
}

#[test]
fn a_confirmed_flow_stays_a_call() {
    let mut flow = FlowSlot::default();
    feed(&mut flow, &[at_a(1), at_a(2), at_a(3)]);
    assert_eq!(call_view(&flow).flags, FLOW_CALL);
    // A new SSRC restarts tracking, but the flow is already a call.
    assert_eq!(feed(&mut flow, &[(900, SSRC_B, true)]), [true]);
    assert_eq!(flow.rtp_hits[0], 1);
    assert_eq!(flow.label, LABEL_RTP);
}

#[test]
fn rtp_on_a_signalled_flow_keeps_the_label() {
    let mut flow = FlowSlot::default();
    observe(&mut flow, &binding(), true);
    assert_eq!(feed(&mut flow, &[(1, SSRC_A, false)]), [true]);
    assert_eq!(flow.label, LABEL_STUN);
}

// --- WhatsApp flows: keepalives and raw media -----------------------------------------

/// The flow with only the flags these tests are about (call, TURN, listed,
/// inherited, first direction): per-direction bookkeeping bits are ignored.
fn call_view(flow: &FlowSlot) -> FlowSlot {
    FlowSlot {
        flags: flow.flags
            & (FLOW_CALL | FLOW_TURN | FLOW_LISTED | FLOW_INHERITED | FLOW_FIRST_FROM_B),
        ..*flow
    }
}

fn keepalive(p: &[u8]) -> Class {
    let c = cls(p);
    assert_eq!(
        (c.label, c.strength, c.app),
        (LABEL_WHATSAPP_KEEPALIVE, Strength::Candidate, 0)
    );
    c
}

/// A flow that carried WhatsApp STUN (a private 0x0801 ping).
fn whatsapp_flow() -> FlowSlot {
    let mut flow = FlowSlot::default();
    let c = cls(&stun(0x0801, TXID, &[]));
    assert_eq!((c.label, c.app), (LABEL_WHATSAPP_STUN, CAT_WHATSAPP));
    assert!(observe(&mut flow, &c, true));
    assert_eq!(
        (call_view(&flow).flags, flow.sig_category, flow.label),
        (FLOW_CALL, CAT_WHATSAPP, LABEL_WHATSAPP_STUN)
    );
    flow
}

#[test]
fn keepalives_mark_only_a_whatsapp_flow() {
    for p in [&b"health"[..], b"OK"] {
        // sig_category set, nothing else yet (e.g. a flow whose only call
        // packet so far was answered elsewhere).
        let mut flow = FlowSlot {
            sig_category: CAT_WHATSAPP,
            ..FlowSlot::default()
        };
        assert!(observe(&mut flow, &keepalive(p), true));
        assert_eq!(call_view(&flow).flags, FLOW_CALL);
        assert_eq!(flow.label, LABEL_WHATSAPP_KEEPALIVE);
        assert_eq!(flow.sig_category, CAT_WHATSAPP);
        // After WhatsApp STUN: a call, the STUN label kept.
        let mut flow = whatsapp_flow();
        assert!(observe(&mut flow, &keepalive(p), false));
        assert_eq!(flow.label, LABEL_WHATSAPP_STUN);
        // Without the WhatsApp mark: not a call, nothing changes, however
        // many keepalives arrive.
        for other in [0u8, CAT_TELEGRAM, 3, 200] {
            let start = FlowSlot {
                sig_category: other,
                ..FlowSlot::default()
            };
            let mut flow = start;
            for i in 0..10 {
                assert!(
                    !observe(&mut flow, &keepalive(p), i % 2 == 0),
                    "cat {other}"
                );
            }
            assert_eq!(call_view(&flow), start);
        }
        // A listed flow with TURN but no call yet is not made one either.
        let start = FlowSlot {
            flags: FLOW_LISTED | FLOW_TURN,
            category: 7,
            ..FlowSlot::default()
        };
        let mut flow = start;
        assert!(!observe(&mut flow, &keepalive(p), true));
        assert_eq!(call_view(&flow), start);
    }
}

#[test]
fn rtp_on_a_whatsapp_flow_is_media_at_once() {
    // One RTP candidate suffices: no confirmation needed.
    let mut flow = FlowSlot {
        sig_category: CAT_WHATSAPP,
        ..FlowSlot::default()
    };
    assert!(observe(&mut flow, &rtp_class(100, SSRC_A), false));
    assert_eq!(call_view(&flow).flags, FLOW_CALL);
    assert_eq!(flow.label, LABEL_WHATSAPP_MEDIA);
    // The RTP tracking still runs.
    assert_eq!((flow.rtp_hits, flow.rtp_ssrc[1]), ([0, 1], SSRC_A));
    // PT 120 with the marker bit, as on WhatsApp's relays.
    let mut flow = FlowSlot {
        sig_category: CAT_WHATSAPP,
        ..FlowSlot::default()
    };
    let p = Rtp::new(120, 0x4129, 0x0a00, 0x5459_2824)
        .marker(true)
        .payload(&[0x5c; 248])
        .build();
    assert_eq!(&p[..2], &[0x80, 0xf8]);
    let c = cls(&p);
    assert_eq!((c.label, c.strength), (LABEL_RTP, Strength::Candidate));
    assert!(observe(&mut flow, &c, true));
    assert_eq!(flow.label, LABEL_WHATSAPP_MEDIA);
    // After WhatsApp STUN on the same 5-tuple.
    let mut flow = whatsapp_flow();
    assert!(observe(&mut flow, &rtp_class(1, SSRC_B), false));
    assert_eq!(flow.sig_category, CAT_WHATSAPP);
    // An inherited flow keeps its label.
    let mut flow = FlowSlot {
        sig_category: CAT_WHATSAPP,
        flags: FLOW_CALL | FLOW_INHERITED,
        label: LABEL_P2P_INHERITED,
        ..FlowSlot::default()
    };
    assert!(observe(&mut flow, &rtp_class(1, SSRC_B), false));
    assert_eq!(flow.label, LABEL_P2P_INHERITED);
}

#[test]
fn whatsapp_relay_media_is_labelled_whatsapp_media() {
    // The relay 5-tuple: WhatsApp STUN, then raw SRTP.
    let mut flow = whatsapp_flow();
    assert!(observe(&mut flow, &rtp_class(1, SSRC_A), false));
    assert_eq!(flow.label, LABEL_WHATSAPP_MEDIA);
    // More WhatsApp STUN on the flow does not take the label back.
    assert!(observe(&mut flow, &cls(&stun(0x0801, TXID, &[])), true));
    assert_eq!(flow.label, LABEL_WHATSAPP_MEDIA);
}

#[test]
fn rtp_on_other_flows_needs_confirmation() {
    for cat in [0u8, CAT_TELEGRAM, 3] {
        let mut flow = FlowSlot {
            sig_category: cat,
            ..FlowSlot::default()
        };
        let got = feed(&mut flow, &[at_a(1), at_a(2), at_a(3)]);
        assert_eq!(got, [false, false, true], "cat {cat}");
        assert_eq!(flow.label, LABEL_RTP, "cat {cat}");
    }
}

#[test]
fn telegram_reflector_marks_the_flow_telegram() {
    let mut p = [0xffu8; 40];
    p[..16].copy_from_slice(&[0x80; 16]);
    p[28] = 0xfe;
    p[32..].fill(7);
    let c = cls(&p);
    assert_eq!(
        (c.label, c.app, c.learn_tag),
        (LABEL_TELEGRAM_REFLECTOR, CAT_TELEGRAM, true)
    );
    let mut flow = FlowSlot::default();
    assert!(observe(&mut flow, &c, false));
    assert_eq!(
        (call_view(&flow).flags, flow.sig_category, flow.label),
        (FLOW_CALL, CAT_TELEGRAM, LABEL_TELEGRAM_REFLECTOR)
    );
    // Keepalives and RTP on a Telegram flow get no WhatsApp treatment, but
    // the flow is already a call.
    assert!(observe(&mut flow, &keepalive(b"OK"), true));
    assert!(observe(&mut flow, &rtp_class(5, SSRC_A), true));
    assert_eq!(
        (flow.sig_category, flow.label),
        (CAT_TELEGRAM, LABEL_TELEGRAM_REFLECTOR)
    );
}

// --- Endpoints and tags: what to learn, for how long -----------------------------------

#[test]
fn endpoints_to_learn_are_the_unlisted_sides_answers_only_both_ways() {
    // (source, destination). Toward a listed relay: the caller (source).
    assert_eq!(endpoints_to_learn(false, true, false), (true, false));
    assert_eq!(endpoints_to_learn(false, true, true), (true, false));
    // From a listed relay: the caller (destination), once the flow went
    // both ways; a one-way (spoofable) flow marks nobody.
    assert_eq!(endpoints_to_learn(true, false, true), (false, true));
    assert_eq!(endpoints_to_learn(true, false, false), (false, false));
    // Neither listed (signature-only): the sender, and the other side once
    // it answered.
    assert_eq!(endpoints_to_learn(false, false, false), (true, false));
    assert_eq!(endpoints_to_learn(false, false, true), (true, true));
    // Both listed: relay to relay, nobody to learn.
    assert_eq!(endpoints_to_learn(true, true, true), (false, false));
}

fn endpoint(learned_ns: u64) -> EndpointValue {
    EndpointValue {
        learned_ns,
        category: CAT_WHATSAPP,
        origin: ORIGIN_CALL,
        _pad: [0; 6],
    }
}

fn tag(learned_ns: u64) -> TagValue {
    TagValue {
        learned_ns,
        category: CAT_TELEGRAM,
        _pad: [0; 7],
    }
}

#[test]
fn endpoints_expire_after_their_ttl() {
    for t0 in [0u64, 1, 5_000_000_000, u64::MAX - ENDPOINT_TTL_NS] {
        let e = endpoint(t0);
        assert!(endpoint_fresh(&e, t0), "t0 {t0}");
        assert!(endpoint_fresh(&e, t0 + 1));
        assert!(endpoint_fresh(&e, t0 + ENDPOINT_TTL_NS - 1));
        assert!(!endpoint_fresh(&e, t0 + ENDPOINT_TTL_NS));
        assert!(!endpoint_fresh(&e, t0.saturating_add(ENDPOINT_TTL_NS + 1)));
    }
    // The last moment is far in the future without overflow.
    assert!(!endpoint_fresh(&endpoint(0), u64::MAX));
    // A clock behind the learning time (another CPU) counts as fresh.
    assert!(endpoint_fresh(&endpoint(10_000), 9_999));
    assert!(endpoint_fresh(&endpoint(u64::MAX), 0));
    // Origin and category do not matter to freshness.
    let peer = EndpointValue {
        origin: ORIGIN_TURN_PEER,
        category: CAT_TELEGRAM,
        ..endpoint(100)
    };
    assert!(endpoint_fresh(&peer, 100 + ENDPOINT_TTL_NS - 1));
    assert!(!endpoint_fresh(&peer, 100 + ENDPOINT_TTL_NS));
}

#[test]
fn tags_expire_after_their_ttl() {
    for t0 in [0u64, 1, 7_000_000_000, u64::MAX - TAG_TTL_NS] {
        let v = tag(t0);
        assert!(tag_fresh(&v, t0), "t0 {t0}");
        assert!(tag_fresh(&v, t0 + TAG_TTL_NS - 1));
        assert!(!tag_fresh(&v, t0 + TAG_TTL_NS));
        assert!(!tag_fresh(&v, t0.saturating_add(TAG_TTL_NS + 1)));
    }
    assert!(!tag_fresh(&tag(0), u64::MAX));
    assert!(tag_fresh(&tag(10_000), 9_999));
    // The endpoint TTL does not apply to tags, nor the reverse.
    let (short, long) = if TAG_TTL_NS < ENDPOINT_TTL_NS {
        (TAG_TTL_NS, ENDPOINT_TTL_NS)
    } else {
        (ENDPOINT_TTL_NS, TAG_TTL_NS)
    };
    let mid = short + (long - short) / 2;
    assert_eq!(tag_fresh(&tag(0), mid), TAG_TTL_NS > mid);
    assert_eq!(endpoint_fresh(&endpoint(0), mid), ENDPOINT_TTL_NS > mid);
}

#[test]
fn only_high_ports_are_learnable() {
    assert!(!learnable_port(LEARN_MIN_PORT - 1));
    assert!(learnable_port(LEARN_MIN_PORT));
    assert!(learnable_port(LEARN_MIN_PORT + 1));
    for port in [0u16, 1, 53, 67, 68, 123, 137, 443, 500, 599] {
        assert!(!learnable_port(port), "port {port}");
    }
    for port in [1400u16, 3478, 40000, u16::MAX] {
        assert!(learnable_port(port), "port {port}");
    }
}

#[test]
fn endpoint_bit_is_one_bit_in_range_and_deterministic() {
    let addrs = [
        v4_mapped([192, 0, 2, 1]),
        v4_mapped([198, 51, 100, 200]),
        [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        [0; 16],
        [0xff; 16],
    ];
    for addr in addrs {
        for port in [0u16, 1, 1024, 3478, 40000, u16::MAX] {
            let (word, bit) = endpoint_bit(&addr, port);
            assert!(word < ENDPOINT_BITS_WORDS, "{addr:?}:{port}");
            assert_eq!(bit.count_ones(), 1, "{addr:?}:{port}");
            assert_eq!(endpoint_bit(&addr, port), (word, bit));
        }
    }
}

#[test]
fn endpoint_bits_spread_over_ports_and_addresses() {
    use std::collections::BTreeSet;
    // One address, many ports: almost no two share a bit (4096 of 2^20).
    let a = v4_mapped([192, 0, 2, 10]);
    let bits: BTreeSet<(u32, u64)> = (20000u16..24096).map(|p| endpoint_bit(&a, p)).collect();
    assert!(bits.len() > 4060, "{}", bits.len());
    // One port, many addresses (IPv4 in the low bytes, IPv6 in the high).
    let bits: BTreeSet<(u32, u64)> = (0u32..4096)
        .map(|i| {
            let b = i.to_be_bytes();
            endpoint_bit(&v4_mapped([198, 51, b[2], b[3]]), 40000)
        })
        .collect();
    assert!(bits.len() > 4060, "{}", bits.len());
    let bits: BTreeSet<(u32, u64)> = (0u32..4096)
        .map(|i| {
            let mut addr = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
            addr[4..8].copy_from_slice(&i.to_be_bytes());
            endpoint_bit(&addr, 40000)
        })
        .collect();
    assert!(bits.len() > 4060, "{}", bits.len());
    // The words fill evenly: 4 endpoints per word on average leave about
    // e^-4 (1.8%) of the words empty.
    let words: BTreeSet<u32> = (0..ENDPOINT_BITS_WORDS * 4)
        .map(|i| {
            let b = i.to_be_bytes();
            endpoint_bit(&v4_mapped([10, b[1], b[2], b[3]]), 5000 + (i % 7) as u16).0
        })
        .collect();
    let empty = ENDPOINT_BITS_WORDS as usize - words.len();
    let expect = ENDPOINT_BITS_WORDS as usize * 183 / 10_000;
    assert!(
        empty < expect * 2,
        "{empty} empty words, about {expect} expected"
    );
}

// --- Verdicts ------------------------------------------------------------------------

const FATES: [u8; 3] = [FATE_UNDECIDED, FATE_SPARED, FATE_STOPPED];

#[test]
fn verdict_every_action_scope_call_and_fate() {
    use Verdict::{Drop, Monitor, Pass};
    // (action, percent, verdict by fate [undecided, spared, stopped]) when the
    // policy applies to the packet.
    let table: [(u8, u8, [Verdict; 3]); 8] = [
        (ACTION_DROP, 0, [Drop, Drop, Drop]),
        (ACTION_DROP, 50, [Drop, Drop, Drop]),
        (ACTION_MONITOR, 0, [Monitor, Monitor, Monitor]),
        (ACTION_OFF, 0, [Pass, Pass, Pass]),
        (ACTION_FLOWS, 50, [Pass, Pass, Drop]),
        (ACTION_LOSS, 100, [Drop, Drop, Drop]),
        (ACTION_LOSS, 0, [Pass, Pass, Pass]),
        (9, 100, [Pass, Pass, Pass]), // unknown action
    ];
    for (action, percent, by_fate) in table {
        for scope in [SCOPE_MEDIA, SCOPE_UDP, 7] {
            let policy = Policy {
                action,
                scope,
                percent,
                _pad: 0,
            };
            for is_call in [false, true] {
                // scope=udp covers every UDP packet; media (and an unknown
                // scope) only packets of call flows.
                let applies = is_call || scope == SCOPE_UDP;
                for (i, &fate) in FATES.iter().enumerate() {
                    for rand in [0u32, 42, 99, 12345, u32::MAX] {
                        let want = if applies { by_fate[i] } else { Pass };
                        assert_eq!(
                            verdict(&policy, is_call, fate, rand),
                            want,
                            "action {action} percent {percent} scope {scope} call {is_call} fate {fate} rand {rand}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn the_default_policy_drops_call_media_only() {
    let policy = Policy::default();
    assert_eq!((policy.action, policy.scope), (ACTION_DROP, SCOPE_MEDIA));
    assert_eq!(verdict(&policy, true, FATE_UNDECIDED, 0), Verdict::Drop);
    assert_eq!(verdict(&policy, false, FATE_UNDECIDED, 0), Verdict::Pass);
}

#[test]
fn loss_drops_percent_of_packets() {
    for percent in 0u8..=100 {
        let policy = Policy {
            action: ACTION_LOSS,
            scope: SCOPE_MEDIA,
            percent,
            _pad: 0,
        };
        let drops = (0u32..10_000)
            .filter(|&r| verdict(&policy, true, FATE_SPARED, r) == Verdict::Drop)
            .count();
        assert_eq!(drops, usize::from(percent) * 100, "loss={percent}%");
        // Exactly the rands whose remainder is below the percentage.
        if percent < 100 {
            assert_eq!(
                verdict(
                    &policy,
                    true,
                    FATE_UNDECIDED,
                    1_000_000 + u32::from(percent)
                ),
                Verdict::Pass,
                "loss={percent}%"
            );
        }
        if percent > 0 {
            assert_eq!(
                verdict(
                    &policy,
                    true,
                    FATE_UNDECIDED,
                    1_000_000 + u32::from(percent) - 1
                ),
                Verdict::Drop
            );
        }
        // Not a call and scope media: never dropped.
        assert!((0u32..200).all(|r| verdict(&policy, false, FATE_STOPPED, r) == Verdict::Pass));
    }
    // u32::MAX % 100 == 95.
    let policy = |percent| Policy {
        action: ACTION_LOSS,
        scope: SCOPE_UDP,
        percent,
        _pad: 0,
    };
    assert_eq!(verdict(&policy(95), false, 0, u32::MAX), Verdict::Pass);
    assert_eq!(verdict(&policy(96), false, 0, u32::MAX), Verdict::Drop);
}

// --- Caller fates and epochs -----------------------------------------------------------

fn callers(n: u32) -> Vec<[u8; 16]> {
    (0..n)
        .map(|i| {
            if i % 2 == 0 {
                let b = (i / 2).to_be_bytes();
                v4_mapped([10, b[1], b[2], b[3]])
            } else {
                let mut a = [0u8; 16];
                a[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
                a[8..12].copy_from_slice(&i.to_be_bytes());
                a[15] = 1;
                a
            }
        })
        .collect()
}

fn stopped(addrs: &[[u8; 16]], seed: u64, percent: u8) -> Vec<bool> {
    addrs
        .iter()
        .map(|a| {
            let f = caller_fate(a, seed, percent);
            assert!(f == FATE_STOPPED || f == FATE_SPARED, "fate {f}");
            f == FATE_STOPPED
        })
        .collect()
}

#[test]
fn caller_fate_is_deterministic() {
    let addrs = callers(1000);
    for seed in [0u64, 1, 0xdead_beef_cafe_f00d] {
        for percent in [1u8, 33, 50, 99] {
            assert_eq!(
                stopped(&addrs, seed, percent),
                stopped(&addrs, seed, percent)
            );
        }
    }
}

#[test]
fn caller_fate_splits_callers_by_percent() {
    let addrs = callers(10_000);
    for seed in [0u64, 7, 0x0123_4567_89ab_cdef, u64::MAX] {
        let n = stopped(&addrs, seed, 50).iter().filter(|&&s| s).count();
        assert!(
            (4700..=5300).contains(&n),
            "seed {seed:#x}: {n} of 10000 stopped"
        );
        assert!(
            stopped(&addrs, seed, 0).iter().all(|&s| !s),
            "percent 0 stops nobody"
        );
        assert!(
            stopped(&addrs, seed, 100).iter().all(|&s| s),
            "percent 100 stops everyone"
        );
        for percent in [10u8, 25, 75, 90] {
            let n = stopped(&addrs, seed, percent)
                .iter()
                .filter(|&&s| s)
                .count();
            let want = usize::from(percent) * 100;
            assert!(n.abs_diff(want) <= 300, "percent {percent}: {n} of 10000");
        }
    }
}

#[test]
fn raising_the_percentage_only_adds_callers() {
    let addrs = callers(2000);
    let seed = 42;
    let mut prev = stopped(&addrs, seed, 0);
    for percent in (10u8..=100).step_by(10) {
        let cur = stopped(&addrs, seed, percent);
        assert!(
            prev.iter().zip(&cur).all(|(&p, &c)| !p || c),
            "percent {percent}"
        );
        prev = cur;
    }
}

#[test]
fn a_new_seed_picks_other_callers() {
    let addrs = callers(2000);
    let a = stopped(&addrs, epoch_seed(1, 0, 60), 50);
    let b = stopped(&addrs, epoch_seed(1, 60_000_000_000, 60), 50);
    let differ = a.iter().zip(&b).filter(|(x, y)| x != y).count();
    // Independent halves disagree on about half of the callers.
    assert!(
        (800..=1200).contains(&differ),
        "{differ} of 2000 changed fate"
    );
}

#[test]
fn epoch_seed_is_stable_within_an_epoch() {
    const S: u64 = 1_000_000_000;
    for base in [0u64, 99, u64::MAX] {
        for epoch_secs in [1u32, 60, 3600] {
            let len = u64::from(epoch_secs) * S;
            for epoch in [0u64, 1, 1000] {
                let start = epoch * len;
                let s = epoch_seed(base, start, epoch_secs);
                assert_eq!(epoch_seed(base, start + len / 2, epoch_secs), s);
                assert_eq!(epoch_seed(base, start + len - 1, epoch_secs), s);
                assert_ne!(epoch_seed(base, start + len, epoch_secs), s, "next epoch");
            }
        }
    }
}

#[test]
fn epoch_seed_changes_across_epochs_and_bases() {
    let mut seeds: Vec<u64> = (0..1000u64)
        .map(|e| epoch_seed(7, e * 30 * 1_000_000_000, 30))
        .collect();
    seeds.sort_unstable();
    seeds.dedup();
    assert_eq!(seeds.len(), 1000);
    assert_ne!(epoch_seed(1, 0, 30), epoch_seed(2, 0, 30));
    assert_ne!(epoch_seed(0, 0, 30), 0);
}

#[test]
fn epoch_zero_length_never_rotates() {
    let s = epoch_seed(5, 0, 0);
    for now in [1u64, 1_000_000_000, u64::MAX / 2, u64::MAX] {
        assert_eq!(epoch_seed(5, now, 0), s);
    }
    assert_ne!(epoch_seed(6, 0, 0), s);
    // The largest epoch length does not overflow.
    assert_eq!(
        epoch_seed(5, u64::MAX, u32::MAX),
        epoch_seed(5, u64::MAX - 1, u32::MAX)
    );
}

#[test]
fn may_teach_needs_a_call_both_ways_or_a_few_packets_and_no_inheritance() {
    use crate::decide::TEACH_MIN_PACKETS;
    use crate::types::{FLOW_CALL, FLOW_INHERITED};
    let both = FLOW_SEEN_A | FLOW_SEEN_B;
    assert!(may_teach(FLOW_CALL | both, 2));
    assert!(!may_teach(both, 100), "not a call");
    assert!(
        !may_teach(FLOW_CALL | FLOW_SEEN_A, 1),
        "one spoofed packet teaches nothing"
    );
    assert!(!may_teach(FLOW_CALL | FLOW_SEEN_B, TEACH_MIN_PACKETS - 1));
    assert!(
        may_teach(FLOW_CALL | FLOW_SEEN_A, TEACH_MIN_PACKETS),
        "a one-way call under drop"
    );
    assert!(
        !may_teach(FLOW_CALL | both | FLOW_INHERITED, 100),
        "inherited flows teach nothing"
    );
    // Through observe(): a call packet one way, then an answer.
    let mut flow = FlowSlot::default();
    observe(
        &mut flow,
        &cls(&stun(stun_type::BINDING_REQUEST, [1; 12], &[])),
        true,
    );
    assert!(!may_teach(flow.flags, 1));
    observe(&mut flow, &Class::NONE, false);
    assert!(may_teach(flow.flags, 2));
}

#[test]
fn rtcp_alone_marks_nothing_but_counts_on_a_call_flow() {
    // A game frame set can look like RTCP: by itself it is no call.
    let rtcp_class = cls(&rtcp(200, 0, 5, &[0; 20]));
    assert_eq!(
        (rtcp_class.label, rtcp_class.strength),
        (LABEL_RTCP, Strength::Candidate)
    );
    let mut flow = FlowSlot::default();
    for i in 0..20 {
        assert!(!observe(&mut flow, &rtcp_class, i % 2 == 0));
    }
    assert_eq!(call_view(&flow), FlowSlot::default());
    // On a flow already known as a call it is part of the call, and keeps the label.
    let mut flow = FlowSlot::default();
    observe(&mut flow, &binding(), true);
    assert!(observe(&mut flow, &rtcp_class, false));
    assert_eq!(flow.label, LABEL_STUN);
}

#[test]
fn hidden_transport_gets_the_full_restriction() {
    let p = |action, scope, percent| Policy {
        action,
        scope,
        percent,
        _pad: 0,
    };
    for scope in [SCOPE_MEDIA, SCOPE_UDP] {
        assert_eq!(hidden_verdict(&p(ACTION_DROP, scope, 0)), Verdict::Drop);
        // A partial policy cannot pick a flow it cannot see: all of it drops.
        assert_eq!(hidden_verdict(&p(ACTION_FLOWS, scope, 0)), Verdict::Drop);
        assert_eq!(hidden_verdict(&p(ACTION_LOSS, scope, 1)), Verdict::Drop);
        assert_eq!(
            hidden_verdict(&p(ACTION_MONITOR, scope, 0)),
            Verdict::Monitor
        );
        assert_eq!(hidden_verdict(&p(ACTION_OFF, scope, 0)), Verdict::Pass);
    }
    assert_eq!(
        hidden_verdict(&p(77, SCOPE_UDP, 0)),
        Verdict::Pass,
        "unknown action"
    );
}

// --- subscribers ----------------------------------------------------------------------

#[test]
fn subscriber_keys_keep_the_subscriber_prefix() {
    use crate::decide::subscriber_key;
    let v4 = v4_mapped([100, 64, 7, 9]);
    assert_eq!(
        subscriber_key(&v4, 32, 64),
        v4,
        "an IPv4 subscriber is one address"
    );
    assert_eq!(subscriber_key(&v4, 24, 64), v4_mapped([100, 64, 7, 0]));
    assert_eq!(subscriber_key(&v4, 20, 64), v4_mapped([100, 64, 0, 0]));
    assert_eq!(subscriber_key(&v4, 0, 64), v4_mapped([0, 0, 0, 0]));
    assert_eq!(subscriber_key(&v4, 99, 64), v4, "longer than /32: /32");
    let a: [u8; 16] = [
        0x20, 0x01, 0x0d, 0xb8, 1, 2, 3, 4, 0xa5, 0xa5, 0xa5, 0xa5, 0xa5, 0xa5, 0xa5, 0xa5,
    ];
    let mut slash64 = a;
    slash64[8..].fill(0);
    assert_eq!(subscriber_key(&a, 32, 64), slash64);
    let mut slash56 = a;
    slash56[7..].fill(0);
    assert_eq!(subscriber_key(&a, 32, 56), slash56);
    let mut slash60 = slash64;
    slash60[7] = 0;
    assert_eq!(
        subscriber_key(&a, 32, 60),
        slash60,
        "4 is 0000 0100: /60 clears it"
    );
    let mut slash61 = slash64;
    slash61[7] = 4;
    assert_eq!(subscriber_key(&a, 32, 62), slash61, "/62 keeps bit 61");
    assert_eq!(subscriber_key(&a, 32, 128), a);
    assert_eq!(subscriber_key(&a, 32, 0), [0; 16]);
    // Two addresses of one /64 are one subscriber; of two /64s, two.
    let mut b = a;
    b[15] ^= 0xff;
    assert_eq!(subscriber_key(&a, 32, 64), subscriber_key(&b, 32, 64));
    b[7] ^= 1;
    assert_ne!(subscriber_key(&a, 32, 64), subscriber_key(&b, 32, 64));
}

/// Across many subscribers the stopped share is P% within sampling error
/// (three standard deviations), for every P and several seeds, and one
/// subscriber's rank is the same for every address of its /64.
#[test]
fn the_stopped_share_of_subscribers_is_p_percent() {
    use crate::decide::{fate_of, subscriber_key, subscriber_rank};
    let n = 20_000u32;
    // Half IPv4 addresses, half IPv6 /64s (an address inside each).
    let subscribers: Vec<[u8; 16]> = (0..n)
        .map(|i| {
            let b = i.to_be_bytes();
            let a = if i % 2 == 0 {
                v4_mapped([100, 64 | b[1], b[2], b[3]])
            } else {
                let mut a = [
                    0x20, 0x01, 0x0d, 0xb8, b[0], b[1], b[2], b[3], 0, 0, 0, 0, 0, 0, 0, 0,
                ];
                a[8..12].copy_from_slice(&b);
                a
            };
            subscriber_key(&a, 32, 64)
        })
        .collect();
    for seed in [1u64, 0x5eed, epoch_seed(9, 3_600_000_000_000, 3600)] {
        let ranks: Vec<u8> = subscribers
            .iter()
            .map(|k| subscriber_rank(k, seed))
            .collect();
        assert!(ranks.iter().all(|&r| r < 100));
        for p in (10u8..=90).step_by(10) {
            let stopped = ranks
                .iter()
                .filter(|&&r| fate_of(r, p) == FATE_STOPPED)
                .count() as f64;
            let want = f64::from(n) * f64::from(p) / 100.0;
            let sd = (want * (1.0 - f64::from(p) / 100.0)).sqrt();
            assert!(
                (stopped - want).abs() <= 3.0 * sd,
                "seed {seed:#x} P {p}: {stopped} of {n} stopped, expected {want} ± {}",
                3.0 * sd
            );
        }
        assert!(ranks.iter().all(|&r| fate_of(r, 0) == FATE_SPARED));
        assert!(ranks.iter().all(|&r| fate_of(r, 100) == FATE_STOPPED));
    }
}

#[test]
fn flow_fate_follows_the_subscriber_end() {
    use crate::decide::{fate_of, flow_rank, rank_holds, subscriber_ends};
    let flow_fate = |s, d, f, p| fate_of(flow_rank(s, d, f), p);
    // One subscriber end: its rank, whichever side it is on.
    assert_eq!(flow_fate(Some(10), None, 90, 50), FATE_STOPPED);
    assert_eq!(flow_fate(None, Some(10), 90, 50), FATE_STOPPED);
    assert_eq!(flow_fate(Some(60), None, 10, 50), FATE_SPARED);
    // Two subscribers: stopped when either is.
    assert_eq!(flow_fate(Some(60), Some(10), 90, 50), FATE_STOPPED);
    assert_eq!(flow_fate(Some(10), Some(60), 90, 50), FATE_STOPPED);
    assert_eq!(flow_fate(Some(60), Some(70), 10, 50), FATE_SPARED);
    // None: the fallback caller's rank.
    assert_eq!(flow_fate(None, None, 10, 50), FATE_STOPPED);
    assert_eq!(flow_fate(None, None, 90, 50), FATE_SPARED);
    // By interface: the inside interface's packets come from subscribers.
    assert_eq!(subscriber_ends(Some(true), false, true), (true, false));
    assert_eq!(subscriber_ends(Some(false), true, false), (false, true));
    assert_eq!(subscriber_ends(None, true, false), (true, false));
    assert_eq!(subscriber_ends(None, false, true), (false, true));
    assert_eq!(subscriber_ends(None, true, true), (true, true));
    // A rank holds while its subscriber's calls carry packets.
    let idle = crate::consts::SUB_IDLE_TICKS;
    assert!(rank_holds(100, 100 + idle));
    assert!(!rank_holds(100, 101 + idle));
    assert!(
        rank_holds(u32::MAX - 5, 10),
        "across the tick counter's wrap"
    );
}
