//! `FileBlockDevice` against real files: data round trips, sparseness, hole punching, bounds.

use ingot_hal::blockdev::{BlockDevice, BlockError, DeviceKind, FileBlockDevice, WriteFlags};
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

const BS: u32 = 4096;

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_mul(31).wrapping_add(i as u8))
        .collect()
}

#[tokio::test]
async fn roundtrip_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.img");
    let size = 64 * u64::from(BS);
    {
        let d = FileBlockDevice::create(&path, size, BS).unwrap();
        let g = d.geometry();
        assert_eq!((g.block_size, g.blocks, g.capacity()), (BS, 64, size));
        assert!(g.volatile_write_cache);
        d.write(0, &pattern(1, 8192), WriteFlags::NONE)
            .await
            .unwrap();
        d.write(40960, &pattern(2, 4096), WriteFlags::FUA)
            .await
            .unwrap();
        d.flush().await.unwrap();
        let mut b = vec![0u8; 8192];
        d.read(0, &mut b).await.unwrap();
        assert_eq!(b, pattern(1, 8192));
        let h = d.health().await.unwrap();
        assert_eq!((h.data_units_read, h.data_units_written), (1, 1));
    }
    let d = FileBlockDevice::open(&path, BS).unwrap();
    assert_eq!(d.geometry().capacity(), size);
    assert_eq!(d.path(), path.as_path());
    let mut b = vec![0u8; 4096];
    d.read(40960, &mut b).await.unwrap();
    assert_eq!(b, pattern(2, 4096));
    d.read(4096, &mut b).await.unwrap();
    assert_eq!(b, pattern(1, 8192)[4096..]);
    d.read(8192, &mut b).await.unwrap();
    assert!(
        b.iter().all(|&x| x == 0),
        "never-written block reads zeroes"
    );
    let id = d.identity();
    assert_eq!(id.kind, DeviceKind::File);
    assert_eq!(id.location, path.display().to_string());
}

#[tokio::test]
async fn created_file_is_sparse() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.img");
    let size = 1u64 << 30;
    let d = FileBlockDevice::create(&path, size, BS).unwrap();
    d.write(size - 4096, &[1u8; 4096], WriteFlags::FUA)
        .await
        .unwrap();
    let m = std::fs::metadata(&path).unwrap();
    assert_eq!(m.len(), size);
    // st_blocks counts 512-byte units actually allocated: a few KiB, not a GiB.
    assert!(
        m.blocks() * 512 < 1 << 20,
        "allocated {} bytes",
        m.blocks() * 512
    );
}

#[tokio::test]
async fn deallocate_and_write_zeroes_read_back_zeroes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("z.img");
    let d = FileBlockDevice::create(&path, 32 * u64::from(BS), BS).unwrap();
    let data = pattern(7, 16 * 4096);
    d.write(0, &data, WriteFlags::NONE).await.unwrap();
    d.flush().await.unwrap();
    d.deallocate(4096, 3 * 4096).await.unwrap();
    d.write_zeroes(8 * 4096, 2 * 4096).await.unwrap();
    let mut b = vec![0u8; 16 * 4096];
    d.read(0, &mut b).await.unwrap();
    for blk in 0..16 {
        let got = &b[blk * 4096..(blk + 1) * 4096];
        if (1..4).contains(&blk) || (8..10).contains(&blk) {
            assert!(got.iter().all(|&x| x == 0), "block {blk} should be zero");
        } else {
            assert_eq!(got, &data[blk * 4096..(blk + 1) * 4096], "block {blk}");
        }
    }
    // Zero-length requests are no-ops.
    d.deallocate(0, 0).await.unwrap();
    d.write_zeroes(0, 0).await.unwrap();
}

#[tokio::test]
async fn misaligned_and_out_of_range_are_rejected_with_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("e.img");
    let d = FileBlockDevice::create(&path, 8 * u64::from(BS), BS).unwrap();
    let loc = path.display().to_string();
    let mut b = vec![0u8; 4096];
    let e = d.read(1, &mut b).await.unwrap_err();
    assert!(matches!(e, BlockError::Misaligned { .. }), "{e}");
    assert!(e.to_string().contains(&loc), "{e}");
    let e = d.write(0, &[0u8; 100], WriteFlags::NONE).await.unwrap_err();
    assert!(matches!(e, BlockError::Misaligned { .. }), "{e}");
    let e = d.read(7 * 4096, &mut vec![0u8; 8192]).await.unwrap_err();
    assert!(matches!(e, BlockError::OutOfRange { .. }), "{e}");
    let e = d
        .write(8 * 4096, &[0u8; 4096], WriteFlags::FUA)
        .await
        .unwrap_err();
    assert!(matches!(e, BlockError::OutOfRange { .. }), "{e}");
    let e = d.deallocate(u64::MAX - 4095, 4096).await.unwrap_err();
    assert!(matches!(e, BlockError::OutOfRange { .. }), "{e}");
    let e = d.write_zeroes(4096, 4095).await.unwrap_err();
    assert!(matches!(e, BlockError::Misaligned { .. }), "{e}");
    // The file was not grown by the rejected write.
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 8 * 4096);
}

#[tokio::test]
async fn open_rounds_down_partial_block_and_rejects_non_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("odd.img");
    std::fs::write(&path, vec![3u8; 3 * 512 + 100]).unwrap();
    let d = FileBlockDevice::open(&path, 512).unwrap();
    assert_eq!(d.geometry().blocks, 3);
    let e = FileBlockDevice::open(dir.path(), 512).unwrap_err();
    assert!(
        e.to_string().contains("not a regular file or block device"),
        "{e}"
    );
    let e = FileBlockDevice::open(&path, 3000).unwrap_err();
    assert!(e.to_string().contains("block size 3000"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_do_not_interfere() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.img");
    let d = Arc::new(FileBlockDevice::create(&path, 64 * 4096, BS).unwrap());
    let mut tasks = Vec::new();
    for t in 0..16u8 {
        let d = Arc::clone(&d);
        tasks.push(tokio::spawn(async move {
            let off = u64::from(t) * 4 * 4096;
            d.write(off, &pattern(t, 4 * 4096), WriteFlags::NONE)
                .await
                .unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    d.flush().await.unwrap();
    let mut b = vec![0u8; 4 * 4096];
    for t in 0..16u8 {
        d.read(u64::from(t) * 4 * 4096, &mut b).await.unwrap();
        assert_eq!(b, pattern(t, 4 * 4096), "task {t}");
    }
}
