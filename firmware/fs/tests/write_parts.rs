//! Writes given in pieces ([`Fs::write_buffers`] + [`Fs::write_parts`]): cut at the store's
//! record boundaries, written as one batch with one op per piece, read back as one write.

use bytes::Bytes;
use ingot_fs::memstore::MemStore;
use ingot_fs::*;
use ingot_pool::store::{ObjectStore, Op};
use parking_lot::Mutex;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

#[path = "support/hooked.rs"]
mod hooked;
use hooked::Hooked;

const U: Ctx = Ctx {
    uid: 1000,
    gid: 1000,
};
const RS: u32 = 16 * 1024;

/// The data writes (offset, length) of each batch a store saw.
type Batches = Arc<Mutex<Vec<Vec<(u64, usize)>>>>;

/// A [`MemStore`] that has records of [`RS`] bytes and notes the data writes of each batch.
fn recorded() -> (Arc<Hooked>, Batches) {
    let batches = Batches::default();
    let seen = batches.clone();
    let store = Hooked::new(Arc::new(MemStore::new()))
        .record_size(RS)
        .on_apply(move |ops| {
            let writes: Vec<_> = ops
                .iter()
                .filter_map(|op| match op {
                    Op::Write { offset, data, .. } => Some((*offset, data.len())),
                    _ => None,
                })
                .collect();
            if !writes.is_empty() {
                seen.lock().push(writes);
            }
            Ok(())
        });
    (Arc::new(store), batches)
}

fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

async fn mount(store: Arc<dyn ObjectStore>) -> Fs {
    Fs::mount(store, FsOptions::default()).await.expect("mount")
}

#[tokio::test]
async fn buffers_are_cut_at_record_boundaries_of_the_file() {
    let fs = mount(recorded().0).await;
    let rs = RS as usize;
    let data = random(4 * rs + 100, 1);
    let lens = |off: u64, d: &[u8]| -> Vec<usize> {
        fs.write_buffers(off, d).iter().map(Bytes::len).collect()
    };
    // Aligned: one buffer per record, the tail in its own.
    assert_eq!(lens(0, &data), vec![rs, rs, rs, rs, 100]);
    // Starting inside a record: its rest first.
    assert_eq!(
        lens(rs as u64 + 1000, &data),
        vec![rs - 1000, rs, rs, rs, 1100]
    );
    // Within one record, or exactly one: one buffer.
    assert_eq!(lens(5, &data[..300]), vec![300]);
    assert_eq!(lens(rs as u64, &data[..rs]), vec![rs]);
    // The pieces hold the bytes in order.
    let joined: Vec<u8> = fs
        .write_buffers(777, &data)
        .iter()
        .flat_map(|b| b.iter().copied())
        .collect();
    assert_eq!(joined, data);
    // A store without records: the write's bytes in one buffer.
    let plain = mount(Arc::new(MemStore::new())).await;
    let one = plain.write_buffers(0, &data);
    assert_eq!((one.len(), one[0].len()), (1, data.len()));
}

#[tokio::test]
async fn a_write_in_pieces_is_one_batch_read_back_as_written() {
    let (store, seen) = recorded();
    let fs = Fs::mount(store.clone(), FsOptions::default())
        .await
        .unwrap();
    let (f, fh) = fs
        .create(U, fs.root(), b"f", 0o644, libc::O_RDWR)
        .await
        .unwrap();
    let rs = RS as u64;
    let data = random(3 * RS as usize + 10, 2);
    let off = rs / 2;
    let parts = fs.write_buffers(off, &data);
    seen.lock().clear();
    // Extending the file: data and size in one batch.
    let n = fs.write_parts(U, f.ino, fh, off, parts).await.unwrap();
    assert_eq!(n as usize, data.len());
    let batches = std::mem::take(&mut *seen.lock());
    assert_eq!(
        batches,
        vec![vec![
            (off, rs as usize / 2),
            (rs, rs as usize),
            (2 * rs, rs as usize),
            (3 * rs, rs as usize / 2 + 10),
        ]]
    );
    assert_eq!(
        fs.getattr(f.ino).await.unwrap().size,
        off + data.len() as u64
    );
    let got = fs.read(f.ino, off, data.len() as u32).await.unwrap();
    assert_eq!(&got[..], &data[..]);
    // Inside the file (the shared-lock path): one batch again.
    let again = random(2 * RS as usize, 3);
    let parts = fs.write_buffers(rs, &again);
    fs.write_parts(U, f.ino, fh, rs, parts).await.unwrap();
    let batches = std::mem::take(&mut *seen.lock());
    assert_eq!(
        batches,
        vec![vec![(rs, rs as usize), (2 * rs, rs as usize)]]
    );
    let got = fs.read(f.ino, rs, again.len() as u32).await.unwrap();
    assert_eq!(&got[..], &again[..]);
    // With O_APPEND the pieces go, in order, at the end whatever the offset given.
    let ah = fs
        .open(U, f.ino, libc::O_WRONLY | libc::O_APPEND)
        .await
        .unwrap();
    let size = fs.getattr(f.ino).await.unwrap().size;
    let tail = random(RS as usize + 5, 4);
    let parts = fs.write_buffers(0, &tail);
    assert_eq!(parts.len(), 2);
    fs.write_parts(U, f.ino, ah, 0, parts).await.unwrap();
    assert_eq!(
        fs.getattr(f.ino).await.unwrap().size,
        size + tail.len() as u64
    );
    let got = fs.read(f.ino, size, tail.len() as u32).await.unwrap();
    assert_eq!(&got[..], &tail[..]);
}
