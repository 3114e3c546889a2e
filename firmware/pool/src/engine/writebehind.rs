//! Write-behind: records written whole are sealed (compressed, encrypted, checksummed,
//! parity added) and written to the devices by background tasks while writers go on, as
//! ZFS and btrfs do; the txg commit then only links the extents into the tree.
//!
//! A write of whole records makes each of them a dirty record that holds the write's
//! buffer without a copy ([`super::dirty::DirtyRecord::whole`]) and returns; so does the
//! write that completes a record page by page. After the batch is published, a task per
//! such record seals it and writes it to a *detached* allocation (in no space map: lost
//! at a crash, it is free again) and keeps the extent with the exact version of the dirty
//! record it wrote. The commit's flush (`Inner::flush_dirty`, under the open txg's lock)
//! waits for the early writes, links each one whose record is still that version into the
//! tree (attaching its allocation to the txg) and hands its decoded bytes to the record
//! cache (the written buffer itself when it holds that record only, else a copy); a record changed, dropped or rewritten after its early write is sealed again by
//! the flush, and the early extent is given back at once (no durable tree ever
//! referenced it). Durability does not change: `sync` and `fsync` return after the commit
//! that links the extents, writes the tree and the labels.
//!
//! Three paths start early writes: write-behind after a batch, the commit's pre-flush
//! and the idle-record sealer. At most one runs per version of a record, and none starts
//! while a commit's flush runs ([`WriteBehind::freeze`]): the flush took the early
//! writes already started and writes every other record itself, so one started then
//! would seal and write a record twice and outlive the commit (even the pool's export).
//!
//! Writers are throttled by slots ([`crate::engine::config::Tunables::write_behind_records`]):
//! a batch takes one per whole record before the writer lock and the task gives it back
//! when its write is done, so writers run at most that many records ahead of the devices
//! (a delay, as ZFS's `dirty_data_max` throttle, not a stall at the dirty limit).
//!
//! Space: a dirty record needs a record's space at commit; sectors early writes hold
//! ([`WriteBehind::held_sectors`]) count toward it, since the flush either uses them for
//! the record or gives them back before it seals anything.

use super::bptr::BlockPtr;
use super::dirty::{DirtyRecord, RecKey};
use super::pool::Inner;
use parking_lot::Mutex;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

/// Default number of records in flight (128 KiB records: 8 MiB ahead of the devices).
pub const DEFAULT_SLOTS: usize = 64;

/// An extent written to a detached allocation by a spawned task: the allocation goes
/// back when this is dropped without [`Detached::take`] (the extent is no longer wanted,
/// or the task's caller went away).
pub(crate) struct Detached {
    pub(crate) inner: Arc<Inner>,
    pub(crate) bp: BlockPtr,
    /// Whether the sectors count in [`WriteBehind::held_sectors`].
    pub(crate) held: bool,
    pub(crate) armed: bool,
}

impl Detached {
    /// The extent, now the caller's to attach or give back.
    pub(crate) fn take(mut self) -> BlockPtr {
        self.armed = false;
        self.release_held();
        self.bp
    }

    fn release_held(&mut self) {
        if self.held {
            self.held = false;
            self.inner
                .datapath
                .write_behind
                .held_sectors
                .fetch_sub(u64::from(self.bp.asize), Ordering::AcqRel);
        }
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        self.release_held();
        if self.armed {
            self.inner.give_back_one(&self.bp);
        }
    }
}

/// What an early write left: the extent (`None`: the record is all zeroes, a hole) and
/// the record's decoded bytes for the record cache (when they fit in it) with the bytes
/// they keep alive (more than their length when they are the written buffer trimmed of
/// its trailing zeroes).
pub(crate) struct Early {
    pub(crate) extent: Option<Detached>,
    pub(crate) decoded: Option<(bytes::Bytes, usize)>,
}

/// One early write in flight or done, not yet taken by a commit.
pub(crate) struct EarlyWrite {
    pub(crate) key: RecKey,
    /// The version of the dirty record it wrote.
    pub(crate) rec: Arc<DirtyRecord>,
    /// `None` if the write failed (the commit seals the record itself).
    pub(crate) task: JoinHandle<Option<Early>>,
}

/// The early writes not yet taken by a commit.
#[derive(Debug, Default)]
struct Pending {
    writes: Vec<EarlyWrite>,
    /// The (record, version) pairs of `writes`: the version is the address of the dirty
    /// record's `Arc`, alive as long as the entry holds it.
    versions: HashSet<(RecKey, usize)>,
    /// A commit's flush took the early writes and writes the rest of its records itself:
    /// no early write may start until it is done (it would write a record the flush
    /// writes too, and nothing would take it).
    frozen: bool,
}

/// Write-behind state (one per pool).
#[derive(Debug)]
pub struct WriteBehind {
    pending: Mutex<Pending>,
    slots: Arc<Semaphore>,
    total: usize,
    enabled: bool,
    /// Sectors allocated by finished early writes, not yet linked or given back.
    pub held_sectors: AtomicU64,
    /// Early writes started.
    pub started: AtomicU64,
    /// Early writes a commit linked into the tree.
    pub linked: AtomicU64,
    /// Early writes given back (record changed after the write, or the write failed).
    pub wasted: AtomicU64,
}

impl std::fmt::Debug for EarlyWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EarlyWrite")
            .field("key", &self.key)
            .finish()
    }
}

impl WriteBehind {
    /// Write-behind with `slots` records in flight at most (0: off).
    pub fn new(slots: usize) -> Self {
        WriteBehind {
            pending: Mutex::new(Pending::default()),
            slots: Arc::new(Semaphore::new(slots.max(1))),
            total: slots.max(1),
            enabled: slots > 0,
            held_sectors: AtomicU64::new(0),
            started: AtomicU64::new(0),
            linked: AtomicU64::new(0),
            wasted: AtomicU64::new(0),
        }
    }

    /// Whether write-behind is on.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Wait for `n` slots, at most all of them (the writer throttle); `None` when
    /// write-behind is off. Taken at once, so batches never hold part of what they wait
    /// for; records beyond the slots taken are written early only if a slot is free then.
    pub(crate) async fn slots(&self, n: usize) -> Option<Vec<OwnedSemaphorePermit>> {
        if !self.enabled {
            return None;
        }
        let n = n.min(self.total);
        let mut v = Vec::with_capacity(n);
        if n > 0 {
            let mut all = self
                .slots
                .clone()
                .acquire_many_owned(u32::try_from(n).ok()?)
                .await
                .ok()?;
            while all.num_permits() > 1 {
                if let Some(one) = all.split(1) {
                    v.push(one);
                }
            }
            v.push(all);
        }
        Some(v)
    }

    /// A slot if one is free now.
    pub(crate) fn try_slot(&self) -> Option<OwnedSemaphorePermit> {
        if !self.enabled {
            return None;
        }
        self.slots.clone().try_acquire_owned().ok()
    }

    /// Start an early write of version `rec` of record `key` (`spawn` starts its task) and
    /// register it, unless that version already has one or a commit's flush is running
    /// (see [`WriteBehind::freeze`]): at most one early write per version, and none the
    /// flush would not take. Returns whether it started.
    pub(crate) fn start(
        &self,
        key: RecKey,
        rec: Arc<DirtyRecord>,
        spawn: impl FnOnce() -> JoinHandle<Option<Early>>,
    ) -> bool {
        let mut p = self.pending.lock();
        let version = (key, Arc::as_ptr(&rec) as usize);
        if p.frozen || p.versions.contains(&version) {
            return false;
        }
        p.versions.insert(version);
        p.writes.push(EarlyWrite {
            key,
            rec,
            task: spawn(),
        });
        self.started.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Every early write not yet taken, for a commit's flush, which writes the other
    /// dirty records itself: no early write starts from now until [`WriteBehind::thaw`].
    pub(crate) fn freeze(&self) -> Vec<EarlyWrite> {
        let mut p = self.pending.lock();
        p.frozen = true;
        p.versions.clear();
        std::mem::take(&mut p.writes)
    }

    /// The flush is done (its records are no longer dirty): early writes may start again.
    pub(crate) fn thaw(&self) {
        self.pending.lock().frozen = false;
    }

    /// The (record, version) pairs of the early writes not yet taken.
    pub(crate) fn pending_versions(&self) -> HashSet<(RecKey, usize)> {
        self.pending.lock().versions.clone()
    }

    /// Wait until no early write is in flight (every slot is free).
    pub async fn quiesce(&self) {
        let n = u32::try_from(self.total).unwrap_or(u32::MAX);
        drop(self.slots.acquire_many(n).await);
    }

    /// Early writes not yet taken by a commit.
    pub fn pending_len(&self) -> usize {
        self.pending.lock().writes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done() -> JoinHandle<Option<Early>> {
        tokio::spawn(async { None })
    }

    #[tokio::test]
    async fn one_early_write_per_version_and_none_while_a_flush_runs() {
        let wb = WriteBehind::new(4);
        let v1 = Arc::new(DirtyRecord::new(4096, None));
        let v2 = Arc::new(DirtyRecord::new(4096, None));
        let key = (7, 0);
        assert!(wb.start(key, v1.clone(), done));
        // The same version again (the idle sealer or a pre-flush racing write-behind).
        let mut spawned = false;
        assert!(!wb.start(key, v1.clone(), || {
            spawned = true;
            done()
        }));
        assert!(!spawned, "a refused early write must not be spawned");
        // A new version of the record is another write.
        assert!(wb.start(key, v2.clone(), done));
        assert_eq!(wb.pending_len(), 2);
        assert_eq!(wb.started.load(Ordering::Relaxed), 2);
        // A flush takes both; until it is done nothing starts, not even a new version.
        let taken = wb.freeze();
        assert_eq!(taken.len(), 2);
        assert!(wb.pending_versions().is_empty());
        let v3 = Arc::new(DirtyRecord::new(4096, None));
        assert!(!wb.start(key, v3.clone(), done));
        assert!(!wb.start((8, 1), v1.clone(), done));
        wb.thaw();
        assert!(wb.start(key, v3, done));
        assert_eq!(wb.pending_len(), 1);
    }
}
