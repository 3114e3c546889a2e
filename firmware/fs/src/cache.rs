//! The in-memory inode cache: one [`Node`] per inode in use, holding its decoded attributes,
//! its open count, its kernel reference count and its I/O lock.
//!
//! A node stays cached while anyone holds it, while it is open, while it has unwritten
//! timestamps, or while the kernel holds references to it (its lookup count, see
//! [`crate::Fs::forget`]): those counts decide when an unlinked inode is deleted, so they must
//! never be dropped with an idle node and come back as zero. The sweep drops other idle nodes,
//! and the cached attributes (not the counts) of nodes kept only for their kernel references.
//!
//! Locking: `io` is an async RwLock held across store I/O for ordering on *that inode only*.
//! Writes inside the current size take it shared (so many run at once); anything that changes
//! the attribute record, the size or the namespace takes it exclusive. Multi-inode operations
//! lock in ascending inode order. `state` is a short synchronous mutex never held across I/O.

use crate::inode::Inode;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

/// Number of cache shards.
const SHARDS: usize = 64;

/// Cached state of one inode.
#[derive(Debug, Default)]
pub(crate) struct NodeState {
    /// The attributes, once loaded.
    pub inode: Option<Inode>,
    /// `inode` has changes not yet written to the store (timestamps of writes, attribute
    /// changes of an open inode).
    pub dirty: bool,
    /// Open file handles.
    pub open: u32,
    /// References the kernel holds (entries returned by lookup, create, readdirplus...), not
    /// yet given back by `forget`.
    pub lookups: u64,
    /// The object was deleted.
    pub gone: bool,
}

impl NodeState {
    /// Whether an unlinked inode must be kept: a handle is open or the kernel references it.
    pub fn in_use(&self) -> bool {
        self.open > 0 || self.lookups > 0
    }
}

/// One cached inode.
#[derive(Debug)]
pub(crate) struct Node {
    /// Inode number.
    pub ino: u64,
    /// Orders I/O on this inode (see the module doc).
    pub io: tokio::sync::RwLock<()>,
    /// Attributes and counters.
    pub state: Mutex<NodeState>,
}

/// A sharded map of cached nodes with a soft size limit.
#[derive(Debug)]
pub(crate) struct NodeCache {
    shards: Vec<Mutex<Shard>>,
    per_shard_limit: usize,
}

#[derive(Debug, Default)]
struct Shard {
    map: HashMap<u64, Arc<Node>>,
    sweep_at: usize,
}

impl NodeCache {
    /// A cache that tries to keep at most about `limit` idle nodes.
    pub fn new(limit: usize) -> Self {
        let per = (limit / SHARDS).max(16);
        NodeCache {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        map: HashMap::new(),
                        sweep_at: per,
                    })
                })
                .collect(),
            per_shard_limit: per,
        }
    }

    fn shard(&self, ino: u64) -> &Mutex<Shard> {
        &self.shards[(ino.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize % SHARDS]
    }

    /// The node of `ino`, created empty if not cached.
    pub fn get(&self, ino: u64) -> Arc<Node> {
        let mut s = self.shard(ino).lock();
        if let Some(n) = s.map.get(&ino) {
            return n.clone();
        }
        if s.map.len() >= s.sweep_at {
            // Drop idle nodes: nobody holds them, none open, nothing unwritten, no kernel
            // references. Of nodes kept only for kernel references, drop the attributes.
            s.map.retain(|_, n| {
                if Arc::strong_count(n) > 1 {
                    return true;
                }
                let mut st = n.state.lock();
                if st.open > 0 || st.dirty {
                    return true;
                }
                if st.lookups > 0 {
                    st.inode = None;
                    return true;
                }
                false
            });
            s.sweep_at = (s.map.len() * 2).max(self.per_shard_limit);
        }
        let n = Arc::new(Node {
            ino,
            io: tokio::sync::RwLock::new(()),
            state: Mutex::new(NodeState::default()),
        });
        s.map.insert(ino, n.clone());
        n
    }

    /// The node of `ino` if it is cached.
    pub fn peek(&self, ino: u64) -> Option<Arc<Node>> {
        self.shard(ino).lock().map.get(&ino).cloned()
    }

    /// Forgets `ino` (after its object was deleted).
    pub fn remove(&self, ino: u64) {
        self.shard(ino).lock().map.remove(&ino);
    }

    /// Nodes the kernel holds references to.
    pub fn referenced_nodes(&self) -> Vec<Arc<Node>> {
        let mut out = Vec::new();
        for s in &self.shards {
            let s = s.lock();
            out.extend(
                s.map
                    .values()
                    .filter(|n| n.state.lock().lookups > 0)
                    .cloned(),
            );
        }
        out
    }

    /// Nodes with unwritten attribute changes.
    pub fn dirty_nodes(&self) -> Vec<Arc<Node>> {
        let mut out = Vec::new();
        for s in &self.shards {
            let s = s.lock();
            out.extend(s.map.values().filter(|n| n.state.lock().dirty).cloned());
        }
        out
    }
}
