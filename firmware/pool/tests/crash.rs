//! Crash consistency: random workloads on devices with a volatile write cache, power cut at
//! a random write/flush, unflushed writes kept/lost/torn at random, then re-import.
//!
//! Checked after every crash: import succeeds; the recovered state is exactly the state
//! after some applied batch at or after the last successful sync (every synced batch is
//! present, batches are atomic and ordered, nothing torn); the keyless walk verifies every
//! node and extent; the pool accepts writes again and survives a clean re-import.
//!
//! `INGOT_CRASH_ITERS` overrides the number of crashes (default 300).

mod common;

use common::model::{self, Model};
use common::{CrashDisk, Power, rng};
use ingot_hal::blockdev::{BlockDevice, BlockError, WriteFlags};
use ingot_pool::engine::{ImportOptions, Pool, PoolConfig, PoolLayout};
use ingot_pool::store::{ObjectStore, Op};
use rand::Rng;
use std::sync::Arc;
use std::time::Duration;

const IDS: u64 = 5;

fn as_dyn(d: &[Arc<CrashDisk>]) -> Vec<Arc<dyn BlockDevice>> {
    d.iter()
        .map(|d| d.clone() as Arc<dyn BlockDevice>)
        .collect()
}

/// A device whose writes and flushes yield to the runtime once before they happen, so the
/// writes a commit issues together are in flight at the same time and the vdev's write
/// queues merge them (a merged command is one write of the crash disk: kept, lost or torn
/// as a whole at a power cut).
#[derive(Debug)]
struct Yielding(Arc<CrashDisk>);

#[async_trait::async_trait]
impl BlockDevice for Yielding {
    fn geometry(&self) -> ingot_hal::blockdev::Geometry {
        self.0.geometry()
    }
    fn identity(&self) -> ingot_hal::blockdev::DeviceIdentity {
        self.0.identity()
    }
    async fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.0.read(offset, buf).await
    }
    async fn write(&self, offset: u64, buf: &[u8], f: WriteFlags) -> Result<(), BlockError> {
        tokio::task::yield_now().await;
        self.0.write(offset, buf, f).await
    }
    async fn flush(&self) -> Result<(), BlockError> {
        tokio::task::yield_now().await;
        self.0.flush().await
    }
    async fn deallocate(&self, offset: u64, len: u64) -> Result<(), BlockError> {
        self.0.deallocate(offset, len).await
    }
    async fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), BlockError> {
        self.0.write_zeroes(offset, len).await
    }
    async fn health(&self) -> Result<ingot_hal::blockdev::HealthInfo, BlockError> {
        self.0.health().await
    }
}

fn devices(d: &[Arc<CrashDisk>], yielding: bool) -> Vec<Arc<dyn BlockDevice>> {
    if yielding {
        d.iter()
            .map(|d| Arc::new(Yielding(d.clone())) as Arc<dyn BlockDevice>)
            .collect()
    } else {
        as_dyn(d)
    }
}

async fn one_crash(seed: u64) {
    one_crash_with(seed, false).await;
}

/// One crash; `yielding`: through [`Yielding`] devices (merged writes), returning how many
/// device writes went out merged.
async fn one_crash_with(seed: u64, yielding: bool) -> u64 {
    let mut r = rng(seed);
    let power = Power::new();
    let (layout, ndev) = match seed % 4 {
        0 => (PoolLayout::Stripe, 1),
        1 => (PoolLayout::Mirror, 2),
        2 => (PoolLayout::Raidz1, 3),
        _ => (PoolLayout::Raidz2, 4),
    };
    let devs: Vec<Arc<CrashDisk>> = (0..ndev)
        .map(|i| CrashDisk::new(&format!("s{seed}d{i}"), 8 << 20, power.clone()))
        .collect();
    let mut cfg = PoolConfig::new("crash", layout);
    cfg.record_size = 16 * 1024;
    cfg.tunables.txg_interval = Duration::from_secs(3600);
    cfg.tunables.idle_commit = Duration::ZERO;
    // Small dirty limit: some commits happen inside apply, not only on sync.
    cfg.tunables.dirty_limit_bytes = if seed.is_multiple_of(3) {
        64 << 10
    } else {
        64 << 20
    };
    let pool = Pool::create(devices(&devs, yielding), cfg)
        .await
        .expect("create");
    let mut m = Model::new();
    let mut hist = vec![model::digest(&m)];
    let mut models = vec![m.clone()];
    let mut synced = 0usize;
    power.cut_after(r.random_range(1..250));
    for _ in 0..60 {
        if r.random_bool(0.25) {
            match pool.sync().await {
                Ok(()) => synced = hist.len() - 1,
                Err(_) => break,
            }
        } else {
            let ops = model::batch(&mut r, &m, IDS, 40_000);
            match pool.apply(ops.clone()).await {
                Ok(()) => {
                    for op in &ops {
                        model::apply(&mut m, op);
                    }
                    hist.push(model::digest(&m));
                    models.push(m.clone());
                }
                Err(_) => break,
            }
        }
    }
    power.cut.store(true, std::sync::atomic::Ordering::SeqCst);
    let merged = pool.merged_writes();
    drop(pool);
    for d in &devs {
        d.crash(&mut r);
    }
    let power2 = Power::new();
    let devs2: Vec<Arc<CrashDisk>> = devs.iter().map(|d| d.reboot(power2.clone())).collect();
    let pool = Pool::import(as_dyn(&devs2), ImportOptions::default())
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: import after crash failed: {e}"));
    let got = model::read_back(&pool, IDS)
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: read after crash failed: {e}"));
    let dg = model::digest(&got);
    let pos = hist.iter().rposition(|h| *h == dg);
    if pos.is_none() && std::env::var("INGOT_CRASH_DEBUG").is_ok() {
        for (j, mm) in models.iter().enumerate().skip(synced) {
            for (id, o) in mm {
                match got.get(id) {
                    None => eprintln!("model {j}: id {id} missing"),
                    Some(g) if g != o => {
                        let first = g.data.iter().zip(&o.data).position(|(a, b)| a != b);
                        eprintln!(
                            "model {j}: id {id} differs: size {} vs {}, first diff {first:?}, attr eq {}, kv eq {}",
                            g.data.len(),
                            o.data.len(),
                            g.attr == o.attr,
                            g.kv == o.kv
                        );
                    }
                    _ => {}
                }
            }
            for id in got.keys() {
                if !mm.contains_key(id) {
                    eprintln!("model {j}: extra id {id}");
                }
            }
        }
    }
    assert!(
        pos.is_some_and(|p| p >= synced),
        "seed {seed}: recovered state matches batch {pos:?}, last synced batch {synced} of {}",
        hist.len() - 1
    );
    let rep = pool.verify_all().await.expect("verify");
    assert!(rep.errors.is_empty(), "seed {seed}: {:?}", rep.errors);
    // Life goes on: write, sync, clean re-import.
    let id = 64;
    let mut ops = Vec::new();
    if !got.contains_key(&id) {
        ops.push(Op::Create { id });
    }
    ops.push(Op::Write {
        id,
        offset: 0,
        data: bytes::Bytes::from_static(b"after crash"),
    });
    pool.apply(ops).await.expect("write after crash");
    pool.export().await.expect("export after crash");
    let pool = Pool::import(as_dyn(&devs2), ImportOptions::default())
        .await
        .expect("re-import");
    let mut b = [0u8; 11];
    pool.read(id, 0, &mut b).await.expect("read");
    assert_eq!(&b, b"after crash", "seed {seed}");
    merged
}

/// The same loop on the `faulty` helper's `FaultyBlockDevice` (volatile cache with reordered,
/// torn and dropped writes at a shared power-rail cut), over RAM media.
async fn one_crash_faulty(seed: u64) {
    use ingot_hal::blockdev::MemBlockDevice;
    use ingot_hal::blockdev::faulty::{FaultyBlockDevice, FaultyConfig, PowerRail, power_cycle};
    let mut r = rng(seed ^ 0xfau64);
    let rail = PowerRail::new();
    let (layout, ndev) = match seed % 3 {
        0 => (PoolLayout::Mirror, 2),
        1 => (PoolLayout::Raidz1, 3),
        _ => (PoolLayout::Stripe, 1),
    };
    let faulty: Vec<Arc<FaultyBlockDevice>> = (0..ndev)
        .map(|i| {
            let media: Arc<dyn BlockDevice> =
                Arc::new(MemBlockDevice::new(format!("f{seed}d{i}"), 4096, 2048));
            Arc::new(FaultyBlockDevice::with_config(
                media,
                FaultyConfig {
                    seed: seed * 10 + i as u64,
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
    let mut cfg = PoolConfig::new("faulty", layout);
    cfg.record_size = 16 * 1024;
    cfg.tunables.txg_interval = Duration::from_secs(3600);
    cfg.tunables.idle_commit = Duration::ZERO;
    let pool = Pool::create(devs.clone(), cfg).await.expect("create");
    let mut m = Model::new();
    let mut hist = vec![model::digest(&m)];
    let mut synced = 0usize;
    rail.arm_after(r.random_range(0..200));
    for _ in 0..50 {
        if r.random_bool(0.25) {
            match pool.sync().await {
                Ok(()) => synced = hist.len() - 1,
                Err(_) => break,
            }
        } else {
            let ops = model::batch(&mut r, &m, IDS, 40_000);
            match pool.apply(ops.clone()).await {
                Ok(()) => {
                    for op in &ops {
                        model::apply(&mut m, op);
                    }
                    hist.push(model::digest(&m));
                }
                Err(_) => break,
            }
        }
    }
    drop(pool);
    let refs: Vec<&FaultyBlockDevice> = faulty.iter().map(|d| d.as_ref()).collect();
    power_cycle(&refs, &mut r).await.expect("power cycle");
    rail.disarm();
    let pool = Pool::import(devs.clone(), ImportOptions::default())
        .await
        .unwrap_or_else(|e| panic!("faulty seed {seed}: import after crash failed: {e}"));
    let got = model::read_back(&pool, IDS)
        .await
        .unwrap_or_else(|e| panic!("faulty seed {seed}: read after crash failed: {e}"));
    let pos = hist.iter().rposition(|h| *h == model::digest(&got));
    assert!(
        pos.is_some_and(|p| p >= synced),
        "faulty seed {seed}: recovered state matches batch {pos:?}, last synced {synced}"
    );
    let rep = pool.verify_all().await.expect("verify");
    assert!(
        rep.errors.is_empty(),
        "faulty seed {seed}: {:?}",
        rep.errors
    );
}

#[tokio::test]
async fn crash_loop_faulty_device() {
    let iters: u64 = std::env::var("INGOT_CRASH_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(|n: u64| n / 2)
        .unwrap_or(150);
    for seed in 0..iters {
        one_crash_faulty(seed).await;
    }
}

#[tokio::test]
async fn bit_rot_on_one_mirror_side_is_reconstructed_and_healed() {
    use ingot_hal::blockdev::MemBlockDevice;
    use ingot_hal::blockdev::faulty::FaultyBlockDevice;
    let faulty: Vec<Arc<FaultyBlockDevice>> = (0..2)
        .map(|i| {
            let media: Arc<dyn BlockDevice> =
                Arc::new(MemBlockDevice::new(format!("r{i}"), 4096, 2048));
            Arc::new(FaultyBlockDevice::new(media))
        })
        .collect();
    let devs: Vec<Arc<dyn BlockDevice>> = faulty
        .iter()
        .map(|d| d.clone() as Arc<dyn BlockDevice>)
        .collect();
    let mut cfg = PoolConfig::new("rot", PoolLayout::Mirror);
    cfg.record_size = 16 * 1024;
    let pool = Pool::create(devs.clone(), cfg).await.unwrap();
    let mut r = rng(99);
    let mut m = Model::new();
    for _ in 0..40 {
        let ops = model::batch(&mut r, &m, IDS, 30_000);
        pool.apply(ops.clone()).await.unwrap();
        for op in &ops {
            model::apply(&mut m, op);
        }
    }
    pool.export().await.unwrap();
    // Rot the whole data area of device 0.
    let start = ingot_pool::engine::label::LABEL_AREA;
    let end = devs[0].geometry().capacity() - start;
    faulty[0].corrupt(start, end - start, 5).await.unwrap();
    let pool = Pool::import(devs.clone(), ImportOptions::default())
        .await
        .unwrap();
    assert_eq!(model::read_back(&pool, IDS).await.unwrap(), m);
    assert!(pool.status().checksum_errors > 0, "rot not detected");
    assert!(pool.status().devices[0].errors.checksum > 0);
    drop(pool);
    // Rot device 1 now, and let a scrub (not reads) find and heal it.
    faulty[1].corrupt(start, end - start, 6).await.unwrap();
    let pool = Pool::import(devs.clone(), ImportOptions::default())
        .await
        .unwrap();
    let rep = pool.scrub().await.unwrap();
    assert!(rep.errors.is_empty(), "{:?}", rep.errors);
    assert!(rep.bad_columns > 0, "scrub found nothing: {rep:?}");
    let rep = pool.scrub().await.unwrap();
    assert_eq!(rep.bad_columns, 0, "scrub did not heal: {rep:?}");
    drop(pool);
    // Reads healed what they touched: a second import reads it all back without errors.
    let pool = Pool::import(devs, ImportOptions::default()).await.unwrap();
    assert_eq!(model::read_back(&pool, IDS).await.unwrap(), m);
    assert_eq!(
        pool.status().checksum_errors,
        0,
        "reads did not heal the bad copies"
    );
    let rep = pool.verify_all().await.unwrap();
    assert!(rep.errors.is_empty(), "{:?}", rep.errors);
}

#[tokio::test]
async fn crash_loop() {
    let iters: u64 = std::env::var("INGOT_CRASH_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    for seed in 0..iters {
        one_crash(seed).await;
    }
}

/// The crash loop with writes in flight together, so the vdev's write queues merge small
/// column writes (tree nodes issued as a window, concurrent records) into one command each:
/// a merged command torn or lost at a power cut must leave the pool as consistent as
/// separate writes would.
#[tokio::test]
async fn crash_loop_with_merged_writes() {
    let iters: u64 = std::env::var("INGOT_CRASH_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let mut merged = 0;
    for seed in 0..iters {
        merged += one_crash_with(1000 + seed, true).await;
    }
    assert!(
        merged > 0,
        "no write was merged: the test did not test merging"
    );
}

/// Invariant 4: lost and misdirected writes are caught by the checksums in the parents.
#[tokio::test]
async fn lost_and_misdirected_writes_are_caught() {
    use ingot_hal::blockdev::MemBlockDevice;
    use ingot_hal::blockdev::faulty::FaultyBlockDevice;
    let start = ingot_pool::engine::label::LABEL_AREA;
    // Single device: the newest txg's blocks are silently lost; import falls back to the
    // previous txg, whose blocks copy-on-write left intact.
    let media: Arc<dyn BlockDevice> = Arc::new(MemBlockDevice::new("lost", 4096, 2048));
    let f = Arc::new(FaultyBlockDevice::new(media));
    let devs: Vec<Arc<dyn BlockDevice>> = vec![f.clone()];
    let mut cfg = PoolConfig::new("lost", PoolLayout::Stripe);
    cfg.tunables.txg_interval = Duration::from_secs(3600);
    cfg.tunables.idle_commit = Duration::ZERO;
    let pool = Pool::create(devs.clone(), cfg).await.unwrap();
    pool.apply(vec![
        Op::Create { id: 64 },
        Op::Write {
            id: 64,
            offset: 0,
            data: bytes::Bytes::from_static(b"old"),
        },
    ])
    .await
    .unwrap();
    let t_old = pool.sync_now().await.unwrap();
    let end = f.geometry().capacity() - start;
    let rule = f.lose_writes(start, end - start);
    pool.apply(vec![Op::Write {
        id: 64,
        offset: 0,
        data: bytes::Bytes::from_static(b"new"),
    }])
    .await
    .unwrap();
    pool.sync_now().await.unwrap();
    f.remove_rule(rule);
    drop(pool);
    let p = Pool::import(devs, ImportOptions::default()).await.unwrap();
    assert_eq!(p.status().txg, t_old, "lost root write not caught");
    let mut b = [0u8; 3];
    p.read(64, 0, &mut b).await.unwrap();
    assert_eq!(&b, b"old");
    drop(p);

    // Mirror: one side misdirects its writes (lands 8 blocks off); reads notice and use the
    // other side, scrub heals the bad side.
    let faulty: Vec<Arc<FaultyBlockDevice>> = (0..2)
        .map(|i| {
            let media: Arc<dyn BlockDevice> =
                Arc::new(MemBlockDevice::new(format!("mis{i}"), 4096, 2048));
            Arc::new(FaultyBlockDevice::new(media))
        })
        .collect();
    let devs: Vec<Arc<dyn BlockDevice>> = faulty
        .iter()
        .map(|d| d.clone() as Arc<dyn BlockDevice>)
        .collect();
    let pool = Pool::create(devs.clone(), PoolConfig::new("mis", PoolLayout::Mirror))
        .await
        .unwrap();
    let end = faulty[0].geometry().capacity() - start;
    let rule = faulty[0].misdirect_writes(start, end - start - 8 * 4096, 8);
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    pool.apply(vec![
        Op::Create { id: 64 },
        Op::Write {
            id: 64,
            offset: 0,
            data: bytes::Bytes::from(data.clone()),
        },
    ])
    .await
    .unwrap();
    pool.export().await.unwrap();
    faulty[0].remove_rule(rule);
    let p = Pool::import(devs.clone(), ImportOptions::default())
        .await
        .unwrap();
    let mut got = vec![0u8; data.len()];
    p.read(64, 0, &mut got).await.unwrap();
    assert!(got == data, "misdirected write returned wrong data");
    assert!(
        p.status().checksum_errors > 0,
        "misdirected writes not noticed"
    );
    p.scrub().await.unwrap();
    let rep = p.scrub().await.unwrap();
    assert!(rep.errors.is_empty() && rep.bad_columns == 0, "{rep:?}");
}
