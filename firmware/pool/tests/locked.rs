//! A locked pool (encrypted, imported without the passphrase) maintains itself keylessly:
//! scrub and self-healing reads repair with bit-identical ciphertext, a device that missed
//! txgs is resilvered, a device is replaced, membership and the resilver position are
//! persisted by label-only commits (which survive torn writes and power cuts), and an
//! unlocked import later picks everything up. Seeded and deterministic, through the
//! fault-injecting device.

use bytes::Bytes;
use ingot_hal::blockdev::BlockDevice;
use ingot_hal::blockdev::faulty::{FaultyBlockDevice, power_cycle};
use ingot_pool::engine::label::{FLAG_TREE_POSITION_STALE, LABEL_AREA, Label};
use ingot_pool::engine::scrub::ScrubState;
use ingot_pool::engine::{
    DeviceState, ImportOptions, JobHandle, JobProgress, Pool, PoolConfig, PoolHealth, PoolLayout,
    ResilverOptions,
};
use ingot_pool::store::{ObjectStore, Op, StoreError};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

mod common;
use common::rig::{Rig, random, redundancy, rig_of, scrub};

const PASS: &str = "locked pass";
/// Device blocks (4 KiB): 16 MiB devices.
const BLOCKS: u64 = 4096;

const REDUNDANT: [(PoolLayout, usize); 5] = [
    (PoolLayout::Mirror, 2),
    (PoolLayout::Mirror, 3),
    (PoolLayout::Raid10, 4),
    (PoolLayout::Raidz1, 3),
    (PoolLayout::Raidz2, 4),
];

fn config(layout: PoolLayout) -> PoolConfig {
    let mut c = common::rig::config("vault", layout);
    c.passphrase = Some(PASS.into());
    c.tunables.txg_interval = std::time::Duration::from_secs(3600);
    c.tunables.idle_commit = std::time::Duration::ZERO;
    c
}

fn locked() -> ImportOptions {
    ImportOptions {
        tunables: config(PoolLayout::Mirror).tunables,
        ..ImportOptions::default()
    }
}

fn unlocked() -> ImportOptions {
    ImportOptions {
        passphrase: Some(PASS.into()),
        ..locked()
    }
}

/// What every object holds.
type Model = Vec<(u64, Vec<u8>)>;

/// Write `objects` objects (ids from `first`) of 64..256 KiB and commit.
async fn fill(pool: &Pool, model: &mut Model, first: u64, objects: u64, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for k in 0..objects {
        let id = first + k;
        let data = random(seed * 1000 + k, rng.random_range(16..64) * 4096);
        pool.apply(vec![
            Op::Create { id },
            Op::Write {
                id,
                offset: 0,
                data: Bytes::from(data.clone()),
            },
        ])
        .await
        .unwrap();
        model.push((id, data));
    }
    pool.sync_now().await.unwrap();
}

async fn check(pool: &Pool, model: &Model, what: &str) {
    for (id, want) in model {
        let mut buf = vec![0u8; want.len() + 1];
        let n = pool
            .read(*id, 0, &mut buf)
            .await
            .unwrap_or_else(|e| panic!("{what}: object {id}: {e}"));
        assert!(
            n == want.len() && buf[..n] == want[..],
            "{what}: object {id}"
        );
    }
}

/// A new encrypted pool with some data, exported.
async fn make(layout: PoolLayout, n: usize, seed: u64) -> (Rig, Model) {
    let rig = rig_of(n, BLOCKS);
    let pool = Pool::create(rig.devs.clone(), config(layout))
        .await
        .unwrap();
    let mut model = Model::new();
    fill(&pool, &mut model, 64, 6, seed).await;
    pool.export().await.unwrap();
    (rig, model)
}

/// The data area of a device, read through the device (its cache included).
async fn data_area(d: &FaultyBlockDevice) -> Vec<u8> {
    let len = d.geometry().capacity() - 2 * LABEL_AREA;
    let mut b = vec![0u8; len as usize];
    d.read(LABEL_AREA, &mut b).await.unwrap();
    b
}

/// The newest valid label of a device.
async fn newest_label(d: &dyn BlockDevice) -> Label {
    Pool::read_labels(d)
        .await
        .into_iter()
        .filter_map(Result::ok)
        .max_by_key(|l| l.order())
        .expect("a valid label")
}

async fn wait_resilver(pool: &Pool) -> ingot_pool::ResilverProgress {
    let h = pool.resilver_job().expect("a resilver ran");
    let p = h.wait().await.unwrap();
    assert_eq!(p.state, ScrubState::Finished, "{p:?}");
    assert_eq!(p.unrecoverable, 0, "{p:?}");
    p
}

/// Import unlocked, check the data, lose `lose` and check it again from the others.
async fn check_unlocked(
    rig_devs: Vec<Arc<dyn BlockDevice>>,
    model: &Model,
    lose: &FaultyBlockDevice,
    what: &str,
) {
    let pool = Pool::import(rig_devs, unlocked()).await.unwrap();
    assert!(!pool.status().locked);
    check(&pool, model, what).await;
    let p = scrub(&pool).await;
    assert_eq!(
        (p.errors_found, p.unrecoverable),
        (0, 0),
        "{what}: unlocked scrub: {p:?}"
    );
    lose.remove();
    check(&pool, model, &format!("{what}, one device lost")).await;
    drop(pool);
    lose.reinsert();
}

#[tokio::test]
async fn locked_scrub_repairs_bit_rot_with_identical_ciphertext_on_every_layout() {
    for (k, (layout, n)) in REDUNDANT.into_iter().enumerate() {
        let (rig, model) = make(layout, n, 10 + k as u64).await;
        let mut before = Vec::new();
        for d in &rig.faulty {
            before.push(data_area(d).await);
        }
        let rotted: Vec<usize> = match layout {
            PoolLayout::Raid10 => vec![0, 2],
            _ => (0..redundancy(layout, n)).collect(),
        };
        for (j, &d) in rotted.iter().enumerate() {
            let len = rig.faulty[d].geometry().capacity() - 2 * LABEL_AREA;
            rig.faulty[d]
                .corrupt(LABEL_AREA, len, 90 + j as u64)
                .await
                .unwrap();
        }
        let mut rotten = Vec::new();
        for d in &rig.faulty {
            rotten.push(data_area(d).await);
        }
        let pool = Pool::import(rig.devs.clone(), locked()).await.unwrap();
        let st = pool.status();
        assert!(st.locked && !st.read_only, "{layout:?}");
        // The object API still refuses without the key.
        assert!(matches!(pool.size(64).await, Err(StoreError::Locked)));
        assert!(matches!(
            pool.apply(vec![Op::Create { id: 500 }]).await,
            Err(StoreError::Locked)
        ));
        // Self-healing reads of the keyless walk repair what they read.
        let v = pool.verify_all().await.unwrap();
        assert!(v.errors.is_empty(), "{layout:?}: {v:?}");
        assert!(v.bad_columns > 0, "{layout:?}: {v:?}");
        let p = scrub(&pool).await;
        assert!(p.repairing, "{layout:?}");
        assert_eq!(p.unrecoverable, 0, "{layout:?}: {p:?}");
        assert_eq!(p.repaired, p.errors_found, "{layout:?}: {p:?}");
        let again = scrub(&pool).await;
        assert_eq!(again.errors_found, 0, "{layout:?}: repaired for good");
        assert!(pool.status().checksum_errors > 0);
        pool.export().await.unwrap();
        // Bit-identical: every sector below the labels is what it was before the rot
        // (repaired) or still the rot (free space nobody reads); nothing else was written.
        let mut restored = 0usize;
        for (d, dev) in rig.faulty.iter().enumerate() {
            let after = data_area(dev).await;
            for (s, a) in after.chunks(4096).enumerate() {
                let b = &before[d][s * 4096..(s + 1) * 4096];
                let r = &rotten[d][s * 4096..(s + 1) * 4096];
                assert!(
                    a == b || a == r,
                    "{layout:?}: device {d} sector {s} holds bytes never written there"
                );
                if a == b && b != r {
                    restored += 1;
                }
            }
        }
        assert!(restored > 0, "{layout:?}: nothing repaired");
        let other = match layout {
            PoolLayout::Raid10 => 1,
            _ => n - 1,
        };
        check_unlocked(
            rig.devs.clone(),
            &model,
            &rig.faulty[other],
            &format!("{layout:?}"),
        )
        .await;
    }
}

#[tokio::test]
async fn locked_import_resilvers_a_device_that_missed_txgs() {
    for (layout, n) in [
        (PoolLayout::Mirror, 2),
        (PoolLayout::Raidz1, 3),
        (PoolLayout::Raidz2, 4),
    ] {
        let (rig, mut model) = make(layout, n, 20).await;
        let gone = 1usize;
        // Unlocked: the device leaves, writes go on without it.
        let pool = Pool::import(rig.devs.clone(), unlocked()).await.unwrap();
        rig.faulty[gone].remove();
        // Two txgs: a device one txg behind is taken as current (a torn label write).
        fill(&pool, &mut model, 200, 2, 21).await;
        fill(&pool, &mut model, 210, 2, 22).await;
        assert_eq!(pool.status().devices[gone].state, DeviceState::Removed);
        pool.export().await.unwrap();
        rig.faulty[gone].reinsert();
        let stale_txg = newest_label(rig.devs[gone].as_ref()).await.uber.txg;
        // Locked: it is resilvered, keylessly, for the txgs it missed only.
        let pool = Pool::import(rig.devs.clone(), locked()).await.unwrap();
        assert!(pool.status().locked);
        let p = wait_resilver(&pool).await;
        assert!(
            p.from_txg > 1 && p.from_txg <= stale_txg + 1,
            "{layout:?}: {p:?}"
        );
        assert!(p.extents > 0, "{layout:?}: {p:?}");
        let st = pool.status();
        assert_eq!(st.devices[gone].state, DeviceState::Online, "{layout:?}");
        assert_eq!(st.health, PoolHealth::Online);
        let txg = st.txg;
        pool.export().await.unwrap();
        // Label-only: the tree is the same, the marks are cleared, the generation moved on.
        for d in &rig.devs {
            let l = newest_label(d.as_ref()).await;
            assert_eq!(l.uber.txg, txg, "{layout:?}");
            assert!(l.generation > txg, "{layout:?}: {l:?}");
            assert!(l.resilver_from.iter().all(|m| *m == 0), "{layout:?}");
            assert!(l.flags & FLAG_TREE_POSITION_STALE != 0);
            assert!(l.scan_position.is_none());
        }
        // Locked again: nothing left to do.
        let pool = Pool::import(rig.devs.clone(), locked()).await.unwrap();
        assert!(pool.resilver_job().is_none(), "{layout:?}");
        assert_eq!(pool.status().health, PoolHealth::Online);
        drop(pool);
        // The resilvered device holds the new data: lose another one.
        let other = usize::from(gone == 0);
        check_unlocked(
            rig.devs.clone(),
            &model,
            &rig.faulty[other],
            &format!("{layout:?} partial"),
        )
        .await;
        // The unlocked import's first commit made the tree authoritative again.
        let pool = Pool::import(rig.devs.clone(), unlocked()).await.unwrap();
        pool.sync_now().await.unwrap();
        drop(pool);
        let l = newest_label(rig.devs[0].as_ref()).await;
        assert_eq!(l.flags, 0, "{layout:?}");
    }
}

#[tokio::test]
async fn replace_on_a_locked_pool_completes_and_the_labels_record_it() {
    let (rig, model) = make(PoolLayout::Raidz1, 3, 30).await;
    let pool = Pool::import(rig.devs.clone(), locked()).await.unwrap();
    let txg = pool.status().txg;
    let fresh = common::rig::disk(&rig.rail, "fresh", BLOCKS, 31);
    let h = pool
        .replace(2, fresh.clone(), ResilverOptions::default())
        .await
        .unwrap();
    let p = h.wait().await.unwrap();
    assert_eq!(p.state, ScrubState::Finished, "{p:?}");
    assert_eq!(p.from_txg, 1);
    let st = pool.status();
    assert_eq!(st.devices[2].state, DeviceState::Online);
    assert_eq!(st.txg, txg, "a locked pool commits no tree");
    let guid = st.devices[2].guid.clone();
    // The old device no longer claims the column.
    assert!(
        Pool::read_labels(rig.devs[2].as_ref())
            .await
            .iter()
            .all(|l| l.is_err())
    );
    pool.export().await.unwrap();
    let l = newest_label(fresh.as_ref()).await;
    assert_eq!(format!("{:016x}", l.device_guid), guid);
    assert_eq!(l.uber.txg, txg);
    assert_eq!(l.resilver_from, vec![0, 0, 0]);
    let mut devs = rig.devs.clone();
    devs[2] = fresh.clone();
    // Locked and unlocked imports see the new membership.
    let again = Pool::import(devs.clone(), locked()).await.unwrap();
    let st = again.status();
    assert_eq!(st.devices[2].guid, guid);
    assert_eq!(st.health, PoolHealth::Online);
    drop(again);
    // The old device is refused as a member.
    let mut with_old = devs.clone();
    with_old.push(rig.devs[2].clone());
    assert!(Pool::import(with_old, locked()).await.is_err());
    check_unlocked(devs, &model, &rig.faulty[0], "after a locked replace").await;
}

/// Let a job rebuild a few blocks, pause it (which saves its position), and let it run on.
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

/// A locked pool with column 0 being replaced (throttled) and its position saved.
async fn replacing(seed: u64) -> (Rig, Model, Arc<FaultyBlockDevice>, Pool) {
    let (rig, mut model) = make(PoolLayout::Raidz1, 3, seed).await;
    // More data, so that the throttled resilver runs for a while.
    let pool = Pool::import(rig.devs.clone(), unlocked()).await.unwrap();
    fill(&pool, &mut model, 300, 6, seed + 1).await;
    pool.export().await.unwrap();
    let pool = Pool::import(rig.devs.clone(), locked()).await.unwrap();
    let fresh = common::rig::disk(&rig.rail, "fresh", BLOCKS, seed + 2);
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
    save_position(&pool, &h).await;
    let l = newest_label(fresh.as_ref()).await;
    let pos = l
        .scan_position
        .expect("the keyless position is in the labels");
    assert_eq!(pos.txg, l.uber.txg);
    assert!(pos.scanned > 0 && !pos.path.is_empty(), "{pos:?}");
    (rig, model, fresh, pool)
}

#[tokio::test]
async fn power_cut_during_a_locked_resilver_resumes_after_a_locked_import() {
    let (rig, model, fresh, pool) = replacing(40).await;
    let mut r = ChaCha8Rng::seed_from_u64(41);
    let mut all: Vec<&FaultyBlockDevice> = rig.faulty.iter().map(|d| d.as_ref()).collect();
    all.push(fresh.as_ref());
    power_cycle(&all, &mut r).await.unwrap();
    drop(pool);
    let mut devs = rig.devs.clone();
    devs[0] = fresh.clone();
    let pool = Pool::import(devs.clone(), locked()).await.unwrap();
    assert_eq!(pool.status().devices[0].state, DeviceState::Resilvering);
    let p = wait_resilver(&pool).await;
    assert!(p.resumed_from_txg.is_some(), "resumed: {p:?}");
    assert_eq!(p.from_txg, 1);
    assert_eq!(pool.status().devices[0].state, DeviceState::Online);
    pool.export().await.unwrap();
    check_unlocked(
        devs,
        &model,
        &rig.faulty[1],
        "after the resumed locked resilver",
    )
    .await;
}

#[tokio::test]
async fn unlocking_during_a_locked_resilver_resumes_it_with_the_key() {
    let (rig, model, fresh, pool) = replacing(50).await;
    // The appliance's unlock: export, import with the passphrase.
    pool.export().await.unwrap();
    let mut devs = rig.devs.clone();
    devs[0] = fresh.clone();
    let pool = Pool::import(devs.clone(), unlocked()).await.unwrap();
    assert!(!pool.status().locked);
    let p = wait_resilver(&pool).await;
    assert!(p.resumed_from_txg.is_some(), "resumed: {p:?}");
    assert_eq!(pool.status().devices[0].state, DeviceState::Online);
    check(&pool, &model, "unlocked after the resumed resilver").await;
    // Tree and labels agree: a full commit cleared the keyless position and the flag.
    pool.sync_now().await.unwrap();
    for d in &devs {
        let l = newest_label(d.as_ref()).await;
        assert!(l.scan_position.is_none() && l.flags == 0, "{l:?}");
        assert!(l.resilver_from.iter().all(|m| *m == 0));
    }
    // Writes work again with the key.
    pool.apply(vec![Op::Create { id: 900 }]).await.unwrap();
    pool.export().await.unwrap();
    check_unlocked(devs, &model, &rig.faulty[1], "after unlock").await;
}

#[tokio::test]
async fn power_cuts_through_a_locked_resilver_and_its_label_only_commits_lose_nothing() {
    // Count the writes and flushes a locked partial resilver and its label-only commits
    // make, then cut the power at each of them (torn label writes included).
    let setup = || async {
        let (rig, mut model) = make(PoolLayout::Raidz1, 3, 60).await;
        let pool = Pool::import(rig.devs.clone(), unlocked()).await.unwrap();
        rig.faulty[2].remove();
        fill(&pool, &mut model, 400, 2, 61).await;
        fill(&pool, &mut model, 410, 2, 62).await;
        pool.export().await.unwrap();
        rig.faulty[2].reinsert();
        (rig, model)
    };
    let (rig, _) = setup().await;
    let ops0 = rig.rail.ops();
    let pool = Pool::import(rig.devs.clone(), locked()).await.unwrap();
    wait_resilver(&pool).await;
    pool.export().await.unwrap();
    let total = rig.rail.ops() - ops0;
    assert!(total > 10, "{total} ops");
    // Every one of them (a few dozen).
    for cut in 0..total {
        let (rig, model) = setup().await;
        rig.rail.arm_after(cut);
        let mut done = false;
        if let Ok(pool) = Pool::import(rig.devs.clone(), locked()).await {
            if let Some(h) = pool.resilver_job() {
                let _ = h.wait().await;
            }
            done = pool.export().await.is_ok() && !rig.rail.is_cut();
        }
        rig.rail.disarm();
        let mut r = ChaCha8Rng::seed_from_u64(cut);
        let all: Vec<&FaultyBlockDevice> = rig.faulty.iter().map(|d| d.as_ref()).collect();
        power_cycle(&all, &mut r).await.unwrap();
        // Whatever was torn: the pool imports locked and finishes the job.
        let pool = Pool::import(rig.devs.clone(), locked())
            .await
            .unwrap_or_else(|e| panic!("cut at {cut} of {total}: {e}"));
        if let Some(h) = pool.resilver_job() {
            let p = h.wait().await.unwrap();
            assert_eq!(p.state, ScrubState::Finished, "cut at {cut}: {p:?}");
        }
        let st = pool.status();
        assert_eq!(
            st.health,
            PoolHealth::Online,
            "cut at {cut} (done {done}): {st:?}"
        );
        pool.export().await.unwrap();
        check_unlocked(
            rig.devs.clone(),
            &model,
            &rig.faulty[0],
            &format!("cut at {cut} of {total}"),
        )
        .await;
    }
}

#[tokio::test]
async fn a_read_only_locked_import_writes_nothing_and_refuses_maintenance() {
    let (rig, _) = make(PoolLayout::Mirror, 2, 70).await;
    let mut before = Vec::new();
    for d in &rig.faulty {
        let mut b = vec![0u8; d.geometry().capacity() as usize];
        d.read(0, &mut b).await.unwrap();
        before.push(b);
    }
    let ro = ImportOptions {
        read_only: true,
        ..locked()
    };
    let pool = Pool::import(rig.devs.clone(), ro).await.unwrap();
    assert!(pool.status().locked && pool.status().read_only);
    let fresh = common::rig::disk(&rig.rail, "fresh", BLOCKS, 71);
    assert!(
        pool.replace(1, fresh, ResilverOptions::default())
            .await
            .is_err()
    );
    let p = scrub(&pool).await;
    assert!(!p.repairing);
    pool.export().await.unwrap();
    for (d, b) in rig.faulty.iter().zip(&before) {
        let mut a = vec![0u8; d.geometry().capacity() as usize];
        d.read(0, &mut a).await.unwrap();
        assert!(&a == b, "a read-only import wrote");
    }
}

#[tokio::test]
async fn a_torn_label_only_commit_keeps_the_previous_state() {
    // One device: no other device holds the labels, so only the pair alternation of label
    // generations keeps the previous state when the pair being written is torn.
    let (rig, model) = make(PoolLayout::Stripe, 1, 80).await;
    let txg = newest_label(rig.devs[0].as_ref()).await.uber.txg;
    for round in 0..3u64 {
        // A locked import's export is a label-only commit (flush, two label copies, flush).
        let before = newest_label(rig.devs[0].as_ref()).await;
        let snapshot = clone_device(&rig.faulty[0], "before").await;
        let ops0 = rig.rail.ops();
        let pool = Pool::import(rig.devs.clone(), locked()).await.unwrap();
        pool.export().await.unwrap();
        let ops = rig.rail.ops() - ops0;
        let after = newest_label(rig.devs[0].as_ref()).await;
        assert_eq!(after.generation, before.generation + 1);
        assert_eq!(after.uber, before.uber, "label-only");
        // Cut at each of those operations, under several crash outcomes, on copies of the
        // device as it was before the commit.
        for cut in 0..ops {
            for seed in 0..4u64 {
                let copy = clone_device(&snapshot, "copy").await;
                let devs: Vec<Arc<dyn BlockDevice>> = vec![copy.clone()];
                let pool = Pool::import(devs.clone(), locked()).await.unwrap();
                copy.rail().arm_after(cut);
                let _ = pool.export().await;
                copy.rail().disarm();
                let mut r = ChaCha8Rng::seed_from_u64(round * 100 + cut * 10 + seed);
                power_cycle(&[copy.as_ref()], &mut r).await.unwrap();
                let l = newest_label(copy.as_ref()).await;
                assert!(
                    l.order() >= before.order(),
                    "round {round} cut {cut} seed {seed}: fell back to {:?} from {:?}",
                    l.order(),
                    before.order()
                );
                assert_eq!(l.uber.txg, txg);
                let pool = Pool::import(devs, unlocked()).await.unwrap();
                check(
                    &pool,
                    &model,
                    &format!("round {round} cut {cut} seed {seed}"),
                )
                .await;
            }
        }
    }
}

/// A new fault-injecting device (on its own rail) holding a copy of `d`'s media.
async fn clone_device(d: &FaultyBlockDevice, name: &str) -> Arc<FaultyBlockDevice> {
    let cap = d.geometry().capacity();
    let mut img = vec![0u8; cap as usize];
    d.read(0, &mut img).await.unwrap();
    let rail = ingot_hal::blockdev::faulty::PowerRail::new();
    let copy = common::rig::disk(&rail, name, cap / 4096, 0);
    copy.write(0, &img, ingot_hal::blockdev::WriteFlags::NONE)
        .await
        .unwrap();
    copy.flush().await.unwrap();
    copy
}

#[tokio::test]
async fn a_locked_scrub_saves_its_position_in_the_labels_and_an_unlocked_one_resumes() {
    let (rig, mut model) = make(PoolLayout::Raidz1, 3, 90).await;
    let pool = Pool::import(rig.devs.clone(), unlocked()).await.unwrap();
    fill(&pool, &mut model, 300, 6, 91).await;
    pool.export().await.unwrap();
    let pool = Pool::import(rig.devs.clone(), locked()).await.unwrap();
    let h = pool
        .start_scrub(ingot_pool::engine::ScrubOptions {
            max_bytes_per_sec: Some(1 << 20),
            restart: false,
        })
        .await
        .unwrap();
    save_position(&pool, &h).await;
    let l = newest_label(rig.devs[0].as_ref()).await;
    let pos = l
        .scan_position
        .expect("the scrub position is in the labels");
    assert!(
        pos.scrub && pos.txg == l.uber.txg && pos.scanned > 0,
        "{pos:?}"
    );
    // Unlock (export, import with the key) while it runs: the scrub resumes.
    pool.export().await.unwrap();
    drop(h);
    let pool = Pool::import(rig.devs.clone(), unlocked()).await.unwrap();
    let p = scrub(&pool).await;
    assert_eq!(p.state, ScrubState::Finished, "{p:?}");
    assert_eq!(p.resumed_from_txg, Some(pos.txg), "{p:?}");
    assert!(p.scanned_bytes >= pos.scanned);
    assert_eq!(p.errors_found, 0);
    pool.sync_now().await.unwrap();
    check(&pool, &model, "after the resumed scrub").await;
    drop(pool);
    assert!(
        newest_label(rig.devs[0].as_ref())
            .await
            .scan_position
            .is_none()
    );
}

/// Rewrite every valid label copy of `d` in the version 2 layout (no flags, generation or
/// position; the reader takes the generation to be the txg).
async fn downgrade_to_v2(d: &FaultyBlockDevice) {
    let cap = d.geometry().capacity();
    for c in 0..ingot_pool::engine::label::LABEL_COPIES {
        let off = ingot_pool::engine::label::label_offset(c, cap);
        let mut b = vec![0u8; ingot_pool::engine::label::LABEL_BYTES as usize];
        d.read(off, &mut b).await.unwrap();
        let Ok(mut l) = Label::decode(&b) else {
            continue;
        };
        assert_eq!(l.generation, l.uber.txg, "only full commits so far");
        l.flags = 0;
        l.scan_position = None;
        let mut e = l.encode().unwrap();
        e[8..12].copy_from_slice(&2u32.to_le_bytes());
        let n = l.device_guids.len();
        let tail = 136 + 8 * n + 96 + 2 + l.key_slot.len() + 8 * n;
        e[tail..tail + 9].fill(0);
        let len = e.len();
        let crc = crc32c::crc32c(&e[..len - 4]);
        e[len - 4..].copy_from_slice(&crc.to_le_bytes());
        d.write(off, &e, ingot_hal::blockdev::WriteFlags::NONE)
            .await
            .unwrap();
    }
    d.flush().await.unwrap();
}

#[tokio::test]
async fn version_2_labels_import_locked_and_unlocked_and_are_rewritten_as_version_3() {
    let (rig, model) = make(PoolLayout::Mirror, 2, 95).await;
    for d in &rig.faulty {
        downgrade_to_v2(d).await;
    }
    let txg = newest_label(rig.devs[0].as_ref()).await.uber.txg;
    // Locked: a label-only commit (export) takes the generation after the txg.
    let pool = Pool::import(rig.devs.clone(), locked()).await.unwrap();
    assert_eq!(pool.status().txg, txg);
    pool.export().await.unwrap();
    let l = newest_label(rig.devs[0].as_ref()).await;
    assert_eq!((l.uber.txg, l.generation), (txg, txg + 1));
    // Unlocked: reads, and the next full commit follows on.
    let pool = Pool::import(rig.devs.clone(), unlocked()).await.unwrap();
    check(&pool, &model, "from version 2 labels").await;
    pool.apply(vec![Op::Create { id: 990 }]).await.unwrap();
    pool.sync_now().await.unwrap();
    drop(pool);
    let l = newest_label(rig.devs[1].as_ref()).await;
    assert_eq!((l.uber.txg, l.generation, l.flags), (txg + 1, txg + 2, 0));
}
