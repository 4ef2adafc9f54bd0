//! Traffic generators for the live measurement. Both run in one thread,
//! pinned to one CPU, inside the sender namespace, and send a prebuilt pool
//! of frames round and round out of the sender veth:
//!
//! - `xdp-live` (default): BPF_PROG_TEST_RUN with `BPF_F_TEST_XDP_LIVE_FRAMES`
//!   on a tiny XDP program (built here from raw instructions) that copies the
//!   next frame of the pool (an array map; frames stored at the pool's
//!   longest length with their own length) over the packet, cuts the tail to
//!   the frame's length (`bpf_xdp_adjust_tail`), for a flood writes a running
//!   sequence number over the UDP ports, and returns XDP_TX; the kernel turns
//!   that into a redirect out of the sender veth, so frames reach the
//!   receiver as XDP frames at several Mpps (the way xdp-trafficgen works).
//! - `af-packet`: an AF_PACKET socket and sendmmsg (skbs; slower, about
//!   1 Mpps; the receiver idles between wake-ups).

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use filter_user::dataplane::mapio::BatchAttr;

use crate::sys;

/// How frames are sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GenKind {
    /// XDP live frames (BPF_PROG_TEST_RUN), redirected out of the sender veth.
    XdpLive,
    /// AF_PACKET socket, sendmmsg.
    AfPacket,
}

/// What a generator sends: `frames[..]` once, then `frames[loop_start..]`
/// round and round (so a pool can open each flow with a frame that is not
/// repeated, e.g. the STUN request that starts a call).
#[derive(Clone, Debug, Default)]
pub struct Pool {
    pub frames: Vec<Vec<u8>>,
    pub loop_start: usize,
    /// Write a running 32-bit sequence number over the UDP ports (bytes
    /// 34..38 of an IPv4/UDP frame without options) of every frame sent, so
    /// no 5-tuple repeats within 2^32 frames (the frames carry UDP checksum 0).
    pub seq_ports: bool,
}

/// Offset of the UDP ports in an IPv4 frame without options.
pub const V4_PORTS_AT: usize = 14 + 20;
/// Where the sequence-numbered ports start: written in native (little-endian)
/// order, the low half of the number is the source port (every value in
/// turn) and the high half the destination port, which starts at 3478 and
/// moves on every 2^16 frames.
const SEQ_BASE: u32 = u32::from_le_bytes([0, 0, 0x0d, 0x96]);

impl Pool {
    /// Longest frame.
    pub fn max_len(&self) -> usize {
        self.frames.iter().map(Vec::len).max().unwrap_or(0)
    }

    /// Mean length of the frames sent round and round (what the receiver
    /// sees once the first pass is over).
    pub fn loop_mean_len(&self) -> f64 {
        let l = &self.frames[self.loop_start.min(self.frames.len())..];
        l.iter().map(Vec::len).sum::<usize>() as f64 / l.len().max(1) as f64
    }

    /// The frame map's values for `xdp-live`, one after the other: the
    /// frame's length (u32, native order), then the frame, zero-padded to
    /// the longest one. Returns the longest length and the values.
    fn map_values(&self) -> (usize, Vec<u8>) {
        let max = self.max_len();
        let mut values = Vec::with_capacity(self.frames.len() * (4 + max));
        for f in &self.frames {
            values.extend_from_slice(&(f.len() as u32).to_ne_bytes());
            values.extend_from_slice(f);
            values.resize(values.len() + max - f.len(), 0);
        }
        (max, values)
    }

    fn check(&self) -> Result<()> {
        if self.frames.is_empty() || self.loop_start >= self.frames.len() {
            bail!(
                "bad frame pool ({} frames, loop from {})",
                self.frames.len(),
                self.loop_start
            );
        }
        if self.seq_ports
            && let Some(f) = self
                .frames
                .iter()
                .find(|f| f.len() < V4_PORTS_AT + 8 || f[12..14] != [0x08, 0x00] || f[14] != 0x45)
        {
            bail!(
                "sequence-numbered ports need IPv4/UDP frames without options ({} bytes found)",
                f.len()
            );
        }
        Ok(())
    }
}

/// The sending side: one thread.
pub struct Generator {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    handle: JoinHandle<Result<u64>>,
}

/// Where and how to send.
#[derive(Clone, Debug)]
pub struct GenConfig {
    pub kind: GenKind,
    pub ns: String,
    pub ifname: String,
    pub cpu: usize,
    /// Frames per sendmmsg call, or per XDP live-frames batch.
    pub batch: usize,
}

impl Generator {
    /// Start sending `pool`; returns once the first frames are on their way.
    pub fn start(pool: Pool, cfg: &GenConfig) -> Result<Self> {
        pool.check()?;
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let ready = Arc::new(AtomicBool::new(false));
        let thread_cfg = cfg.clone();
        let (stop2, sent2, ready2) = (stop.clone(), sent.clone(), ready.clone());
        let handle = std::thread::spawn(move || -> Result<u64> {
            let cfg = thread_cfg;
            sys::pin(0, cfg.cpu)?;
            sys::enter_netns(&cfg.ns)?;
            match cfg.kind {
                GenKind::XdpLive => xdp_live(&pool, &cfg, &stop2, &sent2, &ready2),
                GenKind::AfPacket => af_packet(pool, &cfg, &stop2, &sent2, &ready2),
            }
        });
        let t = Instant::now();
        while !ready.load(Ordering::Acquire) {
            if handle.is_finished() {
                return match handle.join() {
                    Ok(Err(e)) => Err(e.context("traffic generator")),
                    _ => bail!("traffic generator stopped before sending"),
                };
            }
            if t.elapsed() > Duration::from_secs(20) {
                stop.store(true, Ordering::Release);
                bail!("traffic generator not ready after 20 s");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(Generator { stop, sent, handle })
    }

    /// Frames sent so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Acquire)
    }

    /// Stop; returns the frames sent.
    pub fn finish(self) -> Result<u64> {
        self.stop.store(true, Ordering::Release);
        match self.handle.join() {
            Ok(r) => r,
            Err(_) => bail!("traffic generator panicked"),
        }
    }
}

fn ifindex(name: &str, ns: &str) -> Result<u32> {
    let c = CString::new(name).context("interface name")?;
    // SAFETY: valid C string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        bail!("no interface {name} in namespace {ns}");
    }
    Ok(i)
}

/// An AF_PACKET socket bound to `cfg.ifname`, past the qdisc, with a large
/// send buffer.
fn packet_socket(cfg: &GenConfig) -> Result<File> {
    // SAFETY: plain socket(2); the fd is wrapped at once.
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    if raw < 0 {
        bail!("AF_PACKET socket: {}", std::io::Error::last_os_error());
    }
    // SAFETY: raw is a fresh fd we own.
    let sock = unsafe { File::from_raw_fd(raw) };
    let fd = sock.as_raw_fd();
    // Straight to the driver: no qdisc in the way.
    for (level, name, value) in [
        (libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, 1),
        (libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, 16 << 20),
    ] {
        let value: libc::c_int = value;
        // SAFETY: setsockopt with a pointer to a c_int of the given size.
        unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (&raw const value).cast(),
                size_of::<libc::c_int>() as u32,
            );
        }
    }
    // SAFETY: sockaddr_ll is plain data.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_ifindex = ifindex(&cfg.ifname, &cfg.ns)? as i32;
    // SAFETY: bind with a sockaddr_ll of the right size.
    let r = unsafe {
        libc::bind(
            fd,
            (&raw const sll).cast(),
            size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if r != 0 {
        bail!(
            "bind AF_PACKET to {}: {}",
            cfg.ifname,
            std::io::Error::last_os_error()
        );
    }
    Ok(sock)
}

/// Send `pool` out of `cfg.ifname` from an AF_PACKET socket, `cfg.batch`
/// frames per sendmmsg call, until `stop`: the count in `sent`, `ready` set
/// just before the first call. Returns the frames sent.
fn af_packet(
    mut pool: Pool,
    cfg: &GenConfig,
    stop: &AtomicBool,
    sent: &AtomicU64,
    ready: &AtomicBool,
) -> Result<u64> {
    let sock = packet_socket(cfg)?;
    let fd = sock.as_raw_fd();
    let mut iovs: Vec<libc::iovec> = pool
        .frames
        .iter_mut()
        .map(|f| libc::iovec {
            iov_base: f.as_mut_ptr().cast::<libc::c_void>(),
            iov_len: f.len(),
        })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .map(|iov| {
            // SAFETY: mmsghdr is plain data; the pointers stay valid while
            // `pool` and `iovs` live (this function).
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect();
    ready.store(true, Ordering::Release);
    let (mut pos, mut total, mut seq) = (0usize, 0u64, SEQ_BASE);
    while !stop.load(Ordering::Relaxed) {
        let n = cfg.batch.max(1).min(msgs.len() - pos);
        if pool.seq_ports {
            for iov in &iovs[pos..pos + n] {
                // SAFETY: iov_base points into a frame of the pool (alive
                // for this function) at least V4_PORTS_AT + 8 bytes long
                // (Pool::check); only this thread touches it.
                unsafe {
                    let p = iov.iov_base.cast::<u8>().add(V4_PORTS_AT);
                    std::ptr::copy_nonoverlapping(seq.to_ne_bytes().as_ptr(), p, 4);
                }
                seq = seq.wrapping_add(1);
            }
        }
        // SAFETY: msgs[pos..pos + n] are valid mmsghdrs.
        let r = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr().add(pos), n as u32, 0) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                // The receiver's ring is full: try again.
                Some(libc::ENOBUFS | libc::EAGAIN | libc::EINTR) => continue,
                _ => bail!("sendmmsg on {}: {e}", cfg.ifname),
            }
        }
        let r = r as usize;
        total += r as u64;
        sent.store(total, Ordering::Release);
        pos += r;
        if pos == msgs.len() {
            pos = pool.loop_start;
        }
    }
    Ok(total)
}

// --- XDP live frames ---------------------------------------------------------

/// Largest batch the kernel accepts for live frames.
const MAX_LIVE_BATCH: usize = 256;
/// Frames per BPF_PROG_TEST_RUN call (a few ms of sending).
const LIVE_REPEAT: u32 = 1 << 15;

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_MAP_TYPE_PERCPU_ARRAY: u32 = 6;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 2;
const BPF_PSEUDO_MAP_FD: u8 = 1;
const FUNC_MAP_LOOKUP_ELEM: i32 = 1;
const FUNC_XDP_STORE_BYTES: i32 = 190;
const FUNC_XDP_ADJUST_TAIL: i32 = 65;
const XDP_DROP: i32 = 1;
const XDP_TX: i32 = 3;

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0x0f),
        off,
        imm,
    }
}

fn mov_reg(dst: u8, src: u8) -> Insn {
    insn(0xbf, dst, src, 0, 0)
}

fn mov_imm(dst: u8, imm: i32) -> Insn {
    insn(0xb7, dst, 0, 0, imm)
}

fn add_imm(dst: u8, imm: i32) -> Insn {
    insn(0x07, dst, 0, 0, imm)
}

fn ld_map_fd(dst: u8, fd: i32) -> [Insn; 2] {
    [insn(0x18, dst, BPF_PSEUDO_MAP_FD, 0, fd), Insn::default()]
}

fn call(helper: i32) -> Insn {
    insn(0x85, 0, 0, 0, helper)
}

/// The generator program. Per packet: index `i` and a sequence number from
/// a per-CPU array (`i` wraps from `frames` to `loop_start`); value `i` of
/// the frame map (length, frame padded to `max`) over the packet, the tail
/// cut to the frame's length (`bpf_xdp_adjust_tail(ctx, len - max)`), with
/// `seq_ports` the sequence number over the UDP ports; then XDP_TX.
fn generator_program(
    counter_fd: i32,
    frames_fd: i32,
    frames: u32,
    loop_start: u32,
    max: u32,
    seq_ports: bool,
) -> Vec<Insn> {
    // Jumps to the drop exit are written as `off = DROP` and patched below.
    const DROP: i16 = i16::MIN;
    let mut p = vec![
        mov_reg(6, 1),            // r6 = ctx
        insn(0x62, 10, 0, -4, 0), // *(u32 *)(r10 - 4) = 0
        mov_reg(2, 10),           // r2 = r10
        add_imm(2, -4),           // r2 -= 4
    ];
    p.extend(ld_map_fd(1, counter_fd));
    p.extend([
        call(FUNC_MAP_LOOKUP_ELEM),
        insn(0x15, 0, 0, DROP, 0),            // if r0 == 0 goto drop
        insn(0x61, 7, 0, 0, 0),               // r7 = *(u32 *)(r0 + 0)
        mov_reg(8, 7),                        // r8 = r7
        add_imm(8, 1),                        // r8 += 1
        insn(0xa5, 8, 0, 1, frames as i32),   // if r8 < frames goto +1
        mov_imm(8, loop_start as i32),        // r8 = loop_start
        insn(0x63, 0, 8, 0, 0),               // *(u32 *)(r0 + 0) = r8
        insn(0x61, 9, 0, 4, 0),               // r9 = *(u32 *)(r0 + 4)
        mov_reg(1, 9),                        // r1 = r9
        insn(0x04, 1, 0, 0, SEQ_BASE as i32), // w1 += SEQ_BASE
        insn(0x63, 10, 1, -12, 0),            // *(u32 *)(r10 - 12) = r1
        add_imm(9, 1),                        // r9 += 1
        insn(0x63, 0, 9, 4, 0),               // *(u32 *)(r0 + 4) = r9
        insn(0x63, 10, 7, -8, 0),             // *(u32 *)(r10 - 8) = r7
        mov_reg(2, 10),
        add_imm(2, -8),
    ]);
    p.extend(ld_map_fd(1, frames_fd));
    p.extend([
        call(FUNC_MAP_LOOKUP_ELEM),
        insn(0x15, 0, 0, DROP, 0), // if r0 == 0 goto drop
        insn(0x61, 8, 0, 0, 0),    // r8 = length
        mov_reg(3, 0),             // r3 = frame
        add_imm(3, 4),             // r3 += 4
        mov_reg(1, 6),             // r1 = ctx
        mov_imm(2, 0),             // r2 = offset 0
        mov_imm(4, max as i32),    // r4 = max
        call(FUNC_XDP_STORE_BYTES),
        mov_reg(1, 6),             // r1 = ctx
        mov_reg(2, 8),             // r2 = length
        add_imm(2, -(max as i32)), // r2 -= max
        call(FUNC_XDP_ADJUST_TAIL),
        insn(0x55, 0, 0, DROP, 0), // if r0 != 0 goto drop
    ]);
    if seq_ports {
        p.extend([
            mov_reg(1, 6),                  // r1 = ctx
            mov_imm(2, V4_PORTS_AT as i32), // r2 = offset of the ports
            mov_reg(3, 10),                 // r3 = r10
            add_imm(3, -12),                // r3 -= 12: the sequence number
            mov_imm(4, 4),                  // r4 = 4
            call(FUNC_XDP_STORE_BYTES),
        ]);
    }
    p.extend([mov_imm(0, XDP_TX), insn(0x95, 0, 0, 0, 0)]);
    let drop_at = p.len();
    p.extend([mov_imm(0, XDP_DROP), insn(0x95, 0, 0, 0, 0)]);
    for (i, ins) in p.iter_mut().enumerate().take(drop_at) {
        if ins.off == DROP {
            ins.off = (drop_at - i - 1) as i16;
        }
    }
    p
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<i64> {
    // SAFETY: attr points to a bpf_attr prefix of size_of::<T>() bytes.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_mut(attr).cast::<libc::c_void>(),
            size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

#[repr(C)]
#[derive(Default)]
struct MapCreate {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

#[repr(C)]
#[derive(Default)]
struct MapElem {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

/// `struct xdp_md` as BPF_PROG_TEST_RUN takes it.
#[repr(C)]
#[derive(Default)]
struct XdpMd {
    data: u32,
    data_end: u32,
    data_meta: u32,
    ingress_ifindex: u32,
    rx_queue_index: u32,
    egress_ifindex: u32,
}

/// Load `insns` as an XDP program named `name`; a refusal carries the
/// verifier's log.
fn load_xdp(insns: &[Insn], name: &str) -> Result<OwnedFd> {
    let license = c"GPL";
    let mut log = vec![0u8; 64 * 1024];
    let mut a = ProgLoad {
        prog_type: BPF_PROG_TYPE_XDP,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        prog_name: name16(name),
        ..ProgLoad::default()
    };
    match bpf(BPF_PROG_LOAD, &mut a) {
        // SAFETY: the kernel returned a new fd.
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) }),
        Err(e) => {
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            bail!("{e}\n{}", String::from_utf8_lossy(&log[..end]))
        }
    }
}

/// Whether this kernel runs XDP live frames (`BPF_F_TEST_XDP_LIVE_FRAMES`):
/// a two-instruction XDP_DROP program run a few times on the loopback
/// device of this namespace. `Err` carries what the kernel answered (some
/// kernels refuse live frames with EPERM even to root).
pub fn probe_live() -> Result<std::result::Result<(), String>> {
    let insns = [mov_imm(0, XDP_DROP), insn(0x95, 0, 0, 0, 0)];
    let prog = load_xdp(&insns, "ffgen_probe").context("loading the live-frames probe program")?;
    let frame = [0u8; 64];
    let mut ctx = XdpMd {
        data_end: frame.len() as u32,
        ingress_ifindex: ifindex("lo", "of the bench")?,
        ..XdpMd::default()
    };
    let mut t = TestRunAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: frame.len() as u32,
        data_in: frame.as_ptr() as u64,
        repeat: 8,
        ctx_size_in: size_of::<XdpMd>() as u32,
        ctx_in: std::ptr::from_mut(&mut ctx) as u64,
        flags: BPF_F_TEST_XDP_LIVE_FRAMES,
        ..TestRunAttr::default()
    };
    Ok(match bpf(BPF_PROG_TEST_RUN, &mut t) {
        Ok(_) => Ok(()),
        Err(e) => Err(format!(
            "BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES: {e}"
        )),
    })
}

fn name16(s: &str) -> [u8; 16] {
    let mut n = [0u8; 16];
    for (d, b) in n.iter_mut().zip(s.bytes().take(15)) {
        *d = b;
    }
    n
}

fn map_create(map_type: u32, value_size: u32, max_entries: u32, name: &str) -> Result<OwnedFd> {
    let mut a = MapCreate {
        map_type,
        key_size: 4,
        value_size,
        max_entries,
        map_name: name16(name),
        ..MapCreate::default()
    };
    let fd = bpf(BPF_MAP_CREATE, &mut a).with_context(|| format!("creating map {name}"))?;
    // SAFETY: the kernel returned a new fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Write `values` (one after the other, `size` bytes each) at keys 0.. of
/// an array map: in batches of BPF_MAP_UPDATE_BATCH, or one by one where the
/// kernel has no batch operations.
fn fill(map: &OwnedFd, values: &[u8], size: usize) -> Result<()> {
    let count = values.len() / size;
    let keys: Vec<u32> = (0..count as u32).collect();
    let mut done = 0;
    while done < count {
        let n = (count - done).min(1 << 16);
        let mut a = BatchAttr {
            keys: keys[done..].as_ptr() as u64,
            values: values[done * size..].as_ptr() as u64,
            count: n as u32,
            map_fd: map.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        match bpf(BPF_MAP_UPDATE_BATCH, &mut a) {
            Ok(_) => done += a.count as usize,
            Err(e) if done == 0 && e.raw_os_error() == Some(libc::EINVAL) => break,
            Err(e) => return Err(e.into()),
        }
    }
    for i in done..count {
        let key = i as u32;
        let mut a = MapElem {
            map_fd: map.as_raw_fd() as u32,
            key: std::ptr::from_ref(&key) as u64,
            value: values[i * size..].as_ptr() as u64,
            ..MapElem::default()
        };
        bpf(BPF_MAP_UPDATE_ELEM, &mut a)?;
    }
    Ok(())
}

fn xdp_live(
    pool: &Pool,
    cfg: &GenConfig,
    stop: &AtomicBool,
    sent: &AtomicU64,
    ready: &AtomicBool,
) -> Result<u64> {
    let (max, values) = pool.map_values();
    let count = u32::try_from(pool.frames.len()).context("frame pool too large")?;
    let counter = map_create(BPF_MAP_TYPE_PERCPU_ARRAY, 8, 1, "ffgen_next")?;
    let frames = map_create(BPF_MAP_TYPE_ARRAY, 4 + max as u32, count, "ffgen_frames")?;
    fill(&frames, &values, 4 + max).context("filling the frame map")?;
    drop(values);
    let insns = generator_program(
        counter.as_raw_fd(),
        frames.as_raw_fd(),
        count,
        pool.loop_start as u32,
        max as u32,
        pool.seq_ports,
    );
    let prog = load_xdp(&insns, "ffgen").context("loading the generator program")?;
    let ifindex = ifindex(&cfg.ifname, &cfg.ns)?;
    let mut ctx = XdpMd {
        data_end: max as u32,
        ingress_ifindex: ifindex,
        ..XdpMd::default()
    };
    // The kernel's frames start as this buffer (the longest length); the
    // program overwrites them and cuts their tails.
    let frame0 = vec![0u8; max];
    let mut total = 0u64;
    // A short first call checks that live frames work before saying ready.
    let mut repeat = 64;
    while !stop.load(Ordering::Relaxed) {
        let mut a = TestRunAttr {
            prog_fd: prog.as_raw_fd() as u32,
            data_size_in: max as u32,
            data_in: frame0.as_ptr() as u64,
            repeat,
            ctx_size_in: size_of::<XdpMd>() as u32,
            ctx_in: std::ptr::from_mut(&mut ctx) as u64,
            flags: BPF_F_TEST_XDP_LIVE_FRAMES,
            batch_size: cfg.batch.clamp(1, MAX_LIVE_BATCH) as u32,
            ..TestRunAttr::default()
        };
        match bpf(BPF_PROG_TEST_RUN, &mut a) {
            Ok(_) => total += u64::from(repeat),
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
            Err(e) => bail!("BPF_PROG_TEST_RUN (XDP live frames) on {}: {e}", cfg.ifname),
        }
        sent.store(total, Ordering::Release);
        if repeat != LIVE_REPEAT {
            repeat = LIVE_REPEAT;
            ready.store(true, Ordering::Release);
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_values_carry_lengths_and_padding() {
        let pool = Pool {
            frames: vec![vec![1; 100], vec![2; 250], vec![3; 60]],
            loop_start: 1,
            seq_ports: false,
        };
        let (max, v) = pool.map_values();
        assert_eq!(max, 250);
        assert_eq!(v.len(), 3 * 254);
        for (f, v) in pool.frames.iter().zip(v.chunks(254)) {
            let len = u32::from_ne_bytes(v[..4].try_into().unwrap()) as usize;
            assert_eq!(len, f.len());
            assert_eq!(&v[4..4 + len], f.as_slice());
            assert!(v[4 + len..].iter().all(|&b| b == 0));
        }
        assert!((pool.loop_mean_len() - 155.0).abs() < 1e-9);
        pool.check().unwrap();
        let flood = Pool {
            seq_ports: true,
            ..pool
        };
        assert!(flood.check().is_err(), "not IPv4/UDP frames");
    }

    #[test]
    fn generator_jumps_land_on_the_drop_exit() {
        for seq in [false, true] {
            let p = generator_program(3, 4, 10, 2, 300, seq);
            let drop_at = p.len() - 2;
            assert_eq!((p[drop_at].code, p[drop_at].imm), (0xb7, XDP_DROP));
            for (i, ins) in p.iter().enumerate() {
                if matches!(ins.code, 0x15 | 0x55) {
                    assert_eq!(i + 1 + ins.off as usize, drop_at);
                }
            }
        }
    }
}
