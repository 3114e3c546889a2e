//! The device exerciser: write a seeded pattern, flush, read it back and verify.
//!
//! It runs over any [`BlockDevice`] (a VFIO NVMe namespace in the HIL guest, the simulated
//! controller, RAM). Writes come in mixed sizes (4 KiB to 1 MiB by default, so NVMe PRP
//! lists are exercised) at random aligned offsets, in random order, several in flight.
//! Extents never overlap, and every byte's expected value depends on the seed and its
//! device offset, so lost, torn and misdirected writes all show up as mismatches.
//! [`write`] and [`verify`] can run apart, to check data survives a reset or restart.

use crate::blockdev::{BlockDevice, Geometry, WriteFlags};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// How many error messages a report keeps.
const MAX_ERROR_MESSAGES: usize = 8;

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExerciseConfig {
    /// Bytes to write (and read back).
    pub bytes: u64,
    /// Seed of the offsets, sizes, order and data.
    pub seed: u64,
    /// Smallest I/O in bytes (rounded up to the device's block size and 4 KiB).
    pub min_io: u32,
    /// Largest I/O in bytes.
    pub max_io: u32,
    /// I/Os in flight at once.
    pub queue_depth: usize,
    /// Bytes of the device (from offset 0) the extents are spread over; default
    /// `min(capacity, 4 * bytes)`.
    pub span: Option<u64>,
    /// Every n-th write is issued with FUA (0: none).
    pub fua_every: u32,
}

impl Default for ExerciseConfig {
    fn default() -> Self {
        ExerciseConfig {
            bytes: 64 << 20,
            seed: 0x1960_7e57,
            min_io: 4096,
            max_io: 1 << 20,
            queue_depth: 8,
            span: None,
            fua_every: 16,
        }
    }
}

/// Why the exerciser could not run at all (I/O failures go in the report instead).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExerciseError {
    /// The device (or the configured span) cannot hold the data.
    #[error("{device}: {needed} bytes do not fit in {available} bytes")]
    TooSmall {
        /// Device location.
        device: String,
        /// Bytes to write.
        needed: u64,
        /// Bytes available.
        available: u64,
    },
    /// The configuration is unusable.
    #[error("bad exerciser configuration: {reason}")]
    BadConfig {
        /// What is wrong.
        reason: String,
    },
}

/// One planned I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Byte offset on the device.
    pub offset: u64,
    /// Length in bytes.
    pub len: u32,
    /// Written with FUA.
    pub fua: bool,
}

/// What happened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExerciseReport {
    /// Device location.
    pub device: String,
    /// Bytes written successfully.
    pub bytes_written: u64,
    /// Bytes read back successfully.
    pub bytes_read: u64,
    /// Write commands issued.
    pub writes: u64,
    /// Smallest and largest I/O issued.
    pub io_size_range: (u32, u32),
    /// Writes that failed.
    pub write_errors: u64,
    /// The flush failed.
    pub flush_error: bool,
    /// Reads that failed.
    pub read_errors: u64,
    /// Extents that read back different data.
    pub mismatches: u64,
    /// Offsets of the extents whose write failed (not verified).
    pub failed_writes: Vec<u64>,
    /// The first few error descriptions.
    pub errors: Vec<String>,
    /// Time writing.
    pub write_time: Duration,
    /// Time flushing.
    pub flush_time: Duration,
    /// Time reading and verifying.
    pub read_time: Duration,
}

impl ExerciseReport {
    /// Every write, the flush and every read succeeded, and all data verified.
    pub fn passed(&self) -> bool {
        self.writes > 0
            && self.write_errors == 0
            && !self.flush_error
            && self.read_errors == 0
            && self.mismatches == 0
    }

    fn note(&mut self, msg: String) {
        tracing::warn!(device = %self.device, "{msg}");
        if self.errors.len() < MAX_ERROR_MESSAGES {
            self.errors.push(msg);
        }
    }
}

fn mib_s(bytes: u64, t: Duration) -> f64 {
    let s = t.as_secs_f64();
    if s > 0.0 {
        bytes as f64 / (1 << 20) as f64 / s
    } else {
        0.0
    }
}

impl fmt::Display for ExerciseReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "written={}B read={}B ios={} sizes={}..{} write={:.2}s ({:.1} MiB/s) flush={:.3}s read+verify={:.2}s ({:.1} MiB/s) write_errors={} flush_error={} read_errors={} mismatches={}",
            self.bytes_written,
            self.bytes_read,
            self.writes,
            self.io_size_range.0,
            self.io_size_range.1,
            self.write_time.as_secs_f64(),
            mib_s(self.bytes_written, self.write_time),
            self.flush_time.as_secs_f64(),
            self.read_time.as_secs_f64(),
            mib_s(self.bytes_read, self.read_time),
            self.write_errors,
            self.flush_error,
            self.read_errors,
            self.mismatches
        )
    }
}

/// splitmix64: a fast, well-mixed hash of a 64-bit value.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Fill `buf` with the pattern for device bytes `offset..offset+buf.len()` (`offset` a multiple of 8).
pub fn fill_pattern(seed: u64, offset: u64, buf: &mut [u8]) {
    let key = mix(seed);
    for (i, chunk) in buf.chunks_mut(8).enumerate() {
        let word = mix(key ^ (offset / 8 + i as u64));
        chunk.copy_from_slice(&word.to_le_bytes()[..chunk.len()]);
    }
}

/// The I/O unit: the device's block size, at least 4 KiB (one NVMe page).
fn unit(geom: &Geometry) -> u64 {
    u64::from(geom.block_size).max(4096)
}

/// Plan the extents: non-overlapping, unit-aligned, mixed sizes, spread over the span with
/// random gaps, in a random issue order. Pure and deterministic in the seed.
pub fn plan(
    device: &str,
    geom: &Geometry,
    cfg: &ExerciseConfig,
) -> Result<Vec<Extent>, ExerciseError> {
    let unit = unit(geom);
    let bad = |reason: String| ExerciseError::BadConfig { reason };
    if cfg.bytes == 0 || !cfg.bytes.is_multiple_of(unit) {
        return Err(bad(format!(
            "bytes {} must be a non-zero multiple of {unit}",
            cfg.bytes
        )));
    }
    if cfg.queue_depth == 0 {
        return Err(bad("queue depth 0".into()));
    }
    let min_units = u64::from(cfg.min_io).div_ceil(unit).max(1);
    let max_units = u64::from(cfg.max_io) / unit;
    if max_units < min_units {
        return Err(bad(format!(
            "max_io {} below min_io {} (unit {unit})",
            cfg.max_io, cfg.min_io
        )));
    }
    let capacity = geom.capacity() / unit * unit;
    let span = cfg
        .span
        .unwrap_or_else(|| capacity.min(cfg.bytes.saturating_mul(4)))
        .min(capacity)
        / unit
        * unit;
    if span < cfg.bytes {
        return Err(ExerciseError::TooSmall {
            device: device.to_string(),
            needed: cfg.bytes,
            available: span,
        });
    }
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    // Sizes: log-uniform between min and max, so small and large I/Os both appear often.
    let (lo, hi) = (
        (min_units as f64).log2(),
        (max_units as f64).log2().max((min_units as f64).log2()),
    );
    let mut sizes = Vec::new();
    let mut left = cfg.bytes / unit;
    while left > 0 {
        // One in eight is the smallest size (single-page I/O: PRP1 only).
        let e = if hi > lo && !rng.random_ratio(1, 8) {
            rng.random_range(lo..=hi)
        } else {
            lo
        };
        let units = (e.exp2().round() as u64)
            .clamp(min_units, max_units)
            .min(left);
        sizes.push(units);
        left -= units;
    }
    // Gaps: spread the spare space randomly between extents.
    let mut spare = (span - cfg.bytes) / unit;
    let per = spare / sizes.len() as u64;
    let mut extents = Vec::with_capacity(sizes.len());
    let mut at = 0u64;
    for (i, units) in sizes.into_iter().enumerate() {
        let gap = if per > 0 {
            rng.random_range(0..=2 * per).min(spare)
        } else {
            u64::from(rng.random_bool(0.5)).min(spare)
        };
        spare -= gap;
        at += gap;
        let fua = cfg.fua_every > 0 && (i as u64 + 1).is_multiple_of(u64::from(cfg.fua_every));
        extents.push(Extent {
            offset: at * unit,
            len: (units * unit) as u32,
            fua,
        });
        at += units;
    }
    extents.shuffle(&mut rng);
    Ok(extents)
}

/// Write, flush, read back and verify. I/O failures are counted in the report; only an
/// impossible configuration is an error.
pub async fn run(
    dev: Arc<dyn BlockDevice>,
    cfg: &ExerciseConfig,
) -> Result<ExerciseReport, ExerciseError> {
    let mut report = write(dev.clone(), cfg).await?;
    verify(dev, cfg, &mut report).await?;
    tracing::info!(device = %report.device, passed = report.passed(), "exercise done: {report}");
    Ok(report)
}

/// The first half of [`run`]: write every planned extent, then flush. The returned report
/// is completed by [`verify`] (with the same configuration), which may run later: after a
/// controller reset, a power cycle or an injected fault.
pub async fn write(
    dev: Arc<dyn BlockDevice>,
    cfg: &ExerciseConfig,
) -> Result<ExerciseReport, ExerciseError> {
    let device = dev.identity().location;
    let extents = plan(&device, &dev.geometry(), cfg)?;
    let mut report = ExerciseReport {
        device: device.clone(),
        io_size_range: (
            extents.iter().map(|e| e.len).min().unwrap_or(0),
            extents.iter().map(|e| e.len).max().unwrap_or(0),
        ),
        ..Default::default()
    };
    tracing::info!(device = %device, bytes = cfg.bytes, ios = extents.len(), seed = cfg.seed, "exercise start");
    let seed = cfg.seed;

    // Writes.
    let start = Instant::now();
    let mut failed = vec![false; extents.len()];
    let mut set = JoinSet::new();
    let mut next = 0;
    while next < extents.len() || !set.is_empty() {
        while next < extents.len() && set.len() < cfg.queue_depth {
            let (i, e, d) = (next, extents[next], dev.clone());
            set.spawn(async move {
                let mut buf = vec![0u8; e.len as usize];
                fill_pattern(seed, e.offset, &mut buf);
                let flags = if e.fua {
                    WriteFlags::FUA
                } else {
                    WriteFlags::NONE
                };
                (i, d.write(e.offset, &buf, flags).await)
            });
            next += 1;
        }
        if let Some(done) = set.join_next().await {
            report.writes += 1;
            match done {
                Ok((i, Ok(()))) => report.bytes_written += u64::from(extents[i].len),
                Ok((i, Err(err))) => {
                    failed[i] = true;
                    report.write_errors += 1;
                    report.note(format!("write at {}: {err}", extents[i].offset));
                }
                Err(join) => {
                    report.write_errors += 1;
                    report.note(format!("write task failed: {join}"));
                }
            }
        }
    }
    report.write_time = start.elapsed();

    let start = Instant::now();
    if let Err(err) = dev.flush().await {
        report.flush_error = true;
        report.note(format!("flush: {err}"));
    }
    report.flush_time = start.elapsed();
    report.failed_writes = (0..extents.len())
        .filter(|&i| failed[i])
        .map(|i| extents[i].offset)
        .collect();
    Ok(report)
}

/// The second half of [`run`]: read back every extent [`write`] wrote successfully, in a
/// different random order, and compare with the pattern. Adds to `report`.
pub async fn verify(
    dev: Arc<dyn BlockDevice>,
    cfg: &ExerciseConfig,
    report: &mut ExerciseReport,
) -> Result<(), ExerciseError> {
    let extents = plan(&report.device, &dev.geometry(), cfg)?;
    let seed = cfg.seed;
    let mut order: Vec<usize> = (0..extents.len())
        .filter(|&i| !report.failed_writes.contains(&extents[i].offset))
        .collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x5eed));
    let start = Instant::now();
    let mut set = JoinSet::new();
    let mut next = 0;
    while next < order.len() || !set.is_empty() {
        while next < order.len() && set.len() < cfg.queue_depth {
            let (e, d) = (extents[order[next]], dev.clone());
            set.spawn(async move {
                let mut buf = vec![0u8; e.len as usize];
                let r = d.read(e.offset, &mut buf).await;
                let verdict = r.map(|()| {
                    let mut want = vec![0u8; e.len as usize];
                    fill_pattern(seed, e.offset, &mut want);
                    // Slice equality is a memcmp; only a mismatch pays for the byte search.
                    if buf == want {
                        None
                    } else {
                        buf.iter().zip(&want).position(|(a, b)| a != b)
                    }
                });
                (e, verdict)
            });
            next += 1;
        }
        if let Some(done) = set.join_next().await {
            match done {
                Ok((e, Ok(None))) => report.bytes_read += u64::from(e.len),
                Ok((e, Ok(Some(at)))) => {
                    report.bytes_read += u64::from(e.len);
                    report.mismatches += 1;
                    report.note(format!(
                        "data mismatch at byte {} (extent {}+{})",
                        e.offset + at as u64,
                        e.offset,
                        e.len
                    ));
                }
                Ok((e, Err(err))) => {
                    report.read_errors += 1;
                    report.note(format!("read at {}: {err}", e.offset));
                }
                Err(join) => {
                    report.read_errors += 1;
                    report.note(format!("read task failed: {join}"));
                }
            }
        }
    }
    report.read_time = start.elapsed();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blockdev::{BlockError, DeviceIdentity, HealthInfo, MemBlockDevice};
    use async_trait::async_trait;
    use parking_lot::Mutex;

    /// Wraps a device: records writes, can fail one write offset and corrupt one read.
    #[derive(Debug)]
    struct Probe {
        inner: MemBlockDevice,
        writes: Mutex<Vec<(u64, usize, bool)>>,
        reads: Mutex<Vec<(u64, usize)>>,
        flushes: Mutex<u32>,
        fail_write_at: Option<u64>,
        corrupt_read_at: Option<u64>,
    }

    impl Probe {
        fn new(block_size: u32, bytes: u64) -> Self {
            Probe {
                inner: MemBlockDevice::new("probe", block_size, bytes / u64::from(block_size)),
                writes: Mutex::new(Vec::new()),
                reads: Mutex::new(Vec::new()),
                flushes: Mutex::new(0),
                fail_write_at: None,
                corrupt_read_at: None,
            }
        }
    }

    #[async_trait]
    impl BlockDevice for Probe {
        fn geometry(&self) -> Geometry {
            self.inner.geometry()
        }
        fn identity(&self) -> DeviceIdentity {
            self.inner.identity()
        }
        async fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
            self.reads.lock().push((offset, buf.len()));
            self.inner.read(offset, buf).await?;
            if let Some(at) = self.corrupt_read_at
                && (offset..offset + buf.len() as u64).contains(&at)
            {
                buf[(at - offset) as usize] ^= 0x40;
            }
            Ok(())
        }
        async fn write(&self, offset: u64, buf: &[u8], f: WriteFlags) -> Result<(), BlockError> {
            self.writes.lock().push((offset, buf.len(), f.fua));
            if self.fail_write_at == Some(offset) {
                return Err(BlockError::Injected {
                    device: "probe".into(),
                    what: "write error".into(),
                });
            }
            self.inner.write(offset, buf, f).await
        }
        async fn flush(&self) -> Result<(), BlockError> {
            *self.flushes.lock() += 1;
            Ok(())
        }
        async fn deallocate(&self, o: u64, l: u64) -> Result<(), BlockError> {
            self.inner.deallocate(o, l).await
        }
        async fn write_zeroes(&self, o: u64, l: u64) -> Result<(), BlockError> {
            self.inner.write_zeroes(o, l).await
        }
        async fn health(&self) -> Result<HealthInfo, BlockError> {
            Ok(HealthInfo::default())
        }
    }

    fn cfg(bytes: u64) -> ExerciseConfig {
        ExerciseConfig {
            bytes,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn passes_on_ram_and_writes_the_pattern_where_planned() {
        let dev = Arc::new(MemBlockDevice::new("m", 512, (64 << 20) / 512));
        let c = cfg(16 << 20);
        let r = run(dev.clone(), &c).await.unwrap();
        assert!(r.passed(), "{r}: {:?}", r.errors);
        assert_eq!(r.bytes_written, 16 << 20);
        assert_eq!(r.bytes_read, 16 << 20);
        // The bytes on the device are the pattern, independent of the exerciser's own reads.
        let image = dev.snapshot();
        for e in plan("m", &dev.geometry(), &c).unwrap() {
            let mut want = vec![0u8; e.len as usize];
            fill_pattern(c.seed, e.offset, &mut want);
            let at = e.offset as usize;
            assert!(image[at..at + want.len()] == want[..], "extent {e:?}");
        }
        assert!(r.to_string().contains("mismatches=0"));
    }

    #[tokio::test]
    async fn io_mix_is_aligned_disjoint_and_complete() {
        let probe = Arc::new(Probe::new(4096, 64 << 20));
        let r = run(probe.clone(), &cfg(8 << 20)).await.unwrap();
        assert!(r.passed(), "{r}");
        let mut w = probe.writes.lock().clone();
        assert_eq!(w.iter().map(|x| x.1 as u64).sum::<u64>(), 8 << 20);
        assert!(w.iter().all(|&(o, l, _)| o % 4096 == 0 && l % 4096 == 0));
        assert!(w.iter().all(|&(_, l, _)| (4096..=1 << 20).contains(&l)));
        assert!(w.iter().any(|&(_, l, _)| l == 4096), "single-page I/Os");
        assert!(
            w.iter().any(|&(_, l, _)| l > 8192),
            "I/Os that need a PRP list"
        );
        assert!(w.iter().any(|&(_, l, _)| l >= 256 << 10), "large I/Os");
        assert!(w.iter().any(|&(_, _, fua)| fua) && w.iter().any(|&(_, _, fua)| !fua));
        // Issue order is not address order.
        assert!(w.windows(2).any(|p| p[1].0 < p[0].0));
        w.sort();
        assert!(
            w.windows(2).all(|p| p[0].0 + p[0].1 as u64 <= p[1].0),
            "overlap"
        );
        assert!(w.last().map(|l| l.0 + l.1 as u64).unwrap() <= 32 << 20);
        assert_eq!(*probe.flushes.lock(), 1);
        let mut rd = probe.reads.lock().clone();
        rd.sort();
        let ws: Vec<_> = w.iter().map(|x| (x.0, x.1)).collect();
        assert_eq!(rd, ws, "every write read back once");
    }

    #[tokio::test]
    async fn corruption_is_reported_with_its_offset() {
        let mut probe = Probe::new(512, 16 << 20);
        let c = cfg(4 << 20);
        let victim = plan("probe", &probe.geometry(), &c).unwrap()[3];
        let at = victim.offset + u64::from(victim.len) / 2;
        probe.corrupt_read_at = Some(at);
        let r = run(Arc::new(probe), &c).await.unwrap();
        assert!(!r.passed());
        assert_eq!(r.mismatches, 1);
        assert!(
            r.errors[0].contains(&format!("at byte {at} ")),
            "{:?}",
            r.errors
        );
    }

    #[tokio::test]
    async fn failed_writes_are_counted_and_not_verified() {
        let mut probe = Probe::new(4096, 16 << 20);
        let c = cfg(4 << 20);
        let victim = plan("probe", &probe.geometry(), &c).unwrap()[0];
        probe.fail_write_at = Some(victim.offset);
        let probe = Arc::new(probe);
        let r = run(probe.clone(), &c).await.unwrap();
        assert!(!r.passed());
        assert_eq!((r.write_errors, r.mismatches, r.read_errors), (1, 0, 0));
        assert_eq!(r.bytes_written, (4 << 20) - u64::from(victim.len));
        assert!(!probe.reads.lock().iter().any(|&(o, _)| o == victim.offset));
    }

    #[test]
    fn plans_are_deterministic_and_validated() {
        let geom = MemBlockDevice::new("m", 4096, 4096).geometry(); // 16 MiB
        let a = plan("m", &geom, &cfg(4 << 20)).unwrap();
        assert_eq!(a, plan("m", &geom, &cfg(4 << 20)).unwrap());
        let other = ExerciseConfig {
            seed: 1,
            ..cfg(4 << 20)
        };
        assert_ne!(a, plan("m", &geom, &other).unwrap());
        assert!(matches!(
            plan("m", &geom, &cfg(32 << 20)),
            Err(ExerciseError::TooSmall {
                needed: 33554432,
                available: 16777216,
                ..
            })
        ));
        // Exactly full: no gaps possible, still valid.
        let full = plan("m", &geom, &cfg(16 << 20)).unwrap();
        assert_eq!(full.iter().map(|e| u64::from(e.len)).sum::<u64>(), 16 << 20);
        assert!(matches!(
            plan("m", &geom, &cfg(1000)),
            Err(ExerciseError::BadConfig { .. })
        ));
        let c = ExerciseConfig {
            max_io: 1024,
            ..cfg(1 << 20)
        };
        assert!(matches!(
            plan("m", &geom, &c),
            Err(ExerciseError::BadConfig { .. })
        ));
    }

    #[test]
    fn pattern_depends_on_seed_and_offset() {
        let mut a = vec![0u8; 64];
        let mut b = vec![0u8; 64];
        fill_pattern(1, 0, &mut a);
        fill_pattern(1, 4096, &mut b);
        assert_ne!(a, b);
        fill_pattern(2, 0, &mut b);
        assert_ne!(a, b);
        // A sub-range generates the same bytes as the whole.
        let mut whole = vec![0u8; 8192];
        fill_pattern(9, 4096, &mut whole);
        let mut tail = vec![0u8; 4096];
        fill_pattern(9, 8192, &mut tail);
        assert_eq!(&whole[4096..], &tail[..]);
    }
}
