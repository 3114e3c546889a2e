//! A bounded cache of decoded data records (verified, decrypted, decompressed), so a
//! small read of a record that was read or written recently costs a copy instead of a vdev
//! read, a crc32c, an XTS decryption and a zstd decompression of the whole record.
//!
//! Entries are keyed by the extent's pool address and birth txg. Extents are
//! copy-on-write: a record rewritten gets a new address, and an address is reused only in
//! a later txg (so with another birth), hence an entry never goes stale. Entries of freed
//! extents are dropped early ([`RecordCache::remove`]) to give the memory back, and so are
//! those of a failed batch's allocations (which may be reused in the same txg).
//!
//! Replacement is ZFS's ARC (adaptive replacement cache, Megiddo and Modha), by bytes: a
//! record enters the *recent* list (T1), a second use moves it to the *frequent* list
//! (T2); records evicted from either leave a *ghost* (key and size only, B1 and B2), and a
//! miss that finds a ghost moves the target size of the recent list towards the list that
//! would have hit. A streaming read or write of more than the cache then churns T1 only,
//! and records read again and again stay in T2.
//!
//! The cache is split into shards (by address) with one lock each; each shard holds at
//! most `limit / SHARDS` bytes of memory, counting every resident record's bytes plus a
//! fixed overhead per entry and a fixed cost per ghost, so the total is strictly bounded
//! by the configured byte count (`Tunables::record_cache_bytes`, 0 disables the cache).
//! The default size is a fraction of physical memory, as ZFS sizes its ARC
//! ([`default_cache_bytes`]).
//!
//! Records are held as [`Bytes`], so a record just written can be cached without a copy:
//! the cache keeps the written buffer itself. A record is charged the memory it keeps
//! alive: its length, or more when it is a slice of a larger buffer of its own
//! ([`RecordCache::put_written_pinning`]: a write's buffer trimmed of trailing zeroes).
//! Callers never put a small slice of a buffer shared with other records, which would
//! keep all of it alive uncharged: they copy it first (`Bytes::copy_from_slice`).

use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};

/// Number of shards (a power of two).
const SHARDS: usize = 8;
/// Memory charged per resident entry besides its bytes (map and list slots, the `Bytes` handle).
pub const ENTRY_OVERHEAD: usize = 128;
/// Memory charged per ghost entry (map and list slots).
pub const GHOST_COST: usize = 96;
/// Share of a shard's budget ghosts may use (1 / this).
const GHOST_SHARE: usize = 16;

/// Fraction of physical memory the cache takes by default (1 / this): half, as ZFS's ARC
/// on Linux (`zfs_arc_max` = 0).
pub const DEFAULT_MEMORY_FRACTION: u64 = 2;
/// Smallest default (a machine with very little memory still caches something).
pub const MIN_DEFAULT_BYTES: u64 = 64 << 20;
/// The default when physical memory is unknown.
pub const FALLBACK_DEFAULT_BYTES: u64 = 256 << 20;

/// Physical memory in bytes from the text of `/proc/meminfo` (its `MemTotal:` line).
pub fn mem_total_bytes(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut it = line["MemTotal:".len()..].split_whitespace();
    let n: u64 = it.next()?.parse().ok()?;
    match it.next() {
        Some("kB") | None => n.checked_mul(1024),
        Some(_) => None,
    }
}

/// The default cache size for a machine with `mem_total` bytes of physical memory
/// (`None`: unknown).
pub fn default_cache_bytes_for(mem_total: Option<u64>) -> usize {
    let b = match mem_total {
        Some(m) => (m / DEFAULT_MEMORY_FRACTION).max(MIN_DEFAULT_BYTES),
        None => FALLBACK_DEFAULT_BYTES,
    };
    usize::try_from(b).unwrap_or(usize::MAX)
}

/// The default cache size on this machine: [`default_cache_bytes_for`] its `/proc/meminfo`.
pub fn default_cache_bytes() -> usize {
    let text = std::fs::read_to_string("/proc/meminfo").ok();
    default_cache_bytes_for(text.as_deref().and_then(mem_total_bytes))
}

type Key = (u64, u64);

/// The four ARC lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum List {
    /// Resident, used once.
    Recent = 0,
    /// Resident, used more than once.
    Frequent = 1,
    /// Evicted from `Recent`.
    GhostRecent = 2,
    /// Evicted from `Frequent`.
    GhostFrequent = 3,
}

#[derive(Debug)]
struct Entry {
    list: List,
    tick: u64,
    /// Bytes charged: the record's length, or what its buffer pins if more.
    size: usize,
    data: Option<Bytes>,
    /// Put by readahead and not used since (see [`RecordCache::put_prefetched`]).
    prefetched: bool,
}

#[derive(Debug, Default)]
struct Shard {
    map: HashMap<Key, Entry>,
    /// Per list, entries by last use (oldest first).
    lists: [BTreeMap<u64, Key>; 4],
    /// Per list, record bytes (for ghosts: the size they had).
    sizes: [usize; 4],
    /// Memory charged for resident entries (bytes plus overhead).
    resident: usize,
    /// Ghost entries.
    ghosts: usize,
    /// Target record bytes of the recent list (ARC's `p`).
    target: usize,
    tick: u64,
    /// Prefetched records evicted before any use.
    prefetch_wasted: u64,
}

impl Shard {
    fn memory(&self) -> usize {
        self.resident + self.ghosts * GHOST_COST
    }

    /// Put `key` (present in the map with `e.list`) at the most recent end of `to`.
    fn relink(&mut self, key: Key, to: List) {
        self.tick += 1;
        let tick = self.tick;
        let Some(e) = self.map.get_mut(&key) else {
            return;
        };
        self.lists[e.list as usize].remove(&e.tick);
        self.sizes[e.list as usize] -= e.size;
        e.list = to;
        e.tick = tick;
        self.sizes[to as usize] += e.size;
        self.lists[to as usize].insert(tick, key);
    }

    /// Drop `key` entirely.
    fn unlink(&mut self, key: &Key) -> Option<Entry> {
        let e = self.map.remove(key)?;
        self.lists[e.list as usize].remove(&e.tick);
        self.sizes[e.list as usize] -= e.size;
        match e.data {
            Some(_) => self.resident -= e.size + ENTRY_OVERHEAD,
            None => self.ghosts -= 1,
        }
        Some(e)
    }

    /// Evict the oldest entry of resident list `from` to its ghost list. False if empty.
    fn evict_one(&mut self, from: List) -> bool {
        let Some((_, key)) = self.lists[from as usize].first_key_value() else {
            return false;
        };
        let key = *key;
        let ghost = match from {
            List::Recent => List::GhostRecent,
            _ => List::GhostFrequent,
        };
        if let Some(e) = self.map.get_mut(&key)
            && e.data.take().is_some()
        {
            self.resident -= e.size + ENTRY_OVERHEAD;
            self.ghosts += 1;
            if std::mem::take(&mut e.prefetched) {
                self.prefetch_wasted += 1;
            }
        }
        self.relink(key, ghost);
        true
    }

    /// Drop the oldest ghost of `list`. False if none.
    fn drop_ghost(&mut self, list: List) -> bool {
        let Some((_, key)) = self.lists[list as usize].first_key_value() else {
            return false;
        };
        let key = *key;
        self.unlink(&key);
        true
    }

    /// ARC's REPLACE until resident memory fits `limit`; `hit_frequent_ghost`: the insert
    /// that made room found its key in the frequent ghost list. Returns the evictions.
    fn make_room(&mut self, limit: usize, hit_frequent_ghost: bool) -> u64 {
        let mut n = 0;
        while self.resident > limit {
            let t1 = self.sizes[List::Recent as usize];
            let from_recent = t1 > 0
                && (t1 > self.target || (hit_frequent_ghost && t1 == self.target))
                || self.lists[List::Frequent as usize].is_empty();
            let from = if from_recent {
                List::Recent
            } else {
                List::Frequent
            };
            if !self.evict_one(from) {
                break;
            }
            n += 1;
        }
        n
    }

    /// Keep the ghost lists within ARC's bounds (recent list plus its ghosts at most
    /// `c`, everything at most `2c`, in record bytes) and within their memory share.
    fn trim_ghosts(&mut self, c: usize, ghost_budget: usize) {
        let s = |sh: &Shard, l: List| sh.sizes[l as usize];
        while s(self, List::Recent) + s(self, List::GhostRecent) > c
            && self.drop_ghost(List::GhostRecent)
        {}
        while self.sizes.iter().sum::<usize>() > 2 * c && self.drop_ghost(List::GhostFrequent) {}
        while self.ghosts * GHOST_COST > ghost_budget {
            let older = if self.lists[List::GhostRecent as usize].len()
                >= self.lists[List::GhostFrequent as usize].len()
            {
                List::GhostRecent
            } else {
                List::GhostFrequent
            };
            if !self.drop_ghost(older) {
                break;
            }
        }
    }
}

/// Counters of the record cache (since import).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecordCacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that had to read and decode the record.
    pub misses: u64,
    /// Entries evicted to stay within the bound.
    pub evictions: u64,
    /// Memory held now: the records' bytes plus the per-entry and ghost overheads.
    pub bytes: u64,
    /// The configured bound in bytes (`bytes` never exceeds it).
    pub limit: u64,
    /// Records held now.
    #[serde(default)]
    pub records: u64,
    /// Record bytes in the frequent list (records used more than once).
    #[serde(default)]
    pub frequent_bytes: u64,
    /// Records inserted by writes (data written or flushed, served from memory afterwards).
    #[serde(default)]
    pub inserted_by_writes: u64,
    /// Records inserted by sequential readahead.
    #[serde(default)]
    pub prefetched: u64,
    /// Lookups that found a prefetched record (its first use).
    #[serde(default)]
    pub prefetch_hits: u64,
    /// Prefetched records evicted before any use.
    #[serde(default)]
    pub prefetch_wasted: u64,
}

/// The decoded-record cache.
#[derive(Debug)]
pub struct RecordCache {
    /// Memory budget of one shard.
    shard_limit: usize,
    /// Of which resident records may use this much (the rest is for ghosts).
    resident_limit: usize,
    limit: usize,
    shards: Vec<Mutex<Shard>>,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
    written: AtomicU64,
    prefetched: AtomicU64,
    prefetch_hits: AtomicU64,
}

fn shard_of(addr: u64) -> usize {
    // Records are at least one sector apart and usually 32+ sectors: mix the bits.
    (addr.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 59) as usize & (SHARDS - 1)
}

impl RecordCache {
    /// A cache holding at most `limit` bytes of memory (0: caches nothing).
    pub fn new(limit: usize) -> Self {
        let shard_limit = limit / SHARDS;
        RecordCache {
            shard_limit,
            resident_limit: shard_limit - shard_limit / GHOST_SHARE,
            limit,
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            written: AtomicU64::new(0),
            prefetched: AtomicU64::new(0),
            prefetch_hits: AtomicU64::new(0),
        }
    }

    /// Whether the cache can hold anything.
    pub fn enabled(&self) -> bool {
        self.resident_limit > ENTRY_OVERHEAD
    }

    /// Whether a record of `len` bytes can be cached.
    pub fn fits(&self, len: usize) -> bool {
        self.enabled() && len + ENTRY_OVERHEAD <= self.resident_limit
    }

    /// The decoded record of extent (`addr`, `birth`), if cached. Counts a hit or a miss.
    pub fn get(&self, addr: u64, birth: u64) -> Option<Bytes> {
        if !self.enabled() {
            return None;
        }
        let found = {
            let mut g = self.shards[shard_of(addr)].lock();
            let key = (addr, birth);
            match g.map.get_mut(&key).and_then(|e| {
                let first_use = std::mem::take(&mut e.prefetched);
                e.data.clone().map(|d| (d, first_use))
            }) {
                Some((v, first_use)) => {
                    // A prefetched record's first use is its first demand access: it
                    // stays in the recent list (ZFS's prefetch flag), so a streaming read
                    // does not flood the frequent list.
                    let to = if first_use {
                        self.prefetch_hits.fetch_add(1, Ordering::Relaxed);
                        List::Recent
                    } else {
                        List::Frequent
                    };
                    g.relink(key, to);
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

    /// Insert the decoded record of extent (`addr`, `birth`), read after a miss.
    pub fn put(&self, addr: u64, birth: u64, data: Bytes) {
        self.insert(addr, birth, data);
    }

    /// Whether the decoded record of extent (`addr`, `birth`) is resident (no hit or miss
    /// counted, no change of list).
    pub fn contains(&self, addr: u64, birth: u64) -> bool {
        self.enabled()
            && self.shards[shard_of(addr)]
                .lock()
                .map
                .get(&(addr, birth))
                .is_some_and(|e| e.data.is_some())
    }

    /// Insert a record read ahead of demand (sequential readahead): it enters the recent
    /// list marked prefetched, and its first use leaves it there. Nothing happens if the
    /// record is already resident.
    pub fn put_prefetched(&self, addr: u64, birth: u64, data: Bytes) {
        if self.contains(addr, birth) {
            return;
        }
        let pinned = data.len();
        if self.insert_as(addr, birth, data, pinned, true) {
            self.prefetched.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Note the first use of a prefetched record handed over by the prefetch itself (the
    /// reader waited for it instead of looking it up): counted as a prefetch hit.
    pub fn note_prefetch_use(&self, addr: u64, birth: u64) {
        if !self.enabled() {
            return;
        }
        let used = self.shards[shard_of(addr)]
            .lock()
            .map
            .get_mut(&(addr, birth))
            .is_some_and(|e| std::mem::take(&mut e.prefetched));
        if used {
            self.prefetch_hits.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Insert the decoded record of an extent just written (so reads of recently written
    /// data are served from memory).
    pub fn put_written(&self, addr: u64, birth: u64, data: Bytes) {
        let pinned = data.len();
        self.put_written_pinning(addr, birth, data, pinned);
    }

    /// [`RecordCache::put_written`] of `data`, a slice of a buffer of `pinned` bytes that
    /// holds nothing else the cache keeps (a write's buffer of this record, trimmed of its
    /// trailing zeroes): the entry is charged `pinned` bytes, what it keeps alive.
    pub fn put_written_pinning(&self, addr: u64, birth: u64, data: Bytes, pinned: usize) {
        if self.insert_as(addr, birth, data, pinned, false) {
            self.written.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn insert(&self, addr: u64, birth: u64, data: Bytes) -> bool {
        let pinned = data.len();
        self.insert_as(addr, birth, data, pinned, false)
    }

    fn insert_as(
        &self,
        addr: u64,
        birth: u64,
        data: Bytes,
        pinned: usize,
        prefetched: bool,
    ) -> bool {
        let size = data.len().max(pinned);
        if !self.fits(size) {
            return false;
        }
        let key = (addr, birth);
        let mut guard = self.shards[shard_of(addr)].lock();
        let g = &mut *guard;
        let c = self.resident_limit;
        let (to, hit_frequent_ghost) = match g.map.get(&key).map(|e| e.list) {
            Some(List::Recent | List::Frequent) => {
                // Already resident (two readers missed at once): a second use.
                if let Some(e) = g.unlink(&key) {
                    debug_assert!(e.data.is_some());
                }
                (List::Frequent, false)
            }
            Some(List::GhostRecent) => {
                // It would have hit with a larger recent list: grow its target.
                let (b1, b2) = (
                    g.sizes[List::GhostRecent as usize].max(1),
                    g.sizes[List::GhostFrequent as usize],
                );
                g.target = (g.target + (b2 / b1).max(1) * size).min(c);
                g.unlink(&key);
                (List::Frequent, false)
            }
            Some(List::GhostFrequent) => {
                let (b1, b2) = (
                    g.sizes[List::GhostRecent as usize],
                    g.sizes[List::GhostFrequent as usize].max(1),
                );
                g.target = g.target.saturating_sub((b1 / b2).max(1) * size);
                g.unlink(&key);
                (List::Frequent, true)
            }
            None => (List::Recent, false),
        };
        g.tick += 1;
        let tick = g.tick;
        g.map.insert(
            key,
            Entry {
                list: to,
                tick,
                size,
                data: Some(data),
                prefetched: prefetched && to == List::Recent,
            },
        );
        g.lists[to as usize].insert(tick, key);
        g.sizes[to as usize] += size;
        g.resident += size + ENTRY_OVERHEAD;
        let n = g.make_room(c, hit_frequent_ghost);
        g.trim_ghosts(c, self.shard_limit - c);
        debug_assert!(g.memory() <= self.shard_limit);
        drop(guard);
        if n > 0 {
            self.evictions.fetch_add(n, Ordering::Relaxed);
        }
        true
    }

    /// Drop the entry (or ghost) of a freed extent.
    pub fn remove(&self, addr: u64, birth: u64) {
        if !self.enabled() {
            return;
        }
        self.shards[shard_of(addr)].lock().unlink(&(addr, birth));
    }

    /// Memory held (records, entry overheads and ghosts).
    pub fn bytes(&self) -> usize {
        self.shards.iter().map(|s| s.lock().memory()).sum()
    }

    /// Counters and size.
    pub fn stats(&self) -> RecordCacheStats {
        let (mut bytes, mut records, mut frequent, mut wasted) = (0, 0, 0, 0);
        for s in &self.shards {
            let s = s.lock();
            bytes += s.memory() as u64;
            wasted += s.prefetch_wasted;
            records += (s.lists[List::Recent as usize].len()
                + s.lists[List::Frequent as usize].len()) as u64;
            frequent += s.sizes[List::Frequent as usize] as u64;
        }
        RecordCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            bytes,
            limit: self.limit as u64,
            records,
            frequent_bytes: frequent,
            inserted_by_writes: self.written.load(Ordering::Relaxed),
            prefetched: self.prefetched.load(Ordering::Relaxed),
            prefetch_hits: self.prefetch_hits.load(Ordering::Relaxed),
            prefetch_wasted: wasted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(len: usize, fill: u8) -> Bytes {
        Bytes::from(vec![fill; len])
    }

    /// Memory a cache of `n` records of `len` bytes holds.
    fn held(n: usize, len: usize) -> u64 {
        (n * (len + ENTRY_OVERHEAD)) as u64
    }

    #[test]
    fn hit_miss_and_birth_in_the_key() {
        let c = RecordCache::new(1 << 20);
        assert!(c.get(10, 1).is_none());
        c.put(10, 1, rec(100, 1));
        assert_eq!(c.get(10, 1).as_deref(), Some(&[1u8; 100][..]));
        // Same address, other birth: a different extent.
        assert!(c.get(10, 2).is_none());
        let s = c.stats();
        assert_eq!((s.hits, s.misses, s.bytes), (1, 2, held(1, 100)));
        assert_eq!((s.records, s.frequent_bytes), (1, 100));
        c.remove(10, 1);
        assert!(c.get(10, 1).is_none());
        assert_eq!(c.bytes(), 0);
        c.put_written(11, 1, rec(10, 2));
        assert_eq!(c.stats().inserted_by_writes, 1);
    }

    #[test]
    fn bounded_by_bytes_least_recently_used_goes_first() {
        // 8 shards of 64 KiB each.
        let limit = 8 * 64 * 1024;
        let c = RecordCache::new(limit);
        for a in 0..200u64 {
            c.put(a, 1, rec(16 * 1024, a as u8));
            // Keep record 0 hot.
            assert!(c.get(0, 1).is_some());
            assert!(c.bytes() <= limit);
        }
        assert!(c.stats().evictions >= 200 - 32);
        assert!(c.get(0, 1).is_some(), "the hot entry survives");
        // Larger than a shard: not cached at all.
        c.put(1000, 1, rec(65 * 1024, 0));
        assert!(c.get(1000, 1).is_none());
    }

    #[test]
    fn a_scan_does_not_flush_the_frequent_records() {
        let limit = 8 << 20;
        let c = RecordCache::new(limit);
        // A working set of 16 records of 64 KiB (1 MiB), each used twice.
        let hot: Vec<u64> = (0..16).collect();
        for &a in &hot {
            c.put(a, 1, rec(64 << 10, 1));
            assert!(c.get(a, 1).is_some());
        }
        // A streaming pass over 64 MiB of other records, each used once.
        for a in 1000..2024u64 {
            c.put(a, 1, rec(64 << 10, 2));
            assert!(c.bytes() <= limit);
        }
        let kept = hot.iter().filter(|&&a| c.get(a, 1).is_some()).count();
        assert_eq!(kept, hot.len(), "the scan evicted frequent records");
        let s = c.stats();
        assert!(s.bytes <= s.limit && s.evictions > 900, "{s:?}");
    }

    #[test]
    fn ghost_hits_adapt_the_target_and_stay_bounded() {
        // One record per shard at a time: everything else becomes a ghost.
        let limit = 8 * 40 * 1024;
        let c = RecordCache::new(limit);
        for round in 0..4u64 {
            for a in 0..64u64 {
                c.put(a, 1, rec(16 * 1024, round as u8));
                let _ = c.get(a, 1);
                assert!(c.bytes() <= limit);
            }
        }
        let s = c.stats();
        assert!(s.bytes <= s.limit, "{s:?}");
        // Ghost re-inserts go to the frequent list.
        assert!(s.frequent_bytes > 0, "{s:?}");
        for a in 0..64u64 {
            c.remove(a, 1);
        }
        assert_eq!(c.bytes(), 0, "removal drops ghosts too");
    }

    #[test]
    fn shared_buffers_are_kept_without_a_copy_and_charged_what_they_pin() {
        let c = RecordCache::new(8 << 20);
        // A written record's buffer, cached as it is: the entry is that buffer.
        let buf = rec(64 << 10, 7);
        c.put_written(1, 1, buf.clone());
        let got = c.get(1, 1).expect("cached");
        assert_eq!(
            got.as_ptr(),
            buf.as_ptr(),
            "cached by reference, not copied"
        );
        drop(got);
        assert_eq!(c.bytes() as u64, held(1, 64 << 10));
        // Trimmed of trailing zeroes, it still pins the whole buffer: charged so.
        let whole = rec(64 << 10, 8);
        c.put_written_pinning(2, 1, whole.slice(..1000), whole.len());
        assert_eq!(c.get(2, 1).as_deref(), Some(&[8u8; 1000][..]));
        assert_eq!(c.bytes() as u64, held(2, 64 << 10));
        // Removal hands the buffers back: nothing but the callers' handles is left.
        c.remove(1, 1);
        c.remove(2, 1);
        assert!(buf.is_unique() && whole.is_unique());
        assert_eq!(c.bytes(), 0);
        // The bound holds with pinned charges: 8 shards of 64 KiB, slices of 1 KiB
        // pinning 16 KiB each.
        let limit = 8 * 64 * 1024;
        let c = RecordCache::new(limit);
        let mut held_back = Vec::new();
        for a in 0..200u64 {
            let b = rec(16 << 10, a as u8);
            c.put_written_pinning(a, 1, b.slice(..1024), b.len());
            held_back.push(b);
            assert!(c.bytes() <= limit);
        }
        let s = c.stats();
        assert!(s.evictions >= 200 - 32 && s.records <= 32, "{s:?}");
        // The evicted buffers are not pinned by the cache any more.
        let pinned = held_back.iter().filter(|b| !b.is_unique()).count();
        assert_eq!(pinned as u64, s.records);
        // Too large a pin for a shard: not cached.
        let big = rec(65 << 10, 1);
        c.put_written_pinning(1000, 1, big.slice(..10), big.len());
        assert!(c.get(1000, 1).is_none());
    }

    #[test]
    fn zero_limit_caches_nothing() {
        let c = RecordCache::new(0);
        c.put(1, 1, rec(10, 0));
        assert!(c.get(1, 1).is_none());
        assert_eq!(c.stats().misses, 0);
    }

    #[test]
    fn default_size_is_half_of_physical_memory() {
        let meminfo = "MemTotal:       24000000 kB\nMemFree:        1000 kB\n";
        assert_eq!(mem_total_bytes(meminfo), Some(24_000_000 * 1024));
        assert_eq!(
            default_cache_bytes_for(mem_total_bytes(meminfo)),
            12_000_000 * 1024
        );
        assert_eq!(mem_total_bytes("MemFree: 3 kB\n"), None);
        assert_eq!(mem_total_bytes("MemTotal: x kB\n"), None);
        assert_eq!(
            default_cache_bytes_for(Some(32 << 20)),
            MIN_DEFAULT_BYTES as usize
        );
        assert_eq!(
            default_cache_bytes_for(None),
            FALLBACK_DEFAULT_BYTES as usize
        );
    }
}
