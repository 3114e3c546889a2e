//! Crash test: a store wrapper stops accepting batches after the N-th one (a crash: later
//! batches never land). For every N of a seeded workload, a fresh mount of what landed must be
//! a consistent tree with no leaked objects: each namespace operation is one batch, and
//! unlinked-but-open inodes are reclaimed from the orphan list.

use bytes::Bytes;
use ingot_fs::memstore::MemStore;
use ingot_fs::*;
use ingot_pool::store::{ObjectStore, StoreError};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[path = "support/hooked.rs"]
mod hooked;
#[path = "support/tree_check.rs"]
mod tree_check;
use hooked::Hooked;
use tree_check::check;

const U: Ctx = Ctx {
    uid: 1000,
    gid: 1000,
};
const NAMES: [&str; 4] = ["a", "b", "c", "d"];

/// The MemStore `mem` behind a store that passes it the first `limit` batches, then fails
/// every later one.
fn crash_after(mem: Arc<MemStore>, limit: u64) -> Hooked {
    let seen = AtomicU64::new(0);
    Hooked::new(mem).on_apply(move |_| {
        if seen.fetch_add(1, Ordering::SeqCst) >= limit {
            return Err(StoreError::Io {
                detail: "crashed".into(),
            });
        }
        Ok(())
    })
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
            let crashing = Arc::new(crash_after(mem.clone(), limit));
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
