//! DMA memory: page-aligned, pinned host memory that carries the IOVA the device sees.
//!
//! A [`DmaBuffer`] is allocated from anonymous mmap memory and mapped into the
//! device's I/O address space by a [`DmaMapper`] (the VFIO type1 IOMMU, or the
//! simulated IOMMU). The driver hands a device only IOVAs taken from a live
//! `DmaBuffer`, so it can never point a device at memory that is not mapped.
//! Dropping the buffer unmaps it before the memory is released.

use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;

/// Host and IOMMU page size the driver works in (NVMe CC.MPS = 0).
pub const PAGE_SIZE: usize = 4096;

/// Why DMA memory could not be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DmaError {
    /// The host refused memory.
    #[error("cannot allocate {len} bytes of DMA memory: {source}")]
    Alloc {
        /// Bytes asked for.
        len: usize,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The IOMMU refused the mapping.
    #[error("cannot map {len} bytes at IOVA {iova:#x} for DMA: {reason}")]
    Map {
        /// IOVA chosen.
        iova: u64,
        /// Bytes.
        len: usize,
        /// What the IOMMU said.
        reason: String,
    },
    /// The IOVA space is used up.
    #[error("IOVA space exhausted allocating {len} bytes")]
    IovaExhausted {
        /// Bytes asked for.
        len: usize,
    },
    /// A zero-length or oversized request.
    #[error("invalid DMA buffer length {len}")]
    BadLength {
        /// Bytes asked for.
        len: usize,
    },
}

/// Maps host memory into a device's I/O virtual address space.
pub trait DmaMapper: Send + Sync + fmt::Debug {
    /// Map `len` bytes (a multiple of [`PAGE_SIZE`]) at host address `vaddr`; returns the IOVA.
    ///
    /// # Safety
    /// `vaddr..vaddr+len` must be valid, page-aligned memory that stays allocated and
    /// unmoved until [`DmaMapper::unmap`] is called for the returned IOVA.
    unsafe fn map(&self, vaddr: NonNull<u8>, len: usize) -> Result<u64, DmaError>;

    /// Remove a mapping made by `map`. After it returns the device can no longer reach the memory.
    fn unmap(&self, iova: u64, len: usize);
}

/// Page-aligned host memory mapped for DMA. Zeroed on allocation.
///
/// The host side reads and writes it through the methods here; the device reaches it
/// through [`DmaBuffer::iova`]. Callers must not touch a range while a command that
/// transfers into it is in flight; the driver's command bookkeeping guarantees that.
pub struct DmaBuffer {
    ptr: NonNull<u8>,
    len: usize,
    iova: u64,
    mapper: Arc<dyn DmaMapper>,
}

// SAFETY: the buffer owns its mapping exclusively; the raw pointer is just the address of
// that mapping, which is valid from any thread.
unsafe impl Send for DmaBuffer {}
// SAFETY: shared access only reads through raw pointers with `read_at`/volatile reads; mutation
// needs `&mut self` (or the caller's promise in the volatile writers).
unsafe impl Sync for DmaBuffer {}

impl fmt::Debug for DmaBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DmaBuffer")
            .field("iova", &format_args!("{:#x}", self.iova))
            .field("len", &self.len)
            .finish()
    }
}

impl DmaBuffer {
    /// Allocate `len` bytes (rounded up to whole pages), zeroed, and map them through `mapper`.
    pub fn alloc(mapper: Arc<dyn DmaMapper>, len: usize) -> Result<Self, DmaError> {
        if len == 0 || len > (1 << 40) {
            return Err(DmaError::BadLength { len });
        }
        let len = len.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        // SAFETY: anonymous private mapping with no address hint; the kernel checks all
        // arguments and returns MAP_FAILED on error, which is handled below.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return Err(DmaError::Alloc {
                len,
                source: std::io::Error::last_os_error(),
            });
        }
        let Some(ptr) = NonNull::new(raw.cast::<u8>()) else {
            return Err(DmaError::Alloc {
                len,
                source: std::io::Error::other("mmap returned null"),
            });
        };
        // SAFETY: `ptr..ptr+len` was just mapped by us and stays mapped until Drop, which
        // unmaps the IOVA before munmap.
        let iova = match unsafe { mapper.map(ptr, len) } {
            Ok(iova) => iova,
            Err(e) => {
                // SAFETY: unmapping the region mmap'ed above, which nothing else references.
                unsafe { libc::munmap(ptr.as_ptr().cast(), len) };
                return Err(e);
            }
        };
        Ok(DmaBuffer {
            ptr,
            len,
            iova,
            mapper,
        })
    }

    /// Length in bytes (a multiple of [`PAGE_SIZE`]).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never empty; present for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The IOVA of byte 0, as the device sees it.
    pub fn iova(&self) -> u64 {
        self.iova
    }

    /// The host address of byte 0 (for the simulated IOMMU's own bookkeeping and tests).
    pub fn host_ptr(&self) -> NonNull<u8> {
        self.ptr
    }

    fn check(&self, offset: usize, len: usize) {
        assert!(
            offset.checked_add(len).is_some_and(|end| end <= self.len),
            "DMA buffer access {offset}+{len} out of {}",
            self.len
        );
    }

    /// Copy `data` into the buffer at `offset`.
    ///
    /// # Panics
    /// If the range is outside the buffer (a driver bug, never input-dependent).
    pub fn write_at(&mut self, offset: usize, data: &[u8]) {
        self.check(offset, data.len());
        // SAFETY: range checked above; `&mut self` means no host-side alias, and the driver
        // does not write a range while the device transfers from it.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.as_ptr().add(offset), data.len())
        };
    }

    /// Copy bytes out of the buffer at `offset` into `out`.
    ///
    /// # Panics
    /// If the range is outside the buffer (a driver bug).
    pub fn read_at(&self, offset: usize, out: &mut [u8]) {
        self.check(offset, out.len());
        // SAFETY: range checked above; the driver only reads ranges whose transfer completed.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.as_ptr().add(offset),
                out.as_mut_ptr(),
                out.len(),
            )
        };
    }

    /// Fill a range with zeroes.
    pub fn zero(&mut self, offset: usize, len: usize) {
        self.check(offset, len);
        // SAFETY: range checked above; exclusive host access through `&mut self`.
        unsafe { std::ptr::write_bytes(self.ptr.as_ptr().add(offset), 0, len) };
    }

    /// Volatile 32-bit read at a 4-byte aligned `offset` (completion-queue entries the device writes).
    pub fn read_volatile_u32(&self, offset: usize) -> u32 {
        self.check(offset, 4);
        assert!(
            offset.is_multiple_of(4),
            "unaligned volatile read at {offset}"
        );
        // SAFETY: in range and aligned (the buffer is page-aligned); volatile because the device
        // writes this memory behind the compiler's back.
        unsafe { std::ptr::read_volatile(self.ptr.as_ptr().add(offset).cast::<u32>()) }
    }

    /// Volatile copy of `out.len()` bytes at `offset`, 4 bytes at a time (`out.len()` a multiple of 4).
    pub fn read_volatile(&self, offset: usize, out: &mut [u8]) {
        assert!(
            out.len().is_multiple_of(4),
            "volatile read length {} not a multiple of 4",
            out.len()
        );
        for (i, chunk) in out.chunks_exact_mut(4).enumerate() {
            chunk.copy_from_slice(&self.read_volatile_u32(offset + 4 * i).to_le_bytes());
        }
    }

    /// Volatile copy of `data` into the buffer at `offset` (submission-queue entries, 4 bytes at a time).
    pub fn write_volatile(&mut self, offset: usize, data: &[u8]) {
        assert!(
            data.len().is_multiple_of(4),
            "volatile write length {} not a multiple of 4",
            data.len()
        );
        self.check(offset, data.len());
        assert!(
            offset.is_multiple_of(4),
            "unaligned volatile write at {offset}"
        );
        for (i, chunk) in data.chunks_exact(4).enumerate() {
            let v = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            // SAFETY: in range and 4-byte aligned (checked above, page-aligned base).
            unsafe {
                std::ptr::write_volatile(self.ptr.as_ptr().add(offset + 4 * i).cast::<u32>(), v)
            };
        }
    }

    /// A shared view of the bytes. Only valid while no device transfer into the buffer is in flight.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping is `len` bytes, valid for the life of `self`; the caller (driver)
        // only takes this view when no command writes the buffer.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// A mutable view of the bytes. Only while no device transfer is in flight.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as `as_slice`, plus `&mut self` excludes other host references.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for DmaBuffer {
    fn drop(&mut self) {
        self.mapper.unmap(self.iova, self.len);
        // SAFETY: the region was mmap'ed in `alloc` with this length and the device mapping is
        // gone, so nothing can reach it any more.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}
