//! Extent compression: zstd, kept only when it pays, with a cheap bail-out for
//! incompressible data.
//!
//! Policy (DESIGN.md, pool invariant 3):
//! - a record is compressed with zstd at the configured level (default 1);
//! - the result is kept only if its frame is at most 7/8 of the input (it saves at
//!   least 1/8) *and* it needs fewer 4 KiB sectors than the raw record (otherwise
//!   the space saved is zero after sector padding and decompression would be pure cost);
//! - before compressing, a sample of the record (4 windows spread across it, 2 KiB in
//!   all) is tested: if the sample's collision entropy (Rényi-2, a lower bound on the
//!   Shannon entropy) is at least 7.5 bits per byte, no order-0 coder can save 1/8 and
//!   the record is stored raw without running zstd. Random or already-compressed data
//!   costs a histogram of 2 KiB per record.
//!
//! On-disk framing: a compressed payload is exactly one standard zstd frame (RFC 8878,
//! content size in the header, no frame checksum) of `psize` bytes, followed by zero
//! padding up to the next 4 KiB. An uncompressed payload is the logical bytes.

use std::cell::RefCell;

/// The pool sector: unit of allocation, of padding and of the XTS data unit.
pub const SECTOR_SIZE: usize = 4096;

/// Largest logical or stored extent the codec accepts (bounds allocations driven by
/// sizes read from disk).
pub const MAX_EXTENT_BYTES: usize = 16 << 20;

/// Bytes sampled by the incompressibility test.
const SAMPLE_BYTES: usize = 2048;
/// Number of windows the sample is taken from.
const SAMPLE_WINDOWS: usize = 4;
/// Records shorter than this skip the sampling test and go straight to zstd.
const SAMPLE_MIN_LEN: usize = 2 * SAMPLE_BYTES;

/// What the pool is configured to do with new extents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Store every extent raw.
    Off,
    /// zstd at `level` (1 = fastest useful level; negative levels are zstd's "fast" modes).
    Zstd {
        /// zstd compression level.
        level: i32,
    },
}

impl Default for Compression {
    fn default() -> Self {
        Compression::Zstd { level: 1 }
    }
}

/// How one stored extent is compressed (recorded in its block pointer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompressionKind {
    /// Payload is the logical bytes.
    None,
    /// Payload is one zstd frame.
    Zstd,
}

impl CompressionKind {
    /// The on-disk code: 0 = none, 1 = zstd.
    pub fn code(self) -> u8 {
        match self {
            CompressionKind::None => 0,
            CompressionKind::Zstd => 1,
        }
    }

    /// Parse an on-disk code.
    pub fn from_code(code: u8) -> Result<Self, CompressError> {
        match code {
            0 => Ok(CompressionKind::None),
            1 => Ok(CompressionKind::Zstd),
            other => Err(CompressError::UnknownKind(other)),
        }
    }
}

/// Why a payload could not be turned back into logical bytes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CompressError {
    /// An unknown compression code.
    #[error("unknown compression kind code {0}")]
    UnknownKind(u8),
    /// A size is larger than the codec accepts.
    #[error("{what} of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Which size.
        what: &'static str,
        /// The size asked for.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// An uncompressed payload shorter than the logical size.
    #[error("raw payload of {psize} bytes cannot hold logical size {lsize}")]
    RawTooShort {
        /// Payload bytes.
        psize: usize,
        /// Logical bytes expected.
        lsize: usize,
    },
    /// zstd rejected the frame.
    #[error("zstd frame of {psize} bytes is corrupt: {source}")]
    Corrupt {
        /// Payload bytes.
        psize: usize,
        /// What zstd said.
        #[source]
        source: std::io::Error,
    },
    /// The frame decompressed to a different size than the block pointer says.
    #[error("zstd frame decompressed to {actual} bytes, expected {expected}")]
    SizeMismatch {
        /// Logical size from the block pointer.
        expected: usize,
        /// Bytes produced.
        actual: usize,
    },
}

/// Round `n` up to a multiple of [`SECTOR_SIZE`].
pub fn round_up_sector(n: usize) -> usize {
    n.div_ceil(SECTOR_SIZE) * SECTOR_SIZE
}

/// True if a sample of `data` is so close to uniformly random that compression
/// cannot save 1/8 (see the module docs). Data shorter than 4 KiB is never judged.
pub fn looks_incompressible(data: &[u8]) -> bool {
    if data.len() < SAMPLE_MIN_LEN {
        return false;
    }
    let window = SAMPLE_BYTES / SAMPLE_WINDOWS;
    let stride = (data.len() - window) / (SAMPLE_WINDOWS - 1);
    // Four interleaved histograms avoid store-to-load stalls on repeated bytes.
    let mut hist = [[0u32; 256]; 4];
    for w in 0..SAMPLE_WINDOWS {
        let start = w * stride;
        for quad in data[start..start + window].chunks_exact(4) {
            hist[0][usize::from(quad[0])] += 1;
            hist[1][usize::from(quad[1])] += 1;
            hist[2][usize::from(quad[2])] += 1;
            hist[3][usize::from(quad[3])] += 1;
        }
    }
    let mut sum_sq: u64 = 0;
    let [h0, h1, h2, h3] = &hist;
    for (((a, b), c), d) in h0.iter().zip(h1).zip(h2).zip(h3) {
        let n = u64::from(a + b + c + d);
        sum_sq += n * n;
    }
    // Collision entropy H2 = -log2(sum p^2) >= 7.5  <=>  sum c^2 <= n^2 * 2^-7.5.
    let n = SAMPLE_BYTES as f64;
    (sum_sq as f64) <= n * n * (-7.5f64).exp2()
}

thread_local! {
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

/// Compress `data` with zstd at `level` if the frame fits in `max_len` bytes.
///
/// Returns the frame in a vector whose capacity is already rounded to a sector, or
/// `None` when it does not fit (or zstd failed, which leaves the record raw).
pub(crate) fn zstd_bounded(data: &[u8], level: i32, max_len: usize) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(round_up_sector(max_len.max(1)));
    let result = COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            *slot = Some((level, zstd::bulk::Compressor::new(level)?));
        }
        let (_, c) = slot
            .as_mut()
            .ok_or_else(|| std::io::Error::other("no compressor"))?;
        c.compress_to_buffer(data, &mut out)
    });
    match result {
        Ok(n) if n <= max_len => Some(out),
        Ok(_) => None,
        Err(e) => {
            // "Destination buffer is too small" is the normal "does not pay" path.
            tracing::trace!(error = %e, len = data.len(), "zstd: record left raw");
            None
        }
    }
}

/// Turn a payload back into exactly `lsize` logical bytes.
///
/// `payload` is the stored payload without its sector padding (`psize` bytes).
pub fn decompress(
    kind: CompressionKind,
    payload: &[u8],
    lsize: usize,
) -> Result<Vec<u8>, CompressError> {
    if lsize > MAX_EXTENT_BYTES {
        return Err(CompressError::TooLarge {
            what: "logical size",
            size: lsize,
            limit: MAX_EXTENT_BYTES,
        });
    }
    match kind {
        CompressionKind::None => {
            if payload.len() < lsize {
                return Err(CompressError::RawTooShort {
                    psize: payload.len(),
                    lsize,
                });
            }
            Ok(payload[..lsize].to_vec())
        }
        CompressionKind::Zstd => {
            let mut out = Vec::with_capacity(lsize);
            let n = DECOMPRESSOR
                .with(|cell| {
                    let mut slot = cell.borrow_mut();
                    if slot.is_none() {
                        *slot = Some(zstd::bulk::Decompressor::new()?);
                    }
                    let d = slot
                        .as_mut()
                        .ok_or_else(|| std::io::Error::other("no decompressor"))?;
                    d.decompress_to_buffer(payload, &mut out)
                })
                .map_err(|source| CompressError::Corrupt {
                    psize: payload.len(),
                    source,
                })?;
            if n != lsize {
                return Err(CompressError::SizeMismatch {
                    expected: lsize,
                    actual: n,
                });
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngCore, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random(len: usize, seed: u64) -> Vec<u8> {
        let mut v = vec![0u8; len];
        ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut v);
        v
    }

    fn text(len: usize) -> Vec<u8> {
        let words = ["pool ", "extent ", "sector ", "parity ", "zstd ", "tree\n"];
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let mut v = Vec::with_capacity(len + 8);
        while v.len() < len {
            v.extend_from_slice(words[(rng.next_u32() % 6) as usize].as_bytes());
        }
        v.truncate(len);
        v
    }

    #[test]
    fn random_is_judged_incompressible_text_is_not() {
        for seed in 0..20 {
            assert!(looks_incompressible(&random(128 << 10, seed)));
            assert!(looks_incompressible(&random(4096, seed)));
        }
        assert!(!looks_incompressible(&text(128 << 10)));
        assert!(!looks_incompressible(&vec![0u8; 8192]));
        // Too short to judge.
        assert!(!looks_incompressible(&random(4095, 1)));
    }

    #[test]
    fn zstd_roundtrip_and_bound() {
        let t = text(64 << 10);
        let frame = zstd_bounded(&t, 1, t.len() * 7 / 8).expect("text compresses");
        assert!(frame.capacity().is_multiple_of(SECTOR_SIZE));
        let back = decompress(CompressionKind::Zstd, &frame, t.len()).unwrap();
        assert_eq!(back, t);
        // Random data does not fit in 7/8.
        let r = random(64 << 10, 3);
        assert!(zstd_bounded(&r, 1, r.len() * 7 / 8).is_none());
    }

    #[test]
    fn wrong_size_and_garbage_are_errors() {
        let t = text(10_000);
        let frame = zstd_bounded(&t, 3, t.len()).unwrap();
        assert!(matches!(
            decompress(CompressionKind::Zstd, &frame, t.len() - 1),
            Err(CompressError::Corrupt { .. }) | Err(CompressError::SizeMismatch { .. })
        ));
        assert!(matches!(
            decompress(CompressionKind::Zstd, &frame, t.len() + 1),
            Err(CompressError::SizeMismatch { .. })
        ));
        assert!(decompress(CompressionKind::Zstd, &random(4096, 5), 4096).is_err());
        assert!(decompress(CompressionKind::Zstd, &frame[..frame.len() / 2], t.len()).is_err());
        assert!(matches!(
            decompress(CompressionKind::None, &t[..100], 200),
            Err(CompressError::RawTooShort { .. })
        ));
        assert!(matches!(
            decompress(CompressionKind::None, &t, MAX_EXTENT_BYTES + 1),
            Err(CompressError::TooLarge { .. })
        ));
    }

    #[test]
    fn kind_codes() {
        for k in [CompressionKind::None, CompressionKind::Zstd] {
            assert_eq!(CompressionKind::from_code(k.code()).unwrap(), k);
        }
        assert!(matches!(
            CompressionKind::from_code(7),
            Err(CompressError::UnknownKind(7))
        ));
    }
}
