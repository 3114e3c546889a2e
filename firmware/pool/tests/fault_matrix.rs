//! The fault matrix: every layout against bit rot, removed and returning devices,
//! replacement under load, power cuts during resilver and scrub, NVMe errors through the
//! simulated controller and driver, and losses beyond redundancy. Seeded and
//! deterministic; a pool never returns wrong data.

use bytes::Bytes;
use ingot_hal::blockdev::BlockDevice;
use ingot_hal::blockdev::faulty::{FaultyBlockDevice, PowerRail, power_cycle};
use ingot_pool::PoolError;
use ingot_pool::engine::scrub::{ScrubOptions, ScrubState};
use ingot_pool::engine::{
    DeviceState, ImportOptions, JobHandle, JobProgress, Pool, PoolConfig, PoolHealth, PoolLayout,
    ResilverOptions,
};
use ingot_pool::store::{ObjectStore, Op, StoreError};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::sync::Arc;

mod common;
use common::rig::{Rig, random, redundancy, rig_of, scrub};

/// Layouts with redundancy (stripe has none to lose).
const REDUNDANT: [(PoolLayout, usize); 5] = [
    (PoolLayout::Mirror, 2),
    (PoolLayout::Mirror, 3),
    (PoolLayout::Raid10, 4),
    (PoolLayout::Raidz1, 3),
    (PoolLayout::Raidz2, 4),
];

/// Device blocks (4 KiB): 16 MiB devices.
const BLOCKS: u64 = 4096;

fn disk(rail: &Arc<PowerRail>, name: &str, seed: u64) -> Arc<FaultyBlockDevice> {
    common::rig::disk(rail, name, BLOCKS, seed)
}

fn rig(n: usize) -> Rig {
    rig_of(n, BLOCKS)
}

fn config(layout: PoolLayout) -> PoolConfig {
    common::rig::config("matrix", layout)
}

/// What every object should hold.
#[derive(Default, Clone)]
struct Model(BTreeMap<u64, Vec<u8>>);

impl Model {
    /// Write object `id` (created if new) with `len` random bytes of `seed`.
    async fn put(&mut self, pool: &Pool, id: u64, seed: u64, len: usize) -> Result<(), StoreError> {
        let data = random(seed, len);
        let mut ops = Vec::new();
        if !self.0.contains_key(&id) {
            ops.push(Op::Create { id });
        }
        ops.push(Op::Truncate { id, size: 0 });
        ops.push(Op::Write {
            id,
            offset: 0,
            data: Bytes::from(data.clone()),
        });
        pool.apply(ops).await?;
        self.0.insert(id, data);
        Ok(())
    }

    async fn check(&self, pool: &Pool, what: &str) {
        for (id, want) in &self.0 {
            let mut buf = vec![0u8; want.len() + 1];
            let n = pool
                .read(*id, 0, &mut buf)
                .await
                .unwrap_or_else(|e| panic!("{what}: object {id}: {e}"));
            assert_eq!(n, want.len(), "{what}: object {id} length");
            assert!(buf[..n] == want[..], "{what}: object {id} differs");
        }
    }
}

/// Objects 64.. of 128..384 KiB.
async fn fill(pool: &Pool, model: &mut Model, objects: u64, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for k in 0..objects {
        let len = rng.random_range(32..96) * 4096;
        model.put(pool, 64 + k, seed * 1000 + k, len).await.unwrap();
    }
    pool.sync_now().await.unwrap();
}

fn state(pool: &Pool, column: usize) -> DeviceState {
    pool.status().devices[column].state
}

async fn wait_resilver(pool: &Pool) -> ingot_pool::ResilverProgress {
    let h = pool.resilver_job().expect("a resilver ran");
    let p = h.wait().await.unwrap();
    assert_eq!(p.state, ScrubState::Finished, "{p:?}");
    assert_eq!(p.unrecoverable, 0, "{p:?}");
    p
}

/// A column other than `c` whose loss the layout survives together with nothing else.
fn other_column(layout: PoolLayout, c: usize) -> usize {
    match layout {
        // Its pair partner: the one device a RAID 10 pair can then lose is `c` again;
        // pick the partner so the test proves `c` holds the data.
        PoolLayout::Raid10 => c ^ 1,
        _ => usize::from(c == 0),
    }
}

#[tokio::test]
async fn bit_rot_within_redundancy_is_repaired_and_beyond_is_eio_on_every_layout() {
    for (layout, n) in [(PoolLayout::Stripe, 2)].into_iter().chain(REDUNDANT) {
        let rig = rig(n);
        let pool = Pool::create(rig.devs.clone(), config(layout))
            .await
            .unwrap();
        let mut model = Model::default();
        fill(&pool, &mut model, 6, 1).await;
        let r = redundancy(layout, n);
        // Within redundancy: rot whole data areas of `r` devices (one per RAID 10 pair).
        let rotted: Vec<usize> = match layout {
            PoolLayout::Raid10 => vec![0, 2],
            _ => (0..r).collect(),
        };
        let (off, len) = (32768, (BLOCKS - 8) * 4096 - 32768);
        for (k, &d) in rotted.iter().enumerate() {
            rig.faulty[d]
                .corrupt(off, len, 77 + k as u64)
                .await
                .unwrap();
        }
        if r > 0 {
            let p = scrub(&pool).await;
            assert_eq!(p.unrecoverable, 0, "{layout:?}: {p:?}");
            assert!(
                p.errors_found > 0 && p.repaired == p.errors_found,
                "{layout:?}: {p:?}"
            );
            model.check(&pool, &format!("{layout:?} after rot")).await;
            let again = scrub(&pool).await;
            assert_eq!(again.errors_found, 0, "{layout:?}: repaired for good");
        }
        // Beyond redundancy: one extent loses r + 1 devices' columns (on the media: flush
        // the repairs out of the devices' write caches first).
        for d in &rig.faulty {
            d.flush().await.unwrap();
        }
        let victim = 65u64;
        let bp = pool.extent_of(victim, 0).await.unwrap().unwrap();
        let locs = pool.locate(&bp);
        let mut devices: Vec<usize> = Vec::new();
        for l in &locs {
            if devices.len() <= r && !devices.contains(&l.device) {
                devices.push(l.device);
            }
        }
        for (k, l) in locs.iter().enumerate() {
            if devices.contains(&l.device) {
                rig.faulty[l.device]
                    .corrupt(l.offset, l.len, 500 + k as u64)
                    .await
                    .unwrap();
            }
        }
        let mut buf = vec![0u8; 4096];
        let e = pool.read(victim, 0, &mut buf).await;
        assert!(e.is_err(), "{layout:?}: wrong data returned as good");
        assert!(
            pool.damaged().iter().any(|d| d.addr == bp.addr),
            "{layout:?}: damage reported"
        );
        let mut rest = model.clone();
        rest.0.remove(&victim);
        rest.check(&pool, &format!("{layout:?} others")).await;
        pool.export().await.unwrap();
    }
}

#[tokio::test]
async fn device_removed_mid_write_degrades_then_returns_with_a_partial_resilver() {
    for (layout, n) in REDUNDANT {
        let rig = rig(n);
        let pool = Pool::create(rig.devs.clone(), config(layout))
            .await
            .unwrap();
        let mut events = pool.subscribe_device_events();
        let mut model = Model::default();
        fill(&pool, &mut model, 8, 2).await;
        // What a full walk of this pool covers, for comparison below.
        let full_total = scrub(&pool).await.total_bytes;
        // Removed in the middle of a batch of writes: some land on it, some do not.
        let gone = 1usize;
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for k in 0..6u64 {
            if k == 2 {
                rig.faulty[gone].remove();
            }
            let len = rng.random_range(8..40) * 4096;
            model.put(&pool, 64 + k, 3000 + k, len).await.unwrap();
            if k % 2 == 1 {
                pool.sync_now().await.unwrap();
            }
        }
        pool.sync_now().await.unwrap();
        assert_eq!(state(&pool, gone), DeviceState::Removed, "{layout:?}");
        let st = pool.status();
        assert_eq!(st.health, PoolHealth::Degraded, "{layout:?}");
        assert!(st.devices[gone].fault_reason.is_some());
        let ev = events.try_recv().expect("a device event");
        assert_eq!((ev.column, ev.to), (gone, DeviceState::Removed));
        model.check(&pool, &format!("{layout:?} degraded")).await;
        // Writes continue degraded.
        model.put(&pool, 90, 9000, 64 * 1024).await.unwrap();
        pool.sync_now().await.unwrap();
        // It comes back: resilvered for the txgs it missed only.
        rig.faulty[gone].reinsert();
        let col = pool.reattach(rig.devs[gone].clone()).await.unwrap();
        assert_eq!(col, gone);
        let p = wait_resilver(&pool).await;
        assert!(p.from_txg > 1, "{layout:?}: partial: {p:?}");
        assert!(
            p.total_bytes < full_total,
            "{layout:?}: partial walked {} of {full_total}",
            p.total_bytes
        );
        assert_eq!(state(&pool, gone), DeviceState::Online);
        assert_eq!(pool.status().health, PoolHealth::Online);
        // The returned device now holds everything: lose another one.
        let other = other_column(layout, gone);
        rig.faulty[other].remove();
        model
            .check(&pool, &format!("{layout:?} after losing {other}"))
            .await;
        pool.export().await.unwrap();
    }
}

#[tokio::test]
async fn full_and_partial_resilver_compared() {
    let rig = rig(3);
    let pool = Pool::create(rig.devs.clone(), config(PoolLayout::Raidz1))
        .await
        .unwrap();
    let mut model = Model::default();
    fill(&pool, &mut model, 10, 4).await;
    // Full: replace column 2 by a blank device.
    let fresh = disk(&rig.rail, "new2", 40);
    let h = pool
        .replace(2, fresh.clone(), ResilverOptions::default())
        .await
        .unwrap();
    let full = h.wait().await.unwrap();
    assert_eq!(full.from_txg, 1);
    assert_eq!(state(&pool, 2), DeviceState::Online);
    // Partial: column 0 misses one small write.
    rig.faulty[0].remove();
    model.put(&pool, 200, 200, 16 * 1024).await.unwrap();
    pool.sync_now().await.unwrap();
    rig.faulty[0].reinsert();
    pool.reattach(rig.devs[0].clone()).await.unwrap();
    let partial = wait_resilver(&pool).await;
    assert!(partial.from_txg > 1);
    assert!(
        partial.total_bytes * 4 < full.total_bytes,
        "partial {} vs full {}",
        partial.total_bytes,
        full.total_bytes
    );
    // The replaced device's old occupant no longer claims the column.
    assert!(
        Pool::read_labels(rig.devs[2].as_ref())
            .await
            .iter()
            .all(|l| l.is_err())
    );
    // Lose column 1: columns 0 (partial) and 2 (full) hold everything.
    rig.faulty[1].remove();
    model.check(&pool, "after losing column 1").await;
    pool.export().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_during_a_write_workload() {
    for (layout, n) in [
        (PoolLayout::Mirror, 2),
        (PoolLayout::Raidz1, 3),
        (PoolLayout::Raidz2, 4),
    ] {
        let rig = rig(n);
        let pool = Arc::new(
            Pool::create(rig.devs.clone(), config(layout))
                .await
                .unwrap(),
        );
        let mut model = Model::default();
        fill(&pool, &mut model, 6, 5).await;
        model.check(&pool, "before").await;
        let writer = {
            let pool = pool.clone();
            let mut model = model.clone();
            tokio::spawn(async move {
                let mut rng = ChaCha8Rng::seed_from_u64(6);
                for k in 0..24u64 {
                    let id = 64 + rng.random_range(0..12);
                    let len = rng.random_range(4..32) * 4096;
                    model.put(&pool, id, 6000 + k, len).await.unwrap();
                    if k % 3 == 0 {
                        pool.sync_now().await.unwrap();
                    }
                    // Reads during the resilver see the latest data.
                    let mut buf = vec![0u8; len];
                    pool.read(id, 0, &mut buf).await.unwrap();
                    assert!(buf == model.0[&id], "{layout:?}: read during resilver");
                }
                pool.sync_now().await.unwrap();
                model
            })
        };
        let fresh = disk(&rig.rail, "fresh", 60);
        let h = pool
            .replace(
                1,
                fresh.clone(),
                ResilverOptions {
                    max_bytes_per_sec: Some(64 << 20),
                },
            )
            .await
            .unwrap();
        let model = writer.await.unwrap();
        let p = h.wait().await.unwrap();
        assert_eq!(p.state, ScrubState::Finished, "{layout:?}: {p:?}");
        // A resilver for columns that became RESILVERING meanwhile would show here.
        let p = wait_resilver(&pool).await;
        assert_eq!(p.column, 1);
        assert_eq!(state(&pool, 1), DeviceState::Online, "{layout:?}");
        model.check(&pool, &format!("{layout:?} after")).await;
        // The new device holds every block: lose the others the layout allows.
        rig.faulty[0].remove();
        model
            .check(&pool, &format!("{layout:?} after losing column 0"))
            .await;
        let verify = pool.verify_all().await.unwrap();
        assert!(verify.errors.is_empty(), "{layout:?}: {verify:?}");
        drop(pool);
    }
}

/// Let a job scan a few blocks, pause it (which saves its position), commit that, and
/// let it run on.
async fn save_position<P: JobProgress>(pool: &Pool, h: &JobHandle<P>) {
    let mut rx = h.subscribe();
    rx.wait_for(|p| p.scan().extents >= 2).await.unwrap();
    h.pause();
    rx.wait_for(|p| p.scan().state == ScrubState::Paused)
        .await
        .unwrap();
    pool.sync_now().await.unwrap();
    h.resume();
}

#[tokio::test]
async fn power_cut_during_resilver_resumes_after_import() {
    let rig = rig(3);
    let mut cfg = config(PoolLayout::Raidz1);
    cfg.tunables.txg_interval = std::time::Duration::from_secs(3600);
    cfg.tunables.idle_commit = std::time::Duration::ZERO;
    let pool = Pool::create(rig.devs.clone(), cfg.clone()).await.unwrap();
    let mut model = Model::default();
    fill(&pool, &mut model, 10, 7).await;
    let fresh = disk(&rig.rail, "fresh", 70);
    let h = pool
        .replace(
            0,
            fresh.clone(),
            ResilverOptions {
                max_bytes_per_sec: Some(1 << 20),
            },
        )
        .await
        .unwrap();
    // Let it rebuild a few blocks, then save its position (pause) and commit that.
    save_position(&pool, &h).await;
    assert!(h.progress().scanned_bytes > 0);
    let mut r = ChaCha8Rng::seed_from_u64(8);
    let mut all: Vec<&FaultyBlockDevice> = rig.faulty.iter().map(|d| d.as_ref()).collect();
    all.push(fresh.as_ref());
    power_cycle(&all, &mut r).await.unwrap();
    drop(pool);
    let mut devs = rig.devs.clone();
    devs[0] = fresh.clone();
    let opts = ImportOptions {
        tunables: cfg.tunables.clone(),
        ..ImportOptions::default()
    };
    let pool = Pool::import(devs, opts).await.unwrap();
    assert_eq!(state(&pool, 0), DeviceState::Resilvering);
    let p = wait_resilver(&pool).await;
    assert!(p.resumed_from_txg.is_some(), "resumed: {p:?}");
    assert_eq!(p.from_txg, 1);
    assert_eq!(state(&pool, 0), DeviceState::Online);
    model.check(&pool, "after the resumed resilver").await;
    rig.faulty[1].remove();
    model.check(&pool, "on the rebuilt device").await;
}

#[tokio::test]
async fn power_cut_during_scrub_resumes_after_import() {
    let rig = rig(4);
    let mut cfg = config(PoolLayout::Raidz2);
    cfg.tunables.txg_interval = std::time::Duration::from_secs(3600);
    cfg.tunables.idle_commit = std::time::Duration::ZERO;
    let pool = Pool::create(rig.devs.clone(), cfg.clone()).await.unwrap();
    let mut model = Model::default();
    fill(&pool, &mut model, 10, 9).await;
    let h = pool
        .start_scrub(ScrubOptions {
            max_bytes_per_sec: Some(1 << 20),
            restart: false,
        })
        .await
        .unwrap();
    save_position(&pool, &h).await;
    let mut r = ChaCha8Rng::seed_from_u64(10);
    let all: Vec<&FaultyBlockDevice> = rig.faulty.iter().map(|d| d.as_ref()).collect();
    power_cycle(&all, &mut r).await.unwrap();
    drop(h);
    drop(pool);
    let opts = ImportOptions {
        tunables: cfg.tunables.clone(),
        ..ImportOptions::default()
    };
    let pool = Pool::import(rig.devs.clone(), opts).await.unwrap();
    let p = scrub(&pool).await;
    assert_eq!(p.state, ScrubState::Finished);
    assert!(p.resumed_from_txg.is_some(), "resumed: {p:?}");
    assert_eq!(p.unrecoverable, 0);
    model.check(&pool, "after the resumed scrub").await;
}

#[tokio::test]
async fn beyond_redundancy_suspends_and_never_returns_wrong_data() {
    let rig = rig(3);
    let pool = Pool::create(rig.devs.clone(), config(PoolLayout::Raidz1))
        .await
        .unwrap();
    let mut model = Model::default();
    fill(&pool, &mut model, 6, 11).await;
    let before = model.clone();
    rig.faulty[0].remove();
    rig.faulty[2].remove();
    // The next write finds them gone.
    let r = model.put(&pool, 64, 1, 64 * 1024).await;
    let unsure = r.is_ok().then_some(64u64);
    let synced = pool.sync_now().await;
    assert!(r.is_err() || synced.is_err());
    let st = pool.status();
    assert_eq!(st.health, PoolHealth::Suspended, "{st:?}");
    let why = st.suspended.clone().unwrap();
    assert!(
        why.contains("column 0") && why.contains("column 2"),
        "{why}"
    );
    let e = model.put(&pool, 99, 1, 4096).await.unwrap_err();
    assert!(matches!(e, StoreError::ReadOnly { .. }), "{e}");
    // Reads: the right bytes or an error, never wrong bytes.
    for (id, want) in &before.0 {
        if unsure == Some(*id) {
            continue;
        }
        let mut buf = vec![0u8; want.len()];
        if let Ok(n) = pool.read(*id, 0, &mut buf).await {
            assert!(buf[..n] == want[..n], "object {id}: wrong data");
        }
    }
    assert!(matches!(pool.sync_now().await, Err(PoolError::ReadOnly(_))));
}

#[tokio::test]
async fn a_hot_spare_takes_over_a_removed_device() {
    let rig = rig(2);
    let pool = Pool::create(rig.devs.clone(), config(PoolLayout::Mirror))
        .await
        .unwrap();
    let mut model = Model::default();
    fill(&pool, &mut model, 6, 12).await;
    let spare = disk(&rig.rail, "spare", 120);
    pool.add_spare(spare.clone()).await.unwrap();
    let mut events = pool.subscribe_device_events();
    rig.faulty[1].remove();
    model.put(&pool, 80, 80, 32 * 1024).await.unwrap();
    pool.sync_now().await.unwrap();
    // Removed, then the spare is put in and resilvered.
    let mut seen = Vec::new();
    while !seen.contains(&DeviceState::Online) {
        let ev = events.recv().await.unwrap();
        assert_eq!(ev.column, 1);
        seen.push(ev.to);
    }
    assert_eq!(
        seen,
        vec![
            DeviceState::Removed,
            DeviceState::Resilvering,
            DeviceState::Online
        ]
    );
    let st = pool.status();
    assert_eq!(st.spares[0].in_use_for, Some(1));
    assert_eq!(st.health, PoolHealth::Online);
    rig.faulty[0].remove();
    model.check(&pool, "on the spare alone").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nvme_errors_through_the_driver_fault_the_device_and_clear_retries_it() {
    use ingot_hal::nvme::driver::{Controller, DriverConfig};
    use ingot_hal::nvme::spec::{io, sc, sct};
    use ingot_hal::sim::{CommandMatch, FaultCount, SimConfig, SimController};
    let mut sims = Vec::new();
    let mut ctrls = Vec::new();
    let mut devs: Vec<Arc<dyn BlockDevice>> = Vec::new();
    for i in 0..2 {
        let s = Arc::new(
            SimController::new_ram(SimConfig::ram(&format!("nv{i}"), 16 << 20, 4096)).unwrap(),
        );
        let cfg = DriverConfig {
            io_queues: 1,
            queue_depth: 32,
            command_timeout: std::time::Duration::from_secs(5),
            max_retries: 2,
            ..DriverConfig::default()
        };
        let backing: Arc<dyn ingot_hal::backing::DeviceBacking> = s.clone();
        let ctrl = Controller::init(backing, cfg).await.unwrap();
        devs.push(Arc::new(ctrl.namespace(1).unwrap()));
        sims.push(s);
        ctrls.push(ctrl);
    }
    let pool = Pool::create(devs.clone(), config(PoolLayout::Mirror))
        .await
        .unwrap();
    let mut model = Model::default();
    fill(&pool, &mut model, 4, 13).await;
    // Drive 1 fails every write with a retryable status: the driver retries, gives up,
    // and the pool faults the device at once (it missed data).
    sims[1].faults().error_status(
        CommandMatch::io(io::WRITE),
        sct::GENERIC,
        sc::INTERNAL_ERROR,
        FaultCount::Always,
    );
    model.put(&pool, 64, 640, 64 * 1024).await.unwrap();
    pool.sync_now().await.unwrap();
    assert!(sims[1].faults().counters().status_injected >= 3, "retried");
    let st = pool.status();
    assert_eq!(st.devices[1].state, DeviceState::Faulted);
    assert_eq!(st.health, PoolHealth::Degraded);
    assert!(st.devices[1].errors.write > 0);
    model.check(&pool, "degraded on NVMe").await;
    // Fixed: clearing the errors retries it, resilvered for what it missed.
    sims[1].faults().clear();
    let mut events = pool.subscribe_device_events();
    pool.clear_errors();
    loop {
        let ev = events.recv().await.unwrap();
        if ev.column == 1 && ev.to == DeviceState::Online {
            break;
        }
    }
    let p = pool.resilver_job().unwrap().wait().await.unwrap();
    assert_eq!(p.state, ScrubState::Finished);
    assert!(p.from_txg > 1, "{p:?}");
    assert_eq!(state(&pool, 1), DeviceState::Online);
    model.check(&pool, "after the retry").await;
    pool.export().await.unwrap();
    for c in ctrls {
        c.shutdown().await.unwrap();
    }
}
