//! Reads into reused buffers (`Fs::read_buf`): a buffer that held another file's data
//! comes back with exactly the bytes of the file read, holes and the tail past the
//! object's data as zeroes.

use bytes::Bytes;
use ingot_fs::memstore::MemStore;
use ingot_fs::*;
use std::sync::Arc;

const R: Ctx = Ctx::ROOT;

#[tokio::test]
async fn reused_read_buffers_never_show_old_data() {
    let store = Arc::new(MemStore::new());
    let fs = Fs::mount(store, FsOptions::default()).await.unwrap();
    let root = ingot_fs::superblock::ROOT_ID;
    let (a, fa) = fs.create(R, root, b"a", 0o644, libc::O_RDWR).await.unwrap();
    let (b, fb) = fs.create(R, root, b"b", 0o644, libc::O_RDWR).await.unwrap();
    let mib = 1usize << 20;
    fs.write(R, a.ino, fa, 0, Bytes::from(vec![0xAB; mib]))
        .await
        .unwrap();
    // b: 10 bytes at 300 000, then grown to 1 MiB by truncate: holes before and after.
    fs.write(R, b.ino, fb, 300_000, Bytes::from(vec![7u8; 10]))
        .await
        .unwrap();
    fs.setattr(
        R,
        b.ino,
        SetAttr {
            size: Some(mib as u64),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mut want = vec![0u8; mib];
    want[300_000..300_010].fill(7);
    for _ in 0..3 {
        // Fill the pool with buffers holding a's bytes, then read b into them.
        let bufs: Vec<ReadBuf> = futures_read(&fs, a.ino, mib).await;
        assert!(
            bufs.iter()
                .all(|d| d.len() == mib && d.iter().all(|&x| x == 0xAB))
        );
        drop(bufs);
        for _ in 0..4 {
            let d = fs.read_buf(b.ino, 0, mib as u32).await.unwrap();
            assert!(*d == want[..], "b read back with old bytes");
            let d = fs.read_buf(b.ino, 299_990, 100).await.unwrap();
            assert!(*d == want[299_990..300_090]);
        }
        // Past the end: empty; across the end: short.
        assert!(fs.read_buf(b.ino, mib as u64, 10).await.unwrap().is_empty());
        assert_eq!(
            fs.read_buf(b.ino, mib as u64 - 5, 4096)
                .await
                .unwrap()
                .len(),
            5
        );
        assert_eq!(fs.read(b.ino, 0, mib as u32).await.unwrap(), want);
    }
}

/// Several reads of `ino` held at once (so several pooled buffers are in use).
async fn futures_read(fs: &Fs, ino: u64, len: usize) -> Vec<ReadBuf> {
    let mut v = Vec::new();
    for _ in 0..4 {
        v.push(fs.read_buf(ino, 0, len as u32).await.unwrap());
    }
    v
}
