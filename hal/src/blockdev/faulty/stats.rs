//! Counters of operations and injected faults, so tests can assert what happened.

use super::cache::CrashReport;
use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a [`FaultyBlockDevice`](super::FaultyBlockDevice)'s counters.
///
/// Operation counts include every call that passed argument checks, whatever its outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultyStats {
    /// Reads.
    pub reads: u64,
    /// Writes, FUA or not.
    pub writes: u64,
    /// Of `writes`, those with FUA.
    pub fua_writes: u64,
    /// Flushes.
    pub flushes: u64,
    /// Deallocates.
    pub deallocates: u64,
    /// Write zeroes.
    pub write_zeroes: u64,
    /// Health queries.
    pub health_queries: u64,
    /// Operations failed by a [`FaultRule`](super::FaultRule).
    pub injected_errors: u64,
    /// Writes silently dropped by a [`FaultKind::LostWrite`](super::FaultKind::LostWrite) rule.
    pub lost_writes: u64,
    /// Writes silently sent elsewhere by a
    /// [`FaultKind::Misdirected`](super::FaultKind::Misdirected) rule.
    pub misdirected_writes: u64,
    /// Operations failed because the power was off (including one that tripped the cut).
    pub power_failures: u64,
    /// Operations failed because the device was removed.
    pub removed_failures: u64,
    /// Bits flipped by [`corrupt`](super::FaultyBlockDevice::corrupt).
    pub bits_flipped: u64,
    /// Sectors touched by `corrupt`.
    pub sectors_corrupted: u64,
    /// Crashes settled by [`recover`](super::FaultyBlockDevice::recover).
    pub crashes: u64,
    /// Pending writes kept whole across crashes.
    pub writes_kept: u64,
    /// Pending writes dropped across crashes.
    pub writes_dropped: u64,
    /// Pending writes torn across crashes.
    pub writes_torn: u64,
}

/// The live counters behind [`FaultyStats`].
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) reads: AtomicU64,
    pub(super) writes: AtomicU64,
    pub(super) fua_writes: AtomicU64,
    pub(super) flushes: AtomicU64,
    pub(super) deallocates: AtomicU64,
    pub(super) write_zeroes: AtomicU64,
    pub(super) health_queries: AtomicU64,
    pub(super) injected_errors: AtomicU64,
    pub(super) lost_writes: AtomicU64,
    pub(super) misdirected_writes: AtomicU64,
    pub(super) power_failures: AtomicU64,
    pub(super) removed_failures: AtomicU64,
    pub(super) bits_flipped: AtomicU64,
    pub(super) sectors_corrupted: AtomicU64,
    pub(super) crashes: AtomicU64,
    pub(super) writes_kept: AtomicU64,
    pub(super) writes_dropped: AtomicU64,
    pub(super) writes_torn: AtomicU64,
}

/// Add one to a counter.
pub(super) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    pub(super) fn record_crash(&self, r: &CrashReport) {
        bump(&self.crashes);
        self.writes_kept.fetch_add(r.kept, Ordering::Relaxed);
        self.writes_dropped.fetch_add(r.dropped, Ordering::Relaxed);
        self.writes_torn.fetch_add(r.torn, Ordering::Relaxed);
    }

    pub(super) fn snapshot(&self) -> FaultyStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        FaultyStats {
            reads: g(&self.reads),
            writes: g(&self.writes),
            fua_writes: g(&self.fua_writes),
            flushes: g(&self.flushes),
            deallocates: g(&self.deallocates),
            write_zeroes: g(&self.write_zeroes),
            health_queries: g(&self.health_queries),
            injected_errors: g(&self.injected_errors),
            lost_writes: g(&self.lost_writes),
            misdirected_writes: g(&self.misdirected_writes),
            power_failures: g(&self.power_failures),
            removed_failures: g(&self.removed_failures),
            bits_flipped: g(&self.bits_flipped),
            sectors_corrupted: g(&self.sectors_corrupted),
            crashes: g(&self.crashes),
            writes_kept: g(&self.writes_kept),
            writes_dropped: g(&self.writes_dropped),
            writes_torn: g(&self.writes_torn),
        }
    }
}
