//! A [`MemStore`] behind hooks, for the tests that need to shape or watch the store calls
//! the file system makes: yield to the scheduler before each call (so tasks interleave at
//! every store access, as on the real pool), see or fail each batch before it applies,
//! and announce a record size. Everything else is the `MemStore`'s.

#![allow(dead_code)] // each test file uses part of it

use bytes::Bytes;
use ingot_fs::memstore::MemStore;
use ingot_pool::store::{ObjectId, ObjectStore, Op, StoreError, StoreStats};
use std::sync::Arc;

/// Runs on each batch before it applies; an error fails the batch (nothing applied).
pub type ApplyHook = Box<dyn Fn(&[Op]) -> Result<(), StoreError> + Send + Sync>;

/// See the module docs. Built with [`Hooked::new`] and the `with_*` setters.
pub struct Hooked {
    /// The store underneath (what a test inspects or mounts again after a crash).
    pub inner: Arc<MemStore>,
    /// `Some(p)`: yield before every call but `sync` and `stats`, a second time with
    /// probability `p`.
    yields: Option<f64>,
    on_apply: Option<ApplyHook>,
    record_size: Option<u32>,
}

impl std::fmt::Debug for Hooked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooked")
            .field("yields", &self.yields)
            .field("record_size", &self.record_size)
            .finish()
    }
}

impl Hooked {
    /// `inner` with no hooks.
    pub fn new(inner: Arc<MemStore>) -> Self {
        Hooked {
            inner,
            yields: None,
            on_apply: None,
            record_size: None,
        }
    }

    /// Yield before every call but `sync` and `stats`, again with probability `twice`.
    pub fn yielding(mut self, twice: f64) -> Self {
        self.yields = Some(twice);
        self
    }

    /// Run `hook` on each batch before it applies.
    pub fn on_apply(
        mut self,
        hook: impl Fn(&[Op]) -> Result<(), StoreError> + Send + Sync + 'static,
    ) -> Self {
        self.on_apply = Some(Box::new(hook));
        self
    }

    /// Announce records of `rs` bytes ([`ObjectStore::record_size`]).
    pub fn record_size(mut self, rs: u32) -> Self {
        self.record_size = Some(rs);
        self
    }

    async fn before(&self) {
        if let Some(twice) = self.yields {
            tokio::task::yield_now().await;
            if twice > 0.0 && rand::random_bool(twice) {
                tokio::task::yield_now().await;
            }
        }
    }
}

#[async_trait::async_trait]
impl ObjectStore for Hooked {
    async fn alloc_object_id(&self) -> Result<ObjectId, StoreError> {
        self.before().await;
        self.inner.alloc_object_id().await
    }
    async fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        self.before().await;
        if let Some(hook) = &self.on_apply {
            hook(&ops)?;
        }
        self.inner.apply(ops).await
    }
    async fn read(&self, id: ObjectId, offset: u64, buf: &mut [u8]) -> Result<usize, StoreError> {
        self.before().await;
        self.inner.read(id, offset, buf).await
    }
    async fn size(&self, id: ObjectId) -> Result<u64, StoreError> {
        self.before().await;
        self.inner.size(id).await
    }
    async fn get_attr(&self, id: ObjectId) -> Result<Option<Bytes>, StoreError> {
        self.before().await;
        self.inner.get_attr(id).await
    }
    async fn kv_get(&self, id: ObjectId, key: &[u8]) -> Result<Option<Bytes>, StoreError> {
        self.before().await;
        self.inner.kv_get(id, key).await
    }
    async fn kv_scan(
        &self,
        id: ObjectId,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, StoreError> {
        self.before().await;
        self.inner.kv_scan(id, after, limit).await
    }
    async fn sync(&self) -> Result<(), StoreError> {
        self.inner.sync().await
    }
    fn stats(&self) -> StoreStats {
        self.inner.stats()
    }
    fn record_size(&self) -> Option<u32> {
        self.record_size
    }
}
