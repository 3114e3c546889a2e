//! Pool resilience: self-healing reads and online scrub on every layout, with bit rot
//! injected by `FaultyBlockDevice::corrupt` at the exact device locations of an extent
//! (or over a whole device's data area).

use bytes::Bytes;
use ingot_hal::blockdev::BlockDevice;
use ingot_pool::engine::heal::ColumnLocation;
use ingot_pool::engine::scrub::{ScrubOptions, ScrubProgress, ScrubState};
use ingot_pool::engine::{ImportOptions, Pool, PoolConfig, PoolLayout};
use ingot_pool::store::{ObjectStore, Op, StoreError};
use std::collections::BTreeSet;
use std::sync::Arc;

mod common;
use common::rig::{Rig, random, redundancy, rig_of};

const LAYOUTS: [(PoolLayout, usize); 6] = [
    (PoolLayout::Stripe, 2),
    (PoolLayout::Mirror, 2),
    (PoolLayout::Mirror, 3),
    (PoolLayout::Raid10, 4),
    (PoolLayout::Raidz1, 3),
    (PoolLayout::Raidz2, 4),
];

fn rig(n: usize) -> Rig {
    rig_of(n, 4096)
}

fn config(layout: PoolLayout) -> PoolConfig {
    common::rig::config("resil", layout)
}

/// Objects 64.. with `count` records of 128 KiB of random bytes each.
async fn fill(pool: &Pool, objects: u64, seed: u64) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for k in 0..objects {
        let data = random(seed + k, 256 * 1024);
        pool.apply(vec![
            Op::Create { id: 64 + k },
            Op::Write {
                id: 64 + k,
                offset: 0,
                data: Bytes::from(data.clone()),
            },
        ])
        .await
        .unwrap();
        out.push(data);
    }
    pool.sync_now().await.unwrap();
    out
}

async fn read_all(pool: &Pool, id: u64, len: usize) -> Result<Vec<u8>, StoreError> {
    let mut buf = vec![0u8; len];
    let n = pool.read(id, 0, &mut buf).await?;
    buf.truncate(n);
    Ok(buf)
}

async fn raw(rig: &Rig, locs: &[ColumnLocation]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for l in locs {
        let mut b = vec![0u8; l.len as usize];
        // Through the device (its volatile cache included): what the pool sees.
        rig.faulty[l.device].read(l.offset, &mut b).await.unwrap();
        out.push(b);
    }
    out
}

async fn rot(rig: &Rig, locs: &[ColumnLocation], seed: u64) {
    for (k, l) in locs.iter().enumerate() {
        rig.faulty[l.device]
            .corrupt(l.offset, l.len, seed + k as u64)
            .await
            .unwrap();
    }
}

/// The extent locations on `ndev` devices: devices of column 0's copies first, then of
/// further columns, so that `ndev` = redundancy + 1 always loses some column entirely.
fn pick(locs: &[ColumnLocation], ndev: usize) -> Vec<ColumnLocation> {
    let mut devices: Vec<usize> = Vec::new();
    for l in locs {
        if devices.len() < ndev && !devices.contains(&l.device) {
            devices.push(l.device);
        }
    }
    locs.iter()
        .filter(|l| devices.contains(&l.device))
        .copied()
        .collect()
}

#[tokio::test]
async fn read_heals_rot_within_redundancy_on_every_layout() {
    for (layout, n) in LAYOUTS {
        let r = redundancy(layout, n);
        if r == 0 {
            continue;
        }
        let rig = rig(n);
        let pool = Pool::create(rig.devs.clone(), config(layout))
            .await
            .unwrap();
        let data = fill(&pool, 2, 10).await;
        let bp = pool.extent_of(64, 0).await.unwrap().expect("extent");
        // Columns plain reads use first (data, first copy), so the read itself meets the rot.
        let mut locs = pool.locate(&bp);
        locs.sort_by_key(|l| (l.parity, l.copy));
        let targets = pick(&locs, r);
        let devices: BTreeSet<usize> = targets.iter().map(|l| l.device).collect();
        assert_eq!(devices.len(), r, "{layout:?}");
        let before = raw(&rig, &targets).await;
        rot(&rig, &targets, 1).await;
        assert!(raw(&rig, &targets).await != before, "rot did nothing");
        let errors0 = pool.status().checksum_errors;
        assert!(
            read_all(&pool, 64, data[0].len()).await.unwrap() == data[0],
            "{layout:?}"
        );
        let st = pool.status();
        assert!(st.checksum_errors > errors0, "{layout:?}: rot not detected");
        for &d in &devices {
            assert!(
                st.devices[d].errors.checksum > 0,
                "{layout:?}: device {d} not counted"
            );
        }
        // The bad columns were rewritten in place...
        assert!(
            raw(&rig, &targets).await == before,
            "{layout:?}: not healed"
        );
        // ...so a second read needs no reconstruction.
        assert!(read_all(&pool, 64, data[0].len()).await.unwrap() == data[0]);
        assert_eq!(
            pool.status().checksum_errors,
            st.checksum_errors,
            "{layout:?}"
        );
        assert!(pool.status().damaged.is_empty());
        // clear_errors resets the counters.
        pool.clear_errors();
        let st = pool.status();
        assert_eq!(st.checksum_errors, 0);
        assert!(st.devices.iter().all(|d| d.errors.checksum == 0));
        pool.export().await.unwrap();
    }
}

#[tokio::test]
async fn rot_beyond_redundancy_is_corrupt_and_reported_on_every_layout() {
    for (layout, n) in LAYOUTS {
        let r = redundancy(layout, n);
        let rig = rig(n);
        let pool = Pool::create(rig.devs.clone(), config(layout))
            .await
            .unwrap();
        let data = fill(&pool, 2, 20).await;
        // The second record of object 64.
        let bp = pool
            .extent_of(64, 128 * 1024)
            .await
            .unwrap()
            .expect("extent");
        let targets = pick(&pool.locate(&bp), r + 1);
        rot(&rig, &targets, 7).await;
        match read_all(&pool, 64, data[0].len()).await {
            Err(StoreError::Corrupt { id, offset, .. }) => {
                assert_eq!((id, offset), (64, 128 * 1024), "{layout:?}");
            }
            other => panic!("{layout:?}: expected Corrupt, got {other:?}"),
        }
        // The first record still reads.
        let mut head = vec![0u8; 128 * 1024];
        assert_eq!(pool.read(64, 0, &mut head).await.unwrap(), head.len());
        assert!(head == data[0][..128 * 1024], "{layout:?}");
        let st = pool.status();
        assert_eq!(st.damaged.len(), 1, "{layout:?}: {:?}", st.damaged);
        assert_eq!(st.damaged[0].object, Some(64));
        assert_eq!(st.damaged[0].offset, 128 * 1024);
        assert_eq!(st.damaged[0].addr, bp.addr);
        // Other objects are unaffected.
        assert!(
            read_all(&pool, 65, data[1].len()).await.unwrap() == data[1],
            "{layout:?}"
        );
        // A scrub finds the same block unrecoverable, and nothing else.
        let p = pool
            .start_scrub(ScrubOptions::default())
            .await
            .unwrap()
            .wait()
            .await
            .unwrap();
        assert_eq!(p.state, ScrubState::Finished);
        assert_eq!(p.unrecoverable, 1, "{layout:?}: {p:?}");
        assert_eq!(pool.status().damaged.len(), 1, "{layout:?}");
        pool.clear_errors();
        assert!(pool.status().damaged.is_empty());
        // A scrub alone (nothing read before) names the damaged object too.
        let p = pool
            .start_scrub(ScrubOptions::default())
            .await
            .unwrap()
            .wait()
            .await
            .unwrap();
        assert_eq!(p.unrecoverable, 1, "{layout:?}: {p:?}");
        let st = pool.status();
        assert_eq!(st.damaged.len(), 1, "{layout:?}");
        assert_eq!(
            (
                st.damaged[0].object,
                st.damaged[0].offset,
                st.damaged[0].addr
            ),
            (Some(64), 128 * 1024, bp.addr),
            "{layout:?}"
        );
        pool.clear_errors();
        assert!(pool.status().damaged.is_empty());
        pool.export().await.unwrap();
    }
}

fn data_area(rig: &Rig) -> (u64, u64) {
    let start = ingot_pool::engine::label::LABEL_AREA;
    let end = rig.devs[0].geometry().capacity() - start;
    (start, end - start)
}

fn assert_clean(p: &ScrubProgress) {
    assert_eq!(p.state, ScrubState::Finished, "{p:?}");
    assert_eq!(p.errors_found, 0, "{p:?}");
    assert_eq!(p.unrecoverable, 0, "{p:?}");
    assert!(p.errors.is_empty(), "{p:?}");
    assert_eq!(p.scanned_bytes, p.total_bytes, "{p:?}");
}

#[tokio::test]
async fn scrub_finds_and_repairs_rot_on_every_layout() {
    for (layout, n) in LAYOUTS {
        let r = redundancy(layout, n);
        let rig = rig(n);
        let pool = Pool::create(rig.devs.clone(), config(layout))
            .await
            .unwrap();
        let data = fill(&pool, 4, 30).await;
        let clean = pool
            .start_scrub(ScrubOptions::default())
            .await
            .unwrap()
            .wait()
            .await
            .unwrap();
        assert_clean(&clean);
        assert!(clean.extents >= 8 && clean.nodes >= 1, "{clean:?}");
        pool.export().await.unwrap();
        if r == 0 {
            // Nothing to heal from (the stripe case is covered by the test above).
            continue;
        }
        // Rot the whole data area (metadata included) of `r` devices.
        let (start, len) = data_area(&rig);
        for d in 0..r {
            rig.faulty[d]
                .corrupt(start, len, 100 + d as u64)
                .await
                .unwrap();
        }
        let pool = Pool::import(rig.devs.clone(), ImportOptions::default())
            .await
            .unwrap();
        let p = pool
            .start_scrub(ScrubOptions::default())
            .await
            .unwrap()
            .wait()
            .await
            .unwrap();
        assert_eq!(p.state, ScrubState::Finished);
        assert!(p.errors_found > 0, "{layout:?}: {p:?}");
        assert_eq!(p.repaired, p.errors_found, "{layout:?}: {p:?}");
        assert_eq!(p.unrecoverable, 0, "{layout:?}: {p:?}");
        assert_eq!(p.total_bytes, clean.total_bytes, "{layout:?}");
        let again = pool
            .start_scrub(ScrubOptions::default())
            .await
            .unwrap()
            .wait()
            .await
            .unwrap();
        assert_clean(&again);
        for (k, d) in data.iter().enumerate() {
            assert!(&read_all(&pool, 64 + k as u64, d.len()).await.unwrap() == d);
        }
        pool.export().await.unwrap();
    }
}

#[tokio::test]
async fn scrub_on_a_locked_read_only_pool_counts_without_writing() {
    let rig = rig(2);
    let mut cfg = config(PoolLayout::Mirror);
    cfg.passphrase = Some("pass".into());
    let pool = Pool::create(rig.devs.clone(), cfg).await.unwrap();
    let data = fill(&pool, 2, 40).await;
    pool.export().await.unwrap();
    let (start, len) = data_area(&rig);
    rig.faulty[1].corrupt(start, len, 3).await.unwrap();
    // Locked and read-only (a locked import without `read_only` repairs: see locked.rs).
    let ro = ImportOptions {
        read_only: true,
        ..ImportOptions::default()
    };
    let locked = Pool::import(rig.devs.clone(), ro).await.unwrap();
    assert!(locked.status().locked);
    let mut img = Vec::new();
    for f in &rig.faulty {
        let mut b = vec![0u8; len as usize];
        f.inner().read(start, &mut b).await.unwrap();
        img.push(b);
    }
    let p = locked
        .start_scrub(ScrubOptions::default())
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert_eq!(p.state, ScrubState::Finished);
    assert!(!p.repairing);
    assert!(p.errors_found > 0, "{p:?}");
    assert_eq!(p.repaired, 0);
    assert_eq!(p.unrecoverable, 0, "{p:?}");
    assert!(locked.status().devices[1].errors.checksum > 0);
    for (f, before) in rig.faulty.iter().zip(&img) {
        let mut b = vec![0u8; len as usize];
        f.inner().read(start, &mut b).await.unwrap();
        assert!(&b == before, "locked scrub wrote to a device");
    }
    drop(locked);
    let opts = ImportOptions {
        passphrase: Some("pass".into()),
        ..ImportOptions::default()
    };
    let pool = Pool::import(rig.devs.clone(), opts).await.unwrap();
    let fixed = pool
        .start_scrub(ScrubOptions::default())
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert!(
        fixed.errors_found > 0 && fixed.repaired == fixed.errors_found,
        "{fixed:?}"
    );
    assert_clean(
        &pool
            .start_scrub(ScrubOptions::default())
            .await
            .unwrap()
            .wait()
            .await
            .unwrap(),
    );
    assert!(read_all(&pool, 64, data[0].len()).await.unwrap() == data[0]);
}

#[tokio::test]
async fn scrub_pause_resume_and_cancel() {
    let rig = rig(3);
    let pool = Pool::create(rig.devs.clone(), config(PoolLayout::Raidz1))
        .await
        .unwrap();
    fill(&pool, 4, 50).await;
    // Paused before its first block: it stops at 0 bytes, then resumes to the end.
    let h = pool.start_scrub(ScrubOptions::default()).await.unwrap();
    h.pause();
    let mut rx = h.subscribe();
    let p = rx
        .wait_for(|p| p.state == ScrubState::Paused)
        .await
        .unwrap()
        .clone();
    assert_eq!(p.scanned_bytes, 0);
    assert!(p.total_bytes > 0);
    assert_eq!(h.progress().state, ScrubState::Paused);
    h.resume();
    let done = h.wait().await.unwrap();
    assert_clean(&done);
    assert_eq!(done.total_bytes, p.total_bytes);
    // Cancelled before its first block: it ends Cancelled having scanned nothing.
    let h = pool.start_scrub(ScrubOptions::default()).await.unwrap();
    h.cancel();
    let p = h.wait().await.unwrap();
    assert_eq!(p.state, ScrubState::Cancelled);
    assert!(p.scanned_bytes < done.total_bytes);
    // Paused, then cancelled while paused.
    let h = pool.start_scrub(ScrubOptions::default()).await.unwrap();
    h.pause();
    h.subscribe()
        .wait_for(|p| p.state == ScrubState::Paused)
        .await
        .unwrap();
    h.cancel();
    assert_eq!(h.wait().await.unwrap().state, ScrubState::Cancelled);
    // A throttled scrub finishes with the same result.
    let h = pool
        .start_scrub(ScrubOptions {
            max_bytes_per_sec: Some(64 << 20),
            ..ScrubOptions::default()
        })
        .await
        .unwrap();
    assert_clean(&h.wait().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrub_runs_online_while_writers_overwrite_and_commit() {
    // 16 MiB devices and 10 MiB of churn: fits even if the scrub never let go of a tree
    // (a starved scrub on a loaded machine); freed-block reuse while a tree is held is
    // the next test's business.
    let rig = rig(2);
    let mut cfg = config(PoolLayout::Mirror);
    cfg.tunables.txg_interval = std::time::Duration::from_millis(2);
    let pool = Arc::new(Pool::create(rig.devs.clone(), cfg).await.unwrap());
    fill(&pool, 6, 60).await;
    // Throttled so that it spans many commits of the writers.
    let h = pool
        .start_scrub(ScrubOptions {
            max_bytes_per_sec: Some(2 << 20),
            ..ScrubOptions::default()
        })
        .await
        .unwrap();
    let writer = {
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut last = Vec::new();
            for round in 0..40u64 {
                let id = 64 + round % 6;
                let data = random(1000 + round, 256 * 1024);
                let r = pool
                    .apply(vec![
                        Op::Truncate { id, size: 0 },
                        Op::Write {
                            id,
                            offset: 0,
                            data: Bytes::from(data.clone()),
                        },
                    ])
                    .await;
                if let Err(e) = r {
                    panic!("round {round}: {e} (status {:?})", pool.status().used_bytes);
                }
                // Commit every round so that freed extents become reusable (and are
                // reused) while the scrub still has the old tree's blocks to read.
                pool.sync_now().await.unwrap();
                last.push((id, data));
            }
            last
        })
    };
    let written = writer.await.unwrap();
    let p = h.wait().await.unwrap();
    assert_clean(&p);
    assert!(
        pool.status().txg > p.txg,
        "writers did not commit during the scrub"
    );
    // It moved on to newer trees rather than hold the writers' churn.
    assert!(p.moves > 0, "{p:?}");
    for (id, data) in written.iter().rev().take(6) {
        assert!(&read_all(&pool, *id, data.len()).await.unwrap() == data);
    }
    assert_clean(
        &pool
            .start_scrub(ScrubOptions::default())
            .await
            .unwrap()
            .wait()
            .await
            .unwrap(),
    );
}

#[tokio::test]
async fn paused_scrub_resumes_after_export_and_import() {
    let rig = rig(3);
    let pool = Pool::create(rig.devs.clone(), config(PoolLayout::Raidz1))
        .await
        .unwrap();
    let data = fill(&pool, 6, 70).await;
    let full = pool
        .start_scrub(ScrubOptions::default())
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert_clean(&full);
    // Slow (1 MB/s): pause it once it has scanned something, long before it could finish.
    let h = pool
        .start_scrub(ScrubOptions {
            max_bytes_per_sec: Some(1 << 20),
            ..ScrubOptions::default()
        })
        .await
        .unwrap();
    let mut rx = h.subscribe();
    // The space map counts as the first extent; wait for a batch of file extents.
    rx.wait_for(|p| p.extents > 2).await.unwrap();
    h.pause();
    let paused = rx
        .wait_for(|p| p.state == ScrubState::Paused)
        .await
        .unwrap()
        .clone();
    assert!(
        paused.extents > 2 && paused.extents < full.extents,
        "{paused:?}"
    );
    pool.export().await.unwrap();
    drop(h);
    let pool = Pool::import(rig.devs.clone(), ImportOptions::default())
        .await
        .unwrap();
    let resumed = pool
        .start_scrub(ScrubOptions::default())
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert_eq!(resumed.resumed_from_txg, Some(paused.txg), "{resumed:?}");
    assert_eq!(resumed.state, ScrubState::Finished);
    assert!(
        resumed.errors.is_empty() && resumed.errors_found == 0,
        "{resumed:?}"
    );
    // It skipped what the first run had done (its extents are the rest, or a batch more).
    assert!(resumed.extents < full.extents, "{resumed:?} vs {full:?}");
    assert!(
        resumed.extents + paused.extents >= full.extents,
        "{resumed:?} vs {paused:?}"
    );
    // Finished: the position is dropped, the next scrub starts over.
    pool.sync_now().await.unwrap();
    let again = pool
        .start_scrub(ScrubOptions::default())
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert_eq!(again.resumed_from_txg, None);
    assert_eq!(again.extents, full.extents);
    for (k, d) in data.iter().enumerate() {
        assert!(&read_all(&pool, 64 + k as u64, d.len()).await.unwrap() == d);
    }
}

#[tokio::test]
async fn a_scrub_paused_before_its_first_block_holds_its_tree_against_reuse() {
    // 4 MiB devices: the writers' churn soon wraps the allocator onto freed blocks.
    let rig = rig_of(2, 1024);
    let pool = Pool::create(rig.devs.clone(), config(PoolLayout::Mirror))
        .await
        .unwrap();
    fill(&pool, 4, 80).await;
    let h = pool.start_scrub(ScrubOptions::default()).await.unwrap();
    h.pause();
    h.subscribe()
        .wait_for(|p| p.state == ScrubState::Paused)
        .await
        .unwrap();
    // Overwrite everything, committing each time, until the pool is full: the scrubbed
    // tree's blocks are freed but must not be reused while the scrub may read them.
    let mut rounds = 0;
    for round in 0..64u64 {
        let id = 64 + round % 4;
        let r = pool
            .apply(vec![
                Op::Truncate { id, size: 0 },
                Op::Write {
                    id,
                    offset: 0,
                    data: Bytes::from(random(2000 + round, 256 * 1024)),
                },
            ])
            .await;
        match r {
            Ok(()) => rounds += 1,
            Err(StoreError::NoSpace) => break,
            Err(e) => panic!("round {round}: {e}"),
        }
        pool.sync_now().await.unwrap();
    }
    assert!(
        rounds >= 4,
        "every object overwritten at least once ({rounds})"
    );
    h.resume();
    let p = h.wait().await.unwrap();
    assert_clean(&p);
}
