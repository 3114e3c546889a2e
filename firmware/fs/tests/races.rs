//! Targeted races between the kernel-facing operations that run concurrently under FUSE:
//! lookup and open of a name racing the rename that atomically replaces it, open/release
//! racing unlink, and forget racing the deletion of unlinked inodes, with a tiny inode cache
//! so its sweep runs all the time. Every store call yields first, so tasks interleave at
//! every store access.

use bytes::Bytes;
use ingot_fs::memstore::MemStore;
use ingot_fs::*;
use ingot_pool::store::ObjectStore;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[path = "support/hooked.rs"]
mod hooked;
use hooked::Hooked;

const U: Ctx = Ctx {
    uid: 1000,
    gid: 1000,
};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .build()
        .unwrap()
}

/// An fs on a yielding `MemStore` with a tiny inode cache (its sweep runs constantly).
async fn small_cache_fs() -> (Arc<MemStore>, Arc<Fs>) {
    let store = Arc::new(MemStore::new());
    let fs = Fs::mount(
        Arc::new(Hooked::new(store.clone()).yielding(0.3)),
        FsOptions {
            cache_limit: 1,
            ..FsOptions::default()
        },
    )
    .await
    .unwrap();
    (store, Arc::new(fs))
}

/// The content every version of a file starts with: its generation number, 8 bytes.
fn content(generation: u64) -> Bytes {
    Bytes::from([generation.to_le_bytes().as_slice(), &[0xa5; 4000]].concat())
}

/// Writers replace names with `rename(tmp, name)` (always over an existing file), while
/// readers look the names up, open what they found, read it and close it, as the kernel
/// does for `open(2)`: a name that always exists must never give `ENOENT`, the inode a
/// lookup returned must stay openable until it is forgotten, and reads must see a whole
/// version.
#[test]
fn lookup_and_open_race_rename_replacing_the_name() {
    runtime().block_on(async {
        for round in 0..6u64 {
            let (store, fs) = small_cache_fs().await;
            let root = fs.root();
            const NAMES: [&[u8]; 3] = [b"a", b"b", b"c"];
            for (i, n) in NAMES.iter().enumerate() {
                let (ino, fh) = fs.create(U, root, n, 0o644, libc::O_RDWR).await.unwrap();
                fs.write(U, ino.ino, fh, 0, content(i as u64))
                    .await
                    .unwrap();
                fs.release(fh).await.unwrap();
                fs.forget(ino.ino, 1).await;
            }
            let stop = Arc::new(AtomicBool::new(false));
            let writers: Vec<_> = (0..3u64)
                .map(|w| {
                    let fs = fs.clone();
                    tokio::spawn(async move {
                        let mut rng = ChaCha8Rng::seed_from_u64(round * 10 + w);
                        for k in 0..150u64 {
                            let tmp = format!("tmp{w}");
                            let (i, fh) = fs
                                .create(U, root, tmp.as_bytes(), 0o644, libc::O_RDWR)
                                .await
                                .unwrap();
                            let generation = (w + 1) * 1_000_000 + k;
                            fs.write(U, i.ino, fh, 0, content(generation))
                                .await
                                .unwrap();
                            // Sometimes keep the handle over the rename (unlink of an open file).
                            let late = rng.random_bool(0.3);
                            if !late {
                                fs.release(fh).await.unwrap();
                            }
                            let to = NAMES[rng.random_range(0..NAMES.len())];
                            fs.rename(root, tmp.as_bytes(), root, to, 0).await.unwrap();
                            if late {
                                fs.release(fh).await.unwrap();
                            }
                            fs.forget(i.ino, 1).await;
                        }
                    })
                })
                .collect();
            let readers: Vec<_> = (0..4u64)
                .map(|r| {
                    let fs = fs.clone();
                    let stop = stop.clone();
                    tokio::spawn(async move {
                        let mut rng = ChaCha8Rng::seed_from_u64(round * 100 + r);
                        let mut n = 0u64;
                        while !stop.load(Ordering::Relaxed) {
                            let name = NAMES[rng.random_range(0..NAMES.len())];
                            let i = fs.lookup(root, name).await.unwrap_or_else(|e| {
                                panic!("lookup of {name:?}, which always exists: {e}")
                            });
                            let fh = fs.open(U, i.ino, libc::O_RDONLY).await.unwrap_or_else(|e| {
                                panic!("open of inode {} just looked up as {name:?}: {e}", i.ino)
                            });
                            let d = fs.read(i.ino, 0, 8).await.unwrap();
                            assert_eq!(d.len(), 8, "a version without its content");
                            fs.getattr(i.ino).await.unwrap();
                            fs.release(fh).await.unwrap();
                            fs.forget(i.ino, 1).await;
                            n += 1;
                        }
                        n
                    })
                })
                .collect();
            for w in writers {
                w.await.unwrap();
            }
            stop.store(true, Ordering::Relaxed);
            let mut reads = 0;
            for r in readers {
                reads += r.await.unwrap();
            }
            assert!(reads > 100, "readers barely ran ({reads})");
            // Every replaced version is gone: the three names, the root, the fixed objects.
            assert_eq!(fs.pending_reclaims(), 0);
            assert_eq!(store.stats().objects, 3 + 1 + 2, "leaked inodes");
        }
    });
}

/// Open/release racing unlink and re-create of the same names, with a tiny cache: the open
/// count must never be lost (an inode deleted while open, or kept forever after its close).
#[test]
fn open_and_release_race_unlink() {
    runtime().block_on(async {
        for round in 0..6u64 {
            let (store, fs) = small_cache_fs().await;
            let root = fs.root();
            let tasks: Vec<_> = (0..6u64)
                .map(|t| {
                    let fs = fs.clone();
                    tokio::spawn(async move {
                        let mut rng = ChaCha8Rng::seed_from_u64(round * 1000 + t);
                        let names: [&[u8]; 2] = [b"p", b"q"];
                        for _ in 0..200 {
                            let name = names[rng.random_range(0..2)];
                            match rng.random_range(0..3) {
                                0 => match fs.create(U, root, name, 0o644, libc::O_RDWR).await {
                                    Ok((i, fh)) => {
                                        fs.write(U, i.ino, fh, 0, content(t)).await.unwrap();
                                        fs.release(fh).await.unwrap();
                                        fs.forget(i.ino, 1).await;
                                    }
                                    Err(e) => assert_eq!(e.errno(), libc::EEXIST, "{e}"),
                                },
                                1 => match fs.unlink(root, name).await {
                                    Ok(()) => {}
                                    Err(e) => assert_eq!(e.errno(), libc::ENOENT, "{e}"),
                                },
                                _ => {
                                    let Ok(i) = fs.lookup(root, name).await else {
                                        continue;
                                    };
                                    let fh =
                                        fs.open(U, i.ino, libc::O_RDWR).await.unwrap_or_else(|e| {
                                            panic!("open of looked-up inode {}: {e}", i.ino)
                                        });
                                    // The data stays readable while open, unlinked or not.
                                    // (Empty if its creator has not written it yet.)
                                    let d = fs.read(i.ino, 0, 8).await.unwrap();
                                    assert!(d.is_empty() || d.len() == 8, "{} bytes", d.len());
                                    fs.write(U, i.ino, fh, 8, Bytes::from_static(b"more"))
                                        .await
                                        .unwrap();
                                    fs.release(fh).await.unwrap();
                                    fs.forget(i.ino, 1).await;
                                }
                            }
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
            let left = fs.readdir(root, 0, 100).await.unwrap().len() - 2;
            assert_eq!(fs.pending_reclaims(), 0);
            assert_eq!(
                store.stats().objects as usize,
                left + 1 + 2,
                "leaked or lost inodes"
            );
        }
    });
}
