//! A byte-bounded LRU cache of clean tree nodes, keyed by (address, birth txg).
//!
//! The bound is on the nodes' encoded payload sizes; the in-memory overhead per node is a
//! small constant factor of that (keys and values are `Bytes`, one allocation each).

use super::bptr::BlockPtr;
use super::node::Node;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

type Key = (u64, u64);

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<Key, (Arc<Node>, u64)>,
    lru: BTreeMap<u64, Key>,
    tick: u64,
    bytes: usize,
}

/// The node cache.
#[derive(Debug)]
pub struct NodeCache {
    limit: usize,
    inner: Mutex<Inner>,
}

impl NodeCache {
    /// A cache holding at most `limit` bytes of node payload.
    pub fn new(limit: usize) -> Self {
        NodeCache {
            limit,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Look a node up.
    ///
    /// A hit on a node among the most recently used quarter leaves the LRU order as it is
    /// (the upper levels of the tree are hit on every descent): only older entries move to
    /// the front, so a hot path costs one hash lookup, not an LRU reordering per level.
    pub fn get(&self, bp: &BlockPtr) -> Option<Arc<Node>> {
        let mut g = self.inner.lock();
        let g = &mut *g;
        let recent = g.tick.saturating_sub(g.map.len() as u64 / 4);
        let next = g.tick + 1;
        let (node, old) = {
            let e = g.map.get_mut(&(bp.addr, bp.birth))?;
            if e.1 >= recent {
                return Some(e.0.clone());
            }
            let old = e.1;
            e.1 = next;
            (e.0.clone(), old)
        };
        g.tick = next;
        g.lru.remove(&old);
        g.lru.insert(next, (bp.addr, bp.birth));
        Some(node)
    }

    /// Insert a clean node.
    pub fn put(&self, bp: &BlockPtr, node: Arc<Node>) {
        let mut g = self.inner.lock();
        let g = &mut *g;
        g.tick += 1;
        let tick = g.tick;
        let size = node.bytes;
        if let Some((old, t)) = g.map.insert((bp.addr, bp.birth), (node, tick)) {
            g.lru.remove(&t);
            g.bytes -= old.bytes;
        }
        g.lru.insert(tick, (bp.addr, bp.birth));
        g.bytes += size;
        while g.bytes > self.limit {
            let Some((_, k)) = g.lru.pop_first() else {
                break;
            };
            if let Some((n, _)) = g.map.remove(&k) {
                g.bytes -= n.bytes;
            }
        }
    }

    /// Bytes currently held.
    pub fn bytes(&self) -> usize {
        self.inner.lock().bytes
    }

    /// Drop everything.
    pub fn clear(&self) {
        let mut g = self.inner.lock();
        *g = Inner::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::bptr::BlockKind;

    fn bp(addr: u64) -> BlockPtr {
        BlockPtr {
            addr,
            birth: 1,
            lsize: 4096,
            psize: 4096,
            asize: 1,
            crc: 0,
            comp: 0,
            kind: BlockKind::Node,
        }
    }

    fn node(bytes: usize) -> Arc<Node> {
        let mut n = Node::empty_leaf();
        n.bytes = bytes;
        Arc::new(n)
    }

    #[test]
    fn stays_within_its_bound_and_keeps_what_is_used() {
        let c = NodeCache::new(100 * 1000);
        c.put(&bp(0), node(1000));
        for a in 1..1000 {
            c.put(&bp(a), node(1000));
            // The hot node is hit between inserts, as the root is on every descent.
            assert!(
                c.get(&bp(0)).is_some(),
                "hot node evicted after {a} inserts"
            );
            assert!(c.bytes() <= 100 * 1000);
        }
        // The oldest cold nodes went first; the newest are still there.
        assert!(c.get(&bp(1)).is_none());
        assert!(c.get(&bp(999)).is_some());
        assert_eq!(c.bytes(), 100 * 1000);
    }

    #[test]
    fn an_old_entry_that_is_hit_moves_to_the_front() {
        let c = NodeCache::new(8 * 10);
        for a in 0..8 {
            c.put(&bp(a), node(10));
        }
        // Entry 0 is the least recently used; a hit makes it the most recent.
        assert!(c.get(&bp(0)).is_some());
        for a in 8..15 {
            c.put(&bp(a), node(10));
        }
        assert!(
            c.get(&bp(0)).is_some(),
            "a hit did not refresh an old entry"
        );
        assert!(c.get(&bp(1)).is_none());
    }
}
