//! The [`ObjectStore`] implementation: op batches applied to a working copy of the tree,
//! atomically swapped into the open txg on success.
//!
//! Object data is cut into records of `record_size` logical bytes (record `i` covers
//! `[i * rs, (i + 1) * rs)`); each record is one extent. A write of whole records encodes
//! and writes them (before the writer lock, see [`Inner::prewrite`]). A write of part of
//! a record, a punch or a truncate inside one, changes a dirty copy of the record in
//! memory ([`super::dirty`]) that is encoded and written once, when the txg commits or
//! when the record has been written entirely (copy-on-write: a new extent; the old one is
//! freed in the txg of the change). A record that becomes all zeroes is dropped (a hole).
//! Reads take the dirty copy when there is one, else the decoded-record cache, else the
//! extent.

use super::bptr::{BlockKind, BlockPtr};
use super::bytes::Reader;
use super::datapath::DataPath;
use super::dirty::{DirtyRecord, RecKey, Staged};
use super::error::PoolError;
use super::io::{AllocCtx, BlockIo};
use super::keys::{self, KIND_EXTENT, KIND_KV};
use super::node::Child;
use super::pool::{Counters, Inner, OpenTxg, Pool};
use super::tree::{self, Frees, Tree};
use super::writebehind::{Detached, Early, EarlyWrite};
use crate::store::{
    MAX_ATTR_LEN, MAX_KEY_LEN, MAX_VALUE_LEN, ObjectId, ObjectStore, Op, StoreError, StoreStats,
};
use async_trait::async_trait;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Largest object offset + length accepted.
pub const MAX_OBJECT_BYTES: u64 = 1 << 60;
/// Approximate metadata bytes one op dirties (for the dirty-bytes threshold).
const OP_META_BYTES: u64 = 512;
/// Dirty records a commit encodes and writes concurrently.
const FLUSH_WINDOW: usize = 16;
/// Full records one batch encodes and writes concurrently before the writer lock.
const PREWRITE_WINDOW: usize = 16;

/// The object record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Inode {
    size: u64,
    attr: Option<Vec<u8>>,
}

impl Inode {
    fn encode(&self) -> Vec<u8> {
        let mut v = self.size.to_le_bytes().to_vec();
        match &self.attr {
            Some(a) => {
                v.push(1);
                v.extend_from_slice(&(a.len() as u16).to_le_bytes());
                v.extend_from_slice(a);
            }
            None => v.push(0),
        }
        v
    }
    fn decode(b: &[u8]) -> Result<Self, PoolError> {
        let mut r = Reader::new(b, "object record");
        let size = r.u64()?;
        let attr = match r.u8()? {
            0 => None,
            _ => {
                let n = r.u16()? as usize;
                Some(r.take(n)?.to_vec())
            }
        };
        Ok(Inode { size, attr })
    }
}

fn invalid(what: impl Into<String>) -> StoreError {
    StoreError::Invalid { what: what.into() }
}

/// A batch being applied.
struct Batch<'a> {
    io: &'a BlockIo,
    tree: Tree,
    frees: Frees,
    ctx: AllocCtx<'a>,
    rs: u64,
    counters: Counters,
    dirty: u64,
    /// Full records written before the lock, by (op index, record); `None` = all zero.
    pre: HashMap<(usize, u64), Option<BlockPtr>>,
    /// Index of the op being applied.
    op_index: usize,
    /// Dirty records and record cache.
    dp: &'a DataPath,
    /// The batch's changes to the dirty records.
    staged: Staged,
    /// Whether the batch may dip into the reserve (it frees space).
    freeing: bool,
    /// Sectors a full record allocates (the space a dirty record may need at commit).
    record_asize: u64,
    /// Record-cache entries this batch added (for extents it allocated): dropped again if
    /// the batch fails, since its allocations go back and may be reused in the same txg.
    cached: Vec<(u64, u64)>,
    /// Whether records written whole are left dirty for write-behind
    /// ([`super::writebehind`]) rather than written inside the batch.
    write_behind: bool,
    /// Records this batch left whole for write-behind, in order (may repeat).
    early_keys: Vec<RecKey>,
}

impl Batch<'_> {
    async fn inode(&self, id: ObjectId) -> Result<Option<Inode>, StoreError> {
        match tree::get(self.io, &self.tree.root, &keys::inode(id)).await? {
            Some(v) => Ok(Some(Inode::decode(&v)?)),
            None => Ok(None),
        }
    }

    async fn must_inode(&self, id: ObjectId) -> Result<Inode, StoreError> {
        self.inode(id).await?.ok_or(StoreError::NotFound { id })
    }

    async fn put_inode(&mut self, id: ObjectId, ino: &Inode) -> Result<(), StoreError> {
        self.tree
            .insert(self.io, keys::inode(id), ino.encode(), &mut self.frees)
            .await?;
        Ok(())
    }

    fn free_data(&mut self, bp: BlockPtr) {
        self.dp.cache.remove(bp.addr, bp.birth);
        self.counters.lbytes = self.counters.lbytes.saturating_sub(u64::from(bp.lsize));
        self.counters.pbytes = self
            .counters
            .pbytes
            .saturating_sub(bp.data_sectors() * 4096);
        self.frees.bps.push(bp);
    }

    /// The extent of record `rec` in the batch's tree (`None`: a hole).
    async fn record_bp(&self, id: ObjectId, rec: u64) -> Result<Option<BlockPtr>, StoreError> {
        match tree::get(self.io, &self.tree.root, &keys::extent(id, rec)).await? {
            Some(v) => Ok(Some(BlockPtr::from_bytes(&v)?)),
            None => Ok(None),
        }
    }

    /// The decoded bytes of extent `bp` of record `rec` (through the record cache).
    async fn decoded(&self, id: ObjectId, rec: u64, bp: &BlockPtr) -> Result<Bytes, StoreError> {
        self.dp
            .record(self.io, bp)
            .await
            .map_err(|e| StoreError::Corrupt {
                id,
                offset: rec * self.rs,
                detail: e.to_string(),
            })
    }

    /// Whether record `rec` of `id` is dirty as this batch sees it.
    fn is_dirty(&self, id: ObjectId, rec: u64) -> bool {
        self.staged.contains(&self.dp.view.read(), &(id, rec))
    }

    /// Make record `rec` dirty unless it is already; false (nothing done) if it is a
    /// clean hole and `create_holes` is false. Its extent is read once (verified, decoded
    /// and cached), so an unreadable record fails here, not at commit.
    async fn ensure_dirty(
        &mut self,
        id: ObjectId,
        rec: u64,
        create_holes: bool,
    ) -> Result<bool, StoreError> {
        if self.is_dirty(id, rec) {
            return Ok(true);
        }
        let base = self.record_bp(id, rec).await?;
        match &base {
            None if !create_holes => return Ok(false),
            None => {}
            Some(bp) => {
                self.decoded(id, rec, bp).await?;
            }
        }
        self.check_dirty_space()?;
        self.staged
            .insert((id, rec), DirtyRecord::new(self.rs as usize, base));
        Ok(true)
    }

    /// Fail with `NoSpace` unless there is room for one more dirty record: a dirty record
    /// is written at commit, so keep enough space for it (and for every other dirty
    /// record) that the commit never runs out. Sectors held by early writes count: the
    /// commit uses each for its record or gives it back before sealing anything.
    fn check_dirty_space(&self) -> Result<(), StoreError> {
        if self.freeing {
            return Ok(());
        }
        let dirty = {
            let v = self.dp.view.read();
            v.len() as u64 + self.staged.new_records(&v) + 1
        };
        let held = self.dp.write_behind.held_sectors.load(Ordering::Acquire);
        if self.ctx.available().saturating_add(held) < dirty.saturating_mul(self.record_asize) {
            return Err(StoreError::NoSpace);
        }
        Ok(())
    }

    /// Write-behind of a whole record: it becomes a dirty record holding `src` (no copy),
    /// written by a background task once the batch is published ([`super::writebehind`]).
    /// `own`: `src` is its write's whole buffer (see [`DirtyRecord::whole`]).
    fn write_whole(
        &mut self,
        id: ObjectId,
        rec: u64,
        src: Bytes,
        own: bool,
    ) -> Result<(), StoreError> {
        if !self.is_dirty(id, rec) {
            self.check_dirty_space()?;
        }
        self.staged.insert((id, rec), DirtyRecord::whole(src, own));
        self.early_keys.push((id, rec));
        Ok(())
    }

    /// The base bytes a change of `[off, off + len)` of dirty record `rec` needs, if any.
    async fn base_for(
        &self,
        id: ObjectId,
        rec: u64,
        off: usize,
        len: usize,
    ) -> Result<Option<Bytes>, StoreError> {
        let bp = {
            let v = self.dp.view.read();
            match self.staged.get(&v, &(id, rec)) {
                Some(r) if r.needs_base_for(off, len) => r.base().copied(),
                _ => None,
            }
        };
        match bp {
            Some(bp) => Ok(Some(self.decoded(id, rec, &bp).await?)),
            None => Ok(None),
        }
    }

    /// Write `src` at byte `in_off` of record `rec` through its dirty copy; a record
    /// written entirely is encoded at once.
    async fn write_partial(
        &mut self,
        id: ObjectId,
        rec: u64,
        in_off: usize,
        src: &[u8],
    ) -> Result<(), StoreError> {
        self.ensure_dirty(id, rec, true).await?;
        let base = self.base_for(id, rec, in_off, src.len()).await?;
        let full = {
            let v = self.dp.view.read();
            let r = self
                .staged
                .get_mut(&v, (id, rec))
                .ok_or_else(|| StoreError::Io {
                    detail: format!("dirty record {rec} of object {id} vanished"),
                })?;
            r.write(in_off, src, base.as_deref());
            match r.fully_written() {
                // Write-behind takes the record's contents in its task.
                true if self.write_behind => Some(Vec::new()),
                true => Some(r.contents(None)),
                false => None,
            }
        };
        if let Some(data) = full {
            if self.write_behind {
                // Written in the background once the batch is published.
                self.early_keys.push((id, rec));
            } else {
                self.set_record_cached(id, rec, data).await?;
            }
            self.dp.flushed_when_full.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Zero `[a, b)` of record `rec` through its dirty copy (nothing to do in a hole).
    async fn zero_partial(
        &mut self,
        id: ObjectId,
        rec: u64,
        a: usize,
        b: usize,
    ) -> Result<(), StoreError> {
        if !self.ensure_dirty(id, rec, false).await? {
            return Ok(());
        }
        let base = self.base_for(id, rec, a, b - a).await?;
        let v = self.dp.view.read();
        if let Some(r) = self.staged.get_mut(&v, (id, rec)) {
            r.zero(a, b - a, base.as_deref());
        }
        Ok(())
    }

    /// [`Batch::set_record`] of a dirty record's final contents (trailing zeroes trimmed),
    /// which also go into the record cache for the next change or read of the record.
    async fn set_record_cached(
        &mut self,
        id: ObjectId,
        rec: u64,
        data: Vec<u8>,
    ) -> Result<(), StoreError> {
        self.set_record(id, rec, &data).await?;
        Ok(())
    }

    /// Put the decoded contents of extent `bp`, just written by this batch, into the record
    /// cache (dropped again by [`Batch::undo`] if the batch fails): reads and sub-record
    /// writes of recently written data are then served from memory.
    /// Copies `data` only when it fits; [`Batch::cache_owned`] when the caller owns it.
    fn cache_written(&mut self, bp: &BlockPtr, data: &[u8]) {
        if self.dp.cache.fits(data.len()) {
            self.cache_owned(bp, Bytes::copy_from_slice(data));
        }
    }

    /// The batch failed: give its allocations back and drop what it cached for them.
    fn undo(&mut self) {
        for (addr, birth) in self.cached.drain(..) {
            self.dp.cache.remove(addr, birth);
        }
        self.ctx.undo();
    }

    /// Store `data` as record `rec` (all-zero data removes it); a dirty copy is dropped.
    /// Returns the new extent, if any.
    async fn set_record(
        &mut self,
        id: ObjectId,
        rec: u64,
        data: &[u8],
    ) -> Result<Option<BlockPtr>, StoreError> {
        if self.is_dirty(id, rec) {
            self.staged.remove((id, rec));
        }
        let key = keys::extent(id, rec);
        let trimmed = super::dirty::trimmed_len(data);
        let mut new = None;
        let old = if trimmed == 0 {
            self.tree.remove(self.io, &key, &mut self.frees).await?
        } else {
            let bp = self
                .io
                .write_data(&data[..trimmed], BlockKind::Data, &mut self.ctx)
                .await?;
            self.dirty += bp.data_sectors() * 4096;
            self.counters.lbytes += u64::from(bp.lsize);
            self.counters.pbytes += bp.data_sectors() * 4096;
            new = Some(bp);
            self.cache_written(&bp, &data[..trimmed]);
            self.tree
                .insert(self.io, key, bp.to_bytes(), &mut self.frees)
                .await?
        };
        if let Some(v) = old {
            let bp = BlockPtr::from_bytes(&v)?;
            self.free_data(bp);
        }
        Ok(new)
    }

    /// Store record `rec` from a record written before the lock (`None`: all zero);
    /// returns the extent as stored (with its birth txg). This does not fill the record
    /// cache: for streaming whole-record writes the copy (a fresh 128 KiB allocation per
    /// record, under the writer lock) cost sequential writes 60% of their throughput, and a
    /// read fills it on a miss. A commit's flush hands its owned record over instead
    /// ([`Batch::cache_owned`]).
    async fn set_record_pre(
        &mut self,
        id: ObjectId,
        rec: u64,
        pre: Option<BlockPtr>,
    ) -> Result<Option<BlockPtr>, StoreError> {
        if self.is_dirty(id, rec) {
            self.staged.remove((id, rec));
        }
        let key = keys::extent(id, rec);
        let mut stored = None;
        let old = match pre {
            None => self.tree.remove(self.io, &key, &mut self.frees).await?,
            Some(mut bp) => {
                self.ctx.attach(bp.addr, u64::from(bp.asize));
                bp.birth = self.ctx.txg();
                self.dirty += bp.data_sectors() * 4096;
                self.counters.lbytes += u64::from(bp.lsize);
                self.counters.pbytes += bp.data_sectors() * 4096;
                stored = Some(bp);
                self.tree
                    .insert(self.io, key, bp.to_bytes(), &mut self.frees)
                    .await?
            }
        };
        if let Some(v) = old {
            let bp = BlockPtr::from_bytes(&v)?;
            self.free_data(bp);
        }
        Ok(stored)
    }

    /// Put `data`, the decoded contents of extent `bp` just stored by this batch, into the
    /// record cache without copying it (dropped again by [`Batch::undo`] if the batch fails).
    /// `data` keeps no more than its length alive (a buffer of its own).
    fn cache_owned(&mut self, bp: &BlockPtr, data: Bytes) {
        let pinned = data.len();
        self.cache_pinning(bp, data, pinned);
    }

    /// [`Batch::cache_owned`] of `data`, a slice of a buffer of `pinned` bytes that holds
    /// no other record: charged `pinned` bytes.
    fn cache_pinning(&mut self, bp: &BlockPtr, mut data: Bytes, pinned: usize) {
        data.truncate(bp.lsize as usize);
        let pinned = pinned.max(data.len());
        if self.dp.cache.fits(pinned) {
            self.dp
                .cache
                .put_written_pinning(bp.addr, bp.birth, data, pinned);
            self.cached.push((bp.addr, bp.birth));
        }
    }

    /// Remove every extent of `id` with record index in `[from, to)`.
    async fn drop_records(
        &mut self,
        id: ObjectId,
        from: u64,
        to: Option<u64>,
    ) -> Result<(), StoreError> {
        {
            let v = self.dp.view.read();
            self.staged.remove_range(&v, id, from, to);
        }
        let end = match to {
            Some(t) => keys::extent(id, t),
            None => keys::kind_end(id, KIND_EXTENT),
        };
        loop {
            let batch = tree::scan(
                self.io,
                &self.tree.root,
                &keys::extent(id, from),
                Some(&end),
                256,
            )
            .await?;
            if batch.is_empty() {
                return Ok(());
            }
            for (k, _) in batch {
                if let Some(v) = self.tree.remove(self.io, &k, &mut self.frees).await? {
                    self.free_data(BlockPtr::from_bytes(&v)?);
                }
            }
        }
    }

    /// Zero `[off, end)` of the object (size unchanged).
    async fn zero_range(&mut self, id: ObjectId, off: u64, end: u64) -> Result<(), StoreError> {
        if off >= end {
            return Ok(());
        }
        let rs = self.rs;
        let first_full = off.div_ceil(rs);
        let last_full = end / rs; // exclusive
        // Partial head and tail records.
        let mut partial = Vec::new();
        if !off.is_multiple_of(rs) {
            partial.push(off / rs);
        }
        if !end.is_multiple_of(rs) && (partial.first() != Some(&(end / rs))) {
            partial.push(end / rs);
        }
        for rec in partial {
            let rstart = rec * rs;
            let a = off.max(rstart) - rstart;
            let b = end.min(rstart + rs) - rstart;
            if a < b {
                self.zero_partial(id, rec, a as usize, b as usize).await?;
            }
        }
        if first_full < last_full {
            self.drop_records(id, first_full, Some(last_full)).await?;
        }
        Ok(())
    }

    async fn apply_op(&mut self, op: Op) -> Result<(), StoreError> {
        self.dirty += OP_META_BYTES;
        match op {
            Op::Create { id } => {
                if id == keys::META_OID {
                    return Err(invalid("object id 0 is reserved"));
                }
                if self.inode(id).await?.is_some() {
                    return Err(StoreError::Exists { id });
                }
                self.put_inode(id, &Inode::default()).await?;
                self.counters.objects += 1;
            }
            Op::Delete { id } => {
                self.must_inode(id).await?;
                {
                    let v = self.dp.view.read();
                    self.staged.remove_range(&v, id, 0, None);
                }
                let start = keys::object_start(id);
                let end = keys::object_end(id);
                loop {
                    let chunk =
                        tree::scan(self.io, &self.tree.root, &start, end.as_deref(), 256).await?;
                    if chunk.is_empty() {
                        break;
                    }
                    for (k, _) in chunk {
                        if let Some(v) = self.tree.remove(self.io, &k, &mut self.frees).await?
                            && let Some(bp) = keys::extent_bp(&k, &v)
                        {
                            self.free_data(bp);
                        }
                    }
                }
                self.counters.objects = self.counters.objects.saturating_sub(1);
            }
            Op::Write { id, offset, data } => {
                let mut ino = self.must_inode(id).await?;
                let end = offset
                    .checked_add(data.len() as u64)
                    .filter(|e| *e <= MAX_OBJECT_BYTES)
                    .ok_or_else(|| {
                        invalid(format!("write at {offset} + {} too far", data.len()))
                    })?;
                let rs = self.rs;
                let mut pos = offset;
                while pos < end {
                    let rec = pos / rs;
                    let rstart = rec * rs;
                    let n = (rstart + rs).min(end) - pos;
                    let src = &data[(pos - offset) as usize..(pos - offset + n) as usize];
                    let in_off = (pos - rstart) as usize;
                    if in_off == 0 && n == rs && self.write_behind {
                        let a = (pos - offset) as usize;
                        // A write of exactly this record: its buffer holds nothing else.
                        let own = data.len() as u64 == n;
                        self.write_whole(id, rec, data.slice(a..a + n as usize), own)?;
                    } else if in_off == 0 && n == rs {
                        match self.pre.remove(&(self.op_index, rec)) {
                            Some(p) => {
                                self.set_record_pre(id, rec, p).await?;
                            }
                            None => {
                                self.set_record(id, rec, src).await?;
                            }
                        }
                    } else {
                        self.write_partial(id, rec, in_off, src).await?;
                    }
                    pos += n;
                }
                if end > ino.size {
                    ino.size = end;
                    self.put_inode(id, &ino).await?;
                }
            }
            Op::Truncate { id, size } => {
                let mut ino = self.must_inode(id).await?;
                if size > MAX_OBJECT_BYTES {
                    return Err(invalid(format!("size {size} too large")));
                }
                if size < ino.size {
                    self.zero_range(id, size, ino.size).await?;
                    // Also drop anything recorded past the old size (never expected).
                    self.drop_records(id, size.div_ceil(self.rs), None).await?;
                }
                if size != ino.size {
                    ino.size = size;
                    self.put_inode(id, &ino).await?;
                }
            }
            Op::PunchHole { id, offset, len } => {
                let ino = self.must_inode(id).await?;
                let end = offset.saturating_add(len).min(ino.size);
                self.zero_range(id, offset, end).await?;
            }
            Op::SetAttr { id, attr } => {
                if attr.len() > MAX_ATTR_LEN {
                    return Err(invalid(format!(
                        "attribute of {} bytes > {MAX_ATTR_LEN}",
                        attr.len()
                    )));
                }
                let mut ino = self.must_inode(id).await?;
                ino.attr = Some(attr.to_vec());
                self.put_inode(id, &ino).await?;
            }
            Op::KvPut { id, key, value } => {
                if key.len() > MAX_KEY_LEN || value.len() > MAX_VALUE_LEN {
                    return Err(invalid(format!(
                        "record key {} / value {} bytes exceed {MAX_KEY_LEN} / {MAX_VALUE_LEN}",
                        key.len(),
                        value.len()
                    )));
                }
                self.must_inode(id).await?;
                self.dirty += (key.len() + value.len()) as u64;
                self.tree
                    .insert(self.io, keys::kv(id, &key), value, &mut self.frees)
                    .await?;
            }
            Op::KvDelete { id, key } => {
                if key.len() > MAX_KEY_LEN {
                    return Err(invalid("record key too long"));
                }
                self.must_inode(id).await?;
                self.tree
                    .remove(self.io, &keys::kv(id, &key), &mut self.frees)
                    .await?;
            }
        }
        Ok(())
    }
}

/// Registers a reader of the tree as of an open txg (see [`Inner::reader_root`]).
pub(crate) struct ReadGuard<'a> {
    inner: &'a Inner,
    txg: u64,
}

impl Drop for ReadGuard<'_> {
    fn drop(&mut self) {
        let mut r = self.inner.readers.lock();
        if let Some(n) = r.get_mut(&self.txg) {
            *n -= 1;
            if *n == 0 {
                r.remove(&self.txg);
            }
        }
    }
}

/// A buffer made for one record, as `Bytes`, with the memory it keeps alive (its capacity).
fn fresh(v: Vec<u8>) -> (Bytes, usize) {
    let cap = v.capacity();
    (Bytes::from(v), cap)
}

/// [`fresh`] as [`Inner::early_write`] records it: the buffer pins only itself.
fn own((data, cap): (Bytes, usize)) -> (Bytes, Option<usize>) {
    (data, Some(cap))
}

/// Records the writes of `ops` cover whole (record size `rs`).
fn whole_records(ops: &[Op], rs: u64) -> usize {
    ops.iter()
        .map(|op| match op {
            Op::Write { offset, data, .. } => offset
                .checked_add(data.len() as u64)
                .map_or(0, |end| (end / rs).saturating_sub(offset.div_ceil(rs))),
            _ => 0,
        })
        .sum::<u64>() as usize
}

fn consumes_space(op: &Op) -> bool {
    matches!(
        op,
        Op::Create { .. } | Op::Write { .. } | Op::SetAttr { .. } | Op::KvPut { .. }
    )
}

/// Whether the batch's net effect is to give space back: it adds no data (no `Write`, no
/// `Create`) and removes something (a `Delete`, `Truncate` or `PunchHole`, or at least as
/// many `KvDelete`s as `KvPut`s). Such a batch (unlink, rmdir, truncate down, punch hole,
/// with their attribute and orphan-list bookkeeping) may use the reserve, so deletes always
/// proceed on a full pool; it is never refused for lack of space.
fn frees_space(ops: &[Op]) -> bool {
    let (mut puts, mut dels, mut drops) = (0usize, 0usize, false);
    for op in ops {
        match op {
            Op::Write { .. } | Op::Create { .. } => return false,
            Op::Delete { .. } | Op::Truncate { .. } | Op::PunchHole { .. } => drops = true,
            Op::KvPut { .. } => puts += 1,
            Op::KvDelete { .. } => dels += 1,
            Op::SetAttr { .. } => {}
        }
    }
    drops || (dels > 0 && dels >= puts)
}

/// Records a commit's prologue ([`Inner::pre_flush`]) seals and writes at once.
const PRE_FLUSH_TASKS: usize = 16;

impl Inner {
    /// A batch over the open txg `o`'s tree: `freeing` lets it use the reserve, `pre` holds
    /// the extents written before the writer lock, `write_behind` whether it leaves whole
    /// records to early writes.
    fn batch(
        &self,
        o: &OpenTxg,
        freeing: bool,
        pre: HashMap<(usize, u64), Option<BlockPtr>>,
        write_behind: bool,
    ) -> Batch<'_> {
        Batch {
            io: &self.io,
            tree: o.tree.clone(),
            frees: Frees::default(),
            ctx: AllocCtx::new(&self.alloc, o.txg, freeing),
            rs: u64::from(self.id.record_size),
            counters: o.counters,
            dirty: 0,
            pre,
            op_index: 0,
            dp: &self.datapath,
            staged: Staged::default(),
            freeing,
            record_asize: self.io.vdev.asize(u64::from(self.id.record_size) / 4096),
            cached: Vec::new(),
            write_behind,
            early_keys: Vec::new(),
        }
    }

    /// Commit hook (freeze step): encode and write every dirty record of the open txg into
    /// its tree, under the open txg's lock, and publish the result to readers. Allocates
    /// from the reserve: space for dirty records was checked when they became dirty.
    pub(crate) async fn flush_dirty(&self, o: &mut OpenTxg) -> Result<(), PoolError> {
        let r = self.flush_dirty_frozen(o).await;
        self.datapath.write_behind.thaw();
        r
    }

    /// [`Inner::flush_dirty`] with early writes frozen from the start.
    async fn flush_dirty_frozen(&self, o: &mut OpenTxg) -> Result<(), PoolError> {
        let pending = self.datapath.write_behind.freeze();
        let recs = self.datapath.view.read().all();
        let mut early = self.collect_early(pending, &recs).await;
        if recs.is_empty() {
            return Ok(());
        }
        let mut b = self.batch(o, true, HashMap::new(), false);
        let n = recs.len();
        for window in recs.chunks(FLUSH_WINDOW) {
            if let Err((id, rec, e)) = self.flush_window(&mut b, window, &mut early).await {
                b.undo();
                return Err(match e {
                    StoreError::NoSpace => PoolError::NoSpace,
                    other => PoolError::Internal(format!(
                        "writing dirty record {rec} of object {id} at commit: {other}"
                    )),
                });
            }
        }
        o.tree = b.tree;
        o.frees.append(&mut b.frees);
        o.counters = b.counters;
        self.lbytes.store(b.counters.lbytes, Ordering::Relaxed);
        self.pbytes.store(b.counters.pbytes, Ordering::Relaxed);
        {
            let mut v = self.datapath.view.write();
            v.clear();
            *self.readable.write() = (o.tree.root.clone(), o.txg);
        }
        self.datapath
            .flushed_at_commit
            .fetch_add(n as u64, Ordering::Relaxed);
        tracing::trace!(pool = %self.id.name, txg = o.txg, records = n, "dirty records written");
        Ok(())
    }

    /// Encode and write one window of dirty records at commit: the records' extents are
    /// compressed, encrypted and written concurrently (so the device round trips of one
    /// overlap the encoding of the next), then put into the tree in order. A record that
    /// finds no space outside the reserve is written through the batch (which may use it).
    async fn flush_window(
        &self,
        b: &mut Batch<'_>,
        window: &[(RecKey, Arc<DirtyRecord>)],
        early: &mut HashMap<RecKey, Early>,
    ) -> Result<(), (ObjectId, u64, StoreError)> {
        let mut rest = Vec::with_capacity(window.len());
        for entry in window {
            let (id, rec) = entry.0;
            let Some(e) = early.remove(&entry.0) else {
                rest.push(entry);
                continue;
            };
            // Written early and unchanged since: link its extent.
            let stored = b
                .set_record_pre(id, rec, e.extent.map(Detached::take))
                .await
                .map_err(|err| (id, rec, err))?;
            if let (Some(bp), Some((d, pinned))) = (stored, e.decoded) {
                b.cache_pinning(&bp, d, pinned);
            }
            self.datapath
                .write_behind
                .linked
                .fetch_add(1, Ordering::Relaxed);
        }
        let mut datas = Vec::with_capacity(rest.len());
        for ((id, rec), r) in rest {
            let data = match r.base() {
                Some(bp) if r.uses_base() => match b.decoded(*id, *rec, bp).await {
                    Ok(base) => r.contents(Some(&base)),
                    Err(e) => return Err((*id, *rec, e)),
                },
                _ => r.contents(None),
            };
            datas.push((*id, *rec, data));
        }
        let datas: Vec<(ObjectId, u64, Bytes, usize)> = datas
            .into_iter()
            .map(|(id, rec, d)| {
                let (d, cap) = fresh(d);
                (id, rec, d, cap)
            })
            .collect();
        let writes = datas.iter().map(|(_, _, d, _)| async move {
            // `contents` has no trailing zeroes: empty means all zero (a hole).
            if d.is_empty() {
                Ok(None)
            } else {
                self.seal_detached(d.clone()).await.map(Some)
            }
        });
        let written = futures::future::join_all(writes).await;
        let mut failed = None;
        for ((id, rec, data, cap), w) in datas.into_iter().zip(written) {
            let r = match w {
                _ if failed.is_some() => {
                    if let Ok(Some(bp)) = w {
                        self.give_back_one(&bp);
                    }
                    continue;
                }
                Ok(pre) => b.set_record_pre(id, rec, pre).await.map(|stored| {
                    if let Some(bp) = stored {
                        b.cache_pinning(&bp, data, cap);
                    }
                }),
                Err(PoolError::NoSpace) => b.set_record(id, rec, &data).await.map(|_| ()),
                Err(e) => Err(e.into()),
            };
            if let Err(e) = r {
                failed = Some((id, rec, e));
            }
        }
        match failed {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }

    /// Wait for the early writes `pending` and keep those whose record is, in `recs` (the
    /// dirty records being flushed), still the version they wrote; the others are given
    /// back (no tree ever referenced them).
    async fn collect_early(
        &self,
        pending: Vec<EarlyWrite>,
        recs: &[(RecKey, Arc<DirtyRecord>)],
    ) -> HashMap<RecKey, Early> {
        let mut out = HashMap::new();
        if pending.is_empty() {
            return out;
        }
        let current: HashMap<RecKey, &Arc<DirtyRecord>> =
            recs.iter().map(|(k, r)| (*k, r)).collect();
        let done = futures::future::join_all(
            pending
                .into_iter()
                .map(|w| async move { (w.key, w.rec, w.task.await) }),
        )
        .await;
        let wb = &self.datapath.write_behind;
        for (key, rec, r) in done {
            match r {
                Ok(Some(e)) if current.get(&key).is_some_and(|c| Arc::ptr_eq(c, &rec)) => {
                    // A later early write of the same version cannot exist (one per
                    // publish), but keep the first if it did.
                    out.entry(key).or_insert(e);
                }
                Ok(_) => {
                    wb.wasted.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::error!(error = %e, "an early write task failed");
                    wb.wasted.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        out
    }

    /// Start the early writes of the records a batch left for write-behind (`keys`, in
    /// the view `v` it just published), one slot each; a record beyond the slots taken
    /// gets a free slot if there is one, else the commit writes it. Called under the open
    /// txg's lock, so the next flush sees every early write of the records it flushes.
    fn start_early_writes(
        &self,
        v: &super::dirty::DirtyView,
        keys: Vec<RecKey>,
        mut slots: Vec<tokio::sync::OwnedSemaphorePermit>,
    ) {
        let wb = &self.datapath.write_behind;
        let (Some(inner), Ok(rt)) = (self.me.upgrade(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let mut seen = std::collections::HashSet::new();
        for key in keys {
            if !seen.insert(key) {
                continue;
            }
            // Gone (dropped later in the batch) or needing its base again: the commit.
            let Some(rec) = v.get(&key).filter(|r| !r.uses_base()) else {
                continue;
            };
            let Some(slot) = slots.pop().or_else(|| wb.try_slot()) else {
                continue;
            };
            inner.spawn_early_write(&rt, key, rec.clone(), slot);
        }
    }

    /// Spawn the early write of dirty record `key` at version `rec` on `rt`, holding
    /// `permit` (a write-behind slot or a gate's permit) until it finishes, and hand it to
    /// write-behind, where the next commit collects it. Nothing starts (and `false` is
    /// returned) when that version has an early write already or a commit's flush is
    /// running ([`super::writebehind::WriteBehind::start`]).
    pub(crate) fn spawn_early_write(
        self: &Arc<Self>,
        rt: &tokio::runtime::Handle,
        key: RecKey,
        rec: Arc<DirtyRecord>,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> bool {
        let (i, r) = (self.clone(), rec.clone());
        self.datapath.write_behind.start(key, rec, || {
            rt.spawn(async move {
                let _permit = permit;
                i.early_write(r).await
            })
        })
    }

    /// Commit prologue, before the open txg's lock: seal and write, as early writes, every
    /// dirty record that has none yet, at most [`PRE_FLUSH_TASKS`] at a time on the tokio
    /// workers, and wait for them. Writers go on meanwhile; the flush under the lock then
    /// only links the records still at the version written here and seals again the ones
    /// changed since, so a commit holds writers back for the records they re-dirtied
    /// during it, not for all of the txg's. Nothing here is in any tree or space map
    /// until that flush links it.
    pub(crate) async fn pre_flush(&self) {
        let wb = &self.datapath.write_behind;
        if !wb.enabled() {
            return;
        }
        let recs = self.datapath.view.read().all();
        if recs.is_empty() {
            return;
        }
        let (Some(inner), Ok(rt)) = (self.me.upgrade(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let started = wb.pending_versions();
        let gate = Arc::new(tokio::sync::Semaphore::new(PRE_FLUSH_TASKS));
        for (key, rec) in recs {
            if started.contains(&(key, Arc::as_ptr(&rec) as usize)) {
                continue;
            }
            let Ok(permit) = gate.clone().acquire_owned().await else {
                return;
            };
            inner.spawn_early_write(&rt, key, rec, permit);
        }
        // Every permit back: every task spawned above has finished.
        let n = u32::try_from(PRE_FLUSH_TASKS).unwrap_or(u32::MAX);
        drop(gate.acquire_many(n).await);
    }

    /// Seal and write dirty record `rec` to a detached allocation (write-behind). `None`
    /// if that failed: the commit then writes the record (and reports the error).
    pub(crate) async fn early_write(self: Arc<Self>, rec: Arc<DirtyRecord>) -> Option<Early> {
        // The bytes to write and what they keep alive (`None`: a slice of a buffer that
        // holds other records too, copied for the record cache).
        let (data, pinned) = match (rec.whole_data(), rec.base()) {
            (Some(b), _) => (
                b.slice(..super::dirty::trimmed_len(b)),
                rec.whole_is_own().then_some(b.len()),
            ),
            // A record written in part over an extent: merged with the extent it
            // replaces, as the commit's flush would (`flush_window`).
            (None, Some(bp)) if rec.uses_base() => match self.datapath.record(&self.io, bp).await {
                Ok(base) => own(fresh(rec.contents(Some(&base)))),
                Err(e) => {
                    tracing::debug!(error = %e, "early write: base unreadable, the commit writes the record");
                    return None;
                }
            },
            (None, _) => own(fresh(rec.contents(None))),
        };
        drop(rec);
        if data.is_empty() {
            return Some(Early {
                extent: None,
                decoded: None,
            });
        }
        match self.io.write_data_detached(&data, &self.alloc).await {
            Ok(bp) => {
                self.datapath
                    .write_behind
                    .held_sectors
                    .fetch_add(u64::from(bp.asize), Ordering::AcqRel);
                // The record cache gets the decoded bytes at commit: the written buffer
                // itself when it holds this record only, else a copy made here, outside
                // every lock (a slice of a larger buffer would keep all of it alive).
                let decoded = match pinned {
                    Some(p) if self.datapath.cache.fits(p) => Some((data, p)),
                    Some(_) => None,
                    None => self
                        .datapath
                        .cache
                        .fits(data.len())
                        .then(|| (Bytes::copy_from_slice(&data), data.len())),
                };
                Some(Early {
                    extent: Some(Detached {
                        inner: self,
                        bp,
                        held: true,
                        armed: true,
                    }),
                    decoded,
                })
            }
            Err(e) => {
                tracing::debug!(error = %e, "early write failed: the commit writes the record");
                None
            }
        }
    }

    pub(crate) fn give_back_one(&self, bp: &BlockPtr) {
        if let Err(e) = self
            .alloc
            .lock()
            .unalloc_detached(bp.addr, u64::from(bp.asize))
        {
            tracing::error!(error = %e, "giving back a flushed record's allocation failed");
        }
    }

    /// The root readers use, with a guard that keeps the extents it references from being
    /// reused while the read runs.
    fn reader_root(&self) -> (Child, ReadGuard<'_>) {
        let g = self.readable.read();
        let txg = g.1;
        *self.readers.lock().entry(txg).or_insert(0) += 1;
        (g.0.clone(), ReadGuard { inner: self, txg })
    }

    fn check_readable(&self) -> Result<(), StoreError> {
        if self.locked {
            return Err(StoreError::Locked);
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::ReadOnly {
                reason: "pool is exported".into(),
            });
        }
        Ok(())
    }

    async fn read_inode(&self, root: &Child, id: ObjectId) -> Result<Inode, StoreError> {
        match tree::get(&self.io, root, &keys::inode(id)).await? {
            Some(v) if id != keys::META_OID => Ok(Inode::decode(&v)?),
            _ => Err(StoreError::NotFound { id }),
        }
    }

    /// Compress, encrypt and write the full records of the batch's writes before taking
    /// the writer lock, so concurrent batches overlap their data path. The records are
    /// sealed and written concurrently, up to [`PREWRITE_WINDOW`] at a time, each by a task
    /// of its own ([`Inner::seal_detached`]): both cores encode and the device round trips
    /// of one record overlap the encoding of the next.
    async fn prewrite(
        &self,
        ops: &[Op],
    ) -> Result<HashMap<(usize, u64), Option<BlockPtr>>, StoreError> {
        use futures::StreamExt;
        let rs = u64::from(self.id.record_size);
        let mut jobs = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            let Op::Write { offset, data, .. } = op else {
                continue;
            };
            let Some(end) = offset.checked_add(data.len() as u64) else {
                continue;
            };
            let mut rec = offset.div_ceil(rs);
            while (rec + 1) * rs <= end {
                let a = (rec * rs - offset) as usize;
                jobs.push(((i, rec), data.slice(a..a + rs as usize)));
                rec += 1;
            }
        }
        let mut pre = HashMap::with_capacity(jobs.len());
        if jobs.is_empty() {
            return Ok(pre);
        }
        let results: Vec<_> = futures::stream::iter(jobs)
            .map(|(k, src)| async move {
                let trimmed = super::dirty::trimmed_len(&src);
                if trimmed == 0 {
                    (k, Ok(None))
                } else {
                    (k, self.seal_detached(src.slice(..trimmed)).await.map(Some))
                }
            })
            .buffer_unordered(PREWRITE_WINDOW)
            .collect()
            .await;
        let mut failed = None;
        for (k, r) in results {
            match r {
                Ok(p) => {
                    pre.insert(k, p);
                }
                Err(e) => failed = Some(e),
            }
        }
        match failed {
            Some(e) => {
                self.give_back(pre);
                Err(e.into())
            }
            None => Ok(pre),
        }
    }

    /// Compress, encrypt and write `data` to a detached allocation (see
    /// [`BlockIo::write_data_detached`]), in a task of its own on the runtime's worker
    /// threads when there is a runtime (inline otherwise). If the caller goes away before
    /// the task ends, the allocation is given back.
    pub(crate) async fn seal_detached(&self, data: Bytes) -> Result<BlockPtr, PoolError> {
        let (Some(inner), Ok(rt)) = (self.me.upgrade(), tokio::runtime::Handle::try_current())
        else {
            return self.io.write_data_detached(&data, &self.alloc).await;
        };
        let task = rt.spawn(async move {
            let bp = inner.io.write_data_detached(&data, &inner.alloc).await?;
            Ok::<_, PoolError>(Detached {
                inner,
                bp,
                held: false,
                armed: true,
            })
        });
        match task.await {
            Ok(Ok(d)) => Ok(d.take()),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(PoolError::Internal(format!(
                "record sealing task failed: {e}"
            ))),
        }
    }

    fn give_back(&self, pre: HashMap<(usize, u64), Option<BlockPtr>>) {
        let mut a = self.alloc.lock();
        for bp in pre.into_values().flatten() {
            if let Err(e) = a.unalloc_detached(bp.addr, u64::from(bp.asize)) {
                tracing::error!(error = %e, "giving back a pre-written record failed");
            }
        }
    }

    pub(crate) async fn apply_batch(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        self.writable()?;
        let rs = u64::from(self.id.record_size);
        let freeing = frees_space(&ops);
        if !freeing && ops.iter().any(consumes_space) && self.alloc.lock().available() == 0 {
            return Err(StoreError::NoSpace);
        }
        // Write-behind: wait for a slot per whole record (the writer throttle), and leave
        // the records to background tasks; otherwise write them before the lock.
        let slots = self
            .datapath
            .write_behind
            .slots(whole_records(&ops, rs))
            .await;
        let pre = if slots.is_some() {
            HashMap::new()
        } else {
            self.prewrite(&ops).await?
        };
        let (over, freed_data) = {
            let mut o = self.open.lock().await;
            let mut b = self.batch(&o, freeing, pre, slots.is_some());
            for (i, op) in ops.into_iter().enumerate() {
                b.op_index = i;
                if let Err(e) = b.apply_op(op).await {
                    b.undo();
                    self.give_back(std::mem::take(&mut b.pre));
                    return Err(match e {
                        StoreError::Io { detail } if detail.contains("no space") => {
                            StoreError::NoSpace
                        }
                        other => other,
                    });
                }
            }
            if !b.pre.is_empty() {
                // Every pre-written record belongs to an op that ran; defensive only.
                self.give_back(std::mem::take(&mut b.pre));
            }
            o.tree = b.tree;
            let freed_data = !b.frees.bps.is_empty();
            b.dirty += b.frees.dirtied;
            let staged = std::mem::take(&mut b.staged);
            o.frees.append(&mut b.frees);
            o.counters = b.counters;
            o.dirty = true;
            o.dirty_bytes += b.dirty;
            self.objects.store(b.counters.objects, Ordering::Relaxed);
            self.lbytes.store(b.counters.lbytes, Ordering::Relaxed);
            self.pbytes.store(b.counters.pbytes, Ordering::Relaxed);
            {
                // The dirty records and the root readers see change together.
                let mut v = self.datapath.view.write();
                if !staged.is_empty() {
                    // Page memory the batch adds counts toward the txg's dirty bytes, and
                    // so does a share of the record each newly dirty record will encode.
                    let grew = staged.mem_delta(&v).max(0) as u64
                        + staged.new_records(&v) * (u64::from(self.id.record_size) / 8);
                    o.dirty_bytes += grew;
                    v.publish(staged);
                }
                *self.readable.write() = (o.tree.root.clone(), o.txg);
                if let Some(slots) = slots {
                    // Still under the open txg's lock: the next flush sees these.
                    self.start_early_writes(&v, std::mem::take(&mut b.early_keys), slots);
                }
            }
            (o.dirty_bytes, freed_data)
        };
        // The idle committer's clock (`pool.rs`): a change arrived.
        self.note_change();
        let limit = self.tunables.dirty_limit_bytes;
        if freeing && freed_data && self.alloc.lock().is_tight() {
            // A delete freed data while space is short: commit now so the space comes back
            // after two quick commits rather than two txg intervals.
            self.kick.notify_one();
        }
        if over >= 2 * limit {
            // Throttle: wait for a commit. The batch is applied whatever happens to the
            // commit; a failed commit suspends the pool and later calls report it.
            if let Err(e) = self.commit().await {
                tracing::warn!(pool = %self.id.name, error = %e, "throttled commit failed");
            }
        } else if over >= limit {
            self.kick.notify_one();
        }
        Ok(())
    }
}

impl Pool {
    /// Fill `dst` from byte `ra` of dirty record `r` (record start `rstart`).
    async fn read_dirty(
        &self,
        id: ObjectId,
        rstart: u64,
        ra: usize,
        dst: &mut [u8],
        r: &DirtyRecord,
    ) -> Result<(), StoreError> {
        let i = &self.inner;
        let base = match r.base() {
            Some(bp) if r.uses_base() => {
                match super::heal::reading(id, rstart, i.datapath.record(&i.io, bp)).await {
                    Ok(d) => Some(d),
                    Err(e) => {
                        i.damaged_read(id, rstart, bp, &e);
                        return Err(StoreError::Corrupt {
                            id,
                            offset: rstart,
                            detail: e.to_string(),
                        });
                    }
                }
            }
            _ => None,
        };
        r.read(ra, dst, base.as_deref());
        Ok(())
    }

    /// Fill `dst` from byte `ra` of the record stored in extent `bp` (record start
    /// `rstart`): from the record cache, a prefetch in flight, or the extent (then cached).
    /// Bytes past the record's logical size read as zeroes.
    async fn read_extent(
        &self,
        id: ObjectId,
        rstart: u64,
        ra: usize,
        dst: &mut [u8],
        bp: &BlockPtr,
    ) -> Result<(), StoreError> {
        let i = &self.inner;
        let rb = ra + dst.len();
        let cache_it = i.datapath.cache.fits(bp.lsize as usize);
        let mut data = i.datapath.cache.get(bp.addr, bp.birth);
        if data.is_none()
            && let Some(p) = i.datapath.readahead.pending(bp.addr, bp.birth)
        {
            // Being prefetched: wait for that read (a failed one is read again below).
            data = p.await.ok();
            if data.is_some() {
                i.datapath.cache.note_prefetch_use(bp.addr, bp.birth);
            }
        }
        let r = match data {
            Some(d) => Ok(Some(d)),
            None if !cache_it
                && bp.comp == crate::compress::CompressionKind::None.code()
                && rb.min(bp.lsize as usize) > ra
                && rb.min(bp.lsize as usize) - ra < bp.lsize as usize =>
            {
                // Uncompressed and read in part: decrypt only the units returned.
                let rbl = rb.min(bp.lsize as usize);
                super::heal::reading(id, rstart, i.io.read_data_range(bp, ra, rbl))
                    .await
                    .map(|part| {
                        dst[..part.len()].copy_from_slice(&part);
                        dst[part.len()..].fill(0);
                        i.datapath.partial_reads.fetch_add(1, Ordering::Relaxed);
                        None
                    })
            }
            None => super::heal::reading(id, rstart, i.io.read_data(bp))
                .await
                .map(|d| {
                    let d = Bytes::from(d);
                    // Streaming reads churn only the cache's recent list (ARC).
                    if cache_it {
                        i.datapath.cache.put(bp.addr, bp.birth, d.clone());
                    }
                    Some(d)
                }),
        };
        match r {
            Ok(Some(data)) => {
                // Past the record's logical bytes: zeroes.
                let have = rb.min(data.len()).saturating_sub(ra);
                if have > 0 {
                    dst[..have].copy_from_slice(&data[ra..ra + have]);
                }
                dst[have..].fill(0);
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(e) => {
                i.damaged_read(id, rstart, bp, &e);
                Err(StoreError::Corrupt {
                    id,
                    offset: rstart,
                    detail: e.to_string(),
                })
            }
        }
    }
}

#[async_trait]
impl ObjectStore for Pool {
    async fn alloc_object_id(&self) -> Result<ObjectId, StoreError> {
        self.inner.writable()?;
        Ok(self.inner.next_oid.fetch_add(1, Ordering::AcqRel))
    }

    async fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        // Space freed by earlier batches is reusable only once the freeing txg and the next
        // are durable. A full pool with frees pending commits and tries again (as ZFS waits
        // for the txg sync) instead of reporting ENOSPC while space is on its way back.
        const COMMITS: usize = 3;
        for _ in 0..COMMITS {
            match self.inner.apply_batch(ops.clone()).await {
                Err(StoreError::NoSpace)
                    if self.inner.alloc.lock().has_pending_frees()
                        || !self.inner.datapath.view.read().is_empty() =>
                {
                    self.inner.commit().await?;
                }
                r => return r,
            }
        }
        self.inner.apply_batch(ops).await
    }

    async fn read(&self, id: ObjectId, offset: u64, buf: &mut [u8]) -> Result<usize, StoreError> {
        let i = &self.inner;
        i.check_readable()?;
        if buf.is_empty() {
            return Ok(0);
        }
        let rs = u64::from(i.id.record_size);
        let first = offset / rs;
        // Upper bound of the records read (the size is known only from the tree).
        let last = offset.saturating_add(buf.len() as u64 - 1) / rs;
        // A read that continues a sequential stream asks for the records after it too
        // (into the record cache: without one there is nothing to read ahead into).
        let mut ahead = if i.datapath.cache.enabled() {
            i.datapath.readahead.plan(id, first, last, rs)
        } else {
            None
        };
        let look_to = ahead.as_ref().map_or(last, |p| p.records.end - 1).max(last);
        // The root and the dirty records it goes with, taken together.
        let (root, guard, dirty) = {
            let v = i.datapath.view.read();
            let (root, guard) = i.reader_root();
            let dirty = if v.is_empty() {
                Vec::new()
            } else {
                v.range(id, first, look_to)
            };
            (root, guard, dirty)
        };
        let ino = i.read_inode(&root, id).await?;
        if offset >= ino.size {
            return Ok(0);
        }
        let n = (buf.len() as u64).min(ino.size - offset) as usize;
        let end = offset + n as u64;
        let last = (end - 1) / rs;
        let dirty: HashMap<u64, Arc<DirtyRecord>> = dirty.into_iter().collect();
        let all_dirty = (first..=last).all(|r| dirty.contains_key(&r));
        let exts = if all_dirty && ahead.is_none() {
            Vec::new()
        } else {
            tree::scan(
                &i.io,
                &root,
                &keys::extent(id, first),
                Some(&keys::extent(id, look_to + 1)),
                usize::MAX,
            )
            .await?
        };
        let mut extents: HashMap<u64, BlockPtr> = HashMap::with_capacity(exts.len());
        for (k, v) in exts {
            let (Some(rec), Ok(bp)) = (keys::extent_rec(&k), BlockPtr::from_bytes(&v)) else {
                return Err(StoreError::Corrupt {
                    id,
                    offset,
                    detail: "bad extent record".into(),
                });
            };
            if dirty.contains_key(&rec) {
                // The dirty copy takes precedence (for readahead too: its extent is old).
                continue;
            }
            match ahead.as_mut() {
                Some(plan) if rec > last && plan.records.contains(&rec) => {
                    if i.datapath.cache.contains(bp.addr, bp.birth) {
                        continue;
                    }
                    if let Some(ticket) = plan.begin(bp.addr, bp.birth) {
                        let pin = super::readahead::Pin::new(&self.inner, guard.txg);
                        super::readahead::spawn_prefetch(
                            &self.inner,
                            pin,
                            id,
                            rec * rs,
                            bp,
                            ticket,
                        );
                    }
                }
                _ => {
                    extents.insert(rec, bp);
                }
            }
        }
        drop(ahead);
        // Every byte of `buf[..n]` is written below (holes and the tail of a short record
        // as zeroes); the records are read concurrently.
        let mut jobs = Vec::with_capacity((last - first + 1) as usize);
        let mut rest = &mut buf[..n];
        let mut pos = offset;
        for rec in first..=last {
            let rstart = rec * rs;
            let b = end.min(rstart + rs);
            let (dst, tail) = std::mem::take(&mut rest).split_at_mut((b - pos) as usize);
            rest = tail;
            let ra = (pos - rstart) as usize;
            pos = b;
            if let Some(r) = dirty.get(&rec) {
                jobs.push(futures::future::Either::Left(
                    self.read_dirty(id, rstart, ra, dst, r),
                ));
            } else if let Some(bp) = extents.get(&rec) {
                jobs.push(futures::future::Either::Right(
                    self.read_extent(id, rstart, ra, dst, bp),
                ));
            } else {
                dst.fill(0);
            }
        }
        for r in futures::future::join_all(jobs).await {
            r?;
        }
        drop(guard);
        Ok(n)
    }

    async fn size(&self, id: ObjectId) -> Result<u64, StoreError> {
        self.inner.check_readable()?;
        let (root, _guard) = self.inner.reader_root();
        Ok(self.inner.read_inode(&root, id).await?.size)
    }

    async fn get_attr(&self, id: ObjectId) -> Result<Option<Bytes>, StoreError> {
        self.inner.check_readable()?;
        let (root, _guard) = self.inner.reader_root();
        Ok(self
            .inner
            .read_inode(&root, id)
            .await?
            .attr
            .map(Bytes::from))
    }

    async fn kv_get(&self, id: ObjectId, key: &[u8]) -> Result<Option<Bytes>, StoreError> {
        let i = &self.inner;
        i.check_readable()?;
        let (root, _guard) = i.reader_root();
        i.read_inode(&root, id).await?;
        Ok(tree::get(&i.io, &root, &keys::kv(id, key)).await?)
    }

    async fn kv_scan(
        &self,
        id: ObjectId,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, StoreError> {
        let i = &self.inner;
        i.check_readable()?;
        let (root, _guard) = i.reader_root();
        i.read_inode(&root, id).await?;
        let start = match after {
            Some(a) => {
                let mut k = keys::kv(id, a);
                k.push(0); // strictly after
                k
            }
            None => keys::kind_start(id, KIND_KV),
        };
        let end = keys::kind_end(id, KIND_KV);
        let v = tree::scan(&i.io, &root, &start, Some(&end), limit).await?;
        Ok(v.into_iter()
            .map(|(k, v)| {
                // The user key is the tail of the tree key: shared, not copied.
                let n = keys::kv_user_key(&k).len();
                (k.slice(k.len() - n..), v)
            })
            .collect())
    }

    async fn sync(&self) -> Result<(), StoreError> {
        self.inner.writable()?;
        self.inner.commit().await?;
        Ok(())
    }

    fn stats(&self) -> StoreStats {
        let i = &self.inner;
        let a = i.alloc.lock();
        let l = i.lbytes.load(Ordering::Relaxed);
        let p = i.pbytes.load(Ordering::Relaxed);
        StoreStats {
            capacity_bytes: i.usable_bytes(a.capacity()),
            used_bytes: i.usable_bytes(a.used()),
            available_bytes: i.usable_bytes(a.available()),
            objects: i.objects.load(Ordering::Relaxed),
            compression_ratio: if p == 0 { 1.0 } else { l as f64 / p as f64 },
            txg: i.durable_txg.load(Ordering::Acquire),
        }
    }

    fn record_size(&self) -> Option<u32> {
        Some(self.inner.id.record_size)
    }
}

#[cfg(test)]
#[path = "objects_tests.rs"]
mod tests;
