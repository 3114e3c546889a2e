//! The copy-on-write B+tree.
//!
//! Nodes are immutable once shared (`Arc`); a modification copies the path from the root
//! (`Arc::make_mut`) and gives each modified node a fresh slot, recording the old slot in
//! [`Frees`]: when the old content was on disk (or is being written by the syncing txg),
//! its extent is freed in the txg that made the change. A commit writes the dirty nodes
//! bottom-up (children first, so each parent carries its children's checksums) and sets
//! their slots. Readers take a clone of the root `Arc` and never see a half-applied batch.
//!
//! Deletes remove empty nodes but do not merge underfull siblings (a relaxed B+tree:
//! lookups stay `O(height)`, and the height only grows by splits of full nodes).

use super::bptr::BlockPtr;
use super::error::PoolError;
use super::io::{AllocCtx, BlockIo};
use super::node::{Body, Child, Node, internal_entry_len, leaf_entry_len};
use bytes::Bytes;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

/// Nodes are split when their encoded payload exceeds this.
pub const NODE_TARGET: usize = 16 * 1024;

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = Result<T, PoolError>> + Send + 'a>>;

/// Extents released by modifications, to be freed in the txg the change lands in.
#[derive(Debug, Default)]
pub struct Frees {
    /// Slots of replaced nodes: freed if and when they are (or were) written.
    pub slots: Vec<Arc<OnceLock<BlockPtr>>>,
    /// Extents known to be on disk (data extents).
    pub bps: Vec<BlockPtr>,
    /// Payload bytes of nodes that became dirty (for the dirty-bytes threshold).
    pub dirtied: u64,
}

impl Frees {
    /// Move everything from `other` into `self`.
    pub fn append(&mut self, other: &mut Frees) {
        self.slots.append(&mut other.slots);
        self.bps.append(&mut other.bps);
        self.dirtied += std::mem::take(&mut other.dirtied);
    }
}

fn internal(msg: &str) -> PoolError {
    PoolError::Internal(format!("tree: {msg}"))
}

/// Index of the child of an internal node that covers `key`.
fn child_index(keys: &[Bytes], key: &[u8]) -> usize {
    match keys.binary_search_by(|k| k.as_ref().cmp(key)) {
        Ok(i) => i,
        Err(0) => 0,
        Err(i) => i - 1,
    }
}

/// Copy-on-write access to a node: the old slot is recorded as freed when it may be on disk.
///
/// The copy (when the node is shared, e.g. with the root readers see) copies the entry
/// vectors only: keys and values are `Bytes`, shared with the original.
fn node_mut<'a>(arc: &'a mut Arc<Node>, frees: &mut Frees) -> &'a mut Node {
    let n = Arc::make_mut(arc);
    if n.slot.get().is_some() || Arc::strong_count(&n.slot) > 1 {
        let old = std::mem::replace(&mut n.slot, Arc::new(OnceLock::new()));
        frees.slots.push(old);
        frees.dirtied += n.bytes as u64;
    }
    n
}

fn split(node: &mut Node) -> (Bytes, Child) {
    let half = node.bytes / 2;
    let mut acc = 8;
    let mut m = node.keys.len() - 1;
    for i in 0..node.keys.len() {
        acc += match &node.body {
            Body::Leaf(v) => leaf_entry_len(&node.keys[i], &v[i]),
            Body::Internal(_) => internal_entry_len(&node.keys[i]),
        };
        if acc >= half {
            m = (i + 1).clamp(1, node.keys.len() - 1);
            break;
        }
    }
    let rkeys = node.keys.split_off(m);
    let rbody = match &mut node.body {
        Body::Leaf(v) => Body::Leaf(v.split_off(m)),
        Body::Internal(c) => Body::Internal(c.split_off(m)),
    };
    let mut right = Node {
        level: node.level,
        keys: rkeys,
        body: rbody,
        bytes: 0,
        slot: Arc::new(OnceLock::new()),
    };
    right.recompute_bytes();
    node.recompute_bytes();
    (right.keys[0].clone(), Child::Mem(Arc::new(right)))
}

/// Load a child for reading.
async fn fetch(io: &BlockIo, c: &Child, level: Option<u8>) -> Result<Arc<Node>, PoolError> {
    match c {
        Child::Disk(bp) => io.load_node(bp, level).await,
        Child::Mem(n) => Ok(n.clone()),
    }
}

/// Look a key up under `root`.
pub async fn get(io: &BlockIo, root: &Child, key: &[u8]) -> Result<Option<Bytes>, PoolError> {
    let mut node = fetch(io, root, None).await?;
    loop {
        let next = match &node.body {
            Body::Leaf(vals) => {
                return Ok(node
                    .keys
                    .binary_search_by(|k| k.as_ref().cmp(key))
                    .ok()
                    .map(|i| vals[i].clone()));
            }
            Body::Internal(ch) => {
                let i = child_index(&node.keys, key);
                fetch(io, &ch[i], Some(node.level - 1)).await?
            }
        };
        node = next;
    }
}

/// Entries with `start <= key < end` (no end bound if `None`), at most `limit`, in order.
pub async fn scan(
    io: &BlockIo,
    root: &Child,
    start: &[u8],
    end: Option<&[u8]>,
    limit: usize,
) -> Result<Vec<(Bytes, Bytes)>, PoolError> {
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    let node = fetch(io, root, None).await?;
    scan_rec(io, node, start, end, limit, &mut out).await?;
    Ok(out)
}

fn scan_rec<'a>(
    io: &'a BlockIo,
    node: Arc<Node>,
    start: &'a [u8],
    end: Option<&'a [u8]>,
    limit: usize,
    out: &'a mut Vec<(Bytes, Bytes)>,
) -> BoxFut<'a, ()> {
    Box::pin(async move {
        #[allow(clippy::needless_range_loop)]
        match &node.body {
            Body::Leaf(vals) => {
                let from = node.keys.partition_point(|k| k.as_ref() < start);
                for i in from..node.keys.len() {
                    if end.is_some_and(|e| node.keys[i].as_ref() >= e) || out.len() >= limit {
                        break;
                    }
                    out.push((node.keys[i].clone(), vals[i].clone()));
                }
            }
            Body::Internal(ch) => {
                let from = child_index(&node.keys, start);
                for i in from..ch.len() {
                    if out.len() >= limit
                        || end.is_some_and(|e| node.keys[i].as_ref() >= e && i > from)
                    {
                        break;
                    }
                    let c = fetch(io, &ch[i], Some(node.level - 1)).await?;
                    scan_rec(io, c, start, end, limit, out).await?;
                }
            }
        }
        Ok(())
    })
}

/// A mutable tree: the live (open txg) tree or a batch's working copy.
#[derive(Debug, Clone)]
pub struct Tree {
    /// The root.
    pub root: Child,
}

impl Tree {
    /// A tree with one empty leaf.
    pub fn empty() -> Self {
        Tree {
            root: Child::Mem(Arc::new(Node::empty_leaf())),
        }
    }

    /// Bring every node on the path to `key` into memory (a logical no-op).
    pub async fn load_path(&mut self, io: &BlockIo, key: &[u8]) -> Result<(), PoolError> {
        let mut cur: &mut Child = &mut self.root;
        let mut expect: Option<u8> = None;
        loop {
            if let Child::Disk(bp) = &*cur {
                let bp = *bp;
                let n = io.load_node(&bp, expect).await?;
                *cur = Child::Mem(n);
            }
            let Child::Mem(arc) = cur else {
                return Err(internal("path not loaded"));
            };
            if arc.level == 0 {
                return Ok(());
            }
            let idx = child_index(&arc.keys, key);
            expect = Some(arc.level - 1);
            let node = Arc::make_mut(arc);
            let Body::Internal(ch) = &mut node.body else {
                return Err(internal("internal node without children"));
            };
            cur = &mut ch[idx];
        }
    }

    /// Insert or replace; the path must be loaded. Returns the old value.
    pub fn insert_loaded(
        &mut self,
        key: impl Into<Bytes>,
        val: impl Into<Bytes>,
        frees: &mut Frees,
    ) -> Result<Option<Bytes>, PoolError> {
        let mut old = None;
        if let Some((sk, right)) =
            insert_rec(&mut self.root, key.into(), val.into(), frees, &mut old)?
        {
            let level = match &right {
                Child::Mem(n) => n.level + 1,
                Child::Disk(_) => return Err(internal("split produced a disk node")),
            };
            let left = std::mem::replace(&mut self.root, Child::Mem(Arc::new(Node::empty_leaf())));
            let mut root = Node {
                level,
                keys: vec![Bytes::new(), sk],
                body: Body::Internal(vec![left, right]),
                bytes: 0,
                slot: Arc::new(OnceLock::new()),
            };
            root.recompute_bytes();
            self.root = Child::Mem(Arc::new(root));
        }
        Ok(old)
    }

    /// Insert or replace.
    pub async fn insert(
        &mut self,
        io: &BlockIo,
        key: impl Into<Bytes>,
        val: impl Into<Bytes>,
        frees: &mut Frees,
    ) -> Result<Option<Bytes>, PoolError> {
        let key = key.into();
        self.load_path(io, &key).await?;
        self.insert_loaded(key, val, frees)
    }

    /// Remove a key; returns the old value (`None` and no change if absent).
    pub async fn remove(
        &mut self,
        io: &BlockIo,
        key: &[u8],
        frees: &mut Frees,
    ) -> Result<Option<Bytes>, PoolError> {
        if get(io, &self.root, key).await?.is_none() {
            return Ok(None);
        }
        self.load_path(io, key).await?;
        let (old, _) = remove_rec(&mut self.root, key, frees)?;
        // Collapse a root with a single child; an emptied root becomes an empty leaf.
        while let Child::Mem(arc) = &mut self.root {
            match &arc.body {
                Body::Internal(ch) if ch.is_empty() => {
                    self.root = Child::Mem(Arc::new(Node::empty_leaf()));
                    break;
                }
                Body::Internal(ch) if ch.len() == 1 => {
                    let only = ch[0].clone();
                    // Record the old root's extent as freed.
                    let _ = node_mut(arc, frees);
                    self.root = only;
                }
                _ => break,
            }
        }
        Ok(old)
    }
}

fn insert_rec(
    child: &mut Child,
    key: Bytes,
    val: Bytes,
    frees: &mut Frees,
    old: &mut Option<Bytes>,
) -> Result<Option<(Bytes, Child)>, PoolError> {
    let Child::Mem(arc) = child else {
        return Err(internal("insert on unloaded path"));
    };
    let node = node_mut(arc, frees);
    let Node {
        keys, body, bytes, ..
    } = &mut *node;
    match body {
        Body::Leaf(vals) => match keys.binary_search(&key) {
            Ok(i) => {
                *bytes = *bytes + val.len() - vals[i].len();
                *old = Some(std::mem::replace(&mut vals[i], val));
            }
            Err(i) => {
                *bytes += leaf_entry_len(&key, &val);
                keys.insert(i, key);
                vals.insert(i, val);
            }
        },
        Body::Internal(ch) => {
            let idx = child_index(keys, &key);
            if let Some((sk, right)) = insert_rec(&mut ch[idx], key, val, frees, old)? {
                *bytes += internal_entry_len(&sk);
                keys.insert(idx + 1, sk);
                ch.insert(idx + 1, right);
            }
        }
    }
    if node.bytes > NODE_TARGET && node.keys.len() >= 2 {
        return Ok(Some(split(node)));
    }
    Ok(None)
}

fn remove_rec(
    child: &mut Child,
    key: &[u8],
    frees: &mut Frees,
) -> Result<(Option<Bytes>, bool), PoolError> {
    let Child::Mem(arc) = child else {
        return Err(internal("remove on unloaded path"));
    };
    let node = node_mut(arc, frees);
    let Node {
        keys, body, bytes, ..
    } = &mut *node;
    let old = match body {
        Body::Leaf(vals) => match keys.binary_search_by(|k| k.as_ref().cmp(key)) {
            Ok(i) => {
                *bytes -= leaf_entry_len(&keys[i], &vals[i]);
                keys.remove(i);
                Some(vals.remove(i))
            }
            Err(_) => None,
        },
        Body::Internal(ch) => {
            let idx = child_index(keys, key);
            let (old, empty) = remove_rec(&mut ch[idx], key, frees)?;
            if empty {
                ch.remove(idx);
                let bound = keys.remove(idx);
                *bytes -= internal_entry_len(&bound);
                if idx == 0 && !keys.is_empty() {
                    *bytes = *bytes - keys[0].len() + bound.len();
                    keys[0] = bound;
                }
            }
            old
        }
    };
    let empty = node.keys.is_empty();
    Ok((old, empty))
}

/// Nodes sealed before their writes are issued together (see [`write_tree`]).
const WRITE_WINDOW: usize = 128;

/// Sealed nodes waiting to be written.
#[derive(Default)]
struct Sealed {
    nodes: Vec<(u64, Vec<u8>)>,
    /// Nodes sealed so far.
    count: usize,
}

impl Sealed {
    /// Write every sealed node, concurrently: they were allocated one after another, so
    /// the vdev's write queues merge their small column writes into few device commands.
    async fn write_out(&mut self, io: &BlockIo) -> Result<(), PoolError> {
        let nodes = std::mem::take(&mut self.nodes);
        let writes = nodes
            .iter()
            .map(|(addr, stored)| io.write_sealed(*addr, stored));
        for r in futures::future::join_all(writes).await {
            r?;
        }
        Ok(())
    }
}

/// Write every unwritten node under `child`; returns its block pointer and how many nodes
/// were written. Nodes are sealed children first (a parent carries its children's block
/// pointers, crc32c included) and written in windows of [`WRITE_WINDOW`], each window's
/// writes issued at once. The order of the writes does not matter: nothing durable
/// references them until the labels of the txg, written after every node write completed
/// and the devices were flushed.
pub async fn write_tree(
    io: &BlockIo,
    child: &Child,
    ctx: &mut AllocCtx<'_>,
) -> Result<(BlockPtr, usize), PoolError> {
    let mut sealed = Sealed::default();
    let bp = seal_rec(io, child, ctx, &mut sealed).await?;
    sealed.write_out(io).await?;
    Ok((bp, sealed.count))
}

fn seal_rec<'a>(
    io: &'a BlockIo,
    child: &'a Child,
    ctx: &'a mut AllocCtx<'_>,
    sealed: &'a mut Sealed,
) -> BoxFut<'a, BlockPtr> {
    Box::pin(async move {
        let arc = match child {
            Child::Disk(bp) => return Ok(*bp),
            Child::Mem(n) => n,
        };
        if let Some(bp) = arc.slot.get() {
            return Ok(*bp);
        }
        if let Body::Internal(ch) = &arc.body {
            for c in ch {
                seal_rec(io, c, ctx, sealed).await?;
            }
        }
        let (bp, stored) = io.seal_node(arc, ctx)?;
        if arc.slot.set(bp).is_err() {
            return Err(internal("node written twice"));
        }
        sealed.nodes.push((bp.addr, stored));
        sealed.count += 1;
        if sealed.nodes.len() >= WRITE_WINDOW {
            sealed.write_out(io).await?;
        }
        Ok(bp)
    })
}

/// After a commit is durable: turn written in-memory nodes back into disk references (their
/// content goes to the clean cache), so memory holds only dirty nodes.
pub fn demote(io: &BlockIo, child: &mut Child) {
    let Child::Mem(arc) = child else { return };
    if let Some(bp) = arc.slot.get().copied() {
        let clean = match &arc.body {
            Body::Internal(ch) if ch.iter().any(|c| matches!(c, Child::Mem(_))) => {
                let mut n = (**arc).clone();
                if let Body::Internal(ch) = &mut n.body {
                    for c in ch.iter_mut() {
                        if let Some(cbp) = c.clean_bp() {
                            *c = Child::Disk(cbp);
                        }
                    }
                }
                Arc::new(n)
            }
            _ => arc.clone(),
        };
        io.cache.put(&bp, clean);
        *child = Child::Disk(bp);
        return;
    }
    if matches!(arc.body, Body::Internal(_)) {
        let node = Arc::make_mut(arc);
        if let Body::Internal(ch) = &mut node.body {
            for c in ch.iter_mut() {
                demote(io, c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Codec;
    use crate::compress::Compression;
    use crate::engine::alloc::Allocator;
    use crate::engine::cache::NodeCache;
    use crate::engine::io::IoStats;
    use crate::raid::{Layout, Vdev};
    use ingot_hal::blockdev::{BlockDevice, MemBlockDevice};
    use parking_lot::Mutex;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn io() -> BlockIo {
        let dev: Arc<dyn BlockDevice> = Arc::new(MemBlockDevice::new("t", 4096, 8192));
        BlockIo {
            vdev: Vdev::new(Layout::Stripe, vec![Some(dev)], 0, 8192 * 4096).unwrap(),
            codec: Codec::new(Compression::Zstd { level: 1 }, None),
            // Tiny cache: nodes are re-read from disk all the time.
            cache: NodeCache::new(20_000),
            unlocked: true,
            repair: false,
            stats: IoStats::default(),
        }
    }

    #[derive(Debug, Clone)]
    enum TOp {
        Put(u16, usize),
        Del(u16),
        Commit,
    }

    fn top() -> impl Strategy<Value = TOp> {
        prop_oneof![
            6 => (0u16..400, 0usize..3000).prop_map(|(k, l)| TOp::Put(k, l)),
            3 => (0u16..400).prop_map(TOp::Del),
            1 => Just(TOp::Commit),
        ]
    }

    fn key(k: u16) -> Vec<u8> {
        format!("key-{k:05}").into_bytes()
    }

    fn owned(v: Vec<(Bytes, Bytes)>) -> Vec<(Vec<u8>, Vec<u8>)> {
        v.into_iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect()
    }

    async fn check(io: &BlockIo, t: &Tree, model: &BTreeMap<Vec<u8>, Vec<u8>>) {
        let all = scan(io, &t.root, &[], None, usize::MAX).await.unwrap();
        let want: Vec<_> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        assert_eq!(owned(all), want);
        for (k, v) in model.iter().take(20) {
            assert_eq!(
                get(io, &t.root, k)
                    .await
                    .unwrap()
                    .map(|b| b.to_vec())
                    .as_ref(),
                Some(v)
            );
        }
        // A bounded scan from the middle.
        if let Some((mid, _)) = model.iter().nth(model.len() / 2) {
            let part = scan(io, &t.root, mid, None, 5).await.unwrap();
            let want: Vec<_> = model
                .range(mid.clone()..)
                .take(5)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            assert_eq!(owned(part), want);
        }
    }

    proptest! {
        #![proptest_config(crate::testutil::proptest_config(24))]
        #[test]
        fn tree_matches_btreemap(ops in proptest::collection::vec(top(), 1..400)) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            rt.block_on(async {
                let io = io();
                let alloc = Mutex::new(Allocator::new(io.vdev.capacity_sectors()));
                let mut t = Tree::empty();
                let mut model = BTreeMap::new();
                let mut txg = 1;
                let mut frees = Frees::default();
                for op in ops {
                    match op {
                        TOp::Put(k, l) => {
                            let v = vec![(k % 251) as u8; l];
                            let old = t.insert(&io, key(k), v.clone(), &mut frees).await.unwrap();
                            assert_eq!(old.map(|b| b.to_vec()), model.insert(key(k), v));
                        }
                        TOp::Del(k) => {
                            let old = t.remove(&io, &key(k), &mut frees).await.unwrap();
                            assert_eq!(old.map(|b| b.to_vec()), model.remove(&key(k)));
                        }
                        TOp::Commit => {
                            let mut ctx = AllocCtx::new(&alloc, txg, true);
                            let (bp, _) = write_tree(&io, &t.root, &mut ctx).await.unwrap();
                            alloc.lock().finish(txg).unwrap();
                            txg += 1;
                            demote(&io, &mut t.root);
                            // The root is now on disk, and a fresh tree over it agrees.
                            let reopened = Tree { root: Child::Disk(bp) };
                            check(&io, &reopened, &model).await;
                        }
                    }
                }
                check(&io, &t, &model).await;
            });
        }
    }
}
