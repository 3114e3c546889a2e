//! Pool throughput through the whole engine (tree, txgs, codec, vdev) on RAM devices.
//!
//! `cargo bench -p ingot-pool --bench pool_io` (harness = false). Prints one line per case:
//! throughput or IOPS, and process CPU time per byte (user + system, from /proc/self/stat),
//! plus the node cache size and the process peak RSS (which includes the RAM devices).
//! `POOL_BENCH_MIB` sets the sequential size (default 128). Each case also prints the
//! data-path counters (record cache hits/misses, dirty records flushed) and the machine's
//! load average at the end (the numbers are only comparable at similar load).

use bytes::Bytes;
use ingot_hal::blockdev::{BlockDevice, MemBlockDevice};
use ingot_pool::engine::{Pool, PoolConfig, PoolLayout};
use ingot_pool::store::{ObjectStore, Op};
use ingot_pool::{PoolCompression, crypto::KdfParams};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;
use std::time::Instant;

fn cpu_seconds() -> f64 {
    // utime and stime are fields 14 and 15 of /proc/self/stat, in clock ticks (100 Hz here).
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = s.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) + t(12)) / 100.0
}

fn peak_rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<f64>().ok())
        .map(|k| k / 1024.0)
        .unwrap_or(0.0)
}

struct Meter {
    t: Instant,
    cpu: f64,
}

impl Meter {
    fn start() -> Meter {
        Meter {
            t: Instant::now(),
            cpu: cpu_seconds(),
        }
    }
    fn report(&self, name: &str, bytes: u64, ops: u64) {
        let secs = self.t.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - self.cpu;
        println!(
            "{name:<44} {:>9.1} MB/s {:>9.0} ops/s  cpu {:>6.2} ns/B  ({:.2} s wall, {:.2} s cpu)",
            bytes as f64 / secs / 1e6,
            ops as f64 / secs,
            cpu * 1e9 / bytes as f64,
            secs,
            cpu
        );
    }
}

async fn case(label: &str, compression: PoolCompression, encrypted: bool, seq_mib: u64) {
    let dev: Arc<dyn BlockDevice> = Arc::new(MemBlockDevice::new(
        "bench",
        4096,
        (seq_mib + 256) * 256 * 2,
    ));
    let mut cfg = PoolConfig::new("bench", PoolLayout::Stripe);
    cfg.compression = compression;
    cfg.kdf = KdfParams::FAST_INSECURE;
    cfg.tunables.dirty_limit_bytes = 32 << 20;
    if encrypted {
        cfg.passphrase = Some("bench".into());
    }
    let pool = Pool::create(vec![dev], cfg).await.expect("create");
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    // Half-compressible 1 MiB buffers: 512 KiB random, then 512 KiB of text-like bytes
    // (no all-zero records, which the pool would store as holes).
    let mut chunk = vec![0u8; 1 << 20];
    rng.fill_bytes(&mut chunk[..1 << 19]);
    for (i, b) in chunk[1 << 19..].iter_mut().enumerate() {
        *b = b"the quick brown fox jumps over the lazy dog 0123456789\n"[i % 55]
            ^ ((i >> 12) as u8 & 7);
    }
    let chunk = Bytes::from(chunk);
    pool.apply(vec![Op::Create { id: 64 }])
        .await
        .expect("create object");

    let m = Meter::start();
    for i in 0..seq_mib {
        pool.apply(vec![Op::Write {
            id: 64,
            offset: i << 20,
            data: chunk.clone(),
        }])
        .await
        .expect("write");
    }
    pool.sync().await.expect("sync");
    m.report(
        &format!("{label} seq write 1 MiB (+sync)"),
        seq_mib << 20,
        seq_mib,
    );

    // Two writers on two objects at once (record data path runs outside the writer lock).
    let pool = Arc::new(pool);
    pool.apply(vec![Op::Create { id: 65 }, Op::Create { id: 66 }])
        .await
        .expect("create objects");
    let m = Meter::start();
    let half = seq_mib / 2;
    let tasks: Vec<_> = (65..67u64)
        .map(|id| {
            let p = pool.clone();
            let c = chunk.clone();
            tokio::spawn(async move {
                for i in 0..half {
                    p.apply(vec![Op::Write {
                        id,
                        offset: i << 20,
                        data: c.clone(),
                    }])
                    .await
                    .expect("write");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("writer");
    }
    pool.sync().await.expect("sync");
    m.report(
        &format!("{label} seq write 1 MiB, 2 writers (+sync)"),
        (half * 2) << 20,
        half * 2,
    );
    pool.apply(vec![Op::Delete { id: 65 }, Op::Delete { id: 66 }])
        .await
        .expect("delete");
    pool.sync().await.expect("sync");

    let mut buf = vec![0u8; 1 << 20];
    let m = Meter::start();
    for i in 0..seq_mib {
        pool.read(64, i << 20, &mut buf).await.expect("read");
    }
    m.report(&format!("{label} seq read 1 MiB"), seq_mib << 20, seq_mib);

    let span = seq_mib << 20;
    let n = 10_000u64;
    let m = Meter::start();
    let small = Bytes::from(vec![7u8; 4096]);
    for _ in 0..n {
        let off = rng.random_range(0..span / 4096) * 4096;
        pool.apply(vec![Op::Write {
            id: 64,
            offset: off,
            data: small.clone(),
        }])
        .await
        .expect("rand write");
    }
    pool.sync().await.expect("sync");
    m.report(&format!("{label} rand write 4 KiB (+sync)"), n * 4096, n);

    let n = 50_000u64;
    let mut b4 = vec![0u8; 4096];
    let m = Meter::start();
    for _ in 0..n {
        let off = rng.random_range(0..span / 4096) * 4096;
        pool.read(64, off, &mut b4).await.expect("rand read");
    }
    m.report(&format!("{label} rand read 4 KiB"), n * 4096, n);
    let d = pool.datapath_stats();
    println!(
        "{label}: record cache {} hits / {} misses ({:.0} MiB held), dirty records flushed {} at commit + {} when full, {} partial reads",
        d.record_cache.hits,
        d.record_cache.misses,
        d.record_cache.bytes as f64 / 1048576.0,
        d.flushed_at_commit,
        d.flushed_when_full,
        d.partial_reads
    );
    let st = pool.status();
    println!(
        "{label}: txg {}, used {:.1} MiB, compression ratio {:.2}, peak RSS {:.0} MiB",
        st.txg,
        st.used_bytes as f64 / 1048576.0,
        st.compression_ratio,
        peak_rss_mib()
    );
    match Arc::try_unwrap(pool) {
        Ok(p) => p.export().await.expect("export"),
        Err(_) => panic!("pool still shared"),
    }
}

fn main() {
    let mib: u64 = std::env::var("POOL_BENCH_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(128);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        case("plain", PoolCompression::Off, false, mib).await;
        case("zstd1", PoolCompression::Default, false, mib).await;
        case("zstd1+xts", PoolCompression::Default, true, mib).await;
    });
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average: {}", load.trim());
}
