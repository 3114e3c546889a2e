//! AES-256-XTS (IEEE 1619 / NIST SP 800-38E) with a 4 KiB data unit.
//!
//! The data unit is the pool sector. The tweak of data unit `i` of an extent is
//! `(pool sector of the extent + i)` encoded as a 128-bit little-endian integer, so
//! the ciphertext of a sector depends only on the key, its pool address and its
//! plaintext: reconstruction and resilver rebuild bit-identical ciphertext without
//! keys.
//!
//! Batched implementation: for each data unit the whole sequence of 256 block tweaks
//! (`T * alpha^j` in GF(2^128)) is computed first, XORed into the unit, the unit is
//! encrypted with one `encrypt_blocks` call (which the `aes` crate pipelines 8 blocks
//! wide with AES-NI when `cpufeatures` detects it at run time), then XORed again. No
//! ciphertext stealing: data units are always whole multiples of 16 bytes.

use super::keys::MasterKey;
use aes::Aes256;
use aes::cipher::{Array, BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
use std::fmt;

/// XTS data unit: one pool sector.
pub const XTS_DATA_UNIT: usize = 4096;

/// AES block size.
const BLOCK: usize = 16;

/// AES-256-XTS keyed with a pool's master key.
#[derive(Clone)]
pub struct XtsCipher {
    /// Key 1: encrypts the data blocks.
    data: Aes256,
    /// Key 2: encrypts the tweak.
    tweak: Aes256,
}

impl fmt::Debug for XtsCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("XtsCipher { .. }")
    }
}

/// Multiply a tweak by alpha (x) in GF(2^128) with the XTS polynomial x^128+x^7+x^2+x+1,
/// on the little-endian integer view of the 16 tweak bytes.
#[inline(always)]
fn mul_alpha(t: u128) -> u128 {
    let carry = ((t >> 127) as u64).wrapping_neg() & 0x87;
    (t << 1) ^ u128::from(carry)
}

/// `RED8[h]` = h(x) * (x^7+x^2+x+1): what the 8 bits shifted out by a multiplication
/// by x^8 fold back into the low bits.
const RED8: [u16; 256] = {
    let mut t = [0u16; 256];
    let mut h = 0;
    while h < 256 {
        let mut r = 0u16;
        let mut i = 0;
        while i < 8 {
            if h & (1 << i) != 0 {
                r ^= 0x87 << i;
            }
            i += 1;
        }
        t[h] = r;
        h += 1;
    }
    t
};

/// Multiply a tweak by alpha^8 (one table lookup instead of eight shifts).
#[inline(always)]
fn mul_alpha8(t: u128) -> u128 {
    (t << 8) ^ u128::from(RED8[(t >> 120) as usize])
}

/// Independent tweak chains: block j's tweak is computed from block j-8's, so the
/// eight multiplications of a group do not wait on each other.
const LANES: usize = 8;

impl XtsCipher {
    /// The cipher for `key`: bytes 0..32 are the data key, 32..64 the tweak key.
    pub fn new(key: &MasterKey) -> Self {
        let (k1, k2) = key.xts_halves();
        Self::from_halves(k1, k2)
    }

    /// The cipher from its two raw AES-256 keys (data key, tweak key).
    pub fn from_halves(data_key: &[u8; 32], tweak_key: &[u8; 32]) -> Self {
        XtsCipher {
            data: Aes256::new(&Array(*data_key)),
            tweak: Aes256::new(&Array(*tweak_key)),
        }
    }

    /// Encrypt `buf` in place: 4 KiB data unit `i` gets tweak `first_sector + i`.
    ///
    /// # Panics
    /// If `buf.len()` is not a multiple of 4096 (a caller bug: extents are sector-padded).
    pub fn encrypt_sectors(&self, buf: &mut [u8], first_sector: u64) {
        self.crypt_units(buf, XTS_DATA_UNIT, u128::from(first_sector), true);
    }

    /// Decrypt `buf` in place; the inverse of [`XtsCipher::encrypt_sectors`].
    ///
    /// # Panics
    /// If `buf.len()` is not a multiple of 4096.
    pub fn decrypt_sectors(&self, buf: &mut [u8], first_sector: u64) {
        self.crypt_units(buf, XTS_DATA_UNIT, u128::from(first_sector), false);
    }

    /// Encrypt with an arbitrary data-unit size (a multiple of 16 bytes); unit `i`
    /// gets tweak `first_unit + i`. The pool uses 4096; other sizes serve the IEEE
    /// 1619 test vectors (512-byte units).
    ///
    /// # Panics
    /// If `unit` is 0 or not a multiple of 16, or `buf.len()` not a multiple of `unit`.
    pub fn encrypt_units(&self, buf: &mut [u8], unit: usize, first_unit: u128) {
        self.crypt_units(buf, unit, first_unit, true);
    }

    /// Decrypt with an arbitrary data-unit size; inverse of [`XtsCipher::encrypt_units`].
    ///
    /// # Panics
    /// As [`XtsCipher::encrypt_units`].
    pub fn decrypt_units(&self, buf: &mut [u8], unit: usize, first_unit: u128) {
        self.crypt_units(buf, unit, first_unit, false);
    }

    fn crypt_units(&self, buf: &mut [u8], unit: usize, first_unit: u128, encrypt: bool) {
        assert!(
            unit > 0 && unit.is_multiple_of(BLOCK) && buf.len().is_multiple_of(unit),
            "XTS buffer of {} bytes is not whole {}-byte data units",
            buf.len(),
            unit
        );
        let mut tweaks = [0u128; TWEAKS];
        for (i, chunk) in buf.chunks_exact_mut(unit).enumerate() {
            let index = first_unit.wrapping_add(i as u128);
            self.crypt_unit(chunk, index, encrypt, &mut tweaks);
        }
    }

    fn crypt_unit(&self, unit: &mut [u8], index: u128, encrypt: bool, tweaks: &mut [u128; TWEAKS]) {
        let mut t0 = Array(index.to_le_bytes());
        self.tweak.encrypt_block(&mut t0);
        let mut lanes = [0u128; LANES];
        lanes[0] = u128::from_le_bytes(t0.0);
        for i in 1..LANES {
            lanes[i] = mul_alpha(lanes[i - 1]);
        }
        for piece in unit.chunks_mut(XTS_DATA_UNIT) {
            let nblocks = piece.len() / BLOCK;
            // The tweak of every block, eight independent chains at a time.
            for group in tweaks[..nblocks].chunks_mut(LANES) {
                for (slot, lane) in group.iter_mut().zip(lanes.iter_mut()) {
                    *slot = *lane;
                    *lane = mul_alpha8(*lane);
                }
            }
            // A partial last group advanced every lane; only the last piece can be one.
            xor_tweaks(piece, &tweaks[..nblocks]);
            let (blocks, rest) = Array::slice_as_chunks_mut(piece);
            debug_assert!(rest.is_empty());
            if encrypt {
                self.data.encrypt_blocks(blocks);
            } else {
                self.data.decrypt_blocks(blocks);
            }
            xor_tweaks(piece, &tweaks[..nblocks]);
        }
    }
}

/// Tweaks per 4 KiB piece.
const TWEAKS: usize = XTS_DATA_UNIT / BLOCK;

/// XOR each 16-byte block of `data` with its tweak.
#[inline(always)]
fn xor_tweaks(data: &mut [u8], tweaks: &[u128]) {
    let (blocks, _) = data.as_chunks_mut::<BLOCK>();
    for (b, t) in blocks.iter_mut().zip(tweaks) {
        *b = (u128::from_le_bytes(*b) ^ t).to_le_bytes();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes::cipher::consts::U32;
    use proptest::prelude::*;
    use xts_mode::{Xts128, get_tweak_default};

    fn oracle(k1: &[u8; 32], k2: &[u8; 32]) -> Xts128<Aes256> {
        let a: Array<u8, U32> = Array(*k1);
        let b: Array<u8, U32> = Array(*k2);
        Xts128::new(Aes256::new(&a), Aes256::new(&b))
    }

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s).expect("test vector hex")
    }

    // IEEE 1619-2007 Annex B, vector 10: XTS-AES-256, 512-byte data unit, sequence 0xff.
    const V10_K1: &str = "2718281828459045235360287471352662497757247093699959574966967627";
    const V10_K2: &str = "3141592653589793238462643383279502884197169399375105820974944592";
    const V10_CT: &str = concat!(
        "1c3b3a102f770386e4836c99e370cf9bea00803f5e482357a4ae12d414a3e63b",
        "5d31e276f8fe4a8d66b317f9ac683f44680a86ac35adfc3345befecb4bb188fd",
        "5776926c49a3095eb108fd1098baec70aaa66999a72a82f27d848b21d4a741b0",
        "c5cd4d5fff9dac89aeba122961d03a757123e9870f8acf1000020887891429ca",
        "2a3e7a7d7df7b10355165c8b9a6d0a7de8b062c4500dc4cd120c0f7418dae3d0",
        "b5781c34803fa75421c790dfe1de1834f280d7667b327f6c8cd7557e12ac3a0f",
        "93ec05c52e0493ef31a12d3d9260f79a289d6a379bc70c50841473d1a8cc81ec",
        "583e9645e07b8d9670655ba5bbcfecc6dc3966380ad8fecb17b6ba02469a020a",
        "84e18e8f84252070c13e9f1f289be54fbc481457778f616015e1327a02b140f1",
        "505eb309326d68378f8374595c849d84f4c333ec4423885143cb47bd71c5edae",
        "9be69a2ffeceb1bec9de244fbe15992b11b77c040f12bd8f6a975a44a0f90c29",
        "a9abc3d4d893927284c58754cce294529f8614dcd2aba991925fedc4ae74ffac",
        "6e333b93eb4aff0479da9a410e4450e0dd7ae4c6e2910900575da401fc07059f",
        "645e8b7e9bfdef33943054ff84011493c27b3429eaedb4ed5376441a77ed4385",
        "1ad77f16f541dfd269d50d6a5f14fb0aab1cbb4c1550be97f7ab4066193c4caa",
        "773dad38014bd2092fa755c824bb5e54c4f36ffda9fcea70b9c6e693e148c151",
    );

    fn v10_cipher() -> XtsCipher {
        let k1: [u8; 32] = hex(V10_K1).try_into().unwrap();
        let k2: [u8; 32] = hex(V10_K2).try_into().unwrap();
        XtsCipher::from_halves(&k1, &k2)
    }

    fn v10_plain() -> Vec<u8> {
        (0..512u32).map(|i| i as u8).collect()
    }

    #[test]
    fn ieee1619_vector10_encrypt() {
        let mut buf = v10_plain();
        v10_cipher().encrypt_units(&mut buf, 512, 0xff);
        assert_eq!(hex::encode(&buf), V10_CT);
    }

    #[test]
    fn ieee1619_vector10_decrypt() {
        let mut buf = hex(V10_CT);
        v10_cipher().decrypt_units(&mut buf, 512, 0xff);
        assert_eq!(buf, v10_plain());
    }

    #[test]
    fn ieee1619_vector10_as_second_unit() {
        // Vector 10 placed as unit 1 of a two-unit buffer starting at 0xfe: the
        // per-unit tweak increment is right.
        let mut buf = vec![0u8; 512];
        buf.extend(v10_plain());
        v10_cipher().encrypt_units(&mut buf, 512, 0xfe);
        assert_eq!(hex::encode(&buf[512..]), V10_CT);
    }

    #[test]
    fn alpha8_is_eight_alphas() {
        let mut x = 0x8000_0000_0000_0000_0000_0000_0000_0001u128;
        for _ in 0..1000 {
            let mut y = x;
            for _ in 0..8 {
                y = mul_alpha(y);
            }
            assert_eq!(mul_alpha8(x), y);
            x = x
                .wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)
                .rotate_left(17)
                ^ 0xff;
        }
    }

    #[test]
    fn tweak_of_sector_is_little_endian_u128() {
        // Sector s with this cipher equals unit s of xts-mode with its default
        // (little-endian) tweak, including sectors beyond 2^32.
        let c = XtsCipher::from_halves(&[7; 32], &[9; 32]);
        let o = oracle(&[7; 32], &[9; 32]);
        let plain = vec![0xa5u8; XTS_DATA_UNIT];
        for s in [0u64, 1, 0xffff_ffff, 0x1_0000_0000, u64::MAX] {
            let mut a = plain.clone();
            c.encrypt_sectors(&mut a, s);
            let mut b = plain.clone();
            o.encrypt_sector(&mut b, get_tweak_default(u128::from(s)));
            assert_eq!(a, b, "sector {s}");
        }
    }

    proptest! {
        #![proptest_config(crate::testutil::proptest_config(48))]
        #[test]
        fn matches_xts_mode_oracle(
            k1 in any::<[u8; 32]>(),
            k2 in any::<[u8; 32]>(),
            sectors in 1usize..4,
            first in any::<u64>(),
            seed in any::<u64>(),
        ) {
            use rand::{RngCore, SeedableRng};
            let mut data = vec![0u8; sectors * XTS_DATA_UNIT];
            rand_chacha::ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut data);
            let c = XtsCipher::from_halves(&k1, &k2);
            let o = oracle(&k1, &k2);
            let first = first >> 2; // keep first + sectors in u64
            let mut ours = data.clone();
            c.encrypt_sectors(&mut ours, first);
            let mut theirs = data.clone();
            o.encrypt_area(&mut theirs, XTS_DATA_UNIT, u128::from(first), get_tweak_default);
            prop_assert_eq!(&ours, &theirs);
            c.decrypt_sectors(&mut ours, first);
            prop_assert_eq!(ours, data);
        }
    }
}
