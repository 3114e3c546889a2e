//! Extent compression: zstd, kept only when it pays, with a cheap bail-out for
//! incompressible data.
//!
//! Policy (DESIGN.md, pool invariant 3):
//! - a record is compressed with zstd at the configured level (default 1);
//! - the result is kept only if its frame is at most 7/8 of the input (it saves at
//!   least 1/8) *and* it needs fewer 4 KiB sectors than the raw record (otherwise
//!   the space saved is zero after sector padding and decompression would be pure cost);
//! - before compressing, 8 windows of 256 bytes spread across the record are sampled
//!   (2 KiB in all). The record is stored raw without running zstd when (a) the
//!   order-0 (Shannon) entropy of the whole sample, with the Miller-Madow correction
//!   of its small-sample bias, is at least 7 bits per byte, so no literal coder can
//!   save 1/8, and (b) no single window is structured (plug-in entropy below 6 bits
//!   per byte: text, source code, base64, zeros, tables), so the record has no
//!   compressible region of the size that could save 1/8 on its own (such a region
//!   fills at least one window: windows are 18 KiB apart in a 128 KiB record).
//!   Random, encrypted or already compressed data, and near-random data such as fio's
//!   default write buffers (random bytes with zero-filled fields every 512 bytes:
//!   7.6-7.9 bits per byte, 256-byte windows at 6.3 bits or more; zstd-1 saves 4-9 %
//!   of it, never 1/8) cost a 2 KiB histogram per record; text, zeros and records
//!   that mix incompressible and compressible regions go to zstd. (Measured windows:
//!   English text and Rust source stay below 5.5 bits, fio buffers above 6.3.)
//! - Known blind spot, by design: matches longer than a window between far-apart
//!   regions of high-entropy bytes (e.g. the same 4 KiB of random bytes repeated
//!   through the record) are not sampled; such a record is stored raw (space, not
//!   correctness, is lost). Finding them would need a pass over the whole record,
//!   which is what the bail-out exists to avoid.
//! - zstd literals: when the same 8 windows, with their most frequent byte value set
//!   aside (the fill of zero or repeated runs, which zstd codes as matches), show at
//!   least 7.8 bits per byte (Miller-Madow corrected) over at least a quarter of the
//!   sample, the record is compressed with zstd's literal compression off
//!   (`ZSTD_c_literalCompressionMode = ZSTD_ps_disable`): fio's
//!   `--buffer_compress_percentage=50` buffers (256 random bytes, 256 zeros) spent
//!   ~12 % of the system's CPU histogramming and Huffman-coding literals that zstd
//!   then stored raw anyway. Frame sizes at zstd-1 on the test corpus (128 KiB
//!   records; Huffman on / off; picked = off): fio 50 % 66294 / 66294 (picked),
//!   fio-like + 24..64 KiB zeros identical (picked), random and fio-like identical
//!   (picked, but bailed out before zstd), text 20328 / 20350 (kept on), 16-letter
//!   data 65576 / 131084 (kept on), random + text and text + random regions identical
//!   (kept on). zstd-1 is 1.23x faster on a fio 50 % record with literals off
//!   (pipeline bench); the test costs ~2.4 us per 128 KiB record that goes to zstd.
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

/// Number of windows the incompressibility test samples.
const SAMPLE_WINDOWS: usize = 8;
/// Windows histogrammed side by side (divides [`SAMPLE_WINDOWS`]).
const LANES: usize = 2;
/// Bytes per sampled window.
const WINDOW: usize = 256;
/// Records shorter than this skip the sampling test (a record of one sector is never
/// compressed: compression must save a whole sector).
const SAMPLE_MIN_LEN: usize = SECTOR_SIZE;
/// Bits per byte of order-0 entropy (bias-corrected) the whole sample needs to be
/// judged incompressible: below 7, a literal coder could store it in 7/8.
const SAMPLE_MIN_BITS: f32 = 7.0;
/// A window whose plug-in entropy is below this many bits per byte is structured.
const WINDOW_MIN_BITS: f32 = 6.0;
/// Largest byte count whose `c * log2(c)` the table holds: the whole sample.
const MAX_COUNT: usize = SAMPLE_WINDOWS * WINDOW;

/// Fixed-point scale of [`C_LOG2_C`]: 12 fractional bits.
const LOG_SCALE: f64 = 4096.0;

/// `C_LOG2_C[c] = c * log2(c) * 2^12`, rounded (0 for c = 0), for entropy sums with
/// integer adds and no `log2` per bin. The largest sum, `n log2 n * 2^12` for the
/// whole 2 KiB sample, is under 2^27.
static C_LOG2_C: std::sync::LazyLock<Box<[u32; MAX_COUNT + 1]>> = std::sync::LazyLock::new(|| {
    let mut t = Box::new([0u32; MAX_COUNT + 1]);
    for (c, v) in t.iter_mut().enumerate().skip(1) {
        *v = (c as f64 * (c as f64).log2() * LOG_SCALE).round() as u32;
    }
    t
});

/// `C_LOG2_C_STEP[c] = C_LOG2_C[c + 1] - C_LOG2_C[c]`: what one more byte of a value
/// seen `c` times in a window adds to the window's sum.
static C_LOG2_C_STEP: std::sync::LazyLock<Box<[u32; WINDOW]>> = std::sync::LazyLock::new(|| {
    let t = &**C_LOG2_C;
    let mut d = Box::new([0u32; WINDOW]);
    for (c, v) in d.iter_mut().enumerate() {
        *v = t[c + 1] - t[c];
    }
    d
});

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

/// True if a sample of `data` is so close to uniformly random, everywhere it looked,
/// that compression cannot save 1/8 (see the module docs). Data of one sector or less
/// is never judged.
pub fn looks_incompressible(data: &[u8]) -> bool {
    if data.len() < SAMPLE_MIN_LEN {
        return false;
    }
    let table = &**C_LOG2_C;
    let delta = &**C_LOG2_C_STEP;
    let stride = (data.len() - WINDOW) / (SAMPLE_WINDOWS - 1);
    let mut total = [0u16; 256];
    // LANES windows at a time, each with its own histogram and sum: independent
    // chains of (count load, table load, add, count store) keep the core busier than
    // one. The result is the same as one window after the other.
    for group in 0..SAMPLE_WINDOWS / LANES {
        let windows: [&[u8]; LANES] = std::array::from_fn(|j| {
            let start = (group * LANES + j) * stride;
            &data[start..start + WINDOW]
        });
        // sum of c log2 c built up byte by byte: a count going from c to c+1 adds
        // C_LOG2_C[c+1] - C_LOG2_C[c]. No pass over the 256 bins per window.
        let mut hist = [[0u16; 256]; LANES];
        let mut sums = [0u32; LANES];
        for i in 0..WINDOW {
            for j in 0..LANES {
                let c = &mut hist[j][usize::from(windows[j][i])];
                sums[j] += delta[usize::from(*c)];
                *c += 1;
            }
        }
        for h in &hist {
            for (t, c) in total.iter_mut().zip(h) {
                *t += c;
            }
        }
        if sums
            .iter()
            .any(|&sum| entropy_bits(sum, WINDOW, 0) < WINDOW_MIN_BITS)
        {
            return false;
        }
    }
    let sum_c_log_c: u32 = total.iter().map(|&n| table[usize::from(n)]).sum();
    let distinct = total.iter().filter(|&&n| n > 0).count();
    entropy_bits(sum_c_log_c, MAX_COUNT, distinct) >= SAMPLE_MIN_BITS
}

/// Shannon entropy in bits per byte of `n` bytes whose histogram has
/// `sum_c_log_c` = sum of c log2(c) (in [`C_LOG2_C`] fixed point): `log2(n) - sum / n`,
/// plus the Miller-Madow
/// correction `(distinct - 1) / (2 n ln 2)` when `distinct` (non-zero bins) is given
/// (the plug-in estimate is biased low on small samples).
fn entropy_bits(sum_c_log_c: u32, n: usize, distinct: usize) -> f32 {
    let n = n as f32;
    let plug_in = n.log2() - (f64::from(sum_c_log_c) / LOG_SCALE) as f32 / n;
    if distinct == 0 {
        plug_in
    } else {
        plug_in + (distinct as f32 - 1.0) / (2.0 * n * std::f32::consts::LN_2)
    }
}

/// Bits per byte (bias-corrected) the sample's literal candidates need for zstd's
/// literal (Huffman) stage to be skipped: at 7.8 and above Huffman codes save at
/// most ~2.5 % of the literals, less than the table costs on near-uniform bytes.
const RAW_LITERALS_MIN_BITS: f32 = 7.8;

/// True if the bytes zstd will likely leave as literals in `data` look uniformly
/// random, so its Huffman literal stage costs CPU and saves (almost) nothing (see
/// the module docs). Looks at the same 8 windows as [`looks_incompressible`]: the
/// most frequent byte value (the fill of zero or repeated runs, which zstd turns
/// into matches) is set aside and the order-0 entropy of the rest, with the
/// Miller-Madow correction, must be at least 7.8 bits per byte, over at least a
/// quarter of the sample. Text, source code, tables and anything with a second
/// frequent value stay well below.
pub fn literals_look_random(data: &[u8]) -> bool {
    if data.len() < SAMPLE_MIN_LEN {
        return false;
    }
    let table = &**C_LOG2_C;
    let stride = (data.len() - WINDOW) / (SAMPLE_WINDOWS - 1);
    let mut total = [0u16; 256];
    for w in 0..SAMPLE_WINDOWS {
        for &b in &data[w * stride..w * stride + WINDOW] {
            total[usize::from(b)] += 1;
        }
    }
    let top = total.iter().copied().max().unwrap_or(0);
    let rest = MAX_COUNT - usize::from(top);
    if rest < MAX_COUNT / 4 {
        return false;
    }
    let mut top_seen = false;
    let (mut sum, mut distinct) = (0u32, 0usize);
    for &c in &total {
        if c == top && !top_seen {
            top_seen = true;
        } else if c > 0 {
            sum += table[usize::from(c)];
            distinct += 1;
        }
    }
    entropy_bits(sum, rest, distinct) >= RAW_LITERALS_MIN_BITS
}

thread_local! {
    static COMPRESSOR: RefCell<Option<(i32, bool, zstd::bulk::Compressor<'static>)>> =
        const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

/// Compress `data` with zstd at `level` if the frame fits in `max_len` bytes.
///
/// zstd's literal compression is switched off for records whose literals look
/// random ([`literals_look_random`]); the frame is a standard zstd frame either way.
///
/// Returns the frame in a vector whose capacity is already rounded to a sector, or
/// `None` when it does not fit (or zstd failed, which leaves the record raw).
pub(crate) fn zstd_bounded(data: &[u8], level: i32, max_len: usize) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(round_up_sector(max_len.max(1)));
    let raw_literals = literals_look_random(data);
    let result = COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|(l, _, _)| *l != level) {
            *slot = Some((level, false, zstd::bulk::Compressor::new(level)?));
        }
        let (_, raw, c) = slot
            .as_mut()
            .ok_or_else(|| std::io::Error::other("no compressor"))?;
        if *raw != raw_literals {
            c.set_parameter(zstd::zstd_safe::CParameter::LiteralCompressionMode(
                if raw_literals {
                    zstd::zstd_safe::ParamSwitch::Disable
                } else {
                    zstd::zstd_safe::ParamSwitch::Auto
                },
            ))?;
            *raw = raw_literals;
        }
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

    /// Random bytes with a 32-byte header every 512 bytes (offset, 20 zeros, a
    /// constant): the shape of fio 3's default write buffers, about 7.6 bits per byte.
    fn fio_like(len: usize, seed: u64) -> Vec<u8> {
        let mut v = random(len, seed);
        for (i, chunk) in v.chunks_mut(512).enumerate() {
            if chunk.len() >= 72 {
                chunk[40..48].copy_from_slice(&((i as u64) << 9).to_le_bytes());
                chunk[48..56].fill(0);
                chunk[56..60].copy_from_slice(&[0x49, 0x5d, 0x1f, 0x2f]);
                chunk[60..72].fill(0);
            }
        }
        v
    }

    /// 16 letters, uniformly: zstd-1 stores it in about half its size.
    fn half_compressible(len: usize, seed: u64) -> Vec<u8> {
        random(len, seed)
            .into_iter()
            .map(|b| b"etaoinshrdlucmfw"[usize::from(b & 15)])
            .collect()
    }

    /// fio's `--buffer_compress_percentage=50` buffers: 256 random bytes, 256 zeros.
    fn fio_50(len: usize, seed: u64) -> Vec<u8> {
        let mut v = random(len, seed);
        for c in v.chunks_mut(512) {
            let half = 256.min(c.len());
            c[half..].fill(0);
        }
        v
    }

    /// `len` bytes of `base` with `region` overwritten at `at` by `fill`.
    fn mixed(base: Vec<u8>, fill: &[u8], at: usize) -> Vec<u8> {
        let mut v = base;
        v[at..at + fill.len()].copy_from_slice(fill);
        v
    }

    /// A corpus of records of every kind the bail-out must tell apart.
    fn corpus() -> Vec<(String, Vec<u8>)> {
        const R: usize = 128 << 10;
        let mut c: Vec<(String, Vec<u8>)> = vec![
            ("text".into(), text(R)),
            ("zeros".into(), vec![0u8; R]),
            ("half".into(), half_compressible(R, 4)),
            ("random".into(), random(R, 5)),
            ("fio-like".into(), fio_like(R, 6)),
            ("fio 50%".into(), fio_50(R, 10)),
            ("text 8 KiB".into(), text(8192)),
            ("random 8 KiB".into(), random(8192, 7)),
        ];
        // Random records with a compressible region (text or zeros) of 24, 32, 64 KiB
        // at the start, in the middle and at the end, and the reverse.
        for region in [24usize << 10, 32 << 10, 64 << 10] {
            for at in [0, (R - region) / 2, R - region] {
                c.push((
                    format!("random + {region} text at {at}"),
                    mixed(random(R, at as u64), &text(region), at),
                ));
                c.push((
                    format!("fio-like + {region} zeros at {at}"),
                    mixed(fio_like(R, 8), &vec![0; region], at),
                ));
                c.push((
                    format!("text + {region} random at {at}"),
                    mixed(text(R), &random(region, 9), at),
                ));
            }
        }
        c
    }

    #[test]
    fn random_and_fio_like_are_judged_incompressible_structured_data_is_not() {
        for seed in 0..20 {
            assert!(looks_incompressible(&random(128 << 10, seed)));
            assert!(looks_incompressible(&random(4096, seed)));
            assert!(looks_incompressible(&fio_like(128 << 10, seed)));
            assert!(looks_incompressible(&fio_like(4096, seed)));
        }
        assert!(!looks_incompressible(&text(128 << 10)));
        assert!(!looks_incompressible(&vec![0u8; 8192]));
        assert!(!looks_incompressible(&half_compressible(128 << 10, 1)));
        // Too short to judge.
        assert!(!looks_incompressible(&random(4095, 1)));
    }

    #[test]
    fn bail_out_never_skips_a_record_zstd_would_shrink_by_an_eighth() {
        let mut bailed = 0;
        for (name, r) in corpus() {
            let would_pay = zstd_bounded(&r, 1, r.len() / 8 * 7).is_some();
            if looks_incompressible(&r) {
                bailed += 1;
                assert!(
                    !would_pay,
                    "{name}: bail-out skipped a record zstd-1 shrinks by 1/8"
                );
            }
            // Each kind is judged as it should be.
            let expect_bail =
                name.starts_with("random") && !name.contains('+') || name == "fio-like";
            assert_eq!(looks_incompressible(&r), expect_bail, "{name}");
        }
        assert_eq!(bailed, 3);
    }

    /// zstd-1 frame size of `data` with literal compression forced on or off.
    fn frame_len(data: &[u8], raw_literals: bool) -> usize {
        let mut c = zstd::bulk::Compressor::new(1).unwrap();
        if raw_literals {
            c.set_parameter(zstd::zstd_safe::CParameter::LiteralCompressionMode(
                zstd::zstd_safe::ParamSwitch::Disable,
            ))
            .unwrap();
        }
        c.compress(data).unwrap().len()
    }

    #[test]
    fn raw_literals_only_where_huffman_saves_under_one_percent() {
        let mut chosen = Vec::new();
        for (name, r) in corpus() {
            let (huf, raw) = (frame_len(&r, false), frame_len(&r, true));
            let pick = literals_look_random(&r);
            eprintln!(
                "{name}: {} bytes, zstd-1 {huf} ({:.4}), raw literals {raw} ({:.4}), picked raw: {pick}",
                r.len(),
                huf as f64 / r.len() as f64,
                raw as f64 / r.len() as f64
            );
            if pick {
                chosen.push(name.clone());
                assert!(raw * 100 <= huf * 101, "{name}: {huf} -> {raw}");
            }
        }
        // The fio 50 % buffers take the raw-literal mode; text, 16 letters, zeros and
        // records mixing text with random bytes do not.
        assert!(chosen.iter().any(|n| n == "fio 50%"), "{chosen:?}");
        for n in &chosen {
            assert!(!n.contains("text") && n != "half" && n != "zeros", "{n}");
        }
        for seed in 0..20 {
            assert!(literals_look_random(&fio_50(128 << 10, seed)));
            assert!(!literals_look_random(&half_compressible(128 << 10, seed)));
        }
        assert!(!literals_look_random(&text(128 << 10)));
        // zstd_bounded in raw-literal mode still round-trips, and the cached
        // compressor goes back to compressing literals for text.
        let f = fio_50(128 << 10, 3);
        let frame = zstd_bounded(&f, 1, f.len()).unwrap();
        assert_eq!(
            decompress(CompressionKind::Zstd, &frame, f.len()).unwrap(),
            f
        );
        let t = text(128 << 10);
        let frame = zstd_bounded(&t, 1, t.len()).unwrap();
        assert_eq!(frame.len(), frame_len(&t, false));
    }

    fn entropy_of(w: &[u8], corrected: bool) -> f32 {
        let mut h = [0usize; 256];
        w.iter().for_each(|&b| h[usize::from(b)] += 1);
        let sum: u32 = h.iter().map(|&c| C_LOG2_C[c]).sum();
        let distinct = if corrected {
            h.iter().filter(|&&c| c > 0).count()
        } else {
            0
        };
        entropy_bits(sum, w.len(), distinct)
    }

    #[test]
    fn entropy_estimates_have_margin() {
        // Known values.
        assert_eq!(entropy_of(&[7u8; 256], false), 0.0);
        let all: Vec<u8> = (0..=255u8).collect();
        assert!((entropy_of(&all, false) - 8.0).abs() < 1e-4);
        // Uniformly random samples clear both thresholds every time over 1000 seeds,
        // and 7-bit data (exactly 7 bits per byte) does not pass as random most of
        // the time.
        let mut rng = ChaCha8Rng::seed_from_u64(12);
        let mut sample = [0u8; MAX_COUNT];
        let mut seven_bit_passed = 0;
        for _ in 0..1000 {
            rng.fill_bytes(&mut sample);
            assert!(entropy_of(&sample, true) >= SAMPLE_MIN_BITS + 0.8);
            assert!(entropy_of(&sample[..WINDOW], false) >= WINDOW_MIN_BITS + 0.8);
            sample.iter_mut().for_each(|b| *b &= 0x7f);
            seven_bit_passed += usize::from(entropy_of(&sample, true) >= SAMPLE_MIN_BITS);
        }
        assert!(
            seven_bit_passed < 700,
            "{seven_bit_passed} of 1000 7-bit samples passed"
        );
        // Structured windows are below the window threshold with margin.
        for w in [
            text(WINDOW),
            half_compressible(WINDOW, 3),
            vec![0u8; WINDOW],
        ] {
            assert!(entropy_of(&w, false) < WINDOW_MIN_BITS - 1.0);
        }
        // fio-like windows are above it, with or without a header in them.
        let f = fio_like(4096, 1);
        for start in (0..4096 - WINDOW).step_by(64) {
            assert!(entropy_of(&f[start..start + WINDOW], false) > WINDOW_MIN_BITS);
        }
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
