//! Scrub throughput on RAM devices, against raw sequential reads of the same devices.
//!
//! `cargo bench -p ingot-pool --bench scrub` (harness = false). For each layout: fill a pool
//! with incompressible data, scrub it (every column and copy read, crc32c checked), then read
//! the same number of bytes per device straight from the devices in 1 MiB chunks (all devices
//! concurrently). Each is timed 5 times and the best kept. Prints device bytes/s of both and
//! their ratio. `SCRUB_BENCH_MIB` sets the
//! data written (default 256).

use bytes::Bytes;
use futures::future::join_all;
use ingot_hal::blockdev::{BlockDevice, MemBlockDevice};
use ingot_pool::PoolCompression;
use ingot_pool::engine::scrub::{ScrubOptions, ScrubState};
use ingot_pool::engine::{Pool, PoolConfig, PoolLayout};
use ingot_pool::store::{ObjectStore, Op};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;
use std::time::Instant;

const DATA_AREA: u64 = 16 * 1024;
const CHUNK: usize = 1 << 20;
const REPEAT: usize = 5;

async fn case(layout: PoolLayout, n: usize, copies: u64, mib: u64) {
    let dev_mib = mib * 2 * copies / n as u64 + 64;
    let devs: Vec<Arc<dyn BlockDevice>> = (0..n)
        .map(|i| {
            Arc::new(MemBlockDevice::new(format!("b{i}"), 4096, dev_mib * 256))
                as Arc<dyn BlockDevice>
        })
        .collect();
    let mut cfg = PoolConfig::new("bench", layout);
    cfg.compression = PoolCompression::Off;
    let pool = Pool::create(devs.clone(), cfg).await.unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut buf = vec![0u8; 4 << 20];
    for k in 0..mib / 4 {
        rng.fill_bytes(&mut buf);
        pool.apply(vec![
            Op::Create { id: 64 + k },
            Op::Write {
                id: 64 + k,
                offset: 0,
                data: Bytes::from(buf.clone()),
            },
        ])
        .await
        .unwrap();
    }
    pool.sync_now().await.unwrap();

    // Best of REPEAT (the machine is shared; the minimum is the least disturbed run).
    let mut scrub_s = f64::MAX;
    let mut p = None;
    for _ in 0..REPEAT {
        let t = Instant::now();
        let r = pool
            .start_scrub(ScrubOptions::default())
            .await
            .unwrap()
            .wait()
            .await
            .unwrap();
        scrub_s = scrub_s.min(t.elapsed().as_secs_f64());
        p = Some(r);
    }
    let p = p.unwrap();
    assert_eq!(p.state, ScrubState::Finished);
    assert_eq!(p.errors_found, 0);
    // Bytes the scrub read from the devices: every copy of a mirror, parity included.
    let dev_bytes = p.scanned_bytes * copies;

    let per_dev = (dev_bytes / n as u64).next_multiple_of(4096);
    let mut raw_s = f64::MAX;
    let mut read = 0u64;
    for _ in 0..REPEAT {
        let t = Instant::now();
        let mut off = 0u64;
        read = 0;
        let mut bufs: Vec<Vec<u8>> = (0..n).map(|_| vec![0u8; CHUNK]).collect();
        while off < per_dev {
            let len = (per_dev - off).min(CHUNK as u64) as usize;
            let jobs = devs.iter().zip(bufs.iter_mut()).map(|(d, b)| {
                let d = d.clone();
                async move { d.read(DATA_AREA + off, &mut b[..len]).await }
            });
            for r in join_all(jobs).await {
                r.unwrap();
            }
            read += (len * n) as u64;
            off += len as u64;
        }
        raw_s = raw_s.min(t.elapsed().as_secs_f64());
    }
    let scrub_rate = dev_bytes as f64 / scrub_s / 1e6;
    let raw_rate = read as f64 / raw_s / 1e6;
    println!(
        "{:<16} data {mib} MiB  scrub {:>8.1} MB/s ({} B from devices, {:.2} s)  raw read {:>8.1} MB/s  ratio {:.2}",
        format!("{layout:?} x{n}"),
        scrub_rate,
        dev_bytes,
        scrub_s,
        raw_rate,
        scrub_rate / raw_rate
    );
    pool.export().await.unwrap();
}

fn main() {
    let mib: u64 = std::env::var("SCRUB_BENCH_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        case(PoolLayout::Mirror, 2, 2, mib).await;
        case(PoolLayout::Raidz1, 3, 1, mib).await;
        case(PoolLayout::Raidz2, 4, 1, mib).await;
    });
}
