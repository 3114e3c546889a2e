//! Resilver on RAM devices: rebuild time against fill level, throughput against raw
//! sequential reads of the same devices, and foreground writes during a resilver.
//!
//! `cargo bench -p ingot-pool --bench resilver` (harness = false). For RAID-Z1 over three
//! devices of `RESILVER_BENCH_DEV_MIB` MiB (default 256) each:
//! - fill the pool to 10%, 50% and 90% of its capacity with incompressible data, replace
//!   column 2 by a blank device and time the resilver until it reports finished (the
//!   device is online by then);
//! - the resilver rate is the allocated bytes it walked (parity included) per second;
//!   the raw rate reads the same bytes per device straight from the devices in 1 MiB
//!   chunks, all devices concurrently; their ratio is printed;
//! - at 50%: write 64 MiB (4 MiB objects, then a sync) on the idle pool, and again while a
//!   resilver runs unthrottled; the ratio of the two write rates is printed.
//!
//! Every figure is the median of `RESILVER_BENCH_RUNS` runs (default 3), each on a fresh
//! pool. The load average is printed before and after.

use bytes::Bytes;
use futures::future::join_all;
use ingot_hal::blockdev::{BlockDevice, MemBlockDevice};
use ingot_pool::PoolCompression;
use ingot_pool::engine::scrub::ScrubState;
use ingot_pool::engine::{Pool, PoolConfig, PoolLayout, ResilverOptions};
use ingot_pool::store::{ObjectStore, Op};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;
use std::time::Instant;

const DATA_AREA: u64 = 16 * 1024;
const CHUNK: usize = 1 << 20;
const OBJECT: usize = 4 << 20;
const N: usize = 3;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn device(name: &str, mib: u64) -> Arc<dyn BlockDevice> {
    Arc::new(MemBlockDevice::new(name, 4096, mib * 256))
}

struct Filled {
    pool: Pool,
    devs: Vec<Arc<dyn BlockDevice>>,
    next: u64,
}

/// A RAID-Z1 pool filled to `pct` percent of its capacity.
async fn filled(dev_mib: u64, pct: u64, seed: u64) -> Filled {
    let devs: Vec<_> = (0..N).map(|i| device(&format!("b{i}"), dev_mib)).collect();
    let mut cfg = PoolConfig::new("bench", PoolLayout::Raidz1);
    cfg.compression = PoolCompression::Off;
    let pool = Pool::create(devs.clone(), cfg).await.unwrap();
    let target = pool.status().capacity_bytes * pct / 100;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut buf = vec![0u8; OBJECT];
    let mut k = 0;
    while pool.status().used_bytes + OBJECT as u64 <= target {
        write_object(&pool, 64 + k, &mut rng, &mut buf).await;
        k += 1;
        if k % 8 == 0 {
            pool.sync_now().await.unwrap();
        }
    }
    pool.sync_now().await.unwrap();
    Filled {
        pool,
        devs,
        next: 64 + k,
    }
}

async fn write_object(pool: &Pool, id: u64, rng: &mut ChaCha8Rng, buf: &mut [u8]) {
    rng.fill_bytes(buf);
    pool.apply(vec![
        Op::Create { id },
        Op::Write {
            id,
            offset: 0,
            data: Bytes::copy_from_slice(buf),
        },
    ])
    .await
    .unwrap();
}

/// Replace column 2 by a blank device and wait: (seconds, allocated bytes walked).
async fn resilver(f: &Filled, dev_mib: u64) -> (f64, u64) {
    let t = Instant::now();
    let h = f
        .pool
        .replace(2, device("new", dev_mib), ResilverOptions::default())
        .await
        .unwrap();
    let p = h.wait().await.unwrap();
    let s = t.elapsed().as_secs_f64();
    assert_eq!(p.state, ScrubState::Finished);
    assert_eq!(p.unrecoverable, 0);
    (s, p.total_bytes)
}

/// Seconds to read `per_dev` bytes from each device, concurrently, in 1 MiB chunks.
async fn raw_read(devs: &[Arc<dyn BlockDevice>], per_dev: u64) -> f64 {
    let t = Instant::now();
    let mut bufs: Vec<Vec<u8>> = devs.iter().map(|_| vec![0u8; CHUNK]).collect();
    let mut off = 0u64;
    while off < per_dev {
        let len = (per_dev - off).min(CHUNK as u64) as usize;
        let jobs = devs.iter().zip(bufs.iter_mut()).map(|(d, b)| {
            let d = d.clone();
            async move { d.read(DATA_AREA + off, &mut b[..len]).await }
        });
        for r in join_all(jobs).await {
            r.unwrap();
        }
        off += len as u64;
    }
    t.elapsed().as_secs_f64()
}

/// Seconds to write `mib` MiB of 4 MiB objects from `first` on and sync them.
async fn write_burst(pool: &Pool, first: u64, mib: u64, seed: u64) -> f64 {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut buf = vec![0u8; OBJECT];
    let t = Instant::now();
    for k in 0..mib / 4 {
        write_object(pool, first + k, &mut rng, &mut buf).await;
    }
    pool.sync_now().await.unwrap();
    t.elapsed().as_secs_f64()
}

fn main() {
    let dev_mib = env("RESILVER_BENCH_DEV_MIB", 256);
    let runs = env("RESILVER_BENCH_RUNS", 3).max(1) as usize;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!("load average before: {}", loadavg());
    rt.block_on(async {
        for pct in [10u64, 50, 90] {
            let mut secs = Vec::new();
            let mut rates = Vec::new();
            let mut raws = Vec::new();
            let mut walked = 0;
            for run in 0..runs {
                let f = filled(dev_mib, pct, run as u64).await;
                let (s, bytes) = resilver(&f, dev_mib).await;
                walked = bytes;
                secs.push(s);
                rates.push(bytes as f64 / s / 1e6);
                let per_dev = (bytes / N as u64).next_multiple_of(4096);
                let raw_s = raw_read(&f.devs, per_dev).await;
                raws.push((per_dev * N as u64) as f64 / raw_s / 1e6);
                f.pool.export().await.unwrap();
            }
            let (rate, raw) = (median(rates), median(raws));
            println!(
                "raidz1 x{N} {dev_mib} MiB devices, {pct:>2}% full: resilver {:.3} s median ({} MiB walked), {rate:.1} MB/s; raw read {raw:.1} MB/s; ratio {:.2}",
                median(secs),
                walked >> 20,
                rate / raw
            );
        }
        let mut idle = Vec::new();
        let mut during = Vec::new();
        let burst = 64;
        for run in 0..runs {
            let f = filled(dev_mib, 50, 100 + run as u64).await;
            idle.push(burst as f64 / write_burst(&f.pool, f.next, burst, 1).await);
            let h = f
                .pool
                .replace(2, device("new", dev_mib), ResilverOptions::default())
                .await
                .unwrap();
            let w = write_burst(&f.pool, f.next + 100, burst, 2).await;
            let overlapped = !h.is_done();
            during.push(burst as f64 / w);
            h.wait().await.unwrap();
            if !overlapped {
                println!("  (run {run}: the resilver ended before the writes did)");
            }
            f.pool.export().await.unwrap();
        }
        let (i, d) = (median(idle), median(during));
        println!(
            "foreground writes at 50% full: idle {i:.1} MiB/s, during a resilver {d:.1} MiB/s: {:.2} of normal",
            d / i
        );
    });
    println!("load average after: {}", loadavg());
}
