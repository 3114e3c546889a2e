//! A bounded cache of decoded data records (verified, decrypted, decompressed), so a
//! small read of a record that was read recently costs a copy instead of a vdev read, a
//! crc32c, an XTS decryption and a zstd decompression of the whole record.
//!
//! Entries are keyed by the extent's pool address and birth txg. Extents are
//! copy-on-write: a record rewritten gets a new address, and an address is reused only in
//! a later txg (so with another birth), hence an entry never goes stale. Entries of freed
//! extents are dropped early ([`RecordCache::remove`]) to give the memory back.
//!
//! The cache is split into shards (by address) with one lock each, each shard an LRU
//! bounded by the decoded bytes it holds; the total bound is the configured byte count
//! (`Tunables::record_cache_bytes`), 0 disables the cache.

use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Number of shards (a power of two).
const SHARDS: usize = 8;

type Key = (u64, u64);

#[derive(Debug, Default)]
struct Shard {
    map: HashMap<Key, (Arc<Vec<u8>>, u64)>,
    lru: BTreeMap<u64, Key>,
    tick: u64,
    bytes: usize,
}

impl Shard {
    fn evict_to(&mut self, limit: usize) -> u64 {
        let mut n = 0;
        while self.bytes > limit {
            let Some((_, k)) = self.lru.pop_first() else {
                break;
            };
            if let Some((v, _)) = self.map.remove(&k) {
                self.bytes -= v.len();
                n += 1;
            }
        }
        n
    }
}

/// Counters of the record cache (since import).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecordCacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that had to read and decode the record.
    pub misses: u64,
    /// Entries dropped to stay within the bound.
    pub evictions: u64,
    /// Decoded bytes held now.
    pub bytes: u64,
    /// The configured bound in bytes.
    pub limit: u64,
}

/// The decoded-record cache.
#[derive(Debug)]
pub struct RecordCache {
    shard_limit: usize,
    limit: usize,
    shards: Vec<Mutex<Shard>>,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
}

fn shard_of(addr: u64) -> usize {
    // Records are at least one sector apart and usually 32+ sectors: mix the bits.
    (addr.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 59) as usize & (SHARDS - 1)
}

impl RecordCache {
    /// A cache holding at most `limit` bytes of decoded records (0: caches nothing).
    pub fn new(limit: usize) -> Self {
        RecordCache {
            shard_limit: limit / SHARDS,
            limit,
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    /// Whether the cache can hold anything.
    pub fn enabled(&self) -> bool {
        self.shard_limit > 0
    }

    /// The decoded record of extent (`addr`, `birth`), if cached. Counts a hit or a miss.
    pub fn get(&self, addr: u64, birth: u64) -> Option<Arc<Vec<u8>>> {
        if !self.enabled() {
            return None;
        }
        let found = {
            let mut guard = self.shards[shard_of(addr)].lock();
            let g = &mut *guard;
            g.tick += 1;
            let tick = g.tick;
            match g.map.get_mut(&(addr, birth)) {
                Some(e) => {
                    let old = std::mem::replace(&mut e.1, tick);
                    let v = e.0.clone();
                    g.lru.remove(&old);
                    g.lru.insert(tick, (addr, birth));
                    Some(v)
                }
                None => None,
            }
        };
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Insert the decoded record of extent (`addr`, `birth`).
    pub fn put(&self, addr: u64, birth: u64, data: Arc<Vec<u8>>) {
        if !self.enabled() || data.len() > self.shard_limit {
            return;
        }
        let mut g = self.shards[shard_of(addr)].lock();
        let g = &mut *g;
        g.tick += 1;
        let tick = g.tick;
        let size = data.len();
        if let Some((old, t)) = g.map.insert((addr, birth), (data, tick)) {
            g.lru.remove(&t);
            g.bytes -= old.len();
        }
        g.lru.insert(tick, (addr, birth));
        g.bytes += size;
        let n = g.evict_to(self.shard_limit);
        if n > 0 {
            self.evictions.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Drop the entry of a freed extent.
    pub fn remove(&self, addr: u64, birth: u64) {
        if !self.enabled() {
            return;
        }
        let mut g = self.shards[shard_of(addr)].lock();
        if let Some((v, t)) = g.map.remove(&(addr, birth)) {
            g.lru.remove(&t);
            g.bytes -= v.len();
        }
    }

    /// Decoded bytes held.
    pub fn bytes(&self) -> usize {
        self.shards.iter().map(|s| s.lock().bytes).sum()
    }

    /// Counters and size.
    pub fn stats(&self) -> RecordCacheStats {
        RecordCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            bytes: self.bytes() as u64,
            limit: self.limit as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(len: usize, fill: u8) -> Arc<Vec<u8>> {
        Arc::new(vec![fill; len])
    }

    #[test]
    fn hit_miss_and_birth_in_the_key() {
        let c = RecordCache::new(1 << 20);
        assert!(c.get(10, 1).is_none());
        c.put(10, 1, rec(100, 1));
        assert_eq!(c.get(10, 1).as_deref(), Some(&vec![1u8; 100]));
        // Same address, other birth: a different extent.
        assert!(c.get(10, 2).is_none());
        let s = c.stats();
        assert_eq!((s.hits, s.misses, s.bytes), (1, 2, 100));
        c.remove(10, 1);
        assert!(c.get(10, 1).is_none());
        assert_eq!(c.bytes(), 0);
    }

    #[test]
    fn bounded_by_bytes_least_recently_used_goes_first() {
        // 8 shards of 64 KiB each.
        let c = RecordCache::new(8 * 64 * 1024);
        for a in 0..200u64 {
            c.put(a, 1, rec(16 * 1024, a as u8));
            // Keep record 0 hot.
            assert!(c.get(0, 1).is_some());
        }
        assert!(c.bytes() <= 8 * 64 * 1024);
        assert!(c.stats().evictions >= 200 - 32);
        assert!(c.get(0, 1).is_some(), "the hot entry survives");
        // Larger than a shard: not cached at all.
        c.put(1000, 1, rec(65 * 1024, 0));
        assert!(c.get(1000, 1).is_none());
    }

    #[test]
    fn zero_limit_caches_nothing() {
        let c = RecordCache::new(0);
        c.put(1, 1, rec(10, 0));
        assert!(c.get(1, 1).is_none());
        assert_eq!(c.stats().misses, 0);
    }
}
