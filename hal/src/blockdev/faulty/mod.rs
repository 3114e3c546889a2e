//! A fault-injecting block device: volatile write cache, power cuts, bit rot, failures.
//!
//! [`FaultyBlockDevice`] wraps any [`BlockDevice`] (the "media") and is the tool of the pool's
//! crash and fault tests:
//!
//! - **Volatile write cache** ([`CrashPolicy`]): writes without FUA are held in the wrapper, visible to
//!   reads at once, until a flush writes them to the media. FUA writes go straight to the media.
//!   So the inner device always holds exactly what would survive a power cut, plus whatever a
//!   crash decides to keep of the cache.
//! - **Power cuts** ([`PowerRail`]): one rail is shared by the devices of a pool; a cut hits all
//!   of them at once and every operation then fails with [`BlockError::DeviceLost`]
//!   ("power cut"). [`FaultyBlockDevice::recover`] then keeps, drops or tears each cached write
//!   (seeded), writes the survivors to the media and makes the device usable again once the rail
//!   is restored.
//! - **Bit rot** ([`FaultyBlockDevice::corrupt`]): flips bits on the media, silently.
//! - **Failures** ([`FaultRule`]): fail matching operations with a media error, an I/O error, a
//!   timeout or device loss; lose or misdirect writes silently; "removal" of the device; an
//!   optional injected delay.
//! - **Counters** ([`FaultyStats`]) of operations and of injected faults.
//!
//! Everything random is drawn from seeded ChaCha RNGs, so a failing test reproduces.

mod cache;
mod rail;
mod rules;
mod stats;

pub use cache::{CrashPolicy, CrashReport};
pub use rail::PowerRail;
pub use rules::{FaultKind, FaultRule, Op, OpSet, RuleId};
pub use stats::FaultyStats;

use super::{
    BlockDevice, BlockError, DeviceIdentity, DeviceKind, Geometry, HealthInfo, WriteFlags,
    check_range,
};
use async_trait::async_trait;
use cache::{Sector, WriteCache};
use parking_lot::Mutex;
use rail::Admit;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rules::RuleSet;
use stats::{Counters, bump};
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// How to build a [`FaultyBlockDevice`].
#[derive(Debug, Clone)]
pub struct FaultyConfig {
    /// Seed of the RNG that probabilistic [`FaultRule`]s draw from.
    pub seed: u64,
    /// The power rail to hang the device on; `None` gives it a rail of its own.
    pub rail: Option<Arc<PowerRail>>,
    /// Model a volatile write cache (non-FUA writes are lost at a cut unless flushed). When
    /// false, every write goes straight to the inner device.
    pub write_cache: bool,
    /// What a crash does to cached writes.
    pub crash: CrashPolicy,
}

impl Default for FaultyConfig {
    fn default() -> Self {
        FaultyConfig {
            seed: 0,
            rail: None,
            write_cache: true,
            crash: CrashPolicy::default(),
        }
    }
}

/// What happens to an operation that passed the gate.
enum Pass {
    /// It runs as asked.
    Run,
    /// It was in flight when the power dropped.
    InFlight,
    /// A silent fault applies (writes only).
    Silent(FaultKind),
}

/// A block device that injects faults into another; see the [module docs](self).
#[derive(Debug)]
pub struct FaultyBlockDevice {
    inner: Arc<dyn BlockDevice>,
    name: String,
    geom: Geometry,
    rail: Arc<PowerRail>,
    /// The rail's cut count when this device's cache was last settled.
    epoch: AtomicU64,
    write_cache: bool,
    crash_policy: Mutex<CrashPolicy>,
    /// Held shared by reads and exclusively by anything that changes the cache or the media, so a
    /// flush or crash never interleaves with a read of half-moved data.
    cache: tokio::sync::RwLock<WriteCache>,
    rules: Mutex<RuleSet>,
    removed: AtomicBool,
    delay: Mutex<Option<Duration>>,
    counters: Counters,
}

impl FaultyBlockDevice {
    /// Wrap `inner` with the default configuration: a volatile write cache, its own power rail,
    /// seed 0, the default crash policy.
    pub fn new(inner: Arc<dyn BlockDevice>) -> FaultyBlockDevice {
        FaultyBlockDevice::with_config(inner, FaultyConfig::default())
    }

    /// Wrap `inner` on the power rail `rail` (shared with the other devices of a pool).
    pub fn on_rail(inner: Arc<dyn BlockDevice>, rail: Arc<PowerRail>) -> FaultyBlockDevice {
        FaultyBlockDevice::with_config(
            inner,
            FaultyConfig {
                rail: Some(rail),
                ..FaultyConfig::default()
            },
        )
    }

    /// Wrap `inner` as `config` says.
    pub fn with_config(inner: Arc<dyn BlockDevice>, config: FaultyConfig) -> FaultyBlockDevice {
        let name = format!("faulty:{}", inner.identity().location);
        let mut geom = inner.geometry();
        geom.volatile_write_cache |= config.write_cache;
        let rail = config.rail.unwrap_or_default();
        FaultyBlockDevice {
            epoch: AtomicU64::new(rail.cuts()),
            inner,
            name,
            geom,
            rail,
            write_cache: config.write_cache,
            crash_policy: Mutex::new(config.crash),
            cache: tokio::sync::RwLock::new(WriteCache::default()),
            rules: Mutex::new(RuleSet::new(ChaCha8Rng::seed_from_u64(config.seed))),
            removed: AtomicBool::new(false),
            delay: Mutex::new(None),
            counters: Counters::default(),
        }
    }

    /// The wrapped device (the media: what survives a power cut).
    pub fn inner(&self) -> &Arc<dyn BlockDevice> {
        &self.inner
    }

    /// The power rail this device hangs on.
    pub fn rail(&self) -> &Arc<PowerRail> {
        &self.rail
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> FaultyStats {
        self.counters.snapshot()
    }

    /// Change what the next crash does to cached writes.
    pub fn set_crash_policy(&self, policy: CrashPolicy) {
        *self.crash_policy.lock() = policy;
    }

    /// Writes waiting in the volatile cache (including one in flight at a power cut).
    pub async fn pending_writes(&self) -> usize {
        self.cache.read().await.pending_writes()
    }

    /// Sectors whose newest version is only in the volatile cache.
    pub async fn cached_sectors(&self) -> usize {
        self.cache.read().await.cached_sectors()
    }

    /// Install a fault rule.
    pub fn add_rule(&self, rule: FaultRule) -> RuleId {
        tracing::debug!(device = %self.name, ?rule, "fault rule added");
        self.rules.lock().add(rule)
    }

    /// Remove a rule; false if it was not installed (or had retired).
    pub fn remove_rule(&self, id: RuleId) -> bool {
        self.rules.lock().remove(id)
    }

    /// Remove every rule.
    pub fn clear_rules(&self) {
        self.rules.lock().clear();
    }

    /// Fail reads overlapping bytes `offset..offset+len` with `kind`.
    pub fn fail_reads(&self, offset: u64, len: u64, kind: FaultKind) -> RuleId {
        self.add_rule(FaultRule::new(OpSet::READ, kind).range(offset, len))
    }

    /// Fail writes, write zeroes and deallocates overlapping bytes `offset..offset+len`.
    pub fn fail_writes(&self, offset: u64, len: u64, kind: FaultKind) -> RuleId {
        self.add_rule(FaultRule::new(OpSet::MUTATING, kind).range(offset, len))
    }

    /// Silently drop writes overlapping bytes `offset..offset+len`: they report success.
    pub fn lose_writes(&self, offset: u64, len: u64) -> RuleId {
        self.add_rule(FaultRule::new(OpSet::WRITE, FaultKind::LostWrite).range(offset, len))
    }

    /// Silently send writes overlapping bytes `offset..offset+len` `by_blocks` blocks away.
    pub fn misdirect_writes(&self, offset: u64, len: u64, by_blocks: i64) -> RuleId {
        self.add_rule(
            FaultRule::new(OpSet::WRITE, FaultKind::Misdirected { by_blocks }).range(offset, len),
        )
    }

    /// Let the next `n` operations of any kind succeed, then fail every one after them.
    pub fn fail_after(&self, n: u64, kind: FaultKind) -> RuleId {
        self.add_rule(FaultRule::new(OpSet::ALL, kind).after(n))
    }

    /// Pull the device: every operation fails with `DeviceLost` ("removed") until
    /// [`reinsert`](Self::reinsert). The cache and the media are untouched (for a removal that
    /// also loses the cache, give the device its own rail and cut it).
    pub fn remove(&self) {
        tracing::info!(device = %self.name, "device removed");
        self.removed.store(true, Ordering::SeqCst);
    }

    /// Bring a removed device back.
    pub fn reinsert(&self) {
        tracing::info!(device = %self.name, "device reinserted");
        self.removed.store(false, Ordering::SeqCst);
    }

    /// Whether the device is removed.
    pub fn is_removed(&self) -> bool {
        self.removed.load(Ordering::SeqCst)
    }

    /// Delay every operation by `delay` before it runs (`None` for no delay). For exercising
    /// timeouts and concurrency; never a substitute for synchronisation.
    pub fn set_delay(&self, delay: Option<Duration>) {
        *self.delay.lock() = delay;
    }

    /// Flip bits on the media in every sector of `offset..offset+len`: 1 to 4 distinct random
    /// bits per sector, chosen by `seed`. Silent: later reads return the bad bytes (unless a
    /// newer cached write of the sector shadows them). Works whatever the power, removal and
    /// rule state. Returns the number of bits flipped.
    pub async fn corrupt(&self, offset: u64, len: u64, seed: u64) -> Result<u64, BlockError> {
        check_range(&self.name, &self.geom, offset, len)?;
        let bs = self.block_size();
        let Ok(n) = usize::try_from(len) else {
            return Err(BlockError::OutOfRange {
                device: self.name.clone(),
                offset,
                len,
                capacity: self.geom.capacity(),
            });
        };
        let _guard = self.cache.write().await;
        let mut buf = vec![0u8; n];
        self.inner.read(offset, &mut buf).await?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut bits = 0u64;
        let mut sectors = 0u64;
        for sector in buf.chunks_mut(bs) {
            let k = rng.random_range(1..=4usize);
            for bit in rand::seq::index::sample(&mut rng, bs * 8, k) {
                sector[bit / 8] ^= 1 << (bit % 8);
            }
            bits += k as u64;
            sectors += 1;
        }
        self.inner.write(offset, &buf, WriteFlags::FUA).await?;
        self.counters
            .bits_flipped
            .fetch_add(bits, Ordering::Relaxed);
        self.counters
            .sectors_corrupted
            .fetch_add(sectors, Ordering::Relaxed);
        tracing::info!(device = %self.name, offset, len, seed, bits, "bit rot injected");
        Ok(bits)
    }

    /// Settle a crash: decide, with `rng` and the crash policy, what of the volatile cache
    /// (including a write in flight at the cut) persists, write it to the media and empty the
    /// cache. The device works again once its rail has power ([`PowerRail::restore`]).
    ///
    /// Usually called after the rail was cut; called with the power on it simulates a crash of
    /// this device alone. If the inner device fails while the survivors are written, the error
    /// is returned and the cache is already gone.
    pub async fn recover<R: Rng + ?Sized>(&self, rng: &mut R) -> Result<CrashReport, BlockError> {
        let policy = *self.crash_policy.lock();
        let mut cache = self.cache.write().await;
        let (image, report) = cache.crash(rng, &policy);
        self.destage(image.into_iter().collect()).await?;
        self.inner.flush().await?;
        self.epoch.store(self.rail.cuts(), Ordering::SeqCst);
        self.counters.record_crash(&report);
        tracing::info!(device = %self.name, ?report, "crash settled");
        Ok(report)
    }

    fn block_size(&self) -> usize {
        self.geom.block_size as usize
    }

    fn first_sector(&self, offset: u64) -> u64 {
        offset / u64::from(self.geom.block_size)
    }

    fn power_lost(&self, reason: &str) -> BlockError {
        bump(&self.counters.power_failures);
        BlockError::DeviceLost {
            device: self.name.clone(),
            reason: reason.into(),
        }
    }

    /// Fail unless the power is on and this device's cache was settled since the last cut.
    ///
    /// Checked at the gate and again once an operation holds the cache lock: an operation that
    /// passed the gate just before a cut is then failed (it was in flight; dropping it is one of
    /// the outcomes a cut allows), so nothing lands in a cache after its crash was settled.
    fn powered(&self) -> Result<(), BlockError> {
        let (cut, cuts) = self.rail.status();
        if cut {
            return Err(self.power_lost("power cut"));
        }
        if cuts != self.epoch.load(Ordering::SeqCst) {
            return Err(self.power_lost("power was cut and the device not recovered since"));
        }
        Ok(())
    }

    /// Everything an operation passes before it runs: delay, power, removal, fault rules.
    async fn gate(&self, op: Op, span: Option<Range<u64>>) -> Result<Pass, BlockError> {
        let delay = *self.delay.lock();
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        self.powered()?;
        if matches!(op, Op::Write | Op::Flush | Op::Deallocate | Op::WriteZeroes) {
            match self.rail.admit() {
                Admit::Run => {}
                Admit::Tripped => return Ok(Pass::InFlight),
                Admit::Off => return Err(self.power_lost("power cut")),
            }
        }
        if self.is_removed() {
            bump(&self.counters.removed_failures);
            return Err(BlockError::DeviceLost {
                device: self.name.clone(),
                reason: "removed".into(),
            });
        }
        let fault = self.rules.lock().check(op, span.clone());
        let Some(kind) = fault else {
            return Ok(Pass::Run);
        };
        let offset = span.map_or(0, |s| s.start);
        tracing::debug!(device = %self.name, op = op.name(), offset, ?kind, "fault injected");
        match kind.error(&self.name, op, offset) {
            Some(e) => {
                bump(&self.counters.injected_errors);
                Err(e)
            }
            None => Ok(Pass::Silent(kind)),
        }
    }

    /// Split `buf` into cache sectors.
    fn sectors_of(&self, buf: &[u8]) -> Vec<Sector> {
        buf.chunks(self.block_size())
            .map(|c| Sector::Data(Arc::from(c)))
            .collect()
    }

    /// Write `(sector, value)` pairs, sorted by sector, to the media in runs of consecutive
    /// sectors of one kind, each at most the inner device's largest transfer.
    async fn destage(&self, sectors: Vec<(u64, Sector)>) -> Result<(), BlockError> {
        let bs = self.block_size();
        let inner_max = self.inner.geometry().max_transfer as usize;
        let max_run = (inner_max / bs).max(1);
        let mut i = 0;
        while i < sectors.len() {
            let (start, ref first) = sectors[i];
            let zero = matches!(first, Sector::Zero);
            let mut j = i + 1;
            while j < sectors.len()
                && j - i < max_run
                && sectors[j].0 == start + (j - i) as u64
                && matches!(sectors[j].1, Sector::Zero) == zero
            {
                j += 1;
            }
            let offset = start * bs as u64;
            if zero {
                self.inner
                    .write_zeroes(offset, ((j - i) * bs) as u64)
                    .await?;
            } else {
                let mut buf = Vec::with_capacity((j - i) * bs);
                for (_, s) in &sectors[i..j] {
                    match s {
                        Sector::Data(d) => buf.extend_from_slice(d),
                        Sector::Zero => buf.resize(buf.len() + bs, 0),
                    }
                }
                self.inner.write(offset, &buf, WriteFlags::NONE).await?;
            }
            i = j;
        }
        Ok(())
    }

    /// Keep a write that tripped the power cut for the crash to decide on, unless that crash
    /// was already settled (by a concurrent `recover`), in which case the write is dropped.
    async fn record_in_flight(&self, first: u64, sectors: Vec<Sector>) {
        let mut cache = self.cache.write().await;
        if self.epoch.load(Ordering::SeqCst) != self.rail.cuts() {
            cache.insert_in_flight(first, sectors);
        }
    }

    /// Store a checked write: in the cache, or on the media if FUA or uncached.
    async fn store(&self, offset: u64, buf: &[u8], flags: WriteFlags) -> Result<(), BlockError> {
        let first = self.first_sector(offset);
        let mut cache = self.cache.write().await;
        self.powered()?;
        if self.write_cache && !flags.fua {
            if !buf.is_empty() {
                cache.insert(first, self.sectors_of(buf));
            }
            return Ok(());
        }
        self.inner.write(offset, buf, flags).await?;
        cache.supersede(first, buf.len() as u64 / u64::from(self.geom.block_size));
        Ok(())
    }

    /// Where a write of `len` bytes aimed at `offset` lands when misdirected by `by_blocks`:
    /// shifted, wrapping around the starts at which the whole write still fits.
    fn misdirect(&self, offset: u64, len: u64, by_blocks: i64) -> u64 {
        let bs = u64::from(self.geom.block_size);
        let starts = i128::from(self.geom.blocks - len / bs) + 1;
        let to = (i128::from(offset / bs) + i128::from(by_blocks)).rem_euclid(starts);
        // 0 <= to < starts <= blocks + 1, so it fits in u64.
        to as u64 * bs
    }

    /// The shared path of write zeroes and deallocate: both read back as zeroes.
    async fn zero(&self, op: Op, offset: u64, len: u64) -> Result<(), BlockError> {
        check_range(&self.name, &self.geom, offset, len)?;
        bump(if op == Op::Deallocate {
            &self.counters.deallocates
        } else {
            &self.counters.write_zeroes
        });
        let first = self.first_sector(offset);
        let n = len / u64::from(self.geom.block_size);
        let zeroes = || vec![Sector::Zero; n as usize];
        match self.gate(op, Some(offset..offset + len)).await? {
            Pass::InFlight => {
                if n > 0 {
                    self.record_in_flight(first, zeroes()).await;
                }
                Err(self.power_lost("power cut"))
            }
            // Silent faults only match writes.
            Pass::Run | Pass::Silent(_) if self.write_cache => {
                let mut cache = self.cache.write().await;
                self.powered()?;
                if n > 0 {
                    cache.insert(first, zeroes());
                }
                Ok(())
            }
            Pass::Run | Pass::Silent(_) => {
                let mut cache = self.cache.write().await;
                self.powered()?;
                if op == Op::Deallocate {
                    self.inner.deallocate(offset, len).await?;
                } else {
                    self.inner.write_zeroes(offset, len).await?;
                }
                cache.supersede(first, n);
                Ok(())
            }
        }
    }
}

#[async_trait]
impl BlockDevice for FaultyBlockDevice {
    fn geometry(&self) -> Geometry {
        self.geom
    }

    fn identity(&self) -> DeviceIdentity {
        DeviceIdentity {
            kind: DeviceKind::Faulty,
            location: self.name.clone(),
            ..self.inner.identity()
        }
    }

    async fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        check_range(&self.name, &self.geom, offset, buf.len() as u64)?;
        bump(&self.counters.reads);
        self.gate(Op::Read, Some(offset..offset + buf.len() as u64))
            .await?;
        let cache = self.cache.read().await;
        self.powered()?;
        self.inner.read(offset, buf).await?;
        cache.overlay(self.first_sector(offset), self.block_size(), buf);
        Ok(())
    }

    async fn write(&self, offset: u64, buf: &[u8], flags: WriteFlags) -> Result<(), BlockError> {
        let len = buf.len() as u64;
        check_range(&self.name, &self.geom, offset, len)?;
        bump(&self.counters.writes);
        if flags.fua {
            bump(&self.counters.fua_writes);
        }
        let first = self.first_sector(offset);
        match self.gate(Op::Write, Some(offset..offset + len)).await? {
            Pass::InFlight => {
                if !buf.is_empty() {
                    self.record_in_flight(first, self.sectors_of(buf)).await;
                }
                Err(self.power_lost("power cut"))
            }
            Pass::Run => self.store(offset, buf, flags).await,
            Pass::Silent(FaultKind::Misdirected { by_blocks }) => {
                let to = self.misdirect(offset, len, by_blocks);
                bump(&self.counters.misdirected_writes);
                tracing::debug!(device = %self.name, offset, to, "write misdirected");
                self.store(to, buf, flags).await
            }
            Pass::Silent(_) => {
                bump(&self.counters.lost_writes);
                tracing::debug!(device = %self.name, offset, len, "write lost");
                Ok(())
            }
        }
    }

    async fn flush(&self) -> Result<(), BlockError> {
        bump(&self.counters.flushes);
        match self.gate(Op::Flush, None).await? {
            Pass::InFlight => Err(self.power_lost("power cut")),
            // Silent faults only match writes.
            Pass::Run | Pass::Silent(_) => {
                let mut cache = self.cache.write().await;
                self.powered()?;
                self.destage(cache.latest()).await?;
                self.inner.flush().await?;
                cache.clear();
                Ok(())
            }
        }
    }

    async fn deallocate(&self, offset: u64, len: u64) -> Result<(), BlockError> {
        self.zero(Op::Deallocate, offset, len).await
    }

    async fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), BlockError> {
        self.zero(Op::WriteZeroes, offset, len).await
    }

    async fn health(&self) -> Result<HealthInfo, BlockError> {
        bump(&self.counters.health_queries);
        self.gate(Op::Health, None).await?;
        self.inner.health().await
    }
}

/// Cut the power of every device's rail (if not already cut), settle each device's crash with
/// `rng` (in the order given, so a seed reproduces), then restore the rails.
pub async fn power_cycle<R: Rng + ?Sized>(
    devices: &[&FaultyBlockDevice],
    rng: &mut R,
) -> Result<Vec<CrashReport>, BlockError> {
    for d in devices {
        d.rail.cut_now();
    }
    let mut reports = Vec::with_capacity(devices.len());
    for d in devices {
        reports.push(d.recover(rng).await?);
    }
    for d in devices {
        d.rail.restore();
    }
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blockdev::MemBlockDevice;

    fn dev() -> (Arc<MemBlockDevice>, FaultyBlockDevice) {
        let mem = Arc::new(MemBlockDevice::new("m", 512, 64));
        let f = FaultyBlockDevice::new(mem.clone());
        (mem, f)
    }

    #[tokio::test]
    async fn cached_write_is_read_back_but_not_on_media_until_flush() {
        let (mem, f) = dev();
        f.write(512, &[5u8; 1024], WriteFlags::NONE).await.unwrap();
        let mut b = vec![0u8; 1536];
        f.read(0, &mut b).await.unwrap();
        assert!(b[..512].iter().all(|&x| x == 0) && b[512..].iter().all(|&x| x == 5));
        assert!(mem.snapshot()[512..1536].iter().all(|&x| x == 0));
        assert_eq!(f.cached_sectors().await, 2);
        f.flush().await.unwrap();
        assert!(mem.snapshot()[512..1536].iter().all(|&x| x == 5));
        assert_eq!((f.cached_sectors().await, f.pending_writes().await), (0, 0));
    }

    #[tokio::test]
    async fn fua_supersedes_cached_sector() {
        let (mem, f) = dev();
        f.write(0, &[1u8; 1024], WriteFlags::NONE).await.unwrap();
        f.write(512, &[2u8; 512], WriteFlags::FUA).await.unwrap();
        assert!(mem.snapshot()[512..1024].iter().all(|&x| x == 2));
        let mut b = vec![0u8; 1024];
        f.read(0, &mut b).await.unwrap();
        assert!(b[..512].iter().all(|&x| x == 1) && b[512..].iter().all(|&x| x == 2));
        f.set_crash_policy(CrashPolicy::KEEP_ALL);
        f.rail().cut_now();
        f.recover(&mut ChaCha8Rng::seed_from_u64(0)).await.unwrap();
        let img = mem.snapshot();
        assert!(img[..512].iter().all(|&x| x == 1) && img[512..1024].iter().all(|&x| x == 2));
    }

    #[tokio::test]
    async fn destage_splits_runs_by_kind_and_gap() {
        let (mem, f) = dev();
        f.write(0, &[3u8; 512], WriteFlags::NONE).await.unwrap();
        f.write_zeroes(512, 512).await.unwrap();
        f.write(2048, &[4u8; 1024], WriteFlags::NONE).await.unwrap();
        mem.write(512, &[9u8; 512], WriteFlags::NONE).await.unwrap();
        f.flush().await.unwrap();
        let img = mem.snapshot();
        assert!(img[..512].iter().all(|&x| x == 3));
        assert!(img[512..2048].iter().all(|&x| x == 0));
        assert!(img[2048..3072].iter().all(|&x| x == 4));
        assert_eq!(f.stats().write_zeroes, 1);
    }

    #[tokio::test]
    async fn write_through_mode_writes_media_directly() {
        let mem = Arc::new(MemBlockDevice::new("m", 512, 8));
        let f = FaultyBlockDevice::with_config(
            mem.clone(),
            FaultyConfig {
                write_cache: false,
                ..FaultyConfig::default()
            },
        );
        assert!(!f.geometry().volatile_write_cache);
        f.write(0, &[7u8; 512], WriteFlags::NONE).await.unwrap();
        f.deallocate(512, 512).await.unwrap();
        assert!(mem.snapshot()[..512].iter().all(|&x| x == 7));
        assert_eq!(f.pending_writes().await, 0);
    }

    #[tokio::test]
    async fn identity_and_geometry_follow_inner() {
        let (_mem, f) = dev();
        let id = f.identity();
        assert_eq!(id.kind, DeviceKind::Faulty);
        assert_eq!(id.location, "faulty:m");
        assert_eq!(id.serial, "m");
        assert!(f.geometry().volatile_write_cache);
        assert_eq!(f.geometry().blocks, 64);
    }
}
