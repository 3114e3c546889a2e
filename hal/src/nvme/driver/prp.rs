//! PRP (Physical Region Page) construction: PRP1, PRP2 and chained PRP lists.
//!
//! Pure arithmetic over IOVAs, so it is property-tested for every size and alignment.
//! The caller supplies the IOVAs of PRP list pages that live inside the same live
//! `DmaBuffer` as the data, then writes the returned list contents there.

use crate::dma::PAGE_SIZE;

/// PRP entries that fit in one list page.
pub const ENTRIES_PER_LIST: usize = PAGE_SIZE / 8;

/// Why a PRP layout cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrpError {
    /// PRP entries must be dword aligned.
    #[error("data IOVA {0:#x} is not dword aligned")]
    Unaligned(u64),
    /// Zero-length transfers carry no PRP.
    #[error("zero-length transfer")]
    Empty,
    /// Fewer list pages were supplied than the transfer needs.
    #[error("transfer needs {needed} PRP list pages, {given} supplied")]
    NotEnoughListPages {
        /// Pages needed.
        needed: usize,
        /// Pages supplied.
        given: usize,
    },
    /// A supplied list page IOVA is not page aligned.
    #[error("PRP list page IOVA {0:#x} is not page aligned")]
    UnalignedList(u64),
}

/// One PRP list page to write: where it is and its entries (little-endian u64 each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrpList {
    /// IOVA of the list page.
    pub iova: u64,
    /// Entries, in order; the last one is a chain pointer if another list follows.
    pub entries: Vec<u64>,
}

/// The PRP fields of one command and the lists to write before submitting it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrpLayout {
    /// PRP entry 1 (may carry an offset into the first page).
    pub prp1: u64,
    /// PRP entry 2: 0, the second page, or a pointer to the first list.
    pub prp2: u64,
    /// List pages, in chain order.
    pub lists: Vec<PrpList>,
}

/// Memory pages a transfer of `len` bytes starting at `iova` touches.
pub fn pages_spanned(iova: u64, len: usize) -> usize {
    let off = (iova % PAGE_SIZE as u64) as usize;
    (off + len).div_ceil(PAGE_SIZE)
}

/// PRP list pages needed for a transfer of `len` bytes at `iova` (0 when PRP1/PRP2 suffice).
pub fn list_pages_needed(iova: u64, len: usize) -> usize {
    let pages = pages_spanned(iova, len);
    if pages <= 2 {
        return 0;
    }
    // k chained pages hold 511 * k + 1 entries (every page but the last gives one to the chain).
    let rest = pages - 1;
    (rest - 1).div_ceil(ENTRIES_PER_LIST - 1).max(1)
}

/// Build the PRP layout for a transfer of `len` bytes at IOVA-contiguous `iova`,
/// using `list_iovas` (page aligned) for any list pages.
pub fn build(iova: u64, len: usize, list_iovas: &[u64]) -> Result<PrpLayout, PrpError> {
    if len == 0 {
        return Err(PrpError::Empty);
    }
    if !iova.is_multiple_of(4) {
        return Err(PrpError::Unaligned(iova));
    }
    let pages = pages_spanned(iova, len);
    let first_page = iova - iova % PAGE_SIZE as u64;
    let page = |i: usize| first_page + (i * PAGE_SIZE) as u64;
    match pages {
        1 => {
            return Ok(PrpLayout {
                prp1: iova,
                prp2: 0,
                lists: Vec::new(),
            });
        }
        2 => {
            return Ok(PrpLayout {
                prp1: iova,
                prp2: page(1),
                lists: Vec::new(),
            });
        }
        _ => {}
    }
    let needed = list_pages_needed(iova, len);
    if list_iovas.len() < needed {
        return Err(PrpError::NotEnoughListPages {
            needed,
            given: list_iovas.len(),
        });
    }
    if let Some(&bad) = list_iovas[..needed]
        .iter()
        .find(|&&l| l % PAGE_SIZE as u64 != 0)
    {
        return Err(PrpError::UnalignedList(bad));
    }
    let mut lists = Vec::with_capacity(needed);
    let mut next = 1;
    for (k, &list_iova) in list_iovas[..needed].iter().enumerate() {
        let remaining = pages - next;
        let last = k + 1 == needed;
        let take = if last {
            remaining
        } else {
            ENTRIES_PER_LIST - 1
        };
        let mut entries: Vec<u64> = (next..next + take).map(page).collect();
        next += take;
        if !last {
            entries.push(list_iovas[k + 1]);
        }
        lists.push(PrpList {
            iova: list_iova,
            entries,
        });
    }
    Ok(PrpLayout {
        prp1: iova,
        prp2: list_iovas[0],
        lists,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// Walk a layout as a controller would and return the (address, length) segments.
    fn walk(layout: &PrpLayout, len: usize) -> Vec<(u64, usize)> {
        let lists: HashMap<u64, &Vec<u64>> =
            layout.lists.iter().map(|l| (l.iova, &l.entries)).collect();
        let ps = PAGE_SIZE as u64;
        let mut segs = Vec::new();
        let first = (ps - layout.prp1 % ps).min(len as u64) as usize;
        segs.push((layout.prp1, first));
        let mut left = len - first;
        if left == 0 {
            assert_eq!(layout.prp2, 0);
            return segs;
        }
        if left <= PAGE_SIZE {
            segs.push((layout.prp2, left));
            return segs;
        }
        let mut list = lists[&layout.prp2];
        let mut i = 0;
        while left > 0 {
            if i == ENTRIES_PER_LIST - 1 && left > PAGE_SIZE {
                list = lists[&list[i]];
                i = 0;
            }
            let n = left.min(PAGE_SIZE);
            assert_eq!(list[i] % ps, 0, "list entries are page aligned");
            segs.push((list[i], n));
            left -= n;
            i += 1;
        }
        assert_eq!(i, list.len(), "no unused entries in the last list");
        segs
    }

    fn list_iovas(n: usize) -> Vec<u64> {
        (0..n)
            .map(|i| 0x7000_0000 + (i * PAGE_SIZE) as u64)
            .collect()
    }

    proptest! {
        #[test]
        fn covers_exactly(off in (0u64..1024).prop_map(|x| x * 4), len in 1usize..(3 << 20)) {
            let iova = 0x10_0000 + off;
            let lists = list_iovas(list_pages_needed(iova, len));
            let layout = build(iova, len, &lists).unwrap();
            prop_assert_eq!(layout.lists.len(), lists.len());
            let segs = walk(&layout, len);
            let mut at = iova;
            for (addr, n) in segs {
                prop_assert_eq!(addr, at);
                at += n as u64;
            }
            prop_assert_eq!(at, iova + len as u64);
        }

        #[test]
        fn too_few_lists_rejected(len in (2 * PAGE_SIZE + 1)..(4 << 20)) {
            let needed = list_pages_needed(0, len);
            prop_assert!(needed >= 1);
            let r = build(0, len, &list_iovas(needed - 1));
            prop_assert!(
                matches!(r, Err(PrpError::NotEnoughListPages { .. })),
                "expected NotEnoughListPages, got {:?}",
                r
            );
        }
    }

    #[test]
    fn boundaries() {
        assert_eq!(list_pages_needed(0, PAGE_SIZE), 0);
        assert_eq!(list_pages_needed(0, 2 * PAGE_SIZE), 0);
        assert_eq!(list_pages_needed(4, 2 * PAGE_SIZE), 1);
        // 1 + 512 pages: exactly one full list.
        assert_eq!(list_pages_needed(0, 513 * PAGE_SIZE), 1);
        // 1 + 513 pages: a chain of two.
        assert_eq!(list_pages_needed(0, 514 * PAGE_SIZE), 2);
        assert_eq!(list_pages_needed(0, (1 + 511 * 2 + 1) * PAGE_SIZE), 2);
        assert_eq!(list_pages_needed(0, (1 + 511 * 2 + 2) * PAGE_SIZE), 3);
        let l = build(0x1000, 514 * PAGE_SIZE, &list_iovas(2)).unwrap();
        assert_eq!(l.lists[0].entries.len(), ENTRIES_PER_LIST);
        assert_eq!(l.lists[0].entries[511], l.lists[1].iova);
        assert_eq!(l.lists[1].entries.len(), 2);
        assert_eq!(build(2, 8, &[]), Err(PrpError::Unaligned(2)));
        assert_eq!(build(0, 0, &[]), Err(PrpError::Empty));
        assert_eq!(
            build(0, 3 * PAGE_SIZE, &[0x1001]),
            Err(PrpError::UnalignedList(0x1001))
        );
    }
}
