//! The extent pipeline the engine calls for every extent it writes or reads.
//!
//! Write: [`Codec::compress`] (zstd if it pays, zero-padded to 4 KiB) -> the engine
//! allocates a pool address -> [`Codec::seal`] (AES-256-XTS in place with the pool
//! sector as tweak, then crc32c of the stored bytes). Read: [`Codec::open`] (verify the
//! crc32c, decrypt, decompress to exactly the logical size). [`verify`] checks stored
//! bytes without keys, for scrub, resilver and RAID reconstruction.
//!
//! The write the engine does, without copying raw data: [`Codec::plan`] (the same
//! decision as `compress`, but a raw extent stays borrowed) -> allocate
//! [`Planned::stored_len`] bytes -> [`Codec::seal_planned`] (encrypts each
//! [`FUSE_BYTES`] piece of the caller's bytes straight into the padded output, then
//! checksums it while it is in L1; only a partial last sector is copied, to pad it).
//!
//! Sealing works in pieces of [`FUSE_BYTES`]: each piece is encrypted and then added
//! to the crc32c while it is still in the L1 cache, instead of encrypting the whole
//! extent and reading it back from L2 for the checksum. Where the XTS kernel fuses the
//! crc32c ([`XtsCipher::fuses_crc32c`]: VAES-512), a raw extent is encrypted and
//! checksummed in one call instead, the crc folded from the ciphertext registers, and
//! [`Codec::seal_planned_with_parity`] also computes a RAID-Z1 parity column in the
//! same loop (the engine hands it to `Vdev::write_with_parity`).

use crate::checksum::{Crc32c, crc32c};
use crate::compress::{
    self, CompressError, Compression, CompressionKind, MAX_EXTENT_BYTES, SECTOR_SIZE,
    looks_incompressible, round_up_sector,
};
use crate::crypto::XtsCipher;
use std::sync::atomic::{AtomicI32, Ordering};

/// Why stored bytes could not be turned back into the logical extent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The stored bytes do not match the checksum in the block pointer.
    #[error(
        "checksum mismatch: expected crc32c {expected:#010x}, stored bytes have {actual:#010x}"
    )]
    Checksum {
        /// crc32c from the block pointer.
        expected: u32,
        /// crc32c of the bytes read.
        actual: u32,
    },
    /// Sizes in the block pointer do not fit the stored buffer.
    #[error("bad extent geometry: {0}")]
    Geometry(String),
    /// The payload does not decompress to the logical size.
    #[error(transparent)]
    Decompress(#[from] CompressError),
}

/// The result of [`Codec::compress`]: what will be encrypted and stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compressed {
    /// How the payload is encoded.
    pub kind: CompressionKind,
    /// Exact payload bytes (the zstd frame, or the logical length when raw).
    pub psize: u32,
    /// The payload, zero-padded to a multiple of 4096 bytes (length = allocated data size).
    pub buf: Vec<u8>,
}

/// Bytes encrypted and checksummed together while they stay in the L1 data cache
/// (a whole number of 4 KiB XTS data units).
pub const FUSE_BYTES: usize = 4 * SECTOR_SIZE;

/// What [`Codec::plan`] decided for one logical extent, before it has a pool address.
#[derive(Debug)]
pub struct Planned<'a> {
    kind: CompressionKind,
    psize: u32,
    payload: Payload<'a>,
}

/// The bytes a [`Planned`] extent will store.
#[derive(Debug)]
enum Payload<'a> {
    /// Stored raw: the caller's bytes, padded to whole sectors when sealed.
    Raw(&'a [u8]),
    /// A zstd frame, already zero-padded to whole sectors.
    Frame(Vec<u8>),
}

impl Planned<'_> {
    /// How the payload is encoded.
    pub fn kind(&self) -> CompressionKind {
        self.kind
    }

    /// Exact payload bytes (the zstd frame, or the logical length when raw).
    pub fn psize(&self) -> u32 {
        self.psize
    }

    /// Bytes the extent takes on the pool (a multiple of 4096): what to allocate.
    pub fn stored_len(&self) -> usize {
        match &self.payload {
            Payload::Raw(raw) => round_up_sector(raw.len()),
            Payload::Frame(frame) => frame.len(),
        }
    }

    /// The sector-padded payload as an owned [`Compressed`] (copies a raw extent).
    pub fn into_compressed(self) -> Compressed {
        let buf = match self.payload {
            Payload::Raw(raw) => {
                let mut buf = Vec::with_capacity(round_up_sector(raw.len()));
                buf.extend_from_slice(raw);
                buf.resize(round_up_sector(raw.len()), 0);
                buf
            }
            Payload::Frame(frame) => frame,
        };
        Compressed {
            kind: self.kind,
            psize: self.psize,
            buf,
        }
    }
}

/// The per-pool extent transform: compression policy and (optional) XTS cipher.
///
/// The compression policy can change while the pool runs ([`Codec::set_compression`]):
/// it only decides how new extents are stored; every extent records its own kind.
#[derive(Debug)]
pub struct Codec {
    /// [`Compression`] packed: [`COMPRESSION_OFF`] or the zstd level.
    compression: AtomicI32,
    cipher: Option<XtsCipher>,
}

/// The packed [`Codec::compression`] value for "off".
const COMPRESSION_OFF: i32 = i32::MIN;

fn pack(c: Compression) -> i32 {
    match c {
        Compression::Off => COMPRESSION_OFF,
        Compression::Zstd { level } => level.max(COMPRESSION_OFF + 1),
    }
}

fn unpack(v: i32) -> Compression {
    if v == COMPRESSION_OFF {
        Compression::Off
    } else {
        Compression::Zstd { level: v }
    }
}

impl Clone for Codec {
    fn clone(&self) -> Self {
        Codec {
            compression: AtomicI32::new(self.compression.load(Ordering::Relaxed)),
            cipher: self.cipher.clone(),
        }
    }
}

/// True if `stored` has crc32c `expected_crc`. Needs no keys.
pub fn verify(stored: &[u8], expected_crc: u32) -> bool {
    crc32c(stored) == expected_crc
}

impl Codec {
    /// A codec with a compression policy and, for an encrypted pool, its cipher.
    pub fn new(compression: Compression, cipher: Option<XtsCipher>) -> Self {
        Codec {
            compression: AtomicI32::new(pack(compression)),
            cipher,
        }
    }

    /// The compression policy.
    pub fn compression(&self) -> Compression {
        unpack(self.compression.load(Ordering::Relaxed))
    }

    /// Change the compression policy for extents sealed from now on.
    pub fn set_compression(&self, compression: Compression) {
        self.compression.store(pack(compression), Ordering::Relaxed);
    }

    /// Whether extents are encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.cipher.is_some()
    }

    /// Compress one logical extent (or keep it raw), padded to whole sectors.
    ///
    /// zstd output is kept only if it is at most 7/8 of the input and needs fewer
    /// sectors; random-looking data skips zstd (see [`crate::compress`]).
    ///
    /// # Panics
    /// If `logical` is longer than [`MAX_EXTENT_BYTES`] (the engine bounds records).
    pub fn compress(&self, logical: &[u8]) -> Compressed {
        self.plan(logical).into_compressed()
    }

    /// Decide how to store one logical extent, as [`Codec::compress`] does, without
    /// copying it when it is stored raw; [`Codec::seal_planned`] finishes it.
    ///
    /// # Panics
    /// If `logical` is longer than [`MAX_EXTENT_BYTES`] (the engine bounds records).
    pub fn plan<'a>(&self, logical: &'a [u8]) -> Planned<'a> {
        assert!(
            logical.len() <= MAX_EXTENT_BYTES,
            "extent of {} bytes exceeds {MAX_EXTENT_BYTES}",
            logical.len()
        );
        if let Compression::Zstd { level } = self.compression() {
            let raw_sectors = round_up_sector(logical.len());
            // Must save 1/8 and at least one whole sector.
            let max_len = (logical.len() / 8 * 7).min(raw_sectors.saturating_sub(SECTOR_SIZE));
            if max_len > 0
                && !looks_incompressible(logical)
                && let Some(mut frame) = compress::zstd_bounded(logical, level, max_len)
            {
                let psize = frame.len();
                frame.resize(round_up_sector(psize), 0);
                return Planned {
                    kind: CompressionKind::Zstd,
                    psize: psize as u32,
                    payload: Payload::Frame(frame),
                };
            }
        }
        Planned {
            kind: CompressionKind::None,
            psize: logical.len() as u32,
            payload: Payload::Raw(logical),
        }
    }

    /// Seal a planned extent at `pool_sector`: the stored bytes (sector-padded,
    /// encrypted if the pool is) and their crc32c. Identical to
    /// `compress` + [`Codec::seal`], but raw data is encrypted from the caller's bytes
    /// into the output one [`FUSE_BYTES`] piece at a time (no copy, no zero fill), and
    /// each piece is checksummed right after, while it is in L1.
    pub fn seal_planned(&self, planned: Planned<'_>, pool_sector: u64) -> (Compressed, u32) {
        let (kind, psize) = (planned.kind, planned.psize);
        let (buf, crc) = match planned.payload {
            Payload::Frame(mut frame) => {
                let crc = self.seal(&mut frame, pool_sector);
                (frame, crc)
            }
            Payload::Raw(raw) => {
                let len = round_up_sector(raw.len());
                let mut buf = Vec::with_capacity(len);
                let mut crc = Crc32c::new();
                let mut sector = u128::from(pool_sector);
                // Whole sectors straight from the caller's bytes; a partial last sector
                // through a zero-padded copy of it.
                let (body, tail) = raw.split_at(raw.len() / SECTOR_SIZE * SECTOR_SIZE);
                let padded = (!tail.is_empty()).then(|| {
                    let mut v = vec![0u8; SECTOR_SIZE];
                    v[..tail.len()].copy_from_slice(tail);
                    v
                });
                let last: &[u8] = padded.as_deref().unwrap_or(&[]);
                if let Some(c) = &self.cipher
                    && c.fuses_crc32c(SECTOR_SIZE)
                {
                    // The kernel folds the crc32c over the ciphertext registers as it
                    // stores them: one call for the whole body, one for the padded tail.
                    let mut crc =
                        c.encrypt_units_append_crc32c(body, &mut buf, SECTOR_SIZE, sector, 0);
                    if !last.is_empty() {
                        sector += (body.len() / SECTOR_SIZE) as u128;
                        crc =
                            c.encrypt_units_append_crc32c(last, &mut buf, SECTOR_SIZE, sector, crc);
                    }
                    debug_assert_eq!(buf.len(), len);
                    return (Compressed { kind, psize, buf }, crc);
                }
                for piece in body.chunks(FUSE_BYTES).chain([last]) {
                    if piece.is_empty() {
                        continue;
                    }
                    let start = buf.len();
                    match &self.cipher {
                        // Encrypted from the caller's bytes into the output: no copy.
                        Some(c) => c.encrypt_units_append(piece, &mut buf, SECTOR_SIZE, sector),
                        None => buf.extend_from_slice(piece),
                    }
                    crc.update(&buf[start..]);
                    sector += (piece.len() / SECTOR_SIZE) as u128;
                }
                debug_assert_eq!(buf.len(), len);
                (buf, crc.finish())
            }
        };
        (Compressed { kind, psize, buf }, crc)
    }

    /// [`Codec::seal_planned`] for an extent going to a single-parity vdev (RAID-Z1):
    /// also returns the parity column when it could be computed inside the encryption
    /// loop, from the ciphertext registers (a raw extent of whole sectors on an
    /// encrypted pool whose XTS kernel fuses the crc32c; see
    /// [`XtsCipher::fuses_crc32c`]). `column_starts` are the first sector (within the
    /// extent) of each data column, as `Vdev::parity_column_starts` gives them; the
    /// parity then has as many sectors as the first column. Otherwise the parity is
    /// `None` and the vdev computes it. The stored bytes and crc are those of
    /// `seal_planned`.
    pub fn seal_planned_with_parity(
        &self,
        planned: Planned<'_>,
        pool_sector: u64,
        column_starts: &[usize],
    ) -> (Compressed, u32, Option<Vec<u8>>) {
        if let (Payload::Raw(raw), Some(c)) = (&planned.payload, &self.cipher)
            && raw.len().is_multiple_of(SECTOR_SIZE)
            && c.fuses_crc32c(SECTOR_SIZE)
        {
            let mut buf = Vec::new();
            let mut parity = Vec::new();
            if let Some(crc) = c.encrypt_units_append_crc32c_parity(
                raw,
                &mut buf,
                SECTOR_SIZE,
                u128::from(pool_sector),
                0,
                &mut parity,
                column_starts,
            ) {
                let (kind, psize) = (planned.kind, planned.psize);
                return (Compressed { kind, psize, buf }, crc, Some(parity));
            }
        }
        let (c, crc) = self.seal_planned(planned, pool_sector);
        (c, crc, None)
    }

    /// Encrypt `buf` in place (if the pool is encrypted) with tweaks starting at
    /// `pool_sector`, and return the crc32c of the stored bytes.
    ///
    /// # Panics
    /// On an encrypted pool, if `buf.len()` is not a multiple of 4096.
    pub fn seal(&self, buf: &mut [u8], pool_sector: u64) -> u32 {
        let Some(c) = &self.cipher else {
            return crc32c(buf);
        };
        assert!(
            buf.len().is_multiple_of(SECTOR_SIZE),
            "encrypted extent of {} bytes is not whole 4 KiB sectors",
            buf.len()
        );
        let mut crc = Crc32c::new();
        // u128 like the cipher's own unit counter: the same tweaks as one call.
        let mut sector = u128::from(pool_sector);
        for piece in buf.chunks_mut(FUSE_BYTES) {
            c.encrypt_units(piece, SECTOR_SIZE, sector);
            crc.update(piece);
            sector += (piece.len() / SECTOR_SIZE) as u128;
        }
        crc.finish()
    }

    /// Verify, decrypt and decompress stored bytes back into the `lsize` logical bytes.
    ///
    /// `stored` is the extent as read from `pool_sector` (sector-padded); it is
    /// decrypted in place. Every inconsistency is an error, never a panic.
    pub fn open(
        &self,
        stored: &mut [u8],
        pool_sector: u64,
        expected_crc: u32,
        kind: CompressionKind,
        psize: u32,
        lsize: u32,
    ) -> Result<Vec<u8>, CodecError> {
        let actual = crc32c(stored);
        if actual != expected_crc {
            return Err(CodecError::Checksum {
                expected: expected_crc,
                actual,
            });
        }
        let psize = self.decrypt_checked(stored, pool_sector, psize)?;
        Ok(compress::decompress(
            kind,
            &stored[..psize],
            lsize as usize,
        )?)
    }

    /// Check that `stored` holds a payload of `psize` bytes (and whole sectors, when
    /// encrypted), then decrypt it in place; returns `psize`.
    fn decrypt_checked(
        &self,
        stored: &mut [u8],
        pool_sector: u64,
        psize: u32,
    ) -> Result<usize, CodecError> {
        let psize = psize as usize;
        if psize > stored.len() {
            return Err(CodecError::Geometry(format!(
                "payload size {psize} exceeds the {} stored bytes",
                stored.len()
            )));
        }
        if let Some(c) = &self.cipher {
            if !stored.len().is_multiple_of(SECTOR_SIZE) {
                return Err(CodecError::Geometry(format!(
                    "encrypted extent of {} bytes is not whole 4 KiB sectors",
                    stored.len()
                )));
            }
            c.decrypt_sectors(stored, pool_sector);
        }
        Ok(psize)
    }

    /// [`Codec::open`] of stored bytes the caller has already verified against the block
    /// pointer's crc32c (the vdev read does): decrypts in place and, for a record stored
    /// raw, returns the same buffer truncated to `lsize` (no copy, no second checksum).
    pub fn open_verified(
        &self,
        mut stored: Vec<u8>,
        pool_sector: u64,
        kind: CompressionKind,
        psize: u32,
        lsize: u32,
    ) -> Result<Vec<u8>, CodecError> {
        let psize = self.decrypt_checked(&mut stored, pool_sector, psize)?;
        if kind == CompressionKind::None && lsize as usize <= psize {
            stored.truncate(lsize as usize);
            return Ok(stored);
        }
        Ok(compress::decompress(
            kind,
            &stored[..psize],
            lsize as usize,
        )?)
    }

    /// True if `stored` has crc32c `expected_crc` (no keys needed).
    pub fn verify(stored: &[u8], expected_crc: u32) -> bool {
        verify(stored, expected_crc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;
    use proptest::prelude::*;
    use rand::{RngCore, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn cipher() -> XtsCipher {
        XtsCipher::new(&MasterKey::from_bytes([0x42; 64]))
    }

    fn random(len: usize, seed: u64) -> Vec<u8> {
        let mut v = vec![0u8; len];
        ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut v);
        v
    }

    fn text(len: usize) -> Vec<u8> {
        (0..len).map(|i| b"the quick brown fox "[i % 20]).collect()
    }

    fn roundtrip(codec: &Codec, data: &[u8], sector: u64) -> Compressed {
        let c = codec.compress(data);
        assert!(c.buf.len().is_multiple_of(SECTOR_SIZE));
        let mut stored = c.buf.clone();
        let crc = codec.seal(&mut stored, sector);
        assert!(verify(&stored, crc));
        // The one-copy path stores exactly the same bytes.
        let planned = codec.plan(data);
        assert_eq!(planned.stored_len(), c.buf.len());
        assert_eq!((planned.kind(), planned.psize()), (c.kind, c.psize));
        let (sealed, crc2) = codec.seal_planned(planned, sector);
        assert_eq!((sealed.kind, sealed.psize), (c.kind, c.psize));
        assert!(sealed.buf == stored, "seal_planned stored other bytes");
        assert_eq!(crc2, crc);
        let out = codec
            .open(&mut stored, sector, crc, c.kind, c.psize, data.len() as u32)
            .unwrap();
        assert_eq!(out, data);
        c
    }

    #[test]
    fn compressible_data_is_compressed_random_is_not() {
        let codec = Codec::new(Compression::default(), Some(cipher()));
        let c = roundtrip(&codec, &text(128 << 10), 1000);
        assert_eq!(c.kind, CompressionKind::Zstd);
        assert!(c.buf.len() < 16 << 10);
        let c = roundtrip(&codec, &random(128 << 10, 1), 5);
        assert_eq!(c.kind, CompressionKind::None);
        assert_eq!(c.psize, 128 << 10);
    }

    #[test]
    fn compression_must_save_a_sector() {
        let codec = Codec::new(Compression::default(), None);
        // 4 KiB that compresses well still needs one sector: stored raw.
        let c = roundtrip(&codec, &text(4096), 0);
        assert_eq!(c.kind, CompressionKind::None);
        // Odd sizes are padded.
        let c = roundtrip(&codec, &random(5000, 2), 0);
        assert_eq!(c.buf.len(), 8192);
        assert_eq!(c.psize, 5000);
        let c = Codec::new(Compression::Off, None).compress(&text(1 << 16));
        assert_eq!(c.kind, CompressionKind::None);
    }

    #[test]
    fn ciphertext_depends_on_sector_and_crc_needs_no_key() {
        let codec = Codec::new(Compression::Off, Some(cipher()));
        let data = vec![0u8; 8192];
        let mut a = data.clone();
        let mut b = data.clone();
        let crc_a = codec.seal(&mut a, 10);
        let crc_b = codec.seal(&mut b, 11);
        assert_ne!(a, data);
        assert_ne!(a, b);
        // Second sector at 10 equals first sector at 11: the tweak is the pool sector.
        assert_eq!(a[4096..], b[..4096]);
        assert!(Codec::verify(&a, crc_a) && Codec::verify(&b, crc_b));
        assert!(!Codec::verify(&a, crc_b));
    }

    #[test]
    fn corruption_and_bad_geometry_are_errors() {
        let codec = Codec::new(Compression::default(), Some(cipher()));
        let data = text(64 << 10);
        let c = codec.compress(&data);
        let mut stored = c.buf.clone();
        let crc = codec.seal(&mut stored, 77);
        let mut bad = stored.clone();
        bad[3] ^= 0x10;
        assert!(matches!(
            codec.open(&mut bad, 77, crc, c.kind, c.psize, data.len() as u32),
            Err(CodecError::Checksum { expected, .. }) if expected == crc
        ));
        // Right crc, wrong address: decrypts to garbage, which must not decompress.
        let mut s = stored.clone();
        assert!(
            codec
                .open(&mut s, 78, crc, c.kind, c.psize, data.len() as u32)
                .is_err()
        );
        let mut s = stored.clone();
        assert!(matches!(
            codec.open(
                &mut s,
                77,
                crc,
                c.kind,
                stored.len() as u32 + 1,
                data.len() as u32
            ),
            Err(CodecError::Geometry(_))
        ));
        let mut s = stored.clone();
        assert!(matches!(
            codec.open(&mut s, 77, crc, c.kind, c.psize, data.len() as u32 - 1),
            Err(CodecError::Decompress(_))
        ));
    }

    /// Reference sealing: encrypt the whole extent, then the crc of all of it.
    fn seal_unfused(buf: &mut [u8], sector: u64) -> u32 {
        cipher().encrypt_sectors(buf, sector);
        crate::checksum::crc32c(buf)
    }

    #[test]
    fn fused_seal_equals_encrypt_then_crc() {
        let codec = Codec::new(Compression::Off, Some(cipher()));
        let plain = Codec::new(Compression::Off, None);
        // Below, at and around FUSE_BYTES and the largest extent, with sector wrap.
        for sectors in [1usize, 3, 4, 5, 8, 9, 31, 32] {
            for first in [0u64, 1000, u64::MAX - 2] {
                let data = random(sectors * SECTOR_SIZE, sectors as u64);
                let mut a = data.clone();
                let mut b = data.clone();
                assert_eq!(codec.seal(&mut a, first), seal_unfused(&mut b, first));
                assert_eq!(a, b, "{sectors} sectors at {first}");
                let mut p = data.clone();
                assert_eq!(plain.seal(&mut p, first), crc32c::crc32c(&data));
                assert_eq!(p, data);
            }
        }
    }

    /// The stored bytes of fixed records at fixed sectors with a fixed key, pinned by
    /// their crc32c (which is also what the block pointer records) and shape: the
    /// on-disk format must not change with the implementation. Both write paths
    /// (`compress` + `seal`, and `plan` + `seal_planned`, which the engine uses) give them.
    /// `seal_planned_with_parity` stores what `seal_planned` stores (so the pinned bytes
    /// hold for it too) and, where it fuses the parity, the XOR of the columns.
    #[test]
    fn seal_with_parity_equals_seal_planned_plus_parity() {
        let enc = Codec::new(Compression::default(), Some(cipher()));
        let plain = Codec::new(Compression::default(), None);
        let fuses = cipher().fuses_crc32c(SECTOR_SIZE);
        let cases: [(&Codec, Vec<u8>, &[usize], bool); 6] = [
            (&enc, random(128 << 10, 100), &[0, 11, 22], fuses),
            (&enc, random(128 << 10, 102), &[0, 8, 16, 24], fuses),
            (&enc, random(31 * SECTOR_SIZE, 103), &[0, 11, 21], fuses),
            (&enc, random(5000, 101), &[0, 1], false),
            (&enc, text(64 << 10), &[0], false),
            (&plain, random(128 << 10, 104), &[0, 11, 22], false),
        ];
        for (i, (codec, rec, starts, fused)) in cases.into_iter().enumerate() {
            let (a, crc_a) = codec.seal_planned(codec.plan(&rec), 4242);
            let (b, crc_b, p) = codec.seal_planned_with_parity(codec.plan(&rec), 4242, starts);
            assert_eq!(a, b, "case {i}");
            assert_eq!(crc_a, crc_b, "case {i}");
            assert_eq!(p.is_some(), fused, "case {i}");
            if let Some(p) = p {
                let units = b.buf.len() / SECTOR_SIZE;
                let ends = starts.iter().skip(1).chain([&units]);
                let cols: Vec<&[u8]> = starts
                    .iter()
                    .zip(ends)
                    .map(|(&x, &y)| &b.buf[x * SECTOR_SIZE..y * SECTOR_SIZE])
                    .collect();
                let mut want = vec![0u8; cols[0].len()];
                crate::raid::parity::gen_p_scalar(&cols, &mut want);
                assert!(p == want, "case {i} parity");
            }
        }
    }

    #[test]
    fn stored_bytes_are_pinned() {
        let enc = Codec::new(Compression::default(), Some(cipher()));
        let plain = Codec::new(Compression::default(), None);
        /// Name, codec, record, sector, then the pinned kind, psize, stored length, crc.
        type Case<'a> = (
            &'a str,
            &'a Codec,
            Vec<u8>,
            u64,
            CompressionKind,
            u32,
            usize,
            u32,
        );
        let cases: [Case<'_>; 5] = [
            (
                "random 128 KiB",
                &enc,
                random(128 << 10, 100),
                4242,
                CompressionKind::None,
                128 << 10,
                128 << 10,
                PIN[0],
            ),
            (
                "random 5000 B",
                &enc,
                random(5000, 101),
                7,
                CompressionKind::None,
                5000,
                8192,
                PIN[1],
            ),
            (
                "text 64 KiB",
                &enc,
                text(64 << 10),
                u64::MAX - 3,
                CompressionKind::Zstd,
                PIN_TEXT_PSIZE,
                4096,
                PIN[2],
            ),
            (
                "random 128 KiB clear",
                &plain,
                random(128 << 10, 100),
                4242,
                CompressionKind::None,
                128 << 10,
                128 << 10,
                PIN[3],
            ),
            (
                "random 5000 B clear",
                &plain,
                random(5000, 101),
                7,
                CompressionKind::None,
                5000,
                8192,
                PIN[4],
            ),
        ];
        for (name, codec, data, sector, kind, psize, stored_len, crc) in cases {
            let mut c = codec.compress(&data);
            let crc_old = codec.seal(&mut c.buf, sector);
            let (sealed, crc_new) = codec.seal_planned(codec.plan(&data), sector);
            for (path, got_crc, got) in [
                ("compress+seal", crc_old, &c),
                ("plan+seal_planned", crc_new, &sealed),
            ] {
                assert_eq!(
                    (got.kind, got.psize, got.buf.len()),
                    (kind, psize, stored_len),
                    "{name} via {path}"
                );
                assert_eq!(crc32c(&got.buf), got_crc, "{name} via {path}");
                assert_eq!(
                    got_crc, crc,
                    "{name} via {path}: stored bytes changed (crc {got_crc:#010x})"
                );
            }
        }
    }

    /// crc32c of the stored bytes of the cases of [`stored_bytes_are_pinned`].
    const PIN: [u32; 5] = [
        0x020c_3a7d,
        0x7df7_52a8,
        0x03da_1bee,
        0x055f_b2ae,
        0x0219_9681,
    ];
    /// zstd-1 frame size of the pinned text record.
    const PIN_TEXT_PSIZE: u32 = 38;

    proptest! {
        #![proptest_config(crate::testutil::proptest_config(64))]
        #[test]
        fn open_never_panics_on_garbage(
            sectors in 0usize..3,
            seed in any::<u64>(),
            psize in 0u32..20000,
            lsize in 0u32..40000,
            zstd in any::<bool>(),
            encrypted in any::<bool>(),
        ) {
            let codec = Codec::new(Compression::default(), encrypted.then(cipher));
            let mut stored = random(sectors * SECTOR_SIZE, seed);
            let crc = crc32c(&stored);
            let kind = if zstd { CompressionKind::Zstd } else { CompressionKind::None };
            let _ = codec.open(&mut stored, seed, crc, kind, psize, lsize);
        }

        #[test]
        fn roundtrip_any_data(
            len in 0usize..40000,
            seed in any::<u64>(),
            repeat in 1usize..64,
            sector in any::<u32>(),
        ) {
            // Blocks of random bytes repeated `repeat` times: from incompressible to
            // highly compressible.
            let unit = random(len / repeat + 1, seed);
            let data: Vec<u8> = unit.iter().cycle().take(len).copied().collect();
            let codec = Codec::new(Compression::Zstd { level: 3 }, Some(cipher()));
            roundtrip(&codec, &data, u64::from(sector));
            let plain = Codec::new(Compression::Off, None);
            roundtrip(&plain, &data, u64::from(sector));
        }
    }
}
