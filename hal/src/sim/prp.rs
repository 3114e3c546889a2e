//! PRP walking: turn a command's PRP1/PRP2 into the list of IOVA segments it names.
//!
//! Rules (NVMe base spec, "Physical Region Page Entry and List"): PRP1 may carry a
//! dword-aligned offset into its page; every later data entry must be page-aligned;
//! when the transfer needs more than two pages PRP2 points at a PRP list (qword
//! aligned), and the last entry of a full list page chains to the next list page.
//! List pages are read through the IOMMU like any other DMA.

use super::iommu::SimIommu;

/// Why a PRP walk failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PrpError {
    /// An entry has an offset the rules forbid (Invalid PRP Offset).
    InvalidOffset,
    /// A PRP list could not be read (Data Transfer Error; the IOMMU recorded the fault).
    Dma,
}

/// The `(iova, len)` segments of a `len`-byte transfer described by `prp1`/`prp2`.
pub(super) fn segments(
    iommu: &SimIommu,
    prp1: u64,
    prp2: u64,
    len: usize,
    page: usize,
) -> Result<Vec<(u64, usize)>, PrpError> {
    let page_u = page as u64;
    let mut segs = Vec::with_capacity(len / page + 2);
    if len == 0 {
        return Ok(segs);
    }
    if prp1 & 0b11 != 0 {
        return Err(PrpError::InvalidOffset);
    }
    let first = len.min(page - (prp1 % page_u) as usize);
    segs.push((prp1, first));
    let mut rem = len - first;
    if rem == 0 {
        return Ok(segs);
    }
    if rem <= page {
        if !prp2.is_multiple_of(page_u) {
            return Err(PrpError::InvalidOffset);
        }
        segs.push((prp2, rem));
        return Ok(segs);
    }
    if prp2 & 0b111 != 0 {
        return Err(PrpError::InvalidOffset);
    }
    let mut list = prp2;
    let mut raw = vec![0u8; page];
    while rem > 0 {
        let slots = (page - (list % page_u) as usize) / 8;
        let needed = rem.div_ceil(page);
        let (entries, chain) = if needed <= slots {
            (needed, false)
        } else {
            (slots - 1, true)
        };
        let read = 8 * (entries + usize::from(chain));
        iommu
            .read(list, &mut raw[..read], "PRP list")
            .map_err(|_| PrpError::Dma)?;
        let entry = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&raw[8 * i..8 * i + 8]);
            u64::from_le_bytes(b)
        };
        for i in 0..entries {
            let e = entry(i);
            if !e.is_multiple_of(page_u) {
                return Err(PrpError::InvalidOffset);
            }
            let take = rem.min(page);
            segs.push((e, take));
            rem -= take;
        }
        if chain {
            list = entry(entries);
            if !list.is_multiple_of(page_u) {
                return Err(PrpError::InvalidOffset);
            }
        }
    }
    Ok(segs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dma::DmaBuffer;
    use std::sync::Arc;

    const P: usize = 4096;

    #[test]
    fn single_double_and_list() {
        let iommu = Arc::new(SimIommu::new());
        assert_eq!(
            segments(&iommu, 0x1000_0010, 0, 100, P).unwrap(),
            vec![(0x1000_0010, 100)]
        );
        assert_eq!(
            segments(&iommu, 0x1000_0800, 0x2000_0000, 4096, P).unwrap(),
            vec![(0x1000_0800, 2048), (0x2000_0000, 2048)]
        );
        assert_eq!(
            segments(&iommu, 0x1000_0002, 0, 8, P),
            Err(PrpError::InvalidOffset)
        );
        assert_eq!(
            segments(&iommu, 0x1000_0000, 0x2000_0200, 8192, P),
            Err(PrpError::InvalidOffset)
        );
        // A list that starts 16 bytes before the end of its page: one entry, then a chain.
        let mut lists = DmaBuffer::alloc(iommu.clone(), 2 * P).unwrap();
        let base = lists.iova();
        lists.write_at(P - 16, &0xa000u64.to_le_bytes());
        lists.write_at(P - 8, &(base + P as u64).to_le_bytes());
        lists.write_at(P, &0xb000u64.to_le_bytes());
        lists.write_at(P + 8, &0xc000u64.to_le_bytes());
        let segs = segments(&iommu, 0x9000, base + P as u64 - 16, 4 * P - 100, P).unwrap();
        assert_eq!(
            segs,
            vec![(0x9000, P), (0xa000, P), (0xb000, P), (0xc000, P - 100)]
        );
        // Unmapped list pointer.
        assert_eq!(
            segments(&iommu, 0x9000, 0x5000_0000, 3 * P, P),
            Err(PrpError::Dma)
        );
        assert_eq!(iommu.fault_count(), 1);
    }
}
