//! Concurrency test: many tasks on a multi-threaded runtime race namespace and data operations
//! on a small shared tree. Errors from races (ENOENT, EEXIST, ...) are fine; deadlocks, panics
//! and inconsistencies are not: afterwards the tree must be self-consistent and every object
//! in the store reachable from the root.

use bytes::Bytes;
use ingot_fs::memstore::MemStore;
use ingot_fs::*;
use ingot_pool::store::ObjectStore;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
use std::sync::Arc;

#[path = "support/hooked.rs"]
mod hooked;
use hooked::Hooked;

const U: Ctx = Ctx {
    uid: 1000,
    gid: 1000,
};
const NAMES: [&str; 4] = ["a", "b", "c", "d"];

async fn worker(fs: Arc<Fs>, seed: u64, steps: usize) -> usize {
    let mut ok = 0;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let root = fs.root();
    for _ in 0..steps {
        // Pick a directory: root or one level down.
        let mut dir = root;
        if rng.random_bool(0.6)
            && let Ok(i) = fs
                .lookup(root, NAMES[rng.random_range(0..4)].as_bytes())
                .await
            && i.kind() == FileKind::Dir
        {
            dir = i.ino;
        }
        let name = NAMES[rng.random_range(0..4)].as_bytes();
        let allowed = |e: &FsError| {
            [
                libc::ENOENT,
                libc::EEXIST,
                libc::ENOTEMPTY,
                libc::EISDIR,
                libc::ENOTDIR,
                libc::EINVAL,
            ]
            .contains(&e.errno())
        };
        let r: FsResult<()> = match rng.random_range(0..8) {
            0 => fs.mknod(U, dir, name, 0o644, 0).await.map(|_| ()),
            1 => fs.mkdir(U, dir, name, 0o755).await.map(|_| ()),
            2 => fs.unlink(dir, name).await,
            3 => fs.rmdir(dir, name).await,
            4 | 5 => {
                let other = if rng.random_bool(0.5) { root } else { dir };
                let flags = [0, RENAME_NOREPLACE, RENAME_EXCHANGE][rng.random_range(0..3)];
                fs.rename(
                    dir,
                    name,
                    other,
                    NAMES[rng.random_range(0..4)].as_bytes(),
                    flags,
                )
                .await
            }
            6 => match fs.lookup(dir, name).await {
                Ok(i) if i.kind() == FileKind::File => fs
                    .link(i.ino, root, NAMES[rng.random_range(0..4)].as_bytes())
                    .await
                    .map(|_| ()),
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            },
            _ => match fs.lookup(dir, name).await {
                Ok(i) if i.kind() == FileKind::File => {
                    match fs.open(U, i.ino, libc::O_RDWR).await {
                        Ok(fh) => {
                            let off = rng.random_range(0..65_536u64);
                            let r = fs
                                .write(U, i.ino, fh, off, Bytes::from(vec![1u8; 5000]))
                                .await
                                .map(|_| ());
                            fs.release(fh).await.unwrap();
                            r
                        }
                        Err(e) => Err(e),
                    }
                }
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            },
        };
        match r {
            Ok(()) => ok += 1,
            Err(e) => assert!(allowed(&e), "unexpected error {e} ({})", e.errno()),
        }
    }
    ok
}

/// Walks the tree; checks parent pointers, directory link counts and file link counts;
/// returns the number of inodes reached.
async fn check(fs: &Fs) -> usize {
    let mut refs: HashMap<u64, u32> = HashMap::new();
    let mut stack = vec![fs.root()];
    let mut dirs = 0;
    while let Some(d) = stack.pop() {
        dirs += 1;
        let di = fs.getattr(d).await.unwrap();
        let ents = fs.readdir(d, 0, 100_000).await.unwrap();
        let mut subdirs = 0;
        for e in &ents[2..] {
            let i = fs
                .getattr(e.ino)
                .await
                .unwrap_or_else(|err| panic!("dangling entry {:?}: {err}", e.name));
            assert_eq!(i.kind(), e.kind);
            if i.kind() == FileKind::Dir {
                subdirs += 1;
                assert_eq!(i.parent, d, "parent pointer of {}", e.ino);
                stack.push(e.ino);
            } else {
                *refs.entry(e.ino).or_insert(0) += 1;
            }
        }
        assert_eq!(di.nlink, 2 + subdirs, "nlink of dir {d}");
    }
    for (&ino, &n) in &refs {
        assert_eq!(
            fs.getattr(ino).await.unwrap().nlink,
            n,
            "nlink of file {ino}"
        );
    }
    dirs + refs.len()
}

#[test]
fn racing_operations_keep_the_tree_consistent() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .build()
        .unwrap();
    rt.block_on(async {
        for round in 0..4u64 {
            let store = Arc::new(MemStore::new());
            let fs = Arc::new(
                Fs::mount(
                    Arc::new(Hooked::new(store.clone()).yielding(0.0)),
                    FsOptions::default(),
                )
                .await
                .unwrap(),
            );
            let tasks: Vec<_> = (0..8)
                .map(|t| tokio::spawn(worker(fs.clone(), round * 100 + t, 400)))
                .collect();
            let mut ok = 0;
            for t in tasks {
                ok += t.await.unwrap();
            }
            eprintln!("round {round}: {ok} of 3200 operations succeeded");
            assert!(
                ok > 800,
                "too few operations succeeded ({ok}) to exercise anything"
            );
            // The workers never forget what they looked up or created: drop those references
            // as an unmount does, which deletes the unlinked inodes they kept alive.
            fs.forget_all().await;
            let reached = check(&fs).await;
            // Fixed objects: superblock and orphan list (the root is counted in `reached`).
            assert_eq!(
                store.stats().objects as usize,
                reached + 2,
                "leaked or lost objects"
            );
            fs.sync().await.unwrap();
            let _ = store.sync().await;
        }
    });
}
