//! AES-256-XTS (IEEE 1619 / NIST SP 800-38E) over whole data units, with the x86
//! AES instructions chosen at run time: VAES on 512-bit vectors (AVX-512), VAES on
//! 256-bit vectors (AVX2), or AES-NI on 128-bit vectors.
//!
//! The pool encrypts every 4 KiB sector with it (tweak = the pool sector number, as a
//! 128-bit little-endian integer). Only whole AES blocks are supported: a data unit is
//! a non-zero multiple of 16 bytes, so no ciphertext stealing is ever needed.
//!
//! How it is fast:
//! - many blocks in flight: 16 per loop iteration (4 x 512-bit registers) with
//!   `Vaes512`, 8 with `Vaes256` (4 x 256-bit) and with `AesNi` (8 x 128-bit), so
//!   the AES units never wait on one block's latency;
//! - the tweaks live in vector registers, one per 128-bit lane, and each advances by
//!   `alpha^16` (or `alpha^8`) per iteration with one byte shift and one carry-less
//!   multiplication of the shifted-out bits by the XTS polynomial (`VPCLMULQDQ`);
//! - the pre-whitening XOR is folded with round key 0 (`vpternlogd`) and the
//!   post-whitening XOR into the last round key (`aesenclast(x, k14 ^ T)`);
//! - work on the ciphertext rides along with the AES rounds, which bound the loop
//!   (VAES-512, out of place): the crc32c of the stored bytes, each ciphertext register
//!   folded into 4 accumulators with `VPCLMULQDQ` (the usual carry-less folding of a
//!   reflected CRC, 2048 bits per iteration; finished with the SSE4.2 `crc32`
//!   instruction), and the RAID P parity, each register stored or XORed into its
//!   parity row ([`XtsAes256::encrypt_units_append_crc32c_parity`]). The stored bytes
//!   are then never read back.
//!
//! Decryption uses the "equivalent inverse cipher" (FIPS 197 5.3.5): round keys
//! `InvMixColumns`-transformed and reversed, so it has the same shape as encryption.
//!
//! Keys: the expanded round keys (data key forward and inverse, tweak key) live in
//! one heap allocation that is zeroized on drop and never moved or copied by the
//! handle. Copies the compiler makes in registers or on the stack during a call are
//! not tracked (as with the `aes` crate).
//!
//! Every `#[target_feature]` function is reached only through an [`XtsAes256`],
//! which can only be built for a backend that `is_x86_feature_detected!` confirmed.

use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// AES block size in bytes.
pub const AES_BLOCK: usize = 16;

/// Which instruction set encrypts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum XtsBackend {
    /// VAES + VPCLMULQDQ on 512-bit vectors (AVX-512F/BW): 4 blocks per instruction.
    Vaes512,
    /// VAES + VPCLMULQDQ on 256-bit vectors (AVX2): 2 blocks per instruction.
    Vaes256,
    /// AES-NI on 128-bit vectors: 1 block per instruction, 8 in flight.
    AesNi,
}

impl XtsBackend {
    /// Every backend, fastest first.
    pub const ALL: [XtsBackend; 3] = [XtsBackend::Vaes512, XtsBackend::Vaes256, XtsBackend::AesNi];

    /// True if this CPU has every instruction the backend uses.
    pub fn is_supported(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            match self {
                XtsBackend::Vaes512 => {
                    has!("aes")
                        && has!("vaes")
                        && has!("vpclmulqdq")
                        && has!("avx512f")
                        && has!("avx512bw")
                        && has!("sse4.2")
                }
                XtsBackend::Vaes256 => {
                    has!("aes") && has!("vaes") && has!("vpclmulqdq") && has!("avx2")
                }
                XtsBackend::AesNi => has!("aes"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// The fastest backend this CPU supports, if any.
    pub fn best() -> Option<XtsBackend> {
        XtsBackend::ALL.into_iter().find(|b| b.is_supported())
    }

    /// A short name for logs and benchmarks.
    pub fn name(self) -> &'static str {
        match self {
            XtsBackend::Vaes512 => "vaes-avx512",
            XtsBackend::Vaes256 => "vaes-avx2",
            XtsBackend::AesNi => "aes-ni",
        }
    }
}

/// The 15 round keys of AES-256, each as 16 bytes.
type RoundKeys = [[u8; 16]; 15];

/// Expanded keys; zeroized when dropped.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
struct KeySchedule {
    /// Data key, encryption round keys.
    enc: RoundKeys,
    /// Data key, equivalent-inverse-cipher round keys in the order decryption uses them.
    dec: RoundKeys,
    /// Tweak key, encryption round keys.
    tweak: RoundKeys,
}

/// AES-256-XTS with one data key and one tweak key, on the fastest (or a chosen)
/// instruction set. Cloning copies the key schedule into a new zeroize-on-drop box.
#[derive(Clone)]
pub struct XtsAes256 {
    backend: XtsBackend,
    keys: Box<KeySchedule>,
}

impl fmt::Debug for XtsAes256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XtsAes256")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl XtsAes256 {
    /// The cipher on the fastest backend this CPU supports; `None` without AES-NI
    /// (the caller then needs a portable implementation).
    pub fn new(data_key: &[u8; 32], tweak_key: &[u8; 32]) -> Option<Self> {
        Self::with_backend(data_key, tweak_key, XtsBackend::best()?)
    }

    /// The cipher on `backend`; `None` if this CPU does not support it.
    pub fn with_backend(
        data_key: &[u8; 32],
        tweak_key: &[u8; 32],
        backend: XtsBackend,
    ) -> Option<Self> {
        if !backend.is_supported() {
            return None;
        }
        let mut keys = Box::new(KeySchedule {
            enc: [[0; 16]; 15],
            dec: [[0; 16]; 15],
            tweak: [[0; 16]; 15],
        });
        #[cfg(target_arch = "x86_64")]
        {
            let k = &mut *keys;
            // SAFETY: every backend needs AES-NI, and `backend.is_supported()` just
            // confirmed it at run time.
            unsafe {
                x86::expand_key(data_key, &mut k.enc);
                x86::expand_key(tweak_key, &mut k.tweak);
                x86::inverse_keys(&k.enc, &mut k.dec);
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (data_key, tweak_key);
            return None;
        }
        #[allow(unreachable_code)]
        Some(XtsAes256 { backend, keys })
    }

    /// The backend in use.
    pub fn backend(&self) -> XtsBackend {
        self.backend
    }

    /// Encrypt `buf` in place: data unit `i` (of `unit` bytes) gets tweak
    /// `first_unit + i` (wrapping), as a 128-bit little-endian integer.
    ///
    /// # Panics
    /// If `unit` is 0 or not a multiple of 16, or `buf.len()` is not a multiple of
    /// `unit` (caller bugs: the pool pads extents to whole sectors).
    pub fn encrypt_units(&self, buf: &mut [u8], unit: usize, first_unit: u128) {
        self.crypt(buf, unit, first_unit, true);
    }

    /// Decrypt `buf` in place; the inverse of [`XtsAes256::encrypt_units`].
    ///
    /// # Panics
    /// As [`XtsAes256::encrypt_units`].
    pub fn decrypt_units(&self, buf: &mut [u8], unit: usize, first_unit: u128) {
        self.crypt(buf, unit, first_unit, false);
    }

    /// Encrypt `src` and append the ciphertext to `out` (`src.len()` more bytes), as
    /// [`XtsAes256::encrypt_units`] would encrypt a copy of `src` in place: the same bytes,
    /// but the plaintext is read once and the ciphertext written once, with no copy and no
    /// zero-filling of the output (on the VAES-512 backend; the others copy and then
    /// encrypt in place).
    ///
    /// # Panics
    /// As [`XtsAes256::encrypt_units`], on `src.len()`.
    pub fn encrypt_units_append(
        &self,
        src: &[u8],
        out: &mut Vec<u8>,
        unit: usize,
        first_unit: u128,
    ) {
        assert!(
            unit > 0 && unit.is_multiple_of(AES_BLOCK) && src.len().is_multiple_of(unit),
            "XTS buffer of {} bytes is not whole {}-byte data units",
            src.len(),
            unit
        );
        let start = out.len();
        #[cfg(target_arch = "x86_64")]
        if self.backend == XtsBackend::Vaes512 {
            out.reserve(src.len());
            let dst = &mut out.spare_capacity_mut()[..src.len()];
            // SAFETY: the backend was checked with `is_supported()` when `self` was built
            // (run-time detection of every feature the kernel enables).
            unsafe {
                x86::vaes512_to::<false, false>(
                    &self.keys.enc,
                    &self.keys.tweak,
                    src,
                    dst,
                    unit,
                    first_unit,
                    0,
                    &mut [],
                    &[],
                )
            };
            // SAFETY: `vaes512_to` wrote every byte of `dst`, the `src.len()` bytes of
            // spare capacity right after the initialized `start` bytes (reserved above).
            unsafe { out.set_len(start + src.len()) };
            return;
        }
        out.extend_from_slice(src);
        self.crypt(&mut out[start..], unit, first_unit, true);
    }

    /// True if [`XtsAes256::encrypt_units_append_crc32c`] computes the crc32c inside
    /// the encryption loop for data units of `unit` bytes (VAES-512 backend, `unit` a
    /// multiple of 256 bytes); otherwise it returns `None` and the caller checksums.
    pub fn fuses_crc32c(&self, unit: usize) -> bool {
        self.backend == XtsBackend::Vaes512 && unit > 0 && unit.is_multiple_of(FOLD_BYTES)
    }

    /// [`XtsAes256::encrypt_units_append`], and the crc32c (Castagnoli) continued over
    /// the ciphertext: `Some(c)` with `c == crc32c(earlier bytes ++ ciphertext)` when `crc`
    /// is the crc32c of the earlier bytes (0 for none). On the VAES-512 backend (see
    /// [`XtsAes256::fuses_crc32c`]) the ciphertext registers are folded into the crc
    /// with `VPCLMULQDQ` before they are stored, so the stored bytes are never read
    /// back. `None` when this backend or `unit` does not fuse it: the ciphertext is
    /// appended all the same and the caller computes the crc32c itself.
    ///
    /// # Panics
    /// As [`XtsAes256::encrypt_units`], on `src.len()`.
    pub fn encrypt_units_append_crc32c(
        &self,
        src: &[u8],
        out: &mut Vec<u8>,
        unit: usize,
        first_unit: u128,
        crc: u32,
    ) -> Option<u32> {
        if !self.fuses_crc32c(unit) {
            self.encrypt_units_append(src, out, unit, first_unit);
            return None;
        }
        assert!(
            src.len().is_multiple_of(unit),
            "XTS buffer of {} bytes is not whole {}-byte data units",
            src.len(),
            unit
        );
        #[cfg(target_arch = "x86_64")]
        {
            let start = out.len();
            out.reserve(src.len());
            let dst = &mut out.spare_capacity_mut()[..src.len()];
            // SAFETY: the backend is `Vaes512` (checked above), whose features were
            // confirmed with `is_supported()` when `self` was built; `unit` is a
            // multiple of 256 bytes as the CRC variant requires.
            let crc = unsafe {
                x86::vaes512_to::<true, false>(
                    &self.keys.enc,
                    &self.keys.tweak,
                    src,
                    dst,
                    unit,
                    first_unit,
                    crc,
                    &mut [],
                    &[],
                )
            };
            // SAFETY: `vaes512_to` wrote every byte of `dst`, the `src.len()` bytes of
            // spare capacity right after the initialized `start` bytes (reserved above).
            unsafe { out.set_len(start + src.len()) };
            Some(crc)
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            // Unreachable: no backend is supported, so no cipher can be built.
            let _ = (out, first_unit, crc);
            None
        }
    }

    /// [`XtsAes256::encrypt_units_append_crc32c`] that also computes the XOR parity (RAID
    /// P) of the ciphertext split into columns, while the ciphertext is in registers:
    /// column `c` is the data units from `column_starts[c]` up to the next start (the
    /// last one to the end of `src`), and unit `r` of `parity` is the XOR of unit `r` of
    /// every column that has one (a shorter column counts as zero-padded). `parity` is
    /// replaced by `column_starts[1] * unit` bytes (the length of the first column, which
    /// must be the longest). The loads and stores of the parity rows run beside the AES
    /// rounds, which bound the loop.
    ///
    /// Returns `None`, having done nothing, where the crc32c is not fused
    /// ([`XtsAes256::fuses_crc32c`]); the caller then takes the separate path.
    ///
    /// # Panics
    /// As [`XtsAes256::encrypt_units`], on `src.len()`; and if `column_starts` does not
    /// start at 0, is not increasing, has a column longer than the first or a start
    /// beyond the end of `src` (caller bugs).
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
        if !self.fuses_crc32c(unit) {
            return None;
        }
        assert!(
            src.len().is_multiple_of(unit),
            "XTS buffer of {} bytes is not whole {}-byte data units",
            src.len(),
            unit
        );
        let units = src.len() / unit;
        let rows = column_starts.get(1).copied().unwrap_or(units);
        let ends = column_starts.iter().skip(1).chain([&units]);
        assert!(
            column_starts.first() == Some(&0)
                && column_starts
                    .iter()
                    .zip(ends)
                    .all(|(&a, &b)| a < b && b - a <= rows && b <= units),
            "parity columns {column_starts:?} over {units} units"
        );
        #[cfg(target_arch = "x86_64")]
        {
            let start = out.len();
            out.reserve(src.len());
            parity.clear();
            parity.reserve(rows * unit);
            let dst = &mut out.spare_capacity_mut()[..src.len()];
            let p = &mut parity.spare_capacity_mut()[..rows * unit];
            // SAFETY: the backend is `Vaes512` (checked above), whose features were
            // confirmed with `is_supported()` when `self` was built; `unit` is a
            // multiple of 256 bytes and the columns were checked above as the kernel
            // requires.
            let crc = unsafe {
                x86::vaes512_to::<true, true>(
                    &self.keys.enc,
                    &self.keys.tweak,
                    src,
                    dst,
                    unit,
                    first_unit,
                    crc,
                    p,
                    column_starts,
                )
            };
            // SAFETY: the kernel wrote every byte of `dst` (the `src.len()` reserved
            // bytes after the `start` initialized ones) and every byte of `p` (the first
            // column covers every parity row).
            unsafe {
                out.set_len(start + src.len());
                parity.set_len(rows * unit);
            }
            Some(crc)
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            // Unreachable: no backend is supported, so no cipher can be built.
            let _ = (out, first_unit, crc, parity);
            None
        }
    }

    fn crypt(&self, buf: &mut [u8], unit: usize, first_unit: u128, encrypt: bool) {
        assert!(
            unit > 0 && unit.is_multiple_of(AES_BLOCK) && buf.len().is_multiple_of(unit),
            "XTS buffer of {} bytes is not whole {}-byte data units",
            buf.len(),
            unit
        );
        #[cfg(target_arch = "x86_64")]
        {
            let k = &*self.keys;
            let (keys, tweak) = (if encrypt { &k.enc } else { &k.dec }, &k.tweak);
            // SAFETY: `self.backend` was checked with `is_supported()` (run-time detection
            // of every feature its kernel enables) when `self` was built, and CPU features
            // do not go away while the process runs.
            unsafe {
                match (self.backend, encrypt) {
                    (XtsBackend::Vaes512, true) => {
                        x86::vaes512::<true>(keys, tweak, buf, unit, first_unit)
                    }
                    (XtsBackend::Vaes512, false) => {
                        x86::vaes512::<false>(keys, tweak, buf, unit, first_unit)
                    }
                    (XtsBackend::Vaes256, true) => {
                        x86::vaes256::<true>(keys, tweak, buf, unit, first_unit)
                    }
                    (XtsBackend::Vaes256, false) => {
                        x86::vaes256::<false>(keys, tweak, buf, unit, first_unit)
                    }
                    (XtsBackend::AesNi, true) => {
                        x86::aesni::<true>(keys, tweak, buf, unit, first_unit)
                    }
                    (XtsBackend::AesNi, false) => {
                        x86::aesni::<false>(keys, tweak, buf, unit, first_unit)
                    }
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            // Unreachable: no backend is supported, so no cipher can be built.
            let _ = (buf, first_unit, encrypt);
        }
    }
}

/// Multiply a tweak by alpha (x) in GF(2^128) with the XTS polynomial
/// x^128 + x^7 + x^2 + x + 1, on the little-endian integer view of its bytes.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn mul_alpha(t: u128) -> u128 {
    let carry = ((t >> 127) as u64).wrapping_neg() & 0x87;
    (t << 1) ^ u128::from(carry)
}

/// `n` consecutive block tweaks starting at `t`, as bytes (lane `j` = `t * alpha^j`).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn tweak_run<const N: usize>(t: u128) -> [[u8; 16]; N] {
    let mut out = [[0u8; 16]; N];
    let mut x = t;
    for o in &mut out {
        *o = x.to_le_bytes();
        x = mul_alpha(x);
    }
    out
}

/// Bytes the fused crc32c folds per loop iteration of the VAES-512 kernel (the 16
/// ciphertext blocks of 4 registers); a fused data unit is a multiple of it.
const FOLD_BYTES: usize = 256;

/// The crc32c polynomial (Castagnoli) with its x^32 term, in normal bit order.
const CRC32C_POLY: u64 = 0x1_1edc_6f41;

/// x^n mod the crc32c polynomial, in normal bit order (bit i = coefficient of x^i).
const fn xn_mod_crc32c(n: u32) -> u32 {
    let mut r: u64 = 1;
    let mut i = 0;
    while i < n {
        r <<= 1;
        if r & (1 << 32) != 0 {
            r ^= CRC32C_POLY;
        }
        i += 1;
    }
    r as u32
}

/// The two carry-less multipliers that move a 128-bit lane of the (bit-reflected)
/// crc32c message `d` bits further on, into a lane it can be XORed with: for the lane's
/// first 64 bits (its low quadword) `x^(d+63) mod P`, for the last 64 bits
/// `x^(d-1) mod P`, each bit-reflected into a 64-bit operand (the `-1` makes up for
/// the one-bit shift of a product of two reflected operands).
const fn crc32c_fold_keys(d: u32) -> (u64, u64) {
    const fn reflect64(q: u32) -> u64 {
        (q.reverse_bits() as u64) << 32
    }
    (
        reflect64(xn_mod_crc32c(d + 63)),
        reflect64(xn_mod_crc32c(d - 1)),
    )
}

/// Fold keys (see [`crc32c_fold_keys`]), computed at compile time: 4 registers on by
/// the 2048 bits of one loop iteration, one register on by 512, one lane by 384/256/128.
const FOLD_2048: (u64, u64) = crc32c_fold_keys(2048);
const FOLD_512: (u64, u64) = crc32c_fold_keys(512);
const FOLD_384: (u64, u64) = crc32c_fold_keys(384);
const FOLD_256: (u64, u64) = crc32c_fold_keys(256);
const FOLD_128: (u64, u64) = crc32c_fold_keys(128);

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The kernels. Each is a `#[target_feature]` function; callers guarantee the
    //! features by construction of [`super::XtsAes256`].

    use super::{RoundKeys, tweak_run};
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    /// Blocks per iteration of the AES-NI kernel.
    const NI_LANES: usize = 8;

    #[inline(always)]
    fn load128(b: &[u8; 16]) -> __m128i {
        // SAFETY: `b` is 16 readable bytes and the load is unaligned; SSE2 is part of
        // the x86_64 baseline.
        unsafe { _mm_loadu_si128(b.as_ptr().cast()) }
    }

    #[inline(always)]
    fn store128(b: &mut [u8; 16], v: __m128i) {
        // SAFETY: `b` is 16 writable bytes and the store is unaligned; SSE2 is baseline.
        unsafe { _mm_storeu_si128(b.as_mut_ptr().cast(), v) }
    }

    #[inline]
    #[target_feature(enable = "avx")]
    fn load256(b: &[u8; 32]) -> __m256i {
        // SAFETY: `b` is 32 readable bytes and the load is unaligned.
        unsafe { _mm256_loadu_si256(b.as_ptr().cast()) }
    }

    #[inline]
    #[target_feature(enable = "avx")]
    fn store256(b: &mut [u8; 32], v: __m256i) {
        // SAFETY: `b` is 32 writable bytes and the store is unaligned.
        unsafe { _mm256_storeu_si256(b.as_mut_ptr().cast(), v) }
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn load512(b: &[u8; 64]) -> __m512i {
        // SAFETY: `b` is 64 readable bytes and the load is unaligned.
        unsafe { _mm512_loadu_si512(b.as_ptr().cast()) }
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn store512(b: &mut [u8; 64], v: __m512i) {
        // SAFETY: `b` is 64 writable bytes and the store is unaligned.
        unsafe { _mm512_storeu_si512(b.as_mut_ptr().cast(), v) }
    }

    /// `a ^ (a << 32) ^ (a << 64) ^ (a << 96)`: the running XOR of the key schedule words.
    #[inline]
    #[target_feature(enable = "sse2")]
    fn spread(a: __m128i) -> __m128i {
        let mut s = a;
        let mut t = _mm_slli_si128::<4>(a);
        s = _mm_xor_si128(s, t);
        t = _mm_slli_si128::<4>(t);
        s = _mm_xor_si128(s, t);
        t = _mm_slli_si128::<4>(t);
        _mm_xor_si128(s, t)
    }

    /// Round key 2i+2 from keys 2i and 2i+1.
    #[inline]
    #[target_feature(enable = "aes")]
    fn next_even<const RCON: i32>(even: __m128i, odd: __m128i) -> __m128i {
        let t = _mm_shuffle_epi32::<0xff>(_mm_aeskeygenassist_si128::<RCON>(odd));
        _mm_xor_si128(spread(even), t)
    }

    /// Round key 2i+3 from keys 2i+2 and 2i+1.
    #[inline]
    #[target_feature(enable = "aes")]
    fn next_odd(even: __m128i, odd: __m128i) -> __m128i {
        let t = _mm_shuffle_epi32::<0xaa>(_mm_aeskeygenassist_si128::<0>(even));
        _mm_xor_si128(spread(odd), t)
    }

    /// The AES-256 key schedule (FIPS 197 5.2) of `key` into `out`.
    #[target_feature(enable = "aes")]
    pub(super) fn expand_key(key: &[u8; 32], out: &mut RoundKeys) {
        let (halves, _) = key.as_chunks::<16>();
        let mut rk = [_mm_setzero_si128(); 15];
        rk[0] = load128(&halves[0]);
        rk[1] = load128(&halves[1]);
        rk[2] = next_even::<0x01>(rk[0], rk[1]);
        rk[3] = next_odd(rk[2], rk[1]);
        rk[4] = next_even::<0x02>(rk[2], rk[3]);
        rk[5] = next_odd(rk[4], rk[3]);
        rk[6] = next_even::<0x04>(rk[4], rk[5]);
        rk[7] = next_odd(rk[6], rk[5]);
        rk[8] = next_even::<0x08>(rk[6], rk[7]);
        rk[9] = next_odd(rk[8], rk[7]);
        rk[10] = next_even::<0x10>(rk[8], rk[9]);
        rk[11] = next_odd(rk[10], rk[9]);
        rk[12] = next_even::<0x20>(rk[10], rk[11]);
        rk[13] = next_odd(rk[12], rk[11]);
        rk[14] = next_even::<0x40>(rk[12], rk[13]);
        for (o, k) in out.iter_mut().zip(rk) {
            store128(o, k);
        }
    }

    /// Round keys of the equivalent inverse cipher, in the order decryption uses them.
    #[target_feature(enable = "aes")]
    pub(super) fn inverse_keys(enc: &RoundKeys, dec: &mut RoundKeys) {
        dec[0] = enc[14];
        dec[14] = enc[0];
        for i in 1..14 {
            store128(&mut dec[i], _mm_aesimc_si128(load128(&enc[14 - i])));
        }
    }

    /// Round keys in 128-bit registers.
    #[inline(always)]
    fn keys128(keys: &RoundKeys) -> [__m128i; 15] {
        std::array::from_fn(|i| load128(&keys[i]))
    }

    /// One block through all rounds, XORed with `tw` before and after (XTS on one block).
    #[inline]
    #[target_feature(enable = "aes")]
    fn block<const ENC: bool>(rk: &[__m128i; 15], b: &mut [u8; 16], tw: __m128i) {
        let mut x = _mm_xor_si128(_mm_xor_si128(load128(b), tw), rk[0]);
        for k in &rk[1..14] {
            x = if ENC {
                _mm_aesenc_si128(x, *k)
            } else {
                _mm_aesdec_si128(x, *k)
            };
        }
        let last = _mm_xor_si128(rk[14], tw);
        x = if ENC {
            _mm_aesenclast_si128(x, last)
        } else {
            _mm_aesdeclast_si128(x, last)
        };
        store128(b, x);
    }

    /// AES-256 encryption of one block with the tweak key: the unit's first tweak.
    #[inline]
    #[target_feature(enable = "aes")]
    fn unit_tweak(tk: &[__m128i; 15], index: u128) -> u128 {
        let mut x = _mm_xor_si128(load128(&index.to_le_bytes()), tk[0]);
        for k in &tk[1..14] {
            x = _mm_aesenc_si128(x, *k);
        }
        x = _mm_aesenclast_si128(x, tk[14]);
        let mut out = [0u8; 16];
        store128(&mut out, x);
        u128::from_le_bytes(out)
    }

    /// Tail blocks (fewer than a vector iteration) with 128-bit instructions; `tweaks`
    /// holds at least one tweak per block.
    #[inline]
    #[target_feature(enable = "aes")]
    fn tail<const ENC: bool>(rk: &[__m128i; 15], blocks: &mut [[u8; 16]], tweaks: &[[u8; 16]]) {
        for (b, t) in blocks.iter_mut().zip(tweaks) {
            block::<ENC>(rk, b, load128(t));
        }
    }

    /// XTS with AES-NI, 8 blocks in flight. `keys` are the encryption or the
    /// decryption round keys as `ENC` says; `tweak` the tweak key's.
    #[target_feature(enable = "aes")]
    pub(super) fn aesni<const ENC: bool>(
        keys: &RoundKeys,
        tweak: &RoundKeys,
        buf: &mut [u8],
        unit: usize,
        first: u128,
    ) {
        let rk = keys128(keys);
        let tk = keys128(tweak);
        for (i, u) in buf.chunks_exact_mut(unit).enumerate() {
            let t0 = unit_tweak(&tk, first.wrapping_add(i as u128));
            let mut lanes = [0u128; NI_LANES];
            lanes[0] = t0;
            for j in 1..NI_LANES {
                lanes[j] = super::mul_alpha(lanes[j - 1]);
            }
            let (blocks, _) = u.as_chunks_mut::<16>();
            let (groups, rest) = blocks.as_chunks_mut::<NI_LANES>();
            for g in groups {
                let tw: [__m128i; NI_LANES] =
                    std::array::from_fn(|j| load128(&lanes[j].to_le_bytes()));
                let mut x: [__m128i; NI_LANES] = std::array::from_fn(|j| {
                    _mm_xor_si128(_mm_xor_si128(load128(&g[j]), tw[j]), rk[0])
                });
                for k in &rk[1..14] {
                    for v in &mut x {
                        *v = if ENC {
                            _mm_aesenc_si128(*v, *k)
                        } else {
                            _mm_aesdec_si128(*v, *k)
                        };
                    }
                }
                for j in 0..NI_LANES {
                    let last = _mm_xor_si128(rk[14], tw[j]);
                    let y = if ENC {
                        _mm_aesenclast_si128(x[j], last)
                    } else {
                        _mm_aesdeclast_si128(x[j], last)
                    };
                    store128(&mut g[j], y);
                }
                for l in &mut lanes {
                    *l = mul_alpha8(*l);
                }
            }
            let tws: [[u8; 16]; NI_LANES] = std::array::from_fn(|j| lanes[j].to_le_bytes());
            tail::<ENC>(&rk, rest, &tws);
        }
    }

    /// Multiply a tweak by alpha^8 (scalar, for the AES-NI kernel).
    #[inline(always)]
    fn mul_alpha8(t: u128) -> u128 {
        let mut x = t;
        for _ in 0..8 {
            x = super::mul_alpha(x);
        }
        x
    }

    /// XTS with VAES on 256-bit vectors: 4 registers of 2 blocks, 8 blocks in flight.
    #[target_feature(enable = "aes,avx,avx2,vaes,vpclmulqdq")]
    pub(super) fn vaes256<const ENC: bool>(
        keys: &RoundKeys,
        tweak: &RoundKeys,
        buf: &mut [u8],
        unit: usize,
        first: u128,
    ) {
        let rk128 = keys128(keys);
        let rk: [__m256i; 15] = std::array::from_fn(|i| _mm256_broadcastsi128_si256(rk128[i]));
        let tk = keys128(tweak);
        let poly = _mm256_broadcastsi128_si256(_mm_set_epi64x(0, 0x87));
        for (i, u) in buf.chunks_exact_mut(unit).enumerate() {
            let t0 = unit_tweak(&tk, first.wrapping_add(i as u128));
            let run: [[u8; 16]; 8] = tweak_run::<8>(t0);
            let run = run.as_flattened();
            let (pairs, _) = run.as_chunks::<32>();
            let mut tw: [__m256i; 4] = std::array::from_fn(|j| load256(&pairs[j]));
            let (chunks, rest) = u.as_chunks_mut::<128>();
            for c in chunks {
                let (v, _) = c.as_chunks_mut::<32>();
                let mut x: [__m256i; 4] = std::array::from_fn(|j| {
                    _mm256_xor_si256(_mm256_xor_si256(load256(&v[j]), tw[j]), rk[0])
                });
                for k in &rk[1..14] {
                    for r in &mut x {
                        *r = if ENC {
                            _mm256_aesenc_epi128(*r, *k)
                        } else {
                            _mm256_aesdec_epi128(*r, *k)
                        };
                    }
                }
                for j in 0..4 {
                    let last = _mm256_xor_si256(rk[14], tw[j]);
                    let y = if ENC {
                        _mm256_aesenclast_epi128(x[j], last)
                    } else {
                        _mm256_aesdeclast_epi128(x[j], last)
                    };
                    store256(&mut v[j], y);
                    // tw * alpha^8 per 128-bit lane: shift up one byte, fold the byte
                    // shifted out back in as byte * 0x87.
                    let out = _mm256_bsrli_epi128::<15>(tw[j]);
                    tw[j] = _mm256_xor_si256(
                        _mm256_bslli_epi128::<1>(tw[j]),
                        _mm256_clmulepi64_epi128::<0x00>(out, poly),
                    );
                }
            }
            if !rest.is_empty() {
                let mut tws = [[0u8; 16]; 8];
                let (pairs, _) = tws.as_flattened_mut().as_chunks_mut::<32>();
                for (p, t) in pairs.iter_mut().zip(tw) {
                    store256(p, t);
                }
                let (blocks, _) = rest.as_chunks_mut::<16>();
                tail::<ENC>(&rk128, blocks, &tws);
            }
        }
    }

    /// One 128-bit fold step per lane: `acc` moved on by the distance of `k` (see
    /// [`super::crc32c_fold_keys`]) and XORed with `next`.
    #[inline]
    #[target_feature(enable = "avx512f,vpclmulqdq")]
    fn fold512(acc: __m512i, k: __m512i, next: __m512i) -> __m512i {
        let lo = _mm512_clmulepi64_epi128::<0x00>(acc, k);
        let hi = _mm512_clmulepi64_epi128::<0x11>(acc, k);
        _mm512_ternarylogic_epi64::<0x96>(lo, hi, next)
    }

    /// [`fold512`] on one lane, without the XOR.
    #[inline]
    #[target_feature(enable = "pclmulqdq,sse2")]
    fn fold128(acc: __m128i, k: (u64, u64)) -> __m128i {
        let k = _mm_set_epi64x(k.1 as i64, k.0 as i64);
        _mm_xor_si128(
            _mm_clmulepi64_si128::<0x00>(acc, k),
            _mm_clmulepi64_si128::<0x11>(acc, k),
        )
    }

    /// `(lo, hi)` fold keys broadcast to every lane.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn keys512(k: (u64, u64)) -> __m512i {
        _mm512_broadcast_i32x4(_mm_set_epi64x(k.1 as i64, k.0 as i64))
    }

    /// The crc32c (finished) of a message folded into 4 registers holding its last
    /// 256 bytes' worth of remainder, in stream order.
    #[inline]
    #[target_feature(enable = "avx512f,vpclmulqdq,pclmulqdq,sse4.2")]
    fn crc_finish(acc: [__m512i; 4]) -> u32 {
        let k512 = keys512(super::FOLD_512);
        let mut t = fold512(acc[0], k512, acc[1]);
        t = fold512(t, k512, acc[2]);
        t = fold512(t, k512, acc[3]);
        let l0 = _mm512_extracti32x4_epi32::<0>(t);
        let l1 = _mm512_extracti32x4_epi32::<1>(t);
        let l2 = _mm512_extracti32x4_epi32::<2>(t);
        let l3 = _mm512_extracti32x4_epi32::<3>(t);
        let r = _mm_xor_si128(
            _mm_xor_si128(fold128(l0, super::FOLD_384), fold128(l1, super::FOLD_256)),
            _mm_xor_si128(fold128(l2, super::FOLD_128), l3),
        );
        // What is left is congruent to the whole message: its crc is the raw crc32c
        // (register starting at 0) of these 16 bytes, which the SSE4.2 instruction computes.
        let lo = _mm_cvtsi128_si64(r) as u64;
        let hi = _mm_extract_epi64::<1>(r) as u64;
        let c = _mm_crc32_u64(_mm_crc32_u64(0, lo), hi);
        !(c as u32)
    }

    /// Encryption as [`vaes512`], out of place: reads `src`, writes every byte of `dst`
    /// (of the same length), which may be uninitialized.
    ///
    /// With `CRC`, also returns the crc32c of the ciphertext continued from `crc` (the
    /// crc32c of earlier bytes; 0 for none): each stored register is folded into one of
    /// 4 accumulators (`VPCLMULQDQ`, which runs beside the AES rounds) and the crc is
    /// finished once at the end. `unit` must then be a multiple of 256 bytes. Without
    /// `CRC` it returns 0.
    ///
    /// With `PAR` (which needs `CRC`), also writes the XOR parity of the ciphertext
    /// columns that start at data units `starts` into `p` (see
    /// [`super::XtsAes256::encrypt_units_append_crc32c_parity`]; the caller checked the
    /// columns): units of the first column store their row, the others XOR into it.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "aes,avx,avx2,avx512f,avx512bw,vaes,vpclmulqdq,pclmulqdq,sse4.2")]
    pub(super) fn vaes512_to<const CRC: bool, const PAR: bool>(
        keys: &RoundKeys,
        tweak: &RoundKeys,
        src: &[u8],
        dst: &mut [MaybeUninit<u8>],
        unit: usize,
        first: u128,
        crc: u32,
        p: &mut [MaybeUninit<u8>],
        starts: &[usize],
    ) -> u32 {
        assert_eq!(src.len(), dst.len(), "XTS source and destination lengths");
        assert!(!PAR || CRC, "parity is fused only with the crc");
        if CRC {
            assert!(
                unit.is_multiple_of(super::FOLD_BYTES),
                "fused crc unit {unit}"
            );
            if src.is_empty() {
                return crc;
            }
        }
        let rk128 = keys128(keys);
        let rk: [__m512i; 15] = std::array::from_fn(|i| _mm512_broadcast_i32x4(rk128[i]));
        let tk = keys128(tweak);
        let poly = _mm512_broadcast_i32x4(_mm_set_epi64x(0, 0x87));
        let k2048 = keys512(super::FOLD_2048);
        // Folding zero gives zero, so the accumulators start at zero; the running
        // register (`!crc`) goes into the first 4 bytes of the message, i.e. is XORed
        // into accumulator 0 once, with the first ciphertext register.
        let mut acc = [_mm512_setzero_si512(); 4];
        let mut pending = _mm512_zextsi128_si512(_mm_cvtsi32_si128(!crc as i32));
        // The parity column of the current unit: its column and the row it XORs into.
        let mut col = 0;
        for (i, (s, d)) in src
            .chunks_exact(unit)
            .zip(dst.chunks_exact_mut(unit))
            .enumerate()
        {
            let (prow, assign): (&mut [MaybeUninit<u8>], bool) = if PAR {
                while starts.get(col + 1).is_some_and(|&next| i >= next) {
                    col += 1;
                }
                let row = i - starts[col];
                (&mut p[row * unit..(row + 1) * unit], col == 0)
            } else {
                (&mut [], false)
            };
            let (pchunks, _) = prow.as_chunks_mut::<256>();
            let mut pchunks = pchunks.iter_mut();
            let t0 = unit_tweak(&tk, first.wrapping_add(i as u128));
            let run: [[u8; 16]; 16] = tweak_run::<16>(t0);
            let run = run.as_flattened();
            let (quads, _) = run.as_chunks::<64>();
            let mut tw: [__m512i; 4] = std::array::from_fn(|j| load512(&quads[j]));
            let (schunks, srest) = s.as_chunks::<256>();
            let (dchunks, drest) = d.as_chunks_mut::<256>();
            for (sc, dc) in schunks.iter().zip(dchunks) {
                let (sv, _) = sc.as_chunks::<64>();
                let (dv, _) = dc.as_chunks_mut::<64>();
                let pv: &mut [[MaybeUninit<u8>; 64]] = match pchunks.next() {
                    Some(pc) if PAR => pc.as_chunks_mut::<64>().0,
                    _ => &mut [],
                };
                let mut x: [__m512i; 4] = std::array::from_fn(|j| {
                    _mm512_ternarylogic_epi32::<0x96>(load512(&sv[j]), tw[j], rk[0])
                });
                for k in &rk[1..14] {
                    for r in &mut x {
                        *r = _mm512_aesenc_epi128(*r, *k);
                    }
                }
                for j in 0..4 {
                    let y = _mm512_aesenclast_epi128(x[j], _mm512_xor_si512(rk[14], tw[j]));
                    // SAFETY: `dv[j]` is 64 writable bytes (uninitialized bytes may be
                    // written) and the store is unaligned.
                    unsafe { _mm512_storeu_si512(dv[j].as_mut_ptr().cast(), y) };
                    if CRC {
                        acc[j] = fold512(acc[j], k2048, y);
                    }
                    if PAR {
                        let q = pv[j].as_mut_ptr();
                        let v = if assign {
                            y
                        } else {
                            // SAFETY: `q` is 64 bytes of the parity row, which the first
                            // column (every row, units before this one) already wrote.
                            _mm512_xor_si512(unsafe { _mm512_loadu_si512(q.cast()) }, y)
                        };
                        // SAFETY: `q` is 64 writable bytes; the store is unaligned.
                        unsafe { _mm512_storeu_si512(q.cast(), v) };
                    }
                    let out = _mm512_bsrli_epi128::<14>(tw[j]);
                    tw[j] = _mm512_xor_si512(
                        _mm512_bslli_epi128::<2>(tw[j]),
                        _mm512_clmulepi64_epi128::<0x00>(out, poly),
                    );
                }
                if CRC {
                    acc[0] = _mm512_xor_si512(acc[0], pending);
                    pending = _mm512_setzero_si512();
                }
            }
            if !srest.is_empty() {
                let mut tws = [[0u8; 16]; 16];
                let (quads, _) = tws.as_flattened_mut().as_chunks_mut::<64>();
                for (q, t) in quads.iter_mut().zip(tw) {
                    store512(q, t);
                }
                let (sblocks, _) = srest.as_chunks::<16>();
                let (dblocks, _) = drest.as_chunks_mut::<16>();
                for ((sb, db), t) in sblocks.iter().zip(dblocks).zip(&tws) {
                    let mut b = *sb;
                    block::<true>(&rk128, &mut b, load128(t));
                    for (o, v) in db.iter_mut().zip(b) {
                        o.write(v);
                    }
                }
            }
        }
        if CRC { crc_finish(acc) } else { 0 }
    }

    /// XTS with VAES on 512-bit vectors: 4 registers of 4 blocks, 16 blocks in flight.
    #[target_feature(enable = "aes,avx,avx2,avx512f,avx512bw,vaes,vpclmulqdq")]
    pub(super) fn vaes512<const ENC: bool>(
        keys: &RoundKeys,
        tweak: &RoundKeys,
        buf: &mut [u8],
        unit: usize,
        first: u128,
    ) {
        let rk128 = keys128(keys);
        let rk: [__m512i; 15] = std::array::from_fn(|i| _mm512_broadcast_i32x4(rk128[i]));
        let tk = keys128(tweak);
        let poly = _mm512_broadcast_i32x4(_mm_set_epi64x(0, 0x87));
        for (i, u) in buf.chunks_exact_mut(unit).enumerate() {
            let t0 = unit_tweak(&tk, first.wrapping_add(i as u128));
            let run: [[u8; 16]; 16] = tweak_run::<16>(t0);
            let run = run.as_flattened();
            let (quads, _) = run.as_chunks::<64>();
            let mut tw: [__m512i; 4] = std::array::from_fn(|j| load512(&quads[j]));
            let (chunks, rest) = u.as_chunks_mut::<256>();
            for c in chunks {
                let (v, _) = c.as_chunks_mut::<64>();
                // data ^ tweak ^ round key 0 in one instruction.
                let mut x: [__m512i; 4] = std::array::from_fn(|j| {
                    _mm512_ternarylogic_epi32::<0x96>(load512(&v[j]), tw[j], rk[0])
                });
                for k in &rk[1..14] {
                    for r in &mut x {
                        *r = if ENC {
                            _mm512_aesenc_epi128(*r, *k)
                        } else {
                            _mm512_aesdec_epi128(*r, *k)
                        };
                    }
                }
                for j in 0..4 {
                    let last = _mm512_xor_si512(rk[14], tw[j]);
                    let y = if ENC {
                        _mm512_aesenclast_epi128(x[j], last)
                    } else {
                        _mm512_aesdeclast_epi128(x[j], last)
                    };
                    store512(&mut v[j], y);
                    // tw * alpha^16 per 128-bit lane: shift up two bytes, fold the 16
                    // bits shifted out back in as bits * 0x87 (at most 23 bits: no
                    // second reduction).
                    let out = _mm512_bsrli_epi128::<14>(tw[j]);
                    tw[j] = _mm512_xor_si512(
                        _mm512_bslli_epi128::<2>(tw[j]),
                        _mm512_clmulepi64_epi128::<0x00>(out, poly),
                    );
                }
            }
            if !rest.is_empty() {
                let mut tws = [[0u8; 16]; 16];
                let (quads, _) = tws.as_flattened_mut().as_chunks_mut::<64>();
                for (q, t) in quads.iter_mut().zip(tw) {
                    store512(q, t);
                }
                let (blocks, _) = rest.as_chunks_mut::<16>();
                tail::<ENC>(&rk128, blocks, &tws);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes::Aes256;
    use aes::cipher::{Array, KeyInit};
    use proptest::prelude::*;
    use rand::{RngCore, SeedableRng};
    use xts_mode::{Xts128, get_tweak_default};

    fn oracle(k1: &[u8; 32], k2: &[u8; 32]) -> Xts128<Aes256> {
        Xts128::new(Aes256::new(&Array(*k1)), Aes256::new(&Array(*k2)))
    }

    fn supported() -> Vec<XtsBackend> {
        let v: Vec<_> = XtsBackend::ALL
            .into_iter()
            .filter(|b| b.is_supported())
            .collect();
        // On the x86_64 build and CI machines AES-NI is always there; a test that
        // silently checked nothing would be worse than a failure.
        #[cfg(target_arch = "x86_64")]
        assert!(!v.is_empty(), "no AES backend on this CPU");
        v
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
    // Vector 11: same keys, sequence 0xffff.
    const V11_CT_HEAD: &str = "77a31251618a15e6b92d1d66dffe7b50b50bad552305ba0217a610688eff7e11";
    // Vector 14: same keys, sequence 0xffffffffff.
    const V14_CT_HEAD: &str = "64497e5a831e4a932c09be3e5393376daa599548b816031d224bbf50a818ed23";

    fn v_keys() -> ([u8; 32], [u8; 32]) {
        (
            hex(V10_K1).try_into().unwrap(),
            hex(V10_K2).try_into().unwrap(),
        )
    }

    fn v_plain() -> Vec<u8> {
        (0..512u32).map(|i| i as u8).collect()
    }

    #[test]
    fn best_is_supported_and_names_differ() {
        if let Some(b) = XtsBackend::best() {
            assert!(b.is_supported());
        }
        let names: std::collections::HashSet<_> =
            XtsBackend::ALL.iter().map(|b| b.name()).collect();
        assert_eq!(names.len(), XtsBackend::ALL.len());
    }

    #[test]
    fn ieee1619_vectors_every_backend_both_directions() {
        let (k1, k2) = v_keys();
        for b in supported() {
            let c = XtsAes256::with_backend(&k1, &k2, b).unwrap();
            assert_eq!(c.backend(), b);
            let mut buf = v_plain();
            c.encrypt_units(&mut buf, 512, 0xff);
            assert_eq!(hex::encode(&buf), V10_CT, "{b:?} vector 10");
            c.decrypt_units(&mut buf, 512, 0xff);
            assert_eq!(buf, v_plain(), "{b:?} vector 10 decrypt");
            for (seq, head) in [(0xffffu128, V11_CT_HEAD), (0xff_ffff_ffff, V14_CT_HEAD)] {
                let mut buf = v_plain();
                c.encrypt_units(&mut buf, 512, seq);
                assert_eq!(hex::encode(&buf[..32]), head, "{b:?} sequence {seq:#x}");
                c.decrypt_units(&mut buf, 512, seq);
                assert_eq!(buf, v_plain());
            }
            // As the second unit of two: the per-unit increment.
            let mut two = vec![0u8; 512];
            two.extend(v_plain());
            c.encrypt_units(&mut two, 512, 0xfe);
            assert_eq!(hex::encode(&two[512..]), V10_CT, "{b:?} second unit");
        }
    }

    #[test]
    fn unsupported_backend_is_refused_not_faked() {
        let (k1, k2) = v_keys();
        for b in XtsBackend::ALL {
            assert_eq!(
                XtsAes256::with_backend(&k1, &k2, b).is_some(),
                b.is_supported()
            );
        }
    }

    #[test]
    fn many_4k_units_match_oracle_with_consecutive_tweaks() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut k1 = [0u8; 32];
        let mut k2 = [0u8; 32];
        rng.fill_bytes(&mut k1);
        rng.fill_bytes(&mut k2);
        let mut data = vec![0u8; 64 * 4096];
        rng.fill_bytes(&mut data);
        let o = oracle(&k1, &k2);
        // Crosses 2^32 and 2^64 unit numbers.
        for first in [0u128, 0xffff_fff0, u128::from(u64::MAX) - 20] {
            let mut want = data.clone();
            o.encrypt_area(&mut want, 4096, first, get_tweak_default);
            for b in supported() {
                let c = XtsAes256::with_backend(&k1, &k2, b).unwrap();
                let mut got = data.clone();
                c.encrypt_units(&mut got, 4096, first);
                assert!(got == want, "{b:?} encrypt from unit {first:#x}");
                c.decrypt_units(&mut got, 4096, first);
                assert!(got == data, "{b:?} decrypt from unit {first:#x}");
            }
        }
    }

    #[test]
    fn append_equals_in_place_every_backend() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(8);
        let (mut k1, mut k2) = ([0u8; 32], [0u8; 32]);
        rng.fill_bytes(&mut k1);
        rng.fill_bytes(&mut k2);
        for b in supported() {
            let c = XtsAes256::with_backend(&k1, &k2, b).unwrap();
            // 4 KiB units (the pool's), and units with a tail after the 256-byte loop.
            for (unit, units) in [(4096usize, 9usize), (16, 5), (272, 3), (4096 + 48, 2)] {
                let mut src = vec![0u8; unit * units];
                rng.fill_bytes(&mut src);
                let first = u128::from(u64::MAX) - 1;
                let mut want = src.clone();
                c.encrypt_units(&mut want, unit, first);
                let mut out = vec![0xa5u8; 7];
                c.encrypt_units_append(&src, &mut out, unit, first);
                assert_eq!(out[..7], [0xa5; 7], "{b:?} prefix kept");
                assert!(out[7..] == want[..], "{b:?} unit {unit}");
            }
        }
    }

    #[test]
    fn fold_keys_are_the_powers_of_x() {
        // x^32 mod P is the polynomial without its top term; x^31 is a single bit.
        assert_eq!(xn_mod_crc32c(32), 0x1edc_6f41);
        assert_eq!(xn_mod_crc32c(31), 1 << 31);
        assert_eq!(crc32c_fold_keys(1).1, 1 << 63);
    }

    #[test]
    fn fused_crc32c_matches_the_crc32c_crate_every_backend() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(32);
        let (mut k1, mut k2) = ([0u8; 32], [0u8; 32]);
        rng.fill_bytes(&mut k1);
        rng.fill_bytes(&mut k2);
        for b in supported() {
            let c = XtsAes256::with_backend(&k1, &k2, b).unwrap();
            for (unit, units) in [
                (4096usize, 32usize),
                (4096, 1),
                (256, 1),
                (512, 3),
                (272, 2),
            ] {
                assert_eq!(
                    c.fuses_crc32c(unit),
                    b == XtsBackend::Vaes512 && unit % 256 == 0,
                    "{b:?} unit {unit}"
                );
                let mut src = vec![0u8; unit * units];
                rng.fill_bytes(&mut src);
                let first = u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64());
                let mut want = src.clone();
                c.encrypt_units(&mut want, unit, first);
                let mut out = vec![0u8; (rng.next_u32() % 64) as usize];
                rng.fill_bytes(&mut out);
                let prior = crc32c::crc32c(&out);
                let got = c.encrypt_units_append_crc32c(&src, &mut out, unit, first, prior);
                let start = out.len() - src.len();
                assert!(out[start..] == want[..], "{b:?} unit {unit} ciphertext");
                match got {
                    Some(crc) => assert_eq!(crc, crc32c::crc32c(&out), "{b:?} unit {unit}"),
                    None => assert!(!c.fuses_crc32c(unit)),
                }
            }
            // No bytes: the crc is carried through.
            let mut out = Vec::new();
            let got = c.encrypt_units_append_crc32c(&[], &mut out, 4096, 0, 0x1234_5678);
            assert!(got.is_none_or(|v| v == 0x1234_5678) && out.is_empty());
        }
    }

    /// XOR parity of `data` (whole `unit`s) split into columns starting at `starts`.
    fn parity_reference(data: &[u8], unit: usize, starts: &[usize]) -> Vec<u8> {
        let units = data.len() / unit;
        let rows = starts.get(1).copied().unwrap_or(units);
        let mut p = vec![0u8; rows * unit];
        let ends = starts.iter().skip(1).chain([&units]);
        for (&a, &b) in starts.iter().zip(ends) {
            for (x, y) in p.iter_mut().zip(&data[a * unit..b * unit]) {
                *x ^= y;
            }
        }
        p
    }

    #[test]
    fn fused_parity_matches_the_reference() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(33);
        let (mut k1, mut k2) = ([0u8; 32], [0u8; 32]);
        rng.fill_bytes(&mut k1);
        rng.fill_bytes(&mut k2);
        // RAID-Z1 columns of a 128 KiB record over 4 and 5 devices, a short record, a
        // single column, and 256-byte units.
        let cases: [(usize, usize, &[usize]); 6] = [
            (4096, 32, &[0, 11, 22]),
            (4096, 32, &[0, 8, 16, 24]),
            (4096, 31, &[0, 11, 21]),
            (4096, 2, &[0, 1]),
            (4096, 3, &[0]),
            (256, 7, &[0, 3, 5]),
        ];
        for b in supported() {
            let c = XtsAes256::with_backend(&k1, &k2, b).unwrap();
            for (unit, units, starts) in cases {
                let mut src = vec![0u8; unit * units];
                rng.fill_bytes(&mut src);
                let mut out = vec![1u8, 2, 3];
                let mut parity = vec![9u8; 5];
                let got = c.encrypt_units_append_crc32c_parity(
                    &src,
                    &mut out,
                    unit,
                    77,
                    crc32c::crc32c(&[1, 2, 3]),
                    &mut parity,
                    starts,
                );
                let Some(crc) = got else {
                    assert!(!c.fuses_crc32c(unit) && out == [1, 2, 3] && parity == [9; 5]);
                    continue;
                };
                let mut want = src.clone();
                c.encrypt_units(&mut want, unit, 77);
                assert!(out[3..] == want[..], "{b:?} {starts:?} ciphertext");
                assert_eq!(crc, crc32c::crc32c(&out), "{b:?} {starts:?} crc");
                assert!(
                    parity == parity_reference(&want, unit, starts),
                    "{b:?} {starts:?}"
                );
            }
        }
    }

    #[test]
    #[should_panic(expected = "parity columns")]
    fn fused_parity_refuses_a_column_longer_than_the_first() {
        let c = XtsAes256::with_backend(&[1; 32], &[2; 32], XtsBackend::Vaes512);
        // Without VAES-512 nothing is fused and nothing checked: panic as the test expects.
        let Some(c) = c else {
            panic!("parity columns: no VAES-512 here")
        };
        let src = vec![0u8; 5 * 4096];
        c.encrypt_units_append_crc32c_parity(
            &src,
            &mut Vec::new(),
            4096,
            0,
            0,
            &mut Vec::new(),
            &[0, 2],
        );
    }

    #[test]
    fn keys_and_debug_do_not_leak() {
        let c = XtsAes256::new(&[0x11; 32], &[0x22; 32]);
        if let Some(c) = c {
            let s = format!("{c:?}");
            assert!(s.contains("backend") && !s.contains("17") && !s.contains("0x11"));
        }
    }

    #[test]
    #[should_panic(expected = "not whole")]
    fn partial_unit_panics() {
        let c = XtsAes256::new(&[1; 32], &[2; 32]).expect("AES-NI");
        c.encrypt_units(&mut [0u8; 4000], 4096, 0);
    }

    proptest! {
        #![proptest_config(proptest::test_runner::Config {
            cases: 64,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x1619),
            ..Default::default()
        })]
        #[test]
        fn fused_crc32c_equals_crc32c_of_the_ciphertext(
            k1 in any::<[u8; 32]>(),
            k2 in any::<[u8; 32]>(),
            unit_chunks in 1usize..20,
            units in 1usize..6,
            prefix in proptest::collection::vec(any::<u8>(), 0..300),
            src_offset in 0usize..64,
            first in any::<u128>(),
            seed in any::<u64>(),
        ) {
            // Any fused unit size (multiples of 256 bytes), any earlier crc, any
            // alignment of the source and of the output.
            let unit = unit_chunks * 256;
            let mut data = vec![0u8; src_offset + unit * units];
            rand_chacha::ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut data);
            let src = &data[src_offset..];
            for b in supported() {
                let c = XtsAes256::with_backend(&k1, &k2, b).unwrap();
                let mut out = prefix.clone();
                let got = c.encrypt_units_append_crc32c(src, &mut out, unit, first, crc32c::crc32c(&prefix));
                let mut want = src.to_vec();
                c.encrypt_units(&mut want, unit, first);
                prop_assert!(out[prefix.len()..] == want[..], "{:?} ciphertext", b);
                prop_assert_eq!(got.is_some(), b == XtsBackend::Vaes512);
                if let Some(crc) = got {
                    prop_assert_eq!(crc, crc32c::crc32c(&out), "{:?} unit {} x{}", b, unit, units);
                }
            }
        }

        #[test]
        fn fused_parity_equals_the_reference(
            k1 in any::<[u8; 32]>(),
            columns in 1usize..8,
            rows in 1usize..6,
            short in 0usize..8,
            unit_chunks in 1usize..4,
            seed in any::<u64>(),
        ) {
            // `columns` columns of `rows` units, the last `short` of them one unit
            // shorter (when rows > 1), as RAID-Z lays out a record.
            let unit = unit_chunks * 256;
            let short = if rows > 1 { short.min(columns - 1) } else { 0 };
            let mut starts = Vec::new();
            let mut units = 0;
            for col in 0..columns {
                starts.push(units);
                units += if col >= columns - short { rows - 1 } else { rows };
            }
            let mut src = vec![0u8; units * unit];
            rand_chacha::ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut src);
            for b in supported() {
                let c = XtsAes256::with_backend(&k1, &[7; 32], b).unwrap();
                let (mut out, mut parity) = (Vec::new(), Vec::new());
                let got = c.encrypt_units_append_crc32c_parity(&src, &mut out, unit, 3, 0, &mut parity, &starts);
                prop_assert_eq!(got.is_some(), b == XtsBackend::Vaes512);
                if let Some(crc) = got {
                    let mut want = src.clone();
                    c.encrypt_units(&mut want, unit, 3);
                    prop_assert!(out == want);
                    prop_assert_eq!(crc, crc32c::crc32c(&want));
                    prop_assert!(parity == parity_reference(&want, unit, &starts), "{:?}", starts);
                }
            }
        }

        #[test]
        fn matches_xts_mode_oracle(
            k1 in any::<[u8; 32]>(),
            k2 in any::<[u8; 32]>(),
            unit_blocks in 1usize..300,
            units in 1usize..4,
            first in any::<u128>(),
            seed in any::<u64>(),
        ) {
            // Any whole-block unit size exercises the vector loops and every tail length.
            let unit = unit_blocks * 16;
            let mut data = vec![0u8; unit * units];
            rand_chacha::ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut data);
            let first = first >> 2; // xts-mode does not wrap the unit number
            let mut want = data.clone();
            oracle(&k1, &k2).encrypt_area(&mut want, unit, first, get_tweak_default);
            for b in supported() {
                let c = XtsAes256::with_backend(&k1, &k2, b).unwrap();
                let mut got = data.clone();
                c.encrypt_units(&mut got, unit, first);
                prop_assert!(got == want, "{:?} unit {} x{}", b, unit, units);
                c.decrypt_units(&mut got, unit, first);
                prop_assert!(got == data, "{:?} decrypt", b);
            }
        }
    }
}
