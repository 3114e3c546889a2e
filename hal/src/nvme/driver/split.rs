//! Transfer-size limits: the per-command byte limit from MDTS and configuration, and the
//! splitting of a large request into commands that respect it.

use crate::dma::PAGE_SIZE;

/// Most logical blocks one Read/Write/Write Zeroes carries (16-bit 0-based NLB).
pub const MAX_NLB: u64 = 1 << 16;

/// Bytes per command: the configured cap and MDTS (2^mdts units of CAP.MPSMIN; 0 = no
/// limit), rounded down to whole pages, at least one page.
pub fn max_transfer(configured: u32, mps_min: u64, mdts: u8) -> usize {
    let mdts_bytes = match mdts {
        0 => u64::MAX,
        m => mps_min.checked_shl(u32::from(m)).unwrap_or(u64::MAX),
    };
    let bytes = u64::from(configured).min(mdts_bytes) as usize;
    (bytes / PAGE_SIZE * PAGE_SIZE).max(PAGE_SIZE)
}

/// Bytes per data command for `block_size` blocks: a block multiple within `max_transfer`
/// and the NLB field; 0 if not even one block fits.
pub fn chunk_bytes(max_transfer: usize, block_size: u32) -> usize {
    let bs = block_size as usize;
    if bs == 0 {
        return 0;
    }
    (max_transfer / bs * bs).min(MAX_NLB as usize * bs)
}

/// Split `len` bytes into `(start, len)` pieces of at most `chunk` bytes (`chunk` > 0).
pub fn split(len: usize, chunk: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..len.div_ceil(chunk)).map(move |i| {
        let start = i * chunk;
        (start, chunk.min(len - start))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn mdts_limits() {
        assert_eq!(max_transfer(1 << 20, 4096, 0), 1 << 20, "MDTS 0: no limit");
        assert_eq!(max_transfer(1 << 20, 4096, 5), 128 << 10);
        assert_eq!(max_transfer(1 << 20, 4096, 1), 8192);
        assert_eq!(max_transfer(100, 4096, 0), 4096, "at least a page");
        assert_eq!(
            max_transfer(u32::MAX, 4096, 200),
            (u32::MAX as usize) / 4096 * 4096
        );
        assert_eq!(chunk_bytes(8192, 4096), 8192);
        assert_eq!(chunk_bytes(8192, 512), 8192);
        assert_eq!(chunk_bytes(4096, 8192), 0);
        assert_eq!(
            chunk_bytes(1 << 30, 512),
            (1 << 16) * 512,
            "NLB field bound"
        );
    }

    proptest! {
        #[test]
        fn split_covers(len in 0usize..(1 << 22), mdts in 0u8..8, bs_shift in 9u32..13) {
            let bs = 1u32 << bs_shift;
            let len = len / bs as usize * bs as usize;
            let chunk = chunk_bytes(max_transfer(1 << 20, 4096, mdts), bs);
            prop_assert!(chunk > 0 && chunk.is_multiple_of(bs as usize));
            let mut at = 0;
            for (start, n) in split(len, chunk) {
                prop_assert_eq!(start, at);
                prop_assert!(n > 0 && n <= chunk && n.is_multiple_of(bs as usize));
                at += n;
            }
            prop_assert_eq!(at, len);
        }
    }
}
