//! Crash test of the orphan path on the real pool over fault-injecting devices: files are
//! created, kept referenced (as the kernel does), unlinked (onto the orphan list), replaced
//! by renames, and forgotten concurrently (the reaper deletes them in batches), with syncs
//! and small-dirty-limit commits in between, until a power cut at a random device operation.
//! After the cut (cached writes kept, dropped or torn at random), the pool must import, the
//! mount's orphan processing must leave an empty orphan list, a consistent tree and no
//! leaked object, and the fs must take new files and survive a clean re-import.

use bytes::Bytes;
use ingot_fs::superblock::ORPHANS_ID;
use ingot_fs::*;
use ingot_hal::blockdev::faulty::{FaultyBlockDevice, FaultyConfig, PowerRail, power_cycle};
use ingot_hal::blockdev::{BlockDevice, MemBlockDevice};
use ingot_pool::engine::{ImportOptions, Pool, PoolConfig, PoolLayout};
use ingot_pool::store::ObjectStore;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;
use std::time::Duration;

#[path = "support/tree_check.rs"]
mod tree_check;
use tree_check::check;

const U: Ctx = Ctx {
    uid: 1000,
    gid: 1000,
};

fn cfg(seed: u64) -> PoolConfig {
    let mut c = PoolConfig::new("orphans", PoolLayout::Mirror);
    c.record_size = 16 * 1024;
    c.tunables.txg_interval = Duration::from_secs(3600);
    c.tunables.idle_commit = Duration::ZERO;
    // Some seeds commit inside apply too, not only at sync.
    c.tunables.dirty_limit_bytes = if seed.is_multiple_of(2) {
        64 << 10
    } else {
        64 << 20
    };
    c.kdf = ingot_pool::crypto::KdfParams::FAST_INSECURE;
    c
}

/// The workload; returns at the first error (the power cut). The kernel's references are
/// modelled: one per create and lookup, given back by forget.
async fn workload(fs: &Arc<Fs>, r: &mut ChaCha8Rng) -> FsResult<()> {
    let root = fs.root();
    let d = fs.mkdir(U, root, b"d", 0o755).await?;
    for round in 0..5u32 {
        let mut files = Vec::new();
        for i in 0..8u32 {
            let name = format!("f{round}-{i}");
            let (f, fh) = fs
                .create(U, d.ino, name.as_bytes(), 0o600, libc::O_RDWR)
                .await?;
            let len = r.random_range(0..40_000usize);
            fs.write(U, f.ino, fh, 0, Bytes::from(vec![i as u8 + 1; len]))
                .await?;
            // Attribute changes of the open file (written at its close).
            fs.setattr(
                U,
                f.ino,
                SetAttr {
                    mode: Some(0o644),
                    mtime: Some(TimeSet::Now),
                    ..Default::default()
                },
            )
            .await?;
            if r.random_bool(0.2) {
                // Left open over its unlink: deleted at its close.
                files.push((name, f.ino, Some(fh)));
            } else {
                fs.release(fh).await?;
                files.push((name, f.ino, None));
            }
        }
        if r.random_bool(0.4) {
            fs.sync().await?;
        }
        // Replace one name by a rename: the victim goes on the orphan list.
        if r.random_bool(0.5) {
            fs.rename(
                d.ino,
                files[0].0.as_bytes(),
                d.ino,
                files[1].0.as_bytes(),
                0,
            )
            .await?;
        }
        let mut forgets = Vec::new();
        for (name, ino, _) in &files {
            if r.random_bool(0.3) {
                // A second reference, as a lookup racing the unlink would take.
                match fs.lookup(d.ino, name.as_bytes()).await {
                    Ok(i) => forgets.push(i.ino),
                    Err(e) if e.errno() == libc::ENOENT => {} // renamed away
                    Err(e) => return Err(e),
                }
            }
            if r.random_bool(0.8) {
                match fs.unlink(d.ino, name.as_bytes()).await {
                    Err(e) if e.errno() == libc::ENOENT => {} // renamed away
                    other => other?,
                }
            }
            forgets.push(*ino);
        }
        if r.random_bool(0.4) {
            fs.sync().await?;
        }
        // Forgets arrive concurrently, as FUSE delivers them, while other operations go on:
        // the reaper deletes the unlinked inodes in batches beside them.
        let mut tasks = tokio::task::JoinSet::new();
        for ino in forgets {
            let fs = fs.clone();
            tasks.spawn(async move { fs.forget(ino, 1).await });
            tokio::task::yield_now().await;
        }
        for (_, _, fh) in files {
            if let Some(fh) = fh {
                fs.release(fh).await?;
            }
        }
        for i in 0..4 {
            fs.mknod(U, d.ino, format!("n{round}-{i}").as_bytes(), 0o644, 0)
                .await?;
            tokio::task::yield_now().await;
        }
        while tasks.join_next().await.is_some() {}
        if r.random_bool(0.4) {
            fs.sync().await?;
        }
    }
    fs.sync().await
}

/// One run cut at a random point; whether the workload finished before the cut.
async fn one_crash(seed: u64) -> bool {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    let rail = PowerRail::new();
    let faulty: Vec<Arc<FaultyBlockDevice>> = (0..2)
        .map(|i| {
            let media: Arc<dyn BlockDevice> =
                Arc::new(MemBlockDevice::new(format!("o{seed}d{i}"), 4096, 4096));
            Arc::new(FaultyBlockDevice::with_config(
                media,
                FaultyConfig {
                    seed: seed * 10 + i,
                    rail: Some(rail.clone()),
                    ..FaultyConfig::default()
                },
            ))
        })
        .collect();
    let devs: Vec<Arc<dyn BlockDevice>> = faulty
        .iter()
        .map(|d| d.clone() as Arc<dyn BlockDevice>)
        .collect();
    let pool = Arc::new(Pool::create(devs.clone(), cfg(seed)).await.expect("create"));
    let fs = Arc::new(
        Fs::mount(pool.clone(), FsOptions::default())
            .await
            .expect("mount"),
    );
    // A full run takes 200 to 400 device operations.
    rail.arm_after(r.random_range(0..350));
    let finished = workload(&fs, &mut r).await.is_ok();
    drop(fs);
    drop(pool);
    let refs: Vec<&FaultyBlockDevice> = faulty.iter().map(|d| d.as_ref()).collect();
    power_cycle(&refs, &mut r).await.expect("power cycle");
    rail.disarm();

    let pool = Arc::new(
        Pool::import(devs.clone(), ImportOptions::default())
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: import after the cut failed: {e}")),
    );
    let fs = Fs::mount(pool.clone(), FsOptions::default())
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: mount after the cut failed: {e}"));
    assert_eq!(fs.pending_reclaims(), 0, "seed {seed}");
    let orphans = pool.kv_scan(ORPHANS_ID, None, 10).await.unwrap();
    assert!(
        orphans.is_empty(),
        "seed {seed}: orphan records left after mount: {orphans:?}"
    );
    let reached = check(&fs).await;
    assert_eq!(
        pool.stats().objects as usize,
        reached + 2,
        "seed {seed} (workload finished: {finished}): leaked objects"
    );
    // Life goes on: a new file, a clean export and re-import.
    let (f, fh) = fs
        .create(U, fs.root(), b"after", 0o644, libc::O_RDWR)
        .await
        .unwrap();
    fs.write(U, f.ino, fh, 0, Bytes::from_static(b"after the cut"))
        .await
        .unwrap();
    fs.release(fh).await.unwrap();
    fs.sync().await.unwrap();
    drop(fs);
    let pool = Arc::into_inner(pool).expect("fs dropped its store");
    pool.export().await.unwrap();
    let pool = Arc::new(Pool::import(devs, ImportOptions::default()).await.unwrap());
    let fs = Fs::mount(pool.clone(), FsOptions::default()).await.unwrap();
    let a = fs.lookup(fs.root(), b"after").await.unwrap();
    assert_eq!(fs.read(a.ino, 0, 100).await.unwrap(), b"after the cut");
    assert_eq!(pool.stats().objects as usize, reached + 3, "seed {seed}");
    finished
}

#[tokio::test]
async fn power_cut_anywhere_in_unlink_and_forget_leaks_nothing() {
    let mut cut = 0;
    for seed in 0..48u64 {
        if !one_crash(seed).await {
            cut += 1;
        }
    }
    // Both kinds of run happen: cut in the middle, and cut after the end.
    assert!(cut > 8 && cut < 48, "{cut} of 48 runs were cut short");
}
