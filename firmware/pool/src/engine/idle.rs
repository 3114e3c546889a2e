//! Idle commit: commit a txg once changes stop, rather than at the next timer tick.
//!
//! A client that writes a burst and stops (an untar, a copy, an editor saving) otherwise
//! leaves its data dirty until the txg timer (`Tunables::txg_interval`, 5 s) fires, so
//! the data stays at risk that long and the commit lands on whatever the client does
//! next, often reads. With [`Tunables::idle_commit`] = `q`:
//!
//! - **Idle commit.** Every batch that changes something ticks a change counter
//!   ([`IdleClock::note_change`], which also notes the time). The background committer
//!   also wakes when changes not yet in a commit exist and none has arrived for `q` since
//!   the last one ([`IdleClock::wait_quiet`]). A steady stream of changes (gaps under `q`) never
//!   wakes it, so it adds no commits there; the timer, the dirty limit and `sync` work
//!   as before.
//! - **Idle records.** Dirty records of new data (no extent under them: new files,
//!   appends into holes) untouched for one tick of `q` are sealed and written in the
//!   background ([`Inner::seal_idle`]), as early writes the commit then only links (the
//!   commit's pre-flush does the same for all records, but inside the commit). Each
//!   record is sealed so at most once per txg; one changed after it is sealed again by
//!   the commit. Records over an existing extent (overwrites in place, whose next write
//!   is likely near) are left to the commit.
//!
//! Time is tokio's clock, so tests drive both with a paused runtime.
//!
//! [`Tunables::idle_commit`]: super::config::Tunables::idle_commit

use super::dirty::RecKey;
use super::pool::Inner;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Idle records sealed at once in the background.
const IDLE_SEAL_TASKS: usize = 4;

/// Changes counted by batches, and how far commits have taken them.
#[derive(Debug, Default)]
pub struct IdleClock {
    /// Batches that changed something.
    changes: AtomicU64,
    /// `changes` as of the last commit's freeze (or of a commit that found nothing to do).
    committed: AtomicU64,
    /// When the last change was counted (tokio's clock).
    last: parking_lot::Mutex<Option<tokio::time::Instant>>,
    changed: tokio::sync::Notify,
}

impl IdleClock {
    /// A batch changed something.
    pub fn note_change(&self) {
        *self.last.lock() = Some(tokio::time::Instant::now());
        self.changes.fetch_add(1, Ordering::AcqRel);
        self.changed.notify_waiters();
    }

    /// The change count now (read by a commit under the open txg's lock: every change
    /// counted so far is in the txg it freezes).
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Acquire)
    }

    /// A commit froze (or found nothing to commit) with the count at `seq`.
    pub fn committed_through(&self, seq: u64) {
        self.committed.fetch_max(seq, Ordering::AcqRel);
    }

    /// Whether changes not yet in a commit exist.
    pub fn pending(&self) -> bool {
        self.changes() > self.committed.load(Ordering::Acquire)
    }

    /// Wait until something changes (returns at once if changes are pending).
    pub async fn wait_change(&self) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.pending() {
                return;
            }
            notified.await;
        }
    }

    /// Return once changes not yet committed exist and none has arrived for `q` since
    /// the last one. Never returns when `q` is zero.
    pub async fn wait_quiet(&self, q: Duration) {
        if q.is_zero() {
            return std::future::pending().await;
        }
        loop {
            self.wait_change().await;
            let seen = self.changes();
            let Some(last) = *self.last.lock() else {
                // Pending changes always have a time; defensive only.
                tokio::time::sleep(q).await;
                continue;
            };
            tokio::time::sleep_until(last + q).await;
            if self.changes() == seen && self.pending() {
                return;
            }
        }
    }
}

/// What the idle-record sealer remembers between ticks.
#[derive(Debug, Default)]
pub(crate) struct SealState {
    /// The open txg of the last tick (what `sealed` is about).
    txg: u64,
    /// Every dirty record at the last tick, by version (`Arc` address).
    prev: HashMap<RecKey, usize>,
    /// Records sealed in the background during this txg.
    sealed: HashSet<RecKey>,
}

impl Inner {
    /// One tick of the idle-record sealer: start early writes of the dirty records of new
    /// data that are at the version they had at the last tick (untouched since), were not
    /// sealed yet this txg and have no early write; at most [`IDLE_SEAL_TASKS`] at a time.
    /// Returns how many it started.
    pub(crate) async fn seal_idle(self: &Arc<Self>, st: &mut SealState) -> usize {
        let wb = &self.datapath.write_behind;
        if !wb.enabled() || self.locked || self.read_only {
            return 0;
        }
        let txg = self.readable.read().1;
        if st.txg != txg {
            st.txg = txg;
            st.sealed.clear();
        }
        let recs = self.datapath.view.read().all();
        let started = wb.pending_versions();
        let mut now = HashMap::with_capacity(recs.len());
        let mut todo = Vec::new();
        for (key, rec) in recs {
            let version = Arc::as_ptr(&rec) as usize;
            now.insert(key, version);
            let idle = st.prev.get(&key) == Some(&version);
            if idle
                && rec.base().is_none()
                && !st.sealed.contains(&key)
                && !started.contains(&(key, version))
            {
                todo.push((key, rec));
            }
        }
        st.prev = now;
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return 0;
        };
        let gate = Arc::new(tokio::sync::Semaphore::new(IDLE_SEAL_TASKS));
        let mut n = 0;
        for (key, rec) in todo {
            let Ok(permit) = gate.clone().acquire_owned().await else {
                break;
            };
            if self.closed.load(Ordering::Acquire) {
                break;
            }
            if self.spawn_early_write(&rt, key, rec, permit) {
                st.sealed.insert(key);
                n += 1;
            }
        }
        if n > 0 {
            tracing::trace!(pool = %self.id.name, txg, records = n, "idle records sealed");
        }
        n
    }
}

/// The idle-record sealer: every `q` while dirty records exist, [`Inner::seal_idle`].
/// Holds the pool only while it works; `Pool::drop` aborts it.
pub(crate) fn start_sealer(inner: &Arc<Inner>) -> Option<tokio::task::JoinHandle<()>> {
    let q = inner.tunables.idle_commit;
    if q.is_zero() || inner.read_only || !inner.datapath.write_behind.enabled() {
        return None;
    }
    let weak = Arc::downgrade(inner);
    Some(tokio::spawn(async move {
        let mut st = SealState::default();
        loop {
            {
                let Some(i) = weak.upgrade() else { return };
                if i.closed.load(Ordering::Acquire) {
                    return;
                }
                if i.datapath.view.read().is_empty() {
                    st.prev.clear();
                    i.idle.wait_change().await;
                }
            }
            tokio::time::sleep(q).await;
            let Some(i) = weak.upgrade() else { return };
            i.seal_idle(&mut st).await;
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::KdfParams;
    use crate::engine::{Pool, PoolConfig, PoolLayout};
    use crate::store::{ObjectStore, Op};
    use bytes::Bytes;
    use ingot_hal::blockdev::{BlockDevice, MemBlockDevice};

    #[tokio::test(start_paused = true)]
    async fn wait_quiet_returns_only_after_changes_stop_for_the_interval() {
        let c = Arc::new(IdleClock::default());
        let q = Duration::from_millis(200);
        let waiter = {
            let c = c.clone();
            tokio::spawn(async move { c.wait_quiet(q).await })
        };
        // Nothing changed: it waits however long.
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!waiter.is_finished());
        // A change every 100 ms for 3 s: never quiet.
        for _ in 0..30 {
            c.note_change();
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(!waiter.is_finished());
        }
        // Changes stop (the last one 100 ms ago): quiet q after it, not before.
        tokio::time::sleep(Duration::from_millis(90)).await;
        assert!(!waiter.is_finished());
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(waiter.is_finished());
        // Committed: nothing pending, so the next wait waits for a change again.
        c.committed_through(c.changes());
        assert!(!c.pending());
        let again = {
            let c = c.clone();
            tokio::spawn(async move { c.wait_quiet(q).await })
        };
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!again.is_finished());
        c.note_change();
        tokio::time::sleep(Duration::from_millis(190)).await;
        assert!(!again.is_finished());
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(again.is_finished());
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_interval_never_returns() {
        let c = Arc::new(IdleClock::default());
        c.note_change();
        let w = {
            let c = c.clone();
            tokio::spawn(async move { c.wait_quiet(Duration::ZERO).await })
        };
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert!(!w.is_finished());
    }

    async fn pool() -> Pool {
        let devs: Vec<Arc<dyn BlockDevice>> = (0..3)
            .map(|i| Arc::new(MemBlockDevice::new(format!("i{i}"), 4096, 4096)) as _)
            .collect();
        let mut c = PoolConfig::new("idle", PoolLayout::Raidz1);
        c.kdf = KdfParams::FAST_INSECURE;
        c.record_size = 16 * 1024;
        c.tunables.txg_interval = Duration::from_secs(3600);
        // No background tasks: the test runs the sealer's ticks itself.
        c.tunables.idle_commit = Duration::ZERO;
        Pool::create(devs, c).await.unwrap()
    }

    fn write(id: u64, offset: u64, fill: u8, len: usize) -> Op {
        Op::Write {
            id,
            offset,
            data: Bytes::from(vec![fill; len]),
        }
    }

    #[tokio::test]
    async fn idle_records_of_new_data_are_sealed_once_per_txg_and_linked_by_the_commit() {
        let p = pool().await;
        let i = p.inner.clone();
        // Object 64: committed data (its record has an extent under it from now on).
        p.apply(vec![Op::Create { id: 64 }, write(64, 0, 1, 5000)])
            .await
            .unwrap();
        p.sync().await.unwrap();
        // A new object's record (new data) and an overwrite of object 64's record.
        p.apply(vec![
            Op::Create { id: 65 },
            write(65, 0, 2, 5000),
            write(64, 100, 3, 10),
        ])
        .await
        .unwrap();
        let mut st = SealState::default();
        // First tick: nothing has been idle for a tick yet.
        assert_eq!(i.seal_idle(&mut st).await, 0);
        // Second tick: the new record, untouched since, is sealed; the overwrite is not.
        assert_eq!(i.seal_idle(&mut st).await, 1);
        assert_eq!(i.datapath.write_behind.pending_len(), 1);
        // Once per txg: a change and two more ticks seal nothing.
        p.apply(vec![write(65, 5000, 4, 100)]).await.unwrap();
        assert_eq!(i.seal_idle(&mut st).await, 0);
        assert_eq!(i.seal_idle(&mut st).await, 0);
        let before = p.datapath_stats();
        p.sync().await.unwrap();
        let after = p.datapath_stats();
        // The early write was of an older version: given back, the commit wrote the record.
        assert_eq!(after.early_wasted - before.early_wasted, 1);
        // Next txg: sealed again when idle, and this time the commit links it.
        p.apply(vec![Op::Create { id: 66 }, write(66, 0, 5, 3000)])
            .await
            .unwrap();
        assert_eq!(i.seal_idle(&mut st).await, 0);
        assert_eq!(i.seal_idle(&mut st).await, 1);
        let before = p.datapath_stats();
        p.sync().await.unwrap();
        let after = p.datapath_stats();
        assert_eq!(after.early_linked - before.early_linked, 1);
        let mut b = vec![0u8; 5100];
        p.read(65, 0, &mut b).await.unwrap();
        assert!(b[..5000].iter().all(|&x| x == 2) && b[5000..].iter().all(|&x| x == 4));
        let mut b = vec![0u8; 3000];
        p.read(66, 0, &mut b).await.unwrap();
        assert!(b.iter().all(|&x| x == 5));
        let mut b = vec![0u8; 5000];
        p.read(64, 0, &mut b).await.unwrap();
        assert!(b[100..110].iter().all(|&x| x == 3) && b[..100].iter().all(|&x| x == 1));
    }
}
