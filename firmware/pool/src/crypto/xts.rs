//! AES-256-XTS (IEEE 1619 / NIST SP 800-38E) with a 4 KiB data unit.
//!
//! The data unit is the pool sector. The tweak of data unit `i` of an extent is
//! `(pool sector of the extent + i)` encoded as a 128-bit little-endian integer, so
//! the ciphertext of a sector depends only on the key, its pool address and its
//! plaintext: reconstruction and resilver rebuild bit-identical ciphertext without
//! keys.
//!
//! Two implementations, chosen when the cipher is built ([`XtsPath`]):
//! - on x86 CPUs with AES-NI, `ingot_hal::cpu::xts` (this crate forbids `unsafe`, so
//!   the SIMD kernels live in the hal): VAES on 512-bit vectors with AVX-512, VAES on
//!   256-bit vectors with AVX2, or AES-NI, whichever is fastest here, with the tweaks
//!   advanced in vector registers (about 15 GB/s per core with VAES-512 where this was
//!   measured);
//! - elsewhere, the portable batched form: for each data unit the whole sequence of
//!   256 block tweaks (`T * alpha^j` in GF(2^128)) is computed first, XORed into the
//!   unit, the unit is encrypted with one `encrypt_blocks` call of the `aes` crate
//!   (which picks AES-NI/VAES or its constant-time software AES at run time), then
//!   XORed again.
//!
//! Both give the same bytes (tested against each other, against `xts-mode` and the
//! IEEE 1619 vectors). No ciphertext stealing: data units are always whole multiples
//! of 16 bytes. Round keys are zeroized on drop on both paths.

use super::keys::MasterKey;
use aes::Aes256;
use aes::cipher::{Array, BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
use ingot_hal::cpu::xts::{XtsAes256, XtsBackend};
use std::fmt;

/// XTS data unit: one pool sector.
pub const XTS_DATA_UNIT: usize = 4096;

/// AES block size.
const BLOCK: usize = 16;

/// Which implementation encrypts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum XtsPath {
    /// `ingot_hal` VAES kernel on 512-bit vectors (AVX-512).
    Vaes512,
    /// `ingot_hal` VAES kernel on 256-bit vectors (AVX2).
    Vaes256,
    /// `ingot_hal` AES-NI kernel.
    AesNi,
    /// Portable batched form over the `aes` crate.
    Batched,
}

impl XtsPath {
    /// Every path, in the order [`XtsCipher::new`] prefers them.
    pub const ALL: [XtsPath; 4] = [
        XtsPath::Vaes512,
        XtsPath::Vaes256,
        XtsPath::AesNi,
        XtsPath::Batched,
    ];

    fn hal_backend(self) -> Option<XtsBackend> {
        match self {
            XtsPath::Vaes512 => Some(XtsBackend::Vaes512),
            XtsPath::Vaes256 => Some(XtsBackend::Vaes256),
            XtsPath::AesNi => Some(XtsBackend::AesNi),
            XtsPath::Batched => None,
        }
    }

    /// True if this CPU can run the path (the batched path runs everywhere).
    pub fn is_supported(self) -> bool {
        self.hal_backend().is_none_or(XtsBackend::is_supported)
    }

    /// A short name for logs and benchmarks.
    pub fn name(self) -> &'static str {
        self.hal_backend()
            .map_or("batched-aes-crate", XtsBackend::name)
    }
}

/// AES-256-XTS keyed with a pool's master key.
#[derive(Clone)]
pub struct XtsCipher {
    engine: Engine,
}

#[derive(Clone)]
enum Engine {
    /// A SIMD kernel of the hal (its round keys zeroize on drop).
    Hal(XtsAes256),
    /// The portable batched form (the `aes` crate's `zeroize` feature clears its keys).
    Batched(Box<Batched>),
}

/// The two AES-256 keys of the portable path.
#[derive(Clone)]
struct Batched {
    /// Key 1: encrypts the data blocks.
    data: Aes256,
    /// Key 2: encrypts the tweak.
    tweak: Aes256,
}

impl fmt::Debug for XtsCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XtsCipher")
            .field("path", &self.path())
            .finish_non_exhaustive()
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

    /// The cipher from its two raw AES-256 keys (data key, tweak key), on the fastest
    /// path this CPU supports.
    pub fn from_halves(data_key: &[u8; 32], tweak_key: &[u8; 32]) -> Self {
        let engine = match XtsAes256::new(data_key, tweak_key) {
            Some(hal) => Engine::Hal(hal),
            None => Engine::Batched(Box::new(Batched {
                data: Aes256::new(&Array(*data_key)),
                tweak: Aes256::new(&Array(*tweak_key)),
            })),
        };
        XtsCipher { engine }
    }

    /// The cipher on a chosen path (tests and benchmarks); `None` if this CPU cannot
    /// run it.
    pub fn with_path(data_key: &[u8; 32], tweak_key: &[u8; 32], path: XtsPath) -> Option<Self> {
        let engine = match path.hal_backend() {
            Some(b) => Engine::Hal(XtsAes256::with_backend(data_key, tweak_key, b)?),
            None => Engine::Batched(Box::new(Batched {
                data: Aes256::new(&Array(*data_key)),
                tweak: Aes256::new(&Array(*tweak_key)),
            })),
        };
        Some(XtsCipher { engine })
    }

    /// The implementation in use.
    pub fn path(&self) -> XtsPath {
        match &self.engine {
            Engine::Hal(h) => match h.backend() {
                XtsBackend::Vaes512 => XtsPath::Vaes512,
                XtsBackend::Vaes256 => XtsPath::Vaes256,
                XtsBackend::AesNi => XtsPath::AesNi,
            },
            Engine::Batched(_) => XtsPath::Batched,
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

    /// Encrypt `src` and append the ciphertext to `out`: the bytes
    /// [`XtsCipher::encrypt_units`] gives a copy of `src`, without the copy on the hal's
    /// VAES-512 path (read once, written once, no zero fill).
    ///
    /// # Panics
    /// As [`XtsCipher::encrypt_units`], on `src.len()`.
    pub fn encrypt_units_append(
        &self,
        src: &[u8],
        out: &mut Vec<u8>,
        unit: usize,
        first_unit: u128,
    ) {
        match &self.engine {
            Engine::Hal(h) => h.encrypt_units_append(src, out, unit, first_unit),
            Engine::Batched(_) => {
                let start = out.len();
                out.extend_from_slice(src);
                self.crypt_units(&mut out[start..], unit, first_unit, true);
            }
        }
    }

    /// True if [`XtsCipher::encrypt_units_append_crc32c`] computes the crc32c inside the
    /// encryption loop for `unit`-byte data units (the hal VAES-512 kernel), so the
    /// stored bytes are not read again for their checksum.
    pub fn fuses_crc32c(&self, unit: usize) -> bool {
        match &self.engine {
            Engine::Hal(h) => h.fuses_crc32c(unit),
            Engine::Batched(_) => false,
        }
    }

    /// [`XtsCipher::encrypt_units_append`], returning the crc32c continued from `crc`
    /// (the crc32c of earlier bytes, 0 for none) over the ciphertext appended. Folded
    /// into the encryption loop where [`XtsCipher::fuses_crc32c`]; otherwise the
    /// appended bytes are checksummed right after they were encrypted.
    ///
    /// # Panics
    /// As [`XtsCipher::encrypt_units`], on `src.len()`.
    pub fn encrypt_units_append_crc32c(
        &self,
        src: &[u8],
        out: &mut Vec<u8>,
        unit: usize,
        first_unit: u128,
        crc: u32,
    ) -> u32 {
        let start = out.len();
        if let Engine::Hal(h) = &self.engine
            && let Some(c) = h.encrypt_units_append_crc32c(src, out, unit, first_unit, crc)
        {
            return c;
        }
        if out.len() == start {
            self.encrypt_units_append(src, out, unit, first_unit);
        }
        crate::checksum::crc32c_append(crc, &out[start..])
    }

    /// [`XtsCipher::encrypt_units_append_crc32c`] that also writes the XOR parity (RAID
    /// P) of the ciphertext columns starting at data units `column_starts` into
    /// `parity`, all in the encryption loop (see
    /// `ingot_hal::cpu::xts::XtsAes256::encrypt_units_append_crc32c_parity`). `None`,
    /// having done nothing, where the crc32c is not fused.
    ///
    /// # Panics
    /// As [`XtsCipher::encrypt_units`], on `src.len()`, and on columns the kernel
    /// refuses (not starting at 0, not increasing, one longer than the first).
    #[allow(clippy::too_many_arguments)]
    pub fn encrypt_units_append_crc32c_parity(
        &self,
        src: &[u8],
        out: &mut Vec<u8>,
        unit: usize,
        first_unit: u128,
        crc: u32,
        parity: &mut Vec<u8>,
        column_starts: &[usize],
    ) -> Option<u32> {
        match &self.engine {
            Engine::Hal(h) => h.encrypt_units_append_crc32c_parity(
                src,
                out,
                unit,
                first_unit,
                crc,
                parity,
                column_starts,
            ),
            Engine::Batched(_) => None,
        }
    }

    fn crypt_units(&self, buf: &mut [u8], unit: usize, first_unit: u128, encrypt: bool) {
        assert!(
            unit > 0 && unit.is_multiple_of(BLOCK) && buf.len().is_multiple_of(unit),
            "XTS buffer of {} bytes is not whole {}-byte data units",
            buf.len(),
            unit
        );
        match &self.engine {
            Engine::Hal(h) if encrypt => h.encrypt_units(buf, unit, first_unit),
            Engine::Hal(h) => h.decrypt_units(buf, unit, first_unit),
            Engine::Batched(b) => b.crypt_units(buf, unit, first_unit, encrypt),
        }
    }
}

impl Batched {
    fn crypt_units(&self, buf: &mut [u8], unit: usize, first_unit: u128, encrypt: bool) {
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

    fn v10_keys() -> ([u8; 32], [u8; 32]) {
        (
            hex(V10_K1).try_into().unwrap(),
            hex(V10_K2).try_into().unwrap(),
        )
    }

    /// The cipher on every path this CPU supports (always at least `Batched`).
    fn every_path(k1: &[u8; 32], k2: &[u8; 32]) -> Vec<XtsCipher> {
        let v: Vec<XtsCipher> = XtsPath::ALL
            .into_iter()
            .filter_map(|p| XtsCipher::with_path(k1, k2, p))
            .collect();
        assert_eq!(
            v.len(),
            XtsPath::ALL.iter().filter(|p| p.is_supported()).count()
        );
        assert!(v.iter().any(|c| c.path() == XtsPath::Batched));
        v
    }

    fn v10_plain() -> Vec<u8> {
        (0..512u32).map(|i| i as u8).collect()
    }

    #[test]
    fn ieee1619_vector10_encrypt_every_path() {
        let (k1, k2) = v10_keys();
        for c in every_path(&k1, &k2) {
            let mut buf = v10_plain();
            c.encrypt_units(&mut buf, 512, 0xff);
            assert_eq!(hex::encode(&buf), V10_CT, "{:?}", c.path());
        }
    }

    #[test]
    fn ieee1619_vector10_decrypt_every_path() {
        let (k1, k2) = v10_keys();
        for c in every_path(&k1, &k2) {
            let mut buf = hex(V10_CT);
            c.decrypt_units(&mut buf, 512, 0xff);
            assert_eq!(buf, v10_plain(), "{:?}", c.path());
        }
    }

    #[test]
    fn ieee1619_vector10_as_second_unit() {
        // Vector 10 placed as unit 1 of a two-unit buffer starting at 0xfe: the
        // per-unit tweak increment is right.
        let (k1, k2) = v10_keys();
        for c in every_path(&k1, &k2) {
            let mut buf = vec![0u8; 512];
            buf.extend(v10_plain());
            c.encrypt_units(&mut buf, 512, 0xfe);
            assert_eq!(hex::encode(&buf[512..]), V10_CT, "{:?}", c.path());
        }
    }

    #[test]
    fn default_path_is_the_fastest_supported() {
        let c = XtsCipher::from_halves(&[1; 32], &[2; 32]);
        let want = XtsPath::ALL.into_iter().find(|p| p.is_supported());
        assert_eq!(Some(c.path()), want);
        assert!(format!("{c:?}").contains(&format!("{:?}", c.path())));
    }

    #[test]
    fn many_sectors_every_path_agree_with_oracle() {
        use rand::{RngCore, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let (mut k1, mut k2) = ([0u8; 32], [0u8; 32]);
        rng.fill_bytes(&mut k1);
        rng.fill_bytes(&mut k2);
        let mut data = vec![0u8; 40 * XTS_DATA_UNIT];
        rng.fill_bytes(&mut data);
        let o = oracle(&k1, &k2);
        for first in [0u64, 0xffff_ffe0, u64::MAX - 39] {
            let mut want = data.clone();
            o.encrypt_area(
                &mut want,
                XTS_DATA_UNIT,
                u128::from(first),
                get_tweak_default,
            );
            for c in every_path(&k1, &k2) {
                let mut got = data.clone();
                c.encrypt_sectors(&mut got, first);
                assert!(got == want, "{:?} from sector {first:#x}", c.path());
                c.decrypt_sectors(&mut got, first);
                assert!(got == data, "{:?} decrypt from sector {first:#x}", c.path());
            }
        }
    }

    #[test]
    fn append_with_crc32c_every_path_equals_the_crc32c_crate() {
        use rand::{RngCore, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(12);
        let (mut k1, mut k2) = ([0u8; 32], [0u8; 32]);
        rng.fill_bytes(&mut k1);
        rng.fill_bytes(&mut k2);
        let mut data = vec![0u8; 33 * XTS_DATA_UNIT];
        rng.fill_bytes(&mut data);
        for c in every_path(&k1, &k2) {
            for (sectors, prefix, first) in [
                (32usize, 0usize, 5u128),
                (1, 13, u128::MAX),
                (33, 4096, 0),
                (0, 7, 1),
            ] {
                let src = &data[..sectors * XTS_DATA_UNIT];
                let mut want = src.to_vec();
                c.encrypt_units(&mut want, XTS_DATA_UNIT, first);
                let mut out = data[data.len() - prefix..].to_vec();
                let prior = crc32c::crc32c(&out);
                let crc = c.encrypt_units_append_crc32c(src, &mut out, XTS_DATA_UNIT, first, prior);
                assert!(
                    out[prefix..] == want[..],
                    "{:?} {sectors} sectors",
                    c.path()
                );
                assert_eq!(
                    crc,
                    crc32c::crc32c(&out),
                    "{:?} {sectors} sectors",
                    c.path()
                );
            }
        }
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
        let o = oracle(&[7; 32], &[9; 32]);
        let plain = vec![0xa5u8; XTS_DATA_UNIT];
        for c in every_path(&[7; 32], &[9; 32]) {
            for s in [0u64, 1, 0xffff_ffff, 0x1_0000_0000, u64::MAX] {
                let mut a = plain.clone();
                c.encrypt_sectors(&mut a, s);
                let mut b = plain.clone();
                o.encrypt_sector(&mut b, get_tweak_default(u128::from(s)));
                assert_eq!(a, b, "{:?} sector {s}", c.path());
            }
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
            let o = oracle(&k1, &k2);
            let first = first >> 2; // keep first + sectors in u64
            let mut theirs = data.clone();
            o.encrypt_area(&mut theirs, XTS_DATA_UNIT, u128::from(first), get_tweak_default);
            for c in every_path(&k1, &k2) {
                let mut ours = data.clone();
                c.encrypt_sectors(&mut ours, first);
                prop_assert!(ours == theirs, "{:?}", c.path());
                c.decrypt_sectors(&mut ours, first);
                prop_assert!(ours == data, "{:?} decrypt", c.path());
            }
        }
    }
}
