//! crc32c over stored bytes: the checksum a block pointer carries for its extent.
//!
//! Computed over exactly what lies on the devices (after compression and
//! encryption), so scrub and resilver verify ciphertext without keys. The work is
//! done by the `crc-fast` crate (CRC-32/ISCSI, which is crc32c): it picks at run
//! time the fastest kernel the CPU has (AVX-512 VPCLMULQDQ fused with the SSE4.2
//! crc32 instruction, AVX-512/SSE PCLMULQDQ, ARMv8 CRC+PMULL) and falls back to a
//! portable table implementation. The `crc32c` crate is the oracle of the tests.

use crc_fast::CrcAlgorithm::Crc32Iscsi;

/// crc32c (Castagnoli) of `data`.
#[inline]
pub fn crc32c(data: &[u8]) -> u32 {
    crc_fast::crc32_iscsi(data)
}

/// Continue a crc32c over more bytes: `crc32c_append(crc32c(a), b) == crc32c(a ++ b)`.
#[inline]
pub fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    // The digest's state is the running register, i.e. the finished crc without
    // the final xor (0xffff_ffff for crc32c).
    let mut d = crc_fast::Digest::new_with_init_state(Crc32Iscsi, u64::from(!crc));
    d.update(data);
    d.finalize() as u32
}

/// An incremental crc32c over bytes fed in pieces (e.g. each 4 KiB unit right after
/// it was encrypted, while it is still in L1).
#[derive(Clone)]
pub struct Crc32c(crc_fast::Digest);

impl std::fmt::Debug for Crc32c {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Crc32c").field(&self.finish()).finish()
    }
}

impl Default for Crc32c {
    fn default() -> Self {
        Self::new()
    }
}

impl Crc32c {
    /// The crc32c of no bytes so far.
    pub fn new() -> Self {
        Crc32c(crc_fast::Digest::new(Crc32Iscsi))
    }

    /// Feed the next bytes.
    #[inline]
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// crc32c of all bytes fed so far.
    pub fn finish(&self) -> u32 {
        self.0.finalize() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{RngCore, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn known_vectors() {
        // RFC 3720 B.4 test vectors.
        assert_eq!(crc32c(&[0u8; 32]), 0x8a91_36aa);
        assert_eq!(crc32c(&[0xffu8; 32]), 0x62a8_ab43);
        let inc: Vec<u8> = (0u8..32).collect();
        assert_eq!(crc32c(&inc), 0x46dd_794e);
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c(&[]), 0);
        assert_eq!(Crc32c::new().finish(), 0);
    }

    #[test]
    fn append_matches_whole() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + 3) as u8).collect();
        let (a, b) = data.split_at(4567);
        assert_eq!(crc32c_append(crc32c(a), b), crc32c(&data));
    }

    #[test]
    fn record_sizes_match_oracle() {
        // Every extent size the pipeline produces, at every offset within 64 bytes.
        let mut buf = vec![0u8; (128 << 10) + 64];
        ChaCha8Rng::seed_from_u64(9).fill_bytes(&mut buf);
        for sectors in [1usize, 2, 3, 8, 31, 32] {
            for off in [0usize, 1, 7, 16, 33, 63] {
                let d = &buf[off..off + sectors * 4096];
                assert_eq!(crc32c(d), crc32c::crc32c(d), "{sectors} sectors at +{off}");
            }
        }
    }

    proptest! {
        #![proptest_config(crate::testutil::proptest_config(256))]
        /// Any length, alignment and split: one call, append and the incremental
        /// state all equal the `crc32c` crate.
        #[test]
        fn matches_crc32c_crate(
            len in 0usize..20_000,
            offset in 0usize..64,
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
            seed in any::<u64>(),
            prior in any::<u32>(),
        ) {
            let mut buf = vec![0u8; len + offset];
            ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut buf);
            let data = &buf[offset..];
            let want = crc32c::crc32c(data);
            prop_assert_eq!(crc32c(data), want);
            prop_assert_eq!(crc32c_append(prior, data), crc32c::crc32c_append(prior, data));
            let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(len + 1)).collect();
            cuts.sort_unstable();
            let mut inc = Crc32c::new();
            let mut crc = 0;
            let mut at = 0;
            for c in cuts.into_iter().chain([len]) {
                inc.update(&data[at..c]);
                crc = crc32c_append(crc, &data[at..c]);
                at = c;
            }
            prop_assert_eq!(inc.finish(), want);
            prop_assert_eq!(crc, want);
        }
    }
}
