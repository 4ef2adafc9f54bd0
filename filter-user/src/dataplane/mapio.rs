//! Bulk access to BPF maps that aya does not offer: memory-mapped arrays
//! (`BPF_F_MMAPABLE`: the prefix tables are filled and the flow table is
//! scanned with plain memory copies instead of a syscall per entry) and
//! batched reads of per-CPU arrays (`BPF_MAP_LOOKUP_BATCH`: one syscall for
//! thousands of counters).

use std::io;
use std::os::fd::{AsRawFd as _, BorrowedFd};

/// `BPF_F_MMAPABLE`.
pub const BPF_F_MMAPABLE: u32 = 1 << 10;
/// `BPF_F_INNER_MAP`.
pub const BPF_F_INNER_MAP: u32 = 1 << 12;

/// A BPF array mapped into this process. Unmapped on drop.
pub struct Mmap {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain shared memory; access goes through &self/&mut self.
unsafe impl Send for Mmap {}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(p).unwrap_or(4096).max(1)
}

impl Mmap {
    /// Map the first `bytes` of an mmapable array map (`writable`: shared
    /// read-write, else read-only).
    pub fn new(fd: BorrowedFd<'_>, bytes: usize, writable: bool) -> io::Result<Mmap> {
        let page = page_size();
        let len = bytes.div_ceil(page).max(1) * page;
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // SAFETY: a fresh shared mapping of the map's fd; checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mmap {
            ptr: ptr.cast(),
            len,
        })
    }

    /// The mapping as `n` values of `T` (`T` plain data, `n * size_of::<T>()`
    /// within the mapping).
    pub fn slice<T: aya::Pod>(&self, n: usize) -> &[T] {
        assert!(n * std::mem::size_of::<T>() <= self.len);
        assert!((self.ptr as usize).is_multiple_of(std::mem::align_of::<T>()));
        // SAFETY: in bounds and aligned (checked); T is plain data, any bits valid.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<T>(), n) }
    }

    /// The mapping as `n` writable values of `T` (mapped writable).
    pub fn slice_mut<T: aya::Pod>(&mut self, n: usize) -> &mut [T] {
        assert!(n * std::mem::size_of::<T>() <= self.len);
        assert!((self.ptr as usize).is_multiple_of(std::mem::align_of::<T>()));
        // SAFETY: in bounds and aligned (checked); T is plain data.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.cast::<T>(), n) }
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: unmapping what `new` mapped.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// `bpf_attr` of the batch map operations (`BPF_MAP_*_BATCH`), the
/// kernel's layout; ffbench fills maps with it too.
#[repr(C)]
#[derive(Default)]
pub struct BatchAttr {
    pub in_batch: u64,
    pub out_batch: u64,
    pub keys: u64,
    pub values: u64,
    pub count: u32,
    pub map_fd: u32,
    pub elem_flags: u64,
    pub flags: u64,
}

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// Every entry of a per-CPU array of `entries` values of `T`, as
/// `out[entry][cpu]`, read with `BPF_MAP_LOOKUP_BATCH`.
pub fn per_cpu_all<T: aya::Pod + Default>(
    fd: BorrowedFd<'_>,
    entries: u32,
    ncpu: usize,
) -> io::Result<Vec<Vec<T>>> {
    let size = std::mem::size_of::<T>().next_multiple_of(8);
    let mut keys = vec![0u32; entries as usize];
    let mut values = vec![0u8; entries as usize * ncpu * size];
    let mut out_batch = 0u32;
    let mut read = 0usize;
    let mut first = true;
    while read < entries as usize {
        let mut in_batch = out_batch;
        let mut a = BatchAttr {
            in_batch: if first {
                0
            } else {
                std::ptr::from_mut(&mut in_batch) as u64
            },
            out_batch: std::ptr::from_mut(&mut out_batch) as u64,
            keys: keys[read..].as_mut_ptr() as u64,
            values: values[read * ncpu * size..].as_mut_ptr() as u64,
            count: entries - read as u32,
            map_fd: fd.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        // SAFETY: attr points to a bpf_attr prefix of its size; the buffers
        // hold `count` keys and values.
        let r = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                std::ptr::from_mut(&mut a).cast::<libc::c_void>(),
                std::mem::size_of::<BatchAttr>() as libc::c_uint,
            )
        };
        let err = (r < 0).then(io::Error::last_os_error);
        read += a.count as usize;
        first = false;
        match err {
            None => {}
            // The end of the map.
            Some(e) if e.raw_os_error() == Some(libc::ENOENT) => break,
            Some(e) => return Err(e),
        }
        if a.count == 0 {
            break;
        }
    }
    let mut out = vec![vec![T::default(); ncpu]; entries as usize];
    for (i, key) in keys.iter().take(read).enumerate() {
        let Some(row) = out.get_mut(*key as usize) else {
            continue;
        };
        for (cpu, v) in row.iter_mut().enumerate() {
            let at = (i * ncpu + cpu) * size;
            // SAFETY: `at + size_of::<T>()` is inside `values`; T is plain
            // data; read_unaligned copes with the byte buffer's alignment.
            *v = unsafe { values.as_ptr().add(at).cast::<T>().read_unaligned() };
        }
    }
    Ok(out)
}
