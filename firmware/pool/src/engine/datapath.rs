//! Data-path state of an imported pool: the dirty records of the open txg
//! ([`super::dirty`]), the decoded-record cache ([`super::recordcache`]) and their
//! counters, exposed as [`DataPathStats`] by [`Pool::datapath_stats`].

use super::bptr::BlockPtr;
use super::config::Tunables;
use super::dirty::DirtyView;
use super::error::PoolError;
use super::io::BlockIo;
use super::pool::Pool;
use super::recordcache::{RecordCache, RecordCacheStats};
use super::writebehind::WriteBehind;
use bytes::Bytes;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};

/// Data-path state (one per pool).
#[derive(Debug)]
pub struct DataPath {
    /// Dirty records of the open txg, as readers see them. Changed only under the open
    /// txg's lock; lock order: this, then `Inner::readable`.
    pub view: RwLock<DirtyView>,
    /// Decoded records.
    pub cache: RecordCache,
    /// Dirty records written by commits.
    pub flushed_at_commit: AtomicU64,
    /// Dirty records written as soon as every page of them was written.
    pub flushed_when_full: AtomicU64,
    /// Reads served by decrypting only the units they return.
    pub partial_reads: AtomicU64,
    /// Records sealed and written in the background ([`super::writebehind`]).
    pub write_behind: WriteBehind,
    /// Sequential readahead (streams and records being prefetched).
    pub readahead: super::readahead::Readahead,
}

/// Counters of the data path (since import).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataPathStats {
    /// The decoded-record cache.
    pub record_cache: RecordCacheStats,
    /// Records dirty in memory now.
    pub dirty_records: u64,
    /// Page memory they hold.
    pub dirty_bytes: u64,
    /// Dirty records written by txg commits.
    pub flushed_at_commit: u64,
    /// Dirty records written once fully overwritten.
    pub flushed_when_full: u64,
    /// Partial reads of uncompressed records that decrypted only the units returned.
    pub partial_reads: u64,
    /// Records written early by write-behind.
    #[serde(default)]
    pub early_writes: u64,
    /// Early writes a commit linked into the tree.
    #[serde(default)]
    pub early_linked: u64,
    /// Early writes given back (their record changed before the commit).
    #[serde(default)]
    pub early_wasted: u64,
}

impl DataPath {
    /// State for a pool with these tunables.
    pub fn new(t: &Tunables) -> Self {
        DataPath {
            view: RwLock::new(DirtyView::default()),
            cache: RecordCache::new(t.record_cache_bytes),
            flushed_at_commit: AtomicU64::new(0),
            flushed_when_full: AtomicU64::new(0),
            partial_reads: AtomicU64::new(0),
            write_behind: WriteBehind::new(t.write_behind_records),
            readahead: Default::default(),
        }
    }

    /// The decoded record `bp`, from the cache or read, verified and decoded (then cached).
    pub async fn record(&self, io: &BlockIo, bp: &BlockPtr) -> Result<Bytes, PoolError> {
        if let Some(d) = self.cache.get(bp.addr, bp.birth) {
            return Ok(d);
        }
        let d = Bytes::from(io.read_data(bp).await?);
        self.cache.put(bp.addr, bp.birth, d.clone());
        Ok(d)
    }

    /// Counters.
    pub fn stats(&self) -> DataPathStats {
        let (dirty_records, dirty_bytes) = {
            let v = self.view.read();
            (v.len() as u64, v.mem_bytes())
        };
        DataPathStats {
            record_cache: self.cache.stats(),
            dirty_records,
            dirty_bytes,
            flushed_at_commit: self.flushed_at_commit.load(Ordering::Relaxed),
            flushed_when_full: self.flushed_when_full.load(Ordering::Relaxed),
            partial_reads: self.partial_reads.load(Ordering::Relaxed),
            early_writes: self.write_behind.started.load(Ordering::Relaxed),
            early_linked: self.write_behind.linked.load(Ordering::Relaxed),
            early_wasted: self.write_behind.wasted.load(Ordering::Relaxed),
        }
    }
}

impl Pool {
    /// Data-path counters: record cache hits/misses/size, dirty records, flushes.
    pub fn datapath_stats(&self) -> DataPathStats {
        self.inner.datapath.stats()
    }
}
