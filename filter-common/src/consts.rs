//! Map names, sizes and numbering shared by both sides.

/// Category ids are one byte: 0 means "no category", 255 is the allowlist.
pub const CAT_NONE: u8 = 0;
/// The allowlist: an address inside any allow range is never touched.
pub const CAT_ALLOW: u8 = 255;
/// Built-in categories: these exist even when no list file names them, so
/// their signatures work on their own.
pub const CAT_WHATSAPP: u8 = 1;
/// See [`CAT_WHATSAPP`].
pub const CAT_TELEGRAM: u8 = 2;
/// First id handed to a category named only by a list file.
pub const CAT_FIRST_USER: u8 = 3;
/// Largest id a blocking category can have (254 usable: 1..=254).
pub const CAT_LAST: u8 = 254;
/// Slots in per-category maps (ids 0..=255).
pub const CATEGORY_SLOTS: u32 = 256;

/// Number of table generations (double buffering).
pub const GENERATIONS: u32 = 2;

/// Prefix tables (see `trie`): the root blocks, `ROOT_BLOCKS * ROOT_LEN`
/// entries (1 MiB), fixed, two entries per map element (array elements are
/// 8-byte aligned; mapped into userspace the entries are one flat array);
/// the node pools are sized per generation.
pub const ROOT_ENTRIES: u32 = crate::trie::ROOT_BLOCKS * crate::trie::ROOT_LEN;
/// Prefixes (both families, allowlist included) a generation may hold: a
/// stated limit, checked before anything is installed.
pub const MAX_PREFIXES: usize = 4_000_000;
/// Node-pool units (64 bytes each) a generation may use: 2 GiB.
pub const MAX_POOL_UNITS: u32 = 1 << 25;

/// Flow-table buckets (two slots each): 2^18 flows, 16 MiB.
pub const FLOW_BUCKETS: u32 = 1 << 17;
/// Flow-table slots (`FLOW_KEYS` entries).
pub const FLOW_SLOTS: u32 = 2 * FLOW_BUCKETS;
/// A slot whose flow saw no packet for this many ticks (about 129 s) is
/// free: a new flow takes it without evicting anything.
pub const FLOW_IDLE_TICKS: u32 = 120;
/// Packets after which a flow counts as established: a new flow never
/// evicts an established call flow while the bucket has another choice.
pub const FLOW_ESTABLISHED_PACKETS: u32 = 4;
/// Node-pool units up to which the tables count as small (1 MiB, with the
/// roots: about what a CPU core's L2 cache holds): see `STATE_STATELESS`.
pub const STATELESS_MAX_UNITS: usize = 1 << 14;
/// Words of one half of `FLOW_BITS`: 2^20 bits, 128 KiB.
pub const FLOW_BITS_WORDS: u32 = 1 << 14;
/// Userspace clears the older half of `FLOW_BITS` and switches
/// `State::flow_bits_half` this often: longer than a slot's idle time, so a
/// flow whose slot is live always has its bit in one half.
pub const FLOW_BITS_ROTATE_NS: u64 = 150 * 1_000_000_000;
/// Fragmented datagrams remembered (`FragSlot`s, direct-mapped by a keyed
/// hash; 1 MiB).
pub const FRAG_CAPACITY: u32 = 1 << 13;
/// A datagram's fragment state older than this many ticks is forgotten
/// (reassembly gives up after 30 s, `ipfrag_time`).
pub const FRAG_IDLE_TICKS: u32 = 30;

/// Call endpoints remembered for peer-to-peer inheritance (LRU hash).
pub const ENDPOINT_CAPACITY: u32 = 1 << 16;
/// An endpoint teaches for this long after it was last seen in a call.
pub const ENDPOINT_TTL_NS: u64 = 300 * 1_000_000_000;
/// A live call refreshes its endpoints at most this often (map writes
/// cost), in flow-table ticks (about 10.7 s).
pub const ENDPOINT_REFRESH_TICKS: u16 = 10;
/// An endpoint entry younger than this is not rewritten by a refresh.
pub const ENDPOINT_REFRESH_NS: u64 = 10 * 1_000_000_000;
/// Endpoints on ports below this are never learned: a spoofed call packet
/// must not make a DNS, NTP or other service port inherit a category.
pub const LEARN_MIN_PORT: u16 = 1024;
/// Words of one half of the "may be known" bitmap (1 bit per hashed
/// endpoint or Telegram tag): a plain array read that lets packets of
/// unlisted, unrecognised flows skip the hash-map look-ups. 2^14 words =
/// 2^20 bits = 128 KiB a half; `BITS` has two halves.
pub const ENDPOINT_BITS_WORDS: u32 = 1 << 14;
/// Words of `BITS`: the half learning sets now and the previous one.
pub const BITS_WORDS: u32 = 2 * ENDPOINT_BITS_WORDS;
/// Userspace clears the older half and switches `State::bits_half` this
/// often, so bits of forgotten endpoints and tags go away: a bit lives 600
/// to 1200 s, longer than any TTL it stands for.
pub const BITS_ROTATE_NS: u64 = 600 * 1_000_000_000;
/// Telegram peer tags remembered (LRU hash).
pub const TAG_CAPACITY: u32 = 1 << 13;
/// A learned tag is trusted for this long.
pub const TAG_TTL_NS: u64 = 600 * 1_000_000_000;

/// Subscriber prefixes a generation may hold (`SUBSCRIBERS`, an LPM trie
/// keyed by generation and address; both generations share the map).
pub const SUBSCRIBER_CAPACITY: u32 = 1 << 15;
/// Subscribers whose `flows=P%` rank is remembered (`SUB_FATE`, LRU hash).
pub const SUB_FATE_CAPACITY: u32 = 1 << 17;
/// A subscriber's rank holds while its calls carry packets, and is drawn
/// again after this many ticks (about 5 minutes) without any.
pub const SUB_IDLE_TICKS: u32 = 280;
/// Default prefix length of an IPv4 subscriber (one address).
pub const SUB_V4_LEN: u8 = 32;
/// Default prefix length of an IPv6 subscriber (RFC 6177: a /64 per site).
pub const SUB_V6_LEN: u8 = 64;
/// `IF_SLOT` value bit: the interface faces subscribers (`--inside`).
pub const IF_INSIDE: u32 = 1 << 31;

/// Label slots in the per-label counters.
pub const LABEL_SLOTS: u32 = 32;

/// Map names (BPF object names are at most 15 characters).
pub const MAP_ROOT: &str = "ROOT";
/// Array of maps: the node pool of each generation.
pub const MAP_TRIE: &str = "TRIE";
/// `[Policy; GENERATIONS * CATEGORY_SLOTS]`.
pub const MAP_POLICY: &str = "POLICY";
/// `[State; 1]`.
pub const MAP_STATE: &str = "STATE";
/// Flow table (`FlowBucket`s).
pub const MAP_FLOWS: &str = "FLOWS";
/// Keys of the flow table's slots (`FlowKey`s), for userspace.
pub const MAP_FLOW_KEYS: &str = "FLOW_KEYS";
/// Fragments of dropped flows.
pub const MAP_FRAGS: &str = "FRAGS";
/// Call endpoints (peer-to-peer inheritance).
pub const MAP_ENDPOINTS: &str = "ENDPOINTS";
/// "May be known" bitmap of endpoints and tags, two halves.
pub const MAP_BITS: &str = "BITS";
/// "Has a category" bitmap of flows, two halves (see `STATE_STATELESS`).
pub const MAP_FLOW_BITS: &str = "FLOW_BITS";
/// Learned Telegram peer tags.
pub const MAP_TAGS: &str = "TG_TAGS";
/// Per-CPU packet and byte counters (`Counter`): every packet adds to
/// exactly one slot, an outcome `O_*` or a verdict slot of its category
/// ([`verdict_slot`]); userspace sums them into the totals.
pub const MAP_COUNTERS: &str = "COUNTERS";
/// Per-CPU counts of rarer events (`EV_*`).
pub const MAP_EVENTS: &str = "EVENTS";
/// Interface slot per ifindex (`Array<u32>`, [`IF_INDEX_LIMIT`] entries),
/// written by the daemon when it attaches; 0 = not registered.
pub const MAP_IF_SLOT: &str = "IF_SLOT";
/// Per-CPU per-label counters.
pub const MAP_LABEL_STATS: &str = "LABEL_STATS";
/// Interface slots for per-interface counters: slot 0 counts every
/// interface without a slot of its own (ifindex beyond [`IF_INDEX_LIMIT`],
/// more interfaces than slots, or a test run), slots 1.. are registered.
pub const IF_SLOTS: u32 = 16;
/// Entries of `IF_SLOT`: interfaces with a larger ifindex count in slot 0.
pub const IF_INDEX_LIMIT: u32 = 4096;
/// Subscriber prefixes (`LpmTrie<SubscriberKey, u32>`).
pub const MAP_SUBSCRIBERS: &str = "SUBSCRIBERS";
/// Remembered subscriber ranks (`LruHashMap<[u8; 16], SubFate>`).
pub const MAP_SUB_FATE: &str = "SUB_FATE";
/// Per-CPU record of the last packet's decision (written only in replay).
pub const MAP_PKT_TRACE: &str = "PKT_TRACE";

/// Name of the XDP program in the object.
pub const PROGRAM_NAME: &str = "flowfilter";
/// The benchmark's bound of a filter with exact per-flow state (a second
/// program of the object, sharing its maps; see `filter-ebpf`).
pub const BOUND_FLOW_PROGRAM: &str = "xdp_bound_flow";
/// The benchmark's bound of a filter that decides by address alone.
pub const BOUND_LOOKUP_PROGRAM: &str = "xdp_bound_lookup";
/// `.rodata` global: when non-zero the program writes `PKT_TRACE` per packet.
pub const GLOBAL_TRACE: &str = "TRACE";

/// Outcome slots of `COUNTERS` (packets that get no category verdict).
/// Not IPv4/IPv6.
pub const O_NON_IP: u32 = 0;
/// Could not be parsed (passed).
pub const O_MALFORMED: u32 = 1;
/// TCP (passed).
pub const O_TCP: u32 = 2;
/// IP of another protocol (passed).
pub const O_OTHER_IP: u32 = 3;
/// UDP of no category (passed).
pub const O_UDP_PASS: u32 = 4;
/// UDP passed because an address is on the allowlist.
pub const O_UDP_ALLOWED: u32 = 5;
/// A later fragment whose train is not being dropped (passed).
pub const O_FRAG_PASS: u32 = 6;
/// A later fragment of a dropped train (dropped).
pub const O_FRAG_DROP: u32 = 7;
/// IPv6 with a hidden transport and no category (passed).
pub const O_HIDDEN_PASS: u32 = 8;
/// IPv6 with a hidden transport, allowlisted (passed).
pub const O_HIDDEN_ALLOWED: u32 = 9;
/// Outcome slots reserved in front of the verdict slots.
pub const OUTCOME_SLOTS: u32 = 16;
/// Verdicts of a category's verdict slots.
pub const V_DROP: u32 = 0;
/// Passed, but `drop` would have dropped it.
pub const V_MONITOR: u32 = 1;
/// Passed.
pub const V_PASS: u32 = 2;
/// Verdicts per (interface slot, category).
pub const VERDICTS: u32 = 3;
/// Slots of `COUNTERS`.
pub const COUNTER_SLOTS: u32 = OUTCOME_SLOTS + IF_SLOTS * CATEGORY_SLOTS * VERDICTS;

/// The `COUNTERS` slot of a category verdict (UDP, or IPv6 with a hidden
/// transport) on interface slot `if_slot`.
#[inline(always)]
pub const fn verdict_slot(if_slot: u32, category: u8, verdict: u32) -> u32 {
    OUTCOME_SLOTS
        + ((if_slot & (IF_SLOTS - 1)) * CATEGORY_SLOTS + category as u32) * VERDICTS
        + verdict
}

/// `EVENTS` slots. IP fragments (first and later).
pub const EV_FRAGMENTS: u32 = 0;
/// IPv6 packets whose transport is hidden behind an extension chain the
/// parser does not follow; decided by address alone.
pub const EV_V6_HIDDEN: u32 = 1;
/// Flows that got a category (new, or a cached flow that gained one).
pub const EV_FLOWS_CREATED: u32 = 2;
/// Live flows with a category whose slot a new flow took.
pub const EV_FLOWS_EVICTED: u32 = 3;
/// First fragments too short to classify, to or from a listed range under a
/// restricting policy: decided by address (the RFC 1858 rule).
pub const EV_FRAG_TINY: u32 = 4;
/// Fragments that rewrite bytes a listed or call datagram was classified on.
pub const EV_FRAG_OVERLAP: u32 = 5;
/// Datagrams classified on a later fragment (the first held too little).
pub const EV_FRAG_LATE: u32 = 6;
/// Later fragments that came before their first fragment.
pub const EV_FRAG_EARLY: u32 = 7;
/// TCP packets of a call that fell back to TCP (counted, dropped per policy).
pub const EV_TCP_FALLBACK: u32 = 8;
/// Slots of `EVENTS`.
pub const EVENT_SLOTS: u32 = 16;

/// Global counter indices of the totals userspace reports (summed from
/// `COUNTERS` and `EVENTS`). All packets.
pub const G_PACKETS: u32 = 0;
/// Frames that are not IPv4/IPv6.
pub const G_NON_IP: u32 = 1;
/// TCP packets (always passed).
pub const G_TCP: u32 = 2;
/// UDP packets.
pub const G_UDP: u32 = 3;
/// IP packets of other protocols (ICMP, ...).
pub const G_OTHER_IP: u32 = 4;
/// IP fragments (first and later).
pub const G_FRAGMENTS: u32 = 5;
/// Later fragments dropped because their train belongs to a dropped flow.
pub const G_FRAG_DROPPED: u32 = 6;
/// Frames that could not be parsed (passed).
pub const G_MALFORMED: u32 = 7;
/// Live flows with a category whose slot a new flow took (evictions).
pub const G_FLOWS_EVICTED: u32 = 8;
/// Packets passed because an address is on the allowlist.
pub const G_ALLOWED: u32 = 9;
/// Bytes of all packets.
pub const G_BYTES: u32 = 10;
/// Packets dropped in total.
pub const G_DROPPED: u32 = 11;
/// Flows that got a category.
pub const G_FLOWS_CREATED: u32 = 12;
/// IPv6 packets whose transport is hidden behind an extension chain the
/// parser does not follow (`Parsed::Hidden`); decided by address alone.
pub const G_V6_HIDDEN: u32 = 13;
/// See [`EV_FRAG_TINY`].
pub const G_FRAG_TINY: u32 = 14;
/// See [`EV_FRAG_OVERLAP`].
pub const G_FRAG_OVERLAP: u32 = 15;
/// See [`EV_FRAG_LATE`].
pub const G_FRAG_LATE: u32 = 16;
/// See [`EV_FRAG_EARLY`].
pub const G_FRAG_EARLY: u32 = 17;
/// See [`EV_TCP_FALLBACK`].
pub const G_TCP_FALLBACK: u32 = 18;
/// Entries of the totals vector.
pub const GLOBAL_SLOTS: u32 = 19;

/// Names of the global counters, by index, for userspace output.
pub const GLOBAL_NAMES: [&str; GLOBAL_SLOTS as usize] = [
    "packets",
    "non_ip",
    "tcp",
    "udp",
    "other_ip",
    "fragments",
    "fragments_dropped",
    "malformed",
    "flows_evicted",
    "allowed",
    "bytes",
    "dropped",
    "flows_created",
    "v6_transport_hidden",
    "fragments_tiny_first",
    "fragments_overlap",
    "fragments_payload_later",
    "fragments_before_first",
    "tcp_fallback",
];

/// XDP verdicts (the kernel's `XDP_*` numbers).
pub const XDP_ABORTED: u32 = 0;
/// See [`XDP_ABORTED`].
pub const XDP_DROP: u32 = 1;
/// See [`XDP_ABORTED`].
pub const XDP_PASS: u32 = 2;

// The program masks slots with `IF_SLOTS - 1`.
const _: () = assert!(IF_SLOTS.is_power_of_two());
