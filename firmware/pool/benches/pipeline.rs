//! Extent pipeline benchmark: per core, on four kinds of data, the write pipeline
//! exactly as `engine/io.rs` runs it (`Codec::plan`: bail-out or zstd-1;
//! `Vdev::parity_column_starts` + `Codec::seal_planned_with_parity`: AES-256-XTS from
//! the record into the stored buffer, its crc32c and, on an incompressible record, the
//! RAID-Z1 parity, all in one loop where the XTS kernel fuses them;
//! `Vdev::write_with_parity` on a RAID-Z1 vdev of 4 devices: the column writes (and
//! the parity where it was not precomputed), to devices that accept and discard them) and the read pipeline (crc32c verify, decrypt,
//! decompress), side by side with zstd-1 alone, the XTS kernel alone, crc32c alone
//! and memcpy; every XTS implementation (`XtsPath`: the hal's VAES/AES-NI kernels and the
//! portable batched path) against raw AES and the `xts-mode` crate; the
//! incompressibility test; crc32c (`crc-fast`, the pool's, and the `crc32c` crate)
//! against memcpy; sealing (XTS + crc32c) fused per piece of 4..128 KiB.
//!
//! Run: `cargo bench -p ingot-pool --bench pipeline` (about 15 s after the build).
//! Method: 128 KiB records (one fs record), single thread. The variants of one
//! comparison are timed in turn, round after round (101 rounds of ~5 ms samples),
//! so each round's samples saw the same load on this shared machine; time is the
//! thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), so preemption by other processes
//! does not count. The tables show
//! the median GB/s of each variant (logical bytes per second) and, for ratios, the
//! median over rounds of the paired per-round ratio.

use ingot_hal::blockdev::{
    BlockDevice, BlockError, DeviceIdentity, Geometry, HealthInfo, MemBlockDevice, WriteFlags,
};
use ingot_pool::checksum::{Crc32c, crc32c};
use ingot_pool::codec::{Codec, FUSE_BYTES};
use ingot_pool::compress::Compression;
use ingot_pool::compress::{literals_look_random, looks_incompressible};
use ingot_pool::crypto::{KdfParams, KeySlot, MasterKey, Passphrase, XtsCipher, XtsPath};
use ingot_pool::raid::parity;
use ingot_pool::raid::{Layout, Vdev};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

const RECORD: usize = 128 << 10;
const ROUNDS: usize = 101;
const SAMPLE_TIME: Duration = Duration::from_millis(5);

fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

/// Random bytes from a 16-letter alphabet: about half the size under zstd-1.
fn half_compressible(len: usize) -> Vec<u8> {
    const ALPHABET: &[u8; 16] = b"etaoinshrdlucmfw";
    random(len, 2)
        .into_iter()
        .map(|b| ALPHABET[usize::from(b & 15)])
        .collect()
}

/// Random bytes with fio 3's default-buffer shape: 20 zero bytes and a constant in a
/// header every 512 bytes (zstd-1 saves about 4 % of it: below the 1/8 threshold).
fn fio_like(len: usize) -> Vec<u8> {
    let mut v = random(len, 4);
    for chunk in v.chunks_mut(512) {
        if chunk.len() >= 72 {
            chunk[48..56].fill(0);
            chunk[56..60].copy_from_slice(&[0x49, 0x5d, 0x1f, 0x2f]);
            chunk[60..72].fill(0);
        }
    }
    v
}

/// fio's `--buffer_compress_percentage=50` buffers: 256 random bytes, 256 zeros.
fn fio_50(len: usize) -> Vec<u8> {
    let mut v = random(len, 5);
    for c in v.chunks_mut(512) {
        let half = 256.min(c.len());
        c[half..].fill(0);
    }
    v
}

/// English-like text: words from a small vocabulary, spaces and line breaks.
fn text_like(len: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "the",
        "pool",
        "writes",
        "every",
        "extent",
        "with",
        "its",
        "own",
        "parity",
        "and",
        "checksum",
        "a",
        "transaction",
        "group",
        "commits",
        "when",
        "label",
        "is",
        "durable",
        "of",
        "to",
        "in",
        "data",
        "block",
        "pointer",
        "tree",
        "scrub",
        "reads",
        "all",
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut v = Vec::with_capacity(len + 16);
    let mut col = 0;
    while v.len() < len {
        let w = WORDS[(rng.next_u32() as usize) % WORDS.len()];
        v.extend_from_slice(w.as_bytes());
        col += w.len() + 1;
        if col > 72 {
            v.push(b'\n');
            col = 0;
        } else {
            v.push(b' ');
        }
    }
    v.truncate(len);
    v
}

/// Medians of interleaved samples of several variants.
struct Comparison {
    /// GB/s samples per variant, round by round.
    samples: Vec<Vec<f64>>,
}

impl Comparison {
    /// Median GB/s of variant `i`.
    fn median(&self, i: usize) -> f64 {
        median(self.samples[i].clone())
    }

    /// Median over rounds of the paired ratio variant `a` / variant `b` (both measured
    /// back to back in each round, so they saw the same machine load).
    fn ratio(&self, a: usize, b: usize) -> f64 {
        median(
            self.samples[a]
                .iter()
                .zip(&self.samples[b])
                .map(|(x, y)| x / y)
                .collect(),
        )
    }
}

/// CPU time of this thread: time other processes take on this shared machine is
/// not counted against the code measured.
fn thread_cpu_secs() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Time each variant in turn for ROUNDS rounds (A/B interleaving).
fn compare(bytes_per_call: usize, variants: &mut [&mut dyn FnMut()]) -> Comparison {
    // Calibrate calls per sample (also the warm-up).
    let mut calls = Vec::new();
    for f in variants.iter_mut() {
        let start = Instant::now();
        let mut n = 0u32;
        while start.elapsed() < SAMPLE_TIME * 4 {
            f();
            n += 1;
        }
        calls.push((n / 4).max(1));
    }
    let mut samples = vec![Vec::with_capacity(ROUNDS); variants.len()];
    for _ in 0..ROUNDS {
        for (i, f) in variants.iter_mut().enumerate() {
            let start = thread_cpu_secs();
            for _ in 0..calls[i] {
                f();
            }
            let secs = thread_cpu_secs() - start;
            samples[i].push(bytes_per_call as f64 * f64::from(calls[i]) / secs / 1e9);
        }
    }
    Comparison { samples }
}

/// A device that accepts every write and discards it (reads return zeros): the vdev's
/// CPU work (parity, column split, dispatch) without any device's copy or I/O.
#[derive(Debug)]
struct NullDevice {
    identity: DeviceIdentity,
}

/// Devices of the bench vdev: 16 GiB each, none of it stored.
const NULL_DEVICE_BYTES: u64 = 16 << 30;

#[async_trait::async_trait]
impl BlockDevice for NullDevice {
    fn geometry(&self) -> Geometry {
        Geometry {
            block_size: 4096,
            blocks: NULL_DEVICE_BYTES / 4096,
            max_transfer: 1 << 20,
            volatile_write_cache: false,
        }
    }
    fn identity(&self) -> DeviceIdentity {
        self.identity.clone()
    }
    async fn read(&self, _offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        buf.fill(0);
        Ok(())
    }
    async fn write(&self, _offset: u64, buf: &[u8], _flags: WriteFlags) -> Result<(), BlockError> {
        black_box(buf);
        Ok(())
    }
    async fn flush(&self) -> Result<(), BlockError> {
        Ok(())
    }
    async fn deallocate(&self, _offset: u64, _len: u64) -> Result<(), BlockError> {
        Ok(())
    }
    async fn write_zeroes(&self, _offset: u64, _len: u64) -> Result<(), BlockError> {
        Ok(())
    }
    async fn health(&self) -> Result<HealthInfo, BlockError> {
        Ok(HealthInfo::default())
    }
}

/// A RAID-Z1 vdev over 4 discarding devices.
fn null_raidz1() -> Vdev {
    let devs = (0..4)
        .map(|i| {
            let identity = MemBlockDevice::new(format!("null{i}"), 4096, 1).identity();
            Some(Arc::new(NullDevice { identity }) as Arc<dyn BlockDevice>)
        })
        .collect();
    Vdev::new(Layout::Raidz1, devs, 0, NULL_DEVICE_BYTES).expect("bench vdev")
}

/// The engine's data write (`BlockIo::write_data` without the allocator and counters):
/// plan, stored length, allocation size, seal at the address, vdev write. Successive
/// calls write at successive addresses.
struct EngineWrite<'a> {
    codec: &'a Codec,
    vdev: &'a Vdev,
    next: u64,
}

impl EngineWrite<'_> {
    fn write(&mut self, logical: &[u8]) -> u32 {
        let planned = self.codec.plan(logical);
        let d = (planned.stored_len() / 4096) as u64;
        let asize = self.vdev.asize(d);
        if self.next + asize > self.vdev.capacity_sectors() {
            self.next = 0;
        }
        let addr = self.next;
        self.next += asize;
        let (c, crc, parity) = match self.vdev.parity_column_starts(addr, d) {
            Some(starts) => self.codec.seal_planned_with_parity(planned, addr, &starts),
            None => {
                let (c, crc) = self.codec.seal_planned(planned, addr);
                (c, crc, None)
            }
        };
        futures::executor::block_on(self.vdev.write_with_parity(addr, &c.buf, parity))
            .expect("vdev write");
        crc
    }

    /// The engine's path before the fused parity: `seal_planned`, then `Vdev::write`
    /// computes the parity from the stored buffer.
    fn write_parity_after(&mut self, logical: &[u8]) -> u32 {
        let planned = self.codec.plan(logical);
        let asize = self.vdev.asize((planned.stored_len() / 4096) as u64);
        if self.next + asize > self.vdev.capacity_sectors() {
            self.next = 0;
        }
        let addr = self.next;
        self.next += asize;
        let (c, crc) = self.codec.seal_planned(planned, addr);
        futures::executor::block_on(self.vdev.write(addr, &c.buf)).expect("vdev write");
        crc
    }

    /// The engine's path before this change: `compress` (a padded copy), `seal` in place.
    fn write_copying(&mut self, logical: &[u8]) -> u32 {
        let mut c = self.codec.compress(logical);
        let asize = self.vdev.asize((c.buf.len() / 4096) as u64);
        if self.next + asize > self.vdev.capacity_sectors() {
            self.next = 0;
        }
        let addr = self.next;
        self.next += asize;
        let crc = self.codec.seal(&mut c.buf, addr);
        futures::executor::block_on(self.vdev.write(addr, &c.buf)).expect("vdev write");
        crc
    }
}

/// The data columns of a 128 KiB extent at address 0 of a 4-wide RAID-Z1, and the
/// parity column length.
fn raidz1_columns(buf: &[u8]) -> (Vec<&[u8]>, usize) {
    let sectors = (buf.len() / 4096) as u64;
    let map = Layout::Raidz1.map(4, 0, sectors);
    let cols = map
        .data_columns()
        .map(|c| match c.role {
            ingot_pool::raid::layout::Role::Data { first } => {
                let s = first as usize * 4096;
                &buf[s..s + c.sectors as usize * 4096]
            }
            ingot_pool::raid::layout::Role::Parity(_) => &buf[..0],
        })
        .collect();
    (cols, map.width as usize * 4096)
}

fn main() {
    #[cfg(target_arch = "x86_64")]
    println!(
        "cpu features: aes={} vaes={} avx512f={} sse4.2={} (aes 0.9 picks AES-NI/VAES at run time via cpufeatures)",
        std::is_x86_feature_detected!("aes"),
        std::is_x86_feature_detected!("vaes"),
        std::is_x86_feature_detected!("avx512f"),
        std::is_x86_feature_detected!("sse4.2"),
    );
    let key = MasterKey::from_bytes([0x5c; 64]);
    // PIPELINE_XTS_PATH=<name> (e.g. vaes-avx2, batched-aes-crate) runs the pipeline
    // tables on another XTS path than the fastest.
    let xts = match std::env::var("PIPELINE_XTS_PATH") {
        Ok(name) => {
            let path = XtsPath::ALL
                .into_iter()
                .find(|p| p.name() == name)
                .expect("PIPELINE_XTS_PATH names an XtsPath");
            XtsCipher::with_path(&[0x5c; 32], &[0x5c; 32], path).expect("XTS path supported here")
        }
        Err(_) => XtsCipher::new(&key),
    };
    let codec = Codec::new(Compression::Zstd { level: 1 }, Some(xts.clone()));
    let oracle = {
        use aes::cipher::{Array, KeyInit};
        xts_mode::Xts128::<aes::Aes256>::new(
            aes::Aes256::new(&Array([0x5c; 32])),
            aes::Aes256::new(&Array([0x5c; 32])),
        )
    };

    println!(
        "XTS path in use: {} (supported: {:?})",
        xts.path().name(),
        XtsPath::ALL
            .iter()
            .filter(|p| p.is_supported())
            .map(|p| p.name())
            .collect::<Vec<_>>()
    );
    // PIPELINE_PROFILE=<secs>: only run the engine's write of a random record in a loop
    // for that long (to look at with `perf record`), then exit.
    if let Some(secs) = std::env::var("PIPELINE_PROFILE")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
    {
        let vdev = null_raidz1();
        let rec = random(RECORD, 40);
        let mut e = EngineWrite {
            codec: &codec,
            vdev: &vdev,
            next: 0,
        };
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed().as_secs_f64() < secs {
            black_box(e.write(black_box(&rec)));
            n += 1;
        }
        println!("{n} engine writes of a random 128 KiB record");
        return;
    }
    let kinds: [(&str, Vec<u8>); 4] = [
        ("random", random(RECORD, 1)),
        ("fio-like", fio_like(RECORD)),
        ("50% compressible", half_compressible(RECORD)),
        ("text-like", text_like(RECORD)),
    ];
    let vdev = null_raidz1();
    let crc_src = random(RECORD, 11);
    let mut mc_dst = vec![0u8; RECORD];
    println!();
    println!(
        "| data | zstd-1 size | zstd-1 GB/s | write pipeline GB/s | write / zstd-1 | XTS GB/s | write / XTS | crc32c GB/s | write / crc32c | memcpy GB/s | write / memcpy | zstd -d GB/s | read pipeline GB/s | read / zstd -d | read / XTS decrypt |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (name, record) in &kinds {
        let mut zc = zstd::bulk::Compressor::new(1).expect("zstd context");
        let frame = zc.compress(record).expect("zstd");
        let ratio = frame.len() as f64 / record.len() as f64;
        let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(RECORD));
        let mut scratch = record.clone();
        let mut engine = EngineWrite {
            codec: &codec,
            vdev: &vdev,
            next: 0,
        };
        let w = compare(
            RECORD,
            &mut [
                /* zstd-1 */
                &mut || {
                    out.clear();
                    black_box(zc.compress_to_buffer(black_box(record), &mut out).ok());
                },
                /* write pipeline, as the engine runs it */
                &mut || {
                    black_box(engine.write(black_box(record)));
                },
                /* xts */
                &mut || {
                    xts.encrypt_sectors(black_box(&mut scratch), 1234);
                },
                /* crc32c */
                &mut || {
                    black_box(crc32c(black_box(&crc_src)));
                },
                /* memcpy */
                &mut || {
                    mc_dst.copy_from_slice(black_box(&crc_src));
                    black_box(&mc_dst);
                },
            ],
        );
        // Read side: what the write pipeline stored, opened again and again.
        let compressed = codec.compress(record);
        let mut stored = compressed.buf.clone();
        let crc = codec.seal(&mut stored, 777);
        let mut zd = zstd::bulk::Decompressor::new().expect("zstd context");
        let mut dout = Vec::with_capacity(RECORD);
        let mut work = stored.clone();
        let mut scratch2 = stored.clone();
        let r = compare(
            RECORD,
            &mut [
                /* zstd -d */
                &mut || {
                    dout.clear();
                    black_box(zd.decompress_to_buffer(black_box(&frame), &mut dout).ok());
                },
                /* read pipeline */
                &mut || {
                    work.copy_from_slice(&stored);
                    let data = codec
                        .open(
                            &mut work,
                            777,
                            crc,
                            compressed.kind,
                            compressed.psize,
                            RECORD as u32,
                        )
                        .expect("open");
                    black_box(data);
                },
                /* xts decrypt */
                &mut || {
                    xts.decrypt_sectors(black_box(&mut scratch2), 777);
                },
            ],
        );
        println!(
            "| {name} | {ratio:.2} | {:.2} | {:.2} | {:.2} | {:.2} | **{:.2}** | {:.1} | {:.2} | {:.1} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
            w.median(0),
            w.median(1),
            w.ratio(1, 0),
            w.median(2),
            w.ratio(1, 2),
            w.median(3),
            w.ratio(1, 3),
            w.median(4),
            w.ratio(1, 4),
            r.median(0),
            r.median(1),
            r.ratio(1, 0),
            r.ratio(1, 2),
        );
    }

    // Every XTS path against raw AES-256 ECB (`aes` crate, one `encrypt_blocks` over
    // the record: the ceiling of the batched path) and xts-mode (128 KiB, in cache).
    let (k1, k2) = ([0x5c; 32], [0x5c; 32]);
    let paths: Vec<XtsCipher> = XtsPath::ALL
        .iter()
        .filter_map(|p| XtsCipher::with_path(&k1, &k2, *p))
        .collect();
    let mut xbufs: Vec<Vec<u8>> = (0..paths.len() + 2)
        .map(|i| random(RECORD, 20 + i as u64))
        .collect();
    let ecb = {
        use aes::cipher::{Array, KeyInit};
        aes::Aes256::new(&Array([0x11; 32]))
    };
    let x = {
        let (first, rest) = xbufs.split_at_mut(2);
        let (ecb_buf, oracle_buf) = first.split_at_mut(1);
        let mut variants: Vec<Box<dyn FnMut() + '_>> = vec![
            Box::new(|| {
                use aes::cipher::{Array, BlockCipherEncrypt};
                let (blocks, _) = Array::slice_as_chunks_mut(black_box(&mut ecb_buf[0][..]));
                ecb.encrypt_blocks(blocks);
            }),
            Box::new(|| {
                oracle.encrypt_area(
                    black_box(&mut oracle_buf[0][..]),
                    4096,
                    42,
                    xts_mode::get_tweak_default,
                )
            }),
        ];
        for (c, b) in paths.iter().zip(rest.iter_mut()) {
            variants.push(Box::new(move || {
                c.encrypt_sectors(black_box(&mut b[..]), 42)
            }));
        }
        let mut refs: Vec<&mut dyn FnMut()> = variants
            .iter_mut()
            .map(|f| &mut **f as &mut dyn FnMut())
            .collect();
        compare(RECORD, &mut refs)
    };
    // zstd literals: zstd-1 with its literal (Huffman) stage and without, the
    // engine's write pipeline (which picks per record), and the literal test alone.
    println!();
    println!(
        "| zstd literals: data | zstd-1 GB/s | zstd-1 raw literals GB/s | raw / zstd-1 | write pipeline GB/s | literal test us per 128 KiB | picks raw |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (name, record) in [
        ("fio 50%", fio_50(RECORD)),
        ("text-like", text_like(RECORD)),
    ] {
        let mut za = zstd::bulk::Compressor::new(1).expect("zstd context");
        let mut zr = zstd::bulk::Compressor::new(1).expect("zstd context");
        zr.set_parameter(zstd::zstd_safe::CParameter::LiteralCompressionMode(
            zstd::zstd_safe::ParamSwitch::Disable,
        ))
        .expect("literal mode");
        let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(RECORD));
        let mut out2 = Vec::with_capacity(zstd::zstd_safe::compress_bound(RECORD));
        let mut engine = EngineWrite {
            codec: &codec,
            vdev: &vdev,
            next: 0,
        };
        let l = compare(
            RECORD,
            &mut [
                &mut || {
                    out.clear();
                    black_box(za.compress_to_buffer(black_box(&record), &mut out).ok());
                },
                &mut || {
                    out2.clear();
                    black_box(zr.compress_to_buffer(black_box(&record), &mut out2).ok());
                },
                &mut || {
                    black_box(engine.write(black_box(&record)));
                },
                &mut || {
                    black_box(literals_look_random(black_box(&record)));
                },
            ],
        );
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
            l.median(0),
            l.median(1),
            l.ratio(1, 0),
            l.median(2),
            RECORD as f64 / l.median(3) / 1e3,
            literals_look_random(&record),
        );
    }

    // The incompressibility test alone, on random and on text.
    let rnd = random(RECORD, 12);
    let txt = text_like(RECORD);
    let bail = compare(
        RECORD,
        &mut [
            &mut || {
                black_box(looks_incompressible(black_box(&rnd)));
            },
            &mut || {
                black_box(looks_incompressible(black_box(&txt)));
            },
        ],
    );
    let src = random(RECORD, 10);
    let mut dst = vec![0u8; RECORD];
    let c = compare(
        RECORD,
        &mut [
            /* crc32c: the pool's (crc-fast) */
            &mut || {
                black_box(crc32c(black_box(&src)));
            },
            /* memcpy */
            &mut || {
                dst.copy_from_slice(black_box(&src));
                black_box(&dst);
            },
            /* crc32c crate (SSE4.2 crc32 instruction, 3 streams) */
            &mut || {
                black_box(crc32c::crc32c(black_box(&src)));
            },
            /* crc-fast fed 4 KiB at a time */
            &mut || {
                let mut crc = Crc32c::new();
                for piece in black_box(&src).chunks(4096) {
                    crc.update(piece);
                }
                black_box(crc.finish());
            },
        ],
    );
    // Sealing a 128 KiB record: XTS then crc32c, per piece of `unit` bytes (the
    // piece is checksummed right after it is encrypted, while it is in L1); 128 KiB
    // is the unfused order (encrypt all, then checksum all).
    const UNITS: [usize; 5] = [4 << 10, 8 << 10, 16 << 10, 32 << 10, RECORD];
    let mut sbufs: Vec<Vec<u8>> = UNITS.iter().map(|_| random(RECORD, 30)).collect();
    let seal = {
        let mut variants: Vec<Box<dyn FnMut() + '_>> = Vec::new();
        for (unit, b) in UNITS.iter().zip(sbufs.iter_mut()) {
            let xts = &xts;
            variants.push(Box::new(move || {
                let mut crc = Crc32c::new();
                let mut sector = 99u128;
                for piece in black_box(&mut b[..]).chunks_mut(*unit) {
                    xts.encrypt_units(piece, 4096, sector);
                    crc.update(piece);
                    sector += (piece.len() / 4096) as u128;
                }
                black_box(crc.finish());
            }));
        }
        let mut refs: Vec<&mut dyn FnMut()> = variants
            .iter_mut()
            .map(|f| &mut **f as &mut dyn FnMut())
            .collect();
        compare(RECORD, &mut refs)
    };
    // Where the incompressible write's time goes: its stages alone, on a random record.
    let rec = random(RECORD, 40);
    let sealed = codec.seal_planned(codec.plan(&rec), 5).0.buf;
    let (cols, plen) = raidz1_columns(&sealed);
    let mut pcol = vec![0u8; plen];
    let mut pcol2 = vec![0u8; plen];
    let mut e1 = EngineWrite {
        codec: &codec,
        vdev: &vdev,
        next: 0,
    };
    let mut e2 = EngineWrite {
        codec: &codec,
        vdev: &vdev,
        next: 0,
    };
    let mut e3 = EngineWrite {
        codec: &codec,
        vdev: &vdev,
        next: 0,
    };
    let mut xbuf = rec.clone();
    let mut sec = 0u64;
    let mut sec2 = 0u64;
    let starts = vdev.parity_column_starts(64, 32).expect("RAID-Z1 columns");
    let fused_parity = codec
        .seal_planned_with_parity(codec.plan(&rec), 64, &starts)
        .2;
    let parts = compare(
        RECORD,
        &mut [
            /* 0: write pipeline, as in the table */
            &mut || {
                black_box(e1.write(black_box(&rec)));
            },
            /* 1: plan (the bail-out) */
            &mut || {
                black_box(codec.plan(black_box(&rec)));
            },
            /* 2: plan + seal_planned (XTS into the stored buffer + crc32c) */
            &mut || {
                sec = sec.wrapping_add(32) & 0xffff_ffff;
                black_box(codec.seal_planned(codec.plan(black_box(&rec)), sec));
            },
            /* 3: Vdev::write of the sealed extent (parity + dispatch) */
            &mut || {
                futures::executor::block_on(vdev.write(64, black_box(&sealed))).expect("write");
            },
            /* 4: RAID-Z1 P alone, SIMD kernel */
            &mut || {
                parity::gen_p(black_box(&cols), &mut pcol);
                black_box(&pcol);
            },
            /* 5: RAID-Z1 P alone, scalar reference */
            &mut || {
                parity::gen_p_scalar(black_box(&cols), &mut pcol2);
                black_box(&pcol2);
            },
            /* 6: the previous engine path: compress (padded copy) + seal + Vdev::write */
            &mut || {
                black_box(e2.write_copying(black_box(&rec)));
            },
            /* 7: XTS alone */
            &mut || {
                xts.encrypt_sectors(black_box(&mut xbuf), 99);
            },
            /* 8: the engine path before the fused parity */
            &mut || {
                black_box(e3.write_parity_after(black_box(&rec)));
            },
            /* 9: plan + seal_planned_with_parity (XTS + crc32c + P in one loop) */
            &mut || {
                sec2 = sec2.wrapping_add(32) & 0xffff_ffff;
                black_box(codec.seal_planned_with_parity(
                    codec.plan(black_box(&rec)),
                    sec2,
                    &starts,
                ));
            },
            /* 10: Vdev::write_with_parity of the sealed extent (dispatch only) */
            &mut || {
                let p = fused_parity.clone();
                futures::executor::block_on(vdev.write_with_parity(64, black_box(&sealed), p))
                    .expect("write");
            },
        ],
    );
    println!();
    println!(
        "| incompressible write, stage alone (random record) | us per 128 KiB | GB/s | / XTS alone |"
    );
    println!("|---|---|---|---|");
    let stages = [
        "**write pipeline** (plan + seal_planned_with_parity + Vdev::write_with_parity)",
        "`Codec::plan` (bail-out)",
        "`plan` + `seal_planned` (XTS into the stored buffer + crc32c)",
        "`Vdev::write` (RAID-Z1 parity + column dispatch, discarding devices)",
        "RAID-Z1 P, `parity::gen_p` (SIMD kernel)",
        "RAID-Z1 P, `parity::gen_p_scalar` (reference)",
        "previous path: `compress` (copy) + `seal` + `Vdev::write`",
        "XTS alone (`encrypt_sectors`, in place)",
        "engine path before the fused parity: plan + seal_planned + Vdev::write",
        "`plan` + `seal_planned_with_parity` (XTS + crc32c + RAID-Z1 P in one loop)",
        "`Vdev::write_with_parity` (dispatch only; includes a clone of the parity)",
    ];
    for (i, what) in stages.iter().enumerate() {
        println!(
            "| {what} | {:.2} | {:.2} | {:.2} |",
            RECORD as f64 / parts.median(i) / 1e3,
            parts.median(i),
            parts.ratio(i, 7)
        );
    }

    println!();
    println!("| stage | GB/s | ratio |");
    println!("|---|---|---|");
    println!(
        "| raw AES-256 (ECB, `aes` crate `encrypt_blocks`) | {:.2} | |",
        x.median(0)
    );
    println!("| xts-mode 0.6 | {:.2} | |", x.median(1));
    for (i, c) in paths.iter().enumerate() {
        println!(
            "| XTS `{}` | {:.2} | {:.2} of raw AES, {:.1}x xts-mode |",
            c.path().name(),
            x.median(i + 2),
            x.ratio(i + 2, 0),
            x.ratio(i + 2, 1)
        );
    }
    println!(
        "| incompressibility test, random record (bails) | {:.0} | {:.2} us per 128 KiB |",
        bail.median(0),
        RECORD as f64 / bail.median(0) / 1e3
    );
    println!(
        "| incompressibility test, text record (first window decides) | {:.0} | {:.2} us per 128 KiB |",
        bail.median(1),
        RECORD as f64 / bail.median(1) / 1e3
    );
    println!(
        "| crc32c, `crc-fast` (the pool's) | {:.2} | {:.2}x memcpy, {:.2}x `crc32c` crate |",
        c.median(0),
        c.ratio(0, 1),
        c.ratio(0, 2)
    );
    println!(
        "| crc32c, `crc-fast` fed 4 KiB at a time | {:.2} | {:.2}x one call |",
        c.median(3),
        c.ratio(3, 0)
    );
    println!(
        "| crc32c, `crc32c` crate 0.6 | {:.2} | {:.2}x memcpy |",
        c.median(2),
        c.ratio(2, 1)
    );
    println!("| memcpy | {:.2} | |", c.median(1));
    for (i, unit) in UNITS.iter().enumerate() {
        let pool = if *unit == FUSE_BYTES {
            " (the pool's)"
        } else {
            ""
        };
        println!(
            "| seal (XTS + crc32c), per {} KiB{pool} | {:.2} | {:.2}x unfused |",
            unit >> 10,
            seal.median(i),
            seal.ratio(i, UNITS.len() - 1)
        );
    }

    // Unlock cost of a key slot with the appliance's default Argon2id parameters
    // (wall time, median of 3: this is what a user waits for at import).
    let pass = Passphrase::from("benchmark passphrase");
    let slot = KeySlot::create(&key, &pass, KdfParams::DEFAULT).expect("key slot");
    let mut times: Vec<f64> = (0..3)
        .map(|_| {
            let start = Instant::now();
            black_box(slot.unwrap(&pass).expect("unwrap"));
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    println!();
    println!(
        "key slot unwrap, Argon2id m={} KiB t={} p={}: {:.0} ms (median of 3, wall time)",
        KdfParams::DEFAULT.m_cost_kib,
        KdfParams::DEFAULT.t_cost,
        KdfParams::DEFAULT.p_cost,
        times[1]
    );
}
