//! The IOVA allocator: hands out page-aligned ranges of the device's I/O address space.
//!
//! First fit over a free list kept sorted by address; freed ranges are merged with their
//! neighbours and reused. IOVA 0 is never handed out (a zero address in a PRP is the most
//! common driver bug, and it must fault, not hit a real buffer), and only ranges the IOMMU
//! reported as usable are used (the MSI window at 0xfee00000 is not one of them).

use crate::dma::PAGE_SIZE;
use std::collections::BTreeMap;

const PAGE: u64 = PAGE_SIZE as u64;

/// Where IOVAs come from when the kernel does not report usable ranges: above the first
/// MiB and below the x86 MSI window.
pub const FALLBACK_RANGE: (u64, u64) = (0x10_0000, 0xfedf_ffff);

/// Why an IOVA could not be freed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IovaError {
    /// `free` was called for a range that is not allocated as given.
    #[error("IOVA {iova:#x}+{len:#x} is not an allocated range")]
    NotAllocated {
        /// IOVA passed.
        iova: u64,
        /// Length passed.
        len: u64,
    },
}

/// A first-fit allocator over page-aligned IOVA ranges.
#[derive(Debug, Clone, Default)]
pub struct IovaAllocator {
    /// Free ranges: start -> end (exclusive), disjoint and non-adjacent.
    free: BTreeMap<u64, u64>,
    /// Allocated ranges: start -> length.
    used: BTreeMap<u64, u64>,
}

impl IovaAllocator {
    /// An allocator over the inclusive `ranges` the IOMMU allows, trimmed to whole pages and
    /// with page 0 removed. Empty `ranges` gives an allocator that never succeeds.
    pub fn new(ranges: &[(u64, u64)]) -> Self {
        let mut a = IovaAllocator::default();
        for &(start, end_incl) in ranges {
            let start = start.max(PAGE).div_ceil(PAGE) * PAGE;
            let end = end_incl.saturating_add(1) / PAGE * PAGE;
            if start < end {
                a.insert_free(start, end);
            }
        }
        a
    }

    /// Allocate `len` bytes (rounded up to whole pages); `None` when no free range is big enough.
    pub fn alloc(&mut self, len: u64) -> Option<u64> {
        if len == 0 {
            return None;
        }
        let len = len.checked_add(PAGE - 1)? / PAGE * PAGE;
        let (&start, &end) = self.free.iter().find(|&(&s, &e)| e - s >= len)?;
        self.free.remove(&start);
        if start + len < end {
            self.free.insert(start + len, end);
        }
        self.used.insert(start, len);
        Some(start)
    }

    /// Return a range given out by [`IovaAllocator::alloc`] with the same `len`.
    pub fn free(&mut self, iova: u64, len: u64) -> Result<(), IovaError> {
        let rounded = len.div_ceil(PAGE) * PAGE;
        match self.used.get(&iova) {
            Some(&l) if l == rounded => {
                self.used.remove(&iova);
                self.insert_free(iova, iova + rounded);
                Ok(())
            }
            _ => Err(IovaError::NotAllocated { iova, len }),
        }
    }

    /// Bytes currently allocated.
    pub fn allocated_bytes(&self) -> u64 {
        self.used.values().sum()
    }

    /// Bytes still free.
    pub fn free_bytes(&self) -> u64 {
        self.free.iter().map(|(s, e)| e - s).sum()
    }

    /// Insert a free range and merge it with adjacent free ranges.
    fn insert_free(&mut self, mut start: u64, mut end: u64) {
        if let Some((&ps, &pe)) = self.free.range(..=start).next_back()
            && pe >= start
        {
            self.free.remove(&ps);
            start = ps;
            end = end.max(pe);
        }
        while let Some((&ns, &ne)) = self.free.range(start..).next() {
            if ns > end {
                break;
            }
            self.free.remove(&ns);
            end = end.max(ne);
        }
        self.free.insert(start, end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn never_hands_out_zero_and_respects_ranges() {
        let mut a = IovaAllocator::new(&[(0, 0x3fff), (0x10_0000, 0x10_1fff)]);
        // Page 0 dropped: 0x1000..0x4000 (3 pages) and 0x100000..0x102000 (2 pages).
        assert_eq!(a.free_bytes(), 5 * PAGE);
        assert_eq!(a.alloc(1), Some(0x1000));
        assert_eq!(a.alloc(2 * PAGE), Some(0x2000));
        // Next does not fit in what is left of the first range.
        assert_eq!(a.alloc(2 * PAGE), Some(0x10_0000));
        assert_eq!(a.alloc(PAGE), None);
        assert_eq!(a.alloc(0), None);
    }

    #[test]
    fn unaligned_ranges_are_trimmed_to_pages() {
        let mut a = IovaAllocator::new(&[(0x1001, 0x4ffe)]);
        assert_eq!(a.free_bytes(), 2 * PAGE); // 0x2000..0x4000
        assert_eq!(a.alloc(PAGE), Some(0x2000));
        assert!(IovaAllocator::new(&[(0x1001, 0x1fff)]).alloc(1).is_none());
    }

    #[test]
    fn freed_ranges_are_merged_and_reused() {
        let mut a = IovaAllocator::new(&[(0x1000, 0x10_0fff)]);
        let x = a.alloc(PAGE).unwrap();
        let y = a.alloc(3 * PAGE).unwrap();
        let z = a.alloc(PAGE).unwrap();
        assert_eq!((x, y, z), (0x1000, 0x2000, 0x5000));
        a.free(y, 3 * PAGE).unwrap();
        // A smaller request reuses the hole first (first fit).
        assert_eq!(a.alloc(PAGE), Some(0x2000));
        a.free(0x2000, PAGE).unwrap();
        a.free(x, PAGE).unwrap();
        // x and y's hole are merged: a 4-page request fits at 0x1000.
        assert_eq!(a.alloc(4 * PAGE), Some(0x1000));
        assert_eq!(
            a.free(0x1000, PAGE),
            Err(IovaError::NotAllocated {
                iova: 0x1000,
                len: PAGE
            })
        );
        assert!(a.free(0x9000, PAGE).is_err());
    }

    #[test]
    fn random_alloc_free_keeps_ranges_disjoint_and_conserves_space() {
        let total = 1024 * PAGE;
        let mut a = IovaAllocator::new(&[(0, total - 1)]);
        let capacity = a.free_bytes();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut live: Vec<(u64, u64)> = Vec::new();
        for _ in 0..5000 {
            if live.is_empty() || rng.random_bool(0.55) {
                let len = rng.random_range(1..=16) * PAGE;
                if let Some(iova) = a.alloc(len) {
                    assert!(iova >= PAGE && iova + len <= total);
                    for &(s, l) in &live {
                        assert!(iova + len <= s || s + l <= iova, "overlap");
                    }
                    live.push((iova, len));
                }
            } else {
                let i = rng.random_range(0..live.len());
                let (s, l) = live.swap_remove(i);
                a.free(s, l).unwrap();
            }
            assert_eq!(a.free_bytes() + a.allocated_bytes(), capacity);
        }
        for (s, l) in live.drain(..) {
            a.free(s, l).unwrap();
        }
        // Everything merged back into one range.
        assert_eq!(a.free.len(), 1);
        assert_eq!(a.alloc(capacity), Some(PAGE));
    }
}
