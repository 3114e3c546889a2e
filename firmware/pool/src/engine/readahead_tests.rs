//! Pool-level tests of sequential readahead: sequential reads return exactly the data
//! (every byte of the buffer written, holes as zeroes), records prefetched and then
//! overwritten (in a dirty record or a new extent) are never served stale, and reads that
//! do not follow one another prefetch nothing.

use super::super::config::{ImportOptions, PoolConfig};
use super::super::label::{PoolCompression, PoolLayout};
use super::super::pool::Pool;
use crate::crypto::KdfParams;
use crate::store::{ObjectStore, Op};
use bytes::Bytes;
use ingot_hal::blockdev::{BlockDevice, MemBlockDevice};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;
use std::time::Duration;

const RS: u64 = 16 * 1024;
const PASS: &str = "pw";
const CACHE: usize = 16 << 20;
/// Byte the read buffers are filled with before each read (must all be overwritten).
const POISON: u8 = 0xA5;

fn devices() -> Vec<Arc<dyn BlockDevice>> {
    (0..3)
        .map(|i| {
            Arc::new(MemBlockDevice::new(format!("ra{i}"), 4096, 16 * 256)) as Arc<dyn BlockDevice>
        })
        .collect()
}

async fn pool() -> (Pool, Vec<Arc<dyn BlockDevice>>) {
    let devs = devices();
    let mut c = PoolConfig::new("ra", PoolLayout::Raidz1);
    c.record_size = RS as u32;
    c.compression = PoolCompression::Default;
    c.kdf = KdfParams::FAST_INSECURE;
    c.passphrase = Some(PASS.into());
    c.tunables.txg_interval = Duration::from_secs(3600);
    c.tunables.idle_commit = Duration::ZERO;
    c.tunables.record_cache_bytes = CACHE;
    let p = Pool::create(devs.clone(), c).await.expect("create");
    (p, devs)
}

/// Export and import again: the record cache starts cold.
async fn reimport(p: Pool, devs: &[Arc<dyn BlockDevice>]) -> Pool {
    p.export().await.expect("export");
    let mut o = ImportOptions {
        passphrase: Some(PASS.into()),
        ..ImportOptions::default()
    };
    o.tunables.txg_interval = Duration::from_secs(3600);
    o.tunables.idle_commit = Duration::ZERO;
    o.tunables.record_cache_bytes = CACHE;
    Pool::import(devs.to_vec(), o).await.expect("import")
}

/// Records alternating compressible text and random bytes (stored zstd and raw).
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut v);
    for (i, b) in v.iter_mut().enumerate() {
        if (i / RS as usize).is_multiple_of(2) {
            *b = b"readahead stream "[i % 17] ^ (seed as u8 & 3);
        }
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

/// Read `len` bytes at `off` into a poisoned buffer.
async fn read_at(p: &Pool, id: u64, off: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![POISON; len];
    let n = p.read(id, off, &mut buf).await.expect("read");
    buf.truncate(n);
    buf
}

/// Let the prefetch tasks finish (the test runtime runs them when this task yields).
async fn settle(p: &Pool) {
    for _ in 0..100_000 {
        if p.inner.datapath.readahead.inflight_bytes() == 0 {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("prefetches did not finish");
}

#[tokio::test]
async fn sequential_reads_after_prefetch_return_exactly_the_data() {
    let (p, devs) = pool().await;
    let size = 128 * RS as usize;
    let data = pattern(size, 1);
    p.apply(vec![Op::Create { id: 64 }, Op::Create { id: 65 }])
        .await
        .unwrap();
    write(&p, 64, 0, &data).await;
    // A sparse object: records 0 and 5 written, a short tail in record 9.
    write(&p, 65, 0, &data[..RS as usize]).await;
    write(&p, 65, 5 * RS, &data[..RS as usize]).await;
    write(&p, 65, 9 * RS, &data[..100]).await;
    p.sync().await.unwrap();
    let p = reimport(p, &devs).await;

    // 64 KiB reads (4 records), then an unaligned tail.
    let chunk = 4 * RS as usize;
    for off in (0..size).step_by(chunk) {
        let got = read_at(&p, 64, off as u64, chunk).await;
        assert!(got == data[off..off + chunk], "bytes at {off}");
    }
    let s = p.datapath_stats().record_cache;
    assert!(s.prefetched > 0, "{s:?}");
    assert!(s.prefetch_hits > 0, "{s:?}");
    assert!(s.prefetch_hits <= s.prefetched);
    settle(&p).await;

    let mut want = vec![0u8; 9 * RS as usize + 100];
    want[..RS as usize].copy_from_slice(&data[..RS as usize]);
    want[5 * RS as usize..6 * RS as usize].copy_from_slice(&data[..RS as usize]);
    want[9 * RS as usize..].copy_from_slice(&data[..100]);
    let mut got = Vec::new();
    for off in (0..want.len()).step_by(RS as usize / 2) {
        got.extend(read_at(&p, 65, off as u64, RS as usize / 2).await);
    }
    assert!(got == want, "sparse object");
    // A read past the end stops at the size; the buffer beyond it is left alone.
    let mut buf = vec![POISON; 2 * RS as usize];
    let n = p.read(65, 9 * RS, &mut buf).await.unwrap();
    assert_eq!(n, 100);
    assert!(buf[100..].iter().all(|&b| b == POISON));
    assert!(p.verify_all().await.unwrap().errors.is_empty());
}

#[tokio::test]
async fn a_prefetched_record_overwritten_is_never_served_stale() {
    let (p, devs) = pool().await;
    let size = 64 * RS as usize;
    let mut model = pattern(size, 2);
    p.apply(vec![Op::Create { id: 64 }]).await.unwrap();
    write(&p, 64, 0, &model).await;
    p.sync().await.unwrap();
    let p = reimport(p, &devs).await;

    let chunk = 4 * RS as usize;
    // Four sequential reads: the stream asks for records 12..36 ahead of them.
    for off in (0..4 * chunk).step_by(chunk) {
        assert!(read_at(&p, 64, off as u64, chunk).await == model[off..off + chunk]);
    }
    settle(&p).await;
    let s = p.datapath_stats().record_cache;
    assert!(s.prefetched >= 16, "{s:?}");

    // Overwrite records the stream has prefetched: part of record 20 (a dirty record on
    // the old extent), all of record 24 (a new extent), part of record 40 (not yet
    // prefetched: a dirty record the stream must not read ahead from the tree).
    let edits: [(u64, Vec<u8>); 3] = [
        (20 * RS + 123, vec![7u8; 1000]),
        (24 * RS, pattern(RS as usize, 9)),
        (40 * RS + 5, vec![3u8; 10]),
    ];
    for (off, d) in &edits {
        write(&p, 64, *off, d).await;
        model[*off as usize..*off as usize + d.len()].copy_from_slice(d);
    }
    assert!(p.datapath_stats().dirty_records >= 2);
    for off in (4 * chunk..size).step_by(chunk) {
        let got = read_at(&p, 64, off as u64, chunk).await;
        assert!(
            got == model[off..off + chunk],
            "bytes at {off} before the commit"
        );
    }
    settle(&p).await;
    p.sync().await.unwrap();
    // After the commit the overwritten records are new extents; read it all again.
    for off in (0..size).step_by(chunk) {
        let got = read_at(&p, 64, off as u64, chunk).await;
        assert!(
            got == model[off..off + chunk],
            "bytes at {off} after the commit"
        );
    }
    settle(&p).await;
    let p = reimport(p, &devs).await;
    for off in (0..size).step_by(chunk) {
        let got = read_at(&p, 64, off as u64, chunk).await;
        assert!(
            got == model[off..off + chunk],
            "bytes at {off} after import"
        );
    }
    settle(&p).await;
    assert!(p.verify_all().await.unwrap().errors.is_empty());
}

#[tokio::test]
async fn reads_that_do_not_follow_each_other_prefetch_nothing() {
    let (p, devs) = pool().await;
    let records = 256u64;
    let data = pattern((records * RS) as usize, 3);
    p.apply(vec![Op::Create { id: 64 }]).await.unwrap();
    write(&p, 64, 0, &data).await;
    p.sync().await.unwrap();
    let p = reimport(p, &devs).await;
    // Record k * 37 (mod 256): every read is far from where the last four ended.
    for k in 0..records {
        let r = (k * 37) % records;
        let off = (r * RS) as usize;
        let got = read_at(&p, 64, off as u64 + 10, 4000).await;
        assert!(got == data[off + 10..off + 4010], "record {r}");
    }
    let s = p.datapath_stats().record_cache;
    assert_eq!(s.prefetched, 0, "{s:?}");
    assert_eq!(p.inner.datapath.readahead.inflight_bytes(), 0);
}
