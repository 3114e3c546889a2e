//! The fs on the real pool (mirror of two in-memory block devices) instead of the MemStore
//! double: namespace, data, xattrs and orphans, across a pool export/import.

use bytes::Bytes;
use ingot_fs::*;
use ingot_hal::blockdev::{BlockDevice, MemBlockDevice};
use ingot_pool::engine::{ImportOptions, Pool, PoolConfig, PoolLayout};
use ingot_pool::store::ObjectStore;
use std::sync::Arc;
use std::time::Duration;

const U: Ctx = Ctx {
    uid: 1000,
    gid: 1000,
};

fn devs() -> Vec<Arc<dyn BlockDevice>> {
    (0..2)
        .map(|i| {
            Arc::new(MemBlockDevice::new(format!("m{i}"), 4096, 64 * 256)) as Arc<dyn BlockDevice>
        })
        .collect()
}

fn cfg() -> PoolConfig {
    let mut c = PoolConfig::new("tank", PoolLayout::Mirror);
    c.tunables.txg_interval = Duration::from_secs(3600);
    c.tunables.idle_commit = Duration::ZERO;
    c.kdf = ingot_pool::crypto::KdfParams::FAST_INSECURE;
    c
}

#[tokio::test]
async fn fs_on_the_real_pool_survives_export_and_import() {
    let devs = devs();
    let pool = Arc::new(Pool::create(devs.clone(), cfg()).await.unwrap());
    let fs = Fs::mount(pool.clone(), FsOptions::default()).await.unwrap();
    let root = fs.root();
    let d = fs.mkdir(U, root, b"dir", 0o755).await.unwrap();
    let (f, fh) = fs
        .create(U, d.ino, b"file", 0o644, libc::O_RDWR)
        .await
        .unwrap();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    for (n, c) in data.chunks(1 << 20).enumerate() {
        fs.write(U, f.ino, fh, (n << 20) as u64, Bytes::copy_from_slice(c))
            .await
            .unwrap();
    }
    fs.write(U, f.ino, fh, 100, Bytes::from_static(b"in place"))
        .await
        .unwrap();
    fs.fallocate(
        f.ino,
        1 << 20,
        4096,
        FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
    )
    .await
    .unwrap();
    fs.release(fh).await.unwrap();
    fs.setxattr(U, f.ino, b"user.k", b"v", 0).await.unwrap();
    fs.link(f.ino, root, b"hard").await.unwrap();
    fs.symlink(U, root, b"sym", b"dir/file").await.unwrap();
    for i in 0..300 {
        fs.mknod(U, d.ino, format!("e{i}").as_bytes(), 0o644, 0)
            .await
            .unwrap();
    }
    fs.rename(d.ino, b"e0", root, b"moved", 0).await.unwrap();
    fs.rename(d.ino, b"e1", d.ino, b"e2", 0).await.unwrap();
    // An unlinked file left open across the export: reclaimed at the next mount.
    let (o, _open) = fs
        .create(U, root, b"orphan", 0o644, libc::O_RDWR)
        .await
        .unwrap();
    fs.unlink(root, b"orphan").await.unwrap();
    fs.sync().await.unwrap();
    drop(fs);
    let pool = Arc::into_inner(pool).expect("fs dropped its store");
    pool.export().await.unwrap();

    let pool = Arc::new(Pool::import(devs, ImportOptions::default()).await.unwrap());
    let fs = Fs::mount(pool.clone(), FsOptions::default()).await.unwrap();
    let f2 = fs.lookup(d.ino, b"file").await.unwrap();
    assert_eq!((f2.ino, f2.size, f2.nlink), (f.ino, data.len() as u64, 2));
    let mut want = data.clone();
    want[100..108].copy_from_slice(b"in place");
    want[1 << 20..(1 << 20) + 4096].fill(0);
    let mut got = Vec::new();
    while got.len() < want.len() {
        got.extend(fs.read(f.ino, got.len() as u64, 1 << 20).await.unwrap());
    }
    assert!(got == want, "file content after import");
    assert_eq!(
        fs.getxattr(U, f.ino, b"user.k").await.unwrap().as_ref(),
        b"v"
    );
    assert_eq!(fs.lookup(root, b"hard").await.unwrap().ino, f.ino);
    let sym = fs.lookup(root, b"sym").await.unwrap();
    assert_eq!(fs.readlink(sym.ino).await.unwrap(), b"dir/file");
    let names = fs.readdir(d.ino, 0, 10_000).await.unwrap();
    assert_eq!(names.len(), 2 + 1 + 298); // ., .., file, e2..e299 (e1 renamed over e2)
    assert!(fs.lookup(root, b"moved").await.is_ok());
    assert_eq!(fs.getattr(o.ino).await.unwrap_err().errno(), libc::ENOENT);
    let st = fs.statfs();
    assert!(st.blocks > 0 && st.bfree <= st.blocks);
    let _ = pool.sync().await;
}

#[tokio::test]
async fn unlink_on_a_full_pool_succeeds_and_the_space_comes_back() {
    let devs: Vec<Arc<dyn BlockDevice>> = (0..2)
        .map(|i| {
            Arc::new(MemBlockDevice::new(format!("s{i}"), 4096, 16 * 256)) as Arc<dyn BlockDevice>
        })
        .collect();
    let mut c = cfg();
    c.compression = ingot_pool::PoolCompression::Off;
    // Small records: the last 4 KiB writes fill the pool to the last sector.
    c.record_size = 4096;
    let pool = Arc::new(Pool::create(devs.clone(), c).await.unwrap());
    let fs = Fs::mount(pool.clone(), FsOptions::default()).await.unwrap();
    let root = fs.root();
    let (f, fh) = fs
        .create(U, root, b"fill", 0o644, libc::O_RDWR)
        .await
        .unwrap();
    // Fill with decreasing chunk sizes until nothing at all is available.
    let mut off = 0u64;
    let mut x = 1u32;
    for len in [1usize << 20, 128 << 10, 4096] {
        loop {
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            match fs.write(U, f.ino, fh, off, Bytes::from(data)).await {
                Ok(_) => off += len as u64,
                Err(e) => {
                    assert_eq!(e.errno(), libc::ENOSPC, "{e}");
                    break;
                }
            }
        }
        fs.fsync(f.ino, false).await.ok();
    }
    assert!(off > 4 << 20, "only {off} bytes fit");
    let full = fs.statfs();
    assert_eq!(full.bavail, 0, "{full:?}");
    fs.release(fh).await.ok();
    // The unlink (entry, object, the directory's attributes) proceeds on the full pool.
    fs.unlink(root, b"fill").await.unwrap();
    // The kernel's reference (from the create) keeps it until forget, which deletes it.
    assert!(pool.size(f.ino).await.is_ok());
    fs.forget(f.ino, 1).await;
    assert!(matches!(
        pool.size(f.ino).await,
        Err(ingot_pool::store::StoreError::NotFound { .. })
    ));
    // Two commits with nothing else written give the space back.
    pool.sync().await.unwrap();
    pool.sync().await.unwrap();
    let after = fs.statfs();
    assert!(
        after.bavail > full.bavail + (off / 4096) / 2,
        "space did not come back: {full:?} -> {after:?}"
    );
    let (g, gh) = fs
        .create(U, root, b"after", 0o644, libc::O_RDWR)
        .await
        .unwrap();
    fs.write(U, g.ino, gh, 0, Bytes::from(vec![5u8; 2 << 20]))
        .await
        .unwrap();
    fs.release(gh).await.unwrap();
    fs.sync().await.unwrap();
}
