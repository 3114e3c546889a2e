//! Tests of the object store's data path: dirty records (sub-record writes buffered until
//! the txg commits) against truncate, punch, delete and appends; the decoded-record cache;
//! partial reads of uncompressed records; and a seeded property test of random
//! interleavings (write/truncate/punch/read/sync/export+import) against an in-memory model.

use super::super::config::{ImportOptions, PoolConfig};
use super::super::label::{PoolCompression, PoolLayout};
use super::super::pool::Pool;
use crate::crypto::KdfParams;
use crate::store::{ObjectStore, Op, StoreError};
use bytes::Bytes;
use ingot_hal::blockdev::{BlockDevice, MemBlockDevice};
use proptest::prelude::*;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const RS: u64 = 16 * 1024;
const PASS: &str = "pw";

fn devices(n: usize, mib: u64) -> Vec<Arc<dyn BlockDevice>> {
    (0..n)
        .map(|i| {
            Arc::new(MemBlockDevice::new(format!("dp{i}"), 4096, mib * 256)) as Arc<dyn BlockDevice>
        })
        .collect()
}

fn config(compression: PoolCompression, cache: usize, dirty_limit: u64) -> PoolConfig {
    let mut c = PoolConfig::new("dp", PoolLayout::Raidz1);
    c.record_size = RS as u32;
    c.compression = compression;
    c.kdf = KdfParams::FAST_INSECURE;
    c.passphrase = Some(PASS.into());
    c.tunables.txg_interval = Duration::from_secs(3600);
    c.tunables.idle_commit = Duration::ZERO;
    c.tunables.record_cache_bytes = cache;
    c.tunables.dirty_limit_bytes = dirty_limit;
    c
}

async fn pool(cache: usize) -> (Pool, Vec<Arc<dyn BlockDevice>>) {
    let devs = devices(3, 16);
    let p = Pool::create(
        devs.clone(),
        config(PoolCompression::Default, cache, 64 << 20),
    )
    .await
    .expect("create");
    (p, devs)
}

async fn reimport(p: Pool, devs: &[Arc<dyn BlockDevice>], cache: usize) -> Pool {
    p.export().await.expect("export");
    let mut o = ImportOptions {
        passphrase: Some(PASS.into()),
        ..ImportOptions::default()
    };
    o.tunables.txg_interval = Duration::from_secs(3600);
    o.tunables.idle_commit = Duration::ZERO;
    o.tunables.record_cache_bytes = cache;
    Pool::import(devs.to_vec(), o).await.expect("import")
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    // Half text (compressible), half random (stored raw when alone in a record).
    let mut v = vec![0u8; len];
    ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut v);
    for (i, b) in v.iter_mut().enumerate().take(len / 2) {
        *b = b"record path "[i % 12] ^ (seed as u8 & 3);
    }
    v
}

async fn write(p: &Pool, id: u64, off: u64, data: &[u8]) {
    p.apply(vec![Op::Write {
        id,
        offset: off,
        data: Bytes::copy_from_slice(data),
    }])
    .await
    .expect("write");
}

async fn read_all(p: &Pool, id: u64) -> Vec<u8> {
    let size = p.size(id).await.expect("size") as usize;
    let mut buf = vec![0u8; size];
    let n = p.read(id, 0, &mut buf).await.expect("read");
    assert_eq!(n, size);
    buf
}

/// Wait until no early write (write-behind) is in flight.
async fn settle(p: &Pool) {
    p.inner.datapath.write_behind.quiesce().await;
}

fn held_sectors(p: &Pool) -> u64 {
    p.inner
        .datapath
        .write_behind
        .held_sectors
        .load(std::sync::atomic::Ordering::Acquire)
}

/// New memory devices holding what `devs` hold now (a power cut with every write done).
async fn copies(devs: &[Arc<ingot_hal::blockdev::MemBlockDevice>]) -> Vec<Arc<dyn BlockDevice>> {
    let mut out = Vec::new();
    for (i, d) in devs.iter().enumerate() {
        let image = d.snapshot();
        let c = MemBlockDevice::new(format!("dp{i}"), 4096, image.len() as u64 / 4096);
        c.write(0, &image, ingot_hal::blockdev::WriteFlags::NONE)
            .await
            .expect("copy");
        out.push(Arc::new(c) as Arc<dyn BlockDevice>);
    }
    out
}

fn import_options() -> ImportOptions {
    let mut o = ImportOptions {
        passphrase: Some(PASS.into()),
        ..ImportOptions::default()
    };
    o.tunables.txg_interval = Duration::from_secs(3600);
    o.tunables.idle_commit = Duration::ZERO;
    o
}

#[tokio::test]
async fn a_record_rewritten_after_its_early_write_gets_a_new_extent_and_the_early_one_goes_back() {
    let (p, devs) = pool(1 << 20).await;
    p.apply(vec![Op::Create { id: 64 }]).await.unwrap();
    let mut want = pattern(3 * RS as usize, 1);
    write(&p, 64, 0, &want).await;
    p.sync().await.unwrap();
    let st = p.datapath_stats();
    assert_eq!((st.early_writes, st.early_linked), (3, 3), "{st:?}");
    // Record 0 written whole, written early, then rewritten whole; record 1 written whole,
    // written early, then changed in part; record 2 rewritten twice in one write batch.
    let v2 = pattern(RS as usize, 2);
    write(&p, 64, 0, &v2).await;
    write(&p, 64, RS, &v2).await;
    settle(&p).await;
    assert!(held_sectors(&p) > 0);
    let v3 = pattern(RS as usize, 3);
    write(&p, 64, 0, &v3).await;
    write(&p, 64, RS + 5, &[9u8; 100]).await;
    p.apply(vec![
        Op::Write {
            id: 64,
            offset: 2 * RS,
            data: Bytes::from(v2.clone()),
        },
        Op::Write {
            id: 64,
            offset: 2 * RS,
            data: Bytes::from(v3.clone()),
        },
    ])
    .await
    .unwrap();
    want[..RS as usize].copy_from_slice(&v3);
    want[RS as usize..2 * RS as usize].copy_from_slice(&v2);
    want[(RS + 5) as usize..(RS + 105) as usize].fill(9);
    want[2 * RS as usize..].copy_from_slice(&v3);
    assert_eq!(read_all(&p, 64).await, want);
    p.sync().await.unwrap();
    let st = p.datapath_stats();
    // Early writes: 3, then records 0 and 1 (v2), then record 0 (v3), record 1 again
    // (changed in part but still entirely written, so written early again) and record 2
    // (once per batch); linked: 3, then the last versions of records 0, 1 and 2; record 0's
    // and record 1's v2 went back.
    assert_eq!(
        (st.early_writes, st.early_linked, st.early_wasted),
        (8, 6, 2),
        "{st:?}"
    );
    assert_eq!(held_sectors(&p), 0);
    assert_eq!(read_all(&p, 64).await, want);
    // Once the frees are released, what the pool counts as used is exactly what its space
    // map says after a re-import: no early extent leaked.
    for _ in 0..3 {
        p.sync().await.unwrap();
    }
    let used = p.stats().used_bytes;
    let p = reimport(p, &devs, 1 << 20).await;
    assert_eq!(p.stats().used_bytes, used);
    assert_eq!(read_all(&p, 64).await, want);
    let rep = p.verify_all().await.unwrap();
    assert!(rep.errors.is_empty(), "{:?}", rep.errors);
    assert_eq!(rep.extents, 3);
}

#[tokio::test]
async fn a_commit_seals_partial_records_before_its_lock_and_reseals_those_changed_since() {
    let (p, devs) = pool(1 << 20).await;
    p.apply(vec![Op::Create { id: 64 }]).await.unwrap();
    let mut want = pattern(4 * RS as usize, 1);
    write(&p, 64, 0, &want).await;
    p.sync().await.unwrap();
    let base = p.datapath_stats();
    // Sub-record writes over records 0-3: each merges with its extent at commit.
    for r in 0..4u64 {
        let at = (r * RS + 100) as usize;
        write(&p, 64, at as u64, &[r as u8 + 1; 300]).await;
        want[at..at + 300].fill(r as u8 + 1);
    }
    // The commit's prologue seals all four (merged with their extents) ...
    p.inner.pre_flush().await;
    let st = p.datapath_stats();
    assert_eq!(st.early_writes - base.early_writes, 4, "{st:?}");
    assert!(held_sectors(&p) > 0);
    // ... a writer changes record 2 again before the commit takes its lock ...
    let at = (2 * RS + 5000) as usize;
    write(&p, 64, at as u64, &[0xee; 10]).await;
    want[at..at + 10].fill(0xee);
    assert_eq!(read_all(&p, 64).await, want);
    // ... so the commit links three, gives record 2's early extent back and seals it again
    // (its own prologue writes the new version early).
    p.sync().await.unwrap();
    let st = p.datapath_stats();
    assert_eq!(
        (
            st.early_writes - base.early_writes,
            st.early_linked - base.early_linked,
            st.early_wasted - base.early_wasted
        ),
        (5, 4, 1),
        "{st:?}"
    );
    assert_eq!(held_sectors(&p), 0);
    assert_eq!(read_all(&p, 64).await, want);
    for _ in 0..3 {
        p.sync().await.unwrap();
    }
    let used = p.stats().used_bytes;
    let p = reimport(p, &devs, 1 << 20).await;
    assert_eq!(p.stats().used_bytes, used, "no early extent leaked");
    assert_eq!(read_all(&p, 64).await, want);
    let rep = p.verify_all().await.unwrap();
    assert!(rep.errors.is_empty(), "{:?}", rep.errors);
}

#[tokio::test]
async fn a_crash_between_early_writes_and_the_commit_leaves_the_last_txg_and_frees_them() {
    let mems: Vec<Arc<MemBlockDevice>> = (0..3)
        .map(|i| Arc::new(MemBlockDevice::new(format!("dp{i}"), 4096, 16 * 256)))
        .collect();
    let devs: Vec<Arc<dyn BlockDevice>> = mems
        .iter()
        .map(|d| d.clone() as Arc<dyn BlockDevice>)
        .collect();
    let p = Pool::create(devs, config(PoolCompression::Default, 1 << 20, 64 << 20))
        .await
        .unwrap();
    p.apply(vec![Op::Create { id: 64 }]).await.unwrap();
    let v1 = pattern(4 * RS as usize, 11);
    write(&p, 64, 0, &v1).await;
    for _ in 0..3 {
        p.sync().await.unwrap();
    }
    let before = Pool::import(copies(&mems).await, import_options())
        .await
        .unwrap();
    let used_before = before.stats().used_bytes;
    drop(before);
    // New contents for every record and a new object, written early but not committed.
    write(&p, 64, 0, &pattern(4 * RS as usize, 12)).await;
    p.apply(vec![Op::Create { id: 65 }]).await.unwrap();
    write(&p, 65, 0, &pattern(2 * RS as usize, 13)).await;
    settle(&p).await;
    assert_eq!(p.datapath_stats().early_writes, 4 + 6);
    assert!(held_sectors(&p) > 0);
    let q = Pool::import(copies(&mems).await, import_options())
        .await
        .unwrap();
    assert_eq!(read_all(&q, 64).await, v1);
    assert!(matches!(
        q.size(65).await,
        Err(StoreError::NotFound { id: 65 })
    ));
    assert_eq!(q.stats().used_bytes, used_before);
    let rep = q.verify_all().await.unwrap();
    assert!(rep.errors.is_empty(), "{:?}", rep.errors);
    assert_eq!(rep.extents, 4);
    // The space the early writes used is free: the crashed-into pool writes over it.
    let v3 = pattern(6 * RS as usize, 14);
    write(&q, 64, 0, &v3).await;
    q.sync().await.unwrap();
    assert_eq!(read_all(&q, 64).await, v3);
    // The first pool, not crashed, commits its early writes.
    p.sync().await.unwrap();
    assert_eq!(read_all(&p, 64).await, pattern(4 * RS as usize, 12));
}

#[tokio::test]
async fn filling_the_pool_with_write_behind_ends_in_a_clean_enospc() {
    // 3 x 6 MiB, filled with incompressible records.
    let devs = devices(3, 6);
    let mut cfg = config(PoolCompression::Default, 1 << 20, 64 << 20);
    cfg.passphrase = None;
    let p = Pool::create(devs.clone(), cfg).await.unwrap();
    p.apply(vec![Op::Create { id: 64 }]).await.unwrap();
    let mut acked = Vec::new();
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let err = loop {
        let mut rec = vec![0u8; RS as usize];
        rng.fill_bytes(&mut rec);
        let r = p
            .apply(vec![Op::Write {
                id: 64,
                offset: acked.len() as u64,
                data: Bytes::from(rec.clone()),
            }])
            .await;
        match r {
            Ok(()) => acked.extend_from_slice(&rec),
            Err(e) => break e,
        }
        assert!(acked.len() < 64 << 20, "never ran out of space");
    };
    assert!(matches!(err, StoreError::NoSpace), "{err:?}");
    assert!(acked.len() >= RS as usize * 8, "{} bytes only", acked.len());
    p.sync().await.unwrap();
    assert_eq!(read_all(&p, 64).await, acked);
    let mut o = import_options();
    o.passphrase = None;
    p.export().await.unwrap();
    let p = Pool::import(devs, o).await.unwrap();
    assert_eq!(read_all(&p, 64).await, acked);
    // Deletes still work on the full pool, and the space comes back.
    p.apply(vec![Op::Delete { id: 64 }]).await.unwrap();
    for _ in 0..3 {
        p.sync().await.unwrap();
    }
    p.apply(vec![Op::Create { id: 65 }]).await.unwrap();
    write(&p, 65, 0, &acked[..4 * RS as usize]).await;
    p.sync().await.unwrap();
}

#[tokio::test]
async fn write_truncate_read_in_one_txg_and_after_reimport() {
    let (p, devs) = pool(1 << 20).await;
    p.apply(vec![Op::Create { id: 64 }]).await.unwrap();
    let full = pattern(3 * RS as usize, 1);
    write(&p, 64, 0, &full).await;
    p.sync().await.unwrap();
    // Sub-record writes stay dirty; then truncate into the middle of a dirty record.
    write(&p, 64, RS + 100, &[9u8; 300]).await;
    write(&p, 64, 2 * RS + 5, &[8u8; 10]).await;
    assert!(p.datapath_stats().dirty_records >= 2);
    p.apply(vec![Op::Truncate {
        id: 64,
        size: RS + 200,
    }])
    .await
    .unwrap();
    let mut want = full[..(RS + 200) as usize].to_vec();
    want[(RS + 100) as usize..(RS + 200) as usize].fill(9);
    assert_eq!(read_all(&p, 64).await, want);
    // Grow again: the tail past the truncation reads as zeroes, not as old data.
    p.apply(vec![Op::Truncate {
        id: 64,
        size: 3 * RS,
    }])
    .await
    .unwrap();
    want.resize(3 * RS as usize, 0);
    assert_eq!(read_all(&p, 64).await, want);
    let p = reimport(p, &devs, 1 << 20).await;
    assert_eq!(read_all(&p, 64).await, want);
    assert!(p.verify_all().await.unwrap().errors.is_empty());
}

#[tokio::test]
async fn punch_inside_a_dirty_record() {
    let (p, devs) = pool(1 << 20).await;
    p.apply(vec![Op::Create { id: 64 }]).await.unwrap();
    let mut want = pattern(2 * RS as usize, 2);
    write(&p, 64, 0, &want).await;
    p.sync().await.unwrap();
    write(&p, 64, 10, &[1u8; 5000]).await;
    want[10..5010].fill(1);
    // Punch part of the written range, a whole page and part of the base.
    p.apply(vec![Op::PunchHole {
        id: 64,
        offset: 3000,
        len: 9000,
    }])
    .await
    .unwrap();
    want[3000..12000].fill(0);
    assert_eq!(read_all(&p, 64).await, want);
    // Punch that spans two records, one of them dirty.
    write(&p, 64, RS + 7, &[2u8; 7]).await;
    want[(RS + 7) as usize..(RS + 14) as usize].fill(2);
    p.apply(vec![Op::PunchHole {
        id: 64,
        offset: RS - 100,
        len: 200,
    }])
    .await
    .unwrap();
    want[(RS - 100) as usize..(RS + 100) as usize].fill(0);
    assert_eq!(read_all(&p, 64).await, want);
    p.sync().await.unwrap();
    assert_eq!(p.datapath_stats().dirty_records, 0);
    assert_eq!(read_all(&p, 64).await, want);
    let p = reimport(p, &devs, 0).await;
    assert_eq!(read_all(&p, 64).await, want);
}

#[tokio::test]
async fn delete_with_dirty_records_frees_everything() {
    let (p, devs) = pool(1 << 20).await;
    p.apply(vec![Op::Create { id: 64 }, Op::Create { id: 65 }])
        .await
        .unwrap();
    write(&p, 64, 0, &pattern(4 * RS as usize, 3)).await;
    write(&p, 65, 0, &pattern(RS as usize, 4)).await;
    p.sync().await.unwrap();
    for k in 0..4 {
        write(&p, 64, k * RS + 1, &[5u8; 100]).await;
    }
    assert_eq!(p.datapath_stats().dirty_records, 4);
    p.apply(vec![Op::Delete { id: 64 }]).await.unwrap();
    assert_eq!(p.datapath_stats().dirty_records, 0);
    assert!(matches!(
        p.read(64, 0, &mut [0u8; 10]).await,
        Err(StoreError::NotFound { id: 64 })
    ));
    // Re-created under the same id: empty, no stale dirty data.
    p.apply(vec![
        Op::Create { id: 64 },
        Op::Truncate { id: 64, size: RS },
    ])
    .await
    .unwrap();
    assert_eq!(read_all(&p, 64).await, vec![0u8; RS as usize]);
    for _ in 0..3 {
        p.sync().await.unwrap();
    }
    let p = reimport(p, &devs, 1 << 20).await;
    assert_eq!(read_all(&p, 65).await, pattern(RS as usize, 4));
    let rep = p.verify_all().await.unwrap();
    assert!(rep.errors.is_empty(), "{:?}", rep.errors);
    // Object 65's record, the empty 64, and the tree: nothing of the deleted data.
    assert_eq!(rep.extents, 1);
}

#[tokio::test]
async fn many_small_appends() {
    let (p, devs) = pool(1 << 20).await;
    p.apply(vec![Op::Create { id: 64 }]).await.unwrap();
    let data = pattern(5 * RS as usize + 123, 5);
    // Unaligned appends of 1000 bytes, then aligned 4 KiB ones.
    let mut off = 0usize;
    while off < 2 * RS as usize {
        let n = 1000.min(data.len() - off);
        write(&p, 64, off as u64, &data[off..off + n]).await;
        off += n;
    }
    while off < data.len() {
        let n = 4096.min(data.len() - off);
        write(&p, 64, off as u64, &data[off..off + n]).await;
        off += n;
    }
    settle(&p).await;
    let st = p.datapath_stats();
    assert!(
        st.flushed_when_full >= 4 && st.early_writes >= 4,
        "records written entirely are written early (write-behind): {st:?}"
    );
    assert_eq!(read_all(&p, 64).await, data);
    let p = reimport(p, &devs, 1 << 20).await;
    assert_eq!(read_all(&p, 64).await, data);
}

#[tokio::test]
async fn without_a_cache_partial_reads_of_raw_records_decrypt_only_what_they_return() {
    let (p, _devs) = pool(0).await;
    p.apply(vec![Op::Create { id: 64 }]).await.unwrap();
    // Records 0 and 1 text (compressed), 2 and 3 random (stored raw).
    let data = pattern(4 * RS as usize, 6);
    write(&p, 64, 0, &data).await;
    p.sync().await.unwrap();
    // 4 KiB reads of raw records: only the units read are decrypted, nothing is cached.
    let mut b = vec![0u8; 4096];
    for k in 2..4u64 {
        let off = k * RS + 4096;
        p.read(64, off, &mut b).await.unwrap();
        assert_eq!(b, data[off as usize..off as usize + 4096]);
    }
    // Unaligned, across a unit boundary.
    let mut b2 = vec![0u8; 5000];
    p.read(64, 3 * RS + 3000, &mut b2).await.unwrap();
    assert_eq!(b2, data[(3 * RS + 3000) as usize..(3 * RS + 8000) as usize]);
    let s = p.datapath_stats();
    assert_eq!(s.partial_reads, 3);
    assert_eq!((s.record_cache.hits, s.record_cache.bytes), (0, 0));
    let mut whole = vec![0u8; RS as usize];
    p.read(64, 0, &mut whole).await.unwrap();
    assert_eq!(whole, data[..RS as usize]);
    assert_eq!(p.datapath_stats().record_cache.bytes, 0);
}

#[tokio::test]
async fn written_records_are_served_from_the_cache_and_never_stale() {
    let (p, devs) = pool(1 << 20).await;
    p.apply(vec![Op::Create { id: 64 }]).await.unwrap();
    // Records 0 and 1 text (compressed), 2 and 3 random (stored raw). Streaming
    // whole-record writes fill the cache at commit, by move (write-behind's copy).
    let data = pattern(4 * RS as usize, 6);
    write(&p, 64, 0, &data).await;
    let s = p.datapath_stats().record_cache;
    assert_eq!((s.inserted_by_writes, s.records), (0, 0), "{s:?}");
    p.sync().await.unwrap();
    let s = p.datapath_stats().record_cache;
    assert_eq!((s.inserted_by_writes, s.records), (4, 4), "{s:?}");
    let mut b = vec![0u8; 4096];
    for k in 0..4u64 {
        let off = k * RS + 4096;
        p.read(64, off, &mut b).await.unwrap();
        assert_eq!(b, data[off as usize..off as usize + 4096]);
    }
    let mut whole = vec![0u8; 4 * RS as usize];
    p.read(64, 0, &mut whole).await.unwrap();
    assert_eq!(whole, data);
    let s = p.datapath_stats();
    assert_eq!(
        (s.record_cache.hits, s.record_cache.misses),
        (8, 0),
        "{s:?}"
    );
    assert_eq!(s.partial_reads, 0);
    // Overwrite record 0 whole, record 1 in part (dirty, flushed at commit), punch record 2,
    // truncate into record 3: every read after each change sees the change.
    let mut want = data.clone();
    let new0 = pattern(RS as usize, 7);
    write(&p, 64, 0, &new0).await;
    want[..RS as usize].copy_from_slice(&new0);
    assert_eq!(read_all(&p, 64).await, want);
    write(&p, 64, RS + 10, &[3u8; 5000]).await;
    want[(RS + 10) as usize..(RS + 5010) as usize].fill(3);
    assert_eq!(read_all(&p, 64).await, want);
    p.sync().await.unwrap();
    assert_eq!(read_all(&p, 64).await, want);
    p.apply(vec![Op::PunchHole {
        id: 64,
        offset: 2 * RS,
        len: RS,
    }])
    .await
    .unwrap();
    want[2 * RS as usize..3 * RS as usize].fill(0);
    p.apply(vec![Op::Truncate {
        id: 64,
        size: 3 * RS + 100,
    }])
    .await
    .unwrap();
    want.truncate((3 * RS + 100) as usize);
    assert_eq!(read_all(&p, 64).await, want);
    p.sync().await.unwrap();
    assert_eq!(read_all(&p, 64).await, want);
    let s = p.datapath_stats().record_cache;
    // Records 0, 1 and 3 (rewritten at commit), nothing of freed extents.
    assert_eq!(s.records, 3, "{s:?}");
    assert!(s.bytes <= s.limit);
    let p = reimport(p, &devs, 1 << 20).await;
    assert_eq!(read_all(&p, 64).await, want);
}

#[tokio::test]
async fn a_write_of_one_record_is_cached_without_a_copy_and_charged_what_it_pins() {
    use super::super::recordcache::ENTRY_OVERHEAD;
    let (p, _devs) = pool(1 << 20).await;
    p.apply(vec![Op::Create { id: 64 }]).await.unwrap();
    // One op per record, each in a buffer of its own (as the FUSE adapter cuts them);
    // the second ends in zeroes (stored trimmed, its buffer still pinned whole).
    let one = Bytes::from(pattern(RS as usize, 21));
    let mut v = pattern(RS as usize, 22);
    v[RS as usize - 5000..].fill(0);
    let trimmed = Bytes::from(v);
    p.apply(vec![
        Op::Write {
            id: 64,
            offset: 0,
            data: one.clone(),
        },
        Op::Write {
            id: 64,
            offset: RS,
            data: trimmed.clone(),
        },
    ])
    .await
    .unwrap();
    p.sync().await.unwrap();
    // The cache holds the written buffers themselves (no copy), charged whole.
    assert!(!one.is_unique() && !trimmed.is_unique());
    let s = p.datapath_stats().record_cache;
    assert_eq!((s.inserted_by_writes, s.records), (2, 2), "{s:?}");
    assert_eq!(s.bytes, 2 * (RS + ENTRY_OVERHEAD as u64), "{s:?}");
    // Two records in one buffer: each cached as a copy, so neither pins the other.
    let two = Bytes::from(pattern(2 * RS as usize, 23));
    write_bytes(&p, 64, 2 * RS, two.clone()).await;
    p.sync().await.unwrap();
    assert!(
        two.is_unique(),
        "the cache copied the records of a shared buffer"
    );
    let s = p.datapath_stats().record_cache;
    assert_eq!((s.inserted_by_writes, s.records), (4, 4), "{s:?}");
    assert_eq!(s.bytes, 4 * (RS + ENTRY_OVERHEAD as u64), "{s:?}");
    let mut want = one.to_vec();
    want.extend_from_slice(&trimmed);
    want.extend_from_slice(&two);
    let before = p.datapath_stats().record_cache.hits;
    assert_eq!(read_all(&p, 64).await, want);
    assert_eq!(p.datapath_stats().record_cache.hits, before + 4);
    // Overwritten: the old extents are freed and their buffers given back.
    write(&p, 64, 0, &pattern(2 * RS as usize, 24)).await;
    p.sync().await.unwrap();
    assert!(one.is_unique() && trimmed.is_unique());
}

async fn write_bytes(p: &Pool, id: u64, off: u64, data: Bytes) {
    p.apply(vec![Op::Write {
        id,
        offset: off,
        data,
    }])
    .await
    .expect("write");
}

#[tokio::test]
async fn the_record_cache_stays_within_its_configured_size() {
    // 256 KiB: room for about one 16 KiB record per shard, while 2 MiB of data go through.
    let limit = 256usize << 10;
    let (p, _devs) = pool(limit).await;
    p.apply(vec![Op::Create { id: 64 }]).await.unwrap();
    let data = pattern(128 * RS as usize, 9);
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    for chunk in 0..8u64 {
        let a = (chunk * 16 * RS) as usize;
        write(&p, 64, a as u64, &data[a..a + 16 * RS as usize]).await;
        let s = p.datapath_stats().record_cache;
        assert!(s.bytes <= limit as u64, "{s:?}");
    }
    p.sync().await.unwrap();
    let mut b = vec![0u8; 4096];
    for round in 0..300 {
        let off = u64::from(rng.next_u32()) % (128 * RS - 4096);
        p.read(64, off, &mut b).await.unwrap();
        assert_eq!(b, data[off as usize..off as usize + 4096]);
        if round % 7 == 0 {
            write(&p, 64, off, &data[off as usize..off as usize + 100]).await;
        }
        let s = p.datapath_stats().record_cache;
        assert!(s.bytes <= limit as u64, "round {round}: {s:?}");
    }
    let s = p.datapath_stats().record_cache;
    assert!(s.evictions > 0 && s.hits > 0 && s.records > 0, "{s:?}");
}

#[tokio::test]
async fn a_failed_batch_leaves_dirty_records_and_the_cache_as_they_were() {
    let (p, _devs) = pool(1 << 20).await;
    p.apply(vec![Op::Create { id: 64 }]).await.unwrap();
    write(&p, 64, 0, &[1u8; 4096]).await;
    let before = p.datapath_stats();
    // The first write completes the record (encoded and cached at once), the second fails.
    let r = p
        .apply(vec![
            Op::Write {
                id: 64,
                offset: 4096,
                data: Bytes::from(vec![2u8; RS as usize - 4096]),
            },
            Op::Write {
                id: 999,
                offset: 0,
                data: Bytes::from_static(b"x"),
            },
        ])
        .await;
    assert!(matches!(r, Err(StoreError::NotFound { id: 999 })));
    let after = p.datapath_stats();
    assert_eq!(after.dirty_records, 1);
    assert_eq!(after.record_cache.bytes, before.record_cache.bytes);
    let mut want = vec![0u8; 4096];
    want.fill(1);
    assert_eq!(read_all(&p, 64).await, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_see_every_completed_write_while_commits_run() {
    let (p, _devs) = pool(64 << 10).await;
    let p = Arc::new(p);
    p.apply(vec![Op::Create { id: 64 }]).await.unwrap();
    write(&p, 64, 0, &pattern(4 * RS as usize, 8)).await;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    let stop = Arc::new(AtomicBool::new(false));
    let commits = Arc::new(AtomicU32::new(0));
    let committer = {
        let (p, stop, commits) = (p.clone(), stop.clone(), commits.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                p.sync().await.expect("sync");
                commits.fetch_add(1, Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        })
    };
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut model = pattern(4 * RS as usize, 8);
    for round in 1..=200u32 {
        if round % 25 == 0 {
            // Let at least one more commit finish before going on.
            let seen = commits.load(Ordering::Relaxed);
            while commits.load(Ordering::Relaxed) == seen {
                tokio::task::yield_now().await;
            }
        }
        let page = (rng.next_u32() % (4 * RS as u32 / 1024)) as usize;
        let bytes = [(round % 251) as u8 + 1; 1000];
        let off = page * 1024 + 7;
        let end = (off + bytes.len()).min(model.len());
        write(&p, 64, off as u64, &bytes[..end - off]).await;
        model[off..end].copy_from_slice(&bytes[..end - off]);
        // Read back at once, a neighbourhood spanning the write, while commits run.
        let a = off.saturating_sub(3000);
        let b = (end + 3000).min(model.len());
        let mut buf = vec![0u8; b - a];
        p.read(64, a as u64, &mut buf).await.unwrap();
        assert!(
            buf == model[a..b],
            "round {round}: a completed write is not visible"
        );
    }
    stop.store(true, Ordering::Relaxed);
    committer.await.unwrap();
    assert!(commits.load(Ordering::Relaxed) >= 8);
    assert_eq!(read_all(&p, 64).await, model);
}

/// One step of the property test.
#[derive(Debug, Clone)]
enum Step {
    Write {
        id: u64,
        off: u64,
        len: usize,
        seed: u64,
    },
    Truncate {
        id: u64,
        size: u64,
    },
    Punch {
        id: u64,
        off: u64,
        len: u64,
    },
    Read {
        id: u64,
        off: u64,
        len: usize,
    },
    /// A write then a write to an object that does not exist: the batch fails whole.
    FailingBatch {
        id: u64,
        off: u64,
    },
    Recreate {
        id: u64,
    },
    Sync,
    Reimport,
}

const SPAN: u64 = 5 * RS;

fn step() -> impl Strategy<Value = Step> {
    let id = 64u64..67;
    prop_oneof![
        6 => (id.clone(), 0..SPAN, 1usize..(2 * RS as usize), any::<u64>())
            .prop_map(|(id, off, len, seed)| Step::Write { id, off, len: if seed % 3 == 0 { len.min(4096) } else { len }, seed }),
        1 => (id.clone(), 0..SPAN).prop_map(|(id, size)| Step::Truncate { id, size }),
        2 => (id.clone(), 0..SPAN, 1..(2 * RS)).prop_map(|(id, off, len)| Step::Punch { id, off, len }),
        3 => (id.clone(), 0..SPAN, 1usize..(3 * RS as usize)).prop_map(|(id, off, len)| Step::Read { id, off, len }),
        1 => (id.clone(), 0..SPAN).prop_map(|(id, off)| Step::FailingBatch { id, off }),
        1 => id.prop_map(|id| Step::Recreate { id }),
        1 => Just(Step::Sync),
        1 => Just(Step::Reimport),
    ]
}

fn data_of(len: usize, seed: u64) -> Vec<u8> {
    match seed % 4 {
        // Zeroes (holes when a whole record), text, random, short runs.
        0 => vec![0u8; len],
        1 => (0..len).map(|i| b"abcdefgh"[i % 8]).collect(),
        2 => pattern(len, seed),
        _ => (0..len).map(|i| (i / 700) as u8 ^ seed as u8).collect(),
    }
}

async fn run_steps(steps: Vec<Step>, cache: usize, dirty_limit: u64) {
    let devs = devices(3, 24);
    let mut p = Pool::create(
        devs.clone(),
        config(PoolCompression::Default, cache, dirty_limit),
    )
    .await
    .expect("create");
    let mut model: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let ids: Vec<Op> = (64..67).map(|id| Op::Create { id }).collect();
    p.apply(ids).await.expect("create objects");
    for id in 64..67 {
        model.insert(id, Vec::new());
    }
    for (k, s) in steps.into_iter().enumerate() {
        match s {
            Step::Write { id, off, len, seed } => {
                let d = data_of(len, seed);
                write(&p, id, off, &d).await;
                let m = model.get_mut(&id).expect("object");
                let end = off as usize + len;
                if m.len() < end {
                    m.resize(end, 0);
                }
                m[off as usize..end].copy_from_slice(&d);
            }
            Step::Truncate { id, size } => {
                p.apply(vec![Op::Truncate { id, size }])
                    .await
                    .expect("truncate");
                model.get_mut(&id).expect("object").resize(size as usize, 0);
            }
            Step::Punch { id, off, len } => {
                p.apply(vec![Op::PunchHole {
                    id,
                    offset: off,
                    len,
                }])
                .await
                .expect("punch");
                let m = model.get_mut(&id).expect("object");
                let end = ((off + len) as usize).min(m.len());
                if (off as usize) < end {
                    m[off as usize..end].fill(0);
                }
            }
            Step::Read { id, off, len } => {
                let mut buf = vec![0xAAu8; len];
                let n = p.read(id, off, &mut buf).await.expect("read");
                let m = &model[&id];
                let want = &m[(off as usize).min(m.len())..(off as usize + len).min(m.len())];
                assert_eq!(n, want.len(), "step {k}: read length");
                assert!(
                    buf[..n] == *want,
                    "step {k}: read of {id} at {off}+{len} differs"
                );
            }
            Step::FailingBatch { id, off } => {
                let r = p
                    .apply(vec![
                        Op::Write {
                            id,
                            offset: off,
                            data: Bytes::from(vec![0xEEu8; 100]),
                        },
                        Op::Write {
                            id: 999,
                            offset: 0,
                            data: Bytes::from_static(b"x"),
                        },
                    ])
                    .await;
                assert!(matches!(r, Err(StoreError::NotFound { id: 999 })), "{r:?}");
            }
            Step::Recreate { id } => {
                p.apply(vec![Op::Delete { id }, Op::Create { id }])
                    .await
                    .expect("recreate");
                model.insert(id, Vec::new());
            }
            Step::Sync => p.sync().await.expect("sync"),
            Step::Reimport => p = reimport(p, &devs, cache).await,
        }
        let rc = p.datapath_stats().record_cache;
        assert!(
            rc.bytes <= cache as u64,
            "step {k}: cache over its bound: {rc:?}"
        );
    }
    for (id, m) in &model {
        assert!(read_all(&p, *id).await == *m, "object {id} at the end");
    }
    let p = reimport(p, &devs, cache).await;
    for (id, m) in &model {
        assert!(read_all(&p, *id).await == *m, "object {id} after re-import");
    }
    let rep = p.verify_all().await.expect("verify");
    assert!(rep.errors.is_empty(), "{:?}", rep.errors);
}

proptest! {
    #![proptest_config(crate::testutil::proptest_config(64))]
    #[test]
    fn random_interleavings_match_a_model(
        steps in proptest::collection::vec(step(), 1..60),
        cache in prop_oneof![Just(0usize), Just(64usize << 10), Just(320usize << 10), Just(4usize << 20)],
        small_dirty_limit in any::<bool>(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let limit = if small_dirty_limit { 48 << 10 } else { 64 << 20 };
        rt.block_on(run_steps(steps, cache, limit));
    }
}
