//! A byte-bounded LRU cache of clean tree nodes, keyed by (address, birth txg).
//!
//! The bound is on the nodes' encoded payload sizes; the in-memory overhead per node is a
//! small constant factor of that (keys and values are owned vectors).

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
    pub fn get(&self, bp: &BlockPtr) -> Option<Arc<Node>> {
        let mut g = self.inner.lock();
        let g = &mut *g;
        g.tick += 1;
        let tick = g.tick;
        let (node, old) = {
            let e = g.map.get_mut(&(bp.addr, bp.birth))?;
            let old = e.1;
            e.1 = tick;
            (e.0.clone(), old)
        };
        g.lru.remove(&old);
        g.lru.insert(tick, (bp.addr, bp.birth));
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
