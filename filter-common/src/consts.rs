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

/// IPv4 DIR-24-8 table: one row per /16, each row holds 256 entries (one per
/// /24). `V4_ROWS` rows per generation.
pub const V4_ROWS: u32 = 1 << 16;
/// Entries in one row of the /24 table.
pub const V4_ROW_LEN: usize = 256;
/// Default number of /24 blocks that can hold prefixes longer than /24, per
/// generation (each costs one 256-byte chunk). Userspace may raise it at load.
pub const V4_CHUNKS_PER_GEN: u32 = 1 << 16;

/// IPv6 prefixes per generation (kernel LPM trie, one per generation).
pub const V6_MAX_PREFIXES: u32 = 1 << 16;

/// Tracked flows (LRU hash).
pub const FLOW_CAPACITY: u32 = 1 << 18;
/// Fragment trains of dropped flows remembered (LRU hash).
pub const FRAG_CAPACITY: u32 = 1 << 13;

/// Call endpoints remembered for peer-to-peer inheritance (LRU hash).
pub const ENDPOINT_CAPACITY: u32 = 1 << 16;
/// An endpoint teaches for this long after it was last seen in a call.
pub const ENDPOINT_TTL_NS: u64 = 300 * 1_000_000_000;
/// A live call refreshes its endpoints at most this often (map writes cost).
pub const ENDPOINT_REFRESH_NS: u64 = 10 * 1_000_000_000;
/// Endpoints on ports below this are never learned: a spoofed call packet
/// must not make a DNS, NTP or other service port inherit a category.
pub const LEARN_MIN_PORT: u16 = 1024;
/// Words of the endpoint "may be known" bitmap (1 bit per hashed endpoint):
/// a plain array read that lets packets of unlisted, unrecognised flows skip
/// the hash-map look-ups. 2^14 words = 2^20 bits = 128 KiB.
pub const ENDPOINT_BITS_WORDS: u32 = 1 << 14;
/// Telegram peer tags remembered (LRU hash).
pub const TAG_CAPACITY: u32 = 1 << 13;
/// A learned tag is trusted for this long.
pub const TAG_TTL_NS: u64 = 600 * 1_000_000_000;

/// Label slots in the per-label counters.
pub const LABEL_SLOTS: u32 = 32;

/// Map names (BPF object names are at most 15 characters).
pub const MAP_V4_TBL24: &str = "V4_TBL24";
/// See [`MAP_V4_TBL24`].
pub const MAP_V4_TBL8: &str = "V4_TBL8";
/// Per-/16 summary in front of `V4_TBL24` (see `v4table`).
pub const MAP_V4_TBL16: &str = "V4_TBL16";
/// IPv6 LPM trie, generation 0.
pub const MAP_V6_LPM0: &str = "V6_LPM0";
/// IPv6 LPM trie, generation 1.
pub const MAP_V6_LPM1: &str = "V6_LPM1";
/// `[Policy; GENERATIONS * CATEGORY_SLOTS]`.
pub const MAP_POLICY: &str = "POLICY";
/// `[State; 1]`.
pub const MAP_STATE: &str = "STATE";
/// Flow table.
pub const MAP_FLOWS: &str = "FLOWS";
/// Fragments of dropped flows.
pub const MAP_FRAGS: &str = "FRAGS";
/// Call endpoints (peer-to-peer inheritance).
pub const MAP_ENDPOINTS: &str = "ENDPOINTS";
/// Endpoint "may be known" bitmap.
pub const MAP_ENDPOINT_BITS: &str = "ENDPOINT_BITS";
/// Learned Telegram peer tags.
pub const MAP_TAGS: &str = "TG_TAGS";
/// Per-CPU counters per interface slot and category, indexed by
/// `slot * CATEGORY_SLOTS + category` (userspace sums slots for category totals).
pub const MAP_IF_CAT_STATS: &str = "IF_CAT_STATS";
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
/// Per-CPU global counters, indexed by `G_*`.
pub const MAP_GLOBAL_STATS: &str = "GLOBAL_STATS";
/// Per-CPU record of the last packet's decision (written only in replay).
pub const MAP_PKT_TRACE: &str = "PKT_TRACE";

/// Name of the XDP program in the object.
pub const PROGRAM_NAME: &str = "flowfilter";
/// `.rodata` global: when non-zero the program writes `PKT_TRACE` per packet.
pub const GLOBAL_TRACE: &str = "TRACE";

/// Global counter indices (`GLOBAL_STATS`).
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
/// Flow-table inserts that failed.
pub const G_FLOW_INSERT_FAIL: u32 = 8;
/// Packets passed because an address is on the allowlist.
pub const G_ALLOWED: u32 = 9;
/// Bytes of all packets.
pub const G_BYTES: u32 = 10;
/// Packets dropped in total.
pub const G_DROPPED: u32 = 11;
/// Flows created in the flow table (each new 5-tuple that got a category).
/// Created minus tracked is how many the LRU has evicted (or expired).
pub const G_FLOWS_CREATED: u32 = 12;
/// IPv6 packets whose transport is hidden behind an extension chain the
/// parser does not follow (`Parsed::Hidden`); decided by address alone.
pub const G_V6_HIDDEN: u32 = 13;
/// Slots in `GLOBAL_STATS`.
pub const GLOBAL_SLOTS: u32 = 16;

/// Names of the global counters, by index, for userspace output.
pub const GLOBAL_NAMES: [&str; 14] = [
    "packets",
    "non_ip",
    "tcp",
    "udp",
    "other_ip",
    "fragments",
    "fragments_dropped",
    "malformed",
    "flow_insert_failures",
    "allowed",
    "bytes",
    "dropped",
    "flows_created",
    "v6_transport_hidden",
];

/// XDP verdicts (the kernel's `XDP_*` numbers).
pub const XDP_ABORTED: u32 = 0;
/// See [`XDP_ABORTED`].
pub const XDP_DROP: u32 = 1;
/// See [`XDP_ABORTED`].
pub const XDP_PASS: u32 = 2;

// The program masks slots with `IF_SLOTS - 1`.
const _: () = assert!(IF_SLOTS.is_power_of_two());
