//! The simulated IOMMU: the only way the simulated controller reaches host memory.
//!
//! [`SimIommu`] implements [`DmaMapper`]. IOVAs are handed out from
//! [`IOVA_BASE`] upwards, far from any host address, with an unmapped guard page
//! after every mapping and no reuse of freed IOVAs, so identity-mapping bugs,
//! use-after-unmap and overruns past a buffer's end all fault instead of
//! silently touching memory. Every device access goes through
//! `SimIommu::translate`; an access that is not wholly inside one live mapping
//! is refused and recorded as a [`DmaFault`].
//!
//! This module holds all of the simulator's raw host-memory access. The mapping
//! table's read lock is held for the whole of every copy, and `unmap` takes the
//! write lock, so once `unmap` returns the device can no longer touch the memory.
//! Data transfers go through `DmaSpans`: every PRP segment checked and translated
//! up front, then copied to or from the store in place (`pwritev`/`preadv` for a
//! file store), with the read lock held until the spans are dropped.

use crate::dma::{DmaError, DmaMapper, PAGE_SIZE};
use parking_lot::{Mutex, RwLock, RwLockReadGuard};
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::io::AsRawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering, fence};

/// First IOVA handed out (4 GiB: never a plausible host heap address on its own).
pub const IOVA_BASE: u64 = 0x1_0000_0000;
/// End of the simulated IOVA space (48-bit).
pub const IOVA_LIMIT: u64 = 1 << 48;
/// How many DMA fault records are kept (the counter counts all).
const FAULT_LOG_CAP: usize = 256;

/// Why an access was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmaFaultReason {
    /// No mapping contains the start address.
    Unmapped,
    /// The access starts inside a mapping but runs past its end.
    CrossesMappingEnd,
    /// Zero-length or overflowing access.
    BadLength,
}

/// One refused device access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmaFault {
    /// IOVA the device tried to reach.
    pub iova: u64,
    /// Length of the access in bytes.
    pub len: usize,
    /// Whether it was a device write (to host memory).
    pub write: bool,
    /// What the device was doing ("SQE fetch", "PRP list", "write data"...).
    pub what: &'static str,
    /// Why it was refused.
    pub reason: DmaFaultReason,
}

impl fmt::Display for DmaFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "DMA {} of {} bytes at IOVA {:#x} ({}) refused: {:?}",
            if self.write { "write" } else { "read" },
            self.len,
            self.iova,
            self.what,
            self.reason
        )
    }
}

#[derive(Debug, Clone, Copy)]
struct Mapping {
    host: usize,
    len: usize,
}

#[derive(Debug)]
struct Table {
    maps: BTreeMap<u64, Mapping>,
    next: u64,
}

impl Table {
    /// First-fit search for `span` free bytes (mapping plus guard page) between mappings.
    fn find_gap(&self, span: u64) -> Option<u64> {
        let mut start = IOVA_BASE;
        for (&iova, m) in &self.maps {
            if iova.saturating_sub(start) >= span {
                return Some(start);
            }
            start = iova + m.len as u64 + PAGE_SIZE as u64;
        }
        (IOVA_LIMIT.saturating_sub(start) >= span).then_some(start)
    }
}

/// A host span the device may touch, valid only while the table's read guard lives.
struct HostSpan<'g> {
    ptr: *mut u8,
    len: usize,
    _table: std::marker::PhantomData<&'g Table>,
}

/// The simulated IOMMU. Share it as `Arc<SimIommu>` (it is the controller's [`DmaMapper`]).
pub struct SimIommu {
    table: RwLock<Table>,
    faults: Mutex<VecDeque<DmaFault>>,
    fault_count: AtomicU64,
}

impl fmt::Debug for SimIommu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.table.read();
        f.debug_struct("SimIommu")
            .field("mappings", &t.maps.len())
            .field("next_iova", &format_args!("{:#x}", t.next))
            .field("dma_faults", &self.fault_count.load(Ordering::Relaxed))
            .finish()
    }
}

impl Default for SimIommu {
    fn default() -> Self {
        Self::new()
    }
}

impl SimIommu {
    /// An empty IOMMU.
    pub fn new() -> SimIommu {
        SimIommu {
            table: RwLock::new(Table {
                maps: BTreeMap::new(),
                next: IOVA_BASE,
            }),
            faults: Mutex::new(VecDeque::new()),
            fault_count: AtomicU64::new(0),
        }
    }

    /// Number of refused device accesses since creation.
    pub fn fault_count(&self) -> u64 {
        self.fault_count.load(Ordering::Relaxed)
    }

    /// The most recent refused accesses (up to 256), oldest first.
    pub fn faults(&self) -> Vec<DmaFault> {
        self.faults.lock().iter().cloned().collect()
    }

    /// Number of live mappings.
    pub fn mapping_count(&self) -> usize {
        self.table.read().maps.len()
    }

    /// Check that `iova..iova+len` lies wholly inside one live mapping.
    pub fn check(&self, iova: u64, len: usize) -> Result<(), DmaFaultReason> {
        let t = self.table.read();
        Self::translate(&t, iova, len).map(|_| ())
    }

    /// Translate a device range to host memory. The result borrows the read guard, so the
    /// mapping cannot be removed while the span is in use.
    fn translate<'g>(t: &'g Table, iova: u64, len: usize) -> Result<HostSpan<'g>, DmaFaultReason> {
        let (start, m) = Self::translate_mapping(t, iova, len)?;
        Ok(HostSpan {
            ptr: (m.host + (iova - start) as usize) as *mut u8,
            len,
            _table: std::marker::PhantomData,
        })
    }

    /// The mapping (start IOVA and entry) wholly containing `iova..iova+len`.
    fn translate_mapping(
        t: &Table,
        iova: u64,
        len: usize,
    ) -> Result<(u64, Mapping), DmaFaultReason> {
        let end = iova
            .checked_add(len as u64)
            .filter(|_| len > 0)
            .ok_or(DmaFaultReason::BadLength)?;
        let (&start, m) = t
            .maps
            .range(..=iova)
            .next_back()
            .ok_or(DmaFaultReason::Unmapped)?;
        let map_end = start + m.len as u64;
        if iova >= map_end {
            return Err(DmaFaultReason::Unmapped);
        }
        if end > map_end {
            return Err(DmaFaultReason::CrossesMappingEnd);
        }
        Ok((start, *m))
    }

    fn record(&self, fault: DmaFault) {
        tracing::warn!(fault = %fault, "simulated IOMMU refused a device access");
        self.fault_count.fetch_add(1, Ordering::Relaxed);
        let mut log = self.faults.lock();
        if log.len() == FAULT_LOG_CAP {
            log.pop_front();
        }
        log.push_back(fault);
    }

    /// Device read from host memory into `out`.
    pub fn read(&self, iova: u64, out: &mut [u8], what: &'static str) -> Result<(), DmaFault> {
        let t = self.table.read();
        match Self::translate(&t, iova, out.len()) {
            Ok(span) => {
                // SAFETY: `span` lies inside a live mapping (checked by `translate`), whose
                // owner promised in `map` that the memory stays valid until `unmap`, and
                // `unmap` cannot run while we hold the read guard `span` borrows. `out` is
                // a distinct Rust allocation, so the ranges do not overlap. The host does
                // not write a range while a command transfers from it (DMA contract).
                unsafe { std::ptr::copy_nonoverlapping(span.ptr, out.as_mut_ptr(), span.len) };
                Ok(())
            }
            Err(reason) => {
                let fault = DmaFault {
                    iova,
                    len: out.len(),
                    write: false,
                    what,
                    reason,
                };
                drop(t);
                self.record(fault.clone());
                Err(fault)
            }
        }
    }

    /// Device write of `data` into host memory.
    pub fn write(&self, iova: u64, data: &[u8], what: &'static str) -> Result<(), DmaFault> {
        let t = self.table.read();
        match Self::translate(&t, iova, data.len()) {
            Ok(span) => {
                // SAFETY: as in `read`: the span is inside a live mapping kept alive by the
                // read guard; `data` is a separate allocation; the host does not read or
                // write the range while the command that fills it is in flight.
                unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), span.ptr, span.len) };
                Ok(())
            }
            Err(reason) => {
                let fault = DmaFault {
                    iova,
                    len: data.len(),
                    write: true,
                    what,
                    reason,
                };
                drop(t);
                self.record(fault.clone());
                Err(fault)
            }
        }
    }

    /// Post a 16-byte completion entry: dwords 0..2 first, then a release fence, then
    /// dword 3 (which holds the phase tag), each as a volatile 32-bit store, so a host
    /// that sees the new phase also sees the rest of the entry.
    pub fn write_cqe(&self, iova: u64, cqe: &[u8; 16]) -> Result<(), DmaFault> {
        let t = self.table.read();
        let span = match Self::translate(&t, iova, 16) {
            Ok(span) if iova.is_multiple_of(4) => span,
            other => {
                let reason = other.err().unwrap_or(DmaFaultReason::BadLength);
                let fault = DmaFault {
                    iova,
                    len: 16,
                    write: true,
                    what: "CQE post",
                    reason,
                };
                drop(t);
                self.record(fault.clone());
                return Err(fault);
            }
        };
        let dw = |i: usize| {
            u32::from_le_bytes([cqe[4 * i], cqe[4 * i + 1], cqe[4 * i + 2], cqe[4 * i + 3]])
        };
        for i in 0..3 {
            // SAFETY: the 16-byte span is inside a live mapping held by the read guard and
            // 4-byte aligned (host mappings are page-aligned, `iova` checked above); the host
            // only reads completion entries, with volatile 32-bit loads.
            unsafe { std::ptr::write_volatile(span.ptr.add(4 * i).cast::<u32>(), dw(i)) };
        }
        fence(Ordering::Release);
        // SAFETY: as above, last dword of the same span.
        unsafe { std::ptr::write_volatile(span.ptr.add(12).cast::<u32>(), dw(3)) };
        Ok(())
    }

    /// Translate the `(iova, len)` segments of one transfer, each checked as [`Self::read`]
    /// and [`Self::write`] check theirs (a refused segment is recorded as a fault and
    /// fails the whole transfer, before any byte moves). Segments that are contiguous in
    /// host memory are merged. The result holds the read lock, so no mapping it names
    /// can be removed until it is dropped: keep it only for the copy.
    pub(super) fn spans(
        &self,
        segs: &[(u64, usize)],
        to_host: bool,
        what: &'static str,
    ) -> Result<DmaSpans<'_>, DmaFault> {
        let t = self.table.read();
        let mut iov: Vec<libc::iovec> = Vec::with_capacity(segs.len().min(64));
        let mut len = 0usize;
        // The mapping of the previous segment: (iova, host, end iova). Consecutive
        // segments usually lie in the same buffer, so most need no table lookup.
        let mut last: Option<(u64, usize, u64)> = None;
        for &(iova, n) in segs {
            let hit = last.filter(|&(start, _, end)| {
                n > 0 && iova >= start && iova.checked_add(n as u64).is_some_and(|e| e <= end)
            });
            let ptr = match hit {
                Some((start, host, _)) => host + (iova - start) as usize,
                None => match Self::translate_mapping(&t, iova, n) {
                    Ok((start, m)) => {
                        last = Some((start, m.host, start + m.len as u64));
                        m.host + (iova - start) as usize
                    }
                    Err(reason) => {
                        let fault = DmaFault {
                            iova,
                            len: n,
                            write: to_host,
                            what,
                            reason,
                        };
                        drop(t);
                        self.record(fault.clone());
                        return Err(fault);
                    }
                },
            };
            match iov.last_mut() {
                Some(prev) if prev.iov_base as usize + prev.iov_len == ptr => prev.iov_len += n,
                _ => iov.push(libc::iovec {
                    iov_base: ptr as *mut libc::c_void,
                    iov_len: n,
                }),
            }
            len += n;
        }
        Ok(DmaSpans {
            _table: t,
            iov,
            len,
        })
    }
}

/// Host memory behind one device transfer, translated and checked by the IOMMU
/// ([`SimIommu::spans`]). It holds the mapping table's read lock, so every span stays
/// mapped while it lives. Bytes are addressed by their offset in the transfer.
pub(super) struct DmaSpans<'g> {
    _table: RwLockReadGuard<'g, Table>,
    /// Host spans in transfer order, each inside one live mapping.
    iov: Vec<libc::iovec>,
    len: usize,
}

impl DmaSpans<'_> {
    /// Bytes in the transfer.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Walk `pos..pos+n` of the transfer: `(host pointer, offset from pos, bytes)` per span piece.
    fn pieces(&self, pos: usize, n: usize, mut f: impl FnMut(*mut u8, usize, usize)) {
        assert!(
            pos.checked_add(n).is_some_and(|e| e <= self.len),
            "DMA span access {pos}+{n} beyond the {}-byte transfer",
            self.len
        );
        let (mut skip, mut done) = (pos, 0);
        for v in &self.iov {
            if done == n {
                break;
            }
            if skip >= v.iov_len {
                skip -= v.iov_len;
                continue;
            }
            let take = (v.iov_len - skip).min(n - done);
            f((v.iov_base as *mut u8).wrapping_add(skip), done, take);
            done += take;
            skip = 0;
        }
    }

    /// Device read: copy transfer bytes `pos..pos+out.len()` from host memory into `out`.
    pub(super) fn copy_out(&self, pos: usize, out: &mut [u8]) {
        self.pieces(pos, out.len(), |src, at, n| {
            // SAFETY: `src..src+n` lies inside a live mapping (checked by `spans`, kept by
            // the read guard this struct holds; the owner promised in `map` that the memory
            // stays valid until `unmap`); `out` is a distinct Rust allocation. The host does
            // not write a range while a command transfers from it (DMA contract).
            unsafe { std::ptr::copy_nonoverlapping(src, out.as_mut_ptr().add(at), n) };
        });
    }

    /// Device write: copy `data` into host memory at transfer bytes `pos..pos+data.len()`.
    pub(super) fn copy_in(&self, pos: usize, data: &[u8]) {
        self.pieces(pos, data.len(), |dst, at, n| {
            // SAFETY: as in `copy_out`, with the host not touching the range while the
            // command that fills it is in flight.
            unsafe { std::ptr::copy_nonoverlapping(data.as_ptr().add(at), dst, n) };
        });
    }

    /// Device write of zeroes at transfer bytes `pos..pos+n`.
    pub(super) fn zero(&self, pos: usize, n: usize) {
        self.pieces(pos, n, |dst, _, n| {
            // SAFETY: as in `copy_in`.
            unsafe { std::ptr::write_bytes(dst, 0, n) };
        });
    }

    /// Device read straight into a file: `pwritev` of the whole transfer at `off`.
    pub(super) fn write_to(&self, file: &File, off: u64) -> io::Result<()> {
        self.vectored(file, off, true)
    }

    /// Device write straight from a file: `preadv` of the whole transfer from `off`
    /// (end of file is an error: the store is exactly the namespace size).
    pub(super) fn read_from(&self, file: &File, off: u64) -> io::Result<()> {
        self.vectored(file, off, false)
    }

    fn vectored(&self, file: &File, off: u64, to_file: bool) -> io::Result<()> {
        let mut iov = self.iov.clone();
        let (mut first, mut off) = (0usize, off);
        while first < iov.len() {
            let rest = &iov[first..];
            let cnt = rest.len().min(IOV_MAX) as libc::c_int;
            let at = libc::off_t::try_from(off)
                .map_err(|_| io::Error::other("offset does not fit off_t"))?;
            let n = if to_file {
                // SAFETY: every iovec lies inside a live mapping kept by the read guard (see
                // `copy_out`); the kernel only reads them. `rest` outlives the call.
                unsafe { libc::pwritev(file.as_raw_fd(), rest.as_ptr(), cnt, at) }
            } else {
                // SAFETY: as above; the kernel writes host memory the host leaves alone while
                // the command that fills it is in flight (DMA contract).
                unsafe { libc::preadv(file.as_raw_fd(), rest.as_ptr(), cnt, at) }
            };
            let n = match n {
                n if n < 0 => {
                    let e = io::Error::last_os_error();
                    if e.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    return Err(e);
                }
                0 => {
                    return Err(if to_file {
                        io::Error::from(io::ErrorKind::WriteZero)
                    } else {
                        io::Error::from(io::ErrorKind::UnexpectedEof)
                    });
                }
                n => n as usize,
            };
            off += n as u64;
            // Skip the iovecs done; trim the one the call stopped in.
            let mut left = n;
            while left > 0 {
                let v = &mut iov[first];
                if left >= v.iov_len {
                    left -= v.iov_len;
                    first += 1;
                } else {
                    v.iov_base = (v.iov_base as *mut u8).wrapping_add(left).cast();
                    v.iov_len -= left;
                    left = 0;
                }
            }
        }
        Ok(())
    }
}

/// Most iovecs one `preadv`/`pwritev` takes (Linux UIO_MAXIOV).
const IOV_MAX: usize = 1024;

impl DmaMapper for SimIommu {
    unsafe fn map(&self, vaddr: NonNull<u8>, len: usize) -> Result<u64, DmaError> {
        let host = vaddr.as_ptr() as usize;
        if len == 0 || !len.is_multiple_of(PAGE_SIZE) || !host.is_multiple_of(PAGE_SIZE) {
            return Err(DmaError::Map {
                iova: 0,
                len,
                reason: format!("host range {host:#x}+{len} is not page-aligned"),
            });
        }
        let mut t = self.table.write();
        // One unmapped guard page after every mapping. Freed IOVAs are not reused until the
        // space above the last mapping runs out (so stale IOVAs fault), then gaps are reused.
        let span = len as u64 + PAGE_SIZE as u64;
        let iova = match t.next.checked_add(span).filter(|&n| n <= IOVA_LIMIT) {
            Some(next) => {
                let iova = t.next;
                t.next = next;
                iova
            }
            None => t.find_gap(span).ok_or(DmaError::IovaExhausted { len })?,
        };
        t.maps.insert(iova, Mapping { host, len });
        tracing::trace!(iova = format_args!("{iova:#x}"), len, "sim IOMMU map");
        Ok(iova)
    }

    fn unmap(&self, iova: u64, len: usize) {
        let mut t = self.table.write();
        match t.maps.get(&iova) {
            Some(m) if m.len == len => {
                t.maps.remove(&iova);
                tracing::trace!(iova = format_args!("{iova:#x}"), len, "sim IOMMU unmap");
            }
            other => tracing::warn!(
                iova = format_args!("{iova:#x}"),
                len,
                mapped_len = other.map(|m| m.len),
                "sim IOMMU: unmap of a range that is not one mapping; ignored"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dma::DmaBuffer;
    use std::sync::Arc;

    #[test]
    fn iovas_are_not_host_addresses_and_bounds_are_enforced() {
        let iommu = Arc::new(SimIommu::new());
        let mut buf = DmaBuffer::alloc(iommu.clone(), 8192).unwrap();
        assert!(buf.iova() >= IOVA_BASE);
        assert_ne!(buf.iova(), buf.host_ptr().as_ptr() as u64);
        buf.write_at(4090, b"abcdefgh");
        let mut out = [0u8; 8];
        iommu.read(buf.iova() + 4090, &mut out, "test").unwrap();
        assert_eq!(&out, b"abcdefgh");
        iommu.write(buf.iova() + 8, b"xy", "test").unwrap();
        let mut back = [0u8; 2];
        buf.read_at(8, &mut back);
        assert_eq!(&back, b"xy");
        assert_eq!(iommu.fault_count(), 0);

        // Past the end, in the guard page, before the base, and host-address identity.
        let e = iommu.read(buf.iova() + 8190, &mut out, "test").unwrap_err();
        assert_eq!(e.reason, DmaFaultReason::CrossesMappingEnd);
        let e = iommu.read(buf.iova() + 8192, &mut out, "test").unwrap_err();
        assert_eq!(e.reason, DmaFaultReason::Unmapped);
        let host = buf.host_ptr().as_ptr() as u64;
        assert!(iommu.read(host, &mut out, "test").is_err());
        assert!(iommu.read(0, &mut out, "test").is_err());
        assert_eq!(iommu.fault_count(), 4);

        // When the space above the last mapping is used up, freed gaps are reused.
        {
            let mut t = iommu.table.write();
            t.next = IOVA_LIMIT - 4096;
        }
        let reused = DmaBuffer::alloc(iommu.clone(), 4096).unwrap();
        assert_eq!(buf.iova(), IOVA_BASE);
        assert_eq!(reused.iova(), IOVA_BASE + 8192 + 4096);
        drop(reused);

        let iova = buf.iova();
        drop(buf);
        assert!(iommu.read(iova, &mut out, "test").is_err());
        assert_eq!(iommu.mapping_count(), 0);
        assert_eq!(iommu.faults().len(), 5);
    }

    /// Spans of one transfer: contiguous segments merge, bytes land at their transfer
    /// offsets, files are written and read through them, and one bad segment fails the
    /// whole transfer with a recorded fault before anything moves.
    #[test]
    fn spans_merge_copy_and_fault() {
        let iommu = Arc::new(SimIommu::new());
        let mut a = DmaBuffer::alloc(iommu.clone(), 3 * PAGE_SIZE).unwrap();
        let mut b = DmaBuffer::alloc(iommu.clone(), PAGE_SIZE).unwrap();
        let p = PAGE_SIZE as u64;
        // Pages 0 and 1 of `a` (contiguous: merged), then `b`, then page 2 of `a`.
        let segs = [
            (a.iova() + 100, PAGE_SIZE - 100),
            (a.iova() + p, PAGE_SIZE),
            (b.iova(), PAGE_SIZE),
            (a.iova() + 2 * p, 50),
        ];
        let total: usize = segs.iter().map(|s| s.1).sum();
        let pattern: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
        {
            let spans = iommu.spans(&segs, true, "test").unwrap();
            assert_eq!(spans.len(), total);
            assert_eq!(spans.iov.len(), 3, "the first two segments merge");
            spans.copy_in(0, &pattern);
            spans.zero(total - 10, 10);
        }
        let mut expect = pattern.clone();
        expect[total - 10..].fill(0);
        let mut got = vec![0u8; 2 * PAGE_SIZE - 100];
        a.read_at(100, &mut got);
        assert_eq!(got, expect[..2 * PAGE_SIZE - 100]);
        let mut got_b = vec![0u8; PAGE_SIZE];
        b.read_at(0, &mut got_b);
        assert_eq!(got_b, expect[2 * PAGE_SIZE - 100..3 * PAGE_SIZE - 100]);

        // Through a file: write the transfer out, clear host memory, read it back.
        let f = tempfile::tempfile().unwrap();
        {
            let spans = iommu.spans(&segs, false, "test").unwrap();
            spans.write_to(&f, 12345).unwrap();
            let mut out = vec![0u8; 300];
            spans.copy_out(total - 300, &mut out);
            assert_eq!(out, expect[total - 300..]);
        }
        a.as_mut_slice().fill(0xee);
        b.as_mut_slice().fill(0xee);
        {
            let spans = iommu.spans(&segs, true, "test").unwrap();
            spans.read_from(&f, 12345).unwrap();
            let e = spans.read_from(&f, 12346).unwrap_err();
            assert_eq!(
                e.kind(),
                io::ErrorKind::UnexpectedEof,
                "a short file is an error"
            );
        }
        let mut back = vec![0u8; total];
        let spans = iommu.spans(&segs, false, "test").unwrap();
        spans.copy_out(0, &mut back);
        drop(spans);
        assert_eq!(
            back[..total - 1],
            expect[1..],
            "the short read still filled what the file had"
        );

        // A segment past the end of its mapping fails the transfer and is recorded.
        let bad = [(a.iova(), PAGE_SIZE), (b.iova() + p - 8, 16)];
        let fault = iommu.spans(&bad, false, "test").err().unwrap();
        assert_eq!(
            (fault.iova, fault.len, fault.write, fault.reason),
            (
                b.iova() + p - 8,
                16,
                false,
                DmaFaultReason::CrossesMappingEnd
            )
        );
        assert_eq!(iommu.fault_count(), 1);
    }
}
