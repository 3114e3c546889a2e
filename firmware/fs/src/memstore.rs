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
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Data chunk size of the in-memory objects.
const CHUNK: u64 = 4096;

/// A simple, obviously correct in-memory object store.
///
/// **Test double only**: it backs the fs layer's unit tests and the FUSE smoke tests before
/// (and independently of) the real pool. The appliance uses the real pool, never this.
///
/// Objects are `BTreeMap`s of 4 KiB chunks (holes are absent chunks), one attribute record and
/// a `BTreeMap` of records. A batch is applied to copies of the objects it touches and
/// committed only if every op succeeds and the result fits the configured capacity, so batches
/// are atomic and `NoSpace` leaves nothing applied. `sync` is a counted no-op: everything is
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
    chunks: BTreeMap<u64, Arc<Vec<u8>>>,
    attr: Option<Bytes>,
    kv: BTreeMap<Bytes, Bytes>,
}

impl Obj {
    /// Bytes this object accounts for.
    fn footprint(&self) -> u64 {
        let kv: usize = self.kv.iter().map(|(k, v)| k.len() + v.len()).sum();
        self.chunks.len() as u64 * CHUNK
            + self.attr.as_ref().map_or(0, |a| a.len() as u64)
            + kv as u64
            + 64
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
                .or_insert_with(|| Arc::new(vec![0; CHUNK as usize]));
            Arc::make_mut(chunk)[within..within + n].copy_from_slice(&rest[..n]);
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
                Arc::make_mut(c)[a..b].fill(0);
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

    fn apply_locked(inner: &mut Inner, ops: Vec<Op>) -> Result<(), StoreError> {
        if inner.read_only {
            return Err(StoreError::ReadOnly {
                reason: "MemStore set read-only".into(),
            });
        }
        // Staged copies of the touched objects: None = deleted / absent.
        let mut staged: HashMap<ObjectId, Option<Obj>> = HashMap::new();
        fn slot<'a>(
            inner: &Inner,
            staged: &'a mut HashMap<ObjectId, Option<Obj>>,
            id: ObjectId,
        ) -> &'a mut Option<Obj> {
            staged
                .entry(id)
                .or_insert_with(|| inner.objects.get(&id).cloned())
        }
        for op in ops {
            match op {
                Op::Create { id } => {
                    if id == 0 {
                        return Err(Self::invalid("object id 0".into()));
                    }
                    let s = slot(inner, &mut staged, id);
                    if s.is_some() {
                        return Err(StoreError::Exists { id });
                    }
                    *s = Some(Obj::default());
                }
                Op::Delete { id } => {
                    let s = slot(inner, &mut staged, id);
                    if s.take().is_none() {
                        return Err(StoreError::NotFound { id });
                    }
                }
                Op::Write { id, offset, data } => {
                    if offset.checked_add(data.len() as u64).is_none() {
                        return Err(Self::invalid(format!("write at {offset} overflows")));
                    }
                    let o = slot(inner, &mut staged, id)
                        .as_mut()
                        .ok_or(StoreError::NotFound { id })?;
                    o.write(offset, &data);
                }
                Op::Truncate { id, size } => {
                    let o = slot(inner, &mut staged, id)
                        .as_mut()
                        .ok_or(StoreError::NotFound { id })?;
                    o.truncate(size);
                }
                Op::PunchHole { id, offset, len } => {
                    let o = slot(inner, &mut staged, id)
                        .as_mut()
                        .ok_or(StoreError::NotFound { id })?;
                    let end = offset.saturating_add(len).min(o.size);
                    o.zero(offset, end);
                }
                Op::SetAttr { id, attr } => {
                    if attr.len() > MAX_ATTR_LEN {
                        return Err(Self::invalid(format!("attribute of {} bytes", attr.len())));
                    }
                    let o = slot(inner, &mut staged, id)
                        .as_mut()
                        .ok_or(StoreError::NotFound { id })?;
                    o.attr = Some(attr);
                }
                Op::KvPut { id, key, value } => {
                    if key.len() > MAX_KEY_LEN || value.len() > MAX_VALUE_LEN {
                        return Err(Self::invalid(format!(
                            "record key {} / value {} bytes",
                            key.len(),
                            value.len()
                        )));
                    }
                    let o = slot(inner, &mut staged, id)
                        .as_mut()
                        .ok_or(StoreError::NotFound { id })?;
                    o.kv.insert(key, value);
                }
                Op::KvDelete { id, key } => {
                    let o = slot(inner, &mut staged, id)
                        .as_mut()
                        .ok_or(StoreError::NotFound { id })?;
                    o.kv.remove(&key);
                }
            }
        }
        let before: u64 = staged
            .keys()
            .filter_map(|id| inner.objects.get(id))
            .map(Obj::footprint)
            .sum();
        let after: u64 = staged.values().flatten().map(Obj::footprint).sum();
        let used = inner.used - before + after;
        if let Some(cap) = inner.capacity
            && after > before
            && used > cap
        {
            return Err(StoreError::NoSpace);
        }
        for (id, o) in staged {
            match o {
                Some(o) => inner.objects.insert(id, o),
                None => inner.objects.remove(&id),
            };
        }
        inner.used = used;
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
