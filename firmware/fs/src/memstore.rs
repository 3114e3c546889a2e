//! `MemStore`: an in-memory [`ObjectStore`] for tests.

use async_trait::async_trait;
use bytes::Bytes;
use ingot_pool::store::{
    FIRST_DYNAMIC_ID, MAX_ATTR_LEN, MAX_KEY_LEN, MAX_VALUE_LEN, ObjectId, ObjectStore, Op,
    StoreError, StoreStats,
};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};

/// Data chunk size of the in-memory objects.
const CHUNK: u64 = 4096;
/// Bytes accounted to every object besides its data, attribute and records.
const OBJ_OVERHEAD: u64 = 64;

/// A simple, obviously correct in-memory object store.
///
/// **Test double only**: it backs the fs layer's unit tests and the FUSE smoke tests before
/// (and independently of) the real pool. The appliance uses the real pool, never this.
///
/// Objects are `BTreeMap`s of 4 KiB chunks (holes are absent chunks), one attribute record and
/// a `BTreeMap` of records. A batch is first validated as a whole (object existence through
/// its own creates and deletes, size limits, an upper bound of the space it adds against the
/// configured capacity) and only then applied, by steps that cannot fail: batches are atomic
/// and `NoSpace` leaves nothing applied. `sync` is a counted no-op: everything is
/// "durable" once applied.
#[derive(Debug, Default)]
pub struct MemStore {
    inner: Mutex<Inner>,
    next_id: AtomicU64,
    syncs: AtomicU64,
}

#[derive(Debug, Default)]
struct Inner {
    objects: HashMap<ObjectId, Obj>,
    used: u64,
    capacity: Option<u64>,
    read_only: bool,
    applied: u64,
}

#[derive(Debug, Clone, Default)]
struct Obj {
    size: u64,
    chunks: BTreeMap<u64, Vec<u8>>,
    attr: Option<Bytes>,
    kv: BTreeMap<Bytes, Bytes>,
    /// Sum of key and value lengths in `kv`.
    kv_bytes: u64,
}

impl Obj {
    /// Bytes this object accounts for.
    fn footprint(&self) -> u64 {
        self.chunks.len() as u64 * CHUNK
            + self.attr.as_ref().map_or(0, |a| a.len() as u64)
            + self.kv_bytes
            + OBJ_OVERHEAD
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let mut pos = offset;
        let mut rest = data;
        while !rest.is_empty() {
            let idx = pos / CHUNK;
            let within = (pos % CHUNK) as usize;
            let n = rest.len().min(CHUNK as usize - within);
            let chunk = self
                .chunks
                .entry(idx)
                .or_insert_with(|| vec![0; CHUNK as usize]);
            chunk[within..within + n].copy_from_slice(&rest[..n]);
            rest = &rest[n..];
            pos += n as u64;
        }
        self.size = self.size.max(offset + data.len() as u64);
    }

    /// Zeroes `[start, end)`, dropping chunks that become fully covered.
    fn zero(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let first = start / CHUNK;
        let last = (end - 1) / CHUNK;
        let idxs: Vec<u64> = self.chunks.range(first..=last).map(|(k, _)| *k).collect();
        for idx in idxs {
            let cs = idx * CHUNK;
            let ce = cs + CHUNK;
            if start <= cs && end >= ce {
                self.chunks.remove(&idx);
            } else if let Some(c) = self.chunks.get_mut(&idx) {
                let a = (start.max(cs) - cs) as usize;
                let b = (end.min(ce) - cs) as usize;
                c[a..b].fill(0);
            }
        }
    }

    fn truncate(&mut self, size: u64) {
        if size < self.size {
            self.zero(size, self.size.div_ceil(CHUNK) * CHUNK);
        }
        self.size = size;
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> usize {
        if offset >= self.size {
            return 0;
        }
        let n = buf.len().min((self.size - offset) as usize);
        let mut done = 0;
        while done < n {
            let pos = offset + done as u64;
            let idx = pos / CHUNK;
            let within = (pos % CHUNK) as usize;
            let m = (n - done).min(CHUNK as usize - within);
            match self.chunks.get(&idx) {
                Some(c) => buf[done..done + m].copy_from_slice(&c[within..within + m]),
                None => buf[done..done + m].fill(0),
            }
            done += m;
        }
        n
    }
}

impl MemStore {
    /// An empty store of unlimited capacity.
    pub fn new() -> Self {
        MemStore {
            next_id: AtomicU64::new(FIRST_DYNAMIC_ID),
            ..Default::default()
        }
    }

    /// An empty store that fails batches growing it past `bytes` with `NoSpace`.
    pub fn with_capacity(bytes: u64) -> Self {
        let s = Self::new();
        s.inner.lock().capacity = Some(bytes);
        s
    }

    /// Makes every later `apply` fail with `ReadOnly` (or accept again).
    pub fn set_read_only(&self, ro: bool) {
        self.inner.lock().read_only = ro;
    }

    /// How many times `sync` was called.
    pub fn sync_count(&self) -> u64 {
        self.syncs.load(Ordering::SeqCst)
    }

    /// How many batches were applied successfully.
    pub fn applied_batches(&self) -> u64 {
        self.inner.lock().applied
    }

    /// Whether object `id` exists.
    pub fn exists(&self, id: ObjectId) -> bool {
        self.inner.lock().objects.contains_key(&id)
    }

    fn invalid(what: String) -> StoreError {
        StoreError::Invalid { what }
    }

    /// Checks a whole batch against the current state without changing anything: existence
    /// (following the batch's own creates and deletes), limits, and an upper bound of the
    /// space it can add. Returns that bound.
    fn validate(inner: &Inner, ops: &[Op]) -> Result<u64, StoreError> {
        let mut exists: HashMap<ObjectId, bool> = HashMap::new();
        let mut grow = 0u64;
        let present = |exists: &HashMap<ObjectId, bool>, id: ObjectId| {
            exists
                .get(&id)
                .copied()
                .unwrap_or_else(|| inner.objects.contains_key(&id))
        };
        for op in ops {
            match op {
                Op::Create { id } => {
                    if *id == 0 {
                        return Err(Self::invalid("object id 0".into()));
                    }
                    if present(&exists, *id) {
                        return Err(StoreError::Exists { id: *id });
                    }
                    exists.insert(*id, true);
                    grow += OBJ_OVERHEAD;
                }
                Op::Delete { id } => {
                    if !present(&exists, *id) {
                        return Err(StoreError::NotFound { id: *id });
                    }
                    exists.insert(*id, false);
                }
                Op::Write { id, offset, data } => {
                    let end = offset
                        .checked_add(data.len() as u64)
                        .ok_or_else(|| Self::invalid(format!("write at {offset} overflows")))?;
                    if !present(&exists, *id) {
                        return Err(StoreError::NotFound { id: *id });
                    }
                    if !data.is_empty() {
                        let existing = inner.objects.get(id);
                        for idx in offset / CHUNK..=(end - 1) / CHUNK {
                            if existing.is_none_or(|o| !o.chunks.contains_key(&idx)) {
                                grow += CHUNK;
                            }
                        }
                    }
                }
                Op::Truncate { id, .. } | Op::PunchHole { id, .. } | Op::KvDelete { id, .. } => {
                    if !present(&exists, *id) {
                        return Err(StoreError::NotFound { id: *id });
                    }
                }
                Op::SetAttr { id, attr } => {
                    if attr.len() > MAX_ATTR_LEN {
                        return Err(Self::invalid(format!("attribute of {} bytes", attr.len())));
                    }
                    if !present(&exists, *id) {
                        return Err(StoreError::NotFound { id: *id });
                    }
                    grow += attr.len() as u64;
                }
                Op::KvPut { id, key, value } => {
                    if key.len() > MAX_KEY_LEN || value.len() > MAX_VALUE_LEN {
                        return Err(Self::invalid(format!(
                            "record key {} / value {} bytes",
                            key.len(),
                            value.len()
                        )));
                    }
                    if !present(&exists, *id) {
                        return Err(StoreError::NotFound { id: *id });
                    }
                    grow += (key.len() + value.len()) as u64;
                }
            }
        }
        Ok(grow)
    }

    /// Applies a batch: validates all of it first, then applies it (which cannot fail), so a
    /// failed batch changes nothing. `NoSpace` is conservative: it uses an upper bound of the
    /// growth, ignoring space the same batch frees.
    fn apply_locked(inner: &mut Inner, ops: Vec<Op>) -> Result<(), StoreError> {
        if inner.read_only {
            return Err(StoreError::ReadOnly {
                reason: "MemStore set read-only".into(),
            });
        }
        let grow = Self::validate(inner, &ops)?;
        if let Some(cap) = inner.capacity
            && grow > 0
            && inner.used + grow > cap
        {
            return Err(StoreError::NoSpace);
        }
        for op in ops {
            let id = match &op {
                Op::Create { id }
                | Op::Delete { id }
                | Op::Write { id, .. }
                | Op::Truncate { id, .. }
                | Op::PunchHole { id, .. }
                | Op::SetAttr { id, .. }
                | Op::KvPut { id, .. }
                | Op::KvDelete { id, .. } => *id,
            };
            let before = inner.objects.get(&id).map_or(0, Obj::footprint);
            match op {
                Op::Create { id } => {
                    inner.objects.insert(id, Obj::default());
                }
                Op::Delete { id } => {
                    inner.objects.remove(&id);
                }
                other => {
                    // Validated above: the object exists at this point of the batch.
                    let Some(o) = inner.objects.get_mut(&id) else {
                        continue;
                    };
                    match other {
                        Op::Write { offset, data, .. } => o.write(offset, &data),
                        Op::Truncate { size, .. } => o.truncate(size),
                        Op::PunchHole { offset, len, .. } => {
                            let end = offset.saturating_add(len).min(o.size);
                            o.zero(offset, end);
                        }
                        Op::SetAttr { attr, .. } => o.attr = Some(attr),
                        Op::KvPut { key, value, .. } => {
                            o.kv_bytes += (key.len() + value.len()) as u64;
                            if let Some(old) = o.kv.insert(key.clone(), value) {
                                o.kv_bytes -= (key.len() + old.len()) as u64;
                            }
                        }
                        Op::KvDelete { key, .. } => {
                            if let Some(old) = o.kv.remove(&key) {
                                o.kv_bytes -= (key.len() + old.len()) as u64;
                            }
                        }
                        Op::Create { .. } | Op::Delete { .. } => {}
                    }
                }
            }
            let after = inner.objects.get(&id).map_or(0, Obj::footprint);
            inner.used = inner.used + after - before;
        }
        inner.applied += 1;
        Ok(())
    }
}

#[async_trait]
impl ObjectStore for MemStore {
    async fn alloc_object_id(&self) -> Result<ObjectId, StoreError> {
        Ok(self.next_id.fetch_add(1, Ordering::SeqCst))
    }

    async fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        Self::apply_locked(&mut self.inner.lock(), ops)
    }

    async fn read(&self, id: ObjectId, offset: u64, buf: &mut [u8]) -> Result<usize, StoreError> {
        let inner = self.inner.lock();
        let o = inner.objects.get(&id).ok_or(StoreError::NotFound { id })?;
        Ok(o.read(offset, buf))
    }

    async fn size(&self, id: ObjectId) -> Result<u64, StoreError> {
        let inner = self.inner.lock();
        Ok(inner
            .objects
            .get(&id)
            .ok_or(StoreError::NotFound { id })?
            .size)
    }

    async fn get_attr(&self, id: ObjectId) -> Result<Option<Bytes>, StoreError> {
        let inner = self.inner.lock();
        Ok(inner
            .objects
            .get(&id)
            .ok_or(StoreError::NotFound { id })?
            .attr
            .clone())
    }

    async fn kv_get(&self, id: ObjectId, key: &[u8]) -> Result<Option<Bytes>, StoreError> {
        let inner = self.inner.lock();
        Ok(inner
            .objects
            .get(&id)
            .ok_or(StoreError::NotFound { id })?
            .kv
            .get(key)
            .cloned())
    }

    async fn kv_scan(
        &self,
        id: ObjectId,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, StoreError> {
        let inner = self.inner.lock();
        let o = inner.objects.get(&id).ok_or(StoreError::NotFound { id })?;
        let lower = match after {
            Some(a) => Bound::Excluded(Bytes::copy_from_slice(a)),
            None => Bound::Unbounded,
        };
        Ok(o.kv
            .range((lower, Bound::Unbounded))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    async fn sync(&self) -> Result<(), StoreError> {
        self.syncs.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn stats(&self) -> StoreStats {
        let inner = self.inner.lock();
        let capacity = inner.capacity.unwrap_or(1 << 40);
        StoreStats {
            capacity_bytes: capacity,
            used_bytes: inner.used,
            available_bytes: capacity.saturating_sub(inner.used),
            objects: inner.objects.len() as u64,
            compression_ratio: 1.0,
            txg: inner.applied,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    #[test]
    fn batch_is_atomic() {
        rt().block_on(async {
            let s = MemStore::new();
            s.apply(vec![Op::Create { id: 70 }]).await.unwrap();
            let r = s
                .apply(vec![
                    Op::Write {
                        id: 70,
                        offset: 0,
                        data: Bytes::from_static(b"abc"),
                    },
                    Op::Create { id: 70 },
                ])
                .await;
            assert!(matches!(r, Err(StoreError::Exists { id: 70 })));
            assert_eq!(s.size(70).await.unwrap(), 0);
        });
    }

    #[test]
    fn holes_truncate_punch() {
        rt().block_on(async {
            let s = MemStore::new();
            s.apply(vec![
                Op::Create { id: 70 },
                Op::Write {
                    id: 70,
                    offset: 10_000,
                    data: Bytes::from(vec![7u8; 9000]),
                },
            ])
            .await
            .unwrap();
            let mut b = vec![1u8; 20_000];
            assert_eq!(s.read(70, 0, &mut b).await.unwrap(), 19_000);
            assert!(b[..10_000].iter().all(|&x| x == 0));
            assert!(b[10_000..19_000].iter().all(|&x| x == 7));
            s.apply(vec![Op::PunchHole {
                id: 70,
                offset: 12_000,
                len: 5000,
            }])
            .await
            .unwrap();
            s.read(70, 0, &mut b).await.unwrap();
            assert!(b[12_000..17_000].iter().all(|&x| x == 0));
            assert!(b[17_000..19_000].iter().all(|&x| x == 7));
            s.apply(vec![
                Op::Truncate {
                    id: 70,
                    size: 11_000,
                },
                Op::Truncate {
                    id: 70,
                    size: 30_000,
                },
            ])
            .await
            .unwrap();
            let mut c = vec![1u8; 30_000];
            assert_eq!(s.read(70, 0, &mut c).await.unwrap(), 30_000);
            assert!(c[10_000..11_000].iter().all(|&x| x == 7));
            assert!(c[11_000..].iter().all(|&x| x == 0));
        });
    }

    #[test]
    fn no_space_applies_nothing() {
        rt().block_on(async {
            let s = MemStore::with_capacity(64 * 1024);
            s.apply(vec![Op::Create { id: 70 }]).await.unwrap();
            let r = s
                .apply(vec![
                    Op::SetAttr {
                        id: 70,
                        attr: Bytes::from_static(b"x"),
                    },
                    Op::Write {
                        id: 70,
                        offset: 0,
                        data: Bytes::from(vec![1u8; 128 * 1024]),
                    },
                ])
                .await;
            assert!(matches!(r, Err(StoreError::NoSpace)));
            assert_eq!(s.get_attr(70).await.unwrap(), None);
            assert_eq!(s.size(70).await.unwrap(), 0);
        });
    }

    #[test]
    fn space_accounting_returns_to_zero() {
        rt().block_on(async {
            let s = MemStore::new();
            s.apply(vec![
                Op::Create { id: 70 },
                Op::Write {
                    id: 70,
                    offset: 5000,
                    data: Bytes::from(vec![1u8; 10_000]),
                },
                Op::KvPut {
                    id: 70,
                    key: Bytes::from_static(b"k"),
                    value: Bytes::from_static(b"vv"),
                },
                Op::KvPut {
                    id: 70,
                    key: Bytes::from_static(b"k"),
                    value: Bytes::from_static(b"v"),
                },
                Op::SetAttr {
                    id: 70,
                    attr: Bytes::from_static(b"attr"),
                },
            ])
            .await
            .unwrap();
            // Chunks 1..=3 of 4 KiB, one 2-byte record, a 4-byte attribute, the overhead.
            assert_eq!(s.stats().used_bytes, 3 * CHUNK + 2 + 4 + OBJ_OVERHEAD);
            s.apply(vec![Op::PunchHole {
                id: 70,
                offset: 8192,
                len: 4096,
            }])
            .await
            .unwrap();
            assert_eq!(s.stats().used_bytes, 2 * CHUNK + 2 + 4 + OBJ_OVERHEAD);
            s.apply(vec![Op::Delete { id: 70 }]).await.unwrap();
            assert_eq!(s.stats().used_bytes, 0);
            assert_eq!(s.stats().objects, 0);
        });
    }

    #[test]
    fn kv_scan_is_ordered_and_exclusive() {
        rt().block_on(async {
            let s = MemStore::new();
            let mut ops = vec![Op::Create { id: 70 }];
            for k in ["b", "a", "c"] {
                ops.push(Op::KvPut {
                    id: 70,
                    key: Bytes::copy_from_slice(k.as_bytes()),
                    value: Bytes::new(),
                });
            }
            s.apply(ops).await.unwrap();
            let all = s.kv_scan(70, None, 10).await.unwrap();
            let keys: Vec<_> = all.iter().map(|(k, _)| k.as_ref()).collect();
            assert_eq!(keys, vec![b"a".as_ref(), b"b", b"c"]);
            let after = s.kv_scan(70, Some(b"a"), 1).await.unwrap();
            assert_eq!(after[0].0.as_ref(), b"b");
        });
    }
}
