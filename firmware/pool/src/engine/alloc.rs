//! The space allocator and its persistent state (the space map).
//!
//! Space is handed out in ranges of pool sectors. Every allocation and free is tagged with
//! the transaction group it belongs to:
//! - `committed` is the allocated set as of the last durable txg (deferred frees included);
//! - an allocation is taken from `free` at once and logged under its txg;
//! - a free is logged under its txg and does not return to `free`; after txg `t` is durable,
//!   frees of txgs `<= t - 1` are released (a free becomes reusable only after the txg that
//!   freed it *and the one after it* are durable: one txg of margin for an import that has
//!   to fall back one txg).
//!
//! At each commit the state as of that txg (allocated ranges + deferred frees) is encoded
//! into the space map, written COW through the codec and named by the uberblock. The space
//! map's own extent is not listed in it; import adds it from the uberblock.

use super::bytes::Reader;
use super::error::PoolError;
use std::collections::BTreeMap;

/// A free is reusable once the txg that freed it plus this many more are durable... minus one:
/// released when `durable_txg >= freed_txg + DEFER_TXGS - 1`.
pub const DEFER_TXGS: u64 = 2;
/// Space map magic "INSM".
const SM_MAGIC: u32 = 0x4d53_4e49;
const SM_VERSION: u32 = 1;

/// A set of disjoint, coalesced ranges of sectors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeSet {
    map: BTreeMap<u64, u64>,
    total: u64,
}

impl RangeSet {
    /// Sum of lengths.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Number of ranges.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Ranges in order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.map.iter().map(|(&s, &l)| (s, l))
    }

    /// Add a range; fails if it overlaps.
    pub fn insert(&mut self, start: u64, len: u64) -> Result<(), String> {
        if len == 0 {
            return Ok(());
        }
        let end = start
            .checked_add(len)
            .ok_or_else(|| format!("range {start}+{len} overflows"))?;
        let mut s = start;
        let mut l = len;
        if let Some((&ps, &pl)) = self.map.range(..=start).next_back() {
            if ps + pl > start {
                return Err(format!("range {start}+{len} overlaps {ps}+{pl}"));
            }
            if ps + pl == start {
                self.map.remove(&ps);
                s = ps;
                l += pl;
            }
        }
        if let Some((&ns, &nl)) = self.map.range(start..).next() {
            if ns < end {
                return Err(format!("range {start}+{len} overlaps {ns}+{nl}"));
            }
            if ns == end {
                self.map.remove(&ns);
                l += nl;
            }
        }
        self.map.insert(s, l);
        self.total += len;
        Ok(())
    }

    /// Remove a range that must lie inside one range of the set.
    pub fn remove(&mut self, start: u64, len: u64) -> Result<(), String> {
        if len == 0 {
            return Ok(());
        }
        let Some((&ps, &pl)) = self.map.range(..=start).next_back() else {
            return Err(format!("range {start}+{len} not in set"));
        };
        if ps + pl < start + len {
            return Err(format!("range {start}+{len} not inside {ps}+{pl}"));
        }
        self.map.remove(&ps);
        if start > ps {
            self.map.insert(ps, start - ps);
        }
        if ps + pl > start + len {
            self.map.insert(start + len, ps + pl - start - len);
        }
        self.total -= len;
        Ok(())
    }

    /// Start of the range that holds `sector`, if it is free.
    fn containing(&self, sector: u64) -> Option<u64> {
        self.map
            .range(..=sector)
            .next_back()
            .filter(|(s, l)| sector < *s + *l)
            .map(|(s, _)| *s)
    }

    /// Take `len` sectors from the first range at or after `hint` that fits, wrapping around.
    fn take_fit(&mut self, len: u64, hint: u64) -> Option<u64> {
        let found = self
            .map
            .range(hint..)
            .find(|(_, l)| **l >= len)
            .or_else(|| self.map.range(..hint).find(|(_, l)| **l >= len))
            .map(|(&s, _)| s)?;
        self.remove(found, len).ok()?;
        Some(found)
    }
}

/// The decoded space map.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpaceMap {
    /// Txg this state belongs to.
    pub txg: u64,
    /// Allocated ranges (deferred frees included, the space map's own extent excluded).
    pub allocated: Vec<(u64, u64)>,
    /// Frees not yet reusable: (txg that freed, start, len).
    pub deferred: Vec<(u64, u64, u64)>,
}

impl SpaceMap {
    /// Encode.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + 16 * self.allocated.len() + 24 * self.deferred.len());
        out.extend_from_slice(&SM_MAGIC.to_le_bytes());
        out.extend_from_slice(&SM_VERSION.to_le_bytes());
        out.extend_from_slice(&self.txg.to_le_bytes());
        out.extend_from_slice(&(self.allocated.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.deferred.len() as u64).to_le_bytes());
        for (s, l) in &self.allocated {
            out.extend_from_slice(&s.to_le_bytes());
            out.extend_from_slice(&l.to_le_bytes());
        }
        for (t, s, l) in &self.deferred {
            out.extend_from_slice(&t.to_le_bytes());
            out.extend_from_slice(&s.to_le_bytes());
            out.extend_from_slice(&l.to_le_bytes());
        }
        out
    }

    /// Decode (never panics).
    pub fn decode(buf: &[u8]) -> Result<SpaceMap, PoolError> {
        let mut r = Reader::new(buf, "space map");
        if r.u32()? != SM_MAGIC {
            return Err(r.bad("bad magic"));
        }
        let v = r.u32()?;
        if v != SM_VERSION {
            return Err(r.bad(format!("unsupported version {v}")));
        }
        let txg = r.u64()?;
        let na = r.u64()? as usize;
        let nd = r.u64()? as usize;
        if na.saturating_mul(16).saturating_add(nd.saturating_mul(24)) > buf.len() {
            return Err(r.bad("counts exceed size"));
        }
        let mut allocated = Vec::with_capacity(na);
        for _ in 0..na {
            allocated.push((r.u64()?, r.u64()?));
        }
        let mut deferred = Vec::with_capacity(nd);
        for _ in 0..nd {
            deferred.push((r.u64()?, r.u64()?, r.u64()?));
        }
        Ok(SpaceMap {
            txg,
            allocated,
            deferred,
        })
    }
}

/// The allocator.
#[derive(Debug, Clone)]
pub struct Allocator {
    capacity: u64,
    reserve: u64,
    free: RangeSet,
    committed: RangeSet,
    deferred: Vec<(u64, u64, u64)>,
    pending_allocs: BTreeMap<u64, Vec<(u64, u64)>>,
    pending_frees: BTreeMap<u64, Vec<(u64, u64)>>,
    hint: u64,
}

/// Sectors kept back from user allocations so a commit (and deletes) can always complete.
pub fn default_reserve(capacity: u64) -> u64 {
    (capacity / 32).max(64).min(capacity / 4)
}

impl Allocator {
    /// A fresh allocator over `[0, capacity)` sectors, everything free.
    pub fn new(capacity: u64) -> Self {
        let mut free = RangeSet::default();
        let _ = free.insert(0, capacity);
        Allocator {
            capacity,
            reserve: default_reserve(capacity),
            free,
            committed: RangeSet::default(),
            deferred: Vec::new(),
            pending_allocs: BTreeMap::new(),
            pending_frees: BTreeMap::new(),
            hint: 0,
        }
    }

    /// Rebuild from a durable space map of txg `sm.txg`, whose own extent is `own`.
    pub fn from_space_map(
        capacity: u64,
        sm: &SpaceMap,
        own: (u64, u64),
    ) -> Result<Self, PoolError> {
        let bad = |d: String| PoolError::Corrupt {
            what: "space map",
            detail: d,
        };
        let mut committed = RangeSet::default();
        for &(s, l) in sm.allocated.iter().chain(std::iter::once(&own)) {
            if s.checked_add(l).is_none_or(|e| e > capacity) {
                return Err(bad(format!("range {s}+{l} beyond capacity {capacity}")));
            }
            committed.insert(s, l).map_err(bad)?;
        }
        let mut free = RangeSet::default();
        let mut pos = 0;
        for (s, l) in committed.iter() {
            free.insert(pos, s - pos).map_err(bad)?;
            pos = s + l;
        }
        free.insert(pos, capacity - pos).map_err(bad)?;
        let mut a = Allocator {
            capacity,
            reserve: default_reserve(capacity),
            free,
            committed,
            deferred: sm.deferred.clone(),
            pending_allocs: BTreeMap::new(),
            pending_frees: BTreeMap::new(),
            hint: 0,
        };
        a.release(sm.txg, u64::MAX)?;
        Ok(a)
    }

    /// Capacity in sectors.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Sectors not free (allocated, pending or deferred).
    pub fn used(&self) -> u64 {
        self.capacity - self.free.total()
    }

    /// Sectors available to user data (free minus the reserve).
    pub fn available(&self) -> u64 {
        self.free.total().saturating_sub(self.reserve)
    }

    /// Allocate `len` sectors for txg `txg`. User allocations may not dip into the reserve.
    pub fn alloc(&mut self, len: u64, txg: u64, use_reserve: bool) -> Result<u64, PoolError> {
        if !use_reserve && self.free.total() < len + self.reserve {
            return Err(PoolError::NoSpace);
        }
        let start = self
            .free
            .take_fit(len, self.hint)
            .ok_or(PoolError::NoSpace)?;
        self.hint = start + len;
        self.pending_allocs
            .entry(txg)
            .or_default()
            .push((start, len));
        Ok(start)
    }

    /// Allocate `len` sectors not yet tied to a txg (a record written before its batch
    /// takes the writer lock). Such ranges are in no space map: lost at a crash, they are
    /// free again. [`Allocator::attach`] ties them to the txg that references them.
    pub fn alloc_detached(&mut self, len: u64) -> Result<u64, PoolError> {
        if self.free.total() < len + self.reserve {
            return Err(PoolError::NoSpace);
        }
        let start = self
            .free
            .take_fit(len, self.hint)
            .ok_or(PoolError::NoSpace)?;
        self.hint = start + len;
        Ok(start)
    }

    /// Tie a detached allocation to txg `txg`.
    pub fn attach(&mut self, start: u64, len: u64, txg: u64) {
        self.pending_allocs
            .entry(txg)
            .or_default()
            .push((start, len));
    }

    /// Give back a detached allocation that was never attached.
    pub fn unalloc_detached(&mut self, start: u64, len: u64) -> Result<(), PoolError> {
        self.free.insert(start, len).map_err(PoolError::Internal)
    }

    /// Give back an allocation of txg `txg` that was never referenced (failed batch).
    pub fn unalloc(&mut self, start: u64, len: u64, txg: u64) -> Result<(), PoolError> {
        let list = self.pending_allocs.entry(txg).or_default();
        let pos = list
            .iter()
            .position(|&r| r == (start, len))
            .ok_or_else(|| PoolError::Internal(format!("unalloc of unknown {start}+{len}")))?;
        list.swap_remove(pos);
        self.free.insert(start, len).map_err(PoolError::Internal)
    }

    /// Whether freed space is waiting for its txg (and the next) to be durable before reuse.
    pub fn has_pending_frees(&self) -> bool {
        !self.deferred.is_empty() || !self.pending_frees.is_empty()
    }

    /// Whether a free of txg `txg` or earlier is still waiting to be released (a commit is
    /// needed to give it back even if nothing else changed).
    pub fn has_deferred_through(&self, txg: u64) -> bool {
        self.deferred.iter().any(|&(t, _, _)| t <= txg)
            || self.pending_frees.range(..=txg).any(|(_, v)| !v.is_empty())
    }

    /// Whether free space is short: less than 1/16 of the capacity available to user data.
    /// A large free then commits promptly so the space comes back soon.
    pub fn is_tight(&self) -> bool {
        self.available() < self.capacity / 16
    }

    /// Record that txg `txg` no longer references `start+len`.
    pub fn free(&mut self, start: u64, len: u64, txg: u64) {
        self.pending_frees
            .entry(txg)
            .or_default()
            .push((start, len));
    }

    /// The state as of txg `txg` (its allocations and frees included), to be written.
    pub fn space_map(&self, txg: u64) -> Result<SpaceMap, PoolError> {
        let mut alloc = self.committed.clone();
        for &(s, l) in self.pending_allocs.get(&txg).into_iter().flatten() {
            alloc.insert(s, l).map_err(PoolError::Internal)?;
        }
        let mut deferred = self.deferred.clone();
        deferred.extend(
            self.pending_frees
                .get(&txg)
                .into_iter()
                .flatten()
                .map(|&(s, l)| (txg, s, l)),
        );
        Ok(SpaceMap {
            txg,
            allocated: alloc.iter().collect(),
            deferred,
        })
    }

    /// Txg `txg` is durable: fold its allocations and frees into the committed state and
    /// release frees that are now old enough.
    pub fn finish(&mut self, txg: u64) -> Result<(), PoolError> {
        self.finish_held(txg, u64::MAX)
    }

    /// [`Allocator::finish`], but frees of txgs `>= hold_from` stay deferred (a reader may
    /// still be walking a tree that references them); they are released by a later finish.
    pub fn finish_held(&mut self, txg: u64, hold_from: u64) -> Result<(), PoolError> {
        for (s, l) in self.pending_allocs.remove(&txg).unwrap_or_default() {
            self.committed.insert(s, l).map_err(PoolError::Internal)?;
        }
        for (s, l) in self.pending_frees.remove(&txg).unwrap_or_default() {
            self.deferred.push((txg, s, l));
        }
        self.release(txg, hold_from)
    }

    /// Make the frees old enough (see the module doc) free again, and move the next-fit
    /// hint back to the lowest of them: space that was written before is reused before
    /// space never written. A thin-provisioned or sparse-file drive then grows only with
    /// the pool's peak use instead of with everything ever written, and the backing
    /// pages (tmpfs, a host's page cache) stay the ones already in memory.
    fn release(&mut self, durable: u64, hold_from: u64) -> Result<(), PoolError> {
        let mut keep = Vec::with_capacity(self.deferred.len());
        let mut lowest: Option<u64> = None;
        for (t, s, l) in std::mem::take(&mut self.deferred) {
            if t + DEFER_TXGS - 1 <= durable && t < hold_from {
                self.committed
                    .remove(s, l)
                    .map_err(|e| PoolError::Corrupt {
                        what: "space map",
                        detail: format!("freeing a range that is not allocated: {e}"),
                    })?;
                self.free.insert(s, l).map_err(PoolError::Internal)?;
                lowest = Some(lowest.map_or(s, |x| x.min(s)));
            } else {
                keep.push((t, s, l));
            }
        }
        self.deferred = keep;
        if let Some(low) = lowest {
            // The free range holding it may start lower (coalesced with older free space).
            let start = self.free.containing(low).unwrap_or(low);
            self.hint = self.hint.min(start);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rangeset_coalesce_split() {
        let mut r = RangeSet::default();
        r.insert(10, 5).unwrap();
        r.insert(15, 5).unwrap();
        r.insert(0, 10).unwrap();
        assert_eq!(r.iter().collect::<Vec<_>>(), vec![(0, 20)]);
        assert!(r.insert(3, 1).is_err());
        r.remove(5, 5).unwrap();
        assert_eq!(r.iter().collect::<Vec<_>>(), vec![(0, 5), (10, 10)]);
        assert_eq!(r.total(), 15);
        assert!(r.remove(4, 3).is_err());
    }

    #[test]
    fn frees_deferred_until_durable() {
        let mut a = Allocator::new(1000);
        let x = a.alloc(10, 1, false).unwrap();
        a.finish(1).unwrap();
        a.free(x, 10, 2);
        a.finish(2).unwrap();
        // freed in txg 2: not reusable until txg 3 is durable
        assert_eq!(a.used(), 10);
        a.finish(3).unwrap();
        assert_eq!(a.used(), 0);
    }

    #[test]
    fn released_space_is_reused_before_space_never_written() {
        let mut a = Allocator::new(1000);
        let x = a.alloc(100, 1, false).unwrap();
        let y = a.alloc(100, 1, false).unwrap();
        a.finish(1).unwrap();
        // Next fit: while x is deferred, allocations go on past y.
        a.free(x, 100, 2);
        let z = a.alloc(10, 2, false).unwrap();
        assert_eq!(z, y + 100);
        a.finish(2).unwrap();
        a.finish(3).unwrap();
        // x is free again: the next allocations fill it, from its start, before the
        // space after z that was never written.
        assert_eq!(a.alloc(60, 4, false).unwrap(), x);
        assert_eq!(a.alloc(40, 4, false).unwrap(), x + 60);
        assert_eq!(a.alloc(10, 4, false).unwrap(), z + 10);
        // A released range that coalesces with older free space below it: the hint
        // goes to the start of the whole free range.
        let mut b = Allocator::new(1000);
        let p = b.alloc(50, 1, false).unwrap();
        let q = b.alloc(50, 1, false).unwrap();
        let _r = b.alloc(50, 1, false).unwrap();
        b.finish(1).unwrap();
        b.free(p, 50, 2);
        b.finish(2).unwrap();
        b.finish(3).unwrap();
        assert_eq!(b.alloc(20, 4, false).unwrap(), p);
        b.free(q, 50, 4);
        b.finish(4).unwrap();
        b.finish(5).unwrap();
        assert_eq!(b.alloc(70, 6, false).unwrap(), p + 20);
    }

    #[test]
    fn space_map_roundtrip_and_import() {
        let mut a = Allocator::new(1000);
        let x = a.alloc(10, 1, false).unwrap();
        let _y = a.alloc(5, 1, false).unwrap();
        a.free(x, 10, 1);
        let sm = a.space_map(1).unwrap();
        let d = SpaceMap::decode(&sm.encode()).unwrap();
        assert_eq!(d, sm);
        let b = Allocator::from_space_map(1000, &d, (500, 3)).unwrap();
        assert_eq!(b.used(), 18);
        assert!(SpaceMap::decode(&[1, 2, 3]).is_err());
    }

    proptest::proptest! {
        #![proptest_config(crate::testutil::proptest_config(128))]
        #[test]
        fn space_map_decode_arbitrary_never_panics(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = SpaceMap::decode(&b);
        }

        #[test]
        fn allocator_never_double_allocates(ops in proptest::collection::vec((1u64..40, proptest::prelude::any::<bool>()), 1..200)) {
            let mut a = Allocator::new(2000);
            let mut live: Vec<(u64, u64)> = Vec::new();
            for (txg, (len, free)) in (1u64..).zip(ops) {
                if free && !live.is_empty() {
                    let (s, l) = live.remove(0);
                    a.free(s, l, txg);
                } else if let Ok(s) = a.alloc(len, txg, true) {
                    for &(ls, ll) in &live {
                        proptest::prop_assert!(s + len <= ls || ls + ll <= s, "overlap");
                    }
                    live.push((s, len));
                }
                // The protocol: the space map of txg is written, then txg is durable.
                let sm = a.space_map(txg).unwrap();
                a.finish(txg).unwrap();
                let back = Allocator::from_space_map(2000, &sm, (0, 0)).unwrap();
                proptest::prop_assert_eq!(back.used(), a.used());
                proptest::prop_assert_eq!(&back.free, &a.free);
            }
        }
    }

    #[test]
    fn deferred_through_tracks_frees_until_released() {
        let mut a = Allocator::new(1000);
        let x = a.alloc(10, 1, false).unwrap();
        a.finish(1).unwrap();
        assert!(!a.has_deferred_through(1));
        a.free(x, 10, 2);
        assert!(a.has_deferred_through(2));
        assert!(!a.has_deferred_through(1));
        a.finish(2).unwrap();
        assert!(a.has_deferred_through(2));
        // Txg 3 changes nothing, yet its commit is what releases the free of txg 2.
        a.finish(3).unwrap();
        assert!(!a.has_deferred_through(2));
        assert_eq!(a.used(), 0);
    }

    #[test]
    fn tight_below_a_sixteenth_available() {
        let mut a = Allocator::new(1600);
        assert!(!a.is_tight());
        let r = default_reserve(1600);
        a.alloc(1600 - r - 100, 1, false).unwrap();
        assert!(!a.is_tight());
        a.alloc(1, 1, false).unwrap();
        assert!(a.is_tight());
    }

    #[test]
    fn reserve_and_nospace() {
        let mut a = Allocator::new(1000);
        let r = default_reserve(1000);
        assert!(a.alloc(1000 - r, 1, false).is_ok());
        assert!(matches!(a.alloc(1, 1, false), Err(PoolError::NoSpace)));
        assert!(a.alloc(1, 1, true).is_ok());
    }
}
