//! Crash test: a store wrapper stops accepting batches after the N-th one (a crash: later
//! batches never land). For every N of a seeded workload, a fresh mount of what landed must be
//! a consistent tree with no leaked objects: each namespace operation is one batch, and
//! unlinked-but-open inodes are reclaimed from the orphan list.

use bytes::Bytes;
use ingot_fs::memstore::MemStore;
use ingot_fs::*;
use ingot_pool::store::{ObjectId, ObjectStore, Op, StoreError, StoreStats};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[path = "support/tree_check.rs"]
mod tree_check;
use tree_check::check;

const U: Ctx = Ctx {
    uid: 1000,
    gid: 1000,
};
const NAMES: [&str; 4] = ["a", "b", "c", "d"];

/// Passes the first `limit` batches to the MemStore, then fails every later one.
#[derive(Debug)]
struct CrashAfter {
    inner: Arc<MemStore>,
    limit: u64,
    seen: AtomicU64,
}

#[async_trait::async_trait]
impl ObjectStore for CrashAfter {
    async fn alloc_object_id(&self) -> Result<ObjectId, StoreError> {
        self.inner.alloc_object_id().await
    }
    async fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        if self.seen.fetch_add(1, Ordering::SeqCst) >= self.limit {
            return Err(StoreError::Io {
                detail: "crashed".into(),
            });
        }
        self.inner.apply(ops).await
    }
    async fn read(&self, id: ObjectId, offset: u64, buf: &mut [u8]) -> Result<usize, StoreError> {
        self.inner.read(id, offset, buf).await
    }
    async fn size(&self, id: ObjectId) -> Result<u64, StoreError> {
        self.inner.size(id).await
    }
    async fn get_attr(&self, id: ObjectId) -> Result<Option<Bytes>, StoreError> {
        self.inner.get_attr(id).await
    }
    async fn kv_get(&self, id: ObjectId, key: &[u8]) -> Result<Option<Bytes>, StoreError> {
        self.inner.kv_get(id, key).await
    }
    async fn kv_scan(
        &self,
        id: ObjectId,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, StoreError> {
        self.inner.kv_scan(id, after, limit).await
    }
    async fn sync(&self) -> Result<(), StoreError> {
        self.inner.sync().await
    }
    fn stats(&self) -> StoreStats {
        self.inner.stats()
    }
}

/// A seeded workload; errors (including the crash) are ignored. Open handles are never
/// released, as in a crash.
async fn workload(fs: &Fs, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let root = fs.root();
    for _ in 0..300 {
        let mut dir = root;
        if rng.random_bool(0.5)
            && let Ok(i) = fs
                .lookup(root, NAMES[rng.random_range(0..4)].as_bytes())
                .await
            && i.kind() == FileKind::Dir
        {
            dir = i.ino;
        }
        let name = NAMES[rng.random_range(0..4)].as_bytes();
        let _ = match rng.random_range(0..8) {
            0 => fs.mknod(U, dir, name, 0o644, 0).await.map(|_| ()),
            1 => fs.mkdir(U, dir, name, 0o755).await.map(|_| ()),
            2 => fs.unlink(dir, name).await,
            3 => fs.rmdir(dir, name).await,
            4 => {
                let to = NAMES[rng.random_range(0..4)].as_bytes();
                fs.rename(
                    dir,
                    name,
                    root,
                    to,
                    [0, RENAME_EXCHANGE][rng.random_range(0..2)],
                )
                .await
            }
            5 => match fs.lookup(dir, name).await {
                Ok(i) if i.kind() == FileKind::File => fs.link(i.ino, root, b"l").await.map(|_| ()),
                _ => Ok(()),
            },
            6 => match fs.create(U, dir, name, 0o644, libc::O_RDWR).await {
                // Keep it open and unlink it: an orphan if we crash before the release.
                Ok((i, fh)) => {
                    let _ = fs
                        .write(U, i.ino, fh, 0, Bytes::from(vec![3u8; 10_000]))
                        .await;
                    fs.unlink(dir, name).await
                }
                Err(e) => Err(e),
            },
            _ => match fs.lookup(dir, name).await {
                Ok(i) if i.kind() == FileKind::File => fs
                    .setattr(
                        U,
                        i.ino,
                        SetAttr {
                            size: Some(rng.random_range(0..50_000)),
                            ..Default::default()
                        },
                    )
                    .await
                    .map(|_| ()),
                _ => Ok(()),
            },
        };
    }
}

#[tokio::test]
async fn every_crash_point_leaves_a_consistent_tree() {
    for seed in 0..3u64 {
        // Count the batches of the full run, then crash after each prefix of them.
        let full = Arc::new(MemStore::new());
        let fs = Fs::mount(full.clone(), FsOptions::default()).await.unwrap();
        workload(&fs, seed).await;
        let total = full.applied_batches();
        assert!(total > 50, "workload too small: {total} batches");
        for limit in 1..=total {
            let mem = Arc::new(MemStore::new());
            let crashing = Arc::new(CrashAfter {
                inner: mem.clone(),
                limit,
                seen: AtomicU64::new(0),
            });
            let fs = Fs::mount(crashing, FsOptions::default()).await.unwrap();
            workload(&fs, seed).await;
            drop(fs);
            let fs = Fs::mount(mem.clone(), FsOptions::default()).await.unwrap();
            let reached = check(&fs).await;
            assert_eq!(
                mem.stats().objects as usize,
                reached + 2,
                "seed {seed}, crash after batch {limit}: leaked objects"
            );
        }
    }
}
